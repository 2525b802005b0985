//! Who the members are and where they listen: the member table.
//!
//! raft-core knows members by id only ([`ConfState`]). The server also needs
//! each member's Raft address (to dial it) and client address (to redirect
//! to it). The table is replicated with the configuration itself:
//!
//! - **Bootstrap**: the members named by `--peers` when the cluster was
//!   first started.
//! - **Changes**: the configuration entry that adds a server (an
//!   `AddLearner`) carries its addresses in the entry's `context`
//!   ([`encode_context`]). Every node learns them when the entry reaches its
//!   log (appended, not yet committed: a configuration takes effect when
//!   appended, §6, so the leader must be able to reach the new member at
//!   once) and records them in its applied table when the entry commits.
//! - **Snapshots**: the log before a snapshot is gone, and with it those
//!   contexts, so the snapshot carries the applied table in front of the
//!   state machine's image ([`wrap_snapshot`]). A node that installs it, or
//!   restarts from it, knows every member's address at that index.
//! - **Restart**: the table is the snapshot's, then every configuration
//!   entry in the log after it, so a data directory alone restores it.
//!
//! A removed member's id is retired: it stays in the table's `retired` set,
//! and adding it again is refused (a removed server's old messages and log
//! must never be taken for a new member's).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use raft_core::{ConfChange, ConfEntry, ConfState, NodeId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::PeerAddrs;

/// Version of [`encode_context`]'s bytes.
const CONTEXT_VERSION: u8 = 1;
/// First byte of a server snapshot. raft-kv's own images start with their
/// version (1, 2, ...), so a snapshot written before the member table
/// existed is told apart and read as a bare image.
const ENVELOPE_MAGIC: u8 = 0xA5;
/// Version of the envelope after the magic byte.
const ENVELOPE_VERSION: u8 = 1;

/// The addresses this node knows, shared by the driver (which writes them
/// as it learns of members) and the HTTP layer (redirects, status).
pub type Book = Arc<RwLock<BTreeMap<NodeId, PeerAddrs>>>;

/// Every member's addresses, and the ids that may never come back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberTable {
    /// Addresses by node id.
    pub addrs: BTreeMap<NodeId, PeerAddrs>,
    /// Ids of removed members.
    pub retired: BTreeSet<NodeId>,
}

impl MemberTable {
    /// A table of the bootstrap members.
    pub fn new(addrs: BTreeMap<NodeId, PeerAddrs>) -> Self {
        MemberTable {
            addrs,
            retired: BTreeSet::new(),
        }
    }

    /// Follows one committed configuration entry: records the addresses
    /// it brings and retires the members it leaves out. Returns the ids
    /// retired by it.
    pub fn apply(&mut self, entry: &ConfEntry, before: &ConfState) -> Vec<NodeId> {
        if let Some((id, addrs)) = decode_context(&entry.context) {
            if matches!(entry.change, ConfChange::AddLearner(n) | ConfChange::AddVoter(n) if n == id)
            {
                self.addrs.insert(id, addrs);
            }
        }
        let gone: Vec<NodeId> = before
            .members()
            .into_iter()
            .filter(|&id| !entry.conf.contains(id))
            .collect();
        for &id in &gone {
            self.addrs.remove(&id);
            self.retired.insert(id);
        }
        gone
    }
}

/// What an `AddLearner` entry's context holds: the new member's id and
/// addresses (a version byte, then postcard).
pub fn encode_context(id: NodeId, addrs: &PeerAddrs) -> Vec<u8> {
    let mut out = vec![CONTEXT_VERSION];
    out.extend(postcard::to_stdvec(&(id, addrs)).expect("plain data always serialises"));
    out
}

/// Reads [`encode_context`]'s bytes; `None` for an empty or foreign context.
pub fn decode_context(data: &[u8]) -> Option<(NodeId, PeerAddrs)> {
    let (&version, body) = data.split_first()?;
    if version != CONTEXT_VERSION {
        return None;
    }
    let (value, rest) = postcard::take_from_bytes::<(NodeId, PeerAddrs)>(body).ok()?;
    rest.is_empty().then_some(value)
}

/// Why a snapshot's envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    /// Written by a newer server.
    #[error("snapshot envelope version {0} (this build reads {ENVELOPE_VERSION})")]
    Version(u8),
    /// Cut short or damaged.
    #[error("the snapshot's member table does not decode")]
    Malformed,
}

