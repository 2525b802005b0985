//! The application side, as the lab's applier does it: record what each
//! node applies (index -> command), insist on index order with no gap, and
//! check that no two nodes ever apply different commands at one index
//! (state-machine safety). It also makes and restores the snapshots.
//!
//! Only [`EntryKind::Normal`] entries are commands; other entries advance
//! the applied index and are otherwise skipped.

use std::collections::BTreeMap;

use raft_core::{Entry, EntryKind, Index, NodeId, Snapshot};

/// What a snapshot holds: like the lab's, every command applied through its
/// index. Encoded as `index, count, (index, len, bytes)*`, little-endian u64s.
struct SnapshotData {
    index: Index,
    commands: Vec<(Index, Vec<u8>)>,
}

fn encode(index: Index, commands: &[(Index, &[u8])]) -> Vec<u8> {
    let bytes: usize = commands.iter().map(|(_, c)| c.len() + 16).sum();
    let mut out = Vec::with_capacity(16 + bytes);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&(commands.len() as u64).to_le_bytes());
    for &(i, c) in commands {
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&(c.len() as u64).to_le_bytes());
        out.extend_from_slice(c);
    }
    out
}

fn decode(mut data: &[u8]) -> Option<SnapshotData> {
    let u64_at = |data: &mut &[u8]| -> Option<u64> {
        let (head, rest) = data.split_at_checked(8)?;
        *data = rest;
        Some(u64::from_le_bytes(head.try_into().ok()?))
    };
    let index = u64_at(&mut data)?;
    let count = u64_at(&mut data)?;
    let mut commands = Vec::new();
    for _ in 0..count {
        let i = u64_at(&mut data)?;
        let len = usize::try_from(u64_at(&mut data)?).ok()?;
        let (c, rest) = data.split_at_checked(len)?;
        commands.push((i, c.to_vec()));
        data = rest;
    }
    data.is_empty().then_some(SnapshotData { index, commands })
}

/// One node's application.
#[derive(Clone, Debug, Default)]
pub struct AppState {
    /// Last index applied (or restored) by the current incarnation.
    pub last_applied: Index,
    /// Every command this node applied, kept across crashes like the lab's
    /// `cfg.logs[i]` (a restore from a snapshot replaces it).
    pub log: BTreeMap<Index, Vec<u8>>,
}

/// The applications of all nodes plus the cluster-wide agreement record.
#[derive(Debug, Default)]
pub struct Apps {
    nodes: Vec<AppState>,
    /// Hash of the command first applied at each index, by any node.
    agreed: BTreeMap<Index, u64>,
}

fn digest(data: &[u8]) -> u64 {
    crate::invariants::fnv1a(data)
}

impl Apps {
    /// Applications for nodes `1..=n`, nothing applied.
    pub fn new(n: usize) -> Self {
        Apps {
            nodes: vec![AppState::default(); n],
            agreed: BTreeMap::new(),
        }
    }

    /// An application for a server that joined: node `n + 1`.
    pub fn add_node(&mut self) {
        self.nodes.push(AppState::default());
    }

    /// Node `id`'s application.
    pub fn node(&self, id: NodeId) -> &AppState {
        &self.nodes[id as usize - 1]
    }

    fn agree(&mut self, index: Index, data: &[u8]) -> Result<(), String> {
        let d = digest(data);
        match self.agreed.get(&index) {
            Some(&first) if first != d => Err(format!(
                "applied a different command at index {index} than another node did \
                 (state-machine safety)"
            )),
            Some(_) => Ok(()),
            None => {
                self.agreed.insert(index, d);
                Ok(())
            }
        }
    }

