//! How long a request may take and how many may be in flight, so that slow or hostile clients
//! cannot hold the server's memory or connections.
//!
//! - At most [`Limits::max_connections`] connections are open at once; one more is closed as
//!   soon as it is accepted, so idle sockets cannot use up the process's file descriptors.
//! - A connection's first request head (protocol detection included, HTTP/1 and HTTP/2 alike)
//!   must arrive within [`Limits::header_timeout`] of its accept, and each later HTTP/1 head
//!   within the same time (hyper closes the connection otherwise). Idle HTTP/2 connections are
//!   pinged, and closed when a ping goes unanswered.
//! - A whole request, its body included, must be answered within [`Limits::request_timeout`]:
//!   `408 {"error"}` otherwise, and the connection is closed.
//! - At most [`Limits::max_in_flight`] requests are handled at once; one more is shed at once
//!   with `503 {"error"}` and `Retry-After`. With the body limit, this bounds the memory that
//!   request bodies can take.
//!
//! The last two are tower's own layers (`Timeout`, `GlobalConcurrencyLimit`, `LoadShed`); this
//! module reads their settings and words their answers.
//!
//! The environment can tighten or loosen them: `AGENT_TRIGGER_HEADER_TIMEOUT_SECS`,
//! `AGENT_TRIGGER_REQUEST_TIMEOUT_SECS`, `AGENT_TRIGGER_MAX_IN_FLIGHT`,
//! `AGENT_TRIGGER_MAX_CONNECTIONS`. Values past [`MAX_TIMEOUT_SECS`] or [`MAX_COUNT`] are
//! refused at start.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use crate::http::json_response;

/// The longest timeout the environment may set: a day.
pub const MAX_TIMEOUT_SECS: u64 = 24 * 60 * 60;
/// The most connections or requests in flight the environment may allow.
pub const MAX_COUNT: u64 = 1_000_000;

/// How often an idle HTTP/2 connection is pinged, and how long its answer may take.
pub const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
pub const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
    pub max_connections: usize,
}

impl Limits {
    /// The defaults (10 s, 30 s, 512 requests, 1024 connections), or what the environment
    /// says.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let read = |name: &str, default: u64, maximum: u64| match env(name) {
            Some(text) => match text.parse() {
                Ok(value) if (1..=maximum).contains(&value) => Ok(value),
                _ => Err(format!(
                    "{name}={text:?}: a whole number from 1 to {maximum} is needed"
                )),
            },
            None => Ok(default),
        };
        let seconds =
            |name, default| read(name, default, MAX_TIMEOUT_SECS).map(Duration::from_secs);
        // Within MAX_COUNT, which every usize holds.
        let count = |name, default| read(name, default, MAX_COUNT).map(|value| value as usize);
        Ok(Limits {
            header_timeout: seconds("AGENT_TRIGGER_HEADER_TIMEOUT_SECS", 10)?,
            request_timeout: seconds("AGENT_TRIGGER_REQUEST_TIMEOUT_SECS", 30)?,
            max_in_flight: count("AGENT_TRIGGER_MAX_IN_FLIGHT", 512)?,
            max_connections: count("AGENT_TRIGGER_MAX_CONNECTIONS", 1024)?,
        })
    }
}

/// What the limits answer when they stop a request: `408` when it was not done within its
/// deadline, `request_timeout` (and the connection is closed), `503` with `Retry-After` when
/// every place was taken.
pub async fn refusal(error: tower::BoxError, request_timeout: Duration) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        too_slow(request_timeout)
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        busy()
    } else {
        tracing::error!(%error, "request failed in the server's limits");
        json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "internal error"}),
        )
    }
}

fn busy() -> Response {
    let mut response = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"error": "too many requests in flight, retry later"}),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn too_slow(limit: Duration) -> Response {
    tracing::info!(
        timeout_secs = limit.as_secs(),
        "request not completed in time"
    );
    let message = format!("the request was not completed within {} s", limit.as_secs());
    let mut response = json_response(StatusCode::REQUEST_TIMEOUT, &json!({ "error": message }));
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pairs: &[(&str, &str)]) -> Result<Limits, String> {
        Limits::from_lookup(&|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn defaults_and_bounds() {
        let defaults = limits(&[]).unwrap();
        assert_eq!(defaults.header_timeout, Duration::from_secs(10));
        assert_eq!(defaults.max_connections, 1024);
        let set = limits(&[("AGENT_TRIGGER_MAX_CONNECTIONS", "8")]).unwrap();
        assert_eq!(set.max_connections, 8);
        for (name, value) in [
            ("AGENT_TRIGGER_REQUEST_TIMEOUT_SECS", "18446744073709551615"),
            ("AGENT_TRIGGER_REQUEST_TIMEOUT_SECS", "86401"),
            ("AGENT_TRIGGER_HEADER_TIMEOUT_SECS", "0"),
            ("AGENT_TRIGGER_MAX_IN_FLIGHT", "99999999999999999999999"),
            ("AGENT_TRIGGER_MAX_CONNECTIONS", "1000001"),
            ("AGENT_TRIGGER_MAX_CONNECTIONS", "-1"),
        ] {
            let error = limits(&[(name, value)]).unwrap_err();
            assert!(error.starts_with(name), "{error}");
        }
    }
}
