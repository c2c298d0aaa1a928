//! A running server: the trigger service and the routes on the configured store, its workers,
//! retention and the listener, from start to a graceful stop.

use std::net::SocketAddr;
use std::path::Path;

use agent_trigger::TriggerService;
use agent_trigger::postgres::PostgresStore;
use agent_trigger::sqlite::SqliteStore;
use tokio::sync::watch;

use crate::config::{Config, Database, Startup};
use crate::executor::{self, Runner};
use crate::store::{Backend, ConfiguredStore};
use crate::{api, listener, reload, retention};

/// What a command that fails tells the operator.
pub type Error = Box<dyn std::error::Error>;

/// `agent-trigger serve`: the configuration in `file` on its database, until SIGTERM or SIGINT.
pub async fn serve_configured(file: &Path, listen: Option<SocketAddr>) -> Result<(), Error> {
    let config = crate::config::load(file, &crate::config::process_env)?;
    #[cfg(target_os = "linux")]
    crate::containment::check_start(&config, file)?;
    match &config.startup.database {
        Database::Sqlite(path) => {
            let store = SqliteStore::open(path)?;
            serve_on(store, config, file, listen).await
        }
        Database::Postgres(url) => {
            let mut options = PostgresStore::builder(url.clone());
            if let Some(executor) = &config.startup.executor {
                options = options.lease(executor.lease);
            }
            let store = options.connect().await?;
            serve_on(store, config, file, listen).await
        }
    }
}

/// Serves `config` from `store`: writes its keys and triggers, reloads them at SIGHUP, and
/// serves until told to stop.
async fn serve_on<S: ConfiguredStore>(
    store: S,
    config: Config,
    file: &Path,
    listen: Option<SocketAddr>,
) -> Result<(), Error> {
    let Config {
        startup,
        reloadable,
    } = config;
    let every_right: Vec<&str> = reloadable
        .keys
        .iter()
        .filter(|(_, key)| key.rights().count() == agent_trigger::Right::ALL.len())
        .map(|(_, key)| key.id())
        .collect();
    if !every_right.is_empty() {
        tracing::info!(
            keys = every_right.join(", "),
            "these keys may invoke, read and operate: give senders keys with can = [\"invoke\"]"
        );
    }
    store.set_log_limits(reloadable.log_limits);
    store
        .replace_keys_and_triggers(reloadable.keys, reloadable.triggers)
        .await?;
    tracing::info!(
        database = %startup.database,
        triggers = store.trigger_count(),
        executor = startup.executor.is_some(),
        "configuration loaded"
    );
    reload::on_hangup(store.clone(), file.to_owned(), startup.clone())?;
    let runner = startup
        .executor
        .clone()
        .map(|executor| Runner::Command(Box::new(executor)));
    let mut startup = startup;
    if let Some(listen) = listen {
        startup.listen = listen;
    }
    serve(store, &startup, runner, |_| {}).await
}

/// Serves until SIGTERM or SIGINT, then stops accepting, finishes the requests in flight,
/// interrupts running executions and returns. `on_listening` is told the bound address.
pub async fn serve<S: Backend>(
    store: S,
    startup: &Startup,
    runner: Option<Runner>,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), Error> {
    let triggers = TriggerService::builder(store.clone(), store.clone())
        .body_limit(startup.body_limit)
        .observer(store.clone())
        .build();
    let listen = startup.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    let address = listener.local_addr()?;
    let limits = startup.limits;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| format!("cannot set up the metrics: {error}"))?;
    let shutdown = shutdown_signal()?;
    let (stop, stopped) = watch::channel(false);
    let running = executor::Running::default();
    if let Some(runner) = &runner {
        executor::requeue_before_start(&store, runner).await;
    }
    let mut workers = runner
        .map(|runner| executor::spawn(store.clone(), runner, running.clone(), stopped.clone()));
    let pruning = tokio::spawn(retention::run(store.clone(), startup.retention, stopped));

    say!("agent-trigger listening on http://{address}");
    on_listening(address);
    tracing::info!(%address, ?limits, "listening");
    let api = api::Api {
        store: store.clone(),
        running,
        triggers: triggers.clone(),
    };
    listener::accept_until(
        listener,
        api::app(api, triggers, limits, metrics),
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
