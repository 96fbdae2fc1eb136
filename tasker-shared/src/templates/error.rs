//! Template errors, each naming the file (or source) and, where it applies, the step.

use std::path::PathBuf;

/// A template that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{path}: cannot read the template")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{source_name}: not a valid task template: {message}")]
    Yaml {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: {problem}")]
    Invalid {
        source_name: String,
        /// The offending step, when the problem is one step's.
        step: Option<String>,
        problem: String,
    },
    #[error("{first} and {second} both define {namespace}/{name} version {version}")]
    Duplicate {
        first: PathBuf,
        second: PathBuf,
        namespace: String,
        name: String,
        version: String,
    },
}
