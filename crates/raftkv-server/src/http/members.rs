//! The admin routes: the member list, membership changes and leadership
//! transfer. Changes go to the leader like writes (a follower answers 307),
//! and are answered once committed.
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/members` | the configuration this node sees (`MembersReport`) |
//! | `POST /v1/members` `{"op":"add_learner","id":6,"raft":"h:p","client":"h:p"}` | the configuration after it |
//! | `POST /v1/members` `{"op":"promote","ids":[6]}` | idem (several ids: one joint change) |
//! | `POST /v1/members` `{"op":"remove","ids":[1]}` | idem |
//! | `POST /v1/transfer-leader` `{"to":2}` (or `{}`: the most caught-up voter) | `TransferReport` |

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use raft_core::NodeId;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::{stopping, ApiError, AppState, Redirect, RETRY_AFTER_SECS};
use crate::admin::{AdminError, AdminReply, AdminRequest};
use crate::config::{check_addr, PeerAddrs};
use crate::driver::Input;

/// `POST /v1/members`'s body.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Change {
    AddLearner {
        id: NodeId,
        raft: String,
        client: String,
        #[serde(default)]
        cluster_id: Option<String>,
    },
    Promote {
        #[serde(default)]
        id: Option<NodeId>,
        #[serde(default)]
        ids: Vec<NodeId>,
    },
    Remove {
        #[serde(default)]
        id: Option<NodeId>,
        #[serde(default)]
        ids: Vec<NodeId>,
    },
}

/// `POST /v1/transfer-leader`'s body.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Transfer {
    #[serde(default)]
    to: Option<NodeId>,
}

pub(super) async fn list(State(s): State<AppState>) -> Result<Response, ApiError> {
    admin(&s, AdminRequest::Members, "/v1/members").await
}

pub(super) async fn change(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let change: Change = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("bad_json", format!("a membership change: {e}")))?;
    let ids = |id: Option<NodeId>, mut ids: Vec<NodeId>| {
        ids.extend(id);
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() || ids.contains(&0) {
            return Err(ApiError::bad(
                "bad_change",
                "give the node ids as \"ids\": [n, ...] (ids start at 1)",
            ));
        }
        Ok(ids)
    };
    let request = match change {
        Change::AddLearner {
            id,
            raft,
            client,
            cluster_id,
        } => {
            if id == 0 {
                return Err(ApiError::bad("bad_change", "node id 0 is reserved"));
            }
            for addr in [&raft, &client] {
                check_addr(addr).map_err(|e| ApiError::bad("bad_change", e.to_string()))?;
            }
            AdminRequest::AddLearner {
                id,
                addrs: PeerAddrs { raft, client },
                cluster_id,
            }
        }
        Change::Promote { id, ids: list } => AdminRequest::Promote(ids(id, list)?),
        Change::Remove { id, ids: list } => AdminRequest::Remove(ids(id, list)?),
    };
    admin(&s, request, "/v1/members").await
}

pub(super) async fn transfer(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let t: Transfer = if body.iter().all(u8::is_ascii_whitespace) {
        Transfer::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad("bad_json", format!("a transfer: {e}")))?
    };
    admin(
        &s,
        AdminRequest::TransferLeader(t.to),
        "/v1/transfer-leader",
    )
    .await
}

/// Hands `request` to the driver and turns its answer into HTTP.
async fn admin(s: &AppState, request: AdminRequest, path: &str) -> Result<Response, ApiError> {
    if s.is_closing() {
        return Err(stopping());
    }
    let (tx, rx) = oneshot::channel();
    match s.inner.inbox.try_send(Input::Admin { request, reply: tx }) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            return Err(ApiError::unavailable(
                "busy",
                "too many requests waiting; retry",
            ))
        }
        Err(mpsc::error::TrySendError::Closed(_)) => return Err(stopping()),
    }
    let reply = rx.await.map_err(|_| {
        ApiError::unavailable(
            "entry_lost",
            "the node stopped or reopened its log; the change may or may not take effect",
        )
    })?;
    match reply {
        Ok(AdminReply::Members(m)) => Ok(Json(m).into_response()),
        Ok(AdminReply::Transferred(t)) => Ok(Json(t).into_response()),
        Err(e) => Err(from_admin(e, s, path)),
    }
}

/// Maps an admin error to its answer; "not the leader" becomes a 307.
pub fn from_admin_with(e: AdminError, ctx: &Redirect<'_>) -> ApiError {
    use StatusCode as S;
    let message = e.to_string();
    let retry = |e: ApiError| ApiError {
        retry_after: Some(RETRY_AFTER_SECS),
        ..e
    };
    match e {
        AdminError::NotLeader { leader } => {
            super::from_kv(raft_kv::KvError::NotLeader { leader }, ctx)
        }
        AdminError::ChangeInProgress(_) => {
            retry(ApiError::new(S::CONFLICT, "change_in_progress", message))
        }
        AdminError::TransferInProgress => {
            retry(ApiError::new(S::CONFLICT, "transfer_in_progress", message))
        }
        AdminError::NotCaughtUp { .. } => {
            retry(ApiError::new(S::CONFLICT, "not_caught_up", message))
        }
        AdminError::LeaderNotReady => ApiError::unavailable("leader_not_ready", message),
        AdminError::UnknownNode(_) => ApiError::new(S::NOT_FOUND, "unknown_node", message),
        AdminError::AlreadyMember(..) => ApiError::new(S::CONFLICT, "already_member", message),
        AdminError::Retired(_) => ApiError::new(S::CONFLICT, "id_retired", message),
        AdminError::BadChange(_) => ApiError::bad("bad_change", message),
        AdminError::BadTransferTarget(_) => ApiError::bad("bad_transfer_target", message),
        AdminError::WrongCluster { .. } => ApiError::bad("wrong_cluster", message),
        AdminError::Lost { .. } => ApiError::unavailable("entry_lost", message),
        AdminError::Timeout => ApiError::new(S::GATEWAY_TIMEOUT, "timeout", message),
        AdminError::TransferFailed(_) => ApiError::unavailable("transfer_failed", message),
        AdminError::Unavailable(_) => ApiError::unavailable("unavailable", message),
    }
}

fn from_admin(e: AdminError, s: &AppState, path: &str) -> ApiError {
    let peers = s.inner.peers.read().expect("book lock").clone();
    let ctx = Redirect {
        me: s.inner.me,
        peers: &peers,
        path_and_query: path,
    };
    from_admin_with(e, &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_peers;

    #[test]
    fn every_admin_error_has_its_status_and_kind() {
        use StatusCode as S;
        let peers = parse_peers("1=h:1/c1:81,2=h:2/c2:82").unwrap();
        let ctx = Redirect {
            me: 1,
            peers: &peers,
            path_and_query: "/v1/members",
        };
        let cases = [
            (
                AdminError::NotLeader { leader: Some(2) },
                S::TEMPORARY_REDIRECT,
                "not_leader",
            ),
            (
                AdminError::NotLeader { leader: None },
                S::SERVICE_UNAVAILABLE,
                "no_leader",
            ),
            (
                AdminError::ChangeInProgress("x".into()),
                S::CONFLICT,
                "change_in_progress",
            ),
            (
                AdminError::TransferInProgress,
                S::CONFLICT,
                "transfer_in_progress",
            ),
            (
                AdminError::NotCaughtUp {
                    id: 4,
                    matched: 1,
                    last: 900,
                },
                S::CONFLICT,
                "not_caught_up",
            ),
            (
                AdminError::LeaderNotReady,
                S::SERVICE_UNAVAILABLE,
                "leader_not_ready",
            ),
            (AdminError::UnknownNode(9), S::NOT_FOUND, "unknown_node"),
            (
                AdminError::AlreadyMember(2, "".into()),
                S::CONFLICT,
                "already_member",
            ),
            (AdminError::Retired(3), S::CONFLICT, "id_retired"),
            (
                AdminError::BadChange("x".into()),
                S::BAD_REQUEST,
                "bad_change",
            ),
            (
                AdminError::BadTransferTarget(7),
                S::BAD_REQUEST,
                "bad_transfer_target",
            ),
            (
                AdminError::WrongCluster {
                    found: "a".into(),
                    expected: "b".into(),
                },
                S::BAD_REQUEST,
                "wrong_cluster",
            ),
            (
                AdminError::Lost { leader: None },
                S::SERVICE_UNAVAILABLE,
                "entry_lost",
            ),
            (AdminError::Timeout, S::GATEWAY_TIMEOUT, "timeout"),
            (
                AdminError::TransferFailed(2),
                S::SERVICE_UNAVAILABLE,
                "transfer_failed",
            ),
        ];
        for (err, status, kind) in cases {
            let e = from_admin_with(err, &ctx);
            assert_eq!((e.status, e.kind), (status, kind));
        }
        let e = from_admin_with(AdminError::NotLeader { leader: Some(2) }, &ctx);
        assert_eq!(e.location.as_deref(), Some("http://c2:82/v1/members"));
    }
}
