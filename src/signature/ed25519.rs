//! Ed25519 signatures over `{timestamp}{body}` (Discord's interactions): the trigger holds the
//! sender's public key, as hex, where the other schemes hold a shared secret.

use http::{HeaderMap, HeaderName};
use ring::signature::{ED25519, UnparsedPublicKey};

use super::SignatureError;
use super::mac::{header_text, parse_unix, replay_tag};
use crate::SigningSecret;

/// A signature and its timestamp as presented; the signature is decoded when it is checked.
#[derive(Debug)]
pub(crate) struct Ed25519Signature<'h> {
    signature: &'h str,
    timestamp_text: &'h str,
    pub(crate) timestamp: i64,
}

impl<'h> Ed25519Signature<'h> {
    pub(crate) fn parse(
        signature: &HeaderName,
        timestamp: &HeaderName,
        headers: &'h HeaderMap,
    ) -> Result<Self, SignatureError> {
        let signature = header_text(headers, signature)?;
        let timestamp_text = header_text(headers, timestamp)?;
        Ok(Ed25519Signature {
            signature,
            timestamp_text,
            timestamp: parse_unix(timestamp_text)?,
        })
    }

    /// The SHA-256 of the signature, when the public key `secret` verifies it.
    pub(crate) fn tag_made_with(&self, secret: &SigningSecret, body: &[u8]) -> Option<[u8; 32]> {
        let mut signature = [0u8; 64];
        hex::decode_to_slice(self.signature, &mut signature).ok()?;
        let key = public_key(secret.expose_value())?;
        let mut message = Vec::with_capacity(self.timestamp_text.len() + body.len());
        message.extend_from_slice(self.timestamp_text.as_bytes());
        message.extend_from_slice(body);
        UnparsedPublicKey::new(&ED25519, key)
            .verify(&message, &signature)
            .ok()?;
        Some(replay_tag(&signature))
    }
}

/// A public key written as 64 hex digits.
pub(crate) fn public_key(text: &[u8]) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim_ascii(), &mut key).ok()?;
    Some(key)
}
