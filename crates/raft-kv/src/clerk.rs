//! The clerk: the client side of the KV service, as a sans-IO state machine.
//!
//! The driver hands it calls, replies and timer events with the current time
//! and carries out the [`Action`]s it returns (send this request to server
//! k, wake me at t, this call is done). One call is in flight at a time;
//! further calls wait in order.
//!
//! A write needs a session: the clerk registers one first, then numbers its
//! writes 1, 2, 3... and sends every retry of a write with the same number,
//! so the state machine applies it once (thesis §6.3). It remembers the last
//! known leader, follows "not leader" hints, tries the next server when an
//! attempt times out, and ends a call that passes its deadline with
//! [`KvError::Timeout`]. When the service answers
//! [`KvError::SessionExpired`], the call ends with it (the write's outcome
//! is unknown) and the next write registers a new session. Reads carry no
//! sequence number.

use std::collections::VecDeque;

use raft_core::NodeId;

use crate::api::{
    Answer, ClientReply, ClientRequest, Consistency, KvError, RequestBody, RequestId, Seq,
    SessionId,
};
use crate::op::{Op, OpResult};

/// Identifies one call to the clerk; [`Action::Done`] names it.
pub type CallId = u64;

/// The clerk's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClerkConfig {
    /// The servers of the cluster.
    pub servers: Vec<NodeId>,
    /// Without an answer after this long, send again to the next server.
    pub retry_timeout_ms: u64,
    /// Pause before retrying after a refusal that names no other leader.
    pub backoff_ms: u64,
    /// A call with no answer after this long ends with [`KvError::Timeout`].
    pub call_timeout_ms: u64,
    /// How fresh reads must be.
    pub read_consistency: Consistency,
}

impl ClerkConfig {
    /// Defaults: retry after 200 ms, back off 20 ms, give up after 10 s,
    /// linearizable reads.
    pub fn new(servers: Vec<NodeId>) -> Self {
        ClerkConfig {
            servers,
            retry_timeout_ms: 200,
            backoff_ms: 20,
            call_timeout_ms: 10_000,
            read_consistency: Consistency::Linearizable,
        }
    }
}

/// What the driver must do for the clerk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `request` to server `to`.
    Send {
        /// The server.
        to: NodeId,
        /// The request.
        request: ClientRequest,
    },
    /// Call [`Clerk::on_timer`] at or after `at_ms`. Replaces any earlier timer.
    SetTimer { at_ms: u64 },
    /// Call `call` is over.
    Done {
        /// The call, as [`Clerk::call`] numbered it.
        call: CallId,
        /// Its result.
        result: Result<OpResult, KvError>,
    },
}

/// What the current call is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// A session, before a write can be sent.
    Register,
    /// The answer to the operation (`seq` for a write).
    Op { seq: Option<Seq> },
}

#[derive(Debug)]
struct Current {
    call: CallId,
    op: Op,
    deadline: u64,
    stage: Stage,
    /// Request ids from here on belong to this stage; any of them may carry
    /// its answer.
    first_id: RequestId,
    /// Next time to send (after a retry timeout or a backoff).
    resend_at: u64,
    /// An attempt is out and unanswered.
    in_flight: bool,
    /// Hint-following resends since the last timer-driven one (bounds
    /// ping-pong between servers with stale views).
    redirects: usize,
}

/// A client of the KV service. See the [module docs](self).
#[derive(Debug)]
pub struct Clerk {
    cfg: ClerkConfig,
    session: Option<SessionId>,
    next_seq: Seq,
    next_id: RequestId,
    next_call: CallId,
    /// The server to send the next attempt to: the last known leader.
    target: usize,
    current: Option<Current>,
    queue: VecDeque<(CallId, Op, u64)>,
}

impl Clerk {
    /// A clerk with no session, trying the first server first.
    pub fn new(cfg: ClerkConfig) -> Self {
        Clerk {
            cfg,
            session: None,
            next_seq: 1,
            next_id: 1,
            next_call: 1,
            target: 0,
            current: None,
            queue: VecDeque::new(),
        }
    }

    /// Starts (or queues) a call; its answer comes in an [`Action::Done`]
    /// carrying the returned id.
    pub fn call(&mut self, op: Op, now_ms: u64) -> (CallId, Vec<Action>) {
        let call = self.next_call;
        self.next_call += 1;
        let deadline = now_ms.saturating_add(self.cfg.call_timeout_ms);
        self.queue.push_back((call, op, deadline));
        let mut out = Vec::new();
        self.start_next(now_ms, &mut out);
        (call, out)
    }

    /// The session in use, if one is open.
    pub fn session(&self) -> Option<SessionId> {
        self.session
    }

    /// The server the clerk believes leads.
    pub fn leader(&self) -> Option<NodeId> {
        self.cfg.servers.get(self.target).copied()
    }

    /// Whether no call is in flight or waiting.
    pub fn is_idle(&self) -> bool {
        self.current.is_none() && self.queue.is_empty()
    }

