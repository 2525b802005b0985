//! Membership and leadership calls: the member list, adding a learner,
//! promoting, removing, and handing leadership to another voter.
//!
//! Every change is answered once it has committed. The server answers a
//! repeated change that is already done with success (`changed: false`),
//! so these calls are retried on any failure, like session writes. While
//! another change or a transfer is under way, or a learner is not caught
//! up yet, the server says so (409 with `Retry-After`): these calls wait
//! and ask again until the call's deadline.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::{Client, Retry};
use crate::http::Call;
use crate::types::LeaderInfo;
use crate::Error;

/// Kinds of refusal that pass by themselves: asked again after a pause.
const TRANSIENT: [&str; 3] = [
    "change_in_progress",
    "transfer_in_progress",
    "not_caught_up",
];
/// Pause between two attempts after a transient refusal.
const PAUSE: Duration = Duration::from_millis(200);

/// The configuration as one node sees it (`GET /v1/members`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// The cluster id.
    pub cluster_id: String,
    /// The node that answered.
    pub node: u64,
    /// The leader it knows of.
    pub leader: Option<LeaderInfo>,
    /// Voters (during a joint change: the new configuration's).
    pub voters: Vec<Member>,
    /// Learners: they receive the log but do not vote.
    pub learners: Vec<Member>,
    /// During a joint change, the old configuration's voters.
    #[serde(default)]
    pub voters_outgoing: Vec<u64>,
    /// Whether a joint change is in force.
    #[serde(default)]
    pub joint: bool,
    /// Whether the call changed the configuration (false: it already was so).
    #[serde(default)]
    pub changed: bool,
    /// The answering node's commit index.
    #[serde(default)]
    pub commit: u64,
}

impl Members {
    /// The voters' ids.
    pub fn voter_ids(&self) -> Vec<u64> {
        self.voters.iter().map(|m| m.id).collect()
    }

    /// The learners' ids.
    pub fn learner_ids(&self) -> Vec<u64> {
        self.learners.iter().map(|m| m.id).collect()
    }
}

/// One member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its node id.
    pub id: u64,
    /// Its Raft address.
    pub raft: String,
    /// Its client address.
    pub client: String,
    /// The leader's match index for it (when the leader answered).
    #[serde(default)]
    pub match_index: Option<u64>,
}

/// The answer of a leadership transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The leader before.
    pub from: u64,
    /// The leader now.
    pub to: u64,
    /// The new leader's term.
    pub term: u64,
    /// Whether leadership moved (false: `to` already led).
    pub changed: bool,
}

impl Client {
    /// The configuration as the leader sees it (any node's, if no leader
    /// is known).
    pub async fn members(&self) -> Result<Members, Error> {
        let call = json_call(Method::GET, "/v1/members", Bytes::new());
        let reply = self.run(&call, Retry::Always).await?;
        decode(&reply.body)
    }

    /// Adds node `id` as a learner reachable at `raft` (peers) and `client`
    /// (HTTP), both `host:port`; answered once the change committed.
    pub async fn add_learner(&self, id: u64, raft: &str, client: &str) -> Result<Members, Error> {
        let body = json!({"op": "add_learner", "id": id, "raft": raft, "client": client});
        self.change(body).await
    }

    /// Makes learners voters: one id is a single-server change, several
    /// one joint change. Waits while a learner is not caught up.
    pub async fn promote(&self, ids: &[u64]) -> Result<Members, Error> {
        self.change(json!({"op": "promote", "ids": ids})).await
    }

    /// Removes members: one id is a single-server change, several one
    /// joint change. Removing the leader makes it hand over first.
    pub async fn remove(&self, ids: &[u64]) -> Result<Members, Error> {
        self.change(json!({"op": "remove", "ids": ids})).await
    }

    /// Hands leadership to voter `to` (`None`: the most caught-up voter);
    /// answered once it leads.
    pub async fn transfer_leader(&self, to: Option<u64>) -> Result<Transfer, Error> {
        let body = Bytes::from(json!({ "to": to }).to_string());
        let call = json_call(Method::POST, "/v1/transfer-leader", body);
        let reply = self.patient(&call).await?;
        // The leader moved: whatever this client knew of it is stale.
        self.forget_any_leader();
        decode(&reply.body)
    }

    async fn change(&self, body: serde_json::Value) -> Result<Members, Error> {
        let call = json_call(Method::POST, "/v1/members", Bytes::from(body.to_string()));
        decode(&self.patient(&call).await?.body)
    }

    /// Runs `call`, asking again after a transient refusal until the deadline.
    async fn patient(&self, call: &Call) -> Result<crate::http::Reply, Error> {
        let start = Instant::now();
        loop {
            match self.run(call, Retry::Always).await {
                Err(Error::Rejected { kind, .. })
                    if TRANSIENT.contains(&kind.as_str())
                        && start.elapsed() + PAUSE < self.config().call_timeout =>
                {
                    tokio::time::sleep(PAUSE).await;
                }
                other => return other,
            }
        }
    }
}

fn json_call(method: Method, path: &str, body: Bytes) -> Call {
    Call {
        method,
        path: path.into(),
        body,
        json: true,
        session: None,
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Protocol(format!("an admin answer: {e}")))
}
