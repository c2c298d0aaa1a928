//! HMAC signatures described as data: one verifier for every sender that signs an HMAC over
//! some of the request (GitHub, Stripe, Shopify, Zendesk, PagerDuty, Sentry, Intercom, and the
//! tables written for senders without a preset). A row says which header carries the signature,
//! its prefix, the hash, hex or base64, one signature or a `key=value` list, and the signed
//! content as a template over the body, a timestamp, a delivery id and the URL.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::{RequestUrl, SignatureError};
use crate::SigningSecret;
use crate::secret::HmacSha256;

/// The hash of an HMAC scheme.
///
/// ```
/// use agent_trigger::signature::HmacAlgorithm;
///
/// let algorithm: HmacAlgorithm = "hmac-sha512".parse().unwrap();
/// assert_eq!(algorithm, HmacAlgorithm::Sha512);
/// assert_eq!(algorithm.as_str(), "hmac-sha512");
/// assert!("sha256".parse::<HmacAlgorithm>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HmacAlgorithm {
    /// HMAC-SHA1 (Intercom, Twilio).
    Sha1,
    /// HMAC-SHA256, what most senders use.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl HmacAlgorithm {
    /// The names [`FromStr`](std::str::FromStr) takes, as a scheme's table spells them.
    ///
    /// ```
    /// # use agent_trigger::signature::HmacAlgorithm;
    /// assert!(HmacAlgorithm::NAMES.iter().all(|name| name.parse::<HmacAlgorithm>().is_ok()));
    /// ```
    pub const NAMES: &'static [&'static str] = &["hmac-sha1", "hmac-sha256", "hmac-sha512"];

    /// The name, as a scheme's table spells it (`hmac-sha256`).
    ///
    /// ```
    /// # use agent_trigger::signature::HmacAlgorithm;
    /// assert_eq!(HmacAlgorithm::Sha1.as_str(), "hmac-sha1");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            HmacAlgorithm::Sha1 => "hmac-sha1",
            HmacAlgorithm::Sha256 => "hmac-sha256",
            HmacAlgorithm::Sha512 => "hmac-sha512",
        }
    }

    /// The length of a tag, in bytes.
    pub(crate) const fn tag_len(self) -> usize {
        match self {
            HmacAlgorithm::Sha1 => 20,
            HmacAlgorithm::Sha256 => 32,
            HmacAlgorithm::Sha512 => 64,
        }
    }
}

impl std::str::FromStr for HmacAlgorithm {
    type Err = super::SchemeError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "hmac-sha1" => HmacAlgorithm::Sha1,
            "hmac-sha256" => HmacAlgorithm::Sha256,
            "hmac-sha512" => HmacAlgorithm::Sha512,
            _ => {
                return Err(super::SchemeError::InvalidValue {
                    field: "algorithm",
                    value: name.to_owned(),
                    expected: Self::NAMES,
                });
            }
        })
    }
}

impl std::fmt::Display for HmacAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a signature's bytes are written in its header.
///
/// ```
/// use agent_trigger::signature::SignatureEncoding;
///
/// assert_eq!("base64".parse::<SignatureEncoding>().unwrap(), SignatureEncoding::Base64);
/// assert_eq!(SignatureEncoding::Hex.as_str(), "hex");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureEncoding {
    /// Hexadecimal digits, either case.
    Hex,
    /// Standard base64, padded.
    Base64,
}

impl SignatureEncoding {
    /// The names [`FromStr`](std::str::FromStr) takes.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureEncoding;
    /// assert_eq!(SignatureEncoding::NAMES, ["hex", "base64"]);
    /// ```
    pub const NAMES: &'static [&'static str] = &["hex", "base64"];

    /// The name, as a scheme's table spells it.
    ///
    /// ```
    /// # use agent_trigger::signature::SignatureEncoding;
    /// assert_eq!(SignatureEncoding::Base64.as_str(), "base64");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            SignatureEncoding::Hex => "hex",
            SignatureEncoding::Base64 => "base64",
        }
    }
}

impl std::str::FromStr for SignatureEncoding {
    type Err = super::SchemeError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "hex" => Ok(SignatureEncoding::Hex),
            "base64" => Ok(SignatureEncoding::Base64),
            _ => Err(super::SchemeError::InvalidValue {
                field: "encoding",
                value: name.to_owned(),
                expected: Self::NAMES,
            }),
        }
    }
}

