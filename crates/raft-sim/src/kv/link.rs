//! Client messages on the simulated network. A clerk is not a Raft node, so
//! its links are not the network's node-to-node links; what the lab's
//! network does to every message applies to them all the same:
//!
//! - up while the clerk is connected to the server (the lab's
//!   `ConnectClient`), the server runs and is not disconnected; checked
//!   when a message leaves and again when it arrives. Partitions split
//!   servers only (the lab's `partition` leaves client links alone);
//! - the lab's unreliable mode delays requests 0–26 ms and loses 10% of
//!   requests and of replies; its long reordering holds two replies in
//!   three back 200–2,200 ms; the long delay on every link holds a few
//!   messages for seconds.

use raft_core::NodeId;
use rand::Rng;

use super::{ClerkId, KvEv};
use crate::clock::{Time, MS};
use crate::factory::StorageFactory;
use crate::hold::Select;
use crate::network::Network;
use crate::sim::{Ev, Sim};

/// When a client message sent now arrives, or `None` if it is lost. Draws
/// from the run's RNG like the network's own links.
fn client_fate(net: &Network, rng: &mut impl Rng, request: bool) -> Option<Time> {
    let mut delay: Time = rng.gen_range(100..1_000);
    if !net.reliable {
        if request {
            delay += rng.gen_range(0..27) * MS;
        }
        if rng.gen_range(0..1000) < 100 {
            return None;
        }
    }
    if !request && net.long_reordering && rng.gen_range(0..900) < 600 {
        let extra = rng.gen_range(0..=2000);
        delay = (200 + rng.gen_range(0..=extra)) * MS;
    }
    let long = net.long_delay;
    let selected = match long.select {
        Select::Any => true,
        Select::Requests => request,
        Select::Replies => !request,
        Select::Kind(_) => false,
    };
    if selected && long.probability > 0.0 && rng.gen_bool(long.probability.min(1.0)) {
        let (lo, hi) = long.delay_ms;
        delay += rng.gen_range(lo.min(hi)..=hi) * MS;
    }
    Some(delay)
}

impl<F: StorageFactory> Sim<F> {
    /// Whether clerk `clerk` and server `server` reach each other now.
    pub(crate) fn client_link_up(&self, clerk: ClerkId, server: NodeId) -> bool {
        let reach = self
            .kv
            .as_ref()
            .is_some_and(|kv| kv.clerks.reaches(clerk, server));
        reach && self.is_up(server) && self.net.is_connected(server)
    }

    /// Sends a request or a reply over a client link.
    pub(crate) fn kv_send(&mut self, ev: KvEv) {
        let (clerk, server, request) = match &ev {
            KvEv::Request { clerk, to, .. } => (*clerk, *to, true),
            KvEv::Reply { clerk, from, .. } => (*clerk, *from, false),
            _ => unreachable!("only requests and replies travel"),
        };
        let fate = if self.client_link_up(clerk, server) {
            client_fate(&self.net, &mut self.rng, request)
        } else {
            None
        };
        let counters = &mut self.kv_mut().clerks.counters;
        if request {
            counters.requests += 1;
        } else {
            counters.replies += 1;
        }
        match fate {
            Some(delay) => self.queue.push(self.now + delay, Ev::Kv(ev)),
            None => counters.lost += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn the_labs_modes_reach_client_messages() {
        let mut net = Network::new(3);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut draw = |net: &Network, request| {
            (0..10_000)
                .map(|_| client_fate(net, &mut rng, request))
                .collect::<Vec<_>>()
        };
        let reliable = draw(&net, true);
        assert!(reliable.iter().all(|d| d.is_some_and(|d| d < MS)));

        net.reliable = false;
        let unreliable = draw(&net, true);
        let lost = unreliable.iter().filter(|d| d.is_none()).count();
        assert!((800..1200).contains(&lost), "lost {lost} of 10000");
        assert!(unreliable.iter().flatten().all(|&d| d < 28 * MS));
        assert!(unreliable.iter().flatten().any(|&d| d > 20 * MS));

        net.reliable = true;
        net.long_reordering = true;
        assert!(draw(&net, true).iter().all(|d| d.is_some_and(|d| d < MS)));
        let replies = draw(&net, false);
        let late = replies.iter().flatten().filter(|&&d| d >= 200 * MS).count();
        assert!(
            (6_000..7_300).contains(&late),
            "{late} of 10000 replies held back"
        );
    }
}
