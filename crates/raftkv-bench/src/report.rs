//! Collected results: medians and ranges per cell and system, the tables,
//! and the ratio lines.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::workload::Outcome;
use crate::System;

/// Every repetition of every (clients, payload, system) cell.
#[derive(Default)]
pub struct Results {
    pub runs: BTreeMap<(usize, usize), BTreeMap<System, Vec<Outcome>>>,
}

/// The median of `v` (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// Writes/s in thousands or millions, short.
pub fn rate(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.0}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// A latency in µs, as µs or ms.
fn lat(us: f64) -> String {
    if !us.is_finite() {
        "–".into()
    } else if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// "8 B" or "1 KiB".
pub fn size(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

impl Results {
    pub fn add(&mut self, clients: usize, payload: usize, sys: System, o: Outcome) {
        self.runs
            .entry((clients, payload))
            .or_default()
            .entry(sys)
            .or_default()
            .push(o);
    }

    fn rates(&self, cell: (usize, usize), sys: System) -> Vec<f64> {
        self.runs
            .get(&cell)
            .and_then(|m| m.get(&sys))
            .map(|v| v.iter().map(|o| o.writes_per_sec).collect())
            .unwrap_or_default()
    }

    /// Median writes/s of a cell.
    pub fn median_rate(&self, cell: (usize, usize), sys: System) -> f64 {
        median(&self.rates(cell, sys))
    }

    /// The lowest and highest writes/s of a cell.
    pub fn rate_range(&self, cell: (usize, usize), sys: System) -> (f64, f64) {
        range(&self.rates(cell, sys))
    }

    /// Ratio of medians, and the range of the per-repetition ratios (the
    /// repetitions of two systems ran back to back, so each pair saw about
    /// the same machine).
    pub fn ratio(&self, cell: (usize, usize), a: System, b: System) -> (f64, f64, f64) {
        let (ra, rb) = (self.rates(cell, a), self.rates(cell, b));
        let pairs: Vec<f64> = ra.iter().zip(&rb).map(|(x, y)| x / y).collect();
        let (lo, hi) = range(&pairs);
        (
            self.median_rate(cell, a) / self.median_rate(cell, b),
            lo,
            hi,
        )
    }

    /// The throughput table (Markdown): median and range per system, and
    /// raftkv's ratio to each other system.
    pub fn throughput_table(&self, systems: &[System]) -> String {
        let mut s = String::from("| clients | payload |");
        for sys in systems {
            let _ = write!(s, " {} writes/s (range) |", sys.name());
        }
        let others: Vec<System> = systems
            .iter()
            .copied()
            .filter(|&x| x != System::Raftkv)
            .collect();
        let with_raftkv = systems.contains(&System::Raftkv);
        if with_raftkv {
            for o in &others {
                let _ = write!(s, " raftkv/{} (range) |", o.name());
            }
        }
        s.push_str("\n|--:|--:|");
        let cols = systems.len() + if with_raftkv { others.len() } else { 0 };
        s.push_str(&"--:|".repeat(cols));
        s.push('\n');
        for &cell in self.runs.keys() {
            let _ = write!(s, "| {} | {} |", cell.0, size(cell.1));
            for &sys in systems {
                let (lo, hi) = self.rate_range(cell, sys);
                let _ = write!(
                    s,
                    " **{}** ({}–{}) |",
                    rate(self.median_rate(cell, sys)),
                    rate(lo),
                    rate(hi)
                );
            }
            if with_raftkv {
                for &o in &others {
                    let (r, lo, hi) = self.ratio(cell, System::Raftkv, o);
                    let _ = write!(s, " **{r:.2}** ({lo:.2}–{hi:.2}) |");
                }
            }
            s.push('\n');
        }
        s
    }

    /// The latency table (Markdown): median over repetitions of each
    /// percentile.
    pub fn latency_table(&self, systems: &[System]) -> String {
        let mut s = String::from("| clients | payload |");
        for sys in systems {
            let _ = write!(s, " {} p50 / p99 / p99.9 |", sys.name());
        }
        s.push_str("\n|--:|--:|");
        s.push_str(&"--:|".repeat(systems.len()));
        s.push('\n');
        for (&cell, by_sys) in &self.runs {
            let _ = write!(s, "| {} | {} |", cell.0, size(cell.1));
            for sys in systems {
                let v = by_sys.get(sys).map(Vec::as_slice).unwrap_or_default();
                let m = |f: fn(&Outcome) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
                let _ = write!(
                    s,
                    " {} / {} / {} |",
                    lat(m(|o| o.p50_us)),
                    lat(m(|o| o.p99_us)),
                    lat(m(|o| o.p999_us))
                );
            }
            s.push('\n');
        }
        s
    }

    /// One line per comparison and cell:
    /// `ratio raftkv/raft-rs at 64 clients, 8 B: 2.31`.
    pub fn ratio_lines(&self, systems: &[System]) -> String {
        let mut s = String::new();
        if !systems.contains(&System::Raftkv) {
            return s;
        }
        for &o in systems.iter().filter(|&&x| x != System::Raftkv) {
            for &cell in self.runs.keys() {
                let (r, _, _) = self.ratio(cell, System::Raftkv, o);
                let _ = writeln!(
                    s,
                    "ratio raftkv/{} at {} clients, {}: {r:.2}",
                    o.name(),
                    cell.0,
                    size(cell.1)
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rate: f64) -> Outcome {
        Outcome {
            writes_per_sec: rate,
            ..Default::default()
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn ratio_is_of_medians_and_pairs_give_the_range() {
        let mut r = Results::default();
        for (a, b) in [(300.0, 100.0), (200.0, 100.0), (100.0, 100.0)] {
            r.add(64, 8, System::Raftkv, run(a));
            r.add(64, 8, System::RaftRs, run(b));
        }
        assert_eq!(
            r.ratio((64, 8), System::Raftkv, System::RaftRs),
            (2.0, 1.0, 3.0)
        );
        let lines = r.ratio_lines(&[System::Raftkv, System::RaftRs]);
        assert_eq!(lines, "ratio raftkv/raft-rs at 64 clients, 8 B: 2.00\n");
    }

    #[test]
    fn percentiles_pick_the_right_sample() {
        let lat: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        let o = Outcome::from_latencies(lat, std::time::Duration::from_secs(2));
        assert_eq!(o.writes_per_sec, 500.0);
        assert_eq!((o.p50_us, o.p99_us, o.p999_us), (500.0, 990.0, 999.0));
    }
}
