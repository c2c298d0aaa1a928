//! The executions API: list, show, cancel and replay, with the bearer keys of the trigger
//! endpoint. A key sees only its tenant's executions, and a key scoped to some triggers only
//! those triggers' ones; any other execution looks exactly like an unknown one.

use std::time::{Duration, SystemTime};

use agent_trigger::queue::{ExecutionQuery, ExecutionRecord, ExecutionStatus, ReplayOutcome};
use agent_trigger::{ApiKeyRecord, ExecutionId, KeyScope, Right};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::extract::{ApiQuery, Authorized, OperateOne, ReadList, ReadOne, Resource};
use super::respond::{self, json_response};
use super::state::Api;
use crate::store::Backend;

/// How long a cancel waits for the worker to end a running execution before it answers.
const CANCEL_WAIT: Duration = Duration::from_secs(10);
/// How often a cancel reads an execution that another server runs, until it has ended.
const REMOTE_CANCEL_POLL: Duration = Duration::from_millis(200);

/// One execution, for [`ReadOne`] and [`OperateOne`].
pub struct Execution;

impl Resource for Execution {
    fn not_found() -> Response {
        not_found()
    }
}

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
    replay_of: Option<String>,
    replayed_by: Option<String>,
    cancelled_by: Option<String>,
    concurrency_key: Option<String>,
    deliveries: u32,
    replaced_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    /// The trigger's rendered prompt (null without one), with the output.
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<Option<String>>,
}

impl ExecutionBody {
    fn new(record: ExecutionRecord, with_output: bool) -> Self {
        let output = with_output.then(|| String::from_utf8_lossy(&record.output_tail).into_owned());
        let prompt = with_output.then_some(record.prompt);
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
            replay_of: record.replay_of.map(|id| id.to_string()),
            replayed_by: record.replayed_by,
            cancelled_by: record.cancelled_by,
            concurrency_key: record.concurrency_key,
            deliveries: record.deliveries,
            replaced_by: record.replaced_by.map(|id| id.to_string()),
            output,
            prompt,
        }
    }
}

/// The list's query string. Unknown parameters are ignored, as HTTP APIs usually do.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    trigger_id: Option<Uuid>,
    #[serde(default, deserialize_with = "status")]
    status: Option<ExecutionStatus>,
    limit: Option<usize>,
    cursor: Option<Uuid>,
    concurrency_key: Option<String>,
}

/// An execution status by its API name (`queued`, `running`, …).
fn status<'de, D: Deserializer<'de>>(names: D) -> Result<Option<ExecutionStatus>, D::Error> {
    let name = String::deserialize(names)?;
    name.parse()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{name:?} is not an execution status")))
}

