//! Which credentials a request relies on: a bearer API key, or its source's signature.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::signature::{Presented, SignatureError};
use crate::source::Source;

/// The credentials a request presents.
#[derive(Debug)]
pub(crate) enum Credentials<'h> {
    /// `Authorization: Bearer <token>`; the token may still be malformed.
    Bearer(&'h str),
    /// The source's signature headers, parsed but not yet verified.
    Signature(Presented<'h>),
}

/// Why no credentials could be taken from the request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CredentialsError {
    /// Neither a bearer token nor the source's signature header.
    Missing,
    /// The signature header is there but the scheme's headers are incomplete or malformed.
    Signature(SignatureError),
}

/// A bearer token wins over a signature; a signature counts only for a signed source whose
/// signature header is present.
pub(crate) fn extract(
    headers: &HeaderMap,
    source: Source,
) -> Result<Credentials<'_>, CredentialsError> {
    if let Some(token) = bearer_token(headers) {
        return Ok(Credentials::Bearer(token));
    }
    let scheme = source
        .spec()
        .scheme
        .as_ref()
        .ok_or(CredentialsError::Missing)?;
    if !headers.contains_key(scheme.signature_header()) {
        return Err(CredentialsError::Missing);
    }
    Presented::parse(scheme, headers)
        .map(Credentials::Signature)
        .map_err(CredentialsError::Signature)
}

/// The token of an `Authorization: Bearer …` header (scheme matched case-insensitively), or
/// `None` when the header is absent or uses another scheme. The token is not validated here.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    match &value[6..] {
        [] => Some(""),
        [b' ', rest @ ..] => Some(
            std::str::from_utf8(rest)
                .unwrap_or("\u{0}")
                .trim_matches(' '),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_auth(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER   abc"] {
            assert_eq!(bearer_token(&with_auth(value)), Some("abc"), "{value}");
        }
    }

    #[test]
    fn other_schemes_are_not_bearer() {
        assert_eq!(
            bearer_token(&with_auth("Basic YWxhZGRpbjpvcGVuc2VzYW1l")),
            None
        );
        assert_eq!(bearer_token(&with_auth("Bearerabc")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn empty_bearer_is_a_malformed_token_not_a_missing_one() {
        assert_eq!(bearer_token(&with_auth("Bearer")), Some(""));
        assert_eq!(bearer_token(&with_auth("Bearer ")), Some(""));
    }

    #[test]
    fn non_utf8_token_is_kept_as_malformed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert_eq!(bearer_token(&headers), Some("\u{0}"));
    }

    #[test]
    fn signature_counts_only_when_its_header_is_there() {
        assert!(matches!(
            extract(&HeaderMap::new(), Source::Slack),
            Err(CredentialsError::Missing)
        ));
        let mut headers = HeaderMap::new();
        headers.insert("x-slack-signature", HeaderValue::from_static("v0=00"));
        assert!(matches!(
            extract(&headers, Source::Slack),
            Err(CredentialsError::Signature(SignatureError::MissingHeader(
                _
            )))
        ));
        // jira-automation has no scheme: a stray signature header does not authenticate.
        headers.insert("x-hub-signature", HeaderValue::from_static("sha256=00"));
        assert!(matches!(
            extract(&headers, Source::JiraAutomation),
            Err(CredentialsError::Missing)
        ));
    }
}
