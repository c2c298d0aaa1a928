//! The seven webhook senders and what the pipeline knows about each of them.
//!
//! Sources are data: [`Source::spec`] returns one table row per sender saying how it signs its
//! deliveries, where its delivery id and its event action live, and how long its replay window
//! is. The pipeline reads the row; nothing else in the crate matches on a source by name.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;

use crate::form::FormRules;
use crate::json::FieldPath;
use crate::signature::mac::HmacScheme;

/// A webhook sender, the `{source}` segment of `POST /api/trigger/{source}/{triggerId}`.
///
/// Parsing is case-sensitive and accepts exactly the seven names of the spec.
///
/// ```
/// use agent_trigger::Source;
///
/// let source: Source = "jira-automation".parse().unwrap();
/// assert_eq!(source, Source::JiraAutomation);
/// assert_eq!(source.as_str(), "jira-automation");
/// assert!("Jira".parse::<Source>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Source {
    /// Jira Cloud admin webhooks, signed with `X-Hub-Signature`.
    Jira,
    /// Jira Automation "Send web request" rules, authenticated by a bearer key.
    JiraAutomation,
    /// Slack Events API, slash commands and interactivity, signed with `X-Slack-Signature`.
    Slack,
    /// Linear webhooks, signed with `Linear-Signature`.
    Linear,
    /// Any signed sender: Standard Webhooks (`webhook-signature`) by default, or the scheme a
    /// trigger picks with [`Trigger::with_signature`](crate::Trigger::with_signature) (GitHub,
    /// Stripe, Discord, … or a table of its own).
    Webhook,
    /// Bugcrowd webhooks, signed with `X-Bugcrowd-Digest`.
    Bugcrowd,
    /// HackerOne webhooks, signed with `X-H1-Signature`.
    Hackerone,
}

/// The error of parsing a [`Source`] from a name that is not one of the seven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSource;

impl fmt::Display for UnknownSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown webhook source")
    }
}

impl std::error::Error for UnknownSource {}

impl Source {
    /// Every source, in the order the spec lists them.
    pub const ALL: [Source; 7] = [
        Source::Jira,
        Source::JiraAutomation,
        Source::Slack,
        Source::Linear,
        Source::Webhook,
        Source::Bugcrowd,
        Source::Hackerone,
    ];

    /// The name used in the path.
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Jira => "jira",
            Source::JiraAutomation => "jira-automation",
            Source::Slack => "slack",
            Source::Linear => "linear",
            Source::Webhook => "webhook",
            Source::Bugcrowd => "bugcrowd",
            Source::Hackerone => "hackerone",
        }
    }

    /// The replay window that applies when a trigger does not set its own, or `None` when the
    /// sender signs no timestamp.
    ///
    /// ```
    /// use std::time::Duration;
    /// use agent_trigger::Source;
    ///
    /// assert_eq!(Source::Slack.default_replay_window(), Some(Duration::from_secs(300)));
    /// assert_eq!(Source::Jira.default_replay_window(), None);
    /// ```
    pub fn default_replay_window(self) -> Option<Duration> {
        self.spec().replay_window
    }

    /// Whether this sender can authenticate by its own signature, besides a bearer key.
    ///
    /// ```
    /// use agent_trigger::Source;
    ///
    /// assert!(Source::Linear.is_signed());
    /// assert!(!Source::JiraAutomation.is_signed());
    /// ```
    pub fn is_signed(self) -> bool {
        self.spec().scheme.is_some()
    }

    /// The header that carries this sender's signature, or `None` for a source that does not
    /// sign (`jira-automation`). For `webhook`, its default scheme's (Standard Webhooks): a
    /// trigger's [`SignatureScheme`](crate::SignatureScheme) may name another.
    ///
    /// ```
    /// use agent_trigger::Source;
    ///
    /// assert_eq!(Source::Slack.signature_header(), Some("x-slack-signature"));
    /// assert_eq!(Source::JiraAutomation.signature_header(), None);
    /// ```
    pub fn signature_header(self) -> Option<&'static str> {
        self.spec().scheme.as_ref().map(Scheme::signature_header)
    }

    /// Whether each trigger of this source picks its own signature scheme (`webhook`). A request
    /// to such a source without a bearer key is a signed request whatever its headers, and the
    /// scheme's headers are read only once the trigger is known.
    pub(crate) fn takes_any_scheme(self) -> bool {
        matches!(self, Source::Webhook)
    }

    /// This source's row of the table.
    pub(crate) fn spec(self) -> &'static SourceSpec {
        match self {
            Source::Jira => &JIRA,
            Source::JiraAutomation => &JIRA_AUTOMATION,
            Source::Slack => &SLACK,
            Source::Linear => &LINEAR,
            Source::Webhook => &WEBHOOK,
            Source::Bugcrowd => &BUGCROWD,
            Source::Hackerone => &HACKERONE,
        }
    }
}

