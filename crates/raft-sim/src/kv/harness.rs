//! The lab's kvraft test vocabulary over the simulator: make clients,
//! connect them to some servers, put, append, get and check, partition,
//! shut servers down and start them, measure the persisted state; and at
//! the end, check the recorded history and that the replicas agree.
//!
//! Servers are node ids `1..=n` (the lab's `i` is `i + 1`). Calls of the
//! test's own block in virtual time until the clerk answers; the clerk's
//! own deadline bounds the wait.

use raft_core::{NodeId, Storage};
use raft_kv::check::{check_and_draw, check_with_stats, Budget, KvModel};
use raft_kv::{KvError, Op, OpResult};

use super::workload::Workload;
use super::{ClerkId, KvApp, KvConfig};
use crate::clock::Time;
use crate::error::SimError;
use crate::factory::{MemFactory, StorageFactory};
use crate::harness::Cluster;

/// The checker's step budget per history: deterministic, so a verdict is
/// the same on every machine. The scenarios' histories take one to two
/// steps per call (at most about 13,500 steps over 30 seeds, measured with
/// `RAFT_FIGURES=1`); a history that needs more than this is reported as
/// undecided, never passed.
pub const CHECK_STEPS: u64 = 5_000_000;

/// A simulated KV cluster with the lab's vocabulary.
pub struct KvCluster<F: StorageFactory = MemFactory> {
    /// The cluster underneath (the Raft lab's vocabulary: crash, restart,
    /// connect, partition through [`Cluster::sim_mut`], run_for...).
    pub cluster: Cluster<F>,
    name: String,
    seed: u64,
}

impl KvCluster<MemFactory> {
    /// The lab's `make_config(t, n, unreliable, maxraftstate)` for scenario
    /// `name` (which names the picture of a failed history), seeded.
    pub fn new(
        name: &str,
        seed: u64,
        n: usize,
        unreliable: bool,
        max_raft_state: Option<u64>,
    ) -> Result<Self, SimError> {
        Self::with_config(name, seed, n, unreliable, KvConfig::new(max_raft_state))
    }

    /// Like [`new`](Self::new), with every KV setting given.
    pub fn with_config(
        name: &str,
        seed: u64,
        n: usize,
        unreliable: bool,
        kv: KvConfig,
    ) -> Result<Self, SimError> {
        let cluster = Cluster::builder(n, seed)
            .unreliable(unreliable)
            .kv(kv)
            .build()?;
        Ok(KvCluster {
            cluster,
            name: name.to_string(),
            seed,
        })
    }
}

impl<F: StorageFactory> KvCluster<F> {
    /// Number of servers.
    pub fn n(&self) -> usize {
        self.cluster.n()
    }

    /// Every server: the lab's `cfg.All()`.
    pub fn all(&self) -> Vec<NodeId> {
        (1..=self.n() as NodeId).collect()
    }

    /// The KV side of the simulator.
    pub fn kv(&self) -> &KvApp {
        self.cluster.sim().kv().expect("a KV cluster")
    }

    /// A failure like the lab's `t.Fatalf`.
    pub fn fatal(&self, msg: impl Into<String>) -> SimError {
        self.cluster.fatal(msg)
    }

    /// Virtual time now.
    pub fn now(&self) -> Time {
        self.cluster.now()
    }

    /// The lab's `time.Sleep`.
    pub fn run_for(&mut self, ms: u64) -> Result<(), SimError> {
        self.cluster.run_for(ms)
    }

    /// Runs every event due until virtual time `t`.
    pub(crate) fn run_until(&mut self, t: Time) -> Result<(), SimError> {
        self.cluster.run_until(t)
    }

    /// A random number in `0..n` from the test's generator.
    pub fn rand_below(&mut self, n: u64) -> u64 {
        self.cluster.rand_below(n)
    }

    /// The lab's `makeClient(to)`: a clerk connected to servers `to`.
    pub fn make_client(&mut self, to: &[NodeId]) -> ClerkId {
        self.cluster.sim.kv_add_clerk(to)
    }

    /// The lab's `ConnectClient(ck, to)`: `ck` reaches exactly `to`.
    pub fn connect_client(&mut self, ck: ClerkId, to: &[NodeId]) {
        self.cluster.sim.kv_connect_clerk(ck, to);
    }

    /// Starts a call on `ck` and returns at once; see [`finish`](Self::finish).
    pub fn start(&mut self, ck: ClerkId, op: Op) -> raft_kv::CallId {
        self.cluster.sim.kv_call(ck, op)
    }

