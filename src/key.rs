//! API keys: generated once, shown once, stored only as SHA-256 digests.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};

/// The fixed prefix of every generated key, so that secret scanners can recognise a leaked one.
pub const API_KEY_PREFIX: &str = "atk_";

/// The longest bearer token accepted; anything longer is malformed without a store lookup.
const MAX_TOKEN_LEN: usize = 512;

/// A plaintext API key. Its `Debug` never shows the key; read it with [`ApiKey::expose`].
///
/// ```
/// use agent_trigger::{ApiKey, API_KEY_PREFIX};
///
/// let key = ApiKey::generate();
/// assert!(key.expose().starts_with(API_KEY_PREFIX));
/// assert!(!format!("{key:?}").contains(key.expose()));
/// // Only the digest is stored.
/// let digest = key.digest();
/// assert_eq!(digest, agent_trigger::KeyDigest::of_token(key.expose()));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A new random key: the prefix and 256 bits from the operating system's generator.
    ///
    /// # Panics
    ///
    /// When the operating system has no random number generator to offer, which no supported
    /// platform lacks.
    pub fn generate() -> ApiKey {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).expect("the operating system's random number generator");
        ApiKey(format!(
            "{API_KEY_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(random)
        ))
    }

    /// Wraps a key that was issued elsewhere (read from the environment, say).
    pub fn from_plaintext(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The plaintext, to show to its owner exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The digest under which the key is stored.
    pub fn digest(&self) -> KeyDigest {
        KeyDigest::of_token(&self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The SHA-256 digest of an API key, the only form in which a key is stored.
///
/// ```
/// use agent_trigger::KeyDigest;
///
/// let digest = KeyDigest::of_token("atk_example");
/// let hex = digest.to_hex();
/// assert_eq!(hex.len(), 64);
/// assert_eq!(KeyDigest::from_hex(&hex), Ok(digest));
/// assert!(KeyDigest::from_hex("not hex").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyDigest([u8; 32]);

// A digest is already uniformly distributed: hashing its first eight bytes (with the map's own
// keyed hasher) spreads keys as well as hashing all 32 does, in a quarter of the work.
impl std::hash::Hash for KeyDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(head));
    }
}

/// A digest given as text that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDigest;

impl fmt::Display for InvalidDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key digest is 64 hex digits (the SHA-256 of the key)")
    }
}

impl std::error::Error for InvalidDigest {}

impl KeyDigest {
    /// The digest of a presented token (of its bytes).
    pub fn of_token(token: impl AsRef<[u8]>) -> KeyDigest {
        KeyDigest(Sha256::digest(token.as_ref()).into())
    }

    /// Parses 64 hex digits, as written in a configuration file.
    pub fn from_hex(hex_digits: &str) -> Result<KeyDigest, InvalidDigest> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits.trim(), &mut bytes).map_err(|_| InvalidDigest)?;
        Ok(KeyDigest(bytes))
    }

    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A digest from its raw 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> KeyDigest {
        KeyDigest(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest is not a secret, but a short form is all a log reader needs.
        write!(f, "KeyDigest({}…)", &hex::encode(&self.0[..4]))
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme matched
/// case-insensitively), or `None` when the header is absent or names another scheme. The token
/// itself is not checked here: an empty or non-UTF-8 one comes back as a token that no key has.
///
/// ```
/// use agent_trigger::bearer_token;
/// use http::HeaderMap;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("authorization", "Bearer atk_abc".parse().unwrap());
/// assert_eq!(bearer_token(&headers), Some("atk_abc"));
/// headers.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
/// assert_eq!(bearer_token(&headers), None);
/// ```
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    bearer_token_bytes(headers).map(|token| std::str::from_utf8(token).unwrap_or("\u{0}"))
}

/// [`bearer_token`] as the header's bytes, which is all the pipeline needs: it checks them
/// against the token alphabet and hashes them, never reading them as text.
pub(crate) fn bearer_token_bytes(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    match &value[6..] {
        [] => Some(&[]),
        [b' ', rest @ ..] => Some(trim_spaces(rest)),
        _ => None,
    }
}

fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' '] = bytes {
        bytes = rest;
    }
    bytes
}

