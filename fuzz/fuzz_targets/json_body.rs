//! The JSON validator against the reference (serde_json's grammar with numbers of any size, and
//! no field the pipeline reads twice in one object): a body is accepted exactly when the
//! reference accepts it (nesting within 128), and an accepted body reaches the sink unchanged.
#![no_main]

use agent_trigger::Source;
use agent_trigger_fuzz as common;
use agent_trigger_testkit::json_reference as reference;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

/// The fields jira-automation reads from the body: its action.
const PICKED: &[&[&str]] = &[&["webhookEvent"], &["action"]];

/// The deepest nesting in a JSON text that serde_json parsed, counted outside strings.
fn depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in text {
        match (in_string, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (false, _, b'"') => in_string = true,
            (false, _, b'[' | b'{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fuzz_target!(|body: &[u8]| {
    if body.is_empty() {
        return; // An empty body is the input `null` by contract.
    }
    let request = Request::post(format!("/api/trigger/jira-automation/{}", common::trigger_id(Source::JiraAutomation)))
        .header("authorization", format!("Bearer {}", common::KEY))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let (status, json) = common::send(request);
    // Deeper than 128 is refused by contract; within it, the reference says.
    let reference_accepts = depth(body) <= 128 && reference::accepts(body, PICKED);
    match status.as_u16() {
        200 => assert!(reference_accepts, "accepted what the reference refuses: {:?}", String::from_utf8_lossy(body)),
        400 => {
            assert!(!reference_accepts, "refused what the reference accepts: {:?}", String::from_utf8_lossy(body));
            assert_eq!(json["issues"][0]["code"], "invalid_json");
        }
        other => panic!("unexpected {other}: {json}"),
    }
});
