//! The contract's request pipeline (§1–3, §5–6), one test or more per row, through the tower
//! `Service` API with real `http::Request`s.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use agent_trigger::memory::{ChannelSink, MemoryKeyStore};
use agent_trigger::{
    ActionAllowlist, ApiKeyRecord, Caller, ExecutionId, KeyScope, Outcome, SinkError, Source,
    Trigger, TriggerLayer, TriggerService,
};
use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt};
use uuid::Uuid;

const JIRA_BODY: &str = r#"{"webhookEvent":"jira:issue_created","issue":{"key":"SEC-1"}}"#;

// ---- route ----

#[tokio::test]
async fn route_service_answers_404_off_its_route() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    for path in [
        "/",
        "/api/trigger",
        "/api/trigger/jira",
        "/api/other/jira/x/y",
        "/api/trigger/jira/a/b",
    ] {
        let answer = send(service.clone(), Request::post(path).body(full("")).unwrap()).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert!(answer.json["error"].is_string());
    }
}

#[tokio::test]
async fn route_layer_hands_other_paths_to_the_inner_service_untouched() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let inner = tower::service_fn(|request: Request<Full<Bytes>>| async move {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let echo = format!(
            "{} {} {}",
            parts.method,
            parts.uri,
            String::from_utf8_lossy(&body)
        );
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(echo))))
    });
    let mut app = tower::ServiceBuilder::new()
        .layer(TriggerLayer::new(service))
        .service(inner);

    let response = app
        .ready()
        .await
        .unwrap()
        .call(Request::put("/health?x=1").body(full("ping")).unwrap())
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "PUT /health?x=1 ping");

    let request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    let response = app.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert!(json["executionId"].is_string());
}

/// An inner service that is not ready on its first poll, and that checks it is only called
/// after being polled ready.
#[derive(Clone, Default)]
struct Reluctant {
    polls: usize,
    ready: bool,
}

impl tower::Service<Request<Full<Bytes>>> for Reluctant {
    type Response = http::Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.polls += 1;
        if self.polls == 1 {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        self.ready = true;
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Full<Bytes>>) -> Self::Future {
        assert!(
            std::mem::take(&mut self.ready),
            "called without being polled ready"
        );
        std::future::ready(Ok(http::Response::new(Full::new(Bytes::from_static(
            b"inner",
        )))))
    }
}

#[tokio::test]
async fn route_layer_respects_the_inner_readiness() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let mut app = TriggerLayer::new(service).layer(Reluctant::default());
    for _ in 0..3 {
        let response = app
            .ready()
            .await
            .unwrap()
            .call(Request::get("/elsewhere").body(full("")).unwrap())
            .await
            .unwrap();
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "inner"
        );
        let delivery = fixture.bearer_request(Source::Jira, JIRA_BODY);
        let response = app.ready().await.unwrap().call(delivery).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn route_prefix_is_configurable_and_may_be_empty() {
    let fixture = Fixture::new();
    let id = fixture.trigger(Source::Jira);
    for (prefix, path) in [
        ("/hooks", format!("/hooks/jira/{id}")),
        ("", format!("/jira/{id}")),
    ] {
        let (sink, _rx) = ChannelSink::new(8);
        let service = TriggerService::builder(sink, Arc::clone(&fixture.store))
            .prefix(prefix)
            .build();
        let request = Request::post(&path)
            .header("authorization", format!("Bearer {}", fixture.key.expose()))
            .body(full(JIRA_BODY))
            .unwrap();
        assert_eq!(
            send(service.clone(), request).await.status,
            StatusCode::OK,
            "{path}"
        );
        let default_path = fixture.path(Source::Jira);
        let request = Request::post(&default_path).body(full("")).unwrap();
        assert_eq!(send(service, request).await.status, StatusCode::NOT_FOUND);
    }
}

// ---- method ----

#[tokio::test]
async fn method_other_than_post_is_405_with_allow() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    for method in ["GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"] {
        let request = Request::builder()
            .method(method)
            .uri(fixture.path(Source::Jira))
            .body(full(""))
            .unwrap();
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(answer.headers["allow"], "POST");
    }
}

// ---- path params ----

