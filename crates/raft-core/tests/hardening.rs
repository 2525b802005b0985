//! Regression tests for the second review of raft-core: snapshot transfers
//! that could splice two leaders' bytes, peer input believed without a check,
//! a snapshot taken between `ready()` and persisting it, heartbeats that
//! could knock a pipelined follower back to probing, and the reply promise.

mod common;

use common::{append_ok, drain, elect, msg};
use raft_core::{
    persist, AppendReply, Body, Config, Entry, Error, HardState, MemStorage, Message, Node, NodeId,
    Rejection, Snapshot, SnapshotMeta, Storage, Term, MAX_TERM,
};

fn config(id: NodeId, n: u64) -> Config {
    let mut c = Config::new(id, (1..=n).collect());
    c.election_tick = 10;
    c.heartbeat_tick = 2;
    c
}

/// Node `id` of `n`, a follower in `term` with an empty log.
fn follower(id: NodeId, n: u64, term: Term) -> Node<MemStorage> {
    let mut s = MemStorage::new();
    s.set_hard_state(&HardState {
        term,
        vote: None,
        commit: 0,
    })
    .unwrap();
    Node::new(config(id, n), s).unwrap()
}

fn chunk(from: NodeId, term: Term, meta: SnapshotMeta, data: &[u8], offset: u64) -> Message {
    let end = offset + data.len() as u64;
    msg(
        from,
        1,
        term,
        Body::InstallSnapshot {
            meta,
            conf: Default::default(),
            offset,
            data: data.to_vec(),
            done: end == meta.size,
        },
    )
}

/// Steps `m` into `n`; returns `(next_offset, installed)` of its reply.
fn send_chunk(n: &mut Node<MemStorage>, m: Message) -> (u64, bool) {
    n.step(m).unwrap();
    drain(n)
        .into_iter()
        .find_map(|m| match m.body {
            Body::InstallSnapshotReply {
                next_offset,
                installed,
                ..
            } => Some((next_offset, installed)),
            _ => None,
        })
        .expect("a reply to every chunk")
}

/// A follower in term 2 that has taken the first half (4 of 8 bytes) of
/// node 2's snapshot through index 5, and that snapshot.
fn half_sent() -> (Node<MemStorage>, Snapshot) {
    let mut n = follower(1, 3, 2);
    let s = Snapshot::new(5, 2, b"01234567".to_vec());
    assert_eq!(
        send_chunk(&mut n, chunk(2, 2, s.meta, &s.data[..4], 0)),
        (4, false)
    );
    (n, s)
}

// Figure 13: "Create new snapshot file if first chunk (offset is 0)". Two
// leaders may encode the same state (same index and term) differently; a
// transfer begun by one must never be finished with the other's bytes.
#[test]
fn a_new_leaders_transfer_never_resumes_an_old_ones() {
    let mut n = follower(1, 3, 2);
    let a = Snapshot::new(5, 2, b"AAAAaaaa".to_vec());
    let b = Snapshot::new(5, 2, b"BBBBbbbb".to_vec());
    assert_eq!(
        send_chunk(&mut n, chunk(2, 2, a.meta, &a.data[..4], 0)),
        (4, false)
    );
    // Node 3 wins term 3 and sends its own encoding from the start.
    assert_eq!(
        send_chunk(&mut n, chunk(3, 3, b.meta, &b.data[..4], 0)),
        (4, false)
    );
    assert_eq!(
        send_chunk(&mut n, chunk(3, 3, b.meta, &b.data[4..], 4)),
        (8, true)
    );
    assert_eq!(n.storage().snapshot().unwrap(), b);
}

// A partial transfer belongs to one sender in one term: a later leader that
// (wrongly) continues it from the middle is asked to start over.
#[test]
fn a_partial_transfer_does_not_survive_a_term_change() {
    let (mut n, s) = half_sent();
    assert_eq!(
        send_chunk(&mut n, chunk(3, 3, s.meta, &s.data[4..], 4)),
        (0, false),
        "nothing of node 3's transfer is here yet"
    );
    assert_eq!(n.storage().snapshot().unwrap().meta.index, 0);
}

