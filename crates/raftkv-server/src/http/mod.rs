//! The client API: HTTP/1.1 with axum, curl-first. Routes, the shared
//! state, and the one call every handler makes: send a request to the
//! driver and wait for its answer.
//!
//! A follower answers writes with a 307 redirect to the leader's client
//! address (see docs/SERVER.md for why a redirect and not a forward).

mod codec;
mod error;
mod kv;
mod members;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use raft_core::NodeId;
use raft_kv::{Answer, ClientRequest, Op, RequestBody};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

pub use codec::{encode_key, percent_decode, put_bytes, take_bytes, BadEncoding};
pub use error::{from_kv, ApiError, Redirect, RETRY_AFTER_SECS};
pub use members::from_admin_with;

use crate::driver::{Input, Reply};
use crate::members::Book;
use crate::metrics::Metrics;
use crate::status::StatusReport;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    me: NodeId,
    inbox: mpsc::Sender<Input>,
    peers: Book,
    closing: AtomicBool,
    max_body: usize,
    /// Bytes of keys and values in requests not yet answered: bounds what
    /// waits in the inbox and the service together.
    in_flight: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(
        me: NodeId,
        inbox: mpsc::Sender<Input>,
        peers: Book,
        max_body: usize,
        max_in_flight: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                me,
                inbox,
                peers,
                closing: AtomicBool::new(false),
                max_body,
                in_flight: Arc::new(Semaphore::new(max_in_flight)),
                metrics,
            }),
        }
    }

    /// The node's metrics (the binary protocol counts its answers there).
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// From now on every request is answered 503 (the node is stopping).
    pub fn close(&self) {
        self.inner.closing.store(true, Ordering::Relaxed);
    }

    /// The largest request body taken (HTTP), which also bounds a binary frame.
    pub(crate) fn max_body(&self) -> usize {
        self.inner.max_body
    }

    fn is_closing(&self) -> bool {
        self.inner.closing.load(Ordering::Relaxed)
    }

    /// Sends `body` to the driver and waits for the answer. A full inbox, or
    /// too many bytes in requests not yet answered, is "busy" at once; a
    /// driver gone is "unavailable".
    async fn call(&self, body: RequestBody, path_and_query: &str) -> Result<Answer, ApiError> {
        let mut pending = self.submit(body)?;
        let got = (&mut pending.rx).await;
        self.finish(got, path_and_query)
    }

    /// Hands `body` to the driver without waiting: the answer comes on
    /// the returned [`Pending`]. Refused at once ("busy", "unavailable")
    /// when it cannot be taken.
    pub(crate) fn submit(&self, body: RequestBody) -> Result<Pending, ApiError> {
        if self.inner.closing.load(Ordering::Relaxed) {
            return Err(stopping());
        }
        let bytes = u32::try_from(request_bytes(&body)).unwrap_or(u32::MAX);
        let busy = || ApiError::unavailable("busy", "too many requests waiting; retry");
        let permit = self
            .inner
            .in_flight
            .clone()
            .try_acquire_many_owned(bytes)
            .map_err(|_| busy())?;
        let (tx, rx) = oneshot::channel();
        let request = ClientRequest { id: 0, body };
        let input = Input::Client { request, reply: tx };
        match self.inner.inbox.try_send(input) {
            Ok(()) => Ok(Pending {
                rx,
                _permit: permit,
            }),
            Err(mpsc::error::TrySendError::Full(_)) => Err(busy()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(stopping()),
        }
    }

    /// Asks the driver for the node's status without waiting; "busy"
    /// when its inbox is full.
    pub(crate) fn submit_status(&self) -> Result<oneshot::Receiver<StatusReport>, ApiError> {
        let (tx, rx) = oneshot::channel();
        match self.inner.inbox.try_send(Input::Status(tx)) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::TrySendError::Full(_)) => Err(ApiError::unavailable(
                "busy",
                "too many requests waiting; retry",
            )),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(stopping()),
        }
    }

    /// The answer to a submitted request, or its error as the API gives it
    /// (a redirect to `path_and_query` on the leader for "not the leader").
    pub(crate) fn finish(
        &self,
        got: Result<Reply, oneshot::error::RecvError>,
        path_and_query: &str,
    ) -> Result<Answer, ApiError> {
        let reply = match got {
            Ok(Reply::Kv(reply)) => reply,
            Ok(Reply::NoSpace) => return Err(no_space()),
            // The driver dropped the request: it is stopping, or it rebuilt
            // its node after a full disk (a write may still commit).
            Err(_) if self.inner.closing.load(Ordering::Relaxed) => return Err(stopping()),
            Err(_) => {
                return Err(ApiError::unavailable(
                    "entry_lost",
                    "the node reopened its log after a storage error; the outcome is unknown; retry (safe with a session)",
                ))
            }
        };
        reply.result.map_err(|e| {
            let peers = self.inner.peers.read().expect("book lock").clone();
            let ctx = Redirect {
                me: self.inner.me,
                peers: &peers,
                path_and_query,
            };
            from_kv(e, &ctx)
        })
    }
}

