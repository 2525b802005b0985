//! The state machine's rules, one test each: exactly-once, session expiry,
//! snapshots, undecodable records, and what each operation answers.

use raft_kv::command::{encode, Record, RecordBody, RecordError, RECORD_VERSION};
use raft_kv::{KvError, Op, OpResult, Outcome, SnapshotError, Store, StoreConfig, StoreError};

fn k(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: k(key),
        value: k(value),
    }
}

fn append(key: &str, value: &str) -> Op {
    Op::Append {
        key: k(key),
        value: k(value),
    }
}

fn get(key: &str) -> Op {
    Op::Get { key: k(key) }
}

/// A store and the next index to apply at.
struct Replica {
    store: Store,
}

impl Replica {
    fn new(cfg: StoreConfig) -> Self {
        Replica {
            store: Store::new(cfg),
        }
    }

    fn raw(&mut self, data: &[u8]) -> Outcome {
        let index = self.store.applied() + 1;
        self.store.apply(index, data).unwrap()
    }

    fn record(&mut self, stamp_ms: u64, body: RecordBody) -> Outcome {
        self.raw(&encode(&Record { stamp_ms, body }))
    }

    fn register(&mut self, stamp_ms: u64) -> u64 {
        match self.record(stamp_ms, RecordBody::Register) {
            Outcome::Registered { session } => session,
            o => panic!("registration answered {o:?}"),
        }
    }

    fn request(
        &mut self,
        stamp_ms: u64,
        session: u64,
        seq: u64,
        op: Op,
    ) -> Result<OpResult, KvError> {
        match self.record(stamp_ms, RecordBody::Request { session, seq, op }) {
            Outcome::Answered { answer, .. } => answer,
            o => panic!("request answered {o:?}"),
        }
    }

    fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.store.map().get(key.as_bytes()).map(|v| v.to_vec())
    }
}

#[test]
fn a_duplicate_is_answered_from_the_table_and_never_applied_twice() {
    let mut r = Replica::new(StoreConfig::default());
    let s = r.register(0);
    let first = r.request(1, s, 1, append("a", "x"));
    assert_eq!(first, Ok(OpResult::Appended { len: 1 }));
    // The retry of seq 1 (same request, proposed again) gets the same answer.
    assert_eq!(r.request(2, s, 1, append("a", "x")), first);
    assert_eq!(r.value("a"), Some(k("x")));
    assert_eq!(
        r.request(3, s, 2, append("a", "y")),
        Ok(OpResult::Appended { len: 2 })
    );
    assert_eq!(r.value("a"), Some(k("xy")));
}

#[test]
fn a_reordered_older_retry_gets_a_typed_error_and_changes_nothing() {
    let mut r = Replica::new(StoreConfig::default());
    let s = r.register(0);
    r.request(1, s, 1, append("a", "1")).unwrap();
    r.request(1, s, 2, append("a", "2")).unwrap();
    // A late copy of request 1 arrives after request 2 was applied.
    assert_eq!(
        r.request(1, s, 1, append("a", "1")),
        Err(KvError::StaleSequence { seq: 1, last: 2 })
    );
    assert_eq!(
        r.request(1, s, 0, append("a", "0")),
        Err(KvError::StaleSequence { seq: 0, last: 2 })
    );
    // Request 2 is still answered from the table.
    assert_eq!(
        r.request(1, s, 2, append("a", "2")),
        Ok(OpResult::Appended { len: 2 })
    );
    assert_eq!(r.value("a"), Some(k("12")));
}

#[test]
fn sessions_are_registered_at_their_log_index() {
    let mut r = Replica::new(StoreConfig::default());
    r.raw(b"junk");
    assert_eq!(r.register(0), 2);
    assert_eq!(r.register(0), 3);
    assert_eq!(r.store.sessions().len(), 2);
}

