//! The headers of an execution message, and reading them back in a consumer.
//!
//! Values are percent-encoded where they could hold bytes a header cannot (control
//! characters, `%`, non-ASCII): a delivery id or action from a body field may hold a newline.
//!
//! ```
//! use agent_trigger::nats::headers;
//! use agent_trigger::{Caller, Delivery, ExecutionId, Source};
//! use bytes::Bytes;
//! use uuid::Uuid;
//!
//! let mut delivery = Delivery::new(
//!     Source::Jira,
//!     Uuid::now_v7(),
//!     "acme".into(),
//!     Caller::Signature { secret_id: "2026-11".into() },
//!     Bytes::from_static(br#"{"webhookEvent":"jira:issue_created"}"#),
//! );
//! delivery.action = Some("jira:issue_created".into());
//! let id = ExecutionId::new_v7();
//! let message = headers::of(&delivery, &id);
//! // A consumer gets the execution back from the headers and the payload.
//! let (read_id, read) = headers::decode(&message, delivery.input.clone()).unwrap();
//! assert_eq!(read_id, id);
//! assert_eq!(read.action.as_deref(), Some("jira:issue_created"));
//! assert_eq!(read.caller, delivery.caller);
//! ```

use async_nats::HeaderMap;
use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use uuid::Uuid;

use std::time::Duration;

use crate::concurrency::{Debounce, Subject};
use crate::{Caller, Delivery, ExecutionId, SinkError};

/// The execution's id (also in `Nats-Msg-Id`).
pub const EXECUTION_ID: &str = "Agent-Trigger-Execution-Id";
/// The sender, as the path names it (`jira`, `slack`, …).
pub const SOURCE: &str = "Agent-Trigger-Source";
/// The trigger's id.
pub const TRIGGER_ID: &str = "Agent-Trigger-Trigger-Id";
/// The trigger's tenant.
pub const TENANT: &str = "Agent-Trigger-Tenant";
/// How the caller was authenticated, `key` or `signature`.
pub const CALLER_KIND: &str = "Agent-Trigger-Caller-Kind";
/// The key's id, or the id of the secret that verified the signature.
pub const CALLER_ID: &str = "Agent-Trigger-Caller-Id";
/// The key's tenant (keys only).
pub const CALLER_TENANT: &str = "Agent-Trigger-Caller-Tenant";
/// The sender's delivery id, when there is one.
pub const DELIVERY_ID: &str = "Agent-Trigger-Delivery-Id";
/// The delivery's action, when there is one.
pub const ACTION: &str = "Agent-Trigger-Action";
/// The prompt the trigger's template rendered, when it has one (percent-encoded, as every
/// value: its newlines and tabs included). At most
/// [`MAX_PROMPT_LEN`](crate::rules::MAX_PROMPT_LEN) bytes before encoding; count it in the
/// stream's maximum message size.
pub const PROMPT: &str = "Agent-Trigger-Prompt";
/// The delivery's subject, when its trigger has a
/// [`Concurrency`](crate::concurrency::Concurrency): the key's value. The sink does not enforce
/// the subject's mode (see [`JetStreamSink`](super::JetStreamSink)); a consumer that runs one
/// execution per key at a time reads it here.
pub const CONCURRENCY_KEY: &str = "Agent-Trigger-Concurrency-Key";
/// What the trigger says a delivery for a busy key does: `queue`, `skip` or `replace`.
pub const ON_BUSY: &str = "Agent-Trigger-On-Busy";
/// The trigger's debounce, `<quiet ms>/<max ms>`, when it has one.
pub const DEBOUNCE: &str = "Agent-Trigger-Debounce";

/// What is encoded in a header value.
const ENCODED: &AsciiSet = &CONTROLS.add(b'%');

/// The headers of the message that carries `delivery` as execution `id`.
pub fn of(delivery: &Delivery, id: &ExecutionId) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let id = id.to_string();
    headers.insert("Nats-Msg-Id", id.as_str());
    headers.insert(EXECUTION_ID, id.as_str());
    headers.insert(SOURCE, delivery.source.as_str());
    headers.insert(TRIGGER_ID, delivery.trigger_id.to_string().as_str());
    headers.insert(TENANT, encode(&delivery.tenant).as_str());
    let (kind, caller_id, caller_tenant) = delivery.caller.columns();
    headers.insert(CALLER_KIND, kind);
    headers.insert(CALLER_ID, encode(caller_id).as_str());
    if let Some(tenant) = caller_tenant {
        headers.insert(CALLER_TENANT, encode(tenant).as_str());
    }
    if let Some(delivery_id) = &delivery.delivery_id {
        headers.insert(DELIVERY_ID, encode(delivery_id).as_str());
    }
    if let Some(action) = &delivery.action {
        headers.insert(ACTION, encode(action).as_str());
    }
    if let Some(prompt) = &delivery.prompt {
        headers.insert(PROMPT, encode(prompt).as_str());
    }
    if let Some(subject) = &delivery.subject {
        headers.insert(CONCURRENCY_KEY, encode(&subject.key).as_str());
        headers.insert(ON_BUSY, subject.on_busy.as_str());
        if let Some(debounce) = subject.debounce {
            let debounce = format!(
                "{}/{}",
                debounce.quiet().as_millis(),
                debounce.max().as_millis()
            );
            headers.insert(DEBOUNCE, debounce.as_str());
        }
    }
    headers
}

