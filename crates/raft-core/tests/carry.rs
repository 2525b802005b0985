//! `Config::carry_unacked`: over a transport that reorders or loses single
//! messages, each pipelined AppendEntries carries the entries still
//! unacknowledged, so whichever message arrives first passes the
//! consistency check (§5.3) instead of failing it and dropping the follower
//! to a probe.

mod common;

use common::{append_ok, appends_to, drain, elect, msg};
use raft_core::{
    AppendReply, Body, Config, Entry, HardState, Index, MemStorage, Message, Node, NodeId, Storage,
};

fn config(id: NodeId, carry: usize) -> Config {
    let mut c = Config::new(id, vec![1, 2, 3]);
    c.election_tick = 10;
    c.heartbeat_tick = 2;
    c.carry_unacked = carry;
    c
}

/// Node 1 leads nodes 2 and 3; both hold its first entry and stream.
fn leader(c: Config) -> Node<MemStorage> {
    let mut n = Node::new(c, MemStorage::new()).unwrap();
    elect(&mut n, &[2]);
    n.propose(b"first".to_vec()).unwrap();
    drain(&mut n);
    let term = n.term();
    for f in [2, 3] {
        n.step(append_ok(f, 1, term, 1)).unwrap();
    }
    drain(&mut n);
    n
}

/// Proposes one entry at a time; returns the AppendEntries each sent to 2.
fn propose_each(n: &mut Node<MemStorage>, count: u8) -> Vec<Message> {
    let mut sent = Vec::new();
    for i in 0..count {
        n.propose(vec![i; 10]).unwrap();
        let to_2: Vec<_> = drain(n).into_iter().filter(|m| m.to == 2).collect();
        assert_eq!(to_2.len(), 1, "one message per proposal: {to_2:?}");
        sent.extend(to_2);
    }
    sent
}

#[test]
fn each_append_carries_the_unacknowledged_entries() {
    let mut n = leader(config(1, 8));
    let sent = propose_each(&mut n, 3);
    assert_eq!(
        appends_to(&sent, 2),
        [(1, 2, 2), (1, 2, 3), (1, 2, 4)],
        "every message follows the match index, 1"
    );
    // Without it, each entry goes once, after the one before.
    let mut n = leader(config(1, 0));
    let sent = propose_each(&mut n, 3);
    assert_eq!(appends_to(&sent, 2), [(1, 2, 2), (2, 3, 3), (3, 4, 4)]);
}

// Proposals batched in one Ready go out together, with the entries
// still unacknowledged: one message, not one per entry.
#[test]
fn a_batch_goes_in_one_carrying_message() {
    let mut n = leader(config(1, 8));
    let mut sent = propose_each(&mut n, 1);
    for i in 0..3u8 {
        n.propose(vec![i]).unwrap();
    }
    sent.extend(drain(&mut n));
    assert_eq!(appends_to(&sent, 2), [(1, 2, 2), (1, 2, 5)]);
}

#[test]
fn carrying_stops_past_carry_unacked_entries() {
    let mut n = leader(config(1, 2));
    let sent = propose_each(&mut n, 4);
    // Unacknowledged before each send: 0, 1, 2, then 3 > 2 (plain pipelining).
    assert_eq!(
        appends_to(&sent, 2),
        [(1, 2, 2), (1, 2, 3), (1, 2, 4), (4, 5, 5)]
    );
    // Once the follower acknowledges, carrying starts again from its match.
    let term = n.term();
    n.step(append_ok(2, 1, term, 5)).unwrap();
    drain(&mut n);
    let sent = propose_each(&mut n, 2);
    assert_eq!(appends_to(&sent, 2), [(5, 6, 6), (5, 6, 7)]);
}

/// Delivers `m` to follower `f`; returns its reply.
fn deliver(f: &mut Node<MemStorage>, m: Message) -> Message {
    f.step(m).unwrap();
    drain(f)
        .into_iter()
        .find(|r| matches!(r.body, Body::AppendEntriesReply(_)))
        .expect("a reply")
}

/// Runs three proposals from a fresh leader to a fresh follower, delivering
/// the three AppendEntries in reverse order; returns the follower's replies,
/// the leader's match index for it, and what the leader sent after them.
fn reversed(carry: usize) -> (Vec<AppendReply>, Option<Index>, Vec<Message>) {
    let mut n = leader(config(1, carry));
    let mut f = Node::new(config(2, carry), MemStorage::new()).unwrap();
    let term = n.term();
    // The follower learns the leader and its first entry.
    f.step(msg(
        1,
        2,
        term,
        Body::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: n.storage().entries(1, 2, u64::MAX).unwrap(),
            leader_commit: 0,
        },
    ))
    .unwrap();
    drain(&mut f);
    let sent = propose_each(&mut n, 3);
    let mut replies = Vec::new();
    let mut after = Vec::new();
    for m in sent.into_iter().rev() {
        let r = deliver(&mut f, m);
        let Body::AppendEntriesReply(reply) = r.body else {
            unreachable!()
        };
        replies.push(reply);
        n.step(r).unwrap();
        after.extend(drain(&mut n));
    }
    (replies, n.match_index(2), after)
}

#[test]
fn an_append_that_overtakes_the_earlier_ones_is_accepted_on_its_own() {
    let (replies, matched, after) = reversed(8);
    assert_eq!(
        replies,
        [
            AppendReply::Success { match_index: 4 },
            AppendReply::Success { match_index: 3 },
            AppendReply::Success { match_index: 2 },
        ],
        "the last message holds all three entries; the earlier ones are duplicates"
    );
    assert_eq!(matched, Some(4), "late answers never lower the match");
    assert!(
        appends_to(&after, 2).is_empty(),
        "nothing to send again: {after:?}"
    );
    // Plain pipelining: the overtaking messages fail the consistency check
    // and the leader probes from the follower's end.
    let (replies, matched, after) = reversed(0);
    assert!(
        matches!(replies[0], AppendReply::Conflict { .. }),
        "{replies:?}"
    );
    assert_eq!(
        matched,
        Some(2),
        "only the first entry passed; the rest wait for the probe"
    );
    assert!(!appends_to(&after, 2).is_empty(), "a probe: {after:?}");
}

