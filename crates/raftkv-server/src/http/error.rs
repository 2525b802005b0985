//! Errors as HTTP answers: a status code, a JSON body
//! `{"error": kind, "message": text, "leader": {"id", "client"} | null}`,
//! and `Retry-After` or `Location` where they help.
//!
//! | error | status | `error` |
//! |---|---|---|
//! | not the leader, leader known | 307 + `Location` on the leader | `not_leader` |
//! | not the leader, none known | 503 + `Retry-After` | `no_leader` |
//! | entry lost to another leader | 503 + `Retry-After` | `entry_lost` |
//! | too many requests waiting | 503 + `Retry-After` | `busy` |
//! | node stopping or storage failing | 503 + `Retry-After` | `unavailable` |
//! | session expired | 410 | `session_expired` |
//! | sequence number older than the session's last | 409 | `stale_sequence` |
//! | key over the limit | 414 | `key_too_large` |
//! | value over the limit | 413 | `value_too_large` |
//! | body over the limit | 413 | `body_too_large` |
//! | malformed request (JSON, key encoding, header) | 400 | `bad_request`, `bad_json`, `bad_key`, `bad_header` |
//! | key absent | 404 | `key_not_found` |
//! | log record does not decode | 500 | `bad_record` |
//! | no answer in time | 504 | `timeout` |

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use raft_core::NodeId;
use raft_kv::KvError;
use serde_json::json;

use crate::config::PeerAddrs;
use crate::status::LeaderRef;

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// The `error` field: a stable, machine-readable kind.
    pub kind: &'static str,
    /// The `message` field: for people.
    pub message: String,
    /// The leader, when this node knows it.
    pub leader: Option<LeaderRef>,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u32>,
    /// `Location` (with a 307).
    pub location: Option<String>,
}

impl ApiError {
    /// An error with no leader, retry or location.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            leader: None,
            retry_after: None,
            location: None,
        }
    }

    /// A 400 of the given kind.
    pub fn bad(kind: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, kind, message)
    }

    /// A 503 that says when to retry.
    pub fn unavailable(kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(RETRY_AFTER_SECS),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, kind, message)
        }
    }
}

/// What the mapping needs to build a redirect.
pub struct Redirect<'a> {
    /// This node.
    pub me: NodeId,
    /// Every member's addresses.
    pub peers: &'a BTreeMap<NodeId, PeerAddrs>,
    /// The request's path and query, as received (still encoded).
    pub path_and_query: &'a str,
}

impl Redirect<'_> {
    fn leader(&self, id: Option<NodeId>) -> Option<LeaderRef> {
        let id = id.filter(|&id| id != self.me)?;
        let client = self.peers.get(&id)?.client.clone();
        Some(LeaderRef { id, client })
    }
}

