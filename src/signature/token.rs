//! A shared token sent as it is (GitLab's `X-Gitlab-Token`): no signature at all, so the
//! comparison is all there is. Both sides are hashed first, so that the constant-time
//! comparison does not leak the secret's length either.

use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::SignatureError;
use crate::SigningSecret;

/// The token presented in a request's header.
#[derive(Debug)]
pub(crate) struct PresentedToken<'h> {
    token: &'h [u8],
}

impl<'h> PresentedToken<'h> {
    pub(crate) fn parse(
        header: &HeaderName,
        headers: &'h HeaderMap,
    ) -> Result<Self, SignatureError> {
        let token = headers.get(header).ok_or(SignatureError::Mismatch)?;
        Ok(PresentedToken {
            token: token.as_bytes(),
        })
    }

    /// When the token is `secret`, the SHA-256 of the body: the token is the same on every
    /// delivery, so a replay is recognised by its body instead (contract §8).
    pub(crate) fn tag_made_with(&self, secret: &SigningSecret, body: &[u8]) -> Option<[u8; 32]> {
        let presented = Sha256::digest(self.token);
        let expected = Sha256::digest(secret.expose_value());
        bool::from(presented.ct_eq(&expected)).then(|| Sha256::digest(body).into())
    }
}
