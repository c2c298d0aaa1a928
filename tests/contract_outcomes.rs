//! The contract's last rows (§1: disabled triggers, filters, the sink's answers), faults, and
//! the shape of every answer, through the tower `Service` API with real requests.

pub mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agent_trigger::memory::ChannelSink;
use agent_trigger::{
    ActionAllowlist, Caller, ExecutionId, Outcome, SinkError, Source, Trigger, TriggerService,
};
use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::json;
use uuid::Uuid;

// ---- disabled ----

#[tokio::test]
async fn disabled_trigger_is_skipped_with_its_action() {
    let fixture = Fixture::new();
    let id = Uuid::now_v7();
    fixture
        .store
        .insert_trigger(Trigger::new(id, TENANT, Source::Jira).enabled(false));
    let (service, mut rx) = fixture.channel_service();
    let request = Request::post(format!("/api/trigger/jira/{id}"))
        .header("authorization", format!("Bearer {}", fixture.key.expose()))
        .body(full(JIRA_BODY))
        .unwrap();
    let answer = send(service.clone(), request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json,
        json!({"executionId":"skipped","message":"trigger is disabled","action":"jira:issue_created"})
    );
    // No action at all: the action is "".
    let request = Request::post(format!("/api/trigger/jira/{id}"))
        .header("authorization", format!("Bearer {}", fixture.key.expose()))
        .body(full("{}"))
        .unwrap();
    assert_eq!(send(service, request).await.json["action"], "");
    assert!(rx.try_recv().is_err());
}

// ---- filter ----

#[tokio::test]
async fn filter_action_allowlist_exact_and_prefix() {
    let fixture = Fixture::new();
    let id = Uuid::now_v7();
    fixture.store.insert_trigger(
        Trigger::new(id, TENANT, Source::Jira)
            .with_actions(ActionAllowlist::new(["jira:issue_*", "comment_created"])),
    );
    let (service, mut rx) = fixture.channel_service();
    let cases = [
        ("jira:issue_created", true),
        ("jira:issue_updated", true),
        ("comment_created", true),
        ("comment_updated", false),
        ("jira:worklog_updated", false),
    ];
    for (action, runs) in cases {
        let body = format!(r#"{{"webhookEvent":"{action}"}}"#);
        let request = Request::post(format!("/api/trigger/jira/{id}"))
            .header("authorization", format!("Bearer {}", fixture.key.expose()))
            .body(full(body))
            .unwrap();
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::OK);
        if runs {
            assert_ne!(answer.json["executionId"], "skipped", "{action}");
            assert_eq!(
                rx.try_recv().unwrap().delivery.action.as_deref(),
                Some(action)
            );
        } else {
            assert_eq!(
                answer.json,
                json!({"executionId":"skipped","message":"action is not in the trigger's allowlist","action":action})
            );
            assert!(rx.try_recv().is_err());
        }
    }
}

#[tokio::test]
async fn filter_slack_bot_messages_are_skipped() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    for body in [
        r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message","bot_id":"B1","text":"hi"}}"#,
        r#"{"type":"event_callback","event_id":"Ev2","event":{"type":"message","subtype":"bot_message"}}"#,
    ] {
        let request = fixture.bearer_request(Source::Slack, body);
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.json["executionId"], "skipped");
        assert_eq!(answer.json["action"], "message");
    }
    assert!(rx.try_recv().is_err());
}

// ---- sink ----

