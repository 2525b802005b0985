//! The replicated state machine: the key-value map, the session table and
//! the log clock, changed only by applying log records in index order.
//!
//! Everything here is a function of the records applied and the
//! [`StoreConfig`]: two replicas with the same configuration that apply the
//! same log hold the same state and encode the same snapshot, byte for byte
//! (maps are `BTreeMap`s, the encoding is postcard behind a version byte).

use std::collections::BTreeMap;

use raft_core::Index;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::api::{KvError, Seq, SessionId};
use crate::command::{self, RecordBody, RecordError};
use crate::op::{Key, Op, OpResult, Value};
use crate::session::{Answer, Check, Session, SessionTable};

/// The snapshot format this code writes and reads.
pub const SNAPSHOT_VERSION: u8 = 1;

/// Limits and session rules. Part of the replicated behaviour: every replica
/// must run with the same values, or their answers may differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Longest key (and range prefix), in bytes.
    pub max_key_bytes: u64,
    /// Longest value, in bytes, also after an append.
    pub max_value_bytes: u64,
    /// Most pairs one range answers, whatever limit it asks for.
    pub max_range: u32,
    /// A session idle for longer than this, by the log clock, expires.
    pub session_timeout_ms: u64,
    /// Most live sessions; registering one more evicts the least recently used.
    pub max_sessions: usize,
}

impl Default for StoreConfig {
    /// 4 KiB keys, 1 MiB values, ranges of up to 1,000 pairs, sessions idle
    /// for an hour expire, at most 10,000 sessions.
    fn default() -> Self {
        StoreConfig {
            max_key_bytes: 4 << 10,
            max_value_bytes: 1 << 20,
            max_range: 1_000,
            session_timeout_ms: 60 * 60 * 1_000,
            max_sessions: 10_000,
        }
    }
}

impl StoreConfig {
    /// Checks an operation's key and values against the limits.
    pub fn check(&self, op: &Op) -> Result<(), KvError> {
        let key = op.key().len() as u64;
        if key > self.max_key_bytes {
            return Err(KvError::KeyTooLarge {
                len: key,
                max: self.max_key_bytes,
            });
        }
        let value = match op {
            Op::Put { value, .. } | Op::Append { value, .. } => value.len(),
            Op::Cas { expected, new, .. } => new.len().max(expected.as_ref().map_or(0, Vec::len)),
            Op::Get { .. } | Op::Delete { .. } | Op::Range { .. } => 0,
        } as u64;
        self.check_value(value)
    }

    fn check_value(&self, len: u64) -> Result<(), KvError> {
        if len > self.max_value_bytes {
            return Err(KvError::ValueTooLarge {
                len,
                max: self.max_value_bytes,
            });
        }
        Ok(())
    }
}

/// What applying one log entry did, for the server to answer its client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not a record (a leader's empty entry): only the applied index moved.
    Skipped,
    /// A session was opened.
    Registered { session: SessionId },
    /// A session's request was answered (applied now, or from the table).
    Answered {
        session: SessionId,
        seq: Seq,
        answer: Answer,
    },
    /// A read through the log was answered.
    Read { answer: Answer },
    /// A write without a session was applied (no duplicate check).
    Applied { answer: Answer },
    /// The record did not decode; nothing changed but the applied index.
    Rejected(RecordError),
}

/// Errors of the state machine's own input (from the driver, never a client).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// Entries must be applied in index order, each exactly once.
    #[error("entry {index} applied out of order (applied through {applied})")]
    OutOfOrder { index: Index, applied: Index },
    /// A snapshot that cannot be restored.
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// No bytes at all.
    #[error("empty snapshot")]
    Empty,
    /// Written by a format version this code does not read.
    #[error("snapshot format version {found} (this build reads {supported})")]
    UnsupportedVersion { found: u8, supported: u8 },
    /// The bytes are not a snapshot (or describe an impossible session table).
    #[error("malformed snapshot")]
    Malformed,
    /// The data's applied index is not the index Raft says it covers.
    #[error("snapshot data is for index {data}, but its metadata says {meta}")]
    IndexMismatch { data: Index, meta: Index },
}

/// The snapshot's contents; `sessions` in id order.
#[derive(Serialize, Deserialize)]
struct Image<K, S> {
    applied: Index,
    clock_ms: u64,
    kv: K,
    sessions: S,
}

