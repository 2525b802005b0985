//! The lab's goroutines as state machines polled in virtual time: `one()`
//! (also used by the main thread) and the churn tests' client loop.
//! A task runs until it has to sleep, then asks to be woken after a delay;
//! the [`Cluster`] spawns them, wakes them from the event queue and joins them.

use raft_core::{Index, NodeId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::clock::{Time, MS};
use crate::error::{FailureKind, SimError};
use crate::factory::StorageFactory;
use crate::harness::Cluster;
use crate::sim::Sim;

/// Commands a client saw committed, with their indices.
pub(crate) type Committed = Vec<(Index, Vec<u8>)>;

/// What a task wants next.
pub(crate) enum Poll<T> {
    /// Wake me after this much virtual time.
    Sleep(Time),
    /// Finished with this result.
    Done(T),
}

/// A command, for messages: the lab's integer if it is 8 bytes, else its size.
pub fn show_cmd(cmd: &[u8]) -> String {
    match <[u8; 8]>::try_from(cmd) {
        Ok(b) => u64::from_le_bytes(b).to_string(),
        Err(_) => format!("<{} bytes>", cmd.len()),
    }
}

enum OneState {
    Trying,
    Waiting { index: Index, since: Time },
}

/// The lab's `one(cmd, expected_servers, retry)`: offer the command to each
/// connected server in turn until one leads, then wait up to 2 s for
/// `expected` servers to apply it; give up after 10 s.
pub(crate) struct OneTask {
    cmd: Vec<u8>,
    expected: usize,
    retry: bool,
    t0: Time,
    starts: usize,
    state: OneState,
}

impl OneTask {
    pub fn new(cmd: Vec<u8>, expected: usize, retry: bool, now: Time) -> Self {
        OneTask {
            cmd,
            expected,
            retry,
            t0: now,
            starts: 0,
            state: OneState::Trying,
        }
    }

    fn failed<F: StorageFactory>(&self, sim: &Sim<F>) -> SimError {
        let msg = format!("one({}) failed to reach agreement", show_cmd(&self.cmd));
        sim.fail(FailureKind::Check(msg))
    }

    pub fn poll<F: StorageFactory>(&mut self, sim: &mut Sim<F>) -> Result<Poll<Index>, SimError> {
        loop {
            let now = sim.now();
            match self.state {
                OneState::Trying => {
                    if now - self.t0 >= 10_000 * MS {
                        return Err(self.failed(sim));
                    }
                    let n = sim.n();
                    let mut found = None;
                    for _ in 0..n {
                        self.starts = (self.starts + 1) % n;
                        let id = self.starts as NodeId + 1;
                        if sim.net().is_connected(id) {
                            if let Some((index, _)) = sim.propose(id, self.cmd.clone())? {
                                found = Some(index);
                                break;
                            }
                        }
                    }
                    match found {
                        Some(index) => self.state = OneState::Waiting { index, since: now },
                        None => return Ok(Poll::Sleep(50 * MS)),
                    }
                }
                OneState::Waiting { index, since } => {
                    if now - since < 2_000 * MS {
                        let (nd, cmd) = sim.apps().n_committed(index);
                        if nd > 0 && nd >= self.expected && cmd == Some(&self.cmd[..]) {
                            return Ok(Poll::Done(index));
                        }
                        return Ok(Poll::Sleep(20 * MS));
                    }
                    if !self.retry {
                        return Err(self.failed(sim));
                    }
                    self.state = OneState::Trying;
                }
            }
        }
    }
}

enum ClientState {
    Top,
    Polling {
        cmd: Vec<u8>,
        index: Index,
        step: usize,
    },
}

/// The churn tests' client: offer a random command to every running server,
/// and if one accepted, watch a while for it to commit; record the commands
/// seen committed, with their index. Stops when told to, between commands.
pub(crate) struct ClientTask {
    me: u64,
    size: usize,
    values: Committed,
    state: ClientState,
}

const CLIENT_WAITS_MS: [Time; 5] = [10, 20, 50, 100, 200];

impl ClientTask {
    /// Client `me`, proposing commands of `size` bytes (at least 8: a
    /// random number, padded).
    pub fn new(me: u64, size: usize) -> Self {
        ClientTask {
            me,
            size: size.max(8),
            values: Vec::new(),
            state: ClientState::Top,
        }
    }

    pub fn poll<F: StorageFactory>(
        &mut self,
        sim: &mut Sim<F>,
        rng: &mut ChaCha8Rng,
        stop: bool,
    ) -> Result<Poll<Committed>, SimError> {
        loop {
            match &mut self.state {
                ClientState::Top => {
                    if stop {
                        return Ok(Poll::Done(std::mem::take(&mut self.values)));
                    }
                    let mut cmd = rng.gen::<u64>().to_le_bytes().to_vec();
                    cmd.resize(self.size, 0xa5);
                    let mut accepted = None;
                    for id in 1..=sim.n() as NodeId {
                        if let Some((index, _)) = sim.propose(id, cmd.clone())? {
                            accepted = Some(index);
                        }
                    }
                    match accepted {
                        Some(index) => {
                            self.state = ClientState::Polling {
                                cmd,
                                index,
                                step: 0,
                            }
                        }
                        None => return Ok(Poll::Sleep((79 + self.me * 17) * MS)),
                    }
                }
                ClientState::Polling { cmd, index, step } => {
                    if *step == CLIENT_WAITS_MS.len() {
                        self.state = ClientState::Top;
                        continue;
                    }
                    let (nd, seen) = sim.apps().n_committed(*index);
                    if nd > 0 {
                        if seen == Some(&cmd[..]) {
                            self.values.push((*index, std::mem::take(cmd)));
                        }
                        self.state = ClientState::Top;
                        continue;
                    }
                    let wait = CLIENT_WAITS_MS[*step] * MS;
                    *step += 1;
                    return Ok(Poll::Sleep(wait));
                }
            }
        }
    }
}

/// Identifies a background task (a lab goroutine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskId(u64);

/// What a finished background task returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskOutput {
    /// A `one()` reached agreement at this index.
    Index(Index),
    /// A client's commands seen committed, with their indices.
    Committed(Vec<(Index, Vec<u8>)>),
}

