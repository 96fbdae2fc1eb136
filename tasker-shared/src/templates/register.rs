//! Storing templates in the database and finding them again.

use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::TaskTemplate;
use crate::error::{DbContext, TaskerError, TaskerResult};
use crate::messaging::{namespace_queue_name, Queue};

/// Where a registered template lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredTemplate {
    pub namespace_uuid: Uuid,
    pub named_task_uuid: Uuid,
}

/// Registers (or updates) a template, its namespace and the namespace's step queue, in one
/// transaction.
pub async fn register_template(
    pool: &PgPool,
    template: &TaskTemplate,
) -> TaskerResult<RegisteredTemplate> {
    let what = format!(
        "registering template {}/{} {}",
        template.namespace, template.name, template.version
    );
    let mut tx = pool.begin().await.db_context(&what)?;
    let namespace_uuid: Uuid = sqlx::query_scalar(
        "INSERT INTO tasker.namespaces (namespace_uuid, name) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
         RETURNING namespace_uuid",
    )
    .bind(Uuid::now_v7())
    .bind(&template.namespace)
    .fetch_one(&mut *tx)
    .await
    .db_context(&what)?;
    let configuration = serde_json::to_value(template).map_err(|source| TaskerError::Serde {
        what: format!("template {}/{}", template.namespace, template.name),
        source,
    })?;
    let named_task_uuid: Uuid = sqlx::query_scalar(
        "INSERT INTO tasker.named_tasks (named_task_uuid, namespace_uuid, name, version, description, configuration)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (namespace_uuid, name, version)
         DO UPDATE SET configuration = EXCLUDED.configuration, description = EXCLUDED.description, updated_at = now()
         RETURNING named_task_uuid",
    )
    .bind(Uuid::now_v7())
    .bind(namespace_uuid)
    .bind(&template.name)
    .bind(&template.version)
    .bind(&template.description)
    .bind(configuration)
    .fetch_one(&mut *tx)
    .await
    .db_context(&what)?;
    Queue::new(&namespace_queue_name(&template.namespace))?
        .create(&mut *tx)
        .await?;
    tx.commit().await.db_context(&what)?;
    Ok(RegisteredTemplate {
        namespace_uuid,
        named_task_uuid,
    })
}

/// A registered template by namespace, name and version.
pub async fn find_template<'e>(
    executor: impl PgExecutor<'e>,
    namespace: &str,
    name: &str,
    version: &str,
) -> TaskerResult<Option<(Uuid, TaskTemplate)>> {
    let row: Option<(Uuid, serde_json::Value)> = sqlx::query_as(
        "SELECT nt.named_task_uuid, nt.configuration
           FROM tasker.named_tasks nt
           JOIN tasker.namespaces ns ON ns.namespace_uuid = nt.namespace_uuid
          WHERE ns.name = $1 AND nt.name = $2 AND nt.version = $3",
    )
    .bind(namespace)
    .bind(name)
    .bind(version)
    .fetch_optional(executor)
    .await
    .db_context(format!("looking up template {namespace}/{name} {version}"))?;
    row.map(|(uuid, config)| decode(uuid, config)).transpose()
}

/// Every registered template, ordered by namespace, name and version.
pub async fn list_templates<'e>(
    executor: impl PgExecutor<'e>,
) -> TaskerResult<Vec<(Uuid, TaskTemplate)>> {
    let rows: Vec<(Uuid, serde_json::Value)> = sqlx::query_as(
        "SELECT nt.named_task_uuid, nt.configuration
           FROM tasker.named_tasks nt
           JOIN tasker.namespaces ns ON ns.namespace_uuid = nt.namespace_uuid
          ORDER BY ns.name, nt.name, nt.version",
    )
    .fetch_all(executor)
    .await
    .db_context("listing templates")?;
    rows.into_iter()
        .map(|(uuid, config)| decode(uuid, config))
        .collect()
}

fn decode(uuid: Uuid, config: serde_json::Value) -> TaskerResult<(Uuid, TaskTemplate)> {
    let template = serde_json::from_value(config).map_err(|source| TaskerError::Serde {
        what: format!("the stored template of named task {uuid}"),
        source,
    })?;
    Ok((uuid, template))
}
