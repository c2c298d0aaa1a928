//! The whole service with arbitrary methods, paths, headers and bodies. No panic; every status
//! one the contract names; every body JSON of the contract's shape; a 200 with an execution id
//! only for the valid key or a valid signature (the fuzzer cannot forge an HMAC).
#![no_main]

use agent_trigger_fuzz as common;
use arbitrary::Arbitrary;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    source: u8,
    use_known_trigger: bool,
    raw_path: Option<String>,
    send_key: bool,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

const METHODS: [&str; 5] = ["POST", "GET", "PUT", "DELETE", "OPTIONS"];

fuzz_target!(|input: Input| {
    let source = agent_trigger::Source::ALL[input.source as usize % 7];
    let path = match &input.raw_path {
        Some(raw) if !input.use_known_trigger => format!("/api/trigger/{raw}"),
        _ => format!("/api/trigger/{}/{}", source.as_str(), common::trigger_id(source)),
    };
    let Ok(mut request) = Request::builder()
        .method(METHODS[input.method as usize % METHODS.len()])
        .uri(path)
        .body(Full::new(Bytes::from(input.body.clone())))
    else {
        return;
    };
    let mut forged_authorization = false;
    for (name, value) in &input.headers {
        let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_bytes(value)) else {
            continue;
        };
        forged_authorization |= name == http::header::AUTHORIZATION && value.as_bytes().ends_with(common::KEY.as_bytes());
        request.headers_mut().append(name, value);
    }
    if input.send_key {
        request.headers_mut().insert("authorization", format!("Bearer {}", common::KEY).parse().unwrap());
    }
    let has_key = input.send_key || forged_authorization;
    let (status, json) = common::send(request);
    if common::executed(status, &json) {
        assert!(has_key, "an execution started without the key: {json}");
    }
});
