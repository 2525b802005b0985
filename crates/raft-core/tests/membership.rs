//! Membership changes (§6, thesis chapter 4) and leadership transfer
//! (thesis §3.10), on small clusters driven by hand: messages are delivered
//! in order, nothing is lost unless a node is cut off. Each test quotes the
//! rule it checks. Randomised schedules live in raft-sim.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{drain, elect, msg};
use raft_core::{
    persist, Body, ConfChange, ConfChangeError, ConfState, Config, EntryKind, Error, MemStorage,
    Message, Node, NodeId, Role, Storage,
};

fn config(id: NodeId, voters: &[NodeId]) -> Config {
    let mut c = Config::new(id, voters.to_vec());
    c.election_tick = 10;
    c.heartbeat_tick = 2;
    c.noop_on_election = true;
    c
}

/// Nodes exchanging messages in order, with some cut off.
struct Cluster {
    nodes: BTreeMap<NodeId, Node<MemStorage>>,
    cut: BTreeSet<NodeId>,
    /// Configuration entries each node applied, in order.
    applied_confs: BTreeMap<NodeId, Vec<ConfState>>,
}

impl Cluster {
    /// Nodes `voters`, all bootstrapped with that configuration.
    fn new(voters: &[NodeId]) -> Self {
        let mut c = Cluster {
            nodes: BTreeMap::new(),
            cut: BTreeSet::new(),
            applied_confs: BTreeMap::new(),
        };
        for &id in voters {
            c.add_node(Node::new(config(id, voters), MemStorage::new()).unwrap());
        }
        c
    }

    fn add_node(&mut self, n: Node<MemStorage>) {
        self.nodes.insert(n.id(), n);
    }

    fn node(&mut self, id: NodeId) -> &mut Node<MemStorage> {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Acts on every Ready and delivers every message until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut out: Vec<Message> = Vec::new();
            for (&id, n) in self.nodes.iter_mut() {
                while n.has_ready() {
                    let rd = n.ready().unwrap();
                    persist(n.storage_mut(), &rd).unwrap();
                    out.extend(rd.messages);
                    for e in rd
                        .committed_entries
                        .iter()
                        .filter(|e| e.kind == EntryKind::Config)
                    {
                        let c = raft_core::ConfEntry::decode(&e.data).unwrap();
                        self.applied_confs.entry(id).or_default().push(c.conf);
                    }
                    n.advance();
                }
            }
            if out.is_empty() {
                return;
            }
            for m in out {
                if self.cut.contains(&m.from) || self.cut.contains(&m.to) {
                    continue;
                }
                if let Some(n) = self.nodes.get_mut(&m.to) {
                    n.step(m).unwrap();
                }
            }
        }
        panic!("the cluster never settled");
    }

    /// `ticks` rounds of one tick per node, settling after each.
    fn run(&mut self, ticks: u32) {
        for _ in 0..ticks {
            for n in self.nodes.values_mut() {
                n.tick().unwrap();
            }
            self.settle();
        }
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(id, n)| n.is_leader() && !self.cut.contains(id))
            .map(|(&id, _)| id)
            .next()
    }

    /// Runs until a leader stands (and its empty entry commits).
    fn elect(&mut self) -> NodeId {
        for _ in 0..200 {
            self.run(1);
            if let Some(l) = self.leader() {
                self.run(3);
                return l;
            }
        }
        panic!("no leader");
    }

    fn propose(&mut self, data: &[u8]) -> u64 {
        let l = self.leader().unwrap();
        let (i, _) = self.node(l).propose(data.to_vec()).unwrap();
        self.settle();
        i
    }

    fn change(&mut self, cc: ConfChange) -> Result<u64, Error> {
        let l = self.leader().unwrap();
        let r = self.node(l).propose_conf_change(cc, vec![]);
        self.settle();
        r.map(|(i, _)| i)
    }

    fn commit(&self, id: NodeId) -> u64 {
        self.nodes[&id].status().commit
    }
}

/// A server waiting to be added: it knows no configuration.
fn joiner(id: NodeId) -> Node<MemStorage> {
    Node::new(config(id, &[]), MemStorage::new()).unwrap()
}

