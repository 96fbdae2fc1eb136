//! Template loading: good ones register, bad ones are rejected naming the file and the step.

use std::path::Path;

use tasker_shared::templates::{
    find_template, list_templates, load_dir, parse_template, register_template, TemplateError,
};
use tasker_test_support::TestDatabase;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn rejected(yaml: &str) -> TemplateError {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.yaml", yaml);
    load_dir(dir.path()).expect_err("template should be rejected")
}

fn assert_names(err: &TemplateError, step: Option<&str>, needle: &str) {
    let text = err.to_string();
    assert!(text.contains("bad.yaml"), "file not named: {text}");
    assert!(text.contains(needle), "{needle:?} not in: {text}");
    if let TemplateError::Invalid { step: got, .. } = err {
        assert_eq!(got.as_deref(), step, "{text}");
    } else if step.is_some() {
        panic!("expected an invalid-template error, got {text}");
    }
}

#[test]
fn a_cycle_is_rejected_naming_a_step_on_it() {
    let err = rejected(
        "namespace: t\nname: x\nversion: '1'\nsteps:\n  - { name: a, handler: h, depends_on: [c] }\n  - { name: b, handler: h, depends_on: [a] }\n  - { name: c, handler: h, depends_on: [b] }\n",
    );
    let text = err.to_string();
    assert!(text.contains("cycle"), "{text}");
    let TemplateError::Invalid {
        step: Some(step), ..
    } = &err
    else {
        panic!("{text}")
    };
    assert!(["a", "b", "c"].contains(&step.as_str()));
    assert_names(&err, Some(step), step);
}

#[test]
fn an_unknown_dependency_is_rejected() {
    let err = rejected(
        "namespace: t\nname: x\nversion: '1'\nsteps:\n  - { name: a, handler: h }\n  - { name: b, handler: h, depends_on: [ghost] }\n",
    );
    assert_names(&err, Some("b"), "unknown step `ghost`");
}

#[test]
fn duplicate_step_names_are_rejected() {
    let err = rejected(
        "namespace: t\nname: x\nversion: '1'\nsteps:\n  - { name: a, handler: h }\n  - { name: a, handler: h2 }\n",
    );
    assert_names(&err, Some("a"), "more than once");
}

#[test]
fn bad_yaml_is_rejected_with_its_position() {
    let err = rejected("namespace: t\nname: [unclosed\n");
    assert!(matches!(err, TemplateError::Yaml { .. }), "{err}");
    assert_names(&err, None, "line");
}

#[test]
fn unknown_fields_are_rejected_rather_than_ignored() {
    let err = rejected(
        "namespace: t\nname: x\nversion: '1'\nsteps:\n  - { name: a, handler: h, depend_on: [b] }\n",
    );
    assert_names(&err, None, "depend_on");
}

#[test]
fn one_bad_file_fails_the_whole_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a_good.yaml",
        "namespace: t\nname: ok\nversion: '1'\nsteps:\n  - { name: a, handler: h }\n",
    );
    write(
        dir.path(),
        "bad.yaml",
        "namespace: t\nname: x\nversion: '1'\nsteps: []\n",
    );
    let err = load_dir(dir.path()).unwrap_err();
    assert_names(&err, None, "no steps");
}

#[tokio::test]
async fn loaded_templates_register_and_can_be_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "one.yaml", "namespace: alpha\nname: one\nversion: 1.0.0\nsteps:\n  - { name: a, handler: h }\n  - { name: b, handler: h, depends_on: [a], retry: { max_attempts: 5 } }\n");
    let loaded = load_dir(dir.path()).unwrap();
    assert_eq!(loaded.len(), 1);

    let db = TestDatabase::new().await;
    let first = register_template(&db.pool, &loaded[0].1).await.unwrap();
    let again = register_template(&db.pool, &loaded[0].1).await.unwrap();
    assert_eq!(first, again, "registering twice updates in place");

    let (uuid, found) = find_template(&db.pool, "alpha", "one", "1.0.0")
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(uuid, first.named_task_uuid);
    assert_eq!(found, loaded[0].1);
    assert_eq!(found.steps[1].retry.max_attempts, 5);
    assert!(find_template(&db.pool, "alpha", "one", "2.0.0")
        .await
        .unwrap()
        .is_none());
    assert_eq!(list_templates(&db.pool).await.unwrap().len(), 1);

    let queue_exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tasker.queues WHERE queue_name = 'alpha_queue')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        queue_exists,
        "the namespace's step queue is created with it"
    );
}

#[test]
fn the_repository_fixture_templates_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/task_templates");
    let loaded = load_dir(&dir).unwrap();
    let names: Vec<&str> = loaded.iter().map(|(_, t)| t.name.as_str()).collect();
    for expected in [
        "mathematical_sequence",
        "diamond_pattern",
        "complex_dag",
        "hierarchical_tree",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    // parse_template is what load_dir uses per file; a direct call agrees
    let text = std::fs::read_to_string(&loaded[0].0).unwrap();
    assert_eq!(parse_template(&text, "x").unwrap(), loaded[0].1);
}
