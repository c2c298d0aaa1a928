//! `agent-trigger`: the standalone webhook server, on its embedded SQLite store or on a
//! PostgreSQL database that several servers share.
//!
//! - `agent-trigger`: demo mode, on `./agent-trigger.db` and `127.0.0.1:8080`.
//! - `agent-trigger serve --config FILE [--listen ADDR]`: the configured server.
//! - `agent-trigger check --config FILE`: validates a configuration and starts nothing.
//! - `agent-trigger keygen`: a new API key and its `sha256` line for the configuration.

mod config;
mod database;
mod executions;
mod executor;
mod http;
mod limits;
mod log_format;
mod retention;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agent_trigger::postgres::PostgresStore;
use agent_trigger::sqlite::SqliteStore;
use agent_trigger::{ApiKey, ApiKeyRecord, Source, Trigger, TriggerService};
use clap::{Parser, Subcommand};
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::{Config, Database};
use crate::database::ConfiguredStore;
use crate::executor::Runner;

/// Turns incoming webhooks into agent executions.
#[derive(Parser)]
#[command(name = "agent-trigger", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Demo mode only: listen here instead of 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the endpoint as FILE configures it.
    Serve {
        /// The TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Listen here instead of the configured address.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Validate a configuration file without starting anything.
    Check {
        /// The TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print a new API key and the line that configures it.
    Keygen,
}

/// Prints a line for whoever started the server. Unlike `println!`, a closed stdout (the
/// server piped into `head`, say) does not end the process.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The tenant of demo mode's key and triggers.
const DEMO_TENANT: &str = "demo";

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Held until the process ends: dropping it writes out the lines still queued.
    let _logs = init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("agent-trigger: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None => runtime.block_on(demo(cli.listen)),
        Some(Command::Serve { config, listen }) => {
            runtime.block_on(serve_configured(&config, listen))
        }
        Some(Command::Check { config }) => check(&config),
        Some(Command::Keygen) => {
            keygen();
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("agent-trigger: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr: text by default, one JSON object per line with
/// `AGENT_TRIGGER_LOG_FORMAT=json`; the level from `AGENT_TRIGGER_LOG` (default `info`).
///
/// Lines are written by a thread of their own, through a buffer that is flushed whenever no
/// more lines wait: a request does not wait for a write to stderr, and under load many lines
/// share one write. When lines come faster than stderr takes them, requests wait (none is
/// dropped).
///
/// The log takes no spans: each delivery's line is then one flat event that carries every
/// field of the delivery (see the crate's telemetry). A span per delivery, built, recorded
/// into, entered and closed, cost the request about 20 000 instructions; the flat line cost
/// about 12 000, and 7 000 with the text format's timestamp and fields written by
/// [`log_format`] (`benches/durable_profile.sh`). The span's other use, naming the delivery in
/// the lines logged while it is handled, is not needed here: such a line (a backend failure)
/// is followed by the delivery's own line, with its answer.
fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let levels =
        EnvFilter::try_from_env("AGENT_TRIGGER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = levels.and(filter_fn(|metadata| !metadata.is_span()));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let logs = tracing_subscriber::fmt::layer()
        .with_timer(log_format::LineTime)
        .with_writer(writer);
    let registry = tracing_subscriber::registry();
    if std::env::var("AGENT_TRIGGER_LOG_FORMAT").is_ok_and(|format| format == "json") {
        registry
            .with(logs.json().flatten_event(true).with_filter(filter))
            .init();
    } else {
        registry
            .with(
                logs.fmt_fields(log_format::LineFields)
                    .with_ansi(colour)
                    .with_filter(filter),
            )
            .init();
    }
    guard
}

fn keygen() {
    let key = ApiKey::generate();
    println!("API key (store it now; it is not shown again):");
    println!("  {}", key.expose());
    println!("for the [[keys]] entry of the configuration:");
    println!("  sha256 = \"{}\"", key.digest().to_hex());
}

type Error = Box<dyn std::error::Error>;

/// Reads the variables a configuration names from the process's environment.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `agent-trigger check`: the checks `serve` makes of the file (and of the environment
/// variables it names), with the same located errors, and nothing started.
fn check(file: &Path) -> Result<(), Error> {
    let config = config::load(file, &process_env)?;
    println!(
        "{}: OK ({} keys, {} triggers, {})",
        file.display(),
        config.keys.len(),
        config.triggers.len(),
        if config.executor.is_some() {
            "with an executor"
        } else {
            "no executor"
        }
    );
    Ok(())
}

async fn serve_configured(file: &Path, listen: Option<SocketAddr>) -> Result<(), Error> {
    let config = config::load(file, &process_env)?;
    match &config.database {
        Database::Sqlite(path) => {
            let store = SqliteStore::open(path)?;
            serve_on(store, config, file, listen).await
        }
        Database::Postgres(url) => {
            let mut options = PostgresStore::builder(url.clone());
            if let Some(executor) = &config.executor {
                options = options.lease(executor.lease);
            }
            let store = options.connect().await?;
            serve_on(store, config, file, listen).await
        }
    }
}

/// Serves `config` from `store`: writes its keys and triggers, gives what a crash or a
/// shutdown interrupted its next attempt, reloads at SIGHUP, and serves until told to stop.
async fn serve_on<S: ConfiguredStore>(
    store: S,
    config: Config,
    file: &Path,
    listen: Option<SocketAddr>,
) -> Result<(), Error> {
    let Config {
        listen: configured,
        database,
        body_limit,
        retention,
        executor,
        keys,
        triggers,
    } = config;
    store.replace_keys_and_triggers(keys, triggers).await?;
    tracing::info!(
        %database,
        triggers = store.trigger_count(),
        executor = executor.is_some(),
        "configuration loaded"
    );
    let started = Started {
        listen: configured,
        database,
        body_limit,
        retention,
        executor: executor.clone(),
    };
    reload_on_hangup(store.clone(), file.to_owned(), started)?;
    serve(
        store,
        listen.unwrap_or(configured),
        body_limit,
        retention,
        executor.map(Runner::Command),
        |_| {},
    )
    .await
}

/// What a reload cannot change: the server keeps these until it is restarted.
struct Started {
    listen: SocketAddr,
    database: Database,
    body_limit: usize,
    retention: std::time::Duration,
    executor: Option<config::ExecutorConfig>,
}

/// Installs the SIGHUP handler now (before the server says it listens, since a SIGHUP
/// would otherwise end the process) and reloads the configuration at each one.
#[cfg(unix)]
fn reload_on_hangup<S: ConfiguredStore>(
    store: S,
    file: PathBuf,
    started: Started,
) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            reload(&store, &file, &started).await;
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn reload_on_hangup<S: ConfiguredStore>(
    _store: S,
    _file: PathBuf,
    _started: Started,
) -> std::io::Result<()> {
    Ok(())
}

/// Reads the configuration again and swaps its keys, triggers and secrets in at once (one
/// transaction, then one swap of the copy requests read; a request under way keeps the trigger
/// it already has). A file with an error is refused whole and the running configuration stays.
/// On PostgreSQL the change reaches every instance (see `PostgresStore`).
async fn reload<S: ConfiguredStore>(store: &S, file: &Path, started: &Started) {
    let config = match config::load(file, &process_env) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "configuration not reloaded; the running one stays");
            return;
        }
    };
    if config.listen != started.listen
        || config.database != started.database
        || config.body_limit != started.body_limit
        || config.retention != started.retention
        || config.executor != started.executor
    {
        tracing::warn!(
            "listen, database, body_limit_bytes, retention_days or [executor] changed: they take effect at the next start"
        );
    }
    let (keys, triggers) = (config.keys.len(), config.triggers.len());
    match store
        .replace_keys_and_triggers(config.keys, config.triggers)
        .await
    {
        Ok(()) => tracing::info!(keys, triggers, "configuration reloaded"),
        Err(error) => {
            tracing::error!(%error, "configuration not reloaded; the running one stays");
        }
    }
}

/// Demo mode. Each start mints one key and revokes the keys earlier starts printed: the demo
/// database holds no other keys.
async fn demo(listen: Option<SocketAddr>) -> Result<(), Error> {
    let database = Path::new(config::DEFAULT_DATABASE);
    let store = SqliteStore::open(database)?;
    let mut triggers: Vec<_> = store
        .triggers()
        .into_iter()
        .filter(|trigger| trigger.tenant() == DEMO_TENANT)
        .collect();
    if triggers.is_empty() {
        for source in Source::ALL {
            store
                .insert_trigger(Trigger::new(Uuid::now_v7(), DEMO_TENANT, source))
                .await?;
        }
        triggers = store.triggers();
    }
    let key_id = format!("demo-{}", &Uuid::now_v7().simple().to_string()[..12]);
    let key = ApiKey::generate();
    let every_trigger = store
        .triggers()
        .iter()
        .map(|trigger| (**trigger).clone())
        .collect();
    store
        .replace_keys_and_triggers(
            vec![(key.digest(), ApiKeyRecord::new(key_id, DEMO_TENANT))],
            every_trigger,
        )
        .await?;
    let listen = match listen {
        Some(listen) => listen,
        None => config::DEFAULT_LISTEN.parse()?,
    };
    let retention = config::DEFAULT_RETENTION;
    serve(store, listen, agent_trigger::service::DEFAULT_BODY_LIMIT, retention, Some(Runner::Demo), |address| {
        say!("agent-trigger demo: database {}", database.display());
        say!("API key (shown once, keep it): {}", key.expose());
        say!("triggers (tenant {DEMO_TENANT:?}):");
        for trigger in &triggers {
            say!("  {:<16} {}", trigger.source().as_str(), trigger.id());
        }
        if let Some(webhook) = triggers.iter().find(|trigger| trigger.source() == Source::Webhook) {
            say!("send a delivery:");
            say!(
                "  curl -sS -X POST http://{address}/api/trigger/webhook/{} -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' -d '{{\"type\":\"demo.ping\",\"note\":\"any JSON\"}}'",
                webhook.id(),
                key.expose()
            );
        }
        say!("then its status (the built-in demo executor prints each input and marks it done):");
        say!(
            "  curl -sS http://{address}/api/executions/<executionId> -H 'Authorization: Bearer {}'",
            key.expose()
        );
        say!("to run your own agent instead, `agent-trigger serve --config FILE` with an [executor] command (see the README).");
    })
    .await
}

/// Serves until SIGTERM or SIGINT, then stops accepting, finishes the requests in flight,
/// interrupts running executions and returns.
async fn serve<S: http::Backend>(
    store: S,
    listen: SocketAddr,
    body_limit: usize,
    retention: std::time::Duration,
    runner: Option<Runner>,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), Error> {
    let triggers = TriggerService::builder(store.clone(), store.clone())
        .body_limit(body_limit)
        .build();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    let address = listener.local_addr()?;
    let limits = limits::Limits::from_env()?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| format!("cannot set up the metrics: {error}"))?;
    let shutdown = shutdown_signal()?;
    let (stop, stopped) = watch::channel(false);
    let running = executor::Running::default();
    let mut workers = runner
        .map(|runner| executor::spawn(store.clone(), runner, running.clone(), stopped.clone()));
    let pruning = tokio::spawn(retention::run(store.clone(), retention, stopped));

    say!("agent-trigger listening on http://{address}");
    on_listening(address);
    tracing::info!(%address, ?limits, "listening");
    accept_until(
        listener,
        http::app(
            http::Api {
                store: store.clone(),
                running,
            },
            triggers,
            limits,
            metrics,
        ),
        limits,
        shutdown,
    )
    .await;

    tracing::info!("shutting down");
    let _ = stop.send(true);
    if let Some(workers) = workers.as_mut() {
        while workers.join_next().await.is_some() {}
    }
    let _ = pruning.await;
    Ok(())
}

