//! Keys and triggers in the database: written when the configuration says, read into the
//! in-memory copy the service looks them up in, and reloaded on every instance when they
//! change.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_postgres::Transaction;
use uuid::Uuid;

use super::{CHANNEL, Inner, PostgresStore, database_error};
use crate::queue::TRIGGER_REMOVED;
use crate::rules::{Filter, InputExpression, PromptTemplate};
use crate::{
    ActionAllowlist, ApiKey, ApiKeyRecord, KeyDigest, KeyScope, KeyStore, SignatureScheme,
    SigningSecret, Source, StoreError, Trigger,
};

type KeysAndTriggers = (Vec<(KeyDigest, ApiKeyRecord)>, Vec<Trigger>);

impl PostgresStore {
    /// Writes keys and triggers with `change` in one transaction that bumps their version and
    /// tells every instance, then reloads this instance's copy.
    async fn change_keys_and_triggers<T>(
        &self,
        change: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(database_error)?;
        let result = change(&transaction).await.map_err(database_error)?;
        transaction
            .execute("UPDATE config_version SET version = version + 1", &[])
            .await
            .map_err(database_error)?;
        transaction
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &format!("{}:config", self.inner.schema)],
            )
            .await
            .map_err(database_error)?;
        transaction.commit().await.map_err(database_error)?;
        reload(&self.inner, &client).await?;
        Ok(result)
    }

    /// Adds or replaces a key by the digest of its plaintext.
    pub async fn insert_key(
        &self,
        digest: KeyDigest,
        record: ApiKeyRecord,
    ) -> Result<(), StoreError> {
        self.change_keys_and_triggers(async |transaction| {
            write_key(transaction, &digest, &record).await
        })
        .await
    }

    /// Generates a key for `record`, stores its digest and returns the plaintext: the only
    /// time anyone sees it.
    pub async fn generate_key(&self, record: ApiKeyRecord) -> Result<ApiKey, StoreError> {
        let key = ApiKey::generate();
        self.insert_key(key.digest(), record).await?;
        Ok(key)
    }

    /// Revokes the key with this id, on every instance; `false` when there is none.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        self.change_keys_and_triggers(async |transaction| {
            Ok(transaction
                .execute("UPDATE api_keys SET revoked = true WHERE id = $1", &[&id])
                .await?
                > 0)
        })
        .await
    }

    /// Adds or replaces a trigger and its secrets.
    pub async fn insert_trigger(&self, trigger: Trigger) -> Result<(), StoreError> {
        self.change_keys_and_triggers(async |transaction| {
            write_trigger(transaction, &trigger).await
        })
        .await
    }

    /// Removes a trigger; `false` when there is none. Its executions are kept; those still
    /// queued end `cancelled`, saying why.
    pub async fn remove_trigger(&self, id: Uuid) -> Result<bool, StoreError> {
        self.change_keys_and_triggers(async |transaction| {
            let removed = transaction
                .execute("DELETE FROM triggers WHERE id = $1", &[&id])
                .await?
                > 0;
            if removed {
                transaction
                    .execute(
                        "UPDATE executions SET status = 'cancelled', finished_at = now(),
                             output_tail = $2
                         WHERE status = 'queued' AND trigger_id = $1",
                        &[&id, &TRIGGER_REMOVED.as_bytes()],
                    )
                    .await?;
            }
            Ok(removed)
        })
        .await
    }

    /// Replaces every key and trigger with these, in one transaction (for hosts whose
    /// configuration file is the source of truth). Instances that start with the same
    /// configuration may all call it: the last one wins, with the same content. The queued
    /// executions of a trigger that is not among these end `cancelled`, saying why.
    pub async fn replace_keys_and_triggers(
        &self,
        keys: Vec<(KeyDigest, ApiKeyRecord)>,
        triggers: Vec<Trigger>,
    ) -> Result<(), StoreError> {
        self.change_keys_and_triggers(async |transaction| {
            // One writer at a time: two instances replacing at once would otherwise interleave
            // their deletes and inserts.
            transaction
                .execute(
                    "LOCK TABLE api_keys, triggers, trigger_secrets IN EXCLUSIVE MODE",
                    &[],
                )
                .await?;
            let kept: Vec<Uuid> = triggers.iter().map(Trigger::id).collect();
            transaction
                .execute(
                    "UPDATE executions SET status = 'cancelled', finished_at = now(),
                         output_tail = $2
                     WHERE status = 'queued'
                       AND trigger_id IN (SELECT id FROM triggers)
                       AND NOT trigger_id = ANY($1)",
                    &[&kept, &TRIGGER_REMOVED.as_bytes()],
                )
                .await?;
            transaction
                .batch_execute(
                    "DELETE FROM api_keys; DELETE FROM trigger_secrets; DELETE FROM triggers;",
                )
                .await?;
            for (digest, record) in &keys {
                write_key(transaction, digest, record).await?;
            }
            for trigger in &triggers {
                write_trigger(transaction, trigger).await?;
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

impl KeyStore for PostgresStore {
    async fn api_key(&self, digest: KeyDigest) -> Result<Option<Arc<ApiKeyRecord>>, StoreError> {
        self.inner.cache.api_key(digest).await
    }

    async fn trigger(&self, id: Uuid) -> Result<Option<Arc<Trigger>>, StoreError> {
        self.inner.cache.trigger(id).await
    }
}

/// Reloads the copy when the version in the database is not the one it was loaded at. An
/// unchanged version keeps the copy, and with it each trigger's rate state.
pub(super) async fn reload(
    inner: &Inner,
    client: &tokio_postgres::Client,
) -> Result<(), StoreError> {
    let version = version(client).await.map_err(database_error)?;
    if version == inner.cached_version.load(Ordering::Acquire) {
        return Ok(());
    }
    let (keys, triggers) = load(client).await.map_err(database_error)?;
    inner.cache.replace_all(keys, triggers);
    inner.cached_version.store(version, Ordering::Release);
    Ok(())
}

/// Keeps this instance's copy current: at once when a notification says keys or triggers
/// changed, and every `every` in case one was missed (the listener reconnecting, say).
pub(super) async fn refresh(store: Weak<Inner>, every: Duration) {
    loop {
        let Some(inner) = store.upgrade() else { return };
        // A change notified while this check runs is stored as a permit: nothing is missed.
        let changed = Arc::clone(&inner.config_changed);
        let result = match inner.pool.get().await {
            Ok(client) => reload(&inner, &client).await,
            Err(error) => Err(super::pool_error(error)),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "could not check keys and triggers for changes");
        }
        drop(inner);
        let _ = tokio::time::timeout(every, changed.notified()).await;
    }
}

async fn write_key(
    transaction: &Transaction<'_>,
    digest: &KeyDigest,
    record: &ApiKeyRecord,
) -> Result<(), tokio_postgres::Error> {
    let triggers: Option<&[Uuid]> = match record.scope() {
        KeyScope::Tenant => None,
        KeyScope::Triggers(ids) => Some(ids),
    };
    transaction
        .execute(
            "INSERT INTO api_keys (id, tenant, digest, triggers, expires_at, revoked, rights)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, digest = excluded.digest,
                 triggers = excluded.triggers, expires_at = excluded.expires_at,
                 revoked = excluded.revoked, rights = excluded.rights",
            &[
                &record.id(),
                &record.tenant(),
                &&digest.as_bytes()[..],
                &triggers,
                &record.expires_at(),
                &record.is_revoked(),
                &i16::from(record.rights_bits()),
            ],
        )
        .await?;
    Ok(())
}

async fn write_trigger(
    transaction: &Transaction<'_>,
    trigger: &Trigger,
) -> Result<(), tokio_postgres::Error> {
    let actions: Option<Vec<&str>> = trigger
        .actions()
        .map(|allowlist| allowlist.entries().collect());
    let replay_window = trigger
        .replay_window()
        .map(|window| i64::try_from(window.as_secs()).unwrap_or(i64::MAX));
    let rate_count = trigger
        .rate_limit()
        .map(|(count, _)| i32::try_from(count.get()).unwrap_or(i32::MAX));
    let rate_period = trigger
        .rate_limit()
        .map(|(_, period)| i64::try_from(period.as_millis()).unwrap_or(i64::MAX));
    let max_running = trigger
        .max_running()
        .map(|count| i32::try_from(count.get()).unwrap_or(i32::MAX));
    let signature = trigger
        .signature()
        .map(|scheme| serde_json::to_string(scheme).expect("a signature scheme serialises"));
    let concurrency = crate::concurrency::stored(trigger);
    transaction
        .execute(
            "INSERT INTO triggers (id, tenant, source, enabled, actions, replay_window_secs,
                 rate_count, rate_period_ms, max_running, signature, public_url, rule_filter,
                 rule_input, rule_prompt, concurrency_key, on_busy, debounce_ms, debounce_max_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 $18)
             ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, source = excluded.source,
                 enabled = excluded.enabled, actions = excluded.actions,
                 replay_window_secs = excluded.replay_window_secs,
                 rate_count = excluded.rate_count, rate_period_ms = excluded.rate_period_ms,
                 max_running = excluded.max_running, signature = excluded.signature,
                 public_url = excluded.public_url, rule_filter = excluded.rule_filter,
                 rule_input = excluded.rule_input, rule_prompt = excluded.rule_prompt,
                 concurrency_key = excluded.concurrency_key, on_busy = excluded.on_busy,
                 debounce_ms = excluded.debounce_ms, debounce_max_ms = excluded.debounce_max_ms",
            &[
                &trigger.id(),
                &trigger.tenant(),
                &trigger.source().as_str(),
                &trigger.is_enabled(),
                &actions,
                &replay_window,
                &rate_count,
                &rate_period,
                &max_running,
                &signature,
                &trigger.public_url(),
                &trigger.filter().map(Filter::as_str),
                &trigger.input().map(InputExpression::as_str),
                &trigger.prompt().map(PromptTemplate::as_str),
                &concurrency.0,
                &concurrency.1,
                &concurrency.2,
                &concurrency.3,
            ],
        )
        .await?;
    transaction
        .execute(
            "DELETE FROM trigger_secrets WHERE trigger_id = $1",
            &[&trigger.id()],
        )
        .await?;
    for (position, secret) in trigger.secrets().iter().enumerate() {
        transaction
            .execute(
                "INSERT INTO trigger_secrets (trigger_id, id, secret, not_before, not_after, position)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &trigger.id(),
                    &secret.id(),
                    &secret.expose_value(),
                    &secret.not_before(),
                    &secret.not_after(),
                    &i32::try_from(position).unwrap_or(i32::MAX),
                ],
            )
            .await?;
    }
    Ok(())
}

/// The version of the keys and triggers. Read it before [`load`]: a change that lands between
/// the two then moves the version past the one the copy is recorded at, and is loaded at the
/// next check.
pub(super) async fn version(client: &tokio_postgres::Client) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT version FROM config_version", &[])
        .await?
        .get(0))
}

