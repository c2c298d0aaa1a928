//! The request pipeline, top to bottom in the contract's order. Each step is a call into the
//! module that owns it; this file only sequences them and maps their failures to answers.

use std::borrow::Cow;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Extensions, HeaderMap, Method};
use http_body::Body;
use uuid::Uuid;

use crate::body::{self, BodyError, BodyKind};
use crate::credentials::{self, CredentialsError};
use crate::deliveries::DeliveryObserver;
use crate::event::{Event, Handshake};
use crate::json;
use crate::key::is_well_formed_token;
use crate::response::Answer;
use crate::route::{self, Prefix};
use crate::rules::{self, Shaped};
use crate::signature::{Presented, RequestUrl, SignatureError};
use crate::source::{Envelope, Source, SourceSpec};
use crate::telemetry::DeliveryRecord;
use crate::{
    ApiKeyRecord, BoxError, Caller, Delivery, ExecutionSink, KeyDigest, KeyStore, Outcome,
    SinkError, StoreError, Trigger,
};

/// What the service was configured with.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) prefix: Prefix,
    pub(crate) body_limit: usize,
    pub(crate) backend_timeout: Duration,
    pub(crate) retry_after: Duration,
}

/// Everything a request needs, shared by all clones of the service.
pub(crate) struct Shared<E, A> {
    pub(crate) sink: E,
    pub(crate) store: A,
    pub(crate) settings: Settings,
    /// Told of each delivery that reached a trigger its caller may see.
    pub(crate) observer: Option<Arc<dyn DeliveryObserver>>,
}

/// The outcome of the steps that need no I/O.
#[derive(Debug)]
pub(crate) enum Routing {
    /// Not this service's path.
    Elsewhere,
    /// Answered already (405, 400).
    Answer(Answer),
    /// A delivery to run through the rest of the pipeline.
    Deliver { source: Source, trigger_id: Uuid },
}

/// Steps *route*, *method* and *path params*.
pub(crate) fn route(settings: &Settings, method: &Method, path: &str) -> Routing {
    let Some((source, trigger_id)) = settings.prefix.match_path(path) else {
        return Routing::Elsewhere;
    };
    if method != Method::POST {
        return Routing::Answer(Answer::MethodNotAllowed);
    }
    match route::parse_params(source, trigger_id) {
        Ok((source, trigger_id)) => Routing::Deliver { source, trigger_id },
        Err(issues) => Routing::Answer(Answer::InvalidParams(issues)),
    }
}

/// The remaining steps, from *credentials* to *sink*, and the answer with the request's header
/// map, emptied by the response it is written into, and the delivery's record for its log line.
/// `target` is the request's path and query, kept for the schemes that sign the URL.
/// `operator` is a key that already holds the right to redeliver: the request is its delivery,
/// with no credentials read, no signature checked and no delivery id taken.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would copy its arguments into its future a second time"
)]
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of the request head, moved into the future one by one"
)]
pub(crate) fn accept<E, A, B>(
    shared: Arc<Shared<E, A>>,
    headers: HeaderMap,
    extensions: Extensions,
    target: Option<PathAndQuery>,
    body: B,
    source: Source,
    trigger_id: Uuid,
    record: DeliveryRecord,
    operator: Option<Arc<ApiKeyRecord>>,
) -> impl Future<Output = (Answer, HeaderMap, DeliveryRecord)>
where
    E: ExecutionSink,
    A: KeyStore,
    B: Body,
    B::Error: Into<BoxError>,
{
    async move {
        let request = RequestHead {
            headers: &headers,
            extensions,
            query: target.as_ref().and_then(PathAndQuery::query),
            source,
            trigger_id,
            operator,
        };
        let mut record = record;
        let answer = match steps(&shared, request, body, &mut record).await {
            Ok(answer) | Err(answer) => answer,
        };
        (answer, headers, record)
    }
}

