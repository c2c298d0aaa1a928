//! Slack form bodies (slash commands, interactivity) with the bearer key: decoded into JSON
//! input or refused with a 400, never anything else.
#![no_main]

use agent_trigger::Source;
use agent_trigger_fuzz as common;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let request = Request::post(format!("/api/trigger/slack/{}", common::trigger_id(Source::Slack)))
        .header("authorization", format!("Bearer {}", common::KEY))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let (status, json) = common::send(request);
    assert!(status == 200 || status == 400, "{status}: {json}");
});
