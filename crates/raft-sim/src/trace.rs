//! The event trace: what happened, when, on which node, in which term and
//! role. Written as JSON lines when asked (`RAFT_TRACE`, `--trace`); the
//! notable events are also kept for the timeline and for failure reports.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use raft_core::{Index, NodeId, Role, Term};
use serde::Serialize;

use crate::clock::{as_ms, Time};

/// How many notable events a failure report shows.
const RECENT: usize = 40;

/// One thing that happened.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A message left the node.
    Send {
        to: NodeId,
        msg: &'static str,
        bytes: u64,
    },
    /// A message arrived and was stepped into the node.
    Deliver { from: NodeId, msg: &'static str },
    /// A message was caught by a hold, to be delivered when its addressee
    /// leads in a later term.
    Held { to: NodeId, msg: &'static str },
    /// A message was lost.
    Lost {
        to: NodeId,
        msg: &'static str,
        reason: &'static str,
    },
    /// The node accepted a proposal at `index`.
    Propose { index: Index },
    /// The node changed role.
    Role { from: Role, to: Role },
    /// The node's term changed (the role may have stayed).
    Term { from: Term, to: Term },
    /// The node's commit index rose.
    Commit { index: Index },
    /// The application took a snapshot through `index`.
    Snapshot { index: Index },
    /// The node installed its leader's snapshot through `index`.
    Install { index: Index },
    /// The node crashed (volatile state lost).
    Crash,
    /// A new incarnation of the node started from its storage.
    Restart,
    /// A new server started, with no configuration, to be added.
    Join,
    /// The server was stopped for good (a removed member leaving).
    Retire,
    /// The leader appended a configuration change at `index` (§6).
    ConfChange { index: Index },
    /// The leader began handing leadership to `to` (thesis §3.10).
    Transfer { to: NodeId },
    /// A write in progress was lost: the node crashed after its early
    /// messages left and before its Ready was persisted.
    WriteLost,
    /// The node was connected to the network.
    Connect,
    /// The node was cut off from everyone.
    Disconnect,
    /// A partition put the node in `group`.
    Group { group: u32 },
    /// Every partition was removed.
    Heal,
    /// The network's global mode changed.
    Network {
        reliable: bool,
        long_reordering: bool,
    },
    /// The long delay on every link changed: `pct` percent of messages
    /// held up to `max_ms`.
    LongDelay { pct: u32, max_ms: u64 },
    /// Faults were set on the link from the node to `to`.
    Faults {
        to: NodeId,
        drop_pct: u32,
        dup_pct: u32,
        delay_max_ms: u64,
    },
}

impl Event {
    /// Whether the event belongs on a timeline (not message traffic).
    pub fn is_notable(&self) -> bool {
        !matches!(
            self,
            Event::Send { .. }
                | Event::Held { .. }
                | Event::Deliver { .. }
                | Event::Lost { .. }
                | Event::Propose { .. }
                | Event::Snapshot { .. }
        )
    }
}

/// An event with its time and the node's state when it happened.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Record {
    /// Virtual time.
    pub time: Time,
    /// The node, or `None` for a cluster-wide event.
    pub node: Option<NodeId>,
    /// The node's term (after the event).
    pub term: Option<Term>,
    /// The node's role (after the event), `None` when it is down.
    pub role: Option<Role>,
    /// What happened.
    pub event: Event,
}

#[derive(Serialize)]
struct Line<'a> {
    time: f64,
    node: Option<NodeId>,
    term: Option<Term>,
    role: Option<Role>,
    #[serde(flatten)]
    event: &'a Event,
}

impl Record {
    /// The record as one JSON line (no newline): time in ms, node, term, role, event.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Line {
            time: as_ms(self.time),
            node: self.node,
            term: self.term,
            role: self.role,
            event: &self.event,
        })
        .expect("records always encode")
    }
}

/// Collects records: to a JSON-lines file, to the timeline, and the last few
/// notable ones for failure reports.
#[derive(Default)]
pub struct Tracer {
    out: Option<BufWriter<File>>,
    keep: bool,
    kept: Vec<Record>,
    recent: VecDeque<Record>,
}

impl Tracer {
    /// A tracer writing JSON lines to `path` (if any) and keeping the
    /// notable events for a timeline when `keep` is set.
    pub fn new(path: Option<&Path>, keep: bool) -> std::io::Result<Self> {
        let out = match path {
            Some(p) => Some(BufWriter::new(File::create(p)?)),
            None => None,
        };
        Ok(Tracer {
            out,
            keep,
            kept: Vec::new(),
            recent: VecDeque::with_capacity(RECENT),
        })
    }

    /// Whether message-level records are wanted (only the file takes them).
    pub fn wants_messages(&self) -> bool {
        self.out.is_some()
    }

    /// Records one event.
    pub fn record(&mut self, r: Record) {
        if let Some(out) = &mut self.out {
            let line = r.to_json();
            if writeln!(out, "{line}").is_err() {
                eprintln!("raft-sim: trace write failed; tracing stops");
                self.out = None;
            }
        }
        if r.event.is_notable() {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(r);
            if self.keep {
                self.kept.push(r);
            }
        }
    }

    /// The last notable events, oldest first.
    pub fn recent(&self) -> Vec<Record> {
        self.recent.iter().copied().collect()
    }

    /// Every notable event, when keeping was asked for.
    pub fn kept(&self) -> &[Record] {
        &self.kept
    }

    /// Flushes the trace file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.out {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_time_node_term_role_event() {
        let r = Record {
            time: 12_345,
            node: Some(2),
            term: Some(3),
            role: Some(Role::Leader),
            event: Event::Commit { index: 7 },
        };
        assert_eq!(
            r.to_json(),
            r#"{"time":12.345,"node":2,"term":3,"role":"Leader","event":"commit","index":7}"#
        );
        let heal = Record {
            time: 0,
            node: None,
            term: None,
            role: None,
            event: Event::Heal,
        };
        assert_eq!(
            heal.to_json(),
            r#"{"time":0.0,"node":null,"term":null,"role":null,"event":"heal"}"#
        );
    }
}
