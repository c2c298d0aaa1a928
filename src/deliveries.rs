//! The deliveries log: what happened to each request that reached a trigger its caller may
//! see, accepted or not.
//!
//! A [`TriggerService`](crate::TriggerService) built with an
//! [`observer`](crate::TriggerServiceBuilder::observer) hands it one [`LoggedDelivery`] per
//! such request, once the answer is known: its outcome and reason, the caller, ids, sizes,
//! timing, the headers with every credential and signature value replaced by
//! [`REDACTED`], and the body when the request was authenticated (a valid key, or a signature
//! that verified). A request with an invalid key, for another tenant's trigger, or for an
//! unknown trigger is not observed (metrics count it). Without an observer the service builds
//! none of this.
//!
//! The SQLite and PostgreSQL stores are observers that keep the log ([`DeliveryLog`]); a host
//! with its own store implements [`DeliveryObserver`]:
//!
//! ```
//! use std::sync::Mutex;
//! use agent_trigger::deliveries::{DeliveryObserver, LoggedDelivery};
//! use agent_trigger::memory::{ChannelSink, MemoryKeyStore};
//! use agent_trigger::TriggerService;
//!
//! /// Keeps the last outcome; a real one queues the record for its database and returns.
//! #[derive(Default)]
//! struct LastOutcome(Mutex<Option<String>>);
//!
//! impl DeliveryObserver for LastOutcome {
//!     fn observe(&self, delivery: LoggedDelivery) {
//!         *self.0.lock().unwrap() = Some(delivery.outcome.into_owned());
//!     }
//! }
//!
//! let (sink, _executions) = ChannelSink::new(64);
//! let service = TriggerService::builder(sink, MemoryKeyStore::new())
//!     .observer(LastOutcome::default())
//!     .build();
//! # drop(service);
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use uuid::Uuid;

use crate::{Caller, ExecutionId, Source, StoreError};

/// The value that stands in for a credential's or a signature's in a logged header.
pub const REDACTED: &str = "[redacted]";

/// How many records a trigger keeps by default.
pub const DEFAULT_LOG_MAX: usize = 10_000;

/// Counter of log records dropped because the log's queue was full.
pub const DELIVERY_LOG_DROPPED_TOTAL: &str = "agent_trigger_delivery_log_dropped_total";

/// Told of each answered delivery; see the [module docs](self).
///
/// `observe` runs on the request's task after its answer is made: it must return quickly and
/// never block (queue the record, and drop it when the queue is full), so that the log never
/// slows an acknowledgement.
pub trait DeliveryObserver: Send + Sync + 'static {
    /// One answered delivery.
    fn observe(&self, delivery: LoggedDelivery);
}

impl<O: DeliveryObserver + ?Sized> DeliveryObserver for Arc<O> {
    fn observe(&self, delivery: LoggedDelivery) {
        (**self).observe(delivery);
    }
}

/// One record of the deliveries log.
///
/// ```
/// use agent_trigger::deliveries::LoggedDelivery;
/// use agent_trigger::Source;
/// use uuid::Uuid;
///
/// let record = LoggedDelivery::new(Uuid::now_v7(), "acme", Source::Jira, 200, "started");
/// assert_eq!(record.caller_kind(), "none");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoggedDelivery {
    /// The record's id, a UUID v7 taken when the request arrived: newer ids sort after, and
    /// its time is [`received_at`](Self::received_at)'s (a store reads a record's age from it).
    pub id: Uuid,
    /// When the request arrived.
    pub received_at: SystemTime,
    /// The trigger it reached.
    pub trigger_id: Uuid,
    /// The trigger's tenant.
    pub tenant: Arc<str>,
    /// The trigger's source.
    pub source: Source,
    /// The HTTP status sent.
    pub status: u16,
    /// The metrics' name for the answer: `started`, `skipped`, `invalid_signature`, …
    pub outcome: Cow<'static, str>,
    /// Why, in a sentence.
    pub reason: String,
    /// Who sent it, once known: a valid key, or the secret a signature verified with.
    pub caller: Option<Caller>,
    /// The execution the delivery started or replayed.
    pub execution_id: Option<ExecutionId>,
    /// The sender's delivery id.
    pub delivery_id: Option<String>,
    /// The delivery's action.
    pub action: Option<String>,
    /// The body's size as received, in bytes (0 when it was not read).
    pub body_bytes: u64,
    /// From arrival to answer.
    pub duration: Duration,
    /// The request's headers in order, credentials and signatures [`REDACTED`]. Empty in a
    /// list.
    pub headers: Vec<(String, String)>,
    /// The body as received, kept only for an authenticated request. `None` in a list.
    pub body: Option<Bytes>,
}

