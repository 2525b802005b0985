//! Joining a running cluster (`raftkv server --join URL`).
//!
//! 1. **Add:** before its WAL exists, the new node asks the member at URL
//!    (redirected to the leader) to add it as a learner at its addresses,
//!    and retries until that change has committed. The answer lists every
//!    member's addresses; the node records them in its identity file.
//! 2. **Catch up:** the leader replicates to the learner like to any
//!    follower: a snapshot if its log was compacted, then entries.
//! 3. **Promote:** the joiner asks the leader to promote it, again and
//!    again, until its own log shows it as a voter. The leader refuses
//!    (409 `not_caught_up`) while its match index for the learner is more
//!    than [`CATCH_UP_ENTRIES`](crate::admin::CATCH_UP_ENTRIES) behind.
//!
//! The joiner asks rather than the leader watching: the wish to become a
//! voter then lives in one place, the joiner, and survives any number of
//! leader changes with nothing replicated for it (a new leader knows
//! nothing of an old one's plans); and the leader still decides, with the
//! only match index that counts, its own. A node that finds itself removed
//! stops asking: it never adds itself back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use raft_core::NodeId;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::admin::MembersReport;
use crate::config::{PeerAddrs, ServerConfig};
use crate::driver::Input;
use crate::http_client::HttpClient;
use crate::server::StartError;

/// Pause between two attempts to be added or promoted.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// Longest wait for one answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(12);

