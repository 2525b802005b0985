//! The WAL as the Storage of a raft-core Node: a single-node cluster commits
//! commands, snapshots, restarts from disk alone, and carries on.

use raft_core::{persist, Config, Node, Storage};
use raft_wal::{Wal, WalOptions};

fn opts() -> WalOptions {
    WalOptions {
        segment_bytes: 2048,
        ..WalOptions::default()
    }
}

/// Drives `node` until it leads, then proposes `cmds`, persisting and
/// applying every Ready; returns what was applied.
fn run(node: &mut Node<Wal>, cmds: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut applied = Vec::new();
    let pump = |node: &mut Node<Wal>, applied: &mut Vec<Vec<u8>>| {
        while node.has_ready() {
            let rd = node.ready().unwrap();
            persist(node.storage_mut(), &rd).unwrap();
            applied.extend(
                rd.committed_entries
                    .iter()
                    .filter(|e| !e.data.is_empty())
                    .map(|e| e.data.to_vec()),
            );
            node.advance();
        }
    };
    pump(node, &mut applied);
    while !node.is_leader() {
        node.tick().unwrap();
        pump(node, &mut applied);
    }
    for c in cmds {
        node.propose(c.clone()).unwrap();
        pump(node, &mut applied);
    }
    applied
}

#[test]
fn a_node_recovers_from_the_wal_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cmds: Vec<Vec<u8>> = (0..200u32)
        .map(|i| format!("cmd-{i}").into_bytes())
        .collect();

    let mut node = Node::new(
        Config::new(1, vec![1]),
        Wal::open(dir.path(), opts()).unwrap(),
    )
    .unwrap();
    assert_eq!(run(&mut node, &cmds[..150]), cmds[..150]);
    let (term, last) = (node.term(), node.last_index());
    // Snapshot at the applied index: the log before it goes, segment by segment.
    node.snapshot(last - 10, b"state".to_vec()).unwrap();
    run(&mut node, &[]);
    assert_eq!(node.storage().first_index(), last - 9);
    drop(node);

    let wal = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!(wal.snapshot().unwrap().data, b"state");
    let mut node = Node::new(Config::new(1, vec![1]), wal).unwrap();
    assert_eq!(node.term(), term);
    assert_eq!(node.last_index(), last);
    // The restarted node re-applies what follows its snapshot, then goes on.
    let applied = run(&mut node, &cmds[150..]);
    assert_eq!(applied[..10], cmds[140..150]);
    assert_eq!(applied[10..], cmds[150..]);
}