impl LoggedDelivery {
    /// A record of a delivery to `trigger_id` answered `status` with `outcome`, received now;
    /// the other fields empty.
    pub fn new(
        trigger_id: Uuid,
        tenant: impl Into<Arc<str>>,
        source: Source,
        status: u16,
        outcome: impl Into<Cow<'static, str>>,
    ) -> Self {
        LoggedDelivery {
            id: Uuid::now_v7(),
            received_at: SystemTime::now(),
            trigger_id,
            tenant: tenant.into(),
            source,
            status,
            outcome: outcome.into(),
            reason: String::new(),
            caller: None,
            execution_id: None,
            delivery_id: None,
            action: None,
            body_bytes: 0,
            duration: Duration::ZERO,
            headers: Vec::new(),
            body: None,
        }
    }

    /// `key`, `signature` or `none`.
    pub fn caller_kind(&self) -> &'static str {
        match &self.caller {
            Some(Caller::ApiKey { .. }) => "key",
            Some(Caller::Signature { .. }) => "signature",
            None => "none",
        }
    }

    /// The key's or the secret's id.
    pub fn caller_id(&self) -> Option<&str> {
        match &self.caller {
            Some(Caller::ApiKey { key_id, .. }) => Some(key_id),
            Some(Caller::Signature { secret_id }) => Some(secret_id),
            None => None,
        }
    }

    /// Whether the answer refused the request (a 4xx status): such records are bounded
    /// tighter.
    pub fn is_refused(&self) -> bool {
        (400..500).contains(&self.status)
    }
}

/// How many records each trigger keeps: about its newest `max` (pruned in batches), of which
/// refused ones (4xx) at most a tenth.
///
/// ```
/// use agent_trigger::deliveries::LogLimits;
/// use uuid::Uuid;
///
/// let noisy = Uuid::now_v7();
/// let limits = LogLimits::new(10_000).with_trigger(noisy, 500);
/// assert_eq!(limits.max(noisy), 500);
/// assert_eq!(limits.refused_max(noisy), 50);
/// assert_eq!(limits.max(Uuid::now_v7()), 10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLimits {
    default: usize,
    per_trigger: HashMap<Uuid, usize>,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits::new(DEFAULT_LOG_MAX)
    }
}

impl LogLimits {
    /// Every trigger keeps `max` records.
    pub fn new(max: usize) -> Self {
        LogLimits {
            default: max,
            per_trigger: HashMap::new(),
        }
    }

    /// `trigger` keeps `max` records instead.
    pub fn with_trigger(mut self, trigger: Uuid, max: usize) -> Self {
        self.per_trigger.insert(trigger, max);
        self
    }

    /// The records `trigger` keeps.
    pub fn max(&self, trigger: Uuid) -> usize {
        self.per_trigger
            .get(&trigger)
            .copied()
            .unwrap_or(self.default)
    }

    /// The refused (4xx) records `trigger` keeps: a tenth of [`max`](Self::max).
    pub fn refused_max(&self, trigger: Uuid) -> usize {
        self.max(trigger) / 10
    }

    /// How many records a trigger gathers between two prunings: the bound is approximate by
    /// at most this much (a tenth of it, at most 1 000). A pruning reads past the records it
    /// keeps, so it runs in batches rather than per record.
    pub fn prune_every(&self, trigger: Uuid) -> usize {
        (self.max(trigger) / 10).clamp(1, 1000)
    }
}

