//! [`SqliteStore`]: a durable embedded store (feature `sqlite`) that is at once the
//! [`KeyStore`], the [`ExecutionSink`] and the [`ExecutionQueue`] of a standalone host.
//!
//! - Every acknowledged execution is committed (WAL, `synchronous=FULL`) before its `200`
//!   is sent, so it survives `kill -9` and power loss.
//! - Concurrent deliveries are committed in groups: one transaction and one fsync for all the
//!   deliveries that arrived while the previous group was being written.
//! - Each idempotency key ([`Delivery::idempotency_keys`]) is unique per trigger in the
//!   database, so redeliveries are recognised across restarts for as long as the execution
//!   record lives.
//! - A delivery whose caller stopped waiting before its transaction (a backend deadline or the
//!   server's request deadline already answered it with an error) is not kept, so the sender's
//!   retry does not run it twice. What remains is the moment between the insert and the commit:
//!   a caller that gives up within it gets an error for a delivery that is kept.
//! - At most [`QUEUE_CAPACITY`] commands wait for the database thread; a delivery that finds
//!   the queue full is answered `503` with `Retry-After` at once.
//! - Executions left `running` by a crash are marked `interrupted` when the store is opened.
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
mod schema;
mod thread;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::mpsc::{self, Sender, error::TrySendError};
use tokio::sync::{Notify, oneshot};
use uuid::Uuid;

use self::codec::{caller_from_columns, from_unix_millis, unix_millis};
use self::thread::Command;
use crate::memory::MemoryKeyStore;
use crate::queue::{
    ClaimedExecution, ExecutionQueue, ExecutionRecord, ExecutionResult, ExecutionStatus,
};
use crate::{
    ActionAllowlist, ApiKey, ApiKeyRecord, Delivery, ExecutionId, ExecutionSink, KeyDigest,
    KeyScope, KeyStore, Outcome, SigningSecret, SinkError, Source, StoreError, Trigger,
};

/// How many commands (deliveries to keep, queries) may wait for the database thread. Each
/// waiting delivery holds its body, so this also bounds the memory they take.
pub const QUEUE_CAPACITY: usize = 1024;

