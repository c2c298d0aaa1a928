//! What only the SQLite store promises: executions and idempotency across restarts, a crash's
//! running executions interrupted on open, a private file, and its queue's limits. The cases
//! every store shares are in `store_suite.rs`.
#![cfg(feature = "sqlite")]

pub mod common;

use std::path::PathBuf;
use std::time::Duration;

use agent_trigger::queue::{ExecutionQueue, ExecutionStatus};
use agent_trigger::sqlite::SqliteStore;
use agent_trigger::{
    ActionAllowlist, ApiKeyRecord, ExecutionSink, KeyScope, KeyStore, Outcome, SigningSecret,
    Source, Trigger, TriggerService,
};
use common::{JIRA_BODY, full, key_delivery, secret_for, send, signed_jira};
use http::{Request, StatusCode};
use uuid::Uuid;

fn temp_db() -> (tempfile_dir::Dir, PathBuf) {
    let dir = tempfile_dir::Dir::new();
    let path = dir.path().join("agent-trigger.db");
    (dir, path)
}

/// A directory removed when dropped.
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Self {
            let path =
                std::env::temp_dir().join(format!("agent-trigger-test-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn started(outcome: Outcome) -> agent_trigger::ExecutionId {
    match outcome {
        Outcome::Started(id) => id,
        other => panic!("expected Started, got {other:?}"),
    }
}

#[tokio::test]
async fn redeliveries_are_recognised_across_a_restart() {
    let (_dir, path) = temp_db();
    let trigger = Uuid::now_v7();
    let original = {
        let store = SqliteStore::open(&path).unwrap();
        started(
            store
                .submit(key_delivery(trigger, Some("d-1"), "{}"))
                .await
                .unwrap(),
        )
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store
            .submit(key_delivery(trigger, Some("d-1"), "{}"))
            .await
            .unwrap(),
        Outcome::Replayed(original)
    );
    // The same delivery id on another trigger is another delivery.
    started(
        store
            .submit(key_delivery(Uuid::now_v7(), Some("d-1"), "{}"))
            .await
            .unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_start_exactly_one_and_every_acknowledgement_is_kept() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let trigger = Uuid::now_v7();
    let mut tasks = Vec::new();
    for n in 0..200 {
        let store = store.clone();
        let id = if n % 2 == 0 { Some("same") } else { None };
        tasks.push(tokio::spawn(async move {
            store.submit(key_delivery(trigger, id, "{}")).await.unwrap()
        }));
    }
    let mut started_ids = Vec::new();
    let mut replayed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Outcome::Started(id) => started_ids.push(id),
            Outcome::Replayed(_) => replayed += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(started_ids.len(), 101);
    assert_eq!(replayed, 99);
    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();
    for id in &started_ids {
        assert!(reopened.execution(id).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn executions_left_running_by_a_crash_are_interrupted_on_open() {
    let (_dir, path) = temp_db();
    let id = {
        let store = SqliteStore::open(&path).unwrap();
        started(
            store
                .submit(key_delivery(Uuid::now_v7(), None, "{}"))
                .await
                .unwrap(),
        );
        store.claim().await.unwrap().unwrap().id
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.interrupted_on_open(), 1);
    let record = store.execution(&id).await.unwrap().unwrap();
    assert_eq!(record.status, ExecutionStatus::Interrupted);
    assert!(record.finished_at.is_some());
    assert!(store.claim().await.unwrap().is_none());
}

#[tokio::test]
async fn keys_and_triggers_persist() {
    let (_dir, path) = temp_db();
    let trigger_id = Uuid::now_v7();
    let key = {
        let store = SqliteStore::open(&path).unwrap();
        let trigger = Trigger::new(trigger_id, "acme", Source::Slack)
            .with_actions(ActionAllowlist::new(["app_mention"]))
            .with_replay_window(Duration::from_secs(120))
            .with_rate_limit(
                std::num::NonZeroU32::new(30).unwrap(),
                Duration::from_secs(60),
            )
            .with_secret(SigningSecret::new("2026-11", "slack secret").unwrap());
        store.insert_trigger(trigger).await.unwrap();
        store
            .generate_key(
                ApiKeyRecord::new("ci", "acme").with_scope(KeyScope::Triggers(vec![trigger_id])),
            )
            .await
            .unwrap()
    };
    let store = SqliteStore::open(&path).unwrap();
    let record = store.api_key(key.digest()).await.unwrap().unwrap();
    assert_eq!(record.scope(), &KeyScope::Triggers(vec![trigger_id]));
    let trigger = store.trigger(trigger_id).await.unwrap().unwrap();
    assert_eq!(trigger.source(), Source::Slack);
    assert!(trigger.actions().unwrap().allows("app_mention"));
    assert_eq!(trigger.replay_window(), Some(Duration::from_secs(120)));
    assert_eq!(
        trigger.rate_limit(),
        Some((
            std::num::NonZeroU32::new(30).unwrap(),
            Duration::from_secs(60)
        ))
    );
    assert_eq!(trigger.secrets()[0].id(), "2026-11");

    assert!(store.revoke_key("ci").await.unwrap());
    assert!(
        store
            .api_key(key.digest())
            .await
            .unwrap()
            .unwrap()
            .is_revoked()
    );
    store
        .replace_keys_and_triggers(Vec::new(), Vec::new())
        .await
        .unwrap();
    assert!(store.trigger(trigger_id).await.unwrap().is_none());
}

#[tokio::test]
async fn the_service_runs_on_the_store() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let trigger_id = Uuid::now_v7();
    store
        .insert_trigger(Trigger::new(trigger_id, "acme", Source::Jira))
        .await
        .unwrap();
    let key = store
        .generate_key(ApiKeyRecord::new("ci", "acme"))
        .await
        .unwrap();
    let service = TriggerService::new(store.clone(), store.clone());
    let request = || {
        Request::post(format!("/api/trigger/jira/{trigger_id}"))
            .header("authorization", format!("Bearer {}", key.expose()))
            .header("x-atlassian-webhook-identifier", "abc")
            .body(full(r#"{"webhookEvent":"jira:issue_created"}"#))
            .unwrap()
    };
    let first = send(service.clone(), request()).await;
    assert_eq!(first.status, StatusCode::OK);
    let again = send(service, request()).await;
    assert_eq!(again.json, first.json);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let id = first.json["executionId"].as_str().unwrap();
    let record = store.execution(&id.into()).await.unwrap().unwrap();
    assert_eq!(record.status, ExecutionStatus::Queued);
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_database_and_its_journal_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let (_dir, path) = temp_db();
    // Created by the store, with a umask that would otherwise leave it readable by everyone.
    let store = SqliteStore::open(&path).unwrap();
    store
        .submit(key_delivery(Uuid::now_v7(), None, "{}"))
        .await
        .unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&path.with_extension("db-wal")), 0o600);
    drop(store);
}

#[cfg(unix)]
#[test]
fn an_existing_database_that_others_may_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = temp_db();
    drop(SqliteStore::open(&path).unwrap());
    let log = |path: &std::path::Path| {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = {
            let lines = std::sync::Arc::clone(&lines);
            move || LogLine(std::sync::Arc::clone(&lines))
        };
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || drop(SqliteStore::open(path).unwrap()));
        String::from_utf8(lines.lock().unwrap().clone()).unwrap()
    };
    assert!(!log(&path).contains("others may read it"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warned = log(&path);
    assert!(
        warned.contains("others may read it") && warned.contains("644"),
        "{warned}"
    );
}

/// A log writer that keeps what it is given.
struct LogLine(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A store with one Jira trigger signed by `secret`, a bearer key, and a service over it.
async fn jira_service(
    path: &std::path::Path,
    backend_timeout: Duration,
) -> (
    SqliteStore,
    TriggerService<SqliteStore, SqliteStore>,
    Uuid,
    agent_trigger::ApiKey,
) {
    let store = SqliteStore::open(path).unwrap();
    let trigger_id = Uuid::now_v7();
    let trigger =
        Trigger::new(trigger_id, "acme", Source::Jira).with_secret(secret_for(Source::Jira));
    store.insert_trigger(trigger).await.unwrap();
    let key = store
        .generate_key(ApiKeyRecord::new("ci", "acme"))
        .await
        .unwrap();
    let service = TriggerService::builder(store.clone(), store.clone())
        .backend_timeout(backend_timeout)
        .build();
    (store, service, trigger_id, key)
}

#[tokio::test]
async fn signatures_and_namespaced_ids_are_remembered_across_a_restart() {
    let (_dir, path) = temp_db();
    let (store, service, trigger_id, key) = jira_service(&path, Duration::from_secs(10)).await;
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
    assert!(own.headers.get("idempotent-replayed").is_none());
    assert_ne!(own.json, first.json);
    drop((service, store));

    let store = SqliteStore::open(&path).unwrap();
    let service = TriggerService::new(store.clone(), store.clone());
    for (request, original) in [
        (signed_jira(trigger_id, "c"), &first.json),
        (bearer(), &own.json),
    ] {
        let answer = send(service.clone(), request).await;
        assert_eq!(&answer.json, original);
        assert_eq!(answer.headers["idempotent-replayed"], "true");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_caller_gave_up_is_not_kept() {
    let (_dir, path) = temp_db();
    let (_store, service, trigger_id, _key) = jira_service(&path, Duration::from_millis(200)).await;
    // Another connection holds the write lock, so the delivery waits past its deadline.
    let lock = rusqlite::Connection::open(&path).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let answer = send(service.clone(), signed_jira(trigger_id, "a")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    lock.execute_batch("COMMIT").unwrap();

    // Its retry runs as a new delivery: the one answered 503 was not kept.
    let retry = send(service, signed_jira(trigger_id, "a")).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert!(retry.headers.get("idempotent-replayed").is_none());
    let kept: i64 = lock
        .query_row("SELECT count(*) FROM executions", [], |row| row.get(0))
        .unwrap();
    assert_eq!(kept, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_unavailable_at_once_and_keeps_every_acknowledgement() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let trigger_id = Uuid::now_v7();
    let lock = rusqlite::Connection::open(&path).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    // More than the queue and one group can hold while the database thread waits.
    let submits = 2 * agent_trigger::sqlite::QUEUE_CAPACITY;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..submits {
        let store = store.clone();
        tasks.spawn(async move { store.submit(key_delivery(trigger_id, None, "{}")).await });
    }
    let mut unavailable = 0;
    // Refusals come while the lock is still held: they do not wait for the database.
    while unavailable < submits - agent_trigger::sqlite::QUEUE_CAPACITY - 512 - 1 {
        match tokio::time::timeout(Duration::from_secs(3), tasks.join_next()).await {
            Ok(Some(Ok(Err(agent_trigger::SinkError::Unavailable { retry_after })))) => {
                assert_eq!(retry_after, Duration::from_secs(1));
                unavailable += 1;
            }
            other => panic!("expected an immediate 503, got {other:?}"),
        }
    }
    lock.execute_batch("COMMIT").unwrap();
    let mut started = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            Ok(Outcome::Started(_)) => started += 1,
            Err(agent_trigger::SinkError::Unavailable { .. }) => unavailable += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(started + unavailable, submits);
    let kept: i64 = lock
        .query_row("SELECT count(*) FROM executions", [], |row| row.get(0))
        .unwrap();
    assert_eq!(kept as usize, started);
}
