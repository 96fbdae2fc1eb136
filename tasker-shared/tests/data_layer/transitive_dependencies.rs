//! get_step_transitive_dependencies over a 4-level DAG.

use serde_json::json;
use tasker_shared::sql_functions::get_step_transitive_dependencies;
use tasker_test_support::TestDatabase;

use crate::fixtures::*;

#[tokio::test]
async fn ancestors_come_with_their_shortest_distance_and_results() {
    let db = TestDatabase::new().await;
    let task = create_task(&db.pool, FOUR_LEVELS).await;
    complete_step(&db.pool, task.step("root"), json!({"value": 6})).await;

    let deps = get_step_transitive_dependencies(&db.pool, task.step("l3"))
        .await
        .unwrap();
    let found: Vec<(String, i32)> = deps.iter().map(|d| (d.name.clone(), d.distance)).collect();
    // l3 <- l2 (1), l1b (1, also 2 via l2), l1a (2), root (3 via l2, 2 via l1b)
    assert_eq!(
        found,
        [
            ("l1b".to_string(), 1),
            ("l2".to_string(), 1),
            ("l1a".to_string(), 2),
            ("root".to_string(), 2),
        ]
    );
    let root = deps.iter().find(|d| d.name == "root").unwrap();
    assert_eq!(root.results, Some(json!({"value": 6})));
    assert!(root.processed);

    assert!(
        get_step_transitive_dependencies(&db.pool, task.step("root"))
            .await
            .unwrap()
            .is_empty()
    );
}
