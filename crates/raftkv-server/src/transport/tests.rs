//! The driver's direct writes and the writer's hand-over, over a real
//! socket whose reader is slow: every message arrives, once, in order.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use raft_core::{Body, Entry, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Transport;
use crate::metrics::Metrics;
use crate::wire::{self, Frame, Hello};

const WAIT: Duration = Duration::from_secs(20);

/// An AppendEntries from node 1 to node 2 whose one entry is `bytes` long,
/// numbered by its index.
fn append(index: u64, bytes: usize) -> Message {
    Message {
        from: 1,
        to: 2,
        term: 1,
        body: Body::AppendEntries {
            prev_log_index: index - 1,
            prev_log_term: 1,
            entries: vec![Entry::normal(index, 1, vec![index as u8; bytes])],
            leader_commit: 0,
        },
    }
}

async fn read_frame(s: &mut TcpStream) -> Frame {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.expect("a frame");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.expect("a whole frame");
    wire::decode(&body).expect("well-formed frames")
}

#[test]
fn a_slow_peer_gets_every_message_in_order_whoever_writes_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (inbox, _inbox_rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    // Node 1's transport; the test plays node 2 (node 1 dials it).
    let peer = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let peer_addr = peer.local_addr().unwrap().to_string();
    let transport = rt.block_on(async {
        let own = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shared = Transport::shared(
            1,
            "c".into(),
            [(2, peer_addr)],
            16 << 20,
            1 << 20,
            1 << 40,
            inbox,
            Arc::new(Metrics::new()),
            cancel.clone(),
        );
        Transport::start(shared, own, tracing::Span::none())
    });
    let mut conn = rt.block_on(async {
        let (mut s, _) = tokio::time::timeout(WAIT, peer.accept())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(read_frame(&mut s).await, Frame::Hello(_)));
        let mut buf = BytesMut::new();
        let h = Hello {
            cluster_id: "c".into(),
            from: 2,
            to: 1,
        };
        wire::put_hello(&mut buf, &h);
        s.write_all(&buf).await.unwrap();
        s
    });
    // Wait until the connection is offered to the driver.
    let deadline = std::time::Instant::now() + WAIT;
    while !transport.connected().get(&2).copied().unwrap_or(false) {
        assert!(std::time::Instant::now() < deadline, "never connected");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Sent from this (non-runtime) thread, as the driver does, while
    // nobody reads: 64 batches of 64 KiB fill the socket's buffers, so
    // later writes leave a tail for the writer or queue behind it.
    let n = 64u64;
    let sender = {
        let transport = transport.clone();
        std::thread::spawn(move || {
            for i in 1..=n {
                transport.send(vec![append(i, 64 << 10)]);
            }
        })
    };
    sender.join().unwrap();
    let got = rt.block_on(async {
        let mut got = Vec::new();
        while (got.len() as u64) < n {
            let frame = tokio::time::timeout(WAIT, read_frame(&mut conn))
                .await
                .expect("every message in time");
            if let Frame::Raft(msgs) = frame {
                got.extend(msgs);
            }
        }
        got
    });
    let want: Vec<Message> = (1..=n).map(|i| append(i, 64 << 10)).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "messages lost, repeated or out of order");
    cancel.cancel();
}
