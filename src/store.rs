//! The host's storage of API keys and triggers, behind the [`KeyStore`] trait.

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::concurrency::Concurrency;
use crate::rules::{self, Filter, InputExpression, Paths, PromptTemplate, Rules};
use crate::source::SourceSpec;
use crate::{BoxError, KeyDigest, SecretError, SignatureScheme, SigningSecret, Source};

/// Where the service looks up API keys and triggers.
///
/// Implemented by [`MemoryKeyStore`](crate::memory::MemoryKeyStore) and by hosts over their own
/// database. Methods return `Send` futures, so a store can do I/O; records come back in an
/// [`Arc`] so that a cached record costs no copy per request.
///
/// ```
/// use std::sync::Arc;
/// use agent_trigger::{ApiKeyRecord, KeyDigest, KeyStore, StoreError, Trigger};
/// use uuid::Uuid;
///
/// /// A store that knows no keys and no triggers.
/// struct Empty;
///
/// impl KeyStore for Empty {
///     async fn api_key(&self, _digest: KeyDigest) -> Result<Option<Arc<ApiKeyRecord>>, StoreError> {
///         Ok(None)
///     }
///     async fn trigger(&self, _id: Uuid) -> Result<Option<Arc<Trigger>>, StoreError> {
///         Ok(None)
///     }
/// }
/// ```
pub trait KeyStore: Send + Sync + 'static {
    /// The key whose plaintext has this SHA-256 digest, revoked and expired ones included (the
    /// service checks those), or `None` when no key has it.
    fn api_key(
        &self,
        digest: KeyDigest,
    ) -> impl Future<Output = Result<Option<Arc<ApiKeyRecord>>, StoreError>> + Send;

    /// The trigger with this id, or `None`.
    fn trigger(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Arc<Trigger>>, StoreError>> + Send;
}

impl<S: KeyStore> KeyStore for Arc<S> {
    fn api_key(
        &self,
        digest: KeyDigest,
    ) -> impl Future<Output = Result<Option<Arc<ApiKeyRecord>>, StoreError>> + Send {
        (**self).api_key(digest)
    }

    fn trigger(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Arc<Trigger>>, StoreError>> + Send {
        (**self).trigger(id)
    }
}

/// A failure of a store: its keys, triggers or executions.
///
/// Most failures are answered `500` with the cause logged, never shown. A store that is
/// temporarily away (a database restarting or unreachable, a connection cut, a full disk, a
/// file locked by another process) says so with [`StoreError::unavailable`]: the service and
/// the server answer those `503` with `Retry-After`, since a retry may well succeed.
///
/// ```
/// use agent_trigger::StoreError;
///
/// let refused = StoreError::unavailable("connection refused");
/// assert!(refused.is_unavailable());
/// assert!(!StoreError::new("a row that does not decode").is_unavailable());
/// ```
#[derive(Debug)]
pub struct StoreError {
    cause: BoxError,
    unavailable: bool,
}

impl StoreError {
    /// Wraps the store's own error: a failure that retrying will not mend.
    pub fn new(cause: impl Into<BoxError>) -> Self {
        StoreError {
            cause: cause.into(),
            unavailable: false,
        }
    }

    /// Wraps a failure of a store that is temporarily away, so that callers are told to retry
    /// (`503` with `Retry-After`) rather than that something broke (`500`).
    pub fn unavailable(cause: impl Into<BoxError>) -> Self {
        StoreError {
            cause: cause.into(),
            unavailable: true,
        }
    }

    /// Whether the store was temporarily away rather than broken; see
    /// [`StoreError::unavailable`].
    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unavailable {
            write!(f, "store unavailable: {}", self.cause)
        } else {
            write!(f, "store failure: {}", self.cause)
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.cause)
    }
}

/// Which triggers an API key may invoke, always within its own tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyScope {
    /// Every trigger of the key's tenant.
    Tenant,
    /// Only these triggers (of the key's tenant).
    Triggers(Vec<Uuid>),
}

