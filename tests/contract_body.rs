//! The contract's body rows (§1: size, content type, JSON, Slack's handshake; §2: the input),
//! one test or more per row, through the tower `Service` API with real requests.

pub mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use agent_trigger::memory::ChannelSink;
use agent_trigger::{Source, TriggerService};
use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use serde_json::{Value, json};

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
