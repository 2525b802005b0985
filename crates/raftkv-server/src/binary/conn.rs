//! One binary-protocol connection, served by its own task alone.
//!
//! The task reads what the socket has, takes every whole frame out of it
//! and hands each request to the driver (the same [`AppState::submit`]
//! the HTTP handlers use, so limits, back-pressure and errors are the
//! same); it keeps the answers to come in a `FuturesUnordered`, nothing
//! spawned per request. Whenever answers are ready it encodes all of them
//! and writes them in one write. A bad preface, a frame over the limit or
//! one that does not decode gets an error frame (id 0), and the
//! connection closes; the node goes on. A client that reads none of its
//! answers for [`WRITE_STALL`] (or [`STOP_GRACE`] once the node stops)
//! loses the connection, so it cannot hold the task or the shutdown.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use raft_kv::{Answer, Consistency, Op, OpResult, RequestBody};
use raftkv_client::proto::{self, ErrorBody, Leader, ReadConsistency, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::driver::Reply;
use crate::http::{stopping, ApiError, AppState, Pending};
use crate::status::StatusReport;

/// How long a client has to send its preface once its first byte came.
const PREFACE_WITHIN: Duration = Duration::from_secs(10);
/// Requests of one connection waiting for answers; past it the task stops
/// reading until some are answered (TCP pushes back on the client).
const MAX_IN_FLIGHT: usize = 4096;
/// Room in a request frame besides the body limit: the key, the header.
const FRAME_OVERHEAD: usize = 64 << 10;
/// A client that takes none of its answers' bytes for this long is gone or
/// stuck: its connection closes.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// Once the node stops, how long a client may take to read what is left.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Serves one connection whose first byte was the preface's.
pub(super) async fn serve(mut stream: TcpStream, state: AppState, stop: CancellationToken) {
    let mut theirs = [0u8; proto::PREFACE_LEN];
    match tokio::time::timeout(PREFACE_WITHIN, stream.read_exact(&mut theirs)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    let mut out = BytesMut::with_capacity(16 << 10);
    out.extend_from_slice(&proto::preface(proto::VERSION));
    if let Err(e) = proto::check_preface(&theirs) {
        let kind = match e {
            proto::PrefaceError::BadMagic => "bad_preface",
            proto::PrefaceError::Version(_) => "unsupported_version",
        };
        debug!("binary client refused: {e}");
        state.metrics().binary_protocol_errors.inc();
        put_error(&mut out, proto::CONNECTION_ID, 400, kind, e.to_string());
        let _ = tokio::time::timeout(STOP_GRACE, stream.write_all(&out)).await;
        return;
    }
    let max_frame = state.max_body() + FRAME_OVERHEAD;
    let (mut rd, mut wr) = stream.split();
    let mut inbuf = BytesMut::with_capacity(64 << 10);
    let mut waiting: FuturesUnordered<InFlight> = FuturesUnordered::new();
    // Bytes still to drop of a request refused for its size.
    let mut skip = 0u64;
    let mut reading = true;
    loop {
        if !out.is_empty() {
            if !write_out(&mut wr, &out, &stop).await {
                return;
            }
            out.clear();
        }
        if !reading && waiting.is_empty() {
            return;
        }
        if inbuf.capacity() - inbuf.len() < 4096 {
            inbuf.reserve(64 << 10);
        }
        tokio::select! {
            r = rd.read_buf(&mut inbuf), if reading && waiting.len() < MAX_IN_FLIGHT => match r {
                // The client is done sending: answer what it asked, then close.
                Ok(0) => reading = false,
                Ok(_) => {
                    if let Err(e) = take_all(&state, &mut inbuf, max_frame, &mut skip, &mut out, &mut waiting) {
                        debug!("binary client: {e}");
                        state.metrics().binary_protocol_errors.inc();
                        let (status, kind) = match e {
                            proto::FrameError::TooLarge { .. } => (413, "frame_too_large"),
                            _ => (400, "bad_frame"),
                        };
                        put_error(&mut out, proto::CONNECTION_ID, status, kind, e.to_string());
                        write_out(&mut wr, &out, &stop).await;
                        return;
                    }
                }
                Err(_) => return,
            },
            Some((id, done)) = waiting.next(), if !waiting.is_empty() => {
                put_answer(&state, &mut out, id, done);
                // Every other answer ready now goes in the same write.
                while let Some(Some((id, done))) = waiting.next().now_or_never() {
                    put_answer(&state, &mut out, id, done);
                }
            }
            _ = stop.cancelled(), if reading => reading = false,
        }
    }
}

/// Writes `out`; false when the connection failed, or the client took
/// none of it for [`WRITE_STALL`] ([`STOP_GRACE`] once `stop` is
/// cancelled): a client that stops reading holds its connection's task,
/// and with it the node's shutdown, no longer than that.
async fn write_out<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &[u8],
    stop: &CancellationToken,
) -> bool {
    let mut at = 0;
    while at < out.len() {
        let stopping = stop.is_cancelled();
        let limit = if stopping { STOP_GRACE } else { WRITE_STALL };
        let wrote = tokio::select! {
            w = tokio::time::timeout(limit, wr.write(&out[at..])) => w,
            // Nothing was written (a write is cancel-safe): go on with the
            // shorter limit.
            _ = stop.cancelled(), if !stopping => continue,
        };
        match wrote {
            Ok(Ok(n)) if n > 0 => at += n,
            _ => return false,
        }
    }
    true
}

/// Takes every whole frame out of `inbuf`: each request is handed to the
/// driver, or answered at once when refused at the door. A request over
/// the frame limit is refused by its own id (413, as HTTP refuses a body
/// over the limit) and its bytes dropped as they come, never buffered:
/// the other requests on the connection go on, and the client knows the
/// request was not taken.
fn take_all(
    state: &AppState,
    inbuf: &mut BytesMut,
    max_frame: usize,
    skip: &mut u64,
    out: &mut BytesMut,
    waiting: &mut FuturesUnordered<InFlight>,
) -> Result<(), proto::FrameError> {
    loop {
        if *skip > 0 {
            let n = (*skip).min(inbuf.len() as u64);
            inbuf.advance(n as usize);
            *skip -= n;
            if *skip > 0 {
                return Ok(());
            }
        }
        let frame = match proto::take_frame(inbuf, max_frame) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            // Its id comes next: wait for it.
            Err(proto::FrameError::TooLarge { .. }) if inbuf.len() < proto::HEADER_LEN => {
                return Ok(())
            }
            Err(proto::FrameError::TooLarge { len, max }) => {
                let id =
                    u64::from_be_bytes(inbuf[4..proto::HEADER_LEN].try_into().expect("8 bytes"));
                if id == proto::CONNECTION_ID {
                    return Err(proto::FrameError::TooLarge { len, max });
                }
                inbuf.advance(proto::HEADER_LEN);
                *skip = len.saturating_sub(8);
                let message = format!("the request is over the limit of {max} bytes");
                put_error(out, id, 413, "body_too_large", message);
                count(state, 413);
                continue;
            }
            Err(e) => return Err(e),
        };
        let id = frame.id;
        if id == proto::CONNECTION_ID {
            return Err(proto::FrameError::BadBody {
                id,
                reason: "request id 0 is the node's own".into(),
            });
        }
        let req: Request = proto::decode(&frame)?;
        let wait = match req {
            Request::Status => state.submit_status().map(Wait::Status),
            other => state.submit(body_of(other)).map(Wait::Kv),
        };
        match wait {
            Ok(wait) => waiting.push(InFlight { id, wait }),
            Err(e) => put_response(state, out, id, &error_response(e)),
        }
    }
}