/// The steps themselves. `Ok` and `Err` are both answers; `Err` is the early exit of a failed
/// check.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would copy its arguments into its future a second time"
)]
fn steps<'r, E, A, B>(
    shared: &'r Shared<E, A>,
    request: RequestHead<'r>,
    body: B,
    record: &'r mut DeliveryRecord,
) -> impl Future<Output = Result<Answer, Answer>> + 'r
where
    E: ExecutionSink,
    A: KeyStore,
    B: Body + 'r,
    B::Error: Into<BoxError>,
{
    async move {
        let RequestHead {
            headers,
            extensions,
            query,
            source,
            trigger_id,
            operator,
        } = request;
        let limit = shared.settings.body_limit;
        let received_at = SystemTime::now();
        let redelivery = operator.is_some();

        // credentials
        let credentials = match &operator {
            Some(key) => Credentials::Operator(key),
            None => credentials::extract(headers, source)
                .map_err(|error| match error {
                    CredentialsError::Missing => Answer::MissingCredentials,
                    CredentialsError::Signature(reason) => Answer::Signature(reason),
                })?
                .into(),
        };

        // API key, trigger, then size and content type from the headers. A signed request is
        // checked in the other order, so that an unknown trigger and a known one answer alike.
        let (trigger, mut pending, kind) = match credentials {
            Credentials::Operator(key) => {
                let (trigger, caller) = operator_trigger(shared, key, source, trigger_id).await?;
                record.reached(&trigger, headers);
                record.caller(&caller);
                let kind = check_headers(headers, limit, trigger.spec().accepts_form())?;
                trigger.admit().map_err(Answer::TooManyRequests)?;
                (trigger, Authentication::ByKey(caller), kind)
            }
            Credentials::Request(credentials::Credentials::Bearer(token)) => {
                let (trigger, caller) =
                    authorize_key(shared, token, source, trigger_id, received_at).await?;
                record.reached(&trigger, headers);
                record.caller(&caller);
                let kind = check_headers(headers, limit, trigger.spec().accepts_form())?;
                // rate: a key holder's delivery counts now, before its body is read
                trigger.admit().map_err(Answer::TooManyRequests)?;
                (trigger, Authentication::ByKey(caller), kind)
            }
            Credentials::Request(credentials::Credentials::Signature(presented)) => {
                let kind = check_headers(headers, limit, source.spec().accepts_form())?;
                let trigger =
                    signed_trigger(shared, source, trigger_id, received_at, headers, record)
                        .await?;
                (trigger, Authentication::PendingSignature(presented), kind)
            }
            Credentials::Request(credentials::Credentials::TriggerSignature) => {
                // Only what is the same for every scheme: any scheme may post JSON or a form.
                let kind = check_headers(headers, limit, true)?;
                let trigger =
                    signed_trigger(shared, source, trigger_id, received_at, headers, record)
                        .await?;
                (trigger, Authentication::PendingTriggerSignature, kind)
            }
        };
        let spec = trigger.spec();
        if let Authentication::PendingTriggerSignature = pending {
            // The trigger's scheme is known now: whatever is wrong with its headers answers as
            // a wrong signature does.
            pending = Authentication::PendingSignature(
                trigger_signature(spec, headers)
                    .map_err(|_| Answer::Signature(SignatureError::Mismatch))?,
            );
        }

        // the body itself, within the limit
        let raw = body::read(body, limit)
            .await
            .map_err(|error| body_answer(error, limit, spec.accepts_form()))?;

        // signature
        let (caller, signature) = match pending {
            Authentication::ByKey(caller) => {
                record.body(&raw, true);
                (caller, None)
            }
            Authentication::PendingSignature(presented) => {
                record.body(&raw, false);
                let url = RequestUrl {
                    base: trigger.public_url(),
                    query,
                };
                let verified = presented
                    .verify(
                        spec,
                        trigger.secrets(),
                        &raw,
                        &url,
                        received_at,
                        trigger.effective_replay_window(),
                    )
                    .map_err(Answer::Signature)?;
                let caller = Caller::Signature {
                    secret_id: verified.secret.shared_id(),
                };
                record.caller(&caller);
                record.body(&raw, true);
                (caller, Some(verified))
            }
            Authentication::PendingTriggerSignature => unreachable!("parsed above"),
        };
        // content type, for a scheme known only now: a form where its sender posts none
        if kind == BodyKind::Form && !spec.accepts_form() {
            return Err(body_answer(BodyError::UnsupportedType, limit, false));
        }

        // JSON, and a timestamp signed in the body (Linear's), read in the same pass; a trigger
        // with rules reads the body as values, so no object may hold a key twice
        let rules = trigger.rules();
        let (input, mut event) = decode(spec, headers, kind, raw, rules.is_some())?;
        if redelivery {
            // A new delivery, never a replay of the one it repeats.
            event.delivery_id = None;
        }
        record.event(event.delivery_id.as_deref(), event.action.as_deref());
        if let Some(verified) = &signature {
            verified
                .check_body_timestamp(event.body_timestamp_millis, received_at)
                .map_err(Answer::Signature)?;
            // rate: a signed delivery counts once its signature and timestamp are good
            trigger.admit().map_err(Answer::TooManyRequests)?;
        }

        // handshake
        match event.handshake {
            Some(Handshake::SlackChallenge(challenge)) => return Ok(Answer::Challenge(challenge)),
            Some(Handshake::DiscordPing) => return Ok(Answer::Pong),
            None => {}
        }
        // From here on, answers that carry an execution id or a skip take the sender's shape.
        let shaped = |answer: Answer| match spec.envelope {
            Envelope::DiscordInteractions => answer.deferred(),
            Envelope::Plain | Envelope::SlackEvents => answer,
        };
        // disabled
        if !trigger.is_enabled() {
            return Ok(shaped(skipped("trigger is disabled", event.action)));
        }
        // filter
        if event.from_bot {
            return Ok(shaped(skipped("bot messages are ignored", event.action)));
        }
        if let Some(allowlist) = trigger.actions()
            && !event
                .action
                .as_deref()
                .is_some_and(|action| allowlist.allows(action))
        {
            return Ok(shaped(skipped(
                "action is not in the trigger's allowlist",
                event.action,
            )));
        }

        // filter, input, prompt: the trigger's rules
        let ruled = match rules {
            Some(rules) => {
                let body = rules::parse_body(&input, trigger.body_paths());
                let facts = rules::Facts {
                    source,
                    action: event.action.as_deref(),
                    delivery_id: event.delivery_id.as_deref(),
                    headers,
                    signature_header: trigger.signature().map(|scheme| scheme.signature_header()),
                };
                let applied = rules.apply(&body, &facts, limit);
                drop(body);
                match applied {
                    Ok(ruled) => ruled,
                    Err(why) => {
                        tracing::debug!(reason = %why, "delivery filtered out");
                        return Ok(shaped(Answer::Filtered {
                            message: format!("filtered out: {why}"),
                            action: event.action,
                        }));
                    }
                }
            }
            None => Shaped::default(),
        };
        let input = ruled.input.unwrap_or(input);

        // duplicate, sink: the sink recognises redeliveries itself
        let delivery = Delivery {
            source,
            trigger_id,
            tenant: trigger.shared_tenant(),
            caller,
            delivery_id: event.delivery_id,
            action: event.action,
            received_at,
            signature_tag: signature.map(|verified| verified.tag),
            extensions,
            input,
            prompt: ruled.prompt,
            subject: ruled
                .key
                .zip(trigger.concurrency())
                .map(|(key, concurrency)| concurrency.subject(key)),
        };
        // Pinned here rather than in a helper, so that the delivery is held once while it runs.
        let outcome = within_deadline(&shared.settings, pin!(shared.sink.submit(delivery))).await?;
        Ok(shaped(sink_answer(outcome)))
    }
}