/// "Learners ... receive the log but do not count for elections or commit"
/// (issue 10); a caught-up learner is promoted with a single-server change,
/// "which is safe because the majorities of the old and new configurations
/// overlap" — thesis §4.1 (a one-server change).
#[test]
fn a_learner_catches_up_without_voting_then_is_promoted() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    for i in 0..5u8 {
        c.propose(&[i]);
    }
    c.add_node(joiner(4));
    let at = c.change(ConfChange::AddLearner(4)).unwrap();
    assert!(c.node(l).conf().is_learner(4));
    c.run(4);
    assert_eq!(
        c.node(4).status().commit,
        c.commit(l),
        "the learner has the log"
    );
    assert_eq!(c.node(4).conf().learners, [4], "and the configuration");
    assert!(c.commit(l) >= at);
    // Cut two voters off: the learner does not make a majority.
    let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&v| v != l).collect();
    c.cut.insert(others[0]);
    c.cut.insert(others[1]);
    let before = c.commit(l);
    let (i, _) = c.node(l).propose(b"needs a voter".to_vec()).unwrap();
    c.settle();
    assert_eq!(
        c.commit(l),
        before,
        "a learner's copy does not commit entry {i}"
    );
    // A learner never campaigns, however long it hears nothing.
    let term = c.node(4).term();
    c.cut.extend([1, 2, 3]);
    c.run(60);
    assert_eq!(c.node(4).role(), Role::Follower);
    assert_eq!(c.node(4).term(), term, "it did not even raise its term");
    c.cut.clear();
    let l = c.elect();
    c.change(ConfChange::AddVoter(4)).unwrap();
    c.run(4);
    assert_eq!(c.node(l).conf().voters, [1, 2, 3, 4]);
    assert!(c.nodes.values().all(|n| n.conf().voters == [1, 2, 3, 4]));
}

/// "A server always uses the latest configuration in its log, regardless of
/// whether the entry is committed" — §6. And so a configuration entry that is
/// overwritten takes its configuration with it.
#[test]
fn a_configuration_takes_effect_when_appended_and_goes_when_truncated() {
    let mut c = Cluster::new(&[1, 2, 3, 4, 5]);
    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    let others: Vec<NodeId> = (1..=5).filter(|&v| v != l && v != f).collect();
    // Only f gets the change: with three of five cut off it cannot commit.
    c.cut.extend(others.iter().copied());
    c.add_node(joiner(6));
    let at = c.change(ConfChange::AddLearner(6)).unwrap();
    assert!(c.commit(l) < at);
    assert!(
        c.node(f).conf().is_learner(6),
        "in force on append, uncommitted"
    );
    // The other three elect a leader of a new term without l and f ...
    c.cut.clear();
    c.cut.insert(l);
    c.cut.insert(f);
    let nl = c.elect();
    assert!(others.contains(&nl));
    // ... whose log replaces f's uncommitted entry when f is back.
    c.cut.remove(&f);
    c.propose(b"overwrites");
    c.run(4);
    assert!(
        !c.node(f).conf().is_learner(6),
        "the truncated entry took its configuration with it"
    );
    assert_eq!(c.node(f).conf(), &ConfState::new(&[1, 2, 3, 4, 5]));
}

/// "The leader first creates the C_old,new configuration entry ... once
/// C_old,new has been committed ... it is now safe for the leader to create
/// a log entry describing C_new" — §6. Until then, "agreement (for
/// elections and entry commitment) requires separate majorities from both
/// the old and new configurations."
#[test]
fn joint_consensus_replaces_every_member() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    c.propose(b"before");
    for id in [4, 5, 6] {
        c.add_node(joiner(id));
    }
    c.change(ConfChange::Joint {
        voters: vec![4, 5, 6],
        learners: vec![],
    })
    .unwrap();
    c.run(4);
    // The leader was not in C_new: once C_new commits it steps down, and
    // hands over to a caught-up member of C_new rather than leave the
    // cluster to wait for an election timeout.
    assert_ne!(c.node(l).role(), Role::Leader);
    let nl = c.leader().expect("a member of C_new leads at once");
    assert!([4, 5, 6].contains(&nl));
    let seen = &c.applied_confs[&4];
    assert!(seen.iter().any(|s| s.is_joint()), "C_old,new came first");
    assert_eq!(seen.last().unwrap(), &ConfState::new(&[4, 5, 6]));
    // The old members leave; the new ones go on alone.
    for id in [1, 2, 3] {
        c.cut.insert(id);
    }
    let i = c.propose(b"after");
    assert!(c.commit(nl) >= i);
}

