//! Verifying a sender's signature over the raw bytes as received.
//!
//! One verifier per scheme (hub-style hex, Slack `v0`, Standard Webhooks, any HMAC described as
//! data, a shared token, Ed25519, Twilio's), and tables that say which scheme each sender uses:
//! one row per source, and for `webhook` triggers the [`SignatureScheme`] they pick, a preset
//! (`github`, `stripe`, `discord`, …) or a table written for one sender. Verification is split in two so that the
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

pub(crate) mod ed25519;
pub(crate) mod hex;
pub(crate) mod mac;
mod scheme;
pub(crate) mod slack;
pub(crate) mod standard;
pub(crate) mod token;
pub(crate) mod twilio;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use subtle::ConstantTimeEq;

pub use self::mac::{HmacAlgorithm, SignatureEncoding};
pub(crate) use self::scheme::check_secret;
pub use self::scheme::{CustomScheme, SchemeError, SignatureScheme};
use crate::json;
use crate::secret::HmacSha256;
use crate::source::{BodyTimestamp, Scheme, Source, SourceSpec};
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
    Hmac(mac::HmacSignature<'h>),
    Token(token::PresentedToken<'h>),
    Ed25519(ed25519::Ed25519Signature<'h>),
    Twilio(twilio::TwilioSignature),
}

/// The URL a sender called, for the schemes that sign it: the trigger's public URL (what the
/// sender was given, without query) and the request's query string as received.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestUrl<'a> {
    pub(crate) base: Option<&'a str>,
    pub(crate) query: Option<&'a str>,
}

impl RequestUrl<'_> {
    /// Hands the URL to `write` in pieces; `None` when there is no public URL to sign.
    pub(crate) fn write_to(&self, mut write: impl FnMut(&[u8])) -> Option<()> {
        write(self.base?.as_bytes());
        if let Some(query) = self.query.filter(|query| !query.is_empty()) {
            write(b"?");
            write(query.as_bytes());
        }
        Some(())
    }
}

impl<'h> Presented<'h> {
    /// Parses the scheme's headers; fails on absent or malformed ones.
    pub(crate) fn parse(
        scheme: &'h Scheme,
        headers: &'h HeaderMap,
    ) -> Result<Self, SignatureError> {
        Ok(match scheme {
            Scheme::HexHmac { header, prefix } => {
                Presented::Hex(hex::HexSignature::parse(headers, header, *prefix)?)
            }
            Scheme::SlackV0 => Presented::Slack(slack::SlackSignature::parse(headers)?),
            Scheme::StandardWebhooks(names) => {
                Presented::Standard(standard::StandardSignature::parse(headers, names)?)
            }
            Scheme::Hmac(scheme) => Presented::Hmac(mac::HmacSignature::parse(scheme, headers)?),
            Scheme::Token { header } => {
                Presented::Token(token::PresentedToken::parse(header, headers)?)
            }
            Scheme::Ed25519 {
                signature,
                timestamp,
            } => Presented::Ed25519(ed25519::Ed25519Signature::parse(
                signature, timestamp, headers,
            )?),
            Scheme::Twilio { header } => {
                Presented::Twilio(twilio::TwilioSignature::parse(header, headers)?)
            }
        })
    }

