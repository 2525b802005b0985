//! Telling people about a failed check: a text explanation, the HTML
//! picture, and the entry points tests call.

use std::fmt::Write;
use std::path::PathBuf;

use super::history::{History, OpId, Operation};
use super::model::Model;
use super::{check, html, Budget, Counterexample, Exhausted, KvModel, OutOfBudget, Verdict};

/// Environment variable naming the directory for pictures of failed checks
/// (default: `raft-kv-check` under the system's temp directory).
pub const PICTURE_DIR_ENV: &str = "RAFT_CHECK_DIR";

/// A check that did not end in "linearizable".
#[derive(Debug, thiserror::Error)]
pub enum CheckFailure {
    /// The history is not linearizable.
    #[error("{explanation}\n  picture: {picture}")]
    NotLinearizable {
        /// The failing partition, prefix and blocked operation.
        counterexample: Box<Counterexample>,
        /// What went wrong, in words.
        explanation: String,
        /// The picture's path, or why it could not be written.
        picture: String,
    },
    /// The budget ran out; nothing is known.
    #[error("{0}")]
    Unknown(String),
}

/// Checks `history`; on failure writes `<dir>/<name>.html` (see
/// [`PICTURE_DIR_ENV`]) and returns the explanation with the path in it.
pub fn check_and_draw<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget: &Budget,
    name: &str,
) -> Result<(), CheckFailure> {
    match check(model, history, budget) {
        Verdict::Ok(_) => Ok(()),
        Verdict::Unknown(out) => Err(CheckFailure::Unknown(explain_unknown(&out))),
        Verdict::Illegal(cx) => {
            let explanation = explain(model, history, &cx);
            let path = picture_dir().join(format!("{}.html", file_stem(name)));
            let page = html::render(model, history, &cx, name);
            let written = std::fs::create_dir_all(picture_dir())
                .and_then(|()| std::fs::write(&path, page))
                .map(|()| path.display().to_string());
            let picture =
                written.unwrap_or_else(|e| format!("not written ({}: {e})", path.display()));
            Err(CheckFailure::NotLinearizable {
                counterexample: Box::new(cx),
                explanation,
                picture,
            })
        }
    }
}

/// Checks a key-value history with the default [`Budget`] and panics, with
/// the explanation and the picture's path, unless it is linearizable.
pub fn assert_linearizable(history: &History, name: &str) {
    if let Err(e) = check_and_draw(&KvModel, history.ops(), &Budget::default(), name) {
        panic!("{name}: {e}");
    }
}

/// Where pictures go.
pub fn picture_dir() -> PathBuf {
    std::env::var_os(PICTURE_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("raft-kv-check"))
}

fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() {
        "history".into()
    } else {
        stem
    }
}

/// The model's states after each operation of `prefix` (replayed).
pub(crate) fn replay<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    prefix: &[OpId],
) -> Vec<M::State> {
    let mut state = model.init();
    let mut states = Vec::with_capacity(prefix.len());
    for &id in prefix {
        let op = &history[id];
        state = model
            .step(&state, &op.input, op.output())
            .expect("the search linearized this prefix");
        states.push(state.clone());
    }
    states
}

/// One line about an operation: client, input, answer, interval.
pub fn describe_op<M: Model>(model: &M, op: &Operation<M::Input, M::Output>) -> String {
    let answer = op
        .output()
        .map_or_else(|| "?".into(), |o| model.describe_output(o));
    let ret = op
        .ret()
        .map_or_else(|| "never (unknown)".into(), |r| r.to_string());
    format!(
        "client {} {} → {}  (call {}, return {})",
        op.client,
        model.describe_input(&op.input),
        answer,
        op.call,
        ret
    )
}

/// The counterexample in words.
pub fn explain<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    cx: &Counterexample,
) -> String {
    const SHOWN: usize = 10;
    let mut s = String::new();
    let prefix = &cx.prefix;
    let _ = writeln!(
        s,
        "not linearizable: {} ({} operations); the longest linearizable prefix found has {}",
        cx.partition.label,
        cx.partition.ops.len(),
        prefix.len()
    );
    let skip = prefix.len().saturating_sub(SHOWN);
    if skip > 0 {
        let _ = writeln!(s, "  … {skip} earlier operations of the prefix");
    }
    for (i, &id) in prefix.iter().enumerate().skip(skip) {
        let _ = writeln!(s, "  #{:<4} {}", i + 1, describe_op(model, &history[id]));
    }
    let blocked = &history[cx.blocked];
    let _ = writeln!(
        s,
        "  cannot be placed next: {}",
        describe_op(model, blocked)
    );
    let state = replay(model, history, prefix)
        .pop()
        .unwrap_or_else(|| model.init());
    let _ = write!(
        s,
        "  state after the prefix: {}",
        model.describe_state(&state)
    );
    if let Some(answer) = model.answer(&state, &blocked.input) {
        let _ = write!(
            s,
            "; there it would answer {}",
            model.describe_output(&answer)
        );
    }
    s
}

/// An exhausted budget in words.
pub fn explain_unknown(out: &OutOfBudget) -> String {
    let limit = match out.limit {
        Exhausted::Time(t) => format!("the time budget ({t:?})"),
        Exhausted::Steps(n) => format!("the step budget ({n} steps)"),
        Exhausted::Memo(n) => format!("the memo budget ({} MiB)", n >> 20),
    };
    format!(
        "verdict unknown: {limit} ran out in {} ({} operations) after {} of {} partitions were found linearizable; \
         raise the Budget or check a shorter history",
        out.partition.label,
        out.partition.ops.len(),
        out.checked,
        out.partitions
    )
}
