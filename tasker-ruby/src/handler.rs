//! Loading a directory of Ruby handler files, and the `StepHandler` that calls one of them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tasker_worker::{HandlerRegistry, StepContext, StepError, StepHandler};
use tokio::sync::oneshot;

use crate::error::RubyError;
use crate::vm::{self, Job, StepInput};

/// Each load keeps its own handlers, so two workers in one process never see each other's.
static NEXT_LOAD: AtomicU64 = AtomicU64::new(1);

/// The handlers one directory registered.
#[derive(Debug, Clone)]
pub struct RubyHandlers {
    load_id: u64,
    names: Vec<String>,
}

impl RubyHandlers {
    /// Handler names, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Registers every handler; a Ruby handler replaces a Rust one of the same name.
    pub fn register_into(&self, registry: &mut HandlerRegistry) {
        for name in &self.names {
            registry.register(
                name,
                RubyHandler {
                    load_id: self.load_id,
                    name: name.clone(),
                },
            );
        }
    }
}

/// Loads every `*.rb` file in `dir` (in name order) into the embedded VM. The first file
/// that does not load stops it, naming the file and line.
pub async fn load(dir: &Path) -> Result<RubyHandlers, RubyError> {
    let files = ruby_files(dir)?;
    let load_id = NEXT_LOAD.fetch_add(1, Ordering::Relaxed);
    let mut names = Vec::new();
    for file in files {
        let (reply, answer) = oneshot::channel();
        vm::submit(Job::Load {
            load_id,
            file: file.clone(),
            reply,
        })?;
        match answer.await {
            Ok(Ok(registered)) => names.extend(registered),
            Ok(Err((line, message))) => {
                return Err(RubyError::Load {
                    file,
                    line,
                    message,
                })
            }
            Err(_) => return Err(RubyError::Vm("it stopped while loading".to_owned())),
        }
    }
    names.sort();
    names.dedup();
    Ok(RubyHandlers { load_id, names })
}

fn ruby_files(dir: &Path) -> Result<Vec<PathBuf>, RubyError> {
    let read_error = |source| RubyError::ReadDir {
        dir: dir.to_owned(),
        source,
    };
    let dir = dir.canonicalize().map_err(read_error)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(read_error)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rb") && p.is_file())
        .collect();
    if files.is_empty() {
        return Err(RubyError::NoFiles { dir });
    }
    files.sort();
    Ok(files)
}

/// A handler registered by a Ruby file: each call is queued to the VM's thread.
pub struct RubyHandler {
    load_id: u64,
    name: String,
}

#[async_trait::async_trait]
impl StepHandler for RubyHandler {
    async fn call(&self, step: &StepContext) -> Result<Value, StepError> {
        let (reply, answer) = oneshot::channel();
        vm::submit(Job::Call {
            load_id: self.load_id,
            handler: self.name.clone(),
            step: Box::new(StepInput {
                task_context: step.task_context.clone(),
                dependency_results: step.dependency_results.clone(),
                step_name: step.step_name.clone(),
                attempt: step.attempt,
                step_config: step.step_config.clone(),
            }),
            reply,
        })
        .map_err(|e| StepError::retryable(e.to_string()))?;
        answer.await.unwrap_or_else(|_| {
            Err(StepError::retryable(format!(
                "the Ruby VM stopped before handler `{}` returned",
                self.name
            )))
        })
    }
}
