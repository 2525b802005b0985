//! Targeted holds: keep chosen messages back until a condition holds, so
//! that requests and replies arrive terms after they were sent. The network
//! catches them ([`crate::network`]); the simulator lets them go.
//!
//! A random [`LongDelay`](crate::network::LongDelay) makes such late
//! arrivals happen by chance; a [`Hold`] makes one happen on purpose, for
//! example "hold node 2's replies to node 1 until node 1 leads again in a
//! later term". Figure 2 says a server ignores replies from older terms;
//! only a network that can carry a reply across two leaderships of the same
//! node tests that rule.

use raft_core::{Message, NodeId};
use rand::Rng;

use crate::factory::StorageFactory;
use crate::sim::{Ev, Sim};

/// Which messages a hold or a long delay applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Select {
    /// Every message.
    #[default]
    Any,
    /// Requests only (votes, appends, snapshots).
    Requests,
    /// Replies only.
    Replies,
    /// One kind, by its trace name ([`raft_core::Body::kind`]).
    Kind(&'static str),
}

impl Select {
    /// Whether `m` is selected.
    pub fn matches(&self, m: &Message) -> bool {
        match self {
            Select::Any => true,
            Select::Requests => !m.body.is_reply(),
            Select::Replies => m.body.is_reply(),
            Select::Kind(k) => m.body.kind() == *k,
        }
    }
}

/// When a held message is let go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// This many milliseconds after it was sent (several election timeouts
    /// carry it into later terms).
    AfterMs(u64),
    /// Once its addressee leads in a term later than the message's, and the
    /// link between the two is up.
    AddresseeLeadsLater,
}

/// A rule that catches messages on their way out and holds them back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Only messages from this node (any node if `None`).
    pub from: Option<NodeId>,
    /// Only messages to this node (any node if `None`).
    pub to: Option<NodeId>,
    /// Which messages.
    pub select: Select,
    /// When they are let go.
    pub release: Release,
    /// Catch at most this many messages (`None`: until stopped).
    pub limit: Option<u64>,
}

impl Hold {
    /// Holds the messages `select` picks until `release`, on every link.
    pub fn new(select: Select, release: Release) -> Self {
        Hold {
            from: None,
            to: None,
            select,
            release,
            limit: None,
        }
    }

    /// Only messages sent by `id`.
    pub fn from(mut self, id: NodeId) -> Self {
        self.from = Some(id);
        self
    }

    /// Only messages addressed to `id`.
    pub fn to(mut self, id: NodeId) -> Self {
        self.to = Some(id);
        self
    }

    /// Catches at most `n` messages.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    fn matches(&self, m: &Message) -> bool {
        self.from.is_none_or(|f| f == m.from)
            && self.to.is_none_or(|t| t == m.to)
            && self.select.matches(m)
    }
}

/// Names a hold set with [`Sim::hold`](crate::Sim::hold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldId(usize);

struct Rule {
    hold: Hold,
    active: bool,
    caught: u64,
}

/// The rules in force and the messages waiting for their addressee to lead.
#[derive(Default)]
pub(crate) struct Holds {
    rules: Vec<Rule>,
    waiting: Vec<Message>,
}

impl Holds {
    pub fn add(&mut self, hold: Hold) -> HoldId {
        self.rules.push(Rule {
            hold,
            active: true,
            caught: 0,
        });
        HoldId(self.rules.len() - 1)
    }

    /// Stops catching; what was caught still waits for its release.
    pub fn stop(&mut self, id: HoldId) {
        self.rules[id.0].active = false;
    }

    /// Stops every rule from catching more.
    pub fn stop_all(&mut self) {
        for r in &mut self.rules {
            r.active = false;
        }
    }

    /// Messages caught by rule `id` so far.
    pub fn caught(&self, id: HoldId) -> u64 {
        self.rules[id.0].caught
    }

    /// The release of the first active rule that catches `m`, if any.
    pub fn catch(&mut self, m: &Message) -> Option<Release> {
        let rule = self
            .rules
            .iter_mut()
            .find(|r| r.active && r.hold.matches(m))?;
        rule.caught += 1;
        if rule.hold.limit.is_some_and(|n| rule.caught >= n) {
            rule.active = false;
        }
        Some(rule.hold.release)
    }

