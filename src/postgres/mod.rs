//! [`PostgresStore`]: a store in one PostgreSQL database (feature `postgres`) that any number
//! of service instances share. Like [`SqliteStore`](crate::sqlite::SqliteStore), it is at once
//! the [`KeyStore`](crate::KeyStore), the [`ExecutionSink`](crate::ExecutionSink) and the
//! [`ExecutionQueue`](crate::queue::ExecutionQueue).
//!
//! - **Acknowledged means committed.** A delivery is answered once the transaction that keeps
//!   it has committed, with `synchronous_commit = on` (set for every session of the store,
//!   whatever the server's default). Concurrent
//!   deliveries share one transaction: the idempotency keys of a whole batch go in with one
//!   `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING`, the executions with another, and
//!   the batch costs one WAL flush. While a batch commits the next one gathers; up to
//!   [`PostgresOptions::batches_in_flight`] commit at once, on separate connections.
//! - **A delivery id is unique per trigger across instances.** Copies within one batch are
//!   merged before anything is sent. A copy that another instance is committing at the same
//!   moment waits on the key's unique index until that transaction ends, then reads the
//!   original's id (in a new statement, which sees the commit): a redelivery gets the original
//!   execution id, exactly.
//! - **Each execution is claimed by one worker** (`FOR UPDATE SKIP LOCKED`; one statement
//!   when its trigger has no cap and it has no concurrency key, else a transaction that
//!   takes their locks), under a lease that the instance renews every third of
//!   [`PostgresOptions::lease`] while the work runs. When an instance dies its leases
//!   lapse, and any surviving instance marks those executions `interrupted` (the server's
//!   retry policy may then queue them again). A worker that lost its lease cannot record a
//!   result over a newer claim, and its agent is stopped when the renewal finds the claim
//!   gone. A cancel asked of any instance reaches the one whose worker runs the execution
//!   (a notification, and the lease renewal as a fall-back). A notification only wakes: the
//!   worker's instance reads the execution's row, and ends it only when a cancel is
//!   recorded there, so a role that can connect and notify but not write the table cancels
//!   nothing.
//! - **Idle workers are woken** as many as a batch started executions: this instance's at once,
//!   the other instances' by `LISTEN/NOTIFY` (one notification per committed batch, carrying
//!   the count); they poll as a fall-back.
//! - **Keys, triggers and secrets** are read from a copy in memory. Every change bumps a
//!   version and notifies; each instance reloads its copy on the notification, and checks the
//!   version every [`PostgresOptions::key_refresh`] in case it missed one. A change made on one
//!   instance therefore takes effect on all of them within that bound (2 s by default), and
//!   usually within milliseconds.
//! - Keys are kept as SHA-256 digests. Signing secrets are kept as given (the HMAC needs
//!   them): grant the database to the servers only, as you would the configuration.
//! - TLS: the URL's `sslmode` applies as with libpq: `disable`; `prefer` (the default) and
//!   `require` encrypt without checking the server's certificate; `verify-ca` and `verify-full`
//!   check it and the server's name, against the Mozilla roots or the URL's `sslrootcert` file.
//!   A URL that gives `sslmode`, `sslrootcert`, `sslnegotiation` or `channel_binding` twice is
//!   refused, as is one the driver would read with another `sslmode` than it gives.
//!
//! ```no_run
//! use agent_trigger::postgres::PostgresStore;
//! use agent_trigger::{ApiKeyRecord, Source, Trigger, TriggerService};
//! use uuid::Uuid;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::connect("postgres://postgres@127.0.0.1/agent_trigger").await?;
//! store.insert_trigger(Trigger::new(Uuid::now_v7(), "acme", Source::Jira)).await?;
//! let key = store.generate_key(ApiKeyRecord::new("ci", "acme")).await?;
//! let service = TriggerService::new(store.clone(), store.clone());
//! # drop((service, key));
//! # Ok(())
//! # }
//! ```

mod batch;
mod deliveries;
mod executions;
mod keys;
mod leases;
mod listen;
mod schema;
mod subjects;
mod tls;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

pub use self::deliveries::LOG_QUEUE_CAPACITY;
use self::deliveries::LogQueue;

use crate::StoreError;
use crate::memory::MemoryKeyStore;

/// How many deliveries may wait for a batch. Each holds its body, so this also bounds the
/// memory they take; a delivery that finds the queue full is answered `503` at once.
pub const QUEUE_CAPACITY: usize = 1024;

