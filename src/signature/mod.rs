//! Verifying a sender's signature over the raw bytes as received.
//!
//! One verifier per scheme (hub-style hex, Slack `v0`, Standard Webhooks), and a table of
//! sources that says which scheme each sender uses. Verification is split in two so that the
//! pipeline can answer without an oracle: the headers are parsed first, before the trigger is
//! looked up (a malformed header is refused the same way whether the trigger exists or not),
//! then the HMAC is checked against the trigger's ring, and only then the replay window, so that
//! only a holder of the secret learns that a timestamp was stale.
//!
//! A [`Verifier`] runs all of it for one request, with the code the service runs, and [`sign`]
//! produces the headers a sender would, for tests and for hosts that relay deliveries.
//!
//! ```
//! use std::time::SystemTime;
//! use agent_trigger::signature::{self, Verifier};
//! use agent_trigger::{SigningSecret, Source};
//!
//! let secret = SigningSecret::new("2026-11", "8f742231b10e8888abcd99yyyzzz85a5").unwrap();
//! let body = br#"{"type":"event_callback","event":{"type":"app_mention"}}"#;
//! let headers = signature::sign(Source::Slack, &secret, body, SystemTime::now(), "").unwrap();
//! let ring = [secret];
//! let verifier = Verifier::new(Source::Slack, &ring);
//! assert_eq!(verifier.verify(&headers, body).unwrap().id(), "2026-11");
//! // One byte changed and it no longer verifies.
//! let tampered = br#"{"type":"event_callback","event":{"type":"app_mentioN"}}"#;
//! assert!(verifier.verify(&headers, tampered).is_err());
//! ```

pub(crate) mod hex;
pub(crate) mod slack;
pub(crate) mod standard;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use subtle::ConstantTimeEq;

use crate::json;
use crate::secret::HmacSha256;
use crate::source::{BodyTimestamp, Scheme, Source};
use crate::{SigningSecret, Trigger};

/// Why a delivery's signature was refused. The `Display` text is what the caller sees: it names
/// the reason, never a secret or the expected value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// A header the scheme needs is absent.
    MissingHeader(&'static str),
    /// A header is present but not in the scheme's format.
    MalformedHeader(&'static str),
    /// No active secret of the trigger produces the presented signature. Also the answer when
    /// the trigger is unknown or has no secrets, so that triggers cannot be probed.
    Mismatch,
    /// The signed timestamp is missing from the body (Linear's `webhookTimestamp`).
    MissingTimestamp,
    /// The signed timestamp is further from now than the replay window allows.
    OutsideReplayWindow,
    /// The source has no signature scheme (`jira-automation` uses bearer keys).
    Unsigned,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::MissingHeader(name) => write!(f, "missing {name} header"),
            SignatureError::MalformedHeader(name) => write!(f, "malformed {name} header"),
            SignatureError::Mismatch => f.write_str("signature does not match"),
            SignatureError::MissingTimestamp => f.write_str("missing signed timestamp"),
            SignatureError::OutsideReplayWindow => {
                f.write_str("timestamp outside the replay window")
            }
            SignatureError::Unsigned => f.write_str("this source does not sign its deliveries"),
        }
    }
}

impl std::error::Error for SignatureError {}

