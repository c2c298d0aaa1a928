//! Retention: finished executions older than `retention_days` are deleted with their inputs,
//! outputs and idempotency keys, at start and then every hour, in batches small enough that
//! deliveries, which share the database, are never held up for long.

use std::time::{Duration, SystemTime};

use agent_trigger::queue::ExecutionQueue;
use tokio::sync::watch;

/// Executions deleted per transaction.
const BATCH: usize = 500;
/// The pause between two batches, in which deliveries go first.
const BETWEEN_BATCHES: Duration = Duration::from_millis(10);
/// How often pruning runs.
const EVERY: Duration = Duration::from_secs(60 * 60);

/// Prunes until `stop` turns true.
pub async fn run<Q: ExecutionQueue>(
    queue: Q,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        prune(&queue, retention, &stop).await;
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn prune<Q: ExecutionQueue>(queue: &Q, retention: Duration, stop: &watch::Receiver<bool>) {
    let Some(before) = SystemTime::now().checked_sub(retention) else {
        return;
    };
    let mut pruned = 0;
    loop {
        match queue.prune_finished(before, BATCH).await {
            Ok(count) => {
                pruned += count;
                if count < BATCH || *stop.borrow() {
                    break;
                }
                tokio::time::sleep(BETWEEN_BATCHES).await;
            }
            Err(error) => {
                tracing::error!(%error, "could not prune finished executions");
                break;
            }
        }
    }
    if pruned > 0 {
        tracing::info!(
            pruned,
            retention_days = retention.as_secs() / 86_400,
            "pruned finished executions"
        );
    }
}
