//! The native binary protocol between a client and a node: what travels on
//! a connection, and the framing. The server (`raftkv-server`) and this
//! client share this module, so both ends encode and decode alike.
//!
//! A connection to a node's client address starts with an 8-byte
//! **preface**: the magic [`MAGIC`] (`\0raftkv`, whose first byte no HTTP
//! request can start with, so the node tells the two protocols apart by
//! the first byte) and a version byte ([`VERSION`]). The node answers with
//! its own preface, naming the version it speaks. After that both sides
//! send **frames**:
//!
//! ```text
//! | length: u32, big-endian | request id: u64, big-endian | body: postcard |
//!   length = 8 + body bytes, at most the receiver's frame limit
//! ```
//!
//! The client numbers its requests (ids from 1), and may send many before
//! the first answer; the node answers each once, in the order they
//! complete, with the request's id. A request's body is a [`Request`], an
//! answer's a [`Response`] (postcard 1.x, whose format is stable, behind
//! the version of the preface). Id 0 is the node's, for an error about the
//! connection itself: a bad preface, an unknown version, a frame over the
//! limit or one that does not decode. The node sends that error frame
//! (where it can) and closes the connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The first seven bytes of a binary connection, from either side.
pub const MAGIC: [u8; 7] = *b"\0raftkv";
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Bytes of a preface: [`MAGIC`] and the version.
pub const PREFACE_LEN: usize = 8;
/// Bytes of a frame's header: the length and the request id.
pub const HEADER_LEN: usize = 12;
/// The largest answer a node sends (a listing past it is refused with
/// `answer_too_large`), and so the largest frame a client accepts.
pub const MAX_ANSWER_FRAME: usize = 64 << 20;
/// The request id of the node's errors about the connection itself.
pub const CONNECTION_ID: u64 = 0;

/// The preface announcing `version`.
pub fn preface(version: u8) -> [u8; PREFACE_LEN] {
    let mut p = [0u8; PREFACE_LEN];
    p[..MAGIC.len()].copy_from_slice(&MAGIC);
    p[MAGIC.len()] = version;
    p
}

/// Why a preface is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PrefaceError {
    /// The bytes are not [`MAGIC`]: not this protocol.
    #[error("not a raftkv binary preface")]
    BadMagic,
    /// The magic, with a version this side does not speak.
    #[error("protocol version {0} is not supported (this side speaks {VERSION})")]
    Version(u8),
}

/// Checks a preface; `Ok` with its version when it is [`VERSION`].
pub fn check_preface(p: &[u8; PREFACE_LEN]) -> Result<u8, PrefaceError> {
    if p[..MAGIC.len()] != MAGIC {
        return Err(PrefaceError::BadMagic);
    }
    match p[MAGIC.len()] {
        VERSION => Ok(VERSION),
        v => Err(PrefaceError::Version(v)),
    }
}

/// How fresh a read must be (the same choice as HTTP's `?consistency=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadConsistency {
    /// ReadIndex (Raft thesis §6.4), on any node.
    Linearizable,
    /// The node's applied state, at once.
    Stale,
}

/// An exactly-once write's session and sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Numbered {
    /// The session id.
    pub session: u64,
    /// The write's number within the session, from 1.
    pub seq: u64,
}

/// What a client asks. Writes without a [`Numbered`] are plain
/// (at-least-once), like HTTP writes without the session headers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A key's value: [`Response::Value`].
    Get {
        key: Bytes,
        consistency: ReadConsistency,
    },
    /// Up to `limit` pairs whose key starts with `prefix`: [`Response::Page`].
    List {
        prefix: Bytes,
        limit: u32,
        consistency: ReadConsistency,
    },
    /// Sets a key: [`Response::Replaced`].
    Put {
        key: Bytes,
        value: Bytes,
        session: Option<Numbered>,
    },
    /// Removes a key: [`Response::Replaced`].
    Delete {
        key: Bytes,
        session: Option<Numbered>,
    },
    /// Appends to a key's value: [`Response::Appended`].
    Append {
        key: Bytes,
        value: Bytes,
        session: Option<Numbered>,
    },
    /// Compare-and-swap (`expected: None`: only if absent): [`Response::Cas`].
    Cas {
        key: Bytes,
        expected: Option<Bytes>,
        new: Bytes,
        session: Option<Numbered>,
    },
    /// Opens a session for exactly-once writes: [`Response::Session`].
    OpenSession,
    /// The node's state, with the leader it knows: [`Response::Status`].
    Status,
}

impl Request {
    /// Whether only a leader answers it (a follower says "not leader").
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Request::Get { .. } | Request::List { .. } | Request::Status
        )
    }
}

/// What a node answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A get: the value (`None`: absent).
    Value(Option<Bytes>),
    /// A listing, in key order, and whether more keys with the prefix follow.
    Page {
        pairs: Vec<(Bytes, Bytes)>,
        more: bool,
    },
    /// A put or delete: the value replaced (`None`: was absent).
    Replaced(Option<Bytes>),
    /// An append: the length after it.
    Appended { len: u64 },
    /// A compare-and-swap: whether it matched, and the value before.
    Cas {
        matched: bool,
        previous: Option<Bytes>,
    },
    /// A session was opened.
    Session { id: u64 },
    /// The node's state.
    Status(Status),
    /// The request failed (or, with id 0, the connection).
    Error(ErrorBody),
}

/// A failure, as the HTTP API would answer it: the same status code and
/// `error` kind (`not_leader`, `busy`, `key_too_large`, ...; see
/// docs/SERVER.md), so both protocols fail alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The HTTP status code this error has on the HTTP API (307 for
    /// `not_leader`, 503, 413, ...).
    pub status: u16,
    /// The stable, machine-readable kind.
    pub kind: String,
    /// For people.
    pub message: String,
    /// The leader, when the node knows it: where a `not_leader` write goes.
    pub leader: Option<Leader>,
}

