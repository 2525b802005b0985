//! The door: every message from a peer is checked here once, before any
//! handler trusts a term, an index or a length in it. A message that no
//! correct peer could have sent is refused (and counted), never half-handled.

use std::fmt;

use crate::message::{AppendReply, Body, Message};
use crate::types::{Index, Term};

/// The largest term a peer may claim. Honest clusters never get near it
/// (2^63 elections), and the headroom means `term + 1` can never overflow.
pub const MAX_TERM: Term = u64::MAX >> 1;
/// The largest index a peer may claim; `index + 1` can never overflow.
pub const MAX_INDEX: Index = u64::MAX >> 1;

/// Why a message was refused. Counted in [`Status`](crate::Status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// A term above [`MAX_TERM`].
    TermTooLarge,
    /// An index, offset or length above [`MAX_INDEX`].
    IndexTooLarge,
    /// Sender id 0, or a message to itself.
    BadAddress,
    /// AppendEntries whose entries do not follow `prev_log_index` one by one.
    EntriesNotContiguous,
    /// A log term above the message's term, or terms going down along the log.
    LogTermOutOfOrder,
    /// A snapshot that is empty or ends in a term after the sender's.
    BadSnapshotMeta,
    /// A snapshot chunk or reply outside the snapshot's length.
    ChunkOutOfRange,
    /// A conflict hint past the index it answers.
    BadConflictHint,
    /// A leader's message reached a leader of the same term: two leaders in
    /// one term cannot happen in a correct cluster (§5.2, election safety).
    SameTermLeader,
    /// A complete snapshot whose bytes do not match its length and checksum.
    SnapshotChecksum,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::TermTooLarge => "term too large",
            Rejection::IndexTooLarge => "index too large",
            Rejection::BadAddress => "bad sender or receiver id",
            Rejection::EntriesNotContiguous => "entries do not follow prev_log_index",
            Rejection::LogTermOutOfOrder => "log terms out of order",
            Rejection::BadSnapshotMeta => "bad snapshot metadata",
            Rejection::ChunkOutOfRange => "snapshot chunk outside the snapshot",
            Rejection::BadConflictHint => "conflict hint past the rejected index",
            Rejection::SameTermLeader => "a leader's message to a leader of the same term",
            Rejection::SnapshotChecksum => "snapshot bytes do not match length and checksum",
        })
    }
}

fn index_ok(i: Index) -> Result<(), Rejection> {
    (i <= MAX_INDEX)
        .then_some(())
        .ok_or(Rejection::IndexTooLarge)
}

/// Checks what a message claims, without looking at the receiver's state.
pub fn check(m: &Message) -> Result<(), Rejection> {
    if m.from == 0 || m.from == m.to {
        return Err(Rejection::BadAddress);
    }
    if m.term > MAX_TERM {
        return Err(Rejection::TermTooLarge);
    }
    match &m.body {
        Body::RequestVote {
            last_log_index,
            last_log_term,
            ..
        } => {
            index_ok(*last_log_index)?;
            // A candidate's log holds no entry of a term after its campaign's.
            if *last_log_term > m.term {
                return Err(Rejection::LogTermOutOfOrder);
            }
        }
        Body::RequestVoteReply { .. } | Body::HeartbeatReply { .. } | Body::ReadIndex { .. } => {}
        Body::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
        } => {
            index_ok(*prev_log_index)?;
            index_ok(*leader_commit)?;
            index_ok(prev_log_index.saturating_add(entries.len() as Index))?;
            if *prev_log_term > m.term {
                return Err(Rejection::LogTermOutOfOrder);
            }
            let mut last_term = *prev_log_term;
            for (k, e) in entries.iter().enumerate() {
                if e.index != prev_log_index + 1 + k as Index {
                    return Err(Rejection::EntriesNotContiguous);
                }
                // Terms never go down along a log, and no entry is newer
                // than the leader that sends it.
                if e.term < last_term || e.term > m.term {
                    return Err(Rejection::LogTermOutOfOrder);
                }
                last_term = e.term;
            }
        }
        Body::AppendEntriesReply(reply) => match *reply {
            AppendReply::Success { match_index } => index_ok(match_index)?,
            AppendReply::Conflict {
                prev_log_index,
                conflict_term,
                conflict_index,
            } => {
                index_ok(prev_log_index)?;
                if conflict_index > prev_log_index.saturating_add(1) {
                    return Err(Rejection::BadConflictHint);
                }
                if conflict_term.is_some_and(|t| t > m.term) {
                    return Err(Rejection::LogTermOutOfOrder);
                }
            }
            AppendReply::StaleTerm => {}
        },
        Body::InstallSnapshot {
            meta,
            conf,
            offset,
            data,
            done,
        } => {
            index_ok(meta.index)?;
            index_ok(meta.size)?;
            if meta.index == 0 || meta.term == 0 || meta.term > m.term {
                return Err(Rejection::BadSnapshotMeta);
            }
            if !conf_ok(conf) {
                return Err(Rejection::BadSnapshotMeta);
            }
            let end = offset.saturating_add(data.len() as u64);
            if end > meta.size || *done != (end == meta.size) {
                return Err(Rejection::ChunkOutOfRange);
            }
        }
        Body::InstallSnapshotReply {
            meta, next_offset, ..
        } => {
            index_ok(meta.index)?;
            if *next_offset > meta.size {
                return Err(Rejection::ChunkOutOfRange);
            }
        }
        Body::Heartbeat { commit, .. } => index_ok(*commit)?,
        Body::ReadIndexReply { index, .. } => index_ok(*index)?,
        Body::TimeoutNow => {}
    }
    Ok(())
}

