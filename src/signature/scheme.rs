//! [`SignatureScheme`]: how the sender of a `webhook` trigger signs, as data. A preset is a
//! row of the table below, read by one of a few verifiers (any HMAC, Standard Webhooks, a shared
//! token, Ed25519, Twilio's); a [`CustomScheme`] is a row written for a sender without one.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

use super::ed25519::public_key;
use super::mac::{
    HmacAlgorithm, HmacScheme, Part, SignatureEncoding, SignatureList, TimestampFormat,
    TimestampHeader,
};
use crate::form::TWILIO_FORM;
use crate::json::MAX_PATH_DEPTH;
use crate::source::{
    ActionFrom, BodyFields, BodyTimestamp, DeliveryIdFrom, Envelope, SVIX_HEADERS, Scheme,
    SourceSpec, WEBHOOK,
};
use crate::{SecretError, SigningSecret};

/// How a `webhook` trigger's sender signs its deliveries: where the signature is, what it
/// covers, how the secret is used, and where the delivery id and the action are.
///
/// A preset for a sender that has one, or a table written for one that has not
/// ([`SignatureScheme::custom`]). Set it with
/// [`Trigger::with_signature`](crate::Trigger::with_signature); a `webhook` trigger without one
/// verifies Standard Webhooks. Cheap to clone.
///
/// | preset | signature | signed content | delivery id | action |
/// |---|---|---|---|---|
/// | `github` | `X-Hub-Signature-256: sha256=<hex>` HMAC-SHA256 | raw body | `X-GitHub-Delivery` | `X-GitHub-Event`, then `.{body action}` when present |
/// | `stripe` | `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]` HMAC-SHA256 keyed by the whole `whsec_…` text | `{t}.{raw body}`, ±300 s | body `id` | body `type` |
/// | `shopify` | `X-Shopify-Hmac-Sha256: <base64>` HMAC-SHA256 | raw body | `X-Shopify-Webhook-Id` | `X-Shopify-Topic` |
/// | `twilio` | `X-Twilio-Signature: <base64>` HMAC-SHA1 | the URL, then the form's fields sorted by name; a JSON body through the URL's `bodySHA256` | `I-Twilio-Idempotency-Token` | form `CallStatus`/`SmsStatus` |
/// | `svix` | Standard Webhooks under `svix-id`, `svix-timestamp`, `svix-signature` | `{id}.{timestamp}.{raw body}`, ±300 s | `svix-id` | body `type` |
/// | `zendesk` | `X-Zendesk-Webhook-Signature: <base64>` HMAC-SHA256 | `{X-Zendesk-Webhook-Signature-Timestamp}{raw body}` (RFC 3339), ±300 s | `X-Zendesk-Webhook-Invocation-Id` | body `type` |
/// | `pagerduty` | `X-PagerDuty-Signature: v1=<hex>[,v1=…]` HMAC-SHA256 | raw body | `X-Webhook-Id` | body `event.event_type` |
/// | `gitlab` | `X-Gitlab-Token`: the secret itself | — | `Idempotency-Key`, else `X-Gitlab-Event-UUID` | `X-Gitlab-Event` |
/// | `sentry` | `Sentry-Hook-Signature: <hex>` HMAC-SHA256 | raw body | `Request-ID` | `Sentry-Hook-Resource`, then `.{body action}` |
/// | `intercom` | `X-Hub-Signature: sha1=<hex>` HMAC-SHA1 | raw body | body `id` | body `topic` |
/// | `discord` | `X-Signature-Ed25519: <hex>` Ed25519, the "secret" being the application's public key | `{X-Signature-Timestamp}{raw body}`, ±300 s | body `id` | body `data.name`, else the interaction `type` as text |
/// | `standard-webhooks` | `webhook-id`, `webhook-timestamp`, `webhook-signature` (the default) | `{id}.{timestamp}.{raw body}`, ±300 s | `webhook-id` | body `type` |
///
/// Schemes that sign the URL (`twilio`, and tables whose `signed` has `{url}`) need the URL the
/// sender was given: [`Trigger::with_public_url`](crate::Trigger::with_public_url).
///
/// ```
/// use agent_trigger::signature::{HmacAlgorithm, SignatureEncoding, SignatureScheme};
/// use agent_trigger::{SigningSecret, Source, Trigger};
/// use uuid::Uuid;
///
/// let github = SignatureScheme::preset("github").unwrap();
/// assert_eq!(github, SignatureScheme::github());
/// assert!(SignatureScheme::preset("githib").unwrap_err().to_string().contains("github, stripe"));
///
/// let acme = SignatureScheme::custom("X-Acme-Signature")
///     .prefix("sha256=")
///     .algorithm(HmacAlgorithm::Sha256)
///     .encoding(SignatureEncoding::Hex)
///     .signed("{timestamp}.{body}")
///     .timestamp_header("X-Acme-Timestamp")
///     .id_header("X-Acme-Delivery")
///     .action("header:X-Acme-Event")
///     .build()
///     .unwrap();
/// let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Webhook)
///     .with_signature(acme)
///     .with_secret(SigningSecret::new("2026-12", "acme shared secret").unwrap());
/// assert_eq!(trigger.signature().unwrap().signature_header(), "x-acme-signature");
/// ```
///
/// Schemes are also read from and written to text with serde: a preset as its name, a table
/// as a map with the fields of [`CustomScheme`] (`header`, `prefix`, `algorithm`, `encoding`,
/// `signed`, `timestamp_header`, `id_header`, `action`).
///
/// ```
/// use agent_trigger::signature::SignatureScheme;
///
/// let preset: SignatureScheme = serde_json::from_str(r#""stripe""#).unwrap();
/// assert_eq!(preset.name(), Some("stripe"));
/// let table: SignatureScheme = serde_json::from_str(
///     r#"{"header":"X-Acme-Signature","encoding":"base64","signed":"{id}.{body}","id_header":"X-Acme-Id"}"#,
/// ).unwrap();
/// assert_eq!(table.name(), None);
/// let error = serde_json::from_str::<SignatureScheme>(r#"{"header":"X-Sig","signed":"{bdy}"}"#);
/// assert!(error.unwrap_err().to_string().contains("unknown placeholder `{bdy}`"));
/// ```
#[derive(Clone)]
pub struct SignatureScheme(Repr);

