//! One agent per subject through real `agent-trigger serve` processes: a key that fails filters
//! the delivery, a debounced burst runs once with the newest input and learns how many
//! deliveries it stands for (SQLite); and three instances on one PostgreSQL database never run
//! two executions of one key at once, skip naming the busy execution, replace leaving one
//! `done` per burst.
#![cfg(feature = "server")]

pub mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use agent_trigger_testkit::server_process::*;
use common::postgres::TestSchema;
use http::StatusCode;
use http_body_util::Full;
use serde_json::Value;

/// Records `start <key> <ns> <id>` and `end <key> <ns> <id>` around a sleep of `$1` seconds;
/// the key is the body's `k` (its letters, digits and dashes); the deliveries it stands for
/// go to `$OUT/deliveries.txt` with the input.
const RECORDING_AGENT: &str = r#"#!/bin/sh
input=$(cat)
k=$(printf '%s' "$input" | sed -n 's/.*"k":"\([a-z0-9-]*\)".*/\1/p')
echo "start $k $(date +%s%N) $AGENT_TRIGGER_EXECUTION_ID" >> "$OUT/log.txt"
sleep "$1"
echo "$AGENT_TRIGGER_EXECUTION_ID $AGENT_TRIGGER_DELIVERIES $input" >> "$OUT/deliveries.txt"
echo "end $k $(date +%s%N) $AGENT_TRIGGER_EXECUTION_ID" >> "$OUT/log.txt"
"#;

/// A workspace whose trigger A has `settings` and whose executor runs the recording agent
/// (sleeping `seconds`), and the one the agent lives in.
fn workspace(seconds: &str, settings: &str) -> (Workspace, Workspace) {
    let probe = Workspace::new("");
    let agent = probe.path().join("agent.sh");
    std::fs::write(&agent, RECORDING_AGENT).unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let executor = format!(
        "[executor]\ncommand = [\"{}\", \"{seconds}\"]\nworkers = 2\nenv = [\"OUT\"]\n",
        agent.display()
    );
    let workspace = Workspace::new(&executor);
    let config = workspace.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let trigger = format!("id = \"{TRIGGER_A}\"\ntenant = \"acme\"\nsource = \"webhook\"\n");
    assert!(text.contains(&trigger), "the fixture has trigger A");
    std::fs::write(
        &config,
        text.replacen(&trigger, &format!("{trigger}{settings}\n"), 1),
    )
    .unwrap();
    (workspace, probe)
}

async fn start_instances(schema: &TestSchema, workspace: &Workspace, count: usize) -> Vec<Server> {
    drop(schema.store().await);
    let url = schema.url_with_schema();
    let mut servers = Vec::new();
    for _ in 0..count {
        servers.push(
            Server::start_with(workspace, &[("AGENT_TRIGGER_DATABASE_URL", url.as_str())]).await,
        );
    }
    servers
}

/// Per key, the `(start, end, id)` of every run the agent recorded. A run that never recorded
/// its end (its group was killed by a cancel) ends when `finished` says its execution did, or
/// counts as running still.
fn runs(
    workspace: &Workspace,
    finished: &HashMap<String, u128>,
) -> HashMap<String, Vec<(u128, u128, String)>> {
    let log = std::fs::read_to_string(workspace.path().join("log.txt")).unwrap_or_default();
    let mut starts: HashMap<String, (String, u128)> = HashMap::new();
    let mut runs: HashMap<String, Vec<(u128, u128, String)>> = HashMap::new();
    for line in log.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [what, key, at, id] = fields[..] else {
            panic!("{line}")
        };
        let at: u128 = at.parse().unwrap();
        match what {
            "start" => {
                starts.insert(id.to_owned(), (key.to_owned(), at));
            }
            _ => {
                let (key, start) = starts.remove(id).expect("a start before its end");
                runs.entry(key)
                    .or_default()
                    .push((start, at, id.to_owned()));
            }
        }
    }
    for (id, (key, start)) in starts {
        let end = finished.get(&id).copied().unwrap_or(u128::MAX);
        runs.entry(key).or_default().push((start, end, id));
    }
    runs
}