/// What the pipeline keeps of the request's head: the headers it reads, and the extensions it
/// hands to the sink.
struct RequestHead<'h> {
    headers: &'h HeaderMap,
    extensions: Extensions,
    /// The query string, for the schemes that sign the URL.
    query: Option<&'h str>,
    source: Source,
    trigger_id: Uuid,
    /// The key a redelivery runs as.
    operator: Option<Arc<ApiKeyRecord>>,
}

/// The request's credentials, or the operator a redelivery runs as.
enum Credentials<'h> {
    Request(credentials::Credentials<'h>),
    Operator(&'h ApiKeyRecord),
}

impl<'h> From<credentials::Credentials<'h>> for Credentials<'h> {
    fn from(credentials: credentials::Credentials<'h>) -> Self {
        Credentials::Request(credentials)
    }
}

/// Who the caller is, or what is left to check once the body is read.
enum Authentication<'h> {
    ByKey(Caller),
    PendingSignature(Presented<'h>),
    /// The trigger's scheme names the headers to read.
    PendingTriggerSignature,
}

/// The signature a request presents under the scheme of its trigger.
fn trigger_signature<'h>(
    spec: &'h SourceSpec,
    headers: &'h HeaderMap,
) -> Result<Presented<'h>, SignatureError> {
    let scheme = spec.scheme.as_ref().ok_or(SignatureError::Mismatch)?;
    Presented::parse(scheme, headers)
}

