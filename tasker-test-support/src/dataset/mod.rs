//! The SQL benchmarks' data set: thousands of tasks over the fixture templates in every state
//! a running system holds, each reached through a legal transition history, seeded with a few
//! bulk statements and the same on every run.
//!
//! [`seed_dataset`] registers the templates, lays out every row in memory ([`layout`], with the
//! histories of [`history`]), writes them ([`columns`]) and analyses the tables.

mod columns;
mod history;
mod layout;

use std::time::Instant;

use serde::Serialize;
use sqlx::PgPool;
use tasker_shared::error::{DbContext, TaskerResult};
use tasker_shared::state::{StepState, TaskState};
use tasker_shared::templates::register_template;
use uuid::Uuid;

use crate::fixtures::{fixture_templates, step_depths, DAG, DIAMOND, LINEAR, TREE};
use layout::{Layout, Registered};

/// Where a seeded task is in its life. Each maps to a legal task-state path and step states
/// (see [`seed_dataset`]); "frontier" below is the depth of the steps being worked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Just created: task and steps pending; roots ready.
    Pending,
    /// Steps above the frontier complete, frontier steps enqueued or in progress; task
    /// `steps_in_process` (not a get_next_ready_tasks candidate).
    Running,
    /// Steps above the frontier complete, the rest pending; task `waiting_for_dependencies`
    /// with ready steps.
    WaitingReady,
    /// One frontier step still in progress, its siblings complete; task
    /// `waiting_for_dependencies`, usually nothing ready (a candidate the query must reject).
    WaitingOnSibling,
    /// One frontier step failed once and waits out its backoff (an hour); task
    /// `waiting_for_retry`, not ready.
    RetryBackoff,
    /// As RetryBackoff, but the backoff ended 30 s ago: ready again.
    RetryDue,
    /// One frontier step failed every attempt; task `blocked_by_failures`.
    Blocked,
    /// Every step complete; task `complete`.
    Complete,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::Pending,
        Scenario::Running,
        Scenario::WaitingReady,
        Scenario::WaitingOnSibling,
        Scenario::RetryBackoff,
        Scenario::RetryDue,
        Scenario::Blocked,
        Scenario::Complete,
    ];
    /// Share of tasks in each scenario, in [`Scenario::ALL`] order (percent).
    pub const WEIGHTS: [u32; 8] = [15, 15, 10, 10, 8, 7, 10, 25];
}

/// Share of tasks per fixture template (percent): mostly the 4-step shapes, so that 5,000
/// tasks carry about 20,000 steps.
pub const TEMPLATE_MIX: [(&str, u32); 4] = [(LINEAR, 45), (DIAMOND, 45), (DAG, 5), (TREE, 5)];

/// How big the data set is and which pseudo-random stream lays it out.
#[derive(Debug, Clone, Copy)]
pub struct DatasetSpec {
    pub tasks: usize,
    pub seed: u64,
}

impl Default for DatasetSpec {
    fn default() -> Self {
        Self {
            tasks: 5_000,
            seed: 0x7A5C_E2B0_0000_0001,
        }
    }
}

/// One seeded step.
#[derive(Debug, Clone)]
pub struct SeededStep {
    pub uuid: Uuid,
    pub name: String,
    pub depth: usize,
    pub state: StepState,
}

/// One seeded task.
#[derive(Debug, Clone)]
pub struct SeededTask {
    pub uuid: Uuid,
    pub template: String,
    pub scenario: Scenario,
    pub state: TaskState,
    /// Depth of the steps being worked on (0 for pending, the template's depth + 1 for complete).
    pub frontier: usize,
    pub priority: i32,
    pub steps: Vec<SeededStep>,
}

impl SeededTask {
    pub fn step(&self, name: &str) -> &SeededStep {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("seeded task {} has no step {name}", self.uuid))
    }
}

/// What [`seed_dataset`] created.
#[derive(Debug, Clone)]
pub struct SeededDataset {
    pub tasks: Vec<SeededTask>,
    pub step_count: usize,
    pub edge_count: usize,
    pub task_transition_count: usize,
    pub step_transition_count: usize,
    pub seconds: f64,
}

impl SeededDataset {
    /// The first task (in creation order) of `template` in `scenario`, skipping `skip` matches.
    pub fn find(&self, template: &str, scenario: Scenario, skip: usize) -> &SeededTask {
        self.tasks
            .iter()
            .filter(|t| t.template == template && t.scenario == scenario)
            .nth(skip)
            .unwrap_or_else(|| {
                panic!("the data set has no {template} task in {scenario:?} (skip {skip})")
            })
    }