impl KeyScope {
    /// Whether the scope takes in the trigger `id` (of the key's own tenant; tenants are
    /// compared separately).
    ///
    /// ```
    /// use agent_trigger::KeyScope;
    /// use uuid::Uuid;
    ///
    /// let (mine, other) = (Uuid::now_v7(), Uuid::now_v7());
    /// assert!(KeyScope::Tenant.includes(other));
    /// assert!(KeyScope::Triggers(vec![mine]).includes(mine));
    /// assert!(!KeyScope::Triggers(vec![mine]).includes(other));
    /// ```
    pub fn includes(&self, id: Uuid) -> bool {
        match self {
            KeyScope::Tenant => true,
            KeyScope::Triggers(ids) => ids.contains(&id),
        }
    }
}

/// What an API key may do. A key holds any subset; [`ApiKeyRecord::new`] gives all three, and
/// a key pasted into a sender's settings should hold only [`Right::Invoke`].
///
/// ```
/// use agent_trigger::{ApiKeyRecord, Right};
///
/// let sender = ApiKeyRecord::new("jira", "acme").with_rights([Right::Invoke]);
/// assert!(sender.can(Right::Invoke));
/// assert!(!sender.can(Right::Read));
/// assert!(ApiKeyRecord::new("ops", "acme").can(Right::Operate));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Right {
    /// Call the trigger endpoint.
    Invoke,
    /// List and show executions, deliveries and triggers.
    Read,
    /// Cancel, replay and redeliver.
    Operate,
}

impl Right {
    /// Every right, in the order of their names.
    pub const ALL: [Right; 3] = [Right::Invoke, Right::Read, Right::Operate];

    /// The right's name in a configuration (`invoke`, `read`, `operate`).
    pub fn as_str(self) -> &'static str {
        match self {
            Right::Invoke => "invoke",
            Right::Read => "read",
            Right::Operate => "operate",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Right::Invoke => 1,
            Right::Read => 2,
            Right::Operate => 4,
        }
    }
}

impl std::str::FromStr for Right {
    type Err = UnknownRight;

    fn from_str(name: &str) -> Result<Self, UnknownRight> {
        Right::ALL
            .into_iter()
            .find(|right| right.as_str() == name)
            .ok_or(UnknownRight)
    }
}

/// A name that is not one of [`Right::ALL`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownRight;

impl fmt::Display for UnknownRight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a right: invoke, read or operate")
    }
}

impl std::error::Error for UnknownRight {}

/// A stored API key: never the plaintext, only what the service needs to decide.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use agent_trigger::{ApiKeyRecord, KeyScope};
/// use uuid::Uuid;
///
/// let only = Uuid::now_v7();
/// let key = ApiKeyRecord::new("ci", "acme")
///     .with_scope(KeyScope::Triggers(vec![only]))
///     .with_expires_at(SystemTime::now() + Duration::from_secs(3600));
/// assert!(key.is_usable(SystemTime::now()));
/// assert!(!key.clone().revoked().is_usable(SystemTime::now()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    id: Arc<str>,
    tenant: Arc<str>,
    scope: KeyScope,
    expires_at: Option<SystemTime>,
    revoked: bool,
    /// A bit per [`Right`].
    rights: u8,
}

/// Every right's bit.
const ALL_RIGHTS: u8 = 0b111;

impl ApiKeyRecord {
    /// A key named `id` that may invoke every trigger of `tenant` and read and operate their
    /// executions, never expiring.
    pub fn new(id: impl Into<Arc<str>>, tenant: impl Into<Arc<str>>) -> Self {
        ApiKeyRecord {
            id: id.into(),
            tenant: tenant.into(),
            scope: KeyScope::Tenant,
            expires_at: None,
            revoked: false,
            rights: ALL_RIGHTS,
        }
    }

    /// Limits what the key may do to `rights`.
    pub fn with_rights(mut self, rights: impl IntoIterator<Item = Right>) -> Self {
        self.rights = rights.into_iter().fold(0, |bits, right| bits | right.bit());
        self
    }

    /// Whether the key holds `right`.
    pub fn can(&self, right: Right) -> bool {
        self.rights & right.bit() != 0
    }

