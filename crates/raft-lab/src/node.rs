//! The lab's Raft object: `make` (and `make_async`) and the handle it
//! returns (`start`, `get_state`, `snapshot`, `kill`,
//! `cond_install_snapshot`), plus the server side, `handle` and
//! `handle_async`, that an RPC system calls for each request.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{RecvTimeoutError, Sender};
use futures::channel::oneshot;
use raft_core::{Config, Index, Message, Storage, Term};

use crate::apply::{spawn_applier, ApplyMsg, ApplySink};
use crate::driver::{Driver, Input, ReplyTo};
use crate::error::{MakeError, SnapshotError, StartError};
use crate::persister::Persister;
use crate::sender::{Ends, SenderLimits, Senders};
use crate::shared::{NodeStatus, Shared};
use crate::spawn::Spawner;
use crate::storage::LabStorage;
use crate::transport::{node_id, AsyncTransport, Handler, Transport};

/// Timing and limits. The defaults meet the lab's rules: a tick every 10 ms,
/// elections after 300–600 ms of silence, heartbeats every 100 ms (at most
/// ten per second), so a leader is normally chosen well within 5 s.
#[derive(Debug, Clone)]
pub struct Options {
    /// Real time per raft-core tick.
    pub tick: Duration,
    /// Base election timeout in ticks (each round waits `[T, 2T)`, §5.2).
    pub election_ticks: u32,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: u32,
    /// Ticks a leader waits for the answer to an AppendEntries before it
    /// sends again (the request or its reply presumed lost). The lab's
    /// unreliable network delays a request up to 27 ms and loses one in ten
    /// of each way: 4 ticks (40 ms) resends a lost one after about one round
    /// trip, where waiting for a heartbeat reply took 100–200 ms.
    pub resend_ticks: u32,
    /// Unacknowledged entries each new AppendEntries carries again
    /// (`Config::carry_unacked`). Every call here is a thread of its own and
    /// the lab's network delays each by 0–27 ms, so appends overtake one
    /// another all the time: carrying the unacknowledged entries lets the
    /// first to arrive pass the consistency check instead of dropping the
    /// window to a probe. 0 sends each entry once.
    pub carry_unacked: usize,
    /// PreVote round before campaigning (thesis §9.6).
    pub pre_vote: bool,
    /// Leader steps down without a live majority; followers in touch with a
    /// leader ignore vote requests (thesis §6.2, §4.2.3).
    pub check_quorum: bool,
    /// Calls that may be outstanding at once to one peer: a safety valve
    /// only. Each call runs on a thread (or task) of its own, so calls that
    /// hang for seconds hold back nothing until this many are hanging.
    pub max_calls_per_peer: usize,
    /// Messages that may wait per peer once `max_calls_per_peer` calls are
    /// outstanding. A new message first drops the queued ones it supersedes
    /// (an older term's, an older round's, a heartbeat it replaces, entries
    /// it carries too); past this bound the oldest go. The newest never does.
    pub queue_per_peer: usize,
    /// Most inputs (peer messages, replies, `start`s) the driver feeds the
    /// core before it asks for the next Ready: one save and one message per
    /// peer then carry all of them.
    pub max_batch: usize,
    /// How long `start`, `snapshot` and `handle` wait for the driver. It
    /// answers at once unless the persister is very slow.
    pub driver_timeout: Duration,
    /// Seed for election timeouts; `None` mixes the clock with the id.
    pub seed: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tick: Duration::from_millis(10),
            election_ticks: 30,
            heartbeat_ticks: 10,
            resend_ticks: 4,
            carry_unacked: 64,
            pre_vote: true,
            check_quorum: true,
            max_calls_per_peer: 1024,
            queue_per_peer: 64,
            max_batch: 256,
            driver_timeout: Duration::from_secs(1),
            seed: None,
        }
    }
}

/// One Raft server (the lab's `*Raft`). Cheap to clone; every clone is the
/// same server. Every method returns promptly: nothing here waits on the
/// network, on the application, or on a lock held across I/O.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    me: usize,
    input: Sender<Input>,
    shared: Arc<Shared>,
    driver: Mutex<Option<JoinHandle<()>>>,
    timeout: Duration,
}

impl Drop for Inner {
    /// The last handle is gone: stop the threads (without waiting for them).
    fn drop(&mut self) {
        self.shared.kill();
        let _ = self.input.send(Input::Kill);
    }
}

/// Creates server `me` of the cluster `peers` (the lab's `Make`), with the
/// default [`Options`]. `peers[i]` reaches server `i` (`peers[me]` is never
/// used). State saved in `persister` is recovered first; committed commands
/// (and a snapshot, if one is saved) go to `apply_tx` as [`ApplyMsg`]s.
pub fn make<A: ApplySink, P: Persister + 'static>(
    peers: Vec<Arc<dyn Transport>>,
    me: usize,
    persister: P,
    apply_tx: A,
) -> Result<Node, MakeError> {
    make_with(peers, me, persister, apply_tx, &Options::default())
}

