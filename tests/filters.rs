//! §9 through the library: a trigger's filter, the agent's input and its prompt, with real
//! requests through the tower `Service`.

pub mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_trigger::memory::{ChannelSink, Execution, MemoryKeyStore};
use agent_trigger::rules::{Filter, InputExpression, MAX_PROMPT_LEN, PromptTemplate};
use agent_trigger::{Source, Trigger, TriggerService};
use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

/// A Jira issue as Jira sends it, trimmed.
const ISSUE: &str = r#"{"webhookEvent":"jira:issue_created","issue":{"key":"SEC-7","fields":{"summary":"Login <b>broken</b> & \"slow\"","priority":{"name":"High"},"labels":["auth","web"],"votes":3}}}"#;

/// A fixture with one Jira trigger shaped by `shape`, its service and its executions.
struct Shaped {
    fixture: Fixture,
    id: Uuid,
    source: Source,
    service: TriggerService<ChannelSink, Arc<MemoryKeyStore>>,
    executions: mpsc::Receiver<Execution>,
}

fn shaped(source: Source, shape: impl FnOnce(Trigger) -> Trigger) -> Shaped {
    let fixture = Fixture::new();
    let id = Uuid::now_v7();
    fixture
        .store
        .insert_trigger(shape(Trigger::new(id, TENANT, source)));
    let (service, executions) = fixture.channel_service();
    Shaped {
        fixture,
        id,
        source,
        service,
        executions,
    }
}

impl Shaped {
    fn request(&self) -> http::request::Builder {
        Request::post(format!("/api/trigger/{}/{}", self.source, self.id))
            .header(
                "authorization",
                format!("Bearer {}", self.fixture.key.expose()),
            )
            .header("content-type", "application/json")
    }

    async fn post(&self, body: &str) -> Answer {
        let request = self.request().body(full(body.to_owned())).unwrap();
        send(self.service.clone(), request).await
    }

    async fn post_request(&self, request: Request<Full<Bytes>>) -> Answer {
        send(self.service.clone(), request).await
    }

    fn started(&mut self) -> Execution {
        self.executions.try_recv().expect("an execution started")
    }

    fn nothing_started(&mut self) {
        assert!(self.executions.try_recv().is_err(), "nothing may start");
    }
}

fn filter(text: &str) -> Filter {
    Filter::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
}

fn input(text: &str) -> InputExpression {
    InputExpression::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
}

fn prompt(text: &str) -> PromptTemplate {
    PromptTemplate::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
}

fn filtered(message: &str, action: &str) -> Value {
    json!({"executionId": "skipped", "message": message, "action": action})
}

// ---- filter ----

#[tokio::test]
async fn a_matching_filter_starts_the_execution() {
    let mut trigger = shaped(Source::Jira, |t| {
        t.with_filter(filter(
            r#"action == "jira:issue_created" && body.issue.fields.priority.name in ["High", "Highest"]"#,
        ))
    });
    let answer = trigger.post(ISSUE).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.json["executionId"].as_str().unwrap().len() == 36);
    let execution = trigger.started();
    // Without an input expression the body's bytes are handed on untouched.
    assert_eq!(&execution.delivery.input[..], ISSUE.as_bytes());
    assert_eq!(execution.delivery.prompt, None);
}

