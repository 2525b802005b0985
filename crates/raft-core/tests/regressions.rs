//! Regression tests for bugs found by review, one per bug, each named after
//! the behaviour it asserts.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::{append_ok, drain, elect, msg, vote_reply, Faults, Sim};
use raft_core::{
    AppendReply, Body, Config, Entry, HardState, Index, MemStorage, Message, Node, Role, Snapshot,
    Storage, StorageError, Term,
};

/// How a snapshot transfer to a lagging follower went.
struct Transfer {
    /// The follower installed a snapshot.
    installed: bool,
    /// InstallSnapshot messages the leader sent after the partition healed.
    sent: u64,
    /// Chunks in one snapshot.
    chunks: u64,
}

/// In a 3-node cluster with 64-byte chunks and 41-chunk snapshots, one
/// follower is cut off while the leader moves on and compacts. After healing,
/// the leader proposes every tick for `ticks` ticks and, if `every > 0`,
/// snapshots every `every` ticks.
fn lagging_follower(every: u64, ticks: u64) -> Transfer {
    let mut s = Sim::new(7, 3, Faults::none(), |c| c.snapshot_chunk_bytes = 64);
    s.pad = 64 * 40;
    for _ in 0..100 {
        s.tick();
    }
    let leader = s.leader().expect("a leader after 100 ticks");
    let lagging = if leader == 3 { 2 } else { 3 };
    s.isolated.insert(lagging);
    let propose_on_leader = |s: &mut Sim, t: u64| {
        let l = s.leader().expect("a leader");
        s.propose(l, vec![t as u8; 8]);
        l
    };
    for t in 0..200 {
        s.tick();
        propose_on_leader(&mut s, t);
    }
    let l = s.leader().unwrap();
    s.snapshot(l, s.app(l));
    s.isolated.clear();
    let before = s.sent("InstallSnapshot");
    for t in 0..ticks {
        s.tick();
        let l = propose_on_leader(&mut s, t);
        if every > 0 && t % every == every - 1 {
            s.snapshot(l, s.app(l));
        }
    }
    let snapshot = s.node(lagging).storage().snapshot().unwrap();
    Transfer {
        installed: snapshot.meta.index > 0,
        sent: s.sent("InstallSnapshot") - before,
        chunks: (s.pad as u64 + 16).div_ceil(64),
    }
}

// Bug: a new leader snapshot restarted the transfer from offset 0, so a
// follower never caught up while the leader kept compacting.
#[test]
fn snapshot_transfer_survives_leader_compactions() {
    // A transfer takes about 2 * 41 ticks (one tick per hop); compact more often.
    let t = lagging_follower(60, 5000);
    assert!(
        t.installed,
        "follower never caught up: transfer restarted at every new snapshot ({} InstallSnapshot sent)",
        t.sent
    );
}

// Bug: each heartbeat started another chunk stream to a follower already
// receiving a snapshot.
#[test]
fn snapshot_transfer_sends_one_chunk_stream() {
    let t = lagging_follower(0, 2000);
    assert!(t.installed, "follower never installed the snapshot");
    assert!(
        t.sent <= 3 * t.chunks,
        "{} InstallSnapshot messages for a {}-chunk snapshot on a lossless network",
        t.sent,
        t.chunks
    );
}

/// A [`MemStorage`] counting the bytes copied out by `snapshot()`.
struct CountingStorage(MemStorage, Rc<Cell<u64>>);

impl Storage for CountingStorage {
    fn hard_state(&self) -> Result<HardState, StorageError> {
        self.0.hard_state()
    }
    fn first_index(&self) -> Index {
        self.0.first_index()
    }
    fn last_index(&self) -> Index {
        self.0.last_index()
    }
    fn term(&self, index: Index) -> Result<Term, StorageError> {
        self.0.term(index)
    }
    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        self.0.entries(lo, hi, max_bytes)
    }
    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        let s = self.0.snapshot()?;
        self.1.set(self.1.get() + s.data.len() as u64);
        Ok(s)
    }
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.0.append(entries)
    }
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.0.set_hard_state(hs)
    }
    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.0.apply_snapshot(snapshot)
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        self.0.sync()
    }
}