/// A configuration a snapshot may carry: strictly sorted lists without id
/// 0, and voters (an empty one stands for "the bootstrap voters").
fn conf_ok(conf: &crate::conf::ConfState) -> bool {
    let sorted = |v: &[u64]| v.windows(2).all(|w| w[0] < w[1]) && v.first() != Some(&0);
    sorted(&conf.voters)
        && sorted(&conf.learners)
        && sorted(&conf.voters_outgoing)
        && (conf.voters_outgoing.is_empty() || !conf.voters.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Entry, SnapshotMeta};

    fn m(term: Term, body: Body) -> Message {
        Message {
            from: 2,
            to: 1,
            term,
            body,
        }
    }

    fn append(prev: (Index, Term), entries: &[(Index, Term)]) -> Body {
        Body::AppendEntries {
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries: entries
                .iter()
                .map(|&(i, t)| Entry::normal(i, t, vec![]))
                .collect(),
            leader_commit: 0,
        }
    }

    #[test]
    fn terms_and_indices_near_the_top_are_refused() {
        let hb = |commit| Body::Heartbeat { commit, ctx: 0 };
        assert_eq!(check(&m(MAX_TERM, hb(0))), Ok(()));
        assert_eq!(check(&m(MAX_TERM + 1, hb(0))), Err(Rejection::TermTooLarge));
        assert_eq!(check(&m(1, hb(u64::MAX))), Err(Rejection::IndexTooLarge));
        let reply = Body::AppendEntriesReply(AppendReply::Success {
            match_index: u64::MAX,
        });
        assert_eq!(check(&m(1, reply)), Err(Rejection::IndexTooLarge));
    }

    #[test]
    fn entries_must_follow_prev_with_sane_terms() {
        assert_eq!(check(&m(3, append((4, 2), &[(5, 2), (6, 3)]))), Ok(()));
        assert_eq!(
            check(&m(3, append((4, 2), &[(6, 2)]))),
            Err(Rejection::EntriesNotContiguous)
        );
        assert_eq!(
            check(&m(3, append((4, 2), &[(5, 4)]))),
            Err(Rejection::LogTermOutOfOrder),
            "an entry newer than its leader"
        );
        assert_eq!(
            check(&m(3, append((4, 2), &[(5, 1)]))),
            Err(Rejection::LogTermOutOfOrder),
            "terms going down"
        );
        assert_eq!(
            check(&m(3, append((u64::MAX - 1, 2), &[(u64::MAX, 2)]))),
            Err(Rejection::IndexTooLarge)
        );
    }

    #[test]
    fn snapshot_chunks_stay_inside_the_snapshot() {
        let meta = SnapshotMeta::of(5, 2, b"0123456789");
        let chunk = |offset: u64, data: &[u8], done| Body::InstallSnapshot {
            meta,
            conf: Default::default(),
            offset,
            data: data.to_vec(),
            done,
        };
        assert_eq!(check(&m(2, chunk(0, b"01234", false))), Ok(()));
        assert_eq!(check(&m(2, chunk(5, b"56789", true))), Ok(()));
        assert_eq!(
            check(&m(2, chunk(8, b"89xx", true))),
            Err(Rejection::ChunkOutOfRange)
        );
        assert_eq!(
            check(&m(2, chunk(5, b"56789", false))),
            Err(Rejection::ChunkOutOfRange),
            "the last chunk must say so"
        );
        assert_eq!(
            check(&m(1, chunk(0, b"01234", false))),
            Err(Rejection::BadSnapshotMeta),
            "a snapshot from a term after the sender's"
        );
        for (index, term) in [(0, 2), (5, 0)] {
            let meta = SnapshotMeta::of(index, term, b"0123456789");
            let body = Body::InstallSnapshot {
                meta,
                conf: Default::default(),
                offset: 0,
                data: b"0123456789".to_vec(),
                done: true,
            };
            assert_eq!(
                check(&m(2, body)),
                Err(Rejection::BadSnapshotMeta),
                "no snapshot has index {index} and term {term}"
            );
        }
    }

    #[test]
    fn conflict_hints_point_back() {
        let conflict = |prev, term, index| {
            Body::AppendEntriesReply(AppendReply::Conflict {
                prev_log_index: prev,
                conflict_term: term,
                conflict_index: index,
            })
        };
        assert_eq!(check(&m(3, conflict(9, None, 6))), Ok(()));
        assert_eq!(
            check(&m(3, conflict(9, None, 10))),
            Ok(()),
            "just past the rejected index: nothing to skip"
        );
        assert_eq!(
            check(&m(3, conflict(9, None, 11))),
            Err(Rejection::BadConflictHint)
        );
        assert_eq!(
            check(&m(3, conflict(9, Some(4), 2))),
            Err(Rejection::LogTermOutOfOrder)
        );
    }

    #[test]
    fn senders_must_be_real_and_other_than_the_receiver() {
        let hb = Body::Heartbeat { commit: 0, ctx: 0 };
        let from = |from| Message {
            from,
            to: 1,
            term: 1,
            body: hb.clone(),
        };
        assert_eq!(check(&from(2)), Ok(()));
        assert_eq!(check(&from(0)), Err(Rejection::BadAddress));
        assert_eq!(check(&from(1)), Err(Rejection::BadAddress), "to itself");
    }

    #[test]
    fn no_log_term_after_the_senders_term() {
        let vote = |last_log_term| Body::RequestVote {
            last_log_index: 3,
            last_log_term,
            pre_vote: false,
            transfer: false,
        };
        assert_eq!(check(&m(3, vote(3))), Ok(()));
        assert_eq!(check(&m(3, vote(4))), Err(Rejection::LogTermOutOfOrder));
        assert_eq!(check(&m(3, append((4, 3), &[]))), Ok(()));
        assert_eq!(
            check(&m(3, append((4, 4), &[]))),
            Err(Rejection::LogTermOutOfOrder),
            "prev_log_term after the leader's term"
        );
    }

    #[test]
    fn the_last_entry_index_stays_in_range() {
        assert_eq!(
            check(&m(2, append((MAX_INDEX - 1, 2), &[(MAX_INDEX, 2)]))),
            Ok(())
        );
        assert_eq!(
            check(&m(2, append((MAX_INDEX, 2), &[(MAX_INDEX + 1, 2)]))),
            Err(Rejection::IndexTooLarge)
        );
    }

    #[test]
    fn snapshot_replies_stay_inside_the_snapshot() {
        let meta = SnapshotMeta::of(5, 2, b"0123456789");
        let reply = |next_offset| Body::InstallSnapshotReply {
            meta,
            next_offset,
            installed: false,
        };
        assert_eq!(check(&m(2, reply(10))), Ok(()));
        assert_eq!(check(&m(2, reply(11))), Err(Rejection::ChunkOutOfRange));
    }

    #[test]
    fn snapshot_configurations_are_sorted_lists_of_real_ids() {
        use crate::conf::ConfState;
        let meta = SnapshotMeta::of(5, 2, b"x");
        let with = |voters: &[u64], learners: &[u64], outgoing: &[u64]| Body::InstallSnapshot {
            meta,
            conf: ConfState {
                voters: voters.to_vec(),
                learners: learners.to_vec(),
                voters_outgoing: outgoing.to_vec(),
            },
            offset: 0,
            data: b"x".to_vec(),
            done: true,
        };
        assert_eq!(check(&m(2, with(&[1, 2, 3], &[4], &[1, 2]))), Ok(()));
        assert_eq!(
            check(&m(2, with(&[], &[], &[]))),
            Ok(()),
            "bootstrap voters"
        );
        let bad = [
            with(&[2, 1, 3], &[], &[]),
            with(&[1, 1, 3], &[], &[]),
            with(&[0, 1], &[], &[]),
            with(&[1, 2], &[5, 4], &[]),
            with(&[1, 2], &[], &[3, 2]),
            with(&[], &[], &[1, 2]),
        ];
        for body in bad {
            assert_eq!(
                check(&m(2, body.clone())),
                Err(Rejection::BadSnapshotMeta),
                "{body:?}"
            );
        }
    }

    #[test]
    fn the_bounds_leave_half_the_range_as_headroom() {
        let hb = |commit| Body::Heartbeat { commit, ctx: 0 };
        assert_eq!(check(&m(1 << 63, hb(0))), Err(Rejection::TermTooLarge));
        assert_eq!(check(&m(1, hb(1 << 63))), Err(Rejection::IndexTooLarge));
        assert_eq!(check(&m((1 << 63) - 1, hb((1 << 63) - 1))), Ok(()));
    }

    #[test]
    fn every_rejection_has_its_own_words() {
        let all = [
            Rejection::TermTooLarge,
            Rejection::IndexTooLarge,
            Rejection::BadAddress,
            Rejection::EntriesNotContiguous,
            Rejection::LogTermOutOfOrder,
            Rejection::BadSnapshotMeta,
            Rejection::ChunkOutOfRange,
            Rejection::BadConflictHint,
            Rejection::SameTermLeader,
            Rejection::SnapshotChecksum,
        ];
        let words: std::collections::BTreeSet<String> = all.iter().map(|r| r.to_string()).collect();
        assert_eq!(words.len(), all.len());
        assert!(words.iter().all(|w| !w.is_empty()));
    }
}
