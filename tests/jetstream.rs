//! What the JetStream sink promises beyond the shared sink cases (`store_suite.rs`): one message
//! per execution, acknowledged after the publish; one execution per delivery id across sink
//! instances, for as long as the stream keeps the message; a stream that would break that is
//! refused.
#![cfg(feature = "nats")]

pub mod common;

use std::time::Duration;

use agent_trigger::nats::headers;
use agent_trigger::{ExecutionSink, Outcome};
use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use common::nats::TestStream;
use common::{copies_start_one, key_delivery};

const JIRA_EVENT: &str = r#"{"webhookEvent":"jira:issue_created"}"#;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_one_message_that_a_consumer_reads_back() {
    let Some(stream) = TestStream::new("a_delivery_is_one_message").await else {
        return;
    };
    let sink = stream.sink().await;
    let trigger = Uuid::now_v7();
    let Outcome::Started(id) = sink
        .submit(key_delivery(trigger, Some("d-1"), JIRA_EVENT))
        .await
        .unwrap()
    else {
        panic!("not started");
    };
    assert_eq!(
        sink.submit(key_delivery(trigger, Some("d-1"), JIRA_EVENT))
            .await
            .unwrap(),
        Outcome::Replayed(id.clone())
    );

    // A consumer on the executions subject gets exactly one message, and the delivery back.
    let mut info = stream.context().get_stream(&stream.name).await.unwrap();
    assert_eq!(info.info().await.unwrap().state.messages, 1);
    let consumer = info
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("agents".to_owned()),
            filter_subject: sink.executions_subject(),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(10).messages().await.unwrap();
    let message = futures_util::StreamExt::next(&mut batch)
        .await
        .unwrap()
        .unwrap();
    let (read_id, read) =
        headers::decode(message.headers.as_ref().unwrap(), message.payload.clone()).unwrap();
    assert_eq!(read_id, id);
    assert_eq!(read.trigger_id, trigger);
    assert_eq!(read.delivery_id.as_deref(), Some("d-1"));
    assert_eq!(read.action.as_deref(), Some("jira:issue_created"));
    assert_eq!(read.input, key_delivery(trigger, None, JIRA_EVENT).input);
    message.ack().await.unwrap();
    assert!(futures_util::StreamExt::next(&mut batch).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_sent_to_several_instances_at_once_start_one_execution() {
    let Some(stream) = TestStream::new("copies_sent_to_several_instances").await else {
        return;
    };
    let instances = [
        stream.sink().await,
        stream.sink().await,
        stream.sink().await,
    ];
    copies_start_one(&instances, 30, 12).await;
    let mut info = stream.context().get_stream(&stream.name).await.unwrap();
    assert_eq!(info.info().await.unwrap().state.messages, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_remembered_until_the_stream_lets_the_message_go() {
    let Some(stream) = TestStream::new("ids_are_remembered_until").await else {
        return;
    };
    // Past JetStream's duplicate window (which the stream clips to its max_age), and up to
    // the max_age itself.
    let max_age = Duration::from_secs(2);
    let sink = stream
        .options()
        .await
        .max_age(max_age)
        .connect()
        .await
        .unwrap();
    let trigger = Uuid::now_v7();
    let Outcome::Started(first) = sink
        .submit(key_delivery(trigger, Some("d"), JIRA_EVENT))
        .await
        .unwrap()
    else {
        panic!("not started");
    };
    tokio::time::sleep(max_age / 2).await;
    assert_eq!(
        sink.submit(key_delivery(trigger, Some("d"), JIRA_EVENT))
            .await
            .unwrap(),
        Outcome::Replayed(first.clone()),
        "within the horizon"
    );
    // Once the message has aged out, the id is free again: a new execution.
    let mut info = stream.context().get_stream(&stream.name).await.unwrap();
    for _ in 0..100 {
        if info.info().await.unwrap().state.messages == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(info.info().await.unwrap().state.messages, 0);
    match sink
        .submit(key_delivery(trigger, Some("d"), JIRA_EVENT))
        .await
        .unwrap()
    {
        Outcome::Started(second) => assert_ne!(second, first),
        other => panic!("past the horizon the id starts anew, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_would_forget_acknowledged_messages_is_refused() {
    let Some(stream) = TestStream::new("a_stream_that_would_forget").await else {
        return;
    };
    stream
        .context()
        .create_stream(Config {
            name: stream.name.clone(),
            subjects: vec![format!("{}.>", stream.prefix)],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            ..Config::default()
        })
        .await
        .unwrap();
    let error = stream.options().await.connect().await.unwrap_err();
    assert!(error.to_string().contains("retention"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_answers_unavailable() {
    let Some(stream) = TestStream::new("an_unreachable_server_answers_unavailable").await else {
        return;
    };
    let sink = stream.sink().await;
    // The stream goes away under the sink: publishes find no stream.
    stream.context().delete_stream(&stream.name).await.unwrap();
    match sink
        .submit(key_delivery(Uuid::now_v7(), Some("d"), JIRA_EVENT))
        .await
    {
        Err(agent_trigger::SinkError::Unavailable { retry_after }) => {
            assert_eq!(retry_after, Duration::from_secs(1));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// A `nats-server` killed and started again under steady load: the publishes during the outage
/// answer `503` with `Retry-After`, every `200` is in the stream afterwards, and the sink
/// serves again once the server is back, without being rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_loses_no_acknowledged_execution() {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use agent_trigger::{Source, TriggerService};
    use common::nats::OwnNatsServer;
    use common::{Fixture, full, send};
    use http::StatusCode;
    use tokio::time::Instant;

    let Some(mut server) = OwnNatsServer::start("a_restarted_server_loses_no_acknowledged").await
    else {
        return;
    };
    // The embedder's client, with its default reconnects (forever, backing off).
    let client = async_nats::connect(server.url()).await.unwrap();
    let sink = agent_trigger::nats::JetStreamSink::builder(client.clone())
        .stream("FAULTS")
        .subject_prefix("faults")
        .connect()
        .await
        .unwrap();
    let fixture = Fixture::new();
    let service = TriggerService::builder(sink, Arc::clone(&fixture.store))
        .backend_timeout(Duration::from_secs(3))
        .build();

    // (sent at, status, retry-after, execution id)
    type Answer = (Instant, StatusCode, bool, Option<String>);
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = {
        let (answers, fixture, service) = (Arc::clone(&answers), Arc::new(fixture), service);
        tokio::spawn(async move {
            let mut inflight = tokio::task::JoinSet::new();
            let mut n = 0;
            while !*stopped.borrow() {
                let body = format!(r#"{{"n":{n}}}"#);
                let request = fixture
                    .bearer(Source::Webhook, &body)
                    .header("idempotency-key", format!("restart-{n}"))
                    .body(full(body))
                    .unwrap();
                let (service, answers) = (service.clone(), Arc::clone(&answers));
                inflight.spawn(async move {
                    let sent_at = Instant::now();
                    let answer =
                        tokio::time::timeout(Duration::from_secs(10), send(service, request))
                            .await
                            .expect("answered within the deadline");
                    let id = answer.json["executionId"].as_str().map(str::to_owned);
                    let retry_after = answer.headers.contains_key("retry-after");
                    answers
                        .lock()
                        .unwrap()
                        .push((sent_at, answer.status, retry_after, id));
                });
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            while inflight.join_next().await.is_some() {}
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.kill().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    server.restart().await.unwrap();
    let back_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.send_replace(true);
    load.await.unwrap();

    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let mut acknowledged = HashSet::new();
    let (mut ok, mut unavailable) = (0, 0);
    for (_, status, retry_after, id) in &answers {
        match *status {
            StatusCode::OK => {
                ok += 1;
                acknowledged.insert(id.clone().expect("a 200 names its execution"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(retry_after, "a 503 without Retry-After");
                unavailable += 1;
            }
            other => panic!("only 200 and 503 while NATS is away, not {other}"),
        }
    }
    assert!(unavailable > 0, "the outage answers 503");
    let recovered_in = answers
        .iter()
        .filter(|(sent_at, status, _, _)| *sent_at >= back_at && *status == StatusCode::OK)
        .map(|(sent_at, ..)| *sent_at - back_at)
        .min()
        .expect("the sink serves again after the restart");

    // Every acknowledged execution is in the stream, which kept it across the restart.
    let context = async_nats::jetstream::new(client);
    let stream = context.get_stream("FAULTS").await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: "faults.executions.>".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stored = HashSet::new();
    let mut messages = consumer
        .fetch()
        .max_messages(10_000)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
        let message = message.unwrap();
        let (id, _) =
            headers::decode(message.headers.as_ref().unwrap(), message.payload.clone()).unwrap();
        assert!(stored.insert(id.to_string()), "one message per execution");
    }
    let missing: Vec<_> = acknowledged.difference(&stored).collect();
    println!(
        "FAULT | nats-server killed 4 s | JetStream | 200: {ok} | 503: {unavailable} | other: 0 | \
         acknowledged: {} | stored: {} of them ({} messages) | ran twice: n/a | recovered in: {:.1} s",
        acknowledged.len(),
        acknowledged.len() - missing.len(),
        stored.len(),
        recovered_in.as_secs_f64()
    );
    assert!(
        missing.is_empty(),
        "acknowledged but not in the stream: {missing:?}"
    );
    assert!(
        recovered_in < Duration::from_secs(5),
        "serves again within 5 s: {recovered_in:?}"
    );
}