/// Fails when two runs of one key overlap in time.
fn assert_one_at_a_time(runs: &HashMap<String, Vec<(u128, u128, String)>>) {
    for (key, runs) in runs {
        let mut runs = runs.clone();
        runs.sort();
        for pair in runs.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "key {key}: {} and {} ran at once",
                pair[0].2,
                pair[1].2
            );
        }
    }
}

/// The executions of `key`, as the API lists them.
async fn executions_of(client: &HttpClient, server: &Server, key: &str) -> Vec<Value> {
    let request =
        http::Request::get(server.url(&format!("/api/executions?concurrencyKey={key}&limit=100")))
            .header("authorization", format!("Bearer {KEY_A}"))
            .body(Full::default())
            .unwrap();
    let (status, _, json) = call(client, request).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{json}");
    json["executions"].as_array().unwrap().clone()
}

/// Waits (up to a minute) until no execution of these keys is queued or running.
async fn until_settled(client: &HttpClient, server: &Server, keys: &[String]) {
    for _ in 0..600 {
        let mut settled = true;
        for key in keys {
            settled &= executions_of(client, server, key)
                .await
                .iter()
                .all(|execution| {
                    !matches!(execution["status"].as_str(), Some("queued" | "running"))
                });
        }
        if settled {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("executions still queued or running after a minute");
}

/// 50 deliveries for 5 keys, sent to the instances round robin, all at once.
async fn burst(client: &HttpClient, servers: &[Server]) -> Vec<(String, Value)> {
    let answers = futures_util::future::join_all((0..50).map(|n| {
        let key = format!("key-{}", n % 5);
        let body = format!(r#"{{"k":"{key}","n":{n}}}"#);
        let request = delivery(&servers[n % servers.len()], KEY_A, &body, None);
        async move { (key, call(client, request).await) }
    }))
    .await;
    answers
        .into_iter()
        .map(|(key, answer)| {
            let (status, headers, json) = answer.unwrap();
            assert_eq!(status, StatusCode::OK, "{json}");
            assert!(headers.get("idempotent-replayed").is_none());
            (key, json)
        })
        .collect()
}

fn keys() -> Vec<String> {
    (0..5).map(|n| format!("key-{n}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_never_run_two_executions_of_one_key() {
    let Some(schema) = TestSchema::new("three_instances_never_run_two_of_one_key").await else {
        return;
    };
    let (workspace, _agent) = workspace("0.2", "concurrency_key = 'body.k'");
    let servers = start_instances(&schema, &workspace, 3).await;
    let client = client();
    let answers = burst(&client, &servers).await;
    let started: HashSet<String> = answers
        .iter()
        .map(|(_, json)| json["executionId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(started.len(), 50, "each delivery queues its own");
    until_settled(&client, &servers[0], &keys()).await;
    let runs = runs(&workspace, &HashMap::new());
    assert_eq!(runs.values().map(Vec::len).sum::<usize>(), 50);
    assert_one_at_a_time(&runs);
    for key in keys() {
        let listed = executions_of(&client, &servers[1], &key).await;
        assert_eq!(listed.len(), 10);
        assert!(listed.iter().all(|execution| execution["status"] == "done"
            && execution["concurrencyKey"] == key.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_skip_naming_the_busy_execution() {
    let Some(schema) = TestSchema::new("three_instances_skip_naming_the_busy").await else {
        return;
    };
    let (workspace, _agent) = workspace("1", "concurrency_key = 'body.k'\non_busy = \"skip\"");
    let servers = start_instances(&schema, &workspace, 3).await;
    let client = client();
    let answers = burst(&client, &servers).await;
    let mut started: HashMap<String, HashSet<String>> = HashMap::new();
    for (key, json) in &answers {
        if json["executionId"] != "skipped" {
            started
                .entry(key.clone())
                .or_default()
                .insert(json["executionId"].as_str().unwrap().to_owned());
        }
    }
    for (key, json) in &answers {
        if json["executionId"] == "skipped" {
            let message = json["message"].as_str().unwrap();
            assert!(
                started[key].iter().any(|id| message.contains(id.as_str())),
                "{key}: {message} names none of {:?}",
                started[key]
            );
        }
    }
    let skipped = answers
        .iter()
        .filter(|(_, json)| json["executionId"] == "skipped")
        .count();
    assert!(
        skipped >= 40,
        "a burst for a busy key is skipped: {skipped} of 50"
    );
    until_settled(&client, &servers[0], &keys()).await;
    assert_one_at_a_time(&runs(&workspace, &HashMap::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_replace_leaving_one_done_per_burst() {
    let Some(schema) = TestSchema::new("three_instances_replace_leaving_one_done").await else {
        return;
    };
    let (workspace, _agent) = workspace("2", "concurrency_key = 'body.k'\non_busy = \"replace\"");
    let servers = start_instances(&schema, &workspace, 3).await;
    let client = client();
    for _ in 0..2 {
        burst(&client, &servers).await;
        until_settled(&client, &servers[2], &keys()).await;
    }
    let mut finished = HashMap::new();
    for key in keys() {
        let listed = executions_of(&client, &servers[0], &key).await;
        assert_eq!(listed.len(), 20, "{key}");
        for execution in &listed {
            if let Some(at) = execution["finishedAt"].as_str() {
                let at = humantime::parse_rfc3339(at).unwrap();
                let nanos = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
                finished.insert(execution["executionId"].as_str().unwrap().to_owned(), nanos);
            }
        }
        // Newest first: each burst's last delivery is the one done.
        let done: Vec<&Value> = listed.iter().filter(|e| e["status"] == "done").collect();
        assert_eq!(done.len(), 2, "{key}: one done per burst");
        for execution in &listed {
            if execution["status"] != "done" {
                assert_eq!(execution["status"], "cancelled", "{execution}");
                assert!(execution["replacedBy"].is_string(), "{execution}");
            }
        }
    }
    assert_one_at_a_time(&runs(&workspace, &finished));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debounced_burst_runs_once_with_the_newest_input() {
    let (workspace, _agent) = workspace(
        "0",
        "concurrency_key = 'body.k'\ndebounce_secs = 1\ndebounce_max_secs = 10",
    );
    let server = Server::start(&workspace).await;
    let client = client();
    let mut ids = HashSet::new();
    for n in 0..5 {
        let body = format!(r#"{{"k":"pr-7","n":{n}}}"#);
        let (status, headers, json) = call(&client, delivery(&server, KEY_A, &body, None))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{json}");
        assert!(headers.get("idempotent-replayed").is_none());
        ids.insert(json["executionId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "the burst is answered with one id");
    let id = ids.into_iter().next().unwrap();
    // A key that does not evaluate filters the delivery out, with the reason.
    let (status, _, json) = call(&client, delivery(&server, KEY_A, r#"{"n":1}"#, None))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["executionId"], "skipped");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("concurrency key"),
        "{json}"
    );
    let (_, _, json) = call(&client, delivery(&server, KEY_A, r#"{"k":7}"#, None))
        .await
        .unwrap();
    assert!(
        json["message"].as_str().unwrap().contains("not a string"),
        "{json}"
    );

    until_settled(&client, &server, &["pr-7".to_owned()]).await;
    let recorded = std::fs::read_to_string(workspace.path().join("deliveries.txt")).unwrap();
    assert_eq!(
        recorded.trim_end(),
        format!(r#"{id} 5 {{"k":"pr-7","n":4}}"#),
        "one run, for 5 deliveries, with the newest input"
    );
    let (_, _, json) = call(&client, status_request(&server, Some(KEY_A), &id))
        .await
        .unwrap();
    assert_eq!(json["status"], "done");
    assert_eq!(json["deliveries"], 5);
    assert_eq!(json["concurrencyKey"], "pr-7");
    assert_eq!(json["replacedBy"], Value::Null);
}