/// During C_old,new a commit needs a majority of C_old and of C_new.
#[test]
fn a_joint_configuration_needs_both_majorities() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let old: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&v| v != l).collect();
    for id in [4, 5] {
        c.add_node(joiner(id));
    }
    // Nodes 4 and 5 cannot be reached: C_old,new = {1,2,3} + {l,4,5} cannot commit.
    c.cut.insert(4);
    c.cut.insert(5);
    let at = c
        .change(ConfChange::Joint {
            voters: vec![l, 4, 5],
            learners: vec![],
        })
        .unwrap();
    c.run(3);
    assert!(c.commit(l) < at, "C_new has only the leader");
    assert!(c.node(old[0]).conf().is_joint());
    c.cut.clear();
    c.run(10);
    assert_eq!(c.node(l).conf(), &ConfState::new(&[l, 4, 5]));
}

/// The fix from the 2015 raft-dev erratum: "a leader may not append a new
/// configuration entry until it has committed an entry from its current
/// term", and only one change may be pending at a time.
#[test]
fn changes_wait_for_the_leaders_term_and_for_each_other() {
    let mut c = Cluster::new(&[1, 2, 3]);
    // A leader with noop_on_election off has no entry of its term yet.
    let mut lone = Node::new(
        Config {
            noop_on_election: false,
            ..config(1, &[1])
        },
        MemStorage::new(),
    )
    .unwrap();
    common::tick_until(&mut lone, |n| n.is_leader());
    assert!(matches!(
        lone.propose_conf_change(ConfChange::AddLearner(2), vec![]),
        Err(Error::ConfChange(ConfChangeError::TermNotCommitted))
    ));
    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    c.cut.insert(f);
    c.cut.insert(6 - l - f);
    c.node(l)
        .propose_conf_change(ConfChange::AddLearner(4), vec![])
        .unwrap();
    assert!(matches!(
        c.node(l)
            .propose_conf_change(ConfChange::AddLearner(5), vec![]),
        Err(Error::ConfChange(ConfChangeError::Pending))
    ));
    c.cut.clear();
    c.run(4);
    c.change(ConfChange::AddLearner(5)).unwrap();
}

/// A restarted server finds its configuration in its storage alone: in the
/// snapshot ("the last configuration as of lastIncludedIndex", §7) and in
/// the entries after it.
#[test]
fn a_restart_recovers_the_configuration_from_snapshot_and_log() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    c.add_node(joiner(4));
    c.change(ConfChange::AddLearner(4)).unwrap();
    c.run(4);
    let applied = c.node(l).status().applied;
    c.node(l).snapshot(applied, b"app".to_vec()).unwrap();
    c.settle();
    c.add_node(joiner(5));
    c.change(ConfChange::AddLearner(5)).unwrap();
    c.run(4);
    let storage = c.nodes.remove(&l).unwrap().into_storage();
    assert_eq!(storage.snapshot().unwrap().conf.learners, [4]);
    // Restarted with a wrong bootstrap list: storage wins.
    let n = Node::new(config(l, &[1, 2, 3, 9]), storage).unwrap();
    assert_eq!(n.conf().learners, [4, 5]);
    assert_eq!(n.conf().voters, [1, 2, 3]);
}

/// Leadership transfer: "the prior leader sends a TimeoutNow request to the
/// target server. This request has the same effect as the target server's
/// election timer firing: the target server starts a new election" — thesis
/// §3.10. Voters grant it even while they hear from the old leader.
#[test]
fn leadership_moves_to_an_up_to_date_target_at_once() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    c.propose(b"x");
    let to = if l == 3 { 1 } else { 3 };
    let term = c.node(l).term();
    c.node(l).transfer_leader(to).unwrap();
    assert!(matches!(
        c.node(l).propose(b"held".to_vec()),
        Err(Error::Transferring { to: t }) if t == to
    ));
    c.settle();
    assert_eq!(c.leader(), Some(to), "no election timeout had to pass");
    assert_eq!(c.node(to).term(), term + 1, "no PreVote round either");
    assert!(c.node(to).propose(b"y".to_vec()).is_ok());
}

/// A target that lags is brought up to date before TimeoutNow goes.
#[test]
fn a_lagging_target_is_caught_up_first() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let to = if l == 3 { 1 } else { 3 };
    c.cut.insert(to);
    for i in 0..5u8 {
        c.propose(&[i]);
    }
    c.cut.clear();
    c.node(l).transfer_leader(to).unwrap();
    c.settle();
    assert_eq!(c.leader(), Some(to), "TimeoutNow goes once it is caught up");
    c.run(4);
    assert_eq!(c.leader(), Some(to));
    assert_eq!(c.commit(to), c.node(to).last_index());
}

