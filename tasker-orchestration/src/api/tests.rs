//! The API over real HTTP on an ephemeral loopback port, against a real PostgreSQL database,
//! driven by the typed client (and raw requests where the client cannot misbehave).
//! No orchestrator runs here: tasks stay pending unless a test moves them, which is how the
//! long poll is exercised independently of the orchestration loop.

use std::time::Duration;

use serde_json::{json, Value};
use tasker_client::{
    error_codes, ApiToken, ClientError, ClientResult, CreateTaskRequest, ErrorBody, TaskDetails,
    TaskListQuery, TaskerClient,
};
use tasker_shared::messaging::TASK_FINISHED_CHANNEL;
use tasker_shared::metrics::Exporter;
use tasker_shared::state::{transition_task, TaskState};
use tasker_shared::templates::{load_dir, parse_template, register_template};
use tasker_test_support::{fixtures_dir, LoopbackApi, TestDatabase};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{serve, ApiConfig, ApiState, TaskWaiters};
use crate::orchestration::lifecycle::task_initializer::TaskInitializer;

struct TestApi {
    db: TestDatabase,
    state: ApiState,
    /// The loopback server's client, or one that sends a token.
    client: TaskerClient,
    loopback: LoopbackApi,
}

impl TestApi {
    async fn start(dedup_window: Duration) -> Self {
        Self::start_with_linger(dedup_window, super::DEFAULT_LISTEN_LINGER).await
    }

    /// As [`Self::start`], with the task-finished LISTEN dropped `linger` after the last wait.
    async fn start_with_linger(dedup_window: Duration, linger: Duration) -> Self {
        Self::start_with(dedup_window, test_config(linger)).await
    }

    /// As [`Self::start`], requiring `token` on every endpoint but `/health`; the typed client
    /// sends it.
    async fn start_with_token(token: ApiToken) -> Self {
        let config = ApiConfig {
            auth_token: Some(token.clone()),
            ..test_config(super::DEFAULT_LISTEN_LINGER)
        };
        let mut api = Self::start_with(Duration::ZERO, config).await;
        api.client = api.client.with_token(token);
        api
    }

    /// As [`Self::start`], serving `/metrics`.
    async fn start_with_metrics() -> Self {
        let config = ApiConfig {
            metrics: Some(Exporter::install().unwrap()),
            ..test_config(super::DEFAULT_LISTEN_LINGER)
        };
        Self::start_with(Duration::ZERO, config).await
    }

    async fn start_with(dedup_window: Duration, config: ApiConfig) -> Self {
        let db = TestDatabase::new().await;
        for (_, template) in load_dir(&fixtures_dir()).unwrap() {
            register_template(&db.pool, &template).await.unwrap();
        }
        let state = ApiState::with_config(
            db.pool.clone(),
            TaskInitializer::new(db.pool.clone(), dedup_window),
            config,
        );
        let serving = state.clone();
        let loopback = LoopbackApi::start(|listener, shutdown| serve(listener, serving, shutdown))
            .await
            .unwrap();
        Self {
            db,
            state,
            client: loopback.client.clone(),
            loopback,
        }
    }

    async fn create_linear(&self, even_number: i64) -> Uuid {
        self.client
            .create_task(&linear(even_number))
            .await
            .unwrap()
            .task_uuid
    }

