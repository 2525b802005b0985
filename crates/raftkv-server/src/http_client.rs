//! A small HTTP/1.1 client (pooled keep-alive connections, `TCP_NODELAY`)
//! for the cluster launcher, the tests and the throughput example: send a
//! request, optionally follow the 307 a follower answers writes with.
//!
//! It knows nothing of sessions, retries or leader discovery; the Rust
//! client crate is where those belong.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;

/// Most redirects [`HttpClient::send_following`] follows.
pub const MAX_REDIRECTS: usize = 5;

/// An answer, body read in full.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text, lossily.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request got no answer.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The URL or a header does not parse.
    #[error("bad request: {0}")]
    Bad(String),
    /// Connecting or exchanging failed.
    #[error("{0}")]
    Http(#[from] hyper_util::client::legacy::Error),
    /// Reading the body failed.
    #[error("reading the body: {0}")]
    Body(#[from] hyper::Error),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// More redirects than [`MAX_REDIRECTS`].
    #[error("too many redirects")]
    Redirects,
}

/// A pooled client. Cheap to clone (clones share the pool).
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// A client whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        HttpClient { client, timeout }
    }

    /// Sends one request.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, ClientError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ClientError::Bad(format!("{url}: {e}")))?;
        let mut req = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientError::Bad(e.to_string()))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| ClientError::Bad(e.to_string()))?;
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::Bad(e.to_string()))?;
        let exchange = async {
            let resp = self.client.request(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(ClientError::Timeout(self.timeout)))
    }

    /// Sends a request, following 307 and 308 redirects (with the same
    /// method, headers and body) as a follower answers writes.
    pub async fn send_following(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, ClientError> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let resp = self
                .send(method.clone(), &url, headers, body.clone())
                .await?;
            let redirect = matches!(
                resp.status,
                StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
            );
            match resp.headers.get(LOCATION).and_then(|l| l.to_str().ok()) {
                Some(location) if redirect => url = location.to_string(),
                _ => return Ok(resp),
            }
        }
        Err(ClientError::Redirects)
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<Response, ClientError> {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }
}
