//! One suite of store cases, run against every store: the in-memory one and the JetStream
//! sink (the cases a sink alone can answer), SQLite and PostgreSQL (all of them). A new
//! backend adds a harness and one line per case list.

pub mod common;

use agent_trigger::{
    ApiKey, ApiKeyRecord, Delivery, ExecutionId, ExecutionSink, KeyScope, KeyStore, Outcome,
    Source, Trigger, TriggerService,
};
use common::{JIRA_BODY, full, key_delivery, secret_for, send, signed_jira};
use http::{Request, StatusCode};
use uuid::Uuid;

/// What the cases need of a store beyond the traits: writing keys and triggers.
pub(crate) trait Harness {
    type Store: KeyStore + ExecutionSink + Clone;
    fn store(&self) -> Self::Store;
    async fn insert_trigger(&self, trigger: Trigger);
    async fn generate_key(&self, record: ApiKeyRecord) -> ApiKey;
    async fn revoke_key(&self, id: &str);
    /// Replaces every key and trigger: no keys, these triggers (a configuration reloaded).
    async fn replace_keys_and_triggers(&self, triggers: Vec<Trigger>);
    async fn remove_trigger(&self, id: Uuid);
}

/// Keys in memory with any sink: the harness of the stores that are a sink only.
mod sink_harness {
    use std::sync::Arc;

    use super::*;
    use agent_trigger::memory::MemoryKeyStore;

    /// The in-memory key store and a sink as one store.
    #[derive(Clone)]
    pub struct WithMemoryKeys<S> {
        keys: Arc<MemoryKeyStore>,
        sink: S,
    }

    impl<S: Send + Sync + 'static> KeyStore for WithMemoryKeys<S> {
        async fn api_key(
            &self,
            digest: agent_trigger::KeyDigest,
        ) -> Result<Option<Arc<ApiKeyRecord>>, agent_trigger::StoreError> {
            self.keys.api_key(digest).await
        }

        async fn trigger(
            &self,
            id: Uuid,
        ) -> Result<Option<Arc<Trigger>>, agent_trigger::StoreError> {
            self.keys.trigger(id).await
        }
    }

    impl<S: ExecutionSink> ExecutionSink for WithMemoryKeys<S> {
        async fn submit(&self, delivery: Delivery) -> Result<Outcome, agent_trigger::SinkError> {
            self.sink.submit(delivery).await
        }
    }

    /// A sink with keys in memory, and what must live as long as the test (a channel's
    /// receiving end, a stream to delete).
    pub struct SinkOnly<S, Guard> {
        store: WithMemoryKeys<S>,
        _guard: Guard,
    }

    impl<S, Guard> SinkOnly<S, Guard> {
        pub fn new(sink: S, guard: Guard) -> Self {
            SinkOnly {
                store: WithMemoryKeys {
                    keys: Arc::new(MemoryKeyStore::new()),
                    sink,
                },
                _guard: guard,
            }
        }
    }

    impl<S: ExecutionSink + Clone, Guard> Harness for SinkOnly<S, Guard> {
        type Store = WithMemoryKeys<S>;
        fn store(&self) -> WithMemoryKeys<S> {
            self.store.clone()
        }
        async fn insert_trigger(&self, trigger: Trigger) {
            self.store.keys.insert_trigger(trigger);
        }
        async fn generate_key(&self, record: ApiKeyRecord) -> ApiKey {
            self.store.keys.generate_key(record)
        }
        async fn revoke_key(&self, id: &str) {
            assert!(self.store.keys.revoke_key(id));
        }
        async fn replace_keys_and_triggers(&self, triggers: Vec<Trigger>) {
            self.store.keys.replace_all(Vec::new(), triggers);
        }
        async fn remove_trigger(&self, id: Uuid) {
            assert!(self.store.keys.remove_trigger(id));
        }
    }
}

mod memory_harness {
    use std::sync::Arc;

    use super::sink_harness::SinkOnly;
    use agent_trigger::memory::{ChannelSink, Execution};
    use tokio::sync::mpsc;

    pub async fn fresh(
        _test: &str,
    ) -> Option<SinkOnly<Arc<ChannelSink>, mpsc::Receiver<Execution>>> {
        let (sink, executions) = ChannelSink::new(100_000);
        Some(SinkOnly::new(Arc::new(sink), executions))
    }
}

#[cfg(feature = "sqlite")]
mod sqlite_harness {
    use super::*;
    use agent_trigger::sqlite::SqliteStore;

    pub struct Sqlite {
        store: SqliteStore,
        dir: std::path::PathBuf,
    }

