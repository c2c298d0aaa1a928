//! How request data reaches a handler: the caller's API key ([`Authorized`], through the
//! library's [`agent_trigger::authorize`], so every route accepts and refuses exactly the keys
//! the trigger endpoint does) and the query string ([`ApiQuery`], serde through axum's
//! `Query`, refused as JSON).

use std::sync::Arc;

use agent_trigger::ApiKeyRecord;
use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::respond;
use super::state::Api;
use crate::store::Backend;

/// The request's usable API key; a request without one is answered `401` (or `500` when the
/// store fails) before the handler runs.
pub struct Authorized(pub Arc<ApiKeyRecord>);

impl<S: Backend + Send + Sync> FromRequestParts<Api<S>> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &Api<S>) -> Result<Self, Response> {
        agent_trigger::authorize(&parts.headers, &api.store)
            .await
            .map(Authorized)
            .map_err(|refused| refused.into_response().into_response())
    }
}

/// The query string as `T`; one that does not parse is `400 {"error"}` saying why.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| respond::error(StatusCode::BAD_REQUEST, rejection.body_text()))
    }
}