/// Asks the cluster at `cfg.join` to add this node as a learner; returns
/// every member's addresses (this node's included) once the change committed.
pub(crate) async fn join(
    cfg: &ServerConfig,
    client: SocketAddr,
    raft: SocketAddr,
) -> Result<BTreeMap<NodeId, PeerAddrs>, StartError> {
    let url = cfg.join.clone().unwrap_or_default();
    let base = base_url(&url);
    let me = match cfg.me() {
        Some(me) => me.clone(),
        None => PeerAddrs {
            raft: advertised(cfg.raft_listen.as_deref(), raft)?,
            client: advertised(cfg.listen.as_deref(), client)?,
        },
    };
    let body = json!({
        "op": "add_learner",
        "id": cfg.id,
        "raft": me.raft,
        "client": me.client,
        "cluster_id": cfg.cluster_id,
    })
    .to_string();
    info!(
        "joining the cluster at {url} as node {} (raft {}, client {})",
        cfg.id, me.raft, me.client
    );
    let http = HttpClient::new(CALL_TIMEOUT);
    let deadline = Instant::now() + cfg.join_timeout;
    let headers = [("content-type", "application/json")];
    loop {
        let last = match http
            .send_following(
                Method::POST,
                &format!("{base}/v1/members"),
                &headers,
                Bytes::from(body.clone()),
            )
            .await
        {
            Ok(r) if r.status == StatusCode::OK => {
                let report: MembersReport = serde_json::from_slice(&r.body).map_err(|e| {
                    StartError::Join(format!(
                        "an answer from {url} that is not a member list: {e}"
                    ))
                })?;
                let mut peers: BTreeMap<NodeId, PeerAddrs> = report
                    .voters
                    .iter()
                    .chain(&report.learners)
                    .filter(|m| !m.raft.is_empty() && !m.client.is_empty())
                    .map(|m| {
                        let addrs = PeerAddrs {
                            raft: m.raft.clone(),
                            client: m.client.clone(),
                        };
                        (m.id, addrs)
                    })
                    .collect();
                peers.insert(cfg.id, me);
                info!("added as a learner; members: {:?}", peers.keys());
                return Ok(peers);
            }
            Ok(r) => {
                let v = r.json();
                let kind = v["error"].as_str().unwrap_or("unknown").to_string();
                let message = v["message"].as_str().unwrap_or_default().to_string();
                if !retryable(r.status, &kind) {
                    return Err(StartError::JoinRefused(format!("{kind}: {message}")));
                }
                format!("{} {kind}: {message}", r.status.as_u16())
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() + RETRY_EVERY > deadline {
            return Err(StartError::Join(format!(
                "not added to the cluster at {url} within {:?} (last: {last})",
                cfg.join_timeout
            )));
        }
        debug!("not added yet: {last}");
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// Answers worth asking again: no leader yet, busy, a change or transfer
/// under way, an outcome unknown (asking again is safe: the same addresses
/// are "already done").
fn retryable(status: StatusCode, kind: &str) -> bool {
    status.is_server_error()
        || matches!(
            kind,
            "change_in_progress" | "transfer_in_progress" | "leader_not_ready" | "not_leader"
        )
}

/// `http://host:port` from what the user gave.
fn base_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.starts_with("http://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// The address others reach a bound port at: as given, with the bound port
/// when the given one is 0. A wildcard host names no one.
fn advertised(given: Option<&str>, bound: SocketAddr) -> Result<String, StartError> {
    let given = given.unwrap_or_default();
    let (host, port) = given.rsplit_once(':').unwrap_or((given, "0"));
    let wildcard = ["", "0.0.0.0", "[::]", "::"].contains(&host);
    if wildcard {
        return Err(StartError::JoinRefused(format!(
            "{given:?} binds every interface: to join, --listen and --raft-listen must name an address the members can reach"
        )));
    }
    Ok(if port == "0" {
        format!("{host}:{}", bound.port())
    } else {
        given.to_string()
    })
}

/// Asks the leader to promote this learner until this node's own log shows
/// it as a voter; stops if it finds itself removed, or when `cancel` fires.
pub(crate) async fn promote(
    me: NodeId,
    inbox: mpsc::Sender<Input>,
    seed: Option<String>,
    cancel: CancellationToken,
) {
    let http = HttpClient::new(CALL_TIMEOUT);
    let body = json!({"op": "promote", "ids": [me]}).to_string();
    let headers = [("content-type", "application/json")];
    let mut was_learner = false;
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RETRY_EVERY) => {}
            _ = cancel.cancelled() => return,
        }
        let (tx, rx) = oneshot::channel();
        if inbox.send(Input::Status(tx)).await.is_err() {
            return;
        }
        let Ok(status) = rx.await else { return };
        if status.voters.contains(&me) || status.voters_outgoing.contains(&me) {
            info!("this node is a voter now");
            return;
        }
        if !status.learners.contains(&me) {
            if was_learner {
                warn!("this node was removed from the cluster; not asking to be promoted");
                return;
            }
            continue; // The change that adds it has not reached its log yet.
        }
        was_learner = true;
        let target = status
            .leader
            .map(|l| l.client)
            .filter(|c| !c.is_empty())
            .map(|c| format!("http://{c}"))
            .or_else(|| seed.as_deref().map(base_url));
        let Some(target) = target else { continue };
        let sent = http
            .send_following(
                Method::POST,
                &format!("{target}/v1/members"),
                &headers,
                Bytes::from(body.clone()),
            )
            .await;
        let now = match sent {
            Ok(r) if r.status == StatusCode::OK => {
                info!("promotion to voter committed");
                continue;
            }
            Ok(r) if r.status == StatusCode::NOT_FOUND => {
                warn!("the leader says this node is not a member; not asking to be promoted");
                return;
            }
            Ok(r) => format!("{}: {}", r.status.as_u16(), r.json()["error"]),
            Err(e) => e.to_string(),
        };
        if now != last {
            info!("not promoted yet ({now}); asking again");
            last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses() {
        let bound: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        assert_eq!(
            advertised(Some("127.0.0.1:0"), bound).unwrap(),
            "127.0.0.1:4242"
        );
        assert_eq!(advertised(Some("node6:8001"), bound).unwrap(), "node6:8001");
        assert!(advertised(Some("0.0.0.0:8001"), bound).is_err());
        assert!(advertised(None, bound).is_err());
        assert_eq!(base_url("127.0.0.1:1/"), "http://127.0.0.1:1");
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE, "no_leader"));
        assert!(retryable(StatusCode::CONFLICT, "change_in_progress"));
        assert!(!retryable(StatusCode::CONFLICT, "id_retired"));
    }
}