// The same, without a term change: within one term only the sender that
// began a transfer may continue it (a second sender in one term is no
// honest leader, and its bytes must not be spliced in either).
#[test]
fn a_partial_transfer_is_continued_only_by_its_sender() {
    let (mut n, s) = half_sent();
    assert_eq!(
        send_chunk(&mut n, chunk(3, 2, s.meta, &s.data[4..], 4)),
        (0, false),
        "node 3 began nothing here"
    );
    assert_eq!(n.storage().snapshot().unwrap().meta.index, 0);
}

// And one sender's transfer ends with its term: the same node leading again
// in a later term starts over (its snapshot may be encoded anew).
#[test]
fn a_partial_transfer_is_not_continued_by_its_sender_in_a_later_term() {
    let (mut n, s) = half_sent();
    assert_eq!(
        send_chunk(&mut n, chunk(2, 3, s.meta, &s.data[4..], 4)),
        (0, false),
        "term 3's transfer has not begun"
    );
    assert_eq!(n.storage().snapshot().unwrap().meta.index, 0);
}

// A candidacy ends the transfer too: the node's own election moves it to a
// new term without passing through a follower's term change.
#[test]
fn a_partial_transfer_does_not_survive_the_receivers_own_campaign() {
    let (mut n, s) = half_sent();
    common::tick_until(&mut n, |n| n.role() == raft_core::Role::PreCandidate);
    drain(&mut n);
    n.step(common::vote_reply(3, 1, 3, true)).unwrap();
    drain(&mut n);
    assert_eq!((n.role(), n.term()), (raft_core::Role::Candidate, 3));
    // Node 2 wins term 3 and (wrongly) goes on from the middle.
    assert_eq!(
        send_chunk(&mut n, chunk(2, 3, s.meta, &s.data[4..], 4)),
        (0, false),
        "term 3's transfer has not begun"
    );
    assert_eq!(n.storage().snapshot().unwrap().meta.index, 0);
}

// Figure 13, InstallSnapshot receiver: "Create new snapshot file if first
// chunk (offset is 0)" — even from the same sender in the same term, a first
// chunk (a late duplicate, or a transfer begun anew) throws away what came.
#[test]
fn a_first_chunk_always_starts_over() {
    let mut n = follower(1, 3, 2);
    let s = Snapshot::new(5, 2, b"0123456789ab".to_vec());
    let c = |offset: usize| chunk(2, 2, s.meta, &s.data[offset..offset + 4], offset as u64);
    assert_eq!(send_chunk(&mut n, c(0)), (4, false));
    assert_eq!(send_chunk(&mut n, c(4)), (8, false));
    assert_eq!(send_chunk(&mut n, c(0)), (4, false), "started over");
    assert_eq!(send_chunk(&mut n, c(4)), (8, false));
    assert_eq!(send_chunk(&mut n, c(8)), (12, true));
    assert_eq!(n.storage().snapshot().unwrap(), s);
}

// A snapshot that covers nothing past the follower's commit index needs no
// transfer: the first chunk is answered "installed" (committed entries are
// the leader's own, so the follower already holds what it covers).
#[test]
fn a_snapshot_within_the_commit_index_is_not_transferred() {
    let mut n = follower(1, 3, 2);
    let entries: Vec<Entry> = (1..=5).map(|i| Entry::normal(i, 2, vec![])).collect();
    let append = Body::AppendEntries {
        prev_log_index: 0,
        prev_log_term: 0,
        entries,
        leader_commit: 5,
    };
    n.step(msg(2, 1, 2, append)).unwrap();
    drain(&mut n);
    assert_eq!(n.status().commit, 5);
    let s = Snapshot::new(5, 2, b"01234567".to_vec());
    assert_eq!(
        send_chunk(&mut n, chunk(2, 2, s.meta, &s.data[..4], 0)),
        (0, true)
    );
    assert_eq!(
        n.storage().snapshot().unwrap().meta.index,
        0,
        "kept its log"
    );
}

