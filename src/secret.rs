//! Signing secrets: a trigger holds a ring of them so that senders' secrets rotate without
//! downtime.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// An HMAC-SHA256 keyed and ready to clone: the key schedule is computed once per secret, not
/// once per request.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The Standard Webhooks prefix of a base64 secret.
const WHSEC_PREFIX: &str = "whsec_";

/// One signing secret of a trigger: an id (handed to the sink and the log when it matches), the
/// secret itself, and an optional validity period.
///
/// `Debug` shows the id and validity, never the secret.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use agent_trigger::SigningSecret;
///
/// let now = SystemTime::now();
/// let secret = SigningSecret::new("2026-11", "8f2b…shared with the sender")
///     .unwrap()
///     .with_not_after(now + Duration::from_secs(86_400));
/// assert!(secret.is_active(now));
/// assert_eq!(secret.id(), "2026-11");
/// assert!(!format!("{secret:?}").contains("shared with the sender"));
/// // An empty secret is a configuration error, never a key that verifies.
/// assert!(SigningSecret::new("empty", "").is_err());
/// ```
#[derive(Clone)]
pub struct SigningSecret {
    id: Arc<str>,
    value: Arc<[u8]>,
    not_before: Option<SystemTime>,
    not_after: Option<SystemTime>,
    raw_mac: Arc<OnceLock<HmacSha256>>,
    standard_mac: Arc<OnceLock<Option<HmacSha256>>>,
}

/// Why a signing secret was refused when it was configured: by [`SigningSecret::new`], or
/// by the scheme it is for ([`SignatureScheme::check_secret`](crate::SignatureScheme::check_secret)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret is empty (HackerOne, for one, signs with an empty key when none is set).
    Empty,
    /// A Standard Webhooks (or svix) `whsec_` secret whose remainder is not standard base64.
    InvalidWhsec,
    /// A Standard Webhooks (or svix) secret without `whsec_` that is not standard base64.
    NotBase64,
    /// The scheme keys its HMAC with the secret's text, and this secret is not UTF-8.
    NotText,
    /// Discord's "secret" is the application's Ed25519 public key: 64 hex digits.
    InvalidPublicKey,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Empty => f.write_str("a signing secret must not be empty"),
            SecretError::InvalidWhsec => {
                f.write_str("a `whsec_` signing secret must be followed by standard base64")
            }
            SecretError::NotBase64 => f.write_str(
                "a Standard Webhooks signing secret must be `whsec_` and standard base64, or base64 alone",
            ),
            SecretError::NotText => f.write_str("this scheme's signing secret must be UTF-8 text"),
            SecretError::InvalidPublicKey => f.write_str(
                "a Discord signing secret must be the application's public key: 64 hex digits",
            ),
        }
    }
}

impl std::error::Error for SecretError {}

impl SigningSecret {
    /// A secret as the sender shows it: the literal text for HMAC senders and Slack, the
    /// `whsec_<base64>` string for Standard Webhooks, the public key (hex) for Discord. Only an
    /// empty secret is refused here; whether it fits its scheme is the scheme's to say
    /// ([`SignatureScheme::check_secret`](crate::SignatureScheme::check_secret)).
    pub fn new(id: impl Into<Arc<str>>, secret: impl AsRef<[u8]>) -> Result<Self, SecretError> {
        let value = secret.as_ref();
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(SigningSecret {
            id: id.into(),
            value: value.into(),
            not_before: None,
            not_after: None,
            raw_mac: Arc::default(),
            standard_mac: Arc::default(),
        })
    }

    /// The secret is not valid before `at`.
    pub fn with_not_before(mut self, at: SystemTime) -> Self {
        self.not_before = Some(at);
        self
    }

    /// The secret is not valid after `at`.
    pub fn with_not_after(mut self, at: SystemTime) -> Self {
        self.not_after = Some(at);
        self
    }

    /// The id that names this secret in the log and in the delivery.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the secret starts to be valid, if it has a start.
    pub fn not_before(&self) -> Option<SystemTime> {
        self.not_before
    }

    /// When the secret stops being valid, if it has an end.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.not_after
    }

    /// The secret itself, for a store that must keep it and for the schemes that key with it.
    pub(crate) fn expose_value(&self) -> &[u8] {
        &self.value
    }

    pub(crate) fn shared_id(&self) -> Arc<str> {
        Arc::clone(&self.id)
    }

    /// Whether the secret may verify a delivery received at `now`.
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.not_before.is_none_or(|start| start <= now)
            && self.not_after.is_none_or(|end| now <= end)
    }

    /// The MAC keyed with the secret's bytes as given (hex-HMAC senders, Slack).
    pub(crate) fn raw_mac(&self) -> &HmacSha256 {
        self.raw_mac.get_or_init(|| {
            HmacSha256::new_from_slice(&self.value).expect("HMAC accepts keys of any length")
        })
    }

    /// The MAC keyed with the Standard Webhooks key: the base64 after an optional `whsec_`.
    /// `None` when the secret is not base64, which makes it a secret that never matches.
    pub(crate) fn standard_webhooks_mac(&self) -> Option<&HmacSha256> {
        self.standard_mac
            .get_or_init(|| {
                let encoded = self
                    .value
                    .strip_prefix(WHSEC_PREFIX.as_bytes())
                    .unwrap_or(&self.value);
                let key = STANDARD
                    .decode(encoded)
                    .ok()
                    .filter(|key| !key.is_empty())?;
                Some(HmacSha256::new_from_slice(&key).expect("HMAC accepts keys of any length"))
            })
            .as_ref()
    }
}

impl SigningSecret {
    /// Whether the secret is a Standard Webhooks key: standard base64 after an optional
    /// `whsec_`, not empty.
    pub(crate) fn check_standard_webhooks(&self) -> Result<(), SecretError> {
        match self.standard_webhooks_mac() {
            Some(_) => Ok(()),
            None if self.value.starts_with(WHSEC_PREFIX.as_bytes()) => {
                Err(SecretError::InvalidWhsec)
            }
            None => Err(SecretError::NotBase64),
        }
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningSecret")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn validity_period_bounds_activity() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let secret = SigningSecret::new("s", "k").unwrap();
        assert!(secret.is_active(now));
        assert!(!secret.clone().with_not_before(now + hour).is_active(now));
        assert!(!secret.clone().with_not_after(now - hour).is_active(now));
        let window = secret
            .with_not_before(now - hour)
            .with_not_after(now + hour);
        assert!(window.is_active(now));
    }

    #[test]
    fn standard_webhooks_secrets_must_be_base64() {
        let check = |text: &str| {
            SigningSecret::new("s", text)
                .unwrap()
                .check_standard_webhooks()
        };
        assert_eq!(check("whsec_***"), Err(SecretError::InvalidWhsec));
        assert_eq!(check("whsec_"), Err(SecretError::InvalidWhsec));
        assert_eq!(check("plain text!"), Err(SecretError::NotBase64));
        assert_eq!(check("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"), Ok(()));
        assert_eq!(check("C2FVsBQIhrscChlQIMV+b5sSYspob7oD"), Ok(()));
        // Other schemes key with the text: a `whsec_` text that is not base64 is theirs to use.
        let stripe_test_secret = SigningSecret::new("s", "whsec_test_secret").unwrap();
        assert!(stripe_test_secret.standard_webhooks_mac().is_none());
    }
}