#[test]
fn an_idle_session_expires_by_the_log_clock_with_a_typed_error() {
    let cfg = StoreConfig {
        session_timeout_ms: 1_000,
        ..StoreConfig::default()
    };
    let mut r = Replica::new(cfg);
    let idle = r.register(0);
    let busy = r.register(0);
    // Activity keeps `busy` alive; other sessions' stamps move the clock.
    for t in [600, 1_200, 1_800] {
        r.request(t, busy, t / 600, put("b", "x")).unwrap();
    }
    assert_eq!(r.store.clock_ms(), 1_800);
    assert_eq!(
        r.request(1_800, idle, 1, put("a", "x")),
        Err(KvError::SessionExpired { session: idle })
    );
    assert_eq!(
        r.value("a"),
        None,
        "an expired session's write is not applied"
    );
    // An unknown session is refused the same way.
    assert_eq!(
        r.request(1_800, 999, 1, put("a", "x")),
        Err(KvError::SessionExpired { session: 999 })
    );
}

#[test]
fn the_log_clock_never_goes_back() {
    let cfg = StoreConfig {
        session_timeout_ms: 1_000,
        ..StoreConfig::default()
    };
    let mut r = Replica::new(cfg);
    let s = r.register(5_000);
    // A leader with a slower clock stamps 0: the clock stays at 5,000 ...
    r.request(0, s, 1, put("a", "1")).unwrap();
    assert_eq!(r.store.clock_ms(), 5_000);
    // ... and the session's activity is recorded at 5,000, not 0.
    let t = r.register(6_000);
    assert_eq!(
        r.request(6_000, s, 2, put("a", "2")),
        Ok(OpResult::Replaced(Some(k("1"))))
    );
    assert_eq!(
        r.request(6_001, t, 1, get("a")),
        Ok(OpResult::Value(Some(k("2"))))
    );
}

#[test]
fn past_the_cap_the_least_recently_used_session_is_evicted() {
    let cfg = StoreConfig {
        max_sessions: 2,
        ..StoreConfig::default()
    };
    let mut r = Replica::new(cfg);
    let a = r.register(0);
    let b = r.register(0);
    r.request(0, a, 1, put("x", "1")).unwrap(); // a is now more recent than b
    let c = r.register(0);
    assert_eq!(
        r.request(0, b, 1, put("x", "2")),
        Err(KvError::SessionExpired { session: b })
    );
    assert!(r.request(0, a, 2, put("x", "3")).is_ok());
    assert!(r.request(0, c, 1, put("x", "4")).is_ok());
}

#[test]
fn the_session_table_survives_snapshot_and_restore() {
    let mut r = Replica::new(StoreConfig::default());
    let s = r.register(10);
    let answer = r.request(20, s, 1, append("a", "x"));
    let bytes = r.store.snapshot();
    let restored = Store::restore(StoreConfig::default(), &bytes).unwrap();
    assert_eq!(restored, r.store);
    assert_eq!(
        restored.snapshot(),
        bytes,
        "re-encoding gives the same bytes"
    );
    let mut r2 = Replica { store: restored };
    // The retry after restore is answered from the table, not applied again.
    assert_eq!(r2.request(30, s, 1, append("a", "x")), answer);
    assert_eq!(r2.value("a"), Some(k("x")));
    assert_eq!(r2.store.clock_ms(), 30);
}

