//! Executions in the database: claimed under leases by the workers of any instance, finished,
//! listed and looked up.

use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;
use tokio_postgres::Row;
use uuid::Uuid;

use super::batch::{Submission, UNAVAILABLE_RETRY_AFTER};
use super::{CHANNEL, Held, PostgresStore, database_error};
use crate::queue::{
    ClaimedExecution, ExecutionQuery, ExecutionQueue, ExecutionRecord, ExecutionResult,
    ExecutionStatus, ReplayOutcome,
};
use crate::{Caller, Delivery, ExecutionId, ExecutionSink, Outcome, SinkError, StoreError};

/// The oldest queued execution a worker may start now (due, its trigger enabled and under its
/// cap, no other of its key running or ahead of it), locked; rows other workers are claiming
/// are skipped. The claim's statements are prepared once per connection: they are on every
/// execution's way to its command.
macro_rules! claim_candidate {
    () => {
        "
            SELECT queued.id, queued.trigger_id, triggers.max_running, queued.concurrency_key
            FROM executions AS queued
            LEFT JOIN triggers ON triggers.id = queued.trigger_id
            WHERE queued.status = 'queued'
              AND (queued.not_before IS NULL OR queued.not_before <= now())
              AND triggers.enabled IS NOT false
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
                                  OR other.not_before <= now())))))
            ORDER BY queued.id LIMIT 1
            FOR UPDATE OF queued SKIP LOCKED"
    };
}

/// [`claim_candidate!`] as a statement of its own, for the claims that take locks in between.
const CLAIM_CANDIDATE: &str = claim_candidate!();

/// The common claim in one statement: the candidate, claimed by token `$1` with a lease of `$2`
/// seconds when its trigger has no cap and it has no concurrency key (nothing else to lock and
/// check). Always one row: the claimed execution's columns as [`CLAIM`] returns them (NULL
/// when not claimed), then whether there was a candidate at all.
const CLAIM_UNLIMITED: &str = concat!(
    "WITH candidate AS (",
    claim_candidate!(),
    "),
    claimed AS (
        UPDATE executions SET status = 'running', started_at = now(), lease_owner = $1,
            lease_until = now() + make_interval(secs => $2), debounce_until = NULL
        FROM candidate
        WHERE executions.id = candidate.id
          AND candidate.max_running IS NULL AND candidate.concurrency_key IS NULL
        RETURNING executions.id, executions.source, executions.trigger_id, executions.tenant,
                  executions.caller_kind, executions.caller_id, executions.caller_tenant,
                  executions.delivery_id, executions.action, executions.received_at,
                  executions.input, executions.attempt, executions.prompt, executions.deliveries)
    SELECT claimed.*, EXISTS (SELECT 1 FROM candidate)
    FROM (VALUES (1)) AS one LEFT JOIN claimed ON true"
);

/// The claim of execution `$1` by token `$2`, with a lease of `$3` seconds.
const CLAIM: &str = "
    UPDATE executions SET status = 'running', started_at = now(), lease_owner = $2,
        lease_until = now() + make_interval(secs => $3), debounce_until = NULL
    WHERE id = $1
    RETURNING id, source, trigger_id, tenant, caller_kind, caller_id, caller_tenant,
              delivery_id, action, received_at, input, attempt, prompt, deliveries";

/// How execution `$1` ended, if token `$2` still holds its claim. Who asked for a cancel stays
/// only if it was one that ended it.
const RECORD_END: &str = "
    UPDATE executions SET status = $3, exit_code = $4, output_tail = $5,
        finished_at = now(), lease_owner = NULL, lease_until = NULL,
        cancelled_by = CASE $3 WHEN 'cancelled' THEN cancelled_by END,
        replaced_by = CASE $3 WHEN 'cancelled' THEN replaced_by END
    WHERE id = $1 AND lease_owner = $2";

const RECORD_COLUMNS: &str = "id, status, source, trigger_id, tenant, action, created_at, \
     started_at, finished_at, exit_code, output_tail, attempt, replay_of, replayed_by, \
     cancelled_by, prompt, concurrency_key, deliveries, replaced_by";

