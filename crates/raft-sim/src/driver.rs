//! Drives one node through the Ready contract after each input: persist
//! (snapshot, entries, hard state, one sync), then send, then apply
//! (restoring from the Ready's snapshot first), then `advance`; then the
//! application may take a snapshot, which is one more Ready. The checker
//! sees every Ready and the node's state once the input is fully handled,
//! and the core's promise of one reply per request (in the Ready right after
//! it) is checked here too. A leader with asynchronous writes sends its
//! early messages first and persists later (`write.rs`).

use raft_core::{persist, Config, Message, NodeId, Ready, Role, Storage};

use crate::clock::Time;
use crate::error::{FailureKind, SimError};
use crate::factory::StorageFactory;
use crate::invariants::Observed;
use crate::network::Fate;
use crate::sim::{derive_seed, Ev, Seen, Sim, TICK};
use crate::trace::Event;

/// Bytes `m` takes on the wire: one version byte (so a peer on another
/// encoding refuses it clearly instead of misreading it), then its postcard
/// encoding.
fn wire_size(m: &Message) -> u64 {
    let size = postcard::ser_flavors::Size::default();
    // Every raft-core message encodes; a failure would only undercount.
    let body = postcard::serialize_with_flavor::<_, _, usize>(m, size).map_or(0, |n| n as u64);
    1 + body
}

impl<F: StorageFactory> Sim<F> {
    /// Acts on every Ready node `id` has, then checks the invariants. A
    /// Ready with early messages (asynchronous leader writes) sends them and
    /// starts its write; the node takes no further Ready until the write
    /// lands (`write.rs`), though it goes on taking ticks and messages.
    pub(crate) fn drive(&mut self, id: NodeId) -> Result<(), SimError> {
        let i = id as usize - 1;
        loop {
            if self.servers[i].write.is_some() {
                // Replies to what it steps meanwhile come after the write.
                return self.after_event(id);
            }
            let Some(node) = self.nodes[i].as_mut() else {
                return Ok(());
            };
            if !node.has_ready() {
                break;
            }
            let rd = node.ready();
            let rd = self.core(id, rd)?;
            self.check_reply(id, &rd.messages)?;
            if !rd.early_messages.is_empty() {
                self.begin_write(id, rd)?;
                continue;
            }
            self.finish_ready(id, rd)?;
        }
        self.check_reply(id, &[])?;
        self.after_event(id)
    }

    /// The rest of the Ready contract once a Ready may be persisted:
    /// persist, let the checker mirror it, send, apply, advance; then the
    /// application may take a snapshot.
    pub(crate) fn finish_ready(&mut self, id: NodeId, rd: Ready) -> Result<(), SimError> {
        let i = id as usize - 1;
        let node = self.nodes[i].as_mut().expect("up");
        if let Err(e) = persist(node.storage_mut(), &rd) {
            let what = e.to_string();
            return Err(self.fail(FailureKind::Storage { node: id, what }));
        }
        let (role, term) = (node.role(), node.term());
        if let Err(what) = self.checker.on_ready(id, &rd, role, term) {
            return Err(self.fail(FailureKind::Invariant { node: id, what }));
        }
        self.act(id, rd)?;
        self.nodes[i].as_mut().expect("up").advance();
        self.maybe_snapshot(id)
    }

    /// One reply per stepped request, in the Ready right after it: each
    /// sender gets as many replies as it sent requests that must be
    /// answered, and at most one more per request that may be ignored.
    fn check_reply(&mut self, id: NodeId, messages: &[Message]) -> Result<(), SimError> {
        let awaiting = std::mem::take(&mut self.servers[id as usize - 1].awaiting);
        let mut senders: Vec<NodeId> = awaiting.iter().map(|a| a.0).collect();
        senders.sort_unstable();
        senders.dedup();
        for from in senders {
            let asked = awaiting.iter().filter(|a| a.0 == from);
            let must = asked.clone().filter(|a| !a.2).count();
            let may = asked.clone().filter(|a| a.2).count();
            let replies = messages
                .iter()
                .filter(|m| m.to == from && m.body.is_reply())
                .count();
            if replies < must || replies > must + may {
                let kinds: Vec<&str> = asked.map(|a| a.1).collect();
                let what = format!(
                    "requests {kinds:?} from node {from} got {replies} replies, not one each"
                );
                return Err(self.fail(FailureKind::Invariant { node: id, what }));
            }
        }
        Ok(())
    }

    /// Sends and applies one persisted Ready.
    fn act(&mut self, id: NodeId, mut rd: Ready) -> Result<(), SimError> {
        if let Some(s) = &rd.local_snapshot {
            self.record(
                Some(id),
                Event::Snapshot {
                    index: s.meta.index,
                },
            );
        }
        for m in std::mem::take(&mut rd.messages) {
            self.send(m);
        }
        if self.kv.is_some() {
            return self.kv_apply(id, &rd);
        }
        if let Some(s) = &rd.snapshot {
            if let Err(what) = self.apps.install(id, s) {
                return Err(self.fail(FailureKind::Apply { node: id, what }));
            }
            self.record(
                Some(id),
                Event::Install {
                    index: s.meta.index,
                },
            );
        }
        for e in &rd.committed_entries {
            if let Err(what) = self.apps.apply(id, e) {
                return Err(self.fail(FailureKind::Apply { node: id, what }));
            }
        }
        Ok(())
    }

