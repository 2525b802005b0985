//! A fault-injecting TCP proxy for one direction of one pair of nodes.
//!
//! Node `from` reaches node `to`'s Raft port through its own proxy (its
//! `--peers` list names the proxy's address for `to`). A link is open,
//! *stalled* (bytes wait in the proxy and flow again, late, when the link
//! opens: a long delay) or *severed* (its connections are reset and new
//! ones are closed at once: a partition the nodes notice).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// What a link does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Open,
    Stalled,
    Severed,
}

/// One proxied direction, `from` → `to`.
pub struct Link {
    pub addr: String,
    state: watch::Sender<LinkState>,
    conns: Mutex<Vec<AbortHandle>>,
}

impl Link {
    /// Listens on a free port and forwards to `target`.
    pub async fn start(target: String) -> Arc<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = Arc::new(Link {
            addr: listener.local_addr().unwrap().to_string(),
            state: watch::channel(LinkState::Open).0,
            conns: Mutex::new(Vec::new()),
        });
        let l = link.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *l.state.borrow() == LinkState::Severed {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let rx = l.state.subscribe();
                let task = tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    // Either direction ending ends both.
                    tokio::select! {
                        _ = pump(ir, ow, rx.clone()) => {}
                        _ = pump(or, iw, rx) => {}
                    }
                });
                let mut conns = l.conns.lock().unwrap();
                conns.retain(|h| !h.is_finished());
                conns.push(task.abort_handle());
            }
        });
        link
    }

    /// Sets the link's state; severing resets its connections.
    pub fn set(&self, state: LinkState) {
        self.state.send_replace(state);
        if state == LinkState::Severed {
            for h in self.conns.lock().unwrap().drain(..) {
                h.abort();
            }
        }
    }
}

/// Copies bytes, holding them while the link is stalled.
async fn pump(mut r: OwnedReadHalf, mut w: OwnedWriteHalf, mut state: watch::Receiver<LinkState>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            match *state.borrow_and_update() {
                LinkState::Open => break,
                LinkState::Severed => return,
                LinkState::Stalled => {}
            }
            if state.changed().await.is_err() {
                return;
            }
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