    pub async fn fresh(_test: &str) -> Option<Sqlite> {
        let dir = std::env::temp_dir().join(format!("agent-trigger-suite-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(dir.join("agent-trigger.db")).unwrap();
        Some(Sqlite { store, dir })
    }

    impl Drop for Sqlite {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl Harness for Sqlite {
        type Store = SqliteStore;
        fn store(&self) -> SqliteStore {
            self.store.clone()
        }
        async fn insert_trigger(&self, trigger: Trigger) {
            self.store.insert_trigger(trigger).await.unwrap();
        }
        async fn generate_key(&self, record: ApiKeyRecord) -> ApiKey {
            self.store.generate_key(record).await.unwrap()
        }
        async fn revoke_key(&self, id: &str) {
            assert!(self.store.revoke_key(id).await.unwrap());
        }
        async fn replace_keys_and_triggers(&self, triggers: Vec<Trigger>) {
            self.store
                .replace_keys_and_triggers(Vec::new(), triggers)
                .await
                .unwrap();
        }
        async fn remove_trigger(&self, id: Uuid) {
            assert!(self.store.remove_trigger(id).await.unwrap());
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres_harness {
    use super::*;
    use agent_trigger::postgres::PostgresStore;
    use common::postgres::TestSchema;

    pub struct Postgres {
        store: PostgresStore,
        _schema: TestSchema,
    }

    pub async fn fresh(test: &str) -> Option<Postgres> {
        let schema = TestSchema::new(test).await?;
        // Leases renewed every second, so that what a renewal brings back shows within a case.
        let store = schema
            .options()
            .lease(std::time::Duration::from_secs(3))
            .connect()
            .await
            .unwrap();
        Some(Postgres {
            store,
            _schema: schema,
        })
    }

    impl Harness for Postgres {
        type Store = PostgresStore;
        fn store(&self) -> PostgresStore {
            self.store.clone()
        }
        async fn insert_trigger(&self, trigger: Trigger) {
            self.store.insert_trigger(trigger).await.unwrap();
        }
        async fn generate_key(&self, record: ApiKeyRecord) -> ApiKey {
            self.store.generate_key(record).await.unwrap()
        }
        async fn revoke_key(&self, id: &str) {
            assert!(self.store.revoke_key(id).await.unwrap());
        }
        async fn replace_keys_and_triggers(&self, triggers: Vec<Trigger>) {
            self.store
                .replace_keys_and_triggers(Vec::new(), triggers)
                .await
                .unwrap();
        }
        async fn remove_trigger(&self, id: Uuid) {
            assert!(self.store.remove_trigger(id).await.unwrap());
        }
    }
}

#[cfg(feature = "nats")]
mod jetstream_harness {
    use super::sink_harness::SinkOnly;
    use crate::common::nats::TestStream;
    use agent_trigger::nats::JetStreamSink;

    pub async fn fresh(test: &str) -> Option<SinkOnly<JetStreamSink, TestStream>> {
        let stream = TestStream::new(test).await?;
        let sink = stream.sink().await;
        Some(SinkOnly::new(sink, stream))
    }
}

fn started(outcome: Outcome) -> ExecutionId {
    match outcome {
        Outcome::Started(id) => id,
        other => panic!("expected Started, got {other:?}"),
    }
}

/// Cases every store answers: what the contract asks of a sink and a key store.
mod sink_cases {
    use super::*;

    pub async fn a_redelivery_returns_the_original_execution<H: Harness>(harness: &H) {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        let original = started(
            store
                .submit(key_delivery(trigger, Some("d-1"), "{}"))
                .await
                .unwrap(),
        );
        assert_eq!(
            store
                .submit(key_delivery(trigger, Some("d-1"), "{}"))
                .await
                .unwrap(),
            Outcome::Replayed(original.clone())
        );
        // The same id on another trigger is another delivery.
        let other = started(
            store
                .submit(key_delivery(Uuid::now_v7(), Some("d-1"), "{}"))
                .await
                .unwrap(),
        );
        assert_ne!(other, original);
        // Deliveries without an id are each their own.
        let a = started(
            store
                .submit(key_delivery(trigger, None, "{}"))
                .await
                .unwrap(),
        );
        let b = started(
            store
                .submit(key_delivery(trigger, None, "{}"))
                .await
                .unwrap(),
        );
        assert_ne!(a, b);
    }

    pub async fn concurrent_copies_start_exactly_one<H: Harness>(harness: &H) {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..400 {
            let store = store.clone();
            let id = match n % 4 {
                0 => Some("same".to_owned()),
                1 => Some(format!("own-{n}")),
                _ => None,
            };
            tasks.spawn(async move {
                let outcome = store
                    .submit(key_delivery(trigger, id.as_deref(), "{}"))
                    .await;
                (n % 4 == 0, outcome.unwrap())
            });
        }
        let (mut started_ids, mut same_ids, mut replayed) = (Vec::new(), Vec::new(), 0);
        while let Some(result) = tasks.join_next().await {
            let (same, outcome) = result.unwrap();
            let id = match outcome {
                Outcome::Started(id) => {
                    started_ids.push(id.clone());
                    id
                }
                Outcome::Replayed(id) => {
                    replayed += 1;
                    id
                }
                other => panic!("{other:?}"),
            };
            if same {
                same_ids.push(id);
            }
        }
        assert_eq!(started_ids.len(), 301);
        assert_eq!(replayed, 99);
        same_ids.dedup();
        assert_eq!(same_ids.len(), 1, "every copy names the one execution");
        started_ids.sort_by_key(ToString::to_string);
        started_ids.dedup();
        assert_eq!(started_ids.len(), 301);
    }

    pub async fn signed_and_bearer_ids_are_separate_and_signatures_are_remembered<H: Harness>(
        harness: &H,
    ) {
        let trigger_id = Uuid::now_v7();
        harness
            .insert_trigger(
                Trigger::new(trigger_id, "acme", Source::Jira)
                    .with_secret(secret_for(Source::Jira)),
            )
            .await;
        let key = harness.generate_key(ApiKeyRecord::new("ci", "acme")).await;
        let service = TriggerService::new(harness.store(), harness.store());
        let first = send(service.clone(), signed_jira(trigger_id, "a")).await;
        assert_eq!(first.status, StatusCode::OK);
        // The captured request with another delivery id is a replay of the first.
        let replay = send(service.clone(), signed_jira(trigger_id, "b")).await;
        assert_eq!(replay.json, first.json);
        assert_eq!(replay.headers["idempotent-replayed"], "true");
        // A key holder's id "a" is its own, not the sender's.
        let bearer = || {
            Request::post(format!("/api/trigger/jira/{trigger_id}"))
                .header("authorization", format!("Bearer {}", key.expose()))
                .header("x-atlassian-webhook-identifier", "a")
                .body(full(JIRA_BODY))
                .unwrap()
        };
        let own = send(service.clone(), bearer()).await;
        assert_eq!(own.status, StatusCode::OK);
        assert!(own.headers.get("idempotent-replayed").is_none());
        assert_ne!(own.json, first.json);
        let again = send(service.clone(), bearer()).await;
        assert_eq!(again.json, own.json);
        assert_eq!(again.headers["idempotent-replayed"], "true");
    }

    pub async fn a_trigger_s_signature_scheme_and_public_url_are_kept<H: Harness>(harness: &H) {
        use agent_trigger::{SignatureScheme, SigningSecret};
        let (github, table) = (Uuid::now_v7(), Uuid::now_v7());
        let secret = SigningSecret::new("2026-12", "It's a Secret to Everybody").unwrap();
        let acme = SignatureScheme::custom("X-Acme-Signature")
            .prefix("v1=")
            .signed("{url}.{timestamp}.{body}")
            .timestamp_header("X-Acme-Timestamp")
            .action("body:event.kind")
            .build()
            .unwrap();
        harness
            .insert_trigger(
                Trigger::new(github, "acme", Source::Webhook)
                    .with_signature(SignatureScheme::github())
                    .with_secret(secret.clone()),
            )
            .await;
        harness
            .insert_trigger(
                Trigger::new(table, "acme", Source::Webhook)
                    .with_signature(acme.clone())
                    .with_public_url("https://hooks.example.com/acme")
                    .with_secret(secret),
            )
            .await;
        let store = harness.store();
        let kept = store.trigger(table).await.unwrap().unwrap();
        assert_eq!(kept.signature(), Some(&acme));
        assert_eq!(kept.public_url(), Some("https://hooks.example.com/acme"));
        // GitHub's published example, through the service on this store.
        let service = TriggerService::new(harness.store(), harness.store());
        let request = Request::post(format!("/api/trigger/webhook/{github}"))
            .header(
                "x-hub-signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            )
            .body(full("Hello, World!"))
            .unwrap();
        // The signature verified: the body is then judged as JSON.
        assert_eq!(send(service, request).await.status, StatusCode::BAD_REQUEST);
    }

    pub async fn a_revoked_key_stops_working<H: Harness>(harness: &H) {
        let trigger_id = Uuid::now_v7();
        harness
            .insert_trigger(Trigger::new(trigger_id, "acme", Source::Webhook))
            .await;
        let scoped = harness
            .generate_key(
                ApiKeyRecord::new("scoped", "acme")
                    .with_scope(KeyScope::Triggers(vec![trigger_id])),
            )
            .await;
        let service = TriggerService::new(harness.store(), harness.store());
        let request = || {
            Request::post(format!("/api/trigger/webhook/{trigger_id}"))
                .header("authorization", format!("Bearer {}", scoped.expose()))
                .header("content-type", "application/json")
                .body(full("{}"))
                .unwrap()
        };
        assert_eq!(
            send(service.clone(), request()).await.status,
            StatusCode::OK
        );
        harness.revoke_key("scoped").await;
        assert_eq!(
            send(service.clone(), request()).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
}

/// Cases for the stores that are also execution queues.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod queue_cases {
    use std::num::NonZeroU32;
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;

    use agent_trigger::Caller;
    use agent_trigger::queue::{
        ExecutionQuery, ExecutionQueue, ExecutionResult, ExecutionStatus, ReplayOutcome,
    };

    use super::*;

    fn done() -> ExecutionResult {
        ExecutionResult::new(ExecutionStatus::Done, Some(0), b"ok\n".to_vec())
    }

    fn replayed(outcome: ReplayOutcome) -> ExecutionId {
        match outcome {
            ReplayOutcome::Started(id) => id,
            other => panic!("expected a replay, got {other:?}"),
        }
    }

    pub async fn executions_are_claimed_oldest_first_finished_and_recorded<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        let first = started(
            store
                .submit(key_delivery(trigger, None, r#"{"n":1}"#))
                .await
                .unwrap(),
        );
        let second = started(
            store
                .submit(key_delivery(trigger, None, r#"{"n":2}"#))
                .await
                .unwrap(),
        );
        let record = store.execution(&first).await.unwrap().unwrap();
        assert_eq!(record.status, ExecutionStatus::Queued);
        assert_eq!(record.action.as_deref(), Some("jira:issue_created"));
        assert_eq!(
            (record.tenant.as_str(), record.trigger_id),
            ("acme", trigger)
        );

        let claimed = store.claim().await.unwrap().unwrap();
        assert_eq!((claimed.id.clone(), claimed.attempt), (first.clone(), 1));
        assert_eq!(claimed.delivery.input, r#"{"n":1}"#);
        assert_eq!(
            claimed.delivery.caller,
            Caller::ApiKey {
                key_id: "ci".into(),
                tenant: "acme".into()
            }
        );
        assert_eq!(
            claimed.delivery.action.as_deref(),
            Some("jira:issue_created")
        );
        assert_eq!(
            store.execution(&first).await.unwrap().unwrap().status,
            ExecutionStatus::Running
        );
        store.record_output(&first, b"half".to_vec()).await.unwrap();
        assert_eq!(
            store.execution(&first).await.unwrap().unwrap().output_tail,
            b"half"
        );
        store.finish(&first, done()).await.unwrap();
        let record = store.execution(&first).await.unwrap().unwrap();
        assert_eq!(record.status, ExecutionStatus::Done);
        assert_eq!(record.exit_code, Some(0));
        assert_eq!(record.output_tail, b"ok\n");
        assert!(record.started_at.is_some() && record.finished_at.is_some());

        assert_eq!(store.claim().await.unwrap().unwrap().id, second);
        assert!(store.claim().await.unwrap().is_none());
        assert_eq!(store.count(ExecutionStatus::Running).await.unwrap(), 1);
        assert_eq!(store.count(ExecutionStatus::Done).await.unwrap(), 1);
        assert!(
            store
                .execution(&ExecutionId::new_v7())
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .execution(&ExecutionId::from("run-42"))
                .await
                .unwrap()
                .is_none()
        );
        store.ping().await.unwrap();
    }

    pub async fn a_submit_wakes_an_idle_worker<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let waiting = tokio::spawn({
            let store = store.clone();
            async move { store.work_queued().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        started(
            store
                .submit(key_delivery(Uuid::now_v7(), None, "{}"))
                .await
                .unwrap(),
        );
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the worker is woken")
            .unwrap();
    }

    pub async fn a_retried_execution_waits_for_its_time_and_counts_its_attempts<H: Harness>(
        harness: &H,
    ) where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let id = started(
            store
                .submit(key_delivery(Uuid::now_v7(), None, "{}"))
                .await
                .unwrap(),
        );
        let claimed = store.claim().await.unwrap().unwrap();
        assert_eq!((claimed.id.clone(), claimed.attempt), (id.clone(), 1));
        let failed = ExecutionResult::new(ExecutionStatus::Error, Some(3), b"boom".to_vec());
        let later = SystemTime::now() + Duration::from_millis(500);
        store.retry(&id, failed, later).await.unwrap();
        let record = store.execution(&id).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.attempt, record.exit_code),
            (ExecutionStatus::Queued, 2, Some(3))
        );
        assert!(
            store.claim().await.unwrap().is_none(),
            "not before its time"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        let again = store.claim().await.unwrap().unwrap();
        assert_eq!((again.id, again.attempt), (id.clone(), 2));
        store
            .finish(
                &id,
                ExecutionResult::new(ExecutionStatus::Interrupted, None, Vec::new()),
            )
            .await
            .unwrap();
        assert_eq!(store.retry_interrupted(2).await.unwrap(), 0);
        assert_eq!(store.retry_interrupted(3).await.unwrap(), 1);
        let record = store.execution(&id).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.attempt),
            (ExecutionStatus::Queued, 3)
        );
    }

    pub async fn a_trigger_at_its_cap_of_running_executions_waits_queued<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let (capped, free) = (Uuid::now_v7(), Uuid::now_v7());
        harness
            .insert_trigger(
                Trigger::new(capped, "acme", Source::Jira)
                    .with_max_running(NonZeroU32::new(1).unwrap()),
            )
            .await;
        let first = started(
            store
                .submit(key_delivery(capped, None, "{}"))
                .await
                .unwrap(),
        );
        let second = started(
            store
                .submit(key_delivery(capped, None, "{}"))
                .await
                .unwrap(),
        );
        let other = started(store.submit(key_delivery(free, None, "{}")).await.unwrap());
        assert_eq!(store.claim().await.unwrap().unwrap().id, first);
        // The capped trigger's second waits; another trigger's goes ahead of it.
        assert_eq!(store.claim().await.unwrap().unwrap().id, other);
        assert!(store.claim().await.unwrap().is_none());
        store.finish(&first, done()).await.unwrap();
        assert_eq!(store.claim().await.unwrap().unwrap().id, second);
    }

    pub async fn pruning_deletes_finished_executions_with_their_keys<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        let mut finished = Vec::new();
        for n in 0..5 {
            finished.push(started(
                store
                    .submit(key_delivery(trigger, Some(&format!("d{n}")), "{}"))
                    .await
                    .unwrap(),
            ));
        }
        let waiting = started(
            store
                .submit(key_delivery(trigger, Some("waiting"), "{}"))
                .await
                .unwrap(),
        );
        for _ in 0..5 {
            let claimed = store.claim().await.unwrap().unwrap();
            store.finish(&claimed.id, done()).await.unwrap();
        }
        let cutoff = SystemTime::now() + Duration::from_secs(1);
        assert_eq!(store.prune_finished(cutoff, 2).await.unwrap(), 2);
        assert_eq!(store.prune_finished(cutoff, 10).await.unwrap(), 3);
        assert_eq!(store.prune_finished(cutoff, 10).await.unwrap(), 0);
        for id in &finished {
            assert!(store.execution(id).await.unwrap().is_none());
        }
        assert!(store.execution(&waiting).await.unwrap().is_some());
        assert!(matches!(
            store
                .submit(key_delivery(trigger, Some("waiting"), "{}"))
                .await
                .unwrap(),
            Outcome::Replayed(_)
        ));
        assert!(matches!(
            store
                .submit(key_delivery(trigger, Some("d0"), "{}"))
                .await
                .unwrap(),
            Outcome::Started(_)
        ));
        let early = SystemTime::now() - Duration::from_secs(3600);
        assert_eq!(store.prune_finished(early, 10).await.unwrap(), 0);
    }

    pub async fn listing_cancelling_and_replaying<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
        harness
            .insert_trigger(Trigger::new(one, "acme", Source::Jira))
            .await;
        let a = started(
            store
                .submit(key_delivery(one, Some("a"), r#"{"a":1}"#))
                .await
                .unwrap(),
        );
        let b = started(store.submit(key_delivery(two, None, "{}")).await.unwrap());
        let c = started(store.submit(key_delivery(one, None, "{}")).await.unwrap());

        let ids = |records: Vec<agent_trigger::queue::ExecutionRecord>| {
            records
                .into_iter()
                .map(|record| record.id)
                .collect::<Vec<_>>()
        };
        let everything = ExecutionQuery::new("acme", 10);
        assert_eq!(
            ids(store.list(&everything).await.unwrap()),
            [c.clone(), b.clone(), a.clone()]
        );
        let mut page = ExecutionQuery::new("acme", 2);
        assert_eq!(
            ids(store.list(&page).await.unwrap()),
            [c.clone(), b.clone()]
        );
        page.before = Some(b.clone());
        assert_eq!(
            ids(store.list(&page).await.unwrap()),
            std::slice::from_ref(&a)
        );
        let mut scoped = ExecutionQuery::new("acme", 10);
        scoped.triggers = Some(vec![one]);
        assert_eq!(
            ids(store.list(&scoped).await.unwrap()),
            [c.clone(), a.clone()]
        );
        assert!(
            store
                .list(&ExecutionQuery::new("other", 10))
                .await
                .unwrap()
                .is_empty()
        );

        assert_eq!(
            store.cancel(&b, "ops").await.unwrap(),
            Some(ExecutionStatus::Cancelled)
        );
        let mut cancelled = ExecutionQuery::new("acme", 10);
        cancelled.status = Some(ExecutionStatus::Cancelled);
        assert_eq!(
            ids(store.list(&cancelled).await.unwrap()),
            std::slice::from_ref(&b)
        );
        assert_eq!(
            store.cancel(&ExecutionId::new_v7(), "ops").await.unwrap(),
            None
        );

        // A running one is left to its worker.
        let claimed = store.claim().await.unwrap().unwrap();
        assert_eq!(claimed.id, a);
        assert_eq!(
            store.cancel(&a, "ops").await.unwrap(),
            Some(ExecutionStatus::Running)
        );

        let copy = replayed(store.replay(&a, "ops").await.unwrap());
        assert_ne!(copy, a);
        let record = store.execution(&copy).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.trigger_id),
            (ExecutionStatus::Queued, one)
        );
        assert_eq!(
            store.replay(&ExecutionId::new_v7(), "ops").await.unwrap(),
            ReplayOutcome::NotFound
        );
        // The copy runs with the original's input; the original's id stays the original's.
        let next = store.claim().await.unwrap().unwrap();
        assert_eq!(next.id, c);
        let copied = store.claim().await.unwrap().unwrap();
        assert_eq!(
            (copied.id, copied.delivery.input),
            (copy, Bytes::from_static(br#"{"a":1}"#))
        );
        assert!(matches!(
            store.submit(key_delivery(one, Some("a"), "{}")).await.unwrap(),
            Outcome::Replayed(id) if id == a
        ));
    }

    pub async fn a_list_leaves_the_output_to_the_execution_by_id<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let id = started(
            store
                .submit(key_delivery(Uuid::now_v7(), None, r#"{"big":"input"}"#))
                .await
                .unwrap(),
        );
        assert_eq!(store.claim().await.unwrap().unwrap().id, id);
        store.finish(&id, done()).await.unwrap();
        let listed = store.list(&ExecutionQuery::new("acme", 10)).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].id.clone(), listed[0].status),
            (id.clone(), ExecutionStatus::Done)
        );
        assert!(
            listed[0].output_tail.is_empty(),
            "a list does not carry output"
        );
        assert_eq!(
            store.execution(&id).await.unwrap().unwrap().output_tail,
            b"ok\n"
        );
    }

    pub async fn a_retry_does_not_inherit_a_cancel_asked_of_the_attempt_before<H: Harness>(
        harness: &H,
    ) where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let id = started(
            store
                .submit(key_delivery(Uuid::now_v7(), None, "{}"))
                .await
                .unwrap(),
        );
        // Longer than the PostgreSQL harness takes to renew its leases, which brings back the
        // cancels asked for.
        let quiet = Duration::from_millis(1500);

        // A cancel is asked while the first attempt runs, which fails before its worker hears
        // of it: the retry policy queues it again.
        assert_eq!(store.claim().await.unwrap().unwrap().id, id);
        assert_eq!(
            store.cancel(&id, "ops").await.unwrap(),
            Some(ExecutionStatus::Running)
        );
        let failed = ExecutionResult::new(ExecutionStatus::Error, Some(1), Vec::new());
        store.retry(&id, failed, SystemTime::now()).await.unwrap();
        let second = store.claim().await.unwrap().unwrap();
        assert_eq!((second.id, second.attempt), (id.clone(), 2));
        assert_eq!(
            store.execution(&id).await.unwrap().unwrap().cancelled_by,
            None
        );
        assert!(
            tokio::time::timeout(quiet, store.cancel_requested(&id))
                .await
                .is_err(),
            "the second attempt is not cancelled by the first one's cancel"
        );

        // Likewise for an attempt cut short and queued again by the interrupted retry.
        assert_eq!(
            store.cancel(&id, "ops").await.unwrap(),
            Some(ExecutionStatus::Running)
        );
        let cut = ExecutionResult::new(ExecutionStatus::Interrupted, None, Vec::new());
        store.finish(&id, cut).await.unwrap();
        assert_eq!(store.retry_interrupted(3).await.unwrap(), 1);
        let third = store.claim().await.unwrap().unwrap();
        assert_eq!((third.id, third.attempt), (id.clone(), 3));
        assert!(
            tokio::time::timeout(quiet, store.cancel_requested(&id))
                .await
                .is_err(),
            "the third attempt is not cancelled by the second one's cancel"
        );
    }

    pub async fn replays_and_cancels_record_the_key_that_asked<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        harness
            .insert_trigger(Trigger::new(trigger, "acme", Source::Jira))
            .await;
        let submit = || async {
            started(
                store
                    .submit(key_delivery(trigger, None, r#"{"n":1}"#))
                    .await
                    .unwrap(),
            )
        };
        let (queued, ran, raced) = (submit().await, submit().await, submit().await);
        let record = store.execution(&queued).await.unwrap().unwrap();
        assert_eq!(
            (record.replay_of, record.replayed_by, record.cancelled_by),
            (None, None, None)
        );

        // A queued one: cancelled at once, by the first key that asked.
        assert_eq!(
            store.cancel(&queued, "ops").await.unwrap(),
            Some(ExecutionStatus::Cancelled)
        );
        store.cancel(&queued, "late").await.unwrap();
        let record = store.execution(&queued).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.cancelled_by.as_deref()),
            (ExecutionStatus::Cancelled, Some("ops"))
        );

        // A running one keeps who asked when its worker records the cancel...
        assert_eq!(store.claim().await.unwrap().unwrap().id, ran);
        assert_eq!(
            store.cancel(&ran, "ops").await.unwrap(),
            Some(ExecutionStatus::Running)
        );
        let cancelled = ExecutionResult::new(ExecutionStatus::Cancelled, None, Vec::new());
        store.finish(&ran, cancelled).await.unwrap();
        let record = store.execution(&ran).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.cancelled_by.as_deref()),
            (ExecutionStatus::Cancelled, Some("ops"))
        );
        // ... but not when it ended otherwise before the worker heard of it.
        assert_eq!(store.claim().await.unwrap().unwrap().id, raced);
        store.cancel(&raced, "ops").await.unwrap();
        store.finish(&raced, done()).await.unwrap();
        let record = store.execution(&raced).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.cancelled_by),
            (ExecutionStatus::Done, None)
        );
        // An execution that ended is not cancelled, and no one is recorded.
        assert_eq!(
            store.cancel(&raced, "ops").await.unwrap(),
            Some(ExecutionStatus::Done)
        );
        assert_eq!(
            store.execution(&raced).await.unwrap().unwrap().cancelled_by,
            None
        );

        // A replay names what it replays and who asked, and is cancelled by no one yet.
        let copy = replayed(store.replay(&queued, "ci").await.unwrap());
        let record = store.execution(&copy).await.unwrap().unwrap();
        assert_eq!(
            (
                record.status,
                record.replay_of,
                record.replayed_by.as_deref(),
                record.cancelled_by,
            ),
            (
                ExecutionStatus::Queued,
                Some(queued.clone()),
                Some("ci"),
                None
            )
        );
        // And a list shows them too.
        let listed = store.list(&ExecutionQuery::new("acme", 10)).await.unwrap();
        assert_eq!(listed[0].id, copy);
        assert_eq!(
            (
                listed[0].replay_of.as_ref(),
                listed[0].replayed_by.as_deref()
            ),
            (Some(&queued), Some("ci"))
        );
        let original = listed.iter().find(|record| record.id == queued).unwrap();
        assert_eq!(original.cancelled_by.as_deref(), Some("ops"));
    }

    pub async fn a_replay_of_a_disabled_or_removed_trigger_is_refused<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        harness
            .insert_trigger(Trigger::new(trigger, "acme", Source::Jira))
            .await;
        let id = started(
            store
                .submit(key_delivery(trigger, None, "{}"))
                .await
                .unwrap(),
        );
        harness
            .insert_trigger(Trigger::new(trigger, "acme", Source::Jira).enabled(false))
            .await;
        assert_eq!(
            store.replay(&id, "ops").await.unwrap(),
            ReplayOutcome::TriggerDisabled
        );
        harness.replace_keys_and_triggers(Vec::new()).await;
        assert_eq!(
            store.replay(&id, "ops").await.unwrap(),
            ReplayOutcome::TriggerRemoved
        );
        assert_eq!(
            store
                .replay(&ExecutionId::from("run-42"), "ops")
                .await
                .unwrap(),
            ReplayOutcome::NotFound
        );
        // Nothing was queued by the refusals.
        let listed = store.list(&ExecutionQuery::new("acme", 10)).await.unwrap();
        assert_eq!(listed.len(), 1);
    }

