//! `application/x-www-form-urlencoded` bodies (Slack's slash commands and interactivity,
//! Twilio's callbacks) turned into the JSON object the agent receives.

use std::collections::HashSet;

use bytes::Bytes;

use crate::json::{self, JsonError};

/// How a sender's forms read: which field, if any, carries JSON, and which fields name the
/// action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FormRules {
    /// A field whose value is a JSON text, embedded as it is; its `type` is the action.
    json_field: Option<&'static str>,
    /// Fields whose value is the action, the first of them present winning.
    action_fields: &'static [&'static str],
}

/// Slack: an interactive request's JSON in `payload`; a slash command's `command`.
pub(crate) const SLACK_FORM: FormRules = FormRules {
    json_field: Some("payload"),
    action_fields: &["command"],
};

/// Twilio: status callbacks name their status.
pub(crate) const TWILIO_FORM: FormRules = FormRules {
    json_field: None,
    action_fields: &["CallStatus", "SmsStatus"],
};

/// A decoded form: its JSON object and the action it names.
#[derive(Debug)]
pub(crate) struct FormInput {
    pub(crate) json: Bytes,
    pub(crate) action: Option<String>,
}

/// Every field becomes a string member, except the rules' JSON field, which is parsed as JSON.
/// The first of repeated fields wins. The action is the JSON field's `type`, else the first of
/// the rules' action fields present.
pub(crate) fn decode(body: &[u8], rules: &FormRules) -> Result<FormInput, JsonError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut action = None;
    // The position in `action_fields` of the field the action came from, or past them for the
    // JSON field's type (which wins over them).
    let mut action_rank = usize::MAX;
    out.push(b'{');
    for (name, value) in form_urlencoded::parse(body) {
        if !seen.insert(name.clone()) {
            continue;
        }
        if seen.len() > 1 {
            out.push(b',');
        }
        write_string(&mut out, &name);
        out.push(b':');
        if Some(&*name) == rules.json_field {
            let fields = json::scan(value.as_bytes(), &[&["type"]]).map_err(|error| JsonError {
                message: format!("{name}: {}", error.message),
                ..error
            })?;
            if let Some(kind) = fields.str(&["type"]) {
                action = Some(String::from(kind));
                action_rank = 0;
            }
            // Validated above: exactly one JSON text, so it embeds as is.
            out.extend_from_slice(value.trim().as_bytes());
        } else {
            let rank = rules.action_fields.iter().position(|field| *field == name);
            if let Some(rank) = rank.map(|rank| rank + 1)
                && rank < action_rank
            {
                action = Some(value.clone().into_owned());
                action_rank = rank;
            }
            write_string(&mut out, &value);
        }
    }
    out.push(b'}');
    Ok(FormInput {
        json: Bytes::from(out),
        action,
    })
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(out, text).expect("writing a string to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn as_value(input: &FormInput) -> Value {
        serde_json::from_slice(&input.json).unwrap()
    }

    #[test]
    fn slash_command_fields_become_strings() {
        let input = decode(
            b"token=x&command=%2Fdeploy&text=prod+now&user_id=U1&text=ignored",
            &SLACK_FORM,
        )
        .unwrap();
        assert_eq!(
            as_value(&input),
            json!({"token":"x","command":"/deploy","text":"prod now","user_id":"U1"})
        );
        assert_eq!(input.action.as_deref(), Some("/deploy"));
    }

    #[test]
    fn interactive_payload_is_parsed() {
        let payload = r#"{"type":"block_actions","user":{"id":"U1"}}"#;
        let body = format!("payload={}", urlencode(payload));
        let input = decode(body.as_bytes(), &SLACK_FORM).unwrap();
        assert_eq!(
            as_value(&input),
            json!({"payload":{"type":"block_actions","user":{"id":"U1"}}})
        );
        assert_eq!(input.action.as_deref(), Some("block_actions"));
    }

    #[test]
    fn bad_payload_is_invalid_json() {
        let error = decode(b"payload=%7Bnope", &SLACK_FORM).unwrap_err();
        assert!(error.message.starts_with("payload: "), "{}", error.message);
    }

    #[test]
    fn empty_form_is_an_empty_object() {
        assert_eq!(as_value(&decode(b"", &SLACK_FORM).unwrap()), json!({}));
    }

    #[test]
    fn twilio_fields_are_strings_and_the_status_is_the_action() {
        let input = decode(
            b"AccountSid=AC1&SmsStatus=delivered&CallStatus=completed&payload=%7Bnot+json",
            &TWILIO_FORM,
        )
        .unwrap();
        assert_eq!(
            as_value(&input),
            json!({"AccountSid":"AC1","SmsStatus":"delivered","CallStatus":"completed","payload":"{not json"})
        );
        assert_eq!(input.action.as_deref(), Some("completed"));
        let input = decode(b"SmsStatus=sent", &TWILIO_FORM).unwrap();
        assert_eq!(input.action.as_deref(), Some("sent"));
        assert_eq!(decode(b"Body=hi", &TWILIO_FORM).unwrap().action, None);
    }

    fn urlencode(text: &str) -> String {
        form_urlencoded::byte_serialize(text.as_bytes()).collect()
    }
}
