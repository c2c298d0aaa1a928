//! The triggers API: the key's triggers (its tenant's, within its scope), each with how many
//! of its deliveries had each outcome over the last day, counted from the deliveries log.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::executions::visible_triggers;
use super::extract::{Authorized, ReadList};
use super::respond::{self, json_response};
use super::state::Api;
use crate::store::Backend;

/// The counts cover this much of the past.
const COUNTED: Duration = Duration::from_secs(24 * 60 * 60);

/// One trigger as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TriggerBody {
    id: String,
    source: &'static str,
    enabled: bool,
    /// Deliveries by outcome over the last 24 hours: approximate where the log was pruned or
    /// dropped records.
    counts: BTreeMap<String, u64>,
}

/// `GET /api/triggers`: the key's triggers, by id, with their counts by outcome.
pub async fn list<S: Backend>(
    State(api): State<Api<S>>,
    Authorized(key, _): Authorized<ReadList>,
) -> Response {
    let scope = visible_triggers(&key, None);
    let mut triggers: BTreeMap<Uuid, TriggerBody> = api
        .store
        .all_triggers()
        .into_iter()
        .filter(|trigger| trigger.tenant() == key.tenant() && key.scope().includes(trigger.id()))
        .map(|trigger| {
            let body = TriggerBody {
                id: trigger.id().to_string(),
                source: trigger.source().as_str(),
                enabled: trigger.is_enabled(),
                counts: BTreeMap::new(),
            };
            (trigger.id(), body)
        })
        .collect();
    let since = SystemTime::now()
        .checked_sub(COUNTED)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    match api.store.outcome_counts(key.tenant(), scope, since).await {
        Ok(counts) => {
            for count in counts {
                if let Some(trigger) = triggers.get_mut(&count.trigger_id) {
                    trigger.counts.insert(count.outcome, count.count);
                }
            }
        }
        Err(error) => return respond::store_failure("triggers API", &error),
    }
    let triggers: Vec<_> = triggers.into_values().collect();
    json_response(StatusCode::OK, &json!({ "triggers": triggers }))
}
