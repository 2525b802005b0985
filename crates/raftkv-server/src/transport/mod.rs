//! The peer transport: one TCP connection per pair of nodes, carrying
//! raft-core messages in batched frames ([`wire`](crate::wire)).
//!
//! **Who dials:** the node with the lower id dials; the higher one accepts.
//! So each pair has exactly one connection and no race to break, and a
//! restarted node is reconnected by (or reconnects to) its peers on its own.
//! The dialer retries with backoff (50 ms doubling to 1 s).
//!
//! **Handshake:** the dialer's first frame is a `Hello` with the cluster id,
//! its id and the id it expects to reach; the acceptor checks all three (and
//! that the dialer has the lower id) and answers with its own `Hello`, or a
//! `Refuse` with the reason. Only then do Raft frames flow, both ways.
//!
//! **Sending:** the driver hands messages to [`Transport::send`]. When the
//! peer's connection is idle (nothing queued, nobody writing), the driver
//! packs them into frames and writes them itself, without blocking
//! (`try_write`): no task has to be woken between a Ready and its bytes on
//! the wire. Whatever the socket does not take at once (a full send buffer)
//! is handed to the peer's writer task, which sends it first. Otherwise the
//! messages are queued per peer and the writer is woken; the driver never
//! blocks and holds the queue's lock only to push or to claim the socket.
//! A queue is bounded in messages and bytes and drops its oldest messages
//! when full: Raft tolerates loss, and a dead peer must not hold memory.
//! The writer takes everything queued and packs it into as few frames as
//! fit under the frame limit (one write).
//!
//! **Receiving:** each frame's messages must come from the connection's peer
//! and be addressed to this node; they go to the driver's inbox as one input
//! (waiting when the inbox is full: back-pressure on the peer's TCP).
//! Anything else (a frame that does not decode, one over the limit, a
//! message claiming another sender) closes the connection with one log line;
//! the node goes on.
//!
//! **Membership:** links follow the member table. A member added to the
//! configuration gets a link (and a dialer, if its id is higher) as soon
//! as its address is known ([`Transport::add_peer`]); a removed member's
//! link is closed ([`Transport::remove_peer`]), so its dials are refused.

mod conn;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::BytesMut;
use raft_core::{Message, NodeId};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::driver::Input;
use crate::metrics::Metrics;
use crate::wire;

/// Settings and shared state of one node's transport.
pub(crate) struct Shared {
    pub me: NodeId,
    pub cluster_id: String,
    pub max_frame: usize,
    pub queue_messages: usize,
    pub queue_bytes: u64,
    links: RwLock<BTreeMap<NodeId, Arc<Link>>>,
    pub inbox: mpsc::Sender<Input>,
    pub metrics: Arc<Metrics>,
    /// The clock of pings.
    pub epoch: Instant,
    pub cancel: CancellationToken,
}

impl Shared {
    /// Microseconds since the transport started, never 0 (0 means "none").
    pub fn now_micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    /// The link to peer `id`, if it is a known member.
    pub fn link(&self, id: NodeId) -> Option<Arc<Link>> {
        self.links.read().expect("links lock").get(&id).cloned()
    }
}

/// What is queued for one peer, and its connection's state.
pub(crate) struct Link {
    pub id: NodeId,
    pub addr: String,
    queue: Mutex<Queue>,
    wake: Notify,
    connected: AtomicBool,
    /// Numbers connections, so that only the newest one marks the link down.
    generation: AtomicU64,
    /// A ping to answer (its value), 0 for none.
    pong: AtomicU64,
    /// The accepted connection's task, aborted when a newer one arrives.
    current: Mutex<Option<AbortHandle>>,
    /// Fires when the node stops or the peer leaves the cluster.
    pub cancel: CancellationToken,
}

#[derive(Default)]
struct Queue {
    msgs: VecDeque<Message>,
    bytes: u64,
    /// The current connection's number and write half, while one is up.
    conn: Option<(u64, Arc<OwnedWriteHalf>)>,
    /// The connection (by number) someone is writing to right now: the
    /// driver (never across a wait) or the writer task. One at a time, so
    /// frames never interleave.
    busy: Option<u64>,
    /// The end of what the driver wrote, which the socket did not take:
    /// the writer sends it before anything else.
    leftover: BytesMut,
    /// The writer found the socket claimed and waits to be woken.
    writer_waiting: bool,
    /// A write by the driver failed: the writer closes the connection.
    broken: bool,
}

