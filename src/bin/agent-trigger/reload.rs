//! SIGHUP: the configuration read again, its keys, triggers and secrets swapped in at once.

use std::path::{Path, PathBuf};

use crate::config::{self, Startup};
use crate::store::ConfiguredStore;

/// Installs the SIGHUP handler now (before the server says it listens, since a SIGHUP would
/// otherwise end the process) and reloads the configuration at each one. `started` is what the
/// server was built from, which a reload cannot change.
#[cfg(unix)]
pub fn on_hangup<S: ConfiguredStore>(
    store: S,
    file: PathBuf,
    started: Startup,
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
pub fn on_hangup<S: ConfiguredStore>(
    _store: S,
    _file: PathBuf,
    _started: Startup,
) -> std::io::Result<()> {
    Ok(())
}

/// Reads the configuration again and swaps its keys, triggers and secrets in at once (one
/// transaction, then one swap of the copy requests read; a request under way keeps the trigger
/// it already has). A file with an error is refused whole and the running configuration stays.
/// On PostgreSQL the change reaches every instance (see `PostgresStore`).
async fn reload<S: ConfiguredStore>(store: &S, file: &Path, started: &Startup) {
    let config = match config::load(file, &config::process_env) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "configuration not reloaded; the running one stays");
            return;
        }
    };
    // The running executor keeps passing through what it passed at start: a secret newly read
    // from one of those variables would reach every command.
    if let Some(executor) = &started.executor
        && let Some(name) = executor
            .passed_through
            .iter()
            .find(|name| config.reloadable.secret_variables.contains(name))
    {
        tracing::error!(
            variable = %name,
            "configuration not reloaded: it reads a key or secret from a variable the running [executor] env passes to every command; the running one stays"
        );
        return;
    }
    #[cfg(target_os = "linux")]
    if let Some(executor) = &started.executor
        && let Err(reason) = crate::containment::check_files(
            executor,
            &started.database,
            file,
            config.reloadable.secrets_in_file,
        )
    {
        tracing::error!(%reason, "configuration not reloaded; the running one stays");
        return;
    }
    if config.startup != *started {
        tracing::warn!(
            "listen, database, body_limit_bytes, retention_days, [limits] or [executor] changed: they take effect at the next start"
        );
    }
    let (keys, triggers) = (
        config.reloadable.keys.len(),
        config.reloadable.triggers.len(),
    );
    store.set_log_limits(config.reloadable.log_limits);
    match store
        .replace_keys_and_triggers(config.reloadable.keys, config.reloadable.triggers)
        .await
    {
        Ok(()) => tracing::info!(keys, triggers, "configuration reloaded"),
        Err(error) => {
            tracing::error!(%error, "configuration not reloaded; the running one stays");
        }
    }
}
