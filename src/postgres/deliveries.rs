//! The deliveries log on PostgreSQL: records queued by the request tasks and written in
//! batches by one task (one statement and one unsynced commit per batch), pruned per trigger
//! as they are written.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use tokio::sync::mpsc::{self, Receiver, error::TrySendError};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{PostgresStore, database_error, describe};
use crate::deliveries::{
    self, DeliveryLog, DeliveryObserver, DeliveryQuery, LogLimits, LoggedDelivery, OutcomeCount,
};
use crate::{Caller, ExecutionId, Source, StoreError};

/// At most this many records wait for the writer; more are dropped and counted.
pub const LOG_QUEUE_CAPACITY: usize = 8192;
/// At most this many records share one statement.
const MAX_BATCH: usize = 512;

/// The store's side of the log: where records go, and what they are pruned to.
pub(super) struct LogQueue {
    records: mpsc::Sender<LoggedDelivery>,
    dropped: AtomicU64,
    limits: Arc<RwLock<LogLimits>>,
}

impl LogQueue {
    /// The queue, and its writer to spawn.
    pub(super) fn start(pool: Pool) -> (LogQueue, impl Future<Output = ()> + Send + 'static) {
        let (records, waiting) = mpsc::channel(LOG_QUEUE_CAPACITY);
        let limits = Arc::new(RwLock::new(LogLimits::default()));
        let writer = run(waiting, pool, Arc::clone(&limits));
        let queue = LogQueue {
            records,
            dropped: AtomicU64::new(0),
            limits,
        };
        (queue, writer)
    }
}

/// Writes batches until the store is dropped, then what is left.
async fn run(mut waiting: Receiver<LoggedDelivery>, pool: Pool, limits: Arc<RwLock<LogLimits>>) {
    let mut since_pruned: HashMap<Uuid, usize> = HashMap::new();
    while let Some(first) = waiting.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        let limits = limits
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        batch.retain(|record| {
            limits.max(record.trigger_id) > 0
                && !(record.is_refused() && limits.refused_max(record.trigger_id) == 0)
        });
        let mut to_prune = Vec::new();
        for record in &batch {
            let gathered = since_pruned.entry(record.trigger_id).or_default();
            *gathered += 1;
            if *gathered >= limits.prune_every(record.trigger_id) {
                *gathered = 0;
                to_prune.push(record.trigger_id);
            }
        }
        to_prune.sort_unstable();
        to_prune.dedup();
        if let Err(error) = write(&pool, &batch, &to_prune, &limits).await {
            tracing::error!(%error, records = batch.len(), "could not write the deliveries log");
        }
    }
}

const INSERT: &str = "INSERT INTO deliveries (id, trigger_id, tenant, source, received_at, status,
         outcome, reason, caller_kind, caller_id, caller_tenant, execution_id, delivery_id,
         action, body_bytes, duration_us, headers, body)
     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[],
         $6::int[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
         $13::text[], $14::text[], $15::bigint[], $16::bigint[], $17::text[], $18::bytea[])";

const PRUNE: &str = "DELETE FROM deliveries WHERE trigger_id = $1 AND id <= (
         SELECT id FROM deliveries WHERE trigger_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)";

const PRUNE_REFUSED: &str = "DELETE FROM deliveries
     WHERE trigger_id = $1 AND status BETWEEN 400 AND 499 AND id <= (
         SELECT id FROM deliveries WHERE trigger_id = $1 AND status BETWEEN 400 AND 499
         ORDER BY id DESC LIMIT 1 OFFSET $2)";

