//! The binary client protocol against a real 3-node cluster in process,
//! over raw sockets: every operation with many requests in flight on one
//! connection, a follower's "not leader" answer naming the leader, and
//! malformed input (a bad preface, an unknown version, a body that does
//! not decode, id 0) that closes only its own connection while the node
//! serves the others, in both protocols, and a request over the frame
//! limit, refused alone while its neighbours on the connection are served.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{free_port, wait_for, Api};
use raftkv_client::proto::{self, Numbered, ReadConsistency, Request, Response};
use raftkv_server::{PeerAddrs, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw binary connection.
struct Conn {
    s: TcpStream,
    buf: BytesMut,
    next_id: u64,
}

impl Conn {
    /// Connects and exchanges prefaces.
    async fn open(addr: &str) -> Conn {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&proto::preface(proto::VERSION)).await.unwrap();
        let mut p = [0u8; proto::PREFACE_LEN];
        s.read_exact(&mut p).await.unwrap();
        assert_eq!(proto::check_preface(&p), Ok(proto::VERSION));
        Conn {
            s,
            buf: BytesMut::new(),
            next_id: 0,
        }
    }

    /// Sends every request in one write; their ids, in order.
    async fn send_all(&mut self, reqs: &[Request]) -> Vec<u64> {
        let mut out = BytesMut::new();
        let ids = reqs
            .iter()
            .map(|r| {
                self.next_id += 1;
                proto::put_frame(&mut out, self.next_id, r);
                self.next_id
            })
            .collect();
        self.s.write_all(&out).await.unwrap();
        ids
    }

    /// The next answer frame, or `None` once the node closed.
    async fn next(&mut self) -> Option<(u64, Response)> {
        loop {
            if let Some(f) = proto::take_frame(&mut self.buf, proto::MAX_ANSWER_FRAME).unwrap() {
                return Some((f.id, proto::decode(&f).unwrap()));
            }
            let read = tokio::time::timeout(common::DEADLINE, self.s.read_buf(&mut self.buf));
            match read.await.expect("an answer in time") {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Sends the requests at once and collects their answers by request.
    async fn call_all(&mut self, reqs: &[Request]) -> Vec<Response> {
        let ids = self.send_all(reqs).await;
        let mut got: HashMap<u64, Response> = HashMap::new();
        while got.len() < ids.len() {
            let (id, r) = self.next().await.expect("the connection stays open");
            assert!(ids.contains(&id), "an answer to an unknown id {id}");
            assert!(got.insert(id, r).is_none(), "two answers to {id}");
        }
        ids.iter().map(|id| got.remove(id).unwrap()).collect()
    }

    async fn call(&mut self, req: Request) -> Response {
        self.call_all(&[req]).await.remove(0)
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    servers: BTreeMap<u64, Server>,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let peers: BTreeMap<u64, PeerAddrs> = (1..=3)
            .map(|id| {
                let addrs = PeerAddrs {
                    raft: format!("127.0.0.1:{}", free_port()),
                    client: format!("127.0.0.1:{}", free_port()),
                };
                (id, addrs)
            })
            .collect();
        let mut servers = BTreeMap::new();
        for id in 1..=3 {
            let cfg = ServerConfig::new(id, peers.clone(), dir.path().join(format!("n{id}")));
            servers.insert(id, Server::start(cfg).await.expect("the node starts"));
        }
        Cluster { _dir: dir, servers }
    }

    fn addr(&self, id: u64) -> String {
        self.servers[&id].client_addr().to_string()
    }

    /// The leader's id, once every node names the same one.
    async fn leader(&self) -> u64 {
        wait_for("one leader named by every node", || async {
            let mut named = Vec::new();
            for id in self.servers.keys() {
                let mut c = Conn::open(&self.addr(*id)).await;
                match c.call(Request::Status).await {
                    Response::Status(s) => named.push(s.leader.map(|l| l.id)),
                    other => panic!("status answered {other:?}"),
                }
            }
            let first = named[0]?;
            named.iter().all(|l| *l == Some(first)).then_some(first)
        })
        .await
    }

    async fn shutdown(self) {
        for (_, s) in self.servers {
            s.shutdown().await.unwrap();
        }
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put(key: &str, value: &str) -> Request {
    Request::Put {
        key: b(key),
        value: b(value),
        session: None,
    }
}

fn get(key: &str, consistency: ReadConsistency) -> Request {
    Request::Get {
        key: b(key),
        consistency,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_in_flight_together_on_one_connection() {
    let c = Cluster::start().await;
    let leader = c.leader().await;
    let mut conn = Conn::open(&c.addr(leader)).await;

    // Many writes to distinct keys in flight at once: each answered once,
    // by its id.
    let puts: Vec<Request> = (0..200).map(|i| put(&format!("k{i:03}"), "v")).collect();
    for r in conn.call_all(&puts).await {
        assert_eq!(r, Response::Replaced(None));
    }
    let session = match conn.call(Request::OpenSession).await {
        Response::Session { id } => id,
        other => panic!("{other:?}"),
    };
    let n = |seq| Some(Numbered { session, seq });
    let answers = conn
        .call_all(&[
            put("k000", "w"),
            Request::Append {
                key: b("log"),
                value: Bytes::from_static(b"\x00\xff"),
                session: None,
            },
            Request::Cas {
                key: b("k001"),
                expected: Some(b("v")),
                new: b("x"),
                session: None,
            },
            Request::Cas {
                key: b("new"),
                expected: None,
                new: b("n"),
                session: n(1),
            },
            Request::Delete {
                key: b("k002"),
                session: None,
            },
        ])
        .await;
    assert_eq!(answers[0], Response::Replaced(Some(b("v"))));
    assert_eq!(answers[1], Response::Appended { len: 2 });
    let cas = |matched, previous| Response::Cas { matched, previous };
    assert_eq!(answers[2], cas(true, Some(b("v"))));
    assert_eq!(answers[3], cas(true, None));
    assert_eq!(answers[4], Response::Replaced(Some(b("v"))));

    // A session write sent again with its number: answered from the
    // session table, not applied twice.
    let again = Request::Cas {
        key: b("new"),
        expected: None,
        new: b("n"),
        session: n(1),
    };
    assert_eq!(conn.call(again).await, cas(true, None));

    // Reads, on the leader and a follower, linearizable and stale.
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let mut on_follower = Conn::open(&c.addr(follower)).await;
    for conn in [&mut conn, &mut on_follower] {
        let got = conn
            .call_all(&[
                get("k000", ReadConsistency::Linearizable),
                get("absent", ReadConsistency::Linearizable),
                get("log", ReadConsistency::Linearizable),
                Request::List {
                    prefix: b("k00"),
                    limit: 3,
                    consistency: ReadConsistency::Linearizable,
                },
            ])
            .await;
        assert_eq!(got[0], Response::Value(Some(b("w"))));
        assert_eq!(got[1], Response::Value(None));
        assert_eq!(
            got[2],
            Response::Value(Some(Bytes::from_static(b"\x00\xff")))
        );
        let keys = match &got[3] {
            Response::Page { pairs, more: true } => {
                pairs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(keys, [b("k000"), b("k001"), b("k003")]);
    }
    // A stale read on the follower catches up (polled, with a deadline).
    let start = std::time::Instant::now();
    while on_follower.call(get("new", ReadConsistency::Stale)).await
        != Response::Value(Some(b("n")))
    {
        assert!(
            start.elapsed() < common::DEADLINE,
            "the follower never applied the cas"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Limits answer like HTTP: a key over 4 KiB is 414 key_too_large.
    let big = Request::Put {
        key: Bytes::from(vec![b'k'; 5000]),
        value: b("v"),
        session: None,
    };
    match conn.call(big).await {
        Response::Error(e) => assert_eq!((e.status, e.kind.as_str()), (414, "key_too_large")),
        other => panic!("{other:?}"),
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_answers_a_write_with_the_leader() {
    let c = Cluster::start().await;
    let leader = c.leader().await;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let mut conn = Conn::open(&c.addr(follower)).await;
    for req in [put("a", "1"), Request::OpenSession] {
        match conn.call(req).await {
            Response::Error(e) => {
                assert_eq!((e.status, e.kind.as_str()), (307, "not_leader"));
                let l = e.leader.expect("the leader is named");
                assert_eq!((l.id, l.client), (leader, c.addr(leader)));
            }
            other => panic!("a follower answered a write with {other:?}"),
        }
    }
    // Nothing was applied there.
    let mut at_leader = Conn::open(&c.addr(leader)).await;
    let r = at_leader
        .call(get("a", ReadConsistency::Linearizable))
        .await;
    assert_eq!(r, Response::Value(None));
    c.shutdown().await;
}

/// Sends `bytes` on a fresh connection and returns the error frame the
/// node answers before it closes (after its preface, if it sent one).
async fn refused(addr: &str, bytes: &[u8]) -> proto::ErrorBody {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(common::DEADLINE, s.read_to_end(&mut got));
    read.await.expect("the node closes the connection").ok();
    assert!(got.starts_with(&proto::preface(proto::VERSION)), "{got:?}");
    let mut buf = BytesMut::from(&got[proto::PREFACE_LEN..]);
    let f = proto::take_frame(&mut buf, proto::MAX_ANSWER_FRAME)
        .unwrap()
        .expect("an error frame");
    assert_eq!(f.id, proto::CONNECTION_ID);
    assert!(buf.is_empty(), "nothing after the error frame");
    match proto::decode(&f).unwrap() {
        Response::Error(e) => e,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_closes_its_connection_and_the_node_serves_on() {
    let c = Cluster::start().await;
    let leader = c.leader().await;
    let addr = c.addr(leader);
    // A connection opened before, with a request answered.
    let mut before = Conn::open(&addr).await;
    assert_eq!(before.call(put("x", "1")).await, Response::Replaced(None));

    let hello = proto::preface(proto::VERSION);
    let frame = |len: u32, id: u64, body: &[u8]| {
        let mut v = hello.to_vec();
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(body);
        v
    };
    let mut bad_magic = hello.to_vec();
    bad_magic[3] ^= 0xff;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (proto::preface(9).to_vec(), "unsupported_version"),
        (bad_magic, "bad_preface"),
        // Over the limit with the node's own id: nothing to answer it by.
        (frame(u32::MAX, 0, b""), "frame_too_large"),
        (frame(3, 1, b""), "bad_frame"),
        // A well-formed `Status` with id 0, which is the node's.
        (frame(9, 0, &[7]), "bad_frame"),
        (frame(9, 1, &[0xee]), "bad_frame"),
        // A valid request followed by junk in the same frame.
        (frame(10, 1, &[7, 0]), "bad_frame"),
    ];
    for (bytes, kind) in cases {
        let e = refused(&addr, &bytes).await;
        assert_eq!(e.kind, kind, "{}", e.message);
    }
    // Random bytes after the first zero byte: closed, never a panic.
    for seed in 0..20u8 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let junk: Vec<u8> = std::iter::once(0)
            .chain((0..64u32).map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed)))
            .collect();
        s.write_all(&junk).await.unwrap();
        let mut sink = Vec::new();
        let read = tokio::time::timeout(common::DEADLINE, s.read_to_end(&mut sink));
        read.await.expect("closed in time").ok();
    }
    // A connection that closes in the middle of a frame.
    {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(&frame(100, 1, &[2, 1])).await.unwrap();
    }

    // The node goes on: the old connection, a new one, and HTTP.
    assert_eq!(
        before.call(put("x", "2")).await,
        Response::Replaced(Some(b("1")))
    );
    let mut after = Conn::open(&addr).await;
    let r = after.call(get("x", ReadConsistency::Linearizable)).await;
    assert_eq!(r, Response::Value(Some(b("2"))));
    let api = Api::new(&c.servers[&leader]);
    let r = api.get("/v1/kv/x").await;
    assert_eq!(&r.body[..], b"2");
    // The metrics count the answers and the connections refused.
    let m = api.get("/metrics").await.text();
    let counter = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{m}"))
    };
    // Three answers on the connections above, and the status calls that
    // found the leader.
    assert!(counter("raftkv_binary_responses_total{code=\"200\"} ") >= 3);
    let errors = counter("raftkv_binary_protocol_errors_total ");
    assert!(
        errors >= 6,
        "{errors} protocol errors counted, 6 cases refused"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn an_idle_connection_closes_when_the_node_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _api) = common::start_single(common::single(dir.path())).await;
    let mut conn = Conn::open(&server.client_addr().to_string()).await;
    let stopped = tokio::spawn(server.shutdown());
    assert!(conn.next().await.is_none(), "closed, with no answer");
    tokio::time::timeout(Duration::from_secs(15), stopped)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A request over the frame limit is refused by its own id (413
/// `body_too_large`, as HTTP refuses such a body) and its bytes are
/// dropped: the requests before and after it on the connection are
/// answered, the connection stays open, and the client can tell that the
/// big one was never taken (with the connection closed it could not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_limit_is_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::single(dir.path());
    let max = cfg.max_body_bytes;
    let (server, api) = common::start_single(cfg).await;
    let mut c = Conn::open(&server.client_addr().to_string()).await;
    let huge = Request::Put {
        key: b("huge"),
        value: Bytes::from(vec![b'v'; max + (128 << 10)]),
        session: None,
    };
    let answers = c
        .call_all(&[put("before", "1"), huge, put("after", "2")])
        .await;
    assert_eq!(answers[0], Response::Replaced(None));
    match &answers[1] {
        Response::Error(e) => assert_eq!((e.status, e.kind.as_str()), (413, "body_too_large")),
        other => panic!("{other:?}"),
    }
    assert_eq!(answers[2], Response::Replaced(None));
    // The connection goes on; nothing of the big one was applied.
    let r = c.call(get("after", ReadConsistency::Linearizable)).await;
    assert_eq!(r, Response::Value(Some(b("2"))));
    assert_eq!(api.get("/v1/kv/huge").await.status, 404);
    server.shutdown().await.unwrap();
}

/// A client that asks for much and stops reading holds its connection no
/// longer than a grace period once the node stops: shutdown ends, and the
/// connection closes before all that was asked for was sent (were the task
/// still writing, reading now would let every answer through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _api) = common::start_single(common::single(dir.path())).await;
    let mut conn = Conn::open(&server.client_addr().to_string()).await;
    let value = "x".repeat(256 << 10);
    assert_eq!(
        conn.call(put("big", &value)).await,
        Response::Replaced(None)
    );
    // 100 MiB of answers: far more than the sockets buffer.
    const ASKED: usize = 400;
    let gets: Vec<_> = (0..ASKED)
        .map(|_| get("big", ReadConsistency::Stale))
        .collect();
    conn.send_all(&gets).await;
    // The driver takes requests in order: once a later one on another
    // connection is answered, every get above was, and the first
    // connection's task is writing what the client does not read.
    let mut other = Conn::open(&server.client_addr().to_string()).await;
    assert_eq!(
        other.call(get("absent", ReadConsistency::Stale)).await,
        Response::Value(None)
    );
    tokio::time::timeout(Duration::from_secs(15), server.shutdown())
        .await
        .expect("shutdown ends while the client reads nothing")
        .unwrap();
    let mut answers = 0;
    while conn.next().await.is_some() {
        answers += 1;
    }
    assert!(
        answers < ASKED,
        "all {answers} answers were sent after the stop"
    );
}