/// A snapshot's data: the magic byte, the envelope version, the member
/// table's length (u32, big-endian) and postcard bytes, then the state
/// machine's image.
pub fn wrap_snapshot(table: &MemberTable, image: &[u8]) -> Vec<u8> {
    let mut out = envelope(table, image.len());
    out.extend_from_slice(image);
    out
}

/// The envelope's head: what [`wrap_snapshot`] puts before the image, in a
/// buffer with room for `image_len` more bytes (the image is then encoded
/// straight after it).
pub fn envelope(table: &MemberTable, image_len: usize) -> Vec<u8> {
    let members = postcard::to_stdvec(table).expect("plain data always serialises");
    let mut out = Vec::with_capacity(6 + members.len() + image_len);
    out.push(ENVELOPE_MAGIC);
    out.push(ENVELOPE_VERSION);
    out.extend((members.len() as u32).to_be_bytes());
    out.extend(members);
    out
}

/// Splits a snapshot's data into its member table (`None` for a snapshot
/// written before the table existed) and the state machine's image.
pub fn unwrap_snapshot(data: &[u8]) -> Result<(Option<MemberTable>, &[u8]), EnvelopeError> {
    match data {
        [ENVELOPE_MAGIC, ENVELOPE_VERSION, rest @ ..] => {
            let (len, rest) = rest
                .split_first_chunk::<4>()
                .ok_or(EnvelopeError::Malformed)?;
            let len = u32::from_be_bytes(*len) as usize;
            if rest.len() < len {
                return Err(EnvelopeError::Malformed);
            }
            let (members, image) = rest.split_at(len);
            let table = postcard::from_bytes(members).map_err(|_| EnvelopeError::Malformed)?;
            Ok((Some(table), image))
        }
        [ENVELOPE_MAGIC, version, ..] => Err(EnvelopeError::Version(*version)),
        _ => Ok((None, data)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> PeerAddrs {
        PeerAddrs {
            raft: format!("h:{n}"),
            client: format!("h:{}", n + 1000),
        }
    }

    #[test]
    fn contexts_round_trip_and_refuse_garbage() {
        let bytes = encode_context(6, &addrs(6));
        assert_eq!(decode_context(&bytes), Some((6, addrs(6))));
        assert_eq!(decode_context(&[]), None);
        assert_eq!(decode_context(&[9, 1, 2]), None);
        assert_eq!(decode_context(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn the_table_follows_committed_changes_and_retires_removed_ids() {
        let mut t = MemberTable::new((1..=3).map(|i| (i, addrs(i as u16))).collect());
        let c3 = ConfState::new(&[1, 2, 3]);
        let add = ConfEntry {
            change: ConfChange::AddLearner(4),
            conf: c3.apply(&ConfChange::AddLearner(4)).unwrap(),
            context: encode_context(4, &addrs(4)),
        };
        assert!(t.apply(&add, &c3).is_empty());
        assert_eq!(t.addrs[&4], addrs(4));
        let joint = ConfEntry {
            change: ConfChange::Joint {
                voters: vec![2, 3, 4],
                learners: vec![],
            },
            conf: add
                .conf
                .apply(&ConfChange::Joint {
                    voters: vec![2, 3, 4],
                    learners: vec![],
                })
                .unwrap(),
            context: vec![],
        };
        // Joint: 1 still votes in C_old.
        assert!(t.apply(&joint, &add.conf).is_empty());
        let leave = ConfEntry {
            change: ConfChange::LeaveJoint,
            conf: joint.conf.apply(&ConfChange::LeaveJoint).unwrap(),
            context: vec![],
        };
        assert_eq!(t.apply(&leave, &joint.conf), vec![1]);
        assert!(!t.addrs.contains_key(&1) && t.retired.contains(&1));
    }

    #[test]
    fn snapshots_carry_the_table_and_old_ones_read_as_bare_images() {
        let mut t = MemberTable::new([(1, addrs(1))].into());
        t.retired.insert(7);
        let data = wrap_snapshot(&t, b"\x01image");
        let (table, image) = unwrap_snapshot(&data).unwrap();
        assert_eq!((table, image), (Some(t), &b"\x01image"[..]));
        assert_eq!(
            unwrap_snapshot(b"\x01image").unwrap(),
            (None, &b"\x01image"[..])
        );
        assert_eq!(
            unwrap_snapshot(&[ENVELOPE_MAGIC, 9]),
            Err(EnvelopeError::Version(9))
        );
        assert_eq!(
            unwrap_snapshot(&data[..8]),
            Err(EnvelopeError::Malformed),
            "cut inside the table"
        );
    }
}