#[derive(Clone)]
enum Repr {
    Preset(&'static str, &'static SourceSpec),
    Custom(Arc<Custom>),
}

/// A table and the row built from it.
struct Custom {
    table: CustomScheme,
    spec: SourceSpec,
}

impl SignatureScheme {
    /// The names [`SignatureScheme::preset`] takes, in the order the contract lists them.
    pub const PRESETS: &'static [&'static str] = &[
        "github",
        "stripe",
        "shopify",
        "twilio",
        "svix",
        "zendesk",
        "pagerduty",
        "gitlab",
        "sentry",
        "intercom",
        "discord",
        "standard-webhooks",
    ];

    /// The preset called `name`, one of [`SignatureScheme::PRESETS`].
    ///
    /// ```
    /// use agent_trigger::signature::{SchemeError, SignatureScheme};
    ///
    /// assert_eq!(SignatureScheme::preset("discord").unwrap().name(), Some("discord"));
    /// let error = SignatureScheme::preset("GitHub").unwrap_err();
    /// assert_eq!(error, SchemeError::UnknownPreset("GitHub".into()));
    /// assert_eq!(error.field(), "signature");
    /// ```
    pub fn preset(name: &str) -> Result<Self, SchemeError> {
        let row: &'static SourceSpec = match name {
            "github" => &GITHUB,
            "stripe" => &STRIPE,
            "shopify" => &SHOPIFY,
            "twilio" => &TWILIO,
            "svix" => &SVIX,
            "zendesk" => &ZENDESK,
            "pagerduty" => &PAGERDUTY,
            "gitlab" => &GITLAB,
            "sentry" => &SENTRY,
            "intercom" => &INTERCOM,
            "discord" => &DISCORD,
            "standard-webhooks" => &WEBHOOK,
            _ => return Err(SchemeError::UnknownPreset(name.to_owned())),
        };
        let name = Self::PRESETS
            .iter()
            .find(|preset| **preset == name)
            .expect("every preset row is named in PRESETS");
        Ok(SignatureScheme(Repr::Preset(name, row)))
    }

    fn named(name: &'static str) -> Self {
        Self::preset(name).expect("a preset of the table")
    }

    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`): what a
    /// `webhook` trigger verifies without a scheme of its own.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::standard_webhooks().signature_header(), "webhook-signature");
    /// ```
    pub fn standard_webhooks() -> Self {
        Self::named("standard-webhooks")
    }

    /// GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the body.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::github().signature_header(), "x-hub-signature-256");
    /// ```
    pub fn github() -> Self {
        Self::named("github")
    }

    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>`, HMAC-SHA256 of `{t}.{body}` keyed with
    /// the whole `whsec_…` text.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::stripe().default_replay_window(), Some(Duration::from_secs(300)));
    /// ```
    pub fn stripe() -> Self {
        Self::named("stripe")
    }

    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>`, HMAC-SHA256 of the body.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::shopify().name(), Some("shopify"));
    /// ```
    pub fn shopify() -> Self {
        Self::named("shopify")
    }

    /// Twilio: `X-Twilio-Signature: <base64>`, HMAC-SHA1 of the URL and the sorted form
    /// fields; forms reach the agent as a JSON object of strings. Needs the trigger's
    /// [public URL](crate::Trigger::with_public_url).
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert!(SignatureScheme::twilio().signs_url());
    /// ```
    pub fn twilio() -> Self {
        Self::named("twilio")
    }

    /// Svix: Standard Webhooks under `svix-id`, `svix-timestamp` and `svix-signature`.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::svix().signature_header(), "svix-signature");
    /// ```
    pub fn svix() -> Self {
        Self::named("svix")
    }

    /// Zendesk: `X-Zendesk-Webhook-Signature: <base64>`, HMAC-SHA256 of the RFC 3339 timestamp
    /// header followed by the body.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::zendesk().signature_header(), "x-zendesk-webhook-signature");
    /// ```
    pub fn zendesk() -> Self {
        Self::named("zendesk")
    }

    /// PagerDuty: `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 of the body; any
    /// of the list may match.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::pagerduty().default_replay_window(), None);
    /// ```
    pub fn pagerduty() -> Self {
        Self::named("pagerduty")
    }

    /// GitLab: `X-Gitlab-Token` holds the secret itself (GitLab signs nothing); replays are
    /// recognised by the body's SHA-256.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::gitlab().signature_header(), "x-gitlab-token");
    /// ```
    pub fn gitlab() -> Self {
        Self::named("gitlab")
    }

    /// Sentry: `Sentry-Hook-Signature: <hex>`, HMAC-SHA256 of the body.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::sentry().signature_header(), "sentry-hook-signature");
    /// ```
    pub fn sentry() -> Self {
        Self::named("sentry")
    }

    /// Intercom: `X-Hub-Signature: sha1=<hex>`, HMAC-SHA1 of the body.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::intercom().signature_header(), "x-hub-signature");
    /// ```
    pub fn intercom() -> Self {
        Self::named("intercom")
    }

    /// Discord interactions: `X-Signature-Ed25519: <hex>` over `{X-Signature-Timestamp}{body}`,
    /// checked with the application's public key (the trigger's "secret", as hex). A PING is
    /// answered `{"type":1}`; an accepted interaction `{"type":5,"executionId":…}`.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::discord().signature_header(), "x-signature-ed25519");
    /// ```
    pub fn discord() -> Self {
        Self::named("discord")
    }

    /// A table for a sender without a preset: an HMAC over a template of the request, its
    /// signature in `header`. See [`CustomScheme`].
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// let scheme = SignatureScheme::custom("X-Signature").build().unwrap();
    /// assert_eq!(scheme.signature_header(), "x-signature");
    /// ```
    pub fn custom(header: impl Into<String>) -> CustomScheme {
        CustomScheme {
            header: header.into(),
            prefix: String::new(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            signed: String::from("{body}"),
            timestamp_header: None,
            id_header: None,
            action: None,
        }
    }

    /// The preset's name, or `None` for a table.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::gitlab().name(), Some("gitlab"));
    /// assert_eq!(SignatureScheme::custom("X-Sig").build().unwrap().name(), None);
    /// ```
    pub fn name(&self) -> Option<&'static str> {
        match &self.0 {
            Repr::Preset(name, _) => Some(name),
            Repr::Custom(_) => None,
        }
    }

    /// The table the scheme was built from, or `None` for a preset.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// let table = SignatureScheme::custom("X-Sig").prefix("v1=");
    /// let scheme = table.clone().build().unwrap();
    /// assert_eq!(scheme.table(), Some(&table));
    /// assert_eq!(SignatureScheme::github().table(), None);
    /// ```
    pub fn table(&self) -> Option<&CustomScheme> {
        match &self.0 {
            Repr::Preset(..) => None,
            Repr::Custom(custom) => Some(&custom.table),
        }
    }

    /// The header that carries the signature (lower case).
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::stripe().signature_header(), "stripe-signature");
    /// ```
    pub fn signature_header(&self) -> &str {
        self.spec()
            .scheme
            .as_ref()
            .expect("every scheme row signs")
            .signature_header()
    }

    /// Whether the URL the sender called is signed, so that the trigger needs its
    /// [public URL](crate::Trigger::with_public_url).
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert!(!SignatureScheme::github().signs_url());
    /// assert!(SignatureScheme::custom("X-Sig").signed("{url}{body}").build().unwrap().signs_url());
    /// ```
    pub fn signs_url(&self) -> bool {
        match &self.spec().scheme {
            Some(Scheme::Twilio { .. }) => true,
            Some(Scheme::Hmac(scheme)) => scheme.signed.contains(&Part::Url),
            _ => false,
        }
    }

    /// How far a signed timestamp may be from now, unless the trigger says otherwise; `None`
    /// for a scheme that signs no timestamp.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::discord().default_replay_window(), Some(Duration::from_secs(300)));
    /// assert_eq!(SignatureScheme::github().default_replay_window(), None);
    /// ```
    pub fn default_replay_window(&self) -> Option<Duration> {
        self.spec().replay_window
    }

    /// Whether `secret` is a secret of this scheme: Standard Webhooks and `svix` take base64
    /// after `whsec_` (or the whole text, without it); `discord` takes the application's
    /// Ed25519 public key as 64 hex digits; the others take text (`stripe` keys its HMAC with
    /// the whole `whsec_…` text as given). A secret that is not one never verifies; check it
    /// when the configuration loads.
    ///
    /// ```
    /// use agent_trigger::signature::SignatureScheme;
    /// use agent_trigger::{SecretError, SigningSecret};
    ///
    /// let text = SigningSecret::new("s", "whsec_test_secret").unwrap();
    /// assert_eq!(SignatureScheme::stripe().check_secret(&text), Ok(()));
    /// assert_eq!(SignatureScheme::svix().check_secret(&text), Err(SecretError::InvalidWhsec));
    /// assert_eq!(SignatureScheme::discord().check_secret(&text), Err(SecretError::InvalidPublicKey));
    /// ```
    pub fn check_secret(&self, secret: &SigningSecret) -> Result<(), SecretError> {
        check_secret(self.spec(), secret)
    }

    /// This scheme's row.
    pub(crate) fn spec(&self) -> &SourceSpec {
        match &self.0 {
            Repr::Preset(_, spec) => spec,
            Repr::Custom(custom) => &custom.spec,
        }
    }
}

