//! The sequential specification of the key-value store ([`Op`], [`OpResult`]).
//!
//! Partitioning: operations on different keys commute, so each key is
//! checked on its own (P-compositionality). A `Range` reads many keys at one
//! instant, so splitting it per key would lose exactly what makes it
//! interesting: that all the pairs it returns coexisted. Instead a range
//! joins, into one partition, every key of the history that starts with its
//! prefix (any key it could ever have seen or counted towards `more`), and
//! the model keeps all of that partition's keys in one state. Keys no range
//! covers keep their own small partitions.

use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

mod partition;

use super::history::Operation;
use super::memo::{zobrist, FastHasher};
use super::model::{Model, Partition};
use crate::op::{Op, OpResult, Value};

/// A shared byte string: states are cloned at every step of the search, so
/// keys and values are shared, not copied.
type Bytes = Arc<[u8]>;

/// The store's contents (of one partition), in key order.
#[derive(Clone, Debug, Default, Eq)]
pub struct KvState {
    pairs: Vec<(Bytes, Bytes)>,
    /// XOR of the pairs' hashes, kept up to date by every change, so the
    /// search's memo hashes a state in O(1) however big it is.
    digest: u64,
}

impl PartialEq for KvState {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest && self.pairs == other.pairs
    }
}

impl Hash for KvState {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.digest);
    }
}

fn pair_hash(key: &[u8], value: &[u8]) -> u64 {
    let mut h = FastHasher::default();
    key.hash(&mut h);
    value.hash(&mut h);
    zobrist(h.finish() as usize)
}

