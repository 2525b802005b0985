//! A 3-server cluster in real time over the in-process network, through the
//! lab's scenarios: election, agreement, a leader cut off and back, a
//! snapshot reaching a lagging server, and a restart from the persister.

mod common;

use common::{cmd, Cluster, Event, Setup};

#[test]
fn elects_one_leader_and_agrees() {
    let c = Cluster::new(3);
    let leader = c.check_one_leader();
    let (term, _) = c.node(leader).get_state();
    assert!(term >= 1);
    // Lab 2B: the first commands land at indices 1, 2, 3 on every server.
    for (k, x) in [101, 102, 103].into_iter().enumerate() {
        assert_eq!(c.one(&cmd(x), 3), k as u64 + 1);
    }
    // Followers agree on the term and on who leads.
    let leader = c.check_one_leader();
    let term = c.node(leader).get_state().0;
    for node in &c.nodes() {
        common::wait_for("followers to learn the leader", || {
            let s = node.status();
            s.term == term && s.leader == Some(leader)
        });
    }
    c.finish();
}

#[test]
fn leader_disconnect_then_rejoin() {
    let c = Cluster::new(3);
    let old = c.check_one_leader();
    c.one(&cmd(1), 3);

    c.disconnect(old);
    let new = c.check_leader_where(|l| l != old);
    let index = c.one(&cmd(2), 2);
    // The cut-off leader may still accept commands; they must not commit.
    let _ = c.node(old).start(cmd(999));
    c.one(&cmd(3), 2);
    // PreVote keeps the cut-off server from raising its term.
    assert!(c.node(new).get_state().0 > c.node(old).get_state().0);

    c.connect(old);
    let last = c.one(&cmd(4), 3);
    c.wait_applied(old, last);
    let logs = c.logs();
    assert_eq!(logs.apps[old].state.get(&index), Some(&cmd(2)));
    assert!(logs
        .apps
        .iter()
        .all(|a| !a.state.values().any(|v| *v == cmd(999))));
    drop(logs);
    c.finish();
}

#[test]
fn snapshot_reaches_a_lagging_server() {
    let c = Cluster::with(
        3,
        Setup {
            snapshot_every: Some(10),
            ..Setup::default()
        },
    );
    let leader = c.check_one_leader();
    c.one(&cmd(0), 3);
    let lagging = (leader + 1) % 3;
    c.disconnect(lagging);
    let before = c.logs().apps[lagging].events.len();
    for x in 1..=35 {
        c.one(&cmd(x), 2);
    }
    let leader = c.check_one_leader();
    common::wait_for("the leader to compact its log", || {
        c.node(leader).status().snapshot_index >= 30
    });

    c.connect(lagging);
    let last = c.one(&cmd(36), 3);
    c.wait_applied(lagging, last);
    let logs = c.logs();
    let events = &logs.apps[lagging].events[before..];
    // The leader may start a transfer while the server is still cut off
    // (a probe resent after `resend_ticks` finds its entries compacted),
    // pinned to the snapshot of that moment; once that one is installed
    // the entries after it are compacted too, and the latest follows. The
    // last snapshot delivered is one of the leader's latest.
    let at = events
        .iter()
        .rposition(|e| matches!(e, Event::Snapshot { .. }))
        .unwrap_or_else(|| panic!("no snapshot delivered: {events:?}"));
    let Event::Snapshot { index, term } = events[at] else {
        unreachable!()
    };
    assert!(index >= 30, "last snapshot at {index}: {events:?}");
    assert_eq!(logs.committed[&index].0, term, "snapshot term");
    assert!(
        events[..at].iter().all(|e| match e {
            Event::Command { index: i, .. } => *i <= 1,
            Event::Snapshot { index: i, term: t } => logs.committed[i].0 == *t,
        }),
        "before the last snapshot only what the server held, and earlier snapshots: {events:?}"
    );
    if let Some(Event::Command { index: next, .. }) = events.get(at + 1) {
        assert_eq!(*next, index + 1, "the first command after the snapshot");
    }
    drop(logs);
    c.finish();
}

#[test]
fn restart_from_persister_relearns_the_log() {
    let c = Cluster::with(
        3,
        Setup {
            snapshot_every: Some(5),
            ..Setup::default()
        },
    );
    c.check_one_leader();
    let mut last = 0;
    for x in 1..=8 {
        last = c.one(&cmd(x), 3);
    }
    for i in 0..3 {
        c.crash(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    // Each server gets its snapshot back first, then the committed tail,
    // from its persister alone (no leader needed yet).
    for i in 0..3 {
        c.wait_applied(i, last);
        let logs = c.logs();
        let ev = &logs.apps[i].events;
        assert!(
            matches!(ev[0], Event::Snapshot { index: 5, .. }),
            "server {i}: {ev:?}"
        );
        assert!(ev[1..]
            .iter()
            .zip(6..)
            .all(|(e, k)| matches!(e, Event::Command { index, .. } if *index == k)));
    }
    c.check_one_leader();
    let next = c.one(&cmd(9), 3);
    assert_eq!(next, last + 1);
    c.finish();
}

#[test]
fn corrupt_or_old_persister_state_refuses_to_start() {
    use raft_lab::{DecodeError, MakeError, MemPersister};
    let net = raft_lab::ChannelNetwork::new(3);
    let try_make = |state: &[u8]| {
        let p = MemPersister::new();
        p.overwrite_raft_state(state.to_vec());
        let (tx, _rx) = std::sync::mpsc::channel();
        raft_lab::make(net.ends(0), 0, p, tx).unwrap_err()
    };
    // Written by an earlier raft-lab (format 1, bincode): refused by version.
    let err = try_make(b"RLAB\x01\x03\x01\x02\x06\x04\x01\x00");
    assert!(
        matches!(
            err,
            MakeError::Corrupt(DecodeError::Version { found: 1, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("bincode"), "{err}");
    // Garbage after a current header, and bytes from somewhere else.
    let err = try_make(b"RLAB\x02 definitely not postcard");
    assert!(matches!(err, MakeError::Corrupt(_)), "{err}");
    let err = try_make(b"{\"term\": 3}");
    assert!(
        matches!(err, MakeError::Corrupt(DecodeError::BadMagic)),
        "{err}"
    );
}
