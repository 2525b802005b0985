//! One exchange with one node over the binary protocol ([`crate::proto`]),
//! on a few connections per node shared by every call.
//!
//! A call numbers its request, appends the frame to its connection's
//! outgoing buffer and waits for the answer with that number. Each
//! connection has two tasks: a writer that hands everything buffered to
//! the socket in one write (calls made while a write is under way go out
//! together in the next), and a reader that decodes every whole frame a
//! read brings and hands each answer to its caller. Nothing is spawned per
//! call.
//!
//! When a connection ends, its waiting calls learn whether their request
//! can have reached the node: one never handed to the socket is
//! [`Attempt::Refused`] (safe to send again), any other
//! [`Attempt::Unknown`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

use crate::error::Attempt;
use crate::proto::{self, Request, Response};

/// Binary connections to the nodes; calls share them.
pub(crate) struct Mux {
    nodes: Mutex<HashMap<String, Arc<Node>>>,
    per_node: usize,
    timeout: Duration,
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux")
            .field("per_node", &self.per_node)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One node's connections.
#[derive(Default)]
struct Node {
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Held while a connection is being opened, so that calls arriving
    /// together open one, not one each.
    opening: tokio::sync::Mutex<()>,
    next: AtomicUsize,
}

/// One connection.
struct Conn {
    state: Mutex<State>,
    /// Wakes the writer: frames to send, or the end.
    wake: Notify,
    /// Stops the reader.
    stop: Notify,
}

#[derive(Default)]
struct State {
    /// Frames not yet handed to the socket.
    out: BytesMut,
    next_id: u64,
    /// The highest id handed to the socket: a request above it never left.
    sent_through: u64,
    waiting: HashMap<u64, oneshot::Sender<Response>>,
    /// Frames received so far: a call that times out with this unchanged
    /// since it was made heard nothing on the connection at all.
    heard: u64,
    /// Why the connection ended, once it has.
    closed: Option<String>,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Ends the connection: waiting calls are dropped (they then read
    /// `closed` and `sent_through`), both tasks stop.
    fn close(&self, why: String) {
        let waiting = {
            let mut s = self.lock();
            if s.closed.is_none() {
                s.closed = Some(why);
            }
            std::mem::take(&mut s.waiting)
        };
        drop(waiting);
        self.wake.notify_one();
        self.stop.notify_one();
    }
}

impl Mux {
    pub fn new(per_node: usize, timeout: Duration) -> Self {
        Mux {
            nodes: Mutex::default(),
            per_node: per_node.max(1),
            timeout,
        }
    }

    /// Sends `req` to node `endpoint` (`host:port`) and waits for its
    /// answer, at most the attempt timeout.
    ///
    /// A call that times out without the connection bringing anything at
    /// all since it was made closes that connection: the node (or the path
    /// to it) is presumed gone, and the next call opens a new one rather
    /// than wait on a dead socket. A connection that goes on bringing other
    /// answers stays: only that request is slow.
    pub async fn send(&self, endpoint: &str, req: &Request) -> Result<Response, Attempt> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let conn = match tokio::time::timeout_at(deadline, self.conn(endpoint)).await {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(Attempt::Refused(format!(
                    "{endpoint}: not connected within {:?}",
                    self.timeout
                )))
            }
        };
        let (tx, rx) = oneshot::channel();
        let (id, heard) = {
            let mut s = conn.lock();
            if let Some(why) = &s.closed {
                return Err(Attempt::Refused(format!("{endpoint}: {why}")));
            }
            s.next_id += 1;
            let id = s.next_id;
            proto::put_frame(&mut s.out, id, req);
            s.waiting.insert(id, tx);
            (id, s.heard)
        };
        conn.wake.notify_one();
        // Gone from `waiting` on a timeout too, by the guard.
        let guard = Forget { conn: &conn, id };
        let answer = tokio::time::timeout_at(deadline, rx).await;
        drop(guard);
        let Ok(answer) = answer else {
            if conn.lock().heard == heard {
                conn.close(format!("nothing heard for {:?}", self.timeout));
            }
            return Err(Attempt::Unknown(format!(
                "{endpoint}: no answer within {:?}",
                self.timeout
            )));
        };
        answer.map_err(|_| {
            let s = conn.lock();
            let why = s.closed.as_deref().unwrap_or("connection lost");
            if id > s.sent_through {
                Attempt::Refused(format!("{endpoint}: {why}"))
            } else {
                Attempt::Unknown(format!("{endpoint}: {why}"))
            }
        })
    }