    pub async fn a_replay_counts_against_its_triggers_cap_of_running_executions<H: Harness>(
        harness: &H,
    ) where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        harness
            .insert_trigger(
                Trigger::new(trigger, "acme", Source::Jira)
                    .with_max_running(NonZeroU32::new(1).unwrap()),
            )
            .await;
        let id = started(
            store
                .submit(key_delivery(trigger, None, "{}"))
                .await
                .unwrap(),
        );
        assert_eq!(store.claim().await.unwrap().unwrap().id, id);
        let copy = replayed(store.replay(&id, "ops").await.unwrap());
        assert!(
            store.claim().await.unwrap().is_none(),
            "the replay waits while the trigger is at its cap"
        );
        store.finish(&id, done()).await.unwrap();
        let claimed = store.claim().await.unwrap().unwrap();
        assert_eq!(claimed.id, copy);
        // And, running, it holds the cap against the next one.
        let again = replayed(store.replay(&id, "ops").await.unwrap());
        assert!(store.claim().await.unwrap().is_none());
        store.finish(&copy, done()).await.unwrap();
        assert_eq!(store.claim().await.unwrap().unwrap().id, again);
    }

    pub async fn a_disabled_triggers_executions_wait_until_it_is_enabled_again<H: Harness>(
        harness: &H,
    ) where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let (paused, other) = (Uuid::now_v7(), Uuid::now_v7());
        let trigger = |id, enabled| Trigger::new(id, "acme", Source::Jira).enabled(enabled);
        harness
            .replace_keys_and_triggers(vec![trigger(paused, true), trigger(other, true)])
            .await;
        let waiting = started(
            store
                .submit(key_delivery(paused, None, "{}"))
                .await
                .unwrap(),
        );
        harness
            .replace_keys_and_triggers(vec![trigger(paused, false), trigger(other, true)])
            .await;
        let later = started(store.submit(key_delivery(other, None, "{}")).await.unwrap());
        // Another trigger's goes ahead of it.
        assert_eq!(store.claim().await.unwrap().unwrap().id, later);
        assert!(store.claim().await.unwrap().is_none());
        assert_eq!(
            store.execution(&waiting).await.unwrap().unwrap().status,
            ExecutionStatus::Queued
        );
        // Enabled again: it runs, and an idle worker is told. (What earlier wake-ups left is
        // taken first.)
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = tokio::time::timeout(Duration::from_millis(100), store.work_queued()).await;
        let woken = tokio::spawn({
            let store = store.clone();
            async move { store.work_queued().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        harness
            .replace_keys_and_triggers(vec![trigger(paused, true), trigger(other, true)])
            .await;
        tokio::time::timeout(Duration::from_secs(5), woken)
            .await
            .expect("an idle worker is woken")
            .unwrap();
        assert_eq!(store.claim().await.unwrap().unwrap().id, waiting);
    }

    pub async fn a_removed_triggers_queued_executions_end_cancelled<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let (removed, kept, unknown) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let trigger = |id| Trigger::new(id, "acme", Source::Jira);
        harness
            .replace_keys_and_triggers(vec![trigger(removed), trigger(kept)])
            .await;
        let running = started(
            store
                .submit(key_delivery(removed, None, "{}"))
                .await
                .unwrap(),
        );
        assert_eq!(store.claim().await.unwrap().unwrap().id, running);
        let queued = started(
            store
                .submit(key_delivery(removed, None, "{}"))
                .await
                .unwrap(),
        );
        let other = started(store.submit(key_delivery(kept, None, "{}")).await.unwrap());
        // Of a trigger this store never had (a sink used without its key store): left alone.
        let stray = started(
            store
                .submit(key_delivery(unknown, None, "{}"))
                .await
                .unwrap(),
        );

        harness.replace_keys_and_triggers(vec![trigger(kept)]).await;
        let record = store.execution(&queued).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.cancelled_by),
            (ExecutionStatus::Cancelled, None)
        );
        assert!(record.finished_at.is_some());
        assert!(
            String::from_utf8_lossy(&record.output_tail).contains("its trigger was removed"),
            "{:?}",
            String::from_utf8_lossy(&record.output_tail)
        );
        // The running one is its worker's to end; the others still wait.
        for (id, status) in [
            (&running, ExecutionStatus::Running),
            (&other, ExecutionStatus::Queued),
            (&stray, ExecutionStatus::Queued),
        ] {
            assert_eq!(store.execution(id).await.unwrap().unwrap().status, status);
        }
        // A replay of it is refused, and a reload with the same triggers changes nothing.
        assert_eq!(
            store.replay(&queued, "ops").await.unwrap(),
            ReplayOutcome::TriggerRemoved
        );
        harness.replace_keys_and_triggers(vec![trigger(kept)]).await;
        assert_eq!(
            store.execution(&other).await.unwrap().unwrap().status,
            ExecutionStatus::Queued
        );
        // Removing one trigger alone does the same.
        harness.remove_trigger(kept).await;
        let record = store.execution(&other).await.unwrap().unwrap();
        assert_eq!(record.status, ExecutionStatus::Cancelled);
        assert!(String::from_utf8_lossy(&record.output_tail).contains("its trigger was removed"));
    }

    pub async fn a_trigger_keeps_its_rules_and_an_execution_its_prompt<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        use agent_trigger::rules::{Filter, InputExpression, PromptTemplate};

        let store = harness.store();
        let id = Uuid::now_v7();
        harness
            .insert_trigger(
                Trigger::new(id, "acme", Source::Jira)
                    .with_filter(Filter::parse("action == 'jira:issue_created'").unwrap())
                    .with_input(InputExpression::parse("{'key': body.issue.key}").unwrap())
                    .with_prompt(PromptTemplate::parse("Triage {{ body.issue.key }}").unwrap()),
            )
            .await;
        let trigger = store.trigger(id).await.unwrap().unwrap();
        assert_eq!(
            (
                trigger.filter().map(Filter::as_str),
                trigger.input().map(InputExpression::as_str),
                trigger.prompt().map(PromptTemplate::as_str)
            ),
            (
                Some("action == 'jira:issue_created'"),
                Some("{'key': body.issue.key}"),
                Some("Triage {{ body.issue.key }}")
            )
        );

        let mut delivery = key_delivery(id, None, r#"{"key":"SEC-1"}"#);
        delivery.prompt = Some("Triage SEC-1:\n\tnow".to_owned());
        let execution = started(store.submit(delivery).await.unwrap());
        let record = store.execution(&execution).await.unwrap().unwrap();
        assert_eq!(record.prompt.as_deref(), Some("Triage SEC-1:\n\tnow"));
        let claimed = store.claim().await.unwrap().unwrap();
        assert_eq!(
            claimed.delivery.prompt.as_deref(),
            Some("Triage SEC-1:\n\tnow")
        );
        // A replay runs with the same prompt; a delivery without one has none.
        let ReplayOutcome::Started(copy) = store.replay(&execution, "ops").await.unwrap() else {
            panic!("the replay is queued");
        };
        let record = store.execution(&copy).await.unwrap().unwrap();
        assert_eq!(record.prompt.as_deref(), Some("Triage SEC-1:\n\tnow"));
        let plain = started(store.submit(key_delivery(id, None, "{}")).await.unwrap());
        assert_eq!(store.execution(&plain).await.unwrap().unwrap().prompt, None);
    }
}

