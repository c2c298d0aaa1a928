//! A [`KeyStore`] held in memory: key digests only, never plaintext.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use uuid::Uuid;

use crate::{ApiKey, ApiKeyRecord, KeyDigest, KeyStore, StoreError, Trigger};

/// Keys and triggers in memory, changeable while the service runs.
///
/// ```
/// use agent_trigger::memory::MemoryKeyStore;
/// use agent_trigger::{ApiKeyRecord, KeyStore, Source, Trigger};
/// use uuid::Uuid;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let id = Uuid::now_v7();
/// let store = MemoryKeyStore::new().with_trigger(Trigger::new(id, "acme", Source::Jira));
/// let key = store.generate_key(ApiKeyRecord::new("ci", "acme"));
/// println!("your key, shown once: {}", key.expose());
///
/// let found = store.api_key(key.digest()).await.unwrap().unwrap();
/// assert_eq!(found.id(), "ci");
/// assert!(store.revoke_key("ci"));
/// let revoked = store.api_key(key.digest()).await.unwrap().unwrap();
/// assert!(revoked.is_revoked());
/// # }
/// ```
#[derive(Default)]
pub struct MemoryKeyStore {
    keys: RwLock<HashMap<KeyDigest, Arc<ApiKeyRecord>>>,
    triggers: RwLock<HashMap<Uuid, Arc<Trigger>>>,
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key by the digest of its plaintext.
    pub fn with_key(self, digest: KeyDigest, record: ApiKeyRecord) -> Self {
        self.insert_key(digest, record);
        self
    }

    /// Adds a trigger.
    pub fn with_trigger(self, trigger: Trigger) -> Self {
        self.insert_trigger(trigger);
        self
    }

    /// Generates a key for `record`, stores its digest and returns the plaintext: the only
    /// time anyone sees it.
    pub fn generate_key(&self, record: ApiKeyRecord) -> ApiKey {
        let key = ApiKey::generate();
        self.insert_key(key.digest(), record);
        key
    }

    /// Adds or replaces a key.
    pub fn insert_key(&self, digest: KeyDigest, record: ApiKeyRecord) {
        write(&self.keys).insert(digest, Arc::new(record));
    }

    /// Revokes every key with this id; `false` when there was none.
    pub fn revoke_key(&self, id: &str) -> bool {
        let mut keys = write(&self.keys);
        let mut found = false;
        for record in keys.values_mut().filter(|record| record.id() == id) {
            *record = Arc::new((**record).clone().revoked());
            found = true;
        }
        found
    }

    /// Adds or replaces a trigger.
    pub fn insert_trigger(&self, trigger: Trigger) {
        write(&self.triggers).insert(trigger.id(), Arc::new(trigger));
    }

    /// Replaces every key and trigger at once (a host reloading its configuration).
    pub fn replace_all(
        &self,
        keys: impl IntoIterator<Item = (KeyDigest, ApiKeyRecord)>,
        triggers: impl IntoIterator<Item = Trigger>,
    ) {
        let keys = keys
            .into_iter()
            .map(|(digest, record)| (digest, Arc::new(record)))
            .collect();
        let triggers = triggers
            .into_iter()
            .map(|trigger| (trigger.id(), Arc::new(trigger)))
            .collect();
        // Both locks at once: no request sees the new keys with the old triggers.
        let (mut old_keys, mut old_triggers) = (write(&self.keys), write(&self.triggers));
        *old_keys = keys;
        *old_triggers = triggers;
    }

    /// Every trigger, in id order.
    pub fn triggers(&self) -> Vec<Arc<Trigger>> {
        let mut triggers: Vec<_> = read(&self.triggers).values().cloned().collect();
        triggers.sort_by_key(|trigger| trigger.id());
        triggers
    }

    /// Removes a trigger; `false` when there was none.
    pub fn remove_trigger(&self, id: Uuid) -> bool {
        write(&self.triggers).remove(&id).is_some()
    }
}

// A panic while holding the lock cannot leave a map half-updated (each write is one insert or
// one replacement), so a poisoned lock is safe to keep using.
fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

impl KeyStore for MemoryKeyStore {
    async fn api_key(&self, digest: KeyDigest) -> Result<Option<Arc<ApiKeyRecord>>, StoreError> {
        Ok(read(&self.keys).get(&digest).cloned())
    }

    async fn trigger(&self, id: Uuid) -> Result<Option<Arc<Trigger>>, StoreError> {
        Ok(read(&self.triggers).get(&id).cloned())
    }
}

impl fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryKeyStore")
            .field("keys", &read(&self.keys).len())
            .field("triggers", &read(&self.triggers).len())
            .finish()
    }
}
