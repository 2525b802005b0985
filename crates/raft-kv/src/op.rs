//! The key-value operations and what each answers.
//!
//! Keys and values are byte strings. Every answer says what happened, so a
//! history of calls and answers can be checked for linearizability: a write
//! answers the value it replaced, a compare-and-swap whether it matched.

use serde::{Deserialize, Serialize};

/// A key: any byte string.
pub type Key = Vec<u8>;
/// A value: any byte string.
pub type Value = Vec<u8>;

/// One operation on the store.
///
/// Keys and values are serialised as byte strings (`serde_bytes`): postcard
/// writes exactly the bytes it wrote for them as sequences of `u8` (a
/// varint length, then the bytes), so records and snapshots written
/// before decode as before, without a call per byte.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// Reads `key`.
    Get {
        #[serde(with = "serde_bytes")]
        key: Key,
    },
    /// Sets `key` to `value`.
    Put {
        #[serde(with = "serde_bytes")]
        key: Key,
        #[serde(with = "serde_bytes")]
        value: Value,
    },
    /// Appends `value` to the value of `key` (an absent key counts as empty).
    Append {
        #[serde(with = "serde_bytes")]
        key: Key,
        #[serde(with = "serde_bytes")]
        value: Value,
    },
    /// Removes `key`.
    Delete {
        #[serde(with = "serde_bytes")]
        key: Key,
    },
    /// Sets `key` to `new` only if its value is `expected` (`None`: absent).
    Cas {
        #[serde(with = "serde_bytes")]
        key: Key,
        #[serde(with = "serde_bytes")]
        expected: Option<Value>,
        #[serde(with = "serde_bytes")]
        new: Value,
    },
    /// Lists keys starting with `prefix`, in key order, at most `limit` of them.
    Range {
        #[serde(with = "serde_bytes")]
        prefix: Key,
        limit: u32,
    },
}