    /// The result of call `call` of `ck` if it is over (taken once).
    pub fn poll(
        &mut self,
        ck: ClerkId,
        call: raft_kv::CallId,
    ) -> Option<Result<OpResult, KvError>> {
        self.cluster.sim.kv_take_result(ck, call)
    }

    /// Runs until call `call` of `ck` is over; its result.
    pub fn finish(
        &mut self,
        ck: ClerkId,
        call: raft_kv::CallId,
    ) -> Result<Result<OpResult, KvError>, SimError> {
        loop {
            if let Some(result) = self.poll(ck, call) {
                return Ok(result);
            }
            let Some(t) = self.cluster.sim().next_time() else {
                return Err(self.fatal("the simulation ran out of events during a call"));
            };
            self.cluster.run_until(t)?;
        }
    }

    /// Runs until call `call` of `ck` is over, for at most `ms`; its
    /// result, `None` if it is still going.
    pub fn finish_within(
        &mut self,
        ck: ClerkId,
        call: raft_kv::CallId,
        ms: u64,
    ) -> Result<Option<Result<OpResult, KvError>>, SimError> {
        let deadline = self.now() + ms * crate::clock::MS;
        loop {
            if let Some(result) = self.poll(ck, call) {
                return Ok(Some(result));
            }
            match self.cluster.sim().next_time() {
                Some(t) if t <= deadline => self.cluster.run_until(t)?,
                _ => {
                    self.cluster.run_until(deadline)?;
                    return Ok(self.poll(ck, call));
                }
            }
        }
    }

    /// One call on `ck`, run to its end.
    pub fn call(&mut self, ck: ClerkId, op: Op) -> Result<Result<OpResult, KvError>, SimError> {
        let call = self.start(ck, op);
        self.finish(ck, call)
    }

    /// A call that must succeed (the lab's clerks never give up).
    fn must(&mut self, ck: ClerkId, op: Op) -> Result<OpResult, SimError> {
        let what = format!("{op:?}");
        self.call(ck, op)?
            .map_err(|e| self.fatal(format!("clerk {ck}: {what} failed: {e}")))
    }

    /// The lab's `Put`.
    pub fn put(&mut self, ck: ClerkId, key: &str, value: &str) -> Result<(), SimError> {
        let op = Op::Put {
            key: key.into(),
            value: value.into(),
        };
        self.must(ck, op).map(drop)
    }

    /// The lab's `Append`.
    pub fn append(&mut self, ck: ClerkId, key: &str, value: &str) -> Result<(), SimError> {
        let op = Op::Append {
            key: key.into(),
            value: value.into(),
        };
        self.must(ck, op).map(drop)
    }

    /// The lab's `Get`: the value, empty when absent.
    pub fn get(&mut self, ck: ClerkId, key: &str) -> Result<Vec<u8>, SimError> {
        match self.must(ck, Op::Get { key: key.into() })? {
            OpResult::Value(v) => Ok(v.unwrap_or_default()),
            other => Err(self.fatal(format!("get({key}) answered {other:?}"))),
        }
    }

    /// The lab's `check`: `key` holds `value`.
    pub fn check(&mut self, ck: ClerkId, key: &str, value: &str) -> Result<(), SimError> {
        let got = self.get(ck, key)?;
        if got != value.as_bytes() {
            let got = String::from_utf8_lossy(&got);
            return Err(self.fatal(format!("get({key}): expected:\n{value}\nreceived:\n{got}")));
        }
        Ok(())
    }

    /// Starts `workload` on `ck`, pausing `pause_ms` between calls.
    pub fn run_workload(
        &mut self,
        ck: ClerkId,
        workload: Workload,
        pause_ms: (u64, u64),
    ) -> Result<(), SimError> {
        self.cluster.sim.kv_run_workload(ck, workload, pause_ms)
    }

    /// Tells every workload to stop after the call at hand.
    pub fn stop_clients(&mut self) {
        self.cluster.sim.kv_stop_workloads();
    }

    /// Runs until none of `clerks` has a call in flight or a workload going
    /// (the lab's `spawn_clients_and_wait`); fails after `ms`.
    pub fn wait_clients(&mut self, clerks: &[ClerkId], ms: u64) -> Result<(), SimError> {
        let clerks = clerks.to_vec();
        self.cluster.wait_for(ms, "the clients to finish", |c| {
            let kv = c.sim().kv().expect("a KV cluster");
            !clerks.iter().any(|&ck| kv.clerks.busy(ck))
        })
    }

    /// The lab's `partition(p1, p2)`: servers reach only their own group;
    /// clerks keep their links.
    pub fn partition(&mut self, p1: &[NodeId], p2: &[NodeId]) {
        let mut groups = vec![0; self.n()];
        for &id in p2 {
            groups[id as usize - 1] = 1;
        }
        debug_assert!(p1.iter().all(|&id| groups[id as usize - 1] == 0));
        self.cluster.sim_mut().partition(groups);
    }

