//! Keys and triggers in the database: written when the configuration says, read once into the
//! in-memory copy the service looks them up in.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, params};
use uuid::Uuid;

use super::SqliteStore;
use super::codec::{from_unix_millis, unix_millis};
use crate::queue::TRIGGER_REMOVED;
use crate::rules::{Filter, InputExpression, PromptTemplate};
use crate::{
    ActionAllowlist, ApiKey, ApiKeyRecord, KeyDigest, KeyScope, KeyStore, SignatureScheme,
    SigningSecret, Source, StoreError, Trigger,
};

impl SqliteStore {
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
        // A trigger enabled again, or with a higher cap, may have executions ready to claim.
        self.inner.work.notify_waiters();
        self.inner.work.notify_one();
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

    /// Removes a trigger; `false` when there is none. Its executions are kept; those still
    /// queued end `cancelled`, saying why.
    pub async fn remove_trigger(&self, id: Uuid) -> Result<bool, StoreError> {
        self.change_keys_and_triggers(move |transaction| {
            let id = id.to_string();
            let removed =
                transaction.execute("DELETE FROM triggers WHERE id = ?1", params![id])? > 0;
            if removed {
                transaction.execute(
                    "UPDATE executions SET status = 'cancelled', finished_at = ?2, output_tail = ?3
                     WHERE status = 'queued' AND trigger_id = ?1",
                    params![
                        id,
                        unix_millis(SystemTime::now()),
                        TRIGGER_REMOVED.as_bytes()
                    ],
                )?;
            }
            Ok(removed)
        })
        .await
    }

    /// Replaces every key and trigger with these, in one transaction (for a host whose
    /// configuration file is the source of truth). The queued executions of a trigger that is
    /// not among these end `cancelled`, saying why.
    pub async fn replace_keys_and_triggers(
        &self,
        keys: Vec<(KeyDigest, ApiKeyRecord)>,
        triggers: Vec<Trigger>,
    ) -> Result<(), StoreError> {
        self.change_keys_and_triggers(move |transaction| {
            let kept = serde_json::to_string(
                &triggers
                    .iter()
                    .map(|trigger| trigger.id().to_string())
                    .collect::<Vec<_>>(),
            )
            .expect("a list of strings serialises");
            transaction.execute(
                "UPDATE executions SET status = 'cancelled', finished_at = ?2, output_tail = ?3
                 WHERE status = 'queued'
                   AND trigger_id IN (SELECT id FROM triggers)
                   AND trigger_id NOT IN (SELECT value FROM json_each(?1))",
                params![
                    kept,
                    unix_millis(SystemTime::now()),
                    TRIGGER_REMOVED.as_bytes()
                ],
            )?;
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

impl KeyStore for SqliteStore {
    async fn api_key(&self, digest: KeyDigest) -> Result<Option<Arc<ApiKeyRecord>>, StoreError> {
        self.inner.cache.api_key(digest).await
    }

    async fn trigger(&self, id: Uuid) -> Result<Option<Arc<Trigger>>, StoreError> {
        self.inner.cache.trigger(id).await
    }
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
        "INSERT INTO api_keys (id, tenant, digest, triggers, expires_at, revoked, rights)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, digest = excluded.digest,
             triggers = excluded.triggers, expires_at = excluded.expires_at,
             revoked = excluded.revoked, rights = excluded.rights",
        params![
            record.id(),
            record.tenant(),
            &digest.as_bytes()[..],
            triggers,
            record.expires_at().map(unix_millis),
            record.is_revoked(),
            record.rights_bits(),
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
    let signature = trigger
        .signature()
        .map(|scheme| serde_json::to_string(scheme).expect("a signature scheme serialises"));
    let concurrency = crate::concurrency::stored(trigger);
    transaction.execute(
        "INSERT INTO triggers (id, tenant, source, enabled, actions, replay_window_secs, rate_count,
             rate_period_ms, max_running, signature, public_url, rule_filter, rule_input,
             rule_prompt, concurrency_key, on_busy, debounce_ms, debounce_max_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18)
         ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, source = excluded.source,
             enabled = excluded.enabled, actions = excluded.actions,
             replay_window_secs = excluded.replay_window_secs, rate_count = excluded.rate_count,
             rate_period_ms = excluded.rate_period_ms, max_running = excluded.max_running,
             signature = excluded.signature, public_url = excluded.public_url,
             rule_filter = excluded.rule_filter, rule_input = excluded.rule_input,
             rule_prompt = excluded.rule_prompt, concurrency_key = excluded.concurrency_key,
             on_busy = excluded.on_busy, debounce_ms = excluded.debounce_ms,
             debounce_max_ms = excluded.debounce_max_ms",
        params![
            id,
            trigger.tenant(),
            trigger.source().as_str(),
            trigger.is_enabled(),
            actions,
            trigger.replay_window().map(|window| window.as_secs() as i64),
            trigger.rate_limit().map(|(count, _)| count.get()),
            trigger
                .rate_limit()
                .map(|(_, period)| i64::try_from(period.as_millis()).unwrap_or(i64::MAX)),
            trigger.max_running().map(NonZeroU32::get),
            signature,
            trigger.public_url(),
            trigger.filter().map(Filter::as_str),
            trigger.input().map(InputExpression::as_str),
            trigger.prompt().map(PromptTemplate::as_str),
            concurrency.0,
            concurrency.1,
            concurrency.2,
            concurrency.3,
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

pub(super) fn load_keys_and_triggers(connection: &Connection) -> rusqlite::Result<KeysAndTriggers> {
    let mut keys = Vec::new();
    let mut statement = connection.prepare(
        "SELECT id, tenant, digest, triggers, expires_at, revoked, rights FROM api_keys",
    )?;
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
        record = record.with_rights_bits(row.get(6)?);
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
        .prepare("SELECT id, tenant, source, enabled, actions, replay_window_secs, rate_count, rate_period_ms, max_running, signature, public_url, rule_filter, rule_input, rule_prompt, concurrency_key, on_busy, debounce_ms, debounce_max_ms FROM triggers")?;
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
        if let (Some(count), Some(millis)) = (
            row.get::<_, Option<u32>>(6)?.and_then(NonZeroU32::new),
            row.get::<_, Option<i64>>(7)?,
        ) {
            let period = Duration::from_millis(millis.max(0).unsigned_abs());
            trigger = trigger.with_rate_limit(count, period);
        }
        if let Some(count) = row.get::<_, Option<u32>>(8)?.and_then(NonZeroU32::new) {
            trigger = trigger.with_max_running(count);
        }
        if let Some(text) = row.get::<_, Option<String>>(9)? {
            // Skipped rather than verified with another scheme than the one configured.
            let Ok(scheme) = serde_json::from_str::<SignatureScheme>(&text) else {
                tracing::warn!(trigger_id = %id, "skipping a trigger whose signature scheme is unreadable");
                continue;
            };
            trigger = trigger.with_signature(scheme);
        }
        if let Some(url) = row.get::<_, Option<String>>(10)? {
            trigger = trigger.with_public_url(url);
        }
        for secret in secrets.remove(&id).unwrap_or_default() {
            trigger = trigger.with_secret(secret);
        }
        let rules = (row.get(11)?, row.get(12)?, row.get(13)?);
        let concurrency = (row.get(14)?, row.get(15)?, row.get(16)?, row.get(17)?);
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
