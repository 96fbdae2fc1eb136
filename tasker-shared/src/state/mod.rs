//! Task and step state machines: the states, which transitions are legal, and applying a
//! transition atomically (compare-and-swap on the current state plus one transition row).

mod step_state;
mod task_state;
mod transitions;

pub use step_state::StepState;
pub use task_state::TaskState;
pub use transitions::{
    current_step_state, current_task_state, transition_step, transition_task,
    transition_task_from_current,
};

/// A transition the state machine does not allow, or a state name it does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("illegal task transition from {from} to {to}")]
    IllegalTaskTransition { from: TaskState, to: TaskState },
    #[error("illegal step transition from {from} to {to}")]
    IllegalStepTransition { from: StepState, to: StepState },
    #[error("unknown {kind} state {value:?}")]
    UnknownState { kind: &'static str, value: String },
}

/// Generates the string conversions shared by both state enums.
macro_rules! state_names {
    ($ty:ident, $kind:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every state, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::state::StateError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err($crate::state::StateError::UnknownState { kind: $kind, value: other.to_string() }),
                }
            }
        }
    };
}
pub(crate) use state_names;
