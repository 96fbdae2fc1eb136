//! The throwaway cluster leaves nothing behind.

use std::time::Duration;

use sqlx::Connection;
use tasker_shared::local_postgres::ThrowawayCluster;

#[tokio::test]
async fn a_dropped_throwaway_cluster_stops_its_server_and_removes_its_directory() {
    let cluster = tokio::task::spawn_blocking(ThrowawayCluster::start)
        .await
        .unwrap()
        .expect("cluster starts");
    let url = cluster.cluster().url("postgres");
    let dir = cluster.cluster().dir().to_path_buf();
    let pid_file = cluster.cluster().info().data_dir.join("postmaster.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    conn.close().await.unwrap();

    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
    assert!(!dir.exists(), "{} still exists", dir.display());
    // the postmaster is gone (kill with signal 0 only checks existence)
    let mut gone = false;
    for _ in 0..50 {
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "postmaster {pid} still running");
    assert!(sqlx::PgConnection::connect(&url).await.is_err());
}
