//! The service's bookkeeping, over a stand-in node whose log the test writes:
//! who waits for what, and what each waiting client hears when its entry is
//! applied, lost, or its leader steps down.

use raft_core::{Entry, EntryKind, Error, Index, NodeId, Snapshot, Term};
use raft_kv::command::{encode, Record, RecordBody};
use raft_kv::{
    Answer, ClientReply, ClientRequest, Consistency, KvError, Op, OpResult, RaftNode, ReadPath,
    RecordError, Replies, RequestBody, Service, ServiceConfig, Store, StoreConfig,
};

/// A node whose role the test sets; it records proposals and read requests.
#[derive(Default)]
struct FakeNode {
    term: Term,
    leading: bool,
    leader: Option<NodeId>,
    last: Index,
    proposed: Vec<(Index, Term, Vec<u8>)>,
    reads: Vec<u64>,
}

impl FakeNode {
    fn leader(id: NodeId, term: Term) -> Self {
        FakeNode {
            term,
            leading: true,
            leader: Some(id),
            ..FakeNode::default()
        }
    }

    /// The entry it proposed at `index`, as committed.
    fn entry(&self, index: Index) -> Entry {
        let (i, term, data) = self.proposed.iter().find(|p| p.0 == index).unwrap().clone();
        Entry::normal(i, term, data)
    }

    fn step_down(&mut self, term: Term, leader: Option<NodeId>) {
        self.term = term;
        self.leading = false;
        self.leader = leader;
    }
}