#[test]
fn an_undecodable_record_is_answered_alike_on_every_replica() {
    let mut one = Replica::new(StoreConfig::default());
    let mut two = Replica::new(StoreConfig::default());
    let mut newer = encode(&Record {
        stamp_ms: 99_999,
        body: RecordBody::Register,
    });
    newer[0] = RECORD_VERSION + 1;
    let cases: [(&[u8], RecordError); 4] = [
        (&[], RecordError::Empty),
        (
            &newer,
            RecordError::UnsupportedVersion {
                found: RECORD_VERSION + 1,
                supported: RECORD_VERSION,
            },
        ),
        (&[RECORD_VERSION, 0xff, 0xff], RecordError::Malformed),
        (b"\x01\x00\x00\x00", RecordError::TrailingBytes),
    ];
    for r in [&mut one, &mut two] {
        let s = r.register(1);
        r.request(2, s, 1, put("a", "1")).unwrap();
    }
    let before = one.store.clone();
    for (data, err) in cases {
        assert_eq!(one.raw(data), Outcome::Rejected(err));
        assert_eq!(two.raw(data), Outcome::Rejected(err));
    }
    assert_eq!(one.store.snapshot(), two.store.snapshot());
    // Nothing changed but the applied index (the clock did not move either).
    assert_eq!(one.store.map(), before.map());
    assert_eq!(one.store.sessions(), before.sessions());
    assert_eq!(one.store.clock_ms(), 2);
    assert_eq!(one.store.applied(), before.applied() + 4);
}

#[test]
fn cas_matches_only_the_expected_value_or_absence() {
    let mut r = Replica::new(StoreConfig::default());
    let s = r.register(0);
    let cas = |expected: Option<&str>, new: &str| Op::Cas {
        key: k("c"),
        expected: expected.map(k),
        new: k(new),
    };
    assert_eq!(
        r.request(0, s, 1, cas(None, "1")),
        Ok(OpResult::Cas {
            matched: true,
            previous: None
        })
    );
    assert_eq!(
        r.request(0, s, 2, cas(None, "2")),
        Ok(OpResult::Cas {
            matched: false,
            previous: Some(k("1"))
        })
    );
    assert_eq!(
        r.request(0, s, 3, cas(Some("0"), "2")),
        Ok(OpResult::Cas {
            matched: false,
            previous: Some(k("1"))
        })
    );
    assert_eq!(r.value("c"), Some(k("1")));
    assert_eq!(
        r.request(0, s, 4, cas(Some("1"), "2")),
        Ok(OpResult::Cas {
            matched: true,
            previous: Some(k("1"))
        })
    );
    assert_eq!(r.value("c"), Some(k("2")));
    // The retry of seq 4 does not match again: it is answered from the table.
    assert_eq!(
        r.request(0, s, 4, cas(Some("1"), "2")),
        Ok(OpResult::Cas {
            matched: true,
            previous: Some(k("1"))
        })
    );
}

#[test]
fn put_and_delete_answer_what_they_replaced() {
    let mut r = Replica::new(StoreConfig::default());
    let s = r.register(0);
    assert_eq!(
        r.request(0, s, 1, put("a", "1")),
        Ok(OpResult::Replaced(None))
    );
    assert_eq!(
        r.request(0, s, 2, put("a", "2")),
        Ok(OpResult::Replaced(Some(k("1"))))
    );
    let del = Op::Delete { key: k("a") };
    assert_eq!(
        r.request(0, s, 3, del.clone()),
        Ok(OpResult::Replaced(Some(k("2"))))
    );
    assert_eq!(r.request(0, s, 4, del), Ok(OpResult::Replaced(None)));
    assert_eq!(r.request(0, s, 5, get("a")), Ok(OpResult::Value(None)));
}

#[test]
fn range_lists_a_prefix_in_key_order_up_to_the_limit() {
    let cfg = StoreConfig {
        max_range: 3,
        ..StoreConfig::default()
    };
    let mut r = Replica::new(cfg);
    let s = r.register(0);
    for (i, key) in ["p/b", "p/a", "q", "p/c", "p", "p/d", "o"]
        .iter()
        .enumerate()
    {
        r.request(0, s, i as u64 + 1, put(key, key)).unwrap();
    }
    let range = |prefix: &str, limit| Op::Range {
        prefix: k(prefix),
        limit,
    };
    let pairs = |keys: &[&str]| keys.iter().map(|x| (k(x), k(x))).collect::<Vec<_>>();
    assert_eq!(
        r.store.read(&range("p/", 2)),
        Ok(OpResult::Range {
            pairs: pairs(&["p/a", "p/b"]),
            more: true
        })
    );
    // The configured cap bounds a larger limit.
    assert_eq!(
        r.store.read(&range("p/", 100)),
        Ok(OpResult::Range {
            pairs: pairs(&["p/a", "p/b", "p/c"]),
            more: true
        })
    );
    assert_eq!(
        r.store.read(&range("p/c", 100)),
        Ok(OpResult::Range {
            pairs: pairs(&["p/c"]),
            more: false
        })
    );
    assert_eq!(
        r.store.read(&range("p/", 0)),
        Ok(OpResult::Range {
            pairs: vec![],
            more: true
        })
    );
    assert_eq!(
        r.store.read(&range("z", 5)),
        Ok(OpResult::Range {
            pairs: vec![],
            more: false
        })
    );
    assert_eq!(
        r.store.read(&range("", 2)),
        Ok(OpResult::Range {
            pairs: pairs(&["o", "p"]),
            more: true
        })
    );
}