/// The `Retry-After` of a delivery that found the queue full.
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
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Keys and triggers, served from memory and rewritten after every change.
    cache: MemoryKeyStore,
    work: Arc<Notify>,
    interrupted_on_open: usize,
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
        schema::migrate(&mut connection)
            .map_err(|error| open_error(&path, error))?
            .map_err(|message| StoreError::new(format!("{}: {message}", path.display())))?;
        let interrupted_on_open = connection
            .execute(
                "UPDATE executions SET status = 'interrupted', finished_at = ?1 WHERE status = 'running'",
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
        let thread = std::thread::Builder::new()
            .name("agent-trigger-sqlite".to_owned())
            .spawn(move || thread::run(connection, receiver, thread_work))
            .map_err(|error| StoreError::new(format!("starting the database thread: {error}")))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                commands: Some(sender),
                thread: Mutex::new(Some(thread)),
                cache,
                work,
                interrupted_on_open,
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
            .map_err(StoreError::new)
    }

    fn commands(&self) -> Result<&Sender<Command>, StoreError> {
        self.inner
            .commands
            .as_ref()
            .ok_or_else(|| StoreError::new("the database thread stopped"))
    }

    /// Writes keys and triggers with `change`, then reloads the in-memory copy the service
    /// reads from.
    async fn change_keys_and_triggers<T, F>(&self, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let (result, keys, triggers) = self
            .call(move |connection| {
                let transaction = connection.transaction()?;
                let result = change(&transaction)?;
                transaction.commit()?;
                let (keys, triggers) = load_keys_and_triggers(connection)?;
                Ok((result, keys, triggers))
            })
            .await?;
        self.inner.cache.replace_all(keys, triggers);
        Ok(result)
    }

    /// Adds or replaces a key by the digest of its plaintext.
    pub async fn insert_key(
        &self,
        digest: KeyDigest,
        record: ApiKeyRecord,
    ) -> Result<(), StoreError> {
        self.change_keys_and_triggers(move |transaction| write_key(transaction, &digest, &record))
            .await
    }

    /// Generates a key for `record`, stores its digest and returns the plaintext: the only
    /// time anyone sees it.
    pub async fn generate_key(&self, record: ApiKeyRecord) -> Result<ApiKey, StoreError> {
        let key = ApiKey::generate();
        self.insert_key(key.digest(), record).await?;
        Ok(key)
    }

    /// Revokes the key with this id; `false` when there is none.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.change_keys_and_triggers(move |transaction| {
            Ok(
                transaction
                    .execute("UPDATE api_keys SET revoked = 1 WHERE id = ?1", params![id])?
                    > 0,
            )
        })
        .await
    }

    /// Adds or replaces a trigger and its secrets.
    pub async fn insert_trigger(&self, trigger: Trigger) -> Result<(), StoreError> {
        self.change_keys_and_triggers(move |transaction| write_trigger(transaction, &trigger))
            .await
    }

    /// Removes a trigger; `false` when there is none. Its executions are kept.
    pub async fn remove_trigger(&self, id: Uuid) -> Result<bool, StoreError> {
        self.change_keys_and_triggers(move |transaction| {
            Ok(transaction.execute(
                "DELETE FROM triggers WHERE id = ?1",
                params![id.to_string()],
            )? > 0)
        })
        .await
    }

    /// Replaces every key and trigger with these, in one transaction (for a host whose
    /// configuration file is the source of truth).
    pub async fn replace_keys_and_triggers(
        &self,
        keys: Vec<(KeyDigest, ApiKeyRecord)>,
        triggers: Vec<Trigger>,
    ) -> Result<(), StoreError> {
        self.change_keys_and_triggers(move |transaction| {
            transaction.execute_batch(
                "DELETE FROM api_keys; DELETE FROM trigger_secrets; DELETE FROM triggers;",
            )?;
            for (digest, record) in &keys {
                write_key(transaction, digest, record)?;
            }
            for trigger in &triggers {
                write_trigger(transaction, trigger)?;
            }
            Ok(())
        })
        .await
    }

    /// Every trigger, in id order.
    pub fn triggers(&self) -> Vec<Arc<Trigger>> {
        self.inner.cache.triggers()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish what it was sent, then stop.
        self.commands.take();
        if let Some(thread) = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
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

impl KeyStore for SqliteStore {
    async fn api_key(&self, digest: KeyDigest) -> Result<Option<Arc<ApiKeyRecord>>, StoreError> {
        self.inner.cache.api_key(digest).await
    }

    async fn trigger(&self, id: Uuid) -> Result<Option<Arc<Trigger>>, StoreError> {
        self.inner.cache.trigger(id).await
    }
}

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
                            finished_at, exit_code, output_tail
                     FROM executions WHERE id = ?1",
                )?
                .query_row(params![id], read_record)
                .optional()
        })
        .await
    }

    async fn claim(&self) -> Result<Option<ClaimedExecution>, StoreError> {
        self.call(|connection| {
            connection
                .prepare_cached(
                    "UPDATE executions SET status = 'running', started_at = ?1
                     WHERE id = (SELECT id FROM executions WHERE status = 'queued' ORDER BY id LIMIT 1)
                     RETURNING id, source, trigger_id, tenant, caller_kind, caller_id, caller_tenant,
                               delivery_id, action, received_at, input",
                )?
                .query_row(params![unix_millis(SystemTime::now())], read_claimed)
                .optional()
        })
        .await
    }

    async fn finish(&self, id: &ExecutionId, result: ExecutionResult) -> Result<(), StoreError> {
        let id = id.to_string();
        self.call(move |connection| {
            connection
                .prepare_cached(
                    "UPDATE executions SET status = ?2, exit_code = ?3, output_tail = ?4, finished_at = ?5
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
        })
        .await
    }

    fn work_queued(&self) -> impl std::future::Future<Output = ()> + Send {
        let work = Arc::clone(&self.inner.work);
        async move { work.notified().await }
    }
}

fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before `submit` answers, even across power loss.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", true)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    Ok(())
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

fn write_key(
    transaction: &rusqlite::Transaction<'_>,
    digest: &KeyDigest,
    record: &ApiKeyRecord,
) -> rusqlite::Result<()> {
    let triggers = match record.scope() {
        KeyScope::Tenant => None,
        KeyScope::Triggers(ids) => Some(
            serde_json::to_string(&ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
                .expect("a list of strings serialises"),
        ),
    };
    transaction.execute(
        "INSERT INTO api_keys (id, tenant, digest, triggers, expires_at, revoked) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, digest = excluded.digest,
             triggers = excluded.triggers, expires_at = excluded.expires_at, revoked = excluded.revoked",
        params![
            record.id(),
            record.tenant(),
            &digest.as_bytes()[..],
            triggers,
            record.expires_at().map(unix_millis),
            record.is_revoked(),
        ],
    )?;
    Ok(())
}

fn write_trigger(
    transaction: &rusqlite::Transaction<'_>,
    trigger: &Trigger,
) -> rusqlite::Result<()> {
    let id = trigger.id().to_string();
    let actions = trigger.actions().map(|allowlist| {
        serde_json::to_string(&allowlist.entries().collect::<Vec<_>>())
            .expect("a list of strings serialises")
    });
    transaction.execute(
        "INSERT INTO triggers (id, tenant, source, enabled, actions, replay_window_secs) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, source = excluded.source,
             enabled = excluded.enabled, actions = excluded.actions, replay_window_secs = excluded.replay_window_secs",
        params![
            id,
            trigger.tenant(),
            trigger.source().as_str(),
            trigger.is_enabled(),
            actions,
            trigger.replay_window().map(|window| window.as_secs() as i64),
        ],
    )?;
    transaction.execute(
        "DELETE FROM trigger_secrets WHERE trigger_id = ?1",
        params![id],
    )?;
    for (position, secret) in trigger.secrets().iter().enumerate() {
        transaction.execute(
            "INSERT INTO trigger_secrets (trigger_id, id, secret, not_before, not_after, position)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                secret.id(),
                secret.expose_value(),
                secret.not_before().map(unix_millis),
                secret.not_after().map(unix_millis),
                position as i64,
            ],
        )?;
    }
    Ok(())
}

