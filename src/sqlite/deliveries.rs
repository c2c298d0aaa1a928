//! The deliveries log on SQLite, in a file of its own beside the database
//! ([`deliveries_log_path`]) with its own connection and thread, so that writing it never
//! takes the database thread, which commits acknowledgements, nor its write lock. Records are
//! queued in memory by the request tasks and written in batches, unsynced, and pruned per
//! trigger as they are written; the API's reads run on the same thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::SqliteStore;
use super::codec::{from_unix_millis, unix_millis};
use crate::deliveries::{
    self, DeliveryLog, DeliveryObserver, DeliveryQuery, LogLimits, LoggedDelivery, OutcomeCount,
};
use crate::{Caller, ExecutionId, Source, StoreError};

/// At most this many records wait for the log's thread; more are dropped and counted.
pub const LOG_QUEUE_CAPACITY: usize = 8192;

/// Records are written once this many wait, or once the oldest has waited [`LOG_DELAY`]. A
/// write dirties whole pages (the table's and each index's), which go to the WAL whole:
/// records written together share them.
const LOG_BATCH: usize = 256;

/// The longest a record waits to be written while fewer than [`LOG_BATCH`] do.
const LOG_DELAY: Duration = Duration::from_millis(100);

/// How many of the API's reads may wait for the log's thread; more are answered `503`.
const CALL_CAPACITY: usize = 256;

/// The file that holds the deliveries log of the SQLite database at `database`: its name with
/// `-deliveries` appended, beside it (with its own `-wal` and `-shm` files). It holds what
/// deliveries carried (redacted headers, bodies of authenticated requests): protect it like
/// the database, which it is created like (readable by its owner only).
///
/// ```
/// use std::path::Path;
/// use agent_trigger::sqlite::deliveries_log_path;
///
/// assert_eq!(
///     deliveries_log_path(Path::new("/var/lib/agent-trigger/agent-trigger.db")),
///     Path::new("/var/lib/agent-trigger/agent-trigger.db-deliveries"),
/// );
/// ```
pub fn deliveries_log_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-deliveries");
    PathBuf::from(name)
}

/// The deliveries log's file, its thread, and the records on their way to it.
pub(super) struct LogFile {
    queue: Arc<LogQueue>,
    /// Taken when the store is dropped, which lets the thread write what waits and stop.
    commands: Option<SyncSender<LogCommand>>,
    thread: Option<JoinHandle<()>>,
}

/// Work for the log's thread.
enum LogCommand {
    /// Records wait: the first of a batch (the thread starts counting [`LOG_DELAY`]) or a
    /// full batch.
    Wake,
    /// A read (or the retention's pruning), run on the log's connection in order.
    Call(Box<dyn FnOnce(&mut Connection) + Send>),
}

