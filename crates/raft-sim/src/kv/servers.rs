//! The server side: one [`Service`] per running node, driven by the same
//! event loop as the lab's applier. The driver hands each persisted Ready
//! to the service after sending its messages (persist, send, apply,
//! advance), snapshots when the persisted Raft state passes maxraftstate,
//! and restores the service from the stored snapshot at every restart.
//! Like the real server, it takes the snapshot's image when it is due and
//! calls `Node::snapshot` with it some Readies later
//! ([`KvConfig::snapshot_delay`]).

use std::collections::BTreeMap;

use raft_core::{Index, NodeId, Ready, Snapshot};
use raft_kv::{ClientRequest, Replies, Service, StoreImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Clerks;
use super::{ClerkId, KvConfig, KvEv};
use crate::clock::MS;
use crate::error::{FailureKind, SimError};
use crate::factory::StorageFactory;
use crate::invariants::fnv1a;
use crate::sim::{derive_seed, Sim, SimConfig};
use crate::trace::Event;

/// The KV service of every node, the clerks, and what they recorded.
pub struct KvApp {
    pub(crate) cfg: KvConfig,
    /// The running service of node `i + 1` (`None` before its first start).
    pub(crate) services: Vec<Option<Service<ClerkId>>>,
    /// Digest of the snapshot taken or installed at each index, by any node.
    snapshots: BTreeMap<Index, u64>,
    /// The clerks and the history.
    pub(crate) clerks: Clerks,
    /// Leader snapshots installed (InstallSnapshot), all nodes together.
    installs: u64,
    /// Per node: an image taken, and how many more of its Readies pass
    /// before `Node::snapshot` is called with it.
    images: Vec<Option<(StoreImage, u32)>>,
    /// Draws the delays.
    rng: ChaCha8Rng,
    /// Snapshots taken below the applied index, and refused, by delay.
    delayed: u64,
    refused: u64,
}

impl KvApp {
    /// The KV application `cfg` asks for, if any.
    pub(crate) fn boxed(cfg: &SimConfig) -> Option<Box<KvApp>> {
        let kv = cfg.kv.clone()?;
        Some(Box::new(KvApp {
            services: (0..cfg.nodes).map(|_| None).collect(),
            snapshots: BTreeMap::new(),
            clerks: Clerks::new(cfg.seed),
            installs: 0,
            images: (0..cfg.nodes).map(|_| None).collect(),
            rng: ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, 6, 0)),
            delayed: 0,
            refused: 0,
            cfg: kv,
        }))
    }

    /// Node `id`'s service, if it runs.
    pub fn service(&self, id: NodeId) -> Option<&Service<ClerkId>> {
        self.services.get(id as usize - 1)?.as_ref()
    }

    /// The clerks and the history of their calls.
    pub fn clerks(&self) -> &Clerks {
        &self.clerks
    }

    /// Leader snapshots the services installed so far (InstallSnapshot, §7).
    pub fn installs(&self) -> u64 {
        self.installs
    }

    /// Snapshots whose `Node::snapshot` call came after more entries were
    /// applied (below the applied index), and those the node refused (a
    /// newer snapshot had come meanwhile).
    pub fn delayed_snapshots(&self) -> (u64, u64) {
        (self.delayed, self.refused)
    }

    /// The settings.
    pub fn config(&self) -> &KvConfig {
        &self.cfg
    }

    /// Replicas agree: every snapshot of `index` is the same bytes.
    fn agree(&mut self, index: Index, data: &[u8]) -> Result<(), String> {
        let digest = fnv1a(data);
        match self.snapshots.insert(index, digest) {
            Some(first) if first != digest => Err(format!(
                "a snapshot at index {index} differs from another one of that index \
                 (the replicas' state machines diverged)"
            )),
            _ => Ok(()),
        }
    }
}

/// The server side's hooks in the event loop.
impl<F: StorageFactory> Sim<F> {
    /// The KV service and clerks, when they run.
    pub fn kv(&self) -> Option<&KvApp> {
        self.kv.as_deref()
    }

    pub(crate) fn kv_mut(&mut self) -> &mut KvApp {
        self.kv
            .as_deref_mut()
            .expect("the cluster runs the KV service (SimConfig::kv)")
    }

    /// A new incarnation of node `id`: a fresh service restored from the
    /// stored snapshot; the node hands out the committed entries after it.
    pub(crate) fn kv_restart(&mut self, id: NodeId, snapshot: &Snapshot) -> Result<(), String> {
        let kv = self.kv_mut();
        let mut service = Service::new(kv.cfg.service.clone());
        if snapshot.meta.index > 0 {
            kv.agree(snapshot.meta.index, &snapshot.data)?;
            service
                .restore(snapshot)
                .map_err(|e| format!("stored snapshot does not restore: {e}"))?;
        }
        kv.services[id as usize - 1] = Some(service);
        // An image being encoded died with the process.
        kv.images[id as usize - 1] = None;
        Ok(())
    }

