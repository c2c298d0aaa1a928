//! What a delivery is about, read from the places its source's table row names: the delivery id
//! that recognises redeliveries, the action that allowlists match, and Slack's envelope.

use http::{HeaderMap, HeaderName};

use crate::json::Fields;
use crate::source::header::IDEMPOTENCY_KEY;
use crate::source::{ActionFrom, BodyTimestamp, DeliveryIdFrom, Envelope, SourceSpec, with_path};
use crate::validation::Issue;

/// Why a delivery's facts cannot be taken as they are: refused with a `400`, never acknowledged
/// and then failed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadEvent {
    /// A client's `Idempotency-Key` longer than a delivery id may be.
    IdempotencyKeyTooLong,
    /// A client's `Idempotency-Key` that is not visible ASCII.
    IdempotencyKeyNotText,
    /// An action that could not be an environment variable's value.
    UnfitAction,
    /// A delivery id that could not be an environment variable's value.
    UnfitDeliveryId,
}

impl From<BadEvent> for Issue {
    fn from(bad: BadEvent) -> Issue {
        match bad {
            BadEvent::IdempotencyKeyTooLong => Issue::idempotency_key_too_long(MAX_DELIVERY_ID_LEN),
            BadEvent::IdempotencyKeyNotText => Issue::idempotency_key_not_text(),
            BadEvent::UnfitAction => Issue::unfit_for_environment(&["action"], MAX_ACTION_LEN),
            BadEvent::UnfitDeliveryId => {
                Issue::unfit_for_environment(&["deliveryId"], MAX_DELIVERY_ID_LEN)
            }
        }
    }
}

/// Delivery ids longer than this are ignored rather than stored.
const MAX_DELIVERY_ID_LEN: usize = 255;

/// Actions longer than this are refused: executors hand them on in an environment variable,
/// and a bounded length also bounds what reaches the log.
const MAX_ACTION_LEN: usize = 1024;

/// A sender's handshake, answered once the signature verified and never handed to the sink.
#[derive(Debug, PartialEq)]
pub(crate) enum Handshake {
    /// Slack's `url_verification`: its challenge, to be echoed.
    SlackChallenge(Box<str>),
    /// Discord's PING (`{"type":1}`), answered with a PONG.
    DiscordPing,
}

/// The facts about one delivery that the pipeline acts on.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Event {
    pub(crate) delivery_id: Option<Box<str>>,
    pub(crate) action: Option<String>,
    pub(crate) handshake: Option<Handshake>,
    /// A Slack message posted by a bot, skipped to avoid loops.
    pub(crate) from_bot: bool,
    /// The signed timestamp from the body, in Unix milliseconds (Linear).
    pub(crate) body_timestamp_millis: Option<f64>,
}

