//! The deliveries API: the log of what each request to a trigger got (list and show), and
//! redelivery, with the bearer keys and the tenant and scope rules of the executions API: a
//! record of another tenant, or of a trigger outside the key's scope, looks exactly like an
//! unknown one.

use std::sync::Arc;

use agent_trigger::ApiKeyRecord;
use agent_trigger::deliveries::{DeliveryQuery, LoggedDelivery, REDACTED};
use agent_trigger::service::DEFAULT_PREFIX;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderName, Request, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::executions::visible_triggers;
use super::extract::{ApiQuery, Authorized, OperateOne, ReadList, ReadOne, Resource};
use super::respond::{self, json_response};
use super::state::Api;
use crate::store::Backend;

/// The longest outcome name a filter takes.
const MAX_OUTCOME_LEN: usize = 64;

/// One delivery, for [`ReadOne`] and [`OperateOne`].
pub struct Delivery;

impl Resource for Delivery {
    fn not_found() -> Response {
        not_found()
    }
}

/// Who sent a delivery, as the API shows it.
#[derive(Serialize)]
struct CallerBody<'a> {
    kind: &'static str,
    id: Option<&'a str>,
}

/// One record as the API shows it; `headers` and `body` only when it is asked for by id.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryBody<'a> {
    id: String,
    received_at: String,
    trigger_id: String,
    source: &'static str,
    status: u16,
    outcome: &'a str,
    reason: &'a str,
    caller: CallerBody<'a>,
    execution_id: Option<String>,
    delivery_id: Option<&'a str>,
    action: Option<&'a str>,
    body_bytes: u64,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<Vec<HeaderBody<'a>>>,
    /// The body, when kept: as text, or in base64 when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_encoding: Option<&'static str>,
}

#[derive(Serialize)]
struct HeaderBody<'a> {
    name: &'a str,
    value: &'a str,
}

impl<'a> DeliveryBody<'a> {
    fn new(record: &'a LoggedDelivery, detail: bool) -> Self {
        let (body, body_encoding) = match (&record.body, detail) {
            (_, false) => (None, None),
            (None, true) => (Some(None), None),
            (Some(bytes), true) => match std::str::from_utf8(bytes) {
                Ok(text) => (Some(Some(text.to_owned())), Some("utf-8")),
                Err(_) => (
                    Some(Some(
                        base64::engine::general_purpose::STANDARD.encode(bytes),
                    )),
                    Some("base64"),
                ),
            },
        };
        DeliveryBody {
            id: record.id.to_string(),
            received_at: humantime::format_rfc3339_millis(record.received_at).to_string(),
            trigger_id: record.trigger_id.to_string(),
            source: record.source.as_str(),
            status: record.status,
            outcome: &record.outcome,
            reason: &record.reason,
            caller: CallerBody {
                kind: record.caller_kind(),
                id: record.caller_id(),
            },
            execution_id: record.execution_id.as_ref().map(ToString::to_string),
            delivery_id: record.delivery_id.as_deref(),
            action: record.action.as_deref(),
            body_bytes: record.body_bytes,
            duration_ms: record.duration.as_micros() as f64 / 1000.0,
            headers: detail.then(|| {
                record
                    .headers
                    .iter()
                    .map(|(name, value)| HeaderBody { name, value })
                    .collect()
            }),
            body,
            body_encoding,
        }
    }
}

/// The list's query string. Unknown parameters are ignored, as HTTP APIs usually do.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    trigger_id: Option<Uuid>,
    outcome: Option<String>,
    limit: Option<usize>,
    cursor: Option<Uuid>,
}

/// `GET /api/deliveries?triggerId=&outcome=&limit=&cursor=`: the key's records, newest first;
/// `nextCursor` fetches the page after.
pub async fn list<S: Backend>(
    State(api): State<Api<S>>,
    Authorized(key, _): Authorized<ReadList>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Response {
    let limit = match respond::page_limit(params.limit) {
        Ok(limit) => limit,
        Err(refused) => return *refused,
    };
    if let Some(outcome) = &params.outcome
        && !is_outcome_name(outcome)
    {
        return respond::error(
            StatusCode::BAD_REQUEST,
            "outcome must be an outcome's name, like started or invalid_signature",
        );
    }
    let mut query = DeliveryQuery::new(key.tenant(), limit);
    query.outcome = params.outcome;
    query.before = params.cursor;
    query.triggers = visible_triggers(&key, params.trigger_id);
    match api.store.deliveries(&query).await {
        Ok(records) => {
            let last = records.last().map(|record| record.id.to_string());
            let deliveries: Vec<_> = records
                .iter()
                .map(|record| DeliveryBody::new(record, false))
                .collect();
            respond::page("deliveries", &deliveries, limit, last)
        }
        Err(error) => respond::store_failure("deliveries API", &error),
    }
}

/// An outcome's name: lower-case letters and underscores.
fn is_outcome_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_OUTCOME_LEN
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte == b'_')
}

