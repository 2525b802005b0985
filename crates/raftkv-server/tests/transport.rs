//! The peer port over real sockets: the handshake from both sides, batched
//! Raft frames, and bad input (garbage, truncated frames, a huge length
//! prefix, a wrong cluster or node id) closing that one connection while
//! the node keeps running and keeps its data.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::{free_port, metric, single, start_single, wait_for, Api};
use hyper::{Method, StatusCode};
use raft_core::{Body, Message};
use raftkv_server::wire::{self, Frame, Hello};
use raftkv_server::{parse_peers, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

fn hello(cluster: &str, from: u64, to: u64) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let h = Hello {
        cluster_id: cluster.into(),
        from,
        to,
    };
    wire::put_hello(&mut buf, &h);
    buf.to_vec()
}

fn raft(msgs: &[Message]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    wire::put_raft(&mut buf, msgs, 1 << 20);
    buf.to_vec()
}

fn pre_vote(from: u64, to: u64) -> Message {
    Message {
        from,
        to,
        term: 1,
        body: Body::RequestVote {
            last_log_index: 0,
            last_log_term: 0,
            pre_vote: true,
            transfer: false,
        },
    }
}

/// The next frame, or `None` when the other side closed the connection.
async fn read_frame(s: &mut TcpStream) -> Option<Frame> {
    let read = async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).await.ok()?;
        Some(wire::decode(&body).expect("the node sends well-formed frames"))
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a frame or a close in time")
}

/// Reads frames until the node closes the connection; returns a refusal's reason.
async fn until_closed(s: &mut TcpStream) -> Option<String> {
    let mut refused = None;
    while let Some(frame) = read_frame(s).await {
        if let Frame::Refuse(why) = frame {
            refused = Some(why);
        }
    }
    refused
}