pub(crate) enum Task {
    One(OneTask),
    Client(ClientTask),
}

pub(crate) enum Slot {
    Running(Task),
    Polling,
    Done(TaskOutput),
}

/// Background tasks: the lab's goroutines, run in virtual time.
impl<F: StorageFactory> Cluster<F> {
    pub(crate) fn run_until(&mut self, deadline: Time) -> Result<(), SimError> {
        while let Some(t) = self.sim.next_time() {
            if t > deadline {
                break;
            }
            if let Some(task) = self.sim.step()? {
                self.poll_task(task)?;
            }
        }
        self.sim.advance_to(deadline);
        Ok(())
    }

    pub(crate) fn poll_task(&mut self, task: u64) -> Result<(), SimError> {
        let slot = &mut self.tasks[task as usize];
        let Slot::Running(mut t) = std::mem::replace(slot, Slot::Polling) else {
            return Ok(());
        };
        let (sim, rng, stop) = (&mut self.sim, &mut self.rng, self.stop_clients);
        let next = match &mut t {
            Task::One(one) => match one.poll(sim)? {
                Poll::Sleep(d) => Poll::Sleep(d),
                Poll::Done(i) => Poll::Done(TaskOutput::Index(i)),
            },
            Task::Client(c) => match c.poll(sim, rng, stop)? {
                Poll::Sleep(d) => Poll::Sleep(d),
                Poll::Done(v) => Poll::Done(TaskOutput::Committed(v)),
            },
        };
        self.tasks[task as usize] = match next {
            Poll::Sleep(d) => {
                self.sim.schedule_wake(d, task);
                Slot::Running(t)
            }
            Poll::Done(out) => Slot::Done(out),
        };
        Ok(())
    }

    fn spawn(&mut self, task: Task) -> TaskId {
        let id = self.tasks.len() as u64;
        self.tasks.push(Slot::Running(task));
        self.sim.schedule_wake(0, id);
        TaskId(id)
    }

    /// `go cfg.one(cmd, expected, retry)`: runs `one` in the background.
    pub fn spawn_one(&mut self, cmd: Vec<u8>, expected: usize, retry: bool) -> TaskId {
        let now = self.sim.now();
        self.spawn(Task::One(OneTask::new(cmd, expected, retry, now)))
    }

    /// Starts the churn tests' client number `me` in the background.
    pub fn spawn_client(&mut self, me: u64) -> TaskId {
        self.spawn_client_sized(me, 8)
    }

    /// A churn client whose commands are `size` bytes (a random number, padded).
    /// Once every earlier client has stopped, a new client starts a new
    /// round: [`stop_clients`](Self::stop_clients) no longer applies.
    pub fn spawn_client_sized(&mut self, me: u64, size: usize) -> TaskId {
        let running = self
            .tasks
            .iter()
            .any(|t| matches!(t, Slot::Running(Task::Client(_)) | Slot::Polling));
        if !running {
            self.stop_clients = false;
        }
        self.spawn(Task::Client(ClientTask::new(me, size)))
    }

    /// Tells the clients to finish the command at hand and stop.
    pub fn stop_clients(&mut self) {
        self.stop_clients = true;
    }

    /// Runs virtual time until background task `id` finishes; returns its output.
    pub fn join(&mut self, id: TaskId) -> Result<TaskOutput, SimError> {
        let limit = self.sim.now() + 600_000 * MS;
        loop {
            if let Slot::Done(out) = &self.tasks[id.0 as usize] {
                return Ok(out.clone());
            }
            match self.sim.next_time() {
                Some(t) if t <= limit => {
                    if let Some(task) = self.sim.step()? {
                        self.poll_task(task)?;
                    }
                }
                _ => return Err(self.fatal("a background task never finished")),
            }
        }
    }

    /// `wg.Wait()`: runs until every background task has finished.
    pub fn join_all(&mut self) -> Result<Vec<TaskOutput>, SimError> {
        (0..self.tasks.len() as u64)
            .map(|i| self.join(TaskId(i)))
            .collect()
    }
}
