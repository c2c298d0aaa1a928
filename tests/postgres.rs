//! What the PostgreSQL store promises across instances: one execution per delivery id, leases
//! that lapse when an instance dies, key changes that reach every instance, acknowledgements
//! only for what is kept. The cases every store shares are in `store_suite.rs`.
#![cfg(feature = "postgres")]

pub mod common;

use std::time::{Duration, Instant};

use agent_trigger::postgres::PostgresStore;
use agent_trigger::queue::{ExecutionQueue, ExecutionRecord, ExecutionResult, ExecutionStatus};
use agent_trigger::{
    ApiKeyRecord, ExecutionId, ExecutionSink, Outcome, SinkError, Source, Trigger, TriggerService,
};
use common::postgres::TestSchema;
use common::{copies_start_one, full, key_delivery, secret_for, send, signed_jira};
use http::{Request, StatusCode};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_sent_to_several_instances_at_once_start_one_execution() {
    let Some(schema) = TestSchema::new("copies_sent_to_several_instances").await else {
        return;
    };
    let instances = [
        schema.store().await,
        schema.store().await,
        schema.store().await,
    ];
    copies_start_one(&instances, 20, 12).await;
    assert_eq!(
        instances[0].count(ExecutionStatus::Queued).await.unwrap(),
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_working_on_every_instance_within_the_refresh_bound() {
    let Some(schema) = TestSchema::new("a_revoked_key_stops_working_on_every_instance").await
    else {
        return;
    };
    let bound = Duration::from_secs(2);
    let writer = schema.options().key_refresh(bound).connect().await.unwrap();
    let reader = schema.options().key_refresh(bound).connect().await.unwrap();
    let trigger_id = Uuid::now_v7();
    writer
        .insert_trigger(Trigger::new(trigger_id, "acme", Source::Webhook))
        .await
        .unwrap();
    let key = writer
        .generate_key(ApiKeyRecord::new("ci", "acme"))
        .await
        .unwrap();
    let service = TriggerService::new(reader.clone(), reader.clone());
    let request = || {
        Request::post(format!("/api/trigger/webhook/{trigger_id}"))
            .header("authorization", format!("Bearer {}", key.expose()))
            .header("content-type", "application/json")
            .body(full("{}"))
            .unwrap()
    };
    // The new key and trigger reach the other instance within the bound.
    let reached = Instant::now();
    while send(service.clone(), request()).await.status != StatusCode::OK {
        assert!(
            reached.elapsed() < bound,
            "the key did not reach the other instance"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(writer.revoke_key("ci").await.unwrap());
    let revoked = Instant::now();
    while send(service.clone(), request()).await.status != StatusCode::UNAUTHORIZED {
        assert!(
            revoked.elapsed() < bound,
            "the revocation did not reach the other instance"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_wakes_idle_workers_of_every_instance_without_their_poll() {
    let Some(schema) = TestSchema::new("a_batch_wakes_idle_workers").await else {
        return;
    };
    let (here, there) = (schema.store().await, schema.store().await);
    // The listener of `there` is up once a notification it must hear arrives: give it time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let there = there.clone();
            tokio::spawn(async move { there.work_queued().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (first, second) = tokio::join!(
        here.submit(key_delivery(Uuid::now_v7(), None, "{}")),
        here.submit(key_delivery(Uuid::now_v7(), None, "{}")),
    );
    assert!(matches!(first.unwrap(), Outcome::Started(_)));
    assert!(matches!(second.unwrap(), Outcome::Started(_)));
    // One worker of the other instance per execution started, through the notification.
    for waiter in waiting {
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("an idle worker of the other instance is woken")
            .unwrap();
    }
}

/// The lease of the instances of the lapsed-lease tests.
const LEASE: Duration = Duration::from_millis(900);

/// Two instances with short leases, and an execution the first (the one to die) has claimed.
async fn claimed_on_one_of_two(schema: &TestSchema) -> (PostgresStore, PostgresStore, ExecutionId) {
    let doomed = schema.options().lease(LEASE).connect().await.unwrap();
    let survivor = schema.options().lease(LEASE).connect().await.unwrap();
    let Outcome::Started(id) = doomed
        .submit(key_delivery(Uuid::now_v7(), None, "{}"))
        .await
        .unwrap()
    else {
        panic!("not started");
    };
    assert_eq!(doomed.claim().await.unwrap().unwrap().id, id);
    (doomed, survivor, id)
}

/// The execution once `survivor` has resolved its lapsed lease, within four leases.
async fn once_not_running(survivor: &PostgresStore, id: &ExecutionId) -> ExecutionRecord {
    let died = Instant::now();
    loop {
        let record = survivor.execution(id).await.unwrap().unwrap();
        if record.status != ExecutionStatus::Running {
            return record;
        }
        assert!(
            died.elapsed() < LEASE * 4,
            "the lapsed lease was not resolved: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_work_of_an_instance_that_died_is_interrupted_once_its_lease_lapses() {
    let Some(schema) = TestSchema::new("the_work_of_an_instance_that_died").await else {
        return;
    };
    let (doomed, survivor, id) = claimed_on_one_of_two(&schema).await;
    // While its instance lives, the lease is renewed: the execution stays running.
    tokio::time::sleep(LEASE * 2).await;
    let record = survivor.execution(&id).await.unwrap().unwrap();
    assert_eq!(record.status, ExecutionStatus::Running);

    drop(doomed);
    let record = once_not_running(&survivor, &id).await;
    assert_eq!(record.status, ExecutionStatus::Interrupted);
    // The retry policy's hook queues it again, and a survivor runs it.
    assert_eq!(survivor.retry_interrupted(2).await.unwrap(), 1);
    let again = survivor.claim().await.unwrap().unwrap();
    assert_eq!((again.id, again.attempt), (id, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lost_its_lease_is_stopped_and_cannot_record_over_a_newer_claim() {
    let Some(schema) = TestSchema::new("a_worker_that_lost_its_lease").await else {
        return;
    };
    let lease = Duration::from_millis(900);
    let slow = schema.options().lease(lease).connect().await.unwrap();
    let other = schema.store().await;
    let Outcome::Started(id) = slow
        .submit(key_delivery(Uuid::now_v7(), None, "{}"))
        .await
        .unwrap()
    else {
        panic!("not started");
    };
    assert_eq!(slow.claim().await.unwrap().unwrap().id, id);
    // The lease lapses (its instance was cut off, say), and another instance claims it again.
    let client = schema.client().await;
    client
        .execute(
            "UPDATE executions SET status = 'queued', lease_owner = NULL WHERE id = $1",
            &[&id.as_uuid().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(other.claim().await.unwrap().unwrap().id, id);
    // At its next renewal the instance finds the claim gone and stops the worker's command.
    tokio::time::timeout(lease * 3, slow.cancel_requested(&id))
        .await
        .expect("the worker is told its claim is gone");
    slow.finish(
        &id,
        ExecutionResult::new(ExecutionStatus::Error, Some(1), b"late".to_vec()),
    )
    .await
    .unwrap();
    let record = other.execution(&id).await.unwrap().unwrap();
    assert_eq!(record.status, ExecutionStatus::Running);
    other
        .finish(
            &id,
            ExecutionResult::new(ExecutionStatus::Done, Some(0), b"ok".to_vec()),
        )
        .await
        .unwrap();
    let record = other.execution(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.output_tail),
        (ExecutionStatus::Done, b"ok".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_caller_gave_up_is_not_kept() {
    let Some(schema) = TestSchema::new("a_delivery_whose_caller_gave_up_is_not_kept").await else {
        return;
    };
    let store = schema.store().await;
    let trigger_id = Uuid::now_v7();
    store
        .insert_trigger(
            Trigger::new(trigger_id, "acme", Source::Jira).with_secret(secret_for(Source::Jira)),
        )
        .await
        .unwrap();
    let service = TriggerService::builder(store.clone(), store.clone())
        .backend_timeout(Duration::from_millis(300))
        .build();
    // Another session holds the executions table, so the delivery waits past its deadline.
    let mut locker = schema.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE executions IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let answer = send(service.clone(), signed_jira(trigger_id, "a")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    lock.commit().await.unwrap();

    // Its retry is a new delivery: the one answered 503 was not kept.
    let mut retry = send(service.clone(), signed_jira(trigger_id, "a")).await;
    for _ in 0..50 {
        if retry.status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        retry = send(service.clone(), signed_jira(trigger_id, "a")).await;
    }
    assert_eq!(retry.status, StatusCode::OK);
    assert!(retry.headers.get("idempotent-replayed").is_none());
    assert_eq!(store.count(ExecutionStatus::Queued).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_unavailable_at_once_and_keeps_every_acknowledgement() {
    let Some(schema) = TestSchema::new("a_full_queue_answers_unavailable_at_once").await else {
        return;
    };
    let store = schema
        .options()
        .batches_in_flight(1)
        .connect()
        .await
        .unwrap();
    let mut locker = schema.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE delivery_keys, executions IN EXCLUSIVE MODE")
        .await
        .unwrap();
    // More than the queue and the one batch in flight can hold while the database waits.
    let capacity = agent_trigger::postgres::QUEUE_CAPACITY;
    let submits = 2 * capacity + 1024;
    let trigger = Uuid::now_v7();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..submits {
        let store = store.clone();
        let id = format!("d{n}");
        tasks.spawn(async move { store.submit(key_delivery(trigger, Some(&id), "{}")).await });
    }
    let mut unavailable = 0;
    while unavailable < submits - capacity - 512 - 1 {
        match tokio::time::timeout(Duration::from_secs(3), tasks.join_next()).await {
            Ok(Some(Ok(Err(SinkError::Unavailable { retry_after })))) => {
                assert_eq!(retry_after, Duration::from_secs(1));
                unavailable += 1;
            }
            other => panic!("expected an immediate 503, got {other:?}"),
        }
    }
    lock.commit().await.unwrap();
    let mut started = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            Ok(Outcome::Started(_)) => started += 1,
            Err(SinkError::Unavailable { .. }) => unavailable += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(started + unavailable, submits);
    assert_eq!(
        store.count(ExecutionStatus::Queued).await.unwrap(),
        started as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_build_is_refused() {
    let Some(schema) = TestSchema::new("a_schema_newer_than_the_build_is_refused").await else {
        return;
    };
    drop(schema.store().await);
    schema
        .client()
        .await
        .execute("UPDATE agent_trigger_schema SET version = version + 1", &[])
        .await
        .unwrap();
    let error = schema.options().connect().await.unwrap_err();
    assert!(
        error.to_string().contains("newer than this build"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once() {
    let Some(schema) = TestSchema::new("instances_starting_together_migrate_once").await else {
        return;
    };
    let stores: Vec<PostgresStore> =
        futures_util::future::join_all((0..4).map(|_| schema.options().connect()))
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
    // The same one version as an instance that migrated alone writes.
    let Some(alone) = TestSchema::new("instances_starting_together_migrate_once_alone").await
    else {
        return;
    };
    drop(alone.store().await);
    let together = schema_versions(&schema).await;
    assert_eq!(together, schema_versions(&alone).await);
    assert_eq!(together.len(), 1);
    drop(stores);
}

/// The rows of the schema's version table.
async fn schema_versions(schema: &TestSchema) -> Vec<i64> {
    schema
        .client()
        .await
        .query("SELECT version FROM agent_trigger_schema", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_asked_of_one_instance_reaches_the_worker_on_another() {
    let Some(schema) = TestSchema::new("a_cancel_asked_of_one_instance_reaches").await else {
        return;
    };
    let (runner, api) = (schema.store().await, schema.store().await);
    let Outcome::Started(id) = runner
        .submit(key_delivery(Uuid::now_v7(), None, "{}"))
        .await
        .unwrap()
    else {
        panic!("not started");
    };
    assert_eq!(runner.claim().await.unwrap().unwrap().id, id);
    let asked = tokio::spawn({
        let (runner, id) = (runner.clone(), id.clone());
        async move { runner.cancel_requested(&id).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!asked.is_finished(), "nobody asked yet");
    assert_eq!(
        api.cancel(&id, "ops").await.unwrap(),
        Some(ExecutionStatus::Running)
    );
    tokio::time::timeout(Duration::from_secs(5), asked)
        .await
        .expect("the worker's instance hears of the cancel")
        .unwrap();
    runner
        .finish(
            &id,
            ExecutionResult::new(ExecutionStatus::Cancelled, None, Vec::new()),
        )
        .await
        .unwrap();
    assert_eq!(
        api.execution(&id).await.unwrap().unwrap().status,
        ExecutionStatus::Cancelled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_alone_does_not_cancel_a_running_execution() {
    let Some(schema) = TestSchema::new("a_notification_alone_does_not_cancel").await else {
        return;
    };
    let store = schema.store().await;
    let Outcome::Started(id) = store
        .submit(key_delivery(Uuid::now_v7(), None, "{}"))
        .await
        .unwrap()
    else {
        panic!("not started");
    };
    assert_eq!(store.claim().await.unwrap().unwrap().id, id);
    let asked = tokio::spawn({
        let (store, id) = (store.clone(), id.clone());
        async move { store.cancel_requested(&id).await }
    });
    // Any role that may connect may notify, without any right on the tables.
    schema
        .client()
        .await
        .execute(
            "SELECT pg_notify('agent_trigger', $1)",
            &[&format!("{}:cancel:{id}", schema.name)],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !asked.is_finished(),
        "a notification without a cancel in the table cancels nothing"
    );
    assert_eq!(
        store.cancel(&id, "ops").await.unwrap(),
        Some(ExecutionStatus::Running)
    );
    tokio::time::timeout(Duration::from_secs(5), asked)
        .await
        .expect("a real cancel is heard")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_of_an_execution_whose_cancel_was_asked_ends_it_cancelled() {
    let Some(schema) = TestSchema::new("a_lapsed_lease_of_a_cancelled_execution").await else {
        return;
    };
    let (doomed, survivor, id) = claimed_on_one_of_two(&schema).await;
    assert_eq!(
        survivor.cancel(&id, "ops").await.unwrap(),
        Some(ExecutionStatus::Running)
    );
    // Its instance dies before its worker could end it.
    drop(doomed);
    let record = once_not_running(&survivor, &id).await;
    assert_eq!(
        (record.status, record.cancelled_by.as_deref()),
        (ExecutionStatus::Cancelled, Some("ops"))
    );
    // Ended as asked: the retry policy does not run it again.
    assert_eq!(survivor.retry_interrupted(3).await.unwrap(), 0);
}
