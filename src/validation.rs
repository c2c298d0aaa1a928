//! The `400` body: a ValidationError whose issues are shaped like zod issues, which is what
//! clients of this API already parse.

use serde::Serialize;

use crate::Source;

/// One problem with the request, serialised like a zod issue.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Issue {
    pub(crate) code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) validation: Option<&'static str>,
    pub(crate) path: &'static [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) received: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) options: Option<[&'static str; 7]>,
    pub(crate) message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) maximum: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "type")]
    pub(crate) kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) inclusive: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) column: Option<usize>,
}

impl Issue {
    /// `source` is not one of the seven names.
    pub(crate) fn invalid_source(received: &str) -> Issue {
        let expected = Source::ALL
            .iter()
            .map(|source| format!("'{}'", source.as_str()))
            .collect::<Vec<_>>()
            .join(" | ");
        Issue {
            code: "invalid_enum_value",
            validation: None,
            path: &["source"],
            received: Some(received.to_owned()),
            options: Some(Source::ALL.map(Source::as_str)),
            message: format!("Invalid enum value. Expected {expected}, received '{received}'"),
            ..Issue::blank()
        }
    }

    /// `triggerId` is not a hyphenated UUID.
    pub(crate) fn invalid_trigger_id() -> Issue {
        Issue {
            code: "invalid_string",
            validation: Some("uuid"),
            path: &["triggerId"],
            received: None,
            options: None,
            message: "Invalid uuid".to_owned(),
            ..Issue::blank()
        }
    }

    /// The body is not one well-formed JSON text; `line` and `column` are 1-based.
    pub(crate) fn invalid_json(message: String, line: usize, column: usize) -> Issue {
        Issue {
            code: "invalid_json",
            validation: None,
            path: &["body"],
            received: None,
            options: None,
            message,
            line: Some(line),
            column: Some(column),
            ..Issue::blank()
        }
    }

    /// The `Idempotency-Key` header is longer than a delivery id may be.
    pub(crate) fn idempotency_key_too_long(maximum: usize) -> Issue {
        Issue {
            code: "too_big",
            path: &["headers", "idempotency-key"],
            message: format!("String must contain at most {maximum} character(s)"),
            maximum: Some(maximum),
            kind: Some("string"),
            inclusive: Some(true),
            ..Issue::blank()
        }
    }

    /// The `Idempotency-Key` header holds bytes that are not visible ASCII.
    pub(crate) fn idempotency_key_not_text() -> Issue {
        Issue {
            code: "invalid_string",
            path: &["headers", "idempotency-key"],
            message: "Idempotency-Key must be visible ASCII".to_owned(),
            ..Issue::blank()
        }
    }

    /// An action or delivery id that an executed command could not receive in its environment.
    pub(crate) fn unfit_for_environment(path: &'static [&'static str], maximum: usize) -> Issue {
        Issue {
            code: "invalid_string",
            path,
            message: format!(
                "{} must be at most {maximum} bytes, without NUL characters",
                path[0]
            ),
            maximum: Some(maximum),
            ..Issue::blank()
        }
    }

    fn blank() -> Issue {
        Issue {
            code: "",
            validation: None,
            path: &[],
            received: None,
            options: None,
            message: String::new(),
            maximum: None,
            kind: None,
            inclusive: None,
            line: None,
            column: None,
        }
    }
}

/// The whole `400` body.
#[derive(Debug, Serialize)]
pub(crate) struct ValidationError<'a> {
    pub(crate) error: &'static str,
    pub(crate) issues: &'a [Issue],
}

impl<'a> ValidationError<'a> {
    pub(crate) fn new(issues: &'a [Issue]) -> Self {
        ValidationError {
            error: "Invalid request",
            issues,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enum_issue_matches_zod() {
        let issue = serde_json::to_value(Issue::invalid_source("github")).unwrap();
        assert_eq!(
            issue,
            json!({
                "code": "invalid_enum_value",
                "path": ["source"],
                "received": "github",
                "options": ["jira","jira-automation","slack","linear","webhook","bugcrowd","hackerone"],
                "message": "Invalid enum value. Expected 'jira' | 'jira-automation' | 'slack' | 'linear' | 'webhook' | 'bugcrowd' | 'hackerone', received 'github'"
            })
        );
    }

    #[test]
    fn uuid_issue_matches_zod() {
        let issue = serde_json::to_value(Issue::invalid_trigger_id()).unwrap();
        assert_eq!(
            issue,
            json!({"code":"invalid_string","validation":"uuid","path":["triggerId"],"message":"Invalid uuid"})
        );
    }
}