    /// Handles a reply from server `from`.
    pub fn on_reply(&mut self, from: NodeId, reply: ClientReply, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(cur) = self.current.as_mut() else {
            return out;
        };
        if reply.id < cur.first_id || reply.id >= self.next_id {
            return out; // For an earlier stage or call.
        }
        let latest = reply.id + 1 == self.next_id;
        match (cur.stage, reply.result) {
            (Stage::Register, Ok(Answer::Registered { session })) => {
                self.session = Some(session);
                self.next_seq = 1;
                self.note_leader(from);
                self.send_stage(Stage::Op { seq: None }, now_ms, &mut out);
            }
            (Stage::Op { .. }, Ok(Answer::Op(result))) => {
                self.note_leader(from);
                self.finish(Ok(result), now_ms, &mut out);
            }
            (_, Ok(_)) => {} // An answer of the wrong kind: ignore it.
            (_, Err(e)) if e.is_retryable() => {
                if latest {
                    self.refused(from, &e, now_ms, &mut out);
                }
            }
            (_, Err(e)) => {
                // A definite answer from the state machine (or a refusal of
                // the request itself), whichever attempt it answers.
                if matches!(e, KvError::SessionExpired { .. }) {
                    self.session = None;
                }
                self.finish(Err(e), now_ms, &mut out);
            }
        }
        out
    }

    /// Handles the timer: ends a call past its deadline, or resends.
    pub fn on_timer(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(cur) = self.current.as_mut() else {
            return out;
        };
        if now_ms >= cur.deadline {
            self.finish(Err(KvError::Timeout), now_ms, &mut out);
        } else if now_ms >= cur.resend_at {
            if cur.in_flight {
                // No answer in time: maybe the leader is gone; try the next.
                self.target = (self.target + 1) % self.cfg.servers.len().max(1);
            }
            cur.redirects = 0;
            self.send(now_ms, &mut out);
        } else {
            out.push(Action::SetTimer {
                at_ms: cur.resend_at.min(cur.deadline),
            });
        }
        out
    }

    fn note_leader(&mut self, from: NodeId) {
        if let Some(i) = self.cfg.servers.iter().position(|&s| s == from) {
            self.target = i;
        }
    }

    /// A server refused the latest attempt with a retryable error.
    fn refused(&mut self, from: NodeId, e: &KvError, now_ms: u64, out: &mut Vec<Action>) {
        let n = self.cfg.servers.len().max(1);
        let hint = match e {
            KvError::NotLeader { leader } | KvError::EntryLost { leader } => *leader,
            _ => None,
        };
        let from_index = self.cfg.servers.iter().position(|&s| s == from);
        let hinted = hint.and_then(|h| self.cfg.servers.iter().position(|&s| s == h));
        let retry_same = matches!(e, KvError::Busy);
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        cur.in_flight = false;
        match hinted {
            Some(h) if Some(h) != from_index && cur.redirects < n => {
                // Follow the hint at once.
                cur.redirects += 1;
                self.target = h;
                self.send(now_ms, out);
            }
            _ => {
                self.target = match (hinted, from_index) {
                    (Some(h), _) => h,
                    (None, Some(f)) if !retry_same => (f + 1) % n,
                    (None, Some(f)) => f,
                    (None, None) => self.target,
                };
                cur.resend_at = now_ms.saturating_add(self.cfg.backoff_ms);
                out.push(Action::SetTimer {
                    at_ms: cur.resend_at.min(cur.deadline),
                });
            }
        }
    }

    /// Starts the next queued call if none is in flight.
    fn start_next(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        while self.current.is_none() {
            let Some((call, op, deadline)) = self.queue.pop_front() else {
                return;
            };
            if now_ms >= deadline || self.cfg.servers.is_empty() {
                out.push(Action::Done {
                    call,
                    result: Err(KvError::Timeout),
                });
                continue;
            }
            let stage = if op.is_read() || self.session.is_some() {
                Stage::Op { seq: None }
            } else {
                Stage::Register
            };
            self.current = Some(Current {
                call,
                op,
                deadline,
                stage,
                first_id: self.next_id,
                resend_at: now_ms,
                in_flight: false,
                redirects: 0,
            });
            self.send_stage(stage, now_ms, out);
        }
    }

    /// Enters `stage` (numbering a write on entry) and sends its first attempt.
    fn send_stage(&mut self, stage: Stage, now_ms: u64, out: &mut Vec<Action>) {
        let read = self.current.as_ref().is_some_and(|c| c.op.is_read());
        let stage = match stage {
            Stage::Op { seq: None } if !read => {
                let seq = self.next_seq;
                self.next_seq += 1;
                Stage::Op { seq: Some(seq) }
            }
            s => s,
        };
        if let Some(cur) = self.current.as_mut() {
            cur.stage = stage;
            cur.first_id = self.next_id;
            cur.redirects = 0;
        }
        self.send(now_ms, out);
    }

    /// Sends one attempt of the current stage to the target server.
    fn send(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        let body = match cur.stage {
            Stage::Register => RequestBody::Register,
            Stage::Op { seq: None } => RequestBody::Read {
                op: cur.op.clone(),
                consistency: self.cfg.read_consistency,
            },
            Stage::Op { seq: Some(seq) } => RequestBody::Write {
                // A write stage is entered only with a session.
                session: self.session.unwrap_or_default(),
                seq,
                op: cur.op.clone(),
            },
        };
        let id = self.next_id;
        self.next_id += 1;
        cur.in_flight = true;
        cur.resend_at = now_ms.saturating_add(self.cfg.retry_timeout_ms);
        out.push(Action::Send {
            to: self.cfg.servers[self.target],
            request: ClientRequest { id, body },
        });
        out.push(Action::SetTimer {
            at_ms: cur.resend_at.min(cur.deadline),
        });
    }

    /// Ends the current call and starts the next.
    fn finish(&mut self, result: Result<OpResult, KvError>, now_ms: u64, out: &mut Vec<Action>) {
        if let Some(cur) = self.current.take() {
            out.push(Action::Done {
                call: cur.call,
                result,
            });
        }
        self.start_next(now_ms, out);
    }
}
