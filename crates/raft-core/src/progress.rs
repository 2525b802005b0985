//! What a leader knows of each follower: Figure 2's `nextIndex` and
//! `matchIndex`, plus how it is sending to it.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::types::{Index, Snapshot};

/// How the leader sends entries to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Where the logs meet is unknown: one AppendEntries at a time, the next
    /// only after a reply or a heartbeat interval (§5.3 backtracking).
    Probe,
    /// The logs meet at `match_index`: entries stream out without waiting,
    /// up to the in-flight window (pipelining).
    Replicate,
    /// The follower needs entries the leader compacted: a snapshot is on its
    /// way (§7).
    Snapshot,
}

/// The leader's view of one follower.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Figure 2 `matchIndex`: highest index known to be replicated there.
    pub match_index: Index,
    /// Figure 2 `nextIndex`: next entry to send.
    pub next_index: Index,
    pub state: ProgressState,
    /// In Probe: a message was sent and neither a reply nor a heartbeat came since.
    pub probe_sent: bool,
    /// In Replicate: last index of each AppendEntries in flight, oldest first.
    pub inflight: VecDeque<Index>,
    /// Heard from this follower since the last CheckQuorum round.
    pub recent_active: bool,
    /// In Snapshot: the transfer under way.
    pub snapshot: Option<SnapshotSend>,
}

/// A snapshot transfer to one follower. The snapshot is pinned when the
/// transfer starts, so newer compactions on the leader never restart it.
#[derive(Clone, Debug)]
pub struct SnapshotSend {
    pub snapshot: Arc<Snapshot>,
    /// The offset the follower asked for last.
    pub offset: u64,
    /// A reply came since the last heartbeat (else the heartbeat resends).
    pub heard: bool,
}

impl Progress {
    /// A fresh follower view for a new leader: probe from just past its log.
    pub fn new(next_index: Index) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: true,
            snapshot: None,
        }
    }

    /// Whether the leader should hold back new AppendEntries for now.
    pub fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= max_inflight,
            ProgressState::Snapshot => true,
        }
    }

    /// Records a successful reply through `index`; true if `match_index` grew.
    pub fn update(&mut self, index: Index) -> bool {
        let grew = index > self.match_index;
        if grew {
            self.match_index = index;
        }
        self.next_index = self.next_index.max(index + 1);
        while self.inflight.front().is_some_and(|&i| i <= index) {
            self.inflight.pop_front();
        }
        grew
    }

    /// Switches to streaming, just after the known match.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.inflight.clear();
        self.probe_sent = false;
        self.snapshot = None;
    }

    /// Switches to probing from `next_index`.
    pub fn become_probe(&mut self, next_index: Index) {
        self.state = ProgressState::Probe;
        self.next_index = next_index.max(self.match_index + 1);
        self.inflight.clear();
        self.probe_sent = false;
        self.snapshot = None;
    }

    /// Switches to sending `snapshot` from its start.
    pub fn become_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.state = ProgressState::Snapshot;
        self.inflight.clear();
        self.probe_sent = false;
        self.snapshot = Some(SnapshotSend {
            snapshot,
            offset: 0,
            heard: true,
        });
    }

    /// Index of the snapshot being sent, if any.
    pub fn snapshot_index(&self) -> Option<Index> {
        self.snapshot.as_ref().map(|s| s.snapshot.meta.index)
    }

    /// Records an AppendEntries sent through `last` (pipelined in Replicate).
    pub fn sent(&mut self, last: Index) {
        match self.state {
            ProgressState::Replicate => {
                if last >= self.next_index {
                    self.next_index = last + 1;
                    self.inflight.push_back(last);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_window_fills_and_drains() {
        let mut p = Progress::new(1);
        p.become_replicate();
        p.sent(3);
        p.sent(5);
        assert_eq!(p.next_index, 6);
        assert!(p.is_paused(2));
        assert!(p.update(3));
        assert!(!p.is_paused(2));
        assert!(!p.update(2), "a late reply never lowers match");
        assert_eq!((p.match_index, p.next_index), (3, 6));
    }

    #[test]
    fn probe_never_goes_below_match() {
        let mut p = Progress::new(10);
        p.update(4);
        p.become_probe(1);
        assert_eq!(p.next_index, 5);
        p.sent(9);
        assert!(p.is_paused(8));
    }
}
