//! The raft-state bytes kept in the [`Persister`](crate::Persister): a short
//! header, then bincode of the hard state, the snapshot's position and the
//! entries after it (the lab's `persist()`/`readPersist()`).

use bincode::Options;
use serde::{Deserialize, Serialize};

use raft_core::{Entry, HardState, SnapshotMeta};

use crate::error::DecodeError;

const MAGIC: &[u8; 4] = b"RLAB";
const VERSION: u8 = 1;

/// Everything Figure 2 calls persistent state, plus the snapshot's
/// `lastIncludedIndex`/`lastIncludedTerm` (§7).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct RaftState {
    pub hard_state: HardState,
    pub snapshot: SnapshotMeta,
    pub entries: Vec<Entry>,
}

/// The same fields borrowed, so encoding does not copy the log.
#[derive(Serialize)]
struct RaftStateRef<'a> {
    hard_state: &'a HardState,
    snapshot: &'a SnapshotMeta,
    entries: &'a [Entry],
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
}

/// Encodes the raft state into the bytes handed to `Persister::save`.
pub(crate) fn encode(
    hard_state: &HardState,
    snapshot: &SnapshotMeta,
    entries: &[Entry],
) -> Result<Vec<u8>, bincode::Error> {
    let body = RaftStateRef {
        hard_state,
        snapshot,
        entries,
    };
    let mut out = Vec::with_capacity(64 + entries.iter().map(|e| e.data.len() + 16).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    options().serialize_into(&mut out, &body)?;
    Ok(out)
}

/// Decodes and checks raft-state bytes. Empty bytes are a fresh server
/// (`Ok(None)`); anything else must decode to a log that obeys the rules.
pub(crate) fn decode(bytes: &[u8]) -> Result<Option<RaftState>, DecodeError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let body = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(DecodeError::BadMagic)?;
    let (&version, body) = body.split_first().ok_or(DecodeError::BadMagic)?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    // The limit stops a garbled length prefix from asking for a huge buffer.
    let state: RaftState = options().with_limit(body.len() as u64).deserialize(body)?;
    check(&state)?;
    Ok(Some(state))
}

/// The log rules a decoded state must obey: entries follow the snapshot
/// without gaps, terms never go down, nothing is newer than the current term,
/// and the commit index is inside the log.
fn check(s: &RaftState) -> Result<(), DecodeError> {
    let bad = |msg: String| Err(DecodeError::Inconsistent(msg));
    // Indices must leave room for the log after the snapshot (no overflow).
    let Some(last) = (s.entries.len() as u64)
        .checked_add(s.snapshot.index)
        .filter(|&last| last < u64::MAX)
    else {
        return bad(format!(
            "snapshot index {} is out of range",
            s.snapshot.index
        ));
    };
    let mut prev_term = s.snapshot.term;
    for (i, e) in s.entries.iter().enumerate() {
        let want = s.snapshot.index + 1 + i as u64;
        if e.index != want {
            return bad(format!("entry {i} has index {}, expected {want}", e.index));
        }
        if e.term < prev_term {
            return bad(format!("term goes down to {} at index {}", e.term, e.index));
        }
        prev_term = e.term;
    }
    if prev_term > s.hard_state.term {
        return bad(format!(
            "log term {prev_term} is newer than the current term {}",
            s.hard_state.term
        ));
    }
    if s.hard_state.commit > last {
        return bad(format!(
            "commit index {} is past the last index {last}",
            s.hard_state.commit
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_indices_that_would_overflow() {
        let mut s = sample();
        s.snapshot.index = u64::MAX;
        s.entries.clear();
        s.hard_state.commit = 0;
        assert!(matches!(check(&s), Err(DecodeError::Inconsistent(_))));
        let mut s = sample();
        s.snapshot.index = u64::MAX - 1;
        assert!(matches!(check(&s), Err(DecodeError::Inconsistent(_))));
    }

    fn sample() -> RaftState {
        RaftState {
            hard_state: HardState {
                term: 3,
                vote: Some(2),
                commit: 6,
            },
            snapshot: SnapshotMeta::of(4, 1, b"snap"),
            entries: vec![
                Entry::normal(5, 2, b"a".to_vec()),
                Entry::normal(6, 3, b"b".to_vec()),
            ],
        }
    }

    fn enc(s: &RaftState) -> Vec<u8> {
        encode(&s.hard_state, &s.snapshot, &s.entries).unwrap()
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(decode(&enc(&s)).unwrap(), Some(s));
        assert_eq!(decode(&[]).unwrap(), None);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let good = enc(&sample());
        assert!(matches!(decode(b"nope"), Err(DecodeError::BadMagic)));
        let mut v2 = good.clone();
        v2[4] = 9;
        assert!(matches!(decode(&v2), Err(DecodeError::Version(9))));
        for cut in 5..good.len() {
            assert!(decode(&good[..cut]).is_err(), "truncated at {cut} decoded");
        }
        let mut huge = good[..5].to_vec();
        huge.extend_from_slice(&[0xff; 32]);
        assert!(decode(&huge).is_err());
    }

    #[test]
    fn broken_logs_are_refused() {
        let mut gap = sample();
        gap.entries[1].index = 7;
        let mut down = sample();
        down.entries[1].term = 1;
        let mut future = sample();
        future.hard_state.term = 2;
        let mut commit = sample();
        commit.hard_state.commit = 7;
        for s in [gap, down, future, commit] {
            assert!(
                matches!(decode(&enc(&s)), Err(DecodeError::Inconsistent(_))),
                "{s:?}"
            );
        }
    }
}