/// Which records a list shows, newest first.
///
/// ```
/// use agent_trigger::deliveries::DeliveryQuery;
///
/// let mut query = DeliveryQuery::new("acme", 20);
/// query.outcome = Some("invalid_signature".into());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeliveryQuery {
    /// Only this tenant's records.
    pub tenant: String,
    /// Only these triggers' records; `None` for all of the tenant's.
    pub triggers: Option<Vec<Uuid>>,
    /// Only records with this outcome.
    pub outcome: Option<String>,
    /// Only records older than this one (the previous page's last).
    pub before: Option<Uuid>,
    /// At most this many.
    pub limit: usize,
}

impl DeliveryQuery {
    /// The newest `limit` records of `tenant`.
    pub fn new(tenant: impl Into<String>, limit: usize) -> Self {
        DeliveryQuery {
            tenant: tenant.into(),
            triggers: None,
            outcome: None,
            before: None,
            limit,
        }
    }
}

/// How many records of one trigger had one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutcomeCount {
    /// The trigger.
    pub trigger_id: Uuid,
    /// The outcome.
    pub outcome: String,
    /// How many.
    pub count: u64,
}

/// A store that keeps the deliveries log and reads it back: the SQLite and PostgreSQL
/// stores. Records are queued by [`observe`](DeliveryObserver::observe) and written in
/// batches, so a record may trail its answer by a moment.
pub trait DeliveryLog: DeliveryObserver {
    /// The records `query` asks for, newest first, without headers and body.
    fn deliveries(
        &self,
        query: &DeliveryQuery,
    ) -> impl Future<Output = Result<Vec<LoggedDelivery>, StoreError>> + Send;

    /// One record, with its headers and body.
    fn delivery(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<LoggedDelivery>, StoreError>> + Send;

    /// The records of `tenant` (of `triggers` only, when given) received since `since`,
    /// counted by trigger and outcome.
    fn outcome_counts(
        &self,
        tenant: &str,
        triggers: Option<Vec<Uuid>>,
        since: SystemTime,
    ) -> impl Future<Output = Result<Vec<OutcomeCount>, StoreError>> + Send;

    /// Deletes at most `batch` records received before `before`; how many it deleted.
    fn prune_deliveries(
        &self,
        before: SystemTime,
        batch: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// The bounds each trigger's records are pruned to from now on.
    fn set_log_limits(&self, limits: LogLimits);

    /// How many records were dropped because the log's queue was full.
    fn dropped_records(&self) -> u64;
}

/// The smallest id a record of a delivery received at `at` or later can have: ids are UUID
/// v7, whose first 48 bits are the arrival's Unix milliseconds, so a store reads a record's age
/// from its id's order and needs no index on the time.
#[cfg(feature = "sqlite")]
pub(crate) fn first_id_at(at: SystemTime) -> Uuid {
    let millis = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid()
}

/// Counts `records` dropped for a full queue, in the metrics (feature `metrics`).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn count_dropped(records: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!(DELIVERY_LOG_DROPPED_TOTAL).increment(records);
    #[cfg(not(feature = "metrics"))]
    let _ = records;
}

/// The request's headers as the log keeps them: every credential and signature value (and
/// the trigger's own signature header, `own_signature`) replaced by [`REDACTED`].
pub(crate) fn redacted_headers(
    headers: &http::HeaderMap,
    own_signature: Option<&str>,
) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let name = name.as_str();
            let value = if crate::rules::is_hidden_header(name)
                || own_signature.is_some_and(|own| own.eq_ignore_ascii_case(name))
            {
                REDACTED.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.to_owned(), value)
        })
        .collect()
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    #[test]
    fn the_first_id_at_a_time_orders_after_every_earlier_id_and_before_every_later_one() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        let first = first_id_at(at);
        let id_at = |millis: u64, rest: u8| {
            uuid::Builder::from_unix_timestamp_millis(millis, &[rest; 10]).into_uuid()
        };
        let (earlier, same, later) = (
            id_at(1_764_000_000_122, 0xff),
            id_at(1_764_000_000_123, 0x00),
            id_at(1_764_000_000_124, 0x00),
        );
        assert!(earlier < first && first <= same && same < later);
        // SQLite compares the text form: it orders the same way.
        let text = |id: Uuid| id.to_string();
        assert!(text(earlier) < text(first) && text(first) <= text(same));
        assert!(first_id_at(SystemTime::now()) <= Uuid::now_v7());
    }
}
