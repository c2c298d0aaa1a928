//! The Authorization header: any bytes parse without panicking, and only the exact key is let in.
#![no_main]

use agent_trigger::Source;
use agent_trigger_fuzz as common;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("authorization", value.clone());
    let token = agent_trigger::bearer_token(&headers).map(str::to_owned);
    let request = Request::post(format!("/api/trigger/jira/{}", common::trigger_id(Source::Jira)))
        .header("authorization", value)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let (status, json) = common::send(request);
    if common::executed(status, &json) {
        assert_eq!(token.as_deref(), Some(common::KEY));
    }
});
