//! One HTTP exchange with one node, over pooled keep-alive connections.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::Attempt;

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

/// A pooled HTTP/1.1 client (`TCP_NODELAY`); clones share the pool.
#[derive(Clone, Debug)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Http {
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Http { client, timeout }
    }

    /// Sends `call` to node `endpoint` (`host:port`). A failure to connect
    /// is [`Attempt::Refused`] (nothing was sent); any later failure is
    /// [`Attempt::Unknown`].
    pub async fn send(&self, endpoint: &str, call: &Call) -> Result<Reply, Attempt> {
        let url = format!("http://{endpoint}{}", call.path);
        let mut req = Request::builder().method(call.method.clone()).uri(&url);
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
        let req = req
            .body(Full::new(call.body.clone()))
            .map_err(|e| Attempt::Refused(format!("{url}: {e}")))?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                let msg = format!("{endpoint}: {}", chain(&e));
                if e.is_connect() {
                    Attempt::Refused(msg)
                } else {
                    Attempt::Unknown(msg)
                }
            })?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| Attempt::Unknown(format!("{endpoint}: reading the answer: {e}")))?
                .to_bytes();
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
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(Attempt::Unknown(format!(
                "{endpoint}: no answer within {:?}",
                self.timeout
            ))),
        }
    }
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
