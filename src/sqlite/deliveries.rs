//! The deliveries log on SQLite: records queued in memory by the request tasks, written by the
//! database thread in batches (in the transaction of a group of deliveries, or on their own when
//! none comes), and pruned per trigger as they are written.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use tokio::sync::mpsc::{Sender, WeakSender};
use uuid::Uuid;

use super::SqliteStore;
use super::codec::{from_unix_millis, unix_millis};
use super::thread::Command;
use crate::deliveries::{
    self, DeliveryLog, DeliveryObserver, DeliveryQuery, LogLimits, LoggedDelivery, OutcomeCount,
};
use crate::{Caller, ExecutionId, Source, StoreError};

/// At most this many records wait for the database thread; more are dropped and counted.
pub const LOG_QUEUE_CAPACITY: usize = 8192;

/// Records are written once this many wait, or once the oldest has waited [`LOG_DELAY`]. A
/// write dirties whole pages (the table's and each index's), which go to the WAL and through
/// its fsync whole: records written together share them, where a record written with each
/// small group of deliveries would cost several pages of its own.
const LOG_BATCH: usize = 256;

/// The longest a record waits to be written while fewer than [`LOG_BATCH`] do.
const LOG_DELAY: Duration = Duration::from_millis(100);

/// The records waiting for the database thread, and what it prunes them to.
#[derive(Default)]
pub(super) struct LogQueue {
    waiting: Mutex<Waiting>,
    /// A wake-up is on its way to the thread: one is enough.
    flush_asked: AtomicBool,
    dropped: AtomicU64,
    limits: RwLock<LogLimits>,
}

#[derive(Default)]
struct Waiting {
    records: Vec<LoggedDelivery>,
    /// When the oldest of them came.
    since: Option<Instant>,
}

impl LogQueue {
    /// Takes what waits, to write it.
    pub(super) fn take(&self) -> Vec<LoggedDelivery> {
        self.flush_asked.store(false, Ordering::Release);
        let mut waiting = self.lock();
        waiting.since = None;
        std::mem::take(&mut waiting.records)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.lock().records.is_empty()
    }

    /// Whether what waits is to be written now: a batch's worth, or the oldest waited long
    /// enough.
    fn is_due(&self) -> bool {
        let waiting = self.lock();
        waiting.records.len() >= LOG_BATCH
            || waiting
                .since
                .is_some_and(|since| since.elapsed() >= LOG_DELAY)
    }