    /// The rights the key holds.
    pub fn rights(&self) -> impl Iterator<Item = Right> + '_ {
        Right::ALL.into_iter().filter(|right| self.can(*right))
    }

    /// Limits the triggers the key may invoke.
    pub fn with_scope(mut self, scope: KeyScope) -> Self {
        self.scope = scope;
        self
    }

    /// The key stops working at `at`.
    pub fn with_expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The key no longer works.
    pub fn revoked(mut self) -> Self {
        self.revoked = true;
        self
    }

    /// The key's id (not a secret: the name it is logged and audited under).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tenant whose triggers the key may invoke.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Which of the tenant's triggers the key may invoke.
    pub fn scope(&self) -> &KeyScope {
        &self.scope
    }

    /// When the key stops working, if ever.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Whether the key has been revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked
    }

    /// Neither revoked nor expired at `now`.
    pub fn is_usable(&self, now: SystemTime) -> bool {
        !self.revoked && self.expires_at.is_none_or(|end| now < end)
    }

    /// Whether this key may invoke `trigger`: it holds [`Right::Invoke`], same tenant, and
    /// within the key's scope.
    pub fn may_invoke(&self, trigger: &Trigger) -> bool {
        self.can(Right::Invoke)
            && *self.tenant == *trigger.tenant
            && self.scope.includes(trigger.id)
    }

    /// The rights as stored: a bit per right (invoke 1, read 2, operate 4).
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn rights_bits(&self) -> u8 {
        self.rights
    }

    /// The rights from their stored bits; unknown bits are dropped.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn with_rights_bits(mut self, bits: u8) -> Self {
        self.rights = bits & ALL_RIGHTS;
        self
    }

    pub(crate) fn shared_id(&self) -> Arc<str> {
        Arc::clone(&self.id)
    }

    pub(crate) fn shared_tenant(&self) -> Arc<str> {
        Arc::clone(&self.tenant)
    }
}

/// A list of actions a trigger runs for; others are skipped.
///
/// An entry matches exactly, or by prefix when it ends with `*`.
///
/// ```
/// use agent_trigger::ActionAllowlist;
///
/// let allow = ActionAllowlist::new(["jira:issue_*", "comment_created"]);
/// assert!(allow.allows("jira:issue_created"));
/// assert!(allow.allows("comment_created"));
/// assert!(!allow.allows("comment_created_late"));
/// assert!(!allow.allows("jira:worklog_updated"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionAllowlist(Vec<Box<str>>);

impl ActionAllowlist {
    /// The list, in any order.
    pub fn new<I, S>(entries: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        ActionAllowlist(entries.into_iter().map(Into::into).collect())
    }

    /// Whether `action` is on the list.
    pub fn allows(&self, action: &str) -> bool {
        self.0.iter().any(|entry| match entry.strip_suffix('*') {
            Some(prefix) => action.starts_with(prefix),
            None => **entry == *action,
        })
    }

    /// The entries as configured.
    pub fn entries(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|entry| &**entry)
    }
}

/// A trigger: which source may invoke it, for which tenant, whether it runs, for which actions,
/// and the secrets its sender signs with.
///
/// ```
/// use std::time::Duration;
/// use agent_trigger::{ActionAllowlist, SigningSecret, Source, Trigger};
/// use uuid::Uuid;
///
/// let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Slack)
///     .with_actions(ActionAllowlist::new(["app_mention"]))
///     .with_secret(SigningSecret::new("2026-11", "slack signing secret").unwrap())
///     .with_replay_window(Duration::from_secs(120));
/// assert!(trigger.is_enabled());
/// assert_eq!(trigger.source(), Source::Slack);
/// assert_eq!(trigger.effective_replay_window(), Some(Duration::from_secs(120)));
/// ```
#[derive(Debug, Clone)]
pub struct Trigger {
    id: Uuid,
    tenant: Arc<str>,
    source: Source,
    enabled: bool,
    actions: Option<ActionAllowlist>,
    secrets: Vec<SigningSecret>,
    signature: Option<SignatureScheme>,
    public_url: Option<Arc<str>>,
    replay_window: Option<Duration>,
    rate_limit: Option<RateLimit>,
    max_running: Option<NonZeroU32>,
    filter: Option<Filter>,
    input: Option<InputExpression>,
    prompt: Option<PromptTemplate>,
    concurrency: Option<Concurrency>,
    /// The parts of the body the rules read, kept with them.
    body_paths: Paths,
}

