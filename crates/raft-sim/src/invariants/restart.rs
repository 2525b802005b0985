//! A crash and a restart: the mirror stays (it is the node's disk), and a
//! restarted node's storage must hold exactly what was persisted before.

use raft_core::{Index, NodeId, Role, Status, Storage};

use super::view::{chain, View};
use super::{Check, Checker};

impl Checker {
    /// Node `id` crashed: it keeps its mirror (that is its disk), and leads nothing.
    pub fn on_crash(&mut self, id: NodeId) {
        let v = &mut self.views[id as usize - 1];
        v.leading = None;
        v.seen = (Role::Follower, v.term, 0);
    }

    /// Node `id` restarted over `storage`: rebuild its mirror from what the
    /// storage holds and check it against everything seen before.
    pub fn on_restart<S: Storage>(&mut self, id: NodeId, storage: &S, st: &Status) -> Check {
        let i = id as usize - 1;
        let snap = storage.snapshot().map_err(|e| e.to_string())?;
        let m = snap.meta;
        let base_chain = match self.chains.get(&(m.index, m.term)) {
            Some(&c) => c,
            None if m.index == 0 => 0,
            None => return Err(format!("restarted from an unknown snapshot ({m:?})")),
        };
        let (first, last) = (storage.first_index(), storage.last_index());
        let entries = storage
            .entries(first, last + 1, u64::MAX)
            .map_err(|e| e.to_string())?;
        let bootstrap = self.views[i].bootstrap.clone();
        let old = std::mem::replace(&mut self.views[i], View::empty(bootstrap));
        let v = &mut self.views[i];
        (v.base, v.base_term, v.base_chain) = (m.index, m.term, base_chain);
        if storage.first_index() > 1 {
            let conf = v.snapshot_conf(&snap.conf);
            v.confs.snapshot(m.index, conf, false);
        }
        v.confs.appended(first, &entries)?;
        let mut prev = base_chain;
        let mut fresh = Vec::with_capacity(entries.len());
        for e in &entries {
            prev = chain(prev, e);
            fresh.push((e.index, e.term, prev));
        }
        for (index, term, c) in fresh {
            self.record_chain(index, term, c)?;
            self.views[i].log.push((term, c));
        }
        if (st.term, st.vote) != (old.term, old.vote) {
            return Err(format!(
                "restarted with term/vote {}/{:?} but {}/{:?} was persisted",
                st.term, st.vote, old.term, old.vote
            ));
        }
        let v = &mut self.views[i];
        (v.term, v.vote) = (old.term, old.vote);
        // A new incarnation: commit and applied start over from storage.
        (v.commit, v.applied) = (st.commit, st.applied);
        v.seen = (st.role, st.term, st.commit);
        if old.last() != v.last() || old.at(old.last()) != v.at(v.last()) {
            return Err(format!(
                "storage reopened with log ending at {} but {} was persisted",
                v.last(),
                old.last()
            ));
        }
        let known = self.committed.len() as Index;
        let at_commit = v.at(st.commit).map(|(_, c)| c);
        if st.commit > v.base
            && st.commit <= known
            && at_commit != Some(self.committed[st.commit as usize - 1].1)
        {
            return Err(format!(
                "restarted with a wrong entry at commit {}",
                st.commit
            ));
        }
        Ok(())
    }
}
