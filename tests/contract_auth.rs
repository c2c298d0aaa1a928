//! The contract's authentication rows (§1: credentials, API key, trigger, signature; §6: keys),
//! one test or more per row, through the tower `Service` API with real requests.

pub mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use agent_trigger::memory::{ChannelSink, MemoryKeyStore};
use agent_trigger::{ApiKeyRecord, KeyScope, Source, Trigger, TriggerService};
use common::*;
use http::{Request, StatusCode};
use serde_json::json;
use uuid::Uuid;

// ---- credentials ----

#[tokio::test]
async fn credentials_missing_is_401_with_bearer_challenge_and_body_unread() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    for source in Source::ALL {
        let (body, read) = WatchedBody::new(JIRA_BODY);
        let request = Request::post(fixture.path(source))
            .header("content-type", "application/json")
            .header("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")
            .body(body)
            .unwrap();
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{source}");
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
        assert!(answer.json["error"].is_string());
        assert!(
            !read.load(Ordering::SeqCst),
            "{source}: body read before authentication"
        );
    }
}

// ---- API key ----

#[tokio::test]
async fn api_key_malformed_unknown_revoked_or_expired_is_invalid_token() {
    let fixture = Fixture::new();
    let expired = fixture.store.generate_key(
        ApiKeyRecord::new("old", TENANT)
            .with_expires_at(SystemTime::now() - Duration::from_secs(1)),
    );
    let revoked = fixture
        .store
        .generate_key(ApiKeyRecord::new("gone", TENANT));
    assert!(fixture.store.revoke_key("gone"));
    let (service, _rx) = fixture.channel_service();
    let long = "a".repeat(600);
    for token in [
        "",
        "has space",
        "bad\"quote",
        long.as_str(),
        "atk_unknownkey",
        expired.expose(),
        revoked.expose(),
    ] {
        let (body, read) = WatchedBody::new(JIRA_BODY);
        let request = Request::post(fixture.path(Source::Jira))
            .header("authorization", format!("Bearer {token}"))
            .body(body)
            .unwrap();
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(
            answer.headers["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
        assert!(!answer.json.to_string().contains(token) || token.is_empty());
        assert!(!read.load(Ordering::SeqCst));
    }
}

// ---- trigger ----

#[tokio::test]
async fn trigger_unknown_other_source_other_tenant_or_out_of_scope_is_one_404() {
    let fixture = Fixture::new();
    let other_tenant = fixture
        .store
        .generate_key(ApiKeyRecord::new("globex-ci", "globex"));
    let scoped = fixture.store.generate_key(
        ApiKeyRecord::new("scoped", TENANT)
            .with_scope(KeyScope::Triggers(vec![fixture.trigger(Source::Slack)])),
    );
    let (service, _rx) = fixture.channel_service();
    let jira = fixture.trigger(Source::Jira);
    let cases = [
        (
            format!("/api/trigger/jira/{}", Uuid::now_v7()),
            fixture.key.expose(),
        ),
        (format!("/api/trigger/linear/{jira}"), fixture.key.expose()),
        (format!("/api/trigger/jira/{jira}"), other_tenant.expose()),
        (format!("/api/trigger/jira/{jira}"), scoped.expose()),
    ];
    for (path, key) in cases {
        let (body, read) = WatchedBody::new(JIRA_BODY);
        let request = Request::post(&path)
            .header("authorization", format!("Bearer {key}"))
            .body(body)
            .unwrap();
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.json, json!({"error":"trigger not found"}));
        assert!(!read.load(Ordering::SeqCst));
    }
    // The scoped key does reach its own trigger.
    let request = Request::post(fixture.path(Source::Slack))
        .header("authorization", format!("Bearer {}", scoped.expose()))
        .body(full("{}"))
        .unwrap();
    assert_eq!(send(service, request).await.status, StatusCode::OK);
}

// ---- signature ----

#[tokio::test]
async fn signature_wrong_unknown_trigger_and_no_secrets_get_the_same_401() {
    let fixture = Fixture::new();
    let unsigned = Uuid::now_v7();
    fixture
        .store
        .insert_trigger(Trigger::new(unsigned, TENANT, Source::Hackerone));
    let (service, rx) = fixture.channel_service();
    let good = signed_now(Source::Hackerone, b"{}");
    let wrong = agent_trigger::signature::sign(
        Source::Hackerone,
        &agent_trigger::SigningSecret::new("x", "another secret").unwrap(),
        b"{}",
        SystemTime::now(),
        "",
    )
    .unwrap();
    let cases = [
        (fixture.trigger(Source::Hackerone), &wrong, true),
        (Uuid::now_v7(), &good, false),
        (unsigned, &good, false),
        (fixture.trigger(Source::Jira), &good, false),
    ];
    let mut bodies = Vec::new();
    for (trigger, headers, trigger_has_secret) in cases {
        let (body, read) = WatchedBody::new("{}");
        let mut request = Request::post(format!("/api/trigger/hackerone/{trigger}"))
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        request.headers_mut().extend(headers.clone());
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            read.load(Ordering::SeqCst),
            trigger_has_secret,
            "body read only for a trigger with secrets"
        );
        bodies.push(answer.json);
    }
    assert!(bodies.iter().all(|body| *body == bodies[0]), "{bodies:?}");
    assert_eq!(
        bodies[0],
        json!({"error":"invalid signature: signature does not match"})
    );
    drop(rx);
}