/// A trigger's rate: at most `count` deliveries per `period`, counted by one limiter that all
/// clones of the trigger share (governor's GCRA: `count` may come at once, then one more every
/// `period / count`).
#[derive(Clone)]
struct RateLimit {
    count: NonZeroU32,
    period: Duration,
    limiter: Arc<governor::DefaultDirectRateLimiter>,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:?}", self.count, self.period)
    }
}

impl Trigger {
    /// An enabled trigger with no allowlist and no secrets (bearer keys only).
    pub fn new(id: Uuid, tenant: impl Into<Arc<str>>, source: Source) -> Self {
        Trigger {
            id,
            tenant: tenant.into(),
            source,
            enabled: true,
            actions: None,
            secrets: Vec::new(),
            signature: None,
            public_url: None,
            replay_window: None,
            rate_limit: None,
            max_running: None,
            filter: None,
            input: None,
            prompt: None,
            concurrency: None,
            body_paths: Paths::default(),
        }
    }

    /// Enables or disables the trigger; deliveries to a disabled one are skipped.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Runs only for these actions.
    pub fn with_actions(mut self, allowlist: ActionAllowlist) -> Self {
        self.actions = Some(allowlist);
        self
    }

    /// Adds a signing secret to the ring; any active one verifies. A secret that does not fit
    /// the trigger's scheme never does: check it with
    /// [`SignatureScheme::check_secret`] when the configuration loads.
    pub fn with_secret(mut self, secret: SigningSecret) -> Self {
        self.secrets.push(secret);
        self
    }

    /// Whether every secret of the ring fits the trigger's scheme, as
    /// [`SignatureScheme::check_secret`] says (a `webhook` trigger without a scheme of its own
    /// takes Standard Webhooks secrets; the other sources, text): the first that does not, and
    /// why. A secret that does not fit never verifies; call this when the configuration loads.
    ///
    /// ```
    /// use agent_trigger::{SecretError, SignatureScheme, SigningSecret, Source, Trigger};
    /// use uuid::Uuid;
    ///
    /// let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Webhook)
    ///     .with_secret(SigningSecret::new("2026-11", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap())
    ///     .with_secret(SigningSecret::new("2026-12", "not a whsec secret").unwrap());
    /// let (secret, error) = trigger.check_secrets().unwrap_err();
    /// assert_eq!((secret.id(), error), ("2026-12", SecretError::NotBase64));
    /// assert!(trigger.with_signature(SignatureScheme::github()).check_secrets().is_ok());
    /// ```
    pub fn check_secrets(&self) -> Result<(), (&SigningSecret, SecretError)> {
        let spec = self.spec();
        self.secrets.iter().try_for_each(|secret| {
            crate::signature::check_secret(spec, secret).map_err(|error| (secret, error))
        })
    }

    /// How the sender of a [`Source::Webhook`] trigger signs: a preset (GitHub, Stripe,
    /// Discord, …) or a table of its own. Without one, a `webhook` trigger verifies Standard
    /// Webhooks; the other sources sign their own way and ignore it.
    ///
    /// ```
    /// use agent_trigger::{SignatureScheme, SigningSecret, Source, Trigger};
    /// use uuid::Uuid;
    ///
    /// let github = SignatureScheme::github();
    /// let secret = SigningSecret::new("2026-12", "It's a Secret to Everybody").unwrap();
    /// assert_eq!(github.check_secret(&secret), Ok(()));
    /// let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Webhook)
    ///     .with_signature(github)
    ///     .with_secret(secret);
    /// assert_eq!(trigger.signature().and_then(SignatureScheme::name), Some("github"));
    /// assert_eq!(trigger.effective_replay_window(), None); // GitHub signs no timestamp
    /// ```
    pub fn with_signature(mut self, scheme: SignatureScheme) -> Self {
        self.signature = Some(scheme);
        self
    }