// §5.2: "If the leader's term is at least as large as the candidate's
// current term, then the candidate recognizes the leader as legitimate and
// returns to follower state." An InstallSnapshot is such an RPC.
#[test]
fn a_candidate_hearing_a_snapshot_of_its_term_becomes_a_follower() {
    let mut n = follower(1, 3, 2);
    common::tick_until(&mut n, |n| n.role() == raft_core::Role::PreCandidate);
    drain(&mut n);
    n.step(common::vote_reply(3, 1, 3, true)).unwrap();
    drain(&mut n);
    assert_eq!((n.role(), n.term()), (raft_core::Role::Candidate, 3));
    let s = Snapshot::new(5, 3, b"01234567".to_vec());
    assert_eq!(
        send_chunk(&mut n, chunk(2, 3, s.meta, &s.data[..4], 0)),
        (4, false)
    );
    assert_eq!((n.role(), n.leader()), (raft_core::Role::Follower, Some(2)));
}

// The finished image must match the length and CRC32C in its metadata.
#[test]
fn a_damaged_transfer_is_refused_and_asked_for_again() {
    let mut n = follower(1, 3, 2);
    let s = Snapshot::new(5, 2, b"01234567".to_vec());
    assert_eq!(
        send_chunk(&mut n, chunk(2, 2, s.meta, b"0123", 0)),
        (4, false)
    );
    assert_eq!(
        send_chunk(&mut n, chunk(2, 2, s.meta, b"45X7", 4)),
        (0, false),
        "damaged: start over"
    );
    let st = n.status();
    assert_eq!(
        (st.rejected, st.last_rejection),
        (1, Some(Rejection::SnapshotChecksum))
    );
    assert_eq!(n.storage().snapshot().unwrap().meta.index, 0);
    assert_eq!(
        send_chunk(&mut n, chunk(2, 2, s.meta, b"0123", 0)),
        (4, false)
    );
    assert_eq!(
        send_chunk(&mut n, chunk(2, 2, s.meta, b"4567", 4)),
        (8, true)
    );
}

/// Node 1 leads a 3-node cluster in which node 3 matches its log of
/// `entries` entries and node 2 is silent.
fn leader_with(entries: u8) -> Node<MemStorage> {
    let mut n = Node::new(config(1, 3), MemStorage::new()).unwrap();
    elect(&mut n, &[3]);
    for i in 0..entries {
        n.propose(vec![i]).unwrap();
    }
    drain(&mut n);
    let term = n.term();
    n.step(append_ok(3, 1, term, entries.into())).unwrap();
    drain(&mut n);
    n
}

// Review finding: an InstallSnapshot reply's index was believed even past
// the leader's log, so a forged reply could commit entries only the leader
// held, and u64::MAX overflowed.
#[test]
fn snapshot_replies_about_other_snapshots_are_not_believed() {
    let mut n = leader_with(1);
    let term = n.term();
    assert_eq!(n.status().commit, 1);
    n.propose(b"only on the leader".to_vec()).unwrap();
    drain(&mut n);
    for index in [2, 101, u64::MAX] {
        let reply = Body::InstallSnapshotReply {
            meta: SnapshotMeta::of(index, term, b""),
            next_offset: 0,
            installed: true,
        };
        n.step(msg(2, 1, term, reply)).unwrap();
        drain(&mut n);
        assert_eq!(n.match_index(2), Some(0), "index {index}");
        assert_eq!(n.status().commit, 1, "index {index}");
    }
    assert_eq!(n.status().last_rejection, Some(Rejection::IndexTooLarge));
}

