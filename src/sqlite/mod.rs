//! [`SqliteStore`]: a durable embedded store (feature `sqlite`) that is at once the
//! [`KeyStore`](crate::KeyStore), the [`ExecutionSink`](crate::ExecutionSink) and the
//! [`ExecutionQueue`](crate::queue::ExecutionQueue) of a standalone host.
//!
//! - Every acknowledged execution is committed (WAL, `synchronous=FULL`) before its `200`
//!   is sent, so it survives `kill -9` and power loss.
//! - Concurrent deliveries are committed in groups: one transaction and one fsync for all the
//!   deliveries (and the executions' ends) that arrived while the previous group was being
//!   written. A claim's commit is not synced: a power loss may undo it, and its execution
//!   then runs once more after the restart.
//! - Each idempotency key ([`Delivery::idempotency_keys`](crate::Delivery::idempotency_keys)) is unique per trigger in the
//!   database, so redeliveries are recognised across restarts for as long as the execution
//!   record lives.
//! - A delivery whose caller stopped waiting before its transaction (a backend deadline or the
//!   server's request deadline already answered it with an error) is not kept, so the sender's
//!   retry does not run it twice. What remains is the moment between the insert and the commit:
//!   a caller that gives up within it gets an error for a delivery that is kept.
//! - At most [`QUEUE_CAPACITY`] commands wait for the database thread; a delivery that finds
//!   the queue full is answered `503` with `Retry-After` at once.
//! - Executions left `running` by a crash are marked `interrupted` when the store is opened.
//! - The deliveries log ([`DeliveryObserver`](crate::deliveries::DeliveryObserver)) lives in a
//!   second file, [`deliveries_log_path`], with a connection and a thread of its own: writing
//!   it never takes the thread or the write lock that acknowledgements wait for. Its commits
//!   are not synced, so a power loss may lose its last records.
//! - Keys are kept as SHA-256 digests. Signing secrets are kept as given (the HMAC needs them):
//!   protect the file like the configuration. It is created readable by its owner only.
//!
//! ```
//! use agent_trigger::sqlite::SqliteStore;
//! use agent_trigger::queue::ExecutionQueue;
//! use agent_trigger::{ApiKeyRecord, Source, Trigger, TriggerService};
//! use uuid::Uuid;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("agent-trigger-doc-{}", Uuid::now_v7()));
//! # std::fs::create_dir_all(&dir)?;
//! let store = SqliteStore::open(dir.join("agent-trigger.db"))?;
//! let trigger_id = Uuid::now_v7();
//! store.insert_trigger(Trigger::new(trigger_id, "acme", Source::Jira)).await?;
//! let key = store.generate_key(ApiKeyRecord::new("ci", "acme")).await?;
//!
//! // The same store is the key store and the sink.
//! let service = TriggerService::new(store.clone(), store.clone());
//! # drop((service, key));
//! // A worker takes executions from it.
//! assert!(store.claim().await?.is_none());
//! # Ok(())
//! # }
//! ```

mod codec;
mod deliveries;
mod executions;
mod keys;
mod schema;
mod thread;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, Transaction, params};
use tokio::sync::mpsc::{self, Sender};
use tokio::sync::{Notify, oneshot};

use self::codec::unix_millis;
use self::deliveries::LogFile;
pub use self::deliveries::{LOG_QUEUE_CAPACITY, deliveries_log_path};
use self::keys::load_keys_and_triggers;
use self::thread::Command;
use crate::StoreError;
use crate::memory::MemoryKeyStore;

/// How many commands (deliveries to keep, queries) may wait for the database thread. Each
/// waiting delivery holds its body, so this also bounds the memory they take.
pub const QUEUE_CAPACITY: usize = 1024;

