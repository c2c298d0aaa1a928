//! Retention: finished executions older than `retention_days` are deleted with their inputs,
//! outputs and idempotency keys, and the deliveries log's older records with them, at start
//! and then every hour, in batches small enough that deliveries, which share the database, are
//! never held up for long.

use std::time::{Duration, SystemTime};

use agent_trigger::deliveries::DeliveryLog;
use agent_trigger::queue::ExecutionQueue;
use tokio::sync::watch;

/// Executions deleted per transaction.
const BATCH: usize = 500;
/// The pause between two batches, in which deliveries go first.
const BETWEEN_BATCHES: Duration = Duration::from_millis(10);
/// How often pruning runs.
const EVERY: Duration = Duration::from_secs(60 * 60);

/// Prunes until `stop` turns true.
pub async fn run<Q: ExecutionQueue + DeliveryLog>(
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

async fn prune<Q: ExecutionQueue + DeliveryLog>(
    queue: &Q,
    retention: Duration,
    stop: &watch::Receiver<bool>,
) {
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
    prune_log(queue, before, stop).await;
    if pruned > 0 {
        tracing::info!(
            pruned,
            retention_days = retention.as_secs() / 86_400,
            "pruned finished executions"
        );
    }
}

/// The deliveries log's records received before the retention, in batches.
async fn prune_log<L: DeliveryLog>(log: &L, before: SystemTime, stop: &watch::Receiver<bool>) {
    let mut pruned = 0;
    loop {
        match log.prune_deliveries(before, BATCH).await {
            Ok(count) => {
                pruned += count;
                if count < BATCH || *stop.borrow() {
                    break;
                }
                tokio::time::sleep(BETWEEN_BATCHES).await;
            }
            Err(error) => {
                tracing::error!(%error, "could not prune the deliveries log");
                break;
            }
        }
    }
    if pruned > 0 {
        tracing::info!(pruned, "pruned the deliveries log");
    }
}
