//! The `tasker` binary as a person uses it: `tasker server` and `tasker worker` as processes,
//! `tasker task ...` against them, and the errors it reports.

use std::process::{Output, Stdio};

use serde_json::Value;
use tasker_test_support::{fixtures_dir, TestDatabase};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::e2e::harness::{terminate, WORKFLOW_TIMEOUT};

const TASKER: &str = env!("CARGO_BIN_EXE_tasker");

/// Runs `tasker ARGS` to completion against the API at `api_url`.
async fn tasker(api_url: &str, args: &[&str]) -> Output {
    Command::new(TASKER)
        .args(args)
        .env("TASKER_API_URL", api_url)
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("running tasker")
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

async fn scrape(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
    response.text().await.unwrap()
}

/// Scrapes `url` until `ready` holds for its text (or the workflow timeout passes).
async fn scrape_until(url: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WORKFLOW_TIMEOUT;
    loop {
        let text = scrape(url).await;
        if ready(&text) || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The value of the sample `name{...}` whose labels include every one of `labels`, from
/// Prometheus' text format.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the Prometheus text format");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `tasker server --templates <fixtures> ARGS` on `db`, once it listens, with the URL it
/// printed (the port is the OS's choice; an unspecified address is reached on loopback).
async fn start_server(db: &TestDatabase, args: &[&str]) -> (tokio::process::Child, String) {
    let mut server = Command::new(TASKER)
        .args(["server", "--fallback-poll", "250ms", "--templates"])
        .arg(fixtures_dir())
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning `tasker server`");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WORKFLOW_TIMEOUT, lines.next_line())
        .await
        .expect("the server started in time")
        .unwrap()
        .expect("the server printed its address");
    let api_url = line
        .strip_prefix("tasker server listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .replace("0.0.0.0", "127.0.0.1");
    (server, api_url)
}

#[tokio::test]
async fn test_server_worker_and_task_commands_run_workflows() {
    let db = TestDatabase::new().await;
    let (server, api_url) = start_server(&db, &["--bind", "127.0.0.1:0"]).await;

    let mut worker = Command::new(TASKER)
        .args([
            "worker",
            "--namespaces",
            "linear_workflow,failure_workflow",
            "--fallback-poll",
            "250ms",
            "--metrics-bind",
            "127.0.0.1:0",
        ])
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning `tasker worker`");
    // the worker names its metrics address once it runs
    let mut lines = BufReader::new(worker.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WORKFLOW_TIMEOUT, lines.next_line())
        .await
        .expect("the worker started in time")
        .unwrap()
        .expect("the worker printed its start line");
    let worker_url = line
        .split("metrics on ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address in: {line}"))
        .to_string();

    let templates = tasker(&api_url, &["task", "templates"]).await;
    assert!(templates.status.success(), "{}", stderr(&templates));
    let names: Vec<String> = stdout_json(&templates)
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&"mathematical_sequence".to_string()),
        "{names:?}"
    );

    let created = tasker(
        &api_url,
        &[
            "task",
            "create",
            "--namespace",
            "linear_workflow",
            "--name",
            "mathematical_sequence",
            "--version",
            "1.0.0",
            "--context",
            r#"{"even_number": 6}"#,
            "--wait",
            "--timeout",
            "30s",
        ],
    )
    .await;
    assert!(created.status.success(), "{}", stderr(&created));
    let task = stdout_json(&created);
    assert_eq!(task["state"], "complete");
    assert_eq!(task["steps"][3]["results"]["value"], 2_821_109_907_456i64);

    let task_uuid = task["task_uuid"].as_str().unwrap();

    // the server counted the task, the worker its four steps; the worker is ready
    // the orchestrator counts a finished task just after the commit that announced it
    let complete = [("namespace", "linear_workflow"), ("state", "complete")];
    let server_metrics = scrape_until(&format!("{api_url}/metrics"), |text| {
        metric(text, "tasker_tasks_finished_total", &complete) == Some(1.0)
    })
    .await;
    let linear = [("namespace", "linear_workflow")];
    assert_eq!(
        metric(&server_metrics, "tasker_tasks_created_total", &linear),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &server_metrics,
            "tasker_task_duration_seconds_count",
            &complete
        ),
        Some(1.0)
    );
    let worker_metrics = scrape(&format!("{worker_url}/metrics")).await;
    assert_eq!(
        metric(&worker_metrics, "tasker_steps_claimed_total", &linear),
        Some(4.0)
    );
    let first_step = [("handler", "linear_step_1"), ("outcome", "success")];
    assert_eq!(
        metric(
            &worker_metrics,
            "tasker_step_duration_seconds_count",
            &first_step
        ),
        Some(1.0)
    );
    for probe in ["health/live", "health/ready"] {
        let response = reqwest::get(format!("{worker_url}/{probe}")).await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK, "{probe}");
    }

    let fetched = tasker(&api_url, &["task", "get", task_uuid]).await;
    assert!(fetched.status.success(), "{}", stderr(&fetched));
    assert_eq!(stdout_json(&fetched)["task_uuid"], task_uuid);

    let listed = tasker(&api_url, &["task", "list", "--state", "complete"]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert_eq!(stdout_json(&listed)["tasks"][0]["task_uuid"], task_uuid);

    // a task that cannot succeed: `task wait` prints it and exits non-zero, naming the step
    let created = tasker(
        &api_url,
        &[
            "task",
            "create",
            "--namespace",
            "failure_workflow",
            "--name",
            "permanent_failure",
            "--version",
            "1.0.0",
            "--context",
            r#"{"even_number": 2}"#,
        ],
    )
    .await;
    assert!(created.status.success(), "{}", stderr(&created));
    let failing = stdout_json(&created)["task_uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let waited = tasker(&api_url, &["task", "wait", &failing, "--timeout", "30s"]).await;
    assert!(!waited.status.success());
    assert_eq!(stdout_json(&waited)["state"], "blocked_by_failures");
    let message = stderr(&waited);
    assert!(
        message.contains("blocked_by_failures") && message.contains("doomed_step"),
        "{message}"
    );

    terminate(worker, "tasker worker").await;
    terminate(server, "tasker server").await;
}

#[tokio::test]
async fn test_a_public_address_needs_a_token_and_the_cli_sends_it() {
    let db = TestDatabase::new().await;
    let dir = tempfile::tempdir().unwrap();
    let run_server = |args: &[&str]| {
        let mut command = Command::new(TASKER);
        command
            .arg("server")
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "error")
            .kill_on_drop(true);
        command
    };

    // without a token, a non-loopback address is refused with the way out named
    let refused = tokio::time::timeout(
        WORKFLOW_TIMEOUT,
        run_server(&["--bind", "0.0.0.0:0"]).output(),
    )
    .await
    .expect("the refusal came at once")
    .unwrap();
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains("refusing to serve the API on 0.0.0.0")
            && message.contains("--auth-token-file")
            && message.contains("--insecure-public"),
        "{message}"
    );

    // a token file that holds no token names the file
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let refused = run_server(&["--bind", "0.0.0.0:0", "--auth-token-file"])
        .arg(&empty)
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(&format!("{} is empty", empty.display())),
        "{}",
        stderr(&refused)
    );

    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "cli-test-token-9d1c\n").unwrap();
    let token_path = token_file.to_str().unwrap();
    let (server, api_url) = start_server(
        &db,
        &["--bind", "0.0.0.0:0", "--auth-token-file", token_path],
    )
    .await;

    let anonymous = tasker(&api_url, &["task", "templates"]).await;
    assert!(!anonymous.status.success());
    assert!(
        stderr(&anonymous).contains("unauthorized"),
        "{}",
        stderr(&anonymous)
    );
    let with_flag = tasker(
        &api_url,
        &["task", "templates", "--auth-token-file", token_path],
    )
    .await;
    assert!(with_flag.status.success(), "{}", stderr(&with_flag));
    let with_env = Command::new(TASKER)
        .args(["task", "templates"])
        .env("TASKER_API_URL", &api_url)
        .env("TASKER_API_TOKEN_FILE", &token_file)
        .output()
        .await
        .unwrap();
    assert!(with_env.status.success(), "{}", stderr(&with_env));
    assert!(stdout_json(&with_env)
        .as_array()
        .is_some_and(|t| !t.is_empty()));

    terminate(server, "tasker server").await;
}