#[tokio::test]
async fn path_params_unknown_source_is_a_zod_enum_issue() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let path = format!("/api/trigger/github/{}", Uuid::now_v7());
    let answer = send(service, Request::post(path).body(full("")).unwrap()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.json,
        json!({"error":"Invalid request","issues":[{
            "code":"invalid_enum_value","path":["source"],"received":"github",
            "options":["jira","jira-automation","slack","linear","webhook","bugcrowd","hackerone"],
            "message":"Invalid enum value. Expected 'jira' | 'jira-automation' | 'slack' | 'linear' | 'webhook' | 'bugcrowd' | 'hackerone', received 'github'"
        }]})
    );
}

#[tokio::test]
async fn path_params_source_is_case_sensitive() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let path = format!("/api/trigger/Jira/{}", fixture.trigger(Source::Jira));
    let answer = send(service, Request::post(path).body(full("")).unwrap()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json["issues"][0]["received"], "Jira");
}

#[tokio::test]
async fn path_params_only_hyphenated_uuids() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let id = Uuid::now_v7();
    for bad in [
        id.simple().to_string(),
        id.braced().to_string(),
        id.urn().to_string(),
        "not-a-uuid".to_owned(),
        format!("{id}0"),
    ] {
        let path = format!("/api/trigger/jira/{bad}");
        let answer = send(service.clone(), Request::post(path).body(full("")).unwrap()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            answer.json["issues"],
            json!([{"code":"invalid_string","validation":"uuid","path":["triggerId"],"message":"Invalid uuid"}])
        );
    }
}

#[tokio::test]
async fn path_params_one_issue_per_bad_parameter_before_credentials() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    // No credentials either: the path checks come first.
    let answer = send(
        service,
        Request::post("/api/trigger/github/nope")
            .body(full(""))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let paths: Vec<_> = answer.json["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"][0].clone())
        .collect();
    assert_eq!(paths, [json!("source"), json!("triggerId")]);
}

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

// ---- size ----

#[tokio::test]
async fn size_declared_over_the_limit_is_413_before_reading() {
    let fixture = Fixture::new();
    let (sink, _rx) = ChannelSink::new(8);
    let service = TriggerService::builder(sink, Arc::clone(&fixture.store))
        .body_limit(64)
        .build();
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100));
    let (watched, read) = WatchedBody::new(body.clone());
    let request = fixture.bearer(Source::Jira, &body).body(watched).unwrap();
    let answer = send(service, request).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer.json["error"].as_str().unwrap().contains("64"));
    assert!(!read.load(Ordering::SeqCst));
}

#[tokio::test]
async fn size_streamed_without_length_over_the_limit_is_413() {
    let fixture = Fixture::new();
    let (sink, mut rx) = ChannelSink::new(8);
    let service = TriggerService::builder(sink, Arc::clone(&fixture.store))
        .body_limit(1000)
        .build();
    let chunks = std::iter::once(Bytes::from_static(b"["))
        .chain(std::iter::repeat_n(Bytes::from_static(b"1,"), 600));
    let request = Request::post(fixture.path(Source::Jira))
        .header("authorization", format!("Bearer {}", fixture.key.expose()))
        .body(StreamedBody::new(chunks))
        .unwrap();
    let answer = send(service.clone(), request).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(rx.try_recv().is_err(), "nothing is executed");

    // Exactly at the limit, streamed, is fine.
    let exact = format!("[{}]", "1,".repeat(498) + "1");
    assert!(exact.len() <= 1000);
    let chunks: Vec<Bytes> = exact
        .as_bytes()
        .chunks(7)
        .map(Bytes::copy_from_slice)
        .collect();
    let request = Request::post(fixture.path(Source::Jira))
        .header("authorization", format!("Bearer {}", fixture.key.expose()))
        .body(StreamedBody::new(chunks))
        .unwrap();
    assert_eq!(send(service, request).await.status, StatusCode::OK);
    assert_eq!(rx.try_recv().unwrap().delivery.input, exact.as_bytes());
}

