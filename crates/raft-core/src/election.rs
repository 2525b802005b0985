//! Leader election (§5.2, §5.4.1) with the PreVote stage (thesis §9.6).

use crate::error::Error;
use crate::message::Body;
use crate::node::{Node, Role};
use crate::quorum::VoteResult;
use crate::storage::Storage;
use crate::types::{Index, NodeId, Term};
use crate::validate::MAX_TERM;

impl<S: Storage> Node<S> {
    /// The election timer fired: start a PreVote round, or an election.
    pub(crate) fn campaign(&mut self) -> Result<(), Error> {
        self.reset_election_timer();
        if self.term >= MAX_TERM {
            // Terms come only from honest peers (the door refuses larger
            // ones), so this is out of reach; never wrap around to term 0.
            return Ok(());
        }
        self.leader = None;
        if self.cfg.pre_vote {
            self.role = Role::PreCandidate;
            self.tracker.reset_votes();
            if self.tracker.tally() == VoteResult::Won {
                return self.start_election(false);
            }
            self.request_votes(self.term + 1, true, false);
            Ok(())
        } else {
            self.start_election(false)
        }
    }

    /// Figure 2, candidates: increment currentTerm, vote for self, reset the
    /// election timer, send RequestVote to all other servers. `transfer`
    /// marks a campaign on the leader's TimeoutNow (thesis §3.10).
    pub(crate) fn start_election(&mut self, transfer: bool) -> Result<(), Error> {
        if self.term >= MAX_TERM {
            return Ok(());
        }
        self.term += 1;
        self.vote = Some(self.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.reset_election_timer();
        self.incoming_snapshot = None;
        self.tracker.reset_votes();
        if self.tracker.tally() == VoteResult::Won {
            return self.become_leader();
        }
        self.request_votes(self.term, false, transfer);
        Ok(())
    }

    /// Asks every other voter (learners do not vote).
    fn request_votes(&mut self, term: Term, pre_vote: bool, transfer: bool) {
        let last_log_index = self.log.last_index();
        let last_log_term = self.log.last_term();
        for to in self.tracker.voter_peers() {
            self.send(
                to,
                term,
                Body::RequestVote {
                    last_log_index,
                    last_log_term,
                    pre_vote,
                    transfer,
                },
            );
        }
    }

    /// RequestVote receiver (Figure 2). `term` is at least ours here; a real
    /// vote is granted at most once per term, only to a candidate whose log is
    /// at least as up-to-date (§5.4.1). The vote reaches storage in the same
    /// Ready as the reply, before the reply is sent.
    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        last_log_index: Index,
        last_log_term: Term,
        pre_vote: bool,
    ) {
        let can_vote = if pre_vote {
            term > self.term
        } else {
            term == self.term && (self.vote.is_none() || self.vote == Some(from))
        };
        let granted = can_vote && self.log.is_up_to_date(last_log_index, last_log_term);
        if granted && !pre_vote {
            self.vote = Some(from);
            self.reset_election_timer();
        }
        let reply_term = if granted && pre_vote { term } else { self.term };
        self.send(
            from,
            reply_term,
            Body::RequestVoteReply { granted, pre_vote },
        );
    }

    /// A vote reply. Only counted when it answers this round: a real vote in
    /// our current term while Candidate, a PreVote for `term + 1` while
    /// PreCandidate. Anything else is a late reply and is dropped.
    pub(crate) fn handle_vote_reply(
        &mut self,
        from: NodeId,
        term: Term,
        granted: bool,
        pre_vote: bool,
    ) -> Result<(), Error> {
        let current = match self.role {
            Role::Candidate => !pre_vote && term == self.term,
            Role::PreCandidate => {
                pre_vote
                    && (if granted {
                        term == self.term + 1
                    } else {
                        term == self.term
                    })
            }
            _ => false,
        };
        if !current {
            return Ok(());
        }
        self.tracker.record_vote(from, granted);
        match self.tracker.tally() {
            VoteResult::Won if self.role == Role::PreCandidate => self.start_election(false)?,
            VoteResult::Won => self.become_leader()?,
            VoteResult::Lost => self.become_follower(self.term, None),
            VoteResult::Pending => {}
        }
        Ok(())
    }

    /// Figure 2, leaders: reinitialise nextIndex and matchIndex, then send
    /// initial empty AppendEntries to each server.
    pub(crate) fn become_leader(&mut self) -> Result<(), Error> {
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.tracker.clear_votes();
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        self.incoming_snapshot = None;
        self.reset_reads();
        self.tracker.reset_progress(self.log.last_index() + 1);
        self.append_noop();
        // The first AppendEntries go out at once: they claim leadership and
        // start probing where each follower's log meets ours.
        self.pending_send = false;
        for to in self.tracker.peers() {
            self.send_append(to, true)?;
        }
        Ok(())
    }
}
