//! Slack's `v0` signatures: HMAC-SHA256 over `v0:{X-Slack-Request-Timestamp}:{raw body}`, sent
//! as `X-Slack-Signature: v0=<hex>`.

use hmac::Mac;
use http::HeaderMap;

use super::{SignatureError, decode_hex_tag, header_text, tag_matches};
use crate::SigningSecret;
use crate::source::header::{SLACK_SIGNATURE, SLACK_TIMESTAMP};

const VERSION: &str = "v0";

/// A parsed Slack signature and its timestamp, kept as the text that was signed.
#[derive(Debug)]
pub(crate) struct SlackSignature<'h> {
    pub(crate) timestamp: i64,
    timestamp_text: &'h str,
    tag: [u8; 32],
}

impl<'h> SlackSignature<'h> {
    pub(crate) fn parse(headers: &'h HeaderMap) -> Result<Self, SignatureError> {
        let signature = header_text(headers, SLACK_SIGNATURE)?;
        let timestamp_text = header_text(headers, SLACK_TIMESTAMP)?;
        let timestamp = timestamp_text
            .parse()
            .map_err(|_| SignatureError::MalformedHeader(SLACK_TIMESTAMP))?;
        let tag = signature
            .strip_prefix("v0=")
            .and_then(decode_hex_tag)
            .ok_or(SignatureError::MalformedHeader(SLACK_SIGNATURE))?;
        Ok(SlackSignature {
            timestamp,
            timestamp_text,
            tag,
        })
    }

    /// The tag, when `secret` made it over `body` and the timestamp.
    pub(crate) fn tag_made_with(&self, secret: &SigningSecret, body: &[u8]) -> Option<[u8; 32]> {
        tag_matches(
            base_string_mac(secret, self.timestamp_text, body),
            &self.tag,
        )
        .then_some(self.tag)
    }
}

fn base_string_mac(
    secret: &SigningSecret,
    timestamp: &str,
    body: &[u8],
) -> crate::secret::HmacSha256 {
    let mut mac = secret.raw_mac().clone();
    mac.update(VERSION.as_bytes());
    mac.update(b":");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// The two headers Slack would send with `body` at `timestamp` (Unix seconds).
pub(crate) fn sign(
    secret: &SigningSecret,
    body: &[u8],
    timestamp: i64,
) -> Vec<(http::HeaderName, String)> {
    let timestamp = timestamp.to_string();
    let tag = base_string_mac(secret, &timestamp, body)
        .finalize()
        .into_bytes();
    vec![
        (
            http::HeaderName::from_static(SLACK_SIGNATURE),
            format!("{VERSION}={}", hex::encode(tag)),
        ),
        (http::HeaderName::from_static(SLACK_TIMESTAMP), timestamp),
    ]
}