impl KvState {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let i = self.find(key).ok()?;
        Some(&self.pairs[i].1)
    }

    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        self.pairs.binary_search_by(|(k, _)| (**k).cmp(key))
    }

    /// Sets `key` and returns the value it replaces.
    fn set(&mut self, key: &[u8], value: Bytes) -> Option<Bytes> {
        self.digest ^= pair_hash(key, &value);
        match self.find(key) {
            Ok(i) => {
                let old = std::mem::replace(&mut self.pairs[i].1, value);
                self.digest ^= pair_hash(key, &old);
                Some(old)
            }
            Err(i) => {
                self.pairs.insert(i, (key.into(), value));
                None
            }
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Bytes> {
        let i = self.find(key).ok()?;
        let (_, old) = self.pairs.remove(i);
        self.digest ^= pair_hash(key, &old);
        Some(old)
    }

    /// The pairs whose key starts with `prefix`, in key order.
    fn with_prefix<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = &'a (Bytes, Bytes)> {
        let start = self.find(prefix).unwrap_or_else(|i| i);
        self.pairs[start..]
            .iter()
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Applies `op` and returns its answer: the store's semantics, in
    /// one place (see [`crate::op`]).
    pub fn apply(&mut self, op: &Op) -> OpResult {
        let owned = |v: Option<Bytes>| v.map(|v| v.to_vec());
        match op {
            Op::Get { key } => OpResult::Value(self.get(key).map(<[u8]>::to_vec)),
            Op::Put { key, value } => {
                OpResult::Replaced(owned(self.set(key, value.as_slice().into())))
            }
            Op::Append { key, value } => {
                let mut v = self.get(key).unwrap_or_default().to_vec();
                v.extend_from_slice(value);
                let len = v.len() as u64;
                self.set(key, v.into());
                OpResult::Appended { len }
            }
            Op::Delete { key } => OpResult::Replaced(owned(self.remove(key))),
            Op::Cas { key, expected, new } => {
                let previous = self.get(key).map(<[u8]>::to_vec);
                let matched = previous == *expected;
                if matched {
                    self.set(key, new.as_slice().into());
                }
                OpResult::Cas { matched, previous }
            }
            Op::Range { prefix, limit } => {
                let mut found = self.with_prefix(prefix);
                let pairs: Vec<_> = found
                    .by_ref()
                    .take(*limit as usize)
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect();
                OpResult::Range {
                    pairs,
                    more: found.next().is_some(),
                }
            }
        }
    }

    /// Whether the read `op` answers `out` here, without building the answer.
    fn reads(&self, op: &Op, out: &OpResult) -> bool {
        match (op, out) {
            (Op::Get { key }, OpResult::Value(v)) => v.as_deref() == self.get(key),
            (Op::Range { prefix, limit }, OpResult::Range { pairs, more }) => {
                let (n, limit) = (pairs.len(), *limit as usize);
                let mut found = self.with_prefix(prefix);
                let same = n <= limit
                    && pairs.iter().all(|(k, v)| {
                        found
                            .next()
                            .is_some_and(|(fk, fv)| **fk == **k && **fv == **v)
                    });
                // Fewer than `limit` pairs: that was all of them.
                same && (found.next().is_some() == *more) && (n == limit || !*more)
            }
            _ => false,
        }
    }
}

/// The key-value model, partitioned by key.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

impl Model for KvModel {
    type Input = Op;
    type Output = OpResult;
    type State = KvState;

    fn init(&self) -> KvState {
        KvState::default()
    }

    fn step(&self, state: &KvState, op: &Op, output: Option<&OpResult>) -> Option<KvState> {
        if let Some(out) = output {
            match op {
                // Reads are checked in place; a write whose answer names the
                // old value is rejected before the state is copied.
                Op::Get { .. } | Op::Range { .. } => {
                    return state.reads(op, out).then(|| state.clone());
                }
                Op::Put { key, .. } | Op::Delete { key } if !matches!(out, OpResult::Replaced(v) if v.as_deref() == state.get(key)) =>
                {
                    return None;
                }
                _ => {}
            }
        }
        let mut next = state.clone();
        let answer = next.apply(op);
        output.is_none_or(|out| *out == answer).then_some(next)
    }

    fn answer(&self, state: &KvState, op: &Op) -> Option<OpResult> {
        Some(state.clone().apply(op))
    }

    fn is_read_only(&self, op: &Op) -> bool {
        op.is_read()
    }

    fn is_stutter(&self, op: &Op, out: &OpResult) -> bool {
        match (op, out) {
            (Op::Get { .. } | Op::Range { .. }, _) => true,
            (Op::Cas { .. }, OpResult::Cas { matched: false, .. }) => true,
            // It matched, so the value was `expected`, and is again.
            (Op::Cas { expected, new, .. }, OpResult::Cas { matched: true, .. }) => {
                expected.as_ref() == Some(new)
            }
            (Op::Put { value, .. }, OpResult::Replaced(Some(old))) => old == value,
            (Op::Delete { .. }, OpResult::Replaced(None)) => true,
            // Not appends, even of nothing: one creates an absent key.
            _ => false,
        }
    }

    fn partition(&self, history: &[Operation]) -> Vec<Partition> {
        partition::by_key(history)
    }

    fn describe_input(&self, op: &Op) -> String {
        match op {
            Op::Get { key } => format!("get {}", show(key)),
            Op::Put { key, value } => format!("put {}={}", show(key), show(value)),
            Op::Append { key, value } => format!("append {}+={}", show(key), show(value)),
            Op::Delete { key } => format!("delete {}", show(key)),
            Op::Cas { key, expected, new } => {
                format!("cas {} {}→{}", show(key), show_opt(expected), show(new))
            }
            Op::Range { prefix, limit } => format!("range {}* ≤{limit}", show(prefix)),
        }
    }

    fn describe_output(&self, out: &OpResult) -> String {
        match out {
            OpResult::Value(v) => show_opt(v),
            OpResult::Replaced(v) => format!("was {}", show_opt(v)),
            OpResult::Appended { len } => format!("len {len}"),
            OpResult::Cas { matched, previous } => format!(
                "{} (was {})",
                if *matched { "ok" } else { "no" },
                show_opt(previous)
            ),
            OpResult::Range { pairs, more } => {
                let mut s = String::from("[");
                for (i, (k, v)) in pairs.iter().enumerate() {
                    let sep = if i == 0 { "" } else { " " };
                    let _ = write!(s, "{sep}{}={}", show(k), show(v));
                }
                s.push(']');
                if *more {
                    s.push_str(" +more");
                }
                s
            }
        }
    }

    fn describe_state(&self, state: &KvState) -> String {
        if state.pairs.is_empty() {
            return "{}".into();
        }
        let pairs: Vec<String> = state
            .pairs
            .iter()
            .map(|(k, v)| format!("{}={}", show(k), show(v)))
            .collect();
        format!("{{{}}}", pairs.join(", "))
    }
}

/// A byte string for people: quoted text when printable, else hex.
pub fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => {
            let mut s = String::from("0x");
            for b in bytes {
                let _ = write!(s, "{b:02x}");
            }
            s
        }
    }
}

fn show_opt(v: &Option<Value>) -> String {
    v.as_deref().map_or_else(|| "∅".into(), show)
}

#[cfg(test)]
mod tests;
