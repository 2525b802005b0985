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
//! after the undone call. A configuration seen before is skipped (see
//! [`super::memo`]).
//!
//! Operations with unknown outcome have a call and no return: nothing forces
//! them, and the search is done once every operation with a known answer is
//! linearized, so those left over never took effect. Each configuration's
//! candidates are tried in two passes: first the answered ones, then, only
//! when the first pass reaches a return, the unknown ones. The same
//! candidates in a better order: an unknown operation is only placed where
//! nothing else goes on, and configurations without it are met first and
//! then dominate those with it. See [`super::prune`] for the other rules
//! that cut the search.

use std::time::Instant;

use super::bitset::Bitset;
use super::entries::{Entries, Entry, HEAD};
use super::history::{OpId, Operation};
use super::memo::{zobrist, Memo};
use super::model::Model;
use super::prune::{masks_last, stutters, twins};
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
    fn tick(&mut self, memo_bytes: usize) -> Option<Exhausted> {
        self.steps += 1;
        if let Some(max) = self.max_steps {
            if self.steps > max {
                return Some(Exhausted::Steps(max));
            }
        }
        if self.steps.is_multiple_of(1024) {
            if let Some(max) = self.max_memo {
                if memo_bytes > max {
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

/// One partition's search state.
struct Search<'a, M: Model> {
    model: &'a M,
    history: &'a [Operation<M::Input, M::Output>],
    /// The partition's operations (local index `p` → history id).
    ops: Vec<OpId>,
    /// Whether operation `p` has a known answer.
    answered: Vec<bool>,
    /// `p`'s index among the answered, or among the unknown, operations.
    slot: Vec<usize>,
    twin: Vec<Option<usize>>,
    stutter: Vec<bool>,
    list: Entries,
    memo: Memo<M::State>,
    /// Linearized answered operations (K) and its Zobrist hash.
    known: Bitset,
    known_hash: u64,
    placed_known: usize,
    n_known: usize,
    /// Linearized unknown-outcome operations (U).
    unknown: Bitset,
    unplaced_unknown: usize,
    state: M::State,
    /// The choices made: operation, and the state before it.
    stack: Vec<(usize, M::State)>,
    /// The deepest dead end: answered ops placed, prefix, blocked op.
    best: Option<(usize, Vec<usize>, usize)>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, history: &'a [Operation<M::Input, M::Output>], ids: &[OpId]) -> Self {
        // Unknown-outcome reads are invisible either way: drop them.
        let ops: Vec<OpId> = ids
            .iter()
            .copied()
            .filter(|&id| history[id].output().is_some() || !model.is_read_only(&history[id].input))
            .collect();
        let answered: Vec<bool> = ops
            .iter()
            .map(|&id| history[id].output().is_some())
            .collect();
        let mut slot = Vec::with_capacity(ops.len());
        let (mut n_known, mut n_unknown) = (0, 0);
        let mut events = Vec::with_capacity(2 * ops.len());
        for (p, &id) in ops.iter().enumerate() {
            let op = &history[id];
            events.push(((op.call, 0, p), Entry::Call(p)));
            if let Some(r) = op.ret() {
                events.push(((r, 1, p), Entry::Return(p)));
                slot.push(n_known);
                n_known += 1;
            } else {
                slot.push(n_unknown);
                n_unknown += 1;
            }
        }
        Search {
            model,
            history,
            list: Entries::new(ops.len(), events),
            twin: twins::<M>(history, &ops),
            stutter: stutters(model, history, &ops),
            ops,
            answered,
            slot,
            memo: Memo::new(n_known, n_unknown),
            known: Bitset::new(n_known),
            known_hash: 0,
            placed_known: 0,
            n_known,
            unknown: Bitset::new(n_unknown),
            unplaced_unknown: n_unknown,
            state: model.init(),
            stack: Vec::new(),
            best: None,
        }
    }

    fn run(mut self, meter: &mut Meter) -> Found {
        let mut entry = self.list.next[HEAD];
        // Which pass of the current configuration's candidates: answered
        // operations first, then unknown ones.
        let mut unknown_pass = false;
        while self.placed_known < self.n_known {
            if let Some(spent) = meter.tick(self.memo.bytes()) {
                return Found::Exhausted(spent);
            }
            match self.list.kind[entry] {
                Entry::Call(p) if self.answered[p] != unknown_pass => {
                    if self.place(p) {
                        entry = self.list.next[HEAD];
                        unknown_pass = false;
                    } else {
                        entry = self.list.next[entry];
                    }
                }
                Entry::Call(_) => entry = self.list.next[entry],
                Entry::Return(_) if !unknown_pass && self.unplaced_unknown > 0 => {
                    unknown_pass = true;
                    entry = self.list.next[HEAD];
                }
                Entry::Return(p) => {
                    self.record_dead_end(p);
                    let Some(q) = self.backtrack() else {
                        let (_, prefix, blocked) = self.best.expect("recorded just above");
                        return Found::Illegal {
                            prefix: prefix.into_iter().map(|p| self.ops[p]).collect(),
                            blocked: self.ops[blocked],
                        };
                    };
                    entry = self.list.next[self.list.call_of[q]];
                    unknown_pass = !self.answered[q];
                }
                Entry::Head | Entry::Tail => {
                    unreachable!("an answered operation's return is always ahead in the list")
                }
            }
        }
        Found::Linearizable(self.stack.iter().map(|f| self.ops[f.0]).collect())
    }

    /// Tries to linearize `p` next; true if it fits and leads somewhere new.
    fn place(&mut self, p: usize) -> bool {
        let op = &self.history[self.ops[p]];
        // Identical unknown operations are used in call order.
        if self.twin[p].is_some_and(|t| !self.unknown.contains(self.slot[t])) {
            return false;
        }
        let Some(next) = self.model.step(&self.state, &op.input, op.output()) else {
            return false;
        };
        let last = self.stack.last();
        if masks_last(
            self.model,
            self.history,
            &self.ops,
            last,
            &op.input,
            op.output(),
            &next,
        ) {
            return false;
        }
        let s = self.slot[p];
        let fresh = if self.answered[p] {
            self.known.insert(s);
            let h = self.known_hash ^ zobrist(s);
            let fresh = self.memo.visit(h, &self.known, &next, &self.unknown);
            if fresh {
                self.known_hash = h;
                self.placed_known += 1;
            } else {
                self.known.remove(s);
            }
            fresh
        } else {
            self.unknown.insert(s);
            let fresh = self
                .memo
                .visit(self.known_hash, &self.known, &next, &self.unknown);
            if fresh {
                self.unplaced_unknown -= 1;
            } else {
                self.unknown.remove(s);
            }
            fresh
        };
        if fresh {
            self.stack
                .push((p, std::mem::replace(&mut self.state, next)));
            self.list.lift(p);
        }
        fresh
    }

    /// Notes a dead end at `p`'s return if it is the deepest so far, by
    /// answered operations placed; unknown-outcome operations that trail
    /// the prefix explain nothing and are left out.
    fn record_dead_end(&mut self, p: usize) {
        if self.best.as_ref().is_some_and(|b| self.placed_known <= b.0) {
            return;
        }
        let mut prefix: Vec<usize> = self.stack.iter().map(|f| f.0).collect();
        while prefix.last().is_some_and(|&q| !self.answered[q]) {
            prefix.pop();
        }
        self.best = Some((self.placed_known, prefix, p));
    }

    /// Undoes the last choice and returns it; a stutter undone means its
    /// parent configuration failed too (see [`stutters`]), so that choice
    /// is undone as well. `None` when there is nothing left to undo.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let (q, before) = self.stack.pop()?;
            self.state = before;
            self.list.unlift(q);
            let s = self.slot[q];
            if self.answered[q] {
                self.known.remove(s);
                self.known_hash ^= zobrist(s);
                self.placed_known -= 1;
            } else {
                self.unknown.remove(s);
                self.unplaced_unknown += 1;
            }
            if !self.stutter[q] {
                return Some(q);
            }
        }
    }
}

/// Searches for a linearization of the operations `ids` of `history`.
pub(crate) fn search<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    ids: &[OpId],
    meter: &mut Meter,
) -> Found {
    Search::new(model, history, ids).run(meter)
}