/// Node 1 leads a 3-node cluster, has committed 5 entries with node 3 and
/// compacted through 4; node 2 (empty) answered a heartbeat and is being
/// sent that snapshot. Returns the leader and the first chunk's metadata.
fn leader_sending_snapshot() -> (Node<MemStorage>, SnapshotMeta) {
    let mut n = leader_with(5);
    assert_eq!(n.status().commit, 5);
    n.snapshot(4, b"state at 4".to_vec()).unwrap();
    drain(&mut n);
    n.tick().unwrap();
    n.tick().unwrap();
    let beat = drain(&mut n).into_iter().find(|m| m.to == 2).unwrap();
    let Body::Heartbeat { ctx, .. } = beat.body else {
        panic!("a heartbeat: {beat:?}");
    };
    let term = n.term();
    n.step(msg(2, 1, term, Body::HeartbeatReply { ctx }))
        .unwrap();
    let meta = drain(&mut n)
        .into_iter()
        .find_map(|m| match m.body {
            Body::InstallSnapshot { meta, .. } if m.to == 2 => Some(meta),
            _ => None,
        })
        .expect("the snapshot goes to node 2");
    assert_eq!(meta.index, 4);
    (n, meta)
}

// Only a reply about the snapshot pinned for the transfer counts: its index
// is the one the leader knows to be in its log. A reply naming another
// snapshot, even to a follower that is being sent one, moves nothing.
#[test]
fn during_a_transfer_only_replies_about_the_pinned_snapshot_count() {
    let (mut n, pinned) = leader_sending_snapshot();
    let term = n.term();
    let reply = |meta, next_offset, installed| {
        msg(
            2,
            1,
            term,
            Body::InstallSnapshotReply {
                meta,
                next_offset,
                installed,
            },
        )
    };
    for other in [
        SnapshotMeta::of(101, term, b""),
        SnapshotMeta::of(5, term, b"state at 5"),
        SnapshotMeta::of(4, term, b"other bytes"),
    ] {
        n.step(reply(other, 0, true)).unwrap();
        assert!(drain(&mut n).is_empty(), "{other:?}");
        assert_eq!(n.match_index(2), Some(0), "{other:?}");
    }
    n.step(reply(pinned, pinned.size, true)).unwrap();
    drain(&mut n);
    assert_eq!(n.match_index(2), Some(4));
}

// A follower is sent a snapshot because the entries it lacks are compacted
// away (§7). An AppendEntries reply that shows it already holds the
// snapshot's index ends the transfer: entries stream to it again. One that
// shows less (a late reply) changes nothing: the transfer goes on, not
// restarted from offset 0.
#[test]
fn an_append_reply_ends_a_transfer_only_past_the_snapshot() {
    let (mut n, pinned) = leader_sending_snapshot();
    let term = n.term();
    n.step(append_ok(2, 1, term, pinned.index - 2)).unwrap();
    assert!(drain(&mut n).is_empty(), "the transfer is not restarted");
    n.propose(b"held for the snapshot".to_vec()).unwrap();
    assert!(appends_to(&drain(&mut n), 2).is_empty());
    n.step(append_ok(2, 1, term, pinned.index + 1)).unwrap();
    drain(&mut n);
    n.propose(b"streamed".to_vec()).unwrap();
    assert!(
        !appends_to(&drain(&mut n), 2).is_empty(),
        "back to sending entries"
    );
}

// Heartbeats carry no log position, so a follower cannot check them against
// its log: the commit index they carry is capped at what the follower is
// known to hold, and a follower never commits past its own last entry.
#[test]
fn a_heartbeat_carries_no_commit_past_the_followers_match() {
    let mut n = leader_with(3);
    assert_eq!(n.status().commit, 3);
    n.tick().unwrap();
    n.tick().unwrap();
    let commits: Vec<(NodeId, u64)> = drain(&mut n)
        .into_iter()
        .filter_map(|m| match m.body {
            Body::Heartbeat { commit, .. } => Some((m.to, commit)),
            _ => None,
        })
        .collect();
    assert_eq!(commits, [(2, 0), (3, 3)], "node 2 is known to hold nothing");
    // A follower told of a commit index past its log commits what it holds.
    let mut f = follower(1, 3, 2);
    f.storage_mut()
        .append(&[Entry::normal(1, 2, b"a".to_vec())])
        .unwrap();
    let mut f = Node::new(config(1, 3), f.into_storage()).unwrap();
    f.step(msg(2, 1, 2, Body::Heartbeat { commit: 3, ctx: 0 }))
        .unwrap();
    drain(&mut f);
    assert_eq!(f.status().commit, 1, "never past its last index");
}

