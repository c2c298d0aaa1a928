//! The listener: one connection of its own that waits for notifications (new work, changed
//! keys and triggers) and reconnects when it is lost.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use tokio_postgres_rustls::MakeRustlsConnect;

use super::{CHANNEL, Inner, describe};

/// At most this many workers are woken by one notification: more than any instance has.
const MAX_WAKE: usize = 4096;

/// The longest wait before reconnecting.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Listens until the store is dropped.
pub(super) async fn run(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    store: Weak<Inner>,
) {
    let mut backoff = Duration::from_millis(100);
    while store.strong_count() > 0 {
        match listen(&config, &tls, &store).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(error) => {
                tracing::warn!(error = %error, "the database listener is down; workers poll meanwhile");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: `LISTEN`, then every notification until it is lost.
async fn listen(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    store: &Weak<Inner>,
) -> Result<(), String> {
    let (client, mut connection) = config
        .connect(tls.clone())
        .await
        .map_err(|error| describe(&error))?;
    let (notifications, mut received) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if notifications
                        .send(notification.payload().to_owned())
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %describe(&error), "the database listener's connection failed");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|error| describe(&error))?;
    // Whatever was notified while no one listened: look once.
    if let Some(inner) = store.upgrade() {
        wake_workers(&inner);
        inner.config_changed.notify_one();
    }
    while let Some(payload) = received.recv().await {
        let Some(inner) = store.upgrade() else { break };
        let Some((schema, what)) = payload.split_once(':') else {
            continue;
        };
        if schema != inner.schema {
            continue;
        }
        match what.split_once(':') {
            None if what == "work" => wake_workers(&inner),
            // A batch's: `work:INSTANCE:STARTED`. This instance's own woke its workers already.
            Some(("work", batch)) => {
                if let Some((instance, started)) = batch.split_once(':')
                    && uuid::Uuid::try_parse(instance).is_ok_and(|id| id != inner.instance)
                    && let Ok(started) = started.parse::<usize>()
                {
                    for _ in 0..started.min(MAX_WAKE) {
                        inner.work.notify_one();
                    }
                }
            }
            None if what == "config" => {
                inner.config_changed.notify_one();
                // A trigger enabled again, or with a higher cap, may have executions ready.
                wake_workers(&inner);
            }
            Some(("cancel", id)) => {
                if let Ok(id) = uuid::Uuid::try_parse(id) {
                    inner.cancel_asked(id);
                }
            }
            _ => {}
        }
    }
    driver.abort();
    Ok(())
}

/// Wakes every idle worker, and the next one to wait if none is waiting now.
fn wake_workers(inner: &Inner) {
    inner.work.notify_waiters();
    inner.work.notify_one();
}