/// The map as a snapshot writes it: keys and values as byte strings, one
/// block each. Postcard writes the very bytes it wrote for
/// `BTreeMap<Vec<u8>, Vec<u8>>` (a varint count, then each key and value
/// as a varint length and its bytes), without a call per byte.
struct KvOut<'a>(&'a BTreeMap<Key, Value>);

impl Serialize for KvOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pairs = self.0.iter();
        s.collect_map(pairs.map(|(k, v)| (serde_bytes::Bytes::new(k), serde_bytes::Bytes::new(v))))
    }
}

/// The map as a snapshot is read back (see [`KvOut`]).
struct KvIn(BTreeMap<Key, Value>);

impl<'de> Deserialize<'de> for KvIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = KvIn;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of byte strings")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<KvIn, A::Error> {
                let mut map = BTreeMap::new();
                while let Some((k, v)) =
                    a.next_entry::<serde_bytes::ByteBuf, serde_bytes::ByteBuf>()?
                {
                    map.insert(k.into_vec(), v.into_vec());
                }
                Ok(KvIn(map))
            }
        }
        d.deserialize_map(Pairs)
    }
}

/// The key-value state machine with exactly-once sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    cfg: StoreConfig,
    kv: BTreeMap<Key, Value>,
    sessions: SessionTable,
    /// The largest stamp applied so far (thesis §6.3).
    clock_ms: u64,
    applied: Index,
}

impl Store {
    /// An empty store, nothing applied.
    pub fn new(cfg: StoreConfig) -> Self {
        Store {
            cfg,
            kv: BTreeMap::new(),
            sessions: SessionTable::default(),
            clock_ms: 0,
            applied: 0,
        }
    }

    /// The index of the last entry applied (or restored).
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// The log clock: the largest stamp applied so far, in milliseconds.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// The limits and session rules.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// The session table.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// The key-value map.
    pub fn map(&self) -> &BTreeMap<Key, Value> {
        &self.kv
    }

    /// Moves the applied index past an entry that is not a record.
    pub fn skip(&mut self, index: Index) -> Result<Outcome, StoreError> {
        self.advance_to(index)?;
        Ok(Outcome::Skipped)
    }

    /// Applies the record at `index` (the entry right after the last applied).
    /// A record that does not decode changes nothing and is answered with
    /// [`Outcome::Rejected`], the same on every replica.
    pub fn apply(&mut self, index: Index, data: &[u8]) -> Result<Outcome, StoreError> {
        self.advance_to(index)?;
        let record = match command::decode(data) {
            Ok(record) => record,
            Err(e) => return Ok(Outcome::Rejected(e)),
        };
        self.clock_ms = self.clock_ms.max(record.stamp_ms);
        let now = self.clock_ms;
        self.sessions.expire(now, self.cfg.session_timeout_ms);
        Ok(match record.body {
            RecordBody::Register => {
                self.sessions.register(index, now, self.cfg.max_sessions);
                Outcome::Registered { session: index }
            }
            RecordBody::Read { op } => Outcome::Read {
                answer: self.read(&op),
            },
            RecordBody::PlainWrite { op } => Outcome::Applied {
                answer: self.execute(op),
            },
            RecordBody::Request { session, seq, op } => {
                let answer = match self.sessions.check(session, seq) {
                    Check::Unknown => Err(KvError::SessionExpired { session }),
                    Check::Stale { last } => Err(KvError::StaleSequence { seq, last }),
                    Check::Duplicate(answer) => {
                        let answer = answer.clone();
                        self.sessions.touch(session, index, now);
                        answer
                    }
                    Check::New => {
                        let answer = self.execute(op);
                        self.sessions
                            .record(session, seq, answer.clone(), index, now);
                        answer
                    }
                };
                Outcome::Answered {
                    session,
                    seq,
                    answer,
                }
            }
        })
    }

    fn advance_to(&mut self, index: Index) -> Result<(), StoreError> {
        if Some(index) != self.applied.checked_add(1) {
            return Err(StoreError::OutOfOrder {
                index,
                applied: self.applied,
            });
        }
        self.applied = index;
        Ok(())
    }