// Review finding: a peer's term of u64::MAX was adopted and the next
// campaign overflowed (a panic in debug builds; term 0 in release).
#[test]
fn terms_no_honest_peer_could_reach_are_refused() {
    let mut n = follower(1, 3, 4);
    for term in [u64::MAX, MAX_TERM + 1] {
        let hb = msg(2, 1, term, Body::Heartbeat { commit: 0, ctx: 0 });
        n.step(hb).unwrap();
        assert!(drain(&mut n).is_empty(), "no reply to what is refused");
        assert_eq!(n.term(), 4);
    }
    assert_eq!(
        (n.status().rejected, n.status().last_rejection),
        (2, Some(Rejection::TermTooLarge))
    );
    // The node still campaigns normally.
    common::tick_until(&mut n, |n| n.role() != raft_core::Role::Follower);
    assert_eq!(drain(&mut n)[0].term, 5, "PreVote for the next term");
    // At the very top it stops campaigning rather than wrapping around.
    let mut top = follower(1, 3, MAX_TERM);
    for _ in 0..100 {
        top.tick().unwrap();
    }
    assert_eq!(top.term(), MAX_TERM);
}

// Review finding: the floor check ignored a local snapshot already handed
// out in a Ready not yet persisted, so an older one was accepted and the
// next persist failed with a fatal storage error.
#[test]
fn a_snapshot_older_than_one_in_an_unpersisted_ready_is_refused() {
    let mut n = Node::new(config(1, 1), MemStorage::new()).unwrap();
    common::tick_until(&mut n, |n| n.is_leader());
    for i in 0..10u8 {
        n.propose(vec![i]).unwrap();
    }
    drain(&mut n);
    n.snapshot(8, b"at 8".to_vec()).unwrap();
    let rd = n.ready().unwrap();
    assert_eq!(rd.local_snapshot.as_ref().map(|s| s.meta.index), Some(8));
    assert!(matches!(
        n.snapshot(5, b"at 5".to_vec()),
        Err(Error::BadSnapshotIndex {
            index: 5,
            snapshot: 8,
            ..
        })
    ));
    persist(n.storage_mut(), &rd).unwrap();
    n.advance();
    assert_eq!(n.storage().first_index(), 9);
    n.snapshot(10, b"at 10".to_vec()).unwrap();
}

// §7: a snapshot replaces the log up to its index, so a new one must lie
// past the stored one. Once the earlier snapshot is persisted, the floor is
// the stored snapshot's index, and a restart keeps it.
#[test]
fn a_snapshot_at_or_below_the_stored_one_is_refused() {
    let mut n = Node::new(config(1, 1), MemStorage::new()).unwrap();
    common::tick_until(&mut n, |n| n.is_leader());
    for i in 0..10u8 {
        n.propose(vec![i]).unwrap();
    }
    drain(&mut n);
    n.snapshot(8, b"at 8".to_vec()).unwrap();
    drain(&mut n);
    assert_eq!(n.storage().snapshot().unwrap().meta.index, 8);
    let refused = |n: &mut Node<MemStorage>, index| {
        assert!(
            matches!(
                n.snapshot(index, b"old".to_vec()),
                Err(Error::BadSnapshotIndex { snapshot: 8, .. })
            ),
            "snapshot at {index} below the stored one at 8"
        );
    };
    refused(&mut n, 5);
    refused(&mut n, 8);
    let mut n = Node::new(config(1, 1), n.into_storage()).unwrap();
    refused(&mut n, 5);
    assert_eq!(n.storage().snapshot().unwrap().meta.index, 8);
}