impl Event {
    /// Reads a JSON delivery; a client's `Idempotency-Key` that cannot be a delivery id is an
    /// issue (it is refused rather than ignored, which would lose its idempotency).
    pub(crate) fn from_json(
        spec: &SourceSpec,
        headers: &HeaderMap,
        fields: &Fields<'_>,
    ) -> Result<Event, BadEvent> {
        let delivery_id = match &spec.delivery_id {
            DeliveryIdFrom::None => None,
            DeliveryIdFrom::Header(name) => header_id(headers, name),
            DeliveryIdFrom::Headers(names) => {
                names.iter().find_map(|name| header_id(headers, name))
            }
            DeliveryIdFrom::BodyField(name) => fields.str(&[*name]).and_then(bounded_id),
        };
        let action = match &spec.action {
            ActionFrom::None => None,
            ActionFrom::Header(name) => header_text(headers, name).map(String::from),
            ActionFrom::HeaderDotBody(name, field) => {
                header_text(headers, name).map(|event| match fields.str(&[*field]) {
                    Some(action) => format!("{event}.{action}"),
                    None => event.to_owned(),
                })
            }
            ActionFrom::BodyPath(paths) => paths
                .iter()
                .find_map(|path| fields.str(path))
                .map(String::from),
            ActionFrom::OwnedBodyPath(path) => {
                with_path(path, |path| fields.str(path).map(String::from))
            }
            ActionFrom::BodyPathOrNumber(path, number) => fields
                .str(path)
                .map(String::from)
                .or_else(|| fields.number(number).map(|number| number.to_string())),
            ActionFrom::TypeDotAction(kind, action) => {
                match (fields.str(&[*kind]), fields.str(&[*action])) {
                    (Some(kind), Some(action)) => Some(format!("{kind}.{action}")),
                    _ => None,
                }
            }
            ActionFrom::Slack => fields.str(&["event", "type"]).map(String::from),
        };
        let (handshake, from_bot) = match spec.envelope {
            Envelope::Plain => (None, false),
            Envelope::SlackEvents => {
                let challenge = (fields.str(&["type"]) == Some("url_verification")).then(|| {
                    Handshake::SlackChallenge(fields.str(&["challenge"]).unwrap_or("").into())
                });
                let from_bot = fields.is_present(&["event", "bot_id"])
                    || fields.str(&["event", "subtype"]) == Some("bot_message");
                (challenge, from_bot)
            }
            Envelope::DiscordInteractions => (
                (fields.number(&["type"]) == Some(1.0)).then_some(Handshake::DiscordPing),
                false,
            ),
        };
        let body_timestamp_millis = match spec.body_timestamp {
            BodyTimestamp::None => None,
            BodyTimestamp::Millis(field) => fields.number(field[0]),
        };
        let delivery_id = match delivery_id {
            Some(id) => Some(id),
            None => idempotency_key(headers)?,
        };
        Event {
            delivery_id,
            action,
            handshake,
            from_bot,
            body_timestamp_millis,
        }
        .fit_for_environment()
    }

    /// Reads a form delivery (Slack slash commands and interactivity, Twilio), whose action
    /// the form decoder found; a sender's own id header names it, else `Idempotency-Key`.
    pub(crate) fn from_form(
        spec: &SourceSpec,
        headers: &HeaderMap,
        action: Option<String>,
    ) -> Result<Event, BadEvent> {
        let own = match &spec.delivery_id {
            DeliveryIdFrom::Header(name) => header_id(headers, name),
            DeliveryIdFrom::Headers(names) => {
                names.iter().find_map(|name| header_id(headers, name))
            }
            DeliveryIdFrom::None | DeliveryIdFrom::BodyField(_) => None,
        };
        let delivery_id = match own {
            Some(id) => Some(id),
            None => idempotency_key(headers)?,
        };
        Event {
            delivery_id,
            action,
            ..Event::default()
        }
        .fit_for_environment()
    }

    /// The action and delivery id become environment variables of an executed command: one
    /// with a NUL byte, or an action past [`MAX_ACTION_LEN`], is refused here rather than
    /// acknowledged and then failed. (Delivery ids are bounded when they are read.)
    fn fit_for_environment(self) -> Result<Event, BadEvent> {
        let fits = |text: &str, limit: usize| text.len() <= limit && !text.contains('\0');
        if self
            .action
            .as_deref()
            .is_some_and(|action| !fits(action, MAX_ACTION_LEN))
        {
            return Err(BadEvent::UnfitAction);
        }
        if self
            .delivery_id
            .as_deref()
            .is_some_and(|id| !fits(id, MAX_DELIVERY_ID_LEN))
        {
            return Err(BadEvent::UnfitDeliveryId);
        }
        Ok(self)
    }
}

/// The client's `Idempotency-Key`: absent, or a delivery id of visible ASCII within the bound.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<Box<str>>, BadEvent> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| BadEvent::IdempotencyKeyNotText)?
        .trim();
    if text.len() > MAX_DELIVERY_ID_LEN {
        return Err(BadEvent::IdempotencyKeyTooLong);
    }
    Ok((!text.is_empty()).then(|| text.into()))
}

/// A header's value as non-empty text.
fn header_text<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .filter(|text| !text.is_empty())
}

