//! Signature schemes as data: any preset, or any table the builder takes, against arbitrary
//! headers, bodies and URLs. Nothing panics; a table that builds survives serde unchanged;
//! nothing verifies without the key (the input never holds the ring's secrets); and a request
//! that this target signs for a table, with its own HMAC, verifies, until one byte of its body
//! changes.
#![no_main]

use std::time::{SystemTime, UNIX_EPOCH};

use agent_trigger::SigningSecret;
use agent_trigger::signature::{HmacAlgorithm, SignatureEncoding, SignatureScheme, Verifier};
use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Choice {
    Preset(u8),
    Table {
        header: String,
        prefix: String,
        algorithm: u8,
        encoding: u8,
        signed: String,
        timestamp_header: Option<String>,
        id_header: Option<String>,
        action: Option<String>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    scheme: Choice,
    headers: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
    query: String,
    /// Sign the request for a table, with the key, before checking it.
    sign: bool,
    /// Then change this byte of the body, if there is one.
    flip: Option<u16>,
}

/// Every header a preset reads, so that arbitrary values reach each parser.
const NAMES: [&str; 24] = [
    "x-hub-signature-256",
    "x-hub-signature",
    "stripe-signature",
    "x-shopify-hmac-sha256",
    "x-twilio-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-zendesk-webhook-signature",
    "x-zendesk-webhook-signature-timestamp",
    "x-pagerduty-signature",
    "x-gitlab-token",
    "sentry-hook-signature",
    "x-signature-ed25519",
    "x-signature-timestamp",
    "x-github-delivery",
    "x-github-event",
    "idempotency-key",
    "x-gitlab-event-uuid",
    "i-twilio-idempotency-token",
    "request-id",
];

const PUBLIC_URL: &str = "https://hooks.example.com/api/trigger/webhook/0193";
/// The text secret of the ring; the fuzzer never sees it.
const SECRET: &str = "fuzz ring secret, never in the input";
const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// The hex public key of the Ed25519 seed [7; 32].
const PUBLIC_KEY: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";

fuzz_target!(|input: Input| {
    let scheme = match &input.scheme {
        Choice::Preset(index) => {
            let presets = SignatureScheme::PRESETS;
            SignatureScheme::preset(presets[*index as usize % presets.len()]).unwrap()
        }
        Choice::Table {
            header,
            prefix,
            algorithm,
            encoding,
            signed,
            timestamp_header,
            id_header,
            action,
        } => {
            let mut table = SignatureScheme::custom(header.as_str())
                .prefix(prefix.as_str())
                .algorithm(
                    HmacAlgorithm::NAMES[*algorithm as usize % 3]
                        .parse()
                        .unwrap(),
                )
                .encoding(
                    SignatureEncoding::NAMES[*encoding as usize % 2]
                        .parse()
                        .unwrap(),
                )
                .signed(signed.as_str());
            if let Some(name) = timestamp_header {
                table = table.timestamp_header(name.as_str());
            }
            if let Some(name) = id_header {
                table = table.id_header(name.as_str());
            }
            if let Some(from) = action {
                table = table.action(from.as_str());
            }
            let Ok(scheme) = table.build() else { return };
            let text = serde_json::to_string(&scheme).unwrap();
            assert_eq!(
                serde_json::from_str::<SignatureScheme>(&text).unwrap(),
                scheme,
                "{text}"
            );
            scheme
        }
    };
    let secret = [SECRET, WHSEC, PUBLIC_KEY]
        .into_iter()
        .map(|text| SigningSecret::new("fuzz", text).unwrap())
        .find(|secret| scheme.check_secret(secret).is_ok())
        .expect("one of the secrets fits every scheme");
    let ring = [secret];
    let url = match input.query.as_str() {
        "" => PUBLIC_URL.to_owned(),
        query => format!("{PUBLIC_URL}?{query}"),
    };
    let table_header = scheme
        .table()
        .map(|table| table.header_name().trim().to_ascii_lowercase());
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        let name = match (*name as usize).checked_sub(NAMES.len()) {
            None => HeaderName::from_static(NAMES[*name as usize]),
            Some(_) => match &table_header {
                Some(header) => HeaderName::from_bytes(header.as_bytes()).unwrap(),
                None => continue,
            },
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(name, value);
        }
    }
    let mut body = input.body;
    let signed = input.sign && sign_table(&scheme, &mut headers, &body, &url);
    let flipped = match input.flip {
        Some(at) if !body.is_empty() => {
            let at = at as usize % body.len();
            body[at] ^= 0x01;
            true
        }
        _ => false,
    };
    let verdict = Verifier::for_scheme(&scheme, &ring)
        .with_url(&url)
        .verify(&headers, &body);
    if signed && !flipped {
        assert!(
            verdict.is_ok(),
            "a request signed with the key did not verify: {verdict:?}"
        );
    } else {
        assert!(
            verdict.is_err(),
            "verified without the key, or with a changed body"
        );
    }
});

/// Signs the request for a table, as a sender following the table would: `false` when the
/// scheme is a preset or the request cannot carry the headers.
fn sign_table(scheme: &SignatureScheme, headers: &mut HeaderMap, body: &[u8], url: &str) -> bool {
    let Some(table) = scheme.table() else {
        return false;
    };
    let text: serde_json::Value = serde_json::to_value(scheme).unwrap();
    let field = |name: &str| text[name].as_str().map(str::to_owned);
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let id = "fuzz-delivery";
    let mut content = Vec::new();
    let mut rest = table.signed_template();
    while let Some(open) = rest.find('{') {
        content.extend_from_slice(rest[..open].as_bytes());
        let close = open + rest[open..].find('}').unwrap();
        match &rest[open + 1..close] {
            "body" => content.extend_from_slice(body),
            "timestamp" => content.extend_from_slice(timestamp.as_bytes()),
            "id" => content.extend_from_slice(id.as_bytes()),
            "url" => content.extend_from_slice(url.as_bytes()),
            other => panic!("the builder took placeholder {other}"),
        }
        rest = &rest[close + 1..];
    }
    content.extend_from_slice(rest.as_bytes());
    let key = SECRET.as_bytes();
    let tag = match field("algorithm").as_deref() {
        Some("hmac-sha1") => {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
            mac.update(&content);
            mac.finalize().into_bytes().to_vec()
        }
        Some("hmac-sha512") => {
            let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
            mac.update(&content);
            mac.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            mac.update(&content);
            mac.finalize().into_bytes().to_vec()
        }
    };
    let encoded = match field("encoding").as_deref() {
        Some("base64") => STANDARD.encode(tag),
        _ => hex::encode(tag),
    };
    let signature = format!("{}{encoded}", field("prefix").unwrap_or_default());
    let mut set = |name: Option<String>, value: &str| match (name, HeaderValue::from_str(value)) {
        (None, _) => true,
        (Some(name), Ok(value)) => {
            headers.insert(
                HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                value,
            );
            true
        }
        (Some(_), Err(_)) => false,
    };
    set(field("timestamp_header"), &timestamp)
        && set(field("id_header"), id)
        && set(field("header"), &signature)
}
