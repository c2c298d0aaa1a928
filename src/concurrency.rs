//! One agent per subject: a trigger's [`Concurrency`] names what a delivery is about (its
//! [`ConcurrencyKey`], a CEL expression giving a string) and what happens when that subject
//! already has an execution ([`OnBusy`]), or while it is still quiet ([`Debounce`]).
//!
//! The service evaluates the key after the filter and the input, and hands the sink a
//! [`Subject`] with the delivery ([`Delivery::subject`](crate::Delivery::subject)). A key
//! expression that fails (a missing field, a value that is not a string) filters the delivery
//! out with the reason, like a filter error: a subject is never silently dropped into "no key".
//!
//! Keys are scoped to their trigger: two triggers never share a subject. A key is *busy* while
//! one of its executions is queued (and not debouncing) or running.
//!
//! | sink | what it does with a subject |
//! |---|---|
//! | [`SqliteStore`](crate::sqlite::SqliteStore), [`PostgresStore`](crate::postgres::PostgresStore) | everything below, decided in one transaction (across instances on PostgreSQL) |
//! | [`ChannelSink`](crate::memory::ChannelSink) | hands the subject on with the delivery; enforces nothing (it never learns when an execution ends) |
//! | [`JetStreamSink`](crate::nats::JetStreamSink) | publishes the subject in the message's headers for consumers; enforces nothing |
//!
//! ```
//! use std::time::Duration;
//! use agent_trigger::concurrency::{Concurrency, ConcurrencyKey, Debounce, OnBusy};
//! use agent_trigger::{Source, Trigger};
//! use uuid::Uuid;
//!
//! let per_issue = Concurrency::new(ConcurrencyKey::parse("body.issue.key")?)
//!     .with_on_busy(OnBusy::Replace)
//!     .with_debounce(Debounce::new(Duration::from_secs(30), Duration::from_secs(300)).unwrap());
//! let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Jira).with_concurrency(per_issue);
//! assert_eq!(trigger.concurrency().map(|c| c.on_busy()), Some(OnBusy::Replace));
//! # Ok::<(), agent_trigger::rules::RuleError>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use crate::rules::ConcurrencyKey;

/// What a delivery for a busy subject does.
///
/// ```
/// use agent_trigger::concurrency::OnBusy;
///
/// assert_eq!("replace".parse::<OnBusy>(), Ok(OnBusy::Replace));
/// assert_eq!(OnBusy::default(), OnBusy::Queue);
/// assert!("cancel".parse::<OnBusy>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OnBusy {
    /// Waits `queued`, in order: at most one execution of the subject runs at a time.
    #[default]
    Queue,
    /// Starts nothing: answered `200` skipped, its message naming the busy execution.
    Skip,
    /// Cancels the subject's queued or running execution (recording which one replaced it) and
    /// starts its own.
    Replace,
}

impl OnBusy {
    /// The name a configuration and a store use: `queue`, `skip` or `replace`.
    ///
    /// ```
    /// use agent_trigger::concurrency::OnBusy;
    ///
    /// assert_eq!(OnBusy::Skip.as_str(), "skip");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            OnBusy::Queue => "queue",
            OnBusy::Skip => "skip",
            OnBusy::Replace => "replace",
        }
    }
}

impl fmt::Display for OnBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not `queue`, `skip` or `replace`.
///
/// ```
/// use agent_trigger::concurrency::OnBusy;
///
/// let error = "later".parse::<OnBusy>().unwrap_err();
/// assert_eq!(error.to_string(), r#"unknown on_busy "later": expected "queue", "skip" or "replace""#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownOnBusy(pub String);

impl fmt::Display for UnknownOnBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown on_busy {:?}: expected \"queue\", \"skip\" or \"replace\"",
            self.0
        )
    }
}

impl std::error::Error for UnknownOnBusy {}

impl FromStr for OnBusy {
    type Err = UnknownOnBusy;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [OnBusy::Queue, OnBusy::Skip, OnBusy::Replace]
            .into_iter()
            .find(|mode| mode.as_str() == name)
            .ok_or_else(|| UnknownOnBusy(name.to_owned()))
    }
}

/// Start once the subject has been quiet for `quiet`, but no later than `max` after its first
/// delivery: deliveries that arrive meanwhile join the waiting execution.
///
/// ```
/// use std::time::Duration;
/// use agent_trigger::concurrency::Debounce;
///
/// let debounce = Debounce::new(Duration::from_secs(30), Duration::from_secs(300)).unwrap();
/// assert_eq!(debounce.quiet(), Duration::from_secs(30));
/// assert_eq!(debounce.max(), Duration::from_secs(300));
/// // Never sooner than the quiet period: a maximum below it is refused.
/// assert!(Debounce::new(Duration::from_secs(30), Duration::from_secs(10)).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Debounce {
    quiet: Duration,
    max: Duration,
}

impl Debounce {
    /// A quiet period and the longest wait after the first delivery; `None` when `max` is
    /// shorter than `quiet` or `quiet` is zero.
    pub fn new(quiet: Duration, max: Duration) -> Option<Self> {
        (!quiet.is_zero() && max >= quiet).then_some(Debounce { quiet, max })
    }

    /// How long the subject must be quiet before its execution starts.
    pub fn quiet(&self) -> Duration {
        self.quiet
    }

    /// The longest wait after the subject's first delivery.
    pub fn max(&self) -> Duration {
        self.max
    }
}

