//! One peer connection's life: dial or accept, handshake, then a reader and
//! a writer until either fails; every end is one log line.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use raft_core::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tracing::{debug, info, warn, Instrument};

use super::{Link, Shared};
use crate::driver::Input;
use crate::metrics::{Metrics, PeerLabel};
use crate::wire::{self, Frame, Hello, Packed};

/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest handshake frame (a Hello is a few dozen bytes).
const MAX_HELLO: usize = 4 << 10;
/// How often the writer pings (round-trip time metric).
const PING_EVERY: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Why a connection ended.
enum Closed {
    /// The peer closed it.
    Eof,
    /// The socket failed.
    Io(io::Error),
    /// The peer broke the protocol: counted, logged at warn.
    Protocol(String),
    /// This node is stopping.
    Stopping,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Eof => f.write_str("closed by the peer"),
            Closed::Io(e) => write!(f, "{e}"),
            Closed::Protocol(why) => f.write_str(why),
            Closed::Stopping => f.write_str("this node is stopping"),
        }
    }
}

/// Accepts connections until the node stops; each is handshaken in its own task.
pub(super) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shared.cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, addr)) => {
                let task = accept(shared.clone(), stream, addr);
                tokio::spawn(task.in_current_span());
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                warn!("accepting a peer connection failed: {e}");
                sleep(BACKOFF_MAX).await;
            }
        }
    }
}

/// Checks a dialer's Hello, answers it, and runs the connection.
async fn accept(shared: Arc<Shared>, mut stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let hello = match timeout(HANDSHAKE_TIMEOUT, read_one(&mut stream)).await {
        Ok(Ok(Frame::Hello(h))) => h,
        Ok(Ok(other)) => {
            return protocol(&shared, addr, format!("expected a hello, got {other:?}"))
        }
        Ok(Err(e)) => return protocol(&shared, addr, e),
        Err(_) => return protocol(&shared, addr, "no hello within 5 s".into()),
    };
    let link = match check_dialer(&shared, &hello) {
        Ok(link) => link,
        Err(why) => {
            let mut buf = BytesMut::new();
            wire::put_refuse(&mut buf, &why);
            let _ = timeout(HANDSHAKE_TIMEOUT, stream.write_all(&buf)).await;
            return protocol(&shared, addr, format!("refused: {why}"));
        }
    };
    let mut buf = BytesMut::new();
    wire::put_hello(&mut buf, &our_hello(&shared, link.id));
    if let Err(e) = stream.write_all(&buf).await {
        info!("connection from {addr} failed during the handshake: {e}");
        return;
    }
    // A newer connection from the peer replaces the older one (it restarted).
    let run = {
        let (shared, link) = (shared.clone(), link.clone());
        async move {
            info!("peer {} connected from {addr}", link.id);
            let closed = run(&shared, &link, stream).await;
            log_closed(&shared, link.id, &closed);
        }
    };
    let task = tokio::spawn(run.in_current_span());
    let old = link
        .current
        .lock()
        .expect("link lock")
        .replace(task.abort_handle());
    if let Some(old) = old {
        old.abort();
    }
}

/// Whether a dialer's Hello may open a connection; the reason if not.
fn check_dialer(shared: &Shared, h: &Hello) -> Result<Arc<Link>, String> {
    if h.cluster_id != shared.cluster_id {
        return Err(format!(
            "cluster id {:?} is not this cluster's ({:?})",
            h.cluster_id, shared.cluster_id
        ));
    }
    if h.to != shared.me {
        return Err(format!("this is node {}, not node {}", shared.me, h.to));
    }
    let Some(link) = shared.link(h.from) else {
        return Err(format!("node {} is not a member of this cluster", h.from));
    };
    if h.from > shared.me {
        return Err(format!(
            "node {} must not dial node {} (the lower id dials)",
            h.from, shared.me
        ));
    }
    Ok(link)
}

fn our_hello(shared: &Shared, to: NodeId) -> Hello {
    Hello {
        cluster_id: shared.cluster_id.clone(),
        from: shared.me,
        to,
    }
}

/// Logs and counts a connection closed for a protocol error.
fn protocol(shared: &Shared, addr: SocketAddr, why: String) {
    shared.metrics.peer_protocol_errors.inc();
    warn!("closed a peer connection from {addr}: {why}");
}

