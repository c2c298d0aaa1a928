//! The executions API: list, show, cancel and replay, each with the bearer keys of the trigger
//! endpoint. A key sees only its tenant's executions, and a key scoped to some triggers only
//! those triggers' ones; any other execution looks exactly like an unknown one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agent_trigger::queue::{ExecutionQuery, ExecutionRecord, ExecutionStatus};
use agent_trigger::{ApiKeyRecord, ExecutionId, KeyDigest, KeyScope, bearer_token};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::http::{Api, Backend, json_response};

/// A page of the list holds this many executions unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 20;
/// And at most this many.
const MAX_PAGE: usize = 100;
/// How long a cancel waits for the worker to end a running execution before it answers.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// One execution as the API shows it; `output` only when one is asked for by id.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionBody {
    execution_id: String,
    status: &'static str,
    source: &'static str,
    trigger_id: String,
    action: Option<String>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    exit_code: Option<i32>,
    attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
}

impl ExecutionBody {
    fn new(record: ExecutionRecord, with_output: bool) -> Self {
        let output = with_output.then(|| String::from_utf8_lossy(&record.output_tail).into_owned());
        ExecutionBody {
            execution_id: record.id.to_string(),
            status: record.status.as_str(),
            source: record.source.as_str(),
            trigger_id: record.trigger_id.to_string(),
            action: record.action,
            created_at: rfc3339(record.created_at),
            started_at: record.started_at.map(rfc3339),
            finished_at: record.finished_at.map(rfc3339),
            exit_code: record.exit_code,
            attempt: record.attempt,
            output,
        }
    }
}

/// `GET /api/executions?triggerId=&status=&limit=&cursor=`: the key's executions, newest
/// first; `nextCursor` fetches the page after.
pub async fn list<S: Backend>(
    State(api): State<Api<S>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let key = match authorized(&api.store, &headers).await {
        Ok(key) => key,
        Err(answer) => return answer,
    };
    let params = match ListParams::parse(query.as_deref().unwrap_or("")) {
        Ok(params) => params,
        Err(message) => {
            return json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }));
        }
    };
    let mut query = ExecutionQuery::new(key.tenant(), params.limit);
    query.status = params.status;
    query.before = params.cursor.map(ExecutionId::from);
    query.triggers = match (key.scope(), params.trigger_id) {
        (KeyScope::Tenant, None) => None,
        (scope, Some(trigger)) => Some(if scope.includes(trigger) {
            vec![trigger]
        } else {
            Vec::new()
        }),
        (KeyScope::Triggers(ids), None) => Some(ids.clone()),
        // A scope this server does not know grants nothing.
        (_, None) => Some(Vec::new()),
    };
    match api.store.list(&query).await {
        Ok(records) => {
            let next = (records.len() == params.limit)
                .then(|| records.last().map(|record| record.id.to_string()))
                .flatten();
            let executions: Vec<_> = records
                .into_iter()
                .map(|record| ExecutionBody::new(record, false))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({ "executions": executions, "nextCursor": next }),
            )
        }
        Err(error) => internal(&error),
    }
}

/// `GET /api/executions/{executionId}`: one execution, with its attempt and kept output.
pub async fn show<S: Backend>(
    State(api): State<Api<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match visible(&api, &headers, &id).await {
        Ok(record) => json_response(StatusCode::OK, &ExecutionBody::new(record, true)),
        Err(answer) => answer,
    }
}

/// `POST /api/executions/{executionId}/cancel`: a queued execution is cancelled at once; a
/// running one's command is ended, with everything it started, by the worker running it. An
/// execution that already ended otherwise answers `409`; one already cancelled answers as it is.
pub async fn cancel<S: Backend>(
    State(api): State<Api<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let record = match visible(&api, &headers, &id).await {
        Ok(record) => record,
        Err(answer) => return answer,
    };
    let status = match api.store.cancel(&record.id).await {
        Ok(Some(status)) => status,
        Ok(None) => return not_found(),
        Err(error) => return internal(&error),
    };
    match status {
        ExecutionStatus::Cancelled => {}
        ExecutionStatus::Running => {
            if let Err(answer) = end_running(&api, &record.id).await {
                return answer;
            }
        }
        _ => {
            return json_response(
                StatusCode::CONFLICT,
                &json!({"error": format!("the execution already ended ({status})")}),
            );
        }
    }
    match api.store.execution(&record.id).await {
        Ok(Some(record)) => json_response(StatusCode::OK, &ExecutionBody::new(record, true)),
        Ok(None) => not_found(),
        Err(error) => internal(&error),
    }
}

