//! Every signature verifier with arbitrary headers and bodies: no panic, and nothing verifies
//! unless it carries the real HMAC, which is checked by signing the same bytes here.
#![no_main]

use agent_trigger::{Source, signature};
use agent_trigger_fuzz as common;
use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    source: u8,
    headers: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
    sign_first: bool,
}

const NAMES: [&str; 12] = [
    "x-hub-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "linear-signature",
    "x-h1-signature",
    "x-bugcrowd-digest",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-h1-event",
    "linear-delivery",
    "idempotency-key",
];

fuzz_target!(|input: Input| {
    let source = Source::ALL[input.source as usize % 7];
    let secret = common::secret(source);
    let now = common::now();
    let mut headers = if input.sign_first {
        signature::sign(source, &secret, &input.body, now, "msg_fuzz").unwrap_or_default()
    } else {
        HeaderMap::new()
    };
    for (name, value) in &input.headers {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(HeaderName::from_static(NAMES[*name as usize % NAMES.len()]), value);
        }
    }
    let ring = [secret.clone()];
    if signature::Verifier::new(source, &ring).verify_at(&headers, &input.body, now).is_ok() {
        // It verified: the headers must carry the genuine signature of these exact bytes.
        let genuine = signature::sign(source, &secret, &input.body, now, "msg_fuzz").unwrap();
        let header = source.signature_header().expect("only signed sources verify");
        let presented = headers[header].to_str().unwrap().to_ascii_lowercase();
        let expected = genuine[header].to_str().unwrap();
        let digest = expected.rsplit(['=', ',']).next().unwrap().to_ascii_lowercase();
        let timestamps_differ = matches!(source, Source::Slack | Source::Webhook)
            && headers.get(if source == Source::Slack { "x-slack-request-timestamp" } else { "webhook-timestamp" })
                != genuine.get(if source == Source::Slack { "x-slack-request-timestamp" } else { "webhook-timestamp" });
        assert!(
            timestamps_differ || presented.contains(&digest),
            "{source}: verified without the genuine signature"
        );
    }
});
