//! The server side: one [`Service`] per running node, driven by the same
//! event loop as the lab's applier. The driver hands each persisted Ready
//! to the service after sending its messages (persist, send, apply,
//! advance), snapshots when the persisted Raft state passes maxraftstate,
//! and restores the service from the stored snapshot at every restart.

use std::collections::BTreeMap;

use raft_core::{Index, NodeId, Ready, Snapshot};
use raft_kv::{ClientRequest, Replies, Service};

use super::Clerks;
use super::{ClerkId, KvConfig, KvEv};
use crate::clock::MS;
use crate::error::{FailureKind, SimError};
use crate::factory::StorageFactory;
use crate::invariants::fnv1a;
use crate::sim::{Sim, SimConfig};
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

    /// After `advance`: snapshots when the persisted Raft state (as the
    /// storage factory measures it) reached maxraftstate.
    pub(crate) fn kv_snapshot(&mut self, id: NodeId) -> Result<(), SimError> {
        let i = id as usize - 1;
        if self.kv_mut().cfg.service.max_raft_state.is_none() {
            return Ok(());
        }
        let Some(node) = self.nodes[i].as_ref() else {
            return Ok(());
        };
        let Some(size) = self.factory.raft_state_size(node.storage()) else {
            return Ok(());
        };
        let kv = self.kv.as_deref_mut().expect("KV service");
        let Some(service) = kv.services[i].as_mut() else {
            return Ok(());
        };
        let Some((index, data)) = service.maybe_snapshot(size) else {
            return Ok(());
        };
        if let Err(what) = kv.agree(index, &data) {
            return Err(self.fail(FailureKind::Apply { node: id, what }));
        }
        let node = self.nodes[i].as_mut().expect("up");
        let res = node.snapshot(index, data);
        self.core(id, res)
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
