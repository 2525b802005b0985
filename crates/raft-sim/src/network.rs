//! The simulated network: who can reach whom, what each link does to a
//! message (drop, delay, reorder, duplicate), and the lab's RPC counters.
//!
//! Requests and replies are one-way messages. The lab's unreliable mode
//! delays requests 0–26 ms and loses 10% of requests and 10% of replies; its
//! long-reordering mode holds back 2/3 of replies for 200–2,200 ms. A
//! reliable link is FIFO with sub-millisecond latency. A [`LongDelay`]
//! (on one link or on all) holds a message for seconds, several election
//! timeouts, and [`Hold`] rules hold chosen messages on purpose: both
//! deliver requests and replies into later terms.

use raft_core::{Message, NodeId, Term};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::clock::{Time, MS};
use crate::hold::{Hold, HoldId, Holds, Release, Select};

/// A random long delay: each selected message is held, with `probability`,
/// for a time uniform in `delay_ms` — long enough (several election
/// timeouts) that it arrives after its sender's or addressee's term moved on.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LongDelay {
    /// Probability that a selected message is held.
    pub probability: f64,
    /// How long, uniform in `[min, max]` milliseconds.
    pub delay_ms: (u64, u64),
    /// Which messages may be held.
    pub select: Select,
}

impl LongDelay {
    /// Holds any message with probability `p` for `lo..=hi` ms.
    pub fn new(p: f64, lo: u64, hi: u64) -> Self {
        LongDelay {
            probability: p,
            delay_ms: (lo, hi),
            select: Select::Any,
        }
    }

    /// The extra delay for `m`, if it is held this time.
    fn draw(&self, rng: &mut ChaCha8Rng, m: &Message) -> Option<Time> {
        if self.probability <= 0.0 || !self.select.matches(m) {
            return None;
        }
        if !rng.gen_bool(self.probability.min(1.0)) {
            return None;
        }
        let (lo, hi) = self.delay_ms;
        Some(rng.gen_range(lo.min(hi)..=hi) * MS)
    }
}

/// Extra faults on one directed link, on top of the global mode.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Extra delay, uniform in `[min, max]` milliseconds (reorders messages).
    pub delay_ms: (u64, u64),
    /// Now and then a much longer delay, into later terms.
    pub long_delay: LongDelay,
}

impl LinkFaults {
    fn is_clear(&self) -> bool {
        *self == LinkFaults::default()
    }
}

/// The lab's counters: a request and its reply are one RPC, so only requests count.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Requests sent, per sender (index `id - 1`).
    pub sent: Vec<u64>,
    /// Requests delivered, per receiver (the lab's `rpcCount(i)`).
    pub delivered: Vec<u64>,
    /// Encoded bytes of every request sent, version byte included (the lab's `bytesTotal`).
    pub bytes: u64,
    /// Replies sent.
    pub replies: u64,
    /// Messages lost (any reason).
    pub dropped: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Messages given a random long delay.
    pub long_delayed: u64,
    /// Messages caught by a [`Hold`] rule.
    pub held: u64,
    /// Replies delivered to a node already in a later term than theirs.
    pub late_replies: u64,
    /// Requests delivered to a node already in a later term than theirs.
    pub late_requests: u64,
}

