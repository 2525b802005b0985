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
    /// The oldest message still unanswered (Replicate: the front of
    /// `inflight`; Probe: the probe) and for how many ticks it has been, to
    /// tell a lost message or reply from a slow one.
    pub unanswered: Option<(Index, u32)>,
}

/// A snapshot transfer to one follower. The snapshot is pinned when the
/// transfer starts, so once the follower answers, newer compactions on the
/// leader never restart it (one never answered may move to a newer one).
#[derive(Clone, Debug)]
pub struct SnapshotSend {
    pub snapshot: Arc<Snapshot>,
    /// The offset the follower asked for last.
    pub offset: u64,
    /// A reply came since the last heartbeat (else the heartbeat resends).
    pub heard: bool,
    /// The follower has answered this transfer at least once.
    pub answered: bool,
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
            unanswered: None,
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
    /// A late or duplicated reply never lowers what is known: Figure 2's
    /// matchIndex "increases monotonically".
    pub fn maybe_update(&mut self, index: Index) -> bool {
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

    /// A rejection of the AppendEntries sent after `rejected` (its
    /// `prev_log_index`), with `hint` the next index to try (§5.3,
    /// backtracking). Returns false when the rejection is stale and changes
    /// nothing:
    /// - in Replicate, a rejection at or below `match_index` answers an older
    ///   message: the logs are already known to meet there;
    /// - in Probe, only the answer to the probe in flight (sent after
    ///   `next_index - 1`) counts; any other is a duplicate or overtaken;
    /// - in Snapshot, the follower waits for the snapshot, not for entries.
    ///
    /// Otherwise the follower goes (back) to Probe from the hint, never below
    /// `match_index + 1` and never past `rejected`.
    pub fn maybe_decr_to(&mut self, rejected: Index, hint: Index) -> bool {
        let fresh = match self.state {
            ProgressState::Replicate => rejected > self.match_index,
            ProgressState::Probe => rejected.checked_add(1) == Some(self.next_index),
            ProgressState::Snapshot => false,
        };
        if !fresh || rejected == 0 {
            return false;
        }
        self.become_probe(hint.clamp(1, rejected));
        true
    }

    /// Heard from the follower between two heartbeats (a heartbeat reply):
    /// a probe lost on the way may go again.
    pub fn resume(&mut self) {
        self.recent_active = true;
        if self.state == ProgressState::Probe {
            self.probe_sent = false;
            self.unanswered = None;
        }
    }

    /// Called every tick: whether the oldest message in flight has now gone
    /// `resend_ticks` ticks without an answer. A reply comes within a round
    /// trip, so the message or its reply is presumed lost and the follower
    /// may be sent to again: in Replicate it goes back to Probe from
    /// `match_index + 1` (the window is dropped), in Probe the probe may go
    /// again. A later reply to the lost message is then a duplicate, which
    /// `maybe_update` and `maybe_decr_to` already take as such.
    pub fn tick_unanswered(&mut self, resend_ticks: u32) -> bool {
        let oldest = match self.state {
            ProgressState::Replicate => self.inflight.front().copied(),
            ProgressState::Probe if self.probe_sent => Some(self.next_index),
            _ => None,
        };
        let Some(oldest) = oldest else {
            self.unanswered = None;
            return false;
        };
        let waited = match self.unanswered {
            Some((i, n)) if i == oldest => n + 1,
            _ => 1,
        };
        if waited < resend_ticks {
            self.unanswered = Some((oldest, waited));
            return false;
        }
        match self.state {
            ProgressState::Replicate => self.become_probe(self.match_index + 1),
            _ => {
                self.probe_sent = false;
                self.unanswered = None;
            }
        }
        true
    }

    /// Switches to streaming, just after the known match.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.inflight.clear();
        self.probe_sent = false;
        self.snapshot = None;
        self.unanswered = None;
    }

    /// Switches to probing from `next_index`.
    pub fn become_probe(&mut self, next_index: Index) {
        self.state = ProgressState::Probe;
        self.next_index = next_index.max(self.match_index + 1);
        self.inflight.clear();
        self.probe_sent = false;
        self.snapshot = None;
        self.unanswered = None;
    }

