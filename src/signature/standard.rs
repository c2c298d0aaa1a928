//! Standard Webhooks: HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{raw body}` keyed with
//! the base64 of a `whsec_` secret, sent as a space-separated list of `v1,<base64>` signatures.
//! Svix sends the same under `svix-id`, `svix-timestamp` and `svix-signature`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;
use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::{SignatureError, header_text};
use crate::SigningSecret;
use crate::secret::HmacSha256;
use crate::source::StandardHeaders;

const VERSION: &str = "v1";

/// A parsed Standard Webhooks signature list with the id and timestamp it covers.
#[derive(Debug)]
pub(crate) struct StandardSignature<'h> {
    id: &'h str,
    pub(crate) timestamp: i64,
    timestamp_text: &'h str,
    signatures: &'h str,
}

impl<'h> StandardSignature<'h> {
    pub(crate) fn parse(
        headers: &'h HeaderMap,
        names: &'static StandardHeaders,
    ) -> Result<Self, SignatureError> {
        let id = header_text(headers, names.id)?;
        let timestamp_text = header_text(headers, names.timestamp)?;
        let signatures = header_text(headers, names.signature)?;
        if id.is_empty() {
            return Err(SignatureError::MalformedHeader(names.id));
        }
        let timestamp = timestamp_text
            .parse()
            .map_err(|_| SignatureError::MalformedHeader(names.timestamp))?;
        let parsed = StandardSignature {
            id,
            timestamp,
            timestamp_text,
            signatures,
        };
        // Other versions (v1a is asymmetric) may appear in the list; one v1 must be usable.
        if parsed.v1_tags().next().is_none() {
            return Err(SignatureError::MalformedHeader(names.signature));
        }
        Ok(parsed)
    }

    /// The decodable `v1` signatures of the list.
    fn v1_tags(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.signatures.split(' ').filter_map(|entry| {
            let (version, encoded) = entry.split_once(',')?;
            if version != VERSION {
                return None;
            }
            let mut tag = [0u8; 32];
            match STANDARD.decode_slice(encoded, &mut tag) {
                Ok(32) => Some(tag),
                _ => None,
            }
        })
    }

    /// The tag of the list that `secret` made over the id, timestamp and `body`, if one is.
    pub(crate) fn tag_made_with(&self, secret: &SigningSecret, body: &[u8]) -> Option<[u8; 32]> {
        let mac = secret.standard_webhooks_mac()?;
        let expected: [u8; 32] = signed_content_mac(mac, self.id, self.timestamp_text, body)
            .finalize()
            .into_bytes()
            .into();
        // Look at every entry, matched or not, so timing does not tell which one matched.
        let found: bool = self
            .v1_tags()
            .fold(subtle::Choice::from(0), |found, tag| {
                found | expected.ct_eq(&tag)
            })
            .into();
        found.then_some(expected)
    }
}

fn signed_content_mac(mac: &HmacSha256, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = mac.clone();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The three headers a Standard Webhooks sender would send, or `None` when the secret is not a
/// Standard Webhooks secret.
pub(crate) fn sign(
    names: &'static StandardHeaders,
    secret: &SigningSecret,
    body: &[u8],
    timestamp: i64,
    id: &str,
) -> Option<Vec<(http::HeaderName, String)>> {
    let timestamp = timestamp.to_string();
    let tag = signed_content_mac(secret.standard_webhooks_mac()?, id, &timestamp, body)
        .finalize()
        .into_bytes();
    Some(vec![
        (http::HeaderName::from_static(names.id), id.to_owned()),
        (http::HeaderName::from_static(names.timestamp), timestamp),
        (
            http::HeaderName::from_static(names.signature),
            format!("{VERSION},{}", STANDARD.encode(tag)),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    use crate::Source;
    use crate::source::WEBHOOK_HEADERS;
    use crate::source::header::{WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};

    // The test vector of the Standard Webhooks specification.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: u64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const EXPECTED: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn headers(signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(WEBHOOK_ID, ID.parse().unwrap());
        headers.insert(WEBHOOK_TIMESTAMP, TIMESTAMP.to_string().parse().unwrap());
        headers.insert(WEBHOOK_SIGNATURE, signature.parse().unwrap());
        headers
    }

    #[test]
    fn specification_vector_signs_and_verifies() {
        let secret = SigningSecret::new("spec", SECRET).unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(TIMESTAMP);
        let signed = crate::signature::sign(Source::Webhook, &secret, BODY, at, ID).unwrap();
        assert_eq!(signed[WEBHOOK_SIGNATURE], EXPECTED);
        let ring = [secret];
        let list = format!("v1,bm90IHRoaXMgb25l v1a,ignored {EXPECTED}");
        crate::signature::Verifier::new(Source::Webhook, &ring)
            .verify_at(&headers(&list), BODY, at)
            .unwrap();
    }

    #[test]
    fn list_without_a_usable_v1_is_malformed() {
        for list in [
            "v2,abc",
            "",
            "v1,not base64!",
            "v1a,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ] {
            assert_eq!(
                StandardSignature::parse(&headers(list), &WEBHOOK_HEADERS).unwrap_err(),
                SignatureError::MalformedHeader(WEBHOOK_SIGNATURE),
                "{list}"
            );
        }
    }
}
