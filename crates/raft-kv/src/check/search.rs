//! The search for a linearization of one partition: Wing & Gong's
//! backtracking with Lowe's just-in-time linearization and memo
//! ("Testing for linearizability", Lowe 2016, §3).
//!
//! The calls and returns of the partition sit in one doubly linked list in
//! time order (calls before returns at equal times, so touching intervals
//! count as concurrent). Scanning from the front, every call met before the
//! first return is a candidate to take effect next: the search tries to
//! linearize it in the model, and on success lifts its call and return out
//! of the list and starts over. Reaching a return means its operation must
//! already have taken effect and has not: the last choice is undone (its
//! entries go back into the list, dancing-links style) and the scan goes on
//! past it. A configuration seen before is skipped (see [`super::memo`]).
//!
//! Operations with unknown outcome have a call and no return: nothing forces
//! them, and the search is done once every operation with a known answer is
//! linearized, so those left over never took effect. Their calls sit just
//! before the first return after them, so the search tries every known
//! candidate before an unknown one (the same candidates, a better order:
//! configurations without the unknown operation are met first and then
//! dominate those with it).

use std::time::Instant;

use super::bitset::Bitset;
use super::history::{OpId, Operation};
use super::memo::{zobrist, Memo};
use super::model::Model;
use super::Exhausted;

/// What the search of one partition found.
pub(crate) enum Found {
    /// A linearization: the operations in the order they took effect
    /// (unknown-outcome operations that never took effect are left out).
    Linearizable(Vec<OpId>),
    /// None exists: the longest prefix the search linearized, and the
    /// operation whose return it then met without being able to place it.
    Illegal { prefix: Vec<OpId>, blocked: OpId },
    /// The budget ran out first.
    Exhausted(Exhausted),
}

/// The budget left, shared by the partitions of one check.
pub(crate) struct Meter {
    pub(crate) start: Instant,
    pub(crate) deadline: Option<Instant>,
    pub(crate) max_steps: Option<u64>,
    pub(crate) max_memo: Option<usize>,
    pub(crate) steps: u64,
}

impl Meter {
    /// Counts one step; every 1024 steps compares with the limits.
    fn tick(&mut self, memo_len: usize) -> Option<Exhausted> {
        self.steps += 1;
        if let Some(max) = self.max_steps {
            if self.steps > max {
                return Some(Exhausted::Steps(max));
            }
        }
        if self.steps.is_multiple_of(1024) {
            if let Some(max) = self.max_memo {
                if memo_len > max {
                    return Some(Exhausted::Memo(max));
                }
            }
            if let Some(deadline) = self.deadline {
                if Instant::now() >= deadline {
                    return Some(Exhausted::Time(deadline - self.start));
                }
            }
        }
        None
    }
}

const HEAD: usize = 0;

#[derive(Clone, Copy)]
enum Entry {
    Head,
    Call(usize),
    Return(usize),
    Tail,
}

/// The time-ordered list of calls and returns, with O(1) lift and unlift.
struct Entries {
    kind: Vec<Entry>,
    next: Vec<usize>,
    prev: Vec<usize>,
    call_of: Vec<usize>,
    ret_of: Vec<Option<usize>>,
}

impl Entries {
    /// `events`: (sort key, entry), any order.
    fn new(n_ops: usize, mut events: Vec<((u64, u8, usize), Entry)>) -> Self {
        events.sort_by_key(|e| e.0);
        let m = events.len();
        let mut kind = Vec::with_capacity(m + 2);
        kind.push(Entry::Head);
        kind.extend(events.into_iter().map(|e| e.1));
        kind.push(Entry::Tail);
        let mut call_of = vec![0; n_ops];
        let mut ret_of = vec![None; n_ops];
        for (i, k) in kind.iter().enumerate() {
            match *k {
                Entry::Call(p) => call_of[p] = i,
                Entry::Return(p) => ret_of[p] = Some(i),
                _ => {}
            }
        }
        Entries {
            next: (1..=m + 2).collect(),
            prev: (0..m + 2).map(|i| i.wrapping_sub(1)).collect(),
            kind,
            call_of,
            ret_of,
        }
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        self.prev[n] = e;
    }

