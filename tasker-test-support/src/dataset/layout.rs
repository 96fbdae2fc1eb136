//! Lays the data set out in memory: for each task, drawn from the seeded stream, its template,
//! scenario and frontier, then its rows, its steps' rows and both transition histories,
//! appended to the column buffers the bulk insert writes.
//!
//! The draws happen in a fixed order (template, scenario, frontier, priority, then the steps in
//! template order), which is what makes the same spec give the same data set on every run.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use tasker_shared::state::{StepState, TaskState};
use tasker_shared::templates::{StepTemplate, TaskTemplate};
use uuid::Uuid;

use super::columns::Columns;
use super::history::{check_legal, step_path, task_path};
use super::{DatasetSpec, Scenario, SeededStep, SeededTask, TEMPLATE_MIX};
use crate::determinism::{DeterministicRng, UuidSequence};

/// A registered fixture template with each step's depth.
pub(super) struct Registered {
    pub(super) template: TaskTemplate,
    pub(super) named_task_uuid: Uuid,
    pub(super) depths: HashMap<String, usize>,
    pub(super) max_depth: usize,
}

/// What was drawn for one task before its rows are laid out.
struct Draw<'a> {
    index: usize,
    registered: &'a Registered,
    scenario: Scenario,
    frontier: usize,
    priority: i32,
    created: DateTime<Utc>,
    task_uuid: Uuid,
}

/// The seeded stream, the id sequence and the rows laid out so far.
pub(super) struct Layout {
    rng: DeterministicRng,
    ids: UuidSequence,
    now: DateTime<Utc>,
    tasks: usize,
    template_weights: Vec<u32>,
    cols: Columns,
}

impl Layout {
    pub(super) fn new(spec: DatasetSpec) -> Self {
        Self {
            rng: DeterministicRng::new(spec.seed),
            ids: UuidSequence::new(spec.seed),
            now: Utc::now(),
            tasks: spec.tasks,
            template_weights: TEMPLATE_MIX.iter().map(|(_, w)| *w).collect(),
            cols: Columns::default(),
        }
    }

    pub(super) fn into_columns(self) -> Columns {
        self.cols
    }

    /// Draws task `index` and lays out its rows and its steps'.
    pub(super) fn task(&mut self, index: usize, registered: &[Registered]) -> SeededTask {
        let draw = self.draw(index, registered);
        let state = self.push_task(&draw);
        let steps = self.push_steps(&draw);
        SeededTask {
            uuid: draw.task_uuid,
            template: draw.registered.template.name.clone(),
            scenario: draw.scenario,
            state,
            frontier: draw.frontier,
            priority: draw.priority,
            steps,
        }
    }

