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

/// Why a signing secret was refused when it was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret is empty (HackerOne, for one, signs with an empty key when none is set).
    Empty,
    /// A `whsec_` secret whose remainder is not standard base64.
    InvalidWhsec,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Empty => f.write_str("a signing secret must not be empty"),
            SecretError::InvalidWhsec => {
                f.write_str("a `whsec_` signing secret must be followed by standard base64")
            }
        }
    }
}

impl std::error::Error for SecretError {}

impl SigningSecret {
    /// A secret as the sender shows it: the literal text for hex-HMAC senders and Slack, the
    /// `whsec_<base64>` string for Standard Webhooks.
    pub fn new(id: impl Into<Arc<str>>, secret: impl AsRef<[u8]>) -> Result<Self, SecretError> {
        let value = secret.as_ref();
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        if let Some(encoded) = value.strip_prefix(WHSEC_PREFIX.as_bytes()) {
            match STANDARD.decode(encoded) {
                Ok(key) if !key.is_empty() => {}
                _ => return Err(SecretError::InvalidWhsec),
            }
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

    /// The secret itself, for a store that must keep it.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
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
    fn whsec_secrets_must_be_base64() {
        assert_eq!(
            SigningSecret::new("s", "whsec_***").unwrap_err(),
            SecretError::InvalidWhsec
        );
        assert_eq!(
            SigningSecret::new("s", "whsec_").unwrap_err(),
            SecretError::InvalidWhsec
        );
        let secret = SigningSecret::new("s", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert!(secret.standard_webhooks_mac().is_some());
        let not_base64 = SigningSecret::new("s", "plain text!").unwrap();
        assert!(not_base64.standard_webhooks_mac().is_none());
    }
}
