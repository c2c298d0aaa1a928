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

/// What the API addresses by id (an execution, a delivery), and its answer for an id it does
/// not know.
pub trait Resource {
    /// The `404` for an unknown id.
    fn not_found() -> Response;
}

/// Reading one `T`: without the right, the `404` of an unknown one, so that a key learns
/// nothing of what it may not see.
pub struct ReadOne<T>(PhantomData<T>);

impl<T: Resource> Requirement for ReadOne<T> {
    const RIGHT: Right = Right::Read;

    fn refusal(_: AuthorizeError) -> Response {
        T::not_found()
    }
}

/// Acting on one `T` (cancel, replay, redeliver): without the right, the `404` of an unknown
/// one.
pub struct OperateOne<T>(PhantomData<T>);

impl<T: Resource> Requirement for OperateOne<T> {
    const RIGHT: Right = Right::Operate;

    fn refusal(_: AuthorizeError) -> Response {
        T::not_found()
    }
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