#[tokio::test]
async fn signature_header_only_checks_come_before_the_trigger_lookup() {
    // A signed-looking request learns nothing from 413 or 415: a known trigger and an unknown
    // one answer alike, because the size and content type are judged before the lookup.
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let headers = signed_now(Source::Hackerone, b"{}");
    let request = |trigger: Uuid, header: (&str, &str)| {
        let mut request = Request::post(format!("/api/trigger/hackerone/{trigger}"))
            .header(header.0, header.1)
            .body(full("{}"))
            .unwrap();
        request.headers_mut().extend(headers.clone());
        request
    };
    let oversize = (2 * 1024 * 1024).to_string();
    for (header, status) in [
        (
            ("content-type", "text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            ("content-length", oversize.as_str()),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let known = send(
            service.clone(),
            request(fixture.trigger(Source::Hackerone), header),
        )
        .await;
        let unknown = send(service.clone(), request(Uuid::now_v7(), header)).await;
        assert_eq!(known.status, status, "{header:?}");
        assert_eq!(
            (known.status, &known.headers, &known.json),
            (unknown.status, &unknown.headers, &unknown.json),
            "{header:?}"
        );
    }
}

#[tokio::test]
async fn signature_error_names_the_reason_but_no_secret() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let request = Request::post(fixture.path(Source::Slack))
        .header("x-slack-signature", "v0=abc")
        .body(full("{}"))
        .unwrap();
    let answer = send(service, request).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let message = answer.json["error"].as_str().unwrap();
    assert_eq!(
        message,
        "invalid signature: missing x-slack-request-timestamp header"
    );
    assert!(!message.contains("fixture-signing-secret"));
}

// ---- keys (§6) ----

#[tokio::test]
async fn keys_never_reach_debug_output() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let printed = format!("{service:?} {:?} {:?}", fixture.key, fixture.store);
    assert!(!printed.contains(fixture.key.expose()));
    let secret = secret_for(Source::Slack);
    assert!(!format!("{secret:?}").contains("fixture-signing-secret"));
    let trigger = Trigger::new(Uuid::nil(), TENANT, Source::Slack).with_secret(secret);
    assert!(!format!("{trigger:?}").contains("fixture-signing-secret"));
}

#[test]
fn service_is_send_sync_clone_and_its_future_is_send() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    fn assert_send<T: Send>() {}
    assert_traits::<TriggerService<ChannelSink, MemoryKeyStore>>();
    assert_send::<agent_trigger::service::ResponseFuture>();
}
