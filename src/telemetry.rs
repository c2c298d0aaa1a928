//! What a delivery leaves behind for operators: one tracing span (feature `tracing`) and
//! counters and a latency histogram (feature `metrics`). Never a key, a secret or a body.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::HeaderMap;
use tracing::span::Entered;
use tracing::{Span, field};
use uuid::Uuid;

use crate::deliveries::{self, DeliveryObserver, LoggedDelivery};
use crate::response::Answer;
use crate::{Caller, Source, Trigger};

/// Counter of deliveries, labelled `source`, `outcome` and `status`.
pub const DELIVERIES_TOTAL: &str = "agent_trigger_deliveries_total";
/// Histogram of the time from routing to answer, in seconds, labelled `source`.
pub const DELIVERY_DURATION_SECONDS: &str = "agent_trigger_delivery_duration_seconds";

/// Whether a delivery's span could be seen at all: by a tracing subscriber that takes `INFO`,
/// or by a `log` logger that does, through tracing's `log` bridge. When neither can, the span
/// and its fields are not built (the bridge would build them only to find no logger wants them).
fn anyone_listens() -> bool {
    #[cfg(feature = "tracing")]
    {
        tracing::level_enabled!(tracing::Level::INFO) || log::max_level() >= log::LevelFilter::Info
    }
    #[cfg(not(feature = "tracing"))]
    {
        false
    }
}

/// The telemetry of one delivery, from its start to its answer.
///
/// Its fields reach a subscriber in one of two shapes. A subscriber that takes the delivery's
/// span gets the span, its fields recorded as they are learned, and one event inside it at the
/// answer. One that takes events but not this span (a per-layer filter, as the standalone
/// server's log has) gets one flat event with every field instead: the cheaper line, since no
/// span is built, recorded into, entered or closed.
#[derive(Debug)]
pub(crate) struct DeliveryTelemetry {
    span: Span,
    /// Nobody takes the span but someone takes events: the answer's event carries every field.
    flat: bool,
    source: Source,
    trigger_id: Uuid,
    #[cfg(feature = "metrics")]
    started: Instant,
}

impl DeliveryTelemetry {
    pub(crate) fn start(source: Source, trigger_id: Uuid) -> Self {
        let listening = anyone_listens();
        let span = if listening {
            tracing::info_span!(
                "webhook_delivery",
                source = source.as_str(),
                %trigger_id,
                caller = field::Empty,
                delivery_id = field::Empty,
                action = field::Empty,
                execution_id = field::Empty,
                outcome = field::Empty,
                status = field::Empty,
            )
        } else {
            Span::none()
        };
        DeliveryTelemetry {
            flat: listening && span.is_disabled(),
            span,
            source,
            trigger_id,
            #[cfg(feature = "metrics")]
            started: Instant::now(),
        }
    }

    /// Enters the delivery's span until the guard is dropped; nothing when nobody listens
    /// (entering and leaving a disabled span would still cost on every poll).
    pub(crate) fn enter(&self) -> Option<Entered<'_>> {
        (!self.span.is_disabled()).then(|| self.span.enter())
    }

    /// What the pipeline records as it learns it; handed back to [`finish`](Self::finish).
    pub(crate) fn record(&self) -> DeliveryRecord {
        DeliveryRecord {
            span: self.span.clone(),
            flat: self.flat,
            caller: None,
            delivery_id: None,
            action: None,
            observation: None,
        }
    }

    /// Closes the delivery's record with its answer: one log line, and the metrics.
    pub(crate) fn finish(&self, answer: &Answer, record: &DeliveryRecord) {
        if !self.span.is_disabled() {
            // One record for the three fields: each record is a trip through the subscriber.
            let (outcome, status) = (answer.outcome(), answer.status().as_u16());
            match answer.execution_id() {
                Some(id) => tracing::record_all!(
                    self.span,
                    execution_id = %id,
                    outcome = outcome,
                    status = status
                ),
                None => tracing::record_all!(self.span, outcome = outcome, status = status),
            }
            tracing::info!(parent: &self.span, "webhook delivery");
        } else if self.flat {
            // No subscriber took the span: the line carries its fields itself, for a
            // subscriber that filters spans out, and for `log` through `tracing`'s bridge.
            tracing::info!(
                source = self.source.as_str(),
                trigger_id = %self.trigger_id,
                caller = record.caller.as_ref().map(|caller| field::display(CallerName(caller))),
                delivery_id = record.delivery_id.as_deref(),
                action = record.action.as_deref(),
                execution_id = answer.execution_id().map(field::display),
                outcome = answer.outcome(),
                status = answer.status().as_u16(),
                "webhook delivery"
            );
        }
        #[cfg(feature = "metrics")]
        {
            let source = self.source.as_str();
            metrics::counter!(
                DELIVERIES_TOTAL,
                "source" => source,
                "outcome" => answer.outcome(),
                "status" => answer.status_label(),
            )
            .increment(1);
            metrics::histogram!(DELIVERY_DURATION_SECONDS, "source" => source)
                .record(self.started.elapsed().as_secs_f64());
        }
    }
}

