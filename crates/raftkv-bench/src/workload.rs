//! What every system is measured on: one cell of the matrix (clients and
//! payload size), the closed-loop load generator shared by the two
//! channel-driven systems, the inbox each node thread reads, and the
//! numbers a run hands back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// The node ids of the three-node cluster.
pub const NODES: [u64; 3] = [1, 2, 3];
/// One logical clock tick, for every system: heartbeats every 10 ticks
/// (100 ms), elections after 30–60 ticks (300–600 ms).
pub const TICK: Duration = Duration::from_millis(10);
/// Entries a node keeps behind its applied index before it compacts its log
/// (every system compacts the same way, so none grows without bound).
pub const COMPACT_EVERY: u64 = 100_000;

/// One cell of the matrix.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    /// Closed-loop clients: each has one write outstanding at a time.
    pub clients: usize,
    /// Bytes of each proposal (at least 8: the first 8 name the client).
    pub payload: usize,
    /// Load before the measured window, not counted.
    pub warmup: Duration,
    /// The measured window.
    pub measure: Duration,
}

/// What one run of one cell measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Writes completed (applied on the leader and seen by their client)
    /// per second of the measured window.
    pub writes_per_sec: f64,
    /// Commit latency percentiles, propose to "applied on the leader", in µs.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl Outcome {
    /// Throughput and percentiles of `latencies` (ns) completed in `window`.
    pub fn from_latencies(mut latencies: Vec<u64>, window: Duration) -> Self {
        latencies.sort_unstable();
        let pct = |q: f64| -> f64 {
            if latencies.is_empty() {
                return f64::NAN;
            }
            let i = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
            latencies[i - 1] as f64 / 1_000.0
        };
        Outcome {
            writes_per_sec: latencies.len() as f64 / window.as_secs_f64(),
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
        }
    }
}

/// What a node thread reads from its inbox.
pub enum Input<M> {
    /// A message from a peer (passed by value: no encoding, for every system).
    Msg(M),
    /// Client writes, for the leader.
    Propose(Vec<Vec<u8>>),
    /// The run is over.
    Stop,
}

/// A proposal of `size` bytes whose first 8 bytes name `client`.
pub fn payload(client: u64, size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size.max(8)];
    v[..8].copy_from_slice(&client.to_le_bytes());
    v
}

/// The client named by a payload.
pub fn client_of(data: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(..8)?.try_into().ok()?))
}

/// The shared view of who leads, written by the node threads.
#[derive(Default)]
pub struct LeaderBoard {
    leader: AtomicU64,
}

impl LeaderBoard {
    pub fn set(&self, id: u64) {
        self.leader.store(id, Ordering::Release);
    }

    pub fn get(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }

    /// Waits until some node leads (or `timeout` passes).
    pub fn wait(&self, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let id = self.get();
            if id != 0 {
                return Ok(id);
            }
            if Instant::now() > deadline {
                anyhow::bail!("no leader within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A node thread's wait for its next input: until the next tick is due.
/// Returns the inputs waiting now (the first one blocking, the rest taken
/// without blocking), so that the driver hands the whole batch to its node
/// before it asks for the next Ready.
pub fn drain<M>(inbox: &Receiver<Input<M>>, next_tick: Instant, out: &mut Vec<Input<M>>) {
    match inbox.recv_deadline(next_tick) {
        Ok(first) => {
            out.push(first);
            out.extend(inbox.try_iter());
        }
        Err(RecvTimeoutError::Timeout) => {}
        Err(RecvTimeoutError::Disconnected) => out.push(Input::Stop),
    }
}

/// The closed loop for the channel-driven systems: `cell.clients` clients,
/// each proposing through the leader's inbox and waiting for the leader to
/// report its entry applied (on `done`, a batch per Ready), then proposing
/// again. Latency runs from the proposal being sent to its report arriving.
pub fn closed_loop<M>(
    leader: &Sender<Input<M>>,
    done: &Receiver<Vec<u64>>,
    cell: Cell,
) -> anyhow::Result<Outcome> {
    let begin = Instant::now();
    let t0 = begin + cell.warmup;
    let t1 = t0 + cell.measure;
    let mut sent_at = vec![begin; cell.clients];
    let first: Vec<Vec<u8>> = (0..cell.clients as u64)
        .map(|c| payload(c, cell.payload))
        .collect();
    leader
        .send(Input::Propose(first))
        .map_err(|_| anyhow::anyhow!("leader gone"))?;
    let mut latencies = Vec::with_capacity(1 << 20);
    loop {
        let batch = match done.recv_deadline(t1) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => anyhow::bail!("leader gone"),
        };
        let now = Instant::now();
        let mut again = Vec::with_capacity(batch.len());
        for c in batch {
            let Some(at) = sent_at.get_mut(c as usize) else {
                continue;
            };
            if now >= t0 && now <= t1 {
                latencies.push((now - *at).as_nanos() as u64);
            }
            *at = now;
            again.push(payload(c, cell.payload));
        }
        if now >= t1 {
            break;
        }
        if !again.is_empty() && leader.send(Input::Propose(again)).is_err() {
            anyhow::bail!("leader gone");
        }
    }
    Ok(Outcome::from_latencies(latencies, cell.measure))
}

/// The inboxes of a cluster, one per node, and a sender to each.
pub struct Inboxes<M> {
    pub senders: Vec<Sender<Input<M>>>,
    pub receivers: Vec<Receiver<Input<M>>>,
}

impl<M> Inboxes<M> {
    pub fn new() -> Self {
        let (senders, receivers) = NODES.iter().map(|_| crossbeam_channel::unbounded()).unzip();
        Inboxes { senders, receivers }
    }
}

/// The sender to node `id`'s inbox.
pub fn to_node<M>(senders: &[Sender<Input<M>>], id: u64) -> Option<&Sender<Input<M>>> {
    senders.get((id as usize).checked_sub(1)?)
}

/// What every channel-driven run shares: the leader board and the
/// completions channel.
pub struct Shared {
    pub board: Arc<LeaderBoard>,
    pub done: Sender<Vec<u64>>,
}
