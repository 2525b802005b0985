//! Bad input on real `raftkv server` processes, on both ports of every
//! node of a running cluster: random bytes, a truncated frame, a wrong
//! cluster id and a huge length prefix on the peer port; malformed JSON, a
//! body over the limit, a body that claims 10 GB, a bad key encoding and
//! bytes that are not HTTP on the client port. Each gets a clear error or
//! a closed connection; every node stays up, keeps serving, and loses
//! nothing that was acknowledged.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::Cluster;
use hyper::{Method, StatusCode};
use raftkv_server::parse_peers;
use raftkv_server::wire::{self, Hello};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// Sends `bytes` (then half-closes when `eof`) and reads until the node
/// closes the connection; what it sent back.
async fn send_raw(addr: &str, bytes: &[u8], eof: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The node may close before reading everything: a failed write is fine.
    let _ = s.write_all(bytes).await;
    if eof {
        let _ = s.shutdown().await;
    }
    let mut back = Vec::new();
    let read = tokio::time::timeout(WAIT, s.read_to_end(&mut back)).await;
    assert!(read.is_ok(), "{addr}: the connection was not closed");
    back
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_either_port_is_refused_and_the_cluster_loses_nothing() {
    let c = Cluster::start(3, &["--max-body-bytes", "65536"]);
    let (leader, _) = c.agreed_leader(&[1, 2, 3]).await;
    for i in 0..20 {
        c.put(leader, &format!("k{i}"), format!("v{i}").as_bytes())
            .await;
    }
    let peers = parse_peers(&c.peers).unwrap();
    let mut random = vec![0u8; 4096];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in &mut random {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }

    for (&id, addrs) in &peers {
        // The peer port.
        let other = if id == 1 { 2 } else { 1 };
        let mut truncated = hello("raftkv", other, id);
        truncated.truncate(truncated.len() - 3);
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("random bytes", random.clone(), true),
            ("a truncated frame", truncated, true),
            (
                "a huge length prefix",
                vec![0xff, 0xff, 0xff, 0xf0, 1, 2],
                false,
            ),
            ("a wrong cluster id", hello("another", other, id), false),
        ];
        for (what, bytes, eof) in cases {
            let back = send_raw(&addrs.raft, &bytes, eof).await;
            if what == "a wrong cluster id" {
                let text = String::from_utf8_lossy(&back);
                assert!(text.contains("cluster id"), "node {id}, {what}: {text:?}");
            }
        }

        // The client port.
        let json_cases: [(&str, &[u8], StatusCode, &str); 3] = [
            ("{\"op\":", b"{\"op\":", StatusCode::BAD_REQUEST, "bad_json"),
            ("not json", b"\xff\xfe", StatusCode::BAD_REQUEST, "bad_json"),
            (
                "a body over the limit",
                &[b'x'; 70_000],
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
            ),
        ];
        for (what, body, status, kind) in json_cases {
            let url = c.url(id, "/v1/kv/k0");
            let r = c
                .http
                .send(Method::POST, &url, &[], bytes::Bytes::copy_from_slice(body))
                .await
                .unwrap();
            assert_eq!(r.status, status, "node {id}, {what}: {}", r.text());
            assert_eq!(r.json()["error"], kind, "node {id}, {what}");
        }
        let r = c.get(id, "/v1/kv/bad%zz").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert_eq!(r.json()["error"], "bad_key");
        // A body that claims 10 GB: refused before it is read.
        let claim = format!(
            "PUT /v1/kv/k0 HTTP/1.1\r\nhost: {0}\r\ncontent-length: 10000000000\r\n\r\nxx",
            addrs.client
        );
        let back = send_raw(&addrs.client, claim.as_bytes(), false).await;
        let text = String::from_utf8_lossy(&back);
        assert!(text.starts_with("HTTP/1.1 413"), "node {id}: {text}");
        // Bytes that are not HTTP at all.
        let back = send_raw(&addrs.client, &random, true).await;
        let text = String::from_utf8_lossy(&back);
        assert!(
            back.is_empty() || text.starts_with("HTTP/1.1 400"),
            "node {id}: {text}"
        );
    }

    // Every node is up, serves, and has every write.
    let mut c = c;
    for id in 1..=3 {
        assert!(
            c.procs.get_mut(&id).unwrap().try_wait().unwrap().is_none(),
            "node {id} exited"
        );
    }
    c.put(2, "after", b"ok").await;
    for id in 1..=3 {
        for i in 0..20 {
            let r = c.get(id, &format!("/v1/kv/k{i}")).await;
            assert_eq!(r.status, StatusCode::OK, "k{i} via node {id}");
            assert_eq!(
                &r.body[..],
                format!("v{i}").as_bytes(),
                "k{i} via node {id}"
            );
        }
        assert_eq!(&c.get(id, "/v1/kv/after").await.body[..], b"ok");
    }
    for id in 1..=3 {
        assert!(c.stop(id).success(), "node {id} stopped cleanly");
    }
}
