//! Redelivery recognition against a model: arbitrary sequences of Jira deliveries, signed or
//! with the bearer key, with or without a delivery id, over a few bodies, through the service
//! and the in-memory sink. Each answer must be what the model of §5 says: a new execution, or
//! the original id of the first remembered key (the delivery id in its namespace, then the
//! signature), and never a replay across namespaces.
#![no_main]

use std::collections::HashMap;

use agent_trigger::memory::{ChannelSink, MemoryKeyStore};
use agent_trigger::{ApiKey, ApiKeyRecord, Source, Trigger, TriggerService};
use agent_trigger_fuzz as common;
use arbitrary::Arbitrary;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

#[derive(Arbitrary, Debug)]
struct Step {
    signed: bool,
    delivery_id: Option<u8>,
    body: u8,
}

const BODIES: [&str; 3] = [
    r#"{"webhookEvent":"jira:issue_created"}"#,
    r#"{"webhookEvent":"jira:issue_updated"}"#,
    r#"{"webhookEvent":"jira:issue_created","n":1}"#,
];

/// What the model remembers: each key and the execution it belongs to.
#[derive(Default)]
struct Model(HashMap<String, String>);

impl Model {
    fn keys(step: &Step) -> Vec<String> {
        let namespace = if step.signed { "signed" } else { "key" };
        let id = step.delivery_id.map(|id| format!("{namespace}:{}", id % 4));
        let signature = step.signed.then(|| format!("signature:{}", step.body % 3));
        id.into_iter().chain(signature).collect()
    }
}

fuzz_target!(|steps: Vec<Step>| {
    if steps.len() > 64 {
        return;
    }
    let key = ApiKey::from_plaintext(common::KEY);
    let trigger_id = common::trigger_id(Source::Jira);
    let store = MemoryKeyStore::new()
        .with_key(key.digest(), ApiKeyRecord::new("fuzz", "fuzz"))
        .with_trigger(Trigger::new(trigger_id, "fuzz", Source::Jira).with_secret(common::secret(Source::Jira)));
    let (sink, mut executions) = ChannelSink::new(128);
    let service = TriggerService::new(sink, store);
    let mut model = Model::default();
    for step in &steps {
        let body = BODIES[step.body as usize % 3];
        let mut request = Request::post(format!("/api/trigger/jira/{trigger_id}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        if step.signed {
            let headers =
                agent_trigger::signature::sign(Source::Jira, &common::secret(Source::Jira), body.as_bytes(), common::now(), "")
                    .unwrap();
            request.headers_mut().extend(headers);
        } else {
            request.headers_mut().insert("authorization", format!("Bearer {}", common::KEY).parse().unwrap());
        }
        if let Some(id) = step.delivery_id {
            request
                .headers_mut()
                .insert("x-atlassian-webhook-identifier", (id % 4).to_string().parse().unwrap());
        }
        let response = common::runtime().block_on(service.clone().oneshot(request)).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let replayed = response.headers().contains_key("idempotent-replayed");
        let body = common::runtime().block_on(response.into_body().collect()).unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let id = json["executionId"].as_str().unwrap().to_owned();

        let keys = Model::keys(step);
        match keys.iter().find_map(|key| model.0.get(key)) {
            Some(original) => {
                assert!(replayed, "{step:?} should replay {original}");
                assert_eq!(&id, original, "{step:?}");
            }
            None => {
                assert!(!replayed, "{step:?} replayed {id} though none of {keys:?} was seen");
                assert_eq!(executions.try_recv().unwrap().id.to_string(), id);
                for key in keys {
                    model.0.insert(key, id.clone());
                }
            }
        }
    }
    assert!(executions.try_recv().is_err(), "an execution started that no answer named");
});
