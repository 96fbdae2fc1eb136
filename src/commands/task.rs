//! `tasker task create | get | list | wait | templates | cancel | resolve | retry`: talk to a
//! running server through the REST API (tasker-client). Output is JSON on stdout, for people
//! and scripts alike.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use tasker_client::{
    error_codes, ApiToken, ClientError, CreateTaskRequest, ResolveStepRequest, TaskActionRequest,
    TaskDetails, TaskListQuery, TaskerClient,
};
use uuid::Uuid;

#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    action: TaskAction,
    /// Base URL of the Tasker API (`tasker server`).
    #[arg(
        long,
        global = true,
        env = "TASKER_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    api_url: String,
    /// Send the bearer token on the first line of FILE (the server's --auth-token-file).
    #[arg(
        long,
        global = true,
        env = "TASKER_API_TOKEN_FILE",
        value_name = "FILE"
    )]
    auth_token_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TaskAction {
    /// Create a task from a registered template and print its id.
    Create {
        /// Template namespace, e.g. linear_workflow.
        #[arg(long)]
        namespace: String,
        /// Template name, e.g. mathematical_sequence.
        #[arg(long)]
        name: String,
        /// Template version, e.g. 1.0.0.
        #[arg(long)]
        version: String,
        /// Task context: a JSON object handed to every step, e.g. '{"even_number": 6}'.
        #[arg(long, default_value = "{}")]
        context: String,
        /// Higher runs first.
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Who asked (part of the de-duplication identity).
        #[arg(long)]
        initiator: Option<String>,
        /// Wait for the task to finish and print it (as `tasker task wait` does).
        #[arg(long)]
        wait: bool,
        /// With --wait: how long to wait, e.g. `60s`, `5m`.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Print a task with its steps, their states and results.
    Get {
        /// The task id (a UUID).
        task_uuid: String,
    },
    /// List tasks, newest first.
    List {
        /// Only tasks in this state (e.g. complete, blocked_by_failures).
        #[arg(long)]
        state: Option<String>,
        /// Only tasks of templates in this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only tasks of templates with this name.
        #[arg(long)]
        name: Option<String>,
        /// At most this many tasks (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Skip this many tasks.
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Wait until a task is finished and print it. Exits non-zero unless it completed.
    Wait {
        /// The task id (a UUID).
        task_uuid: String,
        /// How long to wait, e.g. `60s`, `5m`.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// List the registered task templates.
    Templates,
    /// Cancel a task: steps not yet started never start; running steps finish and their
    /// results are recorded but move nothing. Prints the task.
    Cancel {
        /// The task id (a UUID).
        task_uuid: String,
        #[command(flatten)]
        who: Who,
    },
    /// Resolve a step by hand with the given result; its dependents go on with it. Prints
    /// the task.
    Resolve {
        /// The task id (a UUID).
        task_uuid: String,
        /// The step's name in the template.
        step: String,
        /// The step's result: JSON, e.g. '{"value": 36}'.
        #[arg(long)]
        results: String,
        #[command(flatten)]
        who: Who,
    },
    /// Run a step that failed for good again, with a fresh attempt budget; a task blocked by
    /// failures resumes. Prints the task.
    Retry {
        /// The task id (a UUID).
        task_uuid: String,
        /// The step's name in the template.
        step: String,
        #[command(flatten)]
        who: Who,
    },
}

/// Who asks for an action and why, recorded in the task's and steps' history.
#[derive(Debug, Args)]
struct Who {
    /// Who asks (default: $USER).
    #[arg(long, env = "USER")]
    initiator: Option<String>,
    /// Why.
    #[arg(long)]
    reason: Option<String>,
}

impl Who {
    fn request(self) -> TaskActionRequest {
        TaskActionRequest {
            initiator: self.initiator,
            reason: self.reason,
        }
    }
}

pub async fn run(args: TaskArgs) -> anyhow::Result<()> {
    let mut client = TaskerClient::new(&args.api_url)
        .with_context(|| format!("using the API URL {:?}", args.api_url))?;
    if let Some(file) = &args.auth_token_file {
        client = client.with_token(ApiToken::from_file(file)?);
    }
    let api = Api { url: &args.api_url };
    match args.action {
        TaskAction::Create {
            namespace,
            name,
            version,
            context,
            priority,
            initiator,
            wait,
            timeout,
        } => {
            let context: serde_json::Value = serde_json::from_str(&context)
                .with_context(|| format!("--context is not valid JSON: {context}"))?;
            if !context.is_object() {
                anyhow::bail!("--context must be a JSON object, like '{{\"even_number\": 6}}'");
            }
            let mut request = CreateTaskRequest::new(namespace, name, version, context);
            request.priority = priority;
            request.initiator = initiator;
            let created = api.call(client.create_task(&request)).await?;
            if wait {
                eprintln!("created task {}; waiting", created.task_uuid);
                let task = api
                    .call(client.wait_for_task(created.task_uuid, timeout))
                    .await?;
                print_json(&task)?;
                ensure_complete(&task)
            } else {
                print_json(&created)
            }
        }
        TaskAction::Get { task_uuid } => {
            let task = api.call(client.get_task(parse_id(&task_uuid)?)).await?;
            print_json(&task)
        }
        TaskAction::List {
            state,
            namespace,
            name,
            limit,
            offset,
        } => {
            let query = TaskListQuery {
                state,
                namespace,
                name,
                limit: Some(limit),
                offset: Some(offset),
            };
            print_json(&api.call(client.list_tasks(&query)).await?)
        }
        TaskAction::Wait { task_uuid, timeout } => {
            let task = api
                .call(client.wait_for_task(parse_id(&task_uuid)?, timeout))
                .await?;
            print_json(&task)?;
            ensure_complete(&task)
        }
        TaskAction::Templates => print_json(&api.call(client.templates()).await?),
        TaskAction::Cancel { task_uuid, who } => {
            let id = parse_id(&task_uuid)?;
            print_json(&api.call(client.cancel_task(id, &who.request())).await?)
        }
        TaskAction::Resolve {
            task_uuid,
            step,
            results,
            who,
        } => {
            let id = parse_id(&task_uuid)?;
            let results = serde_json::from_str(&results)
                .with_context(|| format!("--results is not valid JSON: {results}"))?;
            let who = who.request();
            let request = ResolveStepRequest {
                results,
                initiator: who.initiator,
                reason: who.reason,
            };
            print_json(&api.call(client.resolve_step(id, &step, &request)).await?)
        }
        TaskAction::Retry {
            task_uuid,
            step,
            who,
        } => {
            let id = parse_id(&task_uuid)?;
            print_json(
                &api.call(client.retry_step(id, &step, &who.request()))
                    .await?,
            )
        }
    }
}

/// Attaches a hint to client errors that a person can act on.
struct Api<'a> {
    url: &'a str,
}

impl Api<'_> {
    async fn call<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> anyhow::Result<T> {
        request.await.map_err(|error| match &error {
            ClientError::Unreachable { source, .. } => {
                let root = root_cause(source);
                anyhow::anyhow!(
                    "cannot reach the Tasker API at {} ({root}); is the server running? start it \
                     with `tasker server --database-url ...`, or point --api-url / TASKER_API_URL \
                     at a running one",
                    self.url
                )
            }
            ClientError::Api { code, .. } if code == error_codes::TEMPLATE_NOT_FOUND => {
                anyhow::anyhow!("{error}; `tasker task templates` lists the registered templates")
            }
            _ => anyhow::Error::new(error),
        })
    }
}

/// The innermost cause's text ("Connection refused (os error 111)").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn parse_id(text: &str) -> anyhow::Result<Uuid> {
    text.parse()
        .with_context(|| format!("{text:?} is not a task id (a UUID)"))
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("formatting the response")?;
    println!("{text}");
    Ok(())
}

/// A finished task that did not complete is a failure of the command, naming the failed steps.
fn ensure_complete(task: &TaskDetails) -> anyhow::Result<()> {
    if task.is_complete() {
        return Ok(());
    }
    let failed: Vec<String> = task
        .steps
        .iter()
        .filter(|s| s.state == "error")
        .map(
            |s| match s.last_error.as_ref().and_then(|e| e.get("message")) {
                Some(message) => format!("{} ({})", s.name, message.as_str().unwrap_or_default()),
                None => s.name.clone(),
            },
        )
        .collect();
    if failed.is_empty() {
        anyhow::bail!("task {} finished as {}", task.task_uuid, task.state)
    }
    anyhow::bail!(
        "task {} finished as {}; failed steps: {}",
        task.task_uuid,
        task.state,
        failed.join(", ")
    )
}
