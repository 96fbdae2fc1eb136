//! Structural checks on a parsed template: names, dependencies, cycles, retry settings.

use std::collections::{HashMap, HashSet};

use petgraph::algo::toposort;
use petgraph::graphmap::DiGraphMap;

use super::{TaskTemplate, TemplateError};

/// Checks a template; `source_name` (usually the file path) goes into every error.
pub fn validate(template: &TaskTemplate, source_name: &str) -> Result<(), TemplateError> {
    let invalid = |step: Option<&str>, problem: String| TemplateError::Invalid {
        source_name: source_name.to_string(),
        step: step.map(str::to_string),
        problem,
    };

    // the namespace names a queue, so it must fit the queue-name alphabet with room for a suffix
    let ns_ok = !template.namespace.is_empty()
        && template.namespace.len() <= 40
        && template
            .namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ns_ok {
        return Err(invalid(
            None,
            format!(
                "namespace {:?} must be 1 to 40 characters from a-z, 0-9 and _",
                template.namespace
            ),
        ));
    }
    if template.name.trim().is_empty() {
        return Err(invalid(None, "the template has an empty name".into()));
    }
    if template.version.trim().is_empty() {
        return Err(invalid(None, "the template has an empty version".into()));
    }
    if template.steps.is_empty() {
        return Err(invalid(None, "the template has no steps".into()));
    }

    let mut seen = HashSet::new();
    for step in &template.steps {
        if step.name.trim().is_empty() {
            return Err(invalid(None, "a step has an empty name".into()));
        }
        if !seen.insert(step.name.as_str()) {
            return Err(invalid(
                Some(&step.name),
                format!("step `{}` is defined more than once", step.name),
            ));
        }
        if step.handler.trim().is_empty() {
            return Err(invalid(
                Some(&step.name),
                format!("step `{}` has an empty handler", step.name),
            ));
        }
        if step.retry.max_attempts == 0 {
            return Err(invalid(
                Some(&step.name),
                format!(
                    "step `{}`: retry.max_attempts must be at least 1",
                    step.name
                ),
            ));
        }
        if !step.config.is_object() {
            return Err(invalid(
                Some(&step.name),
                format!("step `{}`: config must be a mapping", step.name),
            ));
        }
    }

    let index: HashMap<&str, usize> = template
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut graph = DiGraphMap::<usize, ()>::new();
    for (i, step) in template.steps.iter().enumerate() {
        graph.add_node(i);
        for parent in &step.depends_on {
            let Some(&p) = index.get(parent.as_str()) else {
                return Err(invalid(
                    Some(&step.name),
                    format!("step `{}` depends on unknown step `{parent}`", step.name),
                ));
            };
            if p == i {
                return Err(invalid(
                    Some(&step.name),
                    format!("step `{}` depends on itself", step.name),
                ));
            }
            graph.add_edge(p, i, ());
        }
    }
    toposort(&graph, None).map_err(|cycle| {
        let name = &template.steps[cycle.node_id()].name;
        invalid(
            Some(name),
            format!("the dependencies form a cycle through step `{name}`"),
        )
    })?;
    Ok(())
}