/// Whether a bearer token is shaped like one at all (RFC 6750 `b64token`, bounded length), so
/// that garbage is refused without touching the store.
pub(crate) fn is_well_formed_token(token: &[u8]) -> bool {
    let mut body = token;
    while let [rest @ .., b'='] = body {
        body = rest;
    }
    !body.is_empty() && token.len() <= MAX_TOKEN_LEN && all_b64token(body)
}

/// Whether every byte is one of `b64token`'s before its trailing `=`s: letters, digits and
/// `-._~+/`.
fn all_b64token(bytes: &[u8]) -> bool {
    bytes.iter().all(|byte| {
        matches!(byte, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_auth(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER   abc"] {
            assert_eq!(bearer_token(&with_auth(value)), Some("abc"), "{value}");
        }
    }

    #[test]
    fn other_schemes_are_not_bearer() {
        assert_eq!(
            bearer_token(&with_auth("Basic YWxhZGRpbjpvcGVuc2VzYW1l")),
            None
        );
        assert_eq!(bearer_token(&with_auth("Bearerabc")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn empty_bearer_is_a_malformed_token_not_a_missing_one() {
        assert_eq!(bearer_token(&with_auth("Bearer")), Some(""));
        assert_eq!(bearer_token(&with_auth("Bearer ")), Some(""));
    }

    #[test]
    fn non_utf8_token_is_kept_as_malformed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert_eq!(bearer_token(&headers), Some("\u{0}"));
    }

    #[test]
    fn generated_keys_are_distinct_prefixed_and_well_formed() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(API_KEY_PREFIX));
        assert_eq!(a.expose().len(), API_KEY_PREFIX.len() + 43);
        assert!(is_well_formed_token(a.expose().as_bytes()));
    }

    #[test]
    fn digest_is_sha256_of_the_plaintext() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(
            KeyDigest::of_token("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn malformed_tokens() {
        assert!(!is_well_formed_token(b""));
        assert!(!is_well_formed_token(b"=="));
        assert!(!is_well_formed_token(b"has space"));
        assert!(!is_well_formed_token(b"quote\"d"));
        assert!(!is_well_formed_token(
            "a".repeat(MAX_TOKEN_LEN + 1).as_bytes()
        ));
        assert!(is_well_formed_token(b"abc=="));
        assert!(is_well_formed_token(b"a.b-c_d~e+f/g"));
        // Bytes outside ASCII (obs-text in the header) are never part of a token.
        assert!(!is_well_formed_token(b"atk_\xc3\xa9"));
        assert!(!is_well_formed_token(b"atk_\xff"));
    }

    #[test]
    fn every_byte_is_classified_as_b64token_defines_it_wherever_it_falls() {
        let allowed = |byte: u8| {
            byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        };
        // Each byte value at every offset of tokens of up to 40 bytes.
        for length in 1..=40 {
            for at in 0..length {
                for byte in 0..=255u8 {
                    let mut token = vec![b'k'; length];
                    token[at] = byte;
                    // A trailing `=` is padding, not part of the token's body.
                    let expected = allowed(byte) || byte == b'=' && at == length - 1 && length > 1;
                    assert_eq!(
                        is_well_formed_token(&token),
                        expected,
                        "{byte:#04x} at {at} of {length}"
                    );
                }
            }
        }
    }

    #[test]
    fn debug_redacts() {
        let key = ApiKey::from_plaintext("atk_supersecret");
        assert!(!format!("{key:?}").contains("supersecret"));
        assert!(!format!("{:?}", key.digest()).contains(&key.digest().to_hex()));
    }
}
