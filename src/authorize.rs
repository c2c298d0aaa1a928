//! Bearer-key authorization for the routes a host serves beside the trigger endpoint (an
//! executions view, an admin page): the same keys, the same checks and the same `401` answers
//! as the endpoint's bearer path, and the [`Right`] the route needs.
//!
//! ```
//! use agent_trigger::memory::MemoryKeyStore;
//! use agent_trigger::{ApiKey, ApiKeyRecord, AuthorizeError, Right, authorize};
//! use http::{HeaderMap, StatusCode};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryKeyStore::new();
//! let key = ApiKey::generate();
//! store.insert_key(key.digest(), ApiKeyRecord::new("ops", "acme").with_rights([Right::Read]));
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("authorization", format!("Bearer {}", key.expose()).parse().unwrap());
//! let record = authorize(&headers, &store, Right::Read).await.unwrap();
//! assert_eq!(record.tenant(), "acme");
//! let refused = authorize(&headers, &store, Right::Operate).await.unwrap_err();
//! assert!(matches!(refused, AuthorizeError::Forbidden(Right::Operate)));
//!
//! let refused = authorize(&HeaderMap::new(), &store, Right::Read).await.unwrap_err();
//! assert!(matches!(refused, AuthorizeError::MissingCredentials));
//! assert_eq!(refused.into_response().status(), StatusCode::UNAUTHORIZED);
//! # });
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::key::{bearer_token_bytes, is_well_formed_token};
use crate::{ApiKeyRecord, KeyDigest, KeyStore, ResponseBody, Right, StoreError};

/// The `Retry-After` (seconds) of a `503` for a key store that is away for now.
const STORE_RETRY_AFTER_SECS: u64 = 1;

/// The API key a request's `Authorization: Bearer …` header names, when it is known, usable
/// (not revoked, not expired) and holds `right`. What the key may see (its tenant, its scope)
/// is the caller's to check against the resource.
///
/// The token is hashed and looked up exactly as the trigger endpoint does it, so a host route
/// and the endpoint accept and refuse the same keys.
pub async fn authorize<A: KeyStore>(
    headers: &http::HeaderMap,
    store: &A,
    right: Right,
) -> Result<Arc<ApiKeyRecord>, AuthorizeError> {
    let token = bearer_token_bytes(headers).ok_or(AuthorizeError::MissingCredentials)?;
    if !is_well_formed_token(token) {
        return Err(AuthorizeError::InvalidKey);
    }
    let key = store
        .api_key(KeyDigest::of_token(token))
        .await
        .map_err(AuthorizeError::Store)?;
    let key = key
        .filter(|key| key.is_usable(SystemTime::now()))
        .ok_or(AuthorizeError::InvalidKey)?;
    if !key.can(right) {
        return Err(AuthorizeError::Forbidden(right));
    }
    Ok(key)
}

/// Why [`authorize`] accepted no key.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthorizeError {
    /// No `Authorization: Bearer …` header.
    MissingCredentials,
    /// A bearer token that is malformed, unknown, revoked or expired.
    InvalidKey,
    /// A usable key without the right the route needs. A route about one resource should
    /// answer as for an unknown one (`404`), so that the key learns nothing about it; a list
    /// answers `403`, which [`into_response`](Self::into_response) gives.
    Forbidden(Right),
    /// The key store failed; the cause is for the log, never for the caller. A store that is
    /// away for now ([`StoreError::is_unavailable`]) is answered `503` with `Retry-After`.
    Store(StoreError),
}

