//! The data directory's identity: which cluster and node it belongs to.
//!
//! A node's data directory holds `IDENTITY` (a small TOML file) beside the
//! WAL (`wal/`). It is written once, when the directory is first used, by
//! temp file, fsync, rename and directory fsync, before the WAL holds
//! anything. Every later start compares it with the configuration and
//! refuses to start on a mismatch: a WAL holds one node's votes and log, and
//! running it as another node, in another cluster or with other members
//! could elect two leaders in one term.
//!
//! It also records every member's addresses as the node first knew them
//! (`[[peers]]`), so `raftkv server --data-dir DIR` alone can restart it,
//! and, for a node that joined a running cluster (`--join`), that it did:
//! such a node has no bootstrap voters and learns the configuration from
//! its log and snapshots.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use raft_core::NodeId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::PeerAddrs;

/// The identity file's name in the data directory.
pub const IDENTITY_FILE: &str = "IDENTITY";
/// The WAL's folder in the data directory.
pub const WAL_DIR: &str = "wal";
/// The identity format this code writes and reads.
const FORMAT: u32 = 1;

/// What a data directory records about its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Format of this file.
    pub format: u32,
    /// The cluster's id.
    pub cluster_id: String,
    /// The node's id.
    pub node_id: NodeId,
    /// The voting members when the directory was created (empty for a
    /// node that joined a running cluster).
    pub members: Vec<NodeId>,
    /// Whether the node joined a running cluster (`--join`).
    #[serde(default)]
    pub joined: bool,
    /// With `joined`: whether it stays a learner.
    #[serde(default)]
    pub learner: bool,
    /// Every member's addresses when the directory was created.
    #[serde(default)]
    pub peers: Vec<IdentityPeer>,
}

/// One member's addresses in the identity file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityPeer {
    pub id: NodeId,
    pub raft: String,
    pub client: String,
}

/// Why a data directory was refused.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// Reading or writing the directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The identity file does not parse, or has a format this code does not read.
    #[error("{path} is not a raftkv identity file: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    /// The directory belongs to another node or cluster.
    #[error(
        "data directory {dir} belongs to node {found_node} of cluster {found_cluster:?}, \
         not node {node} of cluster {cluster:?}; refusing to start"
    )]
    Mismatch {
        dir: PathBuf,
        found_node: NodeId,
        found_cluster: String,
        node: NodeId,
        cluster: String,
    },
    /// The directory was created with other members.
    #[error(
        "data directory {dir} was created for members {found:?}, but the peer list has {members:?}; \
         refusing to start (membership cannot change through flags)"
    )]
    Members {
        dir: PathBuf,
        found: Vec<NodeId>,
        members: Vec<NodeId>,
    },
    /// A WAL without an identity file: not a directory this code created.
    #[error("{dir} holds a WAL but no {IDENTITY_FILE} file; refusing to start")]
    Foreign { dir: PathBuf },
}

/// Checks `dir` against the expected identity, creating the directory and
/// its identity file when it is new. Blocking (fsync): call off the async
/// runtime's worker threads.
pub fn check_or_create(dir: &Path, expected: &Identity) -> Result<(), IdentityError> {
    match read(dir)? {
        Some(found) => compare(dir, &found, expected),
        None => {
            let wal = dir.join(WAL_DIR);
            let wal_used = fs::read_dir(&wal).is_ok_and(|mut d| d.next().is_some());
            if wal_used {
                return Err(IdentityError::Foreign {
                    dir: dir.to_path_buf(),
                });
            }
            write(dir, expected)
        }
    }
}

/// The identity recorded in `dir`, if any. Blocking.
pub fn read(dir: &Path) -> Result<Option<Identity>, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            let unreadable = |reason: String| IdentityError::Unreadable {
                path: path.clone(),
                reason,
            };
            let text = String::from_utf8(bytes).map_err(|_| unreadable("not UTF-8".into()))?;
            let found: Identity =
                toml::from_str(&text).map_err(|e| unreadable(e.message().to_string()))?;
            Ok(Some(found))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Io {
            op: "read",
            path,
            source,
        }),
    }
}