impl LogFile {
    /// Opens (creating if needed) the log's file beside `database`, migrates it, moves into it
    /// the records `main` (the database, not yet migrated) still holds from a build that kept
    /// them there, and starts the log's thread.
    pub(super) fn open(database: &Path, main: &Connection) -> Result<Self, StoreError> {
        let path = deliveries_log_path(database);
        super::create_private(&path)?;
        let mut connection =
            Connection::open(&path).map_err(|error| super::open_error(&path, error))?;
        configure(&connection).map_err(|error| super::open_error(&path, error))?;
        super::schema::migrate_log(&mut connection)
            .map_err(|error| super::open_error(&path, error))?
            .map_err(|message| StoreError::new(format!("{}: {message}", path.display())))?;
        move_records(main, &path).map_err(|error| super::open_error(database, error))?;

        let queue = Arc::new(LogQueue::default());
        let (commands, received) = std::sync::mpsc::sync_channel(CALL_CAPACITY);
        let writer = LogWriter::new(Arc::clone(&queue));
        let thread = std::thread::Builder::new()
            .name("agent-trigger-sqlite-log".to_owned())
            .spawn(move || run(connection, received, writer))
            .map_err(|error| StoreError::new(format!("starting the log's thread: {error}")))?;
        Ok(LogFile {
            queue,
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    /// Runs `work` on the log's thread and waits for its answer.
    async fn call<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let command = LogCommand::Call(Box::new(move |connection| {
            let _ = reply.send(work(connection));
        }));
        let stopped = || StoreError::new("the deliveries log's thread stopped");
        match self
            .commands
            .as_ref()
            .ok_or_else(stopped)?
            .try_send(command)
        {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(StoreError::unavailable("the deliveries log is busy"));
            }
            Err(TrySendError::Disconnected(_)) => return Err(stopped()),
        }
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(super::store_error)
    }

    /// Queues `record`, or drops and counts it when the queue is full.
    fn push(&self, record: LoggedDelivery) {
        let queue = &self.queue;
        let wake = {
            let mut waiting = queue.lock();
            if waiting.records.len() >= LOG_QUEUE_CAPACITY {
                drop(waiting);
                queue.dropped.fetch_add(1, Ordering::Relaxed);
                deliveries::count_dropped(1);
                return;
            }
            waiting.since.get_or_insert_with(Instant::now);
            waiting.records.push(record);
            // The first starts the thread's wait; a full batch ends it. The others need no
            // word: the thread wakes for them.
            waiting.records.len() == 1 || waiting.records.len() == LOG_BATCH
        };
        if wake
            && let Some(commands) = &self.commands
            && !queue.wake_sent.swap(true, Ordering::AcqRel)
            && commands.try_send(LogCommand::Wake).is_err()
        {
            // Commands wait: the thread looks at the queue after each.
            queue.wake_sent.store(false, Ordering::Release);
        }
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL: a commit is not synced; a power loss may undo the last records, a crash of the
    // process may not. The log never costs anything an fsync of its own but a checkpoint's.
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    // Shorter than the database's: while another process holds the file, records wait in the
    // queue and are tried again, and the API's reads of the log answer 503 sooner.
    connection.busy_timeout(Duration::from_secs(1))?;
    Ok(())
}

/// Copies the log that a database of schema version 13 or 14 keeps in itself into the log's
/// file at `log`, before migration 15 drops it there.
fn move_records(main: &Connection, log: &Path) -> rusqlite::Result<()> {
    if !(13..15).contains(&super::schema::version(main)?) {
        return Ok(());
    }
    let log = log
        .to_str()
        .ok_or_else(|| rusqlite::Error::InvalidPath(log.to_owned()))?;
    main.execute("ATTACH DATABASE ?1 AS log", params![log])?;
    // The same columns, the ids from text to their 16 bytes.
    let copied = main.execute(
        "INSERT OR IGNORE INTO log.deliveries (id, trigger_id, tenant, source, received_at,
             status, outcome, reason, caller_kind, caller_id, caller_tenant, execution_id,
             delivery_id, action, body_bytes, duration_us, headers, body)
         SELECT unhex(id, '-'), unhex(trigger_id, '-'), tenant, source, received_at, status,
             outcome, reason, caller_kind, caller_id, caller_tenant, execution_id, delivery_id,
             action, body_bytes, duration_us, headers, body
         FROM main.deliveries",
        [],
    );
    main.execute("DETACH DATABASE log", [])?;
    let copied = copied?;
    if copied > 0 {
        tracing::info!(records = copied, "moved the deliveries log to its own file");
    }
    Ok(())
}

/// The log's thread: runs reads as they come, and writes the records once a batch waits or
/// the oldest has waited [`LOG_DELAY`]. Ends once the store is gone, writing what waits.
fn run(mut connection: Connection, commands: Receiver<LogCommand>, mut writer: LogWriter) {
    loop {
        let received = match writer.queue.until_due() {
            None => commands.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(wait) => commands.recv_timeout(wait),
        };
        match received {
            Ok(LogCommand::Call(call)) => call(&mut connection),
            Ok(LogCommand::Wake) => writer.queue.wake_sent.store(false, Ordering::Release),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if writer.queue.until_due() == Some(Duration::ZERO)
            && writer.write_waiting(&mut connection) == Written::Retry
        {
            // The file is locked, full or unwritable: its busy timeout waited already.
            std::thread::sleep(LOG_DELAY);
        }
    }
    if !writer.queue.lock().records.is_empty() {
        writer.write_waiting(&mut connection);
    }
}

/// What became of a write of the waiting records.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    Done,
    /// The file was away ([`is_unavailable`](super::is_unavailable)): the records wait again.
    Retry,
    /// The write failed otherwise: the records are lost, and said so in the log.
    Failed,
}

/// The records waiting for the log's thread, and what it prunes them to.
#[derive(Default)]
struct LogQueue {
    waiting: Mutex<Waiting>,
    /// A [`LogCommand::Wake`] is on its way to the thread: one is enough.
    wake_sent: AtomicBool,
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
    fn take(&self) -> Vec<LoggedDelivery> {
        let mut waiting = self.lock();
        waiting.since = None;
        std::mem::take(&mut waiting.records)
    }

