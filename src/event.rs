//! What a delivery is about, read from the places its source's table row names: the delivery id
//! that recognises redeliveries, the action that allowlists match, and Slack's envelope.

use http::{HeaderMap, HeaderName};

use crate::json::Fields;
use crate::source::header::IDEMPOTENCY_KEY;
use crate::source::{ActionFrom, BodyTimestamp, DeliveryIdFrom, SourceSpec};
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

/// The facts about one delivery that the pipeline acts on.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Event {
    pub(crate) delivery_id: Option<Box<str>>,
    pub(crate) action: Option<String>,
    /// Slack's `url_verification` challenge, to be echoed.
    pub(crate) challenge: Option<Box<str>>,
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
            DeliveryIdFrom::BodyField(name) => fields.str(&[*name]).and_then(bounded_id),
        };
        let action = match &spec.action {
            ActionFrom::Header(name) => headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .filter(|text| !text.is_empty())
                .map(String::from),
            ActionFrom::BodyPath(paths) => paths
                .iter()
                .find_map(|path| fields.str(path))
                .map(String::from),
            ActionFrom::TypeDotAction(kind, action) => {
                match (fields.str(&[*kind]), fields.str(&[*action])) {
                    (Some(kind), Some(action)) => Some(format!("{kind}.{action}")),
                    _ => None,
                }
            }
            ActionFrom::Slack => fields.str(&["event", "type"]).map(String::from),
        };
        let (challenge, from_bot) = if spec.slack_events {
            let challenge = (fields.str(&["type"]) == Some("url_verification"))
                .then(|| fields.str(&["challenge"]).unwrap_or("").into());
            let from_bot = fields.is_present(&["event", "bot_id"])
                || fields.str(&["event", "subtype"]) == Some("bot_message");
            (challenge, from_bot)
        } else {
            (None, false)
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
            challenge,
            from_bot,
            body_timestamp_millis,
        }
        .fit_for_environment()
    }

    /// Reads a form delivery (Slack slash commands and interactivity), whose action the form
    /// decoder found; only `Idempotency-Key` can name it.
    pub(crate) fn from_form(
        headers: &HeaderMap,
        action: Option<String>,
    ) -> Result<Event, BadEvent> {
        Event {
            delivery_id: idempotency_key(headers)?,
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
        let spec = source.spec();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_static(value));
        }
        let fields = scan(body.as_bytes(), spec.body_fields).unwrap();
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
        assert_eq!(handshake.challenge.as_deref(), Some("abc"));
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
        assert_eq!(other.challenge, None);
    }

    #[test]
    fn every_path_the_table_reads_is_scanned() {
        for source in Source::ALL {
            let spec = source.spec();
            let scanned = |path: &[&str]| spec.body_fields.contains(&path);
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
                ActionFrom::Header(_) => {}
            }
            if let BodyTimestamp::Millis(field) = spec.body_timestamp {
                assert!(scanned(field[0]), "{source}");
            }
            if spec.slack_events {
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
