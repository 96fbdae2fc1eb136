//! The data set's rows as column buffers, and their bulk insert: one
//! `INSERT ... SELECT FROM unnest(...)` per table, in one transaction.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tasker_shared::error::{DbContext, TaskerResult};
use uuid::Uuid;

use crate::determinism::UuidSequence;

/// Column buffers for the bulk inserts (one `INSERT ... SELECT FROM unnest(...)` per table).
#[derive(Default)]
pub(super) struct Columns {
    pub(super) t_uuid: Vec<Uuid>,
    pub(super) t_named: Vec<Uuid>,
    pub(super) t_state: Vec<String>,
    pub(super) t_context: Vec<Value>,
    pub(super) t_priority: Vec<i32>,
    pub(super) t_identity: Vec<String>,
    pub(super) t_created: Vec<DateTime<Utc>>,
    pub(super) t_updated: Vec<DateTime<Utc>>,
    pub(super) t_completed: Vec<Option<DateTime<Utc>>>,

    pub(super) s_uuid: Vec<Uuid>,
    pub(super) s_task: Vec<Uuid>,
    pub(super) s_name: Vec<String>,
    pub(super) s_handler: Vec<String>,
    pub(super) s_state: Vec<String>,
    pub(super) s_attempts: Vec<i32>,
    pub(super) s_max_attempts: Vec<i32>,
    pub(super) s_retryable: Vec<bool>,
    pub(super) s_backoff_base: Vec<i32>,
    pub(super) s_backoff_max: Vec<i32>,
    pub(super) s_in_process: Vec<bool>,
    pub(super) s_processed: Vec<bool>,
    pub(super) s_results: Vec<Option<Value>>,
    pub(super) s_last_error: Vec<Option<Value>>,
    pub(super) s_last_attempted: Vec<Option<DateTime<Utc>>>,
    pub(super) s_next_retry: Vec<Option<DateTime<Utc>>>,
    pub(super) s_processed_at: Vec<Option<DateTime<Utc>>>,
    pub(super) s_created: Vec<DateTime<Utc>>,

    pub(super) e_from: Vec<Uuid>,
    pub(super) e_to: Vec<Uuid>,

    pub(super) tt: Transitions,
    pub(super) st: Transitions,
}

#[derive(Default)]
pub(super) struct Transitions {
    pub(super) uuid: Vec<Uuid>,
    pub(super) owner: Vec<Uuid>,
    pub(super) from: Vec<Option<String>>,
    pub(super) to: Vec<String>,
    pub(super) sort_key: Vec<i32>,
    pub(super) most_recent: Vec<bool>,
    pub(super) created: Vec<DateTime<Utc>>,
}

impl Transitions {
    /// Appends a history: `path[0]` is the initial state (from NULL), each later entry one
    /// transition; the last is most_recent.
    pub(super) fn push_path(
        &mut self,
        ids: &mut UuidSequence,
        owner: Uuid,
        path: &[&str],
        start: DateTime<Utc>,
    ) {
        for (i, to) in path.iter().enumerate() {
            self.uuid.push(ids.next_uuid());
            self.owner.push(owner);
            self.from
                .push(i.checked_sub(1).map(|p| path[p].to_string()));
            self.to.push((*to).to_string());
            self.sort_key.push(i as i32 + 1);
            self.most_recent.push(i + 1 == path.len());
            self.created
                .push(start + chrono::Duration::milliseconds(50 * i as i64));
        }
    }
}

/// Writes every buffered row in one transaction, one bulk statement per table.
pub(super) async fn write(pool: &PgPool, c: &Columns) -> TaskerResult<()> {
    let mut tx = pool
        .begin()
        .await
        .db_context("starting the seed transaction")?;
    write_tasks(&mut tx, c).await?;
    write_steps(&mut tx, c).await?;
    write_edges(&mut tx, c).await?;
    write_transitions(
        &mut tx,
        "tasker.task_transitions",
        "task_transition_uuid, task_uuid",
        &c.tt,
    )
    .await?;
    write_transitions(
        &mut tx,
        "tasker.workflow_step_transitions",
        "workflow_step_transition_uuid, workflow_step_uuid",
        &c.st,
    )
    .await?;
    tx.commit().await.db_context("committing the seed")?;
    Ok(())
}

