//! Turn incoming webhooks into agent executions.
//!
//! `agent-trigger` is the endpoint `POST /api/trigger/{source}/{triggerId}` as a tower
//! [`Service`](tower_service::Service): it authenticates the sender (a bearer API key, or the
//! sender's own signature), validates the request, recognises redeliveries, and hands one
//! [`Delivery`] per webhook to your [`ExecutionSink`], answering with an `executionId`, a skip
//! that says why, or an error. Keys and triggers come from your [`KeyStore`].
//!
//! Senders: Jira, Jira Automation, Slack, Linear, HackerOne, Bugcrowd, and anything that speaks
//! Standard Webhooks (see [`Source`]).
//!
//! # Mounting
//!
//! - [`TriggerService`] answers every request itself: mount it on a route
//!   (`axum::Router::route_service`, or `nest_service` with an empty prefix), or serve it
//!   directly with hyper.
//! - [`TriggerLayer`] puts the endpoint in front of an existing service: requests off the
//!   trigger route reach your app untouched.
//!
//! ```no_run
//! use agent_trigger::memory::{ChannelSink, MemoryKeyStore};
//! use agent_trigger::{ApiKeyRecord, Source, Trigger, TriggerService};
//! use axum::Router;
//! use uuid::Uuid;
//!
//! #[tokio::main]
//! async fn main() {
//!     let trigger_id = Uuid::now_v7();
//!     let store = MemoryKeyStore::new().with_trigger(Trigger::new(trigger_id, "acme", Source::Webhook));
//!     let key = store.generate_key(ApiKeyRecord::new("ci", "acme"));
//!     println!("API key (shown once): {}", key.expose());
//!
//!     let (sink, mut executions) = ChannelSink::new(1024);
//!     tokio::spawn(async move {
//!         while let Some(execution) = executions.recv().await {
//!             println!("execution {} for trigger {}", execution.id, execution.delivery.trigger_id);
//!         }
//!     });
//!
//!     let triggers = TriggerService::new(sink, store);
//!     let app = Router::new().route_service("/api/trigger/{source}/{trigger_id}", triggers);
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//!     axum::serve(listener, app).await.unwrap();
//! }
//! ```
//!
//! # What a request goes through
//!
//! In this order, each step answering or passing the request on: route (`404`), method
//! (`405`), path parameters (`400`), credentials (`401`), API key (`401`), trigger (`404`),
//! size (`413`), content type (`415`), signature (`401`), JSON (`400`), Slack's handshake,
//! disabled triggers and action filters (skipped, `200`), duplicates (the original id, `200`),
//! and the sink (`200`, or `503` with `Retry-After`, or `500`). No body is read before the
//! caller is authenticated or, for a signed request, before the trigger is known to have
//! secrets.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod body;
mod credentials;
mod delivery;
mod event;
mod form;
mod json;
mod key;
pub mod layer;
pub mod memory;
mod queue;
mod response;
mod route;
mod secret;
pub mod service;
pub mod signature;
mod sink;
mod source;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod store;
mod validation;

pub use crate::delivery::{Caller, Delivery, ExecutionId};
pub use crate::key::{API_KEY_PREFIX, ApiKey, InvalidDigest, KeyDigest, bearer_token};
pub use crate::layer::TriggerLayer;
pub use crate::queue::{
    ClaimedExecution, ExecutionQueue, ExecutionRecord, ExecutionResult, ExecutionStatus,
    UnknownStatus,
};
pub use crate::response::ResponseBody;
pub use crate::secret::{SecretError, SigningSecret};
pub use crate::service::{TriggerService, TriggerServiceBuilder};
pub use crate::signature::SignatureError;
pub use crate::sink::{ExecutionSink, Outcome, SinkError};
pub use crate::source::{Source, UnknownSource};
pub use crate::store::{ActionAllowlist, ApiKeyRecord, KeyScope, KeyStore, StoreError, Trigger};

/// The boxed error type used for causes from host code and request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
