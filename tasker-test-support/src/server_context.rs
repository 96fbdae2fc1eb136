//! What the figures were measured against besides the code: the server's version and the
//! settings that change commit latency, recorded next to every percentile file.

use serde_json::{json, Value};
use sqlx::PgPool;
use tasker_shared::database::database_url_from_env;

/// What the figures depend on besides the code: the server version and the settings that
/// change commit latency. Recorded next to every percentile file (the local throwaway cluster
/// runs with `synchronous_commit = off`, see tasker-shared's `local_postgres/cluster.rs`).
pub async fn server_context(pool: &PgPool) -> Value {
    let setting = |name: &'static str| async move {
        sqlx::query_scalar::<_, String>(&format!("SHOW {name}"))
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| format!("unknown ({e})"))
    };
    json!({
        "server_version": setting("server_version").await,
        "synchronous_commit": setting("synchronous_commit").await,
        "fsync": setting("fsync").await,
        "shared_buffers": setting("shared_buffers").await,
        "database": if database_url_from_env().is_some() { "DATABASE_URL" } else { "throwaway cluster" },
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    })
}