#[tokio::test]
async fn a_filter_that_does_not_match_starts_nothing_and_says_why() {
    let mut trigger = shaped(Source::Jira, |t| {
        t.with_filter(filter(r#"body.issue.fields.priority.name == "Low""#))
    });
    let answer = trigger.post(ISSUE).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json,
        filtered("filtered out: the filter is false", "jira:issue_created")
    );
    trigger.nothing_started();
}

#[tokio::test]
async fn a_missing_field_or_a_wrong_type_filters_out_with_the_error() {
    let mut trigger = shaped(Source::Jira, |t| {
        t.with_filter(filter("body.issue.fields.severity == 1"))
    });
    let answer = trigger.post(ISSUE).await;
    assert_eq!(
        answer.json,
        filtered(
            "filtered out: filter: no such key: severity",
            "jira:issue_created"
        )
    );
    trigger.nothing_started();

    let mut trigger = shaped(Source::Jira, |t| {
        t.with_filter(filter("body.issue.fields.votes > 'two'"))
    });
    let answer = trigger.post(ISSUE).await;
    let message = answer.json["message"].as_str().unwrap();
    assert!(
        message.starts_with("filtered out: filter: ") && message.contains("_>_"),
        "{message}"
    );
    trigger.nothing_started();

    // A filter that gives something other than a bool does not match.
    let mut trigger = shaped(Source::Jira, |t| t.with_filter(filter("body.issue.key")));
    let answer = trigger.post(ISSUE).await;
    assert_eq!(
        answer.json["message"],
        "filtered out: filter: the filter gave a string, not a bool"
    );
    trigger.nothing_started();
}

#[tokio::test]
async fn has_lists_and_comprehensions() {
    let cases = [
        (
            "has(body.issue.fields.labels) && !has(body.issue.fields.severity)",
            true,
        ),
        ("'auth' in body.issue.fields.labels", true),
        (
            "body.issue.fields.labels.exists(l, l.startsWith('we'))",
            true,
        ),
        ("body.issue.fields.labels.all(l, size(l) == 4)", false),
        (
            "size(body.issue.fields.labels.filter(l, l != 'web')) == 1",
            true,
        ),
        (
            "body.issue.fields.labels.map(l, l + '!')[1] == 'web!'",
            true,
        ),
        (
            "body.issue.fields.labels.exists_one(l, l.endsWith('h'))",
            true,
        ),
        ("body.issue.fields.votes + 1u == 4u", false),
        ("double(body.issue.fields.votes) / 2.0 == 1.5", true),
    ];
    for (expression, matches) in cases {
        let mut trigger = shaped(Source::Jira, |t| t.with_filter(filter(expression)));
        let answer = trigger.post(ISSUE).await;
        if matches {
            assert!(
                answer.json["executionId"] != "skipped",
                "{expression}: {answer:?}"
            );
            trigger.started();
        } else {
            assert_eq!(answer.json["executionId"], "skipped", "{expression}");
            trigger.nothing_started();
        }
    }
}

#[tokio::test]
async fn headers_by_lower_case_name_without_credentials_cookies_or_signatures() {
    let mut trigger = shaped(Source::Jira, |t| {
        t.with_secret(secret_for(Source::Jira)).with_filter(filter(
            r#"headers["x-custom"] == "one, two" && headers["x-single"] == "Value"
               && !("authorization" in headers) && !("cookie" in headers)
               && !("x-hub-signature" in headers) && source == "jira""#,
        ))
    });
    // With a bearer key.
    let request = trigger
        .request()
        .header("X-Custom", "one")
        .header("x-custom", "two")
        .header("X-Single", "Value")
        .header("cookie", "session=secret")
        .body(full(ISSUE))
        .unwrap();
    let answer = trigger.post_request(request).await;
    assert!(answer.json["executionId"] != "skipped", "{answer:?}");
    trigger.started();
    // Signed: the signature header is there, and hidden from the rules.
    let mut request = Request::post(format!("/api/trigger/jira/{}", trigger.id))
        .header("content-type", "application/json")
        .header("x-custom", "one")
        .header("x-custom", "two")
        .header("x-single", "Value")
        .body(full(ISSUE))
        .unwrap();
    request
        .headers_mut()
        .extend(signed_now(Source::Jira, ISSUE.as_bytes()));
    assert!(request.headers().contains_key("x-hub-signature"));
    let answer = trigger.post_request(request).await;
    assert!(answer.json["executionId"] != "skipped", "{answer:?}");
    trigger.started();
}

#[tokio::test]
async fn a_slack_form_is_its_json_object() {
    let mut trigger = shaped(Source::Slack, |t| {
        t.with_filter(filter(
            r#"body.command == "/deploy" && body.text.startsWith("prod")"#,
        ))
        .with_prompt(prompt("{{ body.user_name }} asked: {{ body.text }}"))
    });
    let form = "command=%2Fdeploy&text=prod+now&user_name=ada";
    let request = Request::post(format!("/api/trigger/slack/{}", trigger.id))
        .header(
            "authorization",
            format!("Bearer {}", trigger.fixture.key.expose()),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(full(form))
        .unwrap();
    let answer = trigger.post_request(request).await;
    assert!(answer.json["executionId"] != "skipped", "{answer:?}");
    let execution = trigger.started();
    assert_eq!(
        execution.delivery.prompt.as_deref(),
        Some("ada asked: prod now")
    );
}

#[tokio::test]
async fn a_huge_body_under_the_limit_is_read_in_bounded_time() {
    let items: Vec<Value> = (0..9_000)
        .map(|i| json!({"id": i, "name": format!("item {i}"), "tags": ["a", "b"]}))
        .collect();
    let body =
        json!({"issue": {"key": "BIG-1"}, "items": items, "pad": "x".repeat(400_000)}).to_string();
    assert!(body.len() < 1 << 20);
    let mut trigger = shaped(Source::Jira, |t| {
        t.with_filter(filter(
            "body.items.exists(i, i.id == 8999) && size(body.pad) > 10",
        ))
        .with_input(input(
            r#"{"key": body.issue.key, "count": size(body.items)}"#,
        ))
    });
    let started = Instant::now();
    let answer = trigger.post(&body).await;
    assert!(answer.json["executionId"] != "skipped", "{answer:?}");
    assert_eq!(
        &trigger.started().delivery.input[..],
        br#"{"count":9000,"key":"BIG-1"}"#
    );
    // Generous for a debug build on a busy machine; a release build takes milliseconds.
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ---- input ----

#[tokio::test]
async fn the_input_expression_replaces_the_body() {
    let mut trigger = shaped(Source::Jira, |t| {
        t.with_input(input(
            r#"{"key": body.issue.key, "summary": body.issue.fields.summary, "votes": body.issue.fields.votes}"#,
        ))
    });
    trigger.post(ISSUE).await;
    let delivery = trigger.started().delivery;
    let value: Value = serde_json::from_slice(&delivery.input).unwrap();
    assert_eq!(
        value,
        json!({"key": "SEC-7", "summary": "Login <b>broken</b> & \"slow\"", "votes": 3})
    );
}

#[tokio::test]
async fn an_input_that_fails_or_holds_an_infinity_filters_out() {
    let mut trigger = shaped(Source::Jira, |t| t.with_input(input("body.issue.huge")));
    let answer = trigger.post(r#"{"issue":{"huge":1e400}}"#).await;
    let message = answer.json["message"].as_str().unwrap();
    assert!(message.starts_with("filtered out: input: "), "{message}");
    assert!(message.contains("inf"), "{message}");
    trigger.nothing_started();
    let answer = trigger.post(r#"{"issue":{}}"#).await;
    assert_eq!(
        answer.json["message"],
        "filtered out: input: no such key: huge"
    );
    trigger.nothing_started();
}

// ---- prompt ----

#[tokio::test]
async fn the_prompt_is_rendered_as_text_without_escaping() {
    let mut trigger = shaped(Source::Jira, |t| {
        t.with_prompt(prompt(
            "Triage {{ body.issue.key }}: {{ body.issue.fields.summary }}\n\
             {% for label in body.issue.fields.labels %}- {{ label }}\n{% endfor %}\
             ({{ action }}, {{ source }}, {{ deliveryId }})",
        ))
    });
    trigger.post(ISSUE).await;
    let delivery = trigger.started().delivery;
    assert_eq!(
        delivery.prompt.as_deref(),
        Some(
            "Triage SEC-7: Login <b>broken</b> & \"slow\"\n- auth\n- web\n(jira:issue_created, jira, None)"
        )
    );
    // The input is still the body.
    assert_eq!(&delivery.input[..], ISSUE.as_bytes());
}

#[tokio::test]
async fn a_long_prompt_is_cut_on_a_character_with_a_marker() {
    let mut trigger = shaped(Source::Jira, |t| {
        t.with_prompt(prompt("{{ body.text }}\u{7}{{ body.text }}"))
    });
    // Three bytes a character, so that the cut falls inside one.
    let text = "€".repeat(20_000);
    trigger.post(&json!({"text": text}).to_string()).await;
    let prompt = trigger.started().delivery.prompt.unwrap();
    assert!(prompt.len() <= MAX_PROMPT_LEN, "{}", prompt.len());
    assert!(prompt.len() > MAX_PROMPT_LEN - 4);
    assert!(prompt.ends_with("[…cut]"));
    // The bell between the two copies became U+FFFD.
    assert_eq!(prompt.chars().nth(20_000), Some('\u{fffd}'));
    assert!(
        prompt
            .trim_end_matches("[…cut]")
            .chars()
            .all(|c| c == '€' || c == '\u{fffd}')
    );
}

#[tokio::test]
async fn control_characters_in_the_prompt_are_replaced() {
    let mut trigger = shaped(Source::Jira, |t| t.with_prompt(prompt("{{ body.text }}")));
    trigger
        .post(r#"{"text":"a\tb\nc\u0000d\u001be\r\u007f"}"#)
        .await;
    assert_eq!(
        trigger.started().delivery.prompt.as_deref(),
        Some("a\tb\nc\u{fffd}d\u{fffd}e\u{fffd}\u{fffd}")
    );
}

#[tokio::test]
async fn a_missing_field_in_the_prompt_filters_out_unless_it_is_tested_first() {
    let body = json!({"issue": {"key": "A-1"}}).to_string();
    for template in [
        "Triage {{ body.issue.key }}: {{ body.changelog }}",
        "{% for item in body.changelog %}{{ item }}{% endfor %}",
        "{{ body.changelog.items }}",
    ] {
        let mut trigger = shaped(Source::Jira, |t| t.with_prompt(prompt(template)));
        let answer = trigger.post(&body).await;
        let message = answer.json["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("filtered out: prompt: undefined value"),
            "{template}: {answer:?}"
        );
        trigger.nothing_started();
    }
    let mut trigger = shaped(Source::Jira, |t| {
        t.with_prompt(prompt(
            "Triage {{ body.issue.key }}{% if body.changelog %}: {{ body.changelog }}{% endif %}{% if body.changelog is not defined %} (no changelog){% endif %}",
        ))
    });
    trigger.post(&body).await;
    assert_eq!(
        trigger.started().delivery.prompt.as_deref(),
        Some("Triage A-1 (no changelog)")
    );
}

#[tokio::test]
async fn a_template_that_loops_forever_or_renders_gigabytes_is_stopped() {
    let body = json!({"big": "x".repeat(500_000)}).to_string();
    for template in HOSTILE_TEMPLATES {
        let mut trigger = shaped(Source::Jira, |t| t.with_prompt(prompt(template)));
        let started = Instant::now();
        let answer = trigger.post(&body).await;
        let message = answer.json["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("filtered out: prompt: "),
            "{template}: {answer:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{template}");
        trigger.nothing_started();
    }
}

const HOSTILE_TEMPLATES: [&str; 6] = [
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{{ body.big }}{% endfor %}",
    "{{ body.big * 10000 }}",
    "{{ body.big | replace('x', body.big) }}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{% set s = namespace(t='x') %}{% for i in range(60) %}{% set s.t = s.t ~ s.t %}{% endfor %}{{ s.t }}",
];

// ---- duplicate keys ----

#[tokio::test]
async fn a_key_twice_in_any_object_is_refused_only_with_rules() {
    let body = r#"{"issue":{"key":"A-1","fields":{"x":1,"x":2}}}"#;
    let mut plain = shaped(Source::Jira, |t| t);
    assert_eq!(plain.post(body).await.status, StatusCode::OK);
    plain.started();
    for shape in [
        (|t: Trigger| t.with_filter(filter("true"))) as fn(Trigger) -> Trigger,
        |t| t.with_input(input("body")),
        |t| t.with_prompt(prompt("hi")),
    ] {
        let mut trigger = shaped(Source::Jira, shape);
        let answer = trigger.post(body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        let issue = &answer.json["issues"][0];
        assert_eq!(issue["code"], "invalid_json");
        assert_eq!(
            (issue["line"].as_u64(), issue["column"].as_u64()),
            (Some(1), Some(39))
        );
        trigger.nothing_started();
    }
}

// ---- order ----

#[tokio::test]
async fn rules_run_after_the_allowlist_and_before_the_duplicate_check() {
    let mut trigger = shaped(Source::Jira, |t| {
        t.with_actions(agent_trigger::ActionAllowlist::new(["jira:issue_updated"]))
            .with_filter(filter("body.missing"))
    });
    // The allowlist skips first: a skip, not a filter.
    let answer = trigger.post(ISSUE).await;
    assert_eq!(
        answer.json["message"],
        "action is not in the trigger's allowlist"
    );
    trigger.nothing_started();

    // A filtered delivery is not remembered: the same delivery id starts once it matches.
    let mut trigger = shaped(Source::Jira, |t| {
        t.with_filter(filter("body.issue.fields.priority.name == 'High'"))
    });
    let low = ISSUE.replace("High", "Low");
    let request = |body: &str| {
        trigger
            .request()
            .header("idempotency-key", "d-1")
            .body(full(body.to_owned()))
            .unwrap()
    };
    let (first, second) = (request(&low), request(ISSUE));
    assert_eq!(
        trigger.post_request(first).await.json["executionId"],
        "skipped"
    );
    let answer = trigger.post_request(second).await;
    assert!(answer.json["executionId"] != "skipped");
    assert!(!answer.headers.contains_key("idempotent-replayed"));
    trigger.started();
}

#[cfg(feature = "metrics")]
#[test]
fn metrics_count_a_filtered_delivery_as_filtered() {
    use agent_trigger::telemetry::DELIVERIES_TOTAL;
    use metrics_util::MetricKind;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let trigger = shaped(Source::Jira, |t| t.with_filter(filter("false")));
                trigger.post(ISSUE).await;
            });
    });
    let counted = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .any(|(key, _, _, value)| {
            let labels: Vec<_> = key
                .key()
                .labels()
                .map(|label| (label.key().to_owned(), label.value().to_owned()))
                .collect();
            key.kind() == MetricKind::Counter
                && key.key().name() == DELIVERIES_TOTAL
                && labels
                    .iter()
                    .any(|(k, v)| k == "outcome" && v == "filtered")
                && matches!(value, DebugValue::Counter(1))
        });
    assert!(counted, "one delivery counted with outcome=filtered");
}

// ---- bounded cost ----

/// A body built to hurt: a long string, many small elements, a wide object, deep nesting.
fn hostile_body(string_len: usize, elements: usize, keys: usize, depth: usize) -> String {
    let items: Vec<Value> = (0..elements)
        .map(|i| json!({"id": i, "s": "abcdefgh"}))
        .collect();
    let wide: serde_json::Map<String, Value> =
        (0..keys).map(|i| (format!("k{i}"), json!(i))).collect();
    let mut deep = json!("bottom");
    for _ in 0..depth {
        deep = json!({"d": deep, "l": [deep.clone()]});
        if deep.to_string().len() > 100_000 {
            deep = json!({"d": "cut"});
        }
    }
    json!({
        "s": "x".repeat(string_len),
        "items": items,
        "l": (0..elements).collect::<Vec<_>>(),
        "wide": wide,
        "deep": deep,
        "n": 1e300,
    })
    .to_string()
}

/// Expressions that would each take seconds to gigabytes without the budget.
fn hostile_expression(kind: usize, repeat: usize) -> String {
    let many = |part: &str, separator: &str| vec![part; repeat].join(separator);
    match kind {
        0 => format!("size({}) > 0", many("body.s", " + ")),
        1 => format!("size([{}]) > 0", many("body", ", ")),
        2 => many("body == body", " && "),
        3 => format!("body.items.map(x, [{}]).size() > 0", many("x", ", ")),
        4 => format!("body.items.map(x, {}).size() > 0", many("x.s", " + ")),
        5 => "body.items.map(x, headers).size() > 0".to_owned(),
        6 => format!("size({}) > 0", many("body.l", " + ")),
        7 => format!("body.items.all(x, {})", many("x.id >= 0", " && ")),
        8 => format!(
            "{{{}}} != {{}}",
            (0..repeat)
                .map(|i| format!("'k{i}': body"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        9 => format!("body.wide.all(k, {})", many("k in body.wide", " && ")),
        10 => format!("body.s.contains({})", many("body.s", " + ")),
        11 => format!(
            "body.items.map(x, x).map(y, y).filter(z, z.id > 0).exists(w, w == {})",
            many("w", " && w == ")
        ),
        12 => format!("{} in body.items", many("body.items[0]", " + ")),
        13 => "size(body.items.map(x, body.items)) > 0".to_owned(),
        14 => format!(
            "body.deep == body.deep && {}",
            many("body.deep.l == body.deep.l", " && ")
        ),
        _ => format!(
            "body.s < body.s + 'y' && {}",
            many("body.s <= body.s", " && ")
        ),
    }
}

#[test]
fn hostile_expressions_on_hostile_bodies_stay_within_the_bound() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        kind in 0usize..16,
        repeat in 1usize..200,
        string_len in 0usize..300_000,
        elements in 0usize..10_001,
        keys in 0usize..5_000,
        depth in 0usize..100,
    )| {
        let expression = hostile_expression(kind, repeat);
        let Ok(rule) = Filter::parse(&expression) else {
            // Refused at load: nothing to run.
            return Ok(());
        };
        let body = hostile_body(string_len, elements, keys, depth);
        prop_assume!(body.len() < 1 << 20);
        let trigger = shaped(Source::Jira, |t| t.with_filter(rule.clone()));
        let started = Instant::now();
        let answer = runtime.block_on(trigger.post(&body));
        let elapsed = started.elapsed();
        prop_assert_eq!(answer.status, StatusCode::OK, "{}", expression);
        // The bound holds by an order of magnitude in a release build; a debug build on a
        // shared machine gets room.
        prop_assert!(elapsed < Duration::from_secs(5), "{} took {:?}", expression, elapsed);
    });
}

/// Prints what each hostile expression costs on the largest hostile body; run with
/// `cargo test --release --all-features --test filters -- --ignored --nocapture`.
#[test]
#[ignore]
fn hostile_costs() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let body = hostile_body(250_000, 10_000, 5_000, 60);
    println!("body: {} bytes", body.len());
    let plain = shaped(Source::Jira, |t| t.with_filter(filter("true")));
    let started = Instant::now();
    runtime.block_on(plain.post(&body));
    println!(
        "{:>10.2?} filter `true` (conversion of the body)",
        started.elapsed()
    );
    for template in HOSTILE_TEMPLATES {
        let trigger = shaped(Source::Jira, |t| t.with_prompt(prompt(template)));
        let started = Instant::now();
        let answer = runtime.block_on(trigger.post(&body));
        println!(
            "{:>10.2?} {template}: {}",
            started.elapsed(),
            answer.json["message"].as_str().unwrap_or("started")
        );
    }
    for kind in 0..16 {
        for repeat in [1, 10, 100, 400] {
            let expression = hostile_expression(kind, repeat);
            let Ok(rule) = Filter::parse(&expression) else {
                continue;
            };
            let trigger = shaped(Source::Jira, |t| t.with_filter(rule));
            let started = Instant::now();
            let answer = runtime.block_on(trigger.post(&body));
            println!(
                "{:>10.2?} kind {kind} x{repeat}: {}",
                started.elapsed(),
                answer.json["message"].as_str().unwrap_or("started")
            );
        }
    }
}

// ---- concurrency key ----

fn per_issue(
    on_busy: agent_trigger::concurrency::OnBusy,
) -> agent_trigger::concurrency::Concurrency {
    let key =
        agent_trigger::concurrency::ConcurrencyKey::parse(r#""issue/" + body.issue.key"#).unwrap();
    agent_trigger::concurrency::Concurrency::new(key).with_on_busy(on_busy)
}

#[tokio::test]
async fn the_sink_gets_the_subject_computed_after_the_filter_and_input() {
    use agent_trigger::concurrency::OnBusy;
    let mut trigger = shaped(Source::Jira, |trigger| {
        trigger
            .with_filter(filter("has(body.issue)"))
            .with_input(input(r#"{"only": "this"}"#))
            .with_concurrency(per_issue(OnBusy::Skip))
    });
    let answer = trigger.post(ISSUE).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let execution = trigger.started();
    let subject = execution.delivery.subject.expect("a subject");
    // The key reads the body, not the input expression's value.
    assert_eq!(subject.key, "issue/SEC-7");
    assert_eq!(subject.on_busy, OnBusy::Skip);
    assert_eq!(&execution.delivery.input[..], br#"{"only":"this"}"#);
    // A trigger without a key hands on no subject.
    let mut plain = shaped(Source::Jira, |trigger| trigger);
    plain.post(ISSUE).await;
    assert!(plain.started().delivery.subject.is_none());
}

#[tokio::test]
async fn a_key_that_fails_or_is_not_a_string_filters_out_with_the_reason() {
    use agent_trigger::concurrency::OnBusy;
    let mut trigger = shaped(Source::Jira, |trigger| {
        trigger.with_concurrency(per_issue(OnBusy::Queue))
    });
    let answer = trigger
        .post(r#"{"webhookEvent":"jira:issue_created","issue":{}}"#)
        .await;
    assert_eq!(
        answer.json,
        filtered(
            "filtered out: concurrency key: no such key: key",
            "jira:issue_created"
        )
    );
    let answer = trigger
        .post(r#"{"webhookEvent":"jira:issue_created","issue":{"key":7}}"#)
        .await;
    assert!(
        answer.json["message"]
            .as_str()
            .unwrap()
            .starts_with("filtered out: concurrency key: "),
        "{}",
        answer.json
    );
    let key = agent_trigger::concurrency::ConcurrencyKey::parse("body.issue.fields.votes").unwrap();
    let mut numeric = shaped(Source::Jira, |trigger| {
        trigger.with_concurrency(agent_trigger::concurrency::Concurrency::new(key))
    });
    let answer = numeric.post(ISSUE).await;
    assert_eq!(
        answer.json["message"],
        "filtered out: concurrency key: it gave a int, not a string"
    );
    trigger.nothing_started();
    numeric.nothing_started();
}