/// The raft-kv request of a binary one (`Status` is not one).
fn body_of(req: Request) -> RequestBody {
    let read = |op, c| RequestBody::Read {
        op,
        consistency: match c {
            ReadConsistency::Linearizable => Consistency::Linearizable,
            ReadConsistency::Stale => Consistency::Stale,
        },
    };
    let write = |session: Option<proto::Numbered>, op| match session {
        Some(n) => RequestBody::Write {
            session: n.session,
            seq: n.seq,
            op,
        },
        None => RequestBody::PlainWrite { op },
    };
    match req {
        Request::Get { key, consistency } => read(Op::Get { key: key.into() }, consistency),
        Request::List {
            prefix,
            limit,
            consistency,
        } => read(
            Op::Range {
                prefix: prefix.into(),
                limit,
            },
            consistency,
        ),
        Request::Put {
            key,
            value,
            session,
        } => write(
            session,
            Op::Put {
                key: key.into(),
                value: value.into(),
            },
        ),
        Request::Delete { key, session } => write(session, Op::Delete { key: key.into() }),
        Request::Append {
            key,
            value,
            session,
        } => write(
            session,
            Op::Append {
                key: key.into(),
                value: value.into(),
            },
        ),
        Request::Cas {
            key,
            expected,
            new,
            session,
        } => write(
            session,
            Op::Cas {
                key: key.into(),
                expected: expected.map(Into::into),
                new: new.into(),
            },
        ),
        Request::OpenSession | Request::Status => RequestBody::Register,
    }
}