/// The same without the output (NULL in its place): a list leaves it, and its TOAST, unread.
const LIST_COLUMNS: &str = "id, status, source, trigger_id, tenant, action, created_at, \
     started_at, finished_at, exit_code, NULL::bytea, attempt, replay_of, replayed_by, \
     cancelled_by, prompt, concurrency_key, deliveries, replaced_by";

impl ExecutionSink for PostgresStore {
    async fn submit(&self, delivery: Delivery) -> Result<Outcome, SinkError> {
        if let Some(subject) = delivery.subject.clone() {
            // In a task of its own, which a deadline that drops this future does not cut
            // short: it sees that its caller gave up and keeps nothing.
            let (reply, answer) = oneshot::channel::<Result<Outcome, SinkError>>();
            let store = self.clone();
            tokio::spawn(async move {
                let mut reply = Some(reply);
                let abandoned = || reply.as_ref().is_none_or(oneshot::Sender::is_closed);
                let outcome = store
                    .submit_with_subject(&delivery, &subject, abandoned)
                    .await;
                if let (Some(reply), Some(outcome)) = (reply.take(), outcome.transpose()) {
                    let _ = reply.send(outcome);
                }
            });
            return answer
                .await
                .unwrap_or_else(|_| Err(SinkError::internal("the store is closed")));
        }
        let (reply, answer) = oneshot::channel();
        let submits = self
            .inner
            .submits
            .as_ref()
            .ok_or_else(|| SinkError::internal("the store is closed"))?;
        submits
            .try_send(Submission { delivery, reply })
            .map_err(|error| match error {
                TrySendError::Full(_) => SinkError::Unavailable {
                    retry_after: UNAVAILABLE_RETRY_AFTER,
                },
                TrySendError::Closed(_) => SinkError::internal("the store is closed"),
            })?;
        // Dropping this future (a deadline) closes `answer`, which the batch checks once its
        // transaction has begun.
        answer
            .await
            .unwrap_or_else(|_| Err(SinkError::internal("the store is closed")))
    }
}