    /// Keeps `m` until its addressee leads in a later term.
    pub fn wait(&mut self, m: Message) {
        self.waiting.push(m);
    }

    /// Messages waiting for their addressee.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Takes every waiting message, oldest first.
    pub fn take_waiting(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.waiting)
    }

    /// Puts back messages that must wait longer, ahead of newer ones.
    pub fn wait_longer(&mut self, mut older: Vec<Message>) {
        older.append(&mut self.waiting);
        self.waiting = older;
    }
}

/// Holds, as the simulator offers them.
impl<F: StorageFactory> Sim<F> {
    /// Starts holding the messages `hold` picks.
    pub fn hold(&mut self, hold: Hold) -> HoldId {
        self.net.hold(hold)
    }

    /// Stops hold `id` from catching more; what it caught keeps waiting.
    pub fn stop_hold(&mut self, id: HoldId) {
        self.net.stop_hold(id);
    }

    /// Stops every hold from catching more; what they caught keeps waiting.
    pub fn stop_holds(&mut self) {
        self.net.stop_holds();
    }

    /// Messages hold `id` has caught so far.
    pub fn hold_caught(&self, id: HoldId) -> u64 {
        self.net.hold_caught(id)
    }

    /// Messages still waiting for their addressee to lead in a later term.
    pub fn waiting(&self) -> usize {
        self.net.waiting()
    }

    /// Lets every waiting message whose link is up go now, whoever leads.
    pub fn release_all(&mut self) {
        let go = self.net.release(|_| true);
        self.put_on_wire(go);
    }

    /// Puts on the wire every waiting message whose addressee now leads in
    /// a later term than the message's, over a link that is up. Looks only
    /// when a role, term or link changed or a message was held since.
    pub(crate) fn release_held(&mut self) {
        if !std::mem::take(&mut self.holds_dirty) || self.net.waiting() == 0 {
            return;
        }
        let nodes = &self.nodes;
        let go = self.net.release(|m| {
            nodes[m.to as usize - 1]
                .as_ref()
                .is_some_and(|n| n.is_leader() && n.term() > m.term)
        });
        self.put_on_wire(go);
    }

    /// Delivers released messages with a reliable link's latency.
    fn put_on_wire(&mut self, go: Vec<Message>) {
        for m in go {
            let at = self.now + self.rng.gen_range(100..1_000);
            self.queue.push(at, Ev::Deliver(m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{AppendReply, Body};

    fn reply(from: NodeId, to: NodeId) -> Message {
        Message {
            from,
            to,
            term: 1,
            body: Body::AppendEntriesReply(AppendReply::StaleTerm),
        }
    }

    #[test]
    fn a_rule_catches_its_link_and_kind_up_to_its_limit() {
        let mut h = Holds::default();
        let id = h.add(
            Hold::new(Select::Replies, Release::AddresseeLeadsLater)
                .from(2)
                .to(1)
                .limit(2),
        );
        assert_eq!(h.catch(&reply(3, 1)), None, "another sender");
        let mut request = reply(2, 1);
        request.body = Body::RequestVote {
            last_log_index: 0,
            last_log_term: 0,
            pre_vote: true,
            transfer: false,
        };
        assert_eq!(h.catch(&request), None, "a request");
        assert!(h.catch(&reply(2, 1)).is_some());
        assert!(h.catch(&reply(2, 1)).is_some());
        assert_eq!(h.catch(&reply(2, 1)), None, "limit reached");
        assert_eq!(h.caught(id), 2);
    }

    #[test]
    fn waiting_messages_leave_in_order_when_ready() {
        let mut h = Holds::default();
        for from in [2, 3, 2] {
            h.wait(reply(from, 1));
        }
        let (go, stay): (Vec<_>, Vec<_>) = h.take_waiting().into_iter().partition(|m| m.from == 2);
        h.wait_longer(stay);
        h.wait(reply(4, 1));
        assert_eq!(go.len(), 2);
        let order: Vec<_> = h.take_waiting().iter().map(|m| m.from).collect();
        assert_eq!(order, [3, 4]);
    }
}
