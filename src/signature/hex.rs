//! Hub-style signatures: HMAC-SHA256 of the raw body, as hex in one header, with or without a
//! `sha256=` prefix (Jira, HackerOne, Linear, Bugcrowd).

use hmac::Mac;
use http::HeaderMap;

use super::{SignatureError, decode_hex_tag, header_text, tag_matches};
use crate::SigningSecret;
use crate::source::HexPrefix;

const SHA256_PREFIX: &str = "sha256=";

/// A parsed hex signature.
#[derive(Debug)]
pub(crate) struct HexSignature {
    tag: [u8; 32],
}

impl HexSignature {
    pub(crate) fn parse(
        headers: &HeaderMap,
        header: &'static str,
        prefix: HexPrefix,
    ) -> Result<Self, SignatureError> {
        let text = header_text(headers, header)?;
        let digits = match (prefix, text.strip_prefix(SHA256_PREFIX)) {
            (HexPrefix::Required | HexPrefix::Optional, Some(digits)) => digits,
            (HexPrefix::Optional | HexPrefix::None, None) => text,
            (HexPrefix::Required, None) | (HexPrefix::None, Some(_)) => {
                return Err(SignatureError::MalformedHeader(header));
            }
        };
        let tag = decode_hex_tag(digits).ok_or(SignatureError::MalformedHeader(header))?;
        Ok(HexSignature { tag })
    }

    /// The tag, when `secret` made it over `body`.
    pub(crate) fn tag_made_with(&self, secret: &SigningSecret, body: &[u8]) -> Option<[u8; 32]> {
        let mut mac = secret.raw_mac().clone();
        mac.update(body);
        tag_matches(mac, &self.tag).then_some(self.tag)
    }
}

/// The header value a sender would put on `body`.
pub(crate) fn sign(secret: &SigningSecret, body: &[u8], prefix: HexPrefix) -> String {
    let mut mac = secret.raw_mac().clone();
    mac.update(body);
    let digits = hex::encode(mac.finalize().into_bytes());
    match prefix {
        HexPrefix::Required | HexPrefix::Optional => format!("{SHA256_PREFIX}{digits}"),
        HexPrefix::None => digits,
    }
}
