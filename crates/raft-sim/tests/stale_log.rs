//! The lab's 2C problem: a server whose log is out of date and which keeps
//! timing out. Here it hears nobody (every link into it drops) but its
//! requests get through, as with a one-way network fault. Without PreVote
//! each timeout raises its term and its RequestVote carries the term to
//! the majority, whose leader steps down; the stale server cannot win
//! (§5.4.1: its log is behind), so the majority elects again, and again:
//! terms climb and commits stall. With PreVote (thesis §9.6) it first asks
//! whether it could win, is refused, and raises no term. Both run without
//! CheckQuorum, whose lease would hide the difference (see
//! `tests/stale_node.rs` for the two rules together). Each prints the
//! majority's terms and the commits with and without the stale server.

use raft_core::{Config, NodeId, Term};
use raft_sim::{cmd, seeds, Cluster, LinkFaults, SimError};

/// What one run measured.
struct Run {
    /// The majority's highest term when the stale server starts sending,
    /// and five seconds later.
    terms: (Term, Term),
    /// Entries committed in five seconds with the stale server away, then
    /// in five seconds with it sending.
    commits: (u64, u64),
    /// Elections during the second five seconds.
    elections: u64,
    /// The longest time without a commit, in ms, in each five seconds.
    stalls: (u64, u64),
}

fn no_prevote(c: &mut Config) {
    c.pre_vote = false;
    c.check_quorum = false;
}

fn prevote(c: &mut Config) {
    c.pre_vote = true;
    c.check_quorum = false;
}

/// Entries committed while three clients write for `ms`, and the longest
/// time (ms, to 10 ms) in which nothing committed.
fn clients_for(c: &mut Cluster, ms: u64) -> Result<(u64, u64), SimError> {
    let before = c.sim().checker().committed_index();
    let ids: Vec<_> = (0..3).map(|me| c.spawn_client(me)).collect();
    let (mut last, mut since, mut stall) = (before, 0, 0);
    for _ in 0..ms / 10 {
        c.run_for(10)?;
        let now = c.sim().checker().committed_index();
        since = if now > last { 0 } else { since + 10 };
        (last, stall) = (now, stall.max(since));
    }
    c.stop_clients();
    for id in ids {
        c.join(id)?;
    }
    Ok((c.sim().checker().committed_index() - before, stall))
}

fn majority_term(c: &Cluster, members: &[NodeId]) -> Term {
    members
        .iter()
        .filter_map(|&id| c.get_state(id).map(|(t, _)| t))
        .max()
        .unwrap_or(0)
}

fn stale_log(
    name: &str,
    seed: u64,
    configure: fn(&mut Config),
) -> Result<(Cluster, Run), SimError> {
    let n = 5;
    let mut c = Cluster::builder(n, seed).configure(configure).build()?;
    let l = c.check_one_leader()?;
    c.one(cmd(1), n, true)?;
    let k = 1 + c.rand_below(4);
    let stale = c.next(l, k);
    let others: Vec<NodeId> = (1..=n as NodeId).filter(|&id| id != stale).collect();
    // Its log falls behind while it is away.
    c.disconnect(stale);
    let (healthy, healthy_stall) = clients_for(&mut c, 5_000)?;
    // It comes back able to send but not to hear.
    c.connect(stale);
    for &from in &others {
        let cut = LinkFaults {
            drop: 1.0,
            ..LinkFaults::default()
        };
        c.sim_mut().set_faults(from, stale, cut);
    }
    let (t0, s0) = (majority_term(&c, &others), c.stats());
    let (with_stale, stale_stall) = clients_for(&mut c, 5_000)?;
    let run = Run {
        terms: (t0, majority_term(&c, &others)),
        commits: (healthy, with_stale),
        elections: c.stats().elections - s0.elections,
        stalls: (healthy_stall, stale_stall),
    };
    println!(
        "{name} seed {seed}: majority term {} -> {}, {} elections; commits in 5 s: {} with \
         the stale node away, {} with it timing out; longest stall {} ms, then {} ms",
        run.terms.0,
        run.terms.1,
        run.elections,
        run.commits.0,
        run.commits.1,
        run.stalls.0,
        run.stalls.1
    );
    seeds::figures(
        seed,
        &[
            ("terms", (run.terms.1 - run.terms.0) as f64),
            ("elections", run.elections as f64),
            ("healthy", run.commits.0 as f64),
            ("stale", run.commits.1 as f64),
            ("stall0", run.stalls.0 as f64),
            ("stall", run.stalls.1 as f64),
        ],
    );
    Ok((c, run))
}

/// PreVote off: the stale server drives the majority's term up and stalls
/// commits.
#[test]
fn stale_log_node_without_prevote() {
    seeds::run("stale_log_node_without_prevote", |seed| {
        let (c, run) = stale_log("stale_log_node_without_prevote", seed, no_prevote)?;
        let (healthy, stale) = run.commits;
        // Measured over 1000 seeds: the majority's term rose by 19–26 (a
        // jump to the term the stale node reached while away, then one per
        // timeout), 14–21 elections, commits at 53–80% of the healthy rate,
        // and the longest stretch without a commit 190–760 ms (none with
        // the node away). Bounds with a margin.
        if run.terms.1 < run.terms.0 + 10
            || run.elections < 5
            || stale * 100 > healthy * 85
            || run.stalls.1 < 150
        {
            return Err(c.fatal(format!(
                "without PreVote the stale node should disrupt: term {} -> {}, {} elections, \
                 commits {healthy} -> {stale}, longest stall {} ms",
                run.terms.0, run.terms.1, run.elections, run.stalls.1
            )));
        }
        Ok(())
    });
}

/// PreVote on: the majority's term stays put, nobody campaigns, and commits
/// flow at the healthy rate.
#[test]
fn prevote_stale_log_no_disruption() {
    seeds::run("prevote_stale_log_no_disruption", |seed| {
        let (c, run) = stale_log("prevote_stale_log_no_disruption", seed, prevote)?;
        let (healthy, stale) = run.commits;
        // Measured over 1000 seeds: no term change, no election, every
        // commit of the healthy rate, no 10 ms without a commit. Bounds:
        // none, none, 95%, 50 ms.
        if run.terms.1 != run.terms.0
            || run.elections != 0
            || stale * 100 < healthy * 95
            || run.stalls.1 > 50
        {
            return Err(c.fatal(format!(
                "with PreVote the stale node disrupted: term {} -> {}, {} elections, commits \
                 {healthy} -> {stale}, longest stall {} ms",
                run.terms.0, run.terms.1, run.elections, run.stalls.1
            )));
        }
        Ok(())
    });
}
