//! Queues: visibility timeout, delete, archive, notifications.

use std::time::Duration;

use serde_json::json;
use tasker_shared::messaging::{Queue, QueueListener, Wake};
use tasker_test_support::TestDatabase;

async fn queue(db: &TestDatabase, name: &str) -> Queue {
    let queue = Queue::new(name).unwrap();
    queue.create(&db.pool).await.unwrap();
    queue
}

#[tokio::test]
async fn an_unacknowledged_message_reappears_after_its_visibility_timeout() {
    let db = TestDatabase::new().await;
    let q = queue(&db, "vt_test").await;
    let id = q.send(&db.pool, &json!({"step": 1})).await.unwrap();

    let first = q
        .read_raw(&db.pool, Duration::from_millis(700), 10)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].msg_id, first[0].read_ct), (id, 1));
    assert_eq!(first[0].message, json!({"step": 1}));

    // hidden while the timeout runs
    assert!(q
        .read_raw(&db.pool, Duration::from_secs(30), 10)
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(900)).await;
    let again = q
        .read_raw(&db.pool, Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "visible again once the timeout passed");
    assert_eq!((again[0].msg_id, again[0].read_ct), (id, 2));
}

#[tokio::test]
async fn deleted_and_archived_messages_do_not_come_back() {
    let db = TestDatabase::new().await;
    let q = queue(&db, "ack_test").await;
    let ids = q
        .send_batch(&db.pool, &[json!({"n": 1}), json!({"n": 2})])
        .await
        .unwrap();
    let claimed = q
        .read_raw(&db.pool, Duration::from_millis(100), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(q.delete(&db.pool, ids[0]).await.unwrap());
    assert!(q.archive(&db.pool, ids[1]).await.unwrap());
    assert!(!q.delete(&db.pool, ids[0]).await.unwrap(), "already gone");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(q
        .read_raw(&db.pool, Duration::from_secs(1), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(q.depth(&db.pool).await.unwrap(), 0);
    let archived: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT message FROM tasker.queue_archive WHERE queue_name = 'ack_test'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(archived, [json!({"n": 2})]);
}

#[tokio::test]
async fn concurrent_readers_never_claim_the_same_message() {
    let db = TestDatabase::new().await;
    let q = queue(&db, "skip_locked").await;
    let messages: Vec<_> = (0..200).map(|n| json!({ "n": n })).collect();
    q.send_batch(&db.pool, &messages).await.unwrap();
    let readers = (0..4).map(|_| {
        let (pool, q) = (db.pool.clone(), q.clone());
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = q.read_raw(&pool, Duration::from_secs(30), 7).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|m| m.msg_id));
            }
        })
    });
    let mut all: Vec<i64> = futures::future::join_all(readers)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    let claimed = all.len();
    all.sort();
    all.dedup();
    assert_eq!((claimed, all.len()), (200, 200));
}

#[tokio::test]
async fn a_send_wakes_a_listener_when_it_commits() {
    let db = TestDatabase::new().await;
    let q = queue(&db, "notify_test").await;
    let mut listener =
        QueueListener::connect(&db.pool, std::slice::from_ref(&q), Duration::from_secs(10))
            .await
            .unwrap();

    let mut tx = db.pool.begin().await.unwrap();
    q.send(&mut *tx, &json!({"hello": true})).await.unwrap();
    // not committed: nothing is announced yet
    let early = tokio::time::timeout(Duration::from_millis(300), listener.wait()).await;
    assert!(early.is_err(), "notified before commit: {early:?}");
    tx.commit().await.unwrap();

    let wake = tokio::time::timeout(Duration::from_secs(5), listener.wait())
        .await
        .expect("notification arrives well before the fallback poll")
        .unwrap();
    assert_eq!(wake, Wake::Notified("notify_test".into()));
}

#[tokio::test]
async fn the_fallback_poll_fires_without_notifications() {
    let db = TestDatabase::new().await;
    let q = queue(&db, "quiet").await;
    let mut listener = QueueListener::connect(&db.pool, &[q], Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(listener.wait().await.unwrap(), Wake::FallbackPoll);
}