/// A signature as presented in a request's headers, parsed but not yet checked.
#[derive(Debug)]
pub(crate) enum Presented<'h> {
    Hex(hex::HexSignature),
    Slack(slack::SlackSignature<'h>),
    Standard(standard::StandardSignature<'h>),
}

impl<'h> Presented<'h> {
    /// Parses the scheme's headers; fails on absent or malformed ones.
    pub(crate) fn parse(scheme: &Scheme, headers: &'h HeaderMap) -> Result<Self, SignatureError> {
        Ok(match scheme {
            Scheme::HexHmac { header, prefix } => {
                Presented::Hex(hex::HexSignature::parse(headers, header, *prefix)?)
            }
            Scheme::SlackV0 => Presented::Slack(slack::SlackSignature::parse(headers)?),
            Scheme::StandardWebhooks => {
                Presented::Standard(standard::StandardSignature::parse(headers)?)
            }
        })
    }

    /// The first active secret of the ring whose HMAC over `body` matches, and the tag it
    /// made: the same for a byte-identical copy of the request, which is how replays of it are
    /// recognised.
    fn matching_secret<'s>(
        &self,
        secrets: &'s [SigningSecret],
        body: &[u8],
        now: SystemTime,
    ) -> Result<(&'s SigningSecret, [u8; 32]), SignatureError> {
        secrets
            .iter()
            .filter(|secret| secret.is_active(now))
            .find_map(|secret| {
                let tag = match self {
                    Presented::Hex(signature) => signature.tag_made_with(secret, body),
                    Presented::Slack(signature) => signature.tag_made_with(secret, body),
                    Presented::Standard(signature) => signature.tag_made_with(secret, body),
                };
                tag.map(|tag| (secret, tag))
            })
            .ok_or(SignatureError::Mismatch)
    }

    /// The checks once the body is read: the HMAC over `body` against the ring, then the
    /// window of a timestamp signed in the headers. A timestamp signed in the body (Linear's) is
    /// read with the body's other fields and checked with [`Verified::check_body_timestamp`].
    pub(crate) fn verify<'s>(
        &self,
        source: Source,
        secrets: &'s [SigningSecret],
        body: &[u8],
        now: SystemTime,
        window: Option<Duration>,
    ) -> Result<Verified<'s>, SignatureError> {
        let (secret, tag) = self.matching_secret(secrets, body, now)?;
        if let Some(seconds) = self.header_timestamp() {
            check_window(i128::from(seconds) * 1000, now, window)?;
        }
        Ok(Verified {
            secret,
            tag,
            body_timestamp: source.spec().body_timestamp,
            window,
        })
    }

    /// The signed timestamp carried in the headers, in Unix seconds.
    fn header_timestamp(&self) -> Option<i64> {
        match self {
            Presented::Hex(_) => None,
            Presented::Slack(signature) => Some(signature.timestamp),
            Presented::Standard(signature) => Some(signature.timestamp),
        }
    }
}

/// A request whose HMAC matched and whose header timestamp, if any, is within the window.
#[derive(Debug)]
pub(crate) struct Verified<'s> {
    /// The secret that matched.
    pub(crate) secret: &'s SigningSecret,
    /// The tag it made: the same for a byte-identical copy of the request.
    pub(crate) tag: [u8; 32],
    body_timestamp: BodyTimestamp,
    window: Option<Duration>,
}

impl Verified<'_> {
    /// For a source that signs its timestamp in the body, that timestamp's window; `millis`
    /// is the body's field, as a number.
    pub(crate) fn check_body_timestamp(
        &self,
        millis: Option<f64>,
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        match self.body_timestamp {
            BodyTimestamp::None => Ok(()),
            BodyTimestamp::Millis(_) => {
                let millis = millis.ok_or(SignatureError::MissingTimestamp)?;
                // Saturates far outside any window; NaN becomes 0, also outside.
                check_window(millis as i128, now, self.window)
            }
        }
    }
}

/// Refuses a signed timestamp (Unix milliseconds) further than `window` from `now`, in either
/// direction. No window means no check.
fn check_window(
    timestamp_millis: i128,
    now: SystemTime,
    window: Option<Duration>,
) -> Result<(), SignatureError> {
    let Some(window) = window else {
        return Ok(());
    };
    // A timestamp far enough from now to overflow the difference is outside any window.
    match unix_millis(now).checked_sub(timestamp_millis) {
        Some(distance) if distance.unsigned_abs() <= window.as_millis() => Ok(()),
        _ => Err(SignatureError::OutsideReplayWindow),
    }
}

fn unix_millis(at: SystemTime) -> i128 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_millis() as i128,
        Err(before) => -(before.duration().as_millis() as i128),
    }
}

/// Whether a 32-byte tag equals the MAC's result, in constant time.
fn tag_matches(mac: HmacSha256, presented: &[u8; 32]) -> bool {
    use hmac::Mac;
    mac.finalize()
        .into_bytes()
        .as_slice()
        .ct_eq(presented)
        .into()
}

/// Verifies requests of one source against a ring of secrets, as the service does: the scheme's
/// headers, the HMAC over the raw body, then the replay window of the signed timestamp (in the
/// headers, or for Linear in the body). See the [module docs](self) for an example.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'s> {
    source: Source,
    secrets: &'s [SigningSecret],
    replay_window: Option<Duration>,
}

impl<'s> Verifier<'s> {
    /// A verifier with the source's default replay window.
    pub fn new(source: Source, secrets: &'s [SigningSecret]) -> Self {
        Verifier {
            source,
            secrets,
            replay_window: source.spec().replay_window,
        }
    }