#[tokio::test]
async fn sink_started_hands_over_the_delivery_of_section_2() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let body = "{ \"webhookEvent\" : \"jira:issue_created\",\n\t\"z\":1, \"a\":[ ] }";
    /// What a host's own layer puts on the request, such as a request id.
    #[derive(Debug, Clone, PartialEq)]
    struct RequestId(&'static str);
    let mut request = fixture
        .bearer(Source::Jira, body)
        .header("x-atlassian-webhook-identifier", "d-42")
        .body(full(body))
        .unwrap();
    request.extensions_mut().insert(RequestId("req-7"));
    let before = SystemTime::now();
    let answer = send(service, request).await;
    let execution = rx.recv().await.unwrap();
    assert_eq!(
        answer.json,
        json!({"executionId": execution.id.to_string()})
    );
    assert_eq!(execution.id.as_uuid().unwrap().get_version_num(), 7);
    let delivery = execution.delivery;
    assert_eq!(delivery.source, Source::Jira);
    assert_eq!(delivery.trigger_id, fixture.trigger(Source::Jira));
    assert_eq!(&*delivery.tenant, TENANT);
    assert_eq!(
        delivery.caller,
        Caller::ApiKey {
            key_id: "ci".into(),
            tenant: TENANT.into()
        }
    );
    assert_eq!(delivery.delivery_id.as_deref(), Some("d-42"));
    assert_eq!(delivery.action.as_deref(), Some("jira:issue_created"));
    assert!(delivery.received_at >= before);
    assert_eq!(
        delivery.input,
        body.as_bytes(),
        "the raw bytes, not re-serialised JSON"
    );
    assert_eq!(
        delivery.extensions.get::<RequestId>(),
        Some(&RequestId("req-7")),
        "the request's extensions travel with the delivery"
    );
}

#[tokio::test]
async fn sink_skipped_and_rejected_shapes() {
    let fixture = Fixture::new();
    let skipping = fixture.service_with(ScriptedSink::new(|_| {
        Ok(Outcome::Skipped {
            message: "quiet hours".into(),
            action: Some("deploy".into()),
        })
    }));
    let request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    let answer = send(skipping, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json,
        json!({"executionId":"skipped","message":"quiet hours","action":"deploy"})
    );

    let rejecting = fixture.service_with(ScriptedSink::new(|_| {
        Ok(Outcome::Rejected("agent is archived".into()))
    }));
    let request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    let answer = send(rejecting, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json, json!({"error":"agent is archived"}));
}

#[tokio::test]
async fn sink_joined_names_the_execution_without_idempotent_replayed() {
    let fixture = Fixture::new();
    let id = agent_trigger::ExecutionId::new_v7();
    let joined = id.clone();
    let joining = fixture.service_with(ScriptedSink::new(move |_| {
        Ok(Outcome::Joined(joined.clone()))
    }));
    let request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    let answer = send(joining, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json, json!({"executionId": id.to_string()}));
    // A new delivery that joined a waiting execution, not a copy of one.
    assert!(answer.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn sink_unavailable_or_too_slow_is_503_with_retry_after() {
    let fixture = Fixture::new();
    let busy = fixture.service_with(ScriptedSink::new(|_| {
        Err(SinkError::Unavailable {
            retry_after: Duration::from_secs(30),
        })
    }));
    let request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    let answer = send(busy, request).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers["retry-after"], "30");
    assert!(answer.json["error"].is_string());

    let slow = fixture.service_with(HangingSink);
    let request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    let answer = send(slow, request).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers["retry-after"], "7");
}

#[tokio::test]
async fn sink_full_channel_is_503_and_nothing_is_remembered() {
    let fixture = Fixture::new();
    let (sink, mut rx) = ChannelSink::new(1);
    let service = TriggerService::new(sink, Arc::clone(&fixture.store));
    let request = |key: &str| {
        fixture
            .bearer(Source::Jira, JIRA_BODY)
            .header("idempotency-key", key)
            .body(full(JIRA_BODY))
            .unwrap()
    };
    assert_eq!(
        send(service.clone(), request("a")).await.status,
        StatusCode::OK
    );
    let answer = send(service.clone(), request("b")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers["retry-after"], "1");
    rx.recv().await.unwrap();
    // The refused delivery was not remembered: its retry runs.
    let answer = send(service, request("b")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn sink_failure_is_500_without_details() {
    let fixture = Fixture::new();
    let failing = fixture.service_with(ScriptedSink::new(|_| {
        Err(SinkError::internal("db password=hunter2 rejected"))
    }));
    let request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    let answer = send(failing, request).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.json, json!({"error":"internal error"}));
}

#[tokio::test]
async fn sink_panic_is_500_and_the_service_keeps_serving() {
    let fixture = Fixture::new();
    let sink = ScriptedSink::new(|delivery| {
        if delivery.action.as_deref() == Some("boom") {
            panic!("sink exploded");
        }
        Ok(Outcome::Started(ExecutionId::from("run-1")))
    });
    let service = fixture.service_with(sink);
    let boom = r#"{"webhookEvent":"boom"}"#;
    let request = fixture.bearer_request(Source::Jira, boom);
    let answer = send(service.clone(), request).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.json, json!({"error":"internal error"}));
    let request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    assert_eq!(
        send(service, request).await.json,
        json!({"executionId":"run-1"})
    );
}

