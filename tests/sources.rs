//! Every sender's signature scheme, replay window, delivery id and action (contract §4–5),
//! with signatures computed here from each provider's documented algorithm.

pub mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_trigger::memory::{ChannelSink, Execution, MemoryKeyStore};
use agent_trigger::{
    ActionAllowlist, Caller, SignatureError, SigningSecret, Source, Trigger, TriggerService,
    signature,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Request, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;
use uuid::Uuid;

const SECRET: &str = "fixture-signing-secret";

/// HMAC-SHA256 over the concatenation of `parts`, written out here rather than taken from the
/// crate, so that the crate is checked against the providers' algorithm.
fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn now_seconds() -> u64 {
    unix_seconds(SystemTime::now())
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The headers each provider documents, signed with `key`.
fn signed_headers(
    source: Source,
    key: &[u8],
    body: &str,
    timestamp: u64,
) -> Vec<(&'static str, String)> {
    let body = body.as_bytes();
    match source {
        Source::Jira => vec![(
            "x-hub-signature",
            format!("sha256={}", hex::encode(hmac(key, &[body]))),
        )],
        Source::Hackerone => vec![(
            "x-h1-signature",
            format!("sha256={}", hex::encode(hmac(key, &[body]))),
        )],
        Source::Bugcrowd => vec![(
            "x-bugcrowd-digest",
            format!("sha256={}", hex::encode(hmac(key, &[body]))),
        )],
        Source::Linear => vec![("linear-signature", hex::encode(hmac(key, &[body])))],
        Source::Slack => {
            let ts = timestamp.to_string();
            let tag = hmac(key, &[b"v0:", ts.as_bytes(), b":", body]);
            vec![
                ("x-slack-signature", format!("v0={}", hex::encode(tag))),
                ("x-slack-request-timestamp", ts),
            ]
        }
        Source::Webhook => {
            let ts = timestamp.to_string();
            let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
            let key = STANDARD
                .decode(
                    std::str::from_utf8(key)
                        .unwrap()
                        .trim_start_matches("whsec_"),
                )
                .unwrap();
            let tag = hmac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
            vec![
                ("webhook-id", id.to_owned()),
                ("webhook-timestamp", ts),
                ("webhook-signature", format!("v1,{}", STANDARD.encode(tag))),
            ]
        }
        Source::JiraAutomation => vec![],
        other => panic!("no signature vectors for {other} yet"),
    }
}

fn secret_bytes(source: Source) -> &'static [u8] {
    match source {
        Source::Webhook => b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        _ => SECRET.as_bytes(),
    }
}

/// A typical body per source, with Linear's signed timestamp set to now.
fn body_for(source: Source) -> String {
    match source {
        Source::Jira => r#"{"timestamp":1,"webhookEvent":"jira:issue_created","issue":{"key":"SEC-9"}}"#.to_owned(),
        Source::Slack => r#"{"type":"event_callback","event_id":"Ev0PV52K21","event":{"type":"app_mention","text":"<@U0LAN0Z89> run"}}"#.to_owned(),
        Source::Linear => format!(
            r#"{{"action":"create","type":"Issue","data":{{"id":"1"}},"webhookTimestamp":{}}}"#,
            now_millis()
        ),
        Source::Hackerone => r#"{"data":{"report":{"id":"42"}}}"#.to_owned(),
        Source::Bugcrowd => r#"{"data":{"type":"submission","attributes":{"key":"submission.created"}}}"#.to_owned(),
        Source::Webhook => r#"{"type":"invoice.paid","data":{"id":"in_1"}}"#.to_owned(),
        Source::JiraAutomation => r#"{"action":"deploy"}"#.to_owned(),
        other => panic!("no typical body for {other} yet"),
    }
}

fn request(
    fixture: &Fixture,
    source: Source,
    body: &str,
    headers: Vec<(&'static str, String)>,
) -> Request<http_body_util::Full<bytes::Bytes>> {
    let mut builder =
        Request::post(fixture.path(source)).header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(full(body.to_owned())).unwrap()
}

async fn one(rx: &mut mpsc::Receiver<Execution>) -> Execution {
    rx.try_recv().expect("an execution was started")
}

// ---- known answers ----

#[tokio::test]
async fn every_signed_source_accepts_its_documented_signature() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let expected_action = [
        (Source::Jira, "jira:issue_created"),
        (Source::Slack, "app_mention"),
        (Source::Linear, "Issue.create"),
        (Source::Hackerone, "report_created"),
        (Source::Bugcrowd, "submission.created"),
        (Source::Webhook, "invoice.paid"),
    ];
    for (source, action) in expected_action {
        let body = body_for(source);
        let mut headers = signed_headers(source, secret_bytes(source), &body, now_seconds());
        if source == Source::Hackerone {
            headers.push(("x-h1-event", "report_created".to_owned()));
        }
        let answer = send(service.clone(), request(&fixture, source, &body, headers)).await;
        assert_eq!(answer.status, StatusCode::OK, "{source}: {}", answer.json);
        let execution = one(&mut rx).await;
        assert_eq!(answer.json["executionId"], execution.id.to_string());
        assert_eq!(
            execution.delivery.caller,
            Caller::Signature {
                secret_id: "2026-11".into()
            },
            "{source}"
        );
        assert_eq!(
            execution.delivery.action.as_deref(),
            Some(action),
            "{source}"
        );
        assert_eq!(execution.delivery.input, body.as_bytes());
    }
}

#[test]
fn slack_documented_example_verifies() {
    // The worked example of Slack's "Verifying requests from Slack".
    let secret = SigningSecret::new("doc", "8f742231b10e8888abcd99yyyzzz85a5").unwrap();
    let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let mut headers = HeaderMap::new();
    headers.insert("x-slack-request-timestamp", "1531420618".parse().unwrap());
    headers.insert(
        "x-slack-signature",
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
            .parse()
            .unwrap(),
    );
    let at = UNIX_EPOCH + Duration::from_secs(1_531_420_618);
    let ring = [secret];
    assert_eq!(
        signature::Verifier::new(Source::Slack, &ring)
            .verify_at(&headers, body, at)
            .unwrap()
            .id(),
        "doc"
    );
    // The same request a day later is a replay.
    let later = at + Duration::from_secs(86_400);
    assert_eq!(
        signature::Verifier::new(Source::Slack, &ring)
            .verify_at(&headers, body, later)
            .unwrap_err(),
        SignatureError::OutsideReplayWindow
    );
}

#[test]
fn standard_webhooks_specification_vector_verifies() {
    let secret = SigningSecret::new("spec", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "webhook-id",
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk".parse().unwrap(),
    );
    headers.insert("webhook-timestamp", "1649367553".parse().unwrap());
    headers.insert(
        "webhook-signature",
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
            .parse()
            .unwrap(),
    );
    let body = br#"{"email":"test@example.com","username":"test_user"}"#;
    let at = UNIX_EPOCH + Duration::from_secs(1_649_367_553);
    let ring = [secret];
    assert!(
        signature::Verifier::new(Source::Webhook, &ring)
            .verify_at(&headers, body, at)
            .is_ok()
    );
    assert_eq!(
        signature::Verifier::new(Source::Webhook, &ring)
            .verify_at(&headers, b"{}", at)
            .unwrap_err(),
        SignatureError::Mismatch
    );
}

#[tokio::test]
async fn bugcrowd_accepts_prefixed_and_bare_hex_digests() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    // Three distinct deliveries: a byte-identical copy would be a replay of the first.
    for (n, encode) in [
        |digest: &str| format!("sha256={digest}"),
        |digest: &str| digest.to_owned(),
        |digest: &str| digest.to_uppercase(),
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(r#"{{"data":{{"attributes":{{"key":"submission.created"}}}},"n":{n}}}"#);
        let value = encode(&hex::encode(hmac(SECRET.as_bytes(), &[body.as_bytes()])));
        let answer = send(
            service.clone(),
            request(
                &fixture,
                Source::Bugcrowd,
                &body,
                vec![("x-bugcrowd-digest", value.clone())],
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{value}");
        one(&mut rx).await;
    }
}

#[tokio::test]
async fn hackerone_signature_with_an_empty_key_is_refused() {
    // HackerOne signs with an empty key when no secret is set; that never verifies here.
    assert_eq!(
        SigningSecret::new("none", "").unwrap_err(),
        agent_trigger::SecretError::Empty
    );
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let body = body_for(Source::Hackerone);
    let headers = signed_headers(Source::Hackerone, b"", &body, now_seconds());
    let answer = send(
        service,
        request(&fixture, Source::Hackerone, &body, headers),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn hub_style_sources_require_their_prefix_rules() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let body = body_for(Source::Jira);
    let digest = hex::encode(hmac(SECRET.as_bytes(), &[body.as_bytes()]));
    // Jira requires `sha256=`; Linear requires bare hex.
    let answer = send(
        service.clone(),
        request(
            &fixture,
            Source::Jira,
            &body,
            vec![("x-hub-signature", digest.clone())],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.json["error"],
        "invalid signature: malformed x-hub-signature header"
    );
    let body = body_for(Source::Linear);
    let digest = hex::encode(hmac(SECRET.as_bytes(), &[body.as_bytes()]));
    let answer = send(
        service,
        request(
            &fixture,
            Source::Linear,
            &body,
            vec![("linear-signature", format!("sha256={digest}"))],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

// ---- raw bytes ----

#[tokio::test]
async fn unusual_whitespace_and_key_order_verify_and_reach_the_sink_as_sent() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let body = "{\n  \"issue\" : {\"key\":\"SEC-1\"} ,\r\n\t\"webhookEvent\":\"jira:issue_updated\",\"a\":1.50e+2 }\n";
    let headers = signed_headers(Source::Jira, SECRET.as_bytes(), body, 0);
    let answer = send(service, request(&fixture, Source::Jira, body, headers)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let execution = one(&mut rx).await;
    assert_eq!(execution.delivery.input, body.as_bytes());
    assert_eq!(
        execution.delivery.action.as_deref(),
        Some("jira:issue_updated")
    );
}

#[tokio::test]
async fn a_one_byte_change_fails_for_every_source() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    for source in Source::ALL.into_iter().filter(|s| s.is_signed()) {
        let body = body_for(source);
        let headers = signed_headers(source, secret_bytes(source), &body, now_seconds());
        let mut tampered = body.clone().into_bytes();
        let at = tampered.len() / 2;
        tampered[at] ^= 0x01;
        let tampered = String::from_utf8(tampered).unwrap();
        let answer = send(
            service.clone(),
            request(&fixture, source, &tampered, headers),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{source}");
        assert_eq!(
            answer.json["error"], "invalid signature: signature does not match",
            "{source}"
        );
    }
    assert!(rx.try_recv().is_err());
}

// ---- replay windows ----

#[tokio::test]
async fn stale_and_future_timestamps_fail() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    for (source, window) in [(Source::Slack, 300), (Source::Webhook, 300)] {
        for offset in [-(window + 5), window + 5] {
            let at = (now_seconds() as i64 + offset) as u64;
            let body = body_for(source);
            let headers = signed_headers(source, secret_bytes(source), &body, at);
            let answer = send(service.clone(), request(&fixture, source, &body, headers)).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{source} {offset}");
            assert_eq!(
                answer.json["error"],
                "invalid signature: timestamp outside the replay window"
            );
        }
        // Inside the window, either side, is fine.
        for offset in [-(window - 10), window - 10] {
            let at = (now_seconds() as i64 + offset) as u64;
            let body = body_for(source);
            let headers = signed_headers(source, secret_bytes(source), &body, at);
            let answer = send(service.clone(), request(&fixture, source, &body, headers)).await;
            assert_eq!(answer.status, StatusCode::OK, "{source} {offset}");
        }
        // Both copies carry the same delivery id: one execution.
        one(&mut rx).await;
        assert!(rx.try_recv().is_err());
    }
}

#[tokio::test]
async fn linear_window_uses_the_signed_body_timestamp_not_a_header() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let send_linear = |millis: Option<i128>| {
        let body = match millis {
            Some(millis) => {
                format!(r#"{{"type":"Issue","action":"update","webhookTimestamp":{millis}}}"#)
            }
            None => r#"{"type":"Issue","action":"update"}"#.to_owned(),
        };
        let mut headers = signed_headers(Source::Linear, SECRET.as_bytes(), &body, 0);
        // An unsigned, fresh timestamp header must not rescue a stale body.
        headers.push(("linear-timestamp", now_millis().to_string()));
        send(
            service.clone(),
            request(&fixture, Source::Linear, &body, headers),
        )
    };
    let now = now_millis() as i128;
    let answer = send_linear(Some(now - 61_000)).await;
    assert_eq!(
        answer.json["error"],
        "invalid signature: timestamp outside the replay window"
    );
    let answer = send_linear(Some(now + 61_000)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = send_linear(None).await;
    assert_eq!(
        answer.json["error"],
        "invalid signature: missing signed timestamp"
    );
    let answer = send_linear(Some(now - 30_000)).await;
    assert_eq!(answer.status, StatusCode::OK);
    one(&mut rx).await;

    // Correctly signed timestamps beyond any clock are outside the window, never an overflow.
    for millis in [
        "-1e300",
        "1e300",
        "1e400",
        "-99999999999999999999999999999999999999999",
    ] {
        let body = format!(r#"{{"type":"Issue","action":"update","webhookTimestamp":{millis}}}"#);
        let headers = signed_headers(Source::Linear, SECRET.as_bytes(), &body, 0);
        let answer = send(
            service.clone(),
            request(&fixture, Source::Linear, &body, headers),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{millis}");
        assert_eq!(
            answer.json["error"], "invalid signature: timestamp outside the replay window",
            "{millis}"
        );
    }
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn replay_window_is_configurable_per_trigger() {
    let fixture = Fixture::new();
    let id = Uuid::now_v7();
    fixture.store.insert_trigger(
        Trigger::new(id, TENANT, Source::Slack)
            .with_secret(secret_for(Source::Slack))
            .with_replay_window(Duration::from_secs(3600)),
    );
    let (service, mut rx) = fixture.channel_service();
    let body = body_for(Source::Slack);
    let headers = signed_headers(
        Source::Slack,
        SECRET.as_bytes(),
        &body,
        now_seconds() - 1800,
    );
    let mut request = request(&fixture, Source::Slack, &body, headers);
    *request.uri_mut() = format!("/api/trigger/slack/{id}").parse().unwrap();
    assert_eq!(send(service, request).await.status, StatusCode::OK);
    one(&mut rx).await;
}

// ---- rotation ----

#[tokio::test]
async fn old_and_new_secrets_both_verify_during_an_overlap_and_an_expired_one_does_not() {
    let store = Arc::new(MemoryKeyStore::new());
    let id = Uuid::now_v7();
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    store.insert_trigger(
        Trigger::new(id, TENANT, Source::Hackerone)
            .with_secret(
                SigningSecret::new("2026-10", "old secret")
                    .unwrap()
                    .with_not_after(now + hour),
            )
            .with_secret(
                SigningSecret::new("2026-11", "new secret")
                    .unwrap()
                    .with_not_before(now - hour),
            )
            .with_secret(
                SigningSecret::new("2026-09", "expired secret")
                    .unwrap()
                    .with_not_after(now - hour),
            ),
    );
    let (sink, mut rx) = ChannelSink::new(8);
    let service = TriggerService::new(sink, store);
    let body = r#"{"data":{}}"#;
    for (key, expected) in [
        ("old secret", Some("2026-10")),
        ("new secret", Some("2026-11")),
        ("expired secret", None),
    ] {
        let headers = signed_headers(Source::Hackerone, key.as_bytes(), body, 0);
        let mut builder = Request::post(format!("/api/trigger/hackerone/{id}"));
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let answer = send(service.clone(), builder.body(full(body)).unwrap()).await;
        match expected {
            Some(secret_id) => {
                assert_eq!(answer.status, StatusCode::OK, "{key}");
                let caller = one(&mut rx).await.delivery.caller;
                assert_eq!(
                    caller,
                    Caller::Signature {
                        secret_id: secret_id.into()
                    }
                );
            }
            None => assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{key}"),
        }
    }
}

// ---- Slack ----

#[tokio::test]
async fn slack_handshake_is_answered_only_after_the_signature() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let headers = signed_headers(Source::Slack, SECRET.as_bytes(), body, now_seconds());
    let answer = send(
        service.clone(),
        request(&fixture, Source::Slack, body, headers),
    )
    .await;
    assert_eq!(
        answer.json,
        json!({"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    let headers = signed_headers(Source::Slack, b"wrong", body, now_seconds());
    let answer = send(service, request(&fixture, Source::Slack, body, headers)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn slack_slash_commands_and_interactivity_become_json_input() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let payload =
        r#"{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"approve"}]}"#;
    let interactive = format!(
        "payload={}",
        form_urlencoded::byte_serialize(payload.as_bytes()).collect::<String>()
    );
    let cases = [
        (
            "token=x&command=%2Ftriage&text=SEC-1+urgent&user_id=U2".to_owned(),
            json!({"token":"x","command":"/triage","text":"SEC-1 urgent","user_id":"U2"}),
            "/triage",
        ),
        (
            interactive,
            json!({"payload":{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"approve"}]}}),
            "block_actions",
        ),
    ];
    for (body, input, action) in cases {
        let mut request = request(
            &fixture,
            Source::Slack,
            &body,
            signed_headers(Source::Slack, SECRET.as_bytes(), &body, now_seconds()),
        );
        request.headers_mut().insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
        let delivery = one(&mut rx).await.delivery;
        assert_eq!(
            serde_json::from_slice::<Value>(&delivery.input).unwrap(),
            input
        );
        assert_eq!(delivery.action.as_deref(), Some(action));
    }
}

#[tokio::test]
async fn slack_retries_get_the_original_execution_id() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let body = body_for(Source::Slack);
    let first = send(
        service.clone(),
        request(
            &fixture,
            Source::Slack,
            &body,
            signed_headers(Source::Slack, SECRET.as_bytes(), &body, now_seconds()),
        ),
    )
    .await;
    for retry in 1..=3 {
        let mut headers = signed_headers(Source::Slack, SECRET.as_bytes(), &body, now_seconds());
        headers.push(("x-slack-retry-num", retry.to_string()));
        headers.push(("x-slack-retry-reason", "http_timeout".to_owned()));
        let again = send(
            service.clone(),
            request(&fixture, Source::Slack, &body, headers),
        )
        .await;
        assert_eq!(again.json, first.json);
        assert_eq!(again.headers["idempotent-replayed"], "true");
    }
    one(&mut rx).await;
    assert!(rx.try_recv().is_err());
}

// ---- redeliveries ----

#[tokio::test]
async fn redeliveries_of_every_source_with_a_delivery_id_return_the_original_id() {
    let fixture = Fixture::new();
    let (service, mut rx) = fixture.channel_service();
    let delivery_id_header = |source: Source| -> Option<(&'static str, String)> {
        match source {
            Source::Jira => Some(("x-atlassian-webhook-identifier", "9f1c".to_owned())),
            Source::Linear => Some((
                "linear-delivery",
                "234d1a4e-b617-4388-90fe-adc3633d6b72".to_owned(),
            )),
            Source::Hackerone => Some(("x-h1-delivery", "4f2a".to_owned())),
            Source::JiraAutomation | Source::Bugcrowd => {
                Some(("idempotency-key", "rule-run-17".to_owned()))
            }
            // Slack's id is the body's event_id; Standard Webhooks' is webhook-id, already signed.
            Source::Slack | Source::Webhook => None,
            other => panic!("no delivery id header for {other} yet"),
        }
    };
    for source in Source::ALL {
        let body = body_for(source);
        let deliver = || {
            let mut headers = if source.is_signed() {
                signed_headers(source, secret_bytes(source), &body, now_seconds())
            } else {
                vec![("authorization", format!("Bearer {}", fixture.key.expose()))]
            };
            headers.extend(delivery_id_header(source));
            send(service.clone(), request(&fixture, source, &body, headers))
        };
        let first = deliver().await;
        assert_eq!(first.status, StatusCode::OK, "{source}: {}", first.json);
        let again = deliver().await;
        assert_eq!(again.json, first.json, "{source}");
        assert_eq!(again.headers["idempotent-replayed"], "true", "{source}");
        let execution = one(&mut rx).await;
        assert!(execution.delivery.delivery_id.is_some(), "{source}");
        assert!(
            rx.try_recv().is_err(),
            "{source}: the redelivery started nothing"
        );
    }
}

#[tokio::test]
async fn allowlists_and_bots_are_skipped_for_signed_deliveries_too() {
    let fixture = Fixture::new();
    let id = Uuid::now_v7();
    fixture.store.insert_trigger(
        Trigger::new(id, TENANT, Source::Linear)
            .with_secret(secret_for(Source::Linear))
            .with_actions(ActionAllowlist::new(["Issue.*"])),
    );
    let (service, mut rx) = fixture.channel_service();
    let body = format!(
        r#"{{"type":"Comment","action":"create","webhookTimestamp":{}}}"#,
        now_millis()
    );
    let mut request = request(
        &fixture,
        Source::Linear,
        &body,
        signed_headers(Source::Linear, SECRET.as_bytes(), &body, 0),
    );
    *request.uri_mut() = format!("/api/trigger/linear/{id}").parse().unwrap();
    let answer = send(service, request).await;
    assert_eq!(
        answer.json,
        json!({"executionId":"skipped","message":"action is not in the trigger's allowlist","action":"Comment.create"})
    );
    assert!(rx.try_recv().is_err());
}

#[test]
fn sign_and_verify_round_trip_for_every_signed_source() {
    let now = SystemTime::now();
    for source in Source::ALL.into_iter().filter(|s| s.is_signed()) {
        let secret = secret_for(source);
        let body = body_for(source);
        let headers = signature::sign(source, &secret, body.as_bytes(), now, "msg_1").unwrap();
        let ring = [secret];
        assert!(
            signature::Verifier::new(source, &ring)
                .verify_at(&headers, body.as_bytes(), now)
                .is_ok(),
            "{source}"
        );
        let other = [SigningSecret::new("other", "whsec_b3RoZXIgc2VjcmV0").unwrap()];
        assert_eq!(
            signature::Verifier::new(source, &other)
                .verify_at(&headers, body.as_bytes(), now)
                .unwrap_err(),
            SignatureError::Mismatch,
            "{source}"
        );
    }
}
