//! Reading templates from YAML text and from a directory of files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{validate, TaskTemplate, TemplateError};

/// Parses and validates one template; `source_name` names it in errors.
pub fn parse_template(yaml: &str, source_name: &str) -> Result<TaskTemplate, TemplateError> {
    let template: TaskTemplate = serde_yaml::from_str(yaml).map_err(|e| TemplateError::Yaml {
        source_name: source_name.to_string(),
        message: e.to_string(),
    })?;
    validate(&template, source_name)?;
    Ok(template)
}

/// Every `*.yaml` / `*.yml` file under `dir` (recursively), in path order. One bad file fails
/// the whole load: a half-registered set of templates is worse than none.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, TaskTemplate)>, TemplateError> {
    let mut files = Vec::new();
    collect_yaml(dir, &mut files)?;
    files.sort();
    let mut seen: HashMap<(String, String, String), PathBuf> = HashMap::new();
    let mut templates = Vec::with_capacity(files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
            path: path.clone(),
            source,
        })?;
        let template = parse_template(&text, &path.display().to_string())?;
        let key = (
            template.namespace.clone(),
            template.name.clone(),
            template.version.clone(),
        );
        if let Some(first) = seen.get(&key) {
            return Err(TemplateError::Duplicate {
                first: first.clone(),
                second: path,
                namespace: key.0,
                name: key.1,
                version: key.2,
            });
        }
        seen.insert(key, path.clone());
        templates.push((path, template));
    }
    Ok(templates)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), TemplateError> {
    let read_error = |source| TemplateError::Read {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}