/// Signals the worker running `id`, then waits (boundedly) until it has recorded the end.
async fn end_running<S: Backend>(api: &Api<S>, id: &ExecutionId) -> Result<(), Response> {
    let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
    let mut signalled = false;
    while tokio::time::Instant::now() < deadline {
        // A worker registers an execution just after claiming it: try again until it has.
        signalled = signalled || api.running.cancel(id);
        match api.store.execution(id).await {
            Ok(Some(record)) if record.status != ExecutionStatus::Running => return Ok(()),
            Ok(_) => {}
            Err(error) => return Err(internal(&error)),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"error": "the execution did not end in time; try again"}),
    ))
}

/// `POST /api/executions/{executionId}/replay`: a new execution with the same input.
pub async fn replay<S: Backend>(
    State(api): State<Api<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let record = match visible(&api, &headers, &id).await {
        Ok(record) => record,
        Err(answer) => return answer,
    };
    match api.store.replay(&record.id).await {
        Ok(Some(copy)) => json_response(
            StatusCode::OK,
            &json!({"executionId": copy.to_string(), "replayOf": record.id.to_string()}),
        ),
        Ok(None) => not_found(),
        Err(error) => internal(&error),
    }
}

/// The execution `id`, when the request's key may see it; otherwise the answer to give.
async fn visible<S: Backend>(
    api: &Api<S>,
    headers: &HeaderMap,
    id: &str,
) -> Result<ExecutionRecord, Response> {
    let key = authorized(&api.store, headers).await?;
    let Ok(id) = Uuid::try_parse(id) else {
        return Err(not_found());
    };
    match api.store.execution(&ExecutionId::from(id)).await {
        Ok(Some(record))
            if record.tenant == key.tenant() && key.scope().includes(record.trigger_id) =>
        {
            Ok(record)
        }
        Ok(_) => Err(not_found()),
        Err(error) => Err(internal(&error)),
    }
}

/// The request's API key, when it has a usable one; otherwise the `401`.
async fn authorized<S: Backend>(
    store: &S,
    headers: &HeaderMap,
) -> Result<Arc<ApiKeyRecord>, Response> {
    let Some(token) = bearer_token(headers) else {
        return Err(unauthorized(
            "Bearer",
            "missing credentials: send Authorization: Bearer <api key>",
        ));
    };
    match store.api_key(KeyDigest::of_token(token)).await {
        Ok(Some(key)) if key.is_usable(SystemTime::now()) => Ok(key),
        Ok(_) => Err(unauthorized(
            r#"Bearer error="invalid_token""#,
            "invalid API key",
        )),
        Err(error) => Err(internal(&error)),
    }
}

/// The list's query string, checked.
struct ListParams {
    trigger_id: Option<Uuid>,
    status: Option<ExecutionStatus>,
    limit: usize,
    cursor: Option<Uuid>,
}

impl ListParams {
    fn parse(query: &str) -> Result<Self, String> {
        let mut params = ListParams {
            trigger_id: None,
            status: None,
            limit: DEFAULT_PAGE,
            cursor: None,
        };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "triggerId" => {
                    params.trigger_id = Some(
                        Uuid::try_parse(&value)
                            .map_err(|_| "triggerId must be a trigger id (a UUID)".to_owned())?,
                    );
                }
                "status" => {
                    params.status = Some(
                        value
                            .parse()
                            .map_err(|_| format!("status {value:?} is not an execution status"))?,
                    );
                }
                "limit" => {
                    params.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_PAGE).contains(limit))
                        .ok_or_else(|| format!("limit must be from 1 to {MAX_PAGE}"))?;
                }
                "cursor" => {
                    params.cursor = Some(
                        Uuid::try_parse(&value)
                            .map_err(|_| "cursor must be a nextCursor from a page".to_owned())?,
                    );
                }
                // Unknown parameters are ignored, as HTTP APIs usually do.
                _ => {}
            }
        }
        Ok(params)
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": "execution not found"}),
    )
}

fn unauthorized(challenge: &'static str, message: &str) -> Response {
    let mut response = json_response(StatusCode::UNAUTHORIZED, &json!({ "error": message }));
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

fn internal(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "executions API: the database failed");
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({"error": "internal error"}),
    )
}