impl std::fmt::Display for SignatureEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// Literal text of the template.
    Text(Cow<'static, str>),
    /// The raw body, as received.
    Body,
    /// The signed timestamp, as the header wrote it.
    Timestamp,
    /// The delivery id header's value.
    Id,
    /// The URL the sender called: the trigger's public URL and the request's query.
    Url,
}

/// Where the signature is in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureList {
    /// The whole value, after the scheme's prefix.
    Single,
    /// Comma-separated `key=value` pairs: every `signature` pair is a candidate (any may match,
    /// so that a sender can sign with two secrets while it rotates), and the `timestamp` pair,
    /// if named, is the signed timestamp (Stripe's `t=…,v1=…`, PagerDuty's `v1=…,v1=…`).
    Pairs {
        timestamp: Option<&'static str>,
        signature: &'static str,
    },
}

/// How a signed timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimestampFormat {
    /// Unix seconds.
    UnixSeconds,
    /// RFC 3339 (`2026-12-03T07:00:00Z`), as Zendesk sends it.
    Rfc3339,
}

/// A timestamp header and how it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimestampHeader {
    pub(crate) header: HeaderName,
    pub(crate) format: TimestampFormat,
}

/// An HMAC scheme: a preset's row or a table written for one sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HmacScheme {
    pub(crate) header: HeaderName,
    /// Stripped from a single signature before decoding.
    pub(crate) prefix: Cow<'static, str>,
    pub(crate) algorithm: HmacAlgorithm,
    pub(crate) encoding: SignatureEncoding,
    pub(crate) list: SignatureList,
    pub(crate) signed: Cow<'static, [Part]>,
    /// The header of a timestamp that `signed` covers, when the list does not carry it.
    pub(crate) timestamp: Option<TimestampHeader>,
    /// The header of a delivery id that `signed` covers.
    pub(crate) id: Option<HeaderName>,
}

/// A signature presented in a request's headers for an [`HmacScheme`], parsed but not checked.
/// The signed timestamp's and id's text are read from the headers again when the signature is
/// checked (kept small: it waits in the request's future while the body is read).
#[derive(Debug)]
pub(crate) struct HmacSignature<'a> {
    scheme: &'a HmacScheme,
    headers: &'a HeaderMap,
    /// The single signature after its prefix, or the whole list.
    signatures: &'a str,
    /// The signed timestamp in Unix seconds, when the scheme signs one.
    pub(crate) timestamp: Option<i64>,
}

impl<'a> HmacSignature<'a> {
    /// Reads the headers the scheme names. Anything absent or unreadable is a signature that
    /// does not match: these schemes answer alike whatever is wrong (contract §8).
    pub(crate) fn parse(
        scheme: &'a HmacScheme,
        headers: &'a HeaderMap,
    ) -> Result<Self, SignatureError> {
        let value = header_text(headers, &scheme.header)?;
        let (signatures, listed_timestamp) = match scheme.list {
            SignatureList::Single => (
                value
                    .strip_prefix(&*scheme.prefix)
                    .ok_or(SignatureError::Mismatch)?,
                None,
            ),
            SignatureList::Pairs { timestamp, .. } => {
                (value, timestamp.and_then(|key| pairs(value, key).next()))
            }
        };
        let timestamp = match (&scheme.timestamp, listed_timestamp) {
            (_, Some(text)) => Some(parse_unix(text)?),
            (Some(TimestampHeader { header, format }), None) => {
                let text = header_text(headers, header)?;
                Some(match format {
                    TimestampFormat::UnixSeconds => parse_unix(text)?,
                    TimestampFormat::Rfc3339 => {
                        parse_rfc3339(text).ok_or(SignatureError::Mismatch)?
                    }
                })
            }
            (None, None) if scheme.signed.contains(&Part::Timestamp) => {
                return Err(SignatureError::Mismatch);
            }
            (None, None) => None,
        };
        if let Some(header) = &scheme.id {
            header_text(headers, header)?;
        }
        Ok(HmacSignature {
            scheme,
            headers,
            signatures,
            timestamp,
        })
    }