/// The `Retry-After` of a delivery that found the queue full, or that could not be kept
/// because the file was locked, full or unwritable.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A durable store in one SQLite file; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Taken when the store is dropped, which closes the queue and lets the thread finish.
    commands: Option<Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    /// Keys and triggers, served from memory and rewritten after every change.
    cache: MemoryKeyStore,
    work: Arc<Notify>,
    /// Running executions a newer one of their subject replaced, for their workers to end.
    replaced: Arc<thread::Replaced>,
    /// When debouncing executions become due.
    due: Arc<crate::queue::DueTimes>,
    interrupted_on_open: usize,
    /// The deliveries log: its own file and thread.
    log: LogFile,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates its schema, marks
    /// executions a crash left `running` as `interrupted`, and starts its database thread.
    /// Blocks while it does so: call it at start-up.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        create_private(&path)?;
        let mut connection = Connection::open(&path).map_err(|error| open_error(&path, error))?;
        configure(&connection).map_err(|error| open_error(&path, error))?;
        let log = LogFile::open(&path, &connection)?;
        schema::migrate(&mut connection)
            .map_err(|error| open_error(&path, error))?
            .map_err(|message| StoreError::new(format!("{}: {message}", path.display())))?;
        let interrupted_on_open = connection
            .execute(
                // One that was being replaced stays ended: its subject moved on.
                "UPDATE executions
                 SET status = CASE WHEN replaced_by IS NULL THEN 'interrupted' ELSE 'cancelled' END,
                     finished_at = ?1
                 WHERE status = 'running'",
                params![unix_millis(SystemTime::now())],
            )
            .map_err(|error| open_error(&path, error))?;
        let cache = MemoryKeyStore::new();
        let (keys, triggers) =
            load_keys_and_triggers(&connection).map_err(|error| open_error(&path, error))?;
        cache.replace_all(keys, triggers);

        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let work = Arc::new(Notify::new());
        let thread_work = Arc::clone(&work);
        let replaced = Arc::new(thread::Replaced::default());
        let thread_replaced = Arc::clone(&replaced);
        let due = Arc::new(crate::queue::DueTimes::default());
        let thread_due = Arc::clone(&due);
        let thread = std::thread::Builder::new()
            .name("agent-trigger-sqlite".to_owned())
            .spawn(move || {
                thread::run(
                    connection,
                    receiver,
                    thread_work,
                    thread_replaced,
                    thread_due,
                )
            })
            .map_err(|error| StoreError::new(format!("starting the database thread: {error}")))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                commands: Some(sender),
                thread: Some(thread),
                cache,
                work,
                replaced,
                due,
                interrupted_on_open,
                log,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many executions a previous crash left `running`; they are now `interrupted`.
    pub fn interrupted_on_open(&self) -> usize {
        self.inner.interrupted_on_open
    }

    /// Runs `work` on the database thread and waits for its answer.
    async fn call<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let command = Command::Call(Box::new(move |connection| {
            let _ = reply.send(work(connection));
        }));
        self.commands()?
            .send(command)
            .await
            .map_err(|_| StoreError::new("the database thread stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::new("the database thread stopped"))?
            .map_err(store_error)
    }

    fn commands(&self) -> Result<&Sender<Command>, StoreError> {
        self.inner
            .commands
            .as_ref()
            .ok_or_else(|| StoreError::new("the database thread stopped"))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish what it was sent, then stop.
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("keys_and_triggers", &self.inner.cache)
            .finish()
    }
}

fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before `submit` answers, even across power loss. Writes that
    // may be lost in one are made `unsynced`.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", true)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    Ok(())
}

/// Runs `write` in a transaction whose commit is not synced to disk: a power loss may undo it
/// (the next synced commit, an acknowledgement's, takes it along), a crash of the process may
/// not. For writes whose loss repeats work rather than losing any: a claim (its execution is
/// queued again and runs once more). An acknowledgement never waits for their fsync.
fn unsynced<T>(
    connection: &mut Connection,
    write: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    let written = connection.transaction().and_then(|transaction| {
        let value = write(&transaction)?;
        transaction.commit()?;
        Ok(value)
    });
    if let Err(error) = connection.pragma_update(None, "synchronous", "FULL") {
        tracing::error!(%error, "could not restore synchronous commits");
    }
    written
}

/// A failure of SQLite, told apart as with [`is_unavailable`].
fn store_error(error: rusqlite::Error) -> StoreError {
    if is_unavailable(&error) {
        StoreError::unavailable(error)
    } else {
        StoreError::new(error)
    }
}

/// Whether SQLite failed because of its file rather than a statement: the disk is full, the
/// file is locked by another process for longer than the busy timeout, it cannot be read or
/// written (an I/O error, a read-only file or directory). Such failures may pass, and are
/// answered `503` with `Retry-After`.
fn is_unavailable(error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
        )
    )
}

fn open_error(path: &Path, error: rusqlite::Error) -> StoreError {
    StoreError::new(format!("{}: {error}", path.display()))
}

/// Creates a missing database file readable by its owner only, before SQLite opens it, so it is
/// never readable by others, not even for a moment; SQLite gives its WAL and shared-memory
/// files the same mode. An existing file that others may read is used as it is, with a warning.
#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(metadata) = std::fs::metadata(path)
                && metadata.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", metadata.permissions().mode() & 0o777),
                    "the database holds signing secrets but others may read it: chmod 600 it"
                );
            }
            Ok(())
        }
        Err(error) => Err(StoreError::new(format!("{}: {error}", path.display()))),
    }
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}