    fn draw<'a>(&mut self, index: usize, registered: &'a [Registered]) -> Draw<'a> {
        let registered = &registered[self.rng.weighted(&self.template_weights)];
        let scenario = Scenario::ALL[self.rng.weighted(&Scenario::WEIGHTS)];
        let max_depth = registered.max_depth as u64;
        let frontier = match scenario {
            Scenario::Pending => 0,
            Scenario::Complete => max_depth as usize + 1,
            Scenario::WaitingReady => 1 + self.rng.below(max_depth) as usize,
            _ => self.rng.below(max_depth + 1) as usize,
        };
        let priority = if self.rng.below(10) == 0 {
            1 + self.rng.below(3) as i32
        } else {
            0
        };
        // one task every two seconds, the newest a minute old
        let created = self.now - chrono::Duration::seconds(60 + 2 * (self.tasks - index) as i64);
        Draw {
            index,
            registered,
            scenario,
            frontier,
            priority,
            created,
            task_uuid: self.ids.next_uuid(),
        }
    }

    /// The task's row and transition history; returns its state.
    fn push_task(&mut self, d: &Draw<'_>) -> TaskState {
        let tpath = task_path(d.scenario, d.frontier);
        check_legal(&tpath, TaskState::can_transition_to);
        let state = *tpath.last().expect("a path has a state");
        let last_transition = d.created + chrono::Duration::milliseconds(50 * tpath.len() as i64);
        let c = &mut self.cols;
        c.t_uuid.push(d.task_uuid);
        c.t_named.push(d.registered.named_task_uuid);
        c.t_state.push(state.as_str().to_string());
        c.t_context
            .push(json!({"even_number": 2 * (1 + d.index % 10), "bench_index": d.index}));
        c.t_priority.push(d.priority);
        c.t_identity.push(format!("bench-dataset-{}", d.index));
        c.t_created.push(d.created);
        c.t_updated.push(last_transition);
        c.t_completed
            .push((state == TaskState::Complete).then_some(last_transition));
        let names: Vec<&str> = tpath.iter().map(|s| s.as_str()).collect();
        c.tt.push_path(&mut self.ids, d.task_uuid, &names, d.created);
        state
    }

    /// Every step's rows, in template order, then the task's edges.
    fn push_steps(&mut self, d: &Draw<'_>) -> Vec<SeededStep> {
        let template = &d.registered.template;
        let depths = &d.registered.depths;
        // the first frontier step (template order) is the odd one out in the sibling,
        // retry and blocked scenarios
        let first_at_frontier = template
            .steps
            .iter()
            .find(|s| depths[&s.name] == d.frontier)
            .map(|s| s.name.as_str());
        let mut steps = Vec::with_capacity(template.steps.len());
        let mut step_ids = HashMap::new();
        for s in &template.steps {
            let depth = depths[&s.name];
            let odd_one = first_at_frontier == Some(s.name.as_str());
            let state = self.step_state(d, depth, odd_one);
            let step = self.push_step(d, s, depth, state);
            step_ids.insert(s.name.clone(), step.uuid);
            steps.push(step);
        }
        for s in &template.steps {
            for parent in &s.depends_on {
                self.cols.e_from.push(step_ids[parent]);
                self.cols.e_to.push(step_ids[&s.name]);
            }
        }
        steps
    }

    /// A step's state: complete above the frontier, pending below it, and at the frontier
    /// what the scenario says.
    fn step_state(&mut self, d: &Draw<'_>, depth: usize, odd_one: bool) -> StepState {
        if depth < d.frontier {
            return StepState::Complete;
        }
        if depth > d.frontier {
            return StepState::Pending;
        }
        match d.scenario {
            Scenario::Pending | Scenario::WaitingReady => StepState::Pending,
            Scenario::Running if self.rng.below(3) == 0 => StepState::Enqueued,
            Scenario::Running => StepState::InProgress,
            Scenario::WaitingOnSibling if odd_one => StepState::InProgress,
            Scenario::RetryBackoff | Scenario::RetryDue if odd_one => StepState::WaitingForRetry,
            Scenario::Blocked if odd_one => StepState::Error,
            _ => StepState::Complete,
        }
    }

    /// One step's row and transition history.
    fn push_step(
        &mut self,
        d: &Draw<'_>,
        s: &StepTemplate,
        depth: usize,
        state: StepState,
    ) -> SeededStep {
        let max_attempts = s.retry.max_attempts.min(i32::MAX as u32) as i32;
        let spath = step_path(state, max_attempts);
        check_legal(&spath, StepState::can_transition_to);
        let attempts = spath
            .iter()
            .filter(|s| **s == StepState::InProgress)
            .count() as i32;
        let finished = d.created + chrono::Duration::milliseconds(50 * spath.len() as i64);
        let step_uuid = self.ids.next_uuid();
        let failed = matches!(state, StepState::WaitingForRetry | StepState::Error);
        let c = &mut self.cols;
        c.s_uuid.push(step_uuid);
        c.s_task.push(d.task_uuid);
        c.s_name.push(s.name.clone());
        c.s_handler.push(s.handler.clone());
        c.s_state.push(state.as_str().to_string());
        c.s_attempts.push(attempts);
        c.s_max_attempts.push(max_attempts);
        c.s_retryable.push(s.retry.retryable);
        c.s_backoff_base
            .push(s.retry.backoff_base_ms.min(i32::MAX as u32) as i32);
        c.s_backoff_max
            .push(s.retry.backoff_max_ms.min(i32::MAX as u32) as i32);
        c.s_in_process
            .push(matches!(state, StepState::Enqueued | StepState::InProgress));
        c.s_processed.push(state == StepState::Complete);
        c.s_results.push(
            (state == StepState::Complete).then(
                || json!({"result": (d.index as u64 + 1) * (depth as u64 + 2), "step": s.name}),
            ),
        );
        c.s_last_error.push(failed.then(|| {
            json!({"message": "simulated handler failure", "kind": "retryable", "attempt": attempts})
        }));
        c.s_last_attempted.push((attempts > 0).then_some(finished));
        c.s_next_retry.push(match (state, d.scenario) {
            (StepState::WaitingForRetry, Scenario::RetryBackoff) => {
                Some(self.now + chrono::Duration::hours(1))
            }
            (StepState::WaitingForRetry, _) => Some(self.now - chrono::Duration::seconds(30)),
            _ => None,
        });
        c.s_processed_at
            .push((state == StepState::Complete).then_some(finished));
        c.s_created.push(d.created);
        let names: Vec<&str> = spath.iter().map(|s| s.as_str()).collect();
        c.st.push_path(&mut self.ids, step_uuid, &names, d.created);
        SeededStep {
            uuid: step_uuid,
            name: s.name.clone(),
            depth,
            state,
        }
    }
}
