//! Shared test fixtures: a service over in-memory stores, request builders, and sinks and
//! bodies that misbehave on purpose. Helpers that need none of the crate's types live in
//! `agent-trigger-testkit`.
//!
//! Each test declares this module `pub mod common;`: its items are then the test crate's
//! exports, so those one test leaves unused are not dead code.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use agent_trigger::memory::{ChannelSink, Execution, MemoryKeyStore};
use agent_trigger::{
    ApiKey, ApiKeyRecord, Delivery, ExecutionId, ExecutionSink, KeyStore, Outcome, SigningSecret,
    SinkError, Source, Trigger, TriggerService,
};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::sync::mpsc;
use tower::ServiceExt;
use uuid::Uuid;

#[cfg(feature = "postgres")]
pub mod fault;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "postgres")]
pub mod postgres;

pub const TENANT: &str = "acme";

/// A typical Jira delivery.
pub const JIRA_BODY: &str = r#"{"webhookEvent":"jira:issue_created","issue":{"key":"SEC-1"}}"#;

/// The signing secret of every signed fixture trigger, by source.
pub fn secret_for(source: Source) -> SigningSecret {
    let value = match source {
        Source::Webhook => "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        _ => "fixture-signing-secret",
    };
    SigningSecret::new("2026-11", value).unwrap()
}

/// The headers `source` would send with `body` now, signed with its fixture secret.
pub fn signed_now(source: Source, body: &[u8]) -> http::HeaderMap {
    agent_trigger::signature::sign(
        source,
        &secret_for(source),
        body,
        std::time::SystemTime::now(),
        "msg_1",
    )
    .unwrap()
}

/// A Jira delivery of [`JIRA_BODY`] with `delivery_id`, signed now with the fixture secret: a
/// copy of it is byte for byte what a sender's redelivery would be (Jira signs no timestamp).
pub fn signed_jira(trigger_id: Uuid, delivery_id: &str) -> Request<Full<Bytes>> {
    let mut request = Request::post(format!("/api/trigger/jira/{trigger_id}"))
        .header("x-atlassian-webhook-identifier", delivery_id)
        .body(full(JIRA_BODY))
        .unwrap();
    request
        .headers_mut()
        .extend(signed_now(Source::Jira, JIRA_BODY.as_bytes()));
    request
}

/// One tenant with one trigger per source (signed where the source signs) and one key.
pub struct Fixture {
    pub store: Arc<MemoryKeyStore>,
    pub key: ApiKey,
    pub triggers: Vec<(Source, Uuid)>,
}

impl Fixture {
    pub fn new() -> Self {
        let store = Arc::new(MemoryKeyStore::new());
        let mut triggers = Vec::new();
        for source in Source::ALL {
            let id = Uuid::now_v7();
            let mut trigger = Trigger::new(id, TENANT, source);
            if source.is_signed() {
                trigger = trigger.with_secret(secret_for(source));
            }
            store.insert_trigger(trigger);
            triggers.push((source, id));
        }
        let key = store.generate_key(ApiKeyRecord::new("ci", TENANT));
        Fixture {
            store,
            key,
            triggers,
        }
    }

    pub fn trigger(&self, source: Source) -> Uuid {
        self.triggers.iter().find(|(s, _)| *s == source).unwrap().1
    }

    pub fn path(&self, source: Source) -> String {
        format!("/api/trigger/{}/{}", source, self.trigger(source))
    }

    /// The service over a channel sink, and the channel's receiver.
    pub fn channel_service(
        &self,
    ) -> (
        TriggerService<ChannelSink, Arc<MemoryKeyStore>>,
        mpsc::Receiver<Execution>,
    ) {
        let (sink, executions) = ChannelSink::new(1024);
        (
            TriggerService::new(sink, Arc::clone(&self.store)),
            executions,
        )
    }

    pub fn service_with<E: ExecutionSink>(
        &self,
        sink: E,
    ) -> TriggerService<E, Arc<MemoryKeyStore>> {
        TriggerService::builder(sink, Arc::clone(&self.store))
            .backend_timeout(Duration::from_millis(200))
            .retry_after(Duration::from_secs(7))
            .build()
    }

    /// A POST of `body` to `source`'s trigger with the bearer key, ready to send.
    pub fn bearer_request(&self, source: Source, body: &'static str) -> Request<Full<Bytes>> {
        self.bearer(source, body).body(full(body)).unwrap()
    }