impl ExecutionQueue for PostgresStore {
    async fn execution(&self, id: &ExecutionId) -> Result<Option<ExecutionRecord>, StoreError> {
        self.within_deadline(async {
            let Some(id) = id.as_uuid() else {
                return Ok(None);
            };
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {RECORD_COLUMNS} FROM executions WHERE id = $1"
                ))
                .await
                .map_err(database_error)?;
            client
                .query_opt(&statement, &[&id])
                .await
                .map_err(database_error)?
                .map(|row| read_record(&row))
                .transpose()
        })
        .await
    }

    async fn claim(&self) -> Result<Option<ClaimedExecution>, StoreError> {
        let mut client = self.client().await?;
        let token = Uuid::now_v7();
        let unlimited = client
            .prepare_cached(CLAIM_UNLIMITED)
            .await
            .map_err(database_error)?;
        let row = client
            .query_one(&unlimited, &[&token, &self.inner.lease.as_secs_f64()])
            .await
            .map_err(database_error)?;
        if let Some(id) = row.try_get::<_, Option<Uuid>>(0).map_err(database_error)? {
            // Committed with the statement, its lease just begun: no renewal was due before.
            let claimed = read_claimed(&row)?;
            self.hold(id, token);
            if let Some(held) = self.leases().get_mut(&id) {
                held.committed = true;
            }
            return Ok(Some(claimed));
        }
        if !row.try_get::<_, bool>(14).map_err(database_error)? {
            return Ok(None);
        }
        // The candidate's trigger has a cap, or it has a concurrency key: claimed in a
        // transaction that takes their locks and checks them again.
        let transaction = client.transaction().await.map_err(database_error)?;
        // Skips what other workers are claiming right now; the cap and the key are checked
        // again below, under their locks, because this snapshot may miss a claim being
        // committed.
        let candidates = transaction
            .prepare_cached(CLAIM_CANDIDATE)
            .await
            .map_err(database_error)?;
        let Some(candidate) = transaction
            .query_opt(&candidates, &[])
            .await
            .map_err(database_error)?
        else {
            return Ok(None);
        };
        let id: Uuid = candidate.get(0);
        let trigger: Uuid = candidate.get(1);
        if let Some(max_running) = candidate.get::<_, Option<i32>>(2) {
            // Claims of one capped trigger take turns: each counts what the last committed.
            transaction
                .execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))",
                    &[&trigger],
                )
                .await
                .map_err(database_error)?;
            let running: i64 = transaction
                .query_one(
                    "SELECT count(*) FROM executions WHERE trigger_id = $1 AND status = 'running'",
                    &[&trigger],
                )
                .await
                .map_err(database_error)?
                .get(0);
            if running >= i64::from(max_running) {
                // Another instance filled the cap a moment ago: the workers' next look (a
                // finish here, a notification or their poll) tries again.
                return Ok(None);
            }
        }
        if let Some(key) = candidate.get::<_, Option<String>>(3) {
            // The key's lock without waiting: a delivery that holds it may be replacing or
            // joining this very row, whose lock this claim holds. Taken, the key is checked
            // again with what was committed since the snapshot above.
            let free: bool = transaction
                .query_one(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended($1::uuid::text || ':' || $2, 1))
                        AND NOT EXISTS (
                            SELECT 1 FROM executions AS other
                            WHERE other.trigger_id = $1 AND other.concurrency_key = $2
                              AND other.id <> $3
                              AND (other.status = 'running'
                                   OR (other.status = 'queued' AND other.id < $3
                                       AND (other.debounce_until IS NULL
                                            OR other.not_before <= now()))))",
                    &[&trigger, &key, &id],
                )
                .await
                .map_err(database_error)?
                .get(0);
            if !free {
                // Busy, or being decided by a delivery: that one's commit wakes the workers.
                return Ok(None);
            }
        }
        let claim = transaction
            .prepare_cached(CLAIM)
            .await
            .map_err(database_error)?;
        let row = transaction
            .query_one(&claim, &[&id, &token, &self.inner.lease.as_secs_f64()])
            .await
            .map_err(database_error)?;
        let claimed = read_claimed(&row)?;
        // Held from before the commit, so that the renewal never misses it.
        self.hold(id, token);
        if let Err(error) = transaction.commit().await {
            self.release(&ExecutionId::from(id));
            return Err(database_error(error));
        }
        if let Some(held) = self.leases().get_mut(&id) {
            held.committed = true;
        }
        Ok(Some(claimed))
    }

    async fn finish(&self, id: &ExecutionId, result: ExecutionResult) -> Result<(), StoreError> {
        let Some((id, token)) = self.ending(id) else {
            tracing::warn!(execution_id = %id, "not claimed here: the result is not recorded");
            return Ok(());
        };
        // The claim stays held (and its lease renewed) until the result is written, so that
        // a database that is away for a while does not let another instance run it again.
        let updated =
            self.release_unless_unavailable(id, self.record_end(id, token, &result).await)?;
        if updated == 0 {
            tracing::warn!(execution_id = %id, status = %result.status, "the lease had lapsed: the result is not recorded");
        }
        // A trigger at its cap of running executions has room again.
        self.inner.work.notify_one();
        Ok(())
    }

    fn work_queued(&self) -> impl std::future::Future<Output = ()> + Send {
        let (work, due) = (Arc::clone(&self.inner.work), Arc::clone(&self.inner.due));
        async move { due.wait(&work).await }
    }

    async fn retry(
        &self,
        id: &ExecutionId,
        result: ExecutionResult,
        not_before: SystemTime,
    ) -> Result<(), StoreError> {
        let Some((id, token)) = self.ending(id) else {
            tracing::warn!(execution_id = %id, "not claimed here: the result is not recorded");
            return Ok(());
        };
        let requeued = async {
            let client = self.client().await?;
            client
                .execute(
                    // A cancel asked of the attempt that failed is not the next attempt's; a
                    // replaced execution is not tried again: its subject moved on.
                    "UPDATE executions
                 SET status = CASE WHEN replaced_by IS NULL THEN 'queued' ELSE 'cancelled' END,
                     attempt = attempt + CASE WHEN replaced_by IS NULL THEN 1 ELSE 0 END,
                     not_before = $3, exit_code = $4, output_tail = $5, started_at = NULL,
                     finished_at = CASE WHEN replaced_by IS NULL THEN NULL ELSE now() END,
                     lease_owner = NULL, lease_until = NULL, cancel_requested = false,
                     cancelled_by = NULL
                 WHERE id = $1 AND lease_owner = $2",
                    &[
                        &id,
                        &token,
                        &not_before,
                        &result.exit_code,
                        &result.output_tail,
                    ],
                )
                .await
                .map_err(database_error)
        }
        .await;
        self.release_unless_unavailable(id, requeued)?;
        self.inner.work.notify_one();
        Ok(())
    }

    async fn retry_interrupted(&self, max_attempts: u32) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let max_attempts = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        let requeued = client
            .query_one(
                "WITH requeued AS (
                     UPDATE executions SET status = 'queued', attempt = attempt + 1,
                         not_before = NULL, started_at = NULL, finished_at = NULL,
                         cancel_requested = false, cancelled_by = NULL
                     WHERE status = 'interrupted' AND attempt < $1 AND replaced_by IS NULL
                     RETURNING 1)
                 SELECT count(*), pg_notify($2, $3) FROM requeued",
                &[&max_attempts, &CHANNEL, &self.work_payload()],
            )
            .await
            .map_err(database_error)?
            .get::<_, i64>(0);
        if requeued > 0 {
            self.inner.work.notify_waiters();
        }
        Ok(usize::try_from(requeued).unwrap_or(usize::MAX))
    }

    async fn list(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionRecord>, StoreError> {
        self.within_deadline(async {
            let before = match &query.before {
                Some(id) => match id.as_uuid() {
                    Some(id) => Some(id),
                    // No execution of this store has that id: nothing is older than it.
                    None => return Ok(Vec::new()),
                },
                None => None,
            };
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {LIST_COLUMNS} FROM executions
                     WHERE tenant = $1
                       AND ($2::uuid[] IS NULL OR trigger_id = ANY($2))
                       AND ($3::text IS NULL OR status = $3)
                       AND ($4::uuid IS NULL OR id < $4)
                       AND ($6::text IS NULL OR concurrency_key = $6)
                     ORDER BY id DESC LIMIT $5"
                ))
                .await
                .map_err(database_error)?;
            client
                .query(
                    &statement,
                    &[
                        &query.tenant,
                        &query.triggers,
                        &query.status.map(ExecutionStatus::as_str),
                        &before,
                        &i64::try_from(query.limit).unwrap_or(i64::MAX),
                        &query.concurrency_key,
                    ],
                )
                .await
                .map_err(database_error)?
                .iter()
                .map(read_record)
                .collect()
        })
        .await
    }

    async fn cancel(
        &self,
        id: &ExecutionId,
        by: &str,
    ) -> Result<Option<ExecutionStatus>, StoreError> {
        self.within_deadline(async {
            let Some(id) = id.as_uuid() else {
                return Ok(None);
            };
            let client = self.client().await?;
            let status: Option<String> = client
                .query_opt(
                    // Queued: cancelled here and now. Running: the instance whose worker runs it
                    // is told, and ends it. Anything else: as it is.
                    "WITH asked AS (
                         UPDATE executions
                         SET status = CASE status WHEN 'queued' THEN 'cancelled' ELSE status END,
                             finished_at = CASE status WHEN 'queued' THEN now() ELSE finished_at END,
                             cancel_requested = cancel_requested OR status = 'running',
                             cancelled_by = CASE WHEN status IN ('queued', 'running')
                                 THEN coalesce(cancelled_by, $4) ELSE cancelled_by END
                         WHERE id = $1 RETURNING status)
                     SELECT status, CASE status WHEN 'running' THEN pg_notify($2, $3) END
                     FROM asked",
                    &[
                        &id,
                        &CHANNEL,
                        &format!("{}:cancel:{id}", self.inner.schema),
                        &by,
                    ],
                )
                .await
                .map_err(database_error)?
                .map(|row| row.get(0));
            Ok(status.map(|status| status.parse().unwrap_or(ExecutionStatus::Error)))
        })
        .await
    }

    fn cancel_requested(&self, id: &ExecutionId) -> impl std::future::Future<Output = ()> + Send {
        let held = id.as_uuid().and_then(|id| {
            let asked = self
                .inner
                .cancels
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&id)
                .cloned()?;
            let token = self.leases().get(&id)?.token;
            Some((id, token, asked))
        });
        let store = self.clone();
        async move {
            let Some((id, token, asked)) = held else {
                return std::future::pending().await;
            };
            loop {
                // A notification (or a renewal) is a wake-up only: any role that may connect
                // can send one. What the row says decides.
                asked.notified().await;
                match store.cancel_is_due(id, token).await {
                    Ok(true) => return,
                    Ok(false) => {}
                    // The next renewal asks again.
                    Err(error) => {
                        tracing::warn!(execution_id = %id, %error, "could not check for a cancel");
                    }
                }
            }
        }
    }

    async fn record_output(
        &self,
        id: &ExecutionId,
        output_tail: Vec<u8>,
    ) -> Result<(), StoreError> {
        let Some((id, token)) = self.held(id) else {
            return Ok(());
        };
        let client = self.client().await?;
        let record = client
            .prepare_cached(
                "UPDATE executions SET output_tail = $3 WHERE id = $1 AND lease_owner = $2",
            )
            .await
            .map_err(database_error)?;
        client
            .execute(&record, &[&id, &token, &output_tail])
            .await
            .map_err(database_error)?;
        Ok(())
    }

    async fn replay(&self, id: &ExecutionId, by: &str) -> Result<ReplayOutcome, StoreError> {
        self.within_deadline(async {
            let Some(original) = id.as_uuid() else {
                return Ok(ReplayOutcome::NotFound);
            };
            let copy = Uuid::now_v7();
            let client = self.client().await?;
            // The trigger's row is locked (shared) for the statement: a removal or a replacement
            // of the triggers waits for it, or it for them, and then sees the replay, or the replay
            // sees the trigger gone.
            let row = client
                .query_one(
                    "WITH original AS (
                         SELECT id, trigger_id, tenant, source, action, caller_kind, caller_id,
                                caller_tenant, input, prompt, concurrency_key
                         FROM executions WHERE id = $1),
                     trigger AS (
                         SELECT triggers.enabled FROM triggers
                         JOIN original ON triggers.id = original.trigger_id
                         FOR KEY SHARE OF triggers),
                     copied AS (
                         INSERT INTO executions (id, trigger_id, tenant, source, action, delivery_id,
                             caller_kind, caller_id, caller_tenant, input, status, received_at,
                             created_at, replay_of, replayed_by, prompt, concurrency_key)
                         SELECT $2, trigger_id, tenant, source, action, NULL, caller_kind, caller_id,
                                caller_tenant, input, 'queued', now(), now(), id, $3, prompt,
                                concurrency_key
                         FROM original WHERE (SELECT enabled FROM trigger)
                         RETURNING 1)
                     SELECT EXISTS (SELECT FROM original), (SELECT enabled FROM trigger),
                            CASE WHEN EXISTS (SELECT FROM copied) THEN pg_notify($4, $5) END",
                    &[&original, &copy, &by, &CHANNEL, &self.work_payload()],
                )
                .await
                .map_err(database_error)?;
            let outcome = match (row.get::<_, bool>(0), row.get::<_, Option<bool>>(1)) {
                (false, _) => ReplayOutcome::NotFound,
                (true, None) => ReplayOutcome::TriggerRemoved,
                (true, Some(false)) => ReplayOutcome::TriggerDisabled,
                (true, Some(true)) => {
                    self.inner.work.notify_one();
                    ReplayOutcome::Started(ExecutionId::from(copy))
                }
            };
            Ok(outcome)
        })
        .await
    }

    async fn count(&self, status: ExecutionStatus) -> Result<u64, StoreError> {
        self.within_deadline(async {
            let client = self.client().await?;
            let count: i64 = client
                .query_one(
                    "SELECT count(*) FROM executions WHERE status = $1",
                    &[&status.as_str()],
                )
                .await
                .map_err(database_error)?
                .get(0);
            Ok(count.unsigned_abs())
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("SELECT 1", &[])
            .await
            .map_err(database_error)?;
        Ok(())
    }

    async fn prune_finished(&self, before: SystemTime, limit: usize) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let pruned = client
            .execute(
                "WITH doomed AS (
                     SELECT id FROM executions
                     WHERE finished_at IS NOT NULL AND finished_at < $1
                     ORDER BY finished_at LIMIT $2
                     FOR UPDATE SKIP LOCKED),
                 keys AS (
                     DELETE FROM delivery_keys WHERE execution_id IN (SELECT id FROM doomed))
                 DELETE FROM executions WHERE id IN (SELECT id FROM doomed)",
                &[&before, &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(database_error)?;
        Ok(usize::try_from(pruned).unwrap_or(usize::MAX))
    }
}

impl PostgresStore {
    /// The execution and the token of this instance's claim on it, if it holds one.
    fn held(&self, id: &ExecutionId) -> Option<(Uuid, Uuid)> {
        let id = id.as_uuid()?;
        self.leases().get(&id).map(|held| (id, held.token))
    }

    /// Starts renewing the lease of a claim, and listening for a cancel of it.
    fn hold(&self, id: Uuid, token: Uuid) {
        self.leases().insert(
            id,
            Held {
                token,
                committed: false,
                ending: false,
            },
        );
        self.inner
            .cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::new(tokio::sync::Notify::new()));
    }

    /// Lets go of the claim on `id` once its end is written, or failed for good; a database
    /// that is away leaves it held, for the worker to record the end again.
    fn release_unless_unavailable<T>(
        &self,
        id: Uuid,
        written: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if !matches!(&written, Err(error) if error.is_unavailable()) {
            self.release(&ExecutionId::from(id));
        }
        written
    }

    /// Like [`held`](Self::held), for a worker about to record the end: the lease is still
    /// renewed until [`release`](Self::release), but a renewal no longer takes a claim it
    /// cannot find for a lost one.
    fn ending(&self, id: &ExecutionId) -> Option<(Uuid, Uuid)> {
        let id = id.as_uuid()?;
        self.leases().get_mut(&id).map(|held| {
            held.ending = true;
            (id, held.token)
        })
    }

    /// Like [`held`](Self::held), and stops renewing the lease.
    fn release(&self, id: &ExecutionId) -> Option<(Uuid, Uuid)> {
        let id = id.as_uuid()?;
        self.inner
            .cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        self.leases().remove(&id).map(|held| (id, held.token))
    }

    /// Writes how the execution ended, if the claim `token` still holds it: the rows updated.
    async fn record_end(
        &self,
        id: Uuid,
        token: Uuid,
        result: &ExecutionResult,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let end = client
            .prepare_cached(RECORD_END)
            .await
            .map_err(database_error)?;
        client
            .execute(
                &end,
                &[
                    &id,
                    &token,
                    &result.status.as_str(),
                    &result.exit_code,
                    &result.output_tail,
                ],
            )
            .await
            .map_err(database_error)
    }

    /// Whether the worker holding `id` under `token` must end it: a cancel of it is recorded,
    /// or the claim is no longer this worker's (its lease lapsed and it was taken over, or the
    /// execution is gone).
    async fn cancel_is_due(&self, id: Uuid, token: Uuid) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT cancel_requested OR lease_owner IS DISTINCT FROM $2 OR status <> 'running'
                 FROM executions WHERE id = $1",
            )
            .await
            .map_err(database_error)?;
        Ok(client
            .query_opt(&statement, &[&id, &token])
            .await
            .map_err(database_error)?
            .is_none_or(|row| row.get(0)))
    }

    pub(super) fn work_payload(&self) -> String {
        format!("{}:work", self.inner.schema)
    }
}