/// Every key and trigger, one statement per table.
pub(super) async fn load(
    client: &tokio_postgres::Client,
) -> Result<KeysAndTriggers, tokio_postgres::Error> {
    let mut keys = Vec::new();
    for row in client
        .query(
            "SELECT id, tenant, digest, triggers, expires_at, revoked, rights FROM api_keys",
            &[],
        )
        .await?
    {
        let id: String = row.get(0);
        let digest: &[u8] = row.get(2);
        let Ok(digest) = <[u8; 32]>::try_from(digest) else {
            tracing::warn!(key_id = %id, "skipping a key whose digest is not 32 bytes");
            continue;
        };
        let mut record = ApiKeyRecord::new(id, row.get::<_, String>(1));
        if let Some(triggers) = row.get::<_, Option<Vec<Uuid>>>(3) {
            record = record.with_scope(KeyScope::Triggers(triggers));
        }
        if let Some(expires_at) = row.get(4) {
            record = record.with_expires_at(expires_at);
        }
        if row.get::<_, bool>(5) {
            record = record.revoked();
        }
        // Only the three low bits are rights; anything else is dropped.
        record = record.with_rights_bits(row.get::<_, i16>(6).to_le_bytes()[0]);
        keys.push((KeyDigest::from_bytes(digest), record));
    }

    let mut secrets: std::collections::HashMap<Uuid, Vec<SigningSecret>> =
        std::collections::HashMap::new();
    for row in client
        .query(
            "SELECT trigger_id, id, secret, not_before, not_after FROM trigger_secrets
             ORDER BY trigger_id, position",
            &[],
        )
        .await?
    {
        let trigger_id: Uuid = row.get(0);
        let id: String = row.get(1);
        let value: Vec<u8> = row.get(2);
        let Ok(mut secret) = SigningSecret::new(id.clone(), value) else {
            tracing::warn!(%trigger_id, secret_id = %id, "skipping an unusable signing secret");
            continue;
        };
        if let Some(at) = row.get(3) {
            secret = secret.with_not_before(at);
        }
        if let Some(at) = row.get(4) {
            secret = secret.with_not_after(at);
        }
        secrets.entry(trigger_id).or_default().push(secret);
    }

    let mut triggers = Vec::new();
    for row in client
        .query(
            "SELECT id, tenant, source, enabled, actions, replay_window_secs, rate_count,
                    rate_period_ms, max_running, signature, public_url, rule_filter, rule_input,
                    rule_prompt, concurrency_key, on_busy, debounce_ms, debounce_max_ms
             FROM triggers",
            &[],
        )
        .await?
    {
        let id: Uuid = row.get(0);
        let Ok(source) = row.get::<_, &str>(2).parse::<Source>() else {
            tracing::warn!(trigger_id = %id, "skipping a trigger with an unknown source");
            continue;
        };
        let mut trigger = Trigger::new(id, row.get::<_, String>(1), source).enabled(row.get(3));
        if let Some(actions) = row.get::<_, Option<Vec<String>>>(4) {
            trigger = trigger.with_actions(ActionAllowlist::new(actions));
        }
        if let Some(seconds) = row.get::<_, Option<i64>>(5) {
            trigger =
                trigger.with_replay_window(Duration::from_secs(seconds.max(0).unsigned_abs()));
        }
        let rate_count = row
            .get::<_, Option<i32>>(6)
            .and_then(|count| NonZeroU32::new(count.max(0).unsigned_abs()));
        if let (Some(count), Some(millis)) = (rate_count, row.get::<_, Option<i64>>(7)) {
            trigger =
                trigger.with_rate_limit(count, Duration::from_millis(millis.max(0).unsigned_abs()));
        }
        if let Some(count) = row
            .get::<_, Option<i32>>(8)
            .and_then(|count| NonZeroU32::new(count.max(0).unsigned_abs()))
        {
            trigger = trigger.with_max_running(count);
        }
        if let Some(text) = row.get::<_, Option<&str>>(9) {
            // Skipped rather than verified with another scheme than the one configured.
            let Ok(scheme) = serde_json::from_str::<SignatureScheme>(text) else {
                tracing::warn!(trigger_id = %id, "skipping a trigger whose signature scheme is unreadable");
                continue;
            };
            trigger = trigger.with_signature(scheme);
        }
        if let Some(url) = row.get::<_, Option<&str>>(10) {
            trigger = trigger.with_public_url(url);
        }
        for secret in secrets.remove(&id).unwrap_or_default() {
            trigger = trigger.with_secret(secret);
        }
        let rules = (row.get(11), row.get(12), row.get(13));
        let concurrency = (row.get(14), row.get(15), row.get(16), row.get(17));
        match crate::rules::with_stored_rules(trigger, rules)
            .map_err(|error| error.to_string())
            .and_then(|trigger| crate::concurrency::with_stored(trigger, concurrency))
        {
            Ok(trigger) => triggers.push(trigger),
            Err(error) => {
                // Without its rules it would start what they keep out: left out whole.
                tracing::warn!(trigger_id = %id, %error, "skipping a trigger whose rules do not compile");
            }
        }
    }
    Ok((keys, triggers))
}