    /// The signed timestamp as its sender wrote it: from the list, or from its header.
    fn timestamp_text(&self) -> Option<&'a str> {
        if let SignatureList::Pairs {
            timestamp: Some(key),
            ..
        } = self.scheme.list
        {
            return pairs(self.signatures, key).next();
        }
        let header = &self.scheme.timestamp.as_ref()?.header;
        header_text(self.headers, header).ok()
    }

    /// The decodable signatures presented, each the length of the scheme's tag.
    fn candidates(&self) -> impl Iterator<Item = [u8; 64]> + '_ {
        let (single, listed) = match self.scheme.list {
            SignatureList::Single => (Some(self.signatures), None),
            SignatureList::Pairs { signature, .. } => {
                (None, Some(pairs(self.signatures, signature)))
            }
        };
        let (encoding, len) = (self.scheme.encoding, self.scheme.algorithm.tag_len());
        single
            .into_iter()
            .chain(listed.into_iter().flatten())
            .filter_map(move |text| decode(encoding, text, len))
    }

    /// The tag, when `secret` made one of the presented signatures over the request.
    pub(crate) fn tag_made_with(
        &self,
        secret: &SigningSecret,
        body: &[u8],
        url: &RequestUrl<'_>,
    ) -> Option<[u8; 32]> {
        let mut mac = AnyMac::new(self.scheme.algorithm, secret);
        for part in self.scheme.signed.iter() {
            match part {
                Part::Text(text) => mac.update(text.as_bytes()),
                Part::Body => mac.update(body),
                Part::Timestamp => mac.update(self.timestamp_text()?.as_bytes()),
                Part::Id => {
                    let header = self.scheme.id.as_ref()?;
                    mac.update(header_text(self.headers, header).ok()?.as_bytes())
                }
                Part::Url => url.write_to(|piece| mac.update(piece))?,
            }
        }
        let (expected, len) = mac.finalize();
        let expected = &expected[..len];
        // Look at every candidate, matched or not, so timing does not tell which one matched.
        let found: bool = self
            .candidates()
            .fold(subtle::Choice::from(0), |found, tag| {
                found | expected.ct_eq(&tag[..len])
            })
            .into();
        found.then(|| replay_tag(expected))
    }
}

/// The 32 bytes a verified signature is remembered by for replays (§5): the tag itself when
/// it has 32 bytes, else its SHA-256.
pub(crate) fn replay_tag(tag: &[u8]) -> [u8; 32] {
    match <[u8; 32]>::try_from(tag) {
        Ok(tag) => tag,
        Err(_) => Sha256::digest(tag).into(),
    }
}

/// The values of the `key=value` pairs of a comma-separated list whose key is `key`.
fn pairs<'v>(list: &'v str, key: &'static str) -> impl Iterator<Item = &'v str> + 'v {
    list.split(',').filter_map(move |pair| {
        let (name, value) = pair.split_once('=')?;
        (name.trim() == key).then(|| value.trim())
    })
}

/// Exactly `len` bytes from their encoding, or `None`.
fn decode(encoding: SignatureEncoding, text: &str, len: usize) -> Option<[u8; 64]> {
    let mut tag = [0u8; 64];
    match encoding {
        SignatureEncoding::Hex => {
            ::hex::decode_to_slice(text, tag.get_mut(..len)?).ok()?;
        }
        SignatureEncoding::Base64 => {
            let mut decoded = [0u8; 66];
            let written = STANDARD.decode_slice(text, &mut decoded).ok()?;
            (written == len).then_some(())?;
            tag[..len].copy_from_slice(&decoded[..len]);
        }
    }
    Some(tag)
}

/// A header's value as text, trimmed; absent or not text is a mismatch.
pub(crate) fn header_text<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<&'h str, SignatureError> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .ok_or(SignatureError::Mismatch)
}

/// Unix seconds as decimal digits (a sign allowed).
pub(crate) fn parse_unix(text: &str) -> Result<i64, SignatureError> {
    text.parse().map_err(|_| SignatureError::Mismatch)
}

