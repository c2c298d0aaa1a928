//! What a trigger's rules cost: an accepted request with a typical filter, input and prompt on
//! a Jira-like body, beside the same request to a trigger without them; and the cost per KiB of
//! turning a body into values, which only triggers with rules pay. The run ends with the
//! medians and their ratios.
//!
//! ```text
//! cargo bench --bench rules
//! ```
//!
//! With `PROFILE_RULES=CASE` (`plain`, `filter`, `prompt`, `filter_input_prompt`;
//! `document_plain`, `document_checked`, `document_values` on the 16 KiB document; `items`, an
//! `all` over a body's 10 000 small objects) and
//! `PROFILE_ROUNDS=N` it skips the timings and sends N requests of that case, for
//! `benches/scripts/rules_profile.sh` to count. `PROFILE_RULES=server_trigger` prints the
//! rules as a `[[triggers]]` table's lines and then the Jira-like body, for the same script to
//! load the standalone server with.

pub mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use agent_trigger::memory::MemoryKeyStore;
use agent_trigger::rules::{Filter, InputExpression, PromptTemplate};
use agent_trigger::{ApiKey, ApiKeyRecord, Source, Trigger, TriggerService};
use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput};
use http::Request;
use http_body_util::Full;
use serde_json::json;
use support::{NullSink, json_document};
use tower::ServiceExt;
use uuid::Uuid;

const FILTER: &str =
    r#"action == "jira:issue_created" && body.issue.fields.priority.name in ["High", "Highest"]"#;
const INPUT: &str = r#"{"key": body.issue.key, "summary": body.issue.fields.summary, "labels": body.issue.fields.labels}"#;
const PROMPT: &str = "Triage {{ body.issue.key }}: {{ body.issue.fields.summary }}\nReported by {{ body.issue.fields.reporter.displayName }}, labels: {{ body.issue.fields.labels | join(\", \") }}";

/// A Jira `issue_created` delivery as Jira sends it: the issue with its usual fields, the
/// user, and a changelog (about 3.5 KiB).
fn jira_body() -> Bytes {
    let person = |name: &str| {
        json!({
            "self": format!("https://acme.atlassian.net/rest/api/3/user?accountId=5b10ac8d82e05b22cc7d4e{name}"),
            "accountId": format!("5b10ac8d82e05b22cc7d4e{name}"),
            "avatarUrls": {"48x48": "https://avatar-management.example/48.png", "24x24": "https://avatar-management.example/24.png"},
            "displayName": name,
            "active": true,
            "timeZone": "Europe/Paris",
            "accountType": "atlassian",
        })
    };
    let body = json!({
        "timestamp": 1_732_800_000_000u64,
        "webhookEvent": "jira:issue_created",
        "issue_event_type_name": "issue_created",
        "user": person("Ada Lovelace"),
        "issue": {
            "id": "10042",
            "self": "https://acme.atlassian.net/rest/api/3/issue/10042",
            "key": "SEC-42",
            "fields": {
                "summary": "Rotate the leaked token in the payments service",
                "description": "A token for the payments service was pasted in a public channel. ".repeat(6),
                "issuetype": {"id": "10004", "name": "Bug", "subtask": false, "iconUrl": "https://acme.atlassian.net/images/icons/bug.svg"},
                "project": {"id": "10000", "key": "SEC", "name": "Security", "projectTypeKey": "software"},
                "priority": {"id": "2", "name": "High", "iconUrl": "https://acme.atlassian.net/images/icons/priorities/high.svg"},
                "status": {"id": "10000", "name": "To Do", "statusCategory": {"id": 2, "key": "new", "colorName": "blue-gray"}},
                "labels": ["security", "triage", "payments"],
                "components": [{"id": "10010", "name": "payments"}],
                "reporter": person("Grace Hopper"),
                "assignee": null,
                "creator": person("Grace Hopper"),
                "created": "2026-11-28T10:00:00.000+0100",
                "updated": "2026-11-28T10:00:00.000+0100",
                "duedate": null,
                "votes": {"votes": 0, "hasVoted": false},
                "watches": {"watchCount": 1, "isWatching": true},
                "customfield_10020": null,
                "customfield_10021": [{"id": 7, "name": "Sprint 12", "state": "active"}],
                "timetracking": {},
            },
        },
        "changelog": {"id": "10100", "items": [{"field": "status", "fromString": null, "toString": "To Do"}]},
    });
    Bytes::from(body.to_string())
}

