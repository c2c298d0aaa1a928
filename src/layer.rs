//! [`TriggerLayer`]: the trigger endpoint in front of an existing service.
//!
//! Requests on the trigger route are answered by the [`TriggerService`]; every other request
//! reaches the inner service untouched.
//!
//! # Example
//!
//! ```
//! use agent_trigger::memory::{ChannelSink, MemoryKeyStore};
//! use agent_trigger::{TriggerLayer, TriggerService};
//! use axum::{Router, routing::get};
//!
//! let (sink, _executions) = ChannelSink::new(1024);
//! let triggers = TriggerService::new(sink, MemoryKeyStore::new());
//! let app: Router = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .layer(TriggerLayer::new(triggers));
//! # drop(app);
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use http_body_util::Either;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::response::ResponseBody;
use crate::service::{Dispatch, ResponseFuture as TriggerFuture};
use crate::{BoxError, ExecutionSink, KeyStore, TriggerService};

/// Mounts a [`TriggerService`] in front of an inner service; see the [module docs](self).
pub struct TriggerLayer<E, A> {
    triggers: TriggerService<E, A>,
}

impl<E, A> TriggerLayer<E, A> {
    /// The layer for this service (its prefix decides which requests it takes).
    pub fn new(triggers: TriggerService<E, A>) -> Self {
        TriggerLayer { triggers }
    }
}

impl<E, A> Clone for TriggerLayer<E, A> {
    fn clone(&self) -> Self {
        TriggerLayer {
            triggers: self.triggers.clone(),
        }
    }
}

impl<E, A> fmt::Debug for TriggerLayer<E, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TriggerLayer").finish_non_exhaustive()
    }
}

impl<S, E, A> Layer<S> for TriggerLayer<E, A> {
    type Service = TriggerMiddleware<S, E, A>;

    fn layer(&self, inner: S) -> Self::Service {
        TriggerMiddleware {
            inner,
            triggers: self.triggers.clone(),
        }
    }
}

/// The service made by [`TriggerLayer`]: the trigger route, else the inner service.
///
/// Readiness is the inner service's: it is polled ready before every request, and called only
/// for requests off the trigger route.
pub struct TriggerMiddleware<S, E, A> {
    inner: S,
    triggers: TriggerService<E, A>,
}

impl<S: Clone, E, A> Clone for TriggerMiddleware<S, E, A> {
    fn clone(&self) -> Self {
        TriggerMiddleware {
            inner: self.inner.clone(),
            triggers: self.triggers.clone(),
        }
    }
}

impl<S: fmt::Debug, E, A> fmt::Debug for TriggerMiddleware<S, E, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TriggerMiddleware")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, E, A, B, ResBody> Service<Request<B>> for TriggerMiddleware<S, E, A>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    E: ExecutionSink,
    A: KeyStore,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Either<ResBody, ResponseBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let kind = match self.triggers.dispatch(request) {
            Dispatch::Ours(trigger) => Kind::Trigger { future: trigger },
            Dispatch::Elsewhere(request) => Kind::Inner {
                future: self.inner.call(request),
            },
        };
        ResponseFuture { kind }
    }
}

pin_project! {
    /// Response future of [`TriggerMiddleware`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Trigger { future: TriggerFuture },
    }
}

impl<F, ResBody, Error> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, Error>>,
{
    type Output = Result<Response<Either<ResBody, ResponseBody>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(Either::Left))),
            KindProj::Trigger { future } => Pin::new(future).poll(cx).map(|result| {
                let response = match result {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok(response.map(Either::Right))
            }),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