// The application may take a snapshot of its own just before the leader's
// snapshot is installed, both waiting for the same Ready. The leader's one
// covers it: the older local snapshot is dropped, so that persisting the
// Ready never writes a snapshot older than the one just stored.
#[test]
fn a_pending_local_snapshot_below_an_installed_one_is_dropped() {
    let mut n = follower(1, 3, 2);
    let entries: Vec<Entry> = (1..=3).map(|i| Entry::normal(i, 2, vec![])).collect();
    let append = Body::AppendEntries {
        prev_log_index: 0,
        prev_log_term: 0,
        entries,
        leader_commit: 3,
    };
    n.step(msg(2, 1, 2, append)).unwrap();
    drain(&mut n);
    assert_eq!(n.status().applied, 3);
    n.snapshot(3, b"local at 3".to_vec()).unwrap();
    let s = Snapshot::new(5, 2, b"leader at 5".to_vec());
    n.step(chunk(2, 2, s.meta, &s.data, 0)).unwrap();
    let rd = n.ready().unwrap();
    assert_eq!(rd.snapshot.as_ref().map(|s| s.meta.index), Some(5));
    assert!(rd.local_snapshot.is_none(), "covered by the leader's");
    persist(n.storage_mut(), &rd).unwrap();
    n.advance();
    assert_eq!(n.storage().snapshot().unwrap(), s);
}

// The narrowed promise: a request that passes the door gets exactly one
// reply; one no correct peer could send gets none and is counted.
#[test]
fn malformed_requests_get_no_reply_and_are_counted() {
    let gap = Body::AppendEntries {
        prev_log_index: 0,
        prev_log_term: 0,
        entries: vec![Entry::normal(2, 1, vec![])],
        leader_commit: 0,
    };
    let future_snapshot = Body::InstallSnapshot {
        meta: SnapshotMeta::of(3, 9, b"x"),
        conf: Default::default(),
        offset: 0,
        data: b"x".to_vec(),
        done: true,
    };
    for (body, why) in [
        (gap, Rejection::EntriesNotContiguous),
        (future_snapshot, Rejection::BadSnapshotMeta),
    ] {
        let mut n = follower(1, 3, 1);
        n.step(msg(2, 1, 1, body)).unwrap();
        assert!(drain(&mut n).is_empty());
        assert_eq!(n.status().last_rejection, Some(why));
    }
    // A leader hearing from another leader of its own term.
    let mut n = leader_with(0);
    let term = n.term();
    let hb = msg(2, 1, term, Body::Heartbeat { commit: 0, ctx: 1 });
    n.step(hb).unwrap();
    assert!(drain(&mut n).is_empty());
    assert_eq!(n.status().last_rejection, Some(Rejection::SameTermLeader));
    assert!(n.is_leader());
}

/// Node 1 leads a 3-node cluster with node 2 in Replicate and two
/// AppendEntries in flight to it; returns the leader.
fn pipelined_leader() -> Node<MemStorage> {
    let mut n = leader_with(1);
    let term = n.term();
    n.step(append_ok(2, 1, term, 1)).unwrap();
    drain(&mut n);
    for i in 0..2u8 {
        n.propose(vec![i]).unwrap();
        let to_2 = drain(&mut n).into_iter().filter(|m| m.to == 2).count();
        assert_eq!(to_2, 1, "pipelined: sent without waiting");
    }
    n
}

/// `prev_log_index` of each AppendEntries with entries to `to`.
fn appends_to(msgs: &[Message], to: NodeId) -> Vec<u64> {
    common::appends_to(msgs, to).iter().map(|a| a.0).collect()
}

