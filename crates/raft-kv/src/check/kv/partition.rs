//! Partitioning a key-value history: one partition per key, except that a
//! range joins every key its prefix covers (see the parent module).

use std::collections::BTreeMap;

use super::show;
use crate::check::history::Operation;
use crate::check::model::Partition;
use crate::op::Op;

/// One partition per key; a range joins the keys its prefix covers.
pub(super) fn by_key(history: &[Operation]) -> Vec<Partition> {
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
