//! What can go wrong with a call, typed, and whether a write that failed may
//! still have been applied.

use std::time::Duration;

use thiserror::Error;

/// Everything a call can end with besides an answer.
///
/// The question a caller cares most about after a failed write is whether
/// it was applied: [`Error::may_have_applied`] answers it. Only
/// [`Error::OutcomeUnknown`] and [`Error::SessionExpired`] say "maybe";
/// every other error means the write was not applied.
#[derive(Debug, Error)]
pub enum Error {
    /// The endpoint list is empty.
    #[error("no endpoints given")]
    NoEndpoints,
    /// An endpoint does not parse as `host:port` or `http://host:port`.
    #[error("bad endpoint {0:?} (expected host:port or http://host:port)")]
    BadEndpoint(String),
    /// No node gave an answer before the call's deadline, and nothing was
    /// applied: every attempt was refused before its write reached the log
    /// (no leader, busy, connection refused).
    #[error(
        "cluster unavailable: no answer in {elapsed:?} after {attempts} attempts (last: {last})"
    )]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// What the last attempt got.
        last: String,
    },
    /// A write may or may not have been applied: an attempt was sent and no
    /// answer came (a timeout, a connection lost, a leader change). A plain
    /// write is not retried after this (a retry could apply it twice); a
    /// session write is retried with the same number until the deadline.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The leader's disk is full: it refuses writes (HTTP 507 `nospace`)
    /// until space is freed. Reads still work. Nothing was applied.
    #[error("no space left on the leader's disk: {0}")]
    NoSpace(String),
    /// The session expired or was evicted; the call's outcome is unknown.
    /// Open a new session for later calls.
    #[error("session {0} expired; open a new one")]
    SessionExpired(u64),
    /// The server refused the request as malformed or over a limit (a 4xx
    /// answer: `bad_key`, `key_too_large`, `value_too_large`, ...). Nothing
    /// was applied; sending it again gets the same answer.
    #[error("refused ({status} {kind}): {message}")]
    Rejected {
        /// HTTP status code.
        status: u16,
        /// The server's error kind.
        kind: String,
        /// The server's message.
        message: String,
    },
    /// An answer this client does not understand (another server version?).
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl Error {
    /// Whether a write that ended with this error may have been applied.
    pub fn may_have_applied(&self) -> bool {
        matches!(self, Error::OutcomeUnknown(_) | Error::SessionExpired(_))
    }

    /// The server's error kind (`key_too_large`, `nospace`, ...) when the
    /// error is a server's answer.
    pub fn kind(&self) -> Option<&str> {
        match self {
            Error::Rejected { kind, .. } => Some(kind),
            Error::NoSpace(_) => Some("nospace"),
            Error::SessionExpired(_) => Some("session_expired"),
            _ => None,
        }
    }
}

/// How one attempt ended, for the retry loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Not applied, try again (maybe elsewhere): no leader, busy, refused
    /// connection, a redirect loop.
    Refused(String),
    /// Sent, and no answer: the write may have been applied.
    Unknown(String),
}

impl Attempt {
    pub fn message(&self) -> &str {
        match self {
            Attempt::Refused(m) | Attempt::Unknown(m) => m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unknown_outcomes_may_have_applied() {
        assert!(Error::OutcomeUnknown("x".into()).may_have_applied());
        assert!(Error::SessionExpired(3).may_have_applied());
        let not = [
            Error::NoSpace("full".into()),
            Error::Unavailable {
                attempts: 1,
                elapsed: Duration::ZERO,
                last: "x".into(),
            },
            Error::Rejected {
                status: 400,
                kind: "bad_key".into(),
                message: "m".into(),
            },
        ];
        for e in not {
            assert!(!e.may_have_applied(), "{e}");
        }
        assert_eq!(Error::NoSpace("x".into()).kind(), Some("nospace"));
    }
}
