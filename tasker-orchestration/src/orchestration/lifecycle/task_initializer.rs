//! Task initialisation: a request ([`CreateTaskRequest`], the API's own wire type) plus a
//! registered template becomes a task, its steps, edges and initial transitions in one
//! transaction, and orchestrators are told it exists.
//!
//! Identical requests (same template, context and initiator) inside the de-duplication window
//! return the task the first one created: a client that retries a timed-out POST does not start
//! the workflow twice.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tasker_client::{CreateTaskRequest, TaskCreated};
use tasker_shared::error::DbContext;
use tasker_shared::messaging::TASKS_READY_CHANNEL;
use tasker_shared::metrics::TASKS_CREATED;
use tasker_shared::models::{insert_task_graph, NewTask};
use tasker_shared::templates::{find_template, TaskTemplate};
use uuid::Uuid;

use crate::error::{OrchestrationError, OrchestrationResult};

/// How long a looked-up template is trusted before it is read again (templates change only on
/// registration, which is rare; the lookup is a round trip on every task creation otherwise).
const TEMPLATE_CACHE_TTL: Duration = Duration::from_secs(5);

type TemplateKey = (String, String, String);
type CachedTemplate = (Instant, Arc<(Uuid, TaskTemplate)>);

/// Creates tasks.
#[derive(Clone)]
pub struct TaskInitializer {
    pool: PgPool,
    dedup_window: Duration,
    templates: Arc<RwLock<HashMap<TemplateKey, CachedTemplate>>>,
    processor: Arc<str>,
}

impl TaskInitializer {
    /// An initializer writing to `pool`; `dedup_window` of zero turns de-duplication off.
    pub fn new(pool: PgPool, dedup_window: Duration) -> Self {
        Self {
            pool,
            dedup_window,
            templates: Arc::default(),
            processor: format!("task_initializer:{}", std::process::id()).into(),
        }
    }

    /// Validates the request, creates the task in one transaction, and notifies orchestrators.
    pub async fn create_task(
        &self,
        request: &CreateTaskRequest,
    ) -> OrchestrationResult<TaskCreated> {
        if !request.context.is_object() {
            return Err(OrchestrationError::InvalidRequest(
                "context must be a JSON object".into(),
            ));
        }
        let template = self.template(request).await?;
        let (named_task_uuid, template) = (&template.0, &template.1);
        let identity = identity_hash(request);

        let mut tx = self
            .pool
            .begin()
            .await
            .db_context("starting task creation")?;
        if !self.dedup_window.is_zero() {
            // concurrent identical requests queue here, so the second sees the first's task
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(&identity)
                .execute(&mut *tx)
                .await
                .db_context("locking the task identity")?;
            let existing: Option<Uuid> = sqlx::query_scalar(
                "SELECT task_uuid FROM tasker.tasks
                  WHERE identity_hash = $1 AND created_at > now() - make_interval(secs => $2)
                  ORDER BY created_at DESC LIMIT 1",
            )
            .bind(&identity)
            .bind(self.dedup_window.as_secs_f64())
            .fetch_optional(&mut *tx)
            .await
            .db_context("looking for an identical recent task")?;
            if let Some(task_uuid) = existing {
                tx.commit().await.db_context("finishing task creation")?;
                return Ok(TaskCreated {
                    task_uuid,
                    step_count: template.steps.len(),
                    deduplicated: true,
                });
            }
        }
        let created = insert_task_graph(
            &mut *tx,
            &NewTask {
                named_task_uuid: *named_task_uuid,
                template,
                context: &request.context,
                priority: request.priority,
                identity_hash: &identity,
                initiator: request.initiator.as_deref(),
                source_system: request.source_system.as_deref(),
                reason: request.reason.as_deref(),
                tags: request.tags.as_ref(),
            },
            &self.processor,
        )
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(TASKS_READY_CHANNEL)
            .bind(created.task_uuid.to_string())
            .execute(&mut *tx)
            .await
            .db_context("announcing the new task")?;
        tx.commit().await.db_context("committing the new task")?;
        tracing::debug!(task_uuid = %created.task_uuid, template = %template.name, "task created");
        metrics::counter!(TASKS_CREATED, "namespace" => template.namespace.clone()).increment(1);
        Ok(TaskCreated {
            task_uuid: created.task_uuid,
            step_count: template.steps.len(),
            deduplicated: false,
        })
    }