/// [`make`] with explicit [`Options`].
pub fn make_with<A: ApplySink, P: Persister + 'static>(
    peers: Vec<Arc<dyn Transport>>,
    me: usize,
    persister: P,
    apply_tx: A,
    options: &Options,
) -> Result<Node, MakeError> {
    start_node(
        Ends::Blocking(peers),
        me,
        Box::new(persister),
        apply_tx,
        options,
    )
}

/// [`make_with`] over an async RPC client: every call to a peer is a task
/// started with `spawner` on your executor (a tokio runtime, a futures
/// `ThreadPool`, ...). The node's driver and applier are still two threads
/// of its own, so nothing here blocks the executor; serve requests with
/// [`Node::handle_async`].
pub fn make_async<A: ApplySink, P: Persister + 'static>(
    peers: Vec<Arc<dyn AsyncTransport>>,
    me: usize,
    persister: P,
    apply_tx: A,
    spawner: Spawner,
    options: &Options,
) -> Result<Node, MakeError> {
    let ends = Ends::Async(peers, spawner);
    start_node(ends, me, Box::new(persister), apply_tx, options)
}

fn start_node<A: ApplySink>(
    peers: Ends,
    me: usize,
    persister: Box<dyn Persister>,
    apply_tx: A,
    options: &Options,
) -> Result<Node, MakeError> {
    if me >= peers.len() {
        return Err(MakeError::BadMe {
            me,
            peers: peers.len(),
        });
    }
    if options.tick.is_zero() {
        return Err(MakeError::Options("tick must be longer than zero"));
    }
    if options.max_calls_per_peer == 0 || options.queue_per_peer == 0 || options.max_batch == 0 {
        return Err(MakeError::Options(
            "max_calls_per_peer, queue_per_peer and max_batch must be at least 1",
        ));
    }
    let mut cfg = Config::new(node_id(me), (0..peers.len()).map(node_id).collect());
    cfg.election_tick = options.election_ticks;
    cfg.heartbeat_tick = options.heartbeat_ticks;
    cfg.resend_tick = options.resend_ticks;
    cfg.carry_unacked = options.carry_unacked;
    cfg.pre_vote = options.pre_vote;
    cfg.check_quorum = options.check_quorum;
    cfg.seed = options.seed.unwrap_or_else(|| clock_seed(me));
    cfg.validate()?;

    let storage = LabStorage::open(persister)?;
    let restored = storage
        .snapshot()
        .map_err(|e| MakeError::Corrupt(e.into()))?;
    let node = raft_core::Node::new(cfg, storage)?;

    let shared = Arc::new(Shared::default());
    let (apply, _applier) = spawn_applier(
        format!("raft-lab-{me}-apply"),
        apply_tx,
        Arc::clone(&shared),
    )
    .map_err(MakeError::Spawn)?;
    if restored.meta.index > 0 {
        // §7: a restarted server's state machine starts from its snapshot.
        let _ = apply.send(ApplyMsg::Snapshot {
            index: restored.meta.index,
            term: restored.meta.term,
            data: restored.data,
        });
    }
    let (input_tx, input_rx) = crossbeam_channel::unbounded();
    let limits = SenderLimits {
        max_calls: options.max_calls_per_peer,
        queue: options.queue_per_peer,
    };
    let senders = Senders::new(me, &peers, limits, &input_tx, &shared);
    let driver = Driver {
        node,
        input: input_rx,
        senders,
        apply,
        shared: Arc::clone(&shared),
        tick: options.tick,
        max_batch: options.max_batch,
    };
    let handle = std::thread::Builder::new()
        .name(format!("raft-lab-{me}-driver"))
        .spawn(move || driver.run())
        .map_err(|e| {
            shared.kill();
            MakeError::Spawn(e)
        })?;
    shared.set_driver_thread(handle.thread().id());
    Ok(Node {
        inner: Arc::new(Inner {
            me,
            input: input_tx,
            shared,
            driver: Mutex::new(Some(handle)),
            timeout: options.driver_timeout,
        }),
    })
}

