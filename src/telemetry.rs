//! What a delivery leaves behind for operators: one tracing span (feature `tracing`) and
//! counters and a latency histogram (feature `metrics`). Never a key, a secret or a body.

#[cfg(feature = "metrics")]
use std::time::Instant;

use tracing::span::Entered;
use tracing::{Span, field};
use uuid::Uuid;

use crate::response::Answer;
use crate::{Caller, Source};

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
#[derive(Debug)]
pub(crate) struct DeliveryTelemetry {
    span: Span,
    source: Source,
    trigger_id: Uuid,
    #[cfg(feature = "metrics")]
    started: Instant,
}

impl DeliveryTelemetry {
    pub(crate) fn start(source: Source, trigger_id: Uuid) -> Self {
        let span = if anyone_listens() {
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

    /// What the pipeline records into the delivery's span as it learns it.
    pub(crate) fn record(&self) -> DeliveryRecord {
        DeliveryRecord {
            span: self.span.clone(),
        }
    }

    /// Closes the delivery's record with its answer: one log line, and the metrics.
    pub(crate) fn finish(&self, answer: &Answer) {
        if !self.span.is_disabled() {
            // One record for the three fields: each record is a trip through the subscriber.
            let (outcome, status) = (answer.outcome(), answer.status().as_u16());
            match answer {
                Answer::Started(id) | Answer::Replayed(id) => tracing::record_all!(
                    self.span,
                    execution_id = %id,
                    outcome = outcome,
                    status = status
                ),
                _ => tracing::record_all!(self.span, outcome = outcome, status = status),
            }
            tracing::info!(parent: &self.span, "webhook delivery");
        } else if anyone_listens() {
            // No subscriber took the span; the line still reaches a subscriber that filters
            // spans out, and `log` through `tracing`'s bridge.
            tracing::info!(
                source = self.source.as_str(),
                trigger_id = %self.trigger_id,
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

/// The delivery's span as the pipeline sees it: it names the caller and the event once they
/// are known. From [`DeliveryTelemetry::record`].
#[derive(Debug)]
pub(crate) struct DeliveryRecord {
    span: Span,
}

impl DeliveryRecord {
    /// Names the caller: the key's or the secret's id, never the secret.
    pub(crate) fn caller(&self, caller: &Caller) {
        // Recording into a disabled span still costs a trip through `tracing`'s `log` bridge.
        if self.span.is_disabled() {
            return;
        }
        match caller {
            Caller::ApiKey { key_id, .. } => self
                .span
                .record("caller", field::display(format_args!("key:{key_id}"))),
            Caller::Signature { secret_id } => self
                .span
                .record("caller", field::display(format_args!("secret:{secret_id}"))),
        };
    }

    /// What the delivery is about, once the body is read.
    pub(crate) fn event(&self, delivery_id: Option<&str>, action: Option<&str>) {
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
