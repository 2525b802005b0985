//! A text drawing of a run for learners: one column per node, one row per
//! notable event (role and term changes, crashes, partitions, commits).
//! Leaders' commits are thinned to one row per node every 250 ms.

use std::fmt::Write;

use raft_core::Role;

use crate::clock::{as_ms, Time, MS};
use crate::trace::{Event, Record};

const WIDTH: usize = 14;
const COMMIT_EVERY: Time = 250 * MS;

fn cell(r: &Record) -> Option<String> {
    let term = r.term.unwrap_or(0);
    Some(match r.event {
        Event::Role { to, .. } => match to {
            Role::Leader => format!("LEADER t{term}"),
            Role::Candidate => format!("candidate t{term}"),
            Role::PreCandidate => format!("pre-vote t{term}"),
            Role::Follower => format!("follower t{term}"),
        },
        Event::Term { to, .. } => format!("term {to}"),
        Event::Commit { index } => format!("commit {index}"),
        Event::Install { index } => format!("install {index}"),
        Event::Crash => "CRASH".into(),
        Event::Restart => "restart".into(),
        Event::Join => "JOIN".into(),
        Event::Retire => "RETIRED".into(),
        Event::ConfChange { index } => format!("conf @{index}"),
        Event::Transfer { to } => format!("transfer->n{to}"),
        Event::WriteLost => "CRASH mid-write".into(),
        Event::Connect => "connect".into(),
        Event::Disconnect => "disconnect".into(),
        Event::Group { group } => format!("group {group}"),
        Event::Faults { to, .. } => format!("faults->n{to}"),
        _ => return None,
    })
}

fn banner(r: &Record) -> Option<String> {
    Some(match r.event {
        Event::Heal => "partitions healed".into(),
        Event::Network {
            reliable,
            long_reordering,
        } => format!(
            "network {}{}",
            if reliable { "reliable" } else { "unreliable" },
            if long_reordering {
                ", long reordering"
            } else {
                ""
            }
        ),
        Event::LongDelay { pct, max_ms } => {
            format!("long delays: {pct}% of messages held up to {max_ms} ms")
        }
        _ => return None,
    })
}

struct Row {
    time: Time,
    cells: Vec<String>,
}

fn push_row(out: &mut String, row: &Row) {
    let _ = write!(out, "{:>10.1} |", as_ms(row.time));
    for c in &row.cells {
        let _ = write!(out, " {c:<WIDTH$} |");
    }
    out.push('\n');
}

/// Draws `records` (notable events of an `n`-node run) as a table.
pub fn render(records: &[Record], n: usize) -> String {
    let mut out = String::new();
    let _ = write!(out, "{:>10} |", "time ms");
    for id in 1..=n {
        let _ = write!(out, " {:<WIDTH$} |", format!("n{id}"));
    }
    out.push('\n');
    let _ = writeln!(out, "{}", "-".repeat(11 + n * (WIDTH + 3)));
    let mut last_commit: Vec<Option<Time>> = vec![None; n];
    let mut row: Option<Row> = None;
    for r in records {
        if let Some(text) = banner(r) {
            if let Some(done) = row.take() {
                push_row(&mut out, &done);
            }
            let _ = writeln!(out, "{:>10.1} | --- {text} ---", as_ms(r.time));
            continue;
        }
        let Some(id) = r.node else { continue };
        let i = (id as usize).wrapping_sub(1);
        if i >= n {
            continue;
        }
        if let Event::Commit { .. } = r.event {
            let thin = last_commit[i].is_some_and(|t| r.time < t + COMMIT_EVERY);
            if r.role != Some(Role::Leader) || thin {
                continue;
            }
            last_commit[i] = Some(r.time);
        }
        let Some(text) = cell(r) else { continue };
        let fits = row
            .as_ref()
            .is_some_and(|w| w.time == r.time && w.cells[i].is_empty());
        if !fits {
            if let Some(done) = row.take() {
                push_row(&mut out, &done);
            }
            row = Some(Row {
                time: r.time,
                cells: vec![String::new(); n],
            });
        }
        if let Some(w) = row.as_mut() {
            w.cells[i] = text;
        }
    }
    if let Some(done) = row.take() {
        push_row(&mut out, &done);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_column_per_node() {
        let rec = |time, node, event| Record {
            time,
            node,
            term: Some(1),
            role: Some(Role::Leader),
            event,
        };
        let text = render(
            &[
                rec(
                    1_000,
                    Some(2),
                    Event::Role {
                        from: Role::Candidate,
                        to: Role::Leader,
                    },
                ),
                rec(1_000, Some(1), Event::Term { from: 0, to: 1 }),
                rec(2_000, None, Event::Heal),
                rec(3_000, Some(3), Event::Crash),
            ],
            3,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[2].contains("term 1") && lines[2].contains("LEADER t1"));
        assert!(lines[3].contains("partitions healed"));
        assert!(lines[4].ends_with("| CRASH          |"), "{text}");
    }
}