/// Dials `link` until the node stops, running each connection to its end.
pub(super) async fn dial_loop(shared: Arc<Shared>, link: Arc<Link>) {
    let mut backoff = BACKOFF_MIN;
    let mut last_error = String::new();
    loop {
        let attempt = tokio::select! {
            r = dial(&shared, &link) => r,
            _ = link.cancel.cancelled() => return,
        };
        match attempt {
            Ok(stream) => {
                info!("connected to peer {} at {}", link.id, link.addr);
                last_error.clear();
                backoff = BACKOFF_MIN;
                let closed = run(&shared, &link, stream).await;
                log_closed(&shared, link.id, &closed);
                if matches!(closed, Closed::Stopping) {
                    return;
                }
            }
            Err(e) => {
                // One line per kind of failure, not one per retry.
                if e != last_error {
                    info!(
                        "cannot reach peer {} at {}: {e} (retrying)",
                        link.id, link.addr
                    );
                    last_error = e;
                } else {
                    debug!("still cannot reach peer {}: {last_error}", link.id);
                }
            }
        }
        tokio::select! {
            _ = sleep(backoff) => {}
            _ = link.cancel.cancelled() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Connects and handshakes; the error as text for the log.
async fn dial(shared: &Shared, link: &Link) -> Result<TcpStream, String> {
    let handshake = async {
        let mut stream = TcpStream::connect(&link.addr)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let mut buf = BytesMut::new();
        wire::put_hello(&mut buf, &our_hello(shared, link.id));
        stream.write_all(&buf).await.map_err(|e| e.to_string())?;
        match read_one(&mut stream).await? {
            Frame::Hello(h) => {
                if h.cluster_id != shared.cluster_id || h.from != link.id || h.to != shared.me {
                    shared.metrics.peer_protocol_errors.inc();
                    return Err(format!(
                        "answered as node {} of cluster {:?} to node {} (expected node {} of {:?})",
                        h.from, h.cluster_id, h.to, link.id, shared.cluster_id
                    ));
                }
                Ok(stream)
            }
            Frame::Refuse(why) => Err(format!("refused: {why}")),
            other => Err(format!("expected a hello, got {other:?}")),
        }
    };
    timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or_else(|_| Err("handshake timed out".into()))
}

/// Reads exactly one small frame (the handshake).
async fn read_one(stream: &mut TcpStream) -> Result<Frame, String> {
    let mut len = [0u8; wire::LENGTH_BYTES];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| format!("reading the handshake: {e}"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HELLO {
        return Err(format!(
            "handshake frame of {len} bytes (limit {MAX_HELLO})"
        ));
    }
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("reading the handshake: {e}"))?;
    wire::decode(&body).map_err(|e| e.to_string())
}

fn log_closed(shared: &Shared, peer: NodeId, closed: &Closed) {
    match closed {
        Closed::Protocol(_) => {
            shared.metrics.peer_protocol_errors.inc();
            warn!("closed the connection to peer {peer}: {closed}");
        }
        Closed::Stopping => debug!("connection to peer {peer} closed: {closed}"),
        _ => info!("connection to peer {peer} lost: {closed}"),
    }
}

/// Runs a handshaken connection until one side fails or the node stops.
async fn run(shared: &Shared, link: &Link, stream: TcpStream) -> Closed {
    let generation = link.generation.fetch_add(1, Ordering::Relaxed) + 1;
    link.connected.store(true, Ordering::Relaxed);
    shared
        .metrics
        .peer_connections
        .get_or_create(&Metrics::peer(link.id))
        .inc();
    let (rd, wr) = stream.into_split();
    let wr = Arc::new(wr);
    let _attached = Attached::new(link, generation, wr.clone());
    let closed = tokio::select! {
        c = read_loop(shared, link, rd) => c,
        c = write_loop(shared, link, generation, wr) => c,
        _ = link.cancel.cancelled() => Closed::Stopping,
    };
    if link.generation.load(Ordering::Relaxed) == generation {
        link.connected.store(false, Ordering::Relaxed);
    }
    closed
}

/// The connection's write half, offered to the driver while the connection
/// runs; withdrawn when it ends (also when its task is aborted).
struct Attached<'a> {
    link: &'a Link,
    generation: u64,
}

impl<'a> Attached<'a> {
    fn new(link: &'a Link, generation: u64, wr: Arc<OwnedWriteHalf>) -> Self {
        let mut q = link.queue.lock().expect("queue lock");
        q.conn = Some((generation, wr));
        q.busy = None;
        q.leftover.clear();
        q.broken = false;
        q.writer_waiting = false;
        Attached { link, generation }
    }
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        let mut q = self.link.queue.lock().expect("queue lock");
        if q.conn.as_ref().is_some_and(|c| c.0 == self.generation) {
            q.conn = None;
            q.busy = None;
            q.leftover.clear();
            q.broken = false;
            q.writer_waiting = false;
        }
    }
}

async fn read_loop(shared: &Shared, link: &Link, rd: OwnedReadHalf) -> Closed {
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(shared.max_frame)
        .new_codec();
    let mut frames = FramedRead::new(rd, codec);
    let label = Metrics::peer(link.id);
    let m = &shared.metrics;
    while let Some(item) = frames.next().await {
        let body = match item {
            Ok(body) => body,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Closed::Protocol(format!(
                    "frame over the limit of {} bytes ({e})",
                    shared.max_frame
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::Other => {
                return Closed::Protocol(format!("connection ended inside a frame ({e})"))
            }
            Err(e) => return Closed::Io(e),
        };
        let frame_bytes = (body.len() + wire::LENGTH_BYTES) as u64;
        m.peer_bytes_received
            .get_or_create(&label)
            .inc_by(frame_bytes);
        match wire::decode(&body) {
            Ok(Frame::Raft(msgs)) => {
                if let Some(bad) = msgs.iter().find(|m| m.from != link.id || m.to != shared.me) {
                    return Closed::Protocol(format!(
                        "a message from node {} to node {} on peer {}'s connection",
                        bad.from, bad.to, link.id
                    ));
                }
                m.peer_messages_received
                    .get_or_create(&label)
                    .inc_by(msgs.len() as u64);
                if shared.inbox.send(Input::Peer(msgs)).await.is_err() {
                    return Closed::Stopping;
                }
            }
            Ok(Frame::Ping(t)) => {
                link.pong.store(t, Ordering::Relaxed);
                link.wake.notify_one();
            }
            Ok(Frame::Pong(t)) => {
                let rtt = shared.now_micros().saturating_sub(t);
                m.peer_rtt_seconds
                    .get_or_create(&label)
                    .observe(rtt as f64 / 1e6);
            }
            Ok(other) => {
                return Closed::Protocol(format!("unexpected frame after the handshake: {other:?}"))
            }
            Err(e) => return Closed::Protocol(e.to_string()),
        }
    }
    Closed::Eof
}

/// Counts what [`wire::put_raft`] packed; warns about dropped messages.
pub(super) fn count_packed(m: &Metrics, label: &PeerLabel, packed: &Packed, max_frame: usize) {
    m.peer_messages_sent
        .get_or_create(label)
        .inc_by(packed.messages as u64);
    if packed.too_large > 0 {
        warn!(
            "dropped {} messages too large for a frame of {max_frame} bytes",
            packed.too_large
        );
        m.peer_messages_dropped
            .get_or_create(label)
            .inc_by(packed.too_large as u64);
    }
}

/// Writes all of `buf` through a write half the driver may also use (the
/// caller holds the link's claim, so nobody else writes meanwhile).
async fn write_all(wr: &OwnedWriteHalf, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        wr.writable().await?;
        match wr.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends what the driver could not: the end of its last write, then pings,
/// pongs and queued messages, whenever woken.
async fn write_loop(
    shared: &Shared,
    link: &Link,
    generation: u64,
    wr: Arc<OwnedWriteHalf>,
) -> Closed {
    let label = Metrics::peer(link.id);
    let m = &shared.metrics;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Pings and pongs not yet sent.
    let mut own = BytesMut::new();
    let mut again = false;
    loop {
        if !again {
            tokio::select! {
                _ = link.wake.notified() => {}
                _ = ping.tick() => wire::put_ping(&mut own, shared.now_micros()),
            }
        }
        let pong = link.pong.swap(0, Ordering::Relaxed);
        if pong != 0 {
            wire::put_pong(&mut own, pong);
        }
        // Claim the socket; if the driver is writing, it wakes us when done.
        let (mut buf, mut batch) = {
            let mut q = link.queue.lock().expect("queue lock");
            if q.broken {
                return Closed::Io(io::Error::other("a write by the driver failed"));
            }
            if q.busy.is_some() {
                q.writer_waiting = true;
                again = false;
                continue;
            }
            if q.leftover.is_empty() && q.msgs.is_empty() && own.is_empty() {
                again = false;
                continue;
            }
            q.busy = Some(generation);
            q.bytes = 0;
            (std::mem::take(&mut q.leftover), std::mem::take(&mut q.msgs))
        };
        buf.extend_from_slice(&own);
        own.clear();
        if !batch.is_empty() {
            let packed = wire::put_raft(&mut buf, batch.make_contiguous(), shared.max_frame);
            count_packed(m, &label, &packed, shared.max_frame);
        }
        if let Err(e) = write_all(&wr, &buf).await {
            return Closed::Io(e);
        }
        m.peer_bytes_sent
            .get_or_create(&label)
            .inc_by(buf.len() as u64);
        // Release; go round again at once if more arrived meanwhile.
        let mut q = link.queue.lock().expect("queue lock");
        if q.busy == Some(generation) {
            q.busy = None;
        }
        again = !q.msgs.is_empty() || !q.leftover.is_empty();
    }
}