    /// A verifier for `trigger`: its source, its ring of secrets and its replay window.
    pub fn for_trigger(trigger: &'s Trigger) -> Self {
        Verifier {
            source: trigger.source(),
            secrets: trigger.secrets(),
            replay_window: trigger.effective_replay_window(),
        }
    }

    /// Timestamps may be this far from now, in either direction, instead of the source's
    /// default.
    pub fn with_replay_window(mut self, window: Duration) -> Self {
        self.replay_window = Some(window);
        self
    }

    /// Verifies a request received now; returns the secret that matched.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<&'s SigningSecret, SignatureError> {
        self.verify_at(headers, body, SystemTime::now())
    }

    /// Verifies a request received at `now`; returns the secret that matched.
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<&'s SigningSecret, SignatureError> {
        let spec = self.source.spec();
        let scheme = spec.scheme.as_ref().ok_or(SignatureError::Unsigned)?;
        let presented = Presented::parse(scheme, headers)?;
        let verified =
            presented.verify(self.source, self.secrets, body, now, self.replay_window)?;
        // The service reads the timestamp in its one pass over the body; here, alone.
        let millis = match spec.body_timestamp {
            BodyTimestamp::None => None,
            BodyTimestamp::Millis(field) => json::scan(body, field)
                .ok()
                .and_then(|fields| fields.number(field[0])),
        };
        verified.check_body_timestamp(millis, now)?;
        Ok(verified.secret)
    }
}

/// The headers `source` would send with `body`, signed with `secret` at `timestamp`.
/// `message_id` is the Standard Webhooks `webhook-id` (ignored by other sources). Linear signs
/// its timestamp inside the body, so for Linear put `webhookTimestamp` in `body` yourself.
///
/// Returns `None` for a source without a signature scheme.
pub fn sign(
    source: Source,
    secret: &SigningSecret,
    body: &[u8],
    timestamp: SystemTime,
    message_id: &str,
) -> Option<HeaderMap> {
    let seconds = unix_millis(timestamp).div_euclid(1000) as i64;
    let mut headers = HeaderMap::new();
    let pairs = match source.spec().scheme.as_ref()? {
        Scheme::HexHmac { header, prefix } => {
            vec![(
                HeaderName::from_static(header),
                hex::sign(secret, body, *prefix),
            )]
        }
        Scheme::SlackV0 => slack::sign(secret, body, seconds),
        Scheme::StandardWebhooks => standard::sign(secret, body, seconds, message_id)?,
    };
    for (name, value) in pairs {
        headers.insert(name, HeaderValue::from_str(&value).ok()?);
    }
    Some(headers)
}

/// A header's value as text, or the scheme's error naming it.
fn header_text<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, SignatureError> {
    let value = headers
        .get(name)
        .ok_or(SignatureError::MissingHeader(name))?;
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| SignatureError::MalformedHeader(name))
}

/// Decodes exactly 64 hex digits.
fn decode_hex_tag(text: &str) -> Option<[u8; 32]> {
    let mut tag = [0u8; 32];
    ::hex::decode_to_slice(text, &mut tag).ok()?;
    Some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_symmetric_and_inclusive() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let window = Some(Duration::from_secs(300));
        let at = |seconds: i128| seconds * 1000;
        assert!(check_window(at(1_000_000), now, window).is_ok());
        assert!(check_window(at(1_000_300), now, window).is_ok());
        assert!(check_window(at(999_700), now, window).is_ok());
        assert_eq!(
            check_window(at(1_000_301), now, window),
            Err(SignatureError::OutsideReplayWindow)
        );
        assert_eq!(
            check_window(at(999_699), now, window),
            Err(SignatureError::OutsideReplayWindow)
        );
        assert!(check_window(0, now, None).is_ok());
        // Far beyond the range of time: outside, never an overflow.
        for extreme in [i128::MIN, i128::MAX, -1e300 as i128, 1e300 as i128] {
            assert_eq!(
                check_window(extreme, now, window),
                Err(SignatureError::OutsideReplayWindow)
            );
        }
    }

    #[test]
    fn unsigned_source_cannot_verify_or_sign() {
        let secret = SigningSecret::new("s", "k").unwrap();
        let ring = [secret.clone()];
        let now = SystemTime::now();
        assert_eq!(
            Verifier::new(Source::JiraAutomation, &ring)
                .verify_at(&HeaderMap::new(), b"{}", now)
                .unwrap_err(),
            SignatureError::Unsigned
        );
        assert!(sign(Source::JiraAutomation, &secret, b"{}", now, "").is_none());
    }
}
