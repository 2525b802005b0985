//! The peer wire format: length-delimited frames, each behind a version byte.
//!
//! ```text
//! frame  = length: u32 big-endian (bytes that follow) | body
//! body   = version: u8 (WIRE_VERSION) | kind: u8 | payload
//! kind 1   Hello    postcard(Hello)          first frame each way
//! kind 2   Refuse   postcard(String)         why a handshake was refused
//! kind 3   Raft     postcard(Message) ...    one or more raft-core messages
//! kind 4   Ping     postcard(u64)            sender's clock, microseconds
//! kind 5   Pong     postcard(u64)            the Ping's value, echoed
//! ```
//!
//! Postcard's format is stable since 1.0; the version byte lets a later
//! format be refused clearly instead of misread. A body that does not decode
//! is an error ([`WireError`]): the transport closes that connection, and
//! nothing of it reaches the node.

use bytes::{BufMut, BytesMut};
use raft_core::{Body, Message, NodeId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The wire format this code speaks.
pub const WIRE_VERSION: u8 = 1;
/// Bytes of the length prefix.
pub const LENGTH_BYTES: usize = 4;
/// Bytes of version and kind at the start of every body.
const BODY_HEADER: usize = 2;

const HELLO: u8 = 1;
const REFUSE: u8 = 2;
const RAFT: u8 = 3;
const PING: u8 = 4;
const PONG: u8 = 5;

/// The handshake: each side's first frame. The dialer sends its own; the
/// acceptor checks it and answers with its own (or a [`Frame::Refuse`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's cluster id.
    pub cluster_id: String,
    /// The sender's node id.
    pub from: NodeId,
    /// The node id the sender believes it is talking to.
    pub to: NodeId,
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The handshake.
    Hello(Hello),
    /// The handshake was refused, and why (for the dialer's log).
    Refuse(String),
    /// Raft messages, in the order they were sent.
    Raft(Vec<Message>),
    /// Measures the round trip; answered by `Pong` with the same value.
    Ping(u64),
    /// The answer to a `Ping`.
    Pong(u64),
}

/// Why a frame body was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    /// Fewer than the two header bytes.
    #[error("frame of {0} bytes is shorter than its header")]
    Short(usize),
    /// Another wire version.
    #[error("wire version {found} (this build speaks {WIRE_VERSION})")]
    Version { found: u8 },
    /// An unknown kind byte.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// The payload does not decode as its kind.
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    /// A Raft frame with no message in it.
    #[error("raft frame without messages")]
    Empty,
}

/// Decodes one frame body (the bytes after the length prefix).
pub fn decode(body: &[u8]) -> Result<Frame, WireError> {
    let [version, kind, payload @ ..] = body else {
        return Err(WireError::Short(body.len()));
    };
    if *version != WIRE_VERSION {
        return Err(WireError::Version { found: *version });
    }
    match *kind {
        HELLO => whole(payload, "hello").map(Frame::Hello),
        REFUSE => whole(payload, "refuse").map(Frame::Refuse),
        PING => whole(payload, "ping").map(Frame::Ping),
        PONG => whole(payload, "pong").map(Frame::Pong),
        RAFT => {
            let mut rest = payload;
            let mut msgs = Vec::new();
            while !rest.is_empty() {
                let (m, tail) = postcard::take_from_bytes::<Message>(rest)
                    .map_err(|_| WireError::Malformed("raft"))?;
                msgs.push(m);
                rest = tail;
            }
            if msgs.is_empty() {
                return Err(WireError::Empty);
            }
            Ok(Frame::Raft(msgs))
        }
        other => Err(WireError::Kind(other)),
    }
}

/// A payload that is exactly one `T`.
fn whole<'a, T: Deserialize<'a>>(payload: &'a [u8], what: &'static str) -> Result<T, WireError> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((v, [])) => Ok(v),
        _ => Err(WireError::Malformed(what)),
    }
}

/// Appends one whole frame (length prefix included) of `kind` holding `value`.
fn put_frame<T: Serialize>(out: &mut BytesMut, kind: u8, value: &T) {
    let start = out.len();
    out.put_u32(0);
    out.put_u8(WIRE_VERSION);
    out.put_u8(kind);
    let body = postcard::to_stdvec(value).expect("plain data always serialises");
    out.extend_from_slice(&body);
    finish(out, start);
}

/// Writes the length of the frame that starts at `start`.
fn finish(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start - LENGTH_BYTES) as u32;
    out[start..start + LENGTH_BYTES].copy_from_slice(&len.to_be_bytes());
}

/// Appends a handshake frame.
pub fn put_hello(out: &mut BytesMut, hello: &Hello) {
    put_frame(out, HELLO, hello);
}

/// Appends a refusal frame.
pub fn put_refuse(out: &mut BytesMut, reason: &str) {
    put_frame(out, REFUSE, &reason);
}

/// Appends a ping frame.
pub fn put_ping(out: &mut BytesMut, micros: u64) {
    put_frame(out, PING, &micros);
}

/// Appends a pong frame.
pub fn put_pong(out: &mut BytesMut, micros: u64) {
    put_frame(out, PONG, &micros);
}

/// What [`put_raft`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Packed {
    /// Frames written.
    pub frames: usize,
    /// Messages written.
    pub messages: usize,
    /// Messages dropped because one alone would not fit in a frame.
    pub too_large: usize,
}

