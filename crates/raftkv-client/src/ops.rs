//! The key-value operations: requests built, answers decoded. Plain writes
//! are here; [`Session`] adds exactly-once writes over the same requests.

use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Map, Value};

use crate::client::{Client, Retry};
use crate::codec::{self, put_bytes, take_bytes};
use crate::http::{Call, Reply};
use crate::types::{CasOutcome, Consistency, Page};
use crate::Error;

/// `(session, seq)` of an exactly-once write; `None` for a plain write.
pub(crate) type Numbered = Option<(u64, u64)>;

fn key_path(key: &[u8], consistency: Option<Consistency>) -> String {
    let mut path = format!("/v1/kv/{}", codec::encode(key));
    if consistency == Some(Consistency::Stale) {
        path.push_str("?consistency=stale");
    }
    path
}

fn write_call(method: Method, path: String, body: Bytes, json: bool, n: Numbered) -> Call {
    Call {
        method,
        path,
        body,
        json,
        session: n,
    }
}

fn retry_of(n: Numbered) -> Retry {
    if n.is_some() {
        Retry::Always
    } else {
        Retry::IfRefused
    }
}

fn parse(reply: &Reply) -> Result<Value, Error> {
    serde_json::from_slice(&reply.body)
        .map_err(|e| Error::Protocol(format!("an answer that is not JSON ({e})")))
}

fn op_body(build: impl FnOnce(&mut Map<String, Value>)) -> Bytes {
    let mut map = Map::new();
    build(&mut map);
    Bytes::from(Value::Object(map).to_string())
}

impl Client {
    /// The value of `key` (`None`: absent), read with the client's
    /// configured consistency (linearizable by default).
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        self.get_with(key, self.config().consistency).await
    }

    /// The value of `key` read with the given consistency.
    pub async fn get_with(
        &self,
        key: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<Option<Bytes>, Error> {
        let call = Call {
            method: Method::GET,
            path: key_path(key.as_ref(), Some(consistency)),
            body: Bytes::new(),
            json: false,
            session: None,
        };
        let reply = self.run(&call, Retry::Always).await?;
        Ok((reply.status == 200).then_some(reply.body))
    }

    /// Up to `limit` pairs whose key starts with `prefix`, in key order
    /// (the server caps `limit` at 1,000).
    pub async fn list(&self, prefix: impl AsRef<[u8]>, limit: u32) -> Result<Page, Error> {
        let mut path = format!(
            "/v1/kv?prefix={}&limit={limit}",
            codec::encode(prefix.as_ref())
        );
        if self.config().consistency == Consistency::Stale {
            path.push_str("&consistency=stale");
        }
        let call = Call {
            method: Method::GET,
            path,
            body: Bytes::new(),
            json: true,
            session: None,
        };
        let v = parse(&self.run(&call, Retry::Always).await?)?;
        let items = v["pairs"]
            .as_array()
            .ok_or_else(|| Error::Protocol("a listing without \"pairs\"".into()))?;
        let mut pairs = Vec::with_capacity(items.len());
        for item in items {
            let missing = || Error::Protocol("a listed pair without key or value".into());
            let key = take_bytes(item, "key")?.ok_or_else(missing)?;
            let value = take_bytes(item, "value")?.ok_or_else(missing)?;
            pairs.push((key, value));
        }
        Ok(Page {
            pairs,
            more: v["more"].as_bool().unwrap_or(false),
        })
    }

    /// Sets `key` to `value`; returns the value it replaced. A plain write:
    /// retried only while nothing can have been applied, so a failure may
    /// be [`Error::OutcomeUnknown`]. Use a [`Session`] for exactly-once.
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
    ) -> Result<Option<Bytes>, Error> {
        self.put_n(key.as_ref(), value.into(), None).await
    }

    /// Removes `key`; returns the value it had. A plain write (see [`Client::put`]).
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        self.delete_n(key.as_ref(), None).await
    }

    /// Appends `value` to `key`'s value (absent counts as empty); returns
    /// the new length. A plain write (see [`Client::put`]).
    pub async fn append(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<u64, Error> {
        self.append_n(key.as_ref(), value.as_ref(), None).await
    }

    /// Sets `key` to `new` only if its value is `expected` (`None`: absent).
    /// A plain write (see [`Client::put`]).
    pub async fn cas(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: impl AsRef<[u8]>,
    ) -> Result<CasOutcome, Error> {
        self.cas_n(key.as_ref(), expected, new.as_ref(), None).await
    }

    /// Opens a session for exactly-once writes.
    pub async fn open_session(&self) -> Result<Session, Error> {
        let call = write_call(
            Method::POST,
            "/v1/sessions".into(),
            Bytes::new(),
            true,
            None,
        );
        // Opening twice only leaves an idle session to expire: retry freely.
        let v = parse(&self.run(&call, Retry::Always).await?)?;
        let id = v["session"]
            .as_u64()
            .ok_or_else(|| Error::Protocol("a session answer without \"session\"".into()))?;
        Ok(Session {
            client: self.clone(),
            id,
            next_seq: 1,
        })
    }

    pub(crate) async fn put_n(
        &self,
        key: &[u8],
        value: Bytes,
        n: Numbered,
    ) -> Result<Option<Bytes>, Error> {
        let call = write_call(Method::PUT, key_path(key, None), value, false, n);
        take_bytes(&parse(&self.run(&call, retry_of(n)).await?)?, "previous")
    }

    pub(crate) async fn delete_n(&self, key: &[u8], n: Numbered) -> Result<Option<Bytes>, Error> {
        let call = write_call(Method::DELETE, key_path(key, None), Bytes::new(), false, n);
        take_bytes(&parse(&self.run(&call, retry_of(n)).await?)?, "previous")
    }

    pub(crate) async fn append_n(
        &self,
        key: &[u8],
        value: &[u8],
        n: Numbered,
    ) -> Result<u64, Error> {
        let body = op_body(|m| {
            m.insert("op".into(), json!("append"));
            put_bytes(m, "value", value);
        });
        let call = write_call(Method::POST, key_path(key, None), body, true, n);
        parse(&self.run(&call, retry_of(n)).await?)?["len"]
            .as_u64()
            .ok_or_else(|| Error::Protocol("an append answer without \"len\"".into()))
    }

    pub(crate) async fn cas_n(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
        n: Numbered,
    ) -> Result<CasOutcome, Error> {
        let body = op_body(|m| {
            m.insert("op".into(), json!("cas"));
            if let Some(e) = expected {
                put_bytes(m, "expected", e);
            }
            put_bytes(m, "new", new);
        });
        let call = write_call(Method::POST, key_path(key, None), body, true, n);
        let v = parse(&self.run(&call, retry_of(n)).await?)?;
        let matched = v["matched"]
            .as_bool()
            .ok_or_else(|| Error::Protocol("a cas answer without \"matched\"".into()))?;
        Ok(CasOutcome {
            matched,
            previous: take_bytes(&v, "previous")?,
        })
    }
}