impl AuthorizeError {
    /// The HTTP status of [`into_response`](Self::into_response): `401`, `403` for a key
    /// without the right, `503` for a store that is away for now, or `500` for a failing one.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthorizeError::MissingCredentials | AuthorizeError::InvalidKey => {
                StatusCode::UNAUTHORIZED
            }
            AuthorizeError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuthorizeError::Store(error) if error.is_unavailable() => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AuthorizeError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The answer to send: a `401` with its `WWW-Authenticate` challenge (RFC 6750), `403
    /// {"error"}` naming the missing right, `503 {"error"}` with `Retry-After` for a store that
    /// is away for now, or `500 {"error":"internal error"}` after logging the store's failure.
    /// JSON, not cached.
    pub fn into_response(self) -> Response<ResponseBody> {
        let (challenge, body): (Option<&'static str>, &'static [u8]) = match &self {
            AuthorizeError::Forbidden(Right::Invoke) => {
                (None, br#"{"error":"this key may not invoke triggers"}"#)
            }
            AuthorizeError::Forbidden(Right::Read) => {
                (None, br#"{"error":"this key may not read"}"#)
            }
            AuthorizeError::Forbidden(Right::Operate) => (
                None,
                br#"{"error":"this key may not cancel, replay or redeliver"}"#,
            ),
            AuthorizeError::MissingCredentials => (
                Some("Bearer"),
                br#"{"error":"missing credentials: send Authorization: Bearer <api key>"}"#,
            ),
            AuthorizeError::InvalidKey => (
                Some(r#"Bearer error="invalid_token""#),
                br#"{"error":"invalid API key"}"#,
            ),
            AuthorizeError::Store(error) if error.is_unavailable() => {
                tracing::warn!(%error, "authorization: the key store is unavailable");
                (None, br#"{"error":"temporarily unavailable, retry later"}"#)
            }
            AuthorizeError::Store(error) => {
                tracing::error!(%error, "authorization: the key store failed");
                (None, br#"{"error":"internal error"}"#)
            }
        };
        let mut response = Response::new(Full::new(Bytes::from_static(body)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = challenge {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if matches!(&self, AuthorizeError::Store(error) if error.is_unavailable()) {
            headers.insert(RETRY_AFTER, HeaderValue::from(STORE_RETRY_AFTER_SECS));
        }
        response
    }
}

impl fmt::Display for AuthorizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthorizeError::MissingCredentials => f.write_str("no bearer API key"),
            AuthorizeError::InvalidKey => f.write_str("invalid API key"),
            AuthorizeError::Forbidden(right) => write!(f, "the key may not {}", right.as_str()),
            AuthorizeError::Store(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for AuthorizeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuthorizeError::Store(error) => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiKey;
    use crate::memory::MemoryKeyStore;
    use http::HeaderMap;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn a_usable_key_is_accepted_and_others_get_the_endpoints_401s() {
        let store = MemoryKeyStore::new();
        let (live, revoked) = (ApiKey::generate(), ApiKey::generate());
        store.insert_key(live.digest(), ApiKeyRecord::new("live", "acme"));
        store.insert_key(revoked.digest(), ApiKeyRecord::new("old", "acme").revoked());

        let key = authorize(&bearer(live.expose()), &store, Right::Operate)
            .await
            .unwrap();
        assert_eq!(key.id(), "live");

        let invoker = ApiKey::generate();
        store.insert_key(
            invoker.digest(),
            ApiKeyRecord::new("sender", "acme").with_rights([Right::Invoke]),
        );
        for right in [Right::Read, Right::Operate] {
            let refused = authorize(&bearer(invoker.expose()), &store, right)
                .await
                .unwrap_err();
            assert!(matches!(refused, AuthorizeError::Forbidden(denied) if denied == right));
            assert_eq!(refused.into_response().status(), StatusCode::FORBIDDEN);
        }

        for (headers, challenge) in [
            (HeaderMap::new(), "Bearer"),
            (bearer(revoked.expose()), r#"Bearer error="invalid_token""#),
            (bearer("atk_unknown"), r#"Bearer error="invalid_token""#),
            (bearer(""), r#"Bearer error="invalid_token""#),
        ] {
            let response = authorize(&headers, &store, Right::Read)
                .await
                .unwrap_err()
                .into_response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(response.headers()[WWW_AUTHENTICATE], challenge);
            assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        }
    }

    #[test]
    fn a_store_that_is_away_is_answered_503_with_retry_after() {
        let response =
            AuthorizeError::Store(StoreError::unavailable("connection reset")).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let response = AuthorizeError::Store(StoreError::new("a bad row")).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(RETRY_AFTER).is_none());
    }
}