/// Appends `msgs` as Raft frames, as many messages per frame as fit within
/// `max_frame` body bytes. A message that alone exceeds the limit is dropped
/// (counted in [`Packed::too_large`]): the receiver would refuse its frame.
pub fn put_raft(out: &mut BytesMut, msgs: &[Message], max_frame: usize) -> Packed {
    let mut packed = Packed::default();
    let mut frame: Option<usize> = None; // start of the open frame
    let mut scratch = Vec::new();
    for m in msgs {
        scratch.clear();
        scratch = postcard::to_extend(m, std::mem::take(&mut scratch))
            .expect("a message always serialises");
        if BODY_HEADER + scratch.len() > max_frame {
            packed.too_large += 1;
            continue;
        }
        if let Some(start) = frame {
            if out.len() - start - LENGTH_BYTES + scratch.len() > max_frame {
                finish(out, start);
                frame = None;
            }
        }
        if frame.is_none() {
            frame = Some(out.len());
            out.put_u32(0);
            out.put_u8(WIRE_VERSION);
            out.put_u8(RAFT);
            packed.frames += 1;
        }
        out.extend_from_slice(&scratch);
        packed.messages += 1;
    }
    if let Some(start) = frame {
        finish(out, start);
    }
    packed
}

/// An estimate of a message's encoded size, for queue bounds.
pub fn approx_size(m: &Message) -> u64 {
    let payload = match &m.body {
        Body::AppendEntries { entries, .. } => entries.iter().map(|e| e.size()).sum(),
        Body::InstallSnapshot { data, .. } => data.len() as u64,
        _ => 0,
    };
    payload + 48
}

#[cfg(test)]
mod tests {
    use raft_core::{AppendReply, Entry};

    use super::*;

    fn append(from: NodeId, n: usize, bytes: usize) -> Message {
        Message {
            from,
            to: 2,
            term: 3,
            body: Body::AppendEntries {
                prev_log_index: 0,
                prev_log_term: 0,
                entries: (1..=n as u64)
                    .map(|i| Entry::normal(i, 3, vec![i as u8; bytes]))
                    .collect(),
                leader_commit: 0,
            },
        }
    }

    /// Splits a buffer of whole frames into bodies.
    fn bodies(mut buf: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            out.push(buf[4..4 + len].to_vec());
            buf = &buf[4 + len..];
        }
        out
    }

    #[test]
    fn every_kind_round_trips() {
        let hello = Hello {
            cluster_id: "c".into(),
            from: 1,
            to: 2,
        };
        let mut buf = BytesMut::new();
        put_hello(&mut buf, &hello);
        put_refuse(&mut buf, "no");
        put_ping(&mut buf, 7);
        put_pong(&mut buf, 8);
        let reply = Message {
            from: 2,
            to: 1,
            term: 3,
            body: Body::AppendEntriesReply(AppendReply::Success { match_index: 4 }),
        };
        let msgs = vec![append(1, 3, 10), reply];
        put_raft(&mut buf, &msgs, 1 << 20);
        let frames: Vec<Frame> = bodies(&buf).iter().map(|b| decode(b).unwrap()).collect();
        assert_eq!(
            frames,
            vec![
                Frame::Hello(hello),
                Frame::Refuse("no".into()),
                Frame::Ping(7),
                Frame::Pong(8),
                Frame::Raft(msgs),
            ]
        );
    }

    #[test]
    fn batches_split_at_the_limit_and_oversized_messages_are_dropped() {
        let msgs: Vec<Message> = (0..10).map(|_| append(1, 1, 1000)).collect();
        let mut buf = BytesMut::new();
        let packed = put_raft(&mut buf, &msgs, 2500);
        assert_eq!(packed.messages, 10);
        assert_eq!(packed.frames, 5, "two messages of ~1 KB per 2.5 KB frame");
        let mut seen = Vec::new();
        for body in bodies(&buf) {
            assert!(body.len() <= 2500);
            match decode(&body).unwrap() {
                Frame::Raft(m) => seen.extend(m),
                f => panic!("{f:?}"),
            }
        }
        assert_eq!(seen, msgs);
        let mut buf = BytesMut::new();
        let big = [append(1, 1, 10), append(1, 1, 5000), append(1, 1, 10)];
        let packed = put_raft(&mut buf, &big, 2500);
        assert_eq!(
            (packed.messages, packed.too_large, packed.frames),
            (2, 1, 1)
        );
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert_eq!(decode(&[]), Err(WireError::Short(0)));
        assert_eq!(decode(&[WIRE_VERSION]), Err(WireError::Short(1)));
        assert_eq!(decode(&[9, HELLO]), Err(WireError::Version { found: 9 }));
        assert_eq!(decode(&[WIRE_VERSION, 77]), Err(WireError::Kind(77)));
        assert_eq!(decode(&[WIRE_VERSION, RAFT]), Err(WireError::Empty));
        assert_eq!(
            decode(&[WIRE_VERSION, HELLO, 0xff, 0xff]),
            Err(WireError::Malformed("hello"))
        );
        // A ping followed by a stray byte, and a truncated raft message.
        assert_eq!(
            decode(&[WIRE_VERSION, PING, 1, 0]),
            Err(WireError::Malformed("ping"))
        );
        let mut buf = BytesMut::new();
        put_raft(&mut buf, &[append(1, 2, 50)], 1 << 20);
        let body = &bodies(&buf)[0];
        for cut in 3..body.len() {
            assert_eq!(
                decode(&body[..cut]),
                Err(WireError::Malformed("raft")),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // A cheap deterministic generator: no test depends on its values.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..2000usize {
            let mut body = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                body.push(x as u8);
            }
            if len >= 2 {
                body[0] = WIRE_VERSION;
                body[1] = (x % 6) as u8;
            }
            let _ = decode(&body);
        }
    }
}