    /// Moves a pending task to `error` and announces it the way the finalizer does: the
    /// notification in the transaction that changes the state.
    async fn finish_with_error(&self, task_uuid: Uuid) {
        let mut tx = self.db.pool.begin().await.unwrap();
        assert!(transition_task(
            &mut *tx,
            task_uuid,
            TaskState::Pending,
            TaskState::Error,
            "api-test",
            None
        )
        .await
        .unwrap());
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(TASK_FINISHED_CHANNEL)
            .bind(task_uuid.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// Waits until a long poll has registered its interest and LISTEN is in effect (polling
    /// the registry, not sleeping a fixed time) and returns the registry. From then on only a
    /// notification (or the listener's reconnection, timeout or shutdown) ends the poll.
    async fn registered_waiters(&self) -> TaskWaiters {
        let waiters = self.state.waiters().await.unwrap().clone();
        tokio::time::timeout(Duration::from_secs(30), async {
            while waiters.watched_tasks() == 0 || !waiters.is_listening() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the long poll registered");
        waiters
    }

    /// Starts a long poll of up to a minute on the task, in the background.
    fn long_poll(&self, task_uuid: Uuid) -> JoinHandle<ClientResult<TaskDetails>> {
        let client = self.client.clone();
        tokio::spawn(async move {
            client
                .wait_for_task(task_uuid, Duration::from_secs(60))
                .await
        })
    }

    /// Backends of this database whose last statement was `statement` (the listener's
    /// connection runs nothing but its LISTEN and UNLISTEN).
    async fn backends_last_running(&self, statement: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND query = $1",
        )
        .bind(statement)
        .fetch_one(&self.db.pool)
        .await
        .unwrap()
    }

    async fn task_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM tasker.tasks")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

/// The task a background long poll returned; fails unless `what` ended it within 30 s.
async fn polled_task(waiting: JoinHandle<ClientResult<TaskDetails>>, what: &str) -> TaskDetails {
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end the long poll"))
        .unwrap()
        .unwrap()
}

/// The API's tunables for tests: no periodic re-reads, so a long poll here ends only through a
/// notification, the listener's reconnection, its timeout or shutdown, which is what the
/// tests check.
fn test_config(linger: Duration) -> ApiConfig {
    ApiConfig {
        wait_recheck: Duration::from_secs(3600),
        wait_listen_linger: linger,
        ..ApiConfig::default()
    }
}

fn linear(even_number: i64) -> CreateTaskRequest {
    CreateTaskRequest::new(
        "linear_workflow",
        "mathematical_sequence",
        "1.0.0",
        json!({ "even_number": even_number }),
    )
}

async fn raw_json(response: reqwest::Response) -> (reqwest::StatusCode, Value) {
    let status = response.status();
    let body = response.json::<Value>().await.expect("a JSON body");
    (status, body)
}

#[tokio::test]
async fn a_created_task_reads_back_with_its_steps_and_template() {
    let api = TestApi::start(Duration::ZERO).await;
    let mut request = linear(6);
    request.priority = 7;
    request.initiator = Some("api-tests".into());
    request.tags = Some(json!(["a", "b"]));
    let response = reqwest::Client::new()
        .post(format!("{}/v1/tasks", api.loopback.base_url))
        .json(&request)
        .send()
        .await
        .unwrap();
    let (status, body) = raw_json(response).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    assert_eq!(body["step_count"], 4);
    assert_eq!(body["deduplicated"], false);
    let task_uuid: Uuid = body["task_uuid"].as_str().unwrap().parse().unwrap();

    let task = api.client.get_task(task_uuid).await.unwrap();
    assert_eq!(
        (
            task.namespace.as_str(),
            task.name.as_str(),
            task.version.as_str()
        ),
        ("linear_workflow", "mathematical_sequence", "1.0.0")
    );
    assert_eq!(task.state, "pending");
    assert_eq!(task.context, json!({"even_number": 6}));
    assert_eq!(task.priority, 7);
    assert_eq!(task.initiator.as_deref(), Some("api-tests"));
    assert_eq!(task.tags, Some(json!(["a", "b"])));
    assert_eq!(task.completion_percentage, 0.0);
    assert_eq!(task.completed_at, None);
    assert_eq!(task.step_counts.total, 4);
    assert_eq!(task.step_counts.ready, 1, "only the first step is ready");
    let names: Vec<&str> = task.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "linear_step_1",
            "linear_step_2",
            "linear_step_3",
            "linear_step_4"
        ]
    );
    for step in &task.steps {
        assert_eq!(step.state, "pending");
        assert_eq!(step.handler, step.name);
        assert_eq!((step.attempts, step.max_attempts), (0, 3));
        assert_eq!(step.results, None);
    }
}

#[tokio::test]
async fn an_identical_request_inside_the_window_answers_200_with_the_same_task() {
    let api = TestApi::start(Duration::from_secs(60)).await;
    let url = format!("{}/v1/tasks", api.loopback.base_url);
    let http = reqwest::Client::new();
    let (first_status, first) =
        raw_json(http.post(&url).json(&linear(2)).send().await.unwrap()).await;
    let (second_status, second) =
        raw_json(http.post(&url).json(&linear(2)).send().await.unwrap()).await;
    assert_eq!(first_status, reqwest::StatusCode::CREATED);
    assert_eq!(second_status, reqwest::StatusCode::OK);
    assert_eq!(first["task_uuid"], second["task_uuid"]);
    assert_eq!(second["deduplicated"], true);
    assert_eq!(api.task_count().await, 1);
}

#[tokio::test]
async fn the_listing_filters_pages_and_puts_the_newest_first() {
    let api = TestApi::start(Duration::ZERO).await;
    let mut linear_tasks = Vec::new();
    for n in 0..3 {
        linear_tasks.push(api.create_linear(n * 2).await);
    }
    let diamond = api
        .client
        .create_task(&CreateTaskRequest::new(
            "diamond_workflow",
            "diamond_pattern",
            "1.0.0",
            json!({"even_number": 2}),
        ))
        .await
        .unwrap()
        .task_uuid;
    api.finish_with_error(linear_tasks[0]).await;

    let all = api
        .client
        .list_tasks(&TaskListQuery::default())
        .await
        .unwrap();
    let ids: Vec<Uuid> = all.tasks.iter().map(|t| t.task_uuid).collect();
    assert_eq!(
        ids,
        [diamond, linear_tasks[2], linear_tasks[1], linear_tasks[0]]
    );
    assert_eq!((all.limit, all.offset), (50, 0));

    let by_namespace = api
        .client
        .list_tasks(&TaskListQuery {
            namespace: Some("diamond_workflow".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_namespace.tasks.len(), 1);
    assert_eq!(by_namespace.tasks[0].name, "diamond_pattern");

    let by_name_and_state = api
        .client
        .list_tasks(&TaskListQuery {
            name: Some("mathematical_sequence".into()),
            state: Some("pending".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<Uuid> = by_name_and_state
        .tasks
        .iter()
        .map(|t| t.task_uuid)
        .collect();
    assert_eq!(ids, [linear_tasks[2], linear_tasks[1]]);

    let errored = api
        .client
        .list_tasks(&TaskListQuery {
            state: Some("error".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(errored.tasks.len(), 1);
    assert_eq!(errored.tasks[0].task_uuid, linear_tasks[0]);
    assert!(errored.tasks[0].completed_at.is_some());

    let page = api
        .client
        .list_tasks(&TaskListQuery {
            limit: Some(2),
            offset: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<Uuid> = page.tasks.iter().map(|t| t.task_uuid).collect();
    assert_eq!(ids, [linear_tasks[2], linear_tasks[1]]);
}

#[tokio::test]
async fn listing_parameters_out_of_range_or_unknown_are_rejected() {
    let api = TestApi::start(Duration::ZERO).await;
    for (query, needle) in [
        ("state=finished", "unknown task state \"finished\""),
        ("limit=0", "limit must be between 1 and 500"),
        ("limit=501", "limit must be between 1 and 500"),
        ("offset=-1", "offset must not be negative"),
        ("limit=ten", "limit"),
        ("stat=complete", "stat"),
    ] {
        let response = reqwest::get(format!("{}/v1/tasks?{query}", api.loopback.base_url))
            .await
            .unwrap();
        let (status, body) = raw_json(response).await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{query}: {body}");
        let body: ErrorBody = serde_json::from_value(body).unwrap();
        assert_eq!(body.error.code, error_codes::INVALID_QUERY, "{query}");
        assert!(
            body.error.message.contains(needle),
            "{query}: {:?} lacks {needle:?}",
            body.error.message
        );
    }
}

#[tokio::test]
async fn the_templates_endpoint_lists_every_registered_template_with_its_steps() {
    let api = TestApi::start(Duration::ZERO).await;
    let templates = api.client.templates().await.unwrap();
    let names: Vec<&str> = templates.iter().map(|t| t.name.as_str()).collect();
    for expected in [
        "mathematical_sequence",
        "diamond_pattern",
        "complex_dag",
        "hierarchical_tree",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    let diamond = templates
        .iter()
        .find(|t| t.name == "diamond_pattern")
        .unwrap();
    assert_eq!(diamond.namespace, "diamond_workflow");
    let end = diamond
        .steps
        .iter()
        .find(|s| s.name == "diamond_end")
        .unwrap();
    assert_eq!(end.depends_on, ["diamond_branch_b", "diamond_branch_c"]);
}

#[tokio::test]
async fn health_is_ok_with_a_database_and_503_without() {
    let api = TestApi::start(Duration::ZERO).await;
    assert_eq!(api.client.health().await.unwrap().status, "ok");
    // the server shares this pool: closing it is the database going away for the server
    api.db.pool.close().await;
    let err = api.client.health().await.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(err.code(), Some(error_codes::DATABASE_UNAVAILABLE), "{err}");
}

#[tokio::test]
async fn a_long_poll_on_an_unfinished_task_returns_at_its_timeout_unfinished() {
    let api = TestApi::start(Duration::ZERO).await;
    let task_uuid = api.create_linear(6).await;
    let response = api
        .client
        .wait_once(task_uuid, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(!response.finished);
    assert_eq!(response.task.state, "pending");
    assert_eq!(response.task.task_uuid, task_uuid);

    let err = api
        .client
        .wait_for_task(task_uuid, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::WaitTimedOut { ref state, .. } if state == "pending"),
        "{err}"
    );
    assert_eq!(
        api.state.waiters().await.unwrap().watched_tasks(),
        0,
        "finished waits unregister"
    );
}

#[tokio::test]
async fn a_long_poll_returns_when_the_task_finished_notification_arrives() {
    let api = TestApi::start(Duration::ZERO).await;
    let task_uuid = api.create_linear(6).await;
    let waiting = api.long_poll(task_uuid);
    // wait (not sleep) until the request has registered, so the notification is the only
    // thing that can end it: its timeout is a minute and there is no recheck timer
    let waiters = api.registered_waiters().await;
    api.finish_with_error(task_uuid).await;
    let task = polled_task(waiting, "the notification").await;
    assert_eq!(task.state, "error");
    assert!(task.is_finished() && !task.is_complete());
    assert_eq!(waiters.watched_tasks(), 0);
}

#[tokio::test]
async fn a_long_poll_on_an_already_finished_task_returns_at_once() {
    let api = TestApi::start(Duration::ZERO).await;
    let task_uuid = api.create_linear(6).await;
    api.finish_with_error(task_uuid).await;
    // an hour-long poll that must not wait: the state is read after subscribing
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        api.client.wait_once(task_uuid, Duration::from_secs(3600)),
    )
    .await
    .expect("answered without waiting")
    .unwrap();
    assert!(response.finished);
    assert_eq!(response.task.state, "error");
}

#[tokio::test]
async fn a_long_poll_on_an_unknown_or_malformed_task_id_is_an_error() {
    let api = TestApi::start(Duration::ZERO).await;
    let unknown = Uuid::now_v7();
    let err = api
        .client
        .wait_once(unknown, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(error_codes::TASK_NOT_FOUND), "{err}");
    assert!(err.to_string().contains(&unknown.to_string()), "{err}");

    let response = reqwest::get(format!(
        "{}/v1/tasks/not-a-uuid/wait",
        api.loopback.base_url
    ))
    .await
    .unwrap();
    let (status, body) = raw_json(response).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], error_codes::INVALID_TASK_ID);
}

#[tokio::test]
async fn shutting_down_ends_long_polls_instead_of_waiting_for_them() {
    let api = TestApi::start(Duration::ZERO).await;
    let task_uuid = api.create_linear(6).await;
    let client = api.client.clone();
    let waiting =
        tokio::spawn(async move { client.wait_once(task_uuid, Duration::from_secs(60)).await });
    api.registered_waiters().await;
    tokio::time::timeout(Duration::from_secs(10), api.loopback.stop())
        .await
        .expect("the server stopped")
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the long poll ended with the shutdown")
        .unwrap()
        .unwrap();
    assert!(!response.finished);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_with_json_errors() {
    let api = TestApi::start(Duration::ZERO).await;
    let (status, body) = raw_json(
        reqwest::get(format!("{}/v2/tasks", api.loopback.base_url))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], error_codes::NOT_FOUND);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("GET /v2/tasks"));

    let response = reqwest::Client::new()
        .delete(format!("{}/v1/tasks", api.loopback.base_url))
        .send()
        .await
        .unwrap();
    let (status, body) = raw_json(response).await;
    assert_eq!(status, reqwest::StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], error_codes::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn with_a_token_every_endpoint_but_health_needs_it() {
    let api = TestApi::start_with_token(ApiToken::new("test-token-4f2a").unwrap()).await;
    let http = reqwest::Client::new();
    let requests = [
        http.get(format!("{}/v1/tasks", api.loopback.base_url)),
        http.post(format!("{}/v1/tasks", api.loopback.base_url))
            .json(&linear(6)),
        http.get(format!("{}/v1/templates", api.loopback.base_url)),
        http.get(format!(
            "{}/v1/tasks/{}",
            api.loopback.base_url,
            Uuid::now_v7()
        )),
        // an unknown path answers 401 too: without the token, nothing about the API shows
        http.get(format!("{}/v2/tasks", api.loopback.base_url)),
    ];
    for request in requests {
        for token in [None, Some("wrong-token"), Some("test-token-4f2a-longer")] {
            let request = request.try_clone().unwrap();
            let request = match token {
                Some(t) => request.bearer_auth(t),
                None => request,
            };
            let response = request.send().await.unwrap();
            let url = response.url().clone();
            let challenge = response.headers().get("www-authenticate").cloned();
            let (status, body) = raw_json(response).await;
            assert_eq!(
                status,
                reqwest::StatusCode::UNAUTHORIZED,
                "{url} {token:?}: {body}"
            );
            assert_eq!(body["error"]["code"], error_codes::UNAUTHORIZED);
            assert_eq!(challenge.unwrap(), "Bearer");
        }
    }
    assert_eq!(
        api.task_count().await,
        0,
        "a refused request must not create a task"
    );

    let health = reqwest::get(format!("{}/health", api.loopback.base_url))
        .await
        .unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);

    // the client that sends the token gets through, whatever the scheme's case
    let task_uuid = api.create_linear(6).await;
    assert_eq!(
        api.client.get_task(task_uuid).await.unwrap().task_uuid,
        task_uuid
    );
    let response = http
        .get(format!("{}/v1/tasks/{task_uuid}", api.loopback.base_url))
        .header("authorization", "bearer test-token-4f2a")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);

    // the typed client without it gets the server's sentence
    let anonymous = TaskerClient::new(&api.loopback.base_url).unwrap();
    match anonymous.get_task(task_uuid).await {
        Err(ClientError::Api { code, message, .. }) => {
            assert_eq!(code, error_codes::UNAUTHORIZED);
            assert!(message.contains("--auth-token-file"), "{message}");
        }
        other => panic!("expected 401 unauthorized, got {other:?}"),
    }
}

#[tokio::test]
async fn metrics_count_created_tasks_and_read_queues_when_scraped() {
    let api = TestApi::start_with_metrics().await;
    // a namespace of this test's own: other tests of this process record into the same
    // recorder
    let namespace = format!("metrics_{}", Uuid::now_v7().simple());
    let template = parse_template(
        &format!(
            "namespace: {namespace}\nname: one\nversion: 1.0.0\nsteps:\n  - name: only\n    handler: h\n"
        ),
        "metrics test",
    )
    .unwrap();
    register_template(&api.db.pool, &template).await.unwrap();
    for _ in 0..2 {
        api.client
            .create_task(&CreateTaskRequest::new(
                &namespace,
                "one",
                "1.0.0",
                json!({}),
            ))
            .await
            .unwrap();
    }
    let queue = format!("{namespace}_queue");
    sqlx::query("SELECT tasker.queue_send($1, '{}'::jsonb)")
        .bind(&queue)
        .execute(&api.db.pool)
        .await
        .unwrap();

    let response = reqwest::get(format!("{}/metrics", api.loopback.base_url))
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let text = response.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the Prometheus text format");
    let sample = |name: &str, label: &str, value: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get(label) == Some(value))
            .map(|s| s.value.clone())
    };
    assert_eq!(
        sample("tasker_tasks_created_total", "namespace", &namespace),
        Some(prometheus_parse::Value::Counter(2.0)),
        "{text}"
    );
    assert_eq!(
        sample("tasker_queue_depth", "queue", &queue),
        Some(prometheus_parse::Value::Gauge(1.0)),
        "{text}"
    );
    assert_eq!(
        scrape
            .docs
            .get("tasker_tasks_created_total")
            .map(String::as_str),
        Some("Tasks created"),
        "{text}"
    );
    assert!(
        matches!(
            sample("tasker_db_pool_connections", "state", "max"),
            Some(prometheus_parse::Value::Gauge(max)) if max >= 1.0
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_lost_listener_connection_makes_every_waiter_read_its_task_again() {
    let api = TestApi::start(Duration::ZERO).await;
    let task_uuid = api.create_linear(6).await;
    let waiting = api.long_poll(task_uuid);
    api.registered_waiters().await;
    // the task finishes while its notification is lost (here: never sent) ...
    assert!(transition_task(
        &api.db.pool,
        task_uuid,
        TaskState::Pending,
        TaskState::Error,
        "api-test",
        None
    )
    .await
    .unwrap());
    // ... and the listening connection dies; noticing that is what must end the wait, since
    // there is no recheck timer and the poll's own timeout is a minute away
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND query ILIKE '%LISTEN%tasker_task_finished%'",
    )
    .fetch_all(&api.db.pool)
    .await
    .unwrap();
    assert_eq!(terminated, [true], "exactly the listener's connection");
    let task = polled_task(waiting, "the reconnection").await;
    assert_eq!(task.state, "error");
}

#[tokio::test]
async fn the_api_listens_for_finished_tasks_only_while_a_request_waits() {
    let linger = Duration::from_millis(300);
    let api = TestApi::start_with_linger(Duration::ZERO, linger).await;
    let listen = format!(r#"LISTEN "{TASK_FINISHED_CHANNEL}""#);
    let unlisten = format!(r#"UNLISTEN "{TASK_FINISHED_CHANNEL}""#);
    // the server is up and its listener connected, but nobody waits: no LISTEN, so the
    // database's notifications do not wake that connection
    let waiters = api.state.waiters().await.unwrap().clone();
    assert!(!waiters.is_listening());
    assert_eq!(api.backends_last_running(&listen).await, 0);

    for round in 0..2 {
        let task_uuid = api.create_linear(6).await;
        let waiting = api.long_poll(task_uuid);
        api.registered_waiters().await;
        assert_eq!(api.backends_last_running(&listen).await, 1, "round {round}");
        api.finish_with_error(task_uuid).await;
        let task = polled_task(waiting, "the notification").await;
        assert_eq!(task.state, "error");

        // the LISTEN goes once nobody has waited for the linger
        tokio::time::timeout(Duration::from_secs(30), async {
            while waiters.is_listening() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("UNLISTEN after the linger");
        assert_eq!(
            api.backends_last_running(&unlisten).await,
            1,
            "round {round}"
        );
    }
}
