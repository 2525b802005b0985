//! The clerks: [`raft_kv::Clerk`]s driven by the event queue (their
//! requests travel as messages, their timers are events), the workloads
//! that keep them calling, and the history of every call.

use std::collections::{BTreeMap, VecDeque};

use raft_core::NodeId;
use raft_kv::check::History;
use raft_kv::{Action, CallId, Clerk, KvError, Op, OpResult};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::workload::Workload;
use super::{ClerkId, KvEv};
use crate::clock::{Time, MS};
use crate::error::SimError;
use crate::factory::StorageFactory;
use crate::sim::{derive_seed, Ev, Sim};

/// Nanoseconds in a unit of virtual time (the checker's clock is in ns).
const NS_PER_TIME: u64 = 1_000;

/// One call as the clerk's caller saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Who called.
    pub clerk: ClerkId,
    /// When (virtual time, µs).
    pub call: Time,
    /// What.
    pub op: Op,
    /// When it returned and with what; `None` while in flight.
    pub end: Option<(Time, Result<OpResult, KvError>)>,
}

/// Client traffic and outcomes of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// Requests sent by clerks.
    pub requests: u64,
    /// Replies sent by servers.
    pub replies: u64,
    /// Client messages lost (link down, unreliable mode).
    pub lost: u64,
    /// Calls that ended with an error (a timeout, an expired session...).
    pub failed_calls: u64,
}

/// One clerk and what drives it.
struct Slot {
    clerk: Clerk,
    /// Servers this clerk is connected to (`reach[id - 1]`).
    reach: Vec<bool>,
    /// Generation of the clerk's live timer; older timer events are stale.
    timer: u64,
    /// Calls in flight: call -> position in the history.
    calls: BTreeMap<CallId, usize>,
    /// Results of calls made by the test itself, until it takes them.
    results: BTreeMap<CallId, Result<OpResult, KvError>>,
    workload: Option<Workload>,
    /// Pause between two calls of the workload, uniform in ms.
    pause_ms: (u64, u64),
    /// The workload's last call and how it ended.
    last: Option<(Op, Result<OpResult, KvError>)>,
    /// Told to stop after the call at hand.
    stopping: bool,
    /// The workload has nothing more to call.
    finished: bool,
}

/// Every clerk of the run and the history of their calls.
pub struct Clerks {
    slots: Vec<Slot>,
    ops: Vec<Recorded>,
    rng: ChaCha8Rng,
    /// Client traffic so far.
    pub counters: ClientCounters,
}

/// What a clerk's workload does after a call.
enum Next {
    Call(Op),
    Pause(Time),
    Stop,
}

impl Clerks {
    pub(crate) fn new(seed: u64) -> Self {
        Clerks {
            slots: Vec::new(),
            ops: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(derive_seed(seed, 5, 0)),
            counters: ClientCounters::default(),
        }
    }

    /// Whether `clerk` is connected to `server`.
    pub(crate) fn reaches(&self, clerk: ClerkId, server: NodeId) -> bool {
        self.slots[clerk]
            .reach
            .get(server as usize - 1)
            .copied()
            .unwrap_or(false)
    }

    /// Every call so far, in call order.
    pub fn recorded(&self) -> &[Recorded] {
        &self.ops
    }

    /// Number of clerks.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is no clerk.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether `clerk` has a call in flight or a workload still going.
    pub fn busy(&self, clerk: ClerkId) -> bool {
        let s = &self.slots[clerk];
        !s.clerk.is_idle() || (s.workload.is_some() && !s.stopping && !s.finished)
    }

