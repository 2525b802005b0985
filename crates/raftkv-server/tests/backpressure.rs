//! Back-pressure and waiting for commit, made deterministic: node 1 leads a
//! two-node cluster whose other member is this test. The test grants the
//! votes and answers heartbeats but holds back its AppendEntries replies,
//! so nothing commits: writes wait, and once the in-flight budget is full
//! the next write is told "busy" (503, Retry-After). Releasing the replies
//! commits and answers the waiting writes.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{free_port, wait_for, Api};
use hyper::{header, Method, StatusCode};
use raft_core::{AppendReply, Body, Message};
use raftkv_server::wire::{self, Frame, Hello};
use raftkv_server::{parse_peers, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Plays node 2: votes for node 1, answers heartbeats, and answers
/// AppendEntries only while `ack` is set.
async fn follower(listener: TcpListener, ack: Arc<AtomicBool>) {
    let (mut s, _) = listener.accept().await.unwrap();
    let mut out = BytesMut::new();
    wire::put_hello(
        &mut out,
        &Hello {
            cluster_id: "raftkv".into(),
            from: 2,
            to: 1,
        },
    );
    loop {
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        if s.read_exact(&mut body).await.is_err() {
            return;
        }
        let msgs = match wire::decode(&body).unwrap() {
            Frame::Raft(msgs) => msgs,
            _ => Vec::new(), // the hello, pings
        };
        let mut replies = Vec::new();
        for m in msgs {
            let body = match m.body {
                Body::RequestVote { pre_vote, .. } => Body::RequestVoteReply {
                    granted: true,
                    pre_vote,
                },
                Body::Heartbeat { ctx, .. } => Body::HeartbeatReply { ctx },
                Body::AppendEntries {
                    prev_log_index,
                    entries,
                    ..
                } if ack.load(Ordering::SeqCst) => {
                    let match_index = prev_log_index + entries.len() as u64;
                    Body::AppendEntriesReply(AppendReply::Success { match_index })
                }
                _ => continue,
            };
            replies.push(Message {
                from: 2,
                to: 1,
                term: m.term,
                body,
            });
        }
        wire::put_raft(&mut out, &replies, 1 << 20);
        if !out.is_empty() {
            s.write_all(&out).await.unwrap();
            out.clear();
        }
    }
}

#[tokio::test]
async fn writes_wait_for_commit_and_a_full_budget_answers_busy() {
    let dir = tempfile::tempdir().unwrap();
    let p2 = free_port();
    let listener = TcpListener::bind(("127.0.0.1", p2)).await.unwrap();
    let ack = Arc::new(AtomicBool::new(false));
    tokio::spawn(follower(listener, ack.clone()));
    let peers = parse_peers(&format!(
        "1=127.0.0.1:0/127.0.0.1:0,2=127.0.0.1:{p2}/127.0.0.1:1"
    ))
    .unwrap();
    let mut cfg = ServerConfig::new(1, peers, dir.path().into());
    cfg.max_body_bytes = 512;
    // Room for two writes of 500 bytes (plus keys and record headers).
    cfg.max_pending_bytes = 1100;
    let server = Server::start(cfg).await.unwrap();
    let api = Arc::new(Api::new(&server));
    api.until_leader().await;

    // Two writes of 500 bytes wait: nothing commits without node 2's replies.
    let waiting: Vec<_> = (0..2)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                api.call(
                    Method::PUT,
                    &format!("/v1/kv/w{i}"),
                    &[],
                    Bytes::from(vec![b'v'; 500]),
                )
                .await
            })
        })
        .collect();
    wait_for("two writes waiting", || async {
        let s = api.get("/v1/status").await.json();
        (s["pending_requests"] == 2).then_some(())
    })
    .await;
    // The budget is full: the next write is refused at once, with a retry hint.
    let r = api
        .call(Method::PUT, "/v1/kv/w2", &[], Bytes::from(vec![b'v'; 500]))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.json()["error"], "busy");
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    // Node 2 answers again: the entries commit and the waiting writes are answered.
    ack.store(true, Ordering::SeqCst);
    for w in waiting {
        let r = tokio::time::timeout(Duration::from_secs(15), w)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let r = api
        .call(Method::PUT, "/v1/kv/w2", &[], Bytes::from(vec![b'v'; 500]))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "room again once the writes are answered"
    );
    server.shutdown().await.unwrap();
}