    /// Answers a read-only operation from the current state; a write is refused.
    pub fn read(&self, op: &Op) -> Answer {
        self.cfg.check(op)?;
        match op {
            Op::Get { key } => Ok(OpResult::Value(self.kv.get(key).cloned())),
            Op::Range { prefix, limit } => {
                let limit = (*limit).min(self.cfg.max_range) as usize;
                let mut matching = self
                    .kv
                    .range::<[u8], _>((
                        std::ops::Bound::Included(&prefix[..]),
                        std::ops::Bound::Unbounded,
                    ))
                    .take_while(|(k, _)| k.starts_with(prefix));
                let pairs: Vec<(Key, Value)> = matching
                    .by_ref()
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let more = matching.next().is_some();
                Ok(OpResult::Range { pairs, more })
            }
            _ => Err(KvError::BadRequest {
                reason: "not a read-only operation".into(),
            }),
        }
    }

    /// Applies one operation to the map. It takes the operation, so the
    /// key and value move into the map instead of being copied.
    fn execute(&mut self, op: Op) -> Answer {
        self.cfg.check(&op)?;
        match op {
            Op::Get { .. } | Op::Range { .. } => self.read(&op),
            Op::Put { key, value } => Ok(OpResult::Replaced(self.kv.insert(key, value))),
            Op::Delete { key } => Ok(OpResult::Replaced(self.kv.remove(&key))),
            Op::Append { key, value } => {
                let old = self.kv.get(&key).map_or(0, Vec::len);
                let len = (old + value.len()) as u64;
                self.cfg.check_value(len)?;
                match self.kv.get_mut(&key) {
                    Some(v) => v.extend_from_slice(&value),
                    None => {
                        self.kv.insert(key, value);
                    }
                }
                Ok(OpResult::Appended { len })
            }
            Op::Cas { key, expected, new } => {
                let matched = self.kv.get(&key) == expected.as_ref();
                // On a match the value replaced is the one found.
                let previous = if matched {
                    self.kv.insert(key, new)
                } else {
                    self.kv.get(&key).cloned()
                };
                Ok(OpResult::Cas { matched, previous })
            }
        }
    }

    /// Encodes the whole state: a version byte, then postcard. Deterministic:
    /// equal stores give equal bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let image = Image {
            applied: self.applied,
            clock_ms: self.clock_ms,
            kv: KvOut(&self.kv),
            sessions: self.sessions.sessions().collect::<Vec<_>>(),
        };
        let mut out = vec![SNAPSHOT_VERSION];
        // Serialising plain owned data into a Vec cannot fail.
        out.extend(postcard::to_stdvec(&image).expect("a store always serialises"));
        out
    }

    /// Decodes a snapshot written by [`snapshot`](Store::snapshot) into a store
    /// with configuration `cfg`.
    pub fn restore(cfg: StoreConfig, data: &[u8]) -> Result<Store, SnapshotError> {
        let (&version, body) = data.split_first().ok_or(SnapshotError::Empty)?;
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion {
                found: version,
                supported: SNAPSHOT_VERSION,
            });
        }
        let (image, rest) = postcard::take_from_bytes::<Image<KvIn, Vec<Session>>>(body)
            .map_err(|_| SnapshotError::Malformed)?;
        if !rest.is_empty() {
            return Err(SnapshotError::Malformed);
        }
        let sessions =
            SessionTable::from_sessions(image.sessions).ok_or(SnapshotError::Malformed)?;
        Ok(Store {
            cfg,
            kv: image.kv.0,
            sessions,
            clock_ms: image.clock_ms,
            applied: image.applied,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    proptest! {
        /// A snapshot is the same bytes as when the map was serialised as
        /// `BTreeMap<Vec<u8>, Vec<u8>>`, so snapshots written before read
        /// back the same.
        #[test]
        fn the_map_keeps_its_snapshot_bytes(
            kv in btree_map(vec(any::<u8>(), 0..20), vec(any::<u8>(), 0..300), 0..20),
            applied in any::<u64>(),
        ) {
            let mut store = Store::new(StoreConfig::default());
            store.kv = kv.clone();
            store.applied = applied;
            let then = Image {
                applied,
                clock_ms: 0,
                kv: &kv,
                sessions: Vec::<Session>::new(),
            };
            let mut old = vec![SNAPSHOT_VERSION];
            old.extend(postcard::to_stdvec(&then).unwrap());
            prop_assert_eq!(store.snapshot(), old.clone());
            let back = Store::restore(StoreConfig::default(), &old).unwrap();
            prop_assert_eq!(back.kv, kv);
            prop_assert_eq!(back.applied, applied);
        }
    }
}
