//! The route `{prefix}/{source}/{triggerId}` and its two path parameters.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use uuid::Uuid;

use crate::Source;
use crate::validation::Issue;

/// The path prefix the service answers under, normalised to `""` or `/segment[/segment…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prefix(Box<str>);

impl Prefix {
    /// Accepts `"/api/trigger"`, `"api/trigger/"`, `""` or `"/"` alike.
    pub(crate) fn new(prefix: &str) -> Prefix {
        let trimmed = prefix.trim_matches('/');
        if trimmed.is_empty() {
            Prefix("".into())
        } else {
            Prefix(format!("/{trimmed}").into())
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The raw `source` and `triggerId` segments when `path` has the route's shape, `None` when
    /// the request is not for this service at all.
    pub(crate) fn match_path<'p>(&self, path: &'p str) -> Option<(&'p str, &'p str)> {
        let rest = path.strip_prefix(&*self.0)?.strip_prefix('/')?;
        // `memchr` compares sixteen bytes or more at a time, where `str::split_once` goes by
        // machine words: most of the cost of matching a route.
        let mut slashes = memchr::memchr_iter(b'/', rest.as_bytes());
        let between = slashes.next()?;
        if slashes.next().is_some() {
            return None;
        }
        let (source, trigger_id) = (&rest[..between], &rest[between + 1..]);
        if source.is_empty() || trigger_id.is_empty() {
            return None;
        }
        Some((source, trigger_id))
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix("/api/trigger".into())
    }
}

/// Parses both parameters, reporting one issue per bad parameter.
pub(crate) fn parse_params(source: &str, trigger_id: &str) -> Result<(Source, Uuid), Vec<Issue>> {
    // Valid parameters hold no `%`, so they parse as they arrive; decoding is for the rest.
    if let (Ok(source), Some(id)) = (source.parse::<Source>(), parse_hyphenated_uuid(trigger_id)) {
        return Ok((source, id));
    }
    let source_text = decode_segment(source);
    let trigger_text = decode_segment(trigger_id);
    let source = source_text.parse::<Source>();
    let trigger_id = parse_hyphenated_uuid(&trigger_text);
    match (source, trigger_id) {
        (Ok(source), Some(id)) => Ok((source, id)),
        (source, id) => {
            let mut issues = Vec::with_capacity(2);
            if source.is_err() {
                issues.push(Issue::invalid_source(&source_text));
            }
            if id.is_none() {
                issues.push(Issue::invalid_trigger_id());
            }
            Err(issues)
        }
    }
}

/// Path segments arrive percent-encoded; routers hand them to handlers decoded.
fn decode_segment(segment: &str) -> Cow<'_, str> {
    if segment.contains('%') {
        percent_decode_str(segment).decode_utf8_lossy()
    } else {
        Cow::Borrowed(segment)
    }
}

/// Only the hyphenated 8-4-4-4-12 form: the simple, braced and urn forms that [`Uuid::parse_str`]
/// also takes are refused, as the spec's `format: uuid` refuses them.
pub(crate) fn parse_hyphenated_uuid(text: &str) -> Option<Uuid> {
    // At 36 characters the uuid crate accepts exactly the hyphenated form: its other forms
    // (simple, braced, URN) are 32, 38 and 45 long.
    if text.len() != 36 {
        return None;
    }
    Uuid::try_parse_ascii(text.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11";

    #[test]
    fn prefix_is_normalised() {
        assert_eq!(Prefix::new("/api/trigger").as_str(), "/api/trigger");
        assert_eq!(Prefix::new("api/trigger/").as_str(), "/api/trigger");
        assert_eq!(Prefix::new("/").as_str(), "");
        assert_eq!(Prefix::new("").as_str(), "");
    }

    #[test]
    fn matches_only_the_route_shape() {
        let prefix = Prefix::default();
        let path = format!("/api/trigger/jira/{ID}");
        assert_eq!(prefix.match_path(&path), Some(("jira", ID)));
        assert_eq!(prefix.match_path("/api/trigger/jira"), None);
        assert_eq!(prefix.match_path("/api/trigger/jira/"), None);
        assert_eq!(prefix.match_path(&format!("/api/trigger//{ID}")), None);
        assert_eq!(prefix.match_path(&format!("/api/trigger/jira/{ID}/")), None);
        assert_eq!(prefix.match_path(&format!("/api/triggers/jira/{ID}")), None);
        assert_eq!(
            prefix.match_path(&format!("/api/trigger/jira/{ID}/x")),
            None
        );
        let nested = Prefix::new("");
        assert_eq!(
            nested.match_path(&format!("/slack/{ID}")),
            Some(("slack", ID))
        );
    }

    #[test]
    fn only_hyphenated_uuids_parse() {
        assert!(parse_hyphenated_uuid(ID).is_some());
        assert!(parse_hyphenated_uuid(&ID.to_uppercase()).is_some());
        assert!(parse_hyphenated_uuid(&ID.replace('-', "")).is_none());
        assert!(parse_hyphenated_uuid(&format!("{{{ID}}}")).is_none());
        assert!(parse_hyphenated_uuid(&format!("urn:uuid:{ID}")).is_none());
        assert!(parse_hyphenated_uuid("6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c1g").is_none());
        assert!(parse_hyphenated_uuid("6f1c1c527-a57-4f7e-9d43-8d2b8f1d0c11").is_none());
    }

    #[test]
    fn one_issue_per_bad_parameter() {
        assert!(parse_params("jira", ID).is_ok());
        let issues = parse_params("github", "nope").unwrap_err();
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[0].path, ["source"]);
        assert_eq!(issues[1].path, ["triggerId"]);
        let issues = parse_params("jira", "nope").unwrap_err();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, ["triggerId"]);
    }

    #[test]
    fn segments_are_percent_decoded() {
        assert!(parse_params("jira%2Dautomation", ID).is_ok());
        let issues = parse_params("git%20hub", ID).unwrap_err();
        assert_eq!(issues[0].received.as_deref(), Some("git hub"));
    }
}
