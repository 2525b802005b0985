//! The key-value routes: one handler per operation, each turning the HTTP
//! request into a raft-kv request and the answer back into HTTP.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use raft_kv::{Answer, Consistency, Op, OpResult, RequestBody};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::codec::{percent_decode, put_bytes, query_pairs, take_bytes};
use super::{ApiError, AppState};

/// Header carrying the session id of an exactly-once write.
pub const SESSION_HEADER: &str = "raftkv-session";
/// Header carrying the write's sequence number within its session.
pub const SEQ_HEADER: &str = "raftkv-seq";
/// Pairs a list answers when no `limit` is given.
const DEFAULT_LIST_LIMIT: u32 = 100;
const KV_PREFIX: &str = "/v1/kv/";

/// What one request carries besides its body.
struct Parsed {
    key: Vec<u8>,
    consistency: Consistency,
    path_and_query: String,
    wants_json: bool,
}

fn parse(uri: &Uri, headers: &HeaderMap) -> Result<Parsed, ApiError> {
    let encoded = uri.path().strip_prefix(KV_PREFIX).unwrap_or_default();
    let key = percent_decode(encoded).map_err(|e| {
        ApiError::bad(
            "bad_key",
            format!("the key's percent-encoding is broken at byte {}", e.0),
        )
    })?;
    Ok(Parsed {
        key,
        consistency: consistency(uri)?,
        path_and_query: path_and_query(uri),
        wants_json: headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json")),
    })
}

fn path_and_query(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string())
}

/// `?consistency=linearizable|stale` (default linearizable).
fn consistency(uri: &Uri) -> Result<Consistency, ApiError> {
    let pairs = query(uri)?;
    match pairs.iter().find(|(n, _)| n == "consistency") {
        None => Ok(Consistency::Linearizable),
        Some((_, v)) if v == b"linearizable" => Ok(Consistency::Linearizable),
        Some((_, v)) if v == b"stale" => Ok(Consistency::Stale),
        Some(_) => Err(ApiError::bad(
            "bad_request",
            "consistency must be \"linearizable\" or \"stale\"",
        )),
    }
}

fn query(uri: &Uri) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    query_pairs(uri.query()).map_err(|e| {
        ApiError::bad(
            "bad_request",
            format!("the query's percent-encoding is broken at byte {}", e.0),
        )
    })
}

/// The body, refused with 413 past the limit.
async fn body(s: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = s.inner.max_body;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is over the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::bad(
            "bad_request",
            format!("reading the body: {e}"),
        )),
    }
}

/// A write with the session headers is exactly-once; without them, plain.
fn write(headers: &HeaderMap, op: Op) -> Result<RequestBody, ApiError> {
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        let Some(v) = headers.get(name) else {
            return Ok(None);
        };
        let n = v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok());
        n.map(Some)
            .ok_or_else(|| ApiError::bad("bad_header", format!("{name} must be a decimal number")))
    };
    match (number(SESSION_HEADER)?, number(SEQ_HEADER)?) {
        (Some(session), Some(seq)) if seq >= 1 => Ok(RequestBody::Write { session, seq, op }),
        (Some(_), Some(_)) => Err(ApiError::bad("bad_header", "sequence numbers start at 1")),
        (None, None) => Ok(RequestBody::PlainWrite { op }),
        _ => Err(ApiError::bad(
            "bad_header",
            format!("{SESSION_HEADER} and {SEQ_HEADER} go together"),
        )),
    }
}

fn unexpected(answer: Answer) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("unexpected answer {answer:?}"),
    )
}

fn object(build: impl FnOnce(&mut Map<String, Value>)) -> Response {
    let mut map = Map::new();
    build(&mut map);
    Json(Value::Object(map)).into_response()
}

/// `GET /v1/kv/{key}`: the raw value, or JSON on `Accept: application/json`.
pub(super) async fn get_key(State(s): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let p = parse(req.uri(), req.headers())?;
    let body = RequestBody::Read {
        op: Op::Get { key: p.key.clone() },
        consistency: p.consistency,
    };
    let value = match s.call(body, &p.path_and_query).await? {
        Answer::Op(OpResult::Value(Some(v))) => v,
        Answer::Op(OpResult::Value(None)) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "key_not_found",
                "no such key",
            ))
        }
        other => return Err(unexpected(other)),
    };
    if !p.wants_json {
        let ct = [(header::CONTENT_TYPE, "application/octet-stream")];
        return Ok((ct, value).into_response());
    }
    let consistency = match p.consistency {
        Consistency::Linearizable => "linearizable",
        Consistency::Stale => "stale",
    };
    Ok(object(|m| {
        put_bytes(m, "key", Some(&p.key));
        put_bytes(m, "value", Some(&value));
        m.insert("len".into(), json!(value.len()));
        m.insert("node".into(), json!(s.inner.me));
        m.insert("consistency".into(), json!(consistency));
    }))
}

