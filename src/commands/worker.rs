//! `tasker worker`: consume step queues and run the example step handlers, and the Ruby
//! handlers of `--ruby-handlers DIR`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tasker_shared::database::connect;
use tasker_shared::metrics::Exporter;
use tasker_worker::examples::{register_examples, EXAMPLE_NAMESPACES};
use tasker_worker::{endpoint, HandlerRegistry, Worker, WorkerConfig};

use super::server::shutdown_signal;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Namespaces whose step queues this worker consumes, comma-separated (default: every
    /// namespace the example handlers serve).
    #[arg(long, env = "TASKER_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Steps run at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How long a claimed step message stays hidden from other workers without a heartbeat
    /// (the worker extends it while the step runs). After a crash, the step is picked up again
    /// this long after the last heartbeat. E.g. `30s`, `2s`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    visibility_timeout: Duration,
    /// How often to look for messages when no notification arrives (only covers lost
    /// notifications), e.g. `1s`.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    fallback_poll: Duration,
    /// Limit for one handler run when the step's template sets no timeout_seconds.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    handler_timeout: Duration,
    /// Recorded as the processor of this worker's transitions (default: worker:<pid>).
    #[arg(long, env = "TASKER_WORKER_ID")]
    worker_id: Option<String>,
    /// A directory of Ruby handler files: every `*.rb` in it is loaded into an embedded Ruby
    /// VM, and the handlers they register replace Rust handlers of the same name.
    #[arg(long, env = "TASKER_RUBY_HANDLERS", value_name = "DIR")]
    ruby_handlers: Option<PathBuf>,
    /// Serve this worker's metrics (`/metrics`, Prometheus' text format) and its probes
    /// (`/health/live`, `/health/ready`) on ADDR, e.g. `127.0.0.1:9464`.
    #[arg(long, env = "TASKER_WORKER_METRICS_BIND", value_name = "ADDR")]
    metrics_bind: Option<String>,
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let namespaces: Vec<String> = if args.namespaces.is_empty() {
        EXAMPLE_NAMESPACES.iter().map(|s| s.to_string()).collect()
    } else {
        args.namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if namespaces.is_empty() {
        anyhow::bail!("--namespaces names no namespace; pass e.g. --namespaces linear_workflow");
    }
    if args.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    // Listening before Ruby starts, which then keeps its hands off SIGINT and SIGTERM.
    let shutdown = shutdown_signal();
    let mut registry = HandlerRegistry::new();
    register_examples(&mut registry);
    if let Some(dir) = &args.ruby_handlers {
        let ruby = tasker_ruby::load(dir).await?;
        ruby.register_into(&mut registry);
        println!(
            "Ruby handlers from {}: {}",
            dir.display(),
            ruby.names().join(", ")
        );
    }

    // one connection per running step, plus the claim loop and the heartbeats
    let connections = u32::try_from(args.concurrency)
        .unwrap_or(u32::MAX)
        .saturating_add(2);
    let pool = connect(&args.database_url, connections).await?;
    let defaults = WorkerConfig::default();
    let config = WorkerConfig {
        namespaces: namespaces.clone(),
        concurrency: args.concurrency,
        visibility_timeout: args.visibility_timeout,
        fallback_poll: args.fallback_poll,
        handler_timeout: args.handler_timeout,
        worker_id: args.worker_id.unwrap_or(defaults.worker_id),
    };
    let worker_id = config.worker_id.clone();
    let endpoint = match &args.metrics_bind {
        Some(bind) => Some(start_endpoint(bind, &pool).await?),
        None => None,
    };
    let handle = Worker::start(pool.clone(), config, Arc::new(registry))
        .await
        .context("starting the worker")?;
    println!(
        "tasker worker {worker_id} consuming {} (concurrency {}){}",
        namespaces.join(", "),
        args.concurrency,
        endpoint
            .as_ref()
            .map_or_else(String::new, |(address, _, _)| format!(
                "; metrics on http://{address}/metrics"
            ))
    );
    shutdown.await;
    tracing::info!("stopping: letting running steps finish");
    handle.shutdown().await.context("stopping the worker")?;
    if let Some((_, stop, served)) = endpoint {
        let _ = stop.send(());
        served.await.context("the metrics endpoint")??;
    }
    pool.close().await;
    Ok(())
}

/// The metrics endpoint on `bind`: its address, its stop switch and its task.
type Endpoint = (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
);

async fn start_endpoint(bind: &str, pool: &sqlx::PgPool) -> anyhow::Result<Endpoint> {
    let exporter = Exporter::install()?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding the metrics endpoint to {bind}"))?;
    let address = listener
        .local_addr()
        .context("reading the metrics endpoint's address")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(endpoint::serve(
        listener,
        pool.clone(),
        exporter,
        async move {
            let _ = stopped.await;
        },
    ));
    Ok((address, stop, served))
}
