//! One HTTP exchange with one node, over keep-alive connections kept in a
//! small pool per node.
//!
//! Each connection is hyper's HTTP/1.1 client connection (`TCP_NODELAY`);
//! its I/O runs in a task of its own. A call takes an idle connection (or
//! opens one), sends, reads the whole answer, and puts the connection back
//! itself: unlike hyper-util's pooled client, nothing is spawned per call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, HOST, LOCATION};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::Attempt;

/// An idle connection older than this is closed instead of reused.
const IDLE_FOR: Duration = Duration::from_secs(30);

/// Header naming a write's session.
pub const SESSION_HEADER: &str = "raftkv-session";
/// Header numbering a write within its session.
pub const SEQ_HEADER: &str = "raftkv-seq";

/// A request, before it is sent to some node.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    /// Path and query, already encoded.
    pub path: String,
    pub body: Bytes,
    pub json: bool,
    /// `(session, seq)` of an exactly-once write.
    pub session: Option<(u64, u64)>,
}

/// An answer, body read in full.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `error` and `message` of an error answer.
    pub fn error(&self) -> (String, String) {
        let v = self.json();
        let kind = v["error"].as_str().unwrap_or("unknown").to_string();
        let message = v["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned());
        (kind, message)
    }
}

/// A pooled HTTP/1.1 client; clones share the pool.
#[derive(Clone)]
pub struct Http {
    pool: Arc<Mutex<HashMap<String, Vec<Idle>>>>,
    timeout: Duration,
}

/// A connection waiting for its next call.
struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Http {
    pub fn new(timeout: Duration) -> Self {
        Http {
            pool: Arc::default(),
            timeout,
        }
    }

    /// Sends `call` to node `endpoint` (`host:port`). A failure to connect
    /// is [`Attempt::Refused`] (nothing was sent); any later failure is
    /// [`Attempt::Unknown`].
    pub async fn send(&self, endpoint: &str, call: &Call) -> Result<Reply, Attempt> {
        match tokio::time::timeout(self.timeout, self.exchange(endpoint, call)).await {
            Ok(r) => r,
            Err(_) => Err(Attempt::Unknown(format!(
                "{endpoint}: no answer within {:?}",
                self.timeout
            ))),
        }
    }

    async fn exchange(&self, endpoint: &str, call: &Call) -> Result<Reply, Attempt> {
        let req = request(endpoint, call)?;
        let (mut sender, mut fresh) = match self.checkout(endpoint).await {
            Some(s) => (s, false),
            None => (connect(endpoint).await?, true),
        };
        let mut req = Some(req);
        let resp = loop {
            let Some(r) = req.take() else {
                unreachable!("a request is put back before each retry")
            };
            match sender.try_send_request(r).await {
                Ok(resp) => break resp,
                Err(mut e) => match e.take_message() {
                    // Never written: a kept connection the node had closed.
                    // Once more on a new one.
                    Some(r) if !fresh => {
                        req = Some(r);
                        sender = connect(endpoint).await?;
                        fresh = true;
                    }
                    Some(_) => {
                        let msg = chain(&e.into_error());
                        return Err(Attempt::Refused(format!("{endpoint}: {msg}")));
                    }
                    None => {
                        let msg = chain(&e.into_error());
                        return Err(Attempt::Unknown(format!("{endpoint}: {msg}")));
                    }
                },
            }
        };
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| Attempt::Unknown(format!("{endpoint}: reading the answer: {e}")))?
            .to_bytes();
        self.checkin(endpoint, sender);
        let location = parts
            .headers
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        Ok(Reply {
            status: parts.status.as_u16(),
            location,
            body,
        })
    }

    /// The most recently used idle connection to `endpoint` that is still
    /// open, ready for a request.
    async fn checkout(&self, endpoint: &str) -> Option<SendRequest<Full<Bytes>>> {
        loop {
            let idle = {
                let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                let list = pool.get_mut(endpoint)?;
                let now = Instant::now();
                list.retain(|c| !c.sender.is_closed() && now - c.since < IDLE_FOR);
                list.pop()?
            };
            let mut sender = idle.sender;
            // Ready at once unless the previous answer is still being
            // finished; an error means the node closed it.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn checkin(&self, endpoint: &str, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let idle = Idle {
            sender,
            since: Instant::now(),
        };
        match pool.get_mut(endpoint) {
            Some(list) => list.push(idle),
            None => {
                pool.insert(endpoint.to_string(), vec![idle]);
            }
        }
    }
}

/// The request for `call`, addressed to `endpoint`.
fn request(endpoint: &str, call: &Call) -> Result<Request<Full<Bytes>>, Attempt> {
    let mut req = Request::builder()
        .method(call.method.clone())
        .uri(call.path.as_str())
        .header(
            HOST,
            HeaderValue::from_str(endpoint)
                .map_err(|e| Attempt::Refused(format!("{endpoint}: {e}")))?,
        );
    if call.json {
        req = req
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json");
    }
    if let Some((session, seq)) = call.session {
        req = req
            .header(SESSION_HEADER, HeaderValue::from(session))
            .header(SEQ_HEADER, HeaderValue::from(seq));
    }
    req.body(Full::new(call.body.clone()))
        .map_err(|e| Attempt::Refused(format!("{endpoint}{}: {e}", call.path)))
}

/// A new connection to `endpoint`; its I/O runs in a task of its own until
/// either side closes it. Nothing is sent yet, so failures are refusals.
async fn connect(endpoint: &str) -> Result<SendRequest<Full<Bytes>>, Attempt> {
    let refused = |e: &dyn std::error::Error| Attempt::Refused(format!("{endpoint}: {}", chain(e)));
    let stream = TcpStream::connect(endpoint)
        .await
        .map_err(|e| refused(&e))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| refused(&e))?;
    tokio::spawn(async move {
        // Ends when either side closes; the next checkout notices.
        let _ = conn.await;
    });
    Ok(sender)
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
