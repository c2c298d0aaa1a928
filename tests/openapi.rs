//! Real answers of every status validate against the crate's own OpenAPI document.

pub mod common;

use std::sync::Arc;
use std::time::Duration;

use agent_trigger::memory::ChannelSink;
use agent_trigger::{ExecutionId, Outcome, SinkError, Source, Trigger, TriggerService};
use common::*;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// The schema of `status`'s JSON body for the trigger operation, with the document's
/// components beside it so that its `$ref`s resolve.
fn response_schema(document: &Value, status: StatusCode) -> Value {
    let response = &document["paths"]["/api/trigger/{source}/{triggerId}"]["post"]["responses"]
        [status.as_str()];
    assert!(response.is_object(), "the document has no {status} answer");
    let mut schema = response["content"]["application/json"]["schema"].clone();
    schema["components"] = document["components"].clone();
    schema
}

fn declared_headers(document: &Value, status: StatusCode) -> Vec<String> {
    document["paths"]["/api/trigger/{source}/{triggerId}"]["post"]["responses"][status.as_str()]["headers"]
        .as_object()
        .map(|headers| headers.keys().map(|name| name.to_ascii_lowercase()).collect())
        .unwrap_or_default()
}

fn check(document: &Value, answer: &Answer) {
    let schema = response_schema(document, answer.status);
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&answer.json)
        .map(|error| error.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{} {}: {errors:?}",
        answer.status,
        answer.json
    );
    for name in [
        "www-authenticate",
        "allow",
        "retry-after",
        "idempotent-replayed",
    ] {
        if answer.headers.contains_key(name) {
            assert!(
                declared_headers(document, answer.status).contains(&name.to_owned()),
                "{name} on {} is undocumented",
                answer.status
            );
        }
    }
}

