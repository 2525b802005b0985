//! A history: every call a clerk made, when, with what, and what came back.
//!
//! Drivers (the simulator, the server's tests) record each operation as it
//! is invoked and as it returns. An operation whose answer never came (a
//! timeout, a crash of the clerk's connection) keeps an unknown outcome: it
//! may have taken effect at any time after its call, or never.

use crate::op::{Op, OpResult};

/// A clerk's id in a history (one lane in the picture).
pub type ClientId = u64;

/// An operation's position in its history, handed out by [`History::invoke`].
pub type OpId = usize;

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<O> {
    /// Invoked and not (yet) answered; checked like [`Outcome::Unknown`].
    Pending,
    /// Answered with `output` at `time`.
    Returned {
        /// Return time (same clock as the call).
        time: u64,
        /// The answer the clerk received.
        output: O,
    },
    /// The clerk gave up (timeout, lost connection): it may have taken
    /// effect at any point after its call, or never.
    Unknown,
}

/// One call in a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I = Op, O = OpResult> {
    /// The clerk that called it.
    pub client: ClientId,
    /// Call time, in nanoseconds of virtual or real time.
    pub call: u64,
    /// What was asked.
    pub input: I,
    /// How it ended.
    pub outcome: Outcome<O>,
}

impl<I, O> Operation<I, O> {
    /// The return time, `None` when the outcome is unknown.
    pub fn ret(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Returned { time, .. } => Some(time),
            _ => None,
        }
    }

    /// The answer, `None` when the outcome is unknown.
    pub fn output(&self) -> Option<&O> {
        match &self.outcome {
            Outcome::Returned { output, .. } => Some(output),
            _ => None,
        }
    }
}

/// A recorder of operations, in call order.
///
/// Times are `u64` nanoseconds on one clock for the whole history. Two
/// operations are ordered only if one returned strictly before the other was
/// called; equal times count as concurrent. Not thread-safe by itself: a
/// multi-threaded driver wraps it in a `Mutex`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History<I = Op, O = OpResult> {
    ops: Vec<Operation<I, O>>,
}

impl<I, O> Default for History<I, O> {
    fn default() -> Self {
        History { ops: Vec::new() }
    }
}

impl<I, O> History<I, O> {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A history of already recorded operations.
    pub fn from_ops(ops: Vec<Operation<I, O>>) -> Self {
        History { ops }
    }

    /// Records that `client` called `input` at `time`; the id completes it.
    pub fn invoke(&mut self, client: ClientId, input: I, time: u64) -> OpId {
        self.ops.push(Operation {
            client,
            call: time,
            input,
            outcome: Outcome::Pending,
        });
        self.ops.len() - 1
    }

    /// Records that operation `id` returned `output` at `time`.
    ///
    /// # Panics
    /// If `id` was not handed out by [`History::invoke`], was already
    /// completed, or `time` is before its call: all bugs of the driver.
    pub fn complete(&mut self, id: OpId, output: O, time: u64) {
        let op = &mut self.ops[id];
        assert!(
            matches!(op.outcome, Outcome::Pending),
            "operation {id} completed twice or after it was marked unknown"
        );
        assert!(
            time >= op.call,
            "operation {id} returns at {time}, before its call at {}",
            op.call
        );
        op.outcome = Outcome::Returned { time, output };
    }

    /// Records that the outcome of operation `id` will never be known.
    ///
    /// # Panics
    /// If `id` was not handed out by [`History::invoke`] or already returned.
    pub fn unknown(&mut self, id: OpId) {
        let op = &mut self.ops[id];
        assert!(
            !matches!(op.outcome, Outcome::Returned { .. }),
            "operation {id} already returned; its outcome is known"
        );
        op.outcome = Outcome::Unknown;
    }

    /// The operations, indexed by [`OpId`].
    pub fn ops(&self) -> &[Operation<I, O>] {
        &self.ops
    }

    /// Mutable access, for tests that corrupt a recorded answer.
    pub fn ops_mut(&mut self) -> &mut [Operation<I, O>] {
        &mut self.ops
    }

    /// Number of operations recorded.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
