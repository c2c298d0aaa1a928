#![doc = include_str!("lib.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod authorize;
mod body;
pub mod concurrency;
mod credentials;
pub mod deliveries;
mod delivery;
mod event;
mod form;
mod json;
mod key;
pub mod layer;
pub mod memory;
pub mod openapi;
pub mod queue;
mod response;
mod route;
pub mod rules;
mod secret;
pub mod service;
pub mod signature;
mod sink;
mod source;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
mod store;
pub mod telemetry;
mod validation;

pub use crate::authorize::{AuthorizeError, authorize};
pub use crate::delivery::{Caller, Delivery, ExecutionId};
pub use crate::key::{API_KEY_PREFIX, ApiKey, InvalidDigest, KeyDigest, bearer_token};
pub use crate::layer::TriggerLayer;
pub use crate::response::ResponseBody;
pub use crate::secret::{SecretError, SigningSecret};
pub use crate::service::{TriggerService, TriggerServiceBuilder};
pub use crate::signature::{SignatureError, SignatureScheme};
pub use crate::sink::{ExecutionSink, Outcome, SinkError};
pub use crate::source::{Source, UnknownSource};
pub use crate::store::{
    ActionAllowlist, ApiKeyRecord, KeyScope, KeyStore, Right, StoreError, Trigger, UnknownRight,
};

/// The boxed error type used for causes from host code and request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The README's Rust examples, compiled as doctests so that the front door stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
