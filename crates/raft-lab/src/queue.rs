//! The messages waiting for a caller to one peer, and which of them a newer
//! message makes useless. Raft tolerates any lost message, so dropping is
//! always safe; the point is to drop what no longer matters, and never the
//! newest: when the queue must shed, superseded messages go first, then the
//! oldest.

use std::collections::VecDeque;

use raft_core::{AppendReply, Body, Message, Term};

/// Whether `new`, queued after `old` to the same peer, makes `old` useless:
/// the peer would learn nothing from `old` that `new` does not tell it, or
/// would ignore `old` by the time it arrives. Kinds not named here are never
/// superseded (nor do they supersede), so a kind the core adds later is kept
/// until a rule for it is written here.
pub(crate) fn supersedes(new: &Message, old: &Message) -> bool {
    if new.to != old.to {
        return false;
    }
    // Figure 2: a message from an older term of ours is stale; the peer
    // drops it, or answers it only to be ignored.
    if let (Some(n), Some(o)) = (own_term(new), own_term(old)) {
        if n != o {
            return n > o;
        }
    }
    let same_term = new.term == old.term;
    match (&new.body, &old.body) {
        // An older round of the same election kind (PreVote or vote; §5.2,
        // thesis §9.6), or a PreVote that has turned into the real vote.
        (Body::RequestVote { pre_vote: a, .. }, Body::RequestVote { pre_vote: b, .. }) => {
            (a == b || !a) && new.term >= old.term
        }
        // Our newest answer to the same candidate's round stands.
        (
            Body::RequestVoteReply { pre_vote: a, .. },
            Body::RequestVoteReply { pre_vote: b, .. },
        ) => a == b && new.term >= old.term,
        // A heartbeat is replaced by any newer AppendEntries of the term
        // (same leader contact, a commit index at least as new); entries by
        // a newer message of the term carrying all of them (a leader's log
        // is append-only within its term, so the entries are the same).
        (
            Body::AppendEntries {
                prev_log_index: np,
                entries: ne,
                ..
            },
            Body::AppendEntries {
                prev_log_index: op,
                entries: oe,
                ..
            },
        ) => {
            same_term
                && (oe.is_empty() || (np <= op && np + ne.len() as u64 >= op + oe.len() as u64))
        }
        // A success through a later index says all an earlier one did.
        (
            Body::AppendEntriesReply(AppendReply::Success { match_index: n }),
            Body::AppendEntriesReply(AppendReply::Success { match_index: o }),
        ) => same_term && n >= o,
        (
            Body::AppendEntriesReply(AppendReply::StaleTerm),
            Body::AppendEntriesReply(AppendReply::StaleTerm),
        ) => same_term,
        // The same snapshot chunk sent again (Figure 13).
        (
            Body::InstallSnapshot {
                meta: nm,
                offset: no,
                ..
            },
            Body::InstallSnapshot {
                meta: om,
                offset: oo,
                ..
            },
        ) => same_term && nm == om && no == oo,
        // A later position in the same snapshot's transfer.
        (
            Body::InstallSnapshotReply {
                meta: nm,
                next_offset: nn,
                installed: ni,
            },
            Body::InstallSnapshotReply {
                meta: om,
                next_offset: on,
                installed: oi,
            },
        ) => same_term && nm == om && (*ni || (!oi && nn >= on)),
        // A newer heartbeat of the term carries a commit index and a read
        // round at least as new (thesis §6.4: answering a round confirms
        // every older one), and its answer likewise.
        (Body::Heartbeat { ctx: n, .. }, Body::Heartbeat { ctx: o, .. })
        | (Body::HeartbeatReply { ctx: n }, Body::HeartbeatReply { ctx: o }) => same_term && n >= o,
        _ => false,
    }
}

