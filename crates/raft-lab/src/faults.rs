//! The faults [`ChannelNetwork`](crate::ChannelNetwork) can make, as the
//! lab's `labrpc` makes them: short random delays and lost requests and
//! replies (unreliable), replies held back long enough to arrive out of
//! order (long reordering), and lost calls that report failure only after a
//! long random delay, to catch a Raft that waits on its RPCs.

use std::time::Duration;

use rand::Rng;

/// The network's fault settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Faults {
    /// Requests and replies are each lost with probability [`LOSS`] after a
    /// random delay below [`SHORT_DELAY`].
    pub unreliable: bool,
    /// Replies are held back [`REORDER_MIN`] plus up to [`REORDER_SPREAD`],
    /// with probability [`REORDER_SHARE`].
    pub long_reordering: bool,
    /// A lost call, or a call to or from a disconnected server, fails after
    /// a random delay up to this.
    pub failure_delay: Duration,
}

/// labrpc: a request or reply is dropped with probability 100/1000.
const LOSS: f64 = 0.1;
/// labrpc: an unreliable network delays each request by 0–26 ms.
const SHORT_DELAY: u64 = 27;
/// labrpc's long reordering: 600 of 900 replies wait 200 + rand(1 + rand(2000)) ms.
const REORDER_SHARE: f64 = 600.0 / 900.0;
const REORDER_MIN: u64 = 200;
const REORDER_SPREAD: u64 = 2000;

impl Default for Faults {
    fn default() -> Self {
        Faults {
            unreliable: false,
            long_reordering: false,
            failure_delay: Duration::from_millis(20),
        }
    }
}

impl Faults {
    /// The delay before an unreliable network delivers a request.
    pub(crate) fn short_delay(&self) -> Option<Duration> {
        self.unreliable
            .then(|| Duration::from_millis(rand::thread_rng().gen_range(0..SHORT_DELAY)))
    }

    /// Whether this request or reply is lost.
    pub(crate) fn lose(&self) -> bool {
        self.unreliable && rand::thread_rng().gen_bool(LOSS)
    }

    /// How long a lost call takes to report failure.
    pub(crate) fn failure_after(&self) -> Duration {
        let max = self.failure_delay.as_micros().min(u64::MAX as u128) as u64;
        Duration::from_micros(rand::thread_rng().gen_range(0..=max))
    }

    /// How long to hold this reply back, if at all (skewed towards short
    /// holds, as labrpc's nested random draw is).
    pub(crate) fn reorder_delay(&self) -> Option<Duration> {
        let mut rng = rand::thread_rng();
        if !self.long_reordering || !rng.gen_bool(REORDER_SHARE) {
            return None;
        }
        let spread = rng.gen_range(0..=REORDER_SPREAD);
        let ms = REORDER_MIN + rng.gen_range(0..=spread);
        Some(Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reliable_network_adds_nothing() {
        let f = Faults::default();
        assert!(f.short_delay().is_none() && f.reorder_delay().is_none());
        assert!((0..1000).all(|_| !f.lose()));
        assert!(f.failure_after() <= Duration::from_millis(20));
    }

    #[test]
    fn draws_stay_in_the_lab_ranges() {
        let f = Faults {
            unreliable: true,
            long_reordering: true,
            failure_delay: Duration::from_secs(7),
        };
        let n = 20_000;
        let lost = (0..n).filter(|_| f.lose()).count() as f64 / n as f64;
        assert!((0.08..0.12).contains(&lost), "lost {lost}");
        let held: Vec<Duration> = (0..n).filter_map(|_| f.reorder_delay()).collect();
        let share = held.len() as f64 / n as f64;
        assert!((0.63..0.70).contains(&share), "held {share}");
        let ms = 200..=2200;
        assert!(held.iter().all(|d| ms.contains(&(d.as_millis() as u64))));
        assert!((0..n).all(|_| f.short_delay().unwrap() < Duration::from_millis(27)));
        assert!((0..n).all(|_| f.failure_after() <= Duration::from_secs(7)));
    }
}
