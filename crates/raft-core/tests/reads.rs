//! Linearizable reads without the log (thesis §6.4): ReadIndex on the
//! leader, follower reads, and leases (§6.4.1). Each test quotes the rule
//! it checks.

mod common;

use common::{append_ok, drain, elect, msg};
use raft_core::{
    Body, Config, Error, MemStorage, Message, Node, NodeId, ReadState, Role, Storage, Term,
};

fn config(id: NodeId, n: u64) -> Config {
    let mut c = Config::new(id, (1..=n).collect());
    c.election_tick = 10;
    c.heartbeat_tick = 2;
    c.noop_on_election = true;
    c
}

/// Acts on every Ready; returns the messages and the read states.
fn collect(n: &mut Node<MemStorage>) -> (Vec<Message>, Vec<ReadState>) {
    let mut msgs = Vec::new();
    let mut reads = Vec::new();
    while n.has_ready() {
        let rd = n.ready().unwrap();
        raft_core::persist(n.storage_mut(), &rd).unwrap();
        msgs.extend(rd.messages);
        reads.extend(rd.read_states);
        n.advance();
    }
    (msgs, reads)
}

/// The read round carried by the heartbeat to `to`, if one was sent.
fn round_to(msgs: &[Message], to: NodeId) -> Option<u64> {
    msgs.iter().find_map(|m| match m.body {
        Body::Heartbeat { ctx, .. } if m.to == to => Some(ctx),
        _ => None,
    })
}

fn ack(from: NodeId, term: Term, ctx: u64) -> Message {
    msg(from, 1, term, Body::HeartbeatReply { ctx })
}

/// Node 1 leads `n` nodes and its empty entry of the new term has
/// committed (node 2 acknowledged it).
fn leader(n: u64, cfg: impl Fn(&mut Config)) -> Node<MemStorage> {
    let mut c = config(1, n);
    cfg(&mut c);
    let mut node = Node::new(c, MemStorage::new()).unwrap();
    let voters: Vec<NodeId> = (2..=n).collect();
    elect(&mut node, &voters);
    let term = node.term();
    node.step(append_ok(2, 1, term, 1)).unwrap();
    if n > 3 {
        node.step(append_ok(3, 1, term, 1)).unwrap();
    }
    drain(&mut node);
    assert_eq!(node.status().commit, 1, "the empty entry committed");
    node
}

/// "The leader saves its current commit index in a local variable readIndex."
/// "It issues a new round of heartbeats and waits for their acknowledgments
/// from a majority of the cluster." — thesis §6.4
#[test]
fn a_read_waits_for_a_majority_of_its_round() {
    let mut n = leader(5, |_| {});
    let term = n.term();
    n.read_index(7).unwrap();
    let (msgs, reads) = collect(&mut n);
    assert!(reads.is_empty(), "not before the round is answered");
    let round = round_to(&msgs, 2).expect("a heartbeat round goes out at once");
    // An entry proposed after the read does not raise its index.
    n.propose(b"later".to_vec()).unwrap();
    collect(&mut n);
    n.step(ack(2, term, round)).unwrap();
    assert!(collect(&mut n).1.is_empty(), "2 of 5 is no majority");
    n.step(ack(4, term, round)).unwrap();
    assert_eq!(collect(&mut n).1, [ReadState { ctx: 7, index: 1 }]);
    // A late answer to the same round releases nothing twice.
    n.step(ack(5, term, round)).unwrap();
    assert!(collect(&mut n).1.is_empty());
}

