//! The client against real servers (in-process, on 127.0.0.1): every
//! operation, leader discovery through a follower, fail-over when the
//! leader stops, exactly-once through a session when answers are lost, and
//! typed errors.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{answer_losing_proxy, wait_for, Cluster};
use raftkv_client::{Client, ClientConfig, Consistency, Error, Protocol};
use raftkv_server::http_client::HttpClient;

/// Straight to a node, past the proxy (the client would follow the
/// node's advertised address, which is the proxy).
struct Direct {
    http: HttpClient,
    base: String,
}

impl Direct {
    /// Waits until the node leads, before the proxy loses anything.
    async fn new(addr: &str) -> Direct {
        let d = Direct {
            http: HttpClient::new(Duration::from_secs(5)),
            base: format!("http://{addr}"),
        };
        wait_for("a leader", || async {
            let r = d.http.get(&format!("{}/v1/status", d.base)).await.ok()?;
            (r.json()["role"] == "leader").then_some(())
        })
        .await;
        d
    }

    async fn get(&self, key: &str) -> String {
        let r = self
            .http
            .get(&format!("{}/v1/kv/{key}", self.base))
            .await
            .unwrap();
        r.text()
    }
}

fn quick(protocol: Protocol) -> ClientConfig {
    ClientConfig {
        attempt_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_secs(20),
        protocol,
        ..ClientConfig::default()
    }
}