    /// The lab's `make_partition`: the leader and `n / 2` others, and the rest.
    pub fn make_partition(&mut self) -> Result<(Vec<NodeId>, Vec<NodeId>), SimError> {
        let leader = self.cluster.check_one_leader()?;
        let n = self.n() as u64;
        let p1: Vec<NodeId> = (0..n / 2 + 1)
            .map(|k| self.cluster.next(leader, k))
            .collect();
        let p2 = (n / 2 + 1..n)
            .map(|k| self.cluster.next(leader, k))
            .collect();
        Ok((p1, p2))
    }

    /// The lab's `ConnectAll`: heals partitions and connects every running server.
    pub fn connect_all(&mut self) {
        self.cluster.sim_mut().heal();
        for id in self.all() {
            if self.cluster.is_up(id) {
                self.cluster.connect(id);
            }
        }
    }

    /// The lab's `ShutdownServer(i)`: cut off and crashed; storage kept.
    pub fn shutdown_server(&mut self, id: NodeId) {
        self.cluster.crash(id);
    }

    /// The lab's `StartServer(i)`: restarted from storage, still cut off.
    pub fn start_server(&mut self, id: NodeId) -> Result<(), SimError> {
        self.cluster.restart(id)
    }

    /// The lab's `LogSize`: the largest persisted Raft state.
    pub fn log_size(&self) -> u64 {
        self.cluster.log_size()
    }

    /// The lab's `SnapshotSize`: the largest stored snapshot, in bytes.
    pub fn snapshot_size(&self) -> u64 {
        self.all()
            .into_iter()
            .filter_map(|id| self.cluster.sim().node(id))
            .filter_map(|n| n.storage().snapshot().ok())
            .map(|s| s.data.len() as u64)
            .max()
            .unwrap_or(0)
    }

    /// Checks the history of every call so far with the linearizability
    /// checker; a refused history fails with the checker's explanation and
    /// the path of its picture.
    pub fn check_history(&self) -> Result<(), SimError> {
        let history = self.kv().clerks().history();
        let budget = Budget::steps(CHECK_STEPS);
        let (verdict, stats) = check_with_stats(&KvModel, history.ops(), &budget);
        let unknown = history.ops().iter().filter(|op| op.ret().is_none()).count();
        crate::seeds::figures(
            self.seed,
            &[
                ("calls", history.len() as f64),
                ("unknown", unknown as f64),
                ("check_steps", stats.steps as f64),
            ],
        );
        if verdict.is_ok() {
            return Ok(());
        }
        // Again, to explain the verdict and draw the failing partition.
        let name = format!("{}-seed{}", self.name, self.seed);
        match check_and_draw(&KvModel, history.ops(), &budget, &name) {
            Ok(()) => Err(self.fatal("the checker changed its verdict on a second look")),
            Err(e) => {
                let verdict = if verdict.is_illegal() {
                    "is not linearizable"
                } else {
                    "could not be decided"
                };
                Err(self.fatal(format!(
                    "{}, seed {}: the history of {} calls ({unknown} of unknown outcome) \
                     {verdict}\n{e}",
                    self.name,
                    self.seed,
                    history.len()
                )))
            }
        }
    }

    /// Runs until every running server has applied the same index (at
    /// most `ms`), then checks that their state machines are the same bytes.
    pub fn check_replicas(&mut self, ms: u64) -> Result<(), SimError> {
        self.cluster
            .wait_for(ms, "the replicas to apply the same index", |c| {
                let kv = c.sim().kv().expect("a KV cluster");
                let applied: Vec<_> = (1..=c.n() as NodeId)
                    .filter(|&id| c.is_up(id))
                    .filter_map(|id| kv.service(id))
                    .map(|s| s.store().applied())
                    .collect();
                applied.windows(2).all(|w| w[0] == w[1])
            })?;
        let kv = self.kv();
        let images: Vec<(NodeId, Vec<u8>)> = self
            .all()
            .into_iter()
            .filter(|&id| self.cluster.is_up(id))
            .filter_map(|id| kv.service(id).map(|s| (id, s.store().snapshot())))
            .collect();
        if let Some((a, b)) = images
            .windows(2)
            .find(|w| w[0].1 != w[1].1)
            .map(|w| (w[0].0, w[1].0))
        {
            return Err(self.fatal(format!(
                "servers {a} and {b} applied the same index but hold different states"
            )));
        }
        Ok(())
    }
}
