//! The replicated state machine: the key-value map, the session table and
//! the log clock, changed only by applying log records in index order.
//!
//! Everything here is a function of the records applied and the
//! [`StoreConfig`]: two replicas with the same configuration that apply the
//! same log hold the same state and encode the same snapshot, byte for byte
//! (maps are ordered, the encoding is postcard behind a version byte).
//!
//! The map and the session table are persistent maps (`imbl::OrdMap`,
//! B-trees whose nodes are shared between copies), and keys and values are
//! reference-counted byte strings: [`Store::image`] copies no pair, only a
//! few pointers, so the driver can take an image between two Readies and
//! have it encoded on another thread while it goes on applying. A write
//! after the image copies only the tree nodes on its path (pointers to the
//! pairs, never the bytes).

use std::sync::Arc;

use raft_core::Index;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::api::{KvError, Seq, SessionId};
use crate::command::{self, RecordBody, RecordError};
use crate::op::{Key, Op, OpResult, Value};
use crate::session::{Answer, Check, Session, SessionMap, SessionTable};

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

/// A key, shared between the store and the images taken from it.
pub type Shared = Arc<[u8]>;

/// A value, shared between the store and the images taken from it. A
/// `Vec` behind the `Arc`, so that an append grows it in place (copying it
/// only while an image still holds it) instead of copying the whole value
/// each time.
pub type SharedValue = Arc<Vec<u8>>;

/// The key-value map: shared keys and values, in key order.
pub type KvMap = imbl::OrdMap<Shared, SharedValue>;

/// A value taken out of the map: moved when nothing else holds it.
fn owned(v: SharedValue) -> Value {
    Arc::try_unwrap(v).unwrap_or_else(|shared| shared.to_vec())
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
struct KvOut<'a>(&'a KvMap);

impl Serialize for KvOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0.iter() {
            m.serialize_entry(serde_bytes::Bytes::new(k), serde_bytes::Bytes::new(v))?;
        }
        m.end()
    }
}

/// The sessions as a snapshot writes them: the bytes of a `Vec<Session>`
/// in id order.
struct SessionsOut<'a>(&'a SessionMap);

impl Serialize for SessionsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for session in self.0.values() {
            seq.serialize_element(session)?;
        }
        seq.end()
    }
}

/// The map as a snapshot is read back (see [`KvOut`]).
struct KvIn(KvMap);

impl<'de> Deserialize<'de> for KvIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = KvIn;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of byte strings")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<KvIn, A::Error> {
                let mut map = KvMap::new();
                while let Some((k, v)) =
                    a.next_entry::<serde_bytes::ByteBuf, serde_bytes::ByteBuf>()?
                {
                    map.insert(k.into_vec().into(), Arc::new(v.into_vec()));
                }
                Ok(KvIn(map))
            }
        }
        d.deserialize_map(Pairs)
    }
}

/// Everything a snapshot holds, taken from a [`Store`] in O(1) by
/// [`Store::image`]: it shares the store's tree nodes and byte strings, is
/// `Send`, and stays as it was while the store goes on applying. Encoding
/// it ([`encode`](StoreImage::encode)) gives the very bytes
/// [`Store::snapshot`] gives for the store at that point.
#[derive(Clone, Debug)]
pub struct StoreImage {
    applied: Index,
    clock_ms: u64,
    kv: KvMap,
    sessions: SessionMap,
}

impl StoreImage {
    /// The index the image covers (the store's applied index when taken).
    pub fn index(&self) -> Index {
        self.applied
    }

    /// Pairs in the map.
    pub fn len(&self) -> usize {
        self.kv.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.kv.is_empty()
    }

    /// Encodes the image: a version byte, then postcard. Deterministic:
    /// equal states give equal bytes. Takes time in proportion to the data;
    /// meant to run off the driver thread.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_into(Vec::new())
    }

    /// [`encode`](StoreImage::encode), appended to `out` (a header the
    /// caller puts in front, without copying the image afterwards).
    pub fn encode_into(&self, mut out: Vec<u8>) -> Vec<u8> {
        let image = Image {
            applied: self.applied,
            clock_ms: self.clock_ms,
            kv: KvOut(&self.kv),
            sessions: SessionsOut(&self.sessions),
        };
        out.push(SNAPSHOT_VERSION);
        // Serialising plain owned data into a Vec cannot fail.
        postcard::to_extend(&image, out).expect("a store always serialises")
    }
}

