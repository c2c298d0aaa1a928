//! Executions in the database: kept by the database thread's group commits, claimed and
//! finished by workers, looked up by the status endpoint.

use std::sync::Arc;
use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::codec::{from_unix_millis, unix_millis};
use super::thread::Command;
use super::{FULL_RETRY_AFTER, SqliteStore};
use crate::Caller;
use crate::queue::{
    ClaimedExecution, ExecutionQuery, ExecutionQueue, ExecutionRecord, ExecutionResult,
    ExecutionStatus, ReplayOutcome,
};
use crate::{Delivery, ExecutionId, ExecutionSink, Outcome, SinkError, StoreError};

impl ExecutionSink for SqliteStore {
    async fn submit(&self, delivery: Delivery) -> Result<Outcome, SinkError> {
        let (reply, answer) = oneshot::channel();
        let commands = self.commands().map_err(SinkError::internal)?;
        commands
            .try_send(Command::Submit { delivery, reply })
            .map_err(|error| match error {
                TrySendError::Full(_) => SinkError::Unavailable {
                    retry_after: FULL_RETRY_AFTER,
                },
                TrySendError::Closed(_) => SinkError::internal("the database thread stopped"),
            })?;
        // Dropping this future (a deadline) closes `answer`, which the thread checks before
        // it keeps the delivery.
        answer
            .await
            .unwrap_or_else(|_| Err(SinkError::internal("the database thread stopped")))
    }
}

impl ExecutionQueue for SqliteStore {
    async fn execution(&self, id: &ExecutionId) -> Result<Option<ExecutionRecord>, StoreError> {
        let id = id.to_string();
        self.call(move |connection| {
            connection
                .prepare_cached(
                    "SELECT id, status, source, trigger_id, tenant, action, created_at, started_at,
                            finished_at, exit_code, output_tail, attempt, replay_of, replayed_by,
                            cancelled_by, prompt, concurrency_key, deliveries, replaced_by
                     FROM executions WHERE id = ?1",
                )?
                .query_row(params![id], read_record)
                .optional()
        })
        .await
    }

    async fn claim(&self) -> Result<Option<ClaimedExecution>, StoreError> {
        // Unsynced: the time to agent does not wait for an fsync. A claim a power loss undoes
        // leaves its execution queued, to run once more after the restart; one it keeps is
        // `interrupted` then, as after a crash.
        self.call(|connection| {
            super::unsynced(connection, |transaction| transaction
                .prepare_cached(
                    // A keyed execution waits while its key runs, or an older one of its key
                    // waits its turn (queued, not debouncing): one at a time, in order.
                    "UPDATE executions SET status = 'running', started_at = ?1, debounce_until = NULL
                     WHERE id = (
                         SELECT queued.id FROM executions AS queued
                         LEFT JOIN triggers ON triggers.id = queued.trigger_id
                         WHERE queued.status = 'queued'
                           AND (queued.not_before IS NULL OR queued.not_before <= ?1)
                           AND coalesce(triggers.enabled, 1)
                           AND (triggers.max_running IS NULL OR triggers.max_running > (
                               SELECT count(*) FROM executions AS running
                               WHERE running.trigger_id = queued.trigger_id
                                 AND running.status = 'running'))
                           AND (queued.concurrency_key IS NULL OR NOT EXISTS (
                               SELECT 1 FROM executions AS other
                               WHERE other.trigger_id = queued.trigger_id
                                 AND other.concurrency_key = queued.concurrency_key
                                 AND (other.status = 'running'
                                      OR (other.status = 'queued' AND other.id < queued.id
                                          AND (other.debounce_until IS NULL
                                               OR other.not_before <= ?1)))))
                         ORDER BY queued.id LIMIT 1)
                     RETURNING id, source, trigger_id, tenant, caller_kind, caller_id, caller_tenant,
                               delivery_id, action, received_at, input, attempt, prompt,
                               deliveries",
                )?
                .query_row(params![unix_millis(SystemTime::now())], read_claimed)
                .optional())
        })
        .await
    }

