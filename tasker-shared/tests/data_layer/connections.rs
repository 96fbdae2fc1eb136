//! The engine's connections: their session settings, and a held connection staying on one
//! server process.

use tasker_shared::database::HeldConnection;
use tasker_test_support::TestDatabase;

async fn backend_pid(conn: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn engine_connections_keep_generic_plans_and_never_compile_with_jit() {
    let db = TestDatabase::new().await;
    let (plan_cache_mode, jit): (String, String) =
        sqlx::query_as("SELECT current_setting('plan_cache_mode'), current_setting('jit')")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(plan_cache_mode, "force_generic_plan");
    assert_eq!(jit, "off");
}

#[tokio::test]
async fn a_held_connection_stays_on_one_server_process_until_discarded() {
    let db = TestDatabase::new().await;
    // two idle connections in the pool, so a checkout per statement would alternate
    let (mut a, mut b) = (
        db.pool.acquire().await.unwrap(),
        db.pool.acquire().await.unwrap(),
    );
    assert_ne!(backend_pid(&mut a).await, backend_pid(&mut b).await);
    drop((a, b));
    let mut rotating = Vec::new();
    for _ in 0..4 {
        let mut conn = db.pool.acquire().await.unwrap();
        rotating.push(backend_pid(&mut conn).await);
    }
    assert!(
        rotating.windows(2).any(|w| w[0] != w[1]),
        "the pool should rotate over its idle connections: {rotating:?}"
    );

    let mut held = HeldConnection::new(db.pool.clone(), "the test");
    assert!(!held.is_held());
    let first = backend_pid(held.get().await.unwrap()).await;
    for _ in 0..4 {
        assert_eq!(backend_pid(held.get().await.unwrap()).await, first);
    }
    assert!(held.is_held());
    held.discard();
    assert!(!held.is_held());
    // the next use checks a connection out again, and it works
    backend_pid(held.get().await.unwrap()).await;
    assert!(held.is_held());
}