/// An RFC 3339 date-time (`2026-12-03T07:00:00Z`, fractions and offsets allowed) as Unix
/// seconds, fractions dropped.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = bytes.get(range)?;
        digits.iter().try_fold(0i64, |value, &digit| {
            digit
                .is_ascii_digit()
                .then(|| value * 10 + i64::from(digit - b'0'))
        })
    };
    let separator = |at: usize, allowed: &[u8]| -> Option<()> {
        allowed
            .contains(&bytes.get(at)?.to_ascii_uppercase())
            .then_some(())
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    separator(4, b"-")?;
    separator(7, b"-")?;
    separator(10, b"T ")?;
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    separator(13, b":")?;
    separator(16, b":")?;
    let mut at = 19;
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        let digits = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        (digits > 0).then_some(())?;
        at += digits;
    }
    let offset = match bytes.get(at)?.to_ascii_uppercase() {
        b'Z' if at + 1 == bytes.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == bytes.len() => {
            separator(at + 3, b":")?;
            let minutes = number(at + 1..at + 3)? * 60 + number(at + 4..at + 6)?;
            if sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second <= 60;
    valid.then_some(())?;
    Some(
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
            - offset * 60,
    )
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// An HMAC of any of the scheme hashes, keyed with the secret's text.
enum AnyMac {
    Sha1(Hmac<Sha1>),
    Sha256(HmacSha256),
    Sha512(Hmac<Sha512>),
}

impl AnyMac {
    fn new(algorithm: HmacAlgorithm, secret: &SigningSecret) -> Self {
        let key = secret.expose_value();
        match algorithm {
            HmacAlgorithm::Sha1 => {
                AnyMac::Sha1(Hmac::new_from_slice(key).expect("HMAC accepts keys of any length"))
            }
            // The key schedule of the secret's own text is kept with the secret.
            HmacAlgorithm::Sha256 => AnyMac::Sha256(secret.raw_mac().clone()),
            HmacAlgorithm::Sha512 => {
                AnyMac::Sha512(Hmac::new_from_slice(key).expect("HMAC accepts keys of any length"))
            }
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            AnyMac::Sha1(mac) => mac.update(bytes),
            AnyMac::Sha256(mac) => mac.update(bytes),
            AnyMac::Sha512(mac) => mac.update(bytes),
        }
    }

    /// The tag in the first bytes of the array, and its length.
    fn finalize(self) -> ([u8; 64], usize) {
        let mut tag = [0u8; 64];
        let len = match self {
            AnyMac::Sha1(mac) => copy_into(&mut tag, &mac.finalize().into_bytes()),
            AnyMac::Sha256(mac) => copy_into(&mut tag, &mac.finalize().into_bytes()),
            AnyMac::Sha512(mac) => copy_into(&mut tag, &mac.finalize().into_bytes()),
        };
        (tag, len)
    }
}

fn copy_into(tag: &mut [u8; 64], bytes: &[u8]) -> usize {
    tag[..bytes.len()].copy_from_slice(bytes);
    bytes.len()
}

/// An HMAC-SHA1 keyed with the secret's text, for Twilio.
pub(crate) fn sha1_mac(secret: &SigningSecret) -> Hmac<Sha1> {
    Hmac::new_from_slice(secret.expose_value()).expect("HMAC accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-12-03T07:00:00Z"), Some(1_796_281_200));
        assert_eq!(
            parse_rfc3339("2026-12-03t07:00:00.123z"),
            Some(1_796_281_200)
        );
        assert_eq!(
            parse_rfc3339("2026-12-03T09:00:00+02:00"),
            Some(1_796_281_200)
        );
        assert_eq!(
            parse_rfc3339("2026-12-03T06:30:00-00:30"),
            Some(1_796_281_200)
        );
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        for bad in [
            "",
            "2026-12-03",
            "2026-12-03T07:00:00",
            "2026-13-03T07:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-12-03T24:00:00Z",
            "2026-12-03T07:00:00.Z",
            "2026-12-03T07:00:00Zjunk",
            "2026-12-03T07:00:00+0200",
            "+026-12-03T07:00:00Z",
            "２026-12-03T07:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn lists_and_encodings() {
        assert_eq!(
            pairs("t=1, v1=aa,v0=bb,v1=cc", "v1").collect::<Vec<_>>(),
            ["aa", "cc"]
        );
        assert_eq!(pairs("t=1,v1", "v1").count(), 0);
        assert!(decode(SignatureEncoding::Hex, "ABcd", 2).is_some());
        assert!(decode(SignatureEncoding::Hex, "abc", 2).is_none());
        assert!(decode(SignatureEncoding::Base64, "AAAA", 3).is_some());
        assert!(decode(SignatureEncoding::Base64, "AAAA", 2).is_none());
        // A 64-byte tag in base64 fits; a longer one does not.
        assert!(decode(SignatureEncoding::Base64, &STANDARD.encode([7u8; 64]), 64).is_some());
        assert!(decode(SignatureEncoding::Base64, &STANDARD.encode([7u8; 66]), 64).is_none());
    }
}