/// One batch in one transaction, whose commit is not waited for on the standby or the disk:
/// the log may lose its last records in a crash, never an execution.
async fn write(
    pool: &Pool,
    batch: &[LoggedDelivery],
    to_prune: &[Uuid],
    limits: &LogLimits,
) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut client = pool.get().await.map_err(|error| error.to_string())?;
    let columns = Columns::of(batch);
    let transaction = client
        .transaction()
        .await
        .map_err(|error| describe(&error))?;
    let result = async {
        transaction
            .batch_execute("SET LOCAL synchronous_commit = off")
            .await?;
        let insert = transaction.prepare_cached(INSERT).await?;
        transaction
            .execute(
                &insert,
                &[
                    &columns.ids,
                    &columns.trigger_ids,
                    &columns.tenants,
                    &columns.sources,
                    &columns.received_at,
                    &columns.statuses,
                    &columns.outcomes,
                    &columns.reasons,
                    &columns.caller_kinds,
                    &columns.caller_ids,
                    &columns.caller_tenants,
                    &columns.execution_ids,
                    &columns.delivery_ids,
                    &columns.actions,
                    &columns.body_bytes,
                    &columns.durations,
                    &columns.headers,
                    &columns.bodies,
                ],
            )
            .await?;
        for trigger in to_prune {
            let bound = |count: usize| i64::try_from(count).unwrap_or(i64::MAX);
            // Refusals first, so that the newest records fill the bound.
            let prune = transaction.prepare_cached(PRUNE_REFUSED).await?;
            transaction
                .execute(&prune, &[trigger, &bound(limits.refused_max(*trigger))])
                .await?;
            let prune = transaction.prepare_cached(PRUNE).await?;
            transaction
                .execute(&prune, &[trigger, &bound(limits.max(*trigger))])
                .await?;
        }
        Ok::<_, tokio_postgres::Error>(())
    }
    .await;
    match result {
        Ok(()) => transaction.commit().await.map_err(|error| describe(&error)),
        Err(error) => Err(describe(&error)),
    }
}

/// A batch as one array per column, for `unnest`.
struct Columns {
    ids: Vec<Uuid>,
    trigger_ids: Vec<Uuid>,
    tenants: Vec<String>,
    sources: Vec<&'static str>,
    received_at: Vec<SystemTime>,
    statuses: Vec<i32>,
    outcomes: Vec<String>,
    reasons: Vec<String>,
    caller_kinds: Vec<Option<&'static str>>,
    caller_ids: Vec<Option<String>>,
    caller_tenants: Vec<Option<String>>,
    execution_ids: Vec<Option<String>>,
    delivery_ids: Vec<Option<String>>,
    actions: Vec<Option<String>>,
    body_bytes: Vec<i64>,
    durations: Vec<i64>,
    headers: Vec<String>,
    bodies: Vec<Option<Vec<u8>>>,
}

impl Columns {
    fn of(batch: &[LoggedDelivery]) -> Columns {
        let mut columns = Columns {
            ids: Vec::with_capacity(batch.len()),
            trigger_ids: Vec::with_capacity(batch.len()),
            tenants: Vec::with_capacity(batch.len()),
            sources: Vec::with_capacity(batch.len()),
            received_at: Vec::with_capacity(batch.len()),
            statuses: Vec::with_capacity(batch.len()),
            outcomes: Vec::with_capacity(batch.len()),
            reasons: Vec::with_capacity(batch.len()),
            caller_kinds: Vec::with_capacity(batch.len()),
            caller_ids: Vec::with_capacity(batch.len()),
            caller_tenants: Vec::with_capacity(batch.len()),
            execution_ids: Vec::with_capacity(batch.len()),
            delivery_ids: Vec::with_capacity(batch.len()),
            actions: Vec::with_capacity(batch.len()),
            body_bytes: Vec::with_capacity(batch.len()),
            durations: Vec::with_capacity(batch.len()),
            headers: Vec::with_capacity(batch.len()),
            bodies: Vec::with_capacity(batch.len()),
        };
        for record in batch {
            let (kind, id, tenant) = match &record.caller {
                Some(caller) => {
                    let (kind, id, tenant) = caller.columns();
                    (Some(kind), Some(id.to_owned()), tenant.map(str::to_owned))
                }
                None => (None, None, None),
            };
            columns.ids.push(record.id);
            columns.trigger_ids.push(record.trigger_id);
            columns.tenants.push(record.tenant.to_string());
            columns.sources.push(record.source.as_str());
            columns.received_at.push(record.received_at);
            columns.statuses.push(i32::from(record.status));
            columns.outcomes.push(record.outcome.to_string());
            columns.reasons.push(record.reason.clone());
            columns.caller_kinds.push(kind);
            columns.caller_ids.push(id);
            columns.caller_tenants.push(tenant);
            columns
                .execution_ids
                .push(record.execution_id.as_ref().map(ExecutionId::to_string));
            columns.delivery_ids.push(record.delivery_id.clone());
            columns.actions.push(record.action.clone());
            columns
                .body_bytes
                .push(i64::try_from(record.body_bytes).unwrap_or(i64::MAX));
            columns
                .durations
                .push(i64::try_from(record.duration.as_micros()).unwrap_or(i64::MAX));
            columns.headers.push(
                serde_json::to_string(&record.headers).expect("a list of string pairs serialises"),
            );
            columns
                .bodies
                .push(record.body.as_ref().map(|body| body.to_vec()));
        }
        columns
    }
}