async fn write_tasks(tx: &mut PgConnection, c: &Columns) -> TaskerResult<()> {
    sqlx::query(
        "INSERT INTO tasker.tasks (task_uuid, named_task_uuid, current_state, context, priority,
                                   identity_hash, created_at, updated_at, completed_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::int[],
                              $6::text[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])",
    )
    .bind(&c.t_uuid)
    .bind(&c.t_named)
    .bind(&c.t_state)
    .bind(&c.t_context)
    .bind(&c.t_priority)
    .bind(&c.t_identity)
    .bind(&c.t_created)
    .bind(&c.t_updated)
    .bind(&c.t_completed)
    .execute(&mut *tx)
    .await
    .db_context("seeding tasks")
    .map(drop)
}

async fn write_steps(tx: &mut PgConnection, c: &Columns) -> TaskerResult<()> {
    sqlx::query(
        "INSERT INTO tasker.workflow_steps (workflow_step_uuid, task_uuid, name, handler, current_state,
                    attempts, max_attempts, retryable, backoff_base_ms, backoff_max_ms, in_process,
                    processed, results, last_error, last_attempted_at, next_retry_at, processed_at,
                    created_at, updated_at)
         SELECT u, t, n, h, st, a, m, r, bb, bm, ip, p, res, err, la, nr, pa, c, c
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::int[],
                       $7::int[], $8::bool[], $9::int[], $10::int[], $11::bool[], $12::bool[],
                       $13::jsonb[], $14::jsonb[], $15::timestamptz[], $16::timestamptz[],
                       $17::timestamptz[], $18::timestamptz[])
                AS s(u, t, n, h, st, a, m, r, bb, bm, ip, p, res, err, la, nr, pa, c)",
    )
    .bind(&c.s_uuid)
    .bind(&c.s_task)
    .bind(&c.s_name)
    .bind(&c.s_handler)
    .bind(&c.s_state)
    .bind(&c.s_attempts)
    .bind(&c.s_max_attempts)
    .bind(&c.s_retryable)
    .bind(&c.s_backoff_base)
    .bind(&c.s_backoff_max)
    .bind(&c.s_in_process)
    .bind(&c.s_processed)
    .bind(&c.s_results)
    .bind(&c.s_last_error)
    .bind(&c.s_last_attempted)
    .bind(&c.s_next_retry)
    .bind(&c.s_processed_at)
    .bind(&c.s_created)
    .execute(&mut *tx)
    .await
    .db_context("seeding workflow steps")
    .map(drop)
}

async fn write_edges(tx: &mut PgConnection, c: &Columns) -> TaskerResult<()> {
    sqlx::query(
        "INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid)
         SELECT * FROM unnest($1::uuid[], $2::uuid[])",
    )
    .bind(&c.e_from)
    .bind(&c.e_to)
    .execute(&mut *tx)
    .await
    .db_context("seeding step edges")
    .map(drop)
}

/// One table's transition histories (`owner` names its id and owner columns).
async fn write_transitions(
    tx: &mut PgConnection,
    table: &str,
    owner: &str,
    t: &Transitions,
) -> TaskerResult<()> {
    sqlx::query(&format!(
        "INSERT INTO {table} ({owner}, from_state, to_state, sort_key, most_recent, processor, created_at)
         SELECT u, o, f, t, k, m, 'bench_seed', c
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::bool[],
                       $7::timestamptz[]) AS x(u, o, f, t, k, m, c)"
    ))
    .bind(&t.uuid)
    .bind(&t.owner)
    .bind(&t.from)
    .bind(&t.to)
    .bind(&t.sort_key)
    .bind(&t.most_recent)
    .bind(&t.created)
    .execute(&mut *tx)
    .await
    .db_context(format!("seeding {table}"))
    .map(drop)
}