#[test]
fn sizes_over_the_limits_are_refused_and_change_nothing() {
    let cfg = StoreConfig {
        max_key_bytes: 4,
        max_value_bytes: 4,
        ..StoreConfig::default()
    };
    let mut r = Replica::new(cfg);
    let s = r.register(0);
    assert_eq!(
        r.request(0, s, 1, put("abcde", "1")),
        Err(KvError::KeyTooLarge { len: 5, max: 4 })
    );
    assert_eq!(
        r.request(0, s, 2, put("a", "12345")),
        Err(KvError::ValueTooLarge { len: 5, max: 4 })
    );
    r.request(0, s, 3, append("a", "123")).unwrap();
    assert_eq!(
        r.request(0, s, 4, append("a", "45")),
        Err(KvError::ValueTooLarge { len: 5, max: 4 })
    );
    assert_eq!(r.value("a"), Some(k("123")));
    assert_eq!(r.store.map().len(), 1);
}

#[test]
fn a_read_through_the_log_changes_nothing_but_the_clock() {
    let mut r = Replica::new(StoreConfig::default());
    let s = r.register(0);
    r.request(0, s, 1, put("a", "1")).unwrap();
    let sessions = r.store.sessions().clone();
    assert_eq!(
        r.record(7, RecordBody::Read { op: get("a") }),
        Outcome::Read {
            answer: Ok(OpResult::Value(Some(k("1"))))
        }
    );
    assert_eq!(
        r.record(8, RecordBody::Read { op: put("a", "2") }),
        Outcome::Read {
            answer: Err(KvError::BadRequest {
                reason: "not a read-only operation".into()
            })
        }
    );
    assert_eq!(r.value("a"), Some(k("1")));
    assert_eq!(r.store.sessions(), &sessions);
    assert_eq!(r.store.clock_ms(), 8);
}

#[test]
fn entries_must_come_in_index_order() {
    let mut store = Store::new(StoreConfig::default());
    assert_eq!(store.skip(1), Ok(Outcome::Skipped));
    assert_eq!(
        store.apply(3, b""),
        Err(StoreError::OutOfOrder {
            index: 3,
            applied: 1
        })
    );
    assert_eq!(
        store.skip(1),
        Err(StoreError::OutOfOrder {
            index: 1,
            applied: 1
        })
    );
    assert_eq!(store.applied(), 1);
}

#[test]
fn a_snapshot_that_does_not_decode_is_refused() {
    let cfg = StoreConfig::default;
    let mut good = Store::new(cfg()).snapshot();
    assert_eq!(Store::restore(cfg(), &[]), Err(SnapshotError::Empty));
    assert_eq!(
        Store::restore(cfg(), &good[..1]),
        Err(SnapshotError::Malformed)
    );
    good.push(0);
    assert_eq!(Store::restore(cfg(), &good), Err(SnapshotError::Malformed));
    good.pop();
    good[0] += 1;
    assert!(matches!(
        Store::restore(cfg(), &good),
        Err(SnapshotError::UnsupportedVersion { .. })
    ));
}
