//! Asynchronous leader writes (`Config::async_leader_writes`): the leader's
//! AppendEntries may leave before its own write of the same entries is
//! durable, and it counts itself toward a commit only once that write is.

mod common;

use common::{append_ok, drain, elect};
use raft_core::{persist, Body, Config, MemStorage, Node};

fn leader() -> Node<MemStorage> {
    let mut c = Config::new(1, vec![1, 2, 3]);
    c.election_tick = 10;
    c.heartbeat_tick = 2;
    c.async_leader_writes = true;
    let mut n = Node::new(c, MemStorage::new()).unwrap();
    elect(&mut n, &[2, 3]);
    replicating(&mut n);
    n
}

/// The followers answer the new leader's first probes: both replicate.
fn replicating(n: &mut Node<MemStorage>) {
    let term = n.term();
    for f in [2, 3] {
        n.step(append_ok(f, 1, term, 0)).unwrap();
    }
    drain(n);
}

#[test]
fn replication_leaves_before_the_leaders_own_write() {
    let mut n = leader();
    let term = n.term();
    let (index, _) = n.propose(b"x".to_vec()).unwrap();
    let rd = n.ready().unwrap();
    assert_eq!(rd.entries.len(), 1);
    assert!(rd.messages.is_empty(), "nothing waits for the fsync");
    assert_eq!(
        rd.early_messages
            .iter()
            .filter(
                |m| matches!(&m.body, Body::AppendEntries { entries, .. } if !entries.is_empty())
            )
            .count(),
        2
    );
    // A follower acknowledges before the leader's own write is durable:
    // one copy of three is no majority.
    n.step(append_ok(2, 1, term, index)).unwrap();
    assert_eq!(n.status().commit, 0, "the leader's copy does not count yet");
    persist(n.storage_mut(), &rd).unwrap();
    n.advance();
    assert_eq!(n.status().commit, index, "now it does");
    let rd = n.ready().unwrap();
    assert_eq!(rd.committed_entries.len(), 1);
}

#[test]
fn without_it_everything_waits_for_the_write() {
    let mut c = Config::new(1, vec![1, 2, 3]);
    c.election_tick = 10;
    c.heartbeat_tick = 2;
    let mut n = Node::new(c, MemStorage::new()).unwrap();
    elect(&mut n, &[2, 3]);
    replicating(&mut n);
    n.propose(b"x".to_vec()).unwrap();
    let rd = n.ready().unwrap();
    assert!(rd.early_messages.is_empty());
    assert_eq!(rd.messages.len(), 2);
    drain(&mut n);
}

#[test]
fn votes_and_term_changes_never_leave_early() {
    let mut c = Config::new(1, vec![1, 2, 3]);
    c.election_tick = 10;
    c.heartbeat_tick = 2;
    c.async_leader_writes = true;
    let mut n = Node::new(c, MemStorage::new()).unwrap();
    common::tick_until(&mut n, |n| n.role() != raft_core::Role::Follower);
    let rd = n.ready().unwrap();
    assert!(rd.early_messages.is_empty(), "a candidate's requests wait");
    assert!(!rd.messages.is_empty());
}