/// A seed that differs between servers and between restarts.
fn clock_seed(me: usize) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (me as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Node {
    /// Proposes `command` for the log (the lab's `Start`). On the leader it
    /// returns at once with the index the command will have if it commits
    /// and the current term (§5.3); there is no guarantee it will commit.
    /// Elsewhere it fails with [`StartError::NotLeader`].
    pub fn start(&self, command: Vec<u8>) -> Result<(Index, Term), StartError> {
        match self.ask(|reply| Input::Propose { command, reply }) {
            Ok(result) => result,
            Err(Unanswered::Gone) => Err(StartError::Killed),
            Err(Unanswered::Timeout) => Err(StartError::Timeout),
        }
    }

    /// `(currentTerm, isLeader)` as the node last published it (the lab's
    /// `GetState`). A killed node is never the leader.
    pub fn get_state(&self) -> (Term, bool) {
        let s = self.inner.shared.status();
        (s.term, s.is_leader && !self.is_killed())
    }

    /// The application has saved its state through `index` in `data` (the
    /// lab's `Snapshot`, §7): the node stores it and drops the log up to
    /// there. Call it with an index the application has applied. A stale
    /// index (for example, a leader's snapshot just replaced it) is refused
    /// with [`SnapshotError::BadIndex`], which is harmless to ignore.
    pub fn snapshot(&self, index: Index, data: Vec<u8>) -> Result<(), SnapshotError> {
        match self.ask(|reply| Input::Snapshot { index, data, reply }) {
            Ok(result) => result,
            Err(Unanswered::Gone) => Err(SnapshotError::Killed),
            Err(Unanswered::Timeout) => Err(SnapshotError::Timeout),
        }
    }

    /// The 2021 lab's handshake for a snapshot received on the apply channel:
    /// whether the application should switch to it. Commands and snapshots
    /// reach the application through one ordered queue, and the node has
    /// already stored the snapshot, so the answer is `true` for every
    /// snapshot this node delivered — `false` only for one it never
    /// delivered, or once killed. `data` is not needed and is ignored.
    pub fn cond_install_snapshot(&self, term: Term, index: Index, data: &[u8]) -> bool {
        let _ = data;
        !self.is_killed() && self.inner.shared.was_delivered(index, term)
    }

    /// Stops the server (the lab's `Kill`): timers, senders and the applier
    /// stop, and no more is saved to the persister once this returns, so a
    /// new server may be made over the same persister — also for a second
    /// `kill` racing the first. Later calls fail with `Killed`; `handle`
    /// answers nothing. Waits only for the input the driver is handling now.
    /// The applier may still hand over the one message it is delivering.
    pub fn kill(&self) {
        self.inner.shared.kill();
        let _ = self.inner.input.send(Input::Kill);
        let handle = self
            .inner
            .driver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        self.inner.shared.wait_stopped();
    }

    /// Whether [`kill`](Node::kill) was called or the node stopped on a
    /// persister failure (the lab's `killed()`).
    pub fn is_killed(&self) -> bool {
        self.inner.shared.is_killed()
    }

    /// Why the node stopped on its own (a persister or storage failure).
    pub fn failure(&self) -> Option<String> {
        self.inner.shared.failure()
    }

    /// This server's index in `peers`.
    pub fn me(&self) -> usize {
        self.inner.me
    }

    /// Term, role, leader and log positions as last published, for tests and tools.
    pub fn status(&self) -> NodeStatus {
        self.inner.shared.status()
    }

    /// Handles one request from a peer and returns its reply: call it from
    /// your RPC server. It waits only for this node's driver, which answers
    /// at once; a request the node chooses not to answer returns `None`.
    pub fn handle(&self, msg: Message) -> Option<Message> {
        if self.is_killed() {
            return None;
        }
        self.ask(|reply| Input::Request {
            msg,
            reply: ReplyTo::Blocking(reply),
        })
        .ok()
        .flatten()
    }

    /// [`handle`](Node::handle) for an async RPC server: the request is
    /// queued for the driver now, and the returned future resolves to its
    /// reply without blocking a thread (it awaits a oneshot channel). It
    /// needs no particular executor and borrows nothing from `self`. There
    /// is no timeout: the driver answers at once, unless the persister is
    /// very slow, and a stopped node resolves to `None`.
    pub fn handle_async(
        &self,
        msg: Message,
    ) -> impl Future<Output = Option<Message>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        if !self.is_killed() {
            let reply = ReplyTo::Async(tx);
            // If the driver is gone the input (and `tx`) is dropped: `None`.
            let _ = self.inner.input.send(Input::Request { msg, reply });
        }
        async move { rx.await.ok().flatten() }
    }

    /// Sends the driver an input carrying a reply channel and waits for the
    /// answer.
    fn ask<T>(&self, input: impl FnOnce(Sender<T>) -> Input) -> Result<T, Unanswered> {
        if self.is_killed() {
            return Err(Unanswered::Gone);
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.inner
            .input
            .send(input(tx))
            .map_err(|_| Unanswered::Gone)?;
        rx.recv_timeout(self.inner.timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => Unanswered::Timeout,
            RecvTimeoutError::Disconnected => Unanswered::Gone,
        })
    }
}

/// Why the driver gave no answer.
enum Unanswered {
    /// It stopped, or dropped the request unanswered.
    Gone,
    /// It did not answer within `Options::driver_timeout`.
    Timeout,
}

impl Handler for Node {
    fn handle(&self, msg: Message) -> Option<Message> {
        Node::handle(self, msg)
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("me", &self.inner.me)
            .field("killed", &self.is_killed())
            .field("status", &self.status())
            .finish()
    }
}