    /// A POST to `source`'s trigger with the bearer key and a JSON body.
    pub fn bearer(&self, source: Source, body: &str) -> http::request::Builder {
        Request::post(self.path(source))
            .header("authorization", format!("Bearer {}", self.key.expose()))
            .header("content-type", "application/json")
            .header("content-length", body.len())
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

/// A full body.
pub fn full(body: impl Into<Bytes>) -> Full<Bytes> {
    Full::new(body.into())
}

/// What came back, with the body parsed as JSON (every answer must be JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

/// Every header an answer may carry.
const ANSWER_HEADERS: [&str; 6] = [
    "content-type",
    "cache-control",
    "allow",
    "www-authenticate",
    "idempotent-replayed",
    "retry-after",
];

pub async fn send<S, B>(service: S, request: Request<B>) -> Answer
where
    S: tower::Service<Request<B>, Response = http::Response<Full<Bytes>>, Error = Infallible>,
{
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|error| panic!("body is not JSON ({error}): {bytes:?}"));
    assert_eq!(parts.headers["content-type"], "application/json");
    assert_eq!(parts.headers["cache-control"], "no-store");
    // The answer is written into the request's own header map: none of the request's headers
    // may be left in it, and each of the answer's appears once.
    for name in parts.headers.keys() {
        assert!(
            ANSWER_HEADERS.contains(&name.as_str()),
            "the answer carries {name:?}, which no answer sends"
        );
        assert_eq!(
            parts.headers.get_all(name).iter().count(),
            1,
            "{name:?} repeated"
        );
    }
    Answer {
        status: parts.status,
        headers: parts.headers,
        json,
    }
}

/// A body that records whether anyone read it.
pub struct WatchedBody {
    inner: Full<Bytes>,
    pub read: Arc<AtomicBool>,
}

impl WatchedBody {
    pub fn new(body: impl Into<Bytes>) -> (Self, Arc<AtomicBool>) {
        let read = Arc::new(AtomicBool::new(false));
        let body = WatchedBody {
            inner: Full::new(body.into()),
            read: Arc::clone(&read),
        };
        (body, read)
    }
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.read.store(true, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body streamed in chunks with no length known in advance.
pub struct StreamedBody {
    chunks: std::collections::VecDeque<Bytes>,
}

impl StreamedBody {
    pub fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        StreamedBody {
            chunks: chunks.into_iter().collect(),
        }
    }
}

impl Body for StreamedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunks.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// A sink that answers with whatever the test says, counting calls.
pub struct ScriptedSink<F> {
    pub calls: AtomicUsize,
    script: F,
}

impl<F> ScriptedSink<F>
where
    F: Fn(Delivery) -> Result<Outcome, SinkError> + Send + Sync + 'static,
{
    pub fn new(script: F) -> Self {
        ScriptedSink {
            calls: AtomicUsize::new(0),
            script,
        }
    }
}

impl<F> ExecutionSink for ScriptedSink<F>
where
    F: Fn(Delivery) -> Result<Outcome, SinkError> + Send + Sync + 'static,
{
    async fn submit(&self, delivery: Delivery) -> Result<Outcome, SinkError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        (self.script)(delivery)
    }
}

/// A sink that never answers.
pub struct HangingSink;

impl ExecutionSink for HangingSink {
    async fn submit(&self, _delivery: Delivery) -> Result<Outcome, SinkError> {
        std::future::pending().await
    }
}

/// A sink that starts everything.
pub fn accepting() -> ScriptedSink<impl Fn(Delivery) -> Result<Outcome, SinkError> + Send + Sync> {
    ScriptedSink::new(|_| Ok(Outcome::Started(ExecutionId::new_v7())))
}

/// A key store whose every lookup fails, fails as a store that is away (a database
/// restarting), or hangs.
pub enum BrokenStore {
    Failing,
    Away,
    Hanging,
}

impl KeyStore for BrokenStore {
    async fn api_key(
        &self,
        _digest: agent_trigger::KeyDigest,
    ) -> Result<Option<Arc<ApiKeyRecord>>, agent_trigger::StoreError> {
        match self {
            BrokenStore::Failing => Err(agent_trigger::StoreError::new("disk on fire")),
            BrokenStore::Away => Err(agent_trigger::StoreError::unavailable("connection reset")),
            BrokenStore::Hanging => std::future::pending().await,
        }
    }

    async fn trigger(&self, _id: Uuid) -> Result<Option<Arc<Trigger>>, agent_trigger::StoreError> {
        match self {
            BrokenStore::Failing => Err(agent_trigger::StoreError::new("disk on fire")),
            BrokenStore::Away => Err(agent_trigger::StoreError::unavailable("connection reset")),
            BrokenStore::Hanging => std::future::pending().await,
        }
    }
}

/// A `jira:issue_created` delivery of tenant `acme` by the bearer key `ci`, as a sink gets it.
pub fn key_delivery(trigger_id: Uuid, delivery_id: Option<&str>, input: &'static str) -> Delivery {
    let mut delivery = Delivery::new(
        Source::Jira,
        trigger_id,
        TENANT.into(),
        agent_trigger::Caller::ApiKey {
            key_id: "ci".into(),
            tenant: TENANT.into(),
        },
        Bytes::from_static(input.as_bytes()),
    );
    delivery.delivery_id = delivery_id.map(Into::into);
    delivery.action = Some("jira:issue_created".into());
    delivery
}

/// Sends `copies` copies of one delivery at once, spread over `instances` (sinks sharing one
/// backend), `rounds` times over; each round must start exactly one execution and every copy
/// must name it. Returns the executions started.
pub async fn copies_start_one<S: ExecutionSink + Clone>(
    instances: &[S],
    rounds: usize,
    copies: usize,
) -> Vec<ExecutionId> {
    let trigger = Uuid::now_v7();
    let mut started_ids = Vec::new();
    for round in 0..rounds {
        let id = format!("delivery-{round}");
        let mut sent = tokio::task::JoinSet::new();
        for copy in 0..copies {
            let (sink, id) = (instances[copy % instances.len()].clone(), id.clone());
            sent.spawn(async move {
                sink.submit(key_delivery(trigger, Some(&id), "{}"))
                    .await
                    .unwrap()
            });
        }
        let (mut started, mut ids) = (0, Vec::new());
        while let Some(outcome) = sent.join_next().await {
            match outcome.unwrap() {
                Outcome::Started(id) => {
                    started += 1;
                    started_ids.push(id.clone());
                    ids.push(id);
                }
                Outcome::Replayed(id) => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(started, 1, "round {round}: exactly one copy starts it");
        ids.dedup();
        assert_eq!(
            ids.len(),
            1,
            "round {round}: every copy names the same execution"
        );
    }
    started_ids
}
