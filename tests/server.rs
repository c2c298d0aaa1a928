//! The real `agent-trigger` binary: durability across `kill -9`, idempotency across restarts,
//! tenant isolation of the status endpoint, the executor, configuration errors and shutdown.
#![cfg(all(feature = "server", unix))]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_trigger_testkit::server_process::{self, *};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use tokio::process::{Child, Command};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_execution_survives_kill_9_and_redeliveries_stay_idempotent() {
    let workspace = Workspace::new("");
    let mut server = Server::start(&workspace).await;
    let client = client();

    let (status, _, before) = call(
        &client,
        delivery(&server, KEY_A, r#"{"type":"before"}"#, Some("before-crash")),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut senders = Vec::new();
    for task in 0..16 {
        let client = client.clone();
        let request_url = server.url(&format!("/api/trigger/webhook/{TRIGGER_A}"));
        let acknowledged = Arc::clone(&acknowledged);
        senders.push(tokio::spawn(async move {
            for n in 0.. {
                let request = Request::post(&request_url)
                    .header("authorization", format!("Bearer {KEY_A}"))
                    .body(Full::new(Bytes::from(format!(
                        r#"{{"task":{task},"n":{n}}}"#
                    ))))
                    .unwrap();
                match call(&client, request).await {
                    Ok((StatusCode::OK, _, json)) => acknowledged
                        .lock()
                        .unwrap()
                        .push(json["executionId"].as_str().unwrap().to_owned()),
                    Ok((status, _, json)) => panic!("unexpected {status}: {json}"),
                    Err(_) => break, // the server is gone
                }
            }
        }));
    }
    // Let the load run, then kill the server mid-stream without warning.
    while acknowledged.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 200);

    let server = Server::start(&workspace).await;
    for id in &acknowledged {
        let (status, _, json) = call(&client, status_request(&server, Some(KEY_A), id))
            .await
            .unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "execution {id} was acknowledged but lost"
        );
        assert_eq!(json["status"], "queued");
    }
    let (status, headers, after) = call(
        &client,
        delivery(&server, KEY_A, r#"{"type":"before"}"#, Some("before-crash")),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after, before);
    assert_eq!(headers["idempotent-replayed"], "true");
}

#[tokio::test]
async fn the_status_endpoint_shows_a_tenant_only_its_own_executions() {
    let workspace = Workspace::new("");
    let server = Server::start(&workspace).await;
    let client = client();
    let (_, _, json) = call(&client, delivery(&server, KEY_A, r#"{"type":"x"}"#, None))
        .await
        .unwrap();
    let id = json["executionId"].as_str().unwrap().to_owned();

    let (status, _, json) = call(&client, status_request(&server, Some(KEY_A), &id))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    for field in [
        "executionId",
        "status",
        "source",
        "triggerId",
        "action",
        "createdAt",
        "startedAt",
        "finishedAt",
        "exitCode",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
    assert_eq!(json["executionId"], id);
    assert_eq!(json["source"], "webhook");
    assert_eq!(json["triggerId"], TRIGGER_A);
    assert_eq!(json["action"], "x");

    let (status, _, other_tenant) = call(&client, status_request(&server, Some(KEY_B), &id))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, unknown) = call(
        &client,
        status_request(&server, Some(KEY_B), &Uuid::now_v7().to_string()),
    )
    .await
    .unwrap();
    assert_eq!(
        other_tenant, unknown,
        "another tenant's execution looks like an unknown one"
    );

    let (status, headers, _) = call(&client, status_request(&server, None, &id))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, _, _) = call(&client, status_request(&server, Some("atk_wrong"), &id))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The server serves its OpenAPI document.
    let (status, _, document) = call(
        &client,
        Request::get(server.url("/api/openapi.json"))
            .body(Full::default())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");

    // Tenant B's key cannot invoke tenant A's trigger either.
    let (status, _, _) = call(&client, delivery(&server, KEY_B, "{}", None))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_status_endpoint_shows_a_scoped_key_only_its_triggers_executions() {
    const SCOPED_KEY: &str = "atk_tenant_a_scoped_key_00000000000000000000";
    const TRIGGER_C: &str = "4a1f9a36-94a5-4d7e-8f0e-7c2b1d3e5f60";
    let scoped = format!(
        "[[keys]]\nid = \"scoped\"\ntenant = \"acme\"\nsha256 = \"{}\"\ntriggers = [\"{TRIGGER_C}\"]\n\n[[triggers]]\nid = \"{TRIGGER_C}\"\ntenant = \"acme\"\nsource = \"webhook\"\n",
        agent_trigger::KeyDigest::of_token(SCOPED_KEY).to_hex()
    );
    let workspace = Workspace::new(&scoped);
    let server = Server::start(&workspace).await;
    let client = client();
    let (_, _, json) = call(&client, delivery(&server, KEY_A, r#"{"type":"x"}"#, None))
        .await
        .unwrap();
    let on_a = json["executionId"].as_str().unwrap().to_owned();
    let request = Request::post(server.url(&format!("/api/trigger/webhook/{TRIGGER_C}")))
        .header("authorization", format!("Bearer {SCOPED_KEY}"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let (status, _, json) = call(&client, request).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let on_c = json["executionId"].as_str().unwrap().to_owned();

    let (status, _, json) = call(&client, status_request(&server, Some(SCOPED_KEY), &on_c))
        .await
        .unwrap();
    assert_eq!(
        (status, &json["triggerId"]),
        (StatusCode::OK, &Value::from(TRIGGER_C))
    );
    // The same tenant's execution on a trigger outside the key's scope is "not found".
    let (status, _, outside) = call(&client, status_request(&server, Some(SCOPED_KEY), &on_a))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, unknown) = call(
        &client,
        status_request(&server, Some(SCOPED_KEY), &Uuid::now_v7().to_string()),
    )
    .await
    .unwrap();
    assert_eq!(outside, unknown);
    // The tenant-wide key sees both.
    let (status, _, _) = call(&client, status_request(&server, Some(KEY_A), &on_c))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

const AGENT_SCRIPT: &str = r#"#!/bin/sh
input=$(cat)
printf '%s' "$input" > "$OUT/$AGENT_TRIGGER_EXECUTION_ID.in"
env | grep '^AGENT_TRIGGER_' | sort > "$OUT/$AGENT_TRIGGER_EXECUTION_ID.env"
echo "ran $AGENT_TRIGGER_ACTION"
case "$AGENT_TRIGGER_ACTION" in
  fail) echo "failing on purpose" >&2; exit 3 ;;
  slow) sleep 30 ;;
esac
exit 0
"#;

async fn wait_until_finished(client: &HttpClient, server: &Server, id: &str) -> Value {
    for _ in 0..200 {
        let (_, _, json) = call(client, status_request(server, Some(KEY_A), id))
            .await
            .unwrap();
        if json["status"] != "queued" && json["status"] != "running" {
            return json;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("execution {id} did not finish");
}

/// A workspace holding `script` as an executable `agent.sh`, and the script's path.
fn agent_script(script: &str) -> (Workspace, std::path::PathBuf) {
    let probe = Workspace::new("");
    let path = probe.path().join("agent.sh");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (probe, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_runs_the_command_with_input_env_timeout_and_exit_code() {
    let (_probe, script) = agent_script(AGENT_SCRIPT);
    let executor = format!(
        "[executor]\ncommand = [\"{}\"]\nworkers = 2\ntimeout_secs = 2\nenv = [\"OUT\"]\n",
        script.display()
    );
    let workspace = Workspace::new(&executor);
    let mut server = Server::start(&workspace).await;
    let client = client();

    let mut ids = HashMap::new();
    for action in ["ok", "fail", "slow"] {
        let body = format!(r#"{{"type":"{action}","payload":{{"n":1}}}}"#);
        let (status, _, json) = call(&client, delivery(&server, KEY_A, &body, Some(action)))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        ids.insert(
            action,
            (json["executionId"].as_str().unwrap().to_owned(), body),
        );
    }

    let (ok_id, ok_body) = &ids["ok"];
    let ok = wait_until_finished(&client, &server, ok_id).await;
    assert_eq!(ok["status"], "done");
    assert_eq!(ok["exitCode"], 0);
    assert_eq!(
        std::fs::read_to_string(workspace.path().join(format!("{ok_id}.in"))).unwrap(),
        *ok_body
    );
    let env = std::fs::read_to_string(workspace.path().join(format!("{ok_id}.env"))).unwrap();
    for line in [
        "AGENT_TRIGGER_ACTION=ok".to_owned(),
        format!("AGENT_TRIGGER_EXECUTION_ID={ok_id}"),
        "AGENT_TRIGGER_SOURCE=webhook".to_owned(),
        format!("AGENT_TRIGGER_TRIGGER_ID={TRIGGER_A}"),
        "AGENT_TRIGGER_DELIVERY_ID=ok".to_owned(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from\n{env}");
    }

    let fail = wait_until_finished(&client, &server, &ids["fail"].0).await;
    assert_eq!(fail["status"], "error");
    assert_eq!(fail["exitCode"], 3);

    let slow = wait_until_finished(&client, &server, &ids["slow"].0).await;
    assert_eq!(slow["status"], "error");
    assert_eq!(slow["exitCode"], Value::Null);
    let started = humantime::parse_rfc3339(slow["startedAt"].as_str().unwrap()).unwrap();
    let finished = humantime::parse_rfc3339(slow["finishedAt"].as_str().unwrap()).unwrap();
    let ran = finished.duration_since(started).unwrap();
    assert!(
        ran >= Duration::from_secs(2) && ran < Duration::from_secs(20),
        "ran {ran:?}"
    );

    // SIGTERM: a clean exit.
    nix_kill(&server.child, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");

    // The output tails were kept.
    let store =
        agent_trigger::sqlite::SqliteStore::open(workspace.path().join("executions.db")).unwrap();
    use agent_trigger::queue::ExecutionQueue;
    let record = store
        .execution(&ok_id.as_str().into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&record.output_tail), "ran ok\n");
    let record = store
        .execution(&ids["fail"].0.as_str().into())
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&record.output_tail).contains("failing on purpose"));
    let record = store
        .execution(&ids["slow"].0.as_str().into())
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&record.output_tail).contains("killed after the 2 s timeout"));
}

const ISOLATION_SCRIPT: &str = r#"#!/bin/sh
env > "$OUT/$AGENT_TRIGGER_EXECUTION_ID.env"
sleep 300 &
echo $! > "$OUT/$AGENT_TRIGGER_EXECUTION_ID.background"
case "$AGENT_TRIGGER_ACTION" in
  slow) sleep 300 ;;
esac
exit 0
"#;

/// Whether process `pid` is gone (or only waits to be reaped).
fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn assert_gone_soon(pid: u32, what: &str) {
    for _ in 0..100 {
        if process_is_gone(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: process {pid} outlived its command");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_sees_no_secret_and_leaves_nothing_behind() {
    let (_probe, script) = agent_script(ISOLATION_SCRIPT);
    let executor = format!(
        "[executor]\ncommand = [\"{}\"]\nworkers = 2\ntimeout_secs = 1\nenv = [\"OUT\", \"NOT_SET_ANYWHERE\"]\n[executor.environment]\nAGENT_MODE = \"review\"\n",
        script.display()
    );
    let workspace = Workspace::new(&executor);
    let mut server =
        Server::start_with(&workspace, &[("UNRELATED_TOKEN", "server-only-value")]).await;
    let client = client();
    let background = |id: &str| -> u32 {
        let path = workspace.path().join(format!("{id}.background"));
        std::fs::read_to_string(path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };

    // Exits at once, leaving a background process.
    let (_, _, json) = call(
        &client,
        delivery(&server, KEY_A, r#"{"type":"quick"}"#, None),
    )
    .await
    .unwrap();
    let quick = json["executionId"].as_str().unwrap().to_owned();
    assert_eq!(
        wait_until_finished(&client, &server, &quick).await["status"],
        "done"
    );
    let env = std::fs::read_to_string(workspace.path().join(format!("{quick}.env"))).unwrap();
    let names: Vec<&str> = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name)
        .collect();
    for secret in [KEY_A, KEY_B, "server-only-value"] {
        assert!(
            !env.contains(secret),
            "a secret reached the command:\n{env}"
        );
    }
    for absent in [
        "TEST_KEY_A",
        "TEST_KEY_B",
        "UNRELATED_TOKEN",
        "NOT_SET_ANYWHERE",
        "CARGO",
    ] {
        assert!(
            !names.contains(&absent),
            "{absent} reached the command:\n{env}"
        );
    }
    for present in ["PATH", "OUT", "AGENT_MODE", "AGENT_TRIGGER_EXECUTION_ID"] {
        assert!(names.contains(&present), "{present} missing:\n{env}");
    }
    assert!(env.lines().any(|line| line == "AGENT_MODE=review"));
    assert_gone_soon(background(&quick), "after exit").await;

    // Times out: the command and what it started in the background end together.
    let (_, _, json) = call(
        &client,
        delivery(&server, KEY_A, r#"{"type":"slow"}"#, None),
    )
    .await
    .unwrap();
    let slow = json["executionId"].as_str().unwrap().to_owned();
    assert_eq!(
        wait_until_finished(&client, &server, &slow).await["status"],
        "error"
    );
    assert_gone_soon(background(&slow), "after the timeout").await;

    // Interrupted by a shutdown: the same.
    let (_, _, json) = call(
        &client,
        delivery(&server, KEY_A, r#"{"type":"slow"}"#, Some("last")),
    )
    .await
    .unwrap();
    let last = json["executionId"].as_str().unwrap().to_owned();
    let marker = workspace.path().join(format!("{last}.background"));
    for _ in 0..100 {
        if std::fs::read_to_string(&marker).is_ok_and(|text| text.ends_with('\n')) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nix_kill(&server.child, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert_gone_soon(background(&last), "after shutdown").await;
}

#[tokio::test]
async fn sigint_stops_the_server_cleanly() {
    let workspace = Workspace::new("");
    let mut server = Server::start(&workspace).await;
    nix_kill(&server.child, "INT");
    let status = tokio::time::timeout(Duration::from_secs(20), server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_bad_configuration_is_refused_with_its_file_and_line() {
    let workspace = Workspace::new("");
    let config = workspace.path().join("config.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(TRIGGER_B, "not-a-uuid");
    std::fs::write(&config, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_agent-trigger"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("TEST_KEY_A", KEY_A)
        .env("TEST_KEY_B", KEY_B)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:22:6: trigger id \"not-a-uuid\" is not a hyphenated UUID",
            config.display()
        )),
        "{stderr}"
    );
    assert!(
        !workspace.path().join("executions.db").exists(),
        "nothing was started"
    );

    let missing_env = Command::new(env!("CARGO_BIN_EXE_agent-trigger"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("TEST_KEY_A")
        .output()
        .await
        .unwrap();
    assert!(!missing_env.status.success());
}

#[tokio::test]
async fn keygen_prints_a_key_and_its_digest() {
    let output = Command::new(env!("CARGO_BIN_EXE_agent-trigger"))
        .arg("keygen")
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let key = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("atk_"))
        .map(|rest| format!("atk_{rest}"))
        .unwrap();
    let digest = agent_trigger::KeyDigest::of_token(&key).to_hex();
    assert!(
        stdout.contains(&format!("sha256 = \"{digest}\"")),
        "{stdout}"
    );
}

/// Sends a signal by name with the system's `kill`.
fn nix_kill(child: &Child, signal: &str) {
    let pid = child.id().expect("the server is running");
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Demo mode in `dir` on a free port: its address, printed key and webhook trigger id.
/// Demo mode in `dir`: the process, its address, key and webhook trigger, and the lines it
/// prints afterwards (its executor's).
async fn start_demo(
    dir: &std::path::Path,
) -> (
    Child,
    String,
    String,
    String,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-trigger"))
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut address, mut key, mut trigger) = (None, None, None);
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("agent-trigger listening on http://") {
                address = Some(rest.to_owned());
            } else if let Some(rest) = line.strip_prefix("API key (shown once, keep it): ") {
                key = Some(rest.to_owned());
            } else if let Some(rest) = line.trim_start().strip_prefix("webhook ") {
                trigger = Some(rest.trim().to_owned());
            }
            if line.starts_with("then its status") {
                break;
            }
        }
    })
    .await
    .expect("demo mode prints its key and triggers");
    // Keep reading: the demo prints more (its executor's lines), and a closed pipe would fail it.
    let (later, printed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = later.send(line);
        }
    });
    (
        child,
        address.unwrap(),
        key.unwrap(),
        trigger.unwrap(),
        printed,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_prints_a_payloads_terminal_escapes_as_text() {
    let workspace = Workspace::new("");
    let (_demo, address, key, trigger, mut printed) = start_demo(workspace.path()).await;
    let body = r#"{"type":"\u001b]0;owned\u0007\u001b[2J","note":"\u009b31m"}"#;
    let request = Request::post(format!("http://{address}/api/trigger/webhook/{trigger}"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let (status, _, _) = call(&client(), request).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let line = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = printed.recv().await.expect("the demo keeps printing");
            if line.starts_with("demo executor:") {
                return line;
            }
        }
    })
    .await
    .expect("the demo executor prints the delivery");
    assert!(!line.contains(['\u{1b}', '\u{7}', '\u{9b}']), "{line:?}");
    assert!(line.contains("\\u{1b}]0;owned\\u{7}"), "{line}");
}

#[tokio::test]
async fn demo_mode_runs_deliveries_to_done_and_a_new_start_revokes_earlier_keys() {
    let workspace = Workspace::new("");
    let client = client();
    let deliver = |address: &str, key: &str, trigger: &str| {
        Request::post(format!("http://{address}/api/trigger/webhook/{trigger}"))
            .header("authorization", format!("Bearer {key}"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    let (mut first, address, old_key, trigger, _) = start_demo(workspace.path()).await;
    let (status, _, json) = call(&client, deliver(&address, &old_key, &trigger))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    // The built-in demo executor runs it: the newcomer sees `done`.
    let id = json["executionId"].as_str().unwrap().to_owned();
    let mut status = Value::Null;
    for _ in 0..100 {
        let request = Request::get(format!("http://{address}/api/executions/{id}"))
            .header("authorization", format!("Bearer {old_key}"))
            .body(Full::default())
            .unwrap();
        status = call(&client, request).await.unwrap().2;
        if status["status"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["status"], "done", "{status}");
    assert_eq!(status["exitCode"], 0);
    nix_kill(&first, "TERM");
    first.wait().await.unwrap();

    let (_second, address, new_key, same_trigger, _) = start_demo(workspace.path()).await;
    // A new client: the second server may get the first one's port, and a pooled connection to
    // the first would fail.
    let client = server_process::client();
    assert_eq!(same_trigger, trigger, "the demo triggers are kept");
    assert_ne!(new_key, old_key);
    let (status, _, _) = call(&client, deliver(&address, &new_key, &trigger))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&client, deliver(&address, &old_key, &trigger))
        .await
        .unwrap();
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an earlier demo key still works"
    );
}

#[tokio::test]
async fn check_validates_a_configuration_and_starts_nothing() {
    let workspace = Workspace::new("");
    let config = workspace.path().join("config.toml");
    let check = |file: std::path::PathBuf| async move {
        Command::new(env!("CARGO_BIN_EXE_agent-trigger"))
            .args(["check", "--config"])
            .arg(file)
            .env("TEST_KEY_A", KEY_A)
            .env("TEST_KEY_B", KEY_B)
            .output()
            .await
            .unwrap()
    };
    let good = check(config.clone()).await;
    assert!(good.status.success());
    assert!(String::from_utf8_lossy(&good.stdout).contains("OK (2 keys, 2 triggers, no executor)"));
    assert!(
        !workspace.path().join("executions.db").exists(),
        "check opened the database"
    );

    let bad = workspace.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[keys]]\nid = \"k\"\ntenant = \"a\"\nsha256 = \"abc\"\n",
    )
    .unwrap();
    let refused = check(bad.clone()).await;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:4:10: a key digest is 64 hex digits",
            bad.display()
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_without_a_key_and_says_when_the_database_does_not() {
    let workspace = Workspace::new("");
    let server = Server::start(&workspace).await;
    let client = client();
    let health = || {
        Request::get(server.url("/healthz"))
            .body(Full::default())
            .unwrap()
    };
    let (status, _, json) = call(&client, health()).await.unwrap();
    assert_eq!(
        (status, json),
        (StatusCode::OK, serde_json::json!({"status": "ok"}))
    );

    // Another connection holds the write lock: a delivery waits on it, and so does the health
    // check queued behind it, past its two seconds.
    let lock = rusqlite::Connection::open(workspace.path().join("executions.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let stuck = tokio::spawn({
        let client = client.clone();
        let request = delivery(&server, KEY_A, "{}", None);
        async move { call(&client, request).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, json) = call(&client, health()).await.unwrap();
    assert_eq!(
        (status, json),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable"})
        )
    );
    lock.execute_batch("COMMIT").unwrap();
    let _ = stuck.await;
    let (status, _, _) = call(&client, health()).await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

const KEY_C: &str = "atk_tenant_a_new_key_00000000000000000000000";
const TRIGGER_SIGNED: &str = "9d7c1b0e-51a3-4c5e-8f6d-2a4b3c5d6e7f";
const WHSEC_OLD: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const WHSEC_NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A configuration with keys `b` and either `a` (before) or `c` (after), and a signed trigger
/// whose secret is `secret`.
fn reloadable_config(key_a_or_c: &str, secret: &str) -> String {
    format!(
        r#"
database = "executions.db"

{key_a_or_c}

[[keys]]
id = "b"
tenant = "globex"
env = "TEST_KEY_B"

[[triggers]]
id = "{TRIGGER_A}"
tenant = "acme"
source = "webhook"

[[triggers]]
id = "{TRIGGER_B}"
tenant = "globex"
source = "jira-automation"

[[triggers]]
id = "{TRIGGER_SIGNED}"
tenant = "acme"
source = "webhook"
[[triggers.secrets]]
id = "{secret}"
value = "{secret}"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_keys_triggers_and_secrets_under_load_and_refuses_a_bad_file() {
    let workspace = Workspace::new("");
    let config = workspace.path().join("config.toml");
    let key_a = "[[keys]]\nid = \"a\"\ntenant = \"acme\"\nenv = \"TEST_KEY_A\"".to_owned();
    let key_c = format!(
        "[[keys]]\nid = \"c\"\ntenant = \"acme\"\nsha256 = \"{}\"",
        agent_trigger::KeyDigest::of_token(KEY_C).to_hex()
    );
    std::fs::write(&config, reloadable_config(&key_a, WHSEC_OLD)).unwrap();
    let server = Server::start(&workspace).await;
    let client = client();
    let signed = |secret: &str| {
        let secret = agent_trigger::SigningSecret::new("s", secret).unwrap();
        let headers = agent_trigger::signature::sign(
            agent_trigger::Source::Webhook,
            &secret,
            b"{}",
            std::time::SystemTime::now(),
            &Uuid::now_v7().to_string(),
        )
        .unwrap();
        let mut request =
            Request::post(server.url(&format!("/api/trigger/webhook/{TRIGGER_SIGNED}")))
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
        request.headers_mut().extend(headers);
        request
    };
    let status_of = |request| {
        let client = client.clone();
        async move { call(&client, request).await.unwrap().0 }
    };
    assert_eq!(
        status_of(delivery(&server, KEY_A, "{}", None)).await,
        StatusCode::OK
    );
    assert_eq!(status_of(signed(WHSEC_OLD)).await, StatusCode::OK);

    // A load with the key that stays, through the reload.
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = tokio::spawn({
        let (client, url, running) = (
            client.clone(),
            server.url(&format!("/api/trigger/jira-automation/{TRIGGER_B}")),
            Arc::clone(&running),
        );
        async move {
            let mut statuses = Vec::new();
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                let request = Request::post(&url)
                    .header("authorization", format!("Bearer {KEY_B}"))
                    .body(Full::new(Bytes::from_static(b"{}")))
                    .unwrap();
                statuses.push(call(&client, request).await.map(|answer| answer.0));
            }
            statuses
        }
    });

    std::fs::write(&config, reloadable_config(&key_c, WHSEC_NEW)).unwrap();
    nix_kill(&server.child, "HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        if status_of(delivery(&server, KEY_C, "{}", None)).await == StatusCode::OK {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the new key never worked");
    assert_eq!(
        status_of(delivery(&server, KEY_A, "{}", None)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status_of(signed(WHSEC_NEW)).await, StatusCode::OK);
    assert_eq!(status_of(signed(WHSEC_OLD)).await, StatusCode::UNAUTHORIZED);

    // A file with an error is refused whole: the running configuration stays.
    std::fs::write(
        &config,
        format!("{}\nlissten = 1\n", reloadable_config(&key_a, WHSEC_OLD)),
    )
    .unwrap();
    nix_kill(&server.child, "HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        status_of(delivery(&server, KEY_C, "{}", None)).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(delivery(&server, KEY_A, "{}", None)).await,
        StatusCode::UNAUTHORIZED
    );

    running.store(false, std::sync::atomic::Ordering::SeqCst);
    let statuses = load.await.unwrap();
    assert!(
        statuses.len() > 10,
        "the load sent {} requests",
        statuses.len()
    );
    assert!(
        statuses
            .iter()
            .all(|status| matches!(status, Ok(StatusCode::OK))),
        "a request that should have passed failed during the reload: {:?}",
        statuses
            .iter()
            .filter(|status| !matches!(status, Ok(StatusCode::OK)))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_without_keys_tenants_or_bodies() {
    let (_probe, script) = agent_script("#!/bin/sh\ncat > /dev/null\nexit 0\n");
    let workspace = Workspace::new(&format!(
        "[executor]\ncommand = [\"{}\"]\n",
        script.display()
    ));
    let server = Server::start(&workspace).await;
    let client = client();
    let marker = "body-marker-7f3a";
    let mut ids = Vec::new();
    for n in 0..3 {
        let body = format!(r#"{{"type":"{marker}","n":{n}}}"#);
        let (status, _, json) = call(&client, delivery(&server, KEY_A, &body, None))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        ids.push(json["executionId"].as_str().unwrap().to_owned());
    }
    // Another tenant's key: 404.
    let (status, _, _) = call(&client, delivery(&server, KEY_B, "{}", None))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    for id in &ids {
        assert_eq!(
            wait_until_finished(&client, &server, id).await["status"],
            "done"
        );
    }

    let response = client
        .request(
            Request::get(server.url("/metrics"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(text.to_vec()).unwrap();
    for secret in [KEY_A, KEY_B, "acme", "globex", marker] {
        assert!(!text.contains(secret), "{secret} in the metrics:\n{text}");
    }
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap();
    let value = |sample: &prometheus_parse::Sample| match sample.value {
        prometheus_parse::Value::Counter(value)
        | prometheus_parse::Value::Gauge(value)
        | prometheus_parse::Value::Untyped(value) => value,
        _ => 0.0,
    };
    let total = |metric: &str, label: (&str, &str)| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|sample| sample.metric == metric && sample.labels.get(label.0) == Some(label.1))
            .map(value)
            .sum()
    };
    assert_eq!(
        total("agent_trigger_deliveries_total", ("status", "200")),
        3.0,
        "{text}"
    );
    assert_eq!(
        total("agent_trigger_deliveries_total", ("status", "404")),
        1.0,
        "{text}"
    );
    assert_eq!(
        total(
            "agent_trigger_executions_finished_total",
            ("status", "done")
        ),
        3.0,
        "{text}"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|sample| sample.metric == "agent_trigger_executions_running"),
        "{text}"
    );
    let queued = scrape
        .samples
        .iter()
        .find(|sample| sample.metric == "agent_trigger_executions_queued")
        .map(value);
    assert_eq!(queued, Some(0.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_past_retention_are_pruned_under_load_and_their_ids_freed() {
    let workspace = Workspace::new("retention_days = 7\n");
    // A first start creates the database; then 3 000 executions that finished 40 days ago.
    let server = Server::start(&workspace).await;
    drop(server);
    let database = workspace.path().join("executions.db");
    {
        let mut connection = rusqlite::Connection::open(&database).unwrap();
        let transaction = connection.transaction().unwrap();
        let old = (std::time::SystemTime::now() - Duration::from_secs(40 * 24 * 3600))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        for n in 0..3000 {
            let id = Uuid::now_v7().to_string();
            transaction
                .execute(
                    "INSERT INTO executions (id, trigger_id, tenant, source, delivery_id, caller_kind,
                         caller_id, caller_tenant, input, status, received_at, created_at, finished_at)
                     VALUES (?1, ?2, 'acme', 'webhook', ?3, 'key', 'a', 'acme', x'7b7d', 'done', ?4, ?4, ?4)",
                    rusqlite::params![id, TRIGGER_A, format!("old-{n}"), old],
                )
                .unwrap();
            transaction
                .execute(
                    "INSERT INTO delivery_keys (trigger_id, key, execution_id) VALUES (?1, ?2, ?3)",
                    rusqlite::params![TRIGGER_A, format!("key:old-{n}"), id],
                )
                .unwrap();
        }
        transaction.commit().unwrap();
    }
    let count = |sql: &str| -> i64 {
        rusqlite::Connection::open(&database)
            .unwrap()
            .query_row(sql, [], |row| row.get(0))
            .unwrap()
    };
    assert_eq!(count("SELECT count(*) FROM executions"), 3000);

    // Restarted, it prunes at once, while deliveries keep coming.
    let server = Server::start(&workspace).await;
    let client = client();
    let mut statuses = Vec::new();
    for n in 0..200 {
        let request = delivery(&server, KEY_A, "{}", Some(&format!("new-{n}")));
        statuses.push(call(&client, request).await.unwrap().0);
        if count("SELECT count(*) FROM executions WHERE delivery_id LIKE 'old-%'") == 0 && n > 20 {
            break;
        }
    }
    assert!(statuses.iter().all(|status| *status == StatusCode::OK));
    for _ in 0..100 {
        if count("SELECT count(*) FROM executions WHERE delivery_id LIKE 'old-%'") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        count("SELECT count(*) FROM executions WHERE delivery_id LIKE 'old-%'"),
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM delivery_keys WHERE key LIKE 'key:old-%'"),
        0
    );
    // A pruned delivery's id is new again; the recent ones are kept.
    let (status, headers, _) = call(&client, delivery(&server, KEY_A, "{}", Some("old-7")))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("idempotent-replayed").is_none());
    let (_, headers, _) = call(&client, delivery(&server, KEY_A, "{}", Some("new-0")))
        .await
        .unwrap();
    assert_eq!(headers["idempotent-replayed"], "true");
}

const RETRY_SCRIPT: &str = r#"#!/bin/sh
cat > /dev/null
marker="$OUT/$AGENT_TRIGGER_EXECUTION_ID.tried"
echo "attempt at $(date +%s)" >> "$marker.log"
case "$AGENT_TRIGGER_ACTION" in
  flaky) [ -e "$marker" ] && exit 0; touch "$marker"; exit 3 ;;
  *) exit 3 ;;
esac
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_with_backoff_until_done_or_failed() {
    let (_probe, script) = agent_script(RETRY_SCRIPT);
    let executor = format!(
        "[executor]\ncommand = [\"{}\"]\nmax_attempts = 3\nretry_backoff_secs = 1\nenv = [\"OUT\"]\n",
        script.display()
    );
    let workspace = Workspace::new(&executor);
    let server = Server::start(&workspace).await;
    let client = client();
    let mut ids = HashMap::new();
    for action in ["flaky", "broken"] {
        let body = format!(r#"{{"type":"{action}"}}"#);
        let (_, _, json) = call(&client, delivery(&server, KEY_A, &body, None))
            .await
            .unwrap();
        ids.insert(action, json["executionId"].as_str().unwrap().to_owned());
    }
    let finished = |id: String| {
        let (client, server) = (&client, &server);
        async move {
            // Three attempts with waits of about one and two seconds: well within this bound.
            for _ in 0..300 {
                let (_, _, json) = call(client, status_request(server, Some(KEY_A), &id))
                    .await
                    .unwrap();
                if !matches!(json["status"].as_str(), Some("queued" | "running")) {
                    return json;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("execution {id} did not finish");
        }
    };
    let flaky = finished(ids["flaky"].clone()).await;
    assert_eq!(
        (flaky["status"].as_str(), flaky["attempt"].as_u64()),
        (Some("done"), Some(2)),
        "{flaky}"
    );
    let broken = finished(ids["broken"].clone()).await;
    assert_eq!(
        (broken["status"].as_str(), broken["attempt"].as_u64()),
        (Some("failed"), Some(3)),
        "{broken}"
    );
    assert_eq!(broken["exitCode"], 3);
    // Each attempt ran once, and the waits grew: about 1 s, then about 2 s (a quarter either way).
    let log = std::fs::read_to_string(
        workspace
            .path()
            .join(format!("{}.tried.log", ids["broken"])),
    )
    .unwrap();
    let times: Vec<u64> = log
        .lines()
        .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(times.len(), 3, "{log}");
    assert!(times[2] - times[0] >= 2, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_a_crash_interrupted_gets_its_next_attempt_on_restart() {
    let (_probe, script) = agent_script(
        "#!/bin/sh\ncat > /dev/null\nmarker=\"$OUT/$AGENT_TRIGGER_EXECUTION_ID.started\"\n[ -e \"$marker\" ] && exit 0\necho $$ > \"$marker\"\nsleep 30\n",
    );
    let executor = format!(
        "[executor]\ncommand = [\"{}\"]\nmax_attempts = 2\nenv = [\"OUT\"]\n",
        script.display()
    );
    let workspace = Workspace::new(&executor);
    let mut server = Server::start(&workspace).await;
    let client = client();
    let (_, _, json) = call(&client, delivery(&server, KEY_A, "{}", None))
        .await
        .unwrap();
    let id = json["executionId"].as_str().unwrap().to_owned();
    let marker = workspace.path().join(format!("{id}.started"));
    for _ in 0..200 {
        if std::fs::read_to_string(&marker).is_ok_and(|text| text.ends_with('\n')) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_attempt: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    // The first attempt's command outlived the crash; end it here.
    let _ = std::process::Command::new("kill")
        .arg(first_attempt.to_string())
        .status();

    let server = Server::start(&workspace).await;
    let client = server_process::client();
    let json = wait_until_finished(&client, &server, &id).await;
    assert_eq!(
        (json["status"].as_str(), json["attempt"].as_u64()),
        (Some("done"), Some(2)),
        "{json}"
    );
}

/// A request to the executions API with `key`.
fn api(server: &Server, method: http::Method, path: &str, key: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(server.url(path))
        .header("authorization", format!("Bearer {key}"))
        .body(Full::default())
        .unwrap()
}

/// A call to the executions API with `key`: its status, headers and JSON.
async fn api_call(
    client: &HttpClient,
    server: &Server,
    method: http::Method,
    path: impl AsRef<str>,
    key: &str,
) -> (StatusCode, http::HeaderMap, Value) {
    call(client, api(server, method, path.as_ref(), key))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executions_api_lists_newest_first_by_page_and_honours_filters_and_scope() {
    const SCOPED_KEY: &str = "atk_tenant_a_scoped_list_key_000000000000000";
    const TRIGGER_C: &str = "4a1f9a36-94a5-4d7e-8f0e-7c2b1d3e5f60";
    let extra = format!(
        "[[keys]]\nid = \"scoped\"\ntenant = \"acme\"\nsha256 = \"{}\"\ntriggers = [\"{TRIGGER_C}\"]\n\n[[triggers]]\nid = \"{TRIGGER_C}\"\ntenant = \"acme\"\nsource = \"webhook\"\n",
        agent_trigger::KeyDigest::of_token(SCOPED_KEY).to_hex()
    );
    let workspace = Workspace::new(&extra);
    let server = Server::start(&workspace).await;
    let client = client();
    let mut on_a = Vec::new();
    for n in 0..5 {
        let (_, _, json) = call(
            &client,
            delivery(&server, KEY_A, &format!(r#"{{"type":"t{n}"}}"#), None),
        )
        .await
        .unwrap();
        on_a.push(json["executionId"].as_str().unwrap().to_owned());
    }
    let request = Request::post(server.url(&format!("/api/trigger/webhook/{TRIGGER_C}")))
        .header("authorization", format!("Bearer {SCOPED_KEY}"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let on_c = call(&client, request).await.unwrap().2["executionId"]
        .as_str()
        .unwrap()
        .to_owned();

    // Newest first, two at a time, following nextCursor.
    let mut seen = Vec::new();
    let mut path = "/api/executions?limit=2".to_owned();
    loop {
        let (status, _, page) = api_call(&client, &server, http::Method::GET, &path, KEY_A).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for execution in page["executions"].as_array().unwrap() {
            assert!(execution.get("output").is_none());
            seen.push(execution["executionId"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/executions?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let mut expected: Vec<String> = on_a.iter().cloned().chain([on_c.clone()]).collect();
    expected.reverse();
    assert_eq!(seen, expected);

    // Filters, and the scoped key's view.
    let (_, _, page) = api_call(
        &client,
        &server,
        http::Method::GET,
        &format!("/api/executions?triggerId={TRIGGER_C}"),
        KEY_A,
    )
    .await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 1);
    let (_, _, page) = api_call(
        &client,
        &server,
        http::Method::GET,
        "/api/executions?status=queued&limit=100",
        KEY_A,
    )
    .await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 6);
    let (_, _, page) = api_call(
        &client,
        &server,
        http::Method::GET,
        "/api/executions?status=done",
        KEY_A,
    )
    .await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 0);
    let (_, _, page) = api_call(
        &client,
        &server,
        http::Method::GET,
        "/api/executions",
        SCOPED_KEY,
    )
    .await;
    let scoped: Vec<_> = page["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["executionId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(scoped, std::slice::from_ref(&on_c));
    let (_, _, page) = api_call(
        &client,
        &server,
        http::Method::GET,
        &format!("/api/executions?triggerId={TRIGGER_A}"),
        SCOPED_KEY,
    )
    .await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 0);
    let (_, _, page) = api_call(
        &client,
        &server,
        http::Method::GET,
        "/api/executions",
        KEY_B,
    )
    .await;
    assert_eq!(
        page["executions"].as_array().unwrap().len(),
        0,
        "another tenant's key"
    );

    // Bad parameters are a JSON 400; no key is a 401.
    for query in [
        "limit=0",
        "limit=101",
        "limit=x",
        "status=sleeping",
        "triggerId=nope",
        "cursor=nope",
    ] {
        let (status, _, json) = api_call(
            &client,
            &server,
            http::Method::GET,
            &format!("/api/executions?{query}"),
            KEY_A,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(json["error"].is_string());
    }
    let request = Request::get(server.url("/api/executions"))
        .body(Full::default())
        .unwrap();
    assert_eq!(
        call(&client, request).await.unwrap().0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_a_queued_or_running_execution_and_replay_runs_the_same_input_again() {
    let (_probe, script) = agent_script(
        "#!/bin/sh\ninput=$(cat)\necho \"$input\" > \"$OUT/$AGENT_TRIGGER_EXECUTION_ID.in\"\nsleep 300 &\necho $! > \"$OUT/$AGENT_TRIGGER_EXECUTION_ID.background\"\ncase \"$AGENT_TRIGGER_ACTION\" in slow) sleep 300 ;; esac\n",
    );
    let executor = format!(
        "[executor]\ncommand = [\"{}\"]\nworkers = 1\nenv = [\"OUT\"]\n",
        script.display()
    );
    let workspace = Workspace::new(&executor);
    let server = Server::start(&workspace).await;
    let client = client();
    let deliver = |body: &'static str| {
        let request = delivery(&server, KEY_A, body, None);
        let client = client.clone();
        async move {
            call(&client, request).await.unwrap().2["executionId"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    // One worker: the slow one runs, the next waits queued behind it.
    let slow = deliver(r#"{"type":"slow"}"#).await;
    let marker = workspace.path().join(format!("{slow}.background"));
    for _ in 0..200 {
        if std::fs::read_to_string(&marker).is_ok_and(|text| text.ends_with('\n')) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queued = deliver(r#"{"type":"quick","n":1}"#).await;

    let (status, _, json) = api_call(
        &client,
        &server,
        http::Method::POST,
        &format!("/api/executions/{queued}/cancel"),
        KEY_A,
    )
    .await;
    assert_eq!(
        (status, json["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{json}"
    );
    let (status, _, json) = api_call(
        &client,
        &server,
        http::Method::POST,
        &format!("/api/executions/{slow}/cancel"),
        KEY_A,
    )
    .await;
    assert_eq!(
        (status, json["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{json}"
    );
    assert!(json["output"].as_str().unwrap().contains("cancelled"));
    let background: u32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_gone_soon(background, "after cancel").await;
    // Cancelling again changes nothing; another tenant's key sees nothing.
    let (status, _, json) = api_call(
        &client,
        &server,
        http::Method::POST,
        &format!("/api/executions/{slow}/cancel"),
        KEY_A,
    )
    .await;
    assert_eq!(
        (status, json["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    let (status, _, _) = api_call(
        &client,
        &server,
        http::Method::POST,
        &format!("/api/executions/{slow}/cancel"),
        KEY_B,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Replay: a new execution, the same input, and it runs.
    let (status, _, json) = api_call(
        &client,
        &server,
        http::Method::POST,
        &format!("/api/executions/{queued}/replay"),
        KEY_A,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["replayOf"], queued.as_str());
    let copy = json["executionId"].as_str().unwrap().to_owned();
    assert_ne!(copy, queued);
    assert_eq!(
        wait_until_finished(&client, &server, &copy).await["status"],
        "done"
    );
    let input = std::fs::read_to_string(workspace.path().join(format!("{copy}.in"))).unwrap();
    assert_eq!(input.trim(), r#"{"type":"quick","n":1}"#);
    let (status, _, _) = api_call(
        &client,
        &server,
        http::Method::POST,
        &format!("/api/executions/{copy}/replay"),
        KEY_B,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // An execution that ended otherwise cannot be cancelled.
    let (status, _, json) = api_call(
        &client,
        &server,
        http::Method::POST,
        &format!("/api/executions/{copy}/cancel"),
        KEY_A,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
}

#[tokio::test]
async fn a_triggers_rate_limit_answers_429_with_retry_after_and_spares_the_others() {
    const TRIGGER_R: &str = "2b5e8c1d-3f4a-4b6c-9d7e-8f9a0b1c2d3e";
    let workspace = Workspace::new(&format!(
        "[[triggers]]\nid = \"{TRIGGER_R}\"\ntenant = \"acme\"\nsource = \"webhook\"\nrate_limit = \"2/min\"\n"
    ));
    let server = Server::start(&workspace).await;
    let client = client();
    let to_limited = || {
        Request::post(server.url(&format!("/api/trigger/webhook/{TRIGGER_R}")))
            .header("authorization", format!("Bearer {KEY_A}"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    for _ in 0..2 {
        assert_eq!(call(&client, to_limited()).await.unwrap().0, StatusCode::OK);
    }
    let (status, headers, json) = call(&client, to_limited()).await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{json}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    // Another trigger of the same tenant and key is not affected.
    let (status, _, _) = call(&client, delivery(&server, KEY_A, "{}", None))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_commands_output_can_be_read_before_it_ends() {
    let (_probe, script) =
        agent_script("#!/bin/sh\ncat > /dev/null\necho 'step 1 of 2: working on it'\nsleep 300\n");
    let workspace = Workspace::new(&format!(
        "[executor]\ncommand = [\"{}\"]\n",
        script.display()
    ));
    let server = Server::start(&workspace).await;
    let client = client();
    let (_, _, json) = call(&client, delivery(&server, KEY_A, "{}", None))
        .await
        .unwrap();
    let id = json["executionId"].as_str().unwrap().to_owned();
    let mut seen = Value::Null;
    for _ in 0..100 {
        seen = call(&client, status_request(&server, Some(KEY_A), &id))
            .await
            .unwrap()
            .2;
        if seen["output"]
            .as_str()
            .is_some_and(|output| output.contains("working on it"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen["status"], "running", "{seen}");
    assert_eq!(seen["output"], "step 1 of 2: working on it\n");
    let (status, _, _) = api_call(
        &client,
        &server,
        http::Method::POST,
        &format!("/api/executions/{id}/cancel"),
        KEY_A,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_closed_stdout_does_not_stop_the_server() {
    let workspace = Workspace::new("");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Its output goes into a pipe whose reading end is already closed, as under `| head -0`.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-trigger"))
        .args(["serve", "--config"])
        .arg(workspace.path().join("config.toml"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("TEST_KEY_A", KEY_A)
        .env("TEST_KEY_B", KEY_B)
        .stdout(writer)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = client();
    let mut healthy = false;
    for _ in 0..100 {
        let request = Request::get(format!("http://127.0.0.1:{port}/healthz"))
            .body(Full::default())
            .unwrap();
        if let Ok((StatusCode::OK, _, _)) = call(&client, request).await {
            healthy = true;
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy, "the server never answered");
}

#[tokio::test]
async fn metrics_count_the_executions_waiting_in_the_queue() {
    let workspace = Workspace::new(""); // no executor: deliveries stay queued
    let server = Server::start(&workspace).await;
    let client = client();
    for _ in 0..2 {
        let (status, _, _) = call(&client, delivery(&server, KEY_A, "{}", None))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    let response = client
        .request(
            Request::get(server.url("/metrics"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let text = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(text.to_vec()).unwrap();
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap();
    let queued = scrape
        .samples
        .iter()
        .find(|sample| sample.metric == "agent_trigger_executions_queued")
        .map(|sample| sample.value.clone());
    assert_eq!(queued, Some(prometheus_parse::Value::Gauge(2.0)), "{text}");
}

#[tokio::test]
async fn log_lines_reach_stderr_and_the_last_ones_are_written_at_shutdown() {
    use tokio::io::AsyncReadExt;
    let workspace = Workspace::new("");
    let server = Server::start_logging_to(
        &workspace,
        &[("AGENT_TRIGGER_LOG_FORMAT", "json")],
        std::process::Stdio::piped(),
    )
    .await;
    let (status, _, json) = call(
        &client(),
        delivery(&server, KEY_A, r#"{"type":"logged"}"#, None),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    let id = json["executionId"].as_str().unwrap().to_owned();
    let Server { mut child, .. } = server;
    nix_kill(&child, "TERM");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(child.wait().await.unwrap().success());
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line["message"] == "configuration loaded"),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|line| line.to_string().contains(&id)),
        "the delivery's line is missing:\n{stderr}"
    );
    assert!(
        lines.iter().any(|line| line["message"] == "shutting down"),
        "{stderr}"
    );
    assert!(!stderr.contains(KEY_A), "a key reached the log");
}