/// A session: writes through it are applied exactly once (Raft thesis
/// §6.3). Each write carries the session id and the next sequence number;
/// a retry after a lost answer carries the same number, and the cluster
/// answers it from its session table instead of applying it again. So
/// session writes are retried on every failure until the call's deadline.
///
/// One call at a time (`&mut self`): the server expects write n+1 only
/// after write n was answered. A session idle for an hour is forgotten
/// ([`Error::SessionExpired`]); open a new one.
#[derive(Debug)]
pub struct Session {
    client: Client,
    id: u64,
    next_seq: u64,
}

impl Session {
    /// The session id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client the session writes through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The next write's number (writes whose outcome stayed unknown used theirs up).
    fn number(&mut self) -> Numbered {
        let seq = self.next_seq;
        self.next_seq += 1;
        Some((self.id, seq))
    }

    /// [`Client::put`], exactly once.
    pub async fn put(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
    ) -> Result<Option<Bytes>, Error> {
        let n = self.number();
        self.client.put_n(key.as_ref(), value.into(), n).await
    }

    /// [`Client::delete`], exactly once.
    pub async fn delete(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        let n = self.number();
        self.client.delete_n(key.as_ref(), n).await
    }

    /// [`Client::append`], exactly once.
    pub async fn append(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<u64, Error> {
        let n = self.number();
        self.client.append_n(key.as_ref(), value.as_ref(), n).await
    }

    /// [`Client::cas`], exactly once.
    pub async fn cas(
        &mut self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: impl AsRef<[u8]>,
    ) -> Result<CasOutcome, Error> {
        let n = self.number();
        self.client
            .cas_n(key.as_ref(), expected, new.as_ref(), n)
            .await
    }
}
