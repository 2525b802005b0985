//! The raft-state bytes kept in the [`Persister`](crate::Persister) (the
//! lab's `persist()`/`readPersist()`): `b"RLAB"`, a format-version byte, then
//! postcard of the hard state, the snapshot's position and the entries after
//! it. The layout is this module's own (not raft-core's serde derives), so a
//! change in the core cannot silently change what is on disk; any change
//! here bumps [`VERSION`], and bytes of another version are refused.

use serde::{Deserialize, Serialize};

use raft_core::{Bytes, Entry, EntryKind, HardState, Index, NodeId, SnapshotMeta, Term};

use crate::error::DecodeError;

const MAGIC: &[u8; 4] = b"RLAB";
/// The format written and read. Version 1 was bincode, which this crate no
/// longer reads (bincode is unmaintained, RUSTSEC-2025-0141); 2 is postcard.
pub(crate) const VERSION: u8 = 2;

/// Everything Figure 2 calls persistent state, plus the snapshot's
/// `lastIncludedIndex`/`lastIncludedTerm` (§7). The snapshot's length and
/// checksum come from its bytes, which the persister keeps beside these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RaftState {
    pub hard_state: HardState,
    pub snapshot_index: Index,
    pub snapshot_term: Term,
    pub entries: Vec<Entry>,
}

/// Format 2's body. Entry indices are implied (the snapshot's index + 1,
/// + 2, ...), so a gap cannot even be written.
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    term: Term,
    vote: Option<NodeId>,
    commit: Index,
    snapshot_index: Index,
    snapshot_term: Term,
    #[serde(borrow)]
    entries: Vec<StoredEntry<'a>>,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry<'a> {
    term: Term,
    kind: StoredKind,
    #[serde(borrow)]
    data: &'a [u8],
}

#[derive(Serialize, Deserialize)]
enum StoredKind {
    Normal,
    Noop,
    Config,
}

impl From<EntryKind> for StoredKind {
    fn from(k: EntryKind) -> Self {
        match k {
            EntryKind::Normal => StoredKind::Normal,
            EntryKind::Noop => StoredKind::Noop,
            EntryKind::Config => StoredKind::Config,
        }
    }
}

impl From<StoredKind> for EntryKind {
    fn from(k: StoredKind) -> Self {
        match k {
            StoredKind::Normal => EntryKind::Normal,
            StoredKind::Noop => EntryKind::Noop,
            StoredKind::Config => EntryKind::Config,
        }
    }
}