    /// Applies a persisted Ready whose messages are sent: the leader's
    /// snapshot, read states, committed entries; answers clerks.
    pub(crate) fn kv_apply(&mut self, id: NodeId, rd: &Ready) -> Result<(), SimError> {
        let i = id as usize - 1;
        let node = self.nodes[i].as_ref().expect("a node being driven is up");
        let kv = self.kv.as_deref_mut().expect("KV service");
        let mut result = match &rd.snapshot {
            Some(s) => kv.agree(s.meta.index, &s.data),
            None => Ok(()),
        };
        let mut replies = Vec::new();
        if result.is_ok() {
            let service = kv.services[i]
                .as_mut()
                .expect("a running node has a service");
            match service.on_ready(node, rd) {
                Ok(r) => replies = r,
                Err(e) => result = Err(format!("the KV state machine cannot follow: {e}")),
            }
        }
        if let Err(what) = result {
            return Err(self.fail(FailureKind::Apply { node: id, what }));
        }
        if let Some(s) = &rd.snapshot {
            self.kv_mut().installs += 1;
            let index = s.meta.index;
            self.record(Some(id), Event::Install { index });
        }
        self.kv_route_replies(id, replies);
        Ok(())
    }

    /// After `advance`: when the persisted Raft state (as the storage
    /// factory measures it) reached maxraftstate, takes an image of the
    /// store; once its delay has passed, encodes it and hands it to
    /// `Node::snapshot`. One image per node at a time, as in the server.
    pub(crate) fn kv_snapshot(&mut self, id: NodeId) -> Result<(), SimError> {
        let i = id as usize - 1;
        if self.kv_mut().cfg.service.max_raft_state.is_none() {
            return Ok(());
        }
        let Some(node) = self.nodes[i].as_ref() else {
            return Ok(());
        };
        let size = self.factory.raft_state_size(node.storage());
        let kv = self.kv.as_deref_mut().expect("KV service");
        if kv.images[i].is_none() {
            let Some(size) = size else {
                return Ok(());
            };
            let Some(service) = kv.services[i].as_mut() else {
                return Ok(());
            };
            let Some(image) = service.maybe_image(size) else {
                return Ok(());
            };
            let delay = kv.rng.gen_range(0..=kv.cfg.snapshot_delay);
            kv.images[i] = Some((image, delay));
        }
        match &mut kv.images[i] {
            Some((_, left)) if *left > 0 => {
                *left -= 1;
                return Ok(());
            }
            _ => {}
        }
        let Some((image, _)) = kv.images[i].take() else {
            return Ok(());
        };
        let (index, data) = (image.index(), image.encode());
        if let Err(what) = kv.agree(index, &data) {
            return Err(self.fail(FailureKind::Apply { node: id, what }));
        }
        let node = self.nodes[i].as_mut().expect("up");
        let applied = node.status().applied;
        match node.snapshot(index, data) {
            Ok(()) => {
                if index < applied {
                    self.kv_mut().delayed += 1;
                }
                Ok(())
            }
            // A newer snapshot (the leader's) came while it was encoded:
            // the server logs the refusal and goes on.
            Err(raft_core::Error::BadSnapshotIndex { .. }) => {
                self.kv_mut().refused += 1;
                Ok(())
            }
            Err(e) => self.core(id, Err(e)),
        }
    }

    /// After a tick: the service notices a lost leadership and ends
    /// requests that waited too long.
    pub(crate) fn kv_tick(&mut self, id: NodeId) {
        let now_ms = self.now / MS;
        let i = id as usize - 1;
        let (Some(kv), Some(node)) = (self.kv.as_deref_mut(), self.nodes[i].as_ref()) else {
            return;
        };
        let replies = match kv.services[i].as_mut() {
            Some(service) => service.tick(node, now_ms),
            None => return,
        };
        self.kv_route_replies(id, replies);
    }

    /// Runs one KV event.
    pub(crate) fn on_kv(&mut self, ev: KvEv) -> Result<(), SimError> {
        match ev {
            KvEv::Request { clerk, to, request } => self.kv_request(clerk, to, request),
            KvEv::Reply { clerk, from, reply } => self.kv_reply(clerk, from, reply),
            KvEv::Timer { clerk, generation } => self.kv_timer(clerk, generation),
            KvEv::Next { clerk } => self.kv_next(clerk),
        }
    }

    /// A clerk's request reaches server `to`, if the link is still up.
    fn kv_request(
        &mut self,
        clerk: ClerkId,
        to: NodeId,
        request: ClientRequest,
    ) -> Result<(), SimError> {
        let i = to as usize - 1;
        if !self.client_link_up(clerk, to) {
            self.kv_mut().clerks.counters.lost += 1;
            return Ok(());
        }
        self.events += 1;
        let now_ms = self.now / MS;
        let node = self.nodes[i].as_mut().expect("link up: server up");
        let kv = self.kv.as_deref_mut().expect("KV service");
        let service = kv.services[i]
            .as_mut()
            .expect("a running node has a service");
        let replies = service.on_request(node, clerk, request, now_ms);
        self.kv_route_replies(to, replies);
        self.drive(to)
    }

    /// Puts replies from server `from` on the way to their clerks.
    pub(crate) fn kv_route_replies(&mut self, from: NodeId, replies: Replies<ClerkId>) {
        for (clerk, reply) in replies {
            self.kv_send(KvEv::Reply { clerk, from, reply });
        }
    }
}