/// A body of 10 000 small objects, as many as a comprehension may visit.
fn items_body() -> Bytes {
    let items: Vec<_> = (0..10_000)
        .map(|id| json!({"id": id, "s": "abcdefgh"}))
        .collect();
    Bytes::from(json!({ "items": items }).to_string())
}

struct World {
    key: ApiKey,
    plain: Uuid,
    shaped: Uuid,
    filtered: Uuid,
    prompted: Uuid,
    checking: Uuid,
    converting: Uuid,
    items: Uuid,
    service: TriggerService<Arc<NullSink>, Arc<MemoryKeyStore>>,
}

impl World {
    fn new() -> Self {
        let key = ApiKey::generate();
        let (plain, shaped, converting) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let (filtered, prompted, checking) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let items = Uuid::now_v7();
        let store = MemoryKeyStore::new()
            .with_key(key.digest(), ApiKeyRecord::new("bench", "bench"))
            .with_trigger(Trigger::new(plain, "bench", Source::Jira))
            .with_trigger(
                Trigger::new(shaped, "bench", Source::Jira)
                    .with_filter(Filter::parse(FILTER).unwrap())
                    .with_input(InputExpression::parse(INPUT).unwrap())
                    .with_prompt(PromptTemplate::parse(PROMPT).unwrap()),
            )
            .with_trigger(
                Trigger::new(filtered, "bench", Source::Jira)
                    .with_filter(Filter::parse(FILTER).unwrap()),
            )
            .with_trigger(
                Trigger::new(prompted, "bench", Source::Jira)
                    .with_prompt(PromptTemplate::parse(PROMPT).unwrap()),
            )
            // A filter that reads one field: the body is checked for repeated keys, one
            // field is read, and the evaluation itself is next to nothing.
            .with_trigger(
                Trigger::new(checking, "bench", Source::Jira)
                    .with_filter(Filter::parse("has(body.webhookEvent)").unwrap()),
            )
            // The largest comprehension a filter may run.
            .with_trigger(
                Trigger::new(items, "bench", Source::Jira)
                    .with_filter(Filter::parse("body.items.all(x, x.id >= 0)").unwrap()),
            )
            // A filter that reads the whole body: all of it turned into values.
            .with_trigger(
                Trigger::new(converting, "bench", Source::Jira)
                    .with_filter(Filter::parse("size(body) > 0").unwrap()),
            );
        let service = TriggerService::builder(Arc::new(NullSink::default()), Arc::new(store))
            .body_limit(4 << 20)
            .build();
        World {
            key,
            plain,
            shaped,
            filtered,
            prompted,
            checking,
            converting,
            items,
            service,
        }
    }

    fn request(&self, trigger: Uuid, body: &Bytes) -> Request<Full<Bytes>> {
        Request::post(format!("/api/trigger/jira/{trigger}"))
            .header("authorization", format!("Bearer {}", self.key.expose()))
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(Full::new(body.clone()))
            .unwrap()
    }
}