/// The delivery's record as the pipeline sees it: it names the caller and the event once they
/// are known, into the span, or kept for the flat line when nobody takes the span. From
/// [`DeliveryTelemetry::record`].
#[derive(Debug)]
pub(crate) struct DeliveryRecord {
    span: Span,
    flat: bool,
    caller: Option<Caller>,
    delivery_id: Option<String>,
    action: Option<String>,
    /// What the deliveries log gets; only when the service has an observer.
    observation: Option<Box<Observation>>,
}

/// A delivery's record for the deliveries log, filled in as the pipeline learns it.
struct Observation {
    observer: Arc<dyn DeliveryObserver>,
    id: Uuid,
    received_at: SystemTime,
    started: Instant,
    /// Set once the request reached a trigger its caller may see: only then is it logged.
    record: Option<LoggedDelivery>,
}

impl std::fmt::Debug for Observation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observation")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DeliveryRecord {
    /// The record will be handed to `observer` once the answer is known.
    pub(crate) fn observed_by(&mut self, observer: &Arc<dyn DeliveryObserver>) {
        self.observation = Some(Box::new(Observation {
            observer: Arc::clone(observer),
            id: Uuid::now_v7(),
            received_at: SystemTime::now(),
            started: Instant::now(),
            record: None,
        }));
    }

    /// The request reached `trigger`, which its caller may see: it goes into the log, with
    /// its headers redacted.
    pub(crate) fn reached(&mut self, trigger: &Trigger, headers: &HeaderMap) {
        let Some(observation) = self.observation.as_deref_mut() else {
            return;
        };
        let own_signature = trigger.signature().map(|scheme| scheme.signature_header());
        let mut record = LoggedDelivery::new(
            trigger.id(),
            trigger.shared_tenant(),
            trigger.source(),
            0,
            "",
        );
        record.id = observation.id;
        record.received_at = observation.received_at;
        record.headers = deliveries::redacted_headers(headers, own_signature);
        observation.record = Some(record);
    }

    /// The body as received: its size always, the bytes themselves only when `authenticated`.
    pub(crate) fn body(&mut self, body: &Bytes, authenticated: bool) {
        if let Some(record) = self.logged() {
            record.body_bytes = body.len() as u64;
            if authenticated {
                record.body = Some(body.clone());
            }
        }
    }

    fn logged(&mut self) -> Option<&mut LoggedDelivery> {
        self.observation.as_deref_mut()?.record.as_mut()
    }

    /// Hands the record to the observer with its answer; nothing when the request never
    /// reached a trigger its caller may see.
    pub(crate) fn observe(&mut self, answer: &Answer) {
        let Some(observation) = self.observation.take() else {
            return;
        };
        let Observation {
            observer,
            started,
            record,
            ..
        } = *observation;
        let Some(mut record) = record else {
            return;
        };
        record.status = answer.status().as_u16();
        record.outcome = answer.outcome().into();
        record.reason = answer.reason();
        record.execution_id = answer.execution_id().cloned();
        record.duration = started.elapsed();
        observer.observe(record);
    }

    /// Names the caller: the key's or the secret's id, never the secret.
    pub(crate) fn caller(&mut self, caller: &Caller) {
        if let Some(record) = self.logged() {
            record.caller = Some(caller.clone());
        }
        // A disabled span is left alone: recording into it would still cost a trip through
        // `tracing`'s `log` bridge, for nobody.
        if self.flat {
            self.caller = Some(caller.clone());
        } else if !self.span.is_disabled() {
            self.span
                .record("caller", field::display(CallerName(caller)));
        }
    }

    /// What the delivery is about, once the body is read.
    pub(crate) fn event(&mut self, delivery_id: Option<&str>, action: Option<&str>) {
        if let Some(record) = self.logged() {
            record.delivery_id = delivery_id.map(str::to_owned);
            record.action = action.map(str::to_owned);
        }
        if self.flat {
            self.delivery_id = delivery_id.map(str::to_owned);
            self.action = action.map(str::to_owned);
            return;
        }
        if self.span.is_disabled() {
            return;
        }
        // Only what is there, in one record: recording nothing still reaches the subscriber.
        match (delivery_id, action) {
            (Some(delivery_id), Some(action)) => {
                tracing::record_all!(self.span, delivery_id = delivery_id, action = action);
            }
            (Some(delivery_id), None) => {
                self.span.record("delivery_id", delivery_id);
            }
            (None, Some(action)) => {
                self.span.record("action", action);
            }
            (None, None) => {}
        }
    }
}

/// A caller as the log names it: `key:<key id>` or `secret:<secret id>`.
struct CallerName<'c>(&'c Caller);

impl std::fmt::Display for CallerName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Caller::ApiKey { key_id, .. } => write!(f, "key:{key_id}"),
            Caller::Signature { secret_id } => write!(f, "secret:{secret_id}"),
        }
    }
}