    async fn finish(&self, id: &ExecutionId, result: ExecutionResult) -> Result<(), StoreError> {
        let id = id.to_string();
        let (reply, answer) = oneshot::channel();
        self.commands()?
            .send(Command::Finish {
                id: id.clone(),
                result,
                reply,
            })
            .await
            .map_err(|_| StoreError::new("the database thread stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::new("the database thread stopped"))??;
        self.inner.replaced.forget(&id);
        // A trigger at its cap of running executions (or a key) has room again.
        self.inner.work.notify_one();
        Ok(())
    }

    fn work_queued(&self) -> impl std::future::Future<Output = ()> + Send {
        let (work, due) = (Arc::clone(&self.inner.work), Arc::clone(&self.inner.due));
        async move { due.wait(&work).await }
    }

    async fn prune_finished(&self, before: SystemTime, limit: usize) -> Result<usize, StoreError> {
        let before = unix_millis(before);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |connection| {
            let transaction = connection.transaction()?;
            let ids: Vec<String> = transaction
                .prepare_cached(
                    "SELECT id FROM executions
                     WHERE finished_at IS NOT NULL AND finished_at < ?1 ORDER BY finished_at LIMIT ?2",
                )?
                .query_map(params![before, limit], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            {
                let mut keys =
                    transaction.prepare_cached("DELETE FROM delivery_keys WHERE execution_id = ?1")?;
                let mut executions =
                    transaction.prepare_cached("DELETE FROM executions WHERE id = ?1")?;
                for id in &ids {
                    keys.execute(params![id])?;
                    executions.execute(params![id])?;
                }
            }
            transaction.commit()?;
            Ok(ids.len())
        })
        .await
    }

    async fn retry(
        &self,
        id: &ExecutionId,
        result: ExecutionResult,
        not_before: SystemTime,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.inner.replaced.forget(&id);
        self.call(move |connection| {
            connection
                .prepare_cached(
                    // A replaced execution is not tried again: its subject moved on.
                    "UPDATE executions
                     SET status = CASE WHEN replaced_by IS NULL THEN 'queued' ELSE 'cancelled' END,
                         attempt = attempt + (replaced_by IS NULL), not_before = ?2,
                         exit_code = ?3, output_tail = ?4, started_at = NULL,
                         finished_at = CASE WHEN replaced_by IS NULL THEN NULL ELSE ?5 END,
                         cancelled_by = NULL
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    unix_millis(not_before),
                    result.exit_code,
                    result.output_tail,
                    unix_millis(SystemTime::now())
                ])
                .map(drop)
        })
        .await?;
        self.inner.work.notify_one();
        Ok(())
    }

    async fn retry_interrupted(&self, max_attempts: u32) -> Result<usize, StoreError> {
        let requeued = self
            .call(move |connection| {
                connection.execute(
                    "UPDATE executions SET status = 'queued', attempt = attempt + 1, not_before = NULL,
                         started_at = NULL, finished_at = NULL, cancelled_by = NULL
                     WHERE status = 'interrupted' AND attempt < ?1 AND replaced_by IS NULL",
                    params![max_attempts],
                )
            })
            .await?;
        for _ in 0..requeued {
            self.inner.work.notify_one();
        }
        Ok(requeued)
    }

    async fn list(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionRecord>, StoreError> {
        let tenant = query.tenant.clone();
        // The trigger scope as a JSON array, read back with json_each: one statement for any
        // number of triggers.
        let triggers = query.triggers.as_ref().map(|ids| {
            serde_json::to_string(&ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
                .expect("a list of strings serialises")
        });
        let status = query.status.map(ExecutionStatus::as_str);
        let before = query.before.as_ref().map(ExecutionId::to_string);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let concurrency_key = query.concurrency_key.clone();
        self.call(move |connection| {
            connection
                // Without the output (NULL in its place) nor the input: a page of a hundred
                // would otherwise read megabytes only to drop them.
                .prepare_cached(
                    "SELECT id, status, source, trigger_id, tenant, action, created_at, started_at,
                            finished_at, exit_code, NULL, attempt, replay_of, replayed_by,
                            cancelled_by, prompt, concurrency_key, deliveries, replaced_by
                     FROM executions
                     WHERE tenant = ?1
                       AND (?2 IS NULL OR trigger_id IN (SELECT value FROM json_each(?2)))
                       AND (?3 IS NULL OR status = ?3)
                       AND (?4 IS NULL OR id < ?4)
                       AND (?6 IS NULL OR concurrency_key = ?6)
                     ORDER BY id DESC LIMIT ?5",
                )?
                .query_map(
                    params![tenant, triggers, status, before, limit, concurrency_key],
                    read_record,
                )?
                .collect()
        })
        .await
    }

    async fn cancel(
        &self,
        id: &ExecutionId,
        by: &str,
    ) -> Result<Option<ExecutionStatus>, StoreError> {
        let (id, by) = (id.to_string(), by.to_owned());
        let status: Option<String> = self
            .call(move |connection| {
                // Queued: cancelled here and now. Running: its worker is told (by the caller)
                // and records the end. Anything else: as it is.
                connection
                    .prepare_cached(
                        "UPDATE executions
                         SET status = CASE status WHEN 'queued' THEN 'cancelled' ELSE status END,
                             finished_at = CASE status WHEN 'queued' THEN ?2 ELSE finished_at END,
                             cancelled_by = CASE WHEN status IN ('queued', 'running')
                                 THEN coalesce(cancelled_by, ?3) ELSE cancelled_by END
                         WHERE id = ?1 RETURNING status",
                    )?
                    .query_row(params![id, unix_millis(SystemTime::now()), by], |row| {
                        row.get(0)
                    })
                    .optional()
            })
            .await?;
        Ok(status.map(|status| status.parse().unwrap_or(ExecutionStatus::Error)))
    }

    fn cancel_requested(&self, id: &ExecutionId) -> impl std::future::Future<Output = ()> + Send {
        // Only a replace asks through the store: the executions API tells this process's
        // workers directly.
        let (replaced, id) = (Arc::clone(&self.inner.replaced), id.to_string());
        async move { replaced.wait(&id).await }
    }

    async fn record_output(
        &self,
        id: &ExecutionId,
        output_tail: Vec<u8>,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.call(move |connection| {
            connection
                .prepare_cached(
                    "UPDATE executions SET output_tail = ?2 WHERE id = ?1 AND status = 'running'",
                )?
                .execute(params![id, output_tail])
                .map(drop)
        })
        .await
    }

    async fn replay(&self, id: &ExecutionId, by: &str) -> Result<ReplayOutcome, StoreError> {
        let (original, copy, by) = (id.to_string(), ExecutionId::new_v7(), by.to_owned());
        let copy_text = copy.to_string();
        let outcome = self
            .call(move |connection| {
                let transaction = connection.transaction()?;
                // The trigger as it is now: NULL when it no longer exists.
                let found: Option<Option<bool>> = transaction
                    .prepare_cached(
                        "SELECT triggers.enabled FROM executions
                         LEFT JOIN triggers ON triggers.id = executions.trigger_id
                         WHERE executions.id = ?1",
                    )?
                    .query_row(params![original], |row| row.get(0))
                    .optional()?;
                let outcome = match found {
                    None => return Ok(ReplayOutcome::NotFound),
                    Some(None) => return Ok(ReplayOutcome::TriggerRemoved),
                    Some(Some(false)) => return Ok(ReplayOutcome::TriggerDisabled),
                    Some(Some(true)) => ReplayOutcome::Started(copy),
                };
                let now = unix_millis(SystemTime::now());
                transaction
                    .prepare_cached(
                        "INSERT INTO executions (id, trigger_id, tenant, source, action, delivery_id,
                             caller_kind, caller_id, caller_tenant, input, status, received_at,
                             created_at, replay_of, replayed_by, prompt, concurrency_key)
                         SELECT ?2, trigger_id, tenant, source, action, NULL, caller_kind, caller_id,
                                caller_tenant, input, 'queued', ?3, ?3, id, ?4, prompt,
                                concurrency_key
                         FROM executions WHERE id = ?1",
                    )?
                    .execute(params![original, copy_text, now, by])?;
                transaction.commit()?;
                Ok(outcome)
            })
            .await?;
        if let ReplayOutcome::Started(_) = outcome {
            self.inner.work.notify_one();
        }
        Ok(outcome)
    }

    async fn count(&self, status: ExecutionStatus) -> Result<u64, StoreError> {
        self.call(move |connection| {
            connection
                .prepare_cached("SELECT count(*) FROM executions WHERE status = ?1")?
                .query_row(params![status.as_str()], |row| row.get::<_, i64>(0))
        })
        .await
        .map(|count| count.unsigned_abs())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Through the database thread, as every query: a thread stuck on a lock fails it too.
        self.call(|connection| connection.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }
}

/// Records how execution `id` ended, in the database thread's group `transaction`
/// ([`ExecutionQueue::finish`]).
pub(super) fn record_end(
    transaction: &rusqlite::Transaction<'_>,
    id: &str,
    result: &ExecutionResult,
) -> rusqlite::Result<()> {
    transaction
        .prepare_cached(
            // Who asked for a cancel stays only if it was one that ended it.
            "UPDATE executions SET status = ?2, exit_code = ?3, output_tail = ?4, finished_at = ?5,
                 cancelled_by = CASE ?2 WHEN 'cancelled' THEN cancelled_by END,
                 replaced_by = CASE ?2 WHEN 'cancelled' THEN replaced_by END
             WHERE id = ?1",
        )?
        .execute(params![
            id,
            result.status.as_str(),
            result.exit_code,
            result.output_tail,
            unix_millis(SystemTime::now())
        ])
        .map(drop)
}

fn read_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    let status: String = row.get(1)?;
    let source: String = row.get(2)?;
    let trigger_id: String = row.get(3)?;
    Ok(ExecutionRecord {
        id: ExecutionId::from(row.get::<_, String>(0)?),
        status: status.parse().unwrap_or(ExecutionStatus::Error),
        source: source.parse().map_err(|error| column_error(2, error))?,
        trigger_id: Uuid::try_parse(&trigger_id).map_err(|error| column_error(3, error))?,
        tenant: row.get(4)?,
        action: row.get(5)?,
        created_at: from_unix_millis(row.get(6)?),
        started_at: row.get::<_, Option<i64>>(7)?.map(from_unix_millis),
        finished_at: row.get::<_, Option<i64>>(8)?.map(from_unix_millis),
        exit_code: row.get(9)?,
        output_tail: row.get::<_, Option<Vec<u8>>>(10)?.unwrap_or_default(),
        attempt: row.get(11)?,
        replay_of: row.get::<_, Option<String>>(12)?.map(ExecutionId::from),
        replayed_by: row.get(13)?,
        cancelled_by: row.get(14)?,
        prompt: row.get(15)?,
        concurrency_key: row.get(16)?,
        deliveries: row.get(17)?,
        replaced_by: row.get::<_, Option<String>>(18)?.map(ExecutionId::from),
    })
}

fn read_claimed(row: &rusqlite::Row<'_>) -> rusqlite::Result<ClaimedExecution> {
    let source: String = row.get(1)?;
    let trigger_id: String = row.get(2)?;
    let tenant: String = row.get(3)?;
    let kind: String = row.get(4)?;
    let caller = Caller::from_columns(&kind, row.get(5)?, row.get(6)?);
    let mut delivery = Delivery::new(
        source.parse().map_err(|error| column_error(1, error))?,
        Uuid::try_parse(&trigger_id).map_err(|error| column_error(2, error))?,
        tenant.into(),
        caller,
        row.get::<_, Vec<u8>>(10)?.into(),
    );
    delivery.delivery_id = row.get::<_, Option<String>>(7)?.map(String::into_boxed_str);
    delivery.action = row.get::<_, Option<String>>(8)?;
    delivery.received_at = from_unix_millis(row.get(9)?);
    delivery.prompt = row.get(12)?;
    Ok(ClaimedExecution {
        id: ExecutionId::from(row.get::<_, String>(0)?),
        delivery,
        attempt: row.get(11)?,
        deliveries: row.get(13)?,
    })
}

fn column_error(
    column: usize,
    error: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(error))
}
