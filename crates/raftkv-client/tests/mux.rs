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
