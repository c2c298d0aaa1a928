//! What the server runs on: one store that holds keys and triggers and keeps executions. The
//! configured database is a SQLite file for one server or PostgreSQL for many; both are the same
//! [`Backend`] to the rest of the server, and this is where the two differ in how they are
//! opened and written.

use std::future::Future;
use std::sync::Arc;

use agent_trigger::deliveries::DeliveryLog;
use agent_trigger::postgres::PostgresStore;
use agent_trigger::queue::ExecutionQueue;
use agent_trigger::sqlite::SqliteStore;
use agent_trigger::{ApiKeyRecord, KeyDigest, KeyStore, StoreError, Trigger};

/// A store the routes, workers and retention share: keys and triggers, the execution queue
/// and the deliveries log.
pub trait Backend: KeyStore + ExecutionQueue + DeliveryLog + Clone {
    /// Every trigger the store serves now.
    fn all_triggers(&self) -> Vec<Arc<Trigger>>;
}

impl Backend for SqliteStore {
    fn all_triggers(&self) -> Vec<Arc<Trigger>> {
        self.triggers()
    }
}

impl Backend for PostgresStore {
    fn all_triggers(&self) -> Vec<Arc<Trigger>> {
        self.triggers()
    }
}

/// A backend whose keys and triggers the configuration writes.
pub trait ConfiguredStore: Backend {
    /// Replaces every key and trigger with the configuration's, in one transaction.
    fn replace_keys_and_triggers(
        &self,
        keys: Vec<(KeyDigest, ApiKeyRecord)>,
        triggers: Vec<Trigger>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// How many triggers the store serves now.
    fn trigger_count(&self) -> usize;
}

impl ConfiguredStore for SqliteStore {
    fn replace_keys_and_triggers(
        &self,
        keys: Vec<(KeyDigest, ApiKeyRecord)>,
        triggers: Vec<Trigger>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        SqliteStore::replace_keys_and_triggers(self, keys, triggers)
    }

    fn trigger_count(&self) -> usize {
        self.all_triggers().len()
    }
}

impl ConfiguredStore for PostgresStore {
    fn replace_keys_and_triggers(
        &self,
        keys: Vec<(KeyDigest, ApiKeyRecord)>,
        triggers: Vec<Trigger>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        PostgresStore::replace_keys_and_triggers(self, keys, triggers)
    }

    fn trigger_count(&self) -> usize {
        self.all_triggers().len()
    }
}