    /// The history for the checker, in nanoseconds of virtual time. A call that ended in an error that may
    /// have taken effect (a timeout, a lost session) has an unknown outcome;
    /// one refused before anything was applied is left out, since it had
    /// no effect and returned nothing.
    pub fn history(&self) -> History {
        let mut h = History::new();
        for r in &self.ops {
            match &r.end {
                Some((_, Err(e))) if !e.may_have_applied() => continue,
                _ => {}
            }
            let id = h.invoke(r.clerk as u64, r.op.clone(), r.call * NS_PER_TIME);
            match &r.end {
                Some((t, Ok(out))) => h.complete(id, out.clone(), *t * NS_PER_TIME),
                Some((_, Err(_))) | None => h.unknown(id),
            }
        }
        h
    }

    /// Records and starts a call on `clerk`.
    fn start(&mut self, clerk: ClerkId, op: Op, now: Time) -> (CallId, Vec<Action>) {
        self.ops.push(Recorded {
            clerk,
            call: now,
            op: op.clone(),
            end: None,
        });
        let at = self.ops.len() - 1;
        let slot = &mut self.slots[clerk];
        let (call, actions) = slot.clerk.call(op, now / MS);
        slot.calls.insert(call, at);
        (call, actions)
    }

    /// Records the end of a call; says what the workload does next.
    fn done(
        &mut self,
        clerk: ClerkId,
        call: CallId,
        result: Result<OpResult, KvError>,
        now: Time,
    ) -> Next {
        if result.is_err() {
            self.counters.failed_calls += 1;
        }
        let slot = &mut self.slots[clerk];
        let Some(at) = slot.calls.remove(&call) else {
            return Next::Stop;
        };
        self.ops[at].end = Some((now, result.clone()));
        if slot.workload.is_none() {
            slot.results.insert(call, result);
            return Next::Stop;
        }
        slot.last = Some((self.ops[at].op.clone(), result));
        let (lo, hi) = slot.pause_ms;
        if hi > 0 {
            return Next::Pause(self.rng.gen_range(lo.min(hi)..=hi) * MS);
        }
        match self.next_op(clerk) {
            Some(op) => Next::Call(op),
            None => Next::Stop,
        }
    }

    /// The workload's next call, unless it was told to stop or is done.
    fn next_op(&mut self, clerk: ClerkId) -> Option<Op> {
        let slot = &mut self.slots[clerk];
        if slot.stopping || slot.finished {
            return None;
        }
        let workload = slot.workload.as_mut()?;
        let last = slot.last.as_ref().map(|(op, r)| (op, r));
        let op = workload.next(&mut self.rng, last);
        slot.finished = op.is_none();
        op
    }
}

/// The clerk side of the event loop.
impl<F: StorageFactory> Sim<F> {
    /// A new clerk, connected to servers `reach`.
    pub(crate) fn kv_add_clerk(&mut self, reach: &[NodeId]) -> ClerkId {
        let n = self.n();
        let kv = self.kv_mut();
        let mut cfg = kv.cfg.clerk.clone();
        cfg.servers = (1..=n as NodeId).collect();
        kv.clerks.slots.push(Slot {
            clerk: Clerk::new(cfg),
            reach: vec![false; n],
            timer: 0,
            calls: BTreeMap::new(),
            results: BTreeMap::new(),
            workload: None,
            pause_ms: (0, 0),
            last: None,
            stopping: false,
            finished: false,
        });
        let clerk = kv.clerks.slots.len() - 1;
        self.kv_connect_clerk(clerk, reach);
        clerk
    }

    /// Connects `clerk` to exactly the servers `to` (the lab's `ConnectClient`).
    pub(crate) fn kv_connect_clerk(&mut self, clerk: ClerkId, to: &[NodeId]) {
        let slot = &mut self.kv_mut().clerks.slots[clerk];
        slot.reach.fill(false);
        for &id in to {
            slot.reach[id as usize - 1] = true;
        }
    }

    /// Starts a call of the test's own on `clerk`; its result waits for
    /// [`kv_take_result`](Self::kv_take_result).
    pub(crate) fn kv_call(&mut self, clerk: ClerkId, op: Op) -> CallId {
        let now = self.now;
        let (call, actions) = self.kv_mut().clerks.start(clerk, op, now);
        self.kv_actions(clerk, actions);
        call
    }