    /// Puts back `records` that could not be written, before those that came since; past
    /// [`LOG_QUEUE_CAPACITY`] the oldest are dropped and counted.
    fn put_back(&self, mut records: Vec<LoggedDelivery>) {
        let mut waiting = self.lock();
        records.append(&mut waiting.records);
        let excess = records.len().saturating_sub(LOG_QUEUE_CAPACITY);
        if excess > 0 {
            records.drain(..excess);
            let excess = u64::try_from(excess).unwrap_or(u64::MAX);
            self.dropped.fetch_add(excess, Ordering::Relaxed);
            deliveries::count_dropped(excess);
        }
        waiting.records = records;
        waiting.since = Some(Instant::now());
    }

    /// How long until what waits is to be written: zero for a batch's worth, or once the
    /// oldest waited [`LOG_DELAY`]; `None` when nothing waits.
    fn until_due(&self) -> Option<Duration> {
        let waiting = self.lock();
        if waiting.records.len() >= LOG_BATCH {
            return Some(Duration::ZERO);
        }
        waiting
            .since
            .map(|since| LOG_DELAY.saturating_sub(since.elapsed()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The log's thread's side: it writes and prunes.
struct LogWriter {
    queue: Arc<LogQueue>,
    /// Records written per trigger since its last pruning.
    since_pruned: HashMap<Uuid, usize>,
}

impl LogWriter {
    fn new(queue: Arc<LogQueue>) -> Self {
        LogWriter {
            queue,
            since_pruned: HashMap::new(),
        }
    }

    /// Writes what waits in one transaction.
    fn write_waiting(&mut self, connection: &mut Connection) -> Written {
        let records = self.queue.take();
        let written = connection.transaction().and_then(|transaction| {
            self.write(&transaction, &records)?;
            transaction.commit()
        });
        match written {
            Ok(()) => Written::Done,
            Err(error) if super::is_unavailable(&error) => {
                tracing::warn!(%error, records = records.len(), "the deliveries log's file is away: its records wait");
                self.queue.put_back(records);
                Written::Retry
            }
            Err(error) => {
                tracing::error!(%error, records = records.len(), "could not write the deliveries log");
                Written::Failed
            }
        }
    }

    /// Writes `records`, and prunes the triggers that gathered enough.
    fn write(
        &mut self,
        transaction: &Connection,
        records: &[LoggedDelivery],
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
                &record.id.as_bytes()[..],
                &record.trigger_id.as_bytes()[..],
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
    let trigger = &trigger.as_bytes()[..];
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
        self.inner.log.push(delivery);
    }
}

/// The columns a record is read from, in this order.
const COLUMNS: &str = "id, trigger_id, tenant, source, received_at, status, outcome, reason,
    caller_kind, caller_id, caller_tenant, execution_id, delivery_id, action, body_bytes,
    duration_us";

impl DeliveryLog for SqliteStore {
    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<LoggedDelivery>, StoreError> {
        let tenant = query.tenant.clone();
        let triggers = query.triggers.as_deref().map(id_list);
        let outcome = query.outcome.clone();
        let before = query.before.map(|id| id.into_bytes());
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        self.inner
            .log
            .call(move |connection| {
                connection
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM deliveries
                     WHERE tenant = ?1
                       AND (?2 IS NULL OR trigger_id IN (SELECT unhex(value) FROM json_each(?2)))
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
        self.inner
            .log
            .call(move |connection| {
                connection
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS}, headers, body FROM deliveries WHERE id = ?1"
                    ))?
                    .query_row(params![&id.as_bytes()[..]], |row| {
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
        let triggers = triggers.as_deref().map(id_list);
        let since = deliveries::first_id_at(since).into_bytes();
        self.inner
            .log
            .call(move |connection| {
                connection
                    .prepare_cached(
                        "SELECT trigger_id, outcome, count(*) FROM deliveries
                     WHERE tenant = ?1
                       AND (?2 IS NULL OR trigger_id IN (SELECT unhex(value) FROM json_each(?2)))
                       AND id >= ?3
                     GROUP BY trigger_id, outcome",
                    )?
                    .query_map(params![tenant, triggers, since], |row| {
                        Ok(OutcomeCount {
                            trigger_id: uuid_column(row, 0)?,
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
        let before = deliveries::first_id_at(before).into_bytes();
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        self.inner
            .log
            .call(move |connection| {
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
            .queue
            .limits
            .write()
            .unwrap_or_else(PoisonError::into_inner) = limits;
    }

    fn dropped_records(&self) -> u64 {
        self.inner.log.queue.dropped.load(Ordering::Relaxed)
    }
}

/// `ids` as the JSON list of hexadecimal texts that the queries' `unhex(value)` reads.
fn id_list(ids: &[Uuid]) -> String {
    serde_json::to_string(
        &ids.iter()
            .map(|id| id.simple().to_string())
            .collect::<Vec<_>>(),
    )
    .expect("a list of strings serialises")
}

/// A UUID kept as its 16 bytes (shorter keys to compare and index than its text).
fn uuid_column(row: &Row<'_>, index: usize) -> rusqlite::Result<Uuid> {
    let bytes = row.get_ref(index)?.as_blob()?;
    Ok(Uuid::from_slice(bytes).unwrap_or_default())
}

/// A record without its headers and body.
fn read_summary(row: &Row<'_>) -> rusqlite::Result<LoggedDelivery> {
    let text = |index: usize| row.get::<_, String>(index);
    let trigger_id = uuid_column(row, 1)?;
    let source = Source::from_str(&text(3)?).unwrap_or(Source::Webhook);
    let status: u16 = row.get::<_, i64>(5)?.try_into().unwrap_or(0);
    let mut record = LoggedDelivery::new(trigger_id, text(2)?, source, status, text(6)?);
    record.id = uuid_column(row, 0)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema::MIGRATIONS;

    #[tokio::test]
    async fn a_log_an_earlier_build_kept_in_the_database_moves_to_its_own_file() {
        let dir = std::env::temp_dir().join(format!("agent-trigger-log-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let database = dir.join("agent-trigger.db");
        let (id, trigger) = (Uuid::now_v7(), Uuid::now_v7());
        {
            let connection = Connection::open(&database).unwrap();
            for migration in &MIGRATIONS[..14] {
                connection.execute_batch(migration).unwrap();
            }
            connection.pragma_update(None, "user_version", 14).unwrap();
            connection
                .execute(
                    "INSERT INTO deliveries (id, trigger_id, tenant, source, received_at, status,
                         outcome, reason, body_bytes, duration_us, headers, body)
                     VALUES (?1, ?2, 'acme', 'jira', 0, 200, 'accepted', '', 2, 5,
                             '[[\"content-type\",\"application/json\"]]', x'7b7d')",
                    params![id.to_string(), trigger.to_string()],
                )
                .unwrap();
        }

        let store = SqliteStore::open(&database).unwrap();
        let record = store.delivery(id).await.unwrap().expect("the record moved");
        assert_eq!(record.trigger_id, trigger);
        assert_eq!(record.outcome, "accepted");
        assert_eq!(record.body.as_deref(), Some(&b"{}"[..]));
        assert_eq!(
            record.headers,
            [("content-type".to_owned(), "application/json".to_owned())]
        );
        drop(store);

        let connection = Connection::open(&database).unwrap();
        let tables: i64 = connection
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'deliveries'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the database no longer holds the log");
        drop(connection);
        // Opening again finds it where it went.
        let store = SqliteStore::open(&database).unwrap();
        assert!(store.delivery(id).await.unwrap().is_some());
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