    /// Switches to sending `snapshot` from its start.
    pub fn become_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.state = ProgressState::Snapshot;
        self.inflight.clear();
        self.probe_sent = false;
        self.unanswered = None;
        self.snapshot = Some(SnapshotSend {
            snapshot,
            offset: 0,
            heard: true,
            answered: false,
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
        assert!(p.maybe_update(3));
        assert!(!p.is_paused(2));
        assert!(!p.maybe_update(2), "a late reply never lowers match");
        assert_eq!((p.match_index, p.next_index), (3, 6));
    }

    /// Figure 2: "If successful: update nextIndex and matchIndex for
    /// follower" — the next entry to send is the one after the match, even
    /// when a probe carried entries past `next_index`. The answer says
    /// whether the match grew (a duplicate reply leaves it, and the commit
    /// index, where they were).
    #[test]
    fn a_success_moves_next_past_the_match_and_says_if_it_grew() {
        let mut p = Progress::new(4);
        p.sent(7);
        assert!(p.maybe_update(7));
        assert_eq!((p.match_index, p.next_index), (7, 8));
        assert!(!p.maybe_update(7), "a duplicate of the same reply");
        assert_eq!((p.match_index, p.next_index), (7, 8));
    }

    #[test]
    fn probe_never_goes_below_match() {
        let mut p = Progress::new(10);
        p.maybe_update(4);
        p.become_probe(1);
        assert_eq!(p.next_index, 5);
        p.sent(9);
        assert!(p.is_paused(8));
    }

    #[test]
    fn replicate_ignores_rejections_at_or_below_match() {
        let mut p = Progress::new(1);
        p.maybe_update(5);
        p.become_replicate();
        p.sent(8);
        // An old probe after index 4 was answered late: the logs meet at 5.
        assert!(!p.maybe_decr_to(4, 2));
        // One sent after index 5 itself: the follower holds 5 as we do.
        assert!(!p.maybe_decr_to(5, 2));
        assert_eq!(p.state, ProgressState::Replicate);
        assert_eq!(p.next_index, 9, "the window is untouched");
        // A rejection past match is real: entries were lost, probe again.
        assert!(p.maybe_decr_to(7, 6));
        assert_eq!((p.state, p.next_index), (ProgressState::Probe, 6));
    }

    #[test]
    fn probe_counts_only_the_answer_to_the_probe_in_flight() {
        let mut p = Progress::new(10);
        p.sent(9);
        assert!(!p.maybe_decr_to(7, 3), "answers an older probe");
        assert!(p.is_paused(8));
        assert!(p.maybe_decr_to(9, 4));
        assert_eq!(p.next_index, 4);
        assert!(!p.is_paused(8), "the next probe may go at once");
        assert!(!p.maybe_decr_to(9, 2), "a duplicate of the same rejection");
        assert_eq!(p.next_index, 4);
    }

    #[test]
    fn hints_are_clamped_between_match_and_the_rejected_index() {
        let mut p = Progress::new(10);
        p.maybe_update(3);
        p.become_probe(10);
        p.sent(9);
        assert!(p.maybe_decr_to(9, 0));
        assert_eq!(p.next_index, 4, "never below match + 1");
        p.sent(3);
        assert!(p.maybe_decr_to(3, 50));
        assert_eq!(p.next_index, 4, "never past the rejected index + 1");
        let mut s = Progress::new(5);
        s.become_snapshot(Arc::new(Snapshot::default()));
        assert!(
            !s.maybe_decr_to(4, 1),
            "a follower being sent a snapshot waits for it"
        );
    }

    #[test]
    fn a_message_unanswered_for_resend_ticks_is_presumed_lost() {
        let mut p = Progress::new(1);
        p.become_replicate();
        p.sent(4);
        assert!(!p.tick_unanswered(3), "one tick");
        assert!(!p.tick_unanswered(3), "two ticks");
        p.sent(8);
        p.maybe_update(4);
        assert!(
            !p.tick_unanswered(3),
            "the oldest was answered: 8 waits anew"
        );
        assert!(!p.tick_unanswered(3));
        assert_eq!(p.state, ProgressState::Replicate);
        assert!(p.tick_unanswered(3), "8 unanswered for three ticks");
        assert_eq!((p.state, p.next_index), (ProgressState::Probe, 5));
        assert!(!p.is_paused(8), "the probe may go at once");
        assert!(!p.tick_unanswered(1), "nothing in flight, nothing lost");
    }

    #[test]
    fn a_lost_probe_may_go_again_after_resend_ticks() {
        let mut p = Progress::new(10);
        p.sent(9);
        assert!(!p.tick_unanswered(2));
        assert!(p.is_paused(8));
        assert!(p.tick_unanswered(2));
        assert!(!p.is_paused(8), "the probe may go again");
        assert_eq!(p.next_index, 10);
        p.sent(9);
        assert!(p.maybe_decr_to(9, 5));
        p.sent(4);
        assert!(!p.tick_unanswered(2), "a new probe waits anew");
        p.resume();
        assert!(!p.is_paused(8), "a heartbeat reply lets it go too");
        p.sent(4);
        assert!(!p.tick_unanswered(2), "and the wait starts over");
        let mut s = Progress::new(5);
        s.become_snapshot(Arc::new(Snapshot::default()));
        assert!(!s.tick_unanswered(1), "snapshots have their own resend");
    }
}
