//! `tasker server`: the REST API and an orchestrator in one process, its metrics on
//! `GET /metrics`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tasker_client::ApiToken;
use tasker_orchestration::api::{serve, ApiConfig, ApiState, DEFAULT_BIND};
use tasker_orchestration::orchestration::core::{Orchestrator, OrchestratorConfig};
use tasker_orchestration::orchestration::lifecycle::task_initializer::TaskInitializer;
use tasker_shared::database::{connect, redact_url};
use tasker_shared::metrics::Exporter;
use tasker_shared::schema::migrate;
use tasker_shared::templates::{load_dir, register_template};

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Address (host:port) the API listens on. The default is loopback only; any other
    /// address needs --auth-token-file (or --insecure-public).
    #[arg(long, env = "TASKER_BIND", default_value = DEFAULT_BIND)]
    bind: String,
    /// Require `Authorization: Bearer <token>` on every endpoint but /health, the token being
    /// the first line of FILE (for example from `openssl rand -hex 32`).
    #[arg(long, env = "TASKER_API_TOKEN_FILE", value_name = "FILE")]
    auth_token_file: Option<PathBuf>,
    /// Serve a non-loopback address without a token: only behind something that
    /// authenticates every request (a proxy, a private network you trust).
    #[arg(long)]
    insecure_public: bool,
    /// Load every *.yaml / *.yml task template under DIR (recursively) and register it before
    /// serving; one invalid file stops the start.
    #[arg(long, env = "TASKER_TEMPLATES", value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Apply pending schema migrations before serving.
    #[arg(long)]
    migrate: bool,
    /// Database connections shared by the API and the orchestrator.
    #[arg(long, default_value_t = 20)]
    max_connections: u32,
    /// Identical task requests (same template, context and initiator) within this window
    /// return the task the first one created, e.g. `60s`; `0s` turns de-duplication off.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    dedup_window: Duration,
    /// How often the orchestrator looks for work when no notification arrives (it normally
    /// wakes on LISTEN/NOTIFY; this only covers lost notifications), e.g. `1s`, `250ms`.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    fallback_poll: Duration,
    /// The longest a step result whose processing failed waits before it is tried again (it
    /// comes back after 0.1 s, doubling with each failure up to this).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    visibility_timeout: Duration,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    // bad input (token file, address) is refused before anything is written
    let auth_token = args
        .auth_token_file
        .as_deref()
        .map(ApiToken::from_file)
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(&args.bind)
        .await
        .with_context(|| format!("binding the API to {}", args.bind))?;
    let address = listener
        .local_addr()
        .context("reading the API's bound address")?;
    if !address.ip().is_loopback() && auth_token.is_none() && !args.insecure_public {
        anyhow::bail!(
            "refusing to serve the API on {address} without authentication: anyone who can reach it could create tasks; give --auth-token-file FILE (or TASKER_API_TOKEN_FILE), or --insecure-public if something in front of the server authenticates"
        );
    }

    let url = redact_url(&args.database_url);
    let pool = connect(&args.database_url, args.max_connections).await?;
    if args.migrate {
        migrate(&pool)
            .await
            .with_context(|| format!("migrating {url}"))?;
    }
    if let Some(dir) = &args.templates {
        let templates = load_dir(dir)
            .with_context(|| format!("loading task templates from {}", dir.display()))?;
        for (path, template) in &templates {
            register_template(&pool, template)
                .await
                .with_context(|| format!("registering the template in {}", path.display()))?;
        }
        tracing::info!(count = templates.len(), dir = %dir.display(), "registered task templates");
    }

    let orchestrator = Orchestrator::start(
        pool.clone(),
        OrchestratorConfig {
            fallback_poll: args.fallback_poll,
            visibility_timeout: args.visibility_timeout,
            ..OrchestratorConfig::default()
        },
    )
    .await
    .context("starting the orchestrator")?;

    let state = ApiState::with_config(
        pool.clone(),
        TaskInitializer::new(pool.clone(), args.dedup_window),
        ApiConfig {
            auth_token,
            metrics: Some(Exporter::install()?),
            ..ApiConfig::default()
        },
    );
    // stdout carries the one line a script needs (the address, useful with --bind ...:0)
    println!("tasker server listening on http://{address} (database {url})");
    let served = serve(listener, state, shutdown_signal()).await;

    tracing::info!("stopping the orchestrator");
    let stopped = orchestrator.shutdown().await;
    pool.close().await;
    served.context("serving the API")?;
    stopped.context("stopping the orchestrator")?;
    Ok(())
}

/// Listens for Ctrl-C and SIGTERM (what `kill` and service managers send) from the moment it
/// is called, so that a library started later (the embedded Ruby VM) finds them handled and
/// leaves them alone; the returned future completes on either.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        tokio::select! {
            () = wait_for(interrupt, "Ctrl-C") => {}
            () = wait_for(terminate, "SIGTERM") => {}
        }
        tracing::info!("shutdown requested");
    }
}

async fn wait_for(signal: std::io::Result<tokio::signal::unix::Signal>, name: &str) {
    match signal {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for {name}");
            std::future::pending::<()>().await;
        }
    }
}
