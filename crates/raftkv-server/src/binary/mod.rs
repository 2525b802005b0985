//! The client port speaks two protocols: HTTP and raftkv's native binary
//! protocol (`raftkv_client::proto`, docs/PROTOCOL.md). They are told
//! apart by a connection's first byte: the binary preface starts with a
//! zero byte, which no HTTP request can. A binary connection is served
//! here ([`conn`]); any other goes on to the HTTP server, through
//! [`Split`], an axum listener fed by the accept loop.

mod conn;

use std::net::SocketAddr;
use std::time::Duration;

use raftkv_client::proto::MAGIC;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{warn, Instrument};

use crate::http::AppState;

/// Connections accepted but not yet taken by the HTTP server.
const HANDOFF: usize = 128;

/// The HTTP server's listener: the connections whose first byte is not
/// the binary preface's.
pub(crate) struct Split {
    rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for Split {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop stopped: so does the HTTP server, by its
            // own stop signal; until then nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// Starts the accept loop on the client port (bound at `addr`); HTTP
/// connections come out of the returned listener. Everything ends on `stop`;
/// the loop and every binary connection's task run on `tasks`, so the
/// server can wait for them to end.
pub(crate) fn split(
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    stop: CancellationToken,
    tasks: TaskTracker,
    span: tracing::Span,
) -> Split {
    let (tx, rx) = mpsc::channel(HANDOFF);
    let tracker = tasks.clone();
    let accept = async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.cancelled() => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pass, not spin.
                    warn!("accepting a client connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (tx, state, stop) = (tx.clone(), state.clone(), stop.clone());
            tracker.spawn(
                async move { classify(stream, peer, tx, state, stop).await }.in_current_span(),
            );
        }
    };
    tasks.spawn(accept.instrument(span));
    Split { rx, addr }
}

/// Waits for a connection's first byte (without taking it) and hands the
/// connection to the protocol it starts.
async fn classify(
    stream: TcpStream,
    peer: SocketAddr,
    http: mpsc::Sender<(TcpStream, SocketAddr)>,
    state: AppState,
    stop: CancellationToken,
) {
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        p = stream.peek(&mut first) => p,
        _ = stop.cancelled() => return,
    };
    match peeked {
        Ok(1..) if first[0] == MAGIC[0] => conn::serve(stream, state, stop).await,
        Ok(1..) => {
            tokio::select! {
                _ = http.send((stream, peer)) => {}
                _ = stop.cancelled() => {}
            }
        }
        // Closed before a byte, or failed.
        _ => {}
    }
}
