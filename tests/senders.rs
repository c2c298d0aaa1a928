//! Any signed sender, by configuration (contract §8): every preset of `SignatureScheme`
//! against signatures made the provider's way, through the service. Three kinds of evidence:
//! the providers' published examples (GitHub, Twilio, Svix), signatures made by their own SDKs
//! (`tests/sdk/signatures.json`, from `tests/sdk/make_signatures.py`: Stripe, Twilio, Svix and
//! PyNaCl for Discord), and signatures computed here from each provider's documentation, with
//! fresh timestamps, for the service's answers: 401s that say nothing, rotation, replays and
//! redeliveries (§4–5), Discord's answers and Twilio's forms.

pub mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_trigger::memory::{ChannelSink, Execution, MemoryKeyStore};
use agent_trigger::signature::{HmacAlgorithm, SignatureEncoding, SignatureScheme, Verifier};
use agent_trigger::{
    ActionAllowlist, ApiKey, ApiKeyRecord, Caller, SecretError, SignatureError, SigningSecret,
    Source, Trigger, TriggerService,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Answer, full, send};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use tokio::sync::mpsc;
use uuid::Uuid;

const TENANT: &str = "acme";

/// Every preset but the default, which `tests/sources.rs` covers as the `webhook` source.
const PRESETS: [&str; 11] = [
    "github",
    "stripe",
    "shopify",
    "twilio",
    "svix",
    "zendesk",
    "pagerduty",
    "gitlab",
    "sentry",
    "intercom",
    "discord",
];

/// The presets that sign a timestamp, checked against a ±300 s window.
const TIMED: [&str; 4] = ["stripe", "svix", "zendesk", "discord"];

/// The query Twilio's requests carry, signed with the URL.
const TWILIO_QUERY: &str = "foo=1&bar=2";

// ---- signing the providers' way, written out from their documentation ----

/// A secret of a trigger's ring: as it is configured, and what the sender signs with.
#[derive(Clone)]
struct Key {
    configured: String,
    signing: Signing,
}

#[derive(Clone)]
enum Signing {
    /// An HMAC key (the secret's text, or a Standard Webhooks key's bytes), or GitLab's token.
    Bytes(Vec<u8>),
    /// An Ed25519 private key's seed; the configured secret is its public key.
    Seed([u8; 32]),
}

/// Which secret of a preset: the ring's current one, its previous one, or one it does not hold.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Which {
    Current,
    Previous,
    Stranger,
}

fn key(preset: &str, which: Which) -> Key {
    let pick = |current: &str, previous: &str, stranger: &str| match which {
        Which::Current => current.to_owned(),
        Which::Previous => previous.to_owned(),
        Which::Stranger => stranger.to_owned(),
    };
    match preset {
        "svix" | "standard-webhooks" => {
            let configured = pick(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "whsec_cHJldmlvdXMgc2VjcmV0",
                "whsec_c3RyYW5nZXIgc2VjcmV0",
            );
            let bytes = STANDARD.decode(&configured["whsec_".len()..]).unwrap();
            Key {
                configured,
                signing: Signing::Bytes(bytes),
            }
        }
        "discord" => {
            let seed = match which {
                Which::Current => [7; 32],
                Which::Previous => [8; 32],
                Which::Stranger => [9; 32],
            };
            let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
            Key {
                configured: hex::encode(pair.public_key().as_ref()),
                signing: Signing::Seed(seed),
            }
        }
        // Stripe keys with the whole `whsec_…` text, as its SDK does.
        "stripe" => text_key(pick(
            "whsec_test_secret",
            "whsec_previous_secret",
            "whsec_stranger_secret",
        )),
        _ => text_key(pick(
            "It's a Secret to Everybody",
            "the previous secret",
            "a stranger's secret",
        )),
    }
}

fn text_key(text: String) -> Key {
    Key {
        signing: Signing::Bytes(text.clone().into_bytes()),
        configured: text,
    }
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    parts.iter().for_each(|part| mac.update(part));
    mac.finalize().into_bytes().to_vec()
}

fn hmac1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).unwrap();
    parts.iter().for_each(|part| mac.update(part));
    mac.finalize().into_bytes().to_vec()
}

fn hmac512(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).unwrap();
    parts.iter().for_each(|part| mac.update(part));
    mac.finalize().into_bytes().to_vec()
}

