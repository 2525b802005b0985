//! What clients and servers say to each other: requests, replies and the
//! typed errors. These values travel over the simulator's network and, in
//! the real server, over the wire, so they are plain serde data.

use raft_core::NodeId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::command::RecordError;
use crate::op::{Op, OpResult};

/// A client session's id: the log index of its registration record (thesis
/// §6.3), so ids are unique without any coordination.
pub type SessionId = u64;
/// A request's number within its session; the first is 1.
pub type Seq = u64;
/// The clerk's id for one message it sends, echoed in the reply so that a
/// late reply to an older attempt is recognised.
pub type RequestId = u64;

/// One message from a clerk to a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRequest {
    /// Echoed in the reply.
    pub id: RequestId,
    /// What is asked.
    pub body: RequestBody,
}

/// What a clerk asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Open a session; answered with [`Answer::Registered`].
    Register,
    /// Apply `op` exactly once: `seq` numbers it within `session`, and a retry
    /// carries the same `seq` (thesis §6.3).
    Write {
        session: SessionId,
        seq: Seq,
        op: Op,
    },
    /// A read (`op.is_read()`); it carries no sequence number, because reading
    /// twice changes nothing.
    Read { op: Op, consistency: Consistency },
    /// Apply `op` with no session: applied every time it is proposed, with no
    /// duplicate check, so a client that retries after an unknown outcome may
    /// apply it twice (at-least-once, like etcd's plain puts). For clients
    /// that cannot keep a session, e.g. one-off HTTP writes.
    PlainWrite { op: Op },
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Consistency {
    /// Linearizable: the leader confirms it still leads and answers from a
    /// state that includes every write committed before the read arrived
    /// (ReadIndex, thesis §6.4).
    #[default]
    Linearizable,
    /// Whatever this replica has applied (serializable, possibly stale).
    Stale,
}

/// One message from a server back to a clerk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientReply {
    /// The [`ClientRequest::id`] this answers.
    pub id: RequestId,
    /// The answer, or why there is none.
    pub result: Result<Answer, KvError>,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// The session was opened.
    Registered { session: SessionId },
    /// The operation's result.
    Op(OpResult),
}

/// Everything that can go wrong, typed, for clerks and servers alike.
///
/// Some errors are answers from the state machine and are the same on every
/// replica (they are cached as the answer of their sequence number); others
/// are about one server at one moment and say "try again, maybe elsewhere".
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error, Serialize, Deserialize)]
pub enum KvError {
    /// This server is not the leader; `leader` is the one it knows, if any.
    #[error("not the leader (leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// The request's log entry was replaced by another leader's entry, or this
    /// server can no longer tell what became of it; retrying with the same
    /// sequence number is safe.
    #[error("the request's log entry was lost (leader is {leader:?}); retry")]
    EntryLost { leader: Option<NodeId> },
    /// Too many requests are waiting on this server; retry shortly.
    #[error("server busy; retry")]
    Busy,
    /// This server cannot take requests now (storage failing, shutting down).
    #[error("server unavailable: {reason}")]
    Unavailable { reason: String },
    /// The session is unknown: it expired, was evicted, or never existed. The
    /// outcome of the request is unknown; open a new session for later calls.
    #[error("session {session} expired")]
    SessionExpired { session: SessionId },
    /// A request older than the session's last one (a very late retry).
    #[error("sequence number {seq} is older than the session's last, {last}")]
    StaleSequence { seq: Seq, last: Seq },
    /// The key is over the configured limit.
    #[error("key of {len} bytes is over the limit of {max}")]
    KeyTooLarge { len: u64, max: u64 },
    /// The value (or an appended result) is over the configured limit.
    #[error("value of {len} bytes is over the limit of {max}")]
    ValueTooLarge { len: u64, max: u64 },
    /// The request is malformed (a write sent as a read, sequence number 0...).
    #[error("bad request: {reason}")]
    BadRequest { reason: String },
    /// The log record at the request's index did not decode; every replica
    /// answers the same.
    #[error("log record does not decode: {0}")]
    BadRecord(RecordError),
    /// The clerk's deadline passed without an answer; a write's outcome is unknown.
    #[error("no answer before the deadline")]
    Timeout,
}

impl KvError {
    /// Whether a clerk should send the same request again (maybe to another
    /// server) rather than give this error to its caller.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KvError::NotLeader { .. }
                | KvError::EntryLost { .. }
                | KvError::Busy
                | KvError::Unavailable { .. }
                | KvError::Timeout
        )
    }

    /// Whether a write that ended with this error may still have taken effect,
    /// so that a history must treat its outcome as unknown. Only the size
    /// limits and a malformed request are refused before anything is applied.
    pub fn may_have_applied(&self) -> bool {
        !matches!(
            self,
            KvError::KeyTooLarge { .. }
                | KvError::ValueTooLarge { .. }
                | KvError::BadRequest { .. }
        )
    }
}
