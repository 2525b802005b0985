//! Why a simulated run failed.

use thiserror::Error;

use raft_core::NodeId;

/// What went wrong, without the context of when.
#[derive(Debug, Error)]
pub enum FailureKind {
    /// A Raft safety property broke (the checker runs after every event).
    #[error("invariant violated on node {node}: {what}")]
    Invariant { node: NodeId, what: String },
    /// The lab's application side saw something wrong (order, disagreement).
    #[error("apply check failed on node {node}: {what}")]
    Apply { node: NodeId, what: String },
    /// A scenario's expectation failed, like the lab's `t.Fatalf`.
    #[error("{0}")]
    Check(String),
    /// The core returned an error while being driven.
    #[error("node {node}: raft-core error: {source}")]
    Core {
        node: NodeId,
        #[source]
        source: raft_core::Error,
    },
    /// The storage failed to persist or open.
    #[error("node {node}: storage error: {what}")]
    Storage { node: NodeId, what: String },
}

/// A failed run: what broke, when (virtual time) and the events just before.
#[derive(Debug, Error)]
#[error("{kind}\n  at {time_ms:.3} ms of virtual time, after {events} events\n{recent}")]
pub struct SimError {
    /// What broke.
    pub kind: FailureKind,
    /// Virtual time of the failure, in milliseconds.
    pub time_ms: f64,
    /// Events processed before it.
    pub events: u64,
    /// The last notable events, drawn as a timeline.
    pub recent: String,
}

impl SimError {
    /// Whether this is a broken Raft invariant (rather than a missed lab bound).
    pub fn is_invariant(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::Invariant { .. } | FailureKind::Apply { .. }
        )
    }
}