    /// The scheme set with [`with_signature`](Self::with_signature), if any.
    ///
    /// ```
    /// # use agent_trigger::{Source, Trigger};
    /// # use uuid::Uuid;
    /// // Standard Webhooks, without one.
    /// assert!(Trigger::new(Uuid::now_v7(), "acme", Source::Webhook).signature().is_none());
    /// ```
    pub fn signature(&self) -> Option<&SignatureScheme> {
        self.signature.as_ref()
    }

    /// The URL the sender was given for this trigger, for the schemes that sign the URL they
    /// call ([`SignatureScheme::signs_url`]: `twilio`, or `{url}` in a table). It is what the
    /// sender signs, which a proxy in front of the service may not pass on as it was; the
    /// query is taken from each request as received, so a query (and fragment) here is
    /// dropped.
    ///
    /// ```
    /// use agent_trigger::{SignatureScheme, Source, Trigger};
    /// use uuid::Uuid;
    ///
    /// let id = Uuid::now_v7();
    /// let trigger = Trigger::new(id, "acme", Source::Webhook)
    ///     .with_signature(SignatureScheme::twilio())
    ///     .with_public_url(format!("https://hooks.example.com/api/trigger/webhook/{id}?ignored=1"));
    /// assert_eq!(trigger.public_url(), Some(&*format!("https://hooks.example.com/api/trigger/webhook/{id}")));
    /// ```
    pub fn with_public_url(mut self, url: impl Into<String>) -> Self {
        let mut url = url.into();
        url.truncate(url.find(['?', '#']).unwrap_or(url.len()));
        self.public_url = Some(url.into());
        self
    }

    /// The URL set with [`with_public_url`](Self::with_public_url), if any.
    ///
    /// ```
    /// # use agent_trigger::{Source, Trigger};
    /// # use uuid::Uuid;
    /// assert_eq!(Trigger::new(Uuid::now_v7(), "acme", Source::Webhook).public_url(), None);
    /// ```
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    /// Overrides the source's replay window.
    pub fn with_replay_window(mut self, window: Duration) -> Self {
        self.replay_window = Some(window);
        self
    }

    /// Accepts at most `count` deliveries per `period` (a zero `period` sets no rate); past it,
    /// `429` with `Retry-After`. A bearer-key request is counted once its key is accepted, before
    /// its body is read; a signed one once its signature (and signed timestamp) verified, so
    /// that nobody without the secret can use up the sender's rate. A captured signed request
    /// sent again counts too (it starts nothing, but the sink says so only after this check). The count lives with this trigger value and its
    /// clones: a store that rebuilds its triggers starts them afresh.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use std::time::Duration;
    /// use agent_trigger::{Source, Trigger};
    /// use uuid::Uuid;
    ///
    /// let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Jira)
    ///     .with_rate_limit(NonZeroU32::new(60).unwrap(), Duration::from_secs(60));
    /// assert_eq!(trigger.rate_limit(), Some((NonZeroU32::new(60).unwrap(), Duration::from_secs(60))));
    /// ```
    pub fn with_rate_limit(mut self, count: NonZeroU32, period: Duration) -> Self {
        self.rate_limit =
            governor::Quota::with_period(period / count.get()).map(|quota| RateLimit {
                count,
                period,
                limiter: Arc::new(governor::RateLimiter::direct(quota.allow_burst(count))),
            });
        self
    }

    /// A queue runs at most `count` of this trigger's executions at once; the rest wait
    /// `queued` (a durable queue that workers claim from keeps this; a sink that runs
    /// executions itself decides for itself).
    pub fn with_max_running(mut self, count: NonZeroU32) -> Self {
        self.max_running = Some(count);
        self
    }