// Review finding: heartbeats carried prev = next - 1 and, overtaking the
// entries in flight, drew a rejection that dropped the pipeline to Probe.
#[test]
fn a_heartbeat_overtaking_entries_in_flight_keeps_the_pipeline() {
    let mut n = pipelined_leader();
    let term = n.term();
    n.tick().unwrap();
    n.tick().unwrap();
    let beats = drain(&mut n);
    let to_2 = beats.iter().find(|m| m.to == 2).expect("a heartbeat");
    let Body::Heartbeat { commit, ctx } = to_2.body else {
        panic!("heartbeats carry no log position: {to_2:?}");
    };
    assert_eq!(commit, 1, "capped at what node 2 is known to hold");
    n.step(msg(2, 1, term, Body::HeartbeatReply { ctx }))
        .unwrap();
    drain(&mut n);
    n.propose(b"next".to_vec()).unwrap();
    assert_eq!(
        appends_to(&drain(&mut n), 2),
        [3],
        "the next entry streams on after entries 2 and 3"
    );
}

// A probe lost on the way goes again once the follower answers a heartbeat
// (the answer shows it is reachable), even when the leader has nothing new
// for it: only a probe's success moves the follower to streaming.
#[test]
fn a_lost_probe_goes_again_on_a_heartbeat_reply() {
    let mut n = Node::new(config(1, 3), MemStorage::new()).unwrap();
    elect(&mut n, &[2]); // its first AppendEntries to 2 and 3 are lost
    let term = n.term();
    n.tick().unwrap();
    n.tick().unwrap();
    let ctx = drain(&mut n)
        .into_iter()
        .find_map(|m| match m.body {
            Body::Heartbeat { ctx, .. } if m.to == 2 => Some(ctx),
            _ => None,
        })
        .expect("a heartbeat to 2");
    n.step(msg(2, 1, term, Body::HeartbeatReply { ctx }))
        .unwrap();
    let probes = drain(&mut n)
        .into_iter()
        .filter(|m| m.to == 2 && matches!(m.body, Body::AppendEntries { .. }))
        .count();
    assert_eq!(probes, 1);
}

// A probe lost on the way to a follower that does not answer heartbeats
// either (its replies are lost too) goes again after `resend_tick` ticks, not
// only when a heartbeat reply comes.
#[test]
fn a_lost_probe_goes_again_after_resend_tick_ticks() {
    let mut n = Node::new(config(1, 3), MemStorage::new()).unwrap();
    elect(&mut n, &[2]); // its first AppendEntries to 2 and 3 are lost
    let resend = config(1, 3).resend_tick;
    let appends_to_2 = |n: &mut Node<MemStorage>| {
        drain(n)
            .into_iter()
            .filter(|m| m.to == 2 && matches!(m.body, Body::AppendEntries { .. }))
            .count()
    };
    for _ in 1..resend {
        n.tick().unwrap();
        assert_eq!(appends_to_2(&mut n), 0, "resent too early");
    }
    n.tick().unwrap();
    assert_eq!(appends_to_2(&mut n), 1, "the probe goes again");
}

// A window whose messages were all lost must not wait forever: after
// `resend_tick` ticks with no answer the follower is probed again, once.
#[test]
fn a_lost_window_is_probed_after_resend_tick_silent_ticks() {
    let mut n = pipelined_leader();
    let resend = config(1, 3).resend_tick;
    let probe_to_2 = |m: &Message| {
        m.to == 2
            && matches!(&m.body, Body::AppendEntries { prev_log_index: 1, entries, .. } if !entries.is_empty())
    };
    for _ in 1..resend {
        n.tick().unwrap();
        let probes: Vec<_> = drain(&mut n).into_iter().filter(probe_to_2).collect();
        assert!(probes.is_empty(), "resent too early: {probes:?}");
    }
    n.tick().unwrap();
    let mut probes: Vec<_> = drain(&mut n).into_iter().filter(probe_to_2).collect();
    for _ in 0..resend - 1 {
        n.tick().unwrap();
        probes.extend(drain(&mut n).into_iter().filter(probe_to_2));
    }
    assert_eq!(probes.len(), 1, "one probe from match + 1 = 2: {probes:?}");
    // The follower (which never got entries 2 and 3) answers it.
    let term = n.term();
    let ok = AppendReply::Success { match_index: 3 };
    n.step(msg(2, 1, term, Body::AppendEntriesReply(ok)))
        .unwrap();
    drain(&mut n);
    assert_eq!(n.match_index(2), Some(3));
}

