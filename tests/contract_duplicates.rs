//! The contract's duplicates (§5): redeliveries, copies arriving together, the two namespaces
//! of delivery ids, and signature replays, through the tower `Service` API with real requests.

pub mod common;

use std::sync::Arc;

use agent_trigger::memory::ChannelSink;
use agent_trigger::{Caller, Source, Trigger, TriggerService};
use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::json;

// ---- duplicate ----

#[tokio::test]
async fn duplicate_delivery_gets_the_original_id_and_runs_once() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let request = || {
        fixture
            .bearer(Source::Jira, JIRA_BODY)
            .header("x-atlassian-webhook-identifier", "delivery-1")
            .body(full(JIRA_BODY))
            .unwrap()
    };
    let first = send(service.clone(), request()).await;
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = send(service.clone(), request()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json, first.json);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert!(rx.try_recv().is_ok());
    assert!(rx.try_recv().is_err(), "the redelivery started nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_copies_arriving_together_start_exactly_one_execution() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let service = service.clone();
        let request = fixture
            .bearer(Source::Jira, JIRA_BODY)
            .header("idempotency-key", "same-moment")
            .body(full(JIRA_BODY))
            .unwrap();
        tasks.push(tokio::spawn(async move { send(service, request).await }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut replayed = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        ids.insert(answer.json["executionId"].as_str().unwrap().to_owned());
        replayed += usize::from(answer.headers.contains_key("idempotent-replayed"));
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(replayed, 63);
    assert!(rx.try_recv().is_ok());
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn duplicate_an_idempotency_key_that_cannot_be_an_id_is_refused_not_ignored() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let long = "k".repeat(256);
    let request = fixture
        .bearer(Source::Jira, JIRA_BODY)
        .header("idempotency-key", &long)
        .body(full(JIRA_BODY))
        .unwrap();
    let answer = send(service.clone(), request).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.json["issues"][0],
        json!({"code":"too_big","path":["headers","idempotency-key"],"maximum":255,"type":"string","inclusive":true,
               "message":"String must contain at most 255 character(s)"})
    );
    let mut request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    request.headers_mut().insert(
        "idempotency-key",
        http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
    );
    let answer = send(service.clone(), request).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json["issues"][0]["code"], "invalid_string");
    assert!(rx.try_recv().is_err(), "nothing ran");
    // 255 is fine.
    let request = fixture
        .bearer(Source::Jira, JIRA_BODY)
        .header("idempotency-key", "k".repeat(255))
        .body(full(JIRA_BODY))
        .unwrap();
    assert_eq!(send(service, request).await.status, StatusCode::OK);
}

