//! Workflow step states and their legal transitions.

use serde::{Deserialize, Serialize};

use super::state_names;

/// Where a workflow step is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Enqueued,
    InProgress,
    EnqueuedForOrchestration,
    EnqueuedAsErrorForOrchestration,
    WaitingForRetry,
    Complete,
    Error,
    Cancelled,
    ResolvedManually,
}

state_names!(StepState, "step", {
    Pending => "pending",
    Enqueued => "enqueued",
    InProgress => "in_progress",
    EnqueuedForOrchestration => "enqueued_for_orchestration",
    EnqueuedAsErrorForOrchestration => "enqueued_as_error_for_orchestration",
    WaitingForRetry => "waiting_for_retry",
    Complete => "complete",
    Error => "error",
    Cancelled => "cancelled",
    ResolvedManually => "resolved_manually",
});

impl StepState {
    /// A step in a terminal state never moves again (except error, which a person may resolve
    /// or retry).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Complete | Self::Error | Self::Cancelled | Self::ResolvedManually
        )
    }

    /// Whether the step counts as done for its dependents.
    pub fn satisfies_dependents(self) -> bool {
        matches!(self, Self::Complete | Self::ResolvedManually)
    }

    /// Whether the lifecycle allows moving from `self` to `to`.
    pub fn can_transition_to(self, to: StepState) -> bool {
        use StepState::*;
        match self {
            Pending => matches!(to, Enqueued | Cancelled | ResolvedManually),
            Enqueued => matches!(to, InProgress | Pending | Cancelled | ResolvedManually),
            // in_progress -> in_progress: a worker re-claims a step whose previous worker died
            // (its message came back after the visibility timeout)
            InProgress => matches!(
                to,
                InProgress | EnqueuedForOrchestration | EnqueuedAsErrorForOrchestration | Cancelled
            ),
            EnqueuedForOrchestration => matches!(to, Complete | Error | Cancelled),
            EnqueuedAsErrorForOrchestration => {
                matches!(to, WaitingForRetry | Error | Cancelled)
            }
            WaitingForRetry => matches!(to, Enqueued | Cancelled | ResolvedManually),
            // an operator resolves a failed step, or retries it from the start
            Error => matches!(to, ResolvedManually | Pending),
            Complete | Cancelled | ResolvedManually => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StepState::{self, *};

    #[test]
    fn names_round_trip() {
        for state in StepState::ALL {
            assert_eq!(state.as_str().parse::<StepState>().unwrap(), *state);
        }
    }

    #[test]
    fn execution_and_retry_paths_are_legal() {
        let success = [
            Pending,
            Enqueued,
            InProgress,
            EnqueuedForOrchestration,
            Complete,
        ];
        let retry = [
            InProgress,
            EnqueuedAsErrorForOrchestration,
            WaitingForRetry,
            Enqueued,
        ];
        for pair in success.windows(2).chain(retry.windows(2)) {
            assert!(
                pair[0].can_transition_to(pair[1]),
                "{} -> {}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn shortcuts_and_moves_out_of_complete_are_illegal() {
        assert!(!Pending.can_transition_to(Complete));
        assert!(!Enqueued.can_transition_to(Complete));
        assert!(!InProgress.can_transition_to(Complete));
        for to in StepState::ALL {
            assert!(!Complete.can_transition_to(*to));
        }
    }

    #[test]
    fn an_operator_moves_a_failed_step_to_resolved_or_back_to_pending() {
        assert!(Error.can_transition_to(ResolvedManually));
        assert!(Error.can_transition_to(Pending));
        assert!(!Error.can_transition_to(Enqueued));
        assert!(!Error.can_transition_to(Complete));
    }
}