/// Steps *API key* and *trigger* for a bearer token.
async fn authorize_key<E, A: KeyStore>(
    shared: &Shared<E, A>,
    token: &[u8],
    source: Source,
    trigger_id: Uuid,
    now: SystemTime,
) -> Result<(Arc<Trigger>, Caller), Answer> {
    if !is_well_formed_token(token) {
        return Err(Answer::InvalidToken);
    }
    let settings = &shared.settings;
    let key = within_deadline(
        settings,
        pin!(shared.store.api_key(KeyDigest::of_token(token))),
    )
    .await?
    .map_err(|error| store_answer(settings, &error))?
    .filter(|key| key.is_usable(now))
    .ok_or(Answer::InvalidToken)?;
    let trigger = within_deadline(settings, pin!(shared.store.trigger(trigger_id)))
        .await?
        .map_err(|error| store_answer(settings, &error))?
        .filter(|trigger| trigger.source() == source && key.may_invoke(trigger))
        .ok_or(Answer::TriggerNotFound)?;
    let caller = Caller::ApiKey {
        key_id: key.shared_id(),
        tenant: key.shared_tenant(),
    };
    Ok((trigger, caller))
}

/// Step *trigger* for a redelivery: the operator's trigger, as [`authorize_key`] finds it but
/// without the right to invoke (the operator's right to redeliver was checked).
async fn operator_trigger<E, A: KeyStore>(
    shared: &Shared<E, A>,
    key: &ApiKeyRecord,
    source: Source,
    trigger_id: Uuid,
) -> Result<(Arc<Trigger>, Caller), Answer> {
    let trigger = within_deadline(&shared.settings, pin!(shared.store.trigger(trigger_id)))
        .await?
        .map_err(|error| internal("key store", &error))?
        .filter(|trigger| {
            trigger.source() == source
                && trigger.tenant() == key.tenant()
                && key.scope().includes(trigger_id)
        })
        .ok_or(Answer::TriggerNotFound)?;
    let caller = Caller::ApiKey {
        key_id: key.shared_id(),
        tenant: key.shared_tenant(),
    };
    Ok((trigger, caller))
}

/// Step *trigger* for a signed request: an unknown trigger, one of another source, or one
/// without an active secret gets the very answer a wrong signature gets. A trigger that exists
/// is in the deliveries log whatever the signature's result.
async fn signed_trigger<E, A: KeyStore>(
    shared: &Shared<E, A>,
    source: Source,
    trigger_id: Uuid,
    now: SystemTime,
    headers: &HeaderMap,
    record: &mut DeliveryRecord,
) -> Result<Arc<Trigger>, Answer> {
    let trigger = within_deadline(&shared.settings, pin!(shared.store.trigger(trigger_id)))
        .await?
        .map_err(|error| store_answer(&shared.settings, &error))?
        .filter(|trigger| trigger.source() == source)
        .ok_or(Answer::Signature(SignatureError::Mismatch))?;
    record.reached(&trigger, headers);
    if trigger.has_active_secret(now) {
        Ok(trigger)
    } else {
        Err(Answer::Signature(SignatureError::Mismatch))
    }
}

/// Steps *size* (a declared `Content-Length`) and *content type*, from the headers alone.
fn check_headers(
    headers: &HeaderMap,
    limit: usize,
    accepts_form: bool,
) -> Result<BodyKind, Answer> {
    body::check_declared_length(headers, limit)
        .map_err(|error| body_answer(error, limit, accepts_form))?;
    body::kind(headers, accepts_form).map_err(|error| body_answer(error, limit, accepts_form))
}