/// A leader, with the client address it serves on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    /// Its node id.
    pub id: u64,
    /// Its client address, `host:port`.
    pub client: String,
}

/// A node's state (what `GET /v1/status` answers, the fields a client uses).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node's id.
    pub id: u64,
    /// The cluster id.
    pub cluster_id: String,
    /// `follower`, `precandidate`, `candidate` or `leader`.
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of in its term.
    pub leader: Option<Leader>,
    /// Its commit index.
    pub commit: u64,
    /// Its last applied index.
    pub applied: u64,
    /// Its log's last index.
    pub last_index: u64,
    /// The index its latest snapshot covers (0: none).
    pub snapshot_index: u64,
    /// Client requests waiting on it.
    pub pending_requests: u64,
    /// Whether it refuses writes for lack of disk space.
    pub no_space: bool,
    /// The other members.
    pub peers: Vec<Peer>,
}

/// Another member, as a node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Its node id.
    pub id: u64,
    /// Its Raft address.
    pub raft: String,
    /// Its client address.
    pub client: String,
    /// Whether the peer connection is up.
    pub connected: bool,
    /// The leader's match index for it (on the leader only).
    pub match_index: Option<u64>,
}

/// Why a frame cannot be read. Each ends the connection.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The length prefix is past the receiver's limit.
    #[error("a frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: u64, max: usize },
    /// The length prefix cannot even hold the request id.
    #[error("a frame of {0} bytes is shorter than its request id")]
    TooShort(u32),
    /// The body does not decode as this version's message.
    #[error("request {id}: the body does not decode: {reason}")]
    BadBody { id: u64, reason: String },
}

/// One frame taken from a buffer: its id and its body's bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// The request id.
    pub id: u64,
    /// The postcard body.
    pub body: Bytes,
}

/// Takes the first whole frame off `buf`: `Ok(None)` while more bytes are
/// needed. A length over `max` (counted from the id on) is refused at
/// once, before its bytes arrive.
pub fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<RawFrame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len as u64 > max as u64 {
        return Err(FrameError::TooLarge {
            len: len.into(),
            max,
        });
    }
    if len < 8 {
        return Err(FrameError::TooShort(len));
    }
    if buf.len() < 4 + len as usize {
        buf.reserve(4 + len as usize - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let id = buf.get_u64();
    let body = buf.split_to(len as usize - 8).freeze();
    Ok(Some(RawFrame { id, body }))
}

/// Appends the frame of `msg` with `id` to `out`.
pub fn put_frame<T: Serialize>(out: &mut BytesMut, id: u64, msg: &T) {
    let start = out.len();
    out.put_u32(0);
    out.put_u64(id);
    // Writing into a growable buffer cannot fail.
    let _ = postcard::serialize_with_flavor::<T, _, ()>(msg, Tail(out));
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Postcard's output: the end of a frame buffer.
struct Tail<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for Tail<'_> {
    type Output = ();

    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        self.0.put_u8(b);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes a frame's body; trailing bytes are an error, not ignored.
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a RawFrame) -> Result<T, FrameError> {
    let bad = |reason: String| FrameError::BadBody {
        id: frame.id,
        reason,
    };
    match postcard::take_from_bytes(&frame.body) {
        Ok((msg, [])) => Ok(msg),
        Ok((_, rest)) => Err(bad(format!("{} bytes after the message", rest.len()))),
        Err(e) => Err(bad(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_and_split_input_waits() {
        let req = Request::Put {
            key: Bytes::from_static(b"k\0\xff"),
            value: Bytes::from(vec![7u8; 300]),
            session: Some(Numbered { session: 9, seq: 2 }),
        };
        let mut out = BytesMut::new();
        put_frame(&mut out, 42, &req);
        put_frame(&mut out, 43, &Request::Status);
        let whole = out.clone().freeze();
        // Byte by byte: nothing until a frame is whole.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in whole.iter() {
            buf.put_u8(*b);
            while let Some(f) = take_frame(&mut buf, 1 << 20).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, 42);
        assert_eq!(decode::<Request>(&got[0]).unwrap(), req);
        assert_eq!((got[1].id, decode(&got[1])), (43, Ok(Request::Status)));
        assert!(buf.is_empty());
    }

    #[test]
    fn limits_and_bad_bodies_are_errors() {
        let mut buf = BytesMut::from(&[0u8, 0, 1, 0][..]);
        assert_eq!(
            take_frame(&mut buf, 100),
            Err(FrameError::TooLarge { len: 256, max: 100 })
        );
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 1, 2, 3][..]);
        assert_eq!(take_frame(&mut buf, 100), Err(FrameError::TooShort(3)));
        let frame = RawFrame {
            id: 5,
            body: Bytes::from_static(&[200]),
        };
        assert!(matches!(
            decode::<Request>(&frame),
            Err(FrameError::BadBody { id: 5, .. })
        ));
        // A message followed by junk is refused too.
        let mut out = BytesMut::new();
        put_frame(&mut out, 1, &Request::Status);
        out[3] += 1;
        out.put_u8(0);
        let f = take_frame(&mut out, 100).unwrap().unwrap();
        assert!(decode::<Request>(&f).is_err());
    }

    #[test]
    fn prefaces() {
        assert_eq!(check_preface(&preface(VERSION)), Ok(VERSION));
        assert_eq!(check_preface(&preface(9)), Err(PrefaceError::Version(9)));
        assert_eq!(check_preface(b"GET / HT"), Err(PrefaceError::BadMagic));
        // No HTTP request starts with the magic's first byte.
        assert_eq!(MAGIC[0], 0);
    }
}
