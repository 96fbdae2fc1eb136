//! The legal histories the data set writes: the transitions that take a task to each
//! scenario's state and a step to each state it is seeded in, checked against the state
//! machines' rules.

use tasker_shared::state::{StepState, TaskState};

use super::Scenario;

/// The legal step history that ends in `state` (from `pending`); `max_attempts` failures for
/// `error`.
pub(super) fn step_path(state: StepState, max_attempts: i32) -> Vec<StepState> {
    use StepState::*;
    let mut path = vec![Pending];
    match state {
        Pending => {}
        Enqueued => path.push(Enqueued),
        InProgress => path.extend([Enqueued, InProgress]),
        Complete => path.extend([Enqueued, InProgress, EnqueuedForOrchestration, Complete]),
        WaitingForRetry => path.extend([
            Enqueued,
            InProgress,
            EnqueuedAsErrorForOrchestration,
            WaitingForRetry,
        ]),
        Error => {
            for attempt in 1..=max_attempts {
                path.extend([Enqueued, InProgress, EnqueuedAsErrorForOrchestration]);
                path.push(if attempt < max_attempts {
                    WaitingForRetry
                } else {
                    Error
                });
            }
        }
        other => panic!("the data set does not seed steps in {other}"),
    }
    path
}

/// The task history for a scenario: one enqueue/process/evaluate round per completed depth.
pub(super) fn task_path(scenario: Scenario, frontier: usize) -> Vec<TaskState> {
    use TaskState::*;
    let mut path = vec![Pending];
    let round = [EnqueuingSteps, StepsInProcess, EvaluatingResults];
    match scenario {
        Scenario::Pending => {}
        Scenario::Running => {
            for _ in 0..frontier {
                path.extend(round);
            }
            path.extend([EnqueuingSteps, StepsInProcess]);
        }
        Scenario::WaitingReady => {
            for _ in 0..frontier {
                path.extend(round);
            }
            path.push(WaitingForDependencies);
        }
        Scenario::WaitingOnSibling
        | Scenario::RetryBackoff
        | Scenario::RetryDue
        | Scenario::Blocked => {
            for _ in 0..=frontier {
                path.extend(round);
            }
            path.push(match scenario {
                Scenario::WaitingOnSibling => WaitingForDependencies,
                Scenario::Blocked => BlockedByFailures,
                _ => WaitingForRetry,
            });
        }
        Scenario::Complete => {
            for _ in 0..frontier {
                path.extend(round);
            }
            path.push(Complete);
        }
    }
    path
}

pub(super) fn check_legal<S: Copy + std::fmt::Display>(path: &[S], legal: impl Fn(S, S) -> bool) {
    for pair in path.windows(2) {
        assert!(
            legal(pair[0], pair[1]),
            "seed bug: illegal transition {} -> {}",
            pair[0],
            pair[1]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_paths_are_legal() {
        for s in Scenario::ALL {
            // the seed gives these a frontier of at least 1 (something completed)
            let first = usize::from(matches!(s, Scenario::WaitingReady | Scenario::Complete));
            for frontier in first..4 {
                check_legal(&task_path(s, frontier), TaskState::can_transition_to);
            }
        }
        for st in [
            StepState::Pending,
            StepState::Enqueued,
            StepState::InProgress,
            StepState::Complete,
            StepState::WaitingForRetry,
            StepState::Error,
        ] {
            check_legal(&step_path(st, 3), StepState::can_transition_to);
        }
    }
}