    /// The first active secret of the ring that made the presented signature over `body` (and
    /// the URL, for the schemes that sign it), and the tag it is remembered by: the same for a
    /// byte-identical copy of the request, which is how replays of it are recognised.
    fn matching_secret<'s>(
        &self,
        secrets: &'s [SigningSecret],
        body: &[u8],
        url: &RequestUrl<'_>,
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
                    Presented::Hmac(signature) => signature.tag_made_with(secret, body, url),
                    Presented::Token(token) => token.tag_made_with(secret, body),
                    Presented::Ed25519(signature) => signature.tag_made_with(secret, body),
                    Presented::Twilio(signature) => signature.tag_made_with(secret, body, url),
                };
                tag.map(|tag| (secret, tag))
            })
            .ok_or(SignatureError::Mismatch)
    }

    /// The checks once the body is read: the signature over `body` against the ring, then the
    /// window of a timestamp signed in the headers. A timestamp signed in the body (Linear's) is
    /// read with the body's other fields and checked with [`Verified::check_body_timestamp`].
    pub(crate) fn verify<'s>(
        &self,
        spec: &SourceSpec,
        secrets: &'s [SigningSecret],
        body: &[u8],
        url: &RequestUrl<'_>,
        now: SystemTime,
        window: Option<Duration>,
    ) -> Result<Verified<'s>, SignatureError> {
        let (secret, tag) = self.matching_secret(secrets, body, url, now)?;
        if let Some(seconds) = self.header_timestamp() {
            check_window(i128::from(seconds) * 1000, now, window)?;
        }
        Ok(Verified {
            secret,
            tag,
            body_timestamp: spec.body_timestamp,
            window,
        })
    }

    /// The signed timestamp carried in the headers, in Unix seconds.
    fn header_timestamp(&self) -> Option<i64> {
        match self {
            Presented::Hex(_) | Presented::Token(_) | Presented::Twilio(_) => None,
            Presented::Slack(signature) => Some(signature.timestamp),
            Presented::Standard(signature) => Some(signature.timestamp),
            Presented::Hmac(signature) => signature.timestamp,
            Presented::Ed25519(signature) => Some(signature.timestamp),
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

/// Verifies requests against a ring of secrets, as the service does: the scheme's headers, the
/// signature over the raw body, then the replay window of the signed timestamp (in the headers,
/// or for Linear in the body). See the [module docs](self) for an example.
///
/// A `webhook` trigger's scheme, and any [`SignatureScheme`], answer every problem with the
/// headers as [`SignatureError::Mismatch`], as the service does for them: their requests are
/// refused alike whatever is wrong (contract §8). Only a holder of the secret learns that a
/// timestamp was stale.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use agent_trigger::signature::{SignatureScheme, Verifier};
/// use agent_trigger::{SignatureError, SigningSecret};
/// use http::HeaderMap;
///
/// // GitHub's published example.
/// let ring = [SigningSecret::new("gh", "It's a Secret to Everybody").unwrap()];
/// let mut headers = HeaderMap::new();
/// headers.insert(
///     "x-hub-signature-256",
///     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".parse().unwrap(),
/// );
/// let github = SignatureScheme::github();
/// let verifier = Verifier::for_scheme(&github, &ring);
/// assert_eq!(verifier.verify(&headers, b"Hello, World!").unwrap().id(), "gh");
/// assert_eq!(verifier.verify(&headers, b"Hello, World?").unwrap_err(), SignatureError::Mismatch);
/// let nothing = HeaderMap::new();
/// assert_eq!(verifier.verify(&nothing, b"Hello, World!").unwrap_err(), SignatureError::Mismatch);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'s> {
    spec: &'s SourceSpec,
    /// Header problems are a mismatch, as for a `webhook` trigger in the service.
    alike: bool,
    secrets: &'s [SigningSecret],
    replay_window: Option<Duration>,
    url: Option<&'s str>,
}

impl<'s> Verifier<'s> {
    /// A verifier for `source` with its default replay window; a `webhook` source verifies
    /// Standard Webhooks.
    pub fn new(source: Source, secrets: &'s [SigningSecret]) -> Self {
        let spec = source.spec();
        Verifier {
            spec,
            alike: source.takes_any_scheme(),
            secrets,
            replay_window: spec.replay_window,
            url: None,
        }
    }

    /// A verifier for `scheme`, with its default replay window.
    ///
    /// ```
    /// use agent_trigger::signature::{SignatureScheme, Verifier};
    /// use agent_trigger::{SignatureError, SigningSecret};
    /// use http::HeaderMap;
    ///
    /// let ring = [SigningSecret::new("s", "whsec_test_secret").unwrap()];
    /// let stripe = SignatureScheme::stripe();
    /// let mut headers = HeaderMap::new();
    /// headers.insert("stripe-signature", "t=1,v1=00".parse().unwrap());
    /// let verdict = Verifier::for_scheme(&stripe, &ring).verify(&headers, b"{}");
    /// assert_eq!(verdict.unwrap_err(), SignatureError::Mismatch);
    /// ```
    pub fn for_scheme(scheme: &'s SignatureScheme, secrets: &'s [SigningSecret]) -> Self {
        let spec = scheme.spec();
        Verifier {
            spec,
            alike: true,
            secrets,
            replay_window: spec.replay_window,
            url: None,
        }
    }

    /// A verifier for `trigger`: its scheme, its ring of secrets, its replay window and its
    /// public URL (a scheme that signs the URL also needs the request's query: see
    /// [`with_url`](Self::with_url)).
    ///
    /// ```
    /// use agent_trigger::signature::{SignatureScheme, Verifier};
    /// use agent_trigger::{SigningSecret, Source, Trigger};
    /// use http::HeaderMap;
    /// use uuid::Uuid;
    ///
    /// let trigger = Trigger::new(Uuid::now_v7(), "acme", Source::Webhook)
    ///     .with_signature(SignatureScheme::gitlab())
    ///     .with_secret(SigningSecret::new("s", "gitlab token").unwrap());
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-gitlab-token", "gitlab token".parse().unwrap());
    /// assert_eq!(Verifier::for_trigger(&trigger).verify(&headers, b"{}").unwrap().id(), "s");
    /// ```
    pub fn for_trigger(trigger: &'s Trigger) -> Self {
        Verifier {
            spec: trigger.spec(),
            alike: trigger.source().takes_any_scheme(),
            secrets: trigger.secrets(),
            replay_window: trigger.effective_replay_window(),
            url: trigger.public_url(),
        }
    }

    /// Timestamps may be this far from now, in either direction, instead of the scheme's
    /// default.
    pub fn with_replay_window(mut self, window: Duration) -> Self {
        self.replay_window = Some(window);
        self
    }

    /// The URL the sender called, query included, for a scheme that signs it (`twilio`, or a
    /// table whose `signed` has `{url}`).
    ///
    /// ```
    /// use agent_trigger::signature::{SignatureScheme, Verifier};
    /// use agent_trigger::SigningSecret;
    ///
    /// let ring = [SigningSecret::new("auth-token", "12345").unwrap()];
    /// let twilio = SignatureScheme::twilio();
    /// let verifier = Verifier::for_scheme(&twilio, &ring)
    ///     .with_url("https://mycompany.com/myapp.php?foo=1&bar=2");
    /// # drop(verifier);
    /// ```
    pub fn with_url(mut self, url: &'s str) -> Self {
        self.url = Some(url);
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
        let spec = self.spec;
        let scheme = spec.scheme.as_ref().ok_or(SignatureError::Unsigned)?;
        let presented = Presented::parse(scheme, headers).map_err(|error| {
            if self.alike {
                SignatureError::Mismatch
            } else {
                error
            }
        })?;
        let url = match self.url.map(|url| url.split_once('?').unwrap_or((url, ""))) {
            Some((base, query)) => RequestUrl {
                base: Some(base),
                query: Some(query),
            },
            None => RequestUrl::default(),
        };
        let verified = presented.verify(spec, self.secrets, body, &url, now, self.replay_window)?;
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
        Scheme::StandardWebhooks(names) => {
            standard::sign(names, secret, body, seconds, message_id)?
        }
        // No source row uses the other schemes; they belong to `SignatureScheme`s.
        Scheme::Hmac(_) | Scheme::Token { .. } | Scheme::Ed25519 { .. } | Scheme::Twilio { .. } => {
            return None;
        }
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