/// One delivery as a sender makes it.
#[derive(Clone)]
struct Draft {
    preset: &'static str,
    body: String,
    content_type: &'static str,
    /// When it was signed, Unix seconds.
    at: u64,
    /// The sender's delivery id (in a header, or in the body for the presets that put it there).
    delivery: String,
    /// The URL the sender called, for Twilio.
    url: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A typical delivery of `preset` with `delivery` as its id, signed now.
fn draft(preset: &'static str, delivery: &str, trigger: Uuid) -> Draft {
    let (body, content_type) = match preset {
        "github" => (
            r#"{"action":"opened","issue":{"number":1347,"title":"Found a bug"}}"#.to_owned(),
            "application/json",
        ),
        "stripe" => (
            format!(r#"{{"id":"{delivery}","object":"event","type":"invoice.paid"}}"#),
            "application/json",
        ),
        "shopify" => (
            r#"{"id":820982911946154508}"#.to_owned(),
            "application/json",
        ),
        "twilio" => (
            "MessageSid=SM1f0e&SmsStatus=delivered&Body=deploy+now&From=%2B15017122661".to_owned(),
            "application/x-www-form-urlencoded",
        ),
        "svix" => (
            r#"{"type":"invoice.paid","data":{}}"#.to_owned(),
            "application/json",
        ),
        "zendesk" => (
            r#"{"type":"zen:event-type:ticket.created","detail":{"id":"35"}}"#.to_owned(),
            "application/json",
        ),
        "pagerduty" => (
            r#"{"event":{"id":"5ac64822","event_type":"incident.triggered"}}"#.to_owned(),
            "application/json",
        ),
        "gitlab" => (
            r#"{"object_kind":"push","ref":"refs/heads/main"}"#.to_owned(),
            "application/json",
        ),
        "sentry" => (
            r#"{"action":"created","data":{}}"#.to_owned(),
            "application/json",
        ),
        "intercom" => (
            format!(
                r#"{{"type":"notification_event","id":"{delivery}","topic":"conversation.user.created"}}"#
            ),
            "application/json",
        ),
        "discord" => (
            format!(r#"{{"id":"{delivery}","type":2,"data":{{"name":"triage"}},"token":"t"}}"#),
            "application/json",
        ),
        other => panic!("no typical delivery for {other}"),
    };
    Draft {
        preset,
        body,
        content_type,
        at: now(),
        delivery: delivery.to_owned(),
        url: format!("{}?{TWILIO_QUERY}", public_url(trigger)),
    }
}

/// The action each preset's typical delivery names.
fn expected_action(preset: &str) -> Option<&'static str> {
    Some(match preset {
        "github" => "issues.opened",
        "stripe" | "svix" => "invoice.paid",
        "shopify" => "orders/create",
        "twilio" => "delivered",
        "zendesk" => "zen:event-type:ticket.created",
        "pagerduty" => "incident.triggered",
        "gitlab" => "Push Hook",
        "sentry" => "issue.created",
        "intercom" => "conversation.user.created",
        "discord" => "triage",
        _ => return None,
    })
}

fn public_url(trigger: Uuid) -> String {
    format!("https://hooks.example.com/api/trigger/webhook/{trigger}")
}

/// RFC 3339 in UTC, as Zendesk writes its timestamps.
fn rfc3339(at: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(at)).to_string()
}

/// The headers the provider would send with `draft`, signed with `key`.
fn sign(draft: &Draft, key: &Key) -> Vec<(&'static str, String)> {
    let body = draft.body.as_bytes();
    let at = draft.at.to_string();
    let delivery = draft.delivery.clone();
    let bytes = match &key.signing {
        Signing::Bytes(bytes) => bytes.as_slice(),
        Signing::Seed(_) => &[],
    };
    match draft.preset {
        "github" => vec![
            (
                "x-hub-signature-256",
                format!("sha256={}", hex::encode(hmac256(bytes, &[body]))),
            ),
            ("x-github-delivery", delivery),
            ("x-github-event", "issues".to_owned()),
        ],
        "stripe" => vec![(
            "stripe-signature",
            format!(
                "t={at},v1={}",
                hex::encode(hmac256(bytes, &[at.as_bytes(), b".", body]))
            ),
        )],
        "shopify" => vec![
            (
                "x-shopify-hmac-sha256",
                STANDARD.encode(hmac256(bytes, &[body])),
            ),
            ("x-shopify-webhook-id", delivery),
            ("x-shopify-topic", "orders/create".to_owned()),
        ],
        "twilio" => {
            // The URL, then each field's name and value, sorted by name.
            let mut fields: Vec<(String, String)> = form_urlencoded::parse(body)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect();
            fields.sort();
            let mut signed = draft.url.clone();
            for (name, value) in fields {
                signed.push_str(&name);
                signed.push_str(&value);
            }
            vec![
                (
                    "x-twilio-signature",
                    STANDARD.encode(hmac1(bytes, &[signed.as_bytes()])),
                ),
                ("i-twilio-idempotency-token", delivery),
            ]
        }
        "svix" | "standard-webhooks" => {
            let prefix = if draft.preset == "svix" {
                ["svix-id", "svix-timestamp", "svix-signature"]
            } else {
                ["webhook-id", "webhook-timestamp", "webhook-signature"]
            };
            let tag = hmac256(
                bytes,
                &[delivery.as_bytes(), b".", at.as_bytes(), b".", body],
            );
            vec![
                (prefix[0], delivery),
                (prefix[1], at),
                (prefix[2], format!("v1,{}", STANDARD.encode(tag))),
            ]
        }
        "zendesk" => {
            let timestamp = rfc3339(draft.at);
            vec![
                (
                    "x-zendesk-webhook-signature",
                    STANDARD.encode(hmac256(bytes, &[timestamp.as_bytes(), body])),
                ),
                ("x-zendesk-webhook-signature-timestamp", timestamp),
                ("x-zendesk-webhook-invocation-id", delivery),
            ]
        }
        "pagerduty" => vec![
            (
                "x-pagerduty-signature",
                format!("v1={}", hex::encode(hmac256(bytes, &[body]))),
            ),
            ("x-webhook-id", delivery),
        ],
        "gitlab" => vec![
            ("x-gitlab-token", String::from_utf8(bytes.to_vec()).unwrap()),
            ("x-gitlab-event-uuid", delivery),
            ("x-gitlab-event", "Push Hook".to_owned()),
        ],
        "sentry" => vec![
            (
                "sentry-hook-signature",
                hex::encode(hmac256(bytes, &[body])),
            ),
            ("request-id", delivery),
            ("sentry-hook-resource", "issue".to_owned()),
        ],
        "intercom" => vec![(
            "x-hub-signature",
            format!("sha1={}", hex::encode(hmac1(bytes, &[body]))),
        )],
        "discord" => {
            let Signing::Seed(seed) = &key.signing else {
                unreachable!()
            };
            let pair = Ed25519KeyPair::from_seed_unchecked(seed).unwrap();
            let message = [at.as_bytes(), body].concat();
            vec![
                (
                    "x-signature-ed25519",
                    hex::encode(pair.sign(&message).as_ref()),
                ),
                ("x-signature-timestamp", at),
            ]
        }
        other => panic!("no signer for {other}"),
    }
}

// ---- the service ----

/// One `webhook` trigger per preset, each with a ring of two secrets, and a bearer key.
struct World {
    store: Arc<MemoryKeyStore>,
    key: ApiKey,
    triggers: Vec<(&'static str, Uuid)>,
}

fn ring(preset: &str) -> [SigningSecret; 2] {
    [
        SigningSecret::new("2026-12", key(preset, Which::Current).configured).unwrap(),
        SigningSecret::new("2026-11", key(preset, Which::Previous).configured).unwrap(),
    ]
}

fn trigger_for(preset: &str, id: Uuid) -> Trigger {
    let scheme = SignatureScheme::preset(preset).unwrap();
    let [current, previous] = ring(preset);
    assert_eq!(scheme.check_secret(&current), Ok(()), "{preset}");
    assert_eq!(scheme.check_secret(&previous), Ok(()), "{preset}");
    Trigger::new(id, TENANT, Source::Webhook)
        .with_signature(scheme)
        .with_secret(current)
        .with_secret(previous)
        .with_public_url(public_url(id))
}

impl World {
    fn new() -> Self {
        let store = Arc::new(MemoryKeyStore::new());
        let triggers = PRESETS
            .iter()
            .map(|preset| {
                let id = Uuid::now_v7();
                store.insert_trigger(trigger_for(preset, id));
                (*preset, id)
            })
            .collect();
        let key = store.generate_key(ApiKeyRecord::new("ci", TENANT));
        World {
            store,
            key,
            triggers,
        }
    }

