//! Properties over many generated inputs: signatures round-trip for every scheme and break on
//! any change, bad path parameters always get zod-shaped issues, and only hyphenated UUIDs pass.

pub mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_trigger::{SignatureError, Source, signature};
use common::*;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use proptest::prelude::*;
use uuid::Uuid;

fn signed_sources() -> impl Strategy<Value = Source> {
    prop::sample::select(
        Source::ALL
            .into_iter()
            .filter(|source| source.is_signed())
            .collect::<Vec<_>>(),
    )
}

/// A body for `source` around `payload`, with Linear's signed timestamp inside it.
fn body_for(source: Source, payload: &[u8], now: SystemTime) -> Vec<u8> {
    match source {
        Source::Linear => {
            let millis = now.duration_since(UNIX_EPOCH).unwrap().as_millis();
            let text = serde_json::to_string(&String::from_utf8_lossy(payload)).unwrap();
            format!(
                r#"{{"type":"Issue","action":"create","data":{text},"webhookTimestamp":{millis}}}"#
            )
            .into_bytes()
        }
        _ => payload.to_vec(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sign_then_verify_round_trips(source in signed_sources(), payload in prop::collection::vec(any::<u8>(), 0..512), id in "[a-zA-Z0-9_]{1,32}") {
        let now = SystemTime::now();
        let secret = secret_for(source);
        let body = body_for(source, &payload, now);
        let headers = signature::sign(source, &secret, &body, now, &id).unwrap();
        let ring = [secret];
        prop_assert!(signature::Verifier::new(source, &ring).verify_at(&headers, &body, now).is_ok());
    }

    #[test]
    fn any_flipped_body_byte_fails(source in signed_sources(), payload in prop::collection::vec(any::<u8>(), 1..256), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let now = SystemTime::now();
        let secret = secret_for(source);
        let body = body_for(source, &payload, now);
        let headers = signature::sign(source, &secret, &body, now, "msg").unwrap();
        let mut tampered = body.clone();
        let at = at.index(tampered.len());
        tampered[at] ^= 1 << bit;
        let ring = [secret];
        let verdict = signature::Verifier::new(source, &ring).verify_at(&headers, &tampered, now);
        // Linear reads its timestamp from the body, so a flip there can also be a bad timestamp.
        prop_assert!(verdict.is_err());
    }

    #[test]
    fn any_flipped_signature_character_fails(source in signed_sources(), payload in prop::collection::vec(any::<u8>(), 0..128), at in any::<prop::sample::Index>()) {
        let now = SystemTime::now();
        let secret = secret_for(source);
        let body = body_for(source, &payload, now);
        let mut headers = signature::sign(source, &secret, &body, now, "msg").unwrap();
        let name = source.signature_header().unwrap();
        let mut text = headers[name].to_str().unwrap().as_bytes().to_vec();
        let at = at.index(text.len());
        // Swap for another character of the same alphabet, so the header stays well-formed.
        text[at] = match text[at] { b'0' => b'1', b'A' => b'B', b'a' => b'b', _ => b'0' };
        headers.insert(name, HeaderValue::from_bytes(&text).unwrap());
        let ring = [secret];
        prop_assert!(signature::Verifier::new(source, &ring).verify_at(&headers, &body, now).is_err());
    }

    #[test]
    fn timestamps_outside_the_window_fail(source in prop::sample::select(vec![Source::Slack, Source::Webhook]), skew in 301u64..100_000, future in any::<bool>()) {
        let now = SystemTime::now();
        let signed_at = if future { now + Duration::from_secs(skew) } else { now - Duration::from_secs(skew) };
        let secret = secret_for(source);
        let headers = signature::sign(source, &secret, b"{}", signed_at, "msg").unwrap();
        let ring = [secret];
        prop_assert_eq!(signature::Verifier::new(source, &ring).verify_at(&headers, b"{}", now).unwrap_err(), SignatureError::OutsideReplayWindow);
    }

    #[test]
    fn bad_path_parameters_get_zod_issues(segment in "[a-zA-Z0-9._~!$&'()*+,;=:@-]{1,40}", good_id in any::<bool>()) {
        prop_assume!(segment.parse::<Source>().is_err());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let fixture = Fixture::new();
        let (service, _rx) = fixture.channel_service();
        let trigger = if good_id { Uuid::now_v7().to_string() } else { segment.clone() };
        let request = Request::post(format!("/api/trigger/{segment}/{trigger}")).body(full("")).unwrap();
        let answer = runtime.block_on(send(service, request));
        prop_assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        let issues = answer.json["issues"].as_array().unwrap();
        prop_assert_eq!(issues.len(), if good_id { 1 } else { 2 });
        prop_assert_eq!(&issues[0]["code"], "invalid_enum_value");
        prop_assert_eq!(&issues[0]["received"], &serde_json::json!(segment));
        prop_assert_eq!(issues[0]["options"].as_array().unwrap().len(), 7);
        if !good_id {
            prop_assert_eq!(&issues[1], &serde_json::json!({"code":"invalid_string","validation":"uuid","path":["triggerId"],"message":"Invalid uuid"}));
        }
    }

    #[test]
    fn only_the_hyphenated_uuid_form_is_accepted(raw in any::<u128>(), upper in any::<bool>(), form in 0u8..4) {
        let id = Uuid::from_u128(raw);
        let text = match form {
            0 => id.hyphenated().to_string(),
            1 => id.simple().to_string(),
            2 => id.braced().to_string(),
            _ => id.urn().to_string(),
        };
        let text = if upper { text.to_uppercase().replace("URN:UUID:", "urn:uuid:") } else { text };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let fixture = Fixture::new();
        let (service, _rx) = fixture.channel_service();
        let request = Request::post(format!("/api/trigger/jira/{text}"))
            .header("authorization", format!("Bearer {}", fixture.key.expose()))
            .body(full("{}"))
            .unwrap();
        let answer = runtime.block_on(send(service, request));
        if form == 0 {
            // A well-formed id that is not one of the fixture's triggers.
            prop_assert_eq!(answer.status, StatusCode::NOT_FOUND);
        } else {
            prop_assert_eq!(answer.status, StatusCode::BAD_REQUEST);
            prop_assert_eq!(&answer.json["issues"][0]["path"][0], "triggerId");
        }
    }
}

#[test]
fn a_header_map_without_signatures_never_verifies() {
    for source in Source::ALL.into_iter().filter(|source| source.is_signed()) {
        let ring = [secret_for(source)];
        assert!(
            signature::Verifier::new(source, &ring)
                .verify_at(&HeaderMap::new(), b"{}", SystemTime::now())
                .is_err()
        );
    }
}