/// Maps a KV error to its answer; "not the leader" becomes a 307 to the
/// leader's client address when this node knows it.
pub fn from_kv(e: KvError, ctx: &Redirect<'_>) -> ApiError {
    use StatusCode as S;
    let message = e.to_string();
    match e {
        KvError::NotLeader { leader } => match ctx.leader(leader) {
            Some(l) => ApiError {
                location: Some(format!("http://{}{}", l.client, ctx.path_and_query)),
                leader: Some(l),
                ..ApiError::new(S::TEMPORARY_REDIRECT, "not_leader", message)
            },
            None => ApiError::unavailable("no_leader", "no leader is known yet; retry"),
        },
        KvError::EntryLost { leader } => ApiError {
            leader: ctx.leader(leader),
            ..ApiError::unavailable("entry_lost", message)
        },
        KvError::Busy => ApiError::unavailable("busy", message),
        KvError::Unavailable { .. } => ApiError::unavailable("unavailable", message),
        KvError::SessionExpired { .. } => ApiError::new(S::GONE, "session_expired", message),
        KvError::StaleSequence { .. } => ApiError::new(S::CONFLICT, "stale_sequence", message),
        KvError::KeyTooLarge { .. } => ApiError::new(S::URI_TOO_LONG, "key_too_large", message),
        KvError::ValueTooLarge { .. } => {
            ApiError::new(S::PAYLOAD_TOO_LARGE, "value_too_large", message)
        }
        KvError::BadRequest { .. } => ApiError::new(S::BAD_REQUEST, "bad_request", message),
        KvError::BadRecord(_) => ApiError::new(S::INTERNAL_SERVER_ERROR, "bad_record", message),
        KvError::Timeout => ApiError::new(S::GATEWAY_TIMEOUT, "timeout", message),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.kind,
            "message": self.message,
            "leader": self.leader,
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        let headers = resp.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(loc) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, loc);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_peers;

    fn map(e: KvError) -> ApiError {
        let peers = parse_peers("1=h:1/c1:81,2=h:2/c2:82").unwrap();
        let ctx = Redirect {
            me: 1,
            peers: &peers,
            path_and_query: "/v1/kv/a%2Fb?x=1",
        };
        from_kv(e, &ctx)
    }

    #[test]
    fn not_leader_redirects_to_the_leaders_client_address() {
        let e = map(KvError::NotLeader { leader: Some(2) });
        assert_eq!(e.status, StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(e.kind, "not_leader");
        assert_eq!(e.location.as_deref(), Some("http://c2:82/v1/kv/a%2Fb?x=1"));
        assert_eq!(e.leader.map(|l| l.id), Some(2));
        // No leader, itself (stale), or one not in the peer list: retry later.
        for leader in [None, Some(1), Some(9)] {
            let e = map(KvError::NotLeader { leader });
            assert_eq!(
                (e.status, e.kind),
                (StatusCode::SERVICE_UNAVAILABLE, "no_leader")
            );
            assert_eq!((e.retry_after, e.location), (Some(1), None));
        }
    }

    #[test]
    fn every_error_has_its_status_and_kind() {
        use StatusCode as S;
        let cases = [
            (
                KvError::EntryLost { leader: Some(2) },
                S::SERVICE_UNAVAILABLE,
                "entry_lost",
            ),
            (KvError::Busy, S::SERVICE_UNAVAILABLE, "busy"),
            (
                KvError::Unavailable { reason: "x".into() },
                S::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
            (
                KvError::SessionExpired { session: 3 },
                S::GONE,
                "session_expired",
            ),
            (
                KvError::StaleSequence { seq: 1, last: 2 },
                S::CONFLICT,
                "stale_sequence",
            ),
            (
                KvError::KeyTooLarge { len: 9, max: 1 },
                S::URI_TOO_LONG,
                "key_too_large",
            ),
            (
                KvError::ValueTooLarge { len: 9, max: 1 },
                S::PAYLOAD_TOO_LARGE,
                "value_too_large",
            ),
            (
                KvError::BadRequest { reason: "x".into() },
                S::BAD_REQUEST,
                "bad_request",
            ),
            (
                KvError::BadRecord(raft_kv::RecordError::Empty),
                S::INTERNAL_SERVER_ERROR,
                "bad_record",
            ),
            (KvError::Timeout, S::GATEWAY_TIMEOUT, "timeout"),
        ];
        for (err, status, kind) in cases {
            let retryable = err.is_retryable();
            let e = map(err);
            assert_eq!((e.status, e.kind), (status, kind));
            // Every 503 says when to retry; only retryable errors are 503s.
            assert_eq!(e.retry_after.is_some(), status == S::SERVICE_UNAVAILABLE);
            if status == S::SERVICE_UNAVAILABLE {
                assert!(retryable, "{kind}");
            }
        }
        assert_eq!(
            map(KvError::EntryLost { leader: Some(2) })
                .leader
                .unwrap()
                .client,
            "c2:82"
        );
    }

    #[tokio::test]
    async fn the_body_is_json_with_headers() {
        use http_body_util::BodyExt;
        let resp = map(KvError::NotLeader { leader: Some(2) }).into_response();
        assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            resp.headers()[header::LOCATION],
            "http://c2:82/v1/kv/a%2Fb?x=1"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "not_leader");
        assert_eq!(v["leader"]["id"], 2);
        assert_eq!(v["leader"]["client"], "c2:82");
        let resp = map(KvError::Busy).into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (v["error"].as_str(), v["leader"].is_null()),
            (Some("busy"), true)
        );
    }
}