#[tokio::test]
async fn store_failure_is_500_and_a_store_that_is_away_or_hangs_is_503() {
    let fixture = Fixture::new();
    let (sink, _rx) = ChannelSink::new(8);
    let failing = TriggerService::new(sink, BrokenStore::Failing);
    let request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    let answer = send(failing, request).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.json, json!({"error":"internal error"}));

    // A database that is away: retry later, never a 500.
    let (sink, _rx) = ChannelSink::new(8);
    let away = TriggerService::builder(sink, BrokenStore::Away)
        .retry_after(Duration::from_secs(7))
        .build();
    let answer = send(away, fixture.bearer_request(Source::Jira, JIRA_BODY)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers["retry-after"], "7");

    let (sink, _rx) = ChannelSink::new(8);
    let hanging = TriggerService::builder(sink, BrokenStore::Hanging)
        .backend_timeout(Duration::from_millis(50))
        .build();
    let request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    let answer = send(hanging, request).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers.contains_key("retry-after"));
}

// ---- faults ----

#[tokio::test]
async fn after_every_kind_of_sink_fault_the_service_keeps_serving_and_acknowledges_only_what_was_accepted()
 {
    use std::sync::atomic::{AtomicU8, Ordering as AtomicOrdering};
    let fixture = Fixture::new();
    let mode = Arc::new(AtomicU8::new(0));
    let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = {
        let (mode, accepted) = (Arc::clone(&mode), Arc::clone(&accepted));
        ScriptedSink::new(move |_| match mode.load(AtomicOrdering::SeqCst) {
            1 => Err(SinkError::internal("broken")),
            2 => Err(SinkError::Unavailable {
                retry_after: Duration::from_secs(2),
            }),
            3 => panic!("sink panicked"),
            _ => {
                let id = ExecutionId::new_v7();
                accepted.lock().unwrap().push(id.to_string());
                Ok(Outcome::Started(id))
            }
        })
    };
    let service = fixture.service_with(sink);
    let mut acknowledged = Vec::new();
    for (fault, status) in [(1, 500), (2, 503), (3, 500)] {
        mode.store(fault, AtomicOrdering::SeqCst);
        let answer = send(
            service.clone(),
            fixture.bearer_request(Source::Jira, JIRA_BODY),
        )
        .await;
        assert_eq!(answer.status.as_u16(), status);
        assert!(
            answer.json.get("executionId").is_none(),
            "a fault is never acknowledged"
        );
        mode.store(0, AtomicOrdering::SeqCst);
        let answer = send(
            service.clone(),
            fixture.bearer_request(Source::Jira, JIRA_BODY),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        acknowledged.push(answer.json["executionId"].as_str().unwrap().to_owned());
    }
    assert_eq!(acknowledged, *accepted.lock().unwrap());
}

// ---- answers ----

/// hyper parses a connection's next request into the header map of the response it last
/// wrote; an answer written into the request's own map leaves the next request room for as
/// many headers as this one had, whichever step answered.
#[tokio::test]
async fn answers_are_written_into_the_request_header_map_and_keep_its_room() {
    const EXTRA: usize = 24;
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let with_extra_headers = |mut request: Request<Full<Bytes>>| {
        for n in 0..EXTRA {
            request.headers_mut().insert(
                http::HeaderName::try_from(format!("x-forwarded-extra-{n}")).unwrap(),
                http::HeaderValue::from_static("v"),
            );
        }
        request
    };
    let requests = [
        (
            StatusCode::OK,
            fixture.bearer_request(Source::Jira, JIRA_BODY),
        ),
        (
            StatusCode::UNAUTHORIZED,
            Request::post(fixture.path(Source::Jira))
                .body(full(JIRA_BODY))
                .unwrap(),
        ),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            Request::get(fixture.path(Source::Jira))
                .body(full(""))
                .unwrap(),
        ),
        (
            StatusCode::NOT_FOUND,
            Request::post("/elsewhere").body(full("")).unwrap(),
        ),
    ];
    for (status, request) in requests {
        let answer = send(service.clone(), with_extra_headers(request)).await;
        assert_eq!(answer.status, status);
        assert!(
            answer.headers.capacity() >= EXTRA,
            "{status}: room for {} headers, the request had {EXTRA}",
            answer.headers.capacity()
        );
    }
}

