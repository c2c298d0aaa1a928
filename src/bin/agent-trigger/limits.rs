//! How long a request may take and how many may be in flight, so that slow or hostile clients
//! cannot hold the server's memory or connections.
//!
//! - The request head must arrive within [`Limits::header_timeout`] (hyper closes the
//!   connection otherwise).
//! - A whole request, its body included, must be answered within [`Limits::request_timeout`]:
//!   `408 {"error"}` otherwise, and the connection is closed.
//! - At most [`Limits::max_in_flight`] requests are handled at once; a request that cannot get a
//!   place within its deadline gets `503 {"error"}` with `Retry-After`. With the body limit, this
//!   bounds the memory that request bodies can take.
//!
//! The environment can tighten or loosen them: `AGENT_TRIGGER_HEADER_TIMEOUT_SECS`,
//! `AGENT_TRIGGER_REQUEST_TIMEOUT_SECS`, `AGENT_TRIGGER_MAX_IN_FLIGHT`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::http::json_response;

/// The server's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
}

impl Limits {
    /// The defaults (10 s, 30 s, 512), or what the environment says.
    pub fn from_env() -> Result<Self, String> {
        fn read(name: &str, default: u64) -> Result<u64, String> {
            match std::env::var(name) {
                Ok(text) => match text.parse() {
                    Ok(value) if value > 0 => Ok(value),
                    _ => Err(format!(
                        "{name}={text:?}: a positive whole number is needed"
                    )),
                },
                Err(_) => Ok(default),
            }
        }
        Ok(Limits {
            header_timeout: Duration::from_secs(read("AGENT_TRIGGER_HEADER_TIMEOUT_SECS", 10)?),
            request_timeout: Duration::from_secs(read("AGENT_TRIGGER_REQUEST_TIMEOUT_SECS", 30)?),
            max_in_flight: read("AGENT_TRIGGER_MAX_IN_FLIGHT", 512)? as usize,
        })
    }
}

/// The state of [`enforce`].
#[derive(Clone)]
pub struct Gate {
    limits: Limits,
    places: Arc<Semaphore>,
}

impl Gate {
    pub fn new(limits: Limits) -> Self {
        Gate {
            limits,
            places: Arc::new(Semaphore::new(limits.max_in_flight)),
        }
    }
}

/// Middleware: a place among the requests in flight, then the answer within the deadline.
pub async fn enforce(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let deadline = tokio::time::Instant::now() + gate.limits.request_timeout;
    let place = match tokio::time::timeout_at(deadline, gate.places.acquire()).await {
        Ok(Ok(place)) => place,
        _ => return busy(),
    };
    let answer = tokio::time::timeout_at(deadline, next.run(request)).await;
    drop(place);
    answer.unwrap_or_else(|_| too_slow(gate.limits.request_timeout))
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
