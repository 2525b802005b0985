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
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// Reads `key`.
    Get { key: Key },
    /// Sets `key` to `value`.
    Put { key: Key, value: Value },
    /// Appends `value` to the value of `key` (an absent key counts as empty).
    Append { key: Key, value: Value },
    /// Removes `key`.
    Delete { key: Key },
    /// Sets `key` to `new` only if its value is `expected` (`None`: absent).
    Cas {
        key: Key,
        expected: Option<Value>,
        new: Value,
    },
    /// Lists keys starting with `prefix`, in key order, at most `limit` of them.
    Range { prefix: Key, limit: u32 },
}

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpResult {
    /// `Get`: the value, `None` when absent.
    Value(Option<Value>),
    /// `Put` and `Delete`: the value replaced or removed (`None`: was absent).
    Replaced(Option<Value>),
    /// `Append`: the value's length after appending.
    Appended { len: u64 },
    /// `Cas`: whether it matched, and the value before the operation.
    Cas {
        matched: bool,
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
