//! The workspace's fixture task templates (`tests/fixtures/task_templates`) by name, and
//! templates the fixtures lack: wide fan-outs of independent steps, for benchmarks that need
//! sizes the fixtures do not have.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use tasker_shared::templates::{load_dir, StepTemplate, TaskTemplate};

/// `tests/fixtures/task_templates` of the workspace.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("fixtures")
        .join("task_templates")
}

/// The fixture templates by template name (`mathematical_sequence`, `diamond_pattern`,
/// `complex_dag`, `hierarchical_tree`).
pub fn fixture_templates() -> HashMap<String, TaskTemplate> {
    let dir = fixtures_dir();
    load_dir(&dir)
        .unwrap_or_else(|e| panic!("loading the fixture templates from {}: {e}", dir.display()))
        .into_iter()
        .map(|(_, t)| (t.name.clone(), t))
        .collect()
}

/// One fixture template by name.
pub fn fixture_template(name: &str) -> TaskTemplate {
    fixture_templates().remove(name).unwrap_or_else(|| {
        panic!(
            "no fixture template named {name} in {}",
            fixtures_dir().display()
        )
    })
}

/// Template names of the four fixture shapes.
pub const LINEAR: &str = "mathematical_sequence";
pub const DIAMOND: &str = "diamond_pattern";
pub const DAG: &str = "complex_dag";
pub const TREE: &str = "hierarchical_tree";

/// A template with `width` independent steps (`step_000`, `step_001`, ...), all ready the
/// moment the task exists: the fan-out the step-enqueueing benchmarks need at sizes the
/// fixtures do not have. With `joined`, a final step depends on every one of them.
pub fn wide_template(namespace: &str, width: usize, joined: bool) -> TaskTemplate {
    let mut steps: Vec<StepTemplate> = (0..width)
        .map(|i| step(&format!("step_{i:03}"), "noop", Vec::new()))
        .collect();
    if joined {
        let parents = steps.iter().map(|s| s.name.clone()).collect();
        steps.push(step("join", "noop", parents));
    }
    TaskTemplate {
        namespace: namespace.to_string(),
        name: format!("wide_{width}{}", if joined { "_joined" } else { "" }),
        version: "1.0.0".to_string(),
        description: Some(format!("{width} independent steps (benchmark fan-out)")),
        steps,
    }
}

fn step(name: &str, handler: &str, depends_on: Vec<String>) -> StepTemplate {
    StepTemplate {
        name: name.to_string(),
        handler: handler.to_string(),
        description: None,
        depends_on,
        retry: Default::default(),
        timeout_seconds: None,
        config: json!({}),
    }
}

/// Each step's depth: 0 for roots, otherwise one more than its deepest parent.
pub fn step_depths(template: &TaskTemplate) -> HashMap<String, usize> {
    fn depth_of(
        name: &str,
        by_name: &HashMap<&str, &StepTemplate>,
        memo: &mut HashMap<String, usize>,
    ) -> usize {
        if let Some(d) = memo.get(name) {
            return *d;
        }
        let d = by_name[name]
            .depends_on
            .iter()
            .map(|p| depth_of(p, by_name, memo) + 1)
            .max()
            .unwrap_or(0);
        memo.insert(name.to_string(), d);
        d
    }
    let by_name: HashMap<&str, &StepTemplate> = template
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    let mut memo = HashMap::new();
    for s in &template.steps {
        depth_of(&s.name, &by_name, &mut memo);
    }
    memo
}
