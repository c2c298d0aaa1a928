//! A trigger's rules (filter, input, prompt) built from arbitrary text, run on arbitrary bodies
//! through the whole service. Nothing panics; every answer keeps the contract's shape; a rule
//! that fails filters the delivery out with its reason; what reaches the sink is JSON no larger
//! than the body limit, with a prompt within its bound and free of control characters.
#![no_main]

use agent_trigger::memory::MemoryKeyStore;
use agent_trigger::rules::{Filter, InputExpression, MAX_PROMPT_LEN, PromptTemplate};
use agent_trigger::{
    ApiKey, ApiKeyRecord, Delivery, ExecutionId, ExecutionSink, Outcome, SinkError, Source, Trigger, TriggerService,
};
use agent_trigger_fuzz as common;
use arbitrary::Arbitrary;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

const BODY_LIMIT: usize = 64 * 1024;

/// Pieces a rule is assembled from, so that the fuzzer reaches well-formed rules quickly; the
/// raw text alternative reaches the parsers' error paths.
const FRAGMENTS: [&str; 24] = [
    "body", "action", "source", "deliveryId", "headers", ".issue", ".key", "[0]", "['a']", " == ", " + ",
    " && ", " || ", "!", "has(", ")", "size(", ".exists(x, ", ".map(x, x", "x", "\"s\"", "1", "[1, 2]",
    "{\"k\": ",
];

#[derive(Arbitrary, Debug)]
enum Rule {
    Raw(String),
    Pieces(Vec<u8>),
}

impl Rule {
    fn text(&self) -> String {
        match self {
            Rule::Raw(text) => text.clone(),
            Rule::Pieces(pieces) => pieces.iter().map(|piece| FRAGMENTS[*piece as usize % FRAGMENTS.len()]).collect(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    filter: Option<Rule>,
    input: Option<Rule>,
    /// A template: raw text, or `{{ … }}` around the rule's text.
    prompt: Option<(bool, Rule)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Accepts everything, checking what the rules hand on.
struct Checking;

impl ExecutionSink for Checking {
    async fn submit(&self, delivery: Delivery) -> Result<Outcome, SinkError> {
        assert!(delivery.input.len() <= BODY_LIMIT, "input of {} bytes", delivery.input.len());
        let mut reader = serde_json::Deserializer::from_slice(&delivery.input);
        reader.disable_recursion_limit();
        assert!(
            serde::de::Deserialize::deserialize(&mut reader).and_then(|serde::de::IgnoredAny| reader.end()).is_ok(),
            "input is not JSON"
        );
        if let Some(prompt) = &delivery.prompt {
            assert!(prompt.len() <= MAX_PROMPT_LEN, "prompt of {} bytes", prompt.len());
            assert!(
                !prompt.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
                "a control character in the prompt"
            );
        }
        Ok(Outcome::Started(ExecutionId::from(Uuid::from_u128(1))))
    }
}

fuzz_target!(|input: Input| {
    let trigger_id = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00ff);
    let mut trigger = Trigger::new(trigger_id, "fuzz", Source::Jira);
    if let Some(Ok(filter)) = input.filter.as_ref().map(|rule| Filter::parse(&rule.text())) {
        trigger = trigger.with_filter(filter);
    }
    if let Some(Ok(expression)) = input.input.as_ref().map(|rule| InputExpression::parse(&rule.text())) {
        trigger = trigger.with_input(expression);
    }
    if let Some((wrap, rule)) = &input.prompt {
        let text = if *wrap { format!("{{{{ {} }}}}", rule.text()) } else { rule.text() };
        if let Ok(template) = PromptTemplate::parse(&text) {
            trigger = trigger.with_prompt(template);
        }
    }
    let key = ApiKey::from_plaintext(common::KEY);
    let store = MemoryKeyStore::new()
        .with_key(key.digest(), ApiKeyRecord::new("fuzz", "fuzz"))
        .with_trigger(trigger);
    let service = TriggerService::builder(Checking, store).body_limit(BODY_LIMIT).build();

    let mut request = Request::builder()
        .method("POST")
        .uri(format!("/api/trigger/jira/{trigger_id}"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", common::KEY))
        .body(Full::new(Bytes::from(input.body)))
        .unwrap();
    for (name, value) in &input.headers {
        if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(name.as_str()), http::HeaderValue::try_from(value.as_str())) {
            request.headers_mut().append(name, value);
        }
    }
    let (status, json) = common::send_to(&service, request);
    if status == 200 && json["executionId"] == "skipped" {
        let message = json["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "a skip without a reason: {json}");
    }
});