/// The first Raft frame's messages, skipping pings and pongs.
async fn next_raft(s: &mut TcpStream) -> Vec<Message> {
    loop {
        match read_frame(s).await.expect("connection open") {
            Frame::Raft(msgs) => return msgs,
            Frame::Ping(_) | Frame::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn garbage_at_the_handshake_closes_the_connection_not_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = start_single(single(dir.path())).await;
    api.call(Method::PUT, "/v1/kv/before", &[], "kept").await;
    let mut garbage = vec![0u8; 64];
    let mut x = 7u32;
    for b in &mut garbage {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        *b = (x >> 16) as u8;
    }
    let cases: Vec<(&str, Vec<u8>, bool, Option<&str>)> = vec![
        ("random bytes", garbage, true, None),
        (
            "a huge length prefix",
            vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
            false,
            None,
        ),
        ("a truncated frame", vec![0, 0, 0, 20, 1, 1, 0], true, None),
        ("another wire version", vec![0, 0, 0, 2, 9, 1], false, None),
        (
            "a wrong cluster id",
            hello("other", 2, 1),
            false,
            Some("cluster id"),
        ),
        (
            "an unknown node",
            hello("raftkv", 9, 1),
            false,
            Some("not a member"),
        ),
        (
            "the wrong node",
            hello("raftkv", 2, 5),
            false,
            Some("this is node 1"),
        ),
    ];
    let n = cases.len();
    for (what, bytes, half_close, reason) in cases {
        let mut s = TcpStream::connect(server.raft_addr()).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        if half_close {
            s.shutdown().await.unwrap();
        }
        let refused = until_closed(&mut s).await;
        match reason {
            Some(r) => {
                let why = refused.unwrap_or_else(|| panic!("{what}: no refusal"));
                assert!(why.contains(r), "{what}: {why}");
            }
            None => assert_eq!(refused, None, "{what}"),
        }
    }
    // The node goes on, with its data.
    assert_eq!(&api.get("/v1/kv/before").await.body[..], b"kept");
    let r = api.call(Method::PUT, "/v1/kv/after", &[], "ok").await;
    assert_eq!(r.status, StatusCode::OK);
    let m = api.get("/metrics").await.text();
    assert_eq!(
        metric(&m, "raftkv_peer_protocol_errors_total"),
        n as f64,
        "{m}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_lower_id_dials_with_a_versioned_hello_and_redials_after_a_bad_frame() {
    let dir = tempfile::tempdir().unwrap();
    let p2 = free_port();
    let listener = TcpListener::bind(("127.0.0.1", p2)).await.unwrap();
    let peers = parse_peers(&format!(
        "1=127.0.0.1:0/127.0.0.1:0,2=127.0.0.1:{p2}/127.0.0.1:1"
    ))
    .unwrap();
    let server = Server::start(ServerConfig::new(1, peers, dir.path().into()))
        .await
        .unwrap();

    let mut open = None;
    for round in 0..2 {
        let (mut s, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .unwrap()
            .unwrap();
        let expected = Hello {
            cluster_id: "raftkv".into(),
            from: 1,
            to: 2,
        };
        assert_eq!(
            read_frame(&mut s).await,
            Some(Frame::Hello(expected)),
            "round {round}"
        );
        let mut buf = BytesMut::new();
        wire::put_hello(
            &mut buf,
            &Hello {
                cluster_id: "raftkv".into(),
                from: 2,
                to: 1,
            },
        );
        s.write_all(&buf).await.unwrap();
        // Node 1 campaigns: its PreVote request reaches us in a Raft frame.
        let msgs = next_raft(&mut s).await;
        let m = &msgs[0];
        assert_eq!((m.from, m.to), (1, 2));
        assert!(
            matches!(m.body, Body::RequestVote { pre_vote: true, .. }),
            "{m:?}"
        );
        if round == 0 {
            // A message claiming another sender closes the connection; node 1 redials.
            s.write_all(&raft(&[pre_vote(3, 1)])).await.unwrap();
            assert_eq!(until_closed(&mut s).await, None);
        }
        open = Some(s);
    }
    let api = Api::new(&server);
    let status = api.get("/v1/status").await.json();
    assert_eq!(status["peers"][0]["connected"], true, "{status}");
    drop(open);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_higher_id_accepts_answers_and_survives_bad_frames() {
    let dir = tempfile::tempdir().unwrap();
    let peers = parse_peers(&format!(
        "1=127.0.0.1:{}/127.0.0.1:1,2=127.0.0.1:0/127.0.0.1:0",
        free_port()
    ))
    .unwrap();
    let server = Server::start(ServerConfig::new(2, peers, dir.path().into()))
        .await
        .unwrap();
    let addr = server.raft_addr();
    let connect = || async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&hello("raftkv", 1, 2)).await.unwrap();
        let back = Hello {
            cluster_id: "raftkv".into(),
            from: 2,
            to: 1,
        };
        assert_eq!(read_frame(&mut s).await, Some(Frame::Hello(back)));
        s
    };
    let answers_pre_vote = |mut s: TcpStream| async move {
        s.write_all(&raft(&[pre_vote(1, 2)])).await.unwrap();
        let reply = next_raft(&mut s).await;
        assert_eq!((reply[0].from, reply[0].to), (2, 1));
        assert!(
            matches!(reply[0].body, Body::RequestVoteReply { pre_vote: true, .. }),
            "{reply:?}"
        );
    };
    answers_pre_vote(connect().await).await;

    let mut truncated = raft(&[pre_vote(1, 2)]);
    truncated.truncate(truncated.len() - 2);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "a frame over the limit",
            vec![0xff, 0xff, 0xff, 0xff],
            false,
        ),
        (
            "a frame that does not decode",
            vec![0, 0, 0, 3, wire::WIRE_VERSION, 3, 0xff],
            false,
        ),
        ("a truncated frame", truncated, true),
        (
            "a message from another node",
            raft(&[pre_vote(3, 2)]),
            false,
        ),
        ("a second hello", hello("raftkv", 1, 2), false),
    ];
    let n = cases.len();
    for (what, bytes, half_close) in cases {
        let mut s = connect().await;
        s.write_all(&bytes).await.unwrap();
        if half_close {
            s.shutdown().await.unwrap();
        }
        assert_eq!(until_closed(&mut s).await, None, "{what}");
    }
    // A dialer with a higher id, or from another cluster, is refused.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&hello("raftkv", 3, 2)).await.unwrap();
    assert!(until_closed(&mut s).await.unwrap().contains("not a member"));
    // Still answering.
    answers_pre_vote(connect().await).await;
    let api = Api::new(&server);
    let m = wait_for("the errors counted", || async {
        let m = api.get("/metrics").await.text();
        (metric(&m, "raftkv_peer_protocol_errors_total") >= (n + 1) as f64).then_some(m)
    })
    .await;
    assert!(
        metric(&m, "raftkv_peer_messages_received_total") >= 2.0,
        "{m}"
    );
    server.shutdown().await.unwrap();
}
