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

use std::collections::BTreeMap;
use std::fmt::Write;

use super::history::Operation;
use super::model::{Model, Partition};
use crate::op::{Key, Op, OpResult, Value};

/// The store's contents (of one partition), in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvState {
    pairs: Vec<(Key, Value)>,
}

impl KvState {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        let i = self.find(key).ok()?;
        Some(&self.pairs[i].1)
    }

    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        self.pairs.binary_search_by(|(k, _)| k.as_slice().cmp(key))
    }

    /// Sets `key` and returns the value it replaces.
    fn set(&mut self, key: &[u8], value: Value) -> Option<Value> {
        match self.find(key) {
            Ok(i) => Some(std::mem::replace(&mut self.pairs[i].1, value)),
            Err(i) => {
                self.pairs.insert(i, (key.to_vec(), value));
                None
            }
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Value> {
        let i = self.find(key).ok()?;
        Some(self.pairs.remove(i).1)
    }

    /// Applies `op` and returns its answer: the store's semantics, in
    /// one place (see [`crate::op`]).
    pub fn apply(&mut self, op: &Op) -> OpResult {
        match op {
            Op::Get { key } => OpResult::Value(self.get(key).cloned()),
            Op::Put { key, value } => OpResult::Replaced(self.set(key, value.clone())),
            Op::Append { key, value } => {
                let mut v = self.get(key).cloned().unwrap_or_default();
                v.extend_from_slice(value);
                let len = v.len() as u64;
                self.set(key, v);
                OpResult::Appended { len }
            }
            Op::Delete { key } => OpResult::Replaced(self.remove(key)),
            Op::Cas { key, expected, new } => {
                let previous = self.get(key).cloned();
                let matched = previous == *expected;
                if matched {
                    self.set(key, new.clone());
                }
                OpResult::Cas { matched, previous }
            }
            Op::Range { prefix, limit } => {
                let start = self.find(prefix).unwrap_or_else(|i| i);
                let mut with_prefix = self.pairs[start..]
                    .iter()
                    .take_while(|(k, _)| k.starts_with(prefix));
                let pairs: Vec<_> = with_prefix
                    .by_ref()
                    .take(*limit as usize)
                    .cloned()
                    .collect();
                OpResult::Range {
                    pairs,
                    more: with_prefix.next().is_some(),
                }
            }
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
        // Reads that disagree are rejected without cloning the state.
        match (op, output) {
            (Op::Get { key }, Some(out)) => {
                return (*out == OpResult::Value(state.get(key).cloned())).then(|| state.clone());
            }
            (Op::Range { .. }, Some(out)) => {
                return (*out == state.clone().apply(op)).then(|| state.clone());
            }
            _ => {}
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
        partition_by_key(history)
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

/// One partition per key; a range joins the keys its prefix covers.
fn partition_by_key(history: &[Operation]) -> Vec<Partition> {
    // The distinct keys that operations other than ranges touch.
    let mut keys: BTreeMap<&[u8], usize> = BTreeMap::new();
    for op in history {
        if !matches!(op.input, Op::Range { .. }) {
            let n = keys.len();
            keys.entry(op.input.key()).or_insert(n);
        }
    }
    let mut uf = UnionFind((0..keys.len()).collect());
    // Each operation's key index; `None` for a range that covers no key.
    let mut key_of = Vec::with_capacity(history.len());
    for op in history {
        key_of.push(match &op.input {
            Op::Range { prefix, .. } => {
                let mut covered = keys
                    .range(prefix.as_slice()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(_, &i)| i);
                let first = covered.next();
                if let Some(first) = first {
                    covered.for_each(|i| uf.join(first, i));
                }
                first
            }
            op => Some(keys[op.key()]),
        });
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut alone = Vec::new();
    for (id, k) in key_of.into_iter().enumerate() {
        match k {
            Some(k) => groups.entry(uf.root(k)).or_default().push(id),
            None => alone.push(id),
        }
    }
    let mut members: BTreeMap<usize, Vec<&[u8]>> = BTreeMap::new();
    for (&k, &i) in &keys {
        members.entry(uf.root(i)).or_default().push(k);
    }
    let mut parts: Vec<Partition> = groups
        .into_iter()
        .map(|(r, ops)| Partition {
            label: label(&members[&r]),
            ops,
        })
        .collect();
    parts.extend(alone.into_iter().map(|id| Partition {
        label: format!("range {}* (no key)", show(history[id].input.key())),
        ops: vec![id],
    }));
    parts
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn root(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.root(a), self.root(b));
        self.0[b] = a;
    }
}

fn label(keys: &[&[u8]]) -> String {
    if let [k] = keys {
        return format!("key {}", show(k));
    }
    let shown: Vec<String> = keys.iter().take(6).map(|k| show(k)).collect();
    let more = if keys.len() > 6 { ", …" } else { "" };
    format!("{} keys {}{more}", keys.len(), shown.join(", "))
}
