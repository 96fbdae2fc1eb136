//! The counting pass's reading of a benchmark (`bench_db_stats`), on a real cluster and a real
//! criterion run: a benchmark known to run three statements per iteration, and a fourth in a
//! second database, reads exactly four. A test binary of its own, because writing
//! transactions are counted cluster-wide and this process's cluster must see no other
//! test's writes.

use std::time::{Duration, Instant};

use serde_json::Value;
use tasker_test_support::bench_db_stats::STATS_ENV;
use tasker_test_support::{counted, criterion_config, runtime, timed, BenchDatabase};

/// A benchmark whose iteration is known to run three statements, one of them a write, and the
/// first of them again in a second database (as a bench with two deployments does), is
/// counted at exactly that, however many iterations criterion chose.
#[test]
fn a_benchmark_of_four_statements_in_two_databases_reads_exactly_four_per_iteration() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("counts.jsonl");
    std::env::set_var(STATS_ENV, &file);
    std::env::set_var("CRITERION_HOME", dir.path());
    let db = runtime().block_on(BenchDatabase::create(2));
    let other = runtime().block_on(BenchDatabase::create(1));
    runtime().block_on(async {
        sqlx::query("CREATE TABLE counted (x int)")
            .execute(&db.pool)
            .await
            .expect("create table");
    });
    let mut c = criterion_config(Duration::from_secs(1), 10)
        .profile_time(Some(Duration::from_millis(1500)));
    let (pool, other_pool) = (&db.pool, &other.pool);
    c.bench_function("three_statements", |b| {
        b.to_async(timed()).iter_custom(counted(|iters| async move {
            let mut conn = pool.acquire().await.expect("connection");
            let mut other_conn = other_pool.acquire().await.expect("connection");
            let start = Instant::now();
            for _ in 0..iters {
                for sql in [
                    "SELECT 1",
                    "INSERT INTO counted VALUES (1)",
                    "SELECT count(*) FROM counted",
                ] {
                    sqlx::query(sql).execute(&mut *conn).await.expect(sql);
                }
                sqlx::query("SELECT 1")
                    .execute(&mut *other_conn)
                    .await
                    .expect("SELECT 1 in the other database");
            }
            start.elapsed()
        }))
    });
    std::env::remove_var(STATS_ENV);

    let text = std::fs::read_to_string(&file).expect("the counts were written");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let record = &lines[0];
    assert_eq!(record["benchmark"], "three_statements");
    assert!(record.get("unavailable").is_none(), "{record}");
    let iterations = record["iterations"].as_u64().expect("iterations");
    assert!(iterations > 10, "criterion ran {iterations} iterations");
    let statements = record["statements"].as_array().expect("statements");
    let calls = |text: &str| {
        statements
            .iter()
            .find(|s| s["query"].as_str().is_some_and(|q| q.contains(text)))
            .and_then(|s| s["calls"].as_u64())
            .unwrap_or_else(|| panic!("`{text}` counted: {record}"))
    };
    assert_eq!(
        calls("SELECT $1"),
        2 * iterations,
        "both databases' rows summed"
    );
    assert_eq!(calls("INSERT INTO counted"), iterations);
    assert_eq!(calls("count(*)"), iterations);
    let total: u64 = statements.iter().filter_map(|s| s["calls"].as_u64()).sum();
    assert_eq!(total, 4 * iterations, "nothing else was counted: {record}");
    assert_eq!(record["writing_transactions"].as_u64(), Some(iterations));
    assert!(record["program_cpu_ns"].as_u64().unwrap_or(0) > 0);
    assert!(
        record["server_cpu_ns"].as_u64().unwrap_or(0) > 0,
        "the local server's CPU is read: {record}"
    );
}
