//! Route, method and path-parameter parsing: any path and method gets a contract answer, and a
//! 400 lists one zod issue per bad parameter.
#![no_main]

use agent_trigger_fuzz as common;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, &str)| {
    let (post, path) = input;
    let Ok(request) = Request::builder()
        .method(if post { "POST" } else { "GET" })
        .uri(path)
        .body(Full::new(Bytes::new()))
    else {
        return;
    };
    let (status, json) = common::send(request);
    if status == 400 {
        let issues = json["issues"].as_array().unwrap();
        assert!((1..=2).contains(&issues.len()), "{json}");
        for issue in issues {
            assert!(issue["code"].is_string() && issue["message"].is_string() && issue["path"].is_array(), "{json}");
        }
    }
});
