//! The key-value calls over HTTP: a [`Request`] of the binary protocol
//! rendered as its HTTP request, and the HTTP answer read back into the
//! [`Response`] the binary protocol would have given. So the operations
//! ([`crate::ops`]) are written once, in the binary protocol's terms.

use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Map, Value};

use crate::codec::{self, put_bytes, take_bytes};
use crate::http::{Call, Reply};
use crate::proto::{Numbered, ReadConsistency, Request, Response};
use crate::Error;

fn key_path(key: &[u8], consistency: Option<ReadConsistency>) -> String {
    let mut path = format!("/v1/kv/{}", codec::encode(key));
    if consistency == Some(ReadConsistency::Stale) {
        path.push_str("?consistency=stale");
    }
    path
}

fn call(method: Method, path: String, body: Bytes, json: bool, n: Option<Numbered>) -> Call {
    Call {
        method,
        path,
        body,
        json,
        session: n.map(|n| (n.session, n.seq)),
    }
}

fn op_body(build: impl FnOnce(&mut Map<String, Value>)) -> Bytes {
    let mut map = Map::new();
    build(&mut map);
    Bytes::from(Value::Object(map).to_string())
}

/// The HTTP request of `req`. (`Status` goes through `Client::status_of`.)
pub fn to_call(req: &Request) -> Call {
    match req {
        Request::Get { key, consistency } => call(
            Method::GET,
            key_path(key, Some(*consistency)),
            Bytes::new(),
            false,
            None,
        ),
        Request::List {
            prefix,
            limit,
            consistency,
        } => {
            let mut path = format!("/v1/kv?prefix={}&limit={limit}", codec::encode(prefix));
            if *consistency == ReadConsistency::Stale {
                path.push_str("&consistency=stale");
            }
            call(Method::GET, path, Bytes::new(), true, None)
        }
        Request::Put {
            key,
            value,
            session,
        } => call(
            Method::PUT,
            key_path(key, None),
            value.clone(),
            false,
            *session,
        ),
        Request::Delete { key, session } => call(
            Method::DELETE,
            key_path(key, None),
            Bytes::new(),
            false,
            *session,
        ),
        Request::Append {
            key,
            value,
            session,
        } => {
            let body = op_body(|m| {
                m.insert("op".into(), json!("append"));
                put_bytes(m, "value", value);
            });
            call(Method::POST, key_path(key, None), body, true, *session)
        }
        Request::Cas {
            key,
            expected,
            new,
            session,
        } => {
            let body = op_body(|m| {
                m.insert("op".into(), json!("cas"));
                if let Some(e) = expected {
                    put_bytes(m, "expected", e);
                }
                put_bytes(m, "new", new);
            });
            call(Method::POST, key_path(key, None), body, true, *session)
        }
        Request::OpenSession => call(
            Method::POST,
            "/v1/sessions".into(),
            Bytes::new(),
            true,
            None,
        ),
        Request::Status => call(Method::GET, "/v1/status".into(), Bytes::new(), true, None),
    }
}

fn parse(reply: &Reply) -> Result<Value, Error> {
    serde_json::from_slice(&reply.body)
        .map_err(|e| Error::Protocol(format!("an answer that is not JSON ({e})")))
}

fn missing(what: &str) -> Error {
    Error::Protocol(format!("an answer without {what:?}"))
}

/// The answer to `req` (a 2xx, or 404 `key_not_found` for a get), as the
/// binary protocol's response.
pub fn to_response(req: &Request, reply: Reply) -> Result<Response, Error> {
    match req {
        Request::Get { .. } => Ok(Response::Value((reply.status == 200).then_some(reply.body))),
        Request::List { .. } => {
            let v = parse(&reply)?;
            let items = v["pairs"].as_array().ok_or_else(|| missing("pairs"))?;
            let mut pairs = Vec::with_capacity(items.len());
            for item in items {
                let key = take_bytes(item, "key")?.ok_or_else(|| missing("key"))?;
                let value = take_bytes(item, "value")?.ok_or_else(|| missing("value"))?;
                pairs.push((key, value));
            }
            let more = v["more"].as_bool().unwrap_or(false);
            Ok(Response::Page { pairs, more })
        }
        Request::Put { .. } | Request::Delete { .. } => {
            Ok(Response::Replaced(take_bytes(&parse(&reply)?, "previous")?))
        }
        Request::Append { .. } => {
            let len = parse(&reply)?["len"]
                .as_u64()
                .ok_or_else(|| missing("len"))?;
            Ok(Response::Appended { len })
        }
        Request::Cas { .. } => {
            let v = parse(&reply)?;
            let matched = v["matched"].as_bool().ok_or_else(|| missing("matched"))?;
            let previous = take_bytes(&v, "previous")?;
            Ok(Response::Cas { matched, previous })
        }
        Request::OpenSession => {
            let id = parse(&reply)?["session"]
                .as_u64()
                .ok_or_else(|| missing("session"))?;
            Ok(Response::Session { id })
        }
        Request::Status => Err(Error::Protocol(
            "status is read through Client::status_of".into(),
        )),
    }
}