    /// Wakes the database thread to write what waits, unless a wake-up is on its way.
    fn ask_flush(&self, commands: &Sender<Command>) {
        if !self.flush_asked.swap(true, Ordering::AcqRel)
            && commands.try_send(Command::FlushLog).is_err()
        {
            // A full command queue means the thread is busy and writes the log as it goes.
            self.flush_asked.store(false, Ordering::Release);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Wakes the database thread every [`LOG_DELAY`] while records wait for longer, so that a
/// quiet server writes them too; ends with the store (once `commands` cannot be upgraded).
pub(super) fn tick(queue: Arc<LogQueue>, commands: WeakSender<Command>) {
    loop {
        std::thread::sleep(LOG_DELAY);
        let Some(commands) = commands.upgrade() else {
            return;
        };
        if queue.is_due() {
            queue.ask_flush(&commands);
        }
    }
}

/// The database thread's side of the log: it writes and prunes.
pub(super) struct LogWriter {
    queue: Arc<LogQueue>,
    /// Records written per trigger since its last pruning.
    since_pruned: HashMap<Uuid, usize>,
}

impl LogWriter {
    pub(super) fn new(queue: Arc<LogQueue>) -> Self {
        LogWriter {
            queue,
            since_pruned: HashMap::new(),
        }
    }

    pub(super) fn has_waiting(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Whether what waits is to be written now (see [`LOG_BATCH`]).
    pub(super) fn is_due(&self) -> bool {
        self.queue.is_due()
    }

    /// Writes what waits within `transaction` (a group of deliveries'), in a savepoint of its
    /// own (a log that cannot be written never fails the deliveries), if it is due.
    pub(super) fn write_within(&mut self, transaction: &mut Transaction<'_>) {
        if !self.queue.is_due() {
            return;
        }
        let records = self.queue.take();
        if records.is_empty() {
            return;
        }
        let result = transaction.savepoint().and_then(|savepoint| {
            self.write(&savepoint, records)?;
            savepoint.commit()
        });
        if let Err(error) = result {
            tracing::error!(%error, "could not write the deliveries log");
        }
    }

    /// Writes `records`, and prunes the triggers that gathered enough.
    fn write(
        &mut self,
        transaction: &Connection,
        records: Vec<LoggedDelivery>,
    ) -> rusqlite::Result<()> {
        let limits = self
            .queue
            .limits
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut insert = transaction.prepare_cached(
            "INSERT INTO deliveries (id, trigger_id, tenant, source, received_at, status, outcome,
                 reason, caller_kind, caller_id, caller_tenant, execution_id, delivery_id, action,
                 body_bytes, duration_us, headers, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?;
        for record in records {
            if limits.max(record.trigger_id) == 0
                || (record.is_refused() && limits.refused_max(record.trigger_id) == 0)
            {
                continue;
            }
            let (caller_kind, caller_id, caller_tenant) = match &record.caller {
                Some(caller) => {
                    let (kind, id, tenant) = caller.columns();
                    (Some(kind), Some(id.to_owned()), tenant.map(str::to_owned))
                }
                None => (None, None, None),
            };
            let headers =
                serde_json::to_string(&record.headers).expect("a list of string pairs serialises");
            insert.execute(params![
                record.id.to_string(),
                record.trigger_id.to_string(),
                &*record.tenant,
                record.source.as_str(),
                unix_millis(record.received_at),
                record.status,
                &*record.outcome,
                record.reason,
                caller_kind,
                caller_id,
                caller_tenant,
                record.execution_id.as_ref().map(ExecutionId::to_string),
                record.delivery_id,
                record.action,
                i64::try_from(record.body_bytes).unwrap_or(i64::MAX),
                i64::try_from(record.duration.as_micros()).unwrap_or(i64::MAX),
                headers,
                record.body.as_deref(),
            ])?;
            let gathered = self.since_pruned.entry(record.trigger_id).or_default();
            *gathered += 1;
            if *gathered >= limits.prune_every(record.trigger_id) {
                *gathered = 0;
                prune_trigger(transaction, record.trigger_id, &limits)?;
            }
        }
        Ok(())
    }

    /// Writes what waits in a transaction of its own, [`unsynced`](super::unsynced): the log
    /// may lose its last records in a power loss, so that writing it never costs a delivery an
    /// fsync.
    pub(super) fn write_alone(&mut self, connection: &mut Connection) {
        let records = self.queue.take();
        if let Err(error) =
            super::unsynced(connection, |transaction| self.write(transaction, records))
        {
            tracing::error!(%error, "could not write the deliveries log");
        }
    }
}

/// Keeps the newest tenth of `max` of the trigger's refused records (4xx), then about its newest
/// `max` records.
fn prune_trigger(
    transaction: &Connection,
    trigger: Uuid,
    limits: &LogLimits,
) -> rusqlite::Result<()> {
    let bound = |count: usize| i64::try_from(count).unwrap_or(i64::MAX);
    let (max, refused_max) = (
        bound(limits.max(trigger)),
        bound(limits.refused_max(trigger)),
    );
    let trigger = trigger.to_string();
    transaction
        .prepare_cached(
            "DELETE FROM deliveries
             WHERE trigger_id = ?1 AND status BETWEEN 400 AND 499 AND id <= (
                 SELECT id FROM deliveries WHERE trigger_id = ?1 AND status BETWEEN 400 AND 499
                 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        )?
        .execute(params![trigger, refused_max])?;
    transaction
        .prepare_cached(
            "DELETE FROM deliveries WHERE trigger_id = ?1 AND id <= (
                 SELECT id FROM deliveries WHERE trigger_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        )?
        .execute(params![trigger, max])?;
    Ok(())
}

impl DeliveryObserver for SqliteStore {
    fn observe(&self, delivery: LoggedDelivery) {
        let queue = &self.inner.log;
        let batch_full = {
            let mut waiting = queue.lock();
            if waiting.records.len() >= LOG_QUEUE_CAPACITY {
                drop(waiting);
                queue.dropped.fetch_add(1, Ordering::Relaxed);
                deliveries::count_dropped();
                return;
            }
            waiting.since.get_or_insert_with(Instant::now);
            waiting.records.push(delivery);
            waiting.records.len() >= LOG_BATCH
        };
        // Fewer wait for the database thread's next group, or for the ticker.
        if batch_full && let Ok(commands) = self.commands() {
            queue.ask_flush(commands);
        }
    }
}

/// The columns a record is read from, in this order.
const COLUMNS: &str = "id, trigger_id, tenant, source, received_at, status, outcome, reason,
    caller_kind, caller_id, caller_tenant, execution_id, delivery_id, action, body_bytes,
    duration_us";

impl DeliveryLog for SqliteStore {
    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<LoggedDelivery>, StoreError> {
        let tenant = query.tenant.clone();
        let triggers = query.triggers.as_ref().map(|ids| {
            serde_json::to_string(&ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
                .expect("a list of strings serialises")
        });
        let outcome = query.outcome.clone();
        let before = query.before.map(|id| id.to_string());
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        self.call(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM deliveries
                     WHERE tenant = ?1
                       AND (?2 IS NULL OR trigger_id IN (SELECT value FROM json_each(?2)))
                       AND (?3 IS NULL OR outcome = ?3)
                       AND (?4 IS NULL OR id < ?4)
                     ORDER BY id DESC LIMIT ?5"
                ))?
                .query_map(
                    params![tenant, triggers, outcome, before, limit],
                    read_summary,
                )?
                .collect()
        })
        .await
    }

    async fn delivery(&self, id: Uuid) -> Result<Option<LoggedDelivery>, StoreError> {
        self.call(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {COLUMNS}, headers, body FROM deliveries WHERE id = ?1"
                ))?
                .query_row(params![id.to_string()], |row| {
                    let mut record = read_summary(row)?;
                    let headers: String = row.get(16)?;
                    record.headers = serde_json::from_str(&headers).unwrap_or_default();
                    record.body = row.get::<_, Option<Vec<u8>>>(17)?.map(bytes::Bytes::from);
                    Ok(record)
                })
                .optional()
        })
        .await
    }

    async fn outcome_counts(
        &self,
        tenant: &str,
        triggers: Option<Vec<Uuid>>,
        since: SystemTime,
    ) -> Result<Vec<OutcomeCount>, StoreError> {
        let tenant = tenant.to_owned();
        let triggers = triggers.map(|ids| {
            serde_json::to_string(&ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
                .expect("a list of strings serialises")
        });
        let since = deliveries::first_id_at(since).to_string();
        self.call(move |connection| {
            connection
                .prepare_cached(
                    "SELECT trigger_id, outcome, count(*) FROM deliveries
                     WHERE tenant = ?1
                       AND (?2 IS NULL OR trigger_id IN (SELECT value FROM json_each(?2)))
                       AND id >= ?3
                     GROUP BY trigger_id, outcome",
                )?
                .query_map(params![tenant, triggers, since], |row| {
                    Ok(OutcomeCount {
                        trigger_id: Uuid::try_parse(&row.get::<_, String>(0)?).unwrap_or_default(),
                        outcome: row.get(1)?,
                        count: row.get::<_, i64>(2)?.try_into().unwrap_or(0),
                    })
                })?
                .collect()
        })
        .await
    }

    async fn prune_deliveries(
        &self,
        before: SystemTime,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let before = deliveries::first_id_at(before).to_string();
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        self.call(move |connection| {
            connection
                .prepare_cached(
                    "DELETE FROM deliveries WHERE id IN (
                         SELECT id FROM deliveries WHERE id < ?1 LIMIT ?2)",
                )?
                .execute(params![before, batch])
        })
        .await
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
fn read_summary(row: &Row<'_>) -> rusqlite::Result<LoggedDelivery> {
    let text = |index: usize| row.get::<_, String>(index);
    let trigger_id = Uuid::try_parse(&text(1)?).unwrap_or_default();
    let source = Source::from_str(&text(3)?).unwrap_or(Source::Webhook);
    let status: u16 = row.get::<_, i64>(5)?.try_into().unwrap_or(0);
    let mut record = LoggedDelivery::new(trigger_id, text(2)?, source, status, text(6)?);
    record.id = Uuid::try_parse(&text(0)?).unwrap_or_default();
    record.received_at = from_unix_millis(row.get(4)?);
    record.reason = text(7)?;
    record.caller = match (
        row.get::<_, Option<String>>(8)?,
        row.get::<_, Option<String>>(9)?,
    ) {
        (Some(kind), Some(id)) => Some(Caller::from_columns(&kind, id, row.get(10)?)),
        _ => None,
    };
    record.execution_id = row.get::<_, Option<String>>(11)?.map(ExecutionId::from);
    record.delivery_id = row.get(12)?;
    record.action = row.get(13)?;
    record.body_bytes = row.get::<_, i64>(14)?.try_into().unwrap_or(0);
    record.duration = Duration::from_micros(row.get::<_, i64>(15)?.try_into().unwrap_or(0));
    Ok(record)
}
