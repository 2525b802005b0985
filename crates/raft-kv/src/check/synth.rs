//! Synthetic histories for testing and measuring the checker: clerks run
//! random operations concurrently against a sequential store, each taking
//! effect at one instant strictly inside its interval, so the history is
//! linearizable by construction.

use super::history::History;
use super::kv::KvState;
use crate::op::{Op, OpResult};

/// The shape of a synthetic run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// Concurrent clerks.
    pub clients: u64,
    /// Operations in all.
    pub ops: usize,
    /// Keys `k0`, `k1`, …
    pub keys: usize,
    /// Percent of operations whose answer is lost (outcome unknown). Half of
    /// them took effect before the loss; the other half take effect later,
    /// after the clerk has moved on, or never.
    pub unknown_percent: u32,
    /// Whether clerks also list key ranges.
    pub ranges: bool,
    /// Largest step of the clock between two events, in nanoseconds.
    pub max_gap: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            clients: 5,
            ops: 100,
            keys: 3,
            unknown_percent: 0,
            ranges: false,
            max_gap: 10,
        }
    }
}

/// A small seeded generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn percent(&mut self, p: u32) -> bool {
        self.below(100) < u64::from(p)
    }
}

enum Clerk {
    Idle,
    Called(usize, Op),
    Effected(usize, OpResult),
}

/// Runs `cfg` with `seed` against `store` (which applies one operation and
/// answers it) and returns the history.
pub fn run(seed: u64, cfg: &RunConfig, mut store: impl FnMut(&Op) -> OpResult) -> History {
    let mut rng = Rng(seed);
    let mut history = History::new();
    let mut clerks: Vec<Clerk> = (0..cfg.clients).map(|_| Clerk::Idle).collect();
    let mut floating: Vec<Op> = Vec::new();
    let mut values: Vec<Vec<Vec<u8>>> = vec![Vec::new(); cfg.keys.max(1)];
    let (mut issued, mut busy, mut t, mut n) = (0, 0usize, 0u64, 0u64);
    let half = cfg.unknown_percent / 2;
    while issued < cfg.ops || busy > 0 || !floating.is_empty() {
        t += 1 + rng.below(cfg.max_gap);
        if !floating.is_empty() && rng.percent(10) {
            let op = floating.swap_remove(rng.below(floating.len() as u64) as usize);
            if rng.percent(50) {
                store(&op);
            }
            continue;
        }
        let c = rng.below(cfg.clients) as usize;
        clerks[c] = match std::mem::replace(&mut clerks[c], Clerk::Idle) {
            Clerk::Idle if issued < cfg.ops => {
                n += 1;
                let op = random_op(&mut rng, cfg, &mut values, n);
                issued += 1;
                busy += 1;
                Clerk::Called(history.invoke(c as u64, op.clone(), t), op)
            }
            Clerk::Idle => Clerk::Idle,
            Clerk::Called(id, op) if rng.percent(half) => {
                history.unknown(id);
                floating.push(op);
                busy -= 1;
                Clerk::Idle
            }
            Clerk::Called(id, op) => {
                let answer = store(&op);
                if let OpResult::Value(Some(v)) = &answer {
                    values[key_index(&op)].push(v.clone());
                }
                Clerk::Effected(id, answer)
            }
            Clerk::Effected(id, answer) => {
                if rng.percent(half) {
                    history.unknown(id);
                } else {
                    history.complete(id, answer, t);
                }
                busy -= 1;
                Clerk::Idle
            }
        };
    }
    history
}

/// [`run`] against the model's own store ([`KvState::apply`]).
pub fn kv_run(seed: u64, cfg: &RunConfig) -> History {
    let mut state = KvState::default();
    run(seed, cfg, |op| state.apply(op))
}

fn key_index(op: &Op) -> usize {
    let k = op.key();
    std::str::from_utf8(k.get(1..).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn random_op(rng: &mut Rng, cfg: &RunConfig, values: &mut [Vec<Vec<u8>>], n: u64) -> Op {
    let k = rng.below(cfg.keys as u64) as usize;
    let key = format!("k{k}").into_bytes();
    let fresh = format!("v{n}").into_bytes();
    let roll = rng.below(if cfg.ranges { 100 } else { 90 });
    match roll {
        0..30 => Op::Get { key },
        30..50 => {
            values[k].push(fresh.clone());
            Op::Put { key, value: fresh }
        }
        50..62 => Op::Append {
            key,
            value: format!("+{n}").into_bytes(),
        },
        62..72 => Op::Delete { key },
        72..90 => {
            let seen = &values[k];
            let expected = match rng.below(4) {
                0 => None,
                _ if seen.is_empty() => None,
                _ => Some(
                    seen[seen.len() - 1 - rng.below(seen.len().min(3) as u64) as usize].clone(),
                ),
            };
            values[k].push(fresh.clone());
            Op::Cas {
                key,
                expected,
                new: fresh,
            }
        }
        _ => {
            let prefix = match rng.below(3) {
                0 => Vec::new(),
                1 => b"k".to_vec(),
                _ => format!("k{}", rng.below(cfg.keys as u64)).into_bytes(),
            };
            Op::Range {
                prefix,
                limit: rng.below(4) as u32,
            }
        }
    }
}
