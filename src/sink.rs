//! The host's executor, behind the [`ExecutionSink`] trait.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{BoxError, Delivery, ExecutionId};

#[doc = include_str!("sink.md")]
pub trait ExecutionSink: Send + Sync + 'static {
    /// Takes one delivery. A `Started` or `Replayed` answer is an acknowledgement: the sender
    /// gets a `200` and will not retry, so a durable sink must have kept the execution first.
    fn submit(&self, delivery: Delivery)
    -> impl Future<Output = Result<Outcome, SinkError>> + Send;
}

impl<S: ExecutionSink> ExecutionSink for Arc<S> {
    fn submit(
        &self,
        delivery: Delivery,
    ) -> impl Future<Output = Result<Outcome, SinkError>> + Send {
        (**self).submit(delivery)
    }
}

/// What became of a delivery the sink took.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A new execution: `200 {"executionId": id}`.
    Started(ExecutionId),
    /// A redelivery of one already accepted: `200 {"executionId": original}` with
    /// `Idempotent-Replayed: true`.
    Replayed(ExecutionId),
    /// The delivery joined an execution of its [`Subject`](crate::concurrency::Subject) that is
    /// still waiting out its debounce: `200 {"executionId": id}`, without
    /// `Idempotent-Replayed` (it is a new delivery, not a copy); counted as `joined`.
    Joined(ExecutionId),
    /// Nothing to do: `200 {"executionId":"skipped","message","action"}`.
    Skipped {
        /// Why it was skipped.
        message: String,
        /// The action that caused the skip, if there was one.
        action: Option<String>,
    },
    /// A permanent refusal that a retry cannot fix: `200 {"error": message}`, so that the
    /// sender stops retrying. The message reaches the caller.
    Rejected(String),
}

/// A sink that could not take the delivery.
#[derive(Debug)]
#[non_exhaustive]
pub enum SinkError {
    /// Overloaded or temporarily down: `503` with `Retry-After`.
    Unavailable {
        /// How long the sender should wait before retrying.
        retry_after: Duration,
    },
    /// Anything else: `500 {"error":"internal error"}`; the cause goes to the log only.
    Internal(BoxError),
}

impl SinkError {
    /// Wraps an internal failure.
    pub fn internal(cause: impl Into<BoxError>) -> Self {
        SinkError::Internal(cause.into())
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Unavailable { retry_after } => write!(
                f,
                "execution sink unavailable, retry after {} s",
                retry_after.as_secs()
            ),
            SinkError::Internal(cause) => write!(f, "execution sink failure: {cause}"),
        }
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SinkError::Internal(cause) => Some(&**cause),
            SinkError::Unavailable { .. } => None,
        }
    }
}
