//! Task states and their legal transitions.

use serde::{Deserialize, Serialize};

use super::state_names;

/// Where a task is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Initializing,
    EnqueuingSteps,
    StepsInProcess,
    EvaluatingResults,
    WaitingForDependencies,
    WaitingForRetry,
    BlockedByFailures,
    Complete,
    Error,
    Cancelled,
    ResolvedManually,
}

state_names!(TaskState, "task", {
    Pending => "pending",
    Initializing => "initializing",
    EnqueuingSteps => "enqueuing_steps",
    StepsInProcess => "steps_in_process",
    EvaluatingResults => "evaluating_results",
    WaitingForDependencies => "waiting_for_dependencies",
    WaitingForRetry => "waiting_for_retry",
    BlockedByFailures => "blocked_by_failures",
    Complete => "complete",
    Error => "error",
    Cancelled => "cancelled",
    ResolvedManually => "resolved_manually",
});

impl TaskState {
    /// A task in a terminal state never moves again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Complete | Self::Error | Self::Cancelled | Self::ResolvedManually
        )
    }

    /// Whether the lifecycle allows moving from `self` to `to`.
    pub fn can_transition_to(self, to: TaskState) -> bool {
        use TaskState::*;
        if self.is_terminal() {
            // an errored task can still be closed by a person
            return self == Error && to == ResolvedManually;
        }
        if matches!(to, Error | Cancelled) {
            return true;
        }
        match self {
            Pending => matches!(to, Initializing | EnqueuingSteps),
            Initializing => matches!(to, EnqueuingSteps | Complete),
            EnqueuingSteps => matches!(
                to,
                StepsInProcess | EvaluatingResults | WaitingForDependencies
            ),
            StepsInProcess => matches!(to, EvaluatingResults | EnqueuingSteps),
            EvaluatingResults => matches!(
                to,
                EnqueuingSteps
                    | StepsInProcess
                    | WaitingForDependencies
                    | WaitingForRetry
                    | BlockedByFailures
                    | Complete
            ),
            WaitingForDependencies | WaitingForRetry => {
                matches!(to, EnqueuingSteps | EvaluatingResults)
            }
            BlockedByFailures => matches!(to, EvaluatingResults | ResolvedManually),
            Complete | Error | Cancelled | ResolvedManually => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TaskState::{self, *};

    #[test]
    fn names_round_trip() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>().unwrap(), *state);
        }
        assert!("finished".parse::<TaskState>().is_err());
    }

    #[test]
    fn terminal_states_do_not_move_except_error_to_resolved() {
        for from in [Complete, Cancelled, ResolvedManually] {
            for to in TaskState::ALL {
                assert!(!from.can_transition_to(*to), "{from} -> {to}");
            }
        }
        assert!(Error.can_transition_to(ResolvedManually));
        assert!(!Error.can_transition_to(Pending));
    }

    #[test]
    fn happy_path_is_legal_and_shortcuts_are_not() {
        let path = [
            Pending,
            EnqueuingSteps,
            StepsInProcess,
            EvaluatingResults,
            Complete,
        ];
        for pair in path.windows(2) {
            assert!(
                pair[0].can_transition_to(pair[1]),
                "{} -> {}",
                pair[0],
                pair[1]
            );
        }
        assert!(!Pending.can_transition_to(Complete));
        assert!(!StepsInProcess.can_transition_to(Complete));
        assert!(!WaitingForRetry.can_transition_to(Pending));
    }
}
