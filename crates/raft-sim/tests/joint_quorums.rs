//! Joint consensus needs both majorities (§6: "agreement (for elections and
//! entry commitment) requires separate majorities from both the old and new
//! configurations"). Here C_old and C_new share only the leader, and one
//! side is cut off while the cluster is joint: nothing may commit with the
//! other side alone. The checker also verifies every commit and election
//! against both halves; these scenarios make the one-sided quorum the only
//! one on offer.

use raft_core::{ConfChange, ConfState, Config, NodeId};
use raft_sim::{cmd, seeds, Cluster, SimError};

fn with_noop(c: &mut Config) {
    c.noop_on_election = true;
}

/// Three voters with two caught-up learners (4 and 5); returns the leader
/// and the two other old voters.
fn three_and_two_learners(seed: u64) -> Result<(Cluster, NodeId, [NodeId; 2]), SimError> {
    let mut c = Cluster::builder(3, seed).configure(with_noop).build()?;
    c.check_one_leader()?;
    c.one(cmd(1), 3, true)?;
    for _ in 0..2 {
        let id = c.add_server()?;
        c.add_learner(id)?;
    }
    c.one(cmd(2), 5, true)?;
    let l = c.leader().ok_or_else(|| c.fatal("no leader"))?;
    let old: Vec<NodeId> = (1..=3).filter(|&v| v != l).collect();
    Ok((c, l, [old[0], old[1]]))
}

/// The leader proposes C_new = {leader, 4, 5} with its old fellow voters
/// cut off: C_old,new reaches a majority of C_new (the leader, 4 and 5)
/// but no majority of C_old (the leader alone), so it must not commit,
/// nor anything after it. Once the old voters return, the change goes
/// through.
#[test]
fn joint_commit_needs_both_majorities() {
    seeds::run("joint_commit_needs_both_majorities", |seed| {
        let (mut c, l, old) = three_and_two_learners(seed)?;
        for v in old {
            c.disconnect(v);
        }
        let change = ConfChange::Joint {
            voters: vec![l, 4, 5],
            learners: vec![],
        };
        let index = match c.sim_mut().propose_conf_change(l, change)? {
            Ok((index, _)) => index,
            Err(e) => return Err(c.fatal(format!("the joint change was refused: {e}"))),
        };
        let after = c.start(l, cmd(3))?;
        c.run_for(1_000)?;
        let (committed, held_by_new) = (c.sim().checker().committed_index(), {
            let holds = |id: NodeId| c.sim().node(id).is_some_and(|n| n.last_index() >= index);
            holds(4) && holds(5)
        });
        if !held_by_new {
            return Err(c.fatal("C_old,new did not reach the new voters"));
        }
        if committed >= index {
            return Err(c.fatal(format!(
                "C_old,new at {index} (then {after:?}) committed with no majority of C_old"
            )));
        }
        for v in old {
            c.connect(v);
        }
        // The old leader's C_old,new may be lost to a leader elected
        // without it; `joint` proposes again until C_new is committed.
        c.joint(&[l, 4, 5], &[])?;
        if c.committed_conf() != ConfState::new(&[l, 4, 5]) {
            return Err(c.fatal(format!("configuration {:?}", c.committed_conf())));
        }
        c.one(cmd(4), 3, true)?;
        Ok(())
    });
}

/// The same shape with the new side cut off: C_old,new reaches the old
/// voters (a majority of C_old) but only the leader of C_new, so it must
/// not commit until the new voters return.
#[test]
fn joint_commit_needs_the_new_majority_too() {
    seeds::run("joint_commit_needs_the_new_majority_too", |seed| {
        let (mut c, l, _) = three_and_two_learners(seed)?;
        for v in [4, 5] {
            c.disconnect(v);
        }
        let change = ConfChange::Joint {
            voters: vec![l, 4, 5],
            learners: vec![],
        };
        let index = match c.sim_mut().propose_conf_change(l, change)? {
            Ok((index, _)) => index,
            Err(e) => return Err(c.fatal(format!("the joint change was refused: {e}"))),
        };
        c.run_for(1_000)?;
        if c.sim().checker().committed_index() >= index {
            return Err(c.fatal(format!(
                "C_old,new at {index} committed with no majority of C_new"
            )));
        }
        for v in [4, 5] {
            c.connect(v);
        }
        // The old leader's C_old,new may be lost to a leader elected
        // without it; `joint` proposes again until C_new is committed.
        c.joint(&[l, 4, 5], &[])?;
        if c.committed_conf() != ConfState::new(&[l, 4, 5]) {
            return Err(c.fatal(format!("configuration {:?}", c.committed_conf())));
        }
        c.one(cmd(4), 3, true)?;
        Ok(())
    });
}