#[tokio::test]
async fn size_default_limit_is_one_mebibyte() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let at_limit = format!("\"{}\"", "x".repeat(1024 * 1024 - 2));
    let request = fixture
        .bearer(Source::Jira, &at_limit)
        .body(full(at_limit.clone()))
        .unwrap();
    assert_eq!(send(service.clone(), request).await.status, StatusCode::OK);
    let over = format!("\"{}\"", "x".repeat(1024 * 1024 - 1));
    let request = fixture
        .bearer(Source::Jira, &over)
        .body(full(over.clone()))
        .unwrap();
    assert_eq!(
        send(service, request).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

// ---- content type ----

#[tokio::test]
async fn content_type_must_be_json_or_absent() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let cases = [
        (Some("application/json"), StatusCode::OK),
        (Some("application/json; charset=utf-8"), StatusCode::OK),
        (Some("application/vnd.atlassian+json"), StatusCode::OK),
        (None, StatusCode::OK),
        (Some("text/plain"), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            Some("application/x-www-form-urlencoded"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Some("multipart/form-data; boundary=x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (content_type, status) in cases {
        let mut request = Request::post(fixture.path(Source::Jira))
            .header("authorization", format!("Bearer {}", fixture.key.expose()));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let answer = send(service.clone(), request.body(full(JIRA_BODY)).unwrap()).await;
        assert_eq!(answer.status, status, "{content_type:?}");
        if status != StatusCode::OK {
            assert!(answer.json["error"].is_string());
        }
    }
}

#[tokio::test]
async fn content_type_form_is_accepted_for_slack_only() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let request = Request::post(fixture.path(Source::Slack))
        .header("authorization", format!("Bearer {}", fixture.key.expose()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(full("command=%2Fdeploy&text=prod"))
        .unwrap();
    assert_eq!(send(service, request).await.status, StatusCode::OK);
    let input: Value = serde_json::from_slice(&rx.recv().await.unwrap().delivery.input).unwrap();
    assert_eq!(input, json!({"command":"/deploy","text":"prod"}));
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
    let good = agent_trigger::signature::sign(
        Source::Hackerone,
        &secret_for(Source::Hackerone),
        b"{}",
        SystemTime::now(),
        "",
    )
    .unwrap();
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
    let headers = agent_trigger::signature::sign(
        Source::Hackerone,
        &secret_for(Source::Hackerone),
        b"{}",
        SystemTime::now(),
        "",
    )
    .unwrap();
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

// ---- JSON ----

#[tokio::test]
async fn json_malformed_is_400_with_line_and_column() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let cases: [&[u8]; 6] = [
        b"{\"a\":",
        b"{\n \"a\": nope}",
        b"{} []",
        b"{\"a\":\"\xff\"}",
        b"{'a':1}",
        b"   ",
    ];
    for body in cases {
        let request = fixture
            .bearer(Source::Jira, "")
            .body(full(Bytes::copy_from_slice(body)))
            .unwrap();
        let request = {
            let (mut parts, body_) = request.into_parts();
            parts.headers.remove("content-length");
            Request::from_parts(parts, body_)
        };
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(answer.json["error"], "Invalid request");
        let issue = &answer.json["issues"][0];
        assert_eq!(issue["code"], "invalid_json");
        assert_eq!(issue["path"], json!(["body"]));
        assert!(issue["message"].is_string());
        assert!(issue["line"].as_u64().unwrap() >= 1);
        assert!(issue["column"].as_u64().unwrap() >= 1);
    }
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn json_nesting_deeper_than_128_is_refused() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let ok = nested(128);
    let request = fixture
        .bearer(Source::Jira, &ok)
        .body(full(ok.clone()))
        .unwrap();
    assert_eq!(send(service.clone(), request).await.status, StatusCode::OK);
    for depth in [129, 10_000] {
        let deep = nested(depth);
        let request = fixture
            .bearer(Source::Jira, &deep)
            .body(full(deep.clone()))
            .unwrap();
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(answer.json["issues"][0]["code"], "invalid_json");
    }
}

#[tokio::test]
async fn json_a_field_the_pipeline_reads_twice_in_one_object_is_refused() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    for (source, body, line, column) in [
        (
            Source::JiraAutomation,
            "{\"action\":\"deploy\",\n \"action\":\"drop\"}",
            2,
            2,
        ),
        (
            Source::Slack,
            r#"{"event_id":"Ev1","x":0,"event_id":"Ev2"}"#,
            1,
            25,
        ),
        (
            Source::Bugcrowd,
            r#"{"data":{"attributes":{"key":"a"}},"data":{}}"#,
            1,
            36,
        ),
    ] {
        let request = fixture.bearer(source, body).body(full(body)).unwrap();
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        let issue = &answer.json["issues"][0];
        assert_eq!(issue["code"], "invalid_json");
        assert_eq!(
            (issue["line"].as_u64(), issue["column"].as_u64()),
            (Some(line), Some(column)),
            "{body}"
        );
    }
    // Keys the pipeline does not read may repeat: the input is passed on as it came.
    let body = r#"{"action":"deploy","note":1,"note":2}"#;
    let request = fixture
        .bearer(Source::JiraAutomation, body)
        .body(full(body))
        .unwrap();
    assert_eq!(send(service, request).await.status, StatusCode::OK);
    assert_eq!(rx.recv().await.unwrap().delivery.input, body);
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn json_numbers_of_any_magnitude_are_passed_on_as_bytes() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let huge = format!("1{}", "0".repeat(400));
    for body in [
        format!(r#"{{"type":"n","n":{huge}}}"#),
        r#"{"type":"n","n":-1e400,"m":1.0000000000000000000000000000000001}"#.to_owned(),
    ] {
        let request = fixture
            .bearer(Source::Webhook, &body)
            .body(full(body.clone()))
            .unwrap();
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::OK, "{body}: {}", answer.json);
        assert_eq!(rx.recv().await.unwrap().delivery.input, body);
    }
}

#[tokio::test]
async fn json_an_action_or_delivery_id_unfit_for_an_environment_is_refused() {
    // Executors hand the action and delivery id on in environment variables: a NUL byte or an
    // action over 1 KiB is a 400, never an acknowledged delivery that cannot run.
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let long = "a".repeat(1025);
    let cases = [
        (
            Source::JiraAutomation,
            r#"{"action":"de\u0000ploy"}"#.to_owned(),
            "action",
        ),
        (
            Source::JiraAutomation,
            format!(r#"{{"action":"{long}"}}"#),
            "action",
        ),
        (
            Source::Slack,
            r#"{"type":"event_callback","event_id":"Ev\u00001","event":{"type":"app_mention"}}"#
                .to_owned(),
            "deliveryId",
        ),
    ];
    for (source, body, field) in cases {
        let request = fixture
            .bearer(source, &body)
            .body(full(body.clone()))
            .unwrap();
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        let issue = &answer.json["issues"][0];
        assert_eq!(issue["code"], "invalid_string");
        assert_eq!(issue["path"], json!([field]));
    }
    // An action from a header is held to the same bound.
    let request = fixture
        .bearer(Source::Hackerone, "{}")
        .header("x-h1-event", "r".repeat(1025))
        .body(full("{}"))
        .unwrap();
    assert_eq!(
        send(service.clone(), request).await.status,
        StatusCode::BAD_REQUEST
    );
    assert!(rx.try_recv().is_err());
    // 1 KiB itself is fine.
    let body = format!(r#"{{"action":"{}"}}"#, "a".repeat(1024));
    let request = fixture
        .bearer(Source::JiraAutomation, &body)
        .body(full(body.clone()))
        .unwrap();
    assert_eq!(send(service, request).await.status, StatusCode::OK);
    assert_eq!(
        rx.recv().await.unwrap().delivery.action.unwrap().len(),
        1024
    );
}

#[tokio::test]
async fn json_empty_body_is_the_input_null() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let request = Request::post(fixture.path(Source::Webhook))
        .header("authorization", format!("Bearer {}", fixture.key.expose()))
        .body(full(""))
        .unwrap();
    assert_eq!(send(service, request).await.status, StatusCode::OK);
    assert_eq!(rx.recv().await.unwrap().delivery.input, "null");
}

// ---- handshake ----

#[tokio::test]
async fn handshake_slack_url_verification_echoes_the_challenge() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let body = r#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let request = fixture.bearer_request(Source::Slack, body);
    let answer = send(service, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json,
        json!({"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    assert!(rx.try_recv().is_err());
}

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
    let headers = agent_trigger::signature::sign(
        source,
        &secret_for(source),
        body.as_bytes(),
        SystemTime::now(),
        "msg_1",
    )
    .unwrap();
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
async fn store_failure_is_500_and_a_hanging_store_is_503() {
    let fixture = Fixture::new();
    let (sink, _rx) = ChannelSink::new(8);
    let failing = TriggerService::new(sink, BrokenStore::Failing);
    let request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    let answer = send(failing, request).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.json, json!({"error":"internal error"}));

    let (sink, _rx) = ChannelSink::new(8);
    let hanging = TriggerService::builder(sink, BrokenStore::Hanging)
        .backend_timeout(Duration::from_millis(50))
        .build();
    let request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    let answer = send(hanging, request).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers.contains_key("retry-after"));
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
