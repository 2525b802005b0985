//! The runtime's promises in real time: heartbeat rate, prompt calls while
//! nobody reads the apply channel, late replies, and the API after kill.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cmd, wait_for, Cluster, Setup};
use raft_lab::{make, Body, MakeError, Message, SnapshotError, StartError};

#[test]
fn idle_heartbeats_stay_within_ten_per_second() {
    let c = Cluster::new(3);
    c.check_one_leader();
    c.one(&cmd(1), 3);
    // Measure one idle second; measure again if leadership moved meanwhile.
    for _ in 0..3 {
        let leader = c.check_one_leader();
        let term = c.node(leader).get_state().0;
        let sent = |p: usize| c.net.calls_between(leader, p);
        let before: Vec<u64> = (0..3).map(sent).collect();
        let total = c.net.total_rpcs();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        let secs = t0.elapsed().as_secs_f64();
        if c.node(leader).get_state() != (term, true) {
            continue;
        }
        let bound = 10.0 * secs + 2.0;
        for p in (0..3).filter(|&p| p != leader) {
            let n = sent(p) - before[p];
            assert!(n as f64 <= bound, "{n} calls to {p} in {secs:.2}s");
            assert!(n >= 3, "only {n} heartbeats to {p} in {secs:.2}s");
        }
        let all = c.net.total_rpcs() - total;
        assert!(
            all as f64 <= 2.0 * bound + 4.0,
            "{all} calls in {secs:.2}s of idleness"
        );
        c.finish();
        return;
    }
    panic!("leadership never held still for a second");
}

#[test]
fn start_and_get_state_are_prompt_while_nobody_reads() {
    let c = Cluster::with(
        3,
        Setup {
            unread: true,
            ..Setup::default()
        },
    );
    let mut leader = c.check_one_leader();
    let mut worst = Duration::ZERO;
    let mut last = 0;
    for x in 0..200 {
        let t = Instant::now();
        let started = c.node(leader).start(cmd(x));
        let (_, _) = c.node((leader + 1) % 3).get_state();
        worst = worst.max(t.elapsed());
        match started {
            Ok((index, _)) => last = index,
            Err(StartError::NotLeader { .. }) => leader = c.check_one_leader(),
            Err(e) => panic!("start: {e}"),
        }
    }
    // A blocked call would wait forever (nobody reads the apply channels);
    // one second leaves room for a loaded CI machine's scheduler.
    assert!(
        worst < Duration::from_secs(1),
        "slowest start+get_state: {worst:?}"
    );
    // The log keeps committing although every apply channel is full.
    let leader = c.check_one_leader();
    let (index, _) = c.node(leader).start(cmd(1000)).expect("leader accepts");
    assert!(index > last);
    for node in &c.nodes() {
        wait_for("commit while nobody reads", || {
            node.status().commit >= index
        });
    }
    for node in &c.nodes() {
        let t = Instant::now();
        node.kill();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "kill took {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn replies_seconds_late_are_harmless() {
    let c = Cluster::new(3);
    let old = c.check_one_leader();
    c.one(&cmd(1), 3);
    let old_term = c.node(old).get_state().0;
    // The leader's requests still arrive, but every reply to it comes 3 s
    // late: it loses its quorum (CheckQuorum) and another server takes over.
    c.net.set_reply_delay(old, Duration::from_secs(3));
    let new = c.check_leader_where(|l| l != old);
    assert!(c.node(new).get_state().0 > old_term);
    for x in 2..=4 {
        c.one(&cmd(x), 3);
    }
    // Now the held replies land, from an older term, on a follower.
    c.net.set_reply_delay(old, Duration::ZERO);
    wait_for("held replies to land", || c.net.held_replies() == 0);
    assert!(c.net.late_replies_delivered() > 0);
    c.check_one_leader();
    c.one(&cmd(5), 3);
    c.finish();
}

#[test]
fn api_errors_are_typed_and_kill_is_final() {
    let c = Cluster::new(3);
    let leader = c.check_one_leader();
    let follower = (leader + 1) % 3;
    wait_for("the follower to hear from the leader", || {
        c.node(follower).status().leader == Some(leader)
    });
    assert_eq!(
        c.node(follower).start(cmd(1)),
        Err(StartError::NotLeader {
            leader: Some(leader)
        })
    );
    assert!(matches!(
        c.node(leader).snapshot(1000, vec![]),
        Err(SnapshotError::BadIndex { index: 1000, .. })
    ));

    let victim = &c.node(follower);
    let t = Instant::now();
    victim.kill();
    victim.kill();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(victim.is_killed());
    assert_eq!(victim.start(cmd(2)), Err(StartError::Killed));
    assert_eq!(victim.snapshot(1, vec![]), Err(SnapshotError::Killed));
    assert!(!victim.get_state().1);
    assert!(!victim.cond_install_snapshot(1, 1, &[]));
    let probe = Message {
        from: raft_lab::node_id(leader),
        to: raft_lab::node_id(follower),
        term: 1,
        body: Body::RequestVote {
            last_log_index: 0,
            last_log_term: 0,
            pre_vote: true,
            transfer: false,
        },
    };
    assert_eq!(victim.handle(probe), None);
    // The other two carry on.
    c.one(&cmd(3), 2);

    let (tx, _rx) = std::sync::mpsc::channel();
    let persister = Arc::new(raft_lab::MemPersister::new());
    let err = make(c.net.ends(0), 3, persister, tx).unwrap_err();
    assert!(matches!(err, MakeError::BadMe { me: 3, peers: 3 }), "{err}");
    c.finish();
}

/// A persister that starts failing on demand.
struct Flaky {
    inner: raft_lab::MemPersister,
    fail: std::sync::atomic::AtomicBool,
}

impl raft_lab::Persister for Flaky {
    fn save(&self, state: &[u8], snapshot: Option<&[u8]>) -> std::io::Result<()> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("disk on fire"));
        }
        self.inner.save(state, snapshot)
    }
    fn read_raft_state(&self) -> std::io::Result<Vec<u8>> {
        self.inner.read_raft_state()
    }
    fn read_snapshot(&self) -> std::io::Result<Vec<u8>> {
        self.inner.read_snapshot()
    }
    fn raft_state_size(&self) -> usize {
        self.inner.raft_state_size()
    }
    fn snapshot_size(&self) -> usize {
        self.inner.snapshot_size()
    }
}

#[test]
fn persister_failure_stops_the_node_with_a_reason() {
    let net = raft_lab::ChannelNetwork::new(1);
    let persister = Arc::new(Flaky {
        inner: raft_lab::MemPersister::new(),
        fail: false.into(),
    });
    let (tx, _rx) = std::sync::mpsc::channel();
    let node = make(net.ends(0), 0, persister.clone(), tx).expect("make");
    wait_for("a one-server cluster to elect itself", || {
        node.get_state().1
    });
    persister
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // Accepted, but it cannot be made durable: the node stops rather than
    // send or apply anything that depends on it.
    assert!(node.start(cmd(1)).is_ok());
    wait_for("the node to stop", || node.is_killed());
    assert!(
        node.failure()
            .is_some_and(|why| why.contains("disk on fire")),
        "{:?}",
        node.failure()
    );
    assert_eq!(node.start(cmd(2)), Err(StartError::Killed));
    assert!(!node.get_state().1);
    node.kill();
}
