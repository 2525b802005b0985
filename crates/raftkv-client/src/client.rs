//! The client: where to send a call (the leader it last heard of, else one
//! found through the nodes' status, else the next endpoint), redirects
//! followed, and retries with backoff while the cluster cannot answer. The
//! same loop carries HTTP calls and binary-protocol requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::task::JoinSet;

use crate::codec;
use crate::error::{Attempt, Error};
use crate::http::{Call, Http, Reply};
use crate::http_kv;
use crate::mux::Mux;
use crate::proto::{self, Request, Response};
use crate::types::{ClientConfig, LeaderInfo, PeerInfo, Protocol, Status};

/// Most redirects one attempt follows (a follower names the leader; a
/// second hop happens only around an election).
const MAX_REDIRECTS: usize = 4;
/// Longest wait for a `/v1/status` answer while looking for the leader.
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(1);

/// Which failures a call may be retried after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and session writes: any failure (a session write is applied
    /// at most once however often it is sent).
    Always,
    /// Plain writes: only failures that prove nothing was applied.
    IfRefused,
}

impl Retry {
    /// Plain writes are retried only while refused; everything else
    /// (reads, session writes, opening a session) on any failure.
    fn of(req: &Request) -> Retry {
        match req {
            Request::Put { session, .. }
            | Request::Delete { session, .. }
            | Request::Append { session, .. }
            | Request::Cas { session, .. }
                if session.is_none() =>
            {
                Retry::IfRefused
            }
            _ => Retry::Always,
        }
    }
}

/// One call, in the protocol that carries it.
#[derive(Clone, Copy)]
enum Wire<'a> {
    Http(&'a Call),
    Binary(&'a Request),
}

impl Wire<'_> {
    /// Whether only the leader answers it.
    fn is_write(&self) -> bool {
        match self {
            Wire::Http(c) => c.method != hyper::Method::GET,
            Wire::Binary(r) => r.is_write(),
        }
    }

    fn session(&self) -> Option<u64> {
        match self {
            Wire::Http(c) => c.session.map(|s| s.0),
            Wire::Binary(
                Request::Put { session, .. }
                | Request::Delete { session, .. }
                | Request::Append { session, .. }
                | Request::Cas { session, .. },
            ) => session.map(|n| n.session),
            Wire::Binary(_) => None,
        }
    }
}

/// An answer, in the protocol that carried it.
enum Answered {
    Http(Reply),
    Binary(Response),
}

/// An async raftkv client. Cheap to clone: clones share the connection
/// pool and what was learnt about the leader.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoints: Vec<String>,
    cfg: ClientConfig,
    http: Http,
    mux: Mux,
    /// The leader's client address, as last learnt.
    leader: Mutex<Option<String>>,
    /// The endpoint tried next when no leader is known.
    next: AtomicUsize,
}

impl Client {
    /// A client of the cluster reachable at `endpoints` (`host:port` or
    /// `http://host:port`, any of its nodes), with the default settings.
    pub fn new<I, S>(endpoints: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::with_config(endpoints, ClientConfig::default())
    }