#[tokio::test]
async fn test_task_commands_report_bad_input_and_an_unreachable_api_clearly() {
    // nothing listens here: bind, note the port, release it
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api_url = format!("http://127.0.0.1:{port}");

    let unreachable = tasker(&api_url, &["task", "list"]).await;
    assert!(!unreachable.status.success());
    let message = stderr(&unreachable);
    assert!(
        message.contains(&format!("cannot reach the Tasker API at {api_url}"))
            && message.contains("tasker server"),
        "{message}"
    );

    let bad_id = tasker(&api_url, &["task", "get", "not-a-uuid"]).await;
    assert!(!bad_id.status.success());
    assert!(
        stderr(&bad_id).contains("\"not-a-uuid\" is not a task id"),
        "{}",
        stderr(&bad_id)
    );

    let bad_context = tasker(
        &api_url,
        &[
            "task",
            "create",
            "--namespace",
            "n",
            "--name",
            "t",
            "--version",
            "1",
            "--context",
            "[6]",
        ],
    )
    .await;
    assert!(!bad_context.status.success());
    assert!(
        stderr(&bad_context).contains("--context must be a JSON object"),
        "{}",
        stderr(&bad_context)
    );

    let help = Command::new(TASKER)
        .args(["worker", "--help"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--namespaces",
        "--concurrency",
        "--visibility-timeout",
        "TASKER_NAMESPACES",
    ] {
        assert!(
            text.contains(flag),
            "`tasker worker --help` lacks {flag}: {text}"
        );
    }
}