/// Whether `secret` can be a key of the row's scheme (see [`SignatureScheme::check_secret`]).
pub(crate) fn check_secret(spec: &SourceSpec, secret: &SigningSecret) -> Result<(), SecretError> {
    match &spec.scheme {
        Some(Scheme::StandardWebhooks(_)) => secret.check_standard_webhooks(),
        Some(Scheme::Ed25519 { .. }) => public_key(secret.expose_value())
            .map(drop)
            .ok_or(SecretError::InvalidPublicKey),
        _ => std::str::from_utf8(secret.expose_value())
            .map(drop)
            .map_err(|_| SecretError::NotText),
    }
}

impl PartialEq for SignatureScheme {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Repr::Preset(a, _), Repr::Preset(b, _)) => a == b,
            (Repr::Custom(a), Repr::Custom(b)) => a.table == b.table,
            _ => false,
        }
    }
}

impl Eq for SignatureScheme {}

impl fmt::Debug for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Preset(name, _) => f.debug_tuple("SignatureScheme").field(name).finish(),
            Repr::Custom(custom) => f
                .debug_tuple("SignatureScheme")
                .field(&custom.table)
                .finish(),
        }
    }
}

/// A signature scheme for a sender without a preset: an HMAC over a template of the request.
/// From [`SignatureScheme::custom`]; each method is a field of the server's
/// `[triggers.signature]` table, and [`build`](Self::build) checks them all.
///
/// ```
/// use agent_trigger::signature::{SchemeError, SignatureScheme};
///
/// let scheme = SignatureScheme::custom("X-Acme-Signature")
///     .signed("{timestamp}.{body}")
///     .timestamp_header("X-Acme-Timestamp")
///     .action("body:event.kind")
///     .build()
///     .unwrap();
/// assert_eq!(scheme.table().unwrap().signed_template(), "{timestamp}.{body}");
///
/// let error = SignatureScheme::custom("X-Acme-Signature").signed("{timestamp}.{body}").build();
/// let error = error.unwrap_err();
/// assert_eq!(error.field(), "signed");
/// assert_eq!(error.to_string(), "signed: {timestamp} needs timestamp_header");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomScheme {
    header: String,
    prefix: String,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    signed: String,
    timestamp_header: Option<String>,
    id_header: Option<String>,
    action: Option<String>,
}