impl FromStr for Source {
    type Err = UnknownSource;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "jira" => Source::Jira,
            "jira-automation" => Source::JiraAutomation,
            "slack" => Source::Slack,
            "linear" => Source::Linear,
            "webhook" => Source::Webhook,
            "bugcrowd" => Source::Bugcrowd,
            "hackerone" => Source::Hackerone,
            _ => return Err(UnknownSource),
        })
    }
}

impl serde::Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        const NAMES: [&str; 7] = [
            "jira",
            "jira-automation",
            "slack",
            "linear",
            "webhook",
            "bugcrowd",
            "hackerone",
        ];
        name.parse()
            .map_err(|_| serde::de::Error::unknown_variant(&name, &NAMES))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header names the sources use.
pub(crate) mod header {
    use http::HeaderName;

    pub(crate) const HUB_SIGNATURE: &str = "x-hub-signature";
    pub(crate) const ATLASSIAN_WEBHOOK_IDENTIFIER: &str = "x-atlassian-webhook-identifier";
    pub(crate) const SLACK_SIGNATURE: &str = "x-slack-signature";
    pub(crate) const SLACK_TIMESTAMP: &str = "x-slack-request-timestamp";
    pub(crate) const LINEAR_SIGNATURE: &str = "linear-signature";
    pub(crate) const LINEAR_DELIVERY: &str = "linear-delivery";
    pub(crate) const H1_SIGNATURE: &str = "x-h1-signature";
    pub(crate) const H1_DELIVERY: &str = "x-h1-delivery";
    pub(crate) const H1_EVENT: &str = "x-h1-event";
    pub(crate) const BUGCROWD_DIGEST: &str = "x-bugcrowd-digest";
    pub(crate) const WEBHOOK_ID: &str = "webhook-id";
    pub(crate) const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
    pub(crate) const WEBHOOK_SIGNATURE: &str = "webhook-signature";
    pub(crate) const SVIX_ID: &str = "svix-id";
    pub(crate) const SVIX_TIMESTAMP: &str = "svix-timestamp";
    pub(crate) const SVIX_SIGNATURE: &str = "svix-signature";
    pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
    pub(crate) const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
}

/// How a sender signs: one verifier per scheme, shared by the sources and presets that use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// HMAC-SHA256 of the raw body as hex in one header, with or without a `sha256=` prefix.
    HexHmac {
        header: &'static str,
        prefix: HexPrefix,
    },
    /// Slack's `v0=` HMAC over `v0:{timestamp}:{body}`, timestamp in its own header.
    SlackV0,
    /// Standard Webhooks: `{id}.{timestamp}.{body}`, base64 signatures, `whsec_` secrets, under
    /// these header names.
    StandardWebhooks(&'static StandardHeaders),
    /// Any HMAC over a template of the request: the presets' and hand-written tables.
    Hmac(HmacScheme),
    /// The secret itself in a header (GitLab signs nothing).
    Token { header: HeaderName },
    /// Ed25519 over `{timestamp}{body}` with a public key as the "secret" (Discord).
    Ed25519 {
        signature: HeaderName,
        timestamp: HeaderName,
    },
    /// Twilio's HMAC-SHA1 over the URL it called and its sorted form fields.
    Twilio { header: HeaderName },
}