    /// As [`Self::find`], additionally requiring a frontier depth.
    pub fn find_at(&self, template: &str, scenario: Scenario, frontier: usize) -> &SeededTask {
        self.tasks
            .iter()
            .find(|t| t.template == template && t.scenario == scenario && t.frontier == frontier)
            .unwrap_or_else(|| {
                panic!("the data set has no {template} task in {scenario:?} at depth {frontier}")
            })
    }

    /// Tasks per scenario, for the benchmark's log line.
    pub fn summary(&self) -> String {
        let mut counts: Vec<String> = Scenario::ALL
            .iter()
            .map(|s| {
                let n = self.tasks.iter().filter(|t| t.scenario == *s).count();
                format!("{s:?}={n}")
            })
            .collect();
        counts.sort();
        format!(
            "{} tasks, {} steps, {} edges, {} task transitions, {} step transitions in {:.1}s ({})",
            self.tasks.len(),
            self.step_count,
            self.edge_count,
            self.task_transition_count,
            self.step_transition_count,
            self.seconds,
            counts.join(" ")
        )
    }
}

/// Seeds the SQL benchmark data set: the four fixture templates registered, `spec.tasks`
/// tasks over them ([`TEMPLATE_MIX`]) in mixed states ([`Scenario::WEIGHTS`]), every state
/// reached through a legal transition history whose most recent row matches the
/// `current_state` column. Written with a handful of bulk statements in one transaction, then
/// `VACUUM ANALYZE`d so the planner sees the statistics a running system has.
///
/// Deterministic: the same spec produces the same shapes, states and ids on every run (times
/// are relative to now, because readiness compares backoffs with `now()`).
pub async fn seed_dataset(pool: &PgPool, spec: DatasetSpec) -> TaskerResult<SeededDataset> {
    let started = Instant::now();
    let registered = register_mix(pool).await?;
    let mut layout = Layout::new(spec);
    let tasks: Vec<SeededTask> = (0..spec.tasks)
        .map(|i| layout.task(i, &registered))
        .collect();
    let cols = layout.into_columns();
    columns::write(pool, &cols).await?;
    vacuum_analyze(pool).await?;

    let dataset = SeededDataset {
        step_count: cols.s_uuid.len(),
        edge_count: cols.e_from.len(),
        task_transition_count: cols.tt.uuid.len(),
        step_transition_count: cols.st.uuid.len(),
        tasks,
        seconds: started.elapsed().as_secs_f64(),
    };
    let mismatches = state_mismatches(pool).await?;
    assert_eq!(
        mismatches, 0,
        "seed bug: {mismatches} rows whose current_state differs from their most recent transition"
    );
    Ok(dataset)
}

/// Registers the templates of [`TEMPLATE_MIX`], in its order, with each step's depth.
async fn register_mix(pool: &PgPool) -> TaskerResult<Vec<Registered>> {
    let templates = fixture_templates();
    let mut registered = Vec::with_capacity(TEMPLATE_MIX.len());
    for (name, _) in TEMPLATE_MIX {
        let template = templates
            .get(name)
            .unwrap_or_else(|| panic!("fixture template {name} is missing"))
            .clone();
        let named_task_uuid = register_template(pool, &template).await?.named_task_uuid;
        let depths = step_depths(&template);
        let max_depth = depths.values().copied().max().unwrap_or(0);
        registered.push(Registered {
            template,
            named_task_uuid,
            depths,
            max_depth,
        });
    }
    Ok(registered)
}

/// A running system's autovacuum keeps statistics and the visibility map current; without
/// them the planner guesses row counts and index-only scans visit the heap.
async fn vacuum_analyze(pool: &PgPool) -> TaskerResult<()> {
    for table in [
        "tasker.tasks",
        "tasker.workflow_steps",
        "tasker.workflow_step_edges",
        "tasker.task_transitions",
        "tasker.workflow_step_transitions",
    ] {
        sqlx::query(&format!("VACUUM ANALYZE {table}"))
            .execute(pool)
            .await
            .db_context(format!("vacuum analyze {table}"))?;
    }
    Ok(())
}

/// Tasks and steps whose `current_state` is not their most recent transition's `to_state`
/// (or that have no most recent transition): the invariant the schema promises.
pub async fn state_mismatches(pool: &PgPool) -> TaskerResult<i64> {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM tasker.tasks t
                   LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent
                  WHERE tt.to_state IS DISTINCT FROM t.current_state)
              + (SELECT count(*) FROM tasker.workflow_steps s
                   LEFT JOIN tasker.workflow_step_transitions st
                          ON st.workflow_step_uuid = s.workflow_step_uuid AND st.most_recent
                  WHERE st.to_state IS DISTINCT FROM s.current_state)",
    )
    .fetch_one(pool)
    .await
    .db_context("checking current_state against the transition history")
}
