//! §11 below the server: which requests the service hands its `DeliveryObserver` and with
//! what, and the deliveries log of the SQLite and PostgreSQL stores (newest first, filters,
//! the tenant, the detail, counts by outcome, the per-trigger bound, retention, a full queue).
#![cfg(all(feature = "sqlite", feature = "postgres"))]

pub mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use agent_trigger::deliveries::{
    DeliveryLog, DeliveryObserver, DeliveryQuery, LogLimits, LoggedDelivery, REDACTED,
};
use agent_trigger::memory::{ChannelSink, MemoryKeyStore};
use agent_trigger::sqlite::{SqliteStore, deliveries_log_path};
use agent_trigger::{ApiKeyRecord, Caller, ExecutionId, Source, Trigger, TriggerService};
use bytes::Bytes;
use common::postgres::TestSchema;
use common::{JIRA_BODY, full, secret_for, send, signed_jira};
use http::{Request, StatusCode};
use uuid::Uuid;

/// Keeps what it is told.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<LoggedDelivery>>>);

impl DeliveryObserver for Collected {
    fn observe(&self, delivery: LoggedDelivery) {
        self.0.lock().unwrap().push(delivery);
    }
}

impl Collected {
    fn take(&self) -> Vec<LoggedDelivery> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test]
async fn the_observer_hears_of_requests_that_reached_a_trigger_the_caller_may_see() {
    let (ours, theirs, signed) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let store = MemoryKeyStore::new()
        .with_trigger(Trigger::new(ours, "acme", Source::Webhook))
        .with_trigger(Trigger::new(theirs, "globex", Source::Webhook))
        .with_trigger(
            Trigger::new(signed, "acme", Source::Jira).with_secret(secret_for(Source::Jira)),
        );
    let key = store.generate_key(ApiKeyRecord::new("ci", "acme"));
    let (sink, _executions) = ChannelSink::new(64);
    let observer = Collected::default();
    let service = TriggerService::builder(sink, store)
        .body_limit(64)
        .observer(observer.clone())
        .build();
    let keyed = |trigger: Uuid, token: &str, body: &'static str| {
        Request::post(format!("/api/trigger/webhook/{trigger}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("cookie", "session=private")
            .body(full(body))
            .unwrap()
    };

    // Not observed: an invalid key, another tenant's trigger, an unknown one, a signed
    // request refused before its trigger is looked up.
    let invalid = "atk_0000000000000000000000000000000000000000000";
    assert_eq!(
        send(service.clone(), keyed(ours, invalid, "{}"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(service.clone(), keyed(theirs, key.expose(), "{}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(service.clone(), keyed(Uuid::now_v7(), key.expose(), "{}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let mut too_large = signed_jira(signed, "d-0");
    too_large
        .headers_mut()
        .insert("content-length", "100000".parse().unwrap());
    assert_eq!(
        send(service.clone(), too_large).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert!(observer.take().is_empty());

    // Observed: a valid key's delivery, with its body and redacted credentials.
    let answer = send(
        service.clone(),
        keyed(ours, key.expose(), r#"{"type":"x"}"#),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let [record] = <[_; 1]>::try_from(observer.take()).unwrap();
    assert_eq!(record.trigger_id, ours);
    assert_eq!(&*record.tenant, "acme");
    assert_eq!(record.status, 200);
    assert_eq!(record.outcome, "started");
    assert_eq!(
        record
            .execution_id
            .as_ref()
            .map(ExecutionId::to_string)
            .as_deref(),
        answer.json["executionId"].as_str()
    );
    assert!(matches!(&record.caller, Some(Caller::ApiKey { key_id, .. }) if &**key_id == "ci"));
    assert_eq!(record.action.as_deref(), Some("x"));
    assert_eq!(record.body.as_deref(), Some(&br#"{"type":"x"}"#[..]));
    assert_eq!(record.body_bytes, 12);
    let header = |record: &LoggedDelivery, name: &str| {
        record
            .headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(header(&record, "authorization").as_deref(), Some(REDACTED));
    assert_eq!(header(&record, "cookie").as_deref(), Some(REDACTED));
    assert_eq!(
        header(&record, "content-type").as_deref(),
        Some("application/json")
    );

    // A signed request to a known trigger, verified or not; its body only when verified.
    assert_eq!(
        send(service.clone(), signed_jira(signed, "d-1"))
            .await
            .status,
        StatusCode::OK
    );
    let mut forged = signed_jira(signed, "d-2");
    forged.headers_mut().insert(
        "x-hub-signature",
        format!("sha256={}", "0".repeat(64)).parse().unwrap(),
    );
    assert_eq!(
        send(service.clone(), forged).await.status,
        StatusCode::UNAUTHORIZED
    );
    let [verified, refused] = <[_; 2]>::try_from(observer.take()).unwrap();
    assert_eq!(verified.outcome, "started");
    assert_eq!(verified.delivery_id.as_deref(), Some("d-1"));
    assert_eq!(verified.body.as_deref(), Some(JIRA_BODY.as_bytes()));
    assert!(matches!(&verified.caller, Some(Caller::Signature { .. })));
    assert_eq!(
        header(&verified, "x-hub-signature").as_deref(),
        Some(REDACTED)
    );
    assert_eq!(refused.outcome, "invalid_signature");
    assert_eq!(refused.status, 401);
    assert!(refused.caller.is_none());
    assert!(
        refused.body.is_none(),
        "a body that did not verify is not kept"
    );
    assert_eq!(refused.body_bytes, JIRA_BODY.len() as u64);
    assert_eq!(
        header(&refused, "x-hub-signature").as_deref(),
        Some(REDACTED)
    );
}

/// A record of `trigger` of `tenant` answered `status`.
fn record(trigger: Uuid, tenant: &str, status: u16, outcome: &'static str) -> LoggedDelivery {
    let mut record = LoggedDelivery::new(trigger, tenant, Source::Webhook, status, outcome);
    record.reason = format!("answered {status}");
    record.caller = Some(Caller::ApiKey {
        key_id: "ci".into(),
        tenant: tenant.into(),
    });
    record.headers = vec![
        ("content-type".into(), "application/json".into()),
        ("authorization".into(), REDACTED.into()),
    ];
    record.body = Some(Bytes::from_static(b"{\"n\":1}"));
    record.body_bytes = 7;
    record.duration = Duration::from_micros(1500);
    record
}

/// The records `query` finds once at least `count` are written (the log trails by a moment).
async fn written<L: DeliveryLog>(
    log: &L,
    query: &DeliveryQuery,
    count: usize,
) -> Vec<LoggedDelivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = log.deliveries(query).await.unwrap();
        if found.len() >= count || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What every store's log does.
async fn log_cases<L: DeliveryLog>(log: &L) {
    let (hook, other, bounded) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    log.set_log_limits(LogLimits::default().with_trigger(bounded, 10));

    let first = record(hook, "acme", 200, "started");
    log.observe(first.clone());
    log.observe(record(hook, "acme", 401, "invalid_signature"));
    log.observe(record(other, "acme", 200, "skipped"));
    log.observe(record(Uuid::now_v7(), "globex", 200, "started"));
    let all = written(log, &DeliveryQuery::new("acme", 100), 3).await;
    assert_eq!(all.len(), 3, "only the tenant's");
    assert!(
        all.windows(2).all(|pair| pair[0].id > pair[1].id),
        "newest first"
    );
    let oldest = all.last().unwrap();
    assert_eq!(oldest.id, first.id);
    assert_eq!(oldest.status, 200);
    assert_eq!(oldest.outcome, "started");
    assert_eq!(oldest.reason, "answered 200");
    assert_eq!(oldest.caller_id(), Some("ci"));
    assert_eq!(oldest.body_bytes, 7);
    assert_eq!(oldest.duration, Duration::from_micros(1500));
    assert!(
        oldest.body.is_none() && oldest.headers.is_empty(),
        "a list is a summary"
    );

    let mut query = DeliveryQuery::new("acme", 100);
    query.triggers = Some(vec![hook]);
    assert_eq!(log.deliveries(&query).await.unwrap().len(), 2);
    query.outcome = Some("invalid_signature".into());
    assert_eq!(log.deliveries(&query).await.unwrap().len(), 1);
    let mut page = DeliveryQuery::new("acme", 1);
    page.before = Some(all[0].id);
    assert_eq!(log.deliveries(&page).await.unwrap()[0].id, all[1].id);

    let detail = log.delivery(first.id).await.unwrap().unwrap();
    assert_eq!(detail.headers, first.headers);
    assert_eq!(detail.body, first.body);
    assert_eq!(&*detail.tenant, "acme");
    assert!(log.delivery(Uuid::now_v7()).await.unwrap().is_none());

    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    let mut counts = log.outcome_counts("acme", None, day_ago).await.unwrap();
    counts.sort_by(|a, b| (a.trigger_id, &a.outcome).cmp(&(b.trigger_id, &b.outcome)));
    let counted: Vec<_> = counts
        .iter()
        .map(|count| (count.trigger_id, count.outcome.as_str(), count.count))
        .collect();
    let mut expected = vec![
        (hook, "invalid_signature", 1),
        (hook, "started", 1),
        (other, "skipped", 1),
    ];
    expected.sort();
    assert_eq!(counted, expected);
    let scoped = log
        .outcome_counts("acme", Some(vec![other]), day_ago)
        .await
        .unwrap();
    assert_eq!(scoped.len(), 1);

    // The bound: about the newest 10, refused ones at most one.
    let mut last = None;
    for index in 0..25 {
        let (status, outcome) = if index % 2 == 0 {
            (400, "invalid_json")
        } else {
            (200, "started")
        };
        let record = record(bounded, "acme", status, outcome);
        last = Some(record.id);
        log.observe(record);
        tokio::task::yield_now().await;
    }
    let mut query = DeliveryQuery::new("acme", 100);
    query.triggers = Some(vec![bounded]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let kept = loop {
        let kept = log.deliveries(&query).await.unwrap();
        if kept.first().map(|record| record.id) == last || tokio::time::Instant::now() > deadline {
            break kept;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(kept.len(), 10, "delivery_log_max = 10");
    assert_eq!(kept.iter().filter(|record| record.is_refused()).count(), 1);
    assert_eq!(kept[0].id, last.unwrap());

    // Retention: records received before a time, in batches.
    let mut old = record(other, "acme", 200, "started");
    old.received_at = SystemTime::now() - Duration::from_secs(40 * 86_400);
    let arrival = old
        .received_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    old.id =
        uuid::Builder::from_unix_timestamp_millis(arrival.as_millis() as u64, &[7; 10]).into_uuid();
    let old_id = old.id;
    log.observe(old);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while log.delivery(old_id).await.unwrap().is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let month_ago = SystemTime::now() - Duration::from_secs(30 * 86_400);
    assert_eq!(log.prune_deliveries(month_ago, 10).await.unwrap(), 1);
    assert!(log.delivery(old_id).await.unwrap().is_none());
    assert!(log.delivery(first.id).await.unwrap().is_some());
    assert_eq!(log.dropped_records(), 0);
}

#[tokio::test]
async fn the_sqlite_log() {
    let dir = std::env::temp_dir().join(format!("agent-trigger-log-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(dir.join("log.db")).unwrap();
    log_cases(&store).await;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The log's file has a writer of its own: while another connection holds its write lock (a
/// backup, a long query), deliveries are still acknowledged, and their records wait and are
/// written once the lock is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_log_holds_up_no_acknowledgement() {
    let dir = std::env::temp_dir().join(format!("agent-trigger-log-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let database = dir.join("log.db");
    let store = SqliteStore::open(&database).unwrap();
    let trigger = Uuid::now_v7();
    store
        .insert_trigger(Trigger::new(trigger, "acme", Source::Webhook))
        .await
        .unwrap();
    let key = store
        .generate_key(ApiKeyRecord::new("ci", "acme"))
        .await
        .unwrap();
    let service = TriggerService::builder(store.clone(), store.clone())
        .observer(store.clone())
        .build();

    let lock = rusqlite::Connection::open(deliveries_log_path(&database)).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let sent = 20;
    for n in 0..sent {
        let request = Request::post(format!("/api/trigger/webhook/{trigger}"))
            .header("authorization", format!("Bearer {}", key.expose()))
            .header("content-type", "application/json")
            .body(full(format!("{{\"n\":{n}}}")))
            .unwrap();
        assert_eq!(send(service.clone(), request).await.status, StatusCode::OK);
    }
    // Longer than the log's busy timeout (1 s) after its first try (100 ms after the first
    // record): the records go back to the queue and are tried again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let query = DeliveryQuery::new("acme", 100);
    lock.execute_batch("COMMIT").unwrap();

    let found = written(&store, &query, sent).await;
    assert_eq!(
        found.len(),
        sent,
        "every record was written once the lock went"
    );
    assert!(found.iter().all(|record| record.outcome == "started"));
    assert_eq!(store.dropped_records(), 0);
    drop((service, store, lock));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_log() {
    let Some(schema) = TestSchema::new("the_postgres_log").await else {
        return;
    };
    log_cases(&schema.store().await).await;
}

/// A full queue drops records and counts them, without waiting: here the writer cannot run
/// until the test yields.
#[tokio::test(flavor = "current_thread")]
async fn a_full_postgres_log_queue_drops_records_and_counts_them() {
    let Some(schema) = TestSchema::new("a_full_postgres_log_queue").await else {
        return;
    };
    let store = schema.store().await;
    let trigger = Uuid::now_v7();
    let sent = agent_trigger::postgres::LOG_QUEUE_CAPACITY + 100;
    for _ in 0..sent {
        store.observe(record(trigger, "acme", 200, "started"));
    }
    assert_eq!(store.dropped_records(), 100);
}
