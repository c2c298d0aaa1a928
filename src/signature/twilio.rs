//! Twilio's signatures: base64 HMAC-SHA1, keyed with the auth token, over the URL Twilio called
//! followed by the form's fields sorted by name (each name, then its value). A JSON body is not
//! in the signed text: Twilio puts its SHA-256 in the URL's `bodySHA256` query parameter
//! instead, which is signed with the URL and checked against the body here. Twilio's own
//! validators try the URL with and without its default port, since Twilio's signing was not
//! consistent about it; so does this one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;
use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::mac::{header_text, replay_tag, sha1_mac};
use super::{RequestUrl, SignatureError};
use crate::SigningSecret;

/// The query parameter that carries a JSON body's SHA-256, as hex.
const BODY_SHA256: &str = "bodySHA256";

/// A signature as presented.
#[derive(Debug)]
pub(crate) struct TwilioSignature {
    tag: [u8; 20],
}

impl TwilioSignature {
    pub(crate) fn parse(header: &HeaderName, headers: &HeaderMap) -> Result<Self, SignatureError> {
        let mut decoded = [0u8; 22];
        let written = STANDARD
            .decode_slice(header_text(headers, header)?, &mut decoded)
            .map_err(|_| SignatureError::Mismatch)?;
        let tag = decoded[..written]
            .try_into()
            .map_err(|_| SignatureError::Mismatch)?;
        Ok(TwilioSignature { tag })
    }

    /// The SHA-256 of the signature, when `secret` made it over the URL and the body.
    pub(crate) fn tag_made_with(
        &self,
        secret: &SigningSecret,
        body: &[u8],
        url: &RequestUrl<'_>,
    ) -> Option<[u8; 32]> {
        let signed = SignedText::of(body, url)?;
        let mut found = subtle::Choice::from(0);
        for url in url_variants(&signed.url) {
            let mut mac = sha1_mac(secret);
            mac.update(url.as_bytes());
            for (name, value) in &signed.fields {
                mac.update(name.as_bytes());
                mac.update(value.as_bytes());
            }
            found |= mac.finalize().into_bytes().as_slice().ct_eq(&self.tag);
        }
        bool::from(found).then(|| replay_tag(&self.tag))
    }
}

/// What Twilio signs, apart from the key: the URL, and the form's fields in order.
struct SignedText<'b> {
    url: String,
    fields: Vec<(std::borrow::Cow<'b, str>, std::borrow::Cow<'b, str>)>,
}

impl<'b> SignedText<'b> {
    /// `None` when the URL is unknown (the trigger has no public URL), or when the URL names a
    /// body hash that is not this body's.
    fn of(body: &'b [u8], url: &RequestUrl<'_>) -> Option<Self> {
        let mut text = Vec::new();
        url.write_to(|piece| text.extend_from_slice(piece))?;
        let url_text = String::from_utf8(text).ok()?;
        let body_hash = url.query.and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == BODY_SHA256)
                .map(|(_, value)| value.into_owned())
        });
        if let Some(expected) = body_hash {
            let actual = hex::encode(Sha256::digest(body));
            return expected
                .eq_ignore_ascii_case(&actual)
                .then_some(SignedText {
                    url: url_text,
                    fields: Vec::new(),
                });
        }
        // Sorted by name, then by value; a field repeated with the same value counts once, as
        // in Twilio's validators.
        let mut fields: Vec<_> = form_urlencoded::parse(body).collect();
        fields.sort_unstable();
        fields.dedup();
        Some(SignedText {
            url: url_text,
            fields,
        })
    }
}

/// The URL as given, and the same URL with its default port added, or removed when it has one.
fn url_variants(url: &str) -> impl Iterator<Item = String> {
    let other = toggle_port(url);
    std::iter::once(url.to_owned()).chain(other)
}

/// `url` with `:443`/`:80` added after its host when it names no port, or without the port it
/// names; `None` for a URL whose authority cannot be found.
fn toggle_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    // The host ends after any `user@` and, for an IPv6 literal, after its `]`.
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host_end = authority[host_start..]
        .rfind(']')
        .map_or(host_start, |at| host_start + at + 1);
    let authority = match authority[host_end..].rfind(':') {
        Some(colon) => authority[..host_end + colon].to_owned(),
        None => {
            let port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            format!("{authority}:{port}")
        }
    };
    Some(format!("{scheme}://{authority}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_are_toggled() {
        for (url, other) in [
            ("https://example.com/a?b=c", "https://example.com:443/a?b=c"),
            ("https://example.com:443/a", "https://example.com/a"),
            ("http://example.com", "http://example.com:80"),
            ("https://u:p@example.com/x", "https://u:p@example.com:443/x"),
            ("https://[::1]:8443/x", "https://[::1]/x"),
            ("https://[::1]/x", "https://[::1]:443/x"),
        ] {
            assert_eq!(toggle_port(url).as_deref(), Some(other), "{url}");
        }
        assert_eq!(toggle_port("no scheme"), None);
    }
}
