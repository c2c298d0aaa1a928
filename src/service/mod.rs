//! [`TriggerService`]: the endpoint `POST {prefix}/{source}/{triggerId}` as a tower `Service`.
//!
//! It answers every request itself: deliveries go through the pipeline, anything off its route
//! gets a JSON `404`. To serve it beside other routes, mount it with your framework's router or
//! put a [`TriggerLayer`](crate::TriggerLayer) in front of the rest of your app.
//!
//! # Example
//!
//! ```
//! use agent_trigger::memory::{ChannelSink, MemoryKeyStore};
//! use agent_trigger::{ApiKeyRecord, Source, Trigger, TriggerService};
//! use http::{Request, StatusCode};
//! use http_body_util::Full;
//! use tower::ServiceExt;
//! use uuid::Uuid;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let trigger_id = Uuid::now_v7();
//! let store = MemoryKeyStore::new().with_trigger(Trigger::new(trigger_id, "acme", Source::Webhook));
//! let key = store.generate_key(ApiKeyRecord::new("ci", "acme"));
//! let (sink, mut executions) = ChannelSink::new(64);
//! let service = TriggerService::builder(sink, store).build();
//!
//! let request = Request::post(format!("/api/trigger/webhook/{trigger_id}"))
//!     .header("authorization", format!("Bearer {}", key.expose()))
//!     .header("content-type", "application/json")
//!     .body(Full::new(bytes::Bytes::from_static(br#"{"type":"deploy"}"#)))
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let execution = executions.recv().await.unwrap();
//! assert_eq!(execution.delivery.action.as_deref(), Some("deploy"));
//! # }
//! ```

mod future;
pub(crate) mod pipeline;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

pub use self::future::ResponseFuture;
use self::pipeline::{Routing, Settings, Shared};
use crate::deliveries::DeliveryObserver;
use crate::response::{Answer, ResponseBody};
use crate::route::Prefix;
use crate::telemetry::DeliveryTelemetry;
use crate::{ApiKeyRecord, BoxError, ExecutionSink, KeyStore};

/// The default path prefix.
pub const DEFAULT_PREFIX: &str = "/api/trigger";
/// The default body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// The default time the store and the sink each have to answer.
pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `Retry-After` when a backend did not answer in time.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The webhook endpoint as a tower `Service`; see the [module docs](self) for an example.
///
/// Always ready, `Error = Infallible`, cheap to clone (one `Arc`), and generic over any request
/// body. Store and sink calls need a tokio runtime with its timer enabled.
pub struct TriggerService<E, A> {
    shared: Arc<Shared<E, A>>,
}

impl<E, A> Clone for TriggerService<E, A> {
    fn clone(&self) -> Self {
        TriggerService {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E: fmt::Debug, A: fmt::Debug> fmt::Debug for TriggerService<E, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TriggerService")
            .field("sink", &self.shared.sink)
            .field("store", &self.shared.store)
            .field("prefix", &self.shared.settings.prefix.as_str())
            .field("body_limit", &self.shared.settings.body_limit)
            .finish()
    }
}

impl<E: ExecutionSink, A: KeyStore> TriggerService<E, A> {
    /// A service with the default settings.
    pub fn new(sink: E, store: A) -> Self {
        Self::builder(sink, store).build()
    }

    /// A builder to tune the prefix, body limit and timeouts.
    pub fn builder(sink: E, store: A) -> TriggerServiceBuilder<E, A> {
        TriggerServiceBuilder {
            sink,
            store,
            settings: Settings {
                prefix: Prefix::default(),
                body_limit: DEFAULT_BODY_LIMIT,
                backend_timeout: DEFAULT_BACKEND_TIMEOUT,
                retry_after: DEFAULT_RETRY_AFTER,
            },
            observer: None,
        }
    }

    /// The sink deliveries go to.
    pub fn sink(&self) -> &E {
        &self.shared.sink
    }

    /// The store keys and triggers come from.
    pub fn store(&self) -> &A {
        &self.shared.store
    }

    /// The request's response future when the path is this service's route, or the request
    /// back, untouched, when it is not.
    pub(crate) fn dispatch<B>(&self, request: Request<B>) -> Dispatch<B>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        match pipeline::route(
            &self.shared.settings,
            request.method(),
            request.uri().path(),
        ) {
            Routing::Elsewhere => Dispatch::Elsewhere(request),
            Routing::Answer(answer) => Dispatch::Ours(ResponseFuture::ready(
                answer,
                request.into_parts().0.headers,
            )),
            Routing::Deliver { source, trigger_id } => {
                Dispatch::Ours(self.deliver(request, source, trigger_id, None))
            }
        }
    }