impl CustomScheme {
    /// Stripped from the header's value before it is decoded (`sha256=`); default none, and a
    /// signature without it does not match.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// let scheme = SignatureScheme::custom("X-Sig").prefix("sha256=").build().unwrap();
    /// # drop(scheme);
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The HMAC's hash; default HMAC-SHA256.
    ///
    /// ```
    /// # use agent_trigger::signature::{HmacAlgorithm, SignatureScheme};
    /// let scheme = SignatureScheme::custom("X-Sig").algorithm(HmacAlgorithm::Sha1).build().unwrap();
    /// # drop(scheme);
    /// ```
    pub fn algorithm(mut self, algorithm: HmacAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// How the signature is written; default hex.
    ///
    /// ```
    /// # use agent_trigger::signature::{SignatureEncoding, SignatureScheme};
    /// let scheme = SignatureScheme::custom("X-Sig").encoding(SignatureEncoding::Base64).build().unwrap();
    /// # drop(scheme);
    /// ```
    pub fn encoding(mut self, encoding: SignatureEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// What is signed: a template over `{body}` (the raw body, required), `{timestamp}` (the
    /// value of [`timestamp_header`](Self::timestamp_header)), `{id}` (the value of
    /// [`id_header`](Self::id_header)) and `{url}` (the trigger's public URL and the request's
    /// query); anything else is literal text. Default `{body}`.
    ///
    /// ```
    /// # use agent_trigger::signature::{SchemeError, SignatureScheme};
    /// let table = SignatureScheme::custom("X-Sig").id_header("X-Id");
    /// assert!(table.clone().signed("{id}.{body}").build().is_ok());
    /// assert_eq!(
    ///     table.signed("{id}.{payload}").build().unwrap_err(),
    ///     SchemeError::UnknownPlaceholder("payload".into())
    /// );
    /// ```
    pub fn signed(mut self, template: impl Into<String>) -> Self {
        self.signed = template.into();
        self
    }

    /// The header of a timestamp in Unix seconds, which `signed` must cover; it is then checked
    /// against the replay window (default ±300 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use agent_trigger::signature::SignatureScheme;
    /// let scheme = SignatureScheme::custom("X-Sig")
    ///     .signed("{timestamp}.{body}")
    ///     .timestamp_header("X-Timestamp")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(scheme.default_replay_window(), Some(Duration::from_secs(300)));
    /// ```
    pub fn timestamp_header(mut self, name: impl Into<String>) -> Self {
        self.timestamp_header = Some(name.into());
        self
    }

    /// The header of the delivery id that recognises redeliveries (contract §5).
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// let scheme = SignatureScheme::custom("X-Sig").id_header("X-Delivery").build().unwrap();
    /// # drop(scheme);
    /// ```
    pub fn id_header(mut self, name: impl Into<String>) -> Self {
        self.id_header = Some(name.into());
        self
    }

    /// Where the action is: `header:NAME`, or `body:dotted.path` (a string at most four keys
    /// deep).
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert!(SignatureScheme::custom("X-Sig").action("header:X-Event").build().is_ok());
    /// assert!(SignatureScheme::custom("X-Sig").action("body:event.type").build().is_ok());
    /// assert!(SignatureScheme::custom("X-Sig").action("event.type").build().is_err());
    /// ```
    pub fn action(mut self, from: impl Into<String>) -> Self {
        self.action = Some(from.into());
        self
    }

    /// The header that carries the signature, as given.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::custom("X-Sig").header_name(), "X-Sig");
    /// ```
    pub fn header_name(&self) -> &str {
        &self.header
    }

    /// The template of what is signed, as given.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::custom("X-Sig").signed_template(), "{body}");
    /// ```
    pub fn signed_template(&self) -> &str {
        &self.signed
    }

    /// The scheme, once every field is checked: header names, the template's placeholders and
    /// the headers they need, and the action's form.
    ///
    /// ```
    /// # use agent_trigger::signature::{SchemeError, SignatureScheme};
    /// let error = SignatureScheme::custom("X-Sig").signed("{timestamp}").build().unwrap_err();
    /// assert_eq!(error, SchemeError::BodyNotSigned);
    /// assert_eq!(error.to_string(), "signed: the template must contain {body}");
    /// ```
    pub fn build(self) -> Result<SignatureScheme, SchemeError> {
        let header = header_name("header", &self.header)?;
        // Header values are read trimmed, so a prefix is visible ASCII.
        if !self.prefix.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(SchemeError::InvalidPrefix(self.prefix));
        }
        let signed = parse_template(&self.signed)?;
        if !signed.contains(&Part::Body) {
            return Err(SchemeError::BodyNotSigned);
        }
        let timestamp = match &self.timestamp_header {
            Some(name) => Some(TimestampHeader {
                header: header_name("timestamp_header", name)?,
                format: TimestampFormat::UnixSeconds,
            }),
            None => None,
        };
        let id = match &self.id_header {
            Some(name) => Some(header_name("id_header", name)?),
            None => None,
        };
        match (signed.contains(&Part::Timestamp), timestamp.is_some()) {
            (true, false) => {
                return Err(SchemeError::PlaceholderWithoutHeader {
                    placeholder: "{timestamp}",
                    field: "timestamp_header",
                });
            }
            (false, true) => return Err(SchemeError::UnsignedTimestamp),
            _ => {}
        }
        let named = [
            ("timestamp_header", timestamp.as_ref().map(|t| &t.header)),
            ("id_header", id.as_ref()),
        ];
        for (at, (field, name)) in named.iter().enumerate() {
            let Some(name) = name else { continue };
            let earlier = std::iter::once(Some(&header)).chain(named[..at].iter().map(|n| n.1));
            if earlier.flatten().any(|other| other == *name) {
                return Err(SchemeError::HeaderNamedTwice {
                    field,
                    value: name.as_str().to_owned(),
                });
            }
        }
        if signed.contains(&Part::Id) && id.is_none() {
            return Err(SchemeError::PlaceholderWithoutHeader {
                placeholder: "{id}",
                field: "id_header",
            });
        }
        let action = match &self.action {
            Some(from) => parse_action(from)?,
            None => ActionFrom::None,
        };
        let spec = SourceSpec {
            replay_window: timestamp.as_ref().map(|_| DEFAULT_WINDOW),
            body_timestamp: BodyTimestamp::None,
            delivery_id: match &id {
                Some(header) => DeliveryIdFrom::Header(header.clone()),
                None => DeliveryIdFrom::None,
            },
            body_fields: match action {
                ActionFrom::OwnedBodyPath(_) => BodyFields::ActionPath,
                _ => BodyFields::Static(&[]),
            },
            action,
            form: None,
            envelope: Envelope::Plain,
            scheme: Some(Scheme::Hmac(HmacScheme {
                header,
                prefix: Cow::Owned(self.prefix.clone()),
                algorithm: self.algorithm,
                encoding: self.encoding,
                list: SignatureList::Single,
                signed: Cow::Owned(signed),
                timestamp,
                id,
            })),
        };
        Ok(SignatureScheme(Repr::Custom(Arc::new(Custom {
            table: self,
            spec,
        }))))
    }
}

fn header_name(field: &'static str, name: &str) -> Result<HeaderName, SchemeError> {
    HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| SchemeError::InvalidHeaderName {
        field,
        value: name.to_owned(),
    })
}