/// "If the transfer does not complete within an election timeout, the prior
/// leader aborts the transfer and resumes accepting client requests" —
/// thesis §3.10.
#[test]
fn a_transfer_to_an_unreachable_target_is_abandoned() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let to = if l == 3 { 1 } else { 3 };
    c.cut.insert(to);
    c.node(l).transfer_leader(to).unwrap();
    assert!(c.node(l).propose(b"held".to_vec()).is_err());
    c.run(12);
    assert_eq!(c.leader(), Some(l));
    assert!(c.node(l).propose(b"resumed".to_vec()).is_ok());
    assert!(matches!(
        c.node(l).transfer_leader(9),
        Err(Error::BadTransferTarget(9))
    ));
}

/// "Removed servers (those not in C_new) can disrupt the cluster ... they
/// will time out and start new elections"; the remedy: "servers disregard
/// RequestVote RPCs when they believe a current leader exists" — §6.
#[test]
fn a_removed_server_does_not_disrupt_the_cluster() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let gone = if l == 3 { 1 } else { 3 };
    c.change(ConfChange::Remove(gone)).unwrap();
    c.run(4);
    let term = c.node(l).term();
    // The removed server hears no more heartbeats and keeps asking for
    // (pre-)votes; nobody listens, and the cluster's term stays put.
    c.run(100);
    assert_eq!(c.leader(), Some(l));
    assert_eq!(c.node(l).term(), term);
    assert!(c.nodes.values().all(|n| n.id() == gone || n.term() == term));
    // A real vote request with a higher term is ignored too.
    let ask = msg(
        gone,
        l,
        term + 5,
        Body::RequestVote {
            last_log_index: 99,
            last_log_term: term,
            pre_vote: false,
            transfer: false,
        },
    );
    c.node(l).step(ask).unwrap();
    c.settle();
    assert_eq!(c.leader(), Some(l));
    assert_eq!(c.node(l).term(), term);
}

/// A joint entry that commits together with entries after it is still left
/// for C_new: "once C_old,new has been committed ... the leader creates a
/// log entry describing C_new" — §6.
#[test]
fn a_joint_configuration_is_left_even_when_later_entries_commit_with_it() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    c.add_node(joiner(4));
    let joint = ConfChange::Joint {
        voters: vec![1, 2, 3, 4],
        learners: vec![],
    };
    c.node(l).propose_conf_change(joint, vec![]).unwrap();
    c.node(l).propose(b"right behind it".to_vec()).unwrap();
    c.settle();
    c.run(2);
    assert!(
        !c.node(l).conf().is_joint(),
        "the leader stayed in C_old,new"
    );
    assert_eq!(c.node(l).conf(), &ConfState::new(&[1, 2, 3, 4]));
}

/// A leader removed from the configuration hands over to a voter that holds
/// its whole log (thesis §3.10), not to one that lags and could not win.
#[test]
fn a_removed_leader_hands_over_to_a_caught_up_voter() {
    let mut c = Cluster::new(&[1, 2, 3, 4, 5]);
    let l = c.elect();
    let lagging = *c.nodes.keys().find(|&&id| id != l).unwrap();
    c.cut.insert(lagging);
    c.propose(b"the lagging voter misses this");
    c.change(ConfChange::Remove(l)).unwrap();
    // No tick: the handover happens as the removal commits.
    let nl = c.leader().expect("a caught-up voter leads at once");
    assert!(nl != l && nl != lagging);
}

/// A transfer waits up to an election timeout for a target that is behind:
/// proposals stay refused meanwhile, and the transfer completes once the
/// target catches up — thesis §3.10.
#[test]
fn a_transfer_waits_for_a_slow_target_up_to_an_election_timeout() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let to = if l == 3 { 1 } else { 3 };
    c.cut.insert(to);
    c.node(l).transfer_leader(to).unwrap();
    c.run(3); // election_tick is 10
    assert!(matches!(
        c.node(l).propose(b"held".to_vec()),
        Err(Error::Transferring { .. })
    ));
    c.cut.clear();
    c.run(5); // 8 ticks in all: still within the election timeout
    assert_eq!(c.leader(), Some(to));
}

