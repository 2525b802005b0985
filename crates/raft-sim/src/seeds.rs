//! Running a scenario over seeds, and reporting failures so they replay.
//!
//! - `RAFT_SEEDS=<n>`: run each scenario with seeds `1..=n` (default 5).
//! - `RAFT_SEED=<s>`: run only seed `s` (replays a failure exactly).
//! - `RAFT_TRACE=<file>`: write each run's JSON-lines trace to `<file>`;
//!   `{scenario}` and `{seed}` in the name are replaced, so several runs can
//!   write one file each.
//! - `RAFT_FIGURES=1`: scenarios with measured bounds print what they
//!   measured ([`figures`]), one line per seed, to re-derive the bounds.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use crate::error::SimError;

/// Default number of seeds per scenario.
pub const DEFAULT_SEEDS: u64 = 5;

thread_local! {
    static CURRENT: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?} is not a number"),
    }
}

/// The seeds to run: `RAFT_SEED` alone, or `1..=RAFT_SEEDS`.
pub fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("RAFT_SEED") {
        return vec![seed];
    }
    (1..=env_u64("RAFT_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect()
}

/// Where the run with `seed` writes its trace, from `RAFT_TRACE`.
pub fn trace_path(seed: u64) -> Option<PathBuf> {
    let pattern = std::env::var("RAFT_TRACE").ok()?;
    let scenario = CURRENT
        .with(|c| c.borrow().clone())
        .unwrap_or_else(|| "run".into());
    Some(PathBuf::from(
        pattern
            .replace("{scenario}", &scenario)
            .replace("{seed}", &seed.to_string()),
    ))
}

/// With `RAFT_FIGURES` set, prints the figures a scenario measured with
/// `seed` as one line: `figures <scenario> seed=<seed> <name>=<value>...`.
pub fn figures(seed: u64, figures: &[(&str, f64)]) {
    if std::env::var_os("RAFT_FIGURES").is_none() {
        return;
    }
    let scenario = CURRENT
        .with(|c| c.borrow().clone())
        .unwrap_or_else(|| "run".into());
    let mut line = format!("figures {scenario} seed={seed}");
    for (name, value) in figures {
        line += &format!(" {name}={value:.2}");
    }
    eprintln!("{line}");
}

/// The line that replays one run of `name`.
pub fn replay_hint(name: &str, seed: u64) -> String {
    format!("RAFT_SEED={seed} cargo test -p raft-sim {name}")
}

/// Runs `scenario` once per seed; prints every failure with its seed and
/// how to replay it, then panics if any seed failed.
pub fn run<S>(name: &str, scenario: S)
where
    S: Fn(u64) -> Result<(), SimError>,
{
    CURRENT.with(|c| *c.borrow_mut() = Some(name.to_string()));
    let seeds = seeds();
    let mut failed = Vec::new();
    for &seed in &seeds {
        let outcome = catch_unwind(AssertUnwindSafe(|| scenario(seed)));
        let why = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                format!("panicked: {msg}")
            }
        };
        eprintln!(
            "\n=== scenario {name} FAILED with seed {seed}\n{why}\n=== replay: {}\n",
            replay_hint(name, seed)
        );
        failed.push(seed);
    }
    CURRENT.with(|c| *c.borrow_mut() = None);
    if let Some(&first) = failed.first() {
        panic!(
            "scenario {name}: {} of {} seeds failed: {failed:?}; replay one with: {}",
            failed.len(),
            seeds.len(),
            replay_hint(name, first)
        );
    }
}
