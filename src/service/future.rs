//! The future returned by [`TriggerService`](super::TriggerService).

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Response};

use crate::response::{Answer, ResponseBody};
use crate::telemetry::{DeliveryRecord, DeliveryTelemetry};

/// The pipeline's steps from credentials to sink: the answer, and the request's header map to
/// write it into.
type Running = Pin<Box<dyn Future<Output = (Answer, HeaderMap, DeliveryRecord)> + Send>>;

/// Response future of [`TriggerService`](super::TriggerService).
///
/// Answers found without I/O (405, 400, 404) are ready at once; the rest run the pipeline. A
/// panic anywhere in the pipeline, the store or the sink becomes a `500` for this request only.
pub struct ResponseFuture {
    state: State,
}

enum State {
    Ready(Option<Response<ResponseBody>>),
    /// The pipeline, polled inside the delivery's span, which the answer then closes.
    Running(Running, DeliveryTelemetry),
}

impl ResponseFuture {
    /// An answer found at once, written into the request's header map (see
    /// [`Answer::into_response`]).
    pub(crate) fn ready(answer: Answer, headers: HeaderMap) -> Self {
        ResponseFuture {
            state: State::Ready(Some(answer.into_response(headers))),
        }
    }

    pub(crate) fn running(pipeline: Running, telemetry: DeliveryTelemetry) -> Self {
        ResponseFuture {
            state: State::Running(pipeline, telemetry),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, std::convert::Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match &mut self.state {
            State::Ready(response) => response.take().expect("polled after completion"),
            State::Running(pipeline, telemetry) => {
                let _entered = telemetry.enter();
                let (answer, headers, mut record) =
                    match catch_unwind(AssertUnwindSafe(|| pipeline.as_mut().poll(cx))) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(finished)) => finished,
                        Err(panic) => {
                            let message = panic
                                .downcast_ref::<&str>()
                                .copied()
                                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                                .unwrap_or("a non-string payload");
                            tracing::error!(panic = message, "webhook delivery panicked");
                            (Answer::Internal, HeaderMap::new(), telemetry.record())
                        }
                    };
                // The answer stands even if a subscriber or recorder panics on the record: the
                // delivery may already have started an execution.
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    telemetry.finish(&answer, &record);
                    record.observe(&answer);
                }));
                answer.into_response(headers)
            }
        };
        self.state = State::Ready(None);
        Poll::Ready(Ok(response))
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Ready(Some(_)) => "ready",
            State::Ready(None) => "done",
            State::Running(..) => "running",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
