//! The four fixture workflows run to completion with the example handlers, and every step's
//! computed value is the one the template documents (so a step that ran before its parents,
//! or with the wrong parents' results, fails the test).

use serde_json::json;

use crate::e2e::harness::{
    assert_completed_once, assert_diamond_values, assert_linear_values, value_of, Harness, DIAMOND,
    LINEAR,
};

#[tokio::test]
async fn test_linear_workflow() {
    let harness = Harness::start().await;
    let task = harness.run_fixture(LINEAR).await;
    assert_linear_values(&task);
    harness.shutdown().await;
}

#[tokio::test]
async fn test_diamond_workflow() {
    let harness = Harness::start().await;
    let task = harness.run_fixture(DIAMOND).await;
    assert_diamond_values(&task);
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