/// "It can use a single round of heartbeats for any number of read-only
/// queries that it has accumulated." — thesis §6.4. (And an answer to an
/// older round confirms nothing newer.)
#[test]
fn reads_between_two_readies_share_a_round() {
    let mut n = leader(3, |_| {});
    let term = n.term();
    n.read_index(1).unwrap();
    n.read_index(2).unwrap();
    let (msgs, _) = collect(&mut n);
    let beats = msgs.iter().filter(|m| m.to == 2).count();
    assert_eq!(beats, 1, "one heartbeat for both reads");
    let first = round_to(&msgs, 2).unwrap();
    n.read_index(3).unwrap();
    let (msgs, _) = collect(&mut n);
    let second = round_to(&msgs, 2).unwrap();
    assert!(second > first);
    n.step(ack(2, term, first)).unwrap();
    let ctxs: Vec<u64> = collect(&mut n).1.iter().map(|r| r.ctx).collect();
    assert_eq!(ctxs, [1, 2]);
    n.step(ack(3, term, second)).unwrap();
    let ctxs: Vec<u64> = collect(&mut n).1.iter().map(|r| r.ctx).collect();
    assert_eq!(ctxs, [3]);
}

/// "If the partitioned leader responded to a read-only query without
/// consulting the other servers, it would return stale results, which are
/// not linearizable." — thesis §6.4. A deposed leader never answers, however
/// its old round's answers arrive.
#[test]
fn a_deposed_leader_never_answers_a_read() {
    let mut n = leader(3, |_| {});
    let term = n.term();
    n.read_index(9).unwrap();
    let (msgs, _) = collect(&mut n);
    let round = round_to(&msgs, 2).unwrap();
    // Node 3 has moved on to a new term; node 1 hears of it and steps down.
    let newer = msg(
        3,
        1,
        term + 1,
        Body::AppendEntriesReply(raft_core::AppendReply::StaleTerm),
    );
    n.step(newer).unwrap();
    assert_eq!(n.role(), Role::Follower);
    n.step(ack(2, term, round)).unwrap();
    n.step(ack(3, term, round)).unwrap();
    assert!(collect(&mut n).1.is_empty());
    // A leader cut off from everyone never answers either, and steps down.
    let mut n = leader(3, |_| {});
    n.read_index(10).unwrap();
    for _ in 0..40 {
        n.tick().unwrap();
        assert!(collect(&mut n).1.is_empty());
    }
    assert_ne!(n.role(), Role::Leader, "CheckQuorum deposed it");
}

/// "Once these acknowledgments are received, the leader knows that there
/// could not have existed a leader for a greater term at the moment it sent
/// the heartbeats." — thesis §6.4. A round of a later leadership says
/// nothing about the moment a read reached an earlier one: re-elected, the
/// node answers only the reads that reached it since.
#[test]
fn a_read_from_an_earlier_leadership_is_never_answered_by_a_later_one() {
    let mut n = leader(3, |_| {});
    let term = n.term();
    n.read_index(9).unwrap();
    collect(&mut n);
    let newer = msg(
        3,
        1,
        term + 1,
        Body::AppendEntriesReply(raft_core::AppendReply::StaleTerm),
    );
    n.step(newer).unwrap();
    collect(&mut n);
    elect(&mut n, &[2, 3]);
    let term = n.term();
    let last = n.last_index();
    n.step(append_ok(2, 1, term, last)).unwrap();
    collect(&mut n);
    n.read_index(10).unwrap();
    let (msgs, _) = collect(&mut n);
    let round = round_to(&msgs, 2).unwrap();
    n.step(ack(2, term, round)).unwrap();
    assert_eq!(
        collect(&mut n).1,
        [ReadState {
            ctx: 10,
            index: last
        }]
    );
}

/// "If the leader has not yet marked an entry from its current term
/// committed, it waits until it has done so." — thesis §6.4
#[test]
fn a_new_leader_answers_nothing_before_its_first_entry_commits() {
    let mut n = Node::new(config(1, 3), MemStorage::new()).unwrap();
    elect(&mut n, &[2, 3]);
    let term = n.term();
    n.read_index(5).unwrap();
    for _ in 0..3 {
        n.tick().unwrap();
        n.tick().unwrap();
        let (msgs, reads) = collect(&mut n);
        assert!(reads.is_empty(), "the empty entry is not committed yet");
        if let Some(round) = round_to(&msgs, 2) {
            n.step(ack(2, term, round)).unwrap();
        }
    }
    // The empty entry of the new term commits: now the read goes ahead.
    n.step(append_ok(2, 1, term, 1)).unwrap();
    let (msgs, reads) = collect(&mut n);
    assert!(reads.is_empty(), "still needs its own round");
    let round = round_to(&msgs, 2).expect("a round for the waiting read");
    n.step(ack(2, term, round)).unwrap();
    assert_eq!(collect(&mut n).1, [ReadState { ctx: 5, index: 1 }]);
}