/// What happens to one message.
#[derive(Debug, PartialEq)]
pub enum Fate {
    /// Lost, for the reason given.
    Lost(&'static str),
    /// Delivered at each of these times (two when duplicated).
    Deliver(Vec<Time>),
    /// Kept by a hold until its addressee leads in a later term
    /// ([`Network::wait`] takes it).
    Held,
}

/// Connectivity, link behaviour and counters of an `n`-node cluster.
pub struct Network {
    n: usize,
    /// The lab's `connected[i]`: a disconnected node reaches nobody.
    connected: Vec<bool>,
    /// Partition group of each node; links cross no group boundary.
    group: Vec<u32>,
    /// Per-link faults, `faults[from * n + to]` (0-based).
    faults: Vec<LinkFaults>,
    /// Last delivery time on each link, to keep reliable links FIFO.
    last_delivery: Vec<Time>,
    /// The lab's `setunreliable`.
    pub reliable: bool,
    /// The lab's `setlongreordering`.
    pub long_reordering: bool,
    /// A long delay on every link, on top of each link's own.
    pub long_delay: LongDelay,
    /// Targeted holds and the messages they keep.
    holds: Holds,
    /// RPC and byte counters.
    pub counters: Counters,
}

impl Network {
    /// A reliable, fully connected network of `n` nodes.
    pub fn new(n: usize) -> Self {
        Network {
            n,
            connected: vec![true; n],
            group: vec![0; n],
            faults: vec![LinkFaults::default(); n * n],
            last_delivery: vec![0; n * n],
            reliable: true,
            long_reordering: false,
            long_delay: LongDelay::default(),
            holds: Holds::default(),
            counters: Counters {
                sent: vec![0; n],
                delivered: vec![0; n],
                ..Counters::default()
            },
        }
    }

    fn link(&self, from: NodeId, to: NodeId) -> usize {
        (from as usize - 1) * self.n + (to as usize - 1)
    }

    /// Whether `id` names a server of this network.
    pub fn knows(&self, id: NodeId) -> bool {
        id >= 1 && id as usize <= self.n
    }

    /// Adds node `n + 1`: connected, in group 0, its links clear.
    pub fn add_node(&mut self) {
        let (old, n) = (self.n, self.n + 1);
        let mut faults = vec![LinkFaults::default(); n * n];
        let mut last = vec![0; n * n];
        for from in 0..old {
            for to in 0..old {
                faults[from * n + to] = self.faults[from * old + to];
                last[from * n + to] = self.last_delivery[from * old + to];
            }
        }
        self.n = n;
        self.faults = faults;
        self.last_delivery = last;
        self.connected.push(true);
        self.group.push(0);
        self.counters.sent.push(0);
        self.counters.delivered.push(0);
    }

    /// Whether node `id` is connected (the lab's `connected[i]`).
    pub fn is_connected(&self, id: NodeId) -> bool {
        self.connected[id as usize - 1]
    }

    /// Connects or disconnects node `id` from everyone.
    pub fn set_connected(&mut self, id: NodeId, up: bool) {
        self.connected[id as usize - 1] = up;
    }

    /// Puts each node in a group; only nodes of one group reach each other.
    /// `group[i]` is the group of node `i + 1`.
    pub fn partition(&mut self, group: Vec<u32>) {
        assert_eq!(group.len(), self.n, "one group per node");
        self.group = group;
    }

    /// Removes every partition (the lab's connect/disconnect flags stay).
    pub fn heal(&mut self) {
        self.group = vec![0; self.n];
    }

    /// Partition group of node `id`.
    pub fn group_of(&self, id: NodeId) -> u32 {
        self.group[id as usize - 1]
    }

    /// Sets the faults of the directed link `from -> to`.
    pub fn set_faults(&mut self, from: NodeId, to: NodeId, faults: LinkFaults) {
        let l = self.link(from, to);
        self.faults[l] = faults;
    }

    /// Clears the faults of every link.
    pub fn clear_faults(&mut self) {
        self.faults.fill(LinkFaults::default());
    }

    /// Whether a message from `from` can reach `to` right now (never when
    /// either id names no server).
    pub fn link_up(&self, from: NodeId, to: NodeId) -> bool {
        self.knows(from)
            && self.knows(to)
            && self.is_connected(from)
            && self.is_connected(to)
            && self.group_of(from) == self.group_of(to)
    }

    /// Starts holding the messages `hold` picks.
    pub fn hold(&mut self, hold: Hold) -> HoldId {
        self.holds.add(hold)
    }

    /// Stops a hold from catching more; what it caught keeps waiting.
    pub fn stop_hold(&mut self, id: HoldId) {
        self.holds.stop(id);
    }

    /// Stops every hold from catching more.
    pub fn stop_holds(&mut self) {
        self.holds.stop_all();
    }

    /// Messages hold `id` has caught so far.
    pub fn hold_caught(&self, id: HoldId) -> u64 {
        self.holds.caught(id)
    }

