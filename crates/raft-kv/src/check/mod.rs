//! A linearizability checker for recorded histories.
//!
//! A history is linearizable when every operation can be given one instant
//! between its call and its return at which it takes effect, such that the
//! answers are those of the sequential store run in that order (Herlihy &
//! Wing 1990). Operations whose outcome is unknown may take effect at any
//! instant after their call, or never.
//!
//! - [`History`] records calls and returns (`invoke`, `complete`, `unknown`).
//! - [`Model`] is a sequential specification; [`KvModel`] is the store's.
//! - [`check`] splits the history into independent partitions (per key,
//!   P-compositionality) and searches each one (Wing–Gong with
//!   Lowe's just-in-time linearization and memo), within a [`Budget`].
//! - [`check_and_draw`] is what tests call: on failure it writes an HTML
//!   picture of the failing partition ([`html`]) and says where.

mod bitset;
mod entries;
pub mod history;
pub mod html;
pub mod kv;
mod memo;
pub mod model;
mod prune;
pub mod report;
mod search;
pub mod synth;

use std::time::{Duration, Instant};

pub use history::{ClientId, History, OpId, Operation, Outcome};
pub use kv::{KvModel, KvState};
pub use model::{Model, Partition};
pub use report::{assert_linearizable, check_and_draw, CheckFailure};

use search::{Found, Meter};

/// How much a check may spend before answering [`Verdict::Unknown`].
///
/// Shared by all partitions of one check. `time` is wall-clock time, so a
/// verdict that hits it depends on the machine; `steps` (one per call or
/// return the search visits) gives the same verdict on every run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Wall-clock limit.
    pub time: Option<Duration>,
    /// Search steps limit (deterministic).
    pub steps: Option<u64>,
    /// Memory limit for the memo of one partition, in bytes (its bitsets
    /// and states, not what the states point to).
    pub memo_bytes: Option<usize>,
}

impl Default for Budget {
    /// 10 s and a 512 MiB memo.
    fn default() -> Self {
        Budget {
            time: Some(Duration::from_secs(10)),
            steps: None,
            memo_bytes: Some(512 << 20),
        }
    }
}

impl Budget {
    /// No limit but `steps`: the same verdict on every machine.
    pub fn steps(steps: u64) -> Self {
        Budget {
            time: None,
            steps: Some(steps),
            memo_bytes: None,
        }
    }

    /// No limit but wall-clock `time`.
    pub fn time(time: Duration) -> Self {
        Budget {
            time: Some(time),
            steps: None,
            memo_bytes: None,
        }
    }
}

/// The outcome of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Linearizable; one witness order per partition.
    Ok(Vec<(Partition, Vec<OpId>)>),
    /// Not linearizable: a partition has no linearization.
    Illegal(Counterexample),
    /// The budget ran out before an answer.
    Unknown(OutOfBudget),
}

impl Verdict {
    /// Whether the history is linearizable.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok(_))
    }

    /// Whether the history is proven not linearizable.
    pub fn is_illegal(&self) -> bool {
        matches!(self, Verdict::Illegal(_))
    }
}

/// Why a partition is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    /// The partition without a linearization.
    pub partition: Partition,
    /// The longest prefix the search linearized, in order of effect.
    pub prefix: Vec<OpId>,
    /// The operation it could not place next: its return came, and no order
    /// of the operations still open let it take effect after `prefix`.
    pub blocked: OpId,
}

/// Which limit of the [`Budget`] ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    /// The wall-clock limit.
    Time(Duration),
    /// The step limit.
    Steps(u64),
    /// The memo size limit, in bytes.
    Memo(usize),
}

/// Where and how the budget ran out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutOfBudget {
    /// The limit reached.
    pub limit: Exhausted,
    /// The partition being searched then.
    pub partition: Partition,
    /// Partitions fully checked before it (all linearizable).
    pub checked: usize,
    /// Partitions in the history.
    pub partitions: usize,
}

/// What a check cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Partitions in the history.
    pub partitions: usize,
    /// Operations in the largest one.
    pub largest: usize,
    /// Search steps taken in all partitions.
    pub steps: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// Checks `history` against `model` within `budget`.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget: &Budget,
) -> Verdict {
    check_with_stats(model, history, budget).0
}

/// [`check`], and what it cost.
///
/// Partitions are searched smallest first, so a cheap counterexample is
/// found before a costly partition spends the budget; the first illegal
/// partition ends the check.
pub fn check_with_stats<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget: &Budget,
) -> (Verdict, Stats) {
    let start = Instant::now();
    let mut meter = Meter {
        start,
        deadline: budget.time.map(|t| start + t),
        max_steps: budget.steps,
        max_memo: budget.memo_bytes,
        steps: 0,
    };
    let mut parts = model.partition(history);
    parts.sort_by(|a, b| (a.ops.len(), &a.label).cmp(&(b.ops.len(), &b.label)));
    let n = parts.len();
    let largest = parts.last().map_or(0, |p| p.ops.len());
    let mut orders = Vec::with_capacity(n);
    let mut verdict = None;
    for (checked, partition) in parts.into_iter().enumerate() {
        match search::search(model, history, &partition.ops, &mut meter) {
            Found::Linearizable(order) => orders.push((partition, order)),
            Found::Illegal { prefix, blocked } => {
                verdict = Some(Verdict::Illegal(Counterexample {
                    partition,
                    prefix,
                    blocked,
                }));
                break;
            }
            Found::Exhausted(limit) => {
                verdict = Some(Verdict::Unknown(OutOfBudget {
                    limit,
                    partition,
                    checked,
                    partitions: n,
                }));
                break;
            }
        }
    }
    let stats = Stats {
        partitions: n,
        largest,
        steps: meter.steps,
        elapsed: start.elapsed(),
    };
    (verdict.unwrap_or(Verdict::Ok(orders)), stats)
}

/// Checks a key-value history with [`KvModel`].
pub fn check_kv(history: &History, budget: &Budget) -> Verdict {
    check(&KvModel, history.ops(), budget)
}