/// "The follower could issue a request to the leader that just asked for a
/// current readIndex." — thesis §6.4
#[test]
fn a_follower_read_is_forwarded_to_the_leader() {
    let mut f = Node::new(config(2, 3), MemStorage::new()).unwrap();
    assert!(matches!(
        f.read_index(1),
        Err(Error::NotLeader { leader: None })
    ));
    let mut l = leader(3, |_| {});
    let term = l.term();
    // The follower learns of the leader from its heartbeat.
    f.step(msg(1, 2, term, Body::Heartbeat { commit: 0, ctx: 0 }))
        .unwrap();
    drain(&mut f);
    f.read_index(42).unwrap();
    let (asks, _) = collect(&mut f);
    assert!(matches!(
        asks[..],
        [Message {
            to: 1,
            body: Body::ReadIndex { ctx: 42 },
            ..
        }]
    ));
    l.step(asks[0].clone()).unwrap();
    let (msgs, _) = collect(&mut l);
    let round = round_to(&msgs, 3).unwrap();
    l.step(ack(3, term, round)).unwrap();
    let (replies, reads) = collect(&mut l);
    assert!(
        reads.is_empty(),
        "the leader hands the index to the follower"
    );
    let reply = replies
        .into_iter()
        .find(|m| matches!(m.body, Body::ReadIndexReply { .. }))
        .expect("an answer to the follower");
    f.step(reply).unwrap();
    assert_eq!(collect(&mut f).1, [ReadState { ctx: 42, index: 1 }]);
}

/// "Once the leader's heartbeats were acknowledged by a majority of the
/// cluster, the leader would assume that no other server will become leader
/// for about an election timeout, and it could extend its lease
/// accordingly." — thesis §6.4.1. Reads need a round again once it runs out.
#[test]
fn lease_reads_skip_the_round_only_while_the_lease_holds() {
    let mut n = leader(3, |c| c.lease_reads = true);
    let term = n.term();
    n.tick().unwrap();
    n.tick().unwrap();
    let (msgs, _) = collect(&mut n);
    let round = round_to(&msgs, 2).unwrap();
    n.step(ack(2, term, round)).unwrap();
    collect(&mut n);
    n.read_index(1).unwrap();
    let (msgs, reads) = collect(&mut n);
    assert_eq!(reads, [ReadState { ctx: 1, index: 1 }]);
    assert!(round_to(&msgs, 2).is_none(), "no round needed");
    // Nobody answers for an election timeout: the lease is gone (the
    // leader also steps down, CheckQuorum being required for leases).
    for _ in 0..12 {
        n.tick().unwrap();
        collect(&mut n);
    }
    n.read_index(2).ok();
    assert!(collect(&mut n).1.is_empty());
}

/// Thesis §6.4.1: the lease lasts about an election timeout, counted from
/// when the confirming heartbeats were sent (the voters' timers restarted no
/// earlier than that), shortened by the clock-drift bound. With an election
/// timeout of 10 ticks and a 10% margin, a round sent at tick t covers reads
/// through tick t + 8, however late it was answered.
#[test]
fn a_lease_runs_from_when_its_round_was_sent_minus_the_drift_margin() {
    let mut n = leader(3, |c| c.lease_reads = true);
    let term = n.term();
    n.tick().unwrap();
    n.tick().unwrap();
    let (msgs, _) = collect(&mut n);
    let round = round_to(&msgs, 2).expect("the round at tick t");
    for _ in 0..4 {
        n.tick().unwrap();
        collect(&mut n);
    }
    // Answered 4 ticks late: the lease still dates from tick t.
    n.step(ack(2, term, round)).unwrap();
    collect(&mut n);
    for _ in 0..4 {
        n.tick().unwrap();
        collect(&mut n);
    }
    n.read_index(1).unwrap();
    let (msgs, reads) = collect(&mut n);
    assert_eq!(reads, [ReadState { ctx: 1, index: 1 }], "tick t + 8");
    assert!(round_to(&msgs, 2).is_none());
    n.tick().unwrap();
    collect(&mut n);
    assert!(n.is_leader());
    n.read_index(2).unwrap();
    let (msgs, reads) = collect(&mut n);
    assert!(reads.is_empty(), "tick t + 9: the lease has run out");
    assert!(round_to(&msgs, 2).is_some(), "the read takes a round");
}