/// Times `world`'s service answering requests of `body` to `trigger`, built outside the timing.
fn bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    world: &World,
    name: &str,
    trigger: Uuid,
    body: &Bytes,
) {
    group.bench_function(name, |b| {
        b.to_async(runtime).iter_batched(
            || world.request(trigger, body),
            |request| {
                let service = world.service.clone();
                async move {
                    let response = service.oneshot(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                    response
                }
            },
            BatchSize::NumIterations(64),
        )
    });
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let world = World::new();
    let body = jira_body();

    let mut group = c.benchmark_group("rules");
    bench(&mut group, &runtime, &world, "plain", world.plain, &body);
    bench(
        &mut group,
        &runtime,
        &world,
        "filter",
        world.filtered,
        &body,
    );
    bench(
        &mut group,
        &runtime,
        &world,
        "prompt",
        world.prompted,
        &body,
    );
    bench(
        &mut group,
        &runtime,
        &world,
        "filter_input_prompt",
        world.shaped,
        &body,
    );
    group.finish();

    let mut group = c.benchmark_group("conversion");
    for size in [16 << 10, 256 << 10] {
        let document = json_document(size);
        group.throughput(Throughput::Bytes(document.len() as u64));
        let plain = format!("{size}/plain");
        bench(&mut group, &runtime, &world, &plain, world.plain, &document);
        let checked = format!("{size}/checked");
        bench(
            &mut group,
            &runtime,
            &world,
            &checked,
            world.checking,
            &document,
        );
        let values = format!("{size}/values");
        bench(
            &mut group,
            &runtime,
            &world,
            &values,
            world.converting,
            &document,
        );
    }
    group.finish();
}

fn main() {
    if let Ok(case) = std::env::var("PROFILE_RULES") {
        profile(&case);
        return;
    }
    let started = SystemTime::now();
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
    summary(started);
}

/// Sends `PROFILE_ROUNDS` requests of `case`, untimed, for a profiler to count.
fn profile(case: &str) {
    if case == "server_trigger" {
        // TOML literal strings: the rules hold no `'`.
        println!("filter = '{FILTER}'\ninput = '{INPUT}'\nprompt = '''{PROMPT}'''");
        println!("{}", String::from_utf8_lossy(&jira_body()));
        return;
    }
    let rounds: usize = std::env::var("PROFILE_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(0);
    let world = World::new();
    let (trigger, body) = match case {
        "plain" => (world.plain, jira_body()),
        "filter" => (world.filtered, jira_body()),
        "prompt" => (world.prompted, jira_body()),
        "filter_input_prompt" => (world.shaped, jira_body()),
        "document_plain" => (world.plain, json_document(16 << 10)),
        "document_checked" => (world.checking, json_document(16 << 10)),
        "document_values" => (world.converting, json_document(16 << 10)),
        "items" => (world.items, items_body()),
        other => panic!("no case {other}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for _ in 0..rounds {
            let response = world
                .service
                .clone()
                .oneshot(world.request(trigger, &body))
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    });
    println!("{case}: {} bytes of body", body.len());
}

/// The medians this run measured, and the ratios.
fn summary(started: SystemTime) {
    let home = std::env::var_os("CRITERION_HOME").map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| PathBuf::from("target"), PathBuf::from)
                .join("criterion")
        },
        PathBuf::from,
    );
    let median = |id: &str| -> Option<f64> {
        let file = home.join(id).join("new").join("estimates.json");
        if std::fs::metadata(&file).ok()?.modified().ok()? < started {
            return None;
        }
        let estimates: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
        estimates["median"]["point_estimate"].as_f64()
    };
    println!("\nmedians of this run:");
    if let (Some(plain), Some(shaped)) =
        (median("rules/plain"), median("rules/filter_input_prompt"))
    {
        println!(
            "  accepted, {} B Jira body: {:.2} µs without rules, {:.2} µs with filter + input + prompt ({:.2}x)",
            jira_body().len(),
            plain / 1e3,
            shaped / 1e3,
            shaped / plain
        );
    }
    for (name, id) in [("filter", "rules/filter"), ("prompt", "rules/prompt")] {
        if let (Some(plain), Some(alone)) = (median("rules/plain"), median(id)) {
            println!(
                "  with the {name} alone: {:.2} µs ({:.2}x)",
                alone / 1e3,
                alone / plain
            );
        }
    }
    for size in [16 << 10, 256 << 10] {
        let (Some(plain), Some(checked), Some(values)) = (
            median(&format!("conversion/{size}_plain")),
            median(&format!("conversion/{size}_checked")),
            median(&format!("conversion/{size}_values")),
        ) else {
            continue;
        };
        let kib = json_document(size).len() as f64 / 1024.0;
        println!(
            "  {} KiB document: {:.1} µs without rules; {:.1} µs with keys checked and one field read ({:.2} µs per KiB more); {:.1} µs turned into values whole ({:.2} µs per KiB more)",
            size >> 10,
            plain / 1e3,
            checked / 1e3,
            (checked - plain) / 1e3 / kib,
            values / 1e3,
            (values - plain) / 1e3 / kib
        );
    }
}