/// The three header names of a Standard Webhooks sender (`webhook-*`, or svix's `svix-*`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StandardHeaders {
    pub(crate) id: &'static str,
    pub(crate) timestamp: &'static str,
    pub(crate) signature: &'static str,
}

pub(crate) static WEBHOOK_HEADERS: StandardHeaders = StandardHeaders {
    id: header::WEBHOOK_ID,
    timestamp: header::WEBHOOK_TIMESTAMP,
    signature: header::WEBHOOK_SIGNATURE,
};

pub(crate) static SVIX_HEADERS: StandardHeaders = StandardHeaders {
    id: header::SVIX_ID,
    timestamp: header::SVIX_TIMESTAMP,
    signature: header::SVIX_SIGNATURE,
};

/// Whether a hex signature carries the `sha256=` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HexPrefix {
    /// `sha256=<hex>` only.
    Required,
    /// `sha256=<hex>` or bare `<hex>`.
    Optional,
    /// bare `<hex>` only.
    None,
}

/// Where a timestamp that bounds replays comes from, when the scheme does not carry one itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyTimestamp {
    /// No timestamp beyond the scheme's own.
    None,
    /// A body field holding Unix milliseconds (Linear's `webhookTimestamp`), as the one-entry
    /// field list that [`crate::json::scan`] takes.
    Millis(&'static [FieldPath<'static>; 1]),
}

/// Where a sender puts its delivery id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeliveryIdFrom {
    /// The sender has none of its own (the `Idempotency-Key` fallback still applies).
    None,
    /// A request header.
    Header(HeaderName),
    /// The first of these request headers that is present (GitLab: `Idempotency-Key`, then
    /// `X-Gitlab-Event-UUID`).
    Headers(&'static [HeaderName]),
    /// A top-level string field of the JSON body.
    BodyField(&'static str),
}

/// Where a sender names the event that a delivery is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ActionFrom {
    /// The sender names none.
    None,
    /// A request header.
    Header(HeaderName),
    /// A request header, then `.` and a top-level body string when the body has it (GitHub's
    /// `issues.opened`).
    HeaderDotBody(HeaderName, &'static str),
    /// The first of these body paths that holds a string.
    BodyPath(&'static [&'static [&'static str]]),
    /// A body path written in a scheme's table (`body:dotted.path`).
    OwnedBodyPath(Box<[Box<str>]>),
    /// A body string at the first path, else the number at the second, as text (Discord's
    /// `data.name`, else its interaction `type`).
    BodyPathOrNumber(&'static [&'static str], &'static [&'static str]),
    /// Two top-level body strings joined with a dot (Linear's `Issue.create`).
    TypeDotAction(&'static str, &'static str),
    /// Slack: `event.type` for events, `command` for slash commands, `payload.type` for
    /// interactivity (the form cases are handled by the form decoder).
    Slack,
}

/// What the pipeline reads in a sender's JSON envelope beyond the delivery id and action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Envelope {
    /// Nothing.
    Plain,
    /// Slack Events API: the `url_verification` handshake, and bot messages skipped to avoid
    /// loops.
    SlackEvents,
    /// Discord interactions: the PING handshake, and answers in Discord's own shape.
    DiscordInteractions,
}

/// The body fields a row reads, picked out in the one validating pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyFields {
    /// These paths.
    Static(&'static [FieldPath<'static>]),
    /// The path of the row's [`ActionFrom::OwnedBodyPath`].
    ActionPath,
}

/// One row of the source table, or of a signature scheme of a `webhook` trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceSpec {
    pub(crate) scheme: Option<Scheme>,
    pub(crate) replay_window: Option<Duration>,
    pub(crate) body_timestamp: BodyTimestamp,
    pub(crate) delivery_id: DeliveryIdFrom,
    pub(crate) action: ActionFrom,
    /// How a form body (`application/x-www-form-urlencoded`) becomes JSON, for the senders
    /// that post forms (Slack's slash commands and interactivity, Twilio).
    pub(crate) form: Option<FormRules>,
    pub(crate) envelope: Envelope,
    pub(crate) body_fields: BodyFields,
}