/// A request handed to the driver: its answer, and the bytes it holds of
/// the in-flight budget until answered.
pub(crate) struct Pending {
    pub rx: oneshot::Receiver<Reply>,
    _permit: OwnedSemaphorePermit,
}

/// Bytes of keys and values a request carries.
fn request_bytes(body: &RequestBody) -> usize {
    let op = match body {
        RequestBody::Register => return 0,
        RequestBody::Write { op, .. } | RequestBody::PlainWrite { op } => op,
        RequestBody::Read { op, .. } => op,
    };
    op.key().len()
        + match op {
            Op::Put { value, .. } | Op::Append { value, .. } => value.len(),
            Op::Cas { expected, new, .. } => new.len() + expected.as_ref().map_or(0, Vec::len),
            Op::Get { .. } | Op::Delete { .. } | Op::Range { .. } => 0,
        }
}

/// 507: the leader refuses writes until its disk has room again.
fn no_space() -> ApiError {
    ApiError {
        retry_after: Some(RETRY_AFTER_SECS),
        ..ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "nospace",
            "the leader's disk is full: writes are refused until space is freed (reads still work)",
        )
    }
}

pub(crate) fn stopping() -> ApiError {
    ApiError::unavailable("unavailable", "the node is stopping or stopped")
}

/// The client API as one service: `PUT /v1/kv/{key}`, most of the load,
/// goes straight to its handler; everything else through the [`router`].
/// Every answer is counted by status code.
#[derive(Clone)]
pub(crate) struct Api {
    router: Router,
    state: AppState,
}

impl Api {
    pub fn new(state: AppState) -> Self {
        Api {
            router: router(state.clone()),
            state,
        }
    }
}

impl tower_service::Service<Request> for Api {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let state = self.state.clone();
        // The same handler the router has for this route, without routing
        // (a path match, a parameter map) and a middleware layer per write.
        if req.method() == Method::PUT && req.uri().path().starts_with("/v1/kv/") {
            return Box::pin(async move {
                let resp = kv::put_key(State(state.clone()), req).await.into_response();
                count(&state, &resp);
                Ok(resp)
            });
        }
        let answer = self.router.call(req);
        Box::pin(async move {
            let resp = answer.await?;
            count(&state, &resp);
            Ok(resp)
        })
    }
}

fn count(s: &AppState, resp: &Response) {
    let code = [("code", resp.status().as_u16())];
    s.inner.metrics.http_responses.get_or_create(&code).inc();
}

/// Every route of the client API (answers are counted by [`Api`]).
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/kv/{*key}",
            get(kv::get_key)
                .put(kv::put_key)
                .delete(kv::delete_key)
                .post(kv::post_key),
        )
        .route("/v1/kv", get(kv::list))
        .route("/v1/sessions", post(kv::open_session))
        .route("/v1/status", get(status))
        .route("/v1/members", get(members::list).post(members::change))
        .route("/v1/transfer-leader", post(members::transfer))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn status(State(s): State<AppState>) -> Result<Response, ApiError> {
    let (tx, rx) = oneshot::channel();
    s.inner
        .inbox
        .send(Input::Status(tx))
        .await
        .map_err(|_| stopping())?;
    let report = rx.await.map_err(|_| stopping())?;
    Ok(axum::Json(report).into_response())
}

async fn metrics(State(s): State<AppState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (
        [(header::CONTENT_TYPE, content_type)],
        s.inner.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