/// `GET /api/executions?triggerId=&status=&concurrencyKey=&limit=&cursor=`: the key's executions, newest
/// first; `nextCursor` fetches the page after.
pub async fn list<S: Backend>(
    State(api): State<Api<S>>,
    Authorized(key, _): Authorized<ReadList>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Response {
    let limit = match respond::page_limit(params.limit) {
        Ok(limit) => limit,
        Err(refused) => return *refused,
    };
    let mut query = ExecutionQuery::new(key.tenant(), limit);
    query.status = params.status;
    query.concurrency_key = params.concurrency_key;
    query.before = params.cursor.map(ExecutionId::from);
    query.triggers = visible_triggers(&key, params.trigger_id);
    match api.store.list(&query).await {
        Ok(records) => {
            let last = records.last().map(|record| record.id.to_string());
            let executions: Vec<_> = records
                .into_iter()
                .map(|record| ExecutionBody::new(record, false))
                .collect();
            respond::page("executions", &executions, limit, last)
        }
        Err(error) => respond::store_failure("executions API", &error),
    }
}

/// The triggers a list may show: `None` for all of the tenant's.
pub fn visible_triggers(key: &ApiKeyRecord, asked: Option<Uuid>) -> Option<Vec<Uuid>> {
    match (key.scope(), asked) {
        (KeyScope::Tenant, None) => None,
        (scope, Some(trigger)) => Some(if scope.includes(trigger) {
            vec![trigger]
        } else {
            Vec::new()
        }),
        (KeyScope::Triggers(ids), None) => Some(ids.clone()),
        // A scope this server does not know grants nothing.
        (_, None) => Some(Vec::new()),
    }
}

/// `GET /api/executions/{executionId}`: one execution, with its attempt and kept output.
pub async fn show<S: Backend>(
    State(api): State<Api<S>>,
    Authorized(key, _): Authorized<ReadOne<Execution>>,
    Path(id): Path<String>,
) -> Response {
    match visible(&api, &key, &id).await {
        Ok(record) => json_response(StatusCode::OK, &ExecutionBody::new(record, true)),
        Err(answer) => answer,
    }
}

/// `POST /api/executions/{executionId}/cancel`: a queued execution is cancelled at once; a
/// running one's command is ended, with everything it started, by the worker running it. An
/// execution that already ended otherwise answers `409`; one already cancelled answers as it is.
/// The answer carries the output only for a key that may also read.
pub async fn cancel<S: Backend>(
    State(api): State<Api<S>>,
    Authorized(key, _): Authorized<OperateOne<Execution>>,
    Path(id): Path<String>,
) -> Response {
    let record = match visible(&api, &key, &id).await {
        Ok(record) => record,
        Err(answer) => return answer,
    };
    let status = match api.store.cancel(&record.id, key.id()).await {
        Ok(Some(status)) => {
            tracing::info!(execution_id = %record.id, key_id = key.id(), %status, "cancel asked");
            status
        }
        Ok(None) => return not_found(),
        Err(error) => return respond::store_failure("executions API", &error),
    };
    match status {
        ExecutionStatus::Cancelled => {}
        ExecutionStatus::Running => {
            if let Err(answer) = end_running(&api, &record.id).await {
                return answer;
            }
        }
        _ => {
            return respond::error(
                StatusCode::CONFLICT,
                format!("the execution already ended ({status})"),
            );
        }
    }
    match api.store.execution(&record.id).await {
        Ok(Some(record)) => json_response(
            StatusCode::OK,
            &ExecutionBody::new(record, key.can(Right::Read)),
        ),
        Ok(None) => not_found(),
        Err(error) => respond::store_failure("executions API", &error),
    }
}

/// Signals the worker running `id`, then waits (boundedly) until the end is recorded: for a
/// worker of this server, until it says so; for one of another server sharing the database,
/// by reading the execution again every [`REMOTE_CANCEL_POLL`].
async fn end_running<S: Backend>(api: &Api<S>, id: &ExecutionId) -> Result<(), Response> {
    let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
    loop {
        // A worker registers an execution just after claiming it: try again until it has.
        match api.running.cancel(id) {
            Some(mut recorded) => {
                let _ = tokio::time::timeout_at(deadline, recorded.changed()).await;
            }
            None => tokio::time::sleep(REMOTE_CANCEL_POLL).await,
        }
        match api.store.execution(id).await {
            Ok(Some(record)) if record.status != ExecutionStatus::Running => return Ok(()),
            Ok(_) => {}
            Err(error) => return Err(respond::store_failure("executions API", &error)),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(respond::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the execution did not end in time; try again",
            ));
        }
    }
}

/// `POST /api/executions/{executionId}/replay`: a new execution with the same input, recorded
/// with the key that asked; `409` when the execution's trigger is disabled or was removed.
pub async fn replay<S: Backend>(
    State(api): State<Api<S>>,
    Authorized(key, _): Authorized<OperateOne<Execution>>,
    Path(id): Path<String>,
) -> Response {
    let record = match visible(&api, &key, &id).await {
        Ok(record) => record,
        Err(answer) => return answer,
    };
    // A replay is a delivery of the operator's key: it counts against the trigger's rate.
    match api.store.trigger(record.trigger_id).await {
        Ok(Some(trigger)) if trigger.is_enabled() => {
            if let Err(wait) = trigger.admit() {
                return respond::too_many_requests(wait);
            }
        }
        Ok(Some(_)) => return trigger_disabled(),
        Ok(None) => return trigger_removed(),
        Err(error) => return respond::store_failure("executions API", &error),
    }
    match api.store.replay(&record.id, key.id()).await {
        Ok(ReplayOutcome::Started(copy)) => {
            tracing::info!(execution_id = %copy, replay_of = %record.id, key_id = key.id(), "replay queued");
            json_response(
                StatusCode::OK,
                &json!({"executionId": copy.to_string(), "replayOf": record.id.to_string()}),
            )
        }
        Ok(ReplayOutcome::NotFound) => not_found(),
        Ok(ReplayOutcome::TriggerDisabled) => trigger_disabled(),
        Ok(ReplayOutcome::TriggerRemoved) => trigger_removed(),
        Ok(_) => respond::error(StatusCode::CONFLICT, "the execution cannot be replayed"),
        Err(error) => respond::store_failure("executions API", &error),
    }
}

fn trigger_disabled() -> Response {
    respond::error(StatusCode::CONFLICT, "the execution's trigger is disabled")
}

fn trigger_removed() -> Response {
    respond::error(StatusCode::CONFLICT, "the execution's trigger was removed")
}

/// The execution `id`, when `key` may see it; otherwise the answer to give.
async fn visible<S: Backend>(
    api: &Api<S>,
    key: &ApiKeyRecord,
    id: &str,
) -> Result<ExecutionRecord, Response> {
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
        Err(error) => Err(respond::store_failure("executions API", &error)),
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// The answer for an execution that is unknown or not the key's to see.
pub fn not_found() -> Response {
    respond::error(StatusCode::NOT_FOUND, "execution not found")
}
