//! The one thread that owns the embedded Ruby VM, and the queue of jobs it serves.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Mutex, OnceLock};

use magnus::{prelude::*, RArray, RModule, Ruby, Value};
use tasker_worker::StepError;
use tokio::sync::oneshot;

use crate::error::RubyError;

/// The Ruby side of the contract (`Tasker::StepHandler`, `Tasker.register_handler`, …).
const PRELUDE: &str = include_str!("../ruby/tasker.rb");

/// A file's registered handler names, or the line and message of why it did not load.
pub(crate) type Loaded = Result<Vec<String>, (Option<u32>, String)>;

/// The inputs of one step, as plain data: Ruby values never leave the VM's thread.
pub(crate) struct StepInput {
    pub task_context: serde_json::Value,
    pub dependency_results: HashMap<String, serde_json::Value>,
    pub step_name: String,
    pub attempt: i32,
    pub step_config: serde_json::Value,
}

pub(crate) enum Job {
    Load {
        load_id: u64,
        file: PathBuf,
        reply: oneshot::Sender<Loaded>,
    },
    Call {
        load_id: u64,
        handler: String,
        step: Box<StepInput>,
        reply: oneshot::Sender<Result<serde_json::Value, StepError>>,
    },
}

static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
/// Handed from `start` to the VM thread's entry point, which `Ruby::init` takes as a plain
/// function pointer.
static INBOX: Mutex<Option<mpsc::Receiver<Job>>> = Mutex::new(None);
/// Why the VM thread ended, for the callers that find the queue closed.
static FAILURE: OnceLock<String> = OnceLock::new();
/// The terminating signals at their default before Ruby started (see `signals`).
static DEFAULT_SIGNALS: OnceLock<Vec<&'static str>> = OnceLock::new();

/// Queues a job for the VM, starting the VM on first use.
pub(crate) fn submit(job: Job) -> Result<(), RubyError> {
    QUEUE.get_or_init(start).send(job).map_err(|_| {
        RubyError::Vm(
            FAILURE
                .get()
                .cloned()
                .unwrap_or_else(|| "its thread ended".to_owned()),
        )
    })
}

fn start() -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel();
    *INBOX.lock().unwrap_or_else(|p| p.into_inner()) = Some(receiver);
    let spawned = std::thread::Builder::new()
        .name("tasker-ruby".to_owned())
        // Ruby code recurses on the machine stack; give it what a Ruby main thread has.
        .stack_size(16 << 20)
        .spawn(|| {
            let _ = DEFAULT_SIGNALS.set(crate::signals::at_default());
            let ended = std::panic::catch_unwind(|| Ruby::init(serve))
                .unwrap_or_else(|panic| Err(panic_text(&panic)));
            let reason = match ended {
                Ok(()) => "its thread ended".to_owned(),
                Err(e) => format!("starting Ruby failed: {e}"),
            };
            tracing::error!("the embedded Ruby VM stopped: {reason}");
            let _ = FAILURE.set(reason);
        });
    if let Err(e) = spawned {
        let _ = FAILURE.set(format!("cannot start its thread: {e}"));
    }
    sender
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// The VM thread: define the contract, then serve jobs until every sender is gone.
fn serve(ruby: &Ruby) -> Result<(), magnus::Error> {
    let Some(inbox) = INBOX.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return Ok(());
    };
    ruby.eval::<Value>(PRELUDE)?;
    let restore = crate::signals::restore_script(DEFAULT_SIGNALS.get().map_or(&[], Vec::as_slice));
    ruby.eval::<Value>(&restore)?;
    let tasker: RModule = ruby.eval("Tasker")?;
    while let Some(job) = next_job(&inbox) {
        match job {
            Job::Load {
                load_id,
                file,
                reply,
            } => {
                let _ = reply.send(load_file(tasker, load_id, &file));
            }
            Job::Call {
                load_id,
                handler,
                step,
                reply,
            } => {
                let _ = reply.send(call(ruby, tasker, load_id, &handler, &step));
            }
        }
    }
    Ok(())
}

/// `Tasker.load_file`'s answer: the names registered, or the line and message of the failure.
type LoadReply = (Option<Vec<String>>, Option<u32>, Option<String>);

/// How long the VM thread keeps looking for the next job before it sleeps: waking a sleeping
/// thread costs tens of microseconds on a virtual machine, more than a Ruby call itself, and
/// a worker's calls come in bursts (the steps of a task, a batch of claims).
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// The next job, or `None` once every sender is gone.
fn next_job(inbox: &mpsc::Receiver<Job>) -> Option<Job> {
    let started = std::time::Instant::now();
    while started.elapsed() < SPIN {
        match inbox.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
    inbox.recv().ok()
}

fn load_file(tasker: RModule, load_id: u64, file: &std::path::Path) -> Loaded {
    let path = file.to_string_lossy().into_owned();
    let reply: Result<LoadReply, magnus::Error> = tasker.funcall("load_file", (load_id, path));
    match reply {
        Ok((Some(names), _, _)) => Ok(names),
        Ok((None, line, message)) => Err((line, message.unwrap_or_default())),
        Err(e) => Err((None, e.to_string())),
    }
}

fn call(
    ruby: &Ruby,
    tasker: RModule,
    load_id: u64,
    handler: &str,
    step: &StepInput,
) -> Result<serde_json::Value, StepError> {
    let reply = run_step(ruby, tasker, load_id, handler, step).map_err(|e| {
        StepError::retryable(format!("calling Ruby handler `{handler}` failed: {e}"))
    })?;
    let kind: String = entry(reply, 0)?;
    match kind.as_str() {
        "ok" => {
            let value: Value = entry(reply, 1)?;
            serde_magnus::deserialize(ruby, value).map_err(|e| {
                StepError::permanent(format!(
                    "Ruby handler `{handler}` returned a value JSON cannot hold: {e}"
                ))
            })
        }
        _ => {
            let message: String = entry(reply, 1)?;
            let backtrace: Option<Vec<String>> = entry(reply, 2)?;
            let error = if kind == "permanent" {
                StepError::permanent(message)
            } else {
                StepError::retryable(message)
            };
            let backtrace = backtrace.unwrap_or_default();
            Err(error.with_details(serde_json::json!({ "backtrace": backtrace })))
        }
    }
}

fn run_step(
    ruby: &Ruby,
    tasker: RModule,
    load_id: u64,
    handler: &str,
    step: &StepInput,
) -> Result<RArray, magnus::Error> {
    let task_context: Value = serde_magnus::serialize(ruby, &step.task_context)?;
    let dependency_results: Value = serde_magnus::serialize(ruby, &step.dependency_results)?;
    let step_config: Value = serde_magnus::serialize(ruby, &step.step_config)?;
    tasker.funcall(
        "run_step",
        (
            load_id,
            handler,
            task_context,
            dependency_results,
            step.step_name.as_str(),
            step.attempt,
            step_config,
        ),
    )
}

fn entry<T: magnus::TryConvert>(reply: RArray, index: isize) -> Result<T, StepError> {
    reply
        .entry(index)
        .map_err(|e| StepError::retryable(format!("reading a Ruby handler's answer: {e}")))
}
