//! What the checker checks against: a sequential specification.
//!
//! A [`Model`] says how one operation changes the state and which answers it
//! may give. The checker knows nothing else about the operations, so the
//! same search checks any object with a sequential specification.

use std::fmt::Debug;
use std::hash::Hash;

use super::history::{OpId, Operation};

/// One independently checkable part of a history (P-compositionality,
/// Horn & Kroening 2015: a history is linearizable iff each part is, when
/// the parts touch disjoint pieces of state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// What the part covers, for reports (e.g. `key "x"`).
    pub label: String,
    /// The operations in it, in call order.
    pub ops: Vec<OpId>,
}

/// A sequential specification.
pub trait Model {
    /// An operation's input.
    type Input: Debug + PartialEq;
    /// An operation's answer.
    type Output: Debug + PartialEq;
    /// The object's state. Hashed and compared for the search's memo, so
    /// keep it small and canonical (equal states must compare equal).
    type State: Clone + Eq + Hash + Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state`. With `Some(output)`, the state after the
    /// operation if it could have answered `output` there, else `None`.
    /// With `None` (outcome unknown), the state after it, whatever it said.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// The answer `input` gets in `state`, when the model can say (for
    /// reports: "the clerk saw X; here it would answer Y").
    fn answer(&self, _state: &Self::State, _input: &Self::Input) -> Option<Self::Output> {
        None
    }

    /// Whether `input` never changes the state. Such an operation with an
    /// unknown outcome is dropped before the search: taking effect or not
    /// is invisible to everyone else.
    fn is_read_only(&self, _input: &Self::Input) -> bool {
        false
    }

    /// Whether `input` answered `output` leaves the state unchanged in
    /// every state where that answer fits (a read; a compare-and-swap that
    /// did not match). The search never retries such an operation later
    /// once it fits (see the search's notes), so a wrong `true` makes the
    /// checker reject good histories. The default: read-only inputs.
    fn is_stutter(&self, input: &Self::Input, _output: &Self::Output) -> bool {
        self.is_read_only(input)
    }

    /// Splits a history into independent parts. The default is one part.
    fn partition(&self, history: &[Operation<Self::Input, Self::Output>]) -> Vec<Partition> {
        vec![Partition {
            label: "whole history".into(),
            ops: (0..history.len()).collect(),
        }]
    }

    /// A short label for an input (drawn on its bar).
    fn describe_input(&self, input: &Self::Input) -> String {
        format!("{input:?}")
    }

    /// A short label for an answer.
    fn describe_output(&self, output: &Self::Output) -> String {
        format!("{output:?}")
    }

    /// The state, for reports.
    fn describe_state(&self, state: &Self::State) -> String {
        format!("{state:?}")
    }
}