/// Each scenario runs once per protocol.
macro_rules! both_protocols {
    ($scenario:ident: $binary:ident, $http:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $binary() {
            $scenario(Protocol::Binary).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $http() {
            $scenario(Protocol::Http).await
        }
    };
}

both_protocols!(every_operation: every_operation_through_any_node_and_fail_over, every_operation_over_http);
both_protocols!(lost_session_answers: a_session_write_whose_answers_are_lost_is_applied_once, a_session_write_whose_answers_are_lost_is_applied_once_over_http);
both_protocols!(lost_plain_answer: a_plain_write_whose_answer_is_lost_is_not_sent_again, a_plain_write_whose_answer_is_lost_is_not_sent_again_over_http);
both_protocols!(typed_errors: errors_are_typed, errors_are_typed_over_http);
both_protocols!(follows_redirect: a_write_to_a_former_leader_follows_its_redirect, a_write_to_a_former_leader_follows_its_redirect_over_http);

/// The client still takes the old leader for the leader after a transfer
/// made by another client: its next write goes there, the node (now a
/// follower) answers "not leader" naming the new one, and the client
/// follows, applying the write once.
async fn follows_redirect(protocol: Protocol) {
    let c = Cluster::start(3).await;
    let client = Client::with_config(c.endpoints(), quick(protocol)).unwrap();
    assert_eq!(client.put("k", "1").await.unwrap(), None);
    let old = client
        .leader_hint()
        .expect("a leader learnt from the write");
    let admin = Client::with_config(c.endpoints(), quick(protocol)).unwrap();
    let moved = admin.transfer_leader(None).await.unwrap();
    assert!(moved.changed);
    let new = c.client_addr(moved.to);
    assert_ne!(new, old);
    assert_eq!(
        client.leader_hint().as_deref(),
        Some(old.as_str()),
        "still the old leader"
    );
    // Through the redirect, applied once.
    assert_eq!(client.append("log", "x").await.unwrap(), 1, "applied once");
    assert_eq!(client.leader_hint(), Some(new));
    assert_eq!(
        client.put("k", "2").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    c.shutdown().await;
}

async fn every_operation(protocol: Protocol) {
    let mut c = Cluster::start(3).await;
    // Every node's address: the client asks them who leads.
    let client = Client::with_config(c.endpoints(), quick(protocol)).unwrap();
    assert_eq!(client.put("a", "1").await.unwrap(), None);
    assert_eq!(
        client.put("a", "2").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(client.get("a").await.unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(client.get("absent").await.unwrap(), None);
    assert_eq!(client.append("log", "x").await.unwrap(), 1);
    assert_eq!(client.append("log", [0xffu8]).await.unwrap(), 2);
    assert_eq!(
        client.get("log").await.unwrap().as_deref(),
        Some(&b"x\xff"[..])
    );
    let cas = client.cas("a", Some(b"1"), "3").await.unwrap();
    assert!(!cas.matched);
    assert_eq!(cas.previous.as_deref(), Some(&b"2"[..]));
    let cas = client.cas("a", Some(b"2"), "3").await.unwrap();
    assert!(cas.matched);
    assert!(client.cas("new", None, "n").await.unwrap().matched);
    for key in ["p/1", "p/2", "p/3", "q"] {
        client.put(key, key.as_bytes().to_vec()).await.unwrap();
    }
    let page = client.list("p/", 2).await.unwrap();
    assert!(page.more);
    let keys: Vec<_> = page.pairs.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, ["p/1", "p/2"]);
    assert_eq!(
        client.delete("q").await.unwrap().as_deref(),
        Some(&b"q"[..])
    );
    assert_eq!(client.delete("q").await.unwrap(), None);
    // Binary keys and values round-trip.
    let key = [0u8, b'/', 0xfe, b'%'];
    client.put(key, vec![0u8, 1, 2]).await.unwrap();
    assert_eq!(
        client.get(key).await.unwrap().as_deref(),
        Some(&[0u8, 1, 2][..])
    );

    // Every node answers linearizable and stale reads.
    for id in 1..=3 {
        let one = Client::with_config([c.client_addr(id)], quick(protocol)).unwrap();
        assert_eq!(one.get("a").await.unwrap().as_deref(), Some(&b"3"[..]));
        let stale = wait_for("a stale read to catch up", || async {
            let v = one.get_with("a", Consistency::Stale).await.ok()?;
            (v.as_deref() == Some(&b"3"[..])).then_some(v)
        })
        .await;
        assert!(stale.is_some());
    }

    // Status of every node; they agree on the leader.
    let statuses = client.cluster_status().await;
    assert_eq!(statuses.len(), 3);
    let leader = statuses[0].1.as_ref().unwrap().leader.clone().unwrap();
    for (_, s) in &statuses {
        assert_eq!(s.as_ref().unwrap().leader.as_ref(), Some(&leader));
    }
    assert_eq!(
        client.leader_hint().as_deref(),
        Some(leader.client.as_str())
    );

    // The leader stops: the client finds the new one and goes on. A
    // session write: a plain one may end "outcome unknown" when it went out
    // on a pooled connection the stopping leader had just closed.
    let mut session = client.open_session().await.unwrap();
    c.stop(leader.id).await;
    session.put("after", "stop").await.unwrap();
    assert_ne!(client.leader_hint(), Some(leader.client.clone()));
    assert_eq!(client.get("a").await.unwrap().as_deref(), Some(&b"3"[..]));
    c.shutdown().await;
}

async fn lost_session_answers(protocol: Protocol) {
    // The answers to the first two writes through the proxy are lost.
    let listen = format!("127.0.0.1:{}", common::free_ports(1)[0]);
    let (proxy, left) = answer_losing_proxy(listen.clone(), 2).await;
    let c = Cluster::single_behind(&proxy, &listen).await;
    let direct = Direct::new(&listen).await;
    let cfg = ClientConfig {
        attempt_timeout: Duration::from_millis(500),
        backoff_min: Duration::from_millis(10),
        ..quick(protocol)
    };
    let lossy = Client::with_config([proxy], cfg).unwrap();
    let mut session = lossy.open_session().await.unwrap();
    // Sent three times with the same number; applied once.
    assert_eq!(session.append("log", "x").await.unwrap(), 1);
    assert_eq!(left.load(Ordering::SeqCst), 0, "both answers were lost");
    assert_eq!(session.append("log", "y").await.unwrap(), 2);
    assert_eq!(direct.get("log").await, "xy");
    c.shutdown().await;
}

async fn lost_plain_answer(protocol: Protocol) {
    let listen = format!("127.0.0.1:{}", common::free_ports(1)[0]);
    let (proxy, left) = answer_losing_proxy(listen.clone(), 1).await;
    let c = Cluster::single_behind(&proxy, &listen).await;
    let direct = Direct::new(&listen).await;
    let lossy = Client::with_config([proxy], quick(protocol)).unwrap();
    let err = lossy.append("log", "x").await.unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown(_)), "{err}");
    assert!(err.may_have_applied());
    assert_eq!(left.load(Ordering::SeqCst), 0);
    // It was applied, once: the client did not send it again.
    assert_eq!(direct.get("log").await, "x");
    c.shutdown().await;
}

async fn typed_errors(protocol: Protocol) {
    let c = Cluster::start(1).await;
    let client = Client::with_config([c.client_addr(1)], quick(protocol)).unwrap();
    let big = vec![b'k'; 5000];
    let err = client.put(&big, "v").await.unwrap_err();
    assert!(
        matches!(&err, Error::Rejected { status: 414, kind, .. } if kind == "key_too_large"),
        "{err}"
    );
    assert!(!err.may_have_applied());
    assert!(matches!(
        Client::new(Vec::<String>::new()),
        Err(Error::NoEndpoints)
    ));
    assert!(matches!(Client::new(["nope"]), Err(Error::BadEndpoint(_))));
    // Nobody listening: unavailable by the deadline, nothing applied.
    let port = common::free_ports(1)[0];
    let cfg = ClientConfig {
        call_timeout: Duration::from_millis(300),
        ..quick(protocol)
    };
    let nobody = Client::with_config([format!("127.0.0.1:{port}")], cfg).unwrap();
    let err = nobody.put("k", "v").await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(!err.may_have_applied());
    c.shutdown().await;
}

/// Many calls of clones of one client share one connection: each gets its
/// own answer (ids matched), and a write over the node's frame limit is
/// refused alone, as over HTTP (413, nothing applied), while the calls
/// around it on the connection are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_sharing_a_connection_get_their_own_answers() {
    let c = Cluster::start(1).await;
    let cfg = ClientConfig {
        connections_per_node: 1,
        ..quick(Protocol::Binary)
    };
    let client = Client::with_config([c.client_addr(1)], cfg).unwrap();
    client.put("warm", "up").await.unwrap();
    let huge = vec![b'v'; 3 << 20];
    let writes = (0..32).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { client.put(format!("k{i}"), format!("v{i}")).await })
    });
    let big = {
        let client = client.clone();
        tokio::spawn(async move { client.put("huge", huge).await })
    };
    for w in writes.collect::<Vec<_>>() {
        w.await.unwrap().unwrap();
    }
    let err = big.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::Rejected { status: 413, kind, .. } if kind == "body_too_large"),
        "{err}"
    );
    assert!(!err.may_have_applied());
    let reads = (0..32).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { (i, client.get(format!("k{i}")).await) })
    });
    for r in reads.collect::<Vec<_>>() {
        let (i, got) = r.await.unwrap();
        assert_eq!(got.unwrap().as_deref(), Some(format!("v{i}").as_bytes()));
    }
    assert_eq!(client.get("huge").await.unwrap(), None);
    c.shutdown().await;
}