/// Step *JSON*: the agent's input and what the delivery is about, in one pass over the body;
/// with `unique_keys`, no object may hold any key twice.
fn decode(
    spec: &SourceSpec,
    headers: &HeaderMap,
    kind: BodyKind,
    raw: Bytes,
    unique_keys: bool,
) -> Result<(Bytes, Event), Answer> {
    match (kind, &spec.form) {
        (BodyKind::Form, Some(rules)) => {
            let form = crate::form::decode(&raw, rules).map_err(Answer::InvalidJson)?;
            if unique_keys {
                // The form's fields are unique; its `payload`'s JSON may repeat a key.
                json::scan_unique_keys(&form.json, &[]).map_err(Answer::InvalidJson)?;
            }
            let event = Event::from_form(spec, headers, form.action).map_err(invalid)?;
            Ok((form.json, event))
        }
        (BodyKind::Form, None) => Err(body_answer(BodyError::UnsupportedType, 0, false)),
        (BodyKind::Json, _) if raw.is_empty() => {
            let event = Event::from_json(spec, headers, &json::Fields::empty()).map_err(invalid)?;
            Ok((Bytes::from_static(b"null"), event))
        }
        (BodyKind::Json, _) => {
            let event = {
                let (mut keys, mut path) = Default::default();
                let paths = spec.body_fields(&mut keys, &mut path);
                let fields = if unique_keys {
                    json::scan_unique_keys(&raw, paths)
                } else {
                    json::scan(&raw, paths)
                }
                .map_err(Answer::InvalidJson)?;
                Event::from_json(spec, headers, &fields).map_err(invalid)?
            };
            Ok((raw, event))
        }
    }
}

/// The answer for what the sink said.
fn sink_answer(outcome: Result<Outcome, SinkError>) -> Answer {
    match outcome {
        Ok(Outcome::Started(id)) => Answer::Started(id),
        Ok(Outcome::Replayed(id)) => Answer::Replayed(id),
        Ok(Outcome::Joined(id)) => Answer::Joined(id),
        Ok(Outcome::Skipped { message, action }) => Answer::Skipped {
            message: Cow::Owned(message),
            action,
        },
        Ok(Outcome::Rejected(message)) => Answer::Rejected(message),
        Err(SinkError::Unavailable { retry_after }) => Answer::Unavailable(retry_after),
        Err(SinkError::Internal(cause)) => internal("execution sink", &cause),
    }
}

fn skipped(message: &'static str, action: Option<String>) -> Answer {
    Answer::Skipped {
        message: Cow::Borrowed(message),
        action,
    }
}

fn invalid(bad: crate::event::BadEvent) -> Answer {
    Answer::InvalidParams(vec![bad.into()])
}

fn body_answer(error: BodyError, limit: usize, accepts_form: bool) -> Answer {
    match error {
        BodyError::TooLarge => Answer::PayloadTooLarge(limit),
        BodyError::UnsupportedType => Answer::UnsupportedMediaType { accepts_form },
        BodyError::Unreadable(cause) => {
            tracing::debug!(error = %cause, "request body could not be read");
            Answer::UnreadableBody
        }
    }
}

/// A backend that does not answer in time is treated as temporarily unavailable. Most stores
/// answer from memory on the first poll; those never arm a timer. The work is pinned by the
/// caller, so that its state is held once, in the caller's future.
async fn within_deadline<F: Future>(
    settings: &Settings,
    mut work: Pin<&mut F>,
) -> Result<F::Output, Answer> {
    let first_poll = std::future::poll_fn(|context| {
        Poll::Ready(match work.as_mut().poll(context) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        })
    })
    .await;
    if let Some(output) = first_poll {
        return Ok(output);
    }
    // Boxed so that the timer's state weighs on this rare path only, not on every request's
    // future.
    Box::pin(tokio::time::timeout(settings.backend_timeout, work))
        .await
        .map_err(|_| {
            tracing::warn!(timeout = ?settings.backend_timeout, "backend did not answer in time");
            Answer::Unavailable(settings.retry_after)
        })
}

/// A key store's failure: `503` when the store is away for now, `500` otherwise; the cause
/// goes to the log only.
fn store_answer(settings: &Settings, error: &StoreError) -> Answer {
    if error.is_unavailable() {
        tracing::warn!(backend = "key store", %error, "backend unavailable");
        Answer::Unavailable(settings.retry_after)
    } else {
        internal("key store", error)
    }
}

/// Logs the cause; the caller sees only "internal error".
fn internal(backend: &'static str, cause: &dyn std::fmt::Display) -> Answer {
    tracing::error!(backend, error = %cause, "backend failure");
    Answer::Internal
}