    /// Starts executions only for the deliveries `filter` matches; the others are answered
    /// `200` skipped, `"filtered out: <why>"`, and counted as `filtered` (see
    /// [`rules`](crate::rules)).
    ///
    /// ```
    /// use agent_trigger::rules::Filter;
    /// use agent_trigger::{Source, Trigger};
    /// use uuid::Uuid;
    ///
    /// let filter = Filter::parse(r#"body.issue.fields.priority.name in ["High", "Highest"]"#)?;
    /// let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Jira).with_filter(filter);
    /// assert_eq!(trigger.filter().map(|f| f.as_str()), Some(r#"body.issue.fields.priority.name in ["High", "Highest"]"#));
    /// # Ok::<(), agent_trigger::rules::RuleError>(())
    /// ```
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self.body_paths = self.rules_paths();
        self
    }

    /// The filter, if any.
    pub fn filter(&self) -> Option<&Filter> {
        self.filter.as_ref()
    }

    /// Hands executions the JSON value of `input` instead of the whole body (see
    /// [`rules`](crate::rules)).
    ///
    /// ```
    /// use agent_trigger::rules::InputExpression;
    /// use agent_trigger::{Source, Trigger};
    /// use uuid::Uuid;
    ///
    /// let input = InputExpression::parse(r#"{"key": body.issue.key}"#)?;
    /// let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Jira).with_input(input);
    /// assert!(trigger.input().is_some());
    /// # Ok::<(), agent_trigger::rules::RuleError>(())
    /// ```
    pub fn with_input(mut self, input: InputExpression) -> Self {
        self.input = Some(input);
        self.body_paths = self.rules_paths();
        self
    }

    /// The input expression, if any.
    pub fn input(&self) -> Option<&InputExpression> {
        self.input.as_ref()
    }

    /// Gives each delivery the prompt `prompt` renders, as
    /// [`Delivery::prompt`](crate::Delivery::prompt) (see [`rules`](crate::rules)).
    ///
    /// ```
    /// use agent_trigger::rules::PromptTemplate;
    /// use agent_trigger::{Source, Trigger};
    /// use uuid::Uuid;
    ///
    /// let prompt = PromptTemplate::parse("Triage {{ body.issue.key }}")?;
    /// let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Jira).with_prompt(prompt);
    /// assert_eq!(trigger.prompt().map(|p| p.as_str()), Some("Triage {{ body.issue.key }}"));
    /// # Ok::<(), agent_trigger::rules::RuleError>(())
    /// ```
    pub fn with_prompt(mut self, prompt: PromptTemplate) -> Self {
        self.prompt = Some(prompt);
        self.body_paths = self.rules_paths();
        self
    }

    /// The prompt template, if any.
    pub fn prompt(&self) -> Option<&PromptTemplate> {
        self.prompt.as_ref()
    }

    /// Keys its executions by subject: one at a time per key, or as `concurrency` says (see
    /// [`concurrency`](crate::concurrency)).
    ///
    /// ```
    /// use agent_trigger::concurrency::{Concurrency, ConcurrencyKey, OnBusy};
    /// use agent_trigger::{Source, Trigger};
    /// use uuid::Uuid;
    ///
    /// let key = ConcurrencyKey::parse("body.issue.key")?;
    /// let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Jira)
    ///     .with_concurrency(Concurrency::new(key).with_on_busy(OnBusy::Skip));
    /// assert_eq!(trigger.concurrency().map(|c| c.key().as_str()), Some("body.issue.key"));
    /// # Ok::<(), agent_trigger::rules::RuleError>(())
    /// ```
    pub fn with_concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = Some(concurrency);
        self.body_paths = self.rules_paths();
        self
    }

    /// The concurrency settings, if any.
    pub fn concurrency(&self) -> Option<&Concurrency> {
        self.concurrency.as_ref()
    }

    fn rules_paths(&self) -> Paths {
        rules::body_paths(
            self.filter(),
            self.input(),
            self.prompt(),
            self.concurrency.as_ref().map(Concurrency::key),
        )
    }

    /// The parts of the body the trigger's rules read.
    pub(crate) fn body_paths(&self) -> &Paths {
        &self.body_paths
    }

    /// The trigger's rules, when it has any.
    pub(crate) fn rules(&self) -> Option<Rules<'_>> {
        (self.filter.is_some()
            || self.input.is_some()
            || self.prompt.is_some()
            || self.concurrency.is_some())
        .then_some(Rules {
            filter: self.filter.as_ref(),
            input: self.input.as_ref(),
            prompt: self.prompt.as_ref(),
            key: self.concurrency.as_ref().map(Concurrency::key),
        })
    }

    /// How many of this trigger's executions may run at once, if that is capped.
    pub fn max_running(&self) -> Option<NonZeroU32> {
        self.max_running
    }

    /// The trigger's rate, if it has one: deliveries per period.
    pub fn rate_limit(&self) -> Option<(NonZeroU32, Duration)> {
        self.rate_limit
            .as_ref()
            .map(|rate| (rate.count, rate.period))
    }

    /// Counts one delivery against the rate; `Err` with how long until there is room. The
    /// service counts every delivery it accepts; a host that starts executions of the trigger
    /// by another route (a replay) counts them here, so that they share one budget.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use std::time::Duration;
    /// use agent_trigger::{Source, Trigger};
    /// use uuid::Uuid;
    ///
    /// let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Jira)
    ///     .with_rate_limit(NonZeroU32::new(1).unwrap(), Duration::from_secs(3600));
    /// assert!(trigger.admit().is_ok());
    /// assert!(trigger.clone().admit().is_err());
    /// ```
    pub fn admit(&self) -> Result<(), Duration> {
        use governor::clock::{Clock, DefaultClock};
        let Some(rate) = &self.rate_limit else {
            return Ok(());
        };
        rate.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// The trigger's id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The tenant that owns it.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The only source that may invoke it.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Whether deliveries run.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The action allowlist, if any.
    pub fn actions(&self) -> Option<&ActionAllowlist> {
        self.actions.as_ref()
    }

    /// The ring of signing secrets.
    pub fn secrets(&self) -> &[SigningSecret] {
        &self.secrets
    }

    /// The trigger's own replay window, when it overrides its source's default.
    pub fn replay_window(&self) -> Option<Duration> {
        self.replay_window
    }

    /// The trigger's own replay window, else its scheme's default (its source's, unless a
    /// `webhook` trigger picked a scheme).
    pub fn effective_replay_window(&self) -> Option<Duration> {
        self.replay_window.or(self.spec().replay_window)
    }

    /// The row the pipeline reads for this trigger: its scheme's for a `webhook` trigger with
    /// one, else its source's.
    pub(crate) fn spec(&self) -> &SourceSpec {
        match &self.signature {
            Some(scheme) if self.source.takes_any_scheme() => scheme.spec(),
            _ => self.source.spec(),
        }
    }

    /// Whether some secret may verify a delivery received at `now`.
    pub(crate) fn has_active_secret(&self, now: SystemTime) -> bool {
        self.secrets.iter().any(|secret| secret.is_active(now))
    }

    pub(crate) fn shared_tenant(&self) -> Arc<str> {
        Arc::clone(&self.tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_reach_only_their_tenant_and_scope() {
        let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Jira);
        let other = Trigger::new(Uuid::now_v7(), "acme", Source::Jira);
        assert!(ApiKeyRecord::new("k", "acme").may_invoke(&trigger));
        assert!(!ApiKeyRecord::new("k", "globex").may_invoke(&trigger));
        let scoped =
            ApiKeyRecord::new("k", "acme").with_scope(KeyScope::Triggers(vec![trigger.id()]));
        assert!(scoped.may_invoke(&trigger));
        assert!(!scoped.may_invoke(&other));
    }

    #[test]
    fn expiry_and_revocation() {
        let now = SystemTime::now();
        let key = ApiKeyRecord::new("k", "t");
        assert!(key.is_usable(now));
        assert!(!key.clone().with_expires_at(now).is_usable(now));
        assert!(
            key.clone()
                .with_expires_at(now + Duration::from_secs(1))
                .is_usable(now)
        );
        assert!(!key.revoked().is_usable(now));
    }

    #[test]
    fn star_matches_prefix_only_at_the_end() {
        let allow = ActionAllowlist::new(["a*", "exact"]);
        assert!(allow.allows("a"));
        assert!(allow.allows("abc"));
        assert!(allow.allows("exact"));
        assert!(!allow.allows("exactly"));
        assert!(!allow.allows("b"));
        assert!(!ActionAllowlist::new(Vec::<String>::new()).allows("x"));
    }
}