impl SourceSpec {
    /// Whether the sender posts forms.
    pub(crate) fn accepts_form(&self) -> bool {
        self.form.is_some()
    }

    /// The body fields this row reads: its static paths, or its table's action path written
    /// into `keys` and `storage`.
    pub(crate) fn body_fields<'p>(
        &'p self,
        keys: &'p mut [&'p str; crate::json::MAX_PATH_DEPTH],
        storage: &'p mut [FieldPath<'p>; 1],
    ) -> &'p [FieldPath<'p>] {
        match (&self.body_fields, &self.action) {
            (BodyFields::Static(paths), _) => paths,
            (BodyFields::ActionPath, ActionFrom::OwnedBodyPath(path)) => {
                let depth = path.len().min(keys.len());
                for (key, segment) in keys.iter_mut().zip(path.iter()) {
                    *key = segment;
                }
                let keys: &'p [&'p str; crate::json::MAX_PATH_DEPTH] = keys;
                storage[0] = &keys[..depth];
                &storage[..]
            }
            (BodyFields::ActionPath, _) => &[],
        }
    }
}

/// Runs `read` with `path` as the borrowed form the JSON scan takes; paths of a table are at
/// most [`crate::json::MAX_PATH_DEPTH`] keys, checked when the table is built.
pub(crate) fn with_path<R>(path: &[Box<str>], read: impl FnOnce(&[&str]) -> R) -> R {
    let mut keys = [""; crate::json::MAX_PATH_DEPTH];
    let depth = path.len().min(keys.len());
    for (key, segment) in keys.iter_mut().zip(path) {
        *key = segment;
    }
    read(&keys[..depth])
}

static JIRA: SourceSpec = SourceSpec {
    scheme: Some(Scheme::HexHmac {
        header: header::HUB_SIGNATURE,
        prefix: HexPrefix::Required,
    }),
    replay_window: None,
    body_timestamp: BodyTimestamp::None,
    delivery_id: DeliveryIdFrom::Header(HeaderName::from_static(
        header::ATLASSIAN_WEBHOOK_IDENTIFIER,
    )),
    action: ActionFrom::BodyPath(&[&["webhookEvent"]]),
    form: None,
    envelope: Envelope::Plain,
    body_fields: BodyFields::Static(&[&["webhookEvent"]]),
};

static JIRA_AUTOMATION: SourceSpec = SourceSpec {
    scheme: None,
    replay_window: None,
    body_timestamp: BodyTimestamp::None,
    delivery_id: DeliveryIdFrom::None,
    action: ActionFrom::BodyPath(&[&["webhookEvent"], &["action"]]),
    form: None,
    envelope: Envelope::Plain,
    body_fields: BodyFields::Static(&[&["webhookEvent"], &["action"]]),
};

static SLACK: SourceSpec = SourceSpec {
    scheme: Some(Scheme::SlackV0),
    replay_window: Some(Duration::from_secs(300)),
    body_timestamp: BodyTimestamp::None,
    delivery_id: DeliveryIdFrom::BodyField("event_id"),
    action: ActionFrom::Slack,
    form: Some(crate::form::SLACK_FORM),
    envelope: Envelope::SlackEvents,
    body_fields: BodyFields::Static(&[
        &["type"],
        &["challenge"],
        &["event_id"],
        &["event", "type"],
        &["event", "bot_id"],
        &["event", "subtype"],
    ]),
};

