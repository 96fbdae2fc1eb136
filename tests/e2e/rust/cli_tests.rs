//! The `tasker` binary as a person uses it: `tasker server` and `tasker worker` as processes,
//! `tasker task ...` against them, and the errors it reports.

use std::process::{Output, Stdio};

use serde_json::Value;
use tasker_shared::test_support::TestDatabase;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::e2e::harness::{fixtures_dir, terminate, WORKFLOW_TIMEOUT};

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

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn test_server_worker_and_task_commands_run_workflows() {
    let db = TestDatabase::new().await;
    let fixtures = fixtures_dir();
    let mut server = Command::new(TASKER)
        .args([
            "server",
            "--bind",
            "127.0.0.1:0",
            "--fallback-poll",
            "250ms",
            "--templates",
        ])
        .arg(&fixtures)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning `tasker server`");
    // the server prints its address once it listens (the port is the OS's choice)
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
        .to_string();

    let worker = Command::new(TASKER)
        .args([
            "worker",
            "--namespaces",
            "linear_workflow,failure_workflow",
            "--fallback-poll",
            "250ms",
        ])
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning `tasker worker`");

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