/// What an operation did (byte strings serialised as for [`Op`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpResult {
    /// `Get`: the value, `None` when absent.
    Value(#[serde(with = "serde_bytes")] Option<Value>),
    /// `Put` and `Delete`: the value replaced or removed (`None`: was absent).
    Replaced(#[serde(with = "serde_bytes")] Option<Value>),
    /// `Append`: the value's length after appending.
    Appended { len: u64 },
    /// `Cas`: whether it matched, and the value before the operation.
    Cas {
        matched: bool,
        #[serde(with = "serde_bytes")]
        previous: Option<Value>,
    },
    /// `Range`: the pairs found, and whether more keys with the prefix remain.
    Range {
        pairs: Vec<(Key, Value)>,
        more: bool,
    },
}

impl Op {
    /// The key the operation touches (the prefix for `Range`).
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Get { key }
            | Op::Put { key, .. }
            | Op::Append { key, .. }
            | Op::Delete { key }
            | Op::Cas { key, .. } => key,
            Op::Range { prefix, .. } => prefix,
        }
    }

    /// Whether the operation only reads (so may be served by ReadIndex
    /// instead of going through the log, thesis §6.4).
    pub fn is_read(&self) -> bool {
        matches!(self, Op::Get { .. } | Op::Range { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;

    /// `Op` and `OpResult` as they were serialised before `serde_bytes`:
    /// byte strings as sequences of `u8`. Same variants, same order.
    mod before {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        pub enum Op {
            Get {
                key: Vec<u8>,
            },
            Put {
                key: Vec<u8>,
                value: Vec<u8>,
            },
            Append {
                key: Vec<u8>,
                value: Vec<u8>,
            },
            Delete {
                key: Vec<u8>,
            },
            Cas {
                key: Vec<u8>,
                expected: Option<Vec<u8>>,
                new: Vec<u8>,
            },
            Range {
                prefix: Vec<u8>,
                limit: u32,
            },
        }

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        pub enum OpResult {
            Value(Option<Vec<u8>>),
            Replaced(Option<Vec<u8>>),
            Appended {
                len: u64,
            },
            Cas {
                matched: bool,
                previous: Option<Vec<u8>>,
            },
            Range {
                pairs: Vec<(Vec<u8>, Vec<u8>)>,
                more: bool,
            },
        }
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        // Past 127 bytes the length takes two varint bytes.
        vec(any::<u8>(), 0..300)
    }

    fn op() -> impl Strategy<Value = (Op, before::Op)> {
        prop_oneof![
            bytes().prop_map(|k| (Op::Get { key: k.clone() }, before::Op::Get { key: k })),
            (bytes(), bytes()).prop_map(|(k, v)| (
                Op::Put {
                    key: k.clone(),
                    value: v.clone()
                },
                before::Op::Put { key: k, value: v }
            )),
            (bytes(), bytes()).prop_map(|(k, v)| (
                Op::Append {
                    key: k.clone(),
                    value: v.clone()
                },
                before::Op::Append { key: k, value: v }
            )),
            bytes().prop_map(|k| (Op::Delete { key: k.clone() }, before::Op::Delete { key: k })),
            (bytes(), option::of(bytes()), bytes()).prop_map(|(k, e, n)| (
                Op::Cas {
                    key: k.clone(),
                    expected: e.clone(),
                    new: n.clone()
                },
                before::Op::Cas {
                    key: k,
                    expected: e,
                    new: n
                }
            )),
            (bytes(), any::<u32>()).prop_map(|(p, l)| (
                Op::Range {
                    prefix: p.clone(),
                    limit: l
                },
                before::Op::Range {
                    prefix: p,
                    limit: l
                }
            )),
        ]
    }

    fn result() -> impl Strategy<Value = (OpResult, before::OpResult)> {
        prop_oneof![
            option::of(bytes())
                .prop_map(|v| (OpResult::Value(v.clone()), before::OpResult::Value(v))),
            option::of(bytes())
                .prop_map(|v| (OpResult::Replaced(v.clone()), before::OpResult::Replaced(v))),
            any::<u64>().prop_map(|len| (
                OpResult::Appended { len },
                before::OpResult::Appended { len }
            )),
            (any::<bool>(), option::of(bytes())).prop_map(|(m, p)| (
                OpResult::Cas {
                    matched: m,
                    previous: p.clone()
                },
                before::OpResult::Cas {
                    matched: m,
                    previous: p
                }
            )),
            (vec((bytes(), bytes()), 0..3), any::<bool>()).prop_map(|(pairs, more)| (
                OpResult::Range {
                    pairs: pairs.clone(),
                    more
                },
                before::OpResult::Range { pairs, more }
            )),
        ]
    }

    proptest! {
        /// Records and snapshots written before `serde_bytes` decode the
        /// same, and new ones are the same bytes.
        #[test]
        fn byte_strings_keep_their_postcard_bytes((now, then) in op(), (rnow, rthen) in result()) {
            let bytes = postcard::to_stdvec(&now).unwrap();
            prop_assert_eq!(&bytes, &postcard::to_stdvec(&then).unwrap());
            prop_assert_eq!(postcard::from_bytes::<Op>(&bytes).unwrap(), now);
            prop_assert_eq!(postcard::from_bytes::<before::Op>(&bytes).unwrap(), then);
            let bytes = postcard::to_stdvec(&rnow).unwrap();
            prop_assert_eq!(&bytes, &postcard::to_stdvec(&rthen).unwrap());
            prop_assert_eq!(postcard::from_bytes::<OpResult>(&bytes).unwrap(), rnow);
            prop_assert_eq!(postcard::from_bytes::<before::OpResult>(&bytes).unwrap(), rthen);
        }
    }

    #[test]
    fn reads_and_keys() {
        let get = Op::Get { key: b"a".to_vec() };
        let put = Op::Put {
            key: b"a".to_vec(),
            value: b"1".to_vec(),
        };
        let range = Op::Range {
            prefix: b"p/".to_vec(),
            limit: 10,
        };
        assert!(get.is_read() && range.is_read() && !put.is_read());
        assert_eq!(
            (get.key(), put.key(), range.key()),
            (&b"a"[..], &b"a"[..], &b"p/"[..])
        );
    }
}