// ---- rate (§7.4, in the library) ----

#[tokio::test]
async fn rate_past_a_triggers_rate_is_429_with_retry_after_before_the_body_is_read() {
    let fixture = Fixture::new();
    let limited = Uuid::now_v7();
    fixture.store.insert_trigger(
        Trigger::new(limited, TENANT, Source::Webhook).with_rate_limit(
            std::num::NonZeroU32::new(2).unwrap(),
            Duration::from_secs(60),
        ),
    );
    let (service, _rx) = fixture.channel_service();
    let request = |trigger: Uuid| {
        let (body, read) = WatchedBody::new("{}");
        let request = Request::post(format!("/api/trigger/webhook/{trigger}"))
            .header("authorization", format!("Bearer {}", fixture.key.expose()))
            .body(body)
            .unwrap();
        (request, read)
    };
    for _ in 0..2 {
        let (request, _) = request(limited);
        assert_eq!(send(service.clone(), request).await.status, StatusCode::OK);
    }
    let (third, read) = request(limited);
    let answer = send(service.clone(), third).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(answer.json["error"].is_string());
    let retry_after: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert!(
        !read.load(std::sync::atomic::Ordering::SeqCst),
        "the body was read"
    );
    // Other triggers are not affected.
    let (other, _) = request(fixture.trigger(Source::Webhook));
    assert_eq!(send(service, other).await.status, StatusCode::OK);
}

#[tokio::test]
async fn rate_only_verified_signatures_count_against_a_signed_triggers_rate() {
    let fixture = Fixture::new();
    let limited = Uuid::now_v7();
    fixture.store.insert_trigger(
        Trigger::new(limited, TENANT, Source::Hackerone)
            .with_secret(secret_for(Source::Hackerone))
            .with_rate_limit(
                std::num::NonZeroU32::new(1).unwrap(),
                Duration::from_secs(3600),
            ),
    );
    let (service, _rx) = fixture.channel_service();
    let signed = |headers: http::HeaderMap| {
        let mut request = Request::post(format!("/api/trigger/hackerone/{limited}"))
            .header("content-type", "application/json")
            .body(full("{}"))
            .unwrap();
        request.headers_mut().extend(headers);
        request
    };
    let forged = agent_trigger::signature::sign(
        Source::Hackerone,
        &agent_trigger::SigningSecret::new("x", "not the secret").unwrap(),
        b"{}",
        std::time::SystemTime::now(),
        "",
    )
    .unwrap();
    for _ in 0..3 {
        let answer = send(service.clone(), signed(forged.clone())).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let good = signed_now(Source::Hackerone, b"{}");
    assert_eq!(
        send(service.clone(), signed(good.clone())).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(service, signed(good)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}