/// The template's pieces: literal text between `{body}`, `{timestamp}`, `{id}` and `{url}`.
fn parse_template(template: &str) -> Result<Vec<Part>, SchemeError> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Text(Cow::Owned(rest[..open].to_owned())));
        }
        let inside = &rest[open + 1..];
        let close = inside.find('}').ok_or(SchemeError::UnclosedPlaceholder)?;
        parts.push(match &inside[..close] {
            "body" => Part::Body,
            "timestamp" => Part::Timestamp,
            "id" => Part::Id,
            "url" => Part::Url,
            other => return Err(SchemeError::UnknownPlaceholder(other.to_owned())),
        });
        rest = &inside[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(Cow::Owned(rest.to_owned())));
    }
    Ok(parts)
}

/// `header:NAME` or `body:dotted.path`.
fn parse_action(from: &str) -> Result<ActionFrom, SchemeError> {
    let invalid = || SchemeError::InvalidAction(from.to_owned());
    if let Some(name) = from.strip_prefix("header:") {
        return HeaderName::from_bytes(name.trim().as_bytes())
            .map(ActionFrom::Header)
            .map_err(|_| invalid());
    }
    let path = from.strip_prefix("body:").ok_or_else(invalid)?;
    let keys: Box<[Box<str>]> = path.split('.').map(Box::from).collect();
    if keys.is_empty() || keys.len() > MAX_PATH_DEPTH || keys.iter().any(|key| key.is_empty()) {
        return Err(invalid());
    }
    Ok(ActionFrom::OwnedBodyPath(keys))
}

/// Why a [`SignatureScheme`] could not be made: a preset name that is not one, or a table with
/// a field that does not hold. [`field`](Self::field) names the field, as the server's
/// configuration spells it; the `Display` text says what is wrong and what would do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemeError {
    /// No preset has this name.
    UnknownPreset(String),
    /// A field holds a value other than the ones it takes (`algorithm`, `encoding`).
    InvalidValue {
        /// The field.
        field: &'static str,
        /// What it held.
        value: String,
        /// What it takes.
        expected: &'static [&'static str],
    },
    /// A field that names a header holds something that is not a header name.
    InvalidHeaderName {
        /// The field (`header`, `timestamp_header`, `id_header`).
        field: &'static str,
        /// What it held.
        value: String,
    },
    /// A field names a header that an earlier field already names (`header`,
    /// `timestamp_header`, `id_header`, in that order).
    HeaderNamedTwice {
        /// The later field.
        field: &'static str,
        /// The header, in lower case.
        value: String,
    },
    /// `prefix` holds something other than visible ASCII.
    InvalidPrefix(String),
    /// `signed` has a placeholder other than `{body}`, `{timestamp}`, `{id}` and `{url}`.
    UnknownPlaceholder(String),
    /// `signed` opens a `{` that it never closes.
    UnclosedPlaceholder,
    /// `signed` has no `{body}`: the body would not be covered by the signature.
    BodyNotSigned,
    /// `signed` has a placeholder whose header the table does not name.
    PlaceholderWithoutHeader {
        /// `{timestamp}` or `{id}`.
        placeholder: &'static str,
        /// The field that should name its header.
        field: &'static str,
    },
    /// `timestamp_header` is set but `signed` has no `{timestamp}`: a timestamp that is not
    /// signed could be changed by anyone, so its window would bound nothing.
    UnsignedTimestamp,
    /// `action` is neither `header:NAME` nor `body:dotted.path` of at most four keys.
    InvalidAction(String),
}