/// A request to `source`'s fixture trigger, signed as the sender signs it, plus `extra` headers.
fn signed(
    fixture: &Fixture,
    source: Source,
    content_type: &str,
    body: &'static str,
    extra: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let headers = signed_now(source, body.as_bytes());
    let mut request = Request::post(fixture.path(source))
        .header("content-type", content_type)
        .body(full(body))
        .unwrap();
    request.headers_mut().extend(headers);
    for (name, value) in extra {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    request
}

#[tokio::test]
async fn duplicate_a_signed_copy_is_a_replay_whatever_delivery_id_it_carries() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    // The sources that sign no timestamp, and Slack's slash commands, which carry no event id.
    let cases = [
        (
            Source::Jira,
            json,
            JIRA_BODY,
            "x-atlassian-webhook-identifier",
        ),
        (Source::Hackerone, json, "{}", "x-h1-delivery"),
        (Source::Bugcrowd, json, r#"{"data":{}}"#, "idempotency-key"),
        (
            Source::Slack,
            form,
            "command=%2Fdeploy&text=prod",
            "idempotency-key",
        ),
    ];
    for (source, content_type, body, id_header) in cases {
        let first = send(
            service.clone(),
            signed(
                &fixture,
                source,
                content_type,
                body,
                &[(id_header, "first")],
            ),
        )
        .await;
        assert_eq!(first.status, StatusCode::OK, "{source}: {}", first.json);
        assert!(first.headers.get("idempotent-replayed").is_none());
        rx.recv().await.unwrap();
        for replay in [vec![(id_header, "changed")], vec![]] {
            let answer = send(
                service.clone(),
                signed(&fixture, source, content_type, body, &replay),
            )
            .await;
            assert_eq!(answer.json, first.json, "{source} {replay:?}");
            assert_eq!(answer.headers["idempotent-replayed"], "true");
        }
    }
    assert!(rx.try_recv().is_err(), "a replay started an execution");
}

#[tokio::test]
async fn duplicate_a_key_holder_cannot_claim_a_senders_id_in_advance() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    const EVENT: &str =
        r#"{"type":"event_callback","event_id":"Ev123","event":{"type":"app_mention"}}"#;
    // A bearer caller sends the id first, in the body and as an Idempotency-Key.
    let claim = fixture
        .bearer(Source::Slack, EVENT)
        .header("idempotency-key", "Ev123")
        .body(full(EVENT))
        .unwrap();
    let claimed = send(service.clone(), claim).await;
    assert_eq!(claimed.status, StatusCode::OK);
    // Slack's real event still runs, and its redelivery is recognised as Slack's own.
    let real = send(
        service.clone(),
        signed(&fixture, Source::Slack, "application/json", EVENT, &[]),
    )
    .await;
    assert_eq!(real.status, StatusCode::OK);
    assert!(real.headers.get("idempotent-replayed").is_none());
    assert_ne!(real.json["executionId"], claimed.json["executionId"]);
    let retry = send(
        service.clone(),
        signed(&fixture, Source::Slack, "application/json", EVENT, &[]),
    )
    .await;
    assert_eq!(retry.json, real.json);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(
        rx.recv().await.unwrap().delivery.caller.clone(),
        Caller::ApiKey {
            key_id: "ci".into(),
            tenant: TENANT.into()
        }
    );
    assert!(matches!(
        rx.recv().await.unwrap().delivery.caller,
        Caller::Signature { .. }
    ));
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn duplicate_one_triggers_traffic_does_not_evict_anothers_ids() {
    let fixture = Fixture::new();
    let (sink, mut rx) = ChannelSink::new(64);
    let service = TriggerService::new(sink.remember(2), Arc::clone(&fixture.store));
    let request = |source: Source, id: &str| {
        fixture
            .bearer(source, "{}")
            .header("idempotency-key", id)
            .body(full("{}"))
            .unwrap()
    };
    let quiet = send(service.clone(), request(Source::Webhook, "quiet-1")).await;
    for n in 0..10 {
        let busy = send(service.clone(), request(Source::Jira, &format!("busy-{n}"))).await;
        assert_eq!(busy.status, StatusCode::OK);
    }
    let again = send(service.clone(), request(Source::Webhook, "quiet-1")).await;
    assert_eq!(again.json, quiet.json);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    // The busy trigger remembers its own last two only.
    let old = send(service.clone(), request(Source::Jira, "busy-0")).await;
    assert!(old.headers.get("idempotent-replayed").is_none());
    let recent = send(service, request(Source::Jira, "busy-9")).await;
    assert_eq!(recent.headers["idempotent-replayed"], "true");
    let mut started = 0;
    while rx.try_recv().is_ok() {
        started += 1;
    }
    assert_eq!(started, 12);
}

#[tokio::test]
async fn duplicate_skipped_deliveries_are_not_remembered() {
    let fixture = Fixture::new();
    let id = fixture.trigger(Source::Jira);
    let (service, mut rx) = fixture.channel_service();
    let request = || {
        Request::post(format!("/api/trigger/jira/{id}"))
            .header("authorization", format!("Bearer {}", fixture.key.expose()))
            .header("idempotency-key", "k1")
            .body(full(JIRA_BODY))
            .unwrap()
    };
    fixture
        .store
        .insert_trigger(Trigger::new(id, TENANT, Source::Jira).enabled(false));
    assert_eq!(
        send(service.clone(), request()).await.json["executionId"],
        "skipped"
    );
    fixture
        .store
        .insert_trigger(Trigger::new(id, TENANT, Source::Jira));
    let answer = send(service, request()).await;
    assert_ne!(answer.json["executionId"], "skipped");
    assert!(answer.headers.get("idempotent-replayed").is_none());
    assert!(rx.try_recv().is_ok());
}