    /// [`Client::new`] with settings.
    pub fn with_config<I, S>(endpoints: I, cfg: ClientConfig) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints = endpoints
            .into_iter()
            .map(|e| codec::endpoint(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                http: Http::new(cfg.attempt_timeout),
                mux: Mux::new(cfg.connections_per_node, cfg.attempt_timeout),
                endpoints,
                cfg,
                leader: Mutex::new(None),
                next: AtomicUsize::new(0),
            }),
        })
    }

    /// The endpoints given.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The leader's client address as last learnt (from a redirect, a
    /// successful write or `/v1/status`), if any.
    pub fn leader_hint(&self) -> Option<String> {
        self.lock_leader().clone()
    }

    fn lock_leader(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // A panic elsewhere cannot leave an `Option<String>` half-written.
        self.inner.leader.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_leader(&self, leader: Option<String>) {
        *self.lock_leader() = leader;
    }

    /// Forgets the leader (it handed leadership over).
    pub(crate) fn forget_any_leader(&self) {
        self.set_leader(None);
    }

    /// Forgets the leader if it is `endpoint` (it failed us).
    fn forget_leader(&self, endpoint: &str) {
        let mut leader = self.lock_leader();
        if leader.as_deref() == Some(endpoint) {
            *leader = None;
        }
    }

    /// The status of one node (`GET /v1/status`, or the binary protocol's
    /// `Status`), one attempt.
    pub async fn status_of(&self, endpoint: &str) -> Result<Status, Error> {
        let endpoint = codec::endpoint(endpoint)?;
        let unavailable = |a: Attempt| Error::Unavailable {
            attempts: 1,
            elapsed: Duration::ZERO,
            last: a.message().to_string(),
        };
        if self.inner.cfg.protocol == Protocol::Binary {
            let answer = self.inner.mux.send(&endpoint, &Request::Status).await;
            return match answer.map_err(unavailable)? {
                Response::Status(s) => Ok(status_from(s)),
                Response::Error(e) => Err(Error::Rejected {
                    status: e.status,
                    kind: e.kind,
                    message: e.message,
                }),
                other => Err(Error::Protocol(format!(
                    "the status of {endpoint}: {other:?}"
                ))),
            };
        }
        let call = http_kv::to_call(&Request::Status);
        let reply = self
            .inner
            .http
            .send(&endpoint, &call)
            .await
            .map_err(unavailable)?;
        if reply.status != 200 {
            let (kind, message) = reply.error();
            return Err(Error::Rejected {
                status: reply.status,
                kind,
                message,
            });
        }
        serde_json::from_slice(&reply.body)
            .map_err(|e| Error::Protocol(format!("the status of {endpoint}: {e}")))
    }

    /// Every endpoint's status (or why there is none), in endpoint order.
    pub async fn cluster_status(&self) -> Vec<(String, Result<Status, Error>)> {
        let mut set = JoinSet::new();
        for (i, e) in self.inner.endpoints.iter().enumerate() {
            let (c, e) = (self.clone(), e.clone());
            set.spawn(async move { (i, e.clone(), c.status_of(&e).await) });
        }
        let mut out: Vec<_> = set.join_all().await;
        out.sort_by_key(|(i, _, _)| *i);
        out.into_iter().map(|(_, e, s)| (e, s)).collect()
    }

    /// Asks every endpoint for its status and returns the client address of
    /// the leader named in the highest term, if any node names one.
    pub async fn discover_leader(&self) -> Option<String> {
        let mut set = JoinSet::new();
        for e in &self.inner.endpoints {
            let (c, e) = (self.clone(), e.clone());
            set.spawn(async move {
                tokio::time::timeout(DISCOVER_TIMEOUT, c.status_of(&e))
                    .await
                    .ok()?
                    .ok()
            });
        }
        let best = set
            .join_all()
            .await
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s.term, s.leader?.client)))
            .max_by_key(|(term, _)| *term)
            .map(|(_, client)| client);
        if best.is_some() {
            self.set_leader(best.clone());
        }
        best
    }

    /// Where the next attempt goes: the known leader, else the one
    /// `/v1/status` names, else the next endpoint in turn.
    async fn target(&self) -> String {
        if let Some(l) = self.leader_hint() {
            return l;
        }
        if let Some(l) = self.discover_leader().await {
            return l;
        }
        let n = self.inner.endpoints.len();
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % n;
        self.inner.endpoints[i].clone()
    }

    /// One attempt: sends `call` to `first`, following redirects to the
    /// leader (a follower answers a write with "not leader" before
    /// proposing it, so following one never applies anything twice).
    /// Returns the answer and the node that gave it.
    async fn attempt(&self, first: String, call: Wire<'_>) -> Result<(Answered, String), Attempt> {
        let mut target = first;
        for _ in 0..=MAX_REDIRECTS {
            let sent = match call {
                Wire::Http(c) => self.inner.http.send(&target, c).await.map(Answered::Http),
                Wire::Binary(r) => self.inner.mux.send(&target, r).await.map(Answered::Binary),
            };
            let answer = match sent {
                Ok(a) => a,
                Err(a) => {
                    self.forget_leader(&target);
                    return Err(a);
                }
            };
            let next = match &answer {
                Answered::Http(r) if matches!(r.status, 307 | 308) => {
                    r.location.as_deref().and_then(codec::authority)
                }
                Answered::Binary(Response::Error(e)) if e.status == 307 => e
                    .leader
                    .as_ref()
                    .and_then(|l| codec::endpoint(&l.client).ok()),
                _ => return Ok((answer, target)),
            };
            match next {
                Some(next) => {
                    self.set_leader(Some(next.clone()));
                    target = next;
                }
                None => {
                    return Err(Attempt::Refused(format!(
                        "{target}: a redirect that names no leader"
                    )))
                }
            }
        }
        Err(Attempt::Refused("too many redirects".into()))
    }

    /// Runs HTTP `call` until it gets an answer, an error to give the
    /// caller, or the call's deadline.
    pub(crate) async fn run(&self, call: &Call, retry: Retry) -> Result<Reply, Error> {
        match self.run_wire(Wire::Http(call), retry).await? {
            Answered::Http(reply) => Ok(reply),
            Answered::Binary(_) => unreachable!("an HTTP call is answered over HTTP"),
        }
    }

    /// Runs a key-value request in the configured protocol; the answer is
    /// never an error (those end the call, or are retried).
    pub(crate) async fn kv(&self, req: &Request) -> Result<Response, Error> {
        let retry = Retry::of(req);
        if self.inner.cfg.protocol == Protocol::Http {
            let reply = self.run(&http_kv::to_call(req), retry).await?;
            return http_kv::to_response(req, reply);
        }
        match self.run_wire(Wire::Binary(req), retry).await? {
            Answered::Binary(r) => Ok(r),
            Answered::Http(_) => unreachable!("a binary request is answered in binary"),
        }
    }

    /// Runs `call` until it gets an answer, an error to give the caller,
    /// or the call's deadline.
    async fn run_wire(&self, call: Wire<'_>, retry: Retry) -> Result<Answered, Error> {
        let cfg = &self.inner.cfg;
        let start = Instant::now();
        let mut backoff = cfg.backoff_min;
        let mut attempts = 0u32;
        let mut unknown = false;
        loop {
            attempts += 1;
            let target = self.target().await;
            let failed = match self.attempt(target, call).await {
                // `by`: the node that answered, after any redirects.
                Ok((reply, by)) => match judge(reply, call.session())? {
                    Judged::Answer(reply) => {
                        if call.is_write() {
                            // Only the leader answers writes.
                            self.set_leader(Some(by));
                        }
                        return Ok(reply);
                    }
                    Judged::Again(a, forget) => {
                        if forget {
                            self.forget_leader(&by);
                        }
                        a
                    }
                },
                Err(a) => a,
            };
            if let Attempt::Unknown(m) = &failed {
                if retry == Retry::IfRefused {
                    return Err(Error::OutcomeUnknown(m.clone()));
                }
                unknown = true;
            }
            let elapsed = start.elapsed();
            if elapsed + backoff >= cfg.call_timeout {
                let last = failed.message().to_string();
                return Err(if unknown {
                    Error::OutcomeUnknown(format!(
                        "no answer in {elapsed:?} after {attempts} attempts (last: {last})"
                    ))
                } else {
                    Error::Unavailable {
                        attempts,
                        elapsed,
                        last,
                    }
                });
            }
            // Half fixed, half random: clients that failed together spread out.
            let half = backoff / 2;
            let jitter = rand::thread_rng().gen_range(Duration::ZERO..=half);
            tokio::time::sleep(half + jitter).await;
            backoff = (backoff * 2).min(cfg.backoff_max);
        }
    }
}