impl SchemeError {
    /// The field at fault, as the server's configuration names it: `signature` for a preset's
    /// name, else a field of the `[triggers.signature]` table.
    ///
    /// ```
    /// use agent_trigger::signature::{SchemeError, SignatureScheme};
    ///
    /// let error = "sha3".parse::<agent_trigger::signature::HmacAlgorithm>().unwrap_err();
    /// assert_eq!(error.field(), "algorithm");
    /// assert_eq!(error.to_string(), "algorithm: `sha3` is not one of hmac-sha1, hmac-sha256, hmac-sha512");
    /// ```
    pub fn field(&self) -> &'static str {
        match self {
            SchemeError::UnknownPreset(_) => "signature",
            SchemeError::InvalidValue { field, .. }
            | SchemeError::InvalidHeaderName { field, .. }
            | SchemeError::HeaderNamedTwice { field, .. } => field,
            SchemeError::InvalidPrefix(_) => "prefix",
            SchemeError::UnknownPlaceholder(_)
            | SchemeError::UnclosedPlaceholder
            | SchemeError::BodyNotSigned
            | SchemeError::PlaceholderWithoutHeader { .. } => "signed",
            SchemeError::UnsignedTimestamp => "timestamp_header",
            SchemeError::InvalidAction(_) => "action",
        }
    }
}

impl fmt::Display for SchemeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = self.field();
        match self {
            SchemeError::UnknownPreset(name) => write!(
                f,
                "unknown signature preset `{name}`: expected one of {}, or a table",
                SignatureScheme::PRESETS.join(", ")
            ),
            SchemeError::InvalidValue {
                value, expected, ..
            } => write!(
                f,
                "{field}: `{value}` is not one of {}",
                expected.join(", ")
            ),
            SchemeError::InvalidHeaderName { value, .. } => {
                write!(f, "{field}: `{value}` is not a header name")
            }
            SchemeError::HeaderNamedTwice { value, .. } => {
                write!(f, "{field}: `{value}` is already another field's header")
            }
            SchemeError::InvalidPrefix(value) => write!(
                f,
                "{field}: `{value}` must be visible ASCII, without spaces"
            ),
            SchemeError::UnknownPlaceholder(name) => write!(
                f,
                "{field}: unknown placeholder `{{{name}}}`: expected {{body}}, {{timestamp}}, {{id}} or {{url}}"
            ),
            SchemeError::UnclosedPlaceholder => write!(f, "{field}: a `{{` is never closed"),
            SchemeError::BodyNotSigned => {
                write!(f, "{field}: the template must contain {{body}}")
            }
            SchemeError::PlaceholderWithoutHeader {
                placeholder,
                field: needed,
            } => write!(f, "{field}: {placeholder} needs {needed}"),
            SchemeError::UnsignedTimestamp => write!(
                f,
                "{field}: the timestamp must be signed: add {{timestamp}} to `signed`"
            ),
            SchemeError::InvalidAction(value) => write!(
                f,
                "{field}: `{value}` is neither header:NAME nor body:dotted.path (at most {MAX_PATH_DEPTH} keys)"
            ),
        }
    }
}

impl std::error::Error for SchemeError {}

/// A table as text: the fields of [`CustomScheme`], absent ones left to their defaults.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    header: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    action: Option<String>,
}

impl Table {
    fn build(self) -> Result<SignatureScheme, SchemeError> {
        let mut table = SignatureScheme::custom(self.header);
        if let Some(prefix) = self.prefix {
            table = table.prefix(prefix);
        }
        if let Some(algorithm) = self.algorithm {
            table = table.algorithm(algorithm.parse()?);
        }
        if let Some(encoding) = self.encoding {
            table = table.encoding(encoding.parse()?);
        }
        if let Some(signed) = self.signed {
            table = table.signed(signed);
        }
        if let Some(name) = self.timestamp_header {
            table = table.timestamp_header(name);
        }
        if let Some(name) = self.id_header {
            table = table.id_header(name);
        }
        if let Some(from) = self.action {
            table = table.action(from);
        }
        table.build()
    }
}