/// How long a connection may take to open, and an API's read or write to answer, before the
/// database counts as unavailable (`503`) for that request.
const DATABASE_DEADLINE: Duration = Duration::from_secs(5);

/// How long data sent on a connection may go unacknowledged before the kernel drops the
/// connection: a partitioned database fails the statements in flight in seconds rather than
/// after the kernel's many retransmissions.
const UNACKNOWLEDGED_DATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The channel every instance listens on; payloads name the schema and what changed.
const CHANNEL: &str = "agent_trigger";

/// How a [`PostgresStore`] connects and behaves; see [`PostgresStore::builder`].
///
/// ```
/// use std::time::Duration;
/// use agent_trigger::postgres::PostgresOptions;
///
/// let options = PostgresOptions::new("postgres://postgres@db.internal/agent_trigger")
///     .schema("webhooks")
///     .lease(Duration::from_secs(60));
/// # drop(options);
/// ```
#[derive(Clone)]
pub struct PostgresOptions {
    url: String,
    schema: Option<String>,
    pool_size: usize,
    batches_in_flight: usize,
    lease: Duration,
    key_refresh: Duration,
}

impl PostgresOptions {
    /// Options for the database at `url` (`postgres://user@host:port/database?sslmode=…`).
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            schema: None,
            pool_size: 16,
            batches_in_flight: 2,
            lease: Duration::from_secs(30),
            key_refresh: Duration::from_secs(2),
        }
    }

    /// Keeps every table in this schema (created if missing) instead of the user's default.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// At most this many connections (default 16), listener excluded.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(2);
        self
    }

    /// At most this many batches of deliveries commit at once (default 2: fewer, larger batches
    /// cost the database less per delivery than many small ones).
    pub fn batches_in_flight(mut self, batches: usize) -> Self {
        self.batches_in_flight = batches.max(1);
        self
    }

    /// How long a claim holds an execution without being renewed (default 30 s): how soon
    /// the work of an instance that died is marked `interrupted`.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// How often an instance checks for changed keys and triggers in case it missed a
    /// notification (default 2 s): the bound on how long a change takes to reach it.
    pub fn key_refresh(mut self, every: Duration) -> Self {
        self.key_refresh = every.max(Duration::from_millis(50));
        self
    }

    /// Connects, migrates the schema and starts the store's background tasks.
    pub async fn connect(self) -> Result<PostgresStore, StoreError> {
        PostgresStore::open(self).await
    }
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PostgresOptions")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("batches_in_flight", &self.batches_in_flight)
            .field("lease", &self.lease)
            .field("key_refresh", &self.key_refresh)
            .finish_non_exhaustive()
    }
}

