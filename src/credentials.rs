//! Which credentials a request relies on: a bearer API key, or its source's signature.

use http::HeaderMap;

use crate::key::bearer_token_bytes;
use crate::signature::{Presented, SignatureError};
use crate::source::Source;

/// The credentials a request presents.
#[derive(Debug)]
pub(crate) enum Credentials<'h> {
    /// `Authorization: Bearer <token>`, as the header's bytes; the token may still be malformed.
    Bearer(&'h [u8]),
    /// The source's signature headers, parsed but not yet verified.
    Signature(Presented<'h>),
    /// No bearer token, to a source whose triggers each pick their scheme (`webhook`): a signed
    /// request whatever its headers, which are read once the trigger, and so the scheme, is
    /// known.
    TriggerSignature,
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
/// signature header is present, or for a source whose triggers pick their scheme.
pub(crate) fn extract(
    headers: &HeaderMap,
    source: Source,
) -> Result<Credentials<'_>, CredentialsError> {
    if let Some(token) = bearer_token_bytes(headers) {
        return Ok(Credentials::Bearer(token));
    }
    if source.takes_any_scheme() {
        return Ok(Credentials::TriggerSignature);
    }
    let scheme = source
        .spec()
        .scheme
        .as_ref()
        .ok_or(CredentialsError::Missing)?;
    if headers.get(scheme.signature_header()).is_none() {
        return Err(CredentialsError::Missing);
    }
    Presented::parse(scheme, headers)
        .map(Credentials::Signature)
        .map_err(CredentialsError::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
        // webhook: without a bearer token, a signed request whatever its headers.
        assert!(matches!(
            extract(&HeaderMap::new(), Source::Webhook),
            Ok(Credentials::TriggerSignature)
        ));
    }
}