impl serde::Serialize for SignatureScheme {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Preset(name, _) => serializer.serialize_str(name),
            Repr::Custom(custom) => {
                let table = &custom.table;
                Table {
                    header: table.header.clone(),
                    prefix: Some(table.prefix.clone()).filter(|prefix| !prefix.is_empty()),
                    algorithm: Some(table.algorithm.as_str().to_owned()),
                    encoding: Some(table.encoding.as_str().to_owned()),
                    signed: Some(table.signed.clone()),
                    timestamp_header: table.timestamp_header.clone(),
                    id_header: table.id_header.clone(),
                    action: table.action.clone(),
                }
                .serialize(serializer)
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for SignatureScheme {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SignatureScheme;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a signature preset's name, or a table with at least `header`")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
                SignatureScheme::preset(name).map_err(E::custom)
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<Self::Value, M::Error> {
                let table = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                table.build().map_err(serde::de::Error::custom)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

// ---- the presets ----

const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

const BODY: &[Part] = &[Part::Body];
const TIMESTAMP_DOT_BODY: &[Part] = &[Part::Timestamp, Part::Text(Cow::Borrowed(".")), Part::Body];
const TIMESTAMP_BODY: &[Part] = &[Part::Timestamp, Part::Body];

/// An HMAC row's scheme with no timestamp header and no signed id.
const fn hmac(
    header: &'static str,
    prefix: &'static str,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    list: SignatureList,
    signed: &'static [Part],
    timestamp: Option<TimestampHeader>,
) -> Option<Scheme> {
    Some(Scheme::Hmac(HmacScheme {
        header: HeaderName::from_static(header),
        prefix: Cow::Borrowed(prefix),
        algorithm,
        encoding,
        list,
        signed: Cow::Borrowed(signed),
        timestamp,
        id: None,
    }))
}

/// A row without a form or an envelope.
const fn row(
    scheme: Option<Scheme>,
    replay_window: Option<Duration>,
    delivery_id: DeliveryIdFrom,
    action: ActionFrom,
    body_fields: &'static [crate::json::FieldPath<'static>],
) -> SourceSpec {
    row_with(
        None,
        Envelope::Plain,
        scheme,
        replay_window,
        delivery_id,
        action,
        body_fields,
    )
}

/// A row; no preset signs a timestamp in its body.
const fn row_with(
    form: Option<crate::form::FormRules>,
    envelope: Envelope,
    scheme: Option<Scheme>,
    replay_window: Option<Duration>,
    delivery_id: DeliveryIdFrom,
    action: ActionFrom,
    body_fields: &'static [crate::json::FieldPath<'static>],
) -> SourceSpec {
    SourceSpec {
        scheme,
        replay_window,
        body_timestamp: BodyTimestamp::None,
        delivery_id,
        action,
        form,
        envelope,
        body_fields: BodyFields::Static(body_fields),
    }
}

static GITHUB: SourceSpec = row(
    hmac(
        "x-hub-signature-256",
        "sha256=",
        HmacAlgorithm::Sha256,
        SignatureEncoding::Hex,
        SignatureList::Single,
        BODY,
        None,
    ),
    None,
    DeliveryIdFrom::Header(HeaderName::from_static("x-github-delivery")),
    ActionFrom::HeaderDotBody(HeaderName::from_static("x-github-event"), "action"),
    &[&["action"]],
);

static STRIPE: SourceSpec = row(
    hmac(
        "stripe-signature",
        "",
        HmacAlgorithm::Sha256,
        SignatureEncoding::Hex,
        SignatureList::Pairs {
            timestamp: Some("t"),
            signature: "v1",
        },
        TIMESTAMP_DOT_BODY,
        None,
    ),
    Some(DEFAULT_WINDOW),
    DeliveryIdFrom::BodyField("id"),
    ActionFrom::BodyPath(&[&["type"]]),
    &[&["id"], &["type"]],
);

static SHOPIFY: SourceSpec = row(
    hmac(
        "x-shopify-hmac-sha256",
        "",
        HmacAlgorithm::Sha256,
        SignatureEncoding::Base64,
        SignatureList::Single,
        BODY,
        None,
    ),
    None,
    DeliveryIdFrom::Header(HeaderName::from_static("x-shopify-webhook-id")),
    ActionFrom::Header(HeaderName::from_static("x-shopify-topic")),
    &[],
);

static TWILIO: SourceSpec = row_with(
    Some(TWILIO_FORM),
    Envelope::Plain,
    Some(Scheme::Twilio {
        header: HeaderName::from_static("x-twilio-signature"),
    }),
    None,
    DeliveryIdFrom::Header(HeaderName::from_static("i-twilio-idempotency-token")),
    ActionFrom::None,
    &[],
);

static SVIX: SourceSpec = row(
    Some(Scheme::StandardWebhooks(&SVIX_HEADERS)),
    Some(DEFAULT_WINDOW),
    DeliveryIdFrom::Header(HeaderName::from_static("svix-id")),
    ActionFrom::BodyPath(&[&["type"]]),
    &[&["type"]],
);

static ZENDESK: SourceSpec = row(
    hmac(
        "x-zendesk-webhook-signature",
        "",
        HmacAlgorithm::Sha256,
        SignatureEncoding::Base64,
        SignatureList::Single,
        TIMESTAMP_BODY,
        Some(TimestampHeader {
            header: HeaderName::from_static("x-zendesk-webhook-signature-timestamp"),
            format: TimestampFormat::Rfc3339,
        }),
    ),
    Some(DEFAULT_WINDOW),
    DeliveryIdFrom::Header(HeaderName::from_static("x-zendesk-webhook-invocation-id")),
    ActionFrom::BodyPath(&[&["type"]]),
    &[&["type"]],
);

static PAGERDUTY: SourceSpec = row(
    hmac(
        "x-pagerduty-signature",
        "",
        HmacAlgorithm::Sha256,
        SignatureEncoding::Hex,
        SignatureList::Pairs {
            timestamp: None,
            signature: "v1",
        },
        BODY,
        None,
    ),
    None,
    DeliveryIdFrom::Header(HeaderName::from_static("x-webhook-id")),
    ActionFrom::BodyPath(&[&["event", "event_type"]]),
    &[&["event", "event_type"]],
);

static GITLAB: SourceSpec = row(
    Some(Scheme::Token {
        header: HeaderName::from_static("x-gitlab-token"),
    }),
    None,
    DeliveryIdFrom::Headers(&GITLAB_DELIVERY_IDS),
    ActionFrom::Header(HeaderName::from_static("x-gitlab-event")),
    &[],
);

static GITLAB_DELIVERY_IDS: [HeaderName; 2] = [
    HeaderName::from_static("idempotency-key"),
    HeaderName::from_static("x-gitlab-event-uuid"),
];

static SENTRY: SourceSpec = row(
    hmac(
        "sentry-hook-signature",
        "",
        HmacAlgorithm::Sha256,
        SignatureEncoding::Hex,
        SignatureList::Single,
        BODY,
        None,
    ),
    None,
    DeliveryIdFrom::Header(HeaderName::from_static("request-id")),
    ActionFrom::HeaderDotBody(HeaderName::from_static("sentry-hook-resource"), "action"),
    &[&["action"]],
);

static INTERCOM: SourceSpec = row(
    hmac(
        "x-hub-signature",
        "sha1=",
        HmacAlgorithm::Sha1,
        SignatureEncoding::Hex,
        SignatureList::Single,
        BODY,
        None,
    ),
    None,
    DeliveryIdFrom::BodyField("id"),
    ActionFrom::BodyPath(&[&["topic"]]),
    &[&["id"], &["topic"]],
);

static DISCORD: SourceSpec = row_with(
    None,
    Envelope::DiscordInteractions,
    Some(Scheme::Ed25519 {
        signature: HeaderName::from_static("x-signature-ed25519"),
        timestamp: HeaderName::from_static("x-signature-timestamp"),
    }),
    Some(DEFAULT_WINDOW),
    DeliveryIdFrom::BodyField("id"),
    ActionFrom::BodyPathOrNumber(&["data", "name"], &["type"]),
    &[&["type"], &["id"], &["data", "name"]],
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_name_has_its_row() {
        for name in SignatureScheme::PRESETS {
            let scheme = SignatureScheme::preset(name).unwrap();
            assert_eq!(scheme.name(), Some(*name));
            assert!(scheme.spec().scheme.is_some(), "{name}");
        }
        assert_eq!(
            SignatureScheme::preset("standard-webhooks").unwrap().spec(),
            crate::Source::Webhook.spec()
        );
    }

    #[test]
    fn templates_parse_into_parts() {
        assert_eq!(
            parse_template("v0:{timestamp}:{body}").unwrap(),
            [
                Part::Text("v0:".into()),
                Part::Timestamp,
                Part::Text(":".into()),
                Part::Body
            ]
        );
        assert_eq!(
            parse_template("{url}{body}").unwrap(),
            [Part::Url, Part::Body]
        );
        assert_eq!(parse_template("").unwrap(), []);
        assert_eq!(
            parse_template("{body").unwrap_err(),
            SchemeError::UnclosedPlaceholder
        );
        assert_eq!(
            parse_template("{{body}}").unwrap_err(),
            SchemeError::UnknownPlaceholder("{body".into())
        );
        assert_eq!(
            parse_template("{Body}").unwrap_err(),
            SchemeError::UnknownPlaceholder("Body".into())
        );
    }

    #[test]
    fn tables_are_checked_whole() {
        let table = || SignatureScheme::custom("X-Sig");
        assert_eq!(
            table().signed("{id}").build().unwrap_err(),
            SchemeError::BodyNotSigned
        );
        assert_eq!(
            table()
                .signed("{id}.{body}")
                .build()
                .unwrap_err()
                .to_string(),
            "signed: {id} needs id_header"
        );
        assert_eq!(
            table().timestamp_header("X-Ts").build().unwrap_err(),
            SchemeError::UnsignedTimestamp
        );
        assert_eq!(
            SignatureScheme::custom("X Sig").build().unwrap_err(),
            SchemeError::InvalidHeaderName {
                field: "header",
                value: "X Sig".into()
            }
        );
        assert_eq!(
            table().id_header("").build().unwrap_err().field(),
            "id_header"
        );
        for bad in [
            "event",
            "body:",
            "body:a..b",
            "body:a.b.c.d.e",
            "header:",
            "header:a b",
        ] {
            assert_eq!(
                table().action(bad).build().unwrap_err(),
                SchemeError::InvalidAction(bad.into()),
                "{bad}"
            );
        }
        assert!(table().action("body:a.b.c.d").build().is_ok());
        assert_eq!(
            table().prefix("v1 ").build().unwrap_err(),
            SchemeError::InvalidPrefix("v1 ".into())
        );
        assert_eq!(
            table()
                .signed("{timestamp}{id}{body}")
                .timestamp_header("X-T")
                .id_header("x-t")
                .build()
                .unwrap_err()
                .to_string(),
            "id_header: `x-t` is already another field's header"
        );
        assert_eq!(
            table().id_header("x-sig").build().unwrap_err().field(),
            "id_header"
        );
        let error = SchemeError::UnknownPreset("x".into()).to_string();
        for name in SignatureScheme::PRESETS {
            assert!(error.contains(name), "{error}");
        }
    }

    #[test]
    fn schemes_round_trip_through_serde() {
        for name in SignatureScheme::PRESETS {
            let scheme = SignatureScheme::preset(name).unwrap();
            let text = serde_json::to_string(&scheme).unwrap();
            assert_eq!(text, format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<SignatureScheme>(&text).unwrap(),
                scheme
            );
        }
        let table = SignatureScheme::custom("X-Acme-Signature")
            .prefix("sha512=")
            .algorithm(HmacAlgorithm::Sha512)
            .encoding(SignatureEncoding::Base64)
            .signed("{timestamp}.{id}.{url}.{body}")
            .timestamp_header("X-Acme-Timestamp")
            .id_header("X-Acme-Id")
            .action("header:X-Acme-Event")
            .build()
            .unwrap();
        let text = serde_json::to_string(&table).unwrap();
        assert_eq!(
            serde_json::from_str::<SignatureScheme>(&text).unwrap(),
            table
        );
        let unknown_field =
            serde_json::from_str::<SignatureScheme>(r#"{"header":"X","hash":"sha1"}"#);
        assert!(
            unknown_field
                .unwrap_err()
                .to_string()
                .contains("unknown field `hash`")
        );
        let bad_value =
            serde_json::from_str::<SignatureScheme>(r#"{"header":"X","encoding":"b64"}"#);
        assert!(
            bad_value
                .unwrap_err()
                .to_string()
                .contains("encoding: `b64` is not one of hex, base64")
        );
    }
}