/// A transfer belongs to the leadership that began it: "the prior leader
/// aborts the transfer and resumes accepting client requests" (thesis
/// §3.10) applies as well when it loses leadership before the transfer is
/// done. Elected again, it takes proposals at once.
#[test]
fn a_transfer_ends_with_the_leadership_that_began_it() {
    let mut n = Node::new(config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    elect(&mut n, &[2]);
    n.transfer_leader(3).unwrap();
    drain(&mut n);
    let newer = n.term() + 1;
    let reply = Body::AppendEntriesReply(raft_core::AppendReply::StaleTerm);
    n.step(msg(2, 1, newer, reply)).unwrap();
    drain(&mut n);
    assert_eq!(n.role(), Role::Follower);
    assert_eq!(n.match_index(3), None, "only a leader tracks its followers");
    elect(&mut n, &[2]);
    assert!(n.propose(b"x".to_vec()).is_ok());
}

/// A transfer under way survives a configuration change that keeps its
/// target a voter (here the leader's own C_old,new → C_new step).
#[test]
fn a_transfer_survives_a_change_that_keeps_its_target() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let to = if l == 3 { 1 } else { 3 };
    c.add_node(joiner(4));
    let joint = ConfChange::Joint {
        voters: vec![1, 2, 3, 4],
        learners: vec![],
    };
    c.node(l).propose_conf_change(joint, vec![]).unwrap();
    c.node(l).transfer_leader(to).unwrap();
    c.settle();
    c.run(8);
    assert!(!c.node(l).conf().is_joint());
    assert_eq!(c.leader(), Some(to));
}

/// TimeoutNow counts only from this node's leader, and only a voter that
/// follows campaigns on it (thesis §3.10).
#[test]
fn timeout_now_is_heeded_only_from_the_leader_by_a_voting_follower() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let others: Vec<NodeId> = c.nodes.keys().copied().filter(|&id| id != l).collect();
    let (f, g) = (others[0], others[1]);
    let term = c.node(f).term();
    // From a fellow follower: ignored.
    c.node(f).step(msg(g, f, term, Body::TimeoutNow)).unwrap();
    assert_eq!((c.node(f).role(), c.node(f).term()), (Role::Follower, term));
    // At the leader itself, from a follower: ignored.
    c.node(l).step(msg(f, l, term, Body::TimeoutNow)).unwrap();
    assert_eq!((c.node(l).role(), c.node(l).term()), (Role::Leader, term));
    // A learner following the leader: ignored.
    c.add_node(joiner(4));
    c.change(ConfChange::AddLearner(4)).unwrap();
    c.run(2);
    let term = c.node(l).term();
    c.node(4).step(msg(l, 4, term, Body::TimeoutNow)).unwrap();
    assert_eq!(c.node(4).role(), Role::Follower);
    assert_eq!(c.node(4).term(), term);
    // The leader's own TimeoutNow to a voter: it campaigns.
    c.node(f).step(msg(l, f, term, Body::TimeoutNow)).unwrap();
    assert_eq!(c.node(f).role(), Role::Candidate);
}

/// Leaving a joint configuration waits while a transfer is under way, and
/// goes on when the transfer is abandoned — thesis §3.10 and §6.
#[test]
fn an_abandoned_transfer_lets_the_leader_leave_the_joint_configuration() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let to = if l == 3 { 1 } else { 3 };
    c.add_node(joiner(4));
    c.cut.insert(to);
    let joint = ConfChange::Joint {
        voters: vec![1, 2, 3, 4],
        learners: vec![],
    };
    let (at, _) = c.node(l).propose_conf_change(joint, vec![]).unwrap();
    c.node(l).transfer_leader(to).unwrap();
    c.run(3); // within the election timeout (10 ticks)
    assert!(c.commit(l) >= at, "C_old,new commits without the target");
    assert!(c.node(l).conf().is_joint(), "C_new waits for the transfer");
    c.run(12);
    assert_eq!(c.leader(), Some(l));
    assert!(!c.node(l).conf().is_joint());
    assert_eq!(c.node(l).conf(), &ConfState::new(&[1, 2, 3, 4]));
}

/// "Once a given server adds the new configuration entry to its log, it
/// uses that configuration for all future decisions" — thesis §4.1. A
/// removal that shrinks the majority commits what the smaller majority
/// already holds at once, on the leader, without waiting for another reply.
#[test]
fn a_removal_that_shrinks_the_majority_commits_at_once() {
    let mut c = Cluster::new(&[1, 2, 3, 4]);
    let l = c.elect();
    let others: Vec<NodeId> = [1, 2, 3, 4].into_iter().filter(|&v| v != l).collect();
    // Two of four cut off: an entry on the leader and one follower is not
    // on a majority of four.
    c.cut.insert(others[1]);
    c.cut.insert(others[2]);
    let x = c.propose(b"x");
    c.run(3);
    assert!(c.commit(l) < x, "two of four is no majority");
    // Removing a cut-off voter leaves three, of which the leader and
    // others[0] hold x: a majority, as soon as the removal is in the log.
    c.node(l)
        .propose_conf_change(ConfChange::Remove(others[2]), vec![])
        .unwrap();
    assert!(
        c.commit(l) >= x,
        "commit {} does not reach {x} under the new configuration",
        c.commit(l)
    );
}