/// The key-value state machine with exactly-once sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    cfg: StoreConfig,
    kv: KvMap,
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
            kv: KvMap::new(),
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
    pub fn map(&self) -> &KvMap {
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
            Op::Get { key } => Ok(OpResult::Value(self.kv.get(&key[..]).map(|v| v.to_vec()))),
            Op::Range { prefix, limit } => {
                let limit = (*limit).min(self.cfg.max_range) as usize;
                let mut matching = self
                    .kv
                    .range::<_, [u8]>((
                        std::ops::Bound::Included(&prefix[..]),
                        std::ops::Bound::Unbounded,
                    ))
                    .take_while(|(k, _)| k.starts_with(prefix));
                let pairs: Vec<(Key, Value)> = matching
                    .by_ref()
                    .take(limit)
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect();
                let more = matching.next().is_some();
                Ok(OpResult::Range { pairs, more })
            }
            _ => Err(KvError::BadRequest {
                reason: "not a read-only operation".into(),
            }),
        }
    }

    /// Applies one operation to the map.
    fn execute(&mut self, op: Op) -> Answer {
        self.cfg.check(&op)?;
        match op {
            Op::Get { .. } | Op::Range { .. } => self.read(&op),
            Op::Put { key, value } => Ok(OpResult::Replaced(self.put(key, Arc::new(value)))),
            Op::Delete { key } => Ok(OpResult::Replaced(self.kv.remove(&key[..]).map(owned))),
            Op::Append { key, value } => {
                let old = self.kv.get(&key[..]);
                let len = (old.map_or(0, |v| v.len()) + value.len()) as u64;
                self.cfg.check_value(len)?;
                match self.kv.get_mut(&key[..]) {
                    // In place, amortised O(appended bytes), unless an
                    // image holds the value: then it is copied once.
                    Some(v) => Arc::make_mut(v).extend_from_slice(&value),
                    None => {
                        self.kv.insert(key.into(), Arc::new(value));
                    }
                }
                Ok(OpResult::Appended { len })
            }
            Op::Cas { key, expected, new } => {
                let found = self.kv.get(&key[..]);
                let matched = found.map(|v| &v[..]) == expected.as_deref();
                // On a match the value replaced is the one found.
                let previous = if matched {
                    self.put(key, Arc::new(new))
                } else {
                    found.map(|v| v.to_vec())
                };
                Ok(OpResult::Cas { matched, previous })
            }
        }
    }

    /// Sets `key` to `value`; the value it had. An existing key keeps its
    /// shared bytes (no new allocation for it).
    fn put(&mut self, key: Key, value: SharedValue) -> Option<Value> {
        match self.kv.get_mut(&key[..]) {
            Some(v) => Some(owned(std::mem::replace(v, value))),
            None => {
                self.kv.insert(key.into(), value);
                None
            }
        }
    }

    /// The state a snapshot holds, in O(1): see [`StoreImage`].
    pub fn image(&self) -> StoreImage {
        StoreImage {
            applied: self.applied,
            clock_ms: self.clock_ms,
            kv: self.kv.clone(),
            sessions: self.sessions.shared(),
        }
    }

    /// Encodes the whole state: a version byte, then postcard. Deterministic:
    /// equal stores give equal bytes. The same as `image().encode()`.
    pub fn snapshot(&self) -> Vec<u8> {
        self.image().encode()
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
    use crate::command::Record;
    use crate::op::OpResult;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The snapshot bytes as the code before images wrote them: the map as
    /// `BTreeMap<Vec<u8>, Vec<u8>>`, the sessions as a `Vec<Session>`.
    fn old_encoding(
        applied: Index,
        clock_ms: u64,
        kv: &BTreeMap<Vec<u8>, Vec<u8>>,
        sessions: &[Session],
    ) -> Vec<u8> {
        let then = Image {
            applied,
            clock_ms,
            kv,
            sessions,
        };
        let mut old = vec![SNAPSHOT_VERSION];
        old.extend(postcard::to_stdvec(&then).unwrap());
        old
    }

    /// Applies `op` as a plain write at the next index.
    fn write(store: &mut Store, op: Op) {
        let index = store.applied() + 1;
        let record = Record {
            stamp_ms: index,
            body: RecordBody::PlainWrite { op },
        };
        store.apply(index, &command::encode(&record)).unwrap();
    }

    fn answer() -> impl Strategy<Value = Answer> {
        prop_oneof![
            proptest::option::of(vec(any::<u8>(), 0..40)).prop_map(|v| Ok(OpResult::Replaced(v))),
            any::<u64>().prop_map(|len| Ok(OpResult::Appended { len })),
            (any::<u64>(), any::<u64>())
                .prop_map(|(len, max)| Err(KvError::ValueTooLarge { len, max })),
        ]
    }

    /// Sessions with distinct ids and distinct last-use indexes, in id order.
    fn sessions() -> impl Strategy<Value = Vec<Session>> {
        vec(
            (proptest::option::of((any::<u64>(), answer())), any::<u64>()),
            0..12,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (last, active_ms))| Session {
                    id: 3 * i as u64 + 1,
                    last,
                    active_ms,
                    used_at: 1_000 - i as u64,
                })
                .collect()
        })
    }

    proptest! {
        /// An image encodes to the very bytes the store encoded before it
        /// had images (a `BTreeMap` of byte vectors and a `Vec` of
        /// sessions), so snapshots written before read back the same, and
        /// those written now read back as the store they came from.
        #[test]
        fn an_image_keeps_the_snapshot_bytes(
            kv in btree_map(vec(any::<u8>(), 0..20), vec(any::<u8>(), 0..300), 0..40),
            sessions in sessions(),
            applied in any::<u64>(),
            clock_ms in any::<u64>(),
        ) {
            let store = Store {
                cfg: StoreConfig::default(),
                kv: kv.iter().map(|(k, v)| (Shared::from(&k[..]), Arc::new(v.clone()))).collect(),
                sessions: SessionTable::from_sessions(sessions.clone()).unwrap(),
                clock_ms,
                applied,
            };
            let old = old_encoding(applied, clock_ms, &kv, &sessions);
            let image = store.image();
            prop_assert_eq!(image.index(), applied);
            prop_assert_eq!(image.encode(), old.clone());
            prop_assert_eq!(store.snapshot(), old.clone());
            let back = Store::restore(StoreConfig::default(), &old).unwrap();
            prop_assert_eq!(back, store);
        }

        /// An image stays as it was taken while the store goes on applying:
        /// it encodes to the store's snapshot at the time it was taken.
        #[test]
        fn an_image_does_not_see_later_writes(
            before in vec((0u8..16, vec(any::<u8>(), 0..8)), 0..60),
            after in vec((0u8..16, vec(any::<u8>(), 0..8), any::<bool>()), 1..60),
        ) {
            let mut store = Store::new(StoreConfig::default());
            for (k, v) in before {
                write(&mut store, Op::Put { key: vec![k], value: v });
            }
            let image = store.image();
            let then = store.snapshot();
            for (k, v, append) in after {
                let op = if append {
                    Op::Append { key: vec![k], value: v }
                } else {
                    Op::Delete { key: vec![k] }
                };
                write(&mut store, op);
            }
            prop_assert_eq!(image.encode(), then);
            prop_assert_ne!(image.index(), store.applied());
        }
    }

    /// An append grows the value it extends, in place, unless an image
    /// still holds it (then it is copied once): appending to a large value
    /// costs the bytes appended, not the value's length.
    #[test]
    fn an_append_extends_its_value_in_place() {
        let mut store = Store::new(StoreConfig::default());
        let append = |v: &[u8]| Op::Append {
            key: b"k".to_vec(),
            value: v.to_vec(),
        };
        let value = |store: &Store| Arc::as_ptr(store.map().get(&b"k"[..]).unwrap());
        write(&mut store, append(b"a"));
        let first = value(&store);
        for _ in 0..100 {
            write(&mut store, append(b"b"));
        }
        assert_eq!(value(&store), first, "the same value, grown");
        let (image, then) = (store.image(), store.snapshot());
        write(&mut store, append(b"c"));
        let copied = value(&store);
        assert_ne!(copied, first, "copied: the image holds the old one");
        write(&mut store, append(b"d"));
        assert_eq!(value(&store), copied, "copied once");
        assert_eq!(image.encode(), then, "the image kept the old value");
        let got = store.map().get(&b"k"[..]).unwrap();
        assert_eq!(got.len(), 103);
        assert!(got.ends_with(b"bcd"));
    }

    #[test]
    fn an_image_is_send_and_static() {
        fn takes<T: Send + Sync + 'static>(_: T) {}
        takes(Store::new(StoreConfig::default()).image());
    }
}
