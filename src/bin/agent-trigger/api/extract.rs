//! How request data reaches a handler: the caller's API key ([`Authorized`], through the
//! library's [`agent_trigger::authorize`], so every route accepts and refuses exactly the keys
//! the trigger endpoint does) and the query string ([`ApiQuery`], serde through axum's
//! `Query`, refused as JSON).

use std::marker::PhantomData;
use std::sync::Arc;

use agent_trigger::{ApiKeyRecord, AuthorizeError, Right};
use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::respond;
use super::state::Api;
use crate::store::Backend;

/// The request's usable API key holding the right `R` asks for; a request without one is
/// answered before the handler runs: `401`, `500` when the store fails, and for a key without
/// the right what `R` says (a route about one resource answers as for an unknown one).
pub struct Authorized<R>(pub Arc<ApiKeyRecord>, pub PhantomData<R>);

/// What a route needs of its caller's key, and how it refuses a key without it.
pub trait Requirement {
    /// The right the route needs.
    const RIGHT: Right;

    /// The answer to a usable key without [`RIGHT`](Self::RIGHT).
    fn refusal(refused: AuthorizeError) -> Response {
        refused.into_response().into_response()
    }
}

/// Reading a list: `403` without the right.
pub struct ReadList;

impl Requirement for ReadList {
    const RIGHT: Right = Right::Read;
}

impl<R: Requirement, S: Backend + Send + Sync> FromRequestParts<Api<S>> for Authorized<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &Api<S>) -> Result<Self, Response> {
        match agent_trigger::authorize(&parts.headers, &api.store, R::RIGHT).await {
            Ok(key) => Ok(Authorized(key, PhantomData)),
            Err(refused @ AuthorizeError::Forbidden(_)) => Err(R::refusal(refused)),
            Err(refused) => Err(refused.into_response().into_response()),
        }
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