/// What the driver may write to directly: an idle connection.
struct Claim {
    generation: u64,
    wr: Arc<OwnedWriteHalf>,
}

impl Link {
    fn new(id: NodeId, addr: String, cancel: CancellationToken) -> Self {
        Link {
            id,
            addr,
            queue: Mutex::default(),
            wake: Notify::new(),
            connected: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            pong: AtomicU64::new(0),
            current: Mutex::new(None),
            cancel,
        }
    }

    /// Whether a connection to the peer is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Claims the connection for the driver if nothing is queued and
    /// nobody writes to it.
    fn claim(&self) -> Option<Claim> {
        let mut q = self.queue.lock().expect("queue lock");
        if q.busy.is_some() || !q.msgs.is_empty() || !q.leftover.is_empty() || q.broken {
            return None;
        }
        let (generation, wr) = q.conn.clone()?;
        q.busy = Some(generation);
        Some(Claim { generation, wr })
    }

    /// Ends the driver's claim: what the socket did not take (`rest`) goes
    /// to the writer, which is woken if it has anything to do.
    fn release(&self, generation: u64, rest: BytesMut, failed: bool) {
        let wake = {
            let mut q = self.queue.lock().expect("queue lock");
            let current = q.conn.as_ref().is_some_and(|c| c.0 == generation);
            if q.busy == Some(generation) {
                q.busy = None;
            }
            if current {
                // Bytes for a connection that is gone are dropped: the
                // next one starts at a frame boundary.
                q.leftover = rest;
                q.broken |= failed;
            }
            let wake = q.writer_waiting || !q.leftover.is_empty() || !q.msgs.is_empty() || failed;
            q.writer_waiting = false;
            wake
        };
        if wake {
            self.wake.notify_one();
        }
    }
}

/// The driver's handle: queues messages for peers.
#[derive(Clone)]
pub(crate) struct Transport {
    shared: Arc<Shared>,
    /// Where dialers of peers added later run.
    runtime: tokio::runtime::Handle,
    span: tracing::Span,
}

impl Transport {
    /// Starts the acceptor on `listener` and a dialer for every peer with a
    /// higher id. Tasks run in `span` and stop when `shared.cancel` fires.
    pub fn start(shared: Shared, listener: TcpListener, span: tracing::Span) -> Self {
        let shared = Arc::new(shared);
        tokio::spawn(conn::accept_loop(shared.clone(), listener).instrument(span.clone()));
        let t = Transport {
            shared,
            runtime: tokio::runtime::Handle::current(),
            span,
        };
        let links: Vec<Arc<Link>> = t.links().values().cloned().collect();
        for link in links {
            t.dial(link);
        }
        t
    }