/// Cases of one agent per subject (CONTRACT §10), for the stores that keep executions.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod subject_cases {
    use std::time::{Duration, Instant};

    use agent_trigger::concurrency::{Debounce, OnBusy, Subject};
    use agent_trigger::queue::{ExecutionQuery, ExecutionQueue, ExecutionResult, ExecutionStatus};

    use super::*;

    fn keyed(
        trigger: Uuid,
        id: Option<&str>,
        input: &'static str,
        key: &str,
        on_busy: OnBusy,
    ) -> Delivery {
        let mut delivery = key_delivery(trigger, id, input);
        delivery.subject = Some(Subject::new(key, on_busy));
        delivery
    }

    fn debounced(
        trigger: Uuid,
        id: &str,
        input: &'static str,
        quiet_ms: u64,
        max_ms: u64,
    ) -> Delivery {
        let mut delivery = key_delivery(trigger, Some(id), input);
        let debounce = Debounce::new(
            Duration::from_millis(quiet_ms),
            Duration::from_millis(max_ms),
        )
        .unwrap();
        delivery.subject = Some(Subject::new("PROJ-1", OnBusy::Queue).with_debounce(debounce));
        delivery
    }

    fn result(status: ExecutionStatus) -> ExecutionResult {
        ExecutionResult::new(status, Some(0), Vec::new())
    }

    /// Claims until `id` comes, for at most `within`; how long it took.
    async fn claim_within<S: ExecutionQueue>(
        store: &S,
        within: Duration,
    ) -> Option<(ExecutionId, String, u32, Duration)> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(claimed) = store.claim().await.unwrap() {
                let input = String::from_utf8(claimed.delivery.input.to_vec()).unwrap();
                return Some((claimed.id, input, claimed.deliveries, start.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    pub async fn a_key_runs_one_execution_at_a_time_in_order<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        harness
            .insert_trigger(Trigger::new(trigger, "acme", Source::Jira))
            .await;
        let a = started(
            store
                .submit(keyed(trigger, None, r#"{"n":1}"#, "k1", OnBusy::Queue))
                .await
                .unwrap(),
        );
        let b = started(
            store
                .submit(keyed(trigger, None, r#"{"n":2}"#, "k1", OnBusy::Queue))
                .await
                .unwrap(),
        );
        let c = started(
            store
                .submit(keyed(trigger, None, r#"{"n":3}"#, "k2", OnBusy::Queue))
                .await
                .unwrap(),
        );
        // The same key on another trigger is another subject.
        let other = started(
            store
                .submit(keyed(Uuid::now_v7(), None, "{}", "k1", OnBusy::Queue))
                .await
                .unwrap(),
        );
        assert_eq!(store.claim().await.unwrap().unwrap().id, a);
        assert_eq!(
            store.claim().await.unwrap().unwrap().id,
            c,
            "k1 is busy: b waits"
        );
        assert_eq!(store.claim().await.unwrap().unwrap().id, other);
        assert!(store.claim().await.unwrap().is_none());
        // A failed attempt keeps its place: b still waits behind it.
        store
            .retry(
                &a,
                result(ExecutionStatus::Error),
                std::time::SystemTime::now(),
            )
            .await
            .unwrap();
        assert_eq!(
            store.claim().await.unwrap().unwrap().id,
            a,
            "the retry comes before b"
        );
        store
            .finish(&a, result(ExecutionStatus::Done))
            .await
            .unwrap();
        // A replay is keyed too: it waits for b.
        let claimed = store.claim().await.unwrap().unwrap();
        assert_eq!((claimed.id.clone(), claimed.deliveries), (b.clone(), 1));
        let replay = match store.replay(&a, "ops").await.unwrap() {
            agent_trigger::queue::ReplayOutcome::Started(id) => id,
            other => panic!("{other:?}"),
        };
        assert!(store.claim().await.unwrap().is_none());
        // A cancelled one frees its key.
        assert_eq!(
            store.cancel(&b, "ops").await.unwrap(),
            Some(ExecutionStatus::Running)
        );
        store
            .finish(&b, result(ExecutionStatus::Cancelled))
            .await
            .unwrap();
        assert_eq!(store.claim().await.unwrap().unwrap().id, replay);

        let record = store.execution(&b).await.unwrap().unwrap();
        assert_eq!(record.concurrency_key.as_deref(), Some("k1"));
        assert_eq!((record.deliveries, record.replaced_by), (1, None));
        let mut query = ExecutionQuery::new("acme", 10);
        query.concurrency_key = Some("k1".into());
        let listed: Vec<ExecutionId> = store
            .list(&query)
            .await
            .unwrap()
            .into_iter()
            .map(|record| record.id)
            .collect();
        assert_eq!(
            listed,
            [replay, other, b, a],
            "k1 of both triggers, newest first"
        );
        query.triggers = Some(vec![trigger]);
        query.concurrency_key = Some("k2".into());
        assert_eq!(store.list(&query).await.unwrap().len(), 1);
        let unkeyed = started(
            store
                .submit(key_delivery(trigger, None, "{}"))
                .await
                .unwrap(),
        );
        assert_eq!(
            store
                .execution(&unkeyed)
                .await
                .unwrap()
                .unwrap()
                .concurrency_key,
            None
        );
    }

    pub async fn skip_answers_with_the_busy_execution_and_remembers_nothing<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        let first = started(
            store
                .submit(keyed(trigger, Some("d-1"), "{}", "k", OnBusy::Skip))
                .await
                .unwrap(),
        );
        // Queued counts as busy, and so does running.
        for _ in 0..2 {
            match store
                .submit(keyed(trigger, Some("d-2"), "{}", "k", OnBusy::Skip))
                .await
                .unwrap()
            {
                Outcome::Skipped { message, action } => {
                    assert!(message.contains(&first.to_string()), "{message}");
                    assert_eq!(action.as_deref(), Some("jira:issue_created"));
                }
                other => panic!("expected a skip, got {other:?}"),
            }
            if store.execution(&first).await.unwrap().unwrap().status == ExecutionStatus::Queued {
                assert_eq!(store.claim().await.unwrap().unwrap().id, first);
            }
        }
        started(
            store
                .submit(keyed(trigger, None, "{}", "other", OnBusy::Skip))
                .await
                .unwrap(),
        );
        store
            .finish(&first, result(ExecutionStatus::Done))
            .await
            .unwrap();
        // The skipped delivery id was not remembered: its redelivery starts now.
        started(
            store
                .submit(keyed(trigger, Some("d-2"), "{}", "k", OnBusy::Skip))
                .await
                .unwrap(),
        );
    }

    pub async fn replace_cancels_the_keys_executions_and_names_the_new_one<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        let running = started(
            store
                .submit(keyed(trigger, None, "{}", "k", OnBusy::Replace))
                .await
                .unwrap(),
        );
        assert_eq!(store.claim().await.unwrap().unwrap().id, running);
        let queued = started(
            store
                .submit(keyed(trigger, None, "{}", "k", OnBusy::Replace))
                .await
                .unwrap(),
        );
        // The running one is asked to end, through the queue, as a cancel is.
        tokio::time::timeout(Duration::from_secs(10), store.cancel_requested(&running))
            .await
            .expect("the worker running it is told");
        let record = store.execution(&running).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.replaced_by),
            (ExecutionStatus::Running, Some(queued.clone()))
        );
        // Never two running of one key: the new one waits until the old one has ended.
        assert!(store.claim().await.unwrap().is_none());
        let newest = started(
            store
                .submit(keyed(trigger, None, "{}", "k", OnBusy::Replace))
                .await
                .unwrap(),
        );
        let record = store.execution(&queued).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.replaced_by),
            (ExecutionStatus::Cancelled, Some(newest.clone()))
        );
        assert!(record.finished_at.is_some());
        // The first to replace stays named.
        assert_eq!(
            store
                .execution(&running)
                .await
                .unwrap()
                .unwrap()
                .replaced_by,
            Some(queued.clone())
        );
        store
            .finish(&running, result(ExecutionStatus::Cancelled))
            .await
            .unwrap();
        let record = store.execution(&running).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.replaced_by),
            (ExecutionStatus::Cancelled, Some(queued))
        );
        assert_eq!(store.claim().await.unwrap().unwrap().id, newest);
        // A replaced execution whose attempt failed is not tried again.
        let last = started(
            store
                .submit(keyed(trigger, None, "{}", "k", OnBusy::Replace))
                .await
                .unwrap(),
        );
        store
            .retry(
                &newest,
                result(ExecutionStatus::Error),
                std::time::SystemTime::now(),
            )
            .await
            .unwrap();
        assert_eq!(
            store.execution(&newest).await.unwrap().unwrap().status,
            ExecutionStatus::Cancelled
        );
        assert_eq!(store.claim().await.unwrap().unwrap().id, last);
        assert!(store.claim().await.unwrap().is_none());
    }

    pub async fn a_burst_joins_one_execution_that_runs_the_newest_input<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        let first = started(
            store
                .submit(debounced(trigger, "d-1", r#"{"n":1}"#, 800, 60_000))
                .await
                .unwrap(),
        );
        for (id, input) in [("d-2", r#"{"n":2}"#), ("d-3", r#"{"n":3}"#)] {
            assert_eq!(
                store
                    .submit(debounced(trigger, id, input, 800, 60_000))
                    .await
                    .unwrap(),
                Outcome::Joined(first.clone())
            );
        }
        // Each delivery's own id is remembered.
        assert_eq!(
            store
                .submit(debounced(trigger, "d-2", r#"{"n":2}"#, 800, 60_000))
                .await
                .unwrap(),
            Outcome::Replayed(first.clone())
        );
        let record = store.execution(&first).await.unwrap().unwrap();
        assert_eq!(
            (record.status, record.deliveries),
            (ExecutionStatus::Queued, 3)
        );
        assert!(store.claim().await.unwrap().is_none(), "still debouncing");
        let (id, input, deliveries, _) =
            claim_within(&store, Duration::from_secs(10)).await.unwrap();
        assert_eq!(
            (id, input.as_str(), deliveries),
            (first.clone(), r#"{"n":3}"#, 3)
        );
        // Once it started, the next delivery debounces in its turn.
        let next = started(
            store
                .submit(debounced(trigger, "d-4", "{}", 800, 60_000))
                .await
                .unwrap(),
        );
        assert_ne!(next, first);
        store
            .finish(&first, result(ExecutionStatus::Done))
            .await
            .unwrap();
        assert!(store.claim().await.unwrap().is_none(), "still debouncing");
    }

    pub async fn a_key_that_never_goes_quiet_starts_by_its_maximum<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        let begun = Instant::now();
        let first = started(
            store
                .submit(debounced(trigger, "d-0", "{}", 700, 1500))
                .await
                .unwrap(),
        );
        let mut claimed = None;
        for n in 1.. {
            // A delivery every 200 ms: never quiet for 700.
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Some(execution) = store.claim().await.unwrap() {
                claimed = Some((execution.id, begun.elapsed()));
                break;
            }
            let id = format!("d-{n}");
            match store
                .submit(debounced(trigger, &id, "{}", 700, 1500))
                .await
                .unwrap()
            {
                Outcome::Joined(joined) => assert_eq!(joined, first),
                other => panic!("{other:?}"),
            }
            assert!(begun.elapsed() < Duration::from_secs(20), "never started");
        }
        let (id, after) = claimed.unwrap();
        assert_eq!(id, first);
        assert!(
            after >= Duration::from_millis(1500),
            "started after {after:?}"
        );
    }

    pub async fn an_idle_worker_wakes_when_a_debounce_ends<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        let begun = Instant::now();
        let id = started(
            store
                .submit(debounced(trigger, "d-1", "{}", 400, 60_000))
                .await
                .unwrap(),
        );
        // A worker claims, and waits for work when there is none: without a wake-up at the
        // debounce's end it would wait for the 5 s timeout below.
        loop {
            if let Some(claimed) = store.claim().await.unwrap() {
                assert_eq!(claimed.id, id);
                break;
            }
            let woken = tokio::time::timeout(Duration::from_secs(5), store.work_queued()).await;
            assert!(woken.is_ok(), "no wake-up at the debounce's end");
        }
        assert!(begun.elapsed() >= Duration::from_millis(400));
    }

    pub async fn concurrent_copies_join_one_execution<H: Harness>(harness: &H)
    where
        H::Store: ExecutionQueue,
    {
        let store = harness.store();
        let trigger = Uuid::now_v7();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..60 {
            let store = store.clone();
            tasks.spawn(async move {
                let id = format!("burst-{n}");
                store
                    .submit(debounced(trigger, &id, "{}", 5_000, 60_000))
                    .await
                    .unwrap()
            });
        }
        let (mut started_ids, mut joined) = (Vec::new(), Vec::new());
        while let Some(outcome) = tasks.join_next().await {
            match outcome.unwrap() {
                Outcome::Started(id) => started_ids.push(id),
                Outcome::Joined(id) => joined.push(id),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(started_ids.len(), 1, "one execution for the burst");
        assert!(joined.iter().all(|id| *id == started_ids[0]));
        let record = store.execution(&started_ids[0]).await.unwrap().unwrap();
        assert_eq!(record.deliveries, 60);
    }
}

/// `#[tokio::test]` for each case against one harness.
macro_rules! cases {
    ($harness:path, $module:ident, [$($case:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(harness) = $harness(stringify!($case)).await else { return };
                crate::$module::$case(&harness).await;
            }
        )*
    };
}

macro_rules! sink_cases {
    ($harness:path) => {
        cases!(
            $harness,
            sink_cases,
            [
                a_redelivery_returns_the_original_execution,
                concurrent_copies_start_exactly_one,
                signed_and_bearer_ids_are_separate_and_signatures_are_remembered,
                a_trigger_s_signature_scheme_and_public_url_are_kept,
                a_revoked_key_stops_working,
            ]
        );
    };
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! queue_cases {
    ($harness:path) => {
        cases!(
            $harness,
            queue_cases,
            [
                executions_are_claimed_oldest_first_finished_and_recorded,
                a_submit_wakes_an_idle_worker,
                a_retried_execution_waits_for_its_time_and_counts_its_attempts,
                a_trigger_at_its_cap_of_running_executions_waits_queued,
                pruning_deletes_finished_executions_with_their_keys,
                listing_cancelling_and_replaying,
                a_list_leaves_the_output_to_the_execution_by_id,
                a_retry_does_not_inherit_a_cancel_asked_of_the_attempt_before,
                replays_and_cancels_record_the_key_that_asked,
                a_replay_of_a_disabled_or_removed_trigger_is_refused,
                a_replay_counts_against_its_triggers_cap_of_running_executions,
                a_disabled_triggers_executions_wait_until_it_is_enabled_again,
                a_removed_triggers_queued_executions_end_cancelled,
                a_trigger_keeps_its_rules_and_an_execution_its_prompt,
            ]
        );
    };
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! subject_cases {
    ($harness:path) => {
        cases!(
            $harness,
            subject_cases,
            [
                a_key_runs_one_execution_at_a_time_in_order,
                skip_answers_with_the_busy_execution_and_remembers_nothing,
                replace_cancels_the_keys_executions_and_names_the_new_one,
                a_burst_joins_one_execution_that_runs_the_newest_input,
                a_key_that_never_goes_quiet_starts_by_its_maximum,
                an_idle_worker_wakes_when_a_debounce_ends,
                concurrent_copies_join_one_execution,
            ]
        );
    };
}

mod memory {
    sink_cases!(crate::memory_harness::fresh);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    sink_cases!(crate::sqlite_harness::fresh);
    queue_cases!(crate::sqlite_harness::fresh);
    subject_cases!(crate::sqlite_harness::fresh);
}

#[cfg(feature = "postgres")]
mod postgres {
    sink_cases!(crate::postgres_harness::fresh);
    queue_cases!(crate::postgres_harness::fresh);
    subject_cases!(crate::postgres_harness::fresh);
}

#[cfg(feature = "nats")]
mod jetstream {
    sink_cases!(crate::jetstream_harness::fresh);
}
