//! Replies that arrive terms late. Figure 2: "If RPC request or response
//! contains term T > currentTerm ... convert to follower"; a reply from an
//! older term answers a request of a leadership that is over, so it must not
//! count for a later one, even when the same node leads again.
//!
//! The lab's network delays a reply by at most a couple of seconds; these
//! scenarios hold replies back on purpose (a [`Hold`]) or at random (a
//! [`LongDelay`]) until the addressee leads in a later term.

use raft_core::{NodeId, Term};
use raft_sim::{cmd, seeds, Cluster, Hold, LongDelay, Release, Select, SimError};

/// The node among `ids` that leads in a term after `after`, if any.
fn leader_among(cfg: &Cluster, ids: &[NodeId], after: Term) -> Option<NodeId> {
    ids.iter()
        .copied()
        .find(|&id| cfg.get_state(id).is_some_and(|(t, l)| l && t > after))
}

/// Puts node `id` in `group[id - 1]`.
fn groups(cfg: &mut Cluster, group: [u32; 5]) {
    cfg.sim_mut().partition(group.to_vec());
}

/// Node `f` acks an entry of leader `l`'s term `t0`, and the ack is held.
/// A new leader of term `t1` rewrites that index on `l`; then `l` leads again
/// in a later term, and only then does the old ack arrive. Acting on it would
/// count `f` as holding `l`'s new entry at that index, which it does not: the
/// checker's match-index invariant fails, and `f` would be stuck behind a
/// match index its log never reaches.
fn reply_from_an_older_leadership(seed: u64) -> Result<(), SimError> {
    let mut cfg = Cluster::new(5, seed)?;
    cfg.one(cmd(1), 5, false)?;
    let l = cfg.check_one_leader()?;
    let t0 = cfg.check_terms()?;
    let [f, b, c, d] = [1, 2, 3, 4].map(|k| cfg.next(l, k));
    let slot = |id: NodeId| id as usize - 1;

    // 1. `l` and `f` alone: `l` appends index 2 in t0, `f` takes it and acks;
    // every reply from `f` to `l` waits until `l` leads in a later term.
    let hold = Hold::new(Select::Replies, Release::AddresseeLeadsLater)
        .from(f)
        .to(l);
    let hold = cfg.sim_mut().hold(hold);
    let mut g = [1; 5];
    (g[slot(l)], g[slot(f)]) = (0, 0);
    groups(&mut cfg, g);
    if cfg.start(l, cmd(2))? != Some((2, t0)) {
        return Err(cfg.fatal("the leader did not take index 2 in its term"));
    }
    cfg.wait_for(500, "f to ack index 2", |k| {
        k.sim().node(f).and_then(|n| n.term_at(2)) == Some(t0) && k.sim().hold_caught(hold) > 0
    })?;

    // 2. `f` alone; b, c, d elect a leader of a later term, which commits
    // indices 2 and 3 of its own.
    g[slot(f)] = 2;
    groups(&mut cfg, g);
    cfg.sim_mut().stop_hold(hold);
    cfg.wait_for(5_000, "a leader among the majority", |k| {
        leader_among(k, &[b, c, d], t0).is_some()
    })?;
    let n1 = leader_among(&cfg, &[b, c, d], t0).expect("just found");
    let (t1, _) = cfg.get_state(n1).expect("up");
    cfg.start(n1, cmd(20))?;
    cfg.start(n1, cmd(30))?;
    cfg.wait_for(5_000, "index 3 applied on the majority", |k| {
        k.n_committed(3).0 >= 3
    })?;

    // 3. `l` rejoins n1 and one follower; n1 commits index 4 there. `l`'s
    // index 2 is now n1's, and its log is ahead of the cut-off follower's.
    let cut = [b, c, d]
        .into_iter()
        .find(|&x| x != n1)
        .expect("two others");
    let mut g = [0; 5];
    (g[slot(cut)], g[slot(f)]) = (1, 2);
    groups(&mut cfg, g);
    cfg.start(n1, cmd(40))?;
    cfg.wait_for(5_000, "index 4 applied on l", |k| {
        k.sim().apps().node(l).log.contains_key(&4)
    })?;
    if cfg.sim().node(l).and_then(|n| n.term_at(2)) != Some(t1) {
        return Err(cfg.fatal("l's index 2 was not rewritten by the later leader"));
    }

    // 4. `l`, `cut` and `f`: only `l` can win (the others' logs are behind).
    let mut g = [1; 5];
    (g[slot(l)], g[slot(cut)], g[slot(f)]) = (0, 0, 0);
    groups(&mut cfg, g);
    let late0 = cfg.sim().net().counters.late_replies;
    cfg.wait_for(5_000, "l to lead again", |k| {
        leader_among(k, &[l, cut, f], t1).is_some()
    })?;
    if leader_among(&cfg, &[l, cut, f], t1) != Some(l) {
        return Err(cfg.fatal("a node with a shorter log won the election"));
    }

    // 5. The held acks of t0 arrive now; `f` must still catch up.
    cfg.wait_for(1_000, "f to hold l's entries", |k| {
        let (nl, nf) = (k.sim().node(l), k.sim().node(f));
        let last = nl.map_or(0, |n| n.last_index());
        last >= 4 && nf.and_then(|n| n.term_at(last)) == nl.and_then(|n| n.term_at(last))
    })?;
    if cfg.sim().waiting() > 0 || cfg.sim().net().counters.late_replies == late0 {
        return Err(cfg.fatal("the held replies never reached l in its later term"));
    }
    cfg.sim_mut().heal();
    cfg.one(cmd(50), 5, true)?;
    Ok(())
}

#[test]
fn reply_from_an_older_leadership_is_ignored() {
    seeds::run("reply_from_an_older_leadership_is_ignored", |seed| {
        reply_from_an_older_leadership(seed)
    });
}

/// Random long delays on every link (several election timeouts) while the
/// leader is cut off and reconnected over and over: requests and replies
/// keep arriving terms late, and every command still commits everywhere.
#[test]
fn random_long_delays_carry_messages_into_later_terms() {
    seeds::run(
        "random_long_delays_carry_messages_into_later_terms",
        |seed| {
            let mut cfg = Cluster::builder(5, seed).build()?;
            cfg.sim_mut()
                .set_long_delay(LongDelay::new(0.1, 1_000, 4_000));
            for round in 0..8 {
                let leader = cfg.check_one_leader()?;
                cfg.one(cmd(round), 4, true)?;
                cfg.disconnect(leader);
                cfg.one(cmd(100 + round), 4, true)?;
                cfg.connect(leader);
            }
            cfg.sim_mut().set_long_delay(LongDelay::default());
            cfg.run_for(4_000)?;
            cfg.one(cmd(1_000), 5, true)?;
            let k = &cfg.sim().net().counters;
            if k.late_replies == 0 || k.late_requests == 0 {
                return Err(cfg.fatal(format!(
                    "no message arrived in a later term ({} replies, {} requests)",
                    k.late_replies, k.late_requests
                )));
            }
            Ok(())
        },
    );
}