    /// The lab's application snapshots every `snapshot_every` applied entries.
    fn maybe_snapshot(&mut self, id: NodeId) -> Result<(), SimError> {
        if self.kv.is_some() {
            return self.kv_snapshot(id);
        }
        let every = self.cfg.snapshot_every;
        let Some(node) = self.nodes[id as usize - 1].as_ref() else {
            return Ok(());
        };
        if every == 0 {
            return Ok(());
        }
        let st = node.status();
        let target = st.applied / every * every;
        if target == 0 || target < st.first_index {
            return Ok(());
        }
        let data = self.apps.snapshot_data(id, target);
        let node = self.nodes[id as usize - 1].as_mut().expect("up");
        let res = node.snapshot(target, data);
        self.core(id, res)
    }

    /// Puts one message on the network.
    pub(crate) fn send(&mut self, m: Message) {
        let bytes = wire_size(&m);
        let (from, to, kind) = (m.from, m.to, m.body.kind());
        let fate = self.net.route(&mut self.rng, self.now, &m, bytes);
        if self.tracer.wants_messages() {
            let ev = match &fate {
                Fate::Lost(reason) => Event::Lost {
                    to,
                    msg: kind,
                    reason,
                },
                Fate::Deliver(_) => Event::Send {
                    to,
                    msg: kind,
                    bytes,
                },
                Fate::Held => Event::Held { to, msg: kind },
            };
            self.record(Some(from), ev);
        }
        match fate {
            Fate::Deliver(times) => {
                for &t in &times[1..] {
                    self.queue.push(t, Ev::Deliver(m.clone()));
                }
                self.queue.push(times[0], Ev::Deliver(m));
            }
            Fate::Held => {
                self.net.wait(m);
                self.holds_dirty = true;
            }
            Fate::Lost(_) => {}
        }
    }

    /// Checks node `id` after an event and traces its role, term and commit changes.
    fn after_event(&mut self, id: NodeId) -> Result<(), SimError> {
        let i = id as usize - 1;
        let Some(node) = self.nodes[i].as_ref() else {
            return Ok(());
        };
        let st = node.status();
        let seen = Observed {
            status: &st,
            last_term: node.term_at(st.last_index),
            commit_term: node.term_at(st.commit),
            conf: node.conf(),
            writing: self.servers[i].write.is_some(),
        };
        if let Err(what) = self.checker.after_event(id, &seen) {
            return Err(self.fail(FailureKind::Invariant { node: id, what }));
        }
        if st.role == Role::Leader {
            for peer in (1..=self.n() as NodeId).filter(|&p| p != id) {
                let m = node.match_index(peer).unwrap_or(0);
                if let Err(what) = self.checker.check_match(id, st.term, peer, m) {
                    return Err(self.fail(FailureKind::Invariant { node: id, what }));
                }
            }
        }
        let seen = self.seen[i];
        self.stats
            .on_change((seen.role, seen.term), (st.role, st.term));
        if (st.role, st.term) != (seen.role, seen.term) {
            self.holds_dirty = true;
        }
        if st.role != seen.role {
            let ev = Event::Role {
                from: seen.role,
                to: st.role,
            };
            self.record(Some(id), ev);
        } else if st.term != seen.term {
            let ev = Event::Term {
                from: seen.term,
                to: st.term,
            };
            self.record(Some(id), ev);
        }
        if st.commit > seen.commit {
            self.record(Some(id), Event::Commit { index: st.commit });
        }
        self.seen[i] = Seen {
            role: st.role,
            term: st.term,
            commit: st.commit,
        };
        Ok(())
    }

    /// Starts a new incarnation of node `id` from the factory's storage: the
    /// application restores from the stored snapshot and re-applies the
    /// committed entries after it.
    pub(crate) fn start_node(&mut self, id: NodeId) -> Result<(), SimError> {
        let i = id as usize - 1;
        let storage = match self.factory.open(id) {
            Ok(s) => s,
            Err(e) => {
                let what = format!("cannot open: {e}");
                return Err(self.fail(FailureKind::Storage { node: id, what }));
            }
        };
        let snapshot = match storage.snapshot() {
            Ok(s) => s,
            Err(e) => {
                let what = e.to_string();
                return Err(self.fail(FailureKind::Storage { node: id, what }));
            }
        };
        self.incarnation[i] += 1;
        let incarnation = self.incarnation[i];
        let mut cfg = Config::new(id, self.servers[i].bootstrap.clone());
        (self.cfg.configure)(&mut cfg);
        cfg.seed = derive_seed(self.cfg.seed, 3, (id << 32) | incarnation);
        // The KV service reads by ReadIndex, which needs an entry of the
        // leader's term committed (thesis §6.4).
        if self.kv.is_some() {
            cfg.noop_on_election = true;
        }
        let node = raft_core::Node::new(cfg, storage);
        let node = self.core(id, node)?;
        let restored = if self.kv.is_some() {
            self.kv_restart(id, &snapshot)
        } else {
            self.apps.restart(id, &snapshot)
        };
        if let Err(what) = restored {
            return Err(self.fail(FailureKind::Apply { node: id, what }));
        }
        let st = node.status();
        if let Err(what) = self.checker.on_restart(id, node.storage(), &st) {
            return Err(self.fail(FailureKind::Invariant { node: id, what }));
        }
        self.seen[i] = Seen {
            role: st.role,
            term: st.term,
            commit: st.commit,
        };
        self.nodes[i] = Some(node);
        if incarnation > 1 {
            self.record(Some(id), Event::Restart);
        }
        let next = self.next_tick(i);
        self.queue.push(next, Ev::Tick { id, incarnation });
        self.drive(id)
    }

    /// The first tick of node `i`'s phase strictly after now.
    fn next_tick(&self, i: usize) -> Time {
        let phase = self.phase[i];
        if self.now < phase {
            return phase;
        }
        let since = (self.now - phase) % TICK;
        self.now + (TICK - since)
    }
}