/// Leases are off by default: every read takes a heartbeat round of its own,
/// even just after one was confirmed (thesis §6.4).
#[test]
fn without_leases_every_read_takes_a_round() {
    let mut n = leader(3, |_| {});
    let term = n.term();
    n.tick().unwrap();
    n.tick().unwrap();
    let (msgs, _) = collect(&mut n);
    n.step(ack(2, term, round_to(&msgs, 2).unwrap())).unwrap();
    collect(&mut n);
    n.read_index(1).unwrap();
    let (msgs, reads) = collect(&mut n);
    assert!(reads.is_empty());
    assert!(round_to(&msgs, 2).is_some());
}

/// Leadership transfer lets another server win an election before the
/// lease would expire (thesis §3.10, §6.4.1): once a transfer begins, no
/// read is served by the lease.
#[test]
fn a_transfer_ends_the_lease() {
    let mut n = leader(3, |c| c.lease_reads = true);
    let term = n.term();
    n.tick().unwrap();
    n.tick().unwrap();
    let (msgs, _) = collect(&mut n);
    n.step(ack(2, term, round_to(&msgs, 2).unwrap())).unwrap();
    collect(&mut n);
    n.read_index(1).unwrap();
    assert_eq!(collect(&mut n).1.len(), 1, "the lease holds");
    n.transfer_leader(3).unwrap();
    collect(&mut n);
    n.read_index(2).unwrap();
    let (msgs, reads) = collect(&mut n);
    assert!(reads.is_empty(), "not by lease during a transfer");
    assert!(round_to(&msgs, 2).is_some());
}

/// A lease rests on voters refusing other candidates for an election timeout
/// (thesis §6.4.1 with §4.2.3); a voter that just restarted may have made
/// that promise before, so with leases on it refuses votes for one election
/// timeout after starting.
#[test]
fn with_leases_a_restarted_node_ignores_votes_for_an_election_timeout() {
    let mut c = config(2, 3);
    c.lease_reads = true;
    let mut n = Node::new(c, MemStorage::new()).unwrap();
    let ask = |term| {
        msg(
            3,
            2,
            term,
            Body::RequestVote {
                last_log_index: 0,
                last_log_term: 0,
                pre_vote: false,
                transfer: false,
            },
        )
    };
    n.step(ask(1)).unwrap();
    assert!(drain(&mut n).is_empty(), "ignored right after start");
    assert_eq!(n.term(), 0);
    for _ in 0..10 {
        n.tick().unwrap();
    }
    drain(&mut n);
    n.step(ask(5)).unwrap();
    let granted = drain(&mut n)
        .iter()
        .any(|m| matches!(m.body, Body::RequestVoteReply { granted: true, .. }));
    assert!(granted, "an election timeout later it votes again");
    assert!(n.storage().last_index() == 0);
}

/// A single voter is its own majority: reads are confirmed at once.
#[test]
fn a_single_node_confirms_reads_by_itself() {
    let mut n = Node::new(config(1, 1), MemStorage::new()).unwrap();
    common::tick_until(&mut n, |n| n.is_leader());
    collect(&mut n);
    n.read_index(3).unwrap();
    assert_eq!(collect(&mut n).1, [ReadState { ctx: 3, index: 1 }]);
}