/// A sender's own delivery id header; one that could not be an id is ignored, since the
/// sender would only redeliver it forever if it were refused.
fn header_id(headers: &HeaderMap, name: &HeaderName) -> Option<Box<str>> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| bounded_id(text.trim()))
}

fn bounded_id(id: &str) -> Option<Box<str>> {
    (!id.is_empty() && id.len() <= MAX_DELIVERY_ID_LEN).then(|| id.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source;
    use crate::json::scan;
    use http::HeaderValue;

    fn event(source: Source, headers: &[(&'static str, &'static str)], body: &str) -> Event {
        event_of(source.spec(), headers, body)
    }

    fn event_of(spec: &SourceSpec, headers: &[(&'static str, &'static str)], body: &str) -> Event {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_static(value));
        }
        let (mut keys, mut path) = Default::default();
        let fields = scan(body.as_bytes(), spec.body_fields(&mut keys, &mut path)).unwrap();
        Event::from_json(spec, &map, &fields).unwrap()
    }

    #[test]
    fn every_source_reads_its_delivery_id_and_action() {
        let jira = event(
            Source::Jira,
            &[("x-atlassian-webhook-identifier", "jira-1")],
            r#"{"webhookEvent":"jira:issue_created"}"#,
        );
        assert_eq!(jira.delivery_id.as_deref(), Some("jira-1"));
        assert_eq!(jira.action.as_deref(), Some("jira:issue_created"));

        let automation = event(
            Source::JiraAutomation,
            &[("idempotency-key", "rule-7")],
            r#"{"action":"deploy"}"#,
        );
        assert_eq!(automation.delivery_id.as_deref(), Some("rule-7"));
        assert_eq!(automation.action.as_deref(), Some("deploy"));
        let not_a_string = event(Source::JiraAutomation, &[], r#"{"action":{"a":1}}"#);
        assert_eq!(not_a_string.action, None);

        let slack = event(
            Source::Slack,
            &[],
            r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#,
        );
        assert_eq!(slack.delivery_id.as_deref(), Some("Ev1"));
        assert_eq!(slack.action.as_deref(), Some("app_mention"));
        assert!(!slack.from_bot);

        let linear = event(
            Source::Linear,
            &[("linear-delivery", "lin-1")],
            r#"{"type":"Issue","action":"create","webhookTimestamp":1700000000123}"#,
        );
        assert_eq!(linear.delivery_id.as_deref(), Some("lin-1"));
        assert_eq!(linear.action.as_deref(), Some("Issue.create"));
        assert_eq!(linear.body_timestamp_millis, Some(1_700_000_000_123.0));

        let hackerone = event(
            Source::Hackerone,
            &[("x-h1-delivery", "h1-1"), ("x-h1-event", "report_created")],
            "{}",
        );
        assert_eq!(hackerone.delivery_id.as_deref(), Some("h1-1"));
        assert_eq!(hackerone.action.as_deref(), Some("report_created"));

        let bugcrowd = event(
            Source::Bugcrowd,
            &[],
            r#"{"data":{"attributes":{"key":"submission.created"}}}"#,
        );
        assert_eq!(bugcrowd.delivery_id, None);
        assert_eq!(bugcrowd.action.as_deref(), Some("submission.created"));

        let webhook = event(
            Source::Webhook,
            &[("webhook-id", "msg_1")],
            r#"{"type":"invoice.paid"}"#,
        );
        assert_eq!(webhook.delivery_id.as_deref(), Some("msg_1"));
        assert_eq!(webhook.action.as_deref(), Some("invoice.paid"));
    }

    #[test]
    fn idempotency_key_is_the_fallback_for_every_source() {
        for source in Source::ALL {
            let read = event(source, &[("idempotency-key", "fallback")], "{}");
            assert_eq!(read.delivery_id.as_deref(), Some("fallback"), "{source}");
        }
        let own_wins = event(
            Source::Webhook,
            &[("webhook-id", "own"), ("idempotency-key", "fallback")],
            "{}",
        );
        assert_eq!(own_wins.delivery_id.as_deref(), Some("own"));
        let too_long = HeaderMap::from_iter([(
            IDEMPOTENCY_KEY,
            HeaderValue::from_str(&"x".repeat(MAX_DELIVERY_ID_LEN + 1)).unwrap(),
        )]);
        let fields = scan(b"{}", &[]).unwrap();
        let bad = Event::from_json(Source::JiraAutomation.spec(), &too_long, &fields).unwrap_err();
        assert_eq!(bad, BadEvent::IdempotencyKeyTooLong);
        assert_eq!(Issue::from(bad).code, "too_big");
        // A sender's own overlong id is ignored rather than refused.
        let own = HeaderMap::from_iter([(
            HeaderName::from_static("x-h1-delivery"),
            HeaderValue::from_str(&"x".repeat(MAX_DELIVERY_ID_LEN + 1)).unwrap(),
        )]);
        let event = Event::from_json(Source::Hackerone.spec(), &own, &fields).unwrap();
        assert_eq!(event.delivery_id, None);
    }

    #[test]
    fn slack_envelope() {
        let handshake = event(
            Source::Slack,
            &[],
            r#"{"type":"url_verification","challenge":"abc","token":"t"}"#,
        );
        assert_eq!(
            handshake.handshake,
            Some(Handshake::SlackChallenge("abc".into()))
        );
        let bot = event(
            Source::Slack,
            &[],
            r#"{"event":{"type":"message","bot_id":"B1"}}"#,
        );
        assert!(bot.from_bot);
        let bot = event(
            Source::Slack,
            &[],
            r#"{"event":{"type":"message","subtype":"bot_message"}}"#,
        );
        assert!(bot.from_bot);
        // Only Slack reads the envelope.
        let other = event(
            Source::Webhook,
            &[],
            r#"{"type":"url_verification","challenge":"abc"}"#,
        );
        assert_eq!(other.handshake, None);
    }

    #[test]
    fn every_preset_reads_its_delivery_id_and_action() {
        use crate::SignatureScheme;
        let read = |name: &str, headers: &[(&'static str, &'static str)], body: &str| {
            let scheme = SignatureScheme::preset(name).unwrap();
            let event = event_of(scheme.spec(), headers, body);
            (event.delivery_id.map(String::from), event.action)
        };
        let some = |id: &str, action: &str| (Some(id.to_owned()), Some(action.to_owned()));
        assert_eq!(
            read(
                "github",
                &[("x-github-delivery", "d1"), ("x-github-event", "issues")],
                r#"{"action":"opened"}"#
            ),
            some("d1", "issues.opened")
        );
        assert_eq!(
            read("github", &[("x-github-event", "push")], r#"{"ref":"main"}"#),
            (None, Some("push".to_owned()))
        );
        assert_eq!(
            read("stripe", &[], r#"{"id":"evt_1","type":"invoice.paid"}"#),
            some("evt_1", "invoice.paid")
        );
        assert_eq!(
            read(
                "shopify",
                &[
                    ("x-shopify-webhook-id", "s1"),
                    ("x-shopify-topic", "orders/create")
                ],
                "{}"
            ),
            some("s1", "orders/create")
        );
        assert_eq!(
            read("twilio", &[("i-twilio-idempotency-token", "t1")], "{}"),
            (Some("t1".to_owned()), None)
        );
        assert_eq!(
            read(
                "svix",
                &[("svix-id", "msg_1")],
                r#"{"type":"user.created"}"#
            ),
            some("msg_1", "user.created")
        );
        assert_eq!(
            read(
                "zendesk",
                &[("x-zendesk-webhook-invocation-id", "z1")],
                r#"{"type":"zen:event-type:ticket.created"}"#
            ),
            some("z1", "zen:event-type:ticket.created")
        );
        assert_eq!(
            read(
                "pagerduty",
                &[("x-webhook-id", "p1")],
                r#"{"event":{"event_type":"incident.triggered"}}"#
            ),
            some("p1", "incident.triggered")
        );
        assert_eq!(
            read(
                "gitlab",
                &[
                    ("x-gitlab-event-uuid", "uuid-1"),
                    ("idempotency-key", "idem-1"),
                    ("x-gitlab-event", "Push Hook")
                ],
                "{}"
            ),
            some("idem-1", "Push Hook")
        );
        assert_eq!(
            read("gitlab", &[("x-gitlab-event-uuid", "uuid-1")], "{}").0,
            Some("uuid-1".to_owned())
        );
        assert_eq!(
            read(
                "sentry",
                &[("request-id", "r1"), ("sentry-hook-resource", "issue")],
                r#"{"action":"created"}"#
            ),
            some("r1", "issue.created")
        );
        assert_eq!(
            read(
                "intercom",
                &[],
                r#"{"id":"notif_1","topic":"conversation.user.created"}"#
            ),
            some("notif_1", "conversation.user.created")
        );
        assert_eq!(
            read(
                "discord",
                &[],
                r#"{"id":"123","type":2,"data":{"name":"triage"}}"#
            ),
            some("123", "triage")
        );
        assert_eq!(
            read(
                "discord",
                &[],
                r#"{"id":"124","type":3,"data":{"custom_id":"b"}}"#
            ),
            some("124", "3")
        );
        let ping = event_of(
            SignatureScheme::discord().spec(),
            &[],
            r#"{"id":"1","type":1}"#,
        );
        assert_eq!(ping.handshake, Some(Handshake::DiscordPing));
        let table = SignatureScheme::custom("X-Sig")
            .id_header("X-Id")
            .action("body:event.kind")
            .build()
            .unwrap();
        let custom = event_of(table.spec(), &[("x-id", "c1")], r#"{"event":{"kind":"k"}}"#);
        assert_eq!(
            (custom.delivery_id.as_deref(), custom.action.as_deref()),
            (Some("c1"), Some("k"))
        );
    }

    #[test]
    fn every_path_the_table_reads_is_scanned() {
        let presets: Vec<_> = crate::SignatureScheme::PRESETS
            .iter()
            .map(|name| crate::SignatureScheme::preset(name).unwrap())
            .collect();
        let specs: Vec<(String, &SourceSpec)> = Source::ALL
            .iter()
            .map(|source| (source.to_string(), source.spec()))
            .chain(
                presets
                    .iter()
                    .map(|scheme| (scheme.name().unwrap().to_owned(), scheme.spec())),
            )
            .collect();
        for (source, spec) in specs {
            let crate::source::BodyFields::Static(body_fields) = spec.body_fields else {
                panic!("{source}: presets read static paths");
            };
            let scanned = |path: &[&str]| body_fields.contains(&path);
            if let DeliveryIdFrom::BodyField(name) = spec.delivery_id {
                assert!(scanned(&[name]), "{source}");
            }
            match &spec.action {
                ActionFrom::BodyPath(paths) => {
                    assert!(paths.iter().all(|p| scanned(p)), "{source}")
                }
                ActionFrom::TypeDotAction(a, b) => {
                    assert!(scanned(&[a]) && scanned(&[b]), "{source}")
                }
                ActionFrom::Slack => assert!(scanned(&["event", "type"])),
                ActionFrom::HeaderDotBody(_, field) => assert!(scanned(&[field]), "{source}"),
                ActionFrom::BodyPathOrNumber(path, number) => {
                    assert!(scanned(path) && scanned(number), "{source}")
                }
                ActionFrom::Header(_) | ActionFrom::None => {}
                ActionFrom::OwnedBodyPath(_) => panic!("{source}: presets read static paths"),
            }
            if let BodyTimestamp::Millis(field) = spec.body_timestamp {
                assert!(scanned(field[0]), "{source}");
            }
            if spec.envelope == Envelope::DiscordInteractions {
                assert!(scanned(&["type"]), "{source}");
            }
            if spec.envelope == Envelope::SlackEvents {
                for path in [
                    &["type"][..],
                    &["challenge"],
                    &["event", "bot_id"],
                    &["event", "subtype"],
                ] {
                    assert!(scanned(path), "{source} {path:?}");
                }
            }
        }
    }
}