    /// An open connection to `endpoint`, opening one while fewer than
    /// `per_node` are open.
    async fn conn(&self, endpoint: &str) -> Result<Arc<Conn>, Attempt> {
        let node = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            match nodes.get(endpoint) {
                Some(n) => n.clone(),
                None => nodes.entry(endpoint.to_string()).or_default().clone(),
            }
        };
        if let Some(c) = node.pick(self.per_node) {
            return Ok(c);
        }
        let _opening = node.opening.lock().await;
        if let Some(c) = node.pick(self.per_node) {
            return Ok(c);
        }
        let conn = connect(endpoint).await?;
        node.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn.clone());
        Ok(conn)
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        let nodes = self.nodes.get_mut().unwrap_or_else(|p| p.into_inner());
        for node in nodes.values() {
            for c in node.conns.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                c.close("the client was dropped".into());
            }
        }
    }
}

impl Node {
    /// The next open connection in turn, once `want` are open.
    fn pick(&self, want: usize) -> Option<Arc<Conn>> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|c| !c.is_closed());
        if conns.len() < want {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % conns.len();
        Some(conns[i].clone())
    }
}

/// Removes a call's entry when it stops waiting (answered, or timed out).
struct Forget<'a> {
    conn: &'a Conn,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.conn.lock().waiting.remove(&self.id);
    }
}

/// Opens a connection: TCP, the prefaces both ways, then its two tasks.
/// Nothing of a call was sent yet, so every failure is a refusal.
async fn connect(endpoint: &str) -> Result<Arc<Conn>, Attempt> {
    let refused = |what: String| Attempt::Refused(format!("{endpoint}: {what}"));
    let mut stream = TcpStream::connect(endpoint)
        .await
        .map_err(|e| refused(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(&proto::preface(proto::VERSION))
        .await
        .map_err(|e| refused(e.to_string()))?;
    let mut theirs = [0u8; proto::PREFACE_LEN];
    stream
        .read_exact(&mut theirs)
        .await
        .map_err(|e| refused(format!("no binary preface from the node ({e})")))?;
    match proto::check_preface(&theirs) {
        Ok(_) => {}
        Err(proto::PrefaceError::BadMagic) => return Err(refused(
            "the node does not speak the binary protocol (an HTTP-only server? use Protocol::Http)"
                .into(),
        )),
        Err(e) => return Err(refused(format!("the node: {e}"))),
    }
    let conn = Arc::new(Conn {
        state: Mutex::default(),
        wake: Notify::new(),
        stop: Notify::new(),
    });
    let (rd, wr) = stream.into_split();
    tokio::spawn(write_loop(conn.clone(), wr));
    tokio::spawn(read_loop(conn.clone(), rd));
    Ok(conn)
}

/// Hands everything buffered to the socket, one write per batch.
async fn write_loop(conn: Arc<Conn>, mut wr: OwnedWriteHalf) {
    loop {
        let batch = {
            let mut s = conn.lock();
            if s.closed.is_some() {
                return;
            }
            if s.out.is_empty() {
                None
            } else {
                s.sent_through = s.next_id;
                Some(s.out.split())
            }
        };
        match batch {
            None => conn.wake.notified().await,
            Some(bytes) => {
                if let Err(e) = wr.write_all(&bytes).await {
                    conn.close(format!("writing: {e}"));
                    return;
                }
            }
        }
    }
}

/// Decodes every whole frame each read brings; hands answers to callers.
async fn read_loop(conn: Arc<Conn>, mut rd: OwnedReadHalf) {
    let mut buf = BytesMut::with_capacity(64 << 10);
    let why = loop {
        let n = tokio::select! {
            n = rd.read_buf(&mut buf) => n,
            _ = conn.stop.notified() => return,
        };
        match n {
            Ok(0) => break "the node closed the connection".to_string(),
            Ok(_) => {}
            Err(e) => break format!("reading: {e}"),
        }
        if let Err(why) = deliver(&conn, &mut buf) {
            break why;
        }
    };
    conn.close(why);
}

/// Hands each whole frame in `buf` to its caller; `Err` ends the connection.
fn deliver(conn: &Conn, buf: &mut BytesMut) -> Result<(), String> {
    loop {
        let frame = match proto::take_frame(buf, proto::MAX_ANSWER_FRAME) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("a bad frame from the node: {e}")),
        };
        let answer: Response = proto::decode(&frame).map_err(|e| e.to_string())?;
        if frame.id == proto::CONNECTION_ID {
            return Err(match answer {
                Response::Error(e) => {
                    format!("the node closed the connection: {} ({})", e.message, e.kind)
                }
                other => format!("an unexpected message on the connection: {other:?}"),
            });
        }
        // A caller that gave up is no longer waiting: its answer is dropped.
        let waiting = {
            let mut s = conn.lock();
            s.heard += 1;
            s.waiting.remove(&frame.id)
        };
        if let Some(tx) = waiting {
            let _ = tx.send(answer);
        }
    }
}