/// What a request waits on.
enum Wait {
    Kv(Pending),
    Status(oneshot::Receiver<StatusReport>),
}

/// How a wait ended.
enum Done {
    Kv(Result<Reply, oneshot::error::RecvError>),
    Status(Result<StatusReport, oneshot::error::RecvError>),
}

/// One request of the connection waiting for the driver's answer.
struct InFlight {
    id: u64,
    wait: Wait,
}

impl Future for InFlight {
    type Output = (u64, Done);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let done = match &mut this.wait {
            Wait::Kv(p) => Done::Kv(std::task::ready!(Pin::new(&mut p.rx).poll(cx))),
            Wait::Status(rx) => Done::Status(std::task::ready!(Pin::new(rx).poll(cx))),
        };
        Poll::Ready((this.id, done))
    }
}

fn put_answer(state: &AppState, out: &mut BytesMut, id: u64, done: Done) {
    let response = match done {
        Done::Kv(got) => match state.finish(got, "") {
            Ok(answer) => response_of(answer),
            Err(e) => error_response(e),
        },
        Done::Status(Ok(report)) => Response::Status(status_of(report)),
        Done::Status(Err(_)) => error_response(stopping()),
    };
    put_response(state, out, id, &response);
}

/// Appends an answer's frame, counted by its status code in the metrics;
/// one over [`proto::MAX_ANSWER_FRAME`] is replaced by an error.
fn put_response(state: &AppState, out: &mut BytesMut, id: u64, response: &Response) {
    let start = out.len();
    proto::put_frame(out, id, response);
    let too_large = out.len() - start > proto::MAX_ANSWER_FRAME;
    let code = match response {
        _ if too_large => 413,
        Response::Error(e) => e.status,
        _ => 200,
    };
    count(state, code);
    if too_large {
        out.truncate(start);
        let message = format!(
            "the answer is over the protocol's limit of {} bytes; ask for fewer pairs",
            proto::MAX_ANSWER_FRAME
        );
        put_error(out, id, 413, "answer_too_large", message);
    }
}

/// Counts an answer in the metrics, by the status code it carries.
fn count(state: &AppState, code: u16) {
    state
        .metrics()
        .binary_responses
        .get_or_create(&[("code", code)])
        .inc();
}

fn put_error(out: &mut BytesMut, id: u64, status: u16, kind: &str, message: String) {
    let body = ErrorBody {
        status,
        kind: kind.to_string(),
        message,
        leader: None,
    };
    proto::put_frame(out, id, &Response::Error(body));
}

fn response_of(answer: Answer) -> Response {
    let b = |v: Vec<u8>| v.into();
    match answer {
        Answer::Registered { session } => Response::Session { id: session },
        Answer::Op(OpResult::Value(v)) => Response::Value(v.map(b)),
        Answer::Op(OpResult::Replaced(v)) => Response::Replaced(v.map(b)),
        Answer::Op(OpResult::Appended { len }) => Response::Appended { len },
        Answer::Op(OpResult::Cas { matched, previous }) => Response::Cas {
            matched,
            previous: previous.map(b),
        },
        Answer::Op(OpResult::Range { pairs, more }) => Response::Page {
            pairs: pairs.into_iter().map(|(k, v)| (b(k), b(v))).collect(),
            more,
        },
    }
}

/// An error as the HTTP API would give it: its status code, kind and leader.
fn error_response(e: ApiError) -> Response {
    Response::Error(ErrorBody {
        status: e.status.as_u16(),
        kind: e.kind.to_string(),
        message: e.message,
        leader: e.leader.map(|l| Leader {
            id: l.id,
            client: l.client,
        }),
    })
}

fn status_of(r: StatusReport) -> proto::Status {
    proto::Status {
        id: r.id,
        cluster_id: r.cluster_id,
        role: r.role,
        term: r.term,
        leader: r.leader.map(|l| Leader {
            id: l.id,
            client: l.client,
        }),
        commit: r.commit,
        applied: r.applied,
        last_index: r.last_index,
        snapshot_index: r.snapshot_index,
        pending_requests: r.pending_requests as u64,
        no_space: r.no_space,
        peers: r
            .peers
            .into_iter()
            .map(|p| proto::Peer {
                id: p.id,
                raft: p.raft,
                client: p.client,
                connected: p.connected,
                match_index: p.match_index,
            })
            .collect(),
    }
}