/// The execution id and the delivery a message carries (its headers and payload), for a
/// consumer that runs it.
pub fn decode(headers: &HeaderMap, payload: Bytes) -> Result<(ExecutionId, Delivery), SinkError> {
    let id = execution_id(headers)?;
    let source = required(headers, SOURCE)?
        .parse()
        .map_err(|_| SinkError::internal("an execution message with an unknown source"))?;
    let trigger = Uuid::try_parse(&required(headers, TRIGGER_ID)?)
        .map_err(|_| SinkError::internal("an execution message with a bad trigger id"))?;
    let caller = Caller::from_columns(
        &required(headers, CALLER_KIND)?,
        required(headers, CALLER_ID)?,
        optional(headers, CALLER_TENANT),
    );
    let mut delivery = Delivery::new(
        source,
        trigger,
        required(headers, TENANT)?.into(),
        caller,
        payload,
    );
    delivery.delivery_id = optional(headers, DELIVERY_ID).map(String::into_boxed_str);
    delivery.action = optional(headers, ACTION);
    delivery.prompt = optional(headers, PROMPT);
    if let Some(key) = optional(headers, CONCURRENCY_KEY) {
        let on_busy = optional(headers, ON_BUSY)
            .and_then(|name| name.parse().ok())
            .unwrap_or_default();
        let mut subject = Subject::new(key, on_busy);
        if let Some(debounce) = optional(headers, DEBOUNCE).and_then(|text| {
            let (quiet, max) = text.split_once('/')?;
            let millis = |text: &str| text.parse().ok().map(Duration::from_millis);
            Debounce::new(millis(quiet)?, millis(max)?)
        }) {
            subject = subject.with_debounce(debounce);
        }
        delivery.subject = Some(subject);
    }
    Ok((id, delivery))
}

/// The execution id of a message the sink published.
pub(crate) fn execution_id(headers: &HeaderMap) -> Result<ExecutionId, SinkError> {
    required(headers, EXECUTION_ID).map(ExecutionId::from)
}

fn encode(value: &str) -> String {
    utf8_percent_encode(value, ENCODED).to_string()
}

fn optional(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|value| {
        percent_decode_str(value.as_str())
            .decode_utf8_lossy()
            .into_owned()
    })
}

fn required(headers: &HeaderMap, name: &str) -> Result<String, SinkError> {
    optional(headers, name)
        .ok_or_else(|| SinkError::internal(format!("an execution message without {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::concurrency::OnBusy;

    #[test]
    fn values_that_a_header_cannot_hold_travel_encoded() {
        let mut delivery = Delivery::new(
            crate::Source::Webhook,
            Uuid::now_v7(),
            "ac%me".into(),
            Caller::ApiKey {
                key_id: "ci".into(),
                tenant: "ac%me".into(),
            },
            Bytes::from_static(b"{}"),
        );
        delivery.delivery_id = Some("line\r\nInjected: yes".into());
        delivery.action = Some("état\tété".into());
        delivery.prompt = Some("Triage:\n\t100% of it\r\n".into());
        let debounce = Debounce::new(Duration::from_secs(30), Duration::from_secs(300)).unwrap();
        delivery.subject = Some(Subject::new("PR\n7", OnBusy::Replace).with_debounce(debounce));
        let id = ExecutionId::new_v7();
        let headers = of(&delivery, &id);
        for (_, values) in headers.iter() {
            for value in values {
                assert!(!value.as_str().contains(['\r', '\n', '\t']), "{value:?}");
            }
        }
        assert!(headers.get("Injected").is_none());
        let (read_id, read) = decode(&headers, Bytes::from_static(b"{}")).unwrap();
        assert_eq!(read_id, id);
        assert_eq!(read.delivery_id.as_deref(), Some("line\r\nInjected: yes"));
        assert_eq!(read.action.as_deref(), Some("état\tété"));
        assert_eq!(read.prompt.as_deref(), Some("Triage:\n\t100% of it\r\n"));
        assert_eq!(&*read.tenant, "ac%me");
        assert_eq!(read.caller, delivery.caller);
        assert_eq!(read.subject, delivery.subject);
    }
}
