//! The binary client against fake nodes that answer a preface the client
//! must refuse: another version, or HTTP. Nothing is sent to them, so the
//! calls end "unavailable" (nothing applied), saying why.

use std::time::Duration;

use raftkv_client::proto;
use raftkv_client::{Client, ClientConfig, Error, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A node that reads a preface and answers `answer`, then keeps the
/// connection open without reading more.
async fn fake_node(answer: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut p = [0u8; proto::PREFACE_LEN];
            if s.read_exact(&mut p).await.is_ok() && s.write_all(answer).await.is_ok() {
                held.push(s);
            }
        }
    });
    addr
}

async fn refused_by(answer: &'static [u8]) -> Error {
    let cfg = ClientConfig {
        protocol: Protocol::Binary,
        attempt_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let client = Client::with_config([fake_node(answer).await], cfg).unwrap();
    let err = client.put("k", "v").await.unwrap_err();
    assert!(!err.may_have_applied(), "{err}");
    err
}

#[tokio::test]
async fn a_node_of_another_version_is_refused() {
    const V9: [u8; proto::PREFACE_LEN] = *b"\0raftkv\x09";
    let err = refused_by(&V9).await;
    assert!(
        matches!(&err, Error::Unavailable { last, .. } if last.contains("version 9")),
        "{err}"
    );
}

#[tokio::test]
async fn an_http_only_node_is_refused() {
    let err = refused_by(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    assert!(
        matches!(&err, Error::Unavailable { last, .. } if last.contains("does not speak the binary protocol")),
        "{err}"
    );
}

/// The node's error about the connection (id 0) ends the calls on it, and
/// its reason reaches the caller; a plain write that was sent may have
/// been applied.
#[tokio::test]
async fn the_nodes_connection_error_reaches_the_caller() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Every connection: the prefaces, one request's header, the refusal.
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut p = [0u8; proto::PREFACE_LEN];
                s.read_exact(&mut p).await.unwrap();
                s.write_all(&proto::preface(proto::VERSION)).await.unwrap();
                let mut header = [0u8; proto::HEADER_LEN];
                s.read_exact(&mut header).await.unwrap();
                let mut out = bytes::BytesMut::new();
                let refusal = proto::ErrorBody {
                    status: 400,
                    kind: "bad_frame".into(),
                    message: "refused for the test".into(),
                    leader: None,
                };
                let refusal = proto::Response::Error(refusal);
                proto::put_frame(&mut out, proto::CONNECTION_ID, &refusal);
                let _ = s.write_all(&out).await;
            });
        }
    });
    let cfg = ClientConfig {
        protocol: Protocol::Binary,
        attempt_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let client = Client::with_config([addr], cfg).unwrap();
    let err = client.put("k", "v").await.unwrap_err();
    assert!(err.may_have_applied(), "{err}");
    assert!(err.to_string().contains("bad_frame"), "{err}");
}

/// A node that completes the prefaces and answers each get with "absent",
/// except gets of `slow`, which it never answers (and tells `got_slow`).
/// Returns its address and how many connections it accepted.
async fn selective_node(
    answer_any: bool,
    got_slow: tokio::sync::mpsc::UnboundedSender<()>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let got_slow = got_slow.clone();
            tokio::spawn(async move {
                let mut p = [0u8; proto::PREFACE_LEN];
                s.read_exact(&mut p).await.unwrap();
                s.write_all(&proto::preface(proto::VERSION)).await.unwrap();
                let mut buf = bytes::BytesMut::new();
                while s.read_buf(&mut buf).await.is_ok_and(|n| n > 0) {
                    while let Ok(Some(frame)) = proto::take_frame(&mut buf, 1 << 20) {
                        let req: proto::Request = proto::decode(&frame).unwrap();
                        let slow =
                            matches!(&req, proto::Request::Get { key, .. } if &key[..] == b"slow");
                        if slow {
                            let _ = got_slow.send(());
                        }
                        if slow || !answer_any {
                            continue;
                        }
                        let mut out = bytes::BytesMut::new();
                        proto::put_frame(&mut out, frame.id, &proto::Response::Value(None));
                        s.write_all(&out).await.unwrap();
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn one_attempt(timeout: Duration) -> ClientConfig {
    ClientConfig {
        protocol: Protocol::Binary,
        attempt_timeout: timeout,
        call_timeout: timeout,
        ..ClientConfig::default()
    }
}

/// A call that times out on a connection that brought nothing since it was
/// made (a dead node, a half-open socket) drops that connection: the next
/// call opens a new one instead of waiting on the same silence.
#[tokio::test]
async fn a_silent_connection_is_dropped_when_a_call_times_out() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let (addr, accepted) = selective_node(false, tx).await;
    let client = Client::with_config([addr], one_attempt(Duration::from_millis(200))).unwrap();
    for _ in 0..2 {
        let err = client.get("k").await.unwrap_err();
        assert!(err.to_string().contains("no answer"), "{err}");
    }
    // (A call may try more than once within its timeout: at least one
    // connection per call.)
    let opened = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        opened >= 2,
        "the silent connection was kept: {opened} opened"
    );
}

/// A connection that goes on answering other calls is kept when one call
/// times out: the node is alive, only that request is slow.
#[tokio::test]
async fn a_connection_that_answers_other_calls_is_kept() {
    let (tx, mut got_slow) = tokio::sync::mpsc::unbounded_channel();
    let (addr, accepted) = selective_node(true, tx).await;
    let client = Client::with_config([addr], one_attempt(Duration::from_secs(1))).unwrap();
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { client.get("slow").await })
    };
    got_slow
        .recv()
        .await
        .expect("the slow request reached the node");
    assert_eq!(client.get("fast").await.unwrap(), None);
    assert!(slow.await.unwrap().is_err(), "never answered");
    assert_eq!(client.get("fast").await.unwrap(), None);
    let opened = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(opened, 1, "one connection throughout");
}