/// The term the sender was in when it sent `m`, where the message says so.
/// A PreVote request carries the term it would campaign in (one more), a
/// granted PreVote reply echoes that term, and unknown kinds say nothing.
fn own_term(m: &Message) -> Option<Term> {
    match &m.body {
        Body::RequestVote { pre_vote: true, .. } => Some(m.term.saturating_sub(1)),
        Body::RequestVoteReply {
            pre_vote: true,
            granted: true,
        } => None,
        Body::RequestVote { .. }
        | Body::RequestVoteReply { .. }
        | Body::AppendEntries { .. }
        | Body::AppendEntriesReply(_)
        | Body::InstallSnapshot { .. }
        | Body::InstallSnapshotReply { .. }
        | Body::Heartbeat { .. }
        | Body::HeartbeatReply { .. }
        | Body::ReadIndex { .. }
        | Body::ReadIndexReply { .. }
        | Body::TimeoutNow => Some(m.term),
        // Kinds the core adds later: no rule until one is written above.
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// A FIFO of messages to one peer. `shed` keeps at most `cap` waiting
/// beyond those that callers on their way will take.
#[derive(Debug)]
pub(crate) struct PeerQueue {
    queue: VecDeque<Message>,
    cap: usize,
    /// Messages dropped since the start, superseded or shed.
    dropped: u64,
}

impl PeerQueue {
    pub(crate) fn new(cap: usize) -> Self {
        PeerQueue {
            queue: VecDeque::new(),
            cap: cap.max(1),
            dropped: 0,
        }
    }

    /// Appends `msg` after dropping every queued message it supersedes.
    pub(crate) fn push(&mut self, msg: Message) {
        let before = self.queue.len();
        self.queue.retain(|old| !supersedes(&msg, old));
        self.dropped += (before - self.queue.len()) as u64;
        self.queue.push_back(msg);
    }

    /// Drops the oldest messages while more than `cap` would be left
    /// waiting once `taken` of them are taken by callers already on their
    /// way. The newest message is never dropped.
    pub(crate) fn shed(&mut self, taken: usize) {
        while self.queue.len() > self.cap.saturating_add(taken).max(1) {
            if let Some(old) = self.queue.pop_front() {
                self.dropped += 1;
                tracing::debug!(
                    to = old.to,
                    kind = old.body.kind(),
                    "peer queue full; oldest dropped"
                );
            }
        }
    }

    pub(crate) fn pop(&mut self) -> Option<Message> {
        self.queue.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Entry, SnapshotMeta};

    fn msg(term: Term, body: Body) -> Message {
        Message {
            from: 1,
            to: 2,
            term,
            body,
        }
    }

    fn vote(term: Term, pre_vote: bool) -> Message {
        let body = Body::RequestVote {
            last_log_index: 5,
            last_log_term: 1,
            pre_vote,
            transfer: false,
        };
        msg(term, body)
    }

    fn vote_reply(term: Term, pre_vote: bool, granted: bool) -> Message {
        msg(term, Body::RequestVoteReply { granted, pre_vote })
    }

    /// AppendEntries after `prev` carrying `n` entries.
    fn append(term: Term, prev: u64, n: u64, commit: u64) -> Message {
        let entries = (prev + 1..=prev + n)
            .map(|i| Entry::normal(i, term, vec![]))
            .collect();
        let body = Body::AppendEntries {
            prev_log_index: prev,
            prev_log_term: term,
            entries,
            leader_commit: commit,
        };
        msg(term, body)
    }

    fn success(term: Term, match_index: u64) -> Message {
        msg(
            term,
            Body::AppendEntriesReply(AppendReply::Success { match_index }),
        )
    }

    fn conflict(term: Term, prev: u64) -> Message {
        let reply = AppendReply::Conflict {
            prev_log_index: prev,
            conflict_term: None,
            conflict_index: 1,
        };
        msg(term, Body::AppendEntriesReply(reply))
    }

    fn chunk(term: Term, index: u64, offset: u64) -> Message {
        let body = Body::InstallSnapshot {
            meta: SnapshotMeta::of(index, 1, &[0; 8]),
            conf: Default::default(),
            offset,
            data: vec![0; 4],
            done: false,
        };
        msg(term, body)
    }

    fn chunk_reply(term: Term, next_offset: u64, installed: bool) -> Message {
        let body = Body::InstallSnapshotReply {
            meta: SnapshotMeta::of(9, 1, &[0; 8]),
            next_offset,
            installed,
        };
        msg(term, body)
    }

    #[test]
    fn an_older_term_is_superseded_by_anything_newer() {
        assert!(supersedes(&vote(3, false), &append(2, 4, 3, 1)));
        assert!(supersedes(&success(3, 1), &append(2, 4, 3, 1)));
        assert!(supersedes(&append(3, 0, 0, 0), &conflict(2, 7)));
        assert!(!supersedes(&append(2, 4, 3, 1), &vote(3, false)));
        // A PreVote for term 3 is sent from term 2: it makes term-1 traffic
        // stale but not what we sent in term 2, which is still current.
        assert!(supersedes(&vote(3, true), &success(1, 4)));
        assert!(!supersedes(&vote(3, true), &success(2, 4)));
        // A granted PreVote reply says nothing of the replier's own term.
        assert!(!supersedes(&vote_reply(9, true, true), &success(2, 4)));
        assert!(supersedes(&vote_reply(3, true, false), &success(2, 4)));
    }

    #[test]
    fn election_rounds() {
        assert!(
            supersedes(&vote(4, true), &vote(4, true)),
            "a PreVote resent"
        );
        assert!(supersedes(&vote(4, false), &vote(4, true)), "PreVote won");
        assert!(!supersedes(&vote(4, true), &vote(4, false)));
        assert!(supersedes(
            &vote_reply(4, false, true),
            &vote_reply(4, false, true)
        ));
        assert!(!supersedes(
            &vote_reply(4, true, true),
            &vote_reply(4, false, true)
        ));
        assert!(!supersedes(
            &vote_reply(3, true, false),
            &vote_reply(4, true, true)
        ));
    }

    #[test]
    fn a_newer_heartbeat_round_supersedes_an_older_one() {
        let beat = |term, ctx| msg(term, Body::Heartbeat { commit: 3, ctx });
        let ack = |term, ctx| msg(term, Body::HeartbeatReply { ctx });
        assert!(supersedes(&beat(2, 7), &beat(2, 6)));
        assert!(!supersedes(&beat(2, 6), &beat(2, 7)));
        assert!(supersedes(&beat(3, 1), &beat(2, 9)), "a newer term");
        assert!(supersedes(&ack(2, 7), &ack(2, 6)));
        let read = |ctx| msg(2, Body::ReadIndex { ctx });
        assert!(!supersedes(&read(2), &read(1)), "each read is its own");
        assert!(!supersedes(&append(2, 5, 1, 3), &beat(2, 6)));
    }

    #[test]
    fn heartbeats_and_covered_entries_are_superseded() {
        let heartbeat = append(2, 5, 0, 3);
        assert!(supersedes(&append(2, 5, 0, 4), &heartbeat));
        assert!(supersedes(&append(2, 5, 2, 4), &heartbeat));
        // Entries 6..=8 are covered by 4..=9, not by 6..=7 or 7..=9.
        let entries = append(2, 5, 3, 3);
        assert!(supersedes(&append(2, 3, 6, 4), &entries));
        assert!(supersedes(&append(2, 5, 3, 3), &entries));
        assert!(!supersedes(&append(2, 5, 2, 4), &entries));
        assert!(!supersedes(&append(2, 6, 3, 4), &entries));
        assert!(
            !supersedes(&heartbeat, &entries),
            "a heartbeat never replaces entries"
        );
    }

    #[test]
    fn replies_and_snapshot_chunks() {
        assert!(supersedes(&success(2, 7), &success(2, 5)));
        assert!(!supersedes(&success(2, 5), &success(2, 7)));
        assert!(
            !supersedes(&success(2, 9), &conflict(2, 4)),
            "rejections are kept"
        );
        assert!(!supersedes(&conflict(2, 3), &conflict(2, 4)));
        assert!(supersedes(&chunk(2, 9, 4), &chunk(2, 9, 4)));
        assert!(!supersedes(&chunk(2, 9, 8), &chunk(2, 9, 4)));
        assert!(!supersedes(&chunk(2, 12, 0), &chunk(2, 9, 0)));
        assert!(supersedes(
            &chunk_reply(2, 8, false),
            &chunk_reply(2, 4, false)
        ));
        assert!(supersedes(
            &chunk_reply(2, 0, true),
            &chunk_reply(2, 4, false)
        ));
        assert!(!supersedes(
            &chunk_reply(2, 4, false),
            &chunk_reply(2, 0, true)
        ));
    }

    #[test]
    fn only_messages_to_the_same_peer() {
        let mut other = vote(9, false);
        other.to = 3;
        assert!(!supersedes(&other, &vote(4, false)));
    }

    #[test]
    fn a_full_queue_drops_superseded_then_oldest_never_the_newest() {
        let mut q = PeerQueue::new(3);
        q.push(append(2, 5, 0, 3)); // heartbeat
        q.push(conflict(2, 1));
        q.push(append(2, 5, 2, 3)); // replaces the heartbeat
        assert_eq!(q.len(), 2);
        q.push(append(2, 7, 1, 3));
        q.push(conflict(2, 2));
        q.shed(1); // one caller is coming: four may stay
        assert_eq!(q.len(), 4);
        q.shed(0); // over the cap: the oldest goes
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped(), 2);
        let left: Vec<Message> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            left,
            vec![append(2, 5, 2, 3), append(2, 7, 1, 3), conflict(2, 2)]
        );
        let mut q = PeerQueue::new(1);
        for t in 1..=5 {
            q.push(conflict(t, 1));
        }
        assert_eq!(q.len(), 1, "each newer term supersedes the older");
        for prev in 1..=5 {
            q.push(conflict(6, prev));
        }
        q.shed(0);
        assert_eq!(q.pop(), Some(conflict(6, 5)));
    }
}