/// A trigger's concurrency settings: the key, what a delivery for a busy key does, and an
/// optional debounce.
///
/// ```
/// use agent_trigger::concurrency::{Concurrency, ConcurrencyKey, OnBusy};
///
/// let concurrency = Concurrency::new(ConcurrencyKey::parse("body.pull_request.url")?);
/// assert_eq!(concurrency.on_busy(), OnBusy::Queue);
/// assert!(concurrency.debounce().is_none());
/// # Ok::<(), agent_trigger::rules::RuleError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Concurrency {
    key: ConcurrencyKey,
    on_busy: OnBusy,
    debounce: Option<Debounce>,
}

impl Concurrency {
    /// Executions keyed by `key`, queued one after another.
    pub fn new(key: ConcurrencyKey) -> Self {
        Concurrency {
            key,
            on_busy: OnBusy::Queue,
            debounce: None,
        }
    }

    /// What a delivery for a busy key does.
    pub fn with_on_busy(mut self, on_busy: OnBusy) -> Self {
        self.on_busy = on_busy;
        self
    }

    /// Waits for the key to be quiet before starting its execution.
    pub fn with_debounce(mut self, debounce: Debounce) -> Self {
        self.debounce = Some(debounce);
        self
    }

    /// The key expression.
    pub fn key(&self) -> &ConcurrencyKey {
        &self.key
    }

    /// What a delivery for a busy key does.
    pub fn on_busy(&self) -> OnBusy {
        self.on_busy
    }

    /// The debounce, if any.
    pub fn debounce(&self) -> Option<Debounce> {
        self.debounce
    }

    /// The subject of one delivery whose key evaluated to `key`.
    pub(crate) fn subject(&self, key: String) -> Subject {
        Subject {
            key,
            on_busy: self.on_busy,
            debounce: self.debounce,
        }
    }
}

/// What a delivery is about, as the sink receives it: its key, and the trigger's settings for
/// it.
///
/// ```
/// use agent_trigger::concurrency::{OnBusy, Subject};
///
/// let subject = Subject::new("PROJ-7", OnBusy::Skip);
/// assert_eq!(subject.key, "PROJ-7");
/// assert!(subject.debounce.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Subject {
    /// The value of the trigger's key expression.
    pub key: String,
    /// What to do when the key is busy.
    pub on_busy: OnBusy,
    /// Whether to wait for the key to be quiet.
    pub debounce: Option<Debounce>,
}

impl Subject {
    /// A subject with this key and mode, without debounce.
    pub fn new(key: impl Into<String>, on_busy: OnBusy) -> Self {
        Subject {
            key: key.into(),
            on_busy,
            debounce: None,
        }
    }

    /// The subject, waiting for its key to be quiet.
    ///
    /// ```
    /// use std::time::Duration;
    /// use agent_trigger::concurrency::{Debounce, OnBusy, Subject};
    ///
    /// let debounce = Debounce::new(Duration::from_secs(1), Duration::from_secs(5)).unwrap();
    /// let subject = Subject::new("k", OnBusy::Queue).with_debounce(debounce);
    /// assert_eq!(subject.debounce, Some(debounce));
    /// ```
    pub fn with_debounce(mut self, debounce: Debounce) -> Self {
        self.debounce = Some(debounce);
        self
    }

    /// The answer's message for a delivery skipped because `busy` holds this subject.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn busy_message(busy: &crate::ExecutionId) -> String {
        format!("the concurrency key is busy: execution {busy} is queued or running")
    }
}

/// A trigger's concurrency as the durable stores keep it: the key's text, the mode's name, and
/// the debounce's two durations in milliseconds.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) type StoredConcurrency = (Option<String>, Option<String>, Option<i64>, Option<i64>);

/// The columns a durable store writes for `trigger`'s concurrency.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn stored(trigger: &crate::Trigger) -> StoredConcurrency {
    let millis = |duration: Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    match trigger.concurrency() {
        None => (None, None, None, None),
        Some(concurrency) => (
            Some(concurrency.key().as_str().to_owned()),
            Some(concurrency.on_busy().as_str().to_owned()),
            concurrency.debounce().map(|d| millis(d.quiet())),
            concurrency.debounce().map(|d| millis(d.max())),
        ),
    }
}

/// `trigger` with the concurrency a durable store kept; `Err` says why it cannot be read back.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn with_stored(
    trigger: crate::Trigger,
    (key, on_busy, quiet, max): StoredConcurrency,
) -> Result<crate::Trigger, String> {
    let Some(key) = key else {
        return Ok(trigger);
    };
    let key = ConcurrencyKey::parse(&key).map_err(|error| format!("concurrency key: {error}"))?;
    let on_busy = on_busy
        .as_deref()
        .unwrap_or("queue")
        .parse::<OnBusy>()
        .map_err(|error| error.to_string())?;
    let mut concurrency = Concurrency::new(key).with_on_busy(on_busy);
    if let (Some(quiet), Some(max)) = (quiet, max) {
        let millis = |value: i64| Duration::from_millis(value.max(0).unsigned_abs());
        let debounce = Debounce::new(millis(quiet), millis(max))
            .ok_or_else(|| "a debounce whose maximum is below its quiet period".to_owned())?;
        concurrency = concurrency.with_debounce(debounce);
    }
    Ok(trigger.with_concurrency(concurrency))
}
