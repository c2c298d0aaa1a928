//! Deliveries with a [`Subject`]: each decided (queue, skip, replace or join) in a transaction
//! of its own that holds the key's advisory lock, so that instances sharing the database take
//! turns per key: no two waiting debounced executions of one key, and a replace sees every
//! execution of its key. Deliveries without a subject keep the batched path.
//!
//! Lock order: a delivery takes the key's lock, then rows of that key. A claim holds its row
//! and only *tries* the key's lock (see `claim`), so the two never wait on each other in a
//! circle.

use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::batch::UNAVAILABLE_RETRY_AFTER;
use super::{CHANNEL, PostgresStore, describe};
use crate::concurrency::{OnBusy, Subject};
use crate::{Delivery, ExecutionId, Outcome, SinkError};

/// How many times a delivery is tried again after a deadlock, a serialization failure or a
/// copy of it that another instance kept under another key at the same moment.
const MAX_TRIES: usize = 5;

impl PostgresStore {
    /// Keeps one delivery with a subject; `abandoned` tells whether its caller stopped waiting
    /// (it is then not kept: its sender retries).
    pub(super) async fn submit_with_subject(
        &self,
        delivery: &Delivery,
        subject: &Subject,
        abandoned: impl Fn() -> bool,
    ) -> Result<Option<Outcome>, SinkError> {
        let _slot = self
            .inner
            .subject_slots
            .acquire()
            .await
            .map_err(|_| SinkError::internal("the store is closed"))?;
        let mut client = self.inner.pool.get().await.map_err(|error| {
            tracing::error!(%error, "could not keep a delivery");
            SinkError::Unavailable {
                retry_after: UNAVAILABLE_RETRY_AFTER,
            }
        })?;
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .decide(&mut client, delivery, subject, &abandoned)
                .await
            {
                Ok(outcome) => return Ok(outcome),
                Err(error)
                    if tries < MAX_TRIES
                        && matches!(
                            error.code(),
                            Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED
                                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                                || *code == SqlState::UNIQUE_VIOLATION
                        ) => {}
                Err(error) if error.is_closed() || error.as_db_error().is_none() => {
                    tracing::error!(error = %describe(&error), "could not keep a delivery");
                    return Err(SinkError::Unavailable {
                        retry_after: UNAVAILABLE_RETRY_AFTER,
                    });
                }
                Err(error) => {
                    return Err(SinkError::internal(format!(
                        "database: {}",
                        describe(&error)
                    )));
                }
            }
        }
    }

    async fn decide(
        &self,
        client: &mut deadpool_postgres::Object,
        delivery: &Delivery,
        subject: &Subject,
        abandoned: &impl Fn() -> bool,
    ) -> Result<Option<Outcome>, tokio_postgres::Error> {
        let transaction = client.transaction().await?;
        let trigger = delivery.trigger_id;
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text || ':' || $2, 1))",
                &[&trigger, &subject.key],
            )
            .await?;
        // A redelivery: its copies share its key, so they waited for this lock and see it.
        let keys: Vec<String> = delivery.idempotency_keys().collect();
        if !keys.is_empty()
            && let Some(row) = transaction
                .query_opt(
                    "SELECT execution_id FROM delivery_keys
                     WHERE trigger_id = $1 AND key = ANY($2) LIMIT 1",
                    &[&trigger, &keys],
                )
                .await?
        {
            return Ok(Some(Outcome::Replayed(ExecutionId::from(
                row.get::<_, Uuid>(0),
            ))));
        }
        if abandoned() {
            return Ok(None);
        }
        let (caller_kind, caller_id, caller_tenant) = delivery.caller.columns();
        let received_at = delivery.received_at;
        if let Some(debounce) = subject.debounce {
            // Takes the newest input, prompt, action, delivery id and caller; starts once
            // quiet, but never past the deadline its first delivery set.
            let joined = transaction
                .query_opt(
                    "UPDATE executions SET input = $3, prompt = $4, action = $5, delivery_id = $6,
                         caller_kind = $7, caller_id = $8, caller_tenant = $9, received_at = $10,
                         not_before = least(now() + make_interval(secs => $11), debounce_until),
                         deliveries = deliveries + 1
                     WHERE id = (
                         SELECT id FROM executions
                         WHERE trigger_id = $1 AND concurrency_key = $2 AND status = 'queued'
                           AND debounce_until IS NOT NULL AND not_before > now()
                         ORDER BY id LIMIT 1)
                       AND status = 'queued'
                     RETURNING id, not_before",
                    &[
                        &trigger,
                        &subject.key,
                        &&delivery.input[..],
                        &delivery.prompt,
                        &delivery.action,
                        &delivery.delivery_id.as_deref(),
                        &caller_kind,
                        &caller_id,
                        &caller_tenant,
                        &received_at,
                        &debounce.quiet().as_secs_f64(),
                    ],
                )
                .await?;
            if let Some(row) = joined {
                let id: Uuid = row.get(0);
                insert_keys(&transaction, trigger, &keys, id).await?;
                transaction.commit().await?;
                self.inner.due.add(row.get(1));
                return Ok(Some(Outcome::Joined(ExecutionId::from(id))));
            }
        }
        let busy: Option<Uuid> = if subject.on_busy == OnBusy::Queue {
            None
        } else {
            transaction
                .query_opt(
                    "SELECT id FROM executions
                     WHERE trigger_id = $1 AND concurrency_key = $2
                       AND (status = 'running' OR (status = 'queued'
                            AND (debounce_until IS NULL OR not_before IS NULL
                                 OR not_before <= now())))
                     ORDER BY status = 'running' DESC, id LIMIT 1",
                    &[&trigger, &subject.key],
                )
                .await?
                .map(|row| row.get(0))
        };
        if let (Some(busy), OnBusy::Skip) = (busy, subject.on_busy) {
            // Nothing kept, nothing remembered.
            return Ok(Some(Outcome::Skipped {
                message: Subject::busy_message(&ExecutionId::from(busy)),
                action: delivery.action.clone(),
            }));
        }
        let id = Uuid::now_v7();
        let (quiet, max) = subject.debounce.map_or((None, None), |debounce| {
            (
                Some(debounce.quiet().as_secs_f64()),
                Some(debounce.max().as_secs_f64()),
            )
        });
        let due: Option<std::time::SystemTime> = transaction
            .query_one(
                "INSERT INTO executions (id, trigger_id, tenant, source, action, delivery_id,
                     caller_kind, caller_id, caller_tenant, input, received_at, status,
                     created_at, prompt, concurrency_key, not_before, debounce_until)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'queued', now(), $12, $13,
                     now() + make_interval(secs => $14), now() + make_interval(secs => $15))
                 RETURNING not_before",
                &[
                    &id,
                    &trigger,
                    &&*delivery.tenant,
                    &delivery.source.as_str(),
                    &delivery.action,
                    &delivery.delivery_id.as_deref(),
                    &caller_kind,
                    &caller_id,
                    &caller_tenant,
                    &&delivery.input[..],
                    &received_at,
                    &delivery.prompt,
                    &subject.key,
                    &quiet,
                    &max,
                ],
            )
            .await?
            .get(0);
        insert_keys(&transaction, trigger, &keys, id).await?;
        let mut to_end = Vec::new();
        if busy.is_some() {
            // Replaced: the queued ones end now; the running ones are asked to, as a cancel
            // through the executions API asks (their workers end them, wherever they run).
            for row in transaction
                .query(
                    "UPDATE executions
                     SET status = CASE status WHEN 'queued' THEN 'cancelled' ELSE status END,
                         finished_at = CASE status WHEN 'queued' THEN now() ELSE finished_at END,
                         cancel_requested = cancel_requested OR status = 'running',
                         replaced_by = coalesce(replaced_by, $3)
                     WHERE trigger_id = $1 AND concurrency_key = $2
                       AND status IN ('queued', 'running') AND id <> $3
                     RETURNING id, status",
                    &[&trigger, &subject.key, &id],
                )
                .await?
            {
                if row.get::<_, &str>(1) == "running" {
                    to_end.push(row.get::<_, Uuid>(0));
                }
            }
            for ended in &to_end {
                transaction
                    .execute(
                        "SELECT pg_notify($1, $2)",
                        &[&CHANNEL, &format!("{}:cancel:{ended}", self.inner.schema)],
                    )
                    .await?;
            }
        }
        transaction
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &self.work_payload()],
            )
            .await?;
        if abandoned() {
            return Ok(None);
        }
        transaction.commit().await?;
        for ended in to_end {
            self.inner.cancel_asked(ended);
        }
        if let Some(at) = due {
            self.inner.due.add(at);
        }
        self.inner.work.notify_waiters();
        self.inner.work.notify_one();
        Ok(Some(Outcome::Started(ExecutionId::from(id))))
    }
}

async fn insert_keys(
    transaction: &tokio_postgres::Transaction<'_>,
    trigger: Uuid,
    keys: &[String],
    id: Uuid,
) -> Result<(), tokio_postgres::Error> {
    for key in keys {
        // A copy kept at this moment under another subject's lock conflicts here: the
        // transaction fails and is tried again, and then finds it.
        transaction
            .execute(
                "INSERT INTO delivery_keys (trigger_id, key, execution_id) VALUES ($1, $2, $3)",
                &[&trigger, key, &id],
            )
            .await?;
    }
    Ok(())
}