    /// Runs `request`, a `POST` to this service's route, as a new delivery of `key`: no
    /// credentials are read, no signature is checked and no delivery id is taken, so it is
    /// never taken for a repeat of an earlier one. The caller has checked that `key` may do
    /// this (the standalone server: the `operate` right, to redeliver a logged delivery); the
    /// trigger must be of the key's tenant and within its scope, or the answer is `404`. It
    /// counts against the trigger's rate, and is answered and observed as the endpoint would.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agent_trigger::memory::{ChannelSink, MemoryKeyStore};
    /// use agent_trigger::{ApiKeyRecord, Source, Trigger, TriggerService};
    /// use http::{Request, StatusCode};
    /// use http_body_util::Full;
    /// use uuid::Uuid;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let trigger_id = Uuid::now_v7();
    /// let store = MemoryKeyStore::new().with_trigger(Trigger::new(trigger_id, "acme", Source::Jira));
    /// let (sink, mut executions) = ChannelSink::new(8);
    /// let service = TriggerService::new(sink, store);
    /// let operator = Arc::new(ApiKeyRecord::new("ops", "acme"));
    /// let request = Request::post(format!("/api/trigger/jira/{trigger_id}"))
    ///     .header("content-type", "application/json")
    ///     .header("x-atlassian-webhook-identifier", "delivery-1")
    ///     .body(Full::new(bytes::Bytes::from_static(br#"{"webhookEvent":"jira:issue_created"}"#)))
    ///     .unwrap();
    /// let response = service.deliver_as(operator, request).await.unwrap();
    /// assert_eq!(response.status(), StatusCode::OK);
    /// let execution = executions.recv().await.unwrap();
    /// assert_eq!(execution.delivery.delivery_id, None);
    /// # }
    /// ```
    pub fn deliver_as<B>(&self, key: Arc<ApiKeyRecord>, request: Request<B>) -> ResponseFuture
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        match pipeline::route(
            &self.shared.settings,
            request.method(),
            request.uri().path(),
        ) {
            Routing::Elsewhere => {
                ResponseFuture::ready(Answer::NotFound, request.into_parts().0.headers)
            }
            Routing::Answer(answer) => {
                ResponseFuture::ready(answer, request.into_parts().0.headers)
            }
            Routing::Deliver { source, trigger_id } => {
                self.deliver(request, source, trigger_id, Some(key))
            }
        }
    }

    /// The pipeline from *credentials* on, for a request routed to `trigger_id`.
    fn deliver<B>(
        &self,
        request: Request<B>,
        source: crate::Source,
        trigger_id: uuid::Uuid,
        operator: Option<Arc<ApiKeyRecord>>,
    ) -> ResponseFuture
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let shared = Arc::clone(&self.shared);
        // Only the headers are read from here on, and the extensions are handed to the
        // sink; the rest of the request head is dropped now rather than carried in the
        // future.
        let (parts, body) = request.into_parts();
        // The query is kept only where a scheme may sign the URL.
        let target = if source.takes_any_scheme() {
            parts.uri.into_parts().path_and_query
        } else {
            None
        };
        let telemetry = DeliveryTelemetry::start(source, trigger_id);
        let mut record = telemetry.record();
        if let Some(observer) = &self.shared.observer {
            record.observed_by(observer);
        }
        let pipeline = pipeline::accept(
            shared,
            parts.headers,
            parts.extensions,
            target,
            body,
            source,
            trigger_id,
            record,
            operator,
        );
        ResponseFuture::running(Box::pin(pipeline), telemetry)
    }
}

impl<E, A, B> Service<Request<B>> for TriggerService<E, A>
where
    E: ExecutionSink,
    A: KeyStore,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.dispatch(request) {
            Dispatch::Ours(future) => future,
            Dispatch::Elsewhere(request) => {
                ResponseFuture::ready(Answer::NotFound, request.into_parts().0.headers)
            }
        }
    }
}

/// Whose request it is: this service's, already under way, or someone else's, untouched.
pub(crate) enum Dispatch<B> {
    Ours(ResponseFuture),
    Elsewhere(Request<B>),
}

/// Builds a [`TriggerService`]; from [`TriggerService::builder`].
///
/// ```
/// use std::time::Duration;
/// use agent_trigger::memory::{ChannelSink, MemoryKeyStore};
/// use agent_trigger::TriggerService;
///
/// let (sink, _executions) = ChannelSink::new(1024);
/// let service = TriggerService::builder(sink, MemoryKeyStore::new())
///     .prefix("/hooks")                    // or "" under axum's nest_service
///     .body_limit(256 * 1024)
///     .backend_timeout(Duration::from_secs(2))
///     .retry_after(Duration::from_secs(10))
///     .build();
/// # drop(service);
/// ```
pub struct TriggerServiceBuilder<E, A> {
    sink: E,
    store: A,
    settings: Settings,
    observer: Option<Arc<dyn DeliveryObserver>>,
}

impl<E: ExecutionSink, A: KeyStore> TriggerServiceBuilder<E, A> {
    /// The path prefix before `/{source}/{triggerId}`; default `/api/trigger`. Leading and
    /// trailing slashes are normalised; `""` serves `/{source}/{triggerId}`, which is what a
    /// router that strips its own prefix (axum's `nest_service`) hands on.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.settings.prefix = Prefix::new(prefix);
        self
    }

    /// The largest body accepted, in bytes; default 1 MiB. Larger ones get `413`.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.settings.body_limit = bytes;
        self
    }

    /// How long the store and the sink each have to answer before the request gets `503`;
    /// default 10 s.
    pub fn backend_timeout(mut self, timeout: Duration) -> Self {
        self.settings.backend_timeout = timeout;
        self
    }

    /// The `Retry-After` sent when a backend did not answer in time; default 5 s. (A sink that
    /// reports itself unavailable says its own.)
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.settings.retry_after = delay;
        self
    }

    /// Tells `observer` of each delivery that reached a trigger its caller may see, once it
    /// is answered: the deliveries log (see [`deliveries`](crate::deliveries) for an example).
    /// None by default, and then no record is built.
    pub fn observer(mut self, observer: impl DeliveryObserver) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The service.
    pub fn build(self) -> TriggerService<E, A> {
        TriggerService {
            shared: Arc::new(Shared {
                sink: self.sink,
                store: self.store,
                settings: self.settings,
                observer: self.observer,
            }),
        }
    }
}

impl<E, A> fmt::Debug for TriggerServiceBuilder<E, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TriggerServiceBuilder")
            .field("settings", &self.settings)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}