    /// Applies one committed entry; it must come right after the last one.
    pub fn apply(&mut self, id: NodeId, entry: &Entry) -> Result<(), String> {
        let last = self.node(id).last_applied;
        if entry.index != last + 1 {
            return Err(format!(
                "applied index {} out of order (last applied {last})",
                entry.index
            ));
        }
        if entry.kind == EntryKind::Normal {
            self.agree(entry.index, &entry.data)?;
            self.nodes[id as usize - 1]
                .log
                .insert(entry.index, entry.data.to_vec());
        }
        self.nodes[id as usize - 1].last_applied = entry.index;
        Ok(())
    }

    /// Restores node `id` from a snapshot handed over by its leader: it must
    /// move the application forward.
    pub fn install(&mut self, id: NodeId, snapshot: &Snapshot) -> Result<(), String> {
        let last = self.node(id).last_applied;
        if snapshot.meta.index <= last {
            return Err(format!(
                "snapshot at {} would move the application back from {last}",
                snapshot.meta.index
            ));
        }
        self.restore(id, snapshot)
    }

    /// A new incarnation of node `id` starts from its stored snapshot.
    pub fn restart(&mut self, id: NodeId, snapshot: &Snapshot) -> Result<(), String> {
        self.nodes[id as usize - 1].last_applied = 0;
        if snapshot.meta.index > 0 {
            self.restore(id, snapshot)?;
        }
        Ok(())
    }

    fn restore(&mut self, id: NodeId, snapshot: &Snapshot) -> Result<(), String> {
        let Some(data) = decode(&snapshot.data) else {
            return Err(format!(
                "snapshot at {} does not decode",
                snapshot.meta.index
            ));
        };
        if data.index != snapshot.meta.index {
            return Err(format!(
                "snapshot data is for index {} but its metadata says {}",
                data.index, snapshot.meta.index
            ));
        }
        let mut log = BTreeMap::new();
        for (index, cmd) in data.commands {
            if index > data.index {
                return Err(format!("snapshot at {} holds index {index}", data.index));
            }
            self.agree(index, &cmd)?;
            log.insert(index, cmd);
        }
        let app = &mut self.nodes[id as usize - 1];
        app.log = log;
        app.last_applied = data.index;
        Ok(())
    }

    /// The snapshot image of node `id` through `index` (already applied).
    pub fn snapshot_data(&self, id: NodeId, index: Index) -> Vec<u8> {
        let commands: Vec<(Index, &[u8])> = self
            .node(id)
            .log
            .range(..=index)
            .map(|(&i, c)| (i, c.as_slice()))
            .collect();
        encode(index, &commands)
    }

    /// The lab's `nCommitted`: how many nodes applied `index`, and the command.
    pub fn n_committed(&self, index: Index) -> (usize, Option<&[u8]>) {
        let mut count = 0;
        let mut cmd = None;
        for app in &self.nodes {
            if let Some(c) = app.log.get(&index) {
                count += 1;
                cmd = Some(c.as_slice());
            }
        }
        (count, cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_agreement_and_snapshots() {
        let mut apps = Apps::new(2);
        apps.apply(1, &Entry::normal(1, 1, vec![1])).unwrap();
        assert!(apps.apply(1, &Entry::normal(3, 1, vec![3])).is_err(), "gap");
        apps.apply(1, &Entry::normal(2, 1, vec![2])).unwrap();
        apps.apply(2, &Entry::normal(1, 1, vec![1])).unwrap();
        assert!(
            apps.apply(2, &Entry::normal(2, 2, vec![9])).is_err(),
            "disagrees"
        );
        assert_eq!(apps.n_committed(1), (2, Some(&[1u8][..])));

        let snap = Snapshot::new(2, 1, apps.snapshot_data(1, 2));
        apps.restart(1, &snap).unwrap();
        assert_eq!(apps.node(1).last_applied, 2);
        assert!(
            apps.apply(1, &Entry::normal(2, 1, vec![2])).is_err(),
            "below snapshot"
        );
        let mut fresh = Apps::new(2);
        fresh.install(2, &snap).unwrap();
        assert!(
            fresh.install(2, &snap).is_err(),
            "snapshot must move forward"
        );
    }
}