fn read_record(row: &Row) -> Result<ExecutionRecord, StoreError> {
    let status: String = row.try_get(1).map_err(database_error)?;
    let source: String = row.try_get(2).map_err(database_error)?;
    let attempt: i32 = row.try_get(11).map_err(database_error)?;
    Ok(ExecutionRecord {
        id: ExecutionId::from(row.try_get::<_, Uuid>(0).map_err(database_error)?),
        status: status.parse().unwrap_or(ExecutionStatus::Error),
        source: source.parse().map_err(StoreError::new)?,
        trigger_id: row.try_get(3).map_err(database_error)?,
        tenant: row.try_get(4).map_err(database_error)?,
        action: row.try_get(5).map_err(database_error)?,
        created_at: row.try_get(6).map_err(database_error)?,
        started_at: row.try_get(7).map_err(database_error)?,
        finished_at: row.try_get(8).map_err(database_error)?,
        exit_code: row.try_get(9).map_err(database_error)?,
        output_tail: row
            .try_get::<_, Option<Vec<u8>>>(10)
            .map_err(database_error)?
            .unwrap_or_default(),
        attempt: attempt.max(0).unsigned_abs(),
        replay_of: row
            .try_get::<_, Option<Uuid>>(12)
            .map_err(database_error)?
            .map(ExecutionId::from),
        replayed_by: row.try_get(13).map_err(database_error)?,
        cancelled_by: row.try_get(14).map_err(database_error)?,
        prompt: row.try_get(15).map_err(database_error)?,
        concurrency_key: row.try_get(16).map_err(database_error)?,
        deliveries: row
            .try_get::<_, i32>(17)
            .map_err(database_error)?
            .max(1)
            .unsigned_abs(),
        replaced_by: row
            .try_get::<_, Option<Uuid>>(18)
            .map_err(database_error)?
            .map(ExecutionId::from),
    })
}