/// `GET /api/deliveries/{id}`: one record, with its redacted headers and kept body.
pub async fn show<S: Backend>(
    State(api): State<Api<S>>,
    Authorized(key, _): Authorized<ReadOne<Delivery>>,
    Path(id): Path<String>,
) -> Response {
    match visible(&api, &key, &id).await {
        Ok(record) => json_response(StatusCode::OK, &DeliveryBody::new(&record, true)),
        Err(answer) => answer,
    }
}

/// Request headers a redelivery does not repeat: they describe the original connection and
/// body framing, not the delivery.
const NOT_REPEATED: [HeaderName; 5] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::HOST,
    header::CONNECTION,
    header::EXPECT,
];

/// `POST /api/deliveries/{id}/redeliver`: the recorded body and headers (the redacted ones
/// left out) as a new delivery of the operator's key, through the trigger's configuration of
/// today, answered as the endpoint answers. `409` when the body was not kept or the trigger is
/// disabled or was removed.
pub async fn redeliver<S: Backend>(
    State(api): State<Api<S>>,
    Authorized(key, _): Authorized<OperateOne<Delivery>>,
    Path(id): Path<String>,
) -> Response {
    let record = match visible(&api, &key, &id).await {
        Ok(record) => record,
        Err(answer) => return answer,
    };
    let Some(body) = record.body.clone() else {
        return respond::error(
            StatusCode::CONFLICT,
            "the delivery's body was not kept: only an authenticated request's is",
        );
    };
    match api.store.trigger(record.trigger_id).await {
        Ok(Some(trigger)) if trigger.source() != record.source => return trigger_removed(),
        Ok(Some(trigger)) if trigger.is_enabled() => {}
        Ok(Some(_)) => {
            return respond::error(StatusCode::CONFLICT, "the delivery's trigger is disabled");
        }
        Ok(None) => return trigger_removed(),
        Err(error) => return respond::store_failure("deliveries API", &error),
    }
    let mut request = Request::post(format!(
        "{DEFAULT_PREFIX}/{}/{}",
        record.source.as_str(),
        record.trigger_id
    ));
    for (name, value) in &record.headers {
        let Ok(name) = HeaderName::try_from(name.as_str()) else {
            continue;
        };
        if value == REDACTED || NOT_REPEATED.contains(&name) {
            continue;
        }
        request = request.header(name, value.as_str());
    }
    let request = match request.body(http_body_util::Full::new(body)) {
        Ok(request) => request,
        Err(error) => {
            // The recorded headers were checked when they were kept: this is a bug, not input.
            tracing::error!(%error, redelivery_of = %record.id, "could not rebuild the recorded request");
            return respond::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let response = api.triggers.deliver_as(Arc::clone(&key), request).await;
    let response = match response {
        Ok(response) => response,
        Err(never) => match never {},
    };
    tracing::info!(redelivery_of = %record.id, key_id = key.id(), status = response.status().as_u16(), "redelivered");
    response.map(Body::new)
}

fn trigger_removed() -> Response {
    respond::error(StatusCode::CONFLICT, "the delivery's trigger was removed")
}

/// The record `id`, when `key` may see it; otherwise the answer to give.
async fn visible<S: Backend>(
    api: &Api<S>,
    key: &ApiKeyRecord,
    id: &str,
) -> Result<LoggedDelivery, Response> {
    let Ok(id) = Uuid::try_parse(id) else {
        return Err(not_found());
    };
    match api.store.delivery(id).await {
        Ok(Some(record))
            if *record.tenant == *key.tenant() && key.scope().includes(record.trigger_id) =>
        {
            Ok(record)
        }
        Ok(_) => Err(not_found()),
        Err(error) => Err(respond::store_failure("deliveries API", &error)),
    }
}

/// The answer for a record that is unknown or not the key's to see.
fn not_found() -> Response {
    respond::error(StatusCode::NOT_FOUND, "delivery not found")
}