impl DeliveryObserver for PostgresStore {
    fn observe(&self, delivery: LoggedDelivery) {
        let queue = &self.inner.log;
        if let Err(TrySendError::Full(_) | TrySendError::Closed(_)) =
            queue.records.try_send(delivery)
        {
            queue.dropped.fetch_add(1, Ordering::Relaxed);
            deliveries::count_dropped(1);
        }
    }
}

/// The columns a record is read from, in this order.
const COLUMNS: &str = "id, trigger_id, tenant, source, received_at, status, outcome, reason,
    caller_kind, caller_id, caller_tenant, execution_id, delivery_id, action, body_bytes,
    duration_us";

impl DeliveryLog for PostgresStore {
    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<LoggedDelivery>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM deliveries
                 WHERE tenant = $1
                   AND ($2::uuid[] IS NULL OR trigger_id = ANY($2))
                   AND ($3::text IS NULL OR outcome = $3)
                   AND ($4::uuid IS NULL OR id < $4)
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
                    &query.outcome,
                    &query.before,
                    &i64::try_from(query.limit).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(database_error)?
            .iter()
            .map(read_summary)
            .collect()
    }

    async fn delivery(&self, id: Uuid) -> Result<Option<LoggedDelivery>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, headers, body FROM deliveries WHERE id = $1"
            ))
            .await
            .map_err(database_error)?;
        let Some(row) = client
            .query_opt(&statement, &[&id])
            .await
            .map_err(database_error)?
        else {
            return Ok(None);
        };
        let mut record = read_summary(&row)?;
        let headers: String = row.get(16);
        record.headers = serde_json::from_str(&headers).unwrap_or_default();
        record.body = row.get::<_, Option<Vec<u8>>>(17).map(bytes::Bytes::from);
        Ok(Some(record))
    }

    async fn outcome_counts(
        &self,
        tenant: &str,
        triggers: Option<Vec<Uuid>>,
        since: SystemTime,
    ) -> Result<Vec<OutcomeCount>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT trigger_id, outcome, count(*) FROM deliveries
                 WHERE tenant = $1
                   AND ($2::uuid[] IS NULL OR trigger_id = ANY($2))
                   AND received_at >= $3
                 GROUP BY trigger_id, outcome",
            )
            .await
            .map_err(database_error)?;
        Ok(client
            .query(&statement, &[&tenant, &triggers, &since])
            .await
            .map_err(database_error)?
            .iter()
            .map(|row| OutcomeCount {
                trigger_id: row.get(0),
                outcome: row.get(1),
                count: row.get::<_, i64>(2).try_into().unwrap_or(0),
            })
            .collect())
    }

    async fn prune_deliveries(
        &self,
        before: SystemTime,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "DELETE FROM deliveries WHERE id IN (
                     SELECT id FROM deliveries WHERE received_at < $1 LIMIT $2)",
            )
            .await
            .map_err(database_error)?;
        let deleted = client
            .execute(
                &statement,
                &[&before, &i64::try_from(batch).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(database_error)?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    fn set_log_limits(&self, limits: LogLimits) {
        *self
            .inner
            .log
            .limits
            .write()
            .unwrap_or_else(PoisonError::into_inner) = limits;
    }

    fn dropped_records(&self) -> u64 {
        self.inner.log.dropped.load(Ordering::Relaxed)
    }
}

/// A record without its headers and body.
fn read_summary(row: &Row) -> Result<LoggedDelivery, StoreError> {
    let source = Source::from_str(row.get(3)).unwrap_or(Source::Webhook);
    let status: u16 = row.get::<_, i32>(5).try_into().unwrap_or(0);
    let mut record = LoggedDelivery::new(
        row.get(1),
        row.get::<_, String>(2),
        source,
        status,
        row.get::<_, String>(6),
    );
    record.id = row.get(0);
    record.received_at = row.get(4);
    record.reason = row.get(7);
    record.caller = match (
        row.get::<_, Option<String>>(8),
        row.get::<_, Option<String>>(9),
    ) {
        (Some(kind), Some(id)) => Some(Caller::from_columns(&kind, id, row.get(10))),
        _ => None,
    };
    record.execution_id = row.get::<_, Option<String>>(11).map(ExecutionId::from);
    record.delivery_id = row.get(12);
    record.action = row.get(13);
    record.body_bytes = row.get::<_, i64>(14).try_into().unwrap_or(0);
    record.duration = Duration::from_micros(row.get::<_, i64>(15).try_into().unwrap_or(0));
    Ok(record)
}
