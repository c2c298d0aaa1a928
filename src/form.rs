//! Slack's `application/x-www-form-urlencoded` bodies (slash commands, interactivity) turned
//! into the JSON object the agent receives.

use std::collections::HashSet;

use bytes::Bytes;

use crate::json::{self, JsonError};

/// The form field that carries an interactive request's JSON.
const PAYLOAD: &str = "payload";

/// A decoded form: its JSON object and the action it names.
#[derive(Debug)]
pub(crate) struct FormInput {
    pub(crate) json: Bytes,
    pub(crate) action: Option<String>,
}

/// Every field becomes a string member, except `payload`, which is parsed as JSON. The first of
/// repeated fields wins. The action is a slash command's `command`, or the payload's `type`.
pub(crate) fn decode(body: &[u8]) -> Result<FormInput, JsonError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut action = None;
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
        if name == PAYLOAD {
            let fields = json::scan(value.as_bytes(), &[&["type"]]).map_err(|error| JsonError {
                message: format!("payload: {}", error.message),
                ..error
            })?;
            action = fields.str(&["type"]).map(String::from);
            // Validated above: exactly one JSON text, so it embeds as is.
            out.extend_from_slice(value.trim().as_bytes());
        } else {
            if name == "command" {
                action = Some(value.clone().into_owned());
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
        let input =
            decode(b"token=x&command=%2Fdeploy&text=prod+now&user_id=U1&text=ignored").unwrap();
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
        let input = decode(body.as_bytes()).unwrap();
        assert_eq!(
            as_value(&input),
            json!({"payload":{"type":"block_actions","user":{"id":"U1"}}})
        );
        assert_eq!(input.action.as_deref(), Some("block_actions"));
    }

    #[test]
    fn bad_payload_is_invalid_json() {
        let error = decode(b"payload=%7Bnope").unwrap_err();
        assert!(error.message.starts_with("payload: "), "{}", error.message);
    }

    #[test]
    fn empty_form_is_an_empty_object() {
        assert_eq!(as_value(&decode(b"").unwrap()), json!({}));
    }

    fn urlencode(text: &str) -> String {
        form_urlencoded::byte_serialize(text.as_bytes()).collect()
    }
}