// A carried message is bounded by `max_msg_bytes` like any other: when the
// unacknowledged entries leave no room for the new one, the new one goes on
// its own (and sending never loops without progress).
#[test]
fn entries_that_do_not_fit_in_one_message_are_not_carried() {
    let mut c = config(1, 8);
    c.max_msg_bytes = 15; // one 10-byte entry
    let mut n = leader(c);
    let sent = propose_each(&mut n, 3);
    assert_eq!(appends_to(&sent, 2), [(1, 2, 2), (2, 3, 3), (3, 4, 4)]);
}

// Entries compacted on the leader cannot be carried: the new entry goes on
// its own after the last one sent.
#[test]
fn compacted_entries_are_not_carried() {
    let mut n = leader(config(1, 8));
    let term = n.term();
    let sent = propose_each(&mut n, 2);
    assert_eq!(appends_to(&sent, 2), [(1, 2, 2), (1, 2, 3)]);
    n.step(append_ok(3, 1, term, 3)).unwrap();
    drain(&mut n);
    assert_eq!(n.status().commit, 3);
    n.snapshot(3, b"state".to_vec()).unwrap();
    drain(&mut n);
    let sent = propose_each(&mut n, 1);
    assert_eq!(appends_to(&sent, 2), [(3, 4, 4)]);
}

// Only streaming carries: a new leader's probe goes after its old entries
// (§5.3), not from a match index it has yet to learn.
#[test]
fn a_probe_carries_nothing() {
    let mut n = Node::new(config(1, 8), old_log()).unwrap();
    elect(&mut n, &[2]); // its first probes are lost
    n.propose(b"new".to_vec()).unwrap();
    let mut probes = Vec::new();
    for _ in 0..config(1, 8).resend_tick {
        n.tick().unwrap();
        probes.extend(drain(&mut n).into_iter().filter_map(|m| match m.body {
            Body::AppendEntries {
                prev_log_index,
                entries,
                ..
            } if m.to == 2 => Some((prev_log_index, entries.len())),
            _ => None,
        }));
    }
    assert_eq!(
        probes,
        [(3, 1)],
        "the probe, resent once, after the old entries, with the new one"
    );
}

// The cap counts entries, not messages: one message that took a batch of
// three leaves more unacknowledged than `carry_unacked` allows.
#[test]
fn the_cap_counts_unacknowledged_entries_not_messages() {
    let mut n = leader(config(1, 2));
    let mut sent = propose_each(&mut n, 1);
    for i in 0..3u8 {
        n.propose(vec![i]).unwrap();
    }
    sent.extend(drain(&mut n));
    sent.extend(propose_each(&mut n, 1));
    // Unacknowledged before each send: 0, 1, then 4 > 2 in two messages.
    assert_eq!(appends_to(&sent, 2), [(1, 2, 2), (1, 2, 5), (5, 6, 6)]);
}

// `max_msg_entries` bounds the new entries of a carried message; the
// carried ones come on top (`Config::carry_unacked`).
#[test]
fn a_carried_message_holds_max_msg_entries_new_ones() {
    let mut c = config(1, 8);
    c.max_msg_entries = 2;
    let mut n = leader(c);
    let mut sent = propose_each(&mut n, 1);
    for i in 0..3u8 {
        n.propose(vec![i]).unwrap();
    }
    sent.extend(drain(&mut n));
    assert_eq!(
        appends_to(&sent, 2),
        [(1, 2, 2), (1, 2, 4), (1, 2, 5)],
        "2 carried with 3 and 4, then 2 to 4 carried with 5"
    );
}

// A leader of a new term streams to a follower whose match index is an
// entry of an earlier term: the carried message names that entry's term
// (Figure 2: prevLogTerm is the term of prevLogIndex), so a follower that
// missed the first message still accepts the second.
#[test]
fn a_carried_message_names_the_term_of_the_match_index() {
    let mut n = Node::new(config(1, 8), old_log()).unwrap();
    elect(&mut n, &[2]);
    let term = n.term();
    assert!(term > 1);
    // The follower holds the old entries: the probe after 3 succeeds.
    n.step(append_ok(2, 1, term, 3)).unwrap();
    drain(&mut n);
    let sent = propose_each(&mut n, 2);
    assert_eq!(appends_to(&sent, 2), [(3, 4, 4), (3, 4, 5)]);
    let Body::AppendEntries { prev_log_term, .. } = sent[1].body else {
        unreachable!()
    };
    assert_eq!(prev_log_term, 1, "the term of entry 3, not of entry 4");
    // The first message is lost; the second passes the check on its own.
    let mut f = Node::new(config(2, 8), old_log()).unwrap();
    let reply = deliver(&mut f, sent[1].clone());
    assert_eq!(
        reply.body,
        Body::AppendEntriesReply(AppendReply::Success { match_index: 5 })
    );
}

/// Storage holding three entries of term 1, none committed, in term 1.
fn old_log() -> MemStorage {
    let mut s = MemStorage::new();
    let old: Vec<_> = (1..=3).map(|i| Entry::normal(i, 1, vec![0u8])).collect();
    s.append(&old).unwrap();
    let hs = HardState {
        term: 1,
        vote: None,
        commit: 0,
    };
    s.set_hard_state(&hs).unwrap();
    s
}