/// Node 1 leads 2 and 3; node 3 holds its 6 entries, the leader has
/// compacted through 3 and node 2, whose log is empty, is being sent that
/// snapshot in `chunk_bytes` chunks. Then the leader
/// appends 3 more entries (3 holds them) and compacts through 9.
fn transfer_then_compaction(chunk_bytes: usize, answer_first_chunk: bool) -> Vec<Message> {
    let mut c = config(1, 3);
    c.snapshot_chunk_bytes = chunk_bytes;
    let mut n = Node::new(c, MemStorage::new()).unwrap();
    elect(&mut n, &[3]);
    let term = n.term();
    for i in 0..6u8 {
        n.propose(vec![i]).unwrap();
    }
    drain(&mut n);
    n.step(append_ok(3, 1, term, 6)).unwrap();
    drain(&mut n);
    n.snapshot(3, b"state through 3 ..".to_vec()).unwrap();
    drain(&mut n);
    // Node 2 answers the new leader's first probe (sent when its log was
    // empty): what it needs next is compacted.
    n.step(append_ok(2, 1, term, 0)).unwrap();
    let first = drain(&mut n);
    let chunk = first
        .iter()
        .find_map(|m| match &m.body {
            Body::InstallSnapshot { meta, .. } if m.to == 2 => Some(*meta),
            _ => None,
        })
        .expect("a transfer to 2");
    assert_eq!(chunk.index, 3);
    if answer_first_chunk {
        let reply = Body::InstallSnapshotReply {
            meta: chunk,
            next_offset: chunk_bytes as u64,
            installed: false,
        };
        n.step(msg(2, 1, term, reply)).unwrap();
        drain(&mut n);
    }
    for i in 0..3u8 {
        n.propose(vec![i]).unwrap();
    }
    drain(&mut n);
    n.step(append_ok(3, 1, term, 9)).unwrap();
    drain(&mut n);
    n.snapshot(9, b"state through 9 ..".to_vec()).unwrap();
    drain(&mut n);
    let mut sent = Vec::new();
    for _ in 0..2 * config(1, 3).heartbeat_tick {
        n.tick().unwrap();
        sent.extend(drain(&mut n).into_iter().filter(|m| m.to == 2));
    }
    sent
}

/// The (index, offset) of each InstallSnapshot in `msgs`.
fn chunks(msgs: &[Message]) -> Vec<(u64, u64)> {
    msgs.iter()
        .filter_map(|m| match &m.body {
            Body::InstallSnapshot { meta, offset, .. } => Some((meta.index, *offset)),
            _ => None,
        })
        .collect()
}

// A transfer the follower never answered moves to the leader's newest
// snapshot at the next silent heartbeat: installing the old one would
// only be followed by a second transfer.
#[test]
fn an_unanswered_transfer_moves_to_the_newest_snapshot() {
    let sent = transfer_then_compaction(8, false);
    let got = chunks(&sent);
    assert!(!got.is_empty(), "the transfer goes again: {sent:?}");
    assert!(
        got.iter().all(|&(index, offset)| index == 9 && offset == 0),
        "the newest snapshot, from its start: {got:?}"
    );
}

// One the follower has answered stays pinned (a new snapshot must never
// restart a transfer under way, or a busy leader starves the follower).
#[test]
fn an_answered_transfer_stays_on_its_snapshot() {
    let sent = transfer_then_compaction(8, true);
    let got = chunks(&sent);
    assert!(!got.is_empty(), "the transfer goes again: {sent:?}");
    assert!(
        got.iter().all(|&(index, _)| index == 3),
        "still the snapshot through 3: {got:?}"
    );
}