impl RaftNode for FakeNode {
    fn propose(&mut self, data: Vec<u8>) -> Result<(Index, Term), Error> {
        if !self.leading {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        self.last += 1;
        self.proposed.push((self.last, self.term, data));
        Ok((self.last, self.term))
    }

    fn read_index(&mut self, ctx: u64) -> Result<(), Error> {
        if !self.leading {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        self.reads.push(ctx);
        Ok(())
    }

    fn is_leader(&self) -> bool {
        self.leading
    }

    fn term(&self) -> Term {
        self.term
    }

    fn leader(&self) -> Option<NodeId> {
        self.leader
    }
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    }
}

fn get(key: &str) -> Op {
    Op::Get {
        key: key.as_bytes().to_vec(),
    }
}

fn write(id: u64, session: u64, seq: u64, op: Op) -> ClientRequest {
    ClientRequest {
        id,
        body: RequestBody::Write { session, seq, op },
    }
}

fn read(id: u64, op: Op) -> ClientRequest {
    ClientRequest {
        id,
        body: RequestBody::Read {
            op,
            consistency: Consistency::Linearizable,
        },
    }
}

fn register(id: u64) -> ClientRequest {
    ClientRequest {
        id,
        body: RequestBody::Register,
    }
}

/// The single reply in `out`, to client `to`.
fn only(out: Replies<&'static str>, to: &str) -> Result<Answer, KvError> {
    assert_eq!(out.len(), 1, "expected one reply: {out:?}");
    let (client, ClientReply { result, .. }) = out.into_iter().next().unwrap();
    assert_eq!(client, to);
    result
}

/// A leader at term 1 with session 1 registered at index 1.
fn with_session(cfg: ServiceConfig) -> (Service<&'static str>, FakeNode) {
    let mut svc = Service::new(cfg);
    let mut node = FakeNode::leader(1, 1);
    assert!(svc.on_request(&mut node, "c", register(1), 0).is_empty());
    let out = svc.apply(&node.entry(1)).unwrap();
    assert_eq!(only(out, "c"), Ok(Answer::Registered { session: 1 }));
    (svc, node)
}

#[test]
fn a_write_is_answered_when_its_entry_is_applied() {
    let (mut svc, mut node) = with_session(ServiceConfig::default());
    assert!(svc
        .on_request(&mut node, "c", write(2, 1, 1, put("a", "1")), 42)
        .is_empty());
    assert_eq!(svc.pending(), 1);
    let record = raft_kv::command::decode(&node.proposed[1].2).unwrap();
    assert_eq!(record.stamp_ms, 42, "the leader stamps its clock");
    let out = svc.apply(&node.entry(2)).unwrap();
    assert_eq!(only(out, "c"), Ok(Answer::Op(OpResult::Replaced(None))));
    assert_eq!(svc.pending(), 0);
    assert_eq!(svc.store().clock_ms(), 42);
}

#[test]
fn a_plain_write_needs_no_session_and_is_applied_each_time_it_is_proposed() {
    let mut svc: Service<&'static str> = Service::new(ServiceConfig::default());
    let mut node = FakeNode::leader(1, 1);
    let plain = |id| ClientRequest {
        id,
        body: RequestBody::PlainWrite {
            op: Op::Append {
                key: b"a".to_vec(),
                value: b"x".to_vec(),
            },
        },
    };
    // A client retrying after an unknown outcome proposes the write again:
    // both copies apply (at-least-once), unlike a session's retry.
    assert!(svc.on_request(&mut node, "c", plain(1), 5).is_empty());
    assert!(svc.on_request(&mut node, "c", plain(2), 6).is_empty());
    let record = raft_kv::command::decode(&node.proposed[0].2).unwrap();
    assert_eq!(record.stamp_ms, 5);
    let out = svc.apply(&node.entry(1)).unwrap();
    assert_eq!(
        only(out, "c"),
        Ok(Answer::Op(OpResult::Appended { len: 1 }))
    );
    let out = svc.apply(&node.entry(2)).unwrap();
    assert_eq!(
        only(out, "c"),
        Ok(Answer::Op(OpResult::Appended { len: 2 }))
    );
    assert_eq!(
        svc.store().map().get(&b"a"[..]).map(|v| &v[..]),
        Some(&b"xx"[..])
    );
    assert!(svc.store().sessions().is_empty(), "no session was opened");
    // A follower refuses it like any write, and the size limits apply.
    node.step_down(2, Some(3));
    let out = svc.on_request(&mut node, "f", plain(3), 7);
    assert_eq!(only(out, "f"), Err(KvError::NotLeader { leader: Some(3) }));
    let huge = ClientRequest {
        id: 4,
        body: RequestBody::PlainWrite {
            op: put("a", &"v".repeat(2 << 20)),
        },
    };
    let out = svc.on_request(&mut node, "h", huge, 8);
    assert!(matches!(only(out, "h"), Err(KvError::ValueTooLarge { .. })));
}

#[test]
fn another_term_at_the_index_means_the_entry_was_lost() {
    let (mut svc, mut node) = with_session(ServiceConfig::default());
    svc.on_request(&mut node, "c", write(2, 1, 1, put("a", "1")), 0);
    // A new leader (node 2, term 2) replaced index 2 with its own entry.
    let other = Entry::normal(
        2,
        2,
        encode(&Record {
            stamp_ms: 0,
            body: RecordBody::Register,
        }),
    );
    let out = svc.apply(&other).unwrap();
    assert!(matches!(only(out, "c"), Err(KvError::EntryLost { .. })));
    assert_eq!(svc.store().map().len(), 0);
}

#[test]
fn a_leader_that_steps_down_answers_not_leader_with_the_hint() {
    let (mut svc, mut node) = with_session(ServiceConfig::default());
    svc.on_request(&mut node, "w", write(2, 1, 1, put("a", "1")), 0);
    svc.on_request(&mut node, "r", read(3, get("a")), 0);
    node.step_down(2, Some(3));
    let mut out = svc.tick(&node, 1);
    out.sort_by_key(|(c, _)| *c);
    let hint = Err(KvError::NotLeader { leader: Some(3) });
    assert_eq!(
        out.iter()
            .map(|(c, r)| (*c, r.result.clone()))
            .collect::<Vec<_>>(),
        vec![("r", hint.clone()), ("w", hint.clone())]
    );
    // A follower refuses new requests with the same hint.
    let out = svc.on_request(&mut node, "w", write(4, 1, 1, put("a", "1")), 2);
    assert_eq!(only(out, "w"), hint);
    // The old entry, committed after all by the new leader, answers no one twice.
    assert!(svc.apply(&node.entry(2)).unwrap().is_empty());
    assert_eq!(svc.store().map().len(), 1);
}

#[test]
fn a_read_is_answered_once_its_read_index_is_applied() {
    let (mut svc, mut node) = with_session(ServiceConfig::default());
    svc.on_request(&mut node, "w", write(2, 1, 1, put("a", "1")), 0);
    assert!(svc
        .on_request(&mut node, "r", read(3, get("a")), 0)
        .is_empty());
    assert_eq!(node.reads.len(), 1);
    assert_eq!(node.proposed.len(), 2, "a read writes nothing to the log");
    // Leadership confirmed with the write's index as the read index.
    assert!(
        svc.on_read_state(node.reads[0], 2).is_empty(),
        "not applied yet"
    );
    let mut out = svc.apply(&node.entry(2)).unwrap();
    out.sort_by_key(|(c, _)| *c);
    assert_eq!(out[0].0, "r");
    assert_eq!(
        out[0].1.result,
        Ok(Answer::Op(OpResult::Value(Some(b"1".to_vec()))))
    );
    // A read state for an index already applied is answered at once.
    svc.on_request(&mut node, "r", read(4, get("a")), 0);
    let out = svc.on_read_state(node.reads[1], 1);
    assert_eq!(
        only(out, "r"),
        Ok(Answer::Op(OpResult::Value(Some(b"1".to_vec()))))
    );
}

#[test]
fn a_confirmed_read_survives_a_step_down() {
    let (mut svc, mut node) = with_session(ServiceConfig::default());
    svc.on_request(&mut node, "w", write(2, 1, 1, put("a", "1")), 0);
    svc.on_request(&mut node, "r", read(3, get("a")), 0);
    svc.on_read_state(node.reads[0], 2);
    node.step_down(2, Some(2));
    let out = svc.tick(&node, 1);
    assert_eq!(only(out, "w"), Err(KvError::NotLeader { leader: Some(2) }));
    // Leadership was confirmed for index 2: once applied, the read is answered.
    let out = svc.apply(&node.entry(2)).unwrap();
    assert_eq!(
        only(out, "r"),
        Ok(Answer::Op(OpResult::Value(Some(b"1".to_vec()))))
    );
}

#[test]
fn reads_stale_or_through_the_log() {
    let cfg = ServiceConfig {
        read_path: ReadPath::Log,
        ..ServiceConfig::default()
    };
    let (mut svc, mut node) = with_session(cfg);
    assert!(svc
        .on_request(&mut node, "r", read(2, get("a")), 0)
        .is_empty());
    assert!(node.reads.is_empty());
    let out = svc.apply(&node.entry(2)).unwrap();
    assert_eq!(only(out, "r"), Ok(Answer::Op(OpResult::Value(None))));
    // A stale read is answered from local state, even on a follower.
    node.step_down(2, None);
    let stale = ClientRequest {
        id: 3,
        body: RequestBody::Read {
            op: get("a"),
            consistency: Consistency::Stale,
        },
    };
    let out = svc.on_request(&mut node, "s", stale, 0);
    assert_eq!(only(out, "s"), Ok(Answer::Op(OpResult::Value(None))));
}

#[test]
fn a_retry_of_an_applied_write_is_answered_without_a_new_entry() {
    let (mut svc, mut node) = with_session(ServiceConfig::default());
    svc.on_request(&mut node, "c", write(2, 1, 1, put("a", "1")), 0);
    svc.apply(&node.entry(2)).unwrap();
    let out = svc.on_request(&mut node, "c", write(3, 1, 1, put("a", "1")), 0);
    assert_eq!(only(out, "c"), Ok(Answer::Op(OpResult::Replaced(None))));
    assert_eq!(node.proposed.len(), 2);
}

#[test]
fn an_undecodable_record_at_the_index_is_answered_with_its_error() {
    let (mut svc, mut node) = with_session(ServiceConfig::default());
    svc.on_request(&mut node, "c", write(2, 1, 1, put("a", "1")), 0);
    // The entry's bytes got corrupted on the way to the log.
    let mut entry = node.entry(2);
    let mut data = entry.data.to_vec();
    data[0] = 0xee;
    entry.data = data.into();
    let out = svc.apply(&entry).unwrap();
    assert_eq!(
        only(out, "c"),
        Err(KvError::BadRecord(RecordError::UnsupportedVersion {
            found: 0xee,
            supported: raft_kv::RECORD_VERSION
        }))
    );
}

#[test]
fn past_the_bounds_new_requests_are_told_busy() {
    let cfg = ServiceConfig {
        max_pending: 2,
        ..ServiceConfig::default()
    };
    let (mut svc, mut node) = with_session(cfg);
    svc.on_request(&mut node, "c", write(2, 1, 1, put("a", "1")), 0);
    svc.on_request(&mut node, "c", read(3, get("a")), 0);
    let out = svc.on_request(&mut node, "d", write(4, 1, 2, put("a", "2")), 0);
    assert_eq!(only(out, "d"), Err(KvError::Busy));
    let out = svc.on_request(&mut node, "d", read(5, get("a")), 0);
    assert_eq!(only(out, "d"), Err(KvError::Busy));
    // Once the write is applied there is room again.
    svc.apply(&node.entry(2)).unwrap();
    assert!(svc
        .on_request(&mut node, "d", write(6, 1, 2, put("a", "2")), 0)
        .is_empty());

    // The byte bound: one record always fits, a second one does not.
    let cfg = ServiceConfig {
        max_pending_bytes: 40,
        ..ServiceConfig::default()
    };
    let (mut svc, mut node) = with_session(cfg);
    let big = put("a", &"x".repeat(50));
    assert!(svc
        .on_request(&mut node, "c", write(2, 1, 1, big.clone()), 0)
        .is_empty());
    let out = svc.on_request(&mut node, "d", write(3, 1, 2, put("b", "1")), 0);
    assert_eq!(only(out, "d"), Err(KvError::Busy));
}

#[test]
fn malformed_requests_are_refused_at_the_door() {
    let cfg = ServiceConfig {
        store: StoreConfig {
            max_key_bytes: 2,
            ..StoreConfig::default()
        },
        ..ServiceConfig::default()
    };
    let (mut svc, mut node) = with_session(cfg);
    let out = svc.on_request(&mut node, "c", write(2, 1, 0, put("a", "1")), 0);
    assert!(matches!(only(out, "c"), Err(KvError::BadRequest { .. })));
    let out = svc.on_request(&mut node, "c", read(3, put("a", "1")), 0);
    assert!(matches!(only(out, "c"), Err(KvError::BadRequest { .. })));
    let out = svc.on_request(&mut node, "c", write(4, 1, 1, put("abc", "1")), 0);
    assert_eq!(only(out, "c"), Err(KvError::KeyTooLarge { len: 3, max: 2 }));
    let out = svc.on_request(&mut node, "c", read(5, get("abc")), 0);
    assert_eq!(only(out, "c"), Err(KvError::KeyTooLarge { len: 3, max: 2 }));
    assert_eq!(node.proposed.len(), 1, "nothing proposed");
}

#[test]
fn requests_that_wait_too_long_are_answered_timeout() {
    let cfg = ServiceConfig {
        pending_timeout_ms: 100,
        ..ServiceConfig::default()
    };
    let (mut svc, mut node) = with_session(cfg);
    svc.on_request(&mut node, "w", write(2, 1, 1, put("a", "1")), 0);
    svc.on_request(&mut node, "r", read(3, get("a")), 50);
    assert!(svc.tick(&node, 100).is_empty());
    assert_eq!(only(svc.tick(&node, 101), "w"), Err(KvError::Timeout));
    assert_eq!(only(svc.tick(&node, 151), "r"), Err(KvError::Timeout));
    assert_eq!(svc.pending(), 0);
}

#[test]
fn snapshots_are_taken_past_max_raft_state_and_restored() {
    let cfg = ServiceConfig {
        max_raft_state: Some(1_000),
        ..ServiceConfig::default()
    };
    let (mut svc, mut node) = with_session(cfg.clone());
    assert_eq!(svc.maybe_snapshot(999), None);
    let (index, data) = svc.maybe_snapshot(1_000).unwrap();
    assert_eq!(index, 1);
    assert_eq!(svc.maybe_snapshot(5_000), None, "nothing applied since");

    // A follower restores it; a write waiting on an index it covers hears "retry".
    let mut other: Service<&'static str> = Service::new(cfg);
    let mut other_node = FakeNode::leader(2, 1);
    other.on_request(&mut other_node, "c", register(9), 0);
    let snapshot = Snapshot::new(index, 1, data.clone());
    let out = other.restore(&snapshot).unwrap();
    assert!(matches!(only(out, "c"), Err(KvError::EntryLost { .. })));
    assert_eq!(other.store().snapshot(), svc.store().snapshot());
    // Entries it covers are skipped; the next one applies.
    assert!(other.apply(&node.entry(1)).unwrap().is_empty());
    svc.on_request(&mut node, "c", write(2, 1, 1, put("a", "1")), 0);
    other.apply(&node.entry(2)).unwrap();
    assert_eq!(other.store().map().len(), 1);

    // Metadata that disagrees with the data is refused.
    let mut fresh: Service<&'static str> = Service::new(ServiceConfig::default());
    let wrong = Snapshot::new(5, 1, data);
    assert!(fresh.restore(&wrong).is_err());
    let garbage = Snapshot::new(5, 1, vec![1, 2, 3]);
    assert!(fresh.restore(&garbage).is_err());
    assert_eq!(fresh.store(), &Store::new(StoreConfig::default()));
}

#[test]
fn entries_that_are_not_records_only_move_the_applied_index() {
    let (mut svc, _node) = with_session(ServiceConfig::default());
    let noop = Entry {
        index: 2,
        term: 2,
        kind: EntryKind::Noop,
        data: Default::default(),
    };
    assert!(svc.apply(&noop).unwrap().is_empty());
    assert_eq!(svc.store().applied(), 2);
}