static LINEAR: SourceSpec = SourceSpec {
    scheme: Some(Scheme::HexHmac {
        header: header::LINEAR_SIGNATURE,
        prefix: HexPrefix::None,
    }),
    replay_window: Some(Duration::from_secs(60)),
    body_timestamp: BodyTimestamp::Millis(&[&["webhookTimestamp"]]),
    delivery_id: DeliveryIdFrom::Header(HeaderName::from_static(header::LINEAR_DELIVERY)),
    action: ActionFrom::TypeDotAction("type", "action"),
    form: None,
    envelope: Envelope::Plain,
    body_fields: BodyFields::Static(&[&["type"], &["action"], &["webhookTimestamp"]]),
};

/// Also the `standard-webhooks` preset of [`crate::SignatureScheme`].
pub(crate) static WEBHOOK: SourceSpec = SourceSpec {
    scheme: Some(Scheme::StandardWebhooks(&WEBHOOK_HEADERS)),
    replay_window: Some(Duration::from_secs(300)),
    body_timestamp: BodyTimestamp::None,
    delivery_id: DeliveryIdFrom::Header(HeaderName::from_static(header::WEBHOOK_ID)),
    action: ActionFrom::BodyPath(&[&["type"]]),
    form: None,
    envelope: Envelope::Plain,
    body_fields: BodyFields::Static(&[&["type"]]),
};

// Bugcrowd's public docs do not pin the digest format; both forms are accepted here, and this
// row is the one place to change if that ever needs adjusting.
static BUGCROWD: SourceSpec = SourceSpec {
    scheme: Some(Scheme::HexHmac {
        header: header::BUGCROWD_DIGEST,
        prefix: HexPrefix::Optional,
    }),
    replay_window: None,
    body_timestamp: BodyTimestamp::None,
    delivery_id: DeliveryIdFrom::None,
    action: ActionFrom::BodyPath(&[&["data", "attributes", "key"]]),
    form: None,
    envelope: Envelope::Plain,
    body_fields: BodyFields::Static(&[&["data", "attributes", "key"]]),
};

static HACKERONE: SourceSpec = SourceSpec {
    scheme: Some(Scheme::HexHmac {
        header: header::H1_SIGNATURE,
        prefix: HexPrefix::Required,
    }),
    replay_window: None,
    body_timestamp: BodyTimestamp::None,
    delivery_id: DeliveryIdFrom::Header(HeaderName::from_static(header::H1_DELIVERY)),
    action: ActionFrom::Header(HeaderName::from_static(header::H1_EVENT)),
    form: None,
    envelope: Envelope::Plain,
    body_fields: BodyFields::Static(&[]),
};

impl Scheme {
    /// The header that carries the signature. For the sources whose scheme is fixed, its
    /// presence means "this request relies on a signature".
    pub(crate) fn signature_header(&self) -> &str {
        match self {
            Scheme::HexHmac { header, .. } => header,
            Scheme::SlackV0 => header::SLACK_SIGNATURE,
            Scheme::StandardWebhooks(names) => names.signature,
            Scheme::Hmac(scheme) => scheme.header.as_str(),
            Scheme::Token { header } | Scheme::Twilio { header } => header.as_str(),
            Scheme::Ed25519 { signature, .. } => signature.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for source in Source::ALL {
            assert_eq!(source.as_str().parse::<Source>(), Ok(source));
            assert_eq!(source.to_string(), source.as_str());
        }
        assert_eq!("SLACK".parse::<Source>(), Err(UnknownSource));
        assert_eq!("github".parse::<Source>(), Err(UnknownSource));
        assert_eq!("".parse::<Source>(), Err(UnknownSource));
    }

    #[test]
    fn serde_uses_the_path_names() {
        assert_eq!(
            serde_json::to_string(&Source::JiraAutomation).unwrap(),
            "\"jira-automation\""
        );
        assert_eq!(
            serde_json::from_str::<Source>("\"hackerone\"").unwrap(),
            Source::Hackerone
        );
        assert!(serde_json::from_str::<Source>("\"github\"").is_err());
    }

    #[test]
    fn only_jira_automation_is_unsigned() {
        let unsigned: Vec<_> = Source::ALL.into_iter().filter(|s| !s.is_signed()).collect();
        assert_eq!(unsigned, [Source::JiraAutomation]);
    }
}