    /// Messages waiting for their addressee to lead in a later term.
    pub fn waiting(&self) -> usize {
        self.holds.waiting()
    }

    /// Takes the waiting messages whose link is up and that `release` lets
    /// go, oldest first; the others keep waiting.
    pub fn release(&mut self, release: impl Fn(&Message) -> bool) -> Vec<Message> {
        let (go, stay) = self
            .holds
            .take_waiting()
            .into_iter()
            .partition(|m| self.link_up(m.from, m.to) && release(m));
        self.holds.wait_longer(stay);
        go
    }

    /// Keeps a message whose fate was [`Fate::Held`].
    pub fn wait(&mut self, m: Message) {
        self.holds.wait(m);
    }

    /// Counts a message delivered to `to`, whose current term is `term`.
    pub fn count_delivery(&mut self, to: NodeId, term: Term, msg: &Message) {
        let reply = msg.body.is_reply();
        if !reply && self.knows(to) {
            self.counters.delivered[to as usize - 1] += 1;
        }
        if msg.term < term {
            if reply {
                self.counters.late_replies += 1;
            } else {
                self.counters.late_requests += 1;
            }
        }
    }

    /// Counts `msg` (of `bytes` encoded bytes) as sent and decides its fate.
    pub fn route(&mut self, rng: &mut ChaCha8Rng, now: Time, msg: &Message, bytes: u64) -> Fate {
        if !self.knows(msg.from) || !self.knows(msg.to) {
            // A leader may name a member before its server exists.
            self.counters.dropped += 1;
            return Fate::Lost("no such server");
        }
        let request = !msg.body.is_reply();
        if request {
            self.counters.sent[msg.from as usize - 1] += 1;
            self.counters.bytes += bytes;
        } else {
            self.counters.replies += 1;
        }
        if !self.link_up(msg.from, msg.to) {
            self.counters.dropped += 1;
            return Fate::Lost("disconnected");
        }
        if let Some(release) = self.holds.catch(msg) {
            self.counters.held += 1;
            return match release {
                Release::AfterMs(ms) => Fate::Deliver(vec![now + ms * MS]),
                Release::AddresseeLeadsLater => Fate::Held,
            };
        }
        // A reliable link: sub-millisecond latency.
        let mut delay: Time = rng.gen_range(100..1_000);
        let mut fifo = self.reliable;
        if !self.reliable {
            if request {
                delay += rng.gen_range(0..27) * MS;
            }
            if rng.gen_range(0..1000) < 100 {
                self.counters.dropped += 1;
                return Fate::Lost(if request {
                    "lost request"
                } else {
                    "lost reply"
                });
            }
        }
        if !request && self.long_reordering && rng.gen_range(0..900) < 600 {
            let extra = rng.gen_range(0..=2000);
            delay = (200 + rng.gen_range(0..=extra)) * MS;
            fifo = false;
        }
        let link = self.link(msg.from, msg.to);
        let faults = self.faults[link];
        let mut copies = 1;
        if !faults.is_clear() {
            if faults.drop > 0.0 && rng.gen_bool(faults.drop.min(1.0)) {
                self.counters.dropped += 1;
                return Fate::Lost("link drop");
            }
            let (lo, hi) = faults.delay_ms;
            if hi > 0 {
                delay += rng.gen_range(lo.min(hi)..=hi) * MS;
                fifo = false;
            }
            if faults.duplicate > 0.0 && rng.gen_bool(faults.duplicate.min(1.0)) {
                copies = 2;
            }
        }
        let long = faults.long_delay.draw(rng, msg);
        if let Some(extra) = long.or_else(|| self.long_delay.draw(rng, msg)) {
            self.counters.long_delayed += 1;
            delay += extra;
            fifo = false;
        }
        let mut at = now + delay;
        if fifo {
            at = at.max(self.last_delivery[link]);
            self.last_delivery[link] = at;
        }
        let mut times = vec![at];
        if copies == 2 {
            self.counters.duplicated += 1;
            times.push(at + rng.gen_range(0..20) * MS);
        }
        Fate::Deliver(times)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{AppendReply, Body};
    use rand::SeedableRng;

    fn request(from: NodeId, to: NodeId) -> Message {
        Message {
            from,
            to,
            term: 1,
            body: Body::RequestVote {
                last_log_index: 0,
                last_log_term: 0,
                pre_vote: false,
                transfer: false,
            },
        }
    }

    fn reply(from: NodeId, to: NodeId) -> Message {
        Message {
            from,
            to,
            term: 1,
            body: Body::AppendEntriesReply(AppendReply::StaleTerm),
        }
    }

    #[test]
    fn disconnect_and_partition_cut_links() {
        let mut net = Network::new(3);
        assert!(net.link_up(1, 2));
        net.set_connected(2, false);
        assert!(!net.link_up(1, 2) && !net.link_up(2, 3) && net.link_up(1, 3));
        net.set_connected(2, true);
        net.partition(vec![0, 0, 1]);
        assert!(net.link_up(1, 2) && !net.link_up(1, 3) && !net.link_up(3, 2));
        net.heal();
        assert!(net.link_up(3, 1));
    }

    #[test]
    fn reliable_links_are_fifo_and_count_requests_only() {
        let mut net = Network::new(2);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut last = 0;
        for _ in 0..100 {
            let Fate::Deliver(t) = net.route(&mut rng, 0, &request(1, 2), 10) else {
                panic!("reliable link lost a message");
            };
            assert!(t[0] >= last);
            last = t[0];
        }
        net.route(&mut rng, 0, &reply(2, 1), 10);
        assert_eq!(net.counters.sent, [100, 0]);
        assert_eq!(net.counters.bytes, 1000);
        assert_eq!(net.counters.replies, 1);
    }

    #[test]
    fn holds_and_long_delays_carry_messages_seconds_late() {
        let mut net = Network::new(2);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        net.hold(Hold::new(Select::Replies, Release::AfterMs(3_000)).limit(1));
        assert_eq!(
            net.route(&mut rng, 0, &reply(2, 1), 1),
            Fate::Deliver(vec![3_000 * MS])
        );
        net.hold(Hold::new(Select::Requests, Release::AddresseeLeadsLater).from(1));
        assert_eq!(net.route(&mut rng, 0, &request(1, 2), 1), Fate::Held);
        assert_eq!(net.counters.held, 2);
        net.long_delay = LongDelay::new(1.0, 1_000, 2_000);
        let Fate::Deliver(t) = net.route(&mut rng, 0, &reply(2, 1), 1) else {
            panic!("a long delay lost a message");
        };
        assert!((1_000 * MS..=2_001 * MS).contains(&t[0]), "{t:?}");
        assert_eq!(net.counters.long_delayed, 1);
    }

    #[test]
    fn a_node_added_later_is_connected_and_unknown_ids_are_lost() {
        let mut net = Network::new(2);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        net.set_faults(
            1,
            2,
            LinkFaults {
                drop: 1.0,
                ..LinkFaults::default()
            },
        );
        assert_eq!(
            net.route(&mut rng, 0, &request(1, 3), 1),
            Fate::Lost("no such server")
        );
        net.add_node();
        assert!(net.link_up(1, 3) && net.link_up(3, 2));
        assert!(matches!(
            net.route(&mut rng, 0, &request(1, 3), 1),
            Fate::Deliver(_)
        ));
        assert_eq!(
            net.route(&mut rng, 0, &request(1, 2), 1),
            Fate::Lost("link drop")
        );
        assert_eq!(
            net.counters.sent,
            [2, 0, 0],
            "a message to nobody is not counted"
        );
        assert!(!net.link_up(0, 1) && !net.link_up(1, 4));
    }

    #[test]
    fn unreliable_mode_loses_about_a_tenth() {
        let mut net = Network::new(2);
        net.reliable = false;
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let lost = (0..10_000)
            .filter(|_| matches!(net.route(&mut rng, 0, &request(1, 2), 1), Fate::Lost(_)))
            .count();
        assert!((800..1200).contains(&lost), "lost {lost} of 10000");
    }
}