    /// Takes operation `p`'s call and return out of the list.
    fn lift(&mut self, p: usize) {
        self.unlink(self.call_of[p]);
        if let Some(r) = self.ret_of[p] {
            self.unlink(r);
        }
    }

    /// Puts them back (the reverse of [`Entries::lift`]).
    fn unlift(&mut self, p: usize) {
        if let Some(r) = self.ret_of[p] {
            self.relink(r);
        }
        self.relink(self.call_of[p]);
    }
}

/// Searches for a linearization of the operations `ids` of `history`.
pub(crate) fn search<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    ids: &[OpId],
    meter: &mut Meter,
) -> Found {
    // Unknown-outcome reads are invisible either way: drop them.
    let ops: Vec<OpId> = ids
        .iter()
        .copied()
        .filter(|&id| history[id].output().is_some() || !model.is_read_only(&history[id].input))
        .collect();
    let n = ops.len();
    // Local slots: known ops numbered 0.., unknown ones 0.. separately.
    let mut slot = Vec::with_capacity(n);
    let (mut n_known, mut n_unknown) = (0, 0);
    let mut returns: Vec<u64> = Vec::new();
    for &id in &ops {
        if let Some(r) = history[id].ret() {
            slot.push(n_known);
            n_known += 1;
            returns.push(r);
        } else {
            slot.push(n_unknown);
            n_unknown += 1;
        }
    }
    returns.sort_unstable();
    let mut events = Vec::with_capacity(n + n_known);
    for (p, &id) in ops.iter().enumerate() {
        let op = &history[id];
        match op.ret() {
            Some(r) => {
                events.push(((op.call, 0, p), Entry::Call(p)));
                events.push(((r, 2, p), Entry::Return(p)));
            }
            None => {
                let i = returns.partition_point(|&t| t < op.call);
                let at = returns.get(i).copied().unwrap_or(u64::MAX);
                events.push(((at, 1, p), Entry::Call(p)));
            }
        }
    }
    let mut list = Entries::new(n, events);
    let twin = twins::<M>(history, &ops);
    let stutter = stutters(model, history, &ops);

    let mut memo = Memo::new();
    let mut known = Bitset::new(n_known);
    let mut unknown = Bitset::new(n_unknown);
    let mut known_hash = 0u64;
    let mut placed_known = 0;
    let mut state = model.init();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut best: Option<(usize, Vec<usize>, usize)> = None;
    let mut entry = list.next[HEAD];

    while placed_known < n_known {
        if let Some(spent) = meter.tick(memo.len()) {
            return Found::Exhausted(spent);
        }
        match list.kind[entry] {
            Entry::Call(p) => {
                let op = &history[ops[p]];
                let is_known = op.output().is_some();
                let mut placed = false;
                // Identical unknown operations are used in call order.
                let waits = twin[p].is_some_and(|t| !unknown.contains(slot[t]));
                let next = (!waits)
                    .then(|| model.step(&state, &op.input, op.output()))
                    .flatten()
                    .filter(|next| {
                        !masks_last(model, history, &ops, &stack, &op.input, op.output(), next)
                    });
                if let Some(next) = next {
                    let fresh = if is_known {
                        known.insert(slot[p]);
                        let h = known_hash ^ zobrist(slot[p]);
                        let fresh = memo.visit(h, &known, &next, &unknown);
                        if fresh {
                            known_hash = h;
                        } else {
                            known.remove(slot[p]);
                        }
                        fresh
                    } else {
                        unknown.insert(slot[p]);
                        let fresh = memo.visit(known_hash, &known, &next, &unknown);
                        if !fresh {
                            unknown.remove(slot[p]);
                        }
                        fresh
                    };
                    if fresh {
                        stack.push((p, std::mem::replace(&mut state, next)));
                        list.lift(p);
                        placed_known += usize::from(is_known);
                        entry = list.next[HEAD];
                        placed = true;
                    }
                }
                if !placed {
                    entry = list.next[entry];
                }
            }
            Entry::Return(p) => {
                // The deepest dead end by answered operations placed, without
                // the unknown-outcome ones that trail it (they explain nothing).
                if best.as_ref().is_none_or(|b| placed_known > b.0) {
                    let mut prefix: Vec<usize> = stack.iter().map(|f| f.0).collect();
                    while prefix
                        .last()
                        .is_some_and(|&q| history[ops[q]].output().is_none())
                    {
                        prefix.pop();
                    }
                    best = Some((placed_known, prefix, p));
                }
                // Undo the last choice. A stutter undone means its parent
                // configuration failed too (see `stutters`): undo that as well.
                loop {
                    let Some((q, before)) = stack.pop() else {
                        let (_, prefix, blocked) = best.expect("recorded just above");
                        return Found::Illegal {
                            prefix: prefix.into_iter().map(|p| ops[p]).collect(),
                            blocked: ops[blocked],
                        };
                    };
                    state = before;
                    list.unlift(q);
                    if history[ops[q]].output().is_some() {
                        known.remove(slot[q]);
                        known_hash ^= zobrist(slot[q]);
                        placed_known -= 1;
                    } else {
                        unknown.remove(slot[q]);
                    }
                    if !stutter[q] {
                        entry = list.next[list.call_of[q]];
                        break;
                    }
                }
            }
            Entry::Head | Entry::Tail => {
                unreachable!("a known operation's return is always ahead in the list")
            }
        }
    }
    Found::Linearizable(stack.into_iter().map(|f| ops[f.0]).collect())
}

