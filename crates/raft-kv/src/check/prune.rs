//! Rules that let the search skip moves whose outcome another move already
//! decides. Each is a dominance argument: the configuration skipped can
//! reach nothing that a configuration the search does explore cannot.

use super::history::{OpId, Operation};
use super::model::Model;

/// Whether placing an operation that leads to `next` right after the
/// unknown-outcome operation placed `last` would give the same state as
/// placing it instead of that one: then the unknown operation's effect is
/// masked, and the configuration reached is dominated by the one without it
/// (same answered set and state, fewer unknowns placed), which the search
/// meets by placing this operation first. Pruning this move keeps runs of
/// lost blind writes (put, delete) from being explored in every subset.
pub(crate) fn masks_last<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    ops: &[OpId],
    last: Option<&(usize, M::State)>,
    input: &M::Input,
    output: Option<&M::Output>,
    next: &M::State,
) -> bool {
    match last {
        Some((q, before)) if history[ops[*q]].output().is_none() => {
            model.step(before, input, output).as_ref() == Some(next)
        }
        _ => false,
    }
}

/// For each unknown-outcome operation, the latest one called before it with
/// the same input, if any. Such twins have the same effect wherever they
/// are placed, and the earlier is a candidate wherever the later is (an
/// unknown operation stays a candidate from its call on), so a linearization
/// using the later one alone can use the earlier instead: the search places
/// twins in call order only. Without this, every choice of which of many
/// lost `delete k` took effect would be explored separately.
pub(crate) fn twins<M: Model>(
    history: &[Operation<M::Input, M::Output>],
    ops: &[OpId],
) -> Vec<Option<usize>> {
    let mut unknown: Vec<usize> = (0..ops.len())
        .filter(|&p| history[ops[p]].output().is_none())
        .collect();
    unknown.sort_by_key(|&p| (history[ops[p]].call, p));
    let mut twin = vec![None; ops.len()];
    for (i, &p) in unknown.iter().enumerate() {
        let input = &history[ops[p]].input;
        twin[p] = unknown[..i]
            .iter()
            .rev()
            .copied()
            .find(|&q| history[ops[q]].input == *input);
    }
    twin
}

/// Which operations are stutters: answered, and with that answer they never
/// change the state (reads, a cas that did not match, ...). Placing a
/// stutter as soon as it is a candidate and fits is never worse than
/// placing it later: moving it earlier keeps every state of a linearization
/// and every real-time constraint (those that must precede it are already
/// placed, or it would not be a candidate). So if the configuration after
/// placing it fails, the one before fails too, and the search backtracks
/// past both. Without this, a failed branch is retried with every subset of
/// the concurrent reads placed.
pub(crate) fn stutters<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    ops: &[OpId],
) -> Vec<bool> {
    ops.iter()
        .map(|&id| {
            let op = &history[id];
            op.output()
                .is_some_and(|out| model.is_stutter(&op.input, out))
        })
        .collect()
}
