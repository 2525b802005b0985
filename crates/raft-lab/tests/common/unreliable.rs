//! What the unreliable tests share: the lab's pacing, an unreliable
//! cluster, and a line that records what a run cost.

use std::time::{Duration, Instant};

use rand::Rng;

use super::{cmd, Cluster, Setup};

/// The lab's `RaftElectionTimeout`, which its tests pace themselves by.
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);

/// A cluster of `n` whose network drops, delays and slowly fails calls.
pub fn unreliable_cluster(n: usize, setup: Setup) -> Cluster {
    let c = Cluster::with(n, setup);
    c.net.set_unreliable(true);
    c
}

/// Sleeps `ms` milliseconds of wall time (the lab paces its clients so).
pub fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A command with a random value, as the lab's `rand.Int()`.
pub fn random_cmd() -> Vec<u8> {
    cmd(rand::thread_rng().gen())
}

/// Prints what a run cost, for the record (`--nocapture` shows it).
pub fn report(name: &str, started: Instant, c: &Cluster) {
    println!(
        "{name}: {:.1} s, {} RPCs, at most {} lost calls waiting to fail at once",
        started.elapsed().as_secs_f64(),
        c.net.total_rpcs(),
        c.net.peak_failing_calls()
    );
}