/// `PUT /v1/kv/{key}`: the body is the value.
pub(super) async fn put_key(State(s): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, raw) = req.into_parts();
    let p = parse(&parts.uri, &parts.headers)?;
    let value = body(&s, &parts.headers, raw).await?.to_vec();
    let op = Op::Put { key: p.key, value };
    match s
        .call(write(&parts.headers, op)?, &p.path_and_query)
        .await?
    {
        Answer::Op(OpResult::Replaced(prev)) => {
            Ok(object(|m| put_bytes(m, "previous", prev.as_deref())))
        }
        other => Err(unexpected(other)),
    }
}

/// `DELETE /v1/kv/{key}`.
pub(super) async fn delete_key(
    State(s): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = parse(req.uri(), req.headers())?;
    let op = Op::Delete { key: p.key };
    match s.call(write(req.headers(), op)?, &p.path_and_query).await? {
        Answer::Op(OpResult::Replaced(prev)) => Ok(object(|m| {
            m.insert("deleted".into(), json!(prev.is_some()));
            put_bytes(m, "previous", prev.as_deref());
        })),
        other => Err(unexpected(other)),
    }
}

/// The JSON body of `POST /v1/kv/{key}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostOp {
    op: String,
    value: Option<String>,
    value_b64: Option<String>,
    expected: Option<String>,
    expected_b64: Option<String>,
    new: Option<String>,
    new_b64: Option<String>,
}

impl PostOp {
    fn into_op(self, key: Vec<u8>) -> Result<Op, String> {
        match self.op.as_str() {
            "append" => {
                let value = take_bytes("value", self.value, self.value_b64)?
                    .ok_or("append needs \"value\" or \"value_b64\"")?;
                Ok(Op::Append { key, value })
            }
            "cas" => {
                let expected = take_bytes("expected", self.expected, self.expected_b64)?;
                let new = take_bytes("new", self.new, self.new_b64)?
                    .ok_or("cas needs \"new\" or \"new_b64\"")?;
                Ok(Op::Cas { key, expected, new })
            }
            other => Err(format!(
                "unknown op {other:?} (expected \"append\" or \"cas\")"
            )),
        }
    }
}

/// `POST /v1/kv/{key}` with `{"op":"append",...}` or `{"op":"cas",...}`.
pub(super) async fn post_key(
    State(s): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, raw) = req.into_parts();
    let p = parse(&parts.uri, &parts.headers)?;
    let bytes = body(&s, &parts.headers, raw).await?;
    let post: PostOp = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad("bad_json", format!("malformed JSON body: {e}")))?;
    let op = post
        .into_op(p.key)
        .map_err(|e| ApiError::bad("bad_request", e))?;
    match s
        .call(write(&parts.headers, op)?, &p.path_and_query)
        .await?
    {
        Answer::Op(OpResult::Appended { len }) => Ok(object(|m| {
            m.insert("len".into(), json!(len));
        })),
        Answer::Op(OpResult::Cas { matched, previous }) => Ok(object(|m| {
            m.insert("matched".into(), json!(matched));
            put_bytes(m, "previous", previous.as_deref());
        })),
        other => Err(unexpected(other)),
    }
}

/// `GET /v1/kv?prefix=&limit=`: keys in order, with their values.
pub(super) async fn list(State(s): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let uri = req.uri();
    let pairs = query(uri)?;
    let find = |name: &str| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let prefix = find("prefix").cloned().unwrap_or_default();
    let limit = match find("limit") {
        None => DEFAULT_LIST_LIMIT,
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::bad("bad_request", "limit must be a number"))?,
    };
    let body = RequestBody::Read {
        op: Op::Range { prefix, limit },
        consistency: consistency(uri)?,
    };
    match s.call(body, &path_and_query(uri)).await? {
        Answer::Op(OpResult::Range { pairs, more }) => {
            let items: Vec<Value> = pairs
                .iter()
                .map(|(k, v)| {
                    let mut m = Map::new();
                    put_bytes(&mut m, "key", Some(k));
                    put_bytes(&mut m, "value", Some(v));
                    Value::Object(m)
                })
                .collect();
            Ok(Json(json!({ "pairs": items, "more": more })).into_response())
        }
        other => Err(unexpected(other)),
    }
}

/// `POST /v1/sessions`: opens a session for exactly-once writes.
pub(super) async fn open_session(
    State(s): State<AppState>,
    uri: Uri,
) -> Result<Response, ApiError> {
    match s.call(RequestBody::Register, &path_and_query(&uri)).await? {
        Answer::Registered { session } => {
            Ok((StatusCode::CREATED, Json(json!({ "session": session }))).into_response())
        }
        other => Err(unexpected(other)),
    }
}
