//! Property: replicas that apply the same log hold the same state, byte for
//! byte, whatever the log holds (duplicates, stale retries, records that do
//! not decode, clock stamps that go back), and whether or not one of them
//! restarted from a snapshot part-way. And no request is applied twice.

use proptest::prelude::*;
use raft_kv::command::{encode, Record, RecordBody, RECORD_VERSION};
use raft_kv::{Op, Outcome, Store, StoreConfig};

/// One generated log item, before it is turned into bytes.
#[derive(Clone, Debug)]
enum Item {
    Register,
    /// A request of the `pick`-th registered session (or an unknown one).
    Request {
        pick: u8,
        seq: u8,
    },
    /// A read through the log.
    Read {
        key: u8,
    },
    /// Random bytes.
    Garbage(Vec<u8>),
    /// A well-formed record under a newer format version.
    Newer,
    /// A leader's empty entry.
    Noop,
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        1 => Just(Item::Register),
        8 => (any::<u8>(), 1..6u8).prop_map(|(pick, seq)| Item::Request { pick, seq }),
        1 => (0..4u8).prop_map(|key| Item::Read { key }),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Item::Garbage),
        1 => Just(Item::Newer),
        1 => Just(Item::Noop),
    ]
}

/// The operation of request `seq` in `session`: a retry carries the same one.
/// Appends add a token naming the request, so a second apply would show.
fn op_of(session: u64, seq: u64) -> Op {
    let token = format!("{session}.{seq};").into_bytes();
    let key = |prefix: &str| format!("{prefix}{}", seq % 3).into_bytes();
    match (session * 31 + seq) % 6 {
        0..=2 => Op::Append {
            key: key("a"),
            value: token,
        },
        3 => Op::Put {
            key: key("p"),
            value: token,
        },
        4 => Op::Cas {
            key: key("p"),
            expected: None,
            new: token,
        },
        _ => Op::Delete { key: key("p") },
    }
}

/// Turns items into entries: `None` data is a non-record entry. Stamps move
/// by `deltas`, which may go back (leaders' clocks disagree).
fn build(items: &[Item], deltas: &[i16]) -> Vec<Option<Vec<u8>>> {
    let mut sessions = Vec::new();
    let mut clock: u64 = 1_000;
    let mut log = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let index = i as u64 + 1;
        clock = clock.saturating_add_signed(i64::from(deltas[i % deltas.len()]));
        let record = |body| {
            Some(encode(&Record {
                stamp_ms: clock,
                body,
            }))
        };
        log.push(match item {
            Item::Register => {
                sessions.push(index);
                record(RecordBody::Register)
            }
            Item::Request { pick, seq } => {
                let session = match sessions.len() {
                    0 => 999,
                    n => sessions[*pick as usize % n],
                };
                let seq = u64::from(*seq);
                record(RecordBody::Request {
                    session,
                    seq,
                    op: op_of(session, seq),
                })
            }
            Item::Read { key } => record(RecordBody::Read {
                op: Op::Get {
                    key: format!("a{key}").into_bytes(),
                },
            }),
            Item::Garbage(bytes) => Some(bytes.clone()),
            Item::Newer => {
                let mut data = encode(&Record {
                    stamp_ms: clock,
                    body: RecordBody::Register,
                });
                data[0] = RECORD_VERSION + 1;
                Some(data)
            }
            Item::Noop => None,
        });
    }
    log
}

fn apply(store: &mut Store, index: u64, entry: &Option<Vec<u8>>) -> Outcome {
    match entry {
        Some(data) => store.apply(index, data).unwrap(),
        None => store.skip(index).unwrap(),
    }
}

fn config(timeout_ms: u64, max_sessions: usize) -> StoreConfig {
    StoreConfig {
        session_timeout_ms: timeout_ms,
        max_sessions,
        max_value_bytes: 64,
        ..StoreConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn replicas_fed_the_same_log_stay_identical(
        items in prop::collection::vec(item(), 1..200),
        deltas in prop::collection::vec(-50i16..200, 1..8),
        cut in any::<prop::sample::Index>(),
        timeout_ms in 100u64..2_000,
        max_sessions in 1usize..6,
    ) {
        let log = build(&items, &deltas);
        let cfg = config(timeout_ms, max_sessions);
        let cut = cut.index(log.len());
        let mut one = Store::new(cfg.clone());
        let mut two = Store::new(cfg.clone());
        for (i, entry) in log.iter().enumerate() {
            let index = i as u64 + 1;
            if i == cut {
                // Replica two restarts from a snapshot of itself.
                let bytes = two.snapshot();
                prop_assert_eq!(&bytes, &one.snapshot());
                two = Store::restore(cfg.clone(), &bytes).unwrap();
            }
            let a = apply(&mut one, index, entry);
            let b = apply(&mut two, index, entry);
            prop_assert_eq!(a, b, "different answers at index {}", index);
        }
        prop_assert_eq!(one.snapshot(), two.snapshot());
        prop_assert_eq!(&one, &two);

        // Exactly once: no request's token appears twice.
        let mut seen = std::collections::BTreeSet::new();
        for value in one.map().values() {
            for token in value.split(|&b| b == b';').filter(|t| !t.is_empty()) {
                prop_assert!(seen.insert(token.to_vec()),
                    "token {:?} applied twice", String::from_utf8_lossy(token));
            }
        }
    }
}