/// What an answer means for the retry loop.
enum Judged {
    Answer(Answered),
    /// Try again; whether to forget the leader (it no longer leads).
    Again(Attempt, bool),
}

/// Sorts an answer into done, retry, or an error for the caller. Both
/// protocols' errors carry the HTTP API's status code and kind.
fn judge(answer: Answered, session: Option<u64>) -> Result<Judged, Error> {
    let (status, kind, message) = match &answer {
        Answered::Http(r) if (200..300).contains(&r.status) => return Ok(Judged::Answer(answer)),
        Answered::Http(r) => {
            let (kind, message) = r.error();
            (r.status, kind, message)
        }
        Answered::Binary(Response::Error(e)) => (e.status, e.kind.clone(), e.message.clone()),
        Answered::Binary(_) => return Ok(Judged::Answer(answer)),
    };
    match (status, kind.as_str()) {
        (404, "key_not_found") => Ok(Judged::Answer(answer)),
        // Refused before anything reached the log.
        (503, "busy") => Ok(Judged::Again(
            Attempt::Refused(format!("{kind}: {message}")),
            false,
        )),
        (503, "no_leader") => Ok(Judged::Again(
            Attempt::Refused(format!("{kind}: {message}")),
            true,
        )),
        // Proposed, or maybe: the outcome is unknown.
        (503 | 504, _) => Ok(Judged::Again(
            Attempt::Unknown(format!("{kind}: {message}")),
            true,
        )),
        (507, _) => Err(Error::NoSpace(message)),
        (410, _) => Err(Error::SessionExpired(session.unwrap_or(0))),
        _ => Err(Error::Rejected {
            status,
            kind,
            message,
        }),
    }
}

/// A status from the binary protocol as the client's [`Status`].
fn status_from(s: proto::Status) -> Status {
    Status {
        id: s.id,
        cluster_id: s.cluster_id,
        role: s.role,
        term: s.term,
        leader: s.leader.map(|l| LeaderInfo {
            id: l.id,
            client: l.client,
        }),
        commit: s.commit,
        applied: s.applied,
        last_index: s.last_index,
        snapshot_index: s.snapshot_index,
        pending_requests: s.pending_requests,
        no_space: s.no_space,
        peers: s
            .peers
            .into_iter()
            .map(|p| PeerInfo {
                id: p.id,
                raft: p.raft,
                client: p.client,
                connected: p.connected,
                match_index: p.match_index,
            })
            .collect(),
    }
}