    /// The result of the test's call `call` on `clerk`, once it is over.
    pub(crate) fn kv_take_result(
        &mut self,
        clerk: ClerkId,
        call: CallId,
    ) -> Option<Result<OpResult, KvError>> {
        self.kv_mut().clerks.slots[clerk].results.remove(&call)
    }

    /// Gives `clerk` a workload, pausing `pause_ms` between calls, and starts it.
    pub(crate) fn kv_run_workload(
        &mut self,
        clerk: ClerkId,
        workload: Workload,
        pause_ms: (u64, u64),
    ) -> Result<(), SimError> {
        let slot = &mut self.kv_mut().clerks.slots[clerk];
        slot.workload = Some(workload);
        slot.pause_ms = pause_ms;
        slot.stopping = false;
        slot.finished = false;
        self.kv_next(clerk)
    }

    /// Tells every workload to stop after the call at hand.
    pub(crate) fn kv_stop_workloads(&mut self) {
        for slot in &mut self.kv_mut().clerks.slots {
            slot.stopping = true;
        }
    }

    /// A server's reply reaches `clerk`, if the link is still up.
    pub(crate) fn kv_reply(
        &mut self,
        clerk: ClerkId,
        from: NodeId,
        reply: raft_kv::ClientReply,
    ) -> Result<(), SimError> {
        if !self.client_link_up(clerk, from) {
            self.kv_mut().clerks.counters.lost += 1;
            return Ok(());
        }
        self.events += 1;
        let now_ms = self.now / MS;
        let actions = self.kv_mut().clerks.slots[clerk]
            .clerk
            .on_reply(from, reply, now_ms);
        self.kv_actions(clerk, actions);
        Ok(())
    }

    /// `clerk`'s timer fired; ignored unless it is the clerk's latest.
    pub(crate) fn kv_timer(&mut self, clerk: ClerkId, generation: u64) -> Result<(), SimError> {
        let now_ms = self.now / MS;
        let slot = &mut self.kv_mut().clerks.slots[clerk];
        if slot.timer != generation {
            return Ok(());
        }
        let actions = slot.clerk.on_timer(now_ms);
        self.kv_actions(clerk, actions);
        Ok(())
    }

    /// `clerk`'s pause ended: its workload calls again.
    pub(crate) fn kv_next(&mut self, clerk: ClerkId) -> Result<(), SimError> {
        let now = self.now;
        let clerks = &mut self.kv_mut().clerks;
        if let Some(op) = clerks.next_op(clerk) {
            let (_, actions) = clerks.start(clerk, op, now);
            self.kv_actions(clerk, actions);
        }
        Ok(())
    }

    /// Carries out what clerks ask for, including the calls their workloads
    /// make when one ends.
    fn kv_actions(&mut self, clerk: ClerkId, actions: Vec<Action>) {
        let mut work: VecDeque<Action> = actions.into();
        while let Some(action) = work.pop_front() {
            let now = self.now;
            match action {
                Action::Send { to, request } => self.kv_send(KvEv::Request { clerk, to, request }),
                Action::SetTimer { at_ms } => {
                    let slot = &mut self.kv_mut().clerks.slots[clerk];
                    slot.timer += 1;
                    let generation = slot.timer;
                    let at = (at_ms * MS).max(now);
                    self.queue
                        .push(at, Ev::Kv(KvEv::Timer { clerk, generation }));
                }
                Action::Done { call, result } => {
                    let clerks = &mut self.kv_mut().clerks;
                    match clerks.done(clerk, call, result, now) {
                        Next::Call(op) => work.extend(clerks.start(clerk, op, now).1),
                        Next::Pause(d) => self.queue.push(now + d, Ev::Kv(KvEv::Next { clerk })),
                        Next::Stop => {}
                    }
                }
            }
        }
    }
}