/// A store in a PostgreSQL database shared by many instances; see the [module docs](self).
/// Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// The schema the tables are in: notifications for other schemas are not for us.
    schema: String,
    /// This store's own id, in its batches' notifications: its listener knows them for its own,
    /// whose workers were woken already.
    instance: Uuid,
    lease: Duration,
    /// Deliveries waiting for a batch; taken on drop, which ends the batcher.
    submits: Option<mpsc::Sender<batch::Submission>>,
    /// Keys and triggers, served from memory.
    cache: MemoryKeyStore,
    /// The `config_version` the cache was loaded at.
    cached_version: AtomicI64,
    /// Signalled by a notification that keys or triggers changed.
    config_changed: Arc<Notify>,
    work: Arc<Notify>,
    /// The executions this instance's workers hold.
    leases: Mutex<HashMap<Uuid, Held>>,
    /// For each execution held here, signalled when a cancel of it was asked for.
    cancels: Mutex<HashMap<Uuid, Arc<Notify>>>,
    /// Connections that deliveries with a subject may hold at once (each its own
    /// transaction): the pool stays free for the batches, the claims and the leases.
    subject_slots: Arc<tokio::sync::Semaphore>,
    /// When debouncing executions that deliveries to this instance kept become due (the
    /// other instances' workers find them at their next poll).
    due: Arc<crate::queue::DueTimes>,
    /// The deliveries log's records on their way to its writer.
    log: LogQueue,
    /// The batcher first, then the tasks that hold the store weakly.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl PostgresStore {
    /// Connects to the database at `url` with the default [`PostgresOptions`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        PostgresOptions::new(url).connect().await
    }

    /// Options to connect with: a schema, pool size, lease, refresh interval.
    pub fn builder(url: impl Into<String>) -> PostgresOptions {
        PostgresOptions::new(url)
    }

    async fn open(options: PostgresOptions) -> Result<Self, StoreError> {
        let (mut config, tls) = tls::connection(&options.url)?;
        if config.get_application_name().is_none() {
            config.application_name("agent-trigger");
        }
        if config.get_connect_timeout().is_none() {
            // An unreachable host fails the start, or a batch, in seconds rather than minutes.
            config.connect_timeout(DATABASE_DEADLINE);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(UNACKNOWLEDGED_DATA_TIMEOUT);
        }
        if config.get_keepalives() && config.get_keepalives_idle() > UNACKNOWLEDGED_DATA_TIMEOUT {
            // An idle connection to a database that went away is found out before it is used.
            config.keepalives_idle(UNACKNOWLEDGED_DATA_TIMEOUT);
        }
        if let Some(schema) = &options.schema {
            if !is_plain_identifier(schema) {
                return Err(StoreError::new(format!(
                    "schema {schema:?}: use letters, digits and underscores"
                )));
            }
            let (mut client, connection) = config
                .connect(tls.clone())
                .await
                .map_err(|error| connect_error(&error))?;
            let connection = tokio::spawn(connection);
            schema::create_schema(&mut client, schema)
                .await
                .map_err(database_error)?;
            drop(client);
            let _ = connection.await;
            add_option(&mut config, &format!("-c search_path={schema}"));
        }
        // An acknowledgement promises a commit that survives a crash of the database server,
        // whatever the server's or the role's default says.
        add_option(&mut config, "-c synchronous_commit=on");

        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // Bounded waits: a database that accepts connections but never answers (a partition, a
        // stopped server) fails a request in seconds instead of holding it.
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(DATABASE_DEADLINE))
            .recycle_timeout(Some(DATABASE_DEADLINE))
            .wait_timeout(Some(2 * DATABASE_DEADLINE))
            .build()
            .map_err(StoreError::new)?;
        let mut client = pool.get().await.map_err(pool_error)?;
        schema::migrate(&mut client)
            .await
            .map_err(database_error)?
            .map_err(StoreError::new)?;
        let schema: String = client
            .query_one("SELECT current_schema()", &[])
            .await
            .map_err(database_error)?
            .get(0);
        let version = keys::version(&client).await.map_err(database_error)?;
        let (keys, triggers) = keys::load(&client).await.map_err(database_error)?;
        drop(client);
        let cache = MemoryKeyStore::new();
        cache.replace_all(keys, triggers);

        let (submits, waiting) = mpsc::channel(QUEUE_CAPACITY);
        let work = Arc::new(Notify::new());
        let instance = Uuid::now_v7();
        let batcher = tokio::spawn(batch::run(
            waiting,
            pool.clone(),
            Arc::clone(&work),
            format!("{schema}:work:{instance}"),
            options.batches_in_flight,
        ));
        // The log's writer ends once the store (the queue's sender) is dropped.
        let (log, log_writer) = LogQueue::start(pool.clone());
        tokio::spawn(log_writer);
        let inner = Arc::new(Inner {
            log,
            pool,
            schema,
            instance,
            lease: options.lease,
            submits: Some(submits),
            cache,
            cached_version: AtomicI64::new(version),
            config_changed: Arc::new(Notify::new()),
            work,
            leases: Mutex::new(HashMap::new()),
            cancels: Mutex::new(HashMap::new()),
            subject_slots: Arc::new(tokio::sync::Semaphore::new(
                (options.batches_in_flight * 2)
                    .min(options.pool_size / 2)
                    .max(1),
            )),
            due: Arc::default(),
            tasks: Mutex::new(vec![batcher]),
        });
        // Started once the store exists: each holds it weakly, and ends when it is dropped.
        let weak = Arc::downgrade(&inner);
        inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend([
                tokio::spawn(listen::run(config, tls, weak.clone())),
                tokio::spawn(leases::run(weak.clone())),
                tokio::spawn(keys::refresh(weak, options.key_refresh)),
            ]);
        Ok(PostgresStore { inner })
    }

    /// A connection from the pool.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner.pool.get().await.map_err(pool_error)
    }

    /// `work`, or `unavailable` when the database has not answered within
    /// [`DATABASE_DEADLINE`]: for the reads and writes an API request waits on.
    async fn within_deadline<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(DATABASE_DEADLINE, work)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::unavailable(format!(
                    "the database did not answer within {} s",
                    DATABASE_DEADLINE.as_secs()
                )))
            })
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Held>> {
        self.inner
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A claim this instance holds.
#[derive(Clone, Copy)]
struct Held {
    /// Names the claim in the row: only its holder may renew it or record the result.
    token: Uuid,
    /// Whether the claim's transaction has committed (before that, the row does not show it).
    committed: bool,
    /// Whether its worker is recording the end: the agent has exited, so a renewal that finds
    /// the claim gone (the end just written) has nothing to stop.
    ending: bool,
}

impl Inner {
    /// Whether a worker here still runs the agent of `id`: it holds the claim and is not
    /// recording the end.
    fn runs_agent(&self, id: Uuid) -> bool {
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .is_some_and(|held| !held.ending)
    }

    /// Tells the worker running `id` here, if one does, that a cancel was asked for.
    fn cancel_asked(&self, id: Uuid) {
        if let Some(asked) = self
            .cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            asked.notify_one();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The batcher finishes what it was sent once the queue closes; the rest stop now.
        self.submits.take();
        let tasks = self.tasks.get_mut().unwrap_or_else(PoisonError::into_inner);
        for task in tasks.iter().skip(1) {
            task.abort();
        }
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("keys_and_triggers", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

/// Adds a server option to those the URL already gave.
fn add_option(config: &mut tokio_postgres::Config, option: &str) {
    let options = match config.get_options() {
        Some(given) if !given.is_empty() => format!("{given} {option}"),
        _ => option.to_owned(),
    };
    config.options(options);
}

fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn database_error(error: tokio_postgres::Error) -> StoreError {
    let message = format!("database: {}", describe(&error));
    if is_unavailable(&error) {
        StoreError::unavailable(message)
    } else {
        StoreError::new(message)
    }
}

fn connect_error(error: &tokio_postgres::Error) -> StoreError {
    let message = format!("cannot connect to the database: {}", describe(error));
    if is_unavailable(error) {
        StoreError::unavailable(message)
    } else {
        StoreError::new(message)
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => connect_error(&error),
        deadpool_postgres::PoolError::Timeout(_) => {
            StoreError::unavailable(format!("the database pool: {error}"))
        }
        other => StoreError::new(format!("the database pool: {other}")),
    }
}

/// Whether a failure says that the database is away (restarting, shutting down, unreachable,
/// out of connections, space or memory, a standby after a failover) rather than that a
/// statement is wrong: the former is worth retrying, and answered `503`.
fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => is_unavailable_state(code),
        // No answer from the server: the socket failed, or the connection or TLS did not
        // complete in time.
        None => {
            let mut cause = std::error::Error::source(error);
            while let Some(inner) = cause {
                if inner.is::<std::io::Error>() {
                    return true;
                }
                cause = inner.source();
            }
            error.to_string().contains("timeout")
        }
    }
}

/// The SQLSTATEs of a database that is away for now: connection exceptions (08), insufficient
/// resources (53, a full disk included), operator intervention (57, a shutdown or a cancel,
/// but not a dropped database), a transaction rolled back to be retried (40), a read-only
/// standby (25006) and an I/O error of the server (58030).
fn is_unavailable_state(code: &SqlState) -> bool {
    let state = code.code();
    (state.starts_with("08")
        || state.starts_with("53")
        || state.starts_with("40")
        || state.starts_with("57"))
        && *code != SqlState::DATABASE_DROPPED
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        || *code == SqlState::IO_ERROR
}

/// The server's message (`Display` alone says only "db error"). Not its detail, which can
/// quote a row, and a row of `trigger_secrets` holds a secret.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => match std::error::Error::source(error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_that_is_away_is_told_from_a_statement_that_is_wrong() {
        for away in [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::CONNECTION_FAILURE,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::DISK_FULL,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::READ_ONLY_SQL_TRANSACTION,
            SqlState::QUERY_CANCELED,
        ] {
            assert!(is_unavailable_state(&away), "{}", away.code());
        }
        for wrong in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::UNDEFINED_TABLE,
            SqlState::SYNTAX_ERROR,
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::DATABASE_DROPPED,
        ] {
            assert!(!is_unavailable_state(&wrong), "{}", wrong.code());
        }
    }

    #[test]
    fn server_options_are_added_to_those_of_the_url() {
        let mut config: tokio_postgres::Config =
            "postgres://u@h/db?options=-c%20statement_timeout%3D5s"
                .parse()
                .unwrap();
        add_option(&mut config, "-c synchronous_commit=on");
        assert_eq!(
            config.get_options(),
            Some("-c statement_timeout=5s -c synchronous_commit=on")
        );
        let mut config: tokio_postgres::Config = "postgres://u@h/db".parse().unwrap();
        add_option(&mut config, "-c synchronous_commit=on");
        assert_eq!(config.get_options(), Some("-c synchronous_commit=on"));
    }
}