/// Whether placing an operation that leads to `next` right after the
/// unknown-outcome operation on top of `stack` would give the same state as
/// placing it instead of that one: then the unknown operation's effect is
/// masked, and the configuration reached is dominated by the one without it
/// (same answered set and state, fewer unknowns placed), which the search
/// meets by placing this operation first. Pruning this move keeps runs of
/// lost blind writes (put, delete) from being explored in every subset.
fn masks_last<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    ops: &[OpId],
    stack: &[(usize, M::State)],
    input: &M::Input,
    output: Option<&M::Output>,
    next: &M::State,
) -> bool {
    match stack.last() {
        Some((q, before)) if history[ops[*q]].output().is_none() => {
            model.step(before, input, output).as_ref() == Some(next)
        }
        _ => false,
    }
}

/// For each unknown-outcome operation, the latest one called before it with
/// the same input, if any. Such twins have the same effect wherever they
/// are placed, and the earlier is a candidate wherever the later is (an
/// unknown operation stays a candidate from its call on), so a linearization
/// using the later one alone can use the earlier instead: the search places
/// twins in call order only. Without this, every choice of which of many
/// lost `delete k` took effect would be explored separately.
fn twins<M: Model>(history: &[Operation<M::Input, M::Output>], ops: &[OpId]) -> Vec<Option<usize>> {
    let mut unknown: Vec<usize> = (0..ops.len())
        .filter(|&p| history[ops[p]].output().is_none())
        .collect();
    unknown.sort_by_key(|&p| (history[ops[p]].call, p));
    let mut twin = vec![None; ops.len()];
    for (i, &p) in unknown.iter().enumerate() {
        let input = &history[ops[p]].input;
        twin[p] = unknown[..i]
            .iter()
            .rev()
            .copied()
            .find(|&q| history[ops[q]].input == *input);
    }
    twin
}

/// Which operations are stutters: answered, and with that answer they never
/// change the state (reads, a cas that did not match, ...). Placing a
/// stutter as soon as it is a candidate and fits is never worse than
/// placing it later: moving it earlier keeps every state of a linearization
/// and every real-time constraint (those that must precede it are already
/// placed, or it would not be a candidate). So if the configuration after
/// placing it fails, the one before fails too, and the search backtracks
/// past both. Without this, a failed branch is retried with every subset of
/// the concurrent reads placed.
fn stutters<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    ops: &[OpId],
) -> Vec<bool> {
    ops.iter()
        .map(|&id| {
            let op = &history[id];
            op.output()
                .is_some_and(|out| model.is_stutter(&op.input, out))
        })
        .collect()
}