/// Encodes the raft state into the bytes handed to `Persister::save`.
/// `entries` must follow the snapshot without gaps (the log guarantees it).
pub(crate) fn encode(
    hard_state: &HardState,
    snapshot: &SnapshotMeta,
    entries: &[Entry],
) -> Result<Vec<u8>, postcard::Error> {
    let body = Body {
        term: hard_state.term,
        vote: hard_state.vote,
        commit: hard_state.commit,
        snapshot_index: snapshot.index,
        snapshot_term: snapshot.term,
        entries: entries
            .iter()
            .map(|e| StoredEntry {
                term: e.term,
                kind: e.kind.into(),
                data: &e.data,
            })
            .collect(),
    };
    let mut out = Vec::with_capacity(64 + entries.iter().map(|e| e.data.len() + 8).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    postcard::to_extend(&body, out)
}

/// Decodes and checks raft-state bytes. Empty bytes are a fresh server
/// (`Ok(None)`); anything else must be this crate's current format and
/// decode to a log that obeys the rules.
pub(crate) fn decode(bytes: &[u8]) -> Result<Option<RaftState>, DecodeError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(DecodeError::BadMagic)?;
    let (&version, rest) = rest.split_first().ok_or(DecodeError::BadMagic)?;
    if version != VERSION {
        return Err(DecodeError::Version {
            found: version,
            supported: VERSION,
        });
    }
    let (body, trailing): (Body<'_>, _) = postcard::take_from_bytes(rest)?;
    if !trailing.is_empty() {
        return Err(DecodeError::Trailing(trailing.len()));
    }
    let state = into_state(body)?;
    check(&state)?;
    Ok(Some(state))
}

/// Gives the entries their indices, refusing a log that would run past
/// `u64::MAX`.
fn into_state(body: Body<'_>) -> Result<RaftState, DecodeError> {
    let n = body.entries.len() as u64;
    // The last index must leave `last + 1` representable.
    let last = body.snapshot_index.checked_add(n).filter(|&l| l < u64::MAX);
    if last.is_none() {
        return Err(DecodeError::Inconsistent(format!(
            "snapshot index {} leaves no room for {n} entries",
            body.snapshot_index
        )));
    }
    let first = body.snapshot_index + 1;
    let entries = body
        .entries
        .into_iter()
        .zip(first..)
        .map(|(e, index)| Entry {
            index,
            term: e.term,
            kind: e.kind.into(),
            data: Bytes::copy_from_slice(e.data),
        })
        .collect();
    Ok(RaftState {
        hard_state: HardState {
            term: body.term,
            vote: body.vote,
            commit: body.commit,
        },
        snapshot_index: body.snapshot_index,
        snapshot_term: body.snapshot_term,
        entries,
    })
}

/// The log rules a decoded state must obey: terms never go down, nothing is
/// newer than the current term, and the commit index is inside the log.
fn check(s: &RaftState) -> Result<(), DecodeError> {
    let bad = |msg: String| Err(DecodeError::Inconsistent(msg));
    let last = s.snapshot_index + s.entries.len() as u64;
    let mut prev_term = s.snapshot_term;
    for e in &s.entries {
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

    fn sample() -> RaftState {
        RaftState {
            hard_state: HardState {
                term: 3,
                vote: Some(2),
                commit: 6,
            },
            snapshot_index: 4,
            snapshot_term: 1,
            entries: vec![
                Entry::normal(5, 2, b"a".to_vec()),
                Entry {
                    index: 6,
                    term: 3,
                    kind: EntryKind::Noop,
                    data: Bytes::new(),
                },
            ],
        }
    }

    fn enc(s: &RaftState) -> Vec<u8> {
        let meta = SnapshotMeta::of(s.snapshot_index, s.snapshot_term, b"");
        encode(&s.hard_state, &meta, &s.entries).unwrap()
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(decode(&enc(&s)).unwrap(), Some(s));
        assert_eq!(decode(&[]).unwrap(), None);
        let empty = RaftState {
            hard_state: HardState::default(),
            snapshot_index: 0,
            snapshot_term: 0,
            entries: Vec::new(),
        };
        assert_eq!(decode(&enc(&empty)).unwrap(), Some(empty));
    }

    #[test]
    fn refuses_indices_that_would_overflow() {
        for (index, n) in [(u64::MAX, 0), (u64::MAX - 1, 1), (u64::MAX - 2, 2)] {
            let mut s = sample();
            s.snapshot_index = index;
            s.entries.truncate(n);
            s.hard_state.commit = 0;
            assert!(
                matches!(decode(&enc(&s)), Err(DecodeError::Inconsistent(_))),
                "snapshot at {index} with {n} entries"
            );
        }
    }

    /// The bytes raft-lab wrote before postcard: `RLAB`, version 1, then
    /// bincode (varint) of the same fields. They must be refused by version,
    /// never fed to postcard, where they could decode to some other log.
    #[test]
    fn the_old_bincode_format_is_refused_by_version() {
        let mut old = b"RLAB\x01".to_vec();
        // bincode varint of HardState { term: 3, vote: Some(2), commit: 6 },
        // SnapshotMeta { 4, 1 }, then 1 entry (5, 2, Normal, b"a").
        old.extend_from_slice(&[3, 1, 2, 6, 4, 1, 1, 5, 2, 0, 1, b'a']);
        let err = decode(&old).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Version {
                    found: 1,
                    supported: VERSION
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("bincode"), "{err}");
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let good = enc(&sample());
        assert!(matches!(decode(b"nope"), Err(DecodeError::BadMagic)));
        assert!(matches!(decode(b"RLAB"), Err(DecodeError::BadMagic)));
        assert!(matches!(
            decode(b"\x02\x03\x06\x04\x01"),
            Err(DecodeError::BadMagic)
        ));
        let mut v9 = good.clone();
        v9[4] = 9;
        assert!(matches!(
            decode(&v9),
            Err(DecodeError::Version { found: 9, .. })
        ));
        for cut in 5..good.len() {
            assert!(decode(&good[..cut]).is_err(), "truncated at {cut} decoded");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(DecodeError::Trailing(1))));
        // A garbled length prefix asking for a huge log.
        let mut huge = good[..5].to_vec();
        huge.extend_from_slice(&[0xff; 32]);
        assert!(matches!(decode(&huge), Err(DecodeError::Body(_))));
        // An unknown entry kind.
        let mut kind = good.clone();
        let at = kind.len() - 2; // the Noop entry: term, kind, empty data
        kind[at] = 7;
        assert!(matches!(decode(&kind), Err(DecodeError::Body(_))));
    }

    #[test]
    fn broken_logs_are_refused() {
        let mut down = sample();
        down.entries[1].term = 1;
        let mut future = sample();
        future.hard_state.term = 2;
        let mut commit = sample();
        commit.hard_state.commit = 7;
        for s in [down, future, commit] {
            assert!(
                matches!(decode(&enc(&s)), Err(DecodeError::Inconsistent(_))),
                "{s:?}"
            );
        }
    }
}