/// Serves connections (HTTP/1 and HTTP/2) until `shutdown`, then stops accepting and lets the
/// requests in flight finish (within the request deadline). Connections past the cap are closed
/// at accept; one whose first request head has not arrived within the header deadline is
/// closed then.
async fn accept_until<A>(
    listener: tokio::net::TcpListener,
    app: A,
    limits: limits::Limits,
    shutdown: impl std::future::Future<Output = ()>,
) where
    A: tower::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    A::Future: Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::server::graceful::GracefulShutdown;
    use std::sync::Arc;
    use tokio::sync::{Notify, Semaphore};

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits::HTTP2_PING_INTERVAL)
        .keep_alive_timeout(limits::HTTP2_PING_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, say: wait a moment rather than spin.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
                    tracing::debug!(max_connections = limits.max_connections, "connection refused: too many open");
                    drop(stream);
                    continue;
                };
                // Told when the connection's first request head has been read.
                let first_request = Arc::new(Notify::new());
                let service = {
                    let (app, first_request) = (app.clone(), Arc::clone(&first_request));
                    hyper::service::service_fn(move |request| {
                        first_request.notify_one();
                        tower_service::Service::call(&mut app.clone(), request)
                    })
                };
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                let first_head_deadline = limits.header_timeout;
                tokio::spawn(async move {
                    let mut connection = std::pin::pin!(connection);
                    tokio::select! {
                        _ = &mut connection => {}
                        () = first_request.notified() => {
                            let _ = connection.await;
                        }
                        // Dropping the connection closes it.
                        () = tokio::time::sleep(first_head_deadline) => {
                            tracing::debug!("connection closed: no request head in time");
                        }
                    }
                    drop(place);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(limits.request_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the request deadline; closing them");
    }
}

/// Installs the SIGINT (Ctrl-C) and SIGTERM handlers now, so that a signal that arrives as
/// soon as the server says it listens is not missed, and resolves when either arrives.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
