//! Three `raftkv server` processes on 127.0.0.1: writes through any node
//! (followers redirect), linearizable reads on every node, kill -9 of the
//! leader and a new leader, the killed node restarted from its data
//! directory catching up through a snapshot, and a clean SIGTERM stop.

mod common;

use std::time::Instant;

use common::{wait_for, Cluster};
use futures::future::join_all;
use hyper::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_fail_over_and_a_restarted_node_catches_up_through_a_snapshot() {
    let mut c = Cluster::start(3, &["--snapshot-bytes", "8192"]);
    let (leader, term) = c.agreed_leader(&[1, 2, 3]).await;

    // Writes through every node; two of them are followers and redirect.
    for via in 1..=3 {
        c.put(via, &format!("k{via}"), format!("v{via}").as_bytes())
            .await;
    }
    // Linearizable reads on every node see every write.
    for via in 1..=3 {
        for k in 1..=3 {
            let r = c.get(via, &format!("/v1/kv/k{k}")).await;
            assert_eq!(
                (r.status, r.text()),
                (StatusCode::OK, format!("v{k}")),
                "k{k} via node {via}"
            );
        }
    }

    // kill -9 the leader: another node leads and serves.
    c.kill9(leader);
    let killed_at = Instant::now();
    let rest: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let (new_leader, new_term) = c.agreed_leader(&rest).await;
    c.put(new_leader, "after-kill", b"1").await;
    let failover = killed_at.elapsed();
    assert!(new_leader != leader && new_term > term);
    eprintln!("new leader {new_leader} in term {new_term} serving {failover:?} after the kill");

    // Enough writes while it is down that the others snapshot past its log.
    let value = vec![b'x'; 256];
    for batch in 0..10 {
        let writes = (0..12).map(|i| {
            let key = format!("bulk{}", batch * 12 + i);
            let (c, value, via) = (&c, &value, rest[i % 2]);
            async move { c.put(via, &key, value).await }
        });
        join_all(writes).await;
    }
    let leader_status = c.status(new_leader).await.unwrap();
    let snapshot_index = leader_status["snapshot_index"].as_u64().unwrap();
    assert!(
        snapshot_index > 10,
        "the leader compacted its log: {leader_status}"
    );
    assert!(c.metric(new_leader, "raftkv_snapshots_taken_total").await >= 1.0);

    // The killed node restarts from its data directory and catches up,
    // through an InstallSnapshot.
    c.spawn(leader);
    let commit = c.status(new_leader).await.unwrap()["commit"]
        .as_u64()
        .unwrap();
    wait_for("the restarted node to catch up", || async {
        let s = c.status(leader).await?;
        (s["applied"].as_u64()? >= commit).then_some(())
    })
    .await;
    assert!(c.metric(leader, "raftkv_snapshots_installed_total").await >= 1.0);
    for path in [
        "/v1/kv/bulk119",
        "/v1/kv/k1?consistency=stale",
        "/v1/kv/after-kill",
    ] {
        let r = c.get(leader, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path} on the restarted node");
    }
    assert_eq!(c.get(leader, "/v1/kv/bulk0").await.body.len(), 256);

    // SIGTERM stops each node cleanly.
    for id in 1..=3 {
        let status = c.stop(id);
        assert!(status.success(), "node {id} exited with {status}");
    }
    let log = std::fs::read_to_string(c.log(leader)).unwrap();
    assert!(log.contains("term=") && log.contains("stopped"), "{log}");
}