#[tokio::test]
async fn every_status_the_service_answers_matches_the_document() {
    let document =
        serde_json::from_str::<serde_json::Value>(agent_trigger::openapi::DOCUMENT).unwrap();
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let jira = r#"{"webhookEvent":"jira:issue_created"}"#;
    let mut answers = Vec::new();

    // 200: started, replayed, skipped, challenge.
    let delivery = || {
        fixture
            .bearer(Source::Jira, jira)
            .header("idempotency-key", "k")
            .body(full(jira))
            .unwrap()
    };
    answers.push(send(service.clone(), delivery()).await);
    answers.push(send(service.clone(), delivery()).await);
    let disabled = Uuid::now_v7();
    fixture
        .store
        .insert_trigger(Trigger::new(disabled, TENANT, Source::Jira).enabled(false));
    let request = Request::post(format!("/api/trigger/jira/{disabled}"))
        .header("authorization", format!("Bearer {}", fixture.key.expose()))
        .body(full(jira))
        .unwrap();
    answers.push(send(service.clone(), request).await);
    let handshake = r#"{"type":"url_verification","challenge":"c"}"#;
    answers.push(
        send(
            service.clone(),
            fixture.bearer_request(Source::Slack, handshake),
        )
        .await,
    );
    // 200 in Discord's shape (by key here: the shape is the trigger's, however it is called).
    let discord = Uuid::now_v7();
    fixture.store.insert_trigger(
        Trigger::new(discord, TENANT, Source::Webhook)
            .with_signature(agent_trigger::SignatureScheme::discord()),
    );
    for body in [
        r#"{"id":"1","type":1}"#,
        r#"{"id":"2","type":2,"data":{"name":"triage"}}"#,
        r#"{"id":"2","type":2,"data":{"name":"triage"}}"#,
    ] {
        let request = Request::post(format!("/api/trigger/webhook/{discord}"))
            .header("authorization", format!("Bearer {}", fixture.key.expose()))
            .body(full(body))
            .unwrap();
        answers.push(send(service.clone(), request).await);
    }
    assert_eq!(answers[answers.len() - 3].json, json!({"type":1}));
    // 200 with an error: the sink refused for good.
    let refusing = fixture.service_with(ScriptedSink::new(|_| {
        Ok(Outcome::Rejected("archived".into()))
    }));
    answers.push(send(refusing, fixture.bearer_request(Source::Jira, jira)).await);
    // 400: path parameters, then JSON.
    answers.push(
        send(
            service.clone(),
            Request::post("/api/trigger/github/x")
                .body(full(""))
                .unwrap(),
        )
        .await,
    );
    answers.push(
        send(
            service.clone(),
            fixture.bearer(Source::Jira, "{").body(full("{")).unwrap(),
        )
        .await,
    );
    // 401: no credentials, bad key, bad signature.
    answers.push(
        send(
            service.clone(),
            Request::post(fixture.path(Source::Jira))
                .body(full(jira))
                .unwrap(),
        )
        .await,
    );
    let request = Request::post(fixture.path(Source::Jira))
        .header("authorization", "Bearer nope")
        .body(full(jira))
        .unwrap();
    answers.push(send(service.clone(), request).await);
    let request = Request::post(fixture.path(Source::Jira))
        .header("x-hub-signature", "sha256=00")
        .body(full(jira))
        .unwrap();
    answers.push(send(service.clone(), request).await);
    // 404, 405.
    let request = Request::post(format!("/api/trigger/jira/{}", Uuid::now_v7()))
        .header("authorization", format!("Bearer {}", fixture.key.expose()))
        .body(full(jira))
        .unwrap();
    answers.push(send(service.clone(), request).await);
    answers.push(
        send(
            service.clone(),
            Request::get(fixture.path(Source::Jira))
                .body(full(""))
                .unwrap(),
        )
        .await,
    );
    // 413, 415.
    let (sink, _rx2) = ChannelSink::new(8);
    let small = TriggerService::builder(sink, Arc::clone(&fixture.store))
        .body_limit(4)
        .build();
    answers.push(send(small, fixture.bearer_request(Source::Jira, jira)).await);
    let request = Request::post(fixture.path(Source::Jira))
        .header("authorization", format!("Bearer {}", fixture.key.expose()))
        .header("content-type", "text/plain")
        .body(full(jira))
        .unwrap();
    answers.push(send(service.clone(), request).await);
    // 500, 503.
    let failing = fixture.service_with(ScriptedSink::new(|_| Err(SinkError::internal("boom"))));
    answers.push(send(failing, fixture.bearer_request(Source::Jira, jira)).await);
    let busy = fixture.service_with(ScriptedSink::new(|_| {
        Err(SinkError::Unavailable {
            retry_after: Duration::from_secs(3),
        })
    }));
    answers.push(send(busy, fixture.bearer_request(Source::Jira, jira)).await);
    let sink_started = fixture.service_with(ScriptedSink::new(|_| {
        Ok(Outcome::Started(ExecutionId::from("run-1")))
    }));
    answers.push(send(sink_started, fixture.bearer_request(Source::Jira, jira)).await);
    // 429: past the trigger's rate.
    let limited = Uuid::now_v7();
    fixture
        .store
        .insert_trigger(Trigger::new(limited, TENANT, Source::Jira).with_rate_limit(
            std::num::NonZeroU32::new(1).unwrap(),
            Duration::from_secs(60),
        ));
    for _ in 0..2 {
        let request = Request::post(format!("/api/trigger/jira/{limited}"))
            .header("authorization", format!("Bearer {}", fixture.key.expose()))
            .body(full(jira))
            .unwrap();
        answers.push(send(service.clone(), request).await);
    }

    let mut statuses: Vec<u16> = answers
        .iter()
        .map(|answer| answer.status.as_u16())
        .collect();
    statuses.sort_unstable();
    statuses.dedup();
    assert_eq!(statuses, [200, 400, 401, 404, 405, 413, 415, 429, 500, 503]);
    for answer in &answers {
        check(&document, answer);
    }
}

#[test]
fn the_document_refuses_what_the_contract_forbids() {
    // The schemas can fail: a skipped answer without its action, an error with extra fields.
    let document =
        serde_json::from_str::<serde_json::Value>(agent_trigger::openapi::DOCUMENT).unwrap();
    let ok = jsonschema::validator_for(&response_schema(&document, StatusCode::OK)).unwrap();
    assert!(!ok.is_valid(&json!({"executionId":"skipped","message":"m"})));
    assert!(!ok.is_valid(&json!({"executionId": 5})));
    let unauthorized =
        jsonschema::validator_for(&response_schema(&document, StatusCode::UNAUTHORIZED)).unwrap();
    assert!(!unauthorized.is_valid(&json!({"error":"x","key":"leak"})));
    let invalid =
        jsonschema::validator_for(&response_schema(&document, StatusCode::BAD_REQUEST)).unwrap();
    assert!(!invalid.is_valid(&json!({"error":"Invalid request","issues":[{"path":["body"]}]})));
}