fn read_claimed(row: &Row) -> Result<ClaimedExecution, StoreError> {
    let source: String = row.try_get(1).map_err(database_error)?;
    let kind: String = row.try_get(4).map_err(database_error)?;
    let caller = Caller::from_columns(
        &kind,
        row.try_get(5).map_err(database_error)?,
        row.try_get(6).map_err(database_error)?,
    );
    let mut delivery = Delivery::new(
        source.parse().map_err(StoreError::new)?,
        row.try_get(2).map_err(database_error)?,
        row.try_get::<_, String>(3).map_err(database_error)?.into(),
        caller,
        row.try_get::<_, Vec<u8>>(10)
            .map_err(database_error)?
            .into(),
    );
    delivery.delivery_id = row
        .try_get::<_, Option<String>>(7)
        .map_err(database_error)?
        .map(String::into_boxed_str);
    delivery.action = row.try_get(8).map_err(database_error)?;
    delivery.received_at = row.try_get(9).map_err(database_error)?;
    delivery.prompt = row.try_get(12).map_err(database_error)?;
    let attempt: i32 = row.try_get(11).map_err(database_error)?;
    Ok(ClaimedExecution {
        id: ExecutionId::from(row.try_get::<_, Uuid>(0).map_err(database_error)?),
        delivery,
        attempt: attempt.max(0).unsigned_abs(),
        deliveries: row
            .try_get::<_, i32>(13)
            .map_err(database_error)?
            .max(1)
            .unsigned_abs(),
    })
}
