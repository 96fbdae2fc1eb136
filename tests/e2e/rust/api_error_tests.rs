//! Bad input to the REST API: each case answers with the right status and a JSON error body
//! that says what was wrong, and writes nothing.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tasker_client::error_codes;
use uuid::Uuid;

use crate::e2e::harness::Harness;

/// Rows in every table a task creation writes to.
async fn written_rows(harness: &Harness) -> Value {
    sqlx::query_scalar(
        "SELECT jsonb_build_object(
                  'tasks', (SELECT count(*) FROM tasker.tasks),
                  'steps', (SELECT count(*) FROM tasker.workflow_steps),
                  'edges', (SELECT count(*) FROM tasker.workflow_step_edges),
                  'task_transitions', (SELECT count(*) FROM tasker.task_transitions),
                  'step_transitions', (SELECT count(*) FROM tasker.workflow_step_transitions),
                  'queue_messages', (SELECT count(*) FROM tasker.queue_messages))",
    )
    .fetch_one(&harness.db.pool)
    .await
    .unwrap()
}

fn nothing_written() -> Value {
    json!({"tasks": 0, "steps": 0, "edges": 0, "task_transitions": 0, "step_transitions": 0,
           "queue_messages": 0})
}

/// Checks the status, the JSON content type, the error code, and that the message contains
/// `needle`.
async fn assert_error(
    response: reqwest::Response,
    status: StatusCode,
    code: &str,
    needle: &str,
    case: &str,
) {
    assert_eq!(response.status(), status, "{case}");
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{case}: content type {content_type:?}"
    );
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], code, "{case}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "{case}: message {message:?} does not mention {needle:?}"
    );
}

#[tokio::test]
async fn test_bad_task_creations_are_rejected_with_json_errors_and_write_nothing() {
    let harness = Harness::start().await;
    let url = format!("{}/v1/tasks", harness.api.base_url);
    let http = reqwest::Client::new();
    let valid = json!({"namespace": "linear_workflow", "name": "mathematical_sequence",
                       "version": "1.0.0", "context": {"even_number": 6}});
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };

    let json_cases = [
        (
            "unknown template version",
            with("version", json!("9.9.9")),
            StatusCode::NOT_FOUND,
            error_codes::TEMPLATE_NOT_FOUND,
            "linear_workflow/mathematical_sequence version 9.9.9",
        ),
        (
            "unknown namespace",
            with("namespace", json!("nowhere")),
            StatusCode::NOT_FOUND,
            error_codes::TEMPLATE_NOT_FOUND,
            "nowhere/mathematical_sequence",
        ),
        (
            "context is an array",
            with("context", json!([6])),
            StatusCode::UNPROCESSABLE_ENTITY,
            error_codes::INVALID_REQUEST,
            "context must be a JSON object",
        ),
        (
            "context is a string",
            with("context", json!("even_number=6")),
            StatusCode::UNPROCESSABLE_ENTITY,
            error_codes::INVALID_REQUEST,
            "context must be a JSON object",
        ),
        (
            "missing version",
            without("version"),
            StatusCode::UNPROCESSABLE_ENTITY,
            error_codes::INVALID_BODY,
            "missing field `version`",
        ),
        (
            "priority of the wrong type",
            with("priority", json!("high")),
            StatusCode::UNPROCESSABLE_ENTITY,
            error_codes::INVALID_BODY,
            "priority",
        ),
        (
            "misspelt field",
            with("contxt", json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
            error_codes::INVALID_BODY,
            "unknown field `contxt`",
        ),
    ];
    for (case, body, status, code, needle) in json_cases {
        let response = http.post(&url).json(&body).send().await.unwrap();
        assert_error(response, status, code, needle, case).await;
    }

    let raw_cases = [
        (
            "truncated JSON",
            "{\"namespace\": \"linear_workflow\", ",
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            error_codes::MALFORMED_JSON,
            "EOF",
        ),
        (
            "not JSON at all",
            "namespace=linear_workflow",
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            error_codes::MALFORMED_JSON,
            "Failed to parse the request body as JSON",
        ),
        (
            "no JSON content type",
            "{}",
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error_codes::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
    ];
    for (case, body, content_type, status, code, needle) in raw_cases {
        let mut request = http.post(&url).body(body);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        assert_error(request.send().await.unwrap(), status, code, needle, case).await;
    }

    assert_eq!(written_rows(&harness).await, nothing_written());
    // and the endpoint still works: the rejections were about the input, not the server
    let created = http.post(&url).json(&valid).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    harness.shutdown().await;
}

#[tokio::test]
async fn test_unknown_and_malformed_task_ids_are_rejected() {
    let harness = Harness::api_only().await;
    let unknown = Uuid::now_v7();
    for path in [
        format!("v1/tasks/{unknown}"),
        format!("v1/tasks/{unknown}/wait?timeout_ms=0"),
    ] {
        let response = reqwest::get(format!("{}/{path}", harness.api.base_url))
            .await
            .unwrap();
        assert_error(
            response,
            StatusCode::NOT_FOUND,
            error_codes::TASK_NOT_FOUND,
            &unknown.to_string(),
            &path,
        )
        .await;
    }
    for path in ["v1/tasks/42", "v1/tasks/not-a-uuid/wait"] {
        let response = reqwest::get(format!("{}/{path}", harness.api.base_url))
            .await
            .unwrap();
        assert_error(
            response,
            StatusCode::BAD_REQUEST,
            error_codes::INVALID_TASK_ID,
            "is not a UUID",
            path,
        )
        .await;
    }
    let response = reqwest::get(format!(
        "{}/v1/tasks/{unknown}/wait?timeout_ms=soon",
        harness.api.base_url
    ))
    .await
    .unwrap();
    assert_error(
        response,
        StatusCode::BAD_REQUEST,
        error_codes::INVALID_QUERY,
        "timeout_ms",
        "non-numeric timeout",
    )
    .await;
    assert_eq!(written_rows(&harness).await, nothing_written());

    // the typed client reports the same errors with their codes
    let err = harness.api.client.get_task(unknown).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.code(), Some(error_codes::TASK_NOT_FOUND));
    harness.shutdown().await;
}