fn compare(dir: &Path, found: &Identity, expected: &Identity) -> Result<(), IdentityError> {
    if found.format != FORMAT {
        return Err(IdentityError::Unreadable {
            path: dir.join(IDENTITY_FILE),
            reason: format!("format {} (this build reads {FORMAT})", found.format),
        });
    }
    if found.node_id != expected.node_id || found.cluster_id != expected.cluster_id {
        return Err(IdentityError::Mismatch {
            dir: dir.to_path_buf(),
            found_node: found.node_id,
            found_cluster: found.cluster_id.clone(),
            node: expected.node_id,
            cluster: expected.cluster_id.clone(),
        });
    }
    if !found.joined && found.members != expected.members {
        return Err(IdentityError::Members {
            dir: dir.to_path_buf(),
            found: found.members.clone(),
            members: expected.members.clone(),
        });
    }
    Ok(())
}

/// Writes the identity durably: temp file, fsync, rename, directory fsync.
fn write(dir: &Path, identity: &Identity) -> Result<(), IdentityError> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| IdentityError::Io { op, path, source }
    };
    fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(io("fsync directory", parent))?;
    }
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    let text = format!(
        "# raftkv data directory: refuses to start as another node or cluster\n{}",
        toml::to_string(identity).expect("an identity always serialises")
    );
    let mut file = fs::File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(text.as_bytes()).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("fsync", &tmp))?;
    let path = dir.join(IDENTITY_FILE);
    fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    sync_dir(dir).map_err(io("fsync directory", dir))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl Identity {
    /// The identity a configuration expects.
    pub fn new(cluster_id: &str, node_id: NodeId, members: Vec<NodeId>) -> Self {
        Identity {
            format: FORMAT,
            cluster_id: cluster_id.to_string(),
            node_id,
            members,
            joined: false,
            learner: false,
            peers: Vec::new(),
        }
    }

    /// Records the members' addresses.
    pub fn with_peers(mut self, peers: &BTreeMap<NodeId, PeerAddrs>) -> Self {
        self.peers = peers
            .iter()
            .map(|(&id, p)| IdentityPeer {
                id,
                raft: p.raft.clone(),
                client: p.client.clone(),
            })
            .collect();
        self
    }

    /// The recorded addresses, by id.
    pub fn peer_map(&self) -> BTreeMap<NodeId, PeerAddrs> {
        self.peers
            .iter()
            .map(|p| {
                let addrs = PeerAddrs {
                    raft: p.raft.clone(),
                    client: p.client.clone(),
                };
                (p.id, addrs)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("node1");
        let me = Identity::new("c", 1, vec![1, 2, 3]);
        check_or_create(&dir, &me).unwrap();
        check_or_create(&dir, &me).unwrap();
        let err = check_or_create(&dir, &Identity::new("c", 2, vec![1, 2, 3])).unwrap_err();
        assert!(matches!(err, IdentityError::Mismatch { found_node: 1, .. }));
        assert!(err
            .to_string()
            .contains("belongs to node 1 of cluster \"c\""));
        let err = check_or_create(&dir, &Identity::new("d", 1, vec![1, 2, 3])).unwrap_err();
        assert!(matches!(err, IdentityError::Mismatch { .. }));
        let err = check_or_create(&dir, &Identity::new("c", 1, vec![1, 2])).unwrap_err();
        assert!(matches!(err, IdentityError::Members { .. }));
    }

    #[test]
    fn a_wal_without_identity_or_a_garbled_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let me = Identity::new("c", 1, vec![1]);
        fs::create_dir_all(tmp.path().join(WAL_DIR)).unwrap();
        fs::write(tmp.path().join(WAL_DIR).join("x"), b"x").unwrap();
        let err = check_or_create(tmp.path(), &me).unwrap_err();
        assert!(matches!(err, IdentityError::Foreign { .. }));
        fs::write(tmp.path().join(IDENTITY_FILE), b"\xff garbage").unwrap();
        let err = check_or_create(tmp.path(), &me).unwrap_err();
        assert!(matches!(err, IdentityError::Unreadable { .. }), "{err}");
    }
}