type KeysAndTriggers = (Vec<(KeyDigest, ApiKeyRecord)>, Vec<Trigger>);

fn load_keys_and_triggers(connection: &Connection) -> rusqlite::Result<KeysAndTriggers> {
    let mut keys = Vec::new();
    let mut statement = connection
        .prepare("SELECT id, tenant, digest, triggers, expires_at, revoked FROM api_keys")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let digest: Vec<u8> = row.get(2)?;
        let Ok(digest) = <[u8; 32]>::try_from(digest.as_slice()) else {
            tracing::warn!(
                key_id = row.get::<_, String>(0)?,
                "skipping a key whose digest is not 32 bytes"
            );
            continue;
        };
        let mut record = ApiKeyRecord::new(row.get::<_, String>(0)?, row.get::<_, String>(1)?);
        if let Some(triggers) = row.get::<_, Option<String>>(3)? {
            let ids: Vec<String> = serde_json::from_str(&triggers).unwrap_or_default();
            record = record.with_scope(KeyScope::Triggers(
                ids.iter()
                    .filter_map(|id| Uuid::try_parse(id).ok())
                    .collect(),
            ));
        }
        if let Some(expires_at) = row.get::<_, Option<i64>>(4)? {
            record = record.with_expires_at(from_unix_millis(expires_at));
        }
        if row.get::<_, bool>(5)? {
            record = record.revoked();
        }
        keys.push((KeyDigest::from_bytes(digest), record));
    }

    let mut secrets: std::collections::HashMap<String, Vec<SigningSecret>> =
        std::collections::HashMap::new();
    let mut statement = connection.prepare(
        "SELECT trigger_id, id, secret, not_before, not_after FROM trigger_secrets ORDER BY trigger_id, position",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let trigger_id: String = row.get(0)?;
        let id: String = row.get(1)?;
        let value: Vec<u8> = row.get(2)?;
        let Ok(mut secret) = SigningSecret::new(id.clone(), value) else {
            tracing::warn!(%trigger_id, secret_id = %id, "skipping an unusable signing secret");
            continue;
        };
        if let Some(at) = row.get::<_, Option<i64>>(3)? {
            secret = secret.with_not_before(from_unix_millis(at));
        }
        if let Some(at) = row.get::<_, Option<i64>>(4)? {
            secret = secret.with_not_after(from_unix_millis(at));
        }
        secrets.entry(trigger_id).or_default().push(secret);
    }

    let mut triggers = Vec::new();
    let mut statement = connection
        .prepare("SELECT id, tenant, source, enabled, actions, replay_window_secs FROM triggers")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let (Ok(uuid), Ok(source)) = (
            Uuid::try_parse(&id),
            row.get::<_, String>(2)?.parse::<Source>(),
        ) else {
            tracing::warn!(trigger_id = %id, "skipping a trigger with a bad id or source");
            continue;
        };
        let mut trigger = Trigger::new(uuid, row.get::<_, String>(1)?, source).enabled(row.get(3)?);
        if let Some(actions) = row.get::<_, Option<String>>(4)? {
            let entries: Vec<String> = serde_json::from_str(&actions).unwrap_or_default();
            trigger = trigger.with_actions(ActionAllowlist::new(entries));
        }
        if let Some(seconds) = row.get::<_, Option<i64>>(5)? {
            trigger =
                trigger.with_replay_window(Duration::from_secs(seconds.max(0).unsigned_abs()));
        }
        for secret in secrets.remove(&id).unwrap_or_default() {
            trigger = trigger.with_secret(secret);
        }
        triggers.push(trigger);
    }
    Ok((keys, triggers))
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
    })
}

fn read_claimed(row: &rusqlite::Row<'_>) -> rusqlite::Result<ClaimedExecution> {
    let source: String = row.get(1)?;
    let trigger_id: String = row.get(2)?;
    let tenant: String = row.get(3)?;
    let kind: String = row.get(4)?;
    let caller = caller_from_columns(&kind, row.get(5)?, row.get(6)?);
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
    Ok(ClaimedExecution {
        id: ExecutionId::from(row.get::<_, String>(0)?),
        delivery,
    })
}

fn column_error(
    column: usize,
    error: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(error))
}