// Bug: the leader copied the whole snapshot out of storage for every chunk.
#[test]
fn snapshot_chunks_do_not_copy_the_whole_snapshot() {
    let copied = Rc::new(Cell::new(0));
    let storage = CountingStorage(MemStorage::new(), copied.clone());
    let mut leader = Node::new(Config::new(1, vec![1, 2, 3]), storage).unwrap(); // 64 KiB chunks
    elect(&mut leader, &[3]);
    let term = leader.term();
    for i in 0..5u8 {
        leader.propose(vec![i]).unwrap();
    }
    drain(&mut leader);
    leader.step(append_ok(3, 1, term, 5)).unwrap();
    drain(&mut leader);
    let size = 4u64 << 20; // 64 chunks
    leader.snapshot(5, vec![1; size as usize]).unwrap();
    drain(&mut leader);

    let mut follower = Node::new(Config::new(2, vec![1, 2, 3]), MemStorage::new()).unwrap();
    copied.set(0);
    // A heartbeat finds node 2's entries compacted away; then chunks ping-pong.
    for _ in 0..10 {
        leader.tick().unwrap();
    }
    let mut msgs: Vec<Message> = drain(&mut leader)
        .into_iter()
        .filter(|m| m.to == 2)
        .collect();
    let mut chunks = 0;
    while !msgs.is_empty() {
        assert!(chunks < 10_000, "the transfer never ends");
        for m in msgs.drain(..) {
            if matches!(m.body, Body::InstallSnapshot { .. }) {
                chunks += 1;
            }
            follower.step(m).unwrap();
        }
        for r in drain(&mut follower) {
            leader.step(r).unwrap();
        }
        msgs.extend(
            drain(&mut leader)
                .into_iter()
                .filter(|m| m.to == 2 && matches!(m.body, Body::InstallSnapshot { .. })),
        );
    }
    assert_eq!(follower.storage().snapshot().unwrap().meta.index, 5);
    assert!(
        copied.get() <= 2 * size,
        "{size} B snapshot sent in {chunks} chunks; leader copied {} B out of storage",
        copied.get()
    );
}

// Bug: a Ready that only moved the commit index asked for an fsync.
#[test]
fn commit_only_ready_needs_no_sync() {
    let mut leader = Node::new(Config::new(1, vec![1, 2, 3]), MemStorage::new()).unwrap();
    elect(&mut leader, &[2]);
    let term = leader.term();
    let (i, _) = leader.propose(b"x".to_vec()).unwrap();
    drain(&mut leader);
    leader.step(append_ok(2, 1, term, i)).unwrap();
    let rd = leader.ready().unwrap();
    assert!(rd.entries.is_empty() && rd.snapshot.is_none(), "{rd:?}");
    assert_eq!(rd.hard_state.map(|hs| hs.commit), Some(i), "{rd:?}");
    assert!(
        !rd.must_sync(),
        "a commit-only Ready costs an fsync: {rd:?}"
    );
}

// Bug: vote grants from nodes outside the configuration were counted.
#[test]
fn votes_from_non_voters_are_ignored() {
    // PreVote: grants from 98 and 99 must not move node 1 on to candidacy.
    let mut n = Node::new(Config::new(1, vec![1, 2, 3, 4, 5]), MemStorage::new()).unwrap();
    common::tick_until(&mut n, |n| n.role() != raft_core::Role::Follower);
    let pre_term = drain(&mut n)[0].term;
    for v in [98, 99] {
        n.step(vote_reply(v, 1, pre_term, true)).unwrap();
    }
    assert_eq!(
        n.role(),
        Role::PreCandidate,
        "pre-votes from 98 and 99 counted"
    );

    // Real votes (PreVote off): grants from 98 and 99 must not make it leader.
    let mut cfg = Config::new(1, vec![1, 2, 3, 4, 5]);
    cfg.pre_vote = false;
    let mut n = Node::new(cfg, MemStorage::new()).unwrap();
    common::tick_until(&mut n, |n| n.role() != raft_core::Role::Follower);
    drain(&mut n);
    let term = n.term();
    for v in [98, 99] {
        n.step(vote_reply(v, 1, term, false)).unwrap();
    }
    assert!(
        !n.is_leader(),
        "elected by nodes 98 and 99, which are not voters"
    );
}

// Bug: a follower far behind got one AppendEntries per reply instead of a
// full in-flight window.
#[test]
fn catch_up_fills_the_inflight_window() {
    let mut cfg = Config::new(1, vec![1, 2, 3]);
    cfg.max_msg_entries = 4;
    cfg.max_inflight = 8;
    let mut leader = Node::new(cfg, MemStorage::new()).unwrap();
    elect(&mut leader, &[3]);
    let term = leader.term();
    for i in 0..100u8 {
        leader.propose(vec![i]).unwrap();
    }
    drain(&mut leader);
    // Node 2 answers the probe: logs meet at 0, 100 entries to go.
    leader.step(append_ok(2, 1, term, 0)).unwrap();
    let sent = drain(&mut leader)
        .iter()
        .filter(|m| m.to == 2)
        .filter(|m| matches!(&m.body, Body::AppendEntries { entries, .. } if !entries.is_empty()))
        .count();
    assert!(
        sent > 1,
        "{sent} AppendEntries to a follower 100 entries behind, window 8"
    );
}

// Bug: index arithmetic on a reply's prev_log_index overflowed (a panic in
// builds with overflow checks, as the test profile has).
#[test]
fn bogus_conflict_index_does_not_panic() {
    let mut leader = Node::new(Config::new(1, vec![1, 2, 3]), MemStorage::new()).unwrap();
    elect(&mut leader, &[2]);
    let term = leader.term();
    let body = Body::AppendEntriesReply(AppendReply::Conflict {
        prev_log_index: u64::MAX,
        conflict_term: None,
        conflict_index: 1,
    });
    let _ = leader.step(msg(3, 1, term, body));
    assert!(leader.is_leader());
}
