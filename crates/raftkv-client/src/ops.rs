//! The key-value operations: each builds its [`Request`] and reads its
//! [`Response`], whichever protocol carries them. Plain writes are here;
//! [`Session`] adds exactly-once writes over the same requests.

use bytes::Bytes;

use crate::client::Client;
use crate::proto::{Numbered, ReadConsistency, Request, Response};
use crate::types::{CasOutcome, Consistency, Page};
use crate::Error;

/// `(session, seq)` of an exactly-once write; `None` for a plain write.
pub(crate) type Numbering = Option<Numbered>;

fn consistency(c: Consistency) -> ReadConsistency {
    match c {
        Consistency::Linearizable => ReadConsistency::Linearizable,
        Consistency::Stale => ReadConsistency::Stale,
    }
}

fn unexpected(what: &str, got: Response) -> Error {
    Error::Protocol(format!("{what} answered with {got:?}"))
}

fn bytes(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
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
        let req = Request::Get {
            key: bytes(key.as_ref()),
            consistency: self::consistency(consistency),
        };
        match self.kv(&req).await? {
            Response::Value(v) => Ok(v),
            other => Err(unexpected("a get", other)),
        }
    }

    /// Up to `limit` pairs whose key starts with `prefix`, in key order
    /// (the server caps `limit` at 1,000).
    pub async fn list(&self, prefix: impl AsRef<[u8]>, limit: u32) -> Result<Page, Error> {
        let req = Request::List {
            prefix: bytes(prefix.as_ref()),
            limit,
            consistency: consistency(self.config().consistency),
        };
        match self.kv(&req).await? {
            Response::Page { pairs, more } => Ok(Page { pairs, more }),
            other => Err(unexpected("a listing", other)),
        }
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
        // Opening twice only leaves an idle session to expire: retried freely.
        match self.kv(&Request::OpenSession).await? {
            Response::Session { id } => Ok(Session {
                client: self.clone(),
                id,
                next_seq: 1,
            }),
            other => Err(unexpected("opening a session", other)),
        }
    }

    pub(crate) async fn put_n(
        &self,
        key: &[u8],
        value: Bytes,
        session: Numbering,
    ) -> Result<Option<Bytes>, Error> {
        let req = Request::Put {
            key: bytes(key),
            value,
            session,
        };
        match self.kv(&req).await? {
            Response::Replaced(previous) => Ok(previous),
            other => Err(unexpected("a put", other)),
        }
    }

    pub(crate) async fn delete_n(
        &self,
        key: &[u8],
        session: Numbering,
    ) -> Result<Option<Bytes>, Error> {
        let req = Request::Delete {
            key: bytes(key),
            session,
        };
        match self.kv(&req).await? {
            Response::Replaced(previous) => Ok(previous),
            other => Err(unexpected("a delete", other)),
        }
    }

    pub(crate) async fn append_n(
        &self,
        key: &[u8],
        value: &[u8],
        session: Numbering,
    ) -> Result<u64, Error> {
        let req = Request::Append {
            key: bytes(key),
            value: bytes(value),
            session,
        };
        match self.kv(&req).await? {
            Response::Appended { len } => Ok(len),
            other => Err(unexpected("an append", other)),
        }
    }

    pub(crate) async fn cas_n(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
        session: Numbering,
    ) -> Result<CasOutcome, Error> {
        let req = Request::Cas {
            key: bytes(key),
            expected: expected.map(bytes),
            new: bytes(new),
            session,
        };
        match self.kv(&req).await? {
            Response::Cas { matched, previous } => Ok(CasOutcome { matched, previous }),
            other => Err(unexpected("a cas", other)),
        }
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
    fn number(&mut self) -> Numbering {
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(Numbered {
            session: self.id,
            seq,
        })
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
