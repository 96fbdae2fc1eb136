//! Applying the schema (`tasker_shared::schema::migrate`): a fresh database holds exactly the
//! function files' functions, a changed file is applied again, and a database migrated with the
//! replaced history is refused.

use std::collections::BTreeSet;

use sqlx::PgPool;
use tasker_shared::schema::{migrate, FUNCTION_FILES};
use tasker_test_support::TestDatabase;

/// The function names the files define.
fn defined_in_files() -> BTreeSet<String> {
    FUNCTION_FILES
        .iter()
        .flat_map(|(_, text)| text.split("CREATE OR REPLACE FUNCTION tasker.").skip(1))
        .map(|rest| rest.split('(').next().unwrap_or_default().to_owned())
        .collect()
}

async fn functions_in(pool: &PgPool) -> BTreeSet<String> {
    sqlx::query_scalar(
        "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'tasker'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[tokio::test]
async fn a_migrated_database_has_exactly_the_files_functions_and_migrating_again_applies_nothing() {
    let db = TestDatabase::new().await;
    let mut expected = defined_in_files();
    // the id generator is a column default, so it is part of the schema itself
    expected.insert("uuid_v7".to_owned());
    assert_eq!(functions_in(&db.pool).await, expected);
    assert_eq!(migrate(&db.pool).await.unwrap(), 0);
}

#[tokio::test]
async fn a_changed_function_file_is_applied_again() {
    let db = TestDatabase::new().await;
    // as if 30_queues.sql had changed since: its function gone, its digest another
    sqlx::raw_sql(
        "DROP FUNCTION tasker.queue_channel(text);
         UPDATE tasker.function_files SET sha256 = 'stale' WHERE file = '30_queues.sql'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(migrate(&db.pool).await.unwrap(), 1);
    assert!(functions_in(&db.pool).await.contains("queue_channel"));
    assert_eq!(migrate(&db.pool).await.unwrap(), 0);
}

#[tokio::test]
async fn a_database_migrated_with_the_old_history_is_refused_with_what_to_do() {
    let db = TestDatabase::new().await;
    sqlx::query(
        "INSERT INTO public._sqlx_migrations
             (version, description, success, checksum, execution_time)
         VALUES (20261127000002, 'sql functions', true, '\\x00', 0)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let error = migrate(&db.pool).await.unwrap_err().to_string();
    assert!(
        error.contains("20261127000002") && error.contains("tasker db destroy"),
        "{error}"
    );
}