    async fn template(
        &self,
        request: &CreateTaskRequest,
    ) -> OrchestrationResult<Arc<(Uuid, TaskTemplate)>> {
        let key = (
            request.namespace.clone(),
            request.name.clone(),
            request.version.clone(),
        );
        if let Some((at, cached)) = self.read_cache().get(&key) {
            if at.elapsed() < TEMPLATE_CACHE_TTL {
                return Ok(cached.clone());
            }
        }
        let found = find_template(&self.pool, &key.0, &key.1, &key.2)
            .await?
            .ok_or_else(|| OrchestrationError::UnknownTemplate {
                namespace: key.0.clone(),
                name: key.1.clone(),
                version: key.2.clone(),
            })?;
        let found = Arc::new(found);
        self.templates
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, (Instant::now(), found.clone()));
        Ok(found)
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TemplateKey, CachedTemplate>> {
        // a panic while holding the lock cannot leave the map half-written, so poison is harmless
        self.templates
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The request's identity: template, context and initiator. serde_json's map is ordered by
/// key, so equal contexts serialise equally.
fn identity_hash(request: &CreateTaskRequest) -> String {
    let mut hasher = Sha256::new();
    for part in [
        request.namespace.as_str(),
        request.name.as_str(),
        request.version.as_str(),
        &request.context.to_string(),
        request.initiator.as_deref().unwrap_or(""),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    format!("{:x}", hasher.finalize())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use tasker_shared::templates::{parse_template, register_template};
    use tasker_test_support::TestDatabase;

    use super::*;

    const TEMPLATE: &str = "
namespace: init_tests
name: two_steps
version: 1.0.0
steps:
  - { name: first, handler: h }
  - { name: second, handler: h, depends_on: [first] }
";

    async fn setup(window: Duration) -> (TestDatabase, TaskInitializer) {
        let db = TestDatabase::new().await;
        register_template(&db.pool, &parse_template(TEMPLATE, "test").unwrap())
            .await
            .unwrap();
        let init = TaskInitializer::new(db.pool.clone(), window);
        (db, init)
    }

    fn request(context: Value) -> CreateTaskRequest {
        let mut request = CreateTaskRequest::new("init_tests", "two_steps", "1.0.0", context);
        request.priority = 3;
        request.initiator = Some("tests".into());
        request
    }

    #[tokio::test]
    async fn creates_the_task_its_steps_edges_and_pending_transitions() {
        let (db, init) = setup(Duration::ZERO).await;
        let created = init.create_task(&request(json!({"n": 6}))).await.unwrap();
        assert_eq!(created.step_count, 2);
        assert!(!created.deduplicated);

        let (state, priority, context): (String, i32, Value) = sqlx::query_as(
            "SELECT current_state, priority, context FROM tasker.tasks WHERE task_uuid = $1",
        )
        .bind(created.task_uuid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(
            (state.as_str(), priority, context),
            ("pending", 3, json!({"n": 6}))
        );
        let (steps, edges, step_transitions): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM tasker.workflow_steps WHERE task_uuid = $1),
                    (SELECT count(*) FROM tasker.workflow_step_edges e
                       JOIN tasker.workflow_steps s ON s.workflow_step_uuid = e.to_step_uuid
                      WHERE s.task_uuid = $1),
                    (SELECT count(*) FROM tasker.workflow_step_transitions t
                       JOIN tasker.workflow_steps s USING (workflow_step_uuid)
                      WHERE s.task_uuid = $1 AND t.most_recent AND t.to_state = 'pending')",
        )
        .bind(created.task_uuid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!((steps, edges, step_transitions), (2, 1, 2));
    }

    #[tokio::test]
    async fn identical_requests_inside_the_window_return_the_same_task() {
        let (db, init) = setup(Duration::from_secs(60)).await;
        let same = request(json!({"n": 1}));
        let (a, b) = tokio::join!(init.create_task(&same), init.create_task(&same));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.task_uuid, b.task_uuid);
        assert!(a.deduplicated ^ b.deduplicated, "exactly one created it");
        let other = init.create_task(&request(json!({"n": 2}))).await.unwrap();
        assert_ne!(other.task_uuid, a.task_uuid);
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tasker.tasks")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(count, 2);
    }

    #[tokio::test]
    async fn without_a_window_identical_requests_create_separate_tasks() {
        let (_db, init) = setup(Duration::ZERO).await;
        let a = init.create_task(&request(json!({}))).await.unwrap();
        let b = init.create_task(&request(json!({}))).await.unwrap();
        assert_ne!(a.task_uuid, b.task_uuid);
    }

    #[tokio::test]
    async fn unknown_templates_and_non_object_contexts_are_rejected_without_writes() {
        let (db, init) = setup(Duration::ZERO).await;
        let mut unknown = request(json!({}));
        unknown.version = "9.9.9".into();
        let err = init.create_task(&unknown).await.unwrap_err();
        assert!(
            matches!(err, OrchestrationError::UnknownTemplate { ref version, .. } if version == "9.9.9"),
            "{err}"
        );
        let err = init.create_task(&request(json!([1, 2]))).await.unwrap_err();
        assert!(
            matches!(err, OrchestrationError::InvalidRequest(_)),
            "{err}"
        );
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tasker.tasks")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(count, 0);
    }

    #[tokio::test]
    async fn creation_notifies_orchestrators() {
        let (db, init) = setup(Duration::ZERO).await;
        let mut listener = sqlx::postgres::PgListener::connect_with(&db.pool)
            .await
            .unwrap();
        listener.listen(TASKS_READY_CHANNEL).await.unwrap();
        let created = init.create_task(&request(json!({}))).await.unwrap();
        let note = tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .expect("notified")
            .unwrap();
        assert_eq!(note.payload(), created.task_uuid.to_string());
    }
}
