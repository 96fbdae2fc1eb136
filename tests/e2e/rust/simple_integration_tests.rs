//! The four fixture workflows run to completion with the example handlers, and every step's
//! computed value is the one the template documents (so a step that ran before its parents,
//! or with the wrong parents' results, fails the test).

use serde_json::json;

use crate::e2e::harness::{assert_completed_once, value_of, Harness};

#[tokio::test]
async fn test_linear_workflow() {
    let harness = Harness::start().await;
    let task = harness
        .run(
            "linear_workflow",
            "mathematical_sequence",
            json!({"even_number": 6}),
        )
        .await;
    assert_completed_once(&task);
    let values: Vec<i64> = [
        "linear_step_1",
        "linear_step_2",
        "linear_step_3",
        "linear_step_4",
    ]
    .iter()
    .map(|step| value_of(&task, step))
    .collect();
    assert_eq!(values, [36, 1_296, 1_679_616, 2_821_109_907_456]);
    harness.shutdown().await;
}

#[tokio::test]
async fn test_diamond_workflow() {
    let harness = Harness::start().await;
    let task = harness
        .run(
            "diamond_workflow",
            "diamond_pattern",
            json!({"even_number": 6}),
        )
        .await;
    assert_completed_once(&task);
    assert_eq!(value_of(&task, "diamond_start"), 36);
    assert_eq!(value_of(&task, "diamond_branch_b"), 1_296);
    assert_eq!(value_of(&task, "diamond_branch_c"), 1_296);
    // (1,296 x 1,296)^2: the join saw both branches' results
    assert_eq!(value_of(&task, "diamond_end"), 2_821_109_907_456);
    harness.shutdown().await;
}

#[tokio::test]
async fn test_mixed_dag_workflow() {
    let harness = Harness::start().await;
    let task = harness
        .run(
            "mixed_dag_workflow",
            "complex_dag",
            json!({"even_number": 2}),
        )
        .await;
    assert_completed_once(&task);
    for (step, expected) in [
        ("dag_init", 4),
        ("dag_process_left", 16),
        ("dag_process_right", 16),
        ("dag_validate", 256),
        ("dag_transform", 256),
        ("dag_analyze", 256),
        ("dag_finalize", 16_777_216),
    ] {
        assert_eq!(value_of(&task, step), expected, "{step}");
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn test_tree_workflow() {
    let harness = Harness::start().await;
    let task = harness
        .run(
            "tree_workflow",
            "hierarchical_tree",
            json!({"even_number": 2}),
        )
        .await;
    assert_completed_once(&task);
    for (step, expected) in [
        ("tree_root", 4),
        ("tree_branch_left", 16),
        ("tree_branch_right", 16),
        ("tree_leaf_d", 256),
        ("tree_leaf_e", 256),
        ("tree_leaf_f", 256),
        ("tree_leaf_g", 256),
        ("tree_final_convergence", 4_294_967_296),
    ] {
        assert_eq!(value_of(&task, step), expected, "{step}");
    }
    harness.shutdown().await;
}