    fn trigger(&self, preset: &str) -> Uuid {
        self.triggers.iter().find(|(p, _)| *p == preset).unwrap().1
    }

    fn service(&self) -> (TriggerService<ChannelSink, Arc<MemoryKeyStore>>, Receiver) {
        let (sink, executions) = ChannelSink::new(1024);
        (
            TriggerService::new(sink, Arc::clone(&self.store)),
            Receiver(executions),
        )
    }

    fn draft(&self, preset: &'static str, delivery: &str) -> Draft {
        draft(preset, delivery, self.trigger(preset))
    }
}

struct Receiver(mpsc::Receiver<Execution>);

impl Receiver {
    fn one(&mut self) -> Execution {
        self.0.try_recv().expect("an execution was started")
    }

    fn none(&mut self) {
        assert!(self.0.try_recv().is_err(), "no execution was started");
    }
}

/// `draft` posted to `trigger` with `headers`.
fn request(
    trigger: Uuid,
    draft: &Draft,
    headers: Vec<(&'static str, String)>,
) -> Request<http_body_util::Full<bytes::Bytes>> {
    let mut builder = Request::post(format!("/api/trigger/webhook/{trigger}?{TWILIO_QUERY}"))
        .header("content-type", draft.content_type);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(full(draft.body.clone())).unwrap()
}

/// `draft` signed with `which` secret and posted to its preset's trigger.
async fn deliver(
    world: &World,
    service: &TriggerService<ChannelSink, Arc<MemoryKeyStore>>,
    draft: &Draft,
    which: Which,
) -> Answer {
    let headers = sign(draft, &key(draft.preset, which));
    send(
        service.clone(),
        request(world.trigger(draft.preset), draft, headers),
    )
    .await
}

fn mismatch() -> Value {
    json!({"error":"invalid signature: signature does not match"})
}

// ---- published examples ----

#[tokio::test]
async fn github_published_example_verifies() {
    // GitHub's "Validating webhook deliveries": this secret and payload give this signature.
    const SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let ring = [SigningSecret::new("doc", "It's a Secret to Everybody").unwrap()];
    let mut headers = HeaderMap::new();
    headers.insert("x-hub-signature-256", HeaderValue::from_static(SIGNATURE));
    let github = SignatureScheme::github();
    let verifier = Verifier::for_scheme(&github, &ring);
    assert_eq!(
        verifier.verify(&headers, b"Hello, World!").unwrap().id(),
        "doc"
    );
    assert_eq!(
        verifier.verify(&headers, b"Hello, World?").unwrap_err(),
        SignatureError::Mismatch
    );

    // Through the service the signature passes, and the body is then judged as JSON: a 400,
    // where a wrong signature would have been a 401.
    let id = Uuid::now_v7();
    let store = MemoryKeyStore::new().with_trigger(
        Trigger::new(id, TENANT, Source::Webhook)
            .with_signature(github)
            .with_secret(ring[0].clone()),
    );
    let (sink, _rx) = ChannelSink::new(8);
    let service = TriggerService::new(sink, store);
    let post = |signature: &'static str| {
        Request::post(format!("/api/trigger/webhook/{id}"))
            .header("x-hub-signature-256", signature)
            .body(full("Hello, World!"))
            .unwrap()
    };
    let answer = send(service.clone(), post(SIGNATURE)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.json);
    assert_eq!(answer.json["issues"][0]["code"], "invalid_json");
    let answer = send(
        service,
        post("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18"),
    )
    .await;
    assert_eq!(
        (answer.status, answer.json),
        (StatusCode::UNAUTHORIZED, mismatch())
    );
}

#[tokio::test]
async fn twilio_documented_example_verifies_and_its_form_reaches_the_agent_as_json() {
    // Twilio's documented example (twilio-php's validation guide): auth token 12345, this URL
    // and these fields give this signature.
    const SIGNATURE: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    const BODY: &str = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
    let ring = [SigningSecret::new("auth-token", "12345").unwrap()];
    let mut headers = HeaderMap::new();
    headers.insert("x-twilio-signature", HeaderValue::from_static(SIGNATURE));
    let twilio = SignatureScheme::twilio();
    let verifier = Verifier::for_scheme(&twilio, &ring);
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    assert!(
        verifier
            .with_url(url)
            .verify(&headers, BODY.as_bytes())
            .is_ok()
    );
    // The same fields in another order are the same signed text.
    let reordered = "To=%2B18005551212&Digits=1234&CallSid=CA1234567890ABCDE&From=%2B14158675309&Caller=%2B14158675309";
    assert!(
        verifier
            .with_url(url)
            .verify(&headers, reordered.as_bytes())
            .is_ok()
    );
    for (url, body) in [
        ("https://mycompany.com/myapp.php?foo=1&bar=3", BODY),
        (
            url,
            "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1235&From=%2B14158675309&To=%2B18005551212",
        ),
    ] {
        assert_eq!(
            verifier
                .with_url(url)
                .verify(&headers, body.as_bytes())
                .unwrap_err(),
            SignatureError::Mismatch
        );
    }
    // Without the URL there is nothing to check the signature against.
    assert_eq!(
        verifier.verify(&headers, BODY.as_bytes()).unwrap_err(),
        SignatureError::Mismatch
    );

    // Through the service: the trigger knows the URL Twilio was given; the query comes with
    // the request.
    let id = Uuid::now_v7();
    let store = MemoryKeyStore::new().with_trigger(
        Trigger::new(id, TENANT, Source::Webhook)
            .with_signature(twilio)
            .with_secret(ring[0].clone())
            .with_public_url("https://mycompany.com/myapp.php"),
    );
    let (sink, executions) = ChannelSink::new(8);
    let mut executions = Receiver(executions);
    let service = TriggerService::new(sink, store);
    let request = Request::post(format!("/api/trigger/webhook/{id}?foo=1&bar=2"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", SIGNATURE)
        .body(full(BODY))
        .unwrap();
    let answer = send(service, request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let delivery = executions.one().delivery;
    assert_eq!(
        serde_json::from_slice::<Value>(&delivery.input).unwrap(),
        json!({"CallSid":"CA1234567890ABCDE","Caller":"+14158675309","Digits":"1234","From":"+14158675309","To":"+18005551212"})
    );
    assert_eq!(delivery.action, None);
}

#[test]
fn svix_documented_example_verifies() {
    // Svix's "Verifying payloads manually" example.
    let ring = [SigningSecret::new("doc", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()];
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("svix-timestamp", "1614265330"),
        (
            "svix-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let at = UNIX_EPOCH + Duration::from_secs(1_614_265_330);
    let svix = SignatureScheme::svix();
    let verifier = Verifier::for_scheme(&svix, &ring);
    assert!(
        verifier
            .verify_at(&headers, br#"{"test": 2432232314}"#, at)
            .is_ok()
    );
    assert_eq!(
        verifier
            .verify_at(&headers, br#"{"test": 2432232315}"#, at)
            .unwrap_err(),
        SignatureError::Mismatch
    );
    // The same headers under Standard Webhooks' names are not svix's.
    let standard = SignatureScheme::standard_webhooks();
    assert_eq!(
        Verifier::for_scheme(&standard, &ring)
            .verify_at(&headers, br#"{"test": 2432232314}"#, at)
            .unwrap_err(),
        SignatureError::Mismatch
    );
}

// ---- the SDKs' own signatures ----

#[test]
fn signatures_made_by_the_senders_sdks_verify() {
    let fixture: Value = serde_json::from_str(include_str!("sdk/signatures.json")).unwrap();
    let versions = fixture["sdk_versions"].as_object().unwrap();
    for sdk in ["stripe", "twilio", "svix", "PyNaCl"] {
        assert!(
            versions[sdk].is_string(),
            "the fixture records {sdk}'s version"
        );
    }
    let cases = fixture["cases"].as_array().unwrap();
    let mut presets: Vec<&str> = cases
        .iter()
        .map(|c| c["preset"].as_str().unwrap())
        .collect();
    presets.dedup();
    assert_eq!(
        presets,
        ["stripe", "svix", "standard-webhooks", "twilio", "discord"]
    );
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let scheme = SignatureScheme::preset(case["preset"].as_str().unwrap()).unwrap();
        let secret = SigningSecret::new("sdk", case["secret"].as_str().unwrap()).unwrap();
        assert_eq!(scheme.check_secret(&secret), Ok(()), "{name}");
        let ring = [secret];
        let mut headers = HeaderMap::new();
        for (header, value) in case["headers"].as_object().unwrap() {
            headers.insert(
                HeaderName::from_bytes(header.as_bytes()).unwrap(),
                HeaderValue::from_str(value.as_str().unwrap()).unwrap(),
            );
        }
        let body = case["body"].as_str().unwrap().as_bytes();
        let at = UNIX_EPOCH + Duration::from_secs(case["at"].as_u64().unwrap());
        let mut verifier = Verifier::for_scheme(&scheme, &ring);
        if let Some(url) = case["url"].as_str() {
            verifier = verifier.with_url(url);
        }
        assert_eq!(
            verifier.verify_at(&headers, body, at).map(|s| s.id()),
            Ok("sdk"),
            "{name}"
        );
        // One byte changed, another key, or far from the signing time: refused.
        let mut tampered = body.to_vec();
        let middle = tampered.len() / 2;
        tampered[middle] ^= 0x01;
        assert_eq!(
            verifier.verify_at(&headers, &tampered, at).unwrap_err(),
            SignatureError::Mismatch,
            "{name}"
        );
        let stranger = [SigningSecret::new(
            "stranger",
            key(case["preset"].as_str().unwrap(), Which::Stranger).configured,
        )
        .unwrap()];
        let mut other = Verifier::for_scheme(&scheme, &stranger);
        if let Some(url) = case["url"].as_str() {
            other = other.with_url(url);
        }
        assert_eq!(
            other.verify_at(&headers, body, at).unwrap_err(),
            SignatureError::Mismatch,
            "{name}"
        );
        if scheme.default_replay_window().is_some() {
            assert_eq!(
                verifier
                    .verify_at(&headers, body, at + Duration::from_secs(301))
                    .unwrap_err(),
                SignatureError::OutsideReplayWindow,
                "{name}"
            );
        }
    }
}

// ---- every preset through the service ----

#[tokio::test]
async fn every_preset_accepts_its_sender_with_an_execution_id() {
    let world = World::new();
    let (service, mut executions) = world.service();
    for preset in PRESETS {
        let draft = world.draft(preset, &format!("{preset}-delivery-1"));
        let answer = deliver(&world, &service, &draft, Which::Current).await;
        assert_eq!(answer.status, StatusCode::OK, "{preset}: {}", answer.json);
        let execution = executions.one();
        let expected = match preset {
            // Discord is answered in its own shape: a deferred response.
            "discord" => json!({"type":5,"executionId":execution.id.to_string()}),
            _ => json!({"executionId":execution.id.to_string()}),
        };
        assert_eq!(answer.json, expected, "{preset}");
        let delivery = execution.delivery;
        assert_eq!(
            delivery.caller,
            Caller::Signature {
                secret_id: "2026-12".into()
            },
            "{preset}"
        );
        assert_eq!(
            delivery.action.as_deref(),
            expected_action(preset),
            "{preset}"
        );
        assert_eq!(
            delivery.delivery_id.as_deref(),
            Some(draft.delivery.as_str()),
            "{preset}"
        );
        if preset != "twilio" {
            assert_eq!(delivery.input, draft.body.as_bytes(), "{preset}");
        }
    }
}

#[tokio::test]
async fn a_ring_s_previous_secret_still_verifies() {
    let world = World::new();
    let (service, mut executions) = world.service();
    for preset in PRESETS {
        let draft = world.draft(preset, &format!("{preset}-rotated"));
        let answer = deliver(&world, &service, &draft, Which::Previous).await;
        assert_eq!(answer.status, StatusCode::OK, "{preset}: {}", answer.json);
        assert_eq!(
            executions.one().delivery.caller,
            Caller::Signature {
                secret_id: "2026-11".into()
            },
            "{preset}"
        );
    }
}

#[tokio::test]
async fn forgeries_unknown_triggers_and_triggers_without_secrets_answer_alike() {
    let world = World::new();
    let bare = Uuid::now_v7();
    world.store.insert_trigger(
        Trigger::new(bare, TENANT, Source::Webhook).with_signature(SignatureScheme::github()),
    );
    // A trigger of another source, with the very secret.
    let jira = Uuid::now_v7();
    world.store.insert_trigger(
        Trigger::new(jira, TENANT, Source::Jira)
            .with_secret(SigningSecret::new("s", "It's a Secret to Everybody").unwrap()),
    );
    let (service, mut executions) = world.service();
    for preset in PRESETS {
        let trigger = world.trigger(preset);
        let draft = world.draft(preset, &format!("{preset}-forged"));
        let genuine = sign(&draft, &key(preset, Which::Current));
        let mut tampered = draft.clone();
        tampered.body.push(' ');
        let mut answers = vec![
            (
                "another secret",
                trigger,
                draft.clone(),
                sign(&draft, &key(preset, Which::Stranger)),
            ),
            ("no signature", trigger, draft.clone(), without(&genuine, 0)),
            ("no headers", trigger, draft.clone(), Vec::new()),
            (
                "an unknown trigger",
                Uuid::now_v7(),
                draft.clone(),
                genuine.clone(),
            ),
            (
                "a trigger without secrets",
                bare,
                draft.clone(),
                genuine.clone(),
            ),
            (
                "a trigger of another source",
                jira,
                draft.clone(),
                genuine.clone(),
            ),
        ];
        // GitLab signs nothing: its token is all there is, whatever the body.
        if preset != "gitlab" {
            answers.push(("a changed body", trigger, tampered, genuine.clone()));
        }
        if preset != "github" {
            let github = world.trigger("github");
            answers.push((
                "a trigger of another scheme",
                github,
                draft.clone(),
                genuine.clone(),
            ));
        }
        let mut seen = Vec::new();
        for (case, trigger, draft, headers) in answers {
            let answer = send(service.clone(), request(trigger, &draft, headers)).await;
            assert_eq!(
                (answer.status, &answer.json),
                (StatusCode::UNAUTHORIZED, &mismatch()),
                "{preset}: {case}"
            );
            assert_eq!(
                answer.headers["www-authenticate"], "Bearer",
                "{preset}: {case}"
            );
            seen.push((answer.headers, answer.json));
        }
        assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "{preset}");
    }
    executions.none();
}

/// `headers` without the one at `index`.
fn without(headers: &[(&'static str, String)], index: usize) -> Vec<(&'static str, String)> {
    let mut headers = headers.to_vec();
    headers.remove(index);
    headers
}

#[tokio::test]
async fn a_stale_timestamp_is_named_only_to_the_holder_of_the_secret() {
    let world = World::new();
    let (service, mut executions) = world.service();
    for preset in TIMED {
        for offset in [-400i64, 400] {
            let mut draft = world.draft(preset, &format!("{preset}-stale"));
            draft.at = (now() as i64 + offset) as u64;
            let answer = deliver(&world, &service, &draft, Which::Current).await;
            assert_eq!(
                (answer.status, &answer.json["error"]),
                (
                    StatusCode::UNAUTHORIZED,
                    &json!("invalid signature: timestamp outside the replay window")
                ),
                "{preset} {offset}"
            );
            let answer = deliver(&world, &service, &draft, Which::Stranger).await;
            assert_eq!(
                (answer.status, answer.json),
                (StatusCode::UNAUTHORIZED, mismatch()),
                "{preset} {offset}"
            );
        }
        // Within the window, either side.
        for (n, offset) in [-290i64, 290].into_iter().enumerate() {
            let mut draft = world.draft(preset, &format!("{preset}-fresh-{n}"));
            draft.at = (now() as i64 + offset) as u64;
            let answer = deliver(&world, &service, &draft, Which::Current).await;
            assert_eq!(answer.status, StatusCode::OK, "{preset} {offset}");
            executions.one();
        }
    }
    // The presets that sign no timestamp take an old delivery (replays are caught by §5).
    for preset in PRESETS.into_iter().filter(|p| !TIMED.contains(p)) {
        let mut draft = world.draft(preset, &format!("{preset}-old"));
        draft.at = 1_000_000_000;
        let answer = deliver(&world, &service, &draft, Which::Current).await;
        assert_eq!(answer.status, StatusCode::OK, "{preset}: {}", answer.json);
        executions.one();
    }
}

#[tokio::test]
async fn a_redelivery_signed_afresh_gets_the_original_execution() {
    let world = World::new();
    let (service, mut executions) = world.service();
    for preset in PRESETS {
        let mut draft = world.draft(preset, &format!("{preset}-redelivered"));
        draft.at = now() - 30;
        let first = deliver(&world, &service, &draft, Which::Current).await;
        assert_eq!(first.status, StatusCode::OK, "{preset}: {}", first.json);
        assert!(first.headers.get("idempotent-replayed").is_none());
        // The sender's retry: the same delivery id, signed again now (a new signature for
        // the senders that sign a timestamp), and with the previous secret of the ring.
        draft.at = now();
        let again = deliver(&world, &service, &draft, Which::Previous).await;
        assert_eq!(again.json, first.json, "{preset}");
        assert_eq!(again.headers["idempotent-replayed"], "true", "{preset}");
        executions.one();
        executions.none();
    }
}

#[tokio::test]
async fn a_byte_identical_copy_is_a_replay_whatever_delivery_id_it_carries() {
    let world = World::new();
    let (service, mut executions) = world.service();
    // The presets whose delivery id is an unsigned header.
    let id_headers = [
        ("github", "x-github-delivery"),
        ("shopify", "x-shopify-webhook-id"),
        ("twilio", "i-twilio-idempotency-token"),
        ("zendesk", "x-zendesk-webhook-invocation-id"),
        ("pagerduty", "x-webhook-id"),
        ("gitlab", "x-gitlab-event-uuid"),
        ("sentry", "request-id"),
    ];
    for (preset, header) in id_headers {
        let draft = world.draft(preset, &format!("{preset}-original"));
        let headers = sign(&draft, &key(preset, Which::Current));
        let trigger = world.trigger(preset);
        let first = send(service.clone(), request(trigger, &draft, headers.clone())).await;
        assert_eq!(first.status, StatusCode::OK, "{preset}");
        let copy: Vec<_> = headers
            .into_iter()
            .map(|(name, value)| match name == header {
                true => (name, format!("{preset}-claimed-anew")),
                false => (name, value),
            })
            .collect();
        let again = send(service.clone(), request(trigger, &draft, copy)).await;
        assert_eq!(again.json, first.json, "{preset}");
        assert_eq!(again.headers["idempotent-replayed"], "true", "{preset}");
        executions.one();
        executions.none();
    }
    // GitLab sends the same token every time: a different body is a different delivery.
    let mut draft = world.draft("gitlab", "gitlab-second");
    draft.body = r#"{"object_kind":"push","ref":"refs/heads/other"}"#.to_owned();
    let answer = deliver(&world, &service, &draft, Which::Current).await;
    assert!(answer.headers.get("idempotent-replayed").is_none());
    executions.one();
}

#[tokio::test]
async fn a_key_holder_cannot_claim_a_signed_sender_s_delivery_id_in_advance() {
    // GitLab's delivery id is its `Idempotency-Key` header, which a bearer key's caller can send
    // too: the two live in separate namespaces (contract §5).
    let world = World::new();
    let (service, mut executions) = world.service();
    let draft = world.draft("gitlab", "unused");
    let claimed = Request::post(format!("/api/trigger/webhook/{}", world.trigger("gitlab")))
        .header("authorization", format!("Bearer {}", world.key.expose()))
        .header("content-type", "application/json")
        .header("idempotency-key", "gitlab-idem-1")
        .body(full(draft.body.clone()))
        .unwrap();
    let by_key = send(service.clone(), claimed).await;
    assert_eq!(by_key.status, StatusCode::OK);
    let mut headers = sign(&draft, &key("gitlab", Which::Current));
    headers.push(("idempotency-key", "gitlab-idem-1".to_owned()));
    let signed = send(
        service.clone(),
        request(world.trigger("gitlab"), &draft, headers),
    )
    .await;
    assert_eq!(signed.status, StatusCode::OK);
    assert_ne!(signed.json, by_key.json);
    assert!(signed.headers.get("idempotent-replayed").is_none());
    executions.one();
    let execution = executions.one();
    assert_eq!(
        execution.delivery.delivery_id.as_deref(),
        Some("gitlab-idem-1")
    );
}

#[tokio::test]
async fn bearer_keys_still_invoke_a_trigger_with_a_scheme() {
    let world = World::new();
    let (service, mut executions) = world.service();
    for preset in PRESETS {
        let draft = world.draft(preset, &format!("{preset}-by-key"));
        let request = request(
            world.trigger(preset),
            &draft,
            vec![("authorization", format!("Bearer {}", world.key.expose()))],
        );
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::OK, "{preset}: {}", answer.json);
        let delivery = executions.one().delivery;
        assert!(matches!(delivery.caller, Caller::ApiKey { .. }), "{preset}");
        if preset == "twilio" {
            assert_eq!(
                serde_json::from_slice::<Value>(&delivery.input).unwrap()["SmsStatus"],
                "delivered"
            );
        }
    }
}

// ---- Discord ----

#[tokio::test]
async fn discord_pings_are_answered_and_interactions_deferred() {
    let world = World::new();
    let (service, mut executions) = world.service();
    let mut ping = world.draft("discord", "ping");
    ping.body = r#"{"id":"1180000000000000001","type":1,"application_id":"1"}"#.to_owned();
    let answer = deliver(&world, &service, &ping, Which::Current).await;
    assert_eq!(
        (answer.status, answer.json),
        (StatusCode::OK, json!({"type":1}))
    );
    // Discord checks that a forged PING is refused before it accepts an endpoint.
    let answer = deliver(&world, &service, &ping, Which::Stranger).await;
    assert_eq!(
        (answer.status, answer.json),
        (StatusCode::UNAUTHORIZED, mismatch())
    );
    executions.none();

    let mut command = world.draft("discord", "1180000000000000002");
    command.at = now() - 1;
    let first = deliver(&world, &service, &command, Which::Current).await;
    let id = executions.one().id.to_string();
    assert_eq!(first.json, json!({"type":5,"executionId":id}));
    command.at = now();
    let again = deliver(&world, &service, &command, Which::Current).await;
    assert_eq!(again.json, first.json);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    executions.none();

    // Skips keep the shape.
    let trigger = world.trigger("discord");
    world.store.insert_trigger(
        trigger_for("discord", trigger).with_actions(ActionAllowlist::new(["deploy"])),
    );
    let skipped = deliver(
        &world,
        &service,
        &world.draft("discord", "3"),
        Which::Current,
    )
    .await;
    assert_eq!(
        skipped.json,
        json!({"type":5,"executionId":"skipped","message":"action is not in the trigger's allowlist","action":"triage"})
    );
    world
        .store
        .insert_trigger(trigger_for("discord", trigger).enabled(false));
    let disabled = deliver(
        &world,
        &service,
        &world.draft("discord", "4"),
        Which::Current,
    )
    .await;
    assert_eq!(
        disabled.json,
        json!({"type":5,"executionId":"skipped","message":"trigger is disabled","action":"triage"})
    );
    // A component interaction names no command: its type is the action.
    world.store.insert_trigger(trigger_for("discord", trigger));
    let mut button = world.draft("discord", "5");
    button.body = r#"{"id":"5","type":3,"data":{"custom_id":"approve"}}"#.to_owned();
    deliver(&world, &service, &button, Which::Current).await;
    assert_eq!(executions.one().delivery.action.as_deref(), Some("3"));
}

#[test]
fn discord_s_secret_is_its_public_key() {
    let discord = SignatureScheme::discord();
    let public_key = key("discord", Which::Current).configured;
    assert_eq!(public_key.len(), 64);
    assert_eq!(
        discord.check_secret(&SigningSecret::new("k", &public_key).unwrap()),
        Ok(())
    );
    for bad in ["It's a Secret to Everybody", &public_key[..62], "zz"] {
        assert_eq!(
            discord.check_secret(&SigningSecret::new("k", bad).unwrap()),
            Err(SecretError::InvalidPublicKey),
            "{bad}"
        );
    }
}

// ---- Twilio ----

#[tokio::test]
async fn twilio_json_bodies_are_covered_by_the_url_s_body_hash() {
    let world = World::new();
    let (service, mut executions) = world.service();
    let trigger = world.trigger("twilio");
    let body = r#"{"event":"com.twilio.messaging.message.delivered"}"#;
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    let token = key("twilio", Which::Current);
    let Signing::Bytes(token) = token.signing else {
        unreachable!()
    };
    let post = |url_signed: String, query: String, body: &'static str| {
        let signature = STANDARD.encode(hmac1(&token, &[url_signed.as_bytes()]));
        Request::post(format!("/api/trigger/webhook/{trigger}?{query}"))
            .header("content-type", "application/json")
            .header("x-twilio-signature", signature)
            .body(full(body))
            .unwrap()
    };
    let query = format!("bodySHA256={hash}");
    let answer = send(
        service.clone(),
        post(
            format!("{}?{query}", public_url(trigger)),
            query.clone(),
            body,
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(executions.one().delivery.input, body.as_bytes());
    // Another body under the same signed URL does not match its hash.
    let answer = send(
        service.clone(),
        post(
            format!("{}?{query}", public_url(trigger)),
            query.clone(),
            r#"{"event":"other"}"#,
        ),
    )
    .await;
    assert_eq!(
        (answer.status, answer.json),
        (StatusCode::UNAUTHORIZED, mismatch())
    );
    // Twilio's validators also accept the URL with its default port.
    let with_port = public_url(trigger).replace("example.com/", "example.com:443/");
    let answer = send(
        service.clone(),
        post(format!("{with_port}?{query}"), query.clone(), body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    // Without a public URL, nothing verifies.
    world.store.insert_trigger(
        Trigger::new(trigger, TENANT, Source::Webhook)
            .with_signature(SignatureScheme::twilio())
            .with_secret(ring("twilio")[0].clone()),
    );
    let answer = send(
        service,
        post(
            format!("{}?{query}", public_url(trigger)),
            query.clone(),
            body,
        ),
    )
    .await;
    assert_eq!(
        (answer.status, answer.json),
        (StatusCode::UNAUTHORIZED, mismatch())
    );
}

// ---- content types ----

#[tokio::test]
async fn content_types_are_judged_before_the_lookup_and_forms_again_after_the_signature() {
    let world = World::new();
    let (service, mut executions) = world.service();
    // Before the lookup, only what is the same for every scheme: an unknown trigger and a
    // known one answer alike.
    let draft = world.draft("github", "typed");
    let headers = sign(&draft, &key("github", Which::Current));
    let oversize = (2 * 1024 * 1024).to_string();
    for (header, value, status) in [
        (
            "content-type",
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "content-length",
            oversize.as_str(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let post = |trigger| {
            let mut request = request(trigger, &draft, headers.clone());
            request
                .headers_mut()
                .insert(header, HeaderValue::from_str(value).unwrap());
            request
        };
        let known = send(service.clone(), post(world.trigger("github"))).await;
        let unknown = send(service.clone(), post(Uuid::now_v7())).await;
        assert_eq!(known.status, status);
        assert_eq!(
            (known.status, known.headers, known.json),
            (unknown.status, unknown.headers, unknown.json)
        );
    }
    // A form to a scheme whose sender posts none: 415 once the signature verified, 401 before.
    let mut form = world.draft("github", "form");
    form.body = "payload=%7B%7D".to_owned();
    form.content_type = "application/x-www-form-urlencoded";
    let answer = deliver(&world, &service, &form, Which::Current).await;
    assert_eq!(
        (answer.status, answer.json),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"error":"unsupported content type: send application/json"})
        )
    );
    let answer = deliver(&world, &service, &form, Which::Stranger).await;
    assert_eq!(
        (answer.status, answer.json),
        (StatusCode::UNAUTHORIZED, mismatch())
    );
    executions.none();
}

// ---- tables for senders without a preset ----

fn acme_table() -> SignatureScheme {
    SignatureScheme::custom("X-Acme-Signature")
        .prefix("sha512=")
        .algorithm(HmacAlgorithm::Sha512)
        .encoding(SignatureEncoding::Base64)
        .signed("v1:{timestamp}:{id}:{body}")
        .timestamp_header("X-Acme-Timestamp")
        .id_header("X-Acme-Delivery")
        .action("body:event.kind")
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_table_describes_a_sender_without_a_preset() {
    const SECRET: &str = "acme shared secret";
    let id = Uuid::now_v7();
    let store = Arc::new(
        MemoryKeyStore::new().with_trigger(
            Trigger::new(id, TENANT, Source::Webhook)
                .with_signature(acme_table())
                .with_secret(SigningSecret::new("acme-1", SECRET).unwrap()),
        ),
    );
    let (sink, executions) = ChannelSink::new(8);
    let mut executions = Receiver(executions);
    let service = TriggerService::new(sink, Arc::clone(&store));
    let body = r#"{"event":{"kind":"build.failed"},"build":7}"#;
    let post = |key: &str, at: u64, delivery: &str| {
        let at = at.to_string();
        let tag = hmac512(
            key.as_bytes(),
            &[
                b"v1:",
                at.as_bytes(),
                b":",
                delivery.as_bytes(),
                b":",
                body.as_bytes(),
            ],
        );
        Request::post(format!("/api/trigger/webhook/{id}"))
            .header("content-type", "application/json")
            .header(
                "x-acme-signature",
                format!("sha512={}", STANDARD.encode(tag)),
            )
            .header("x-acme-timestamp", at)
            .header("x-acme-delivery", delivery)
            .body(full(body))
            .unwrap()
    };
    let first = send(service.clone(), post(SECRET, now() - 5, "d-1")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);
    let delivery = executions.one().delivery;
    assert_eq!(delivery.action.as_deref(), Some("build.failed"));
    assert_eq!(delivery.delivery_id.as_deref(), Some("d-1"));
    let again = send(service.clone(), post(SECRET, now(), "d-1")).await;
    assert_eq!(
        (&again.json, &again.headers["idempotent-replayed"]),
        (&first.json, &HeaderValue::from_static("true"))
    );
    let stale = send(service.clone(), post(SECRET, now() - 400, "d-2")).await;
    assert_eq!(
        stale.json["error"],
        "invalid signature: timestamp outside the replay window"
    );
    for forged in [
        post("another secret", now(), "d-3"),
        post(SECRET, now() - 400, "d-4").map(|_| full("{}")),
    ] {
        let answer = send(service.clone(), forged).await;
        assert_eq!(
            (answer.status, answer.json),
            (StatusCode::UNAUTHORIZED, mismatch())
        );
    }
    // The delivery id is signed: another id under the same signature does not match.
    let mut relabelled = post(SECRET, now(), "d-5");
    relabelled
        .headers_mut()
        .insert("x-acme-delivery", HeaderValue::from_static("d-6"));
    assert_eq!(
        send(service, relabelled).await.status,
        StatusCode::UNAUTHORIZED
    );
    executions.none();
}

#[tokio::test]
async fn a_table_may_sign_the_url() {
    const SECRET: &str = "url signing secret";
    let id = Uuid::now_v7();
    let table = SignatureScheme::custom("X-Signature")
        .signed("{url}|{body}")
        .build()
        .unwrap();
    assert!(table.signs_url());
    let store = MemoryKeyStore::new().with_trigger(
        Trigger::new(id, TENANT, Source::Webhook)
            .with_signature(table)
            .with_secret(SigningSecret::new("s", SECRET).unwrap())
            .with_public_url(public_url(id)),
    );
    let (sink, _executions) = ChannelSink::new(8);
    let service = TriggerService::new(sink, store);
    let post = |signed_query: &str, sent_query: &str| {
        let signed = format!("{}{signed_query}|{{}}", public_url(id));
        Request::post(format!("/api/trigger/webhook/{id}{sent_query}"))
            .header(
                "x-signature",
                hex::encode(hmac256(SECRET.as_bytes(), &[signed.as_bytes()])),
            )
            .body(full("{}"))
            .unwrap()
    };
    assert_eq!(
        send(service.clone(), post("?a=1", "?a=1")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(service.clone(), post("", "")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(service, post("?a=1", "?a=2")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn secrets_are_checked_against_their_scheme() {
    let check = |scheme: SignatureScheme, secret: &str| {
        scheme.check_secret(&SigningSecret::new("s", secret).unwrap())
    };
    for preset in PRESETS {
        let scheme = SignatureScheme::preset(preset).unwrap();
        assert_eq!(
            check(scheme, &key(preset, Which::Current).configured),
            Ok(()),
            "{preset}"
        );
    }
    // Stripe keys with the whole text; Standard Webhooks and svix decode it.
    assert_eq!(
        check(SignatureScheme::stripe(), "whsec_test_secret"),
        Ok(())
    );
    assert_eq!(
        check(SignatureScheme::svix(), "whsec_test_secret"),
        Err(SecretError::InvalidWhsec)
    );
    assert_eq!(
        check(SignatureScheme::standard_webhooks(), "not base64!"),
        Err(SecretError::NotBase64)
    );
    assert_eq!(
        SignatureScheme::github().check_secret(&SigningSecret::new("s", [0xff, 0xfe]).unwrap()),
        Err(SecretError::NotText)
    );
    assert_eq!(SigningSecret::new("s", "").unwrap_err(), SecretError::Empty);
    // A trigger checks its whole ring against its scheme, naming the secret that does not fit.
    for preset in PRESETS {
        assert!(
            trigger_for(preset, Uuid::now_v7()).check_secrets().is_ok(),
            "{preset}"
        );
    }
    let misfit = trigger_for("discord", Uuid::now_v7())
        .with_secret(SigningSecret::new("typo", "It's a Secret to Everybody").unwrap());
    let (secret, error) = misfit.check_secrets().unwrap_err();
    assert_eq!(
        (secret.id(), error),
        ("typo", SecretError::InvalidPublicKey)
    );
}
