//! The future returned by [`TriggerService`](super::TriggerService).

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use tracing::Span;

use crate::response::{Answer, ResponseBody};

type Running = Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send>>;

/// Response future of [`TriggerService`](super::TriggerService).
///
/// Answers found without I/O (405, 400, 404) are ready at once; the rest run the pipeline. A
/// panic anywhere in the pipeline, the store or the sink becomes a `500` for this request only.
pub struct ResponseFuture {
    state: State,
}

enum State {
    Ready(Option<Response<ResponseBody>>),
    /// The pipeline, and the delivery's span to enter on each poll (when anyone listens).
    Running(Running, Option<Span>),
}

impl ResponseFuture {
    pub(crate) fn ready(answer: Answer) -> Self {
        ResponseFuture {
            state: State::Ready(Some(answer.into_response())),
        }
    }

    pub(crate) fn running(future: Running, span: Option<Span>) -> Self {
        ResponseFuture {
            state: State::Running(future, span),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, std::convert::Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match &mut self.state {
            State::Ready(response) => response.take().expect("polled after completion"),
            State::Running(future, span) => {
                let _entered = span.as_ref().map(Span::enter);
                match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(response)) => response,
                    Err(panic) => {
                        let message = panic
                            .downcast_ref::<&str>()
                            .copied()
                            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                            .unwrap_or("a non-string payload");
                        tracing::error!(panic = message, "webhook delivery panicked");
                        Answer::Internal.into_response()
                    }
                }
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
