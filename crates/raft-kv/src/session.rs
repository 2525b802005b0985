//! The session table: exactly-once semantics for client requests (thesis §6.3).
//!
//! Per session it keeps the last sequence number applied and its answer. A
//! retry of that request is answered from the table and never applied twice;
//! an older one is refused. The table cannot grow forever: a session expires
//! when the log clock passes its last activity by the timeout, and past the
//! cap the least recently used session is evicted. Both rules read only the
//! replicated state (the clock carried in the log and the log index of each
//! session's last use), so every replica expires the same sessions at the
//! same index.

use std::collections::BTreeMap;

use raft_core::Index;
use serde::{Deserialize, Serialize};

use crate::api::{KvError, Seq, SessionId};
use crate::op::OpResult;

/// The answer a session remembers for its last request.
pub type Answer = Result<OpResult, KvError>;

/// One client session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The log index of the registration record.
    pub id: SessionId,
    /// The last request applied, and what it answered (`None` before the first).
    pub last: Option<(Seq, Answer)>,
    /// Log clock at the session's last use.
    pub active_ms: u64,
    /// Log index of the session's last use: the recency order for eviction.
    pub used_at: Index,
}

/// What the table says about an incoming request.
#[derive(Debug, PartialEq, Eq)]
pub enum Check<'a> {
    /// A new request: apply it, then [`SessionTable::record`] its answer.
    New,
    /// The last request again: answer this, apply nothing.
    Duplicate(&'a Answer),
    /// Older than the last request.
    Stale { last: Seq },
    /// No such session (expired, evicted or never registered).
    Unknown,
}

/// The sessions by id: a persistent map, so that a snapshot image shares
/// it instead of copying every session's last answer.
pub type SessionMap = imbl::OrdMap<SessionId, Session>;

/// Every live session, with an index by recency for expiry and eviction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionTable {
    sessions: SessionMap,
    /// `used_at` → session: oldest first. Since the log clock never goes
    /// back, this is also the order of `active_ms`.
    by_use: BTreeMap<Index, SessionId>,
}

impl SessionTable {
    /// Rebuilds a table from its sessions (as saved in a snapshot). `None` if
    /// two sessions share an id or a last-use index, which a table never holds.
    pub fn from_sessions(sessions: Vec<Session>) -> Option<Self> {
        let mut table = SessionTable::default();
        for s in sessions {
            if table.by_use.insert(s.used_at, s.id).is_some() {
                return None;
            }
            if table.sessions.insert(s.id, s).is_some() {
                return None;
            }
        }
        Some(table)
    }

    /// The sessions in id order (what a snapshot saves).
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// The sessions by id, sharing this table's nodes (O(1)).
    pub fn shared(&self) -> SessionMap {
        self.sessions.clone()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The session `id`, if live.
    pub fn get(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// Drops every session idle for longer than `timeout_ms` at log time `now_ms`.
    pub fn expire(&mut self, now_ms: u64, timeout_ms: u64) {
        while let Some((&used_at, &id)) = self.by_use.first_key_value() {
            let active_ms = self.sessions.get(&id).map_or(0, |s| s.active_ms);
            if now_ms.saturating_sub(active_ms) <= timeout_ms {
                break;
            }
            self.by_use.remove(&used_at);
            self.sessions.remove(&id);
        }
    }

    /// Opens session `id` (its registration's index) at log time `now_ms`,
    /// evicting the least recently used sessions beyond `max` (at least one
    /// session, the new one, is kept).
    pub fn register(&mut self, id: SessionId, now_ms: u64, max: usize) {
        if let Some(old) = self.sessions.remove(&id) {
            self.by_use.remove(&old.used_at);
        }
        self.sessions.insert(
            id,
            Session {
                id,
                last: None,
                active_ms: now_ms,
                used_at: id,
            },
        );
        self.by_use.insert(id, id);
        while self.sessions.len() > max.max(1) {
            let Some((_, lru)) = self.by_use.pop_first() else {
                break;
            };
            self.sessions.remove(&lru);
        }
    }

    /// Looks up request `seq` of `session`.
    pub fn check(&self, session: SessionId, seq: Seq) -> Check<'_> {
        let Some(s) = self.sessions.get(&session) else {
            return Check::Unknown;
        };
        match &s.last {
            Some((last, answer)) if *last == seq => Check::Duplicate(answer),
            Some((last, _)) if seq < *last => Check::Stale { last: *last },
            None if seq == 0 => Check::Stale { last: 0 },
            _ => Check::New,
        }
    }

    /// Marks `session` used by the record at `index`, at log time `now_ms`.
    pub fn touch(&mut self, session: SessionId, index: Index, now_ms: u64) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        self.by_use.remove(&s.used_at);
        s.used_at = index;
        s.active_ms = now_ms;
        self.by_use.insert(index, session);
    }

    /// Records the answer of request `seq`, applied at `index`.
    pub fn record(
        &mut self,
        session: SessionId,
        seq: Seq,
        answer: Answer,
        index: Index,
        now_ms: u64,
    ) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.last = Some((seq, answer));
        }
        self.touch(session, index, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Answer {
        Ok(OpResult::Replaced(None))
    }

    #[test]
    fn duplicates_and_stale_requests() {
        let mut t = SessionTable::default();
        assert_eq!(t.check(5, 1), Check::Unknown);
        t.register(5, 0, 10);
        assert_eq!(t.check(5, 0), Check::Stale { last: 0 });
        assert_eq!(t.check(5, 1), Check::New);
        t.record(5, 1, ok(), 6, 0);
        assert_eq!(t.check(5, 1), Check::Duplicate(&ok()));
        assert_eq!(t.check(5, 3), Check::New);
        t.record(5, 3, ok(), 7, 0);
        assert_eq!(t.check(5, 2), Check::Stale { last: 3 });
    }

    #[test]
    fn expiry_follows_the_log_clock() {
        let mut t = SessionTable::default();
        t.register(1, 100, 10);
        t.register(2, 150, 10);
        t.touch(1, 3, 200);
        t.expire(250, 100); // 2 idle for 100: kept (expiry is strictly past the timeout).
        assert_eq!(t.len(), 2);
        t.expire(251, 100);
        assert!(t.get(2).is_none() && t.get(1).is_some());
        t.expire(301, 100);
        assert!(t.is_empty());
    }

    #[test]
    fn cap_evicts_the_least_recently_used() {
        let mut t = SessionTable::default();
        t.register(1, 0, 2);
        t.register(2, 0, 2);
        t.touch(1, 3, 0);
        t.register(4, 0, 2);
        assert!(t.get(2).is_none(), "2 was used least recently");
        assert!(t.get(1).is_some() && t.get(4).is_some());
    }

    #[test]
    fn rebuild_refuses_impossible_tables() {
        let s = |id, used_at| Session {
            id,
            last: None,
            active_ms: 0,
            used_at,
        };
        assert!(SessionTable::from_sessions(vec![s(1, 1), s(2, 2)]).is_some());
        assert!(SessionTable::from_sessions(vec![s(1, 3), s(2, 3)]).is_none());
        assert!(SessionTable::from_sessions(vec![s(1, 1), s(1, 2)]).is_none());
    }
}