    fn links(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<NodeId, Arc<Link>>> {
        self.shared.links.read().expect("links lock")
    }

    /// Starts dialing `link` if this node is the one that dials it.
    fn dial(&self, link: Arc<Link>) {
        if link.id > self.shared.me {
            let dial = conn::dial_loop(self.shared.clone(), link);
            self.runtime.spawn(dial.instrument(self.span.clone()));
        }
    }

    /// A new member at `addr` (its Raft address): from now on messages for
    /// it are queued and sent, and its connection is accepted or dialed.
    /// Callable from any thread. A known peer keeps its link and address.
    pub fn add_peer(&self, id: NodeId, addr: &str) {
        if id == self.shared.me {
            return;
        }
        let link = {
            let mut links = self.shared.links.write().expect("links lock");
            if links.contains_key(&id) {
                return;
            }
            let link = Arc::new(Link::new(
                id,
                addr.to_string(),
                self.shared.cancel.child_token(),
            ));
            links.insert(id, link.clone());
            link
        };
        self.dial(link);
    }

    /// A member left: its link, queue and connection are dropped, and its
    /// dials are refused from now on.
    pub fn remove_peer(&self, id: NodeId) {
        let link = self.shared.links.write().expect("links lock").remove(&id);
        if let Some(link) = link {
            link.cancel.cancel();
            if let Some(task) = link.current.lock().expect("link lock").take() {
                task.abort();
            }
        }
    }

    /// Builds the shared state, one link per peer other than `me`.
    #[allow(clippy::too_many_arguments)]
    pub fn shared(
        me: NodeId,
        cluster_id: String,
        peers: impl IntoIterator<Item = (NodeId, String)>,
        max_frame: usize,
        queue_messages: usize,
        queue_bytes: u64,
        inbox: mpsc::Sender<Input>,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> Shared {
        let links = peers
            .into_iter()
            .filter(|(id, _)| *id != me)
            .map(|(id, addr)| (id, Arc::new(Link::new(id, addr, cancel.child_token()))))
            .collect();
        Shared {
            me,
            cluster_id,
            max_frame,
            queue_messages,
            queue_bytes,
            links: RwLock::new(links),
            inbox,
            metrics,
            epoch: Instant::now(),
            cancel,
        }
    }

    /// Sends `msgs` to their peers: written at once to an idle connection,
    /// else queued for the peer's writer, which is woken. Never blocks on
    /// I/O; a full queue drops its oldest messages.
    pub fn send(&self, msgs: Vec<Message>) {
        let links = self.links();
        // Each peer's messages, in the order given.
        let mut by_peer: Vec<(&Arc<Link>, Vec<Message>)> = Vec::new();
        for m in msgs {
            let Some(link) = links.get(&m.to) else {
                continue;
            };
            match by_peer.iter_mut().find(|(l, _)| l.id == link.id) {
                Some((_, v)) => v.push(m),
                None => by_peer.push((link, vec![m])),
            }
        }
        for (link, msgs) in by_peer {
            match link.claim() {
                Some(claim) => self.write_now(link, claim, &msgs),
                None => self.enqueue(link, msgs),
            }
        }
    }

    /// Writes `msgs` to the claimed connection without waiting; the rest
    /// goes to the writer.
    fn write_now(&self, link: &Link, claim: Claim, msgs: &[Message]) {
        let m = &self.shared.metrics;
        let label = Metrics::peer(link.id);
        let mut buf = BytesMut::new();
        let packed = wire::put_raft(&mut buf, msgs, self.shared.max_frame);
        conn::count_packed(m, &label, &packed, self.shared.max_frame);
        let mut written = 0;
        let mut failed = false;
        while written < buf.len() {
            match claim.wr.try_write(&buf[written..]) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        m.peer_bytes_sent
            .get_or_create(&label)
            .inc_by(written as u64);
        let rest = if failed {
            BytesMut::new()
        } else {
            buf.split_off(written)
        };
        link.release(claim.generation, rest, failed);
    }

    /// Queues `msgs` for the peer's writer and wakes it.
    fn enqueue(&self, link: &Link, msgs: Vec<Message>) {
        for m in msgs {
            let size = wire::approx_size(&m);
            let dropped = {
                let mut q = link.queue.lock().expect("queue lock");
                q.msgs.push_back(m);
                q.bytes += size;
                let mut dropped = 0;
                while q.msgs.len() > 1
                    && (q.msgs.len() > self.shared.queue_messages
                        || q.bytes > self.shared.queue_bytes)
                {
                    if let Some(old) = q.msgs.pop_front() {
                        q.bytes = q.bytes.saturating_sub(wire::approx_size(&old));
                        dropped += 1;
                    }
                }
                dropped
            };
            if dropped > 0 {
                let label = Metrics::peer(link.id);
                self.shared
                    .metrics
                    .peer_messages_dropped
                    .get_or_create(&label)
                    .inc_by(dropped);
            }
        }
        link.wake.notify_one();
    }

    /// Whether each peer's connection is up.
    pub fn connected(&self) -> BTreeMap<NodeId, bool> {
        self.links()
            .iter()
            .map(|(&id, l)| (id, l.is_connected()))
            .collect()
    }
}
