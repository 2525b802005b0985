//! The binary protocol's codec: every request and answer round-trips
//! through a frame, frames cut anywhere wait for the rest, and random
//! bytes never panic the decoder (they decode, wait, or are refused).

use bytes::{BufMut, Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use raftkv_client::proto::{
    self, ErrorBody, FrameError, Leader, Numbered, Peer, ReadConsistency, Request, Response, Status,
};

fn blob() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn consistency() -> impl Strategy<Value = ReadConsistency> {
    prop_oneof![
        Just(ReadConsistency::Linearizable),
        Just(ReadConsistency::Stale)
    ]
}

fn numbered() -> impl Strategy<Value = Option<Numbered>> {
    option::of((any::<u64>(), any::<u64>()).prop_map(|(session, seq)| Numbered { session, seq }))
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (blob(), consistency()).prop_map(|(key, consistency)| Request::Get { key, consistency }),
        (blob(), any::<u32>(), consistency()).prop_map(|(prefix, limit, consistency)| {
            Request::List {
                prefix,
                limit,
                consistency,
            }
        }),
        (blob(), blob(), numbered()).prop_map(|(key, value, session)| Request::Put {
            key,
            value,
            session
        }),
        (blob(), numbered()).prop_map(|(key, session)| Request::Delete { key, session }),
        (blob(), blob(), numbered()).prop_map(|(key, value, session)| Request::Append {
            key,
            value,
            session
        }),
        (blob(), option::of(blob()), blob(), numbered()).prop_map(
            |(key, expected, new, session)| Request::Cas {
                key,
                expected,
                new,
                session
            }
        ),
        Just(Request::OpenSession),
        Just(Request::Status),
    ]
}

fn leader() -> impl Strategy<Value = Option<Leader>> {
    option::of((any::<u64>(), text()).prop_map(|(id, client)| Leader { id, client }))
}

fn status() -> impl Strategy<Value = Status> {
    let peer = (
        any::<u64>(),
        text(),
        any::<bool>(),
        option::of(any::<u64>()),
    )
        .prop_map(|(id, addr, connected, match_index)| Peer {
            id,
            raft: addr.clone(),
            client: addr,
            connected,
            match_index,
        });
    (
        any::<[u64; 7]>(),
        text(),
        leader(),
        any::<bool>(),
        vec(peer, 0..4),
    )
        .prop_map(|(n, role, leader, no_space, peers)| Status {
            id: n[0],
            cluster_id: role.clone(),
            role,
            term: n[1],
            leader,
            commit: n[2],
            applied: n[3],
            last_index: n[4],
            snapshot_index: n[5],
            pending_requests: n[6],
            no_space,
            peers,
        })
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        option::of(blob()).prop_map(Response::Value),
        (vec((blob(), blob()), 0..5), any::<bool>())
            .prop_map(|(pairs, more)| Response::Page { pairs, more }),
        option::of(blob()).prop_map(Response::Replaced),
        any::<u64>().prop_map(|len| Response::Appended { len }),
        (any::<bool>(), option::of(blob()))
            .prop_map(|(matched, previous)| Response::Cas { matched, previous }),
        any::<u64>().prop_map(|id| Response::Session { id }),
        status().prop_map(Response::Status),
        (any::<u16>(), text(), text(), leader()).prop_map(|(status, kind, message, leader)| {
            Response::Error(ErrorBody {
                status,
                kind,
                message,
                leader,
            })
        }),
    ]
}

/// Takes every frame from `buf`, decoding each as `T`, until more bytes
/// are needed or something is refused.
fn drain<T: serde::de::DeserializeOwned>(buf: &mut BytesMut, max: usize) -> Vec<(u64, T)> {
    let mut out = Vec::new();
    while let Ok(Some(f)) = proto::take_frame(buf, max) {
        match proto::decode::<T>(&f) {
            Ok(m) => out.push((f.id, m)),
            Err(FrameError::BadBody { id, .. }) => assert_eq!(id, f.id),
            Err(e) => panic!("decode gave {e}"),
        }
    }
    out
}

proptest! {
    #[test]
    fn requests_round_trip(reqs in vec(request(), 1..8), cut in any::<prop::sample::Index>()) {
        let mut wire = BytesMut::new();
        for (i, r) in reqs.iter().enumerate() {
            proto::put_frame(&mut wire, i as u64 + 1, r);
        }
        // Cut anywhere: the first part yields only whole frames, the rest
        // completes them.
        let at = cut.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..at]);
        let mut got = drain::<Request>(&mut buf, 1 << 20);
        buf.put_slice(&wire[at..]);
        got.extend(drain::<Request>(&mut buf, 1 << 20));
        prop_assert!(buf.is_empty());
        let want: Vec<(u64, Request)> =
            reqs.into_iter().enumerate().map(|(i, r)| (i as u64 + 1, r)).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn responses_round_trip(resp in response(), id in any::<u64>()) {
        let mut buf = BytesMut::new();
        proto::put_frame(&mut buf, id, &resp);
        let f = proto::take_frame(&mut buf, proto::MAX_ANSWER_FRAME).unwrap().unwrap();
        prop_assert_eq!(f.id, id);
        prop_assert_eq!(proto::decode::<Response>(&f).unwrap(), resp);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in vec(any::<u8>(), 0..512), max in 0usize..600) {
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = drain::<Request>(&mut buf, max);
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = drain::<Response>(&mut buf, max);
        if bytes.len() >= proto::PREFACE_LEN {
            let p: [u8; proto::PREFACE_LEN] = bytes[..proto::PREFACE_LEN].try_into().unwrap();
            let _ = proto::check_preface(&p);
        }
    }

    #[test]
    fn random_bodies_never_panic_the_decoder(body in vec(any::<u8>(), 0..256), id in any::<u64>()) {
        // A well-framed body of random bytes: decoded or refused, naming its id.
        let f = proto::RawFrame { id, body: Bytes::from(body) };
        for e in [proto::decode::<Request>(&f).err(), proto::decode::<Response>(&f).err()]
            .into_iter()
            .flatten()
        {
            let named = matches!(e, FrameError::BadBody { id: i, .. } if i == id);
            prop_assert!(named, "{}", e);
        }
    }
}

proptest! {
    /// The limit counts the length field's bytes (id and body): a frame
    /// of exactly `max` is taken, one byte more is refused before its
    /// bytes arrive, and nothing is allocated for it.
    #[test]
    fn a_frame_of_the_limit_is_taken_and_one_past_it_refused(body in vec(any::<u8>(), 0..300)) {
        let mut wire = BytesMut::new();
        proto::put_frame(&mut wire, 7, &Request::Get {
            key: Bytes::from(body),
            consistency: ReadConsistency::Stale,
        });
        let len = wire.len() - 4;
        let mut exact = wire.clone();
        let f = proto::take_frame(&mut exact, len).unwrap().unwrap();
        prop_assert_eq!(f.id, 7);
        prop_assert!(proto::decode::<Request>(&f).is_ok());
        // Only the header of a frame past the limit: refused at once.
        let mut header = BytesMut::from(&wire[..4]);
        let refused = proto::take_frame(&mut header, len - 1);
        prop_assert_eq!(refused, Err(FrameError::TooLarge { len: len as u64, max: len - 1 }));
        prop_assert!(header.capacity() < len);
    }
}
