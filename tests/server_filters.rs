//! §9 through the real `agent-trigger` binary: a trigger's filter, input and prompt from the
//! configuration file, what the command receives, the executions API, `check` and `SIGHUP`.
#![cfg(all(feature = "server", unix))]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agent_trigger_testkit::server_process::listening_address;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use uuid::Uuid;

const KEY: &str = "atk_filters_test_key_000000000000000000000000";
const TRIGGER: &str = "3a9c7a1e-5b2f-4c1d-8e6f-7a8b9c0d1e2f";

/// The command: its input, its prompt and its environment, each into a file named after the
/// execution.
const AGENT: &str = r#"#!/bin/sh
cat > "$OUT/$AGENT_TRIGGER_EXECUTION_ID.in"
printf '%s' "$AGENT_TRIGGER_PROMPT" > "$OUT/$AGENT_TRIGGER_EXECUTION_ID.prompt"
echo done
"#;

/// A temporary directory with the command and a configuration, removed when dropped.
struct Workspace(PathBuf);

impl Workspace {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("agent-trigger-filters-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let agent = dir.join("agent.sh");
        std::fs::write(&agent, AGENT).unwrap();
        std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        Workspace(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn config(&self) -> PathBuf {
        self.0.join("config.toml")
    }

    /// Writes the configuration with these rules on the trigger.
    fn write(&self, rules: &str) {
        // A server running as root must name the account its commands run as.
        let user = if running_as_root() {
            "user = \"root\"\n"
        } else {
            ""
        };
        let config = format!(
            r#"database = "executions.db"

[executor]
command = ["{agent}"]
env = ["OUT"]
{user}
[[keys]]
id = "ci"
tenant = "acme"
env = "TEST_KEY"

[[triggers]]
id = "{TRIGGER}"
tenant = "acme"
source = "jira"
{rules}
"#,
            agent = self.0.join("agent.sh").display(),
        );
        std::fs::write(self.config(), config).unwrap();
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

struct Server {
    child: Child,
    address: String,
}

impl Server {
    async fn start(workspace: &Workspace) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agent-trigger"))
            .args(["serve", "--config"])
            .arg(workspace.config())
            .args(["--listen", "127.0.0.1:0"])
            .env("TEST_KEY", KEY)
            .env("OUT", workspace.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let address = listening_address(&mut child)
            .await
            .expect("the server exited before listening");
        Server { child, address }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn deliver(&self, client: &HttpClient, body: &Value) -> Value {
        let request = Request::post(self.url(&format!("/api/trigger/jira/{TRIGGER}")))
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let (status, json) = call(client, request).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json
    }

    async fn execution(&self, client: &HttpClient, id: &str) -> Value {
        let request = Request::get(self.url(&format!("/api/executions/{id}")))
            .header("authorization", format!("Bearer {KEY}"))
            .body(Full::default())
            .unwrap();
        call(client, request).await.1
    }

    async fn finished(&self, client: &HttpClient, id: &str) -> Value {
        for _ in 0..400 {
            let execution = self.execution(client, id).await;
            if execution["status"] != "queued" && execution["status"] != "running" {
                return execution;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("execution {id} did not finish");
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn call(client: &HttpClient, request: Request<Full<Bytes>>) -> (StatusCode, Value) {
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

const RULES: &str = r#"filter = 'action == "jira:issue_created" && body.issue.fields.priority.name in ["High", "Highest"]'
input = '{"key": body.issue.key, "summary": body.issue.fields.summary}'
prompt = """
Triage {{ body.issue.key }}: {{ body.issue.fields.summary }}
Labels: {{ body.issue.fields.labels | join(", ") }}"""
"#;

fn issue(priority: &str) -> Value {
    json!({
        "webhookEvent": "jira:issue_created",
        "issue": {"key": "SEC-9", "fields": {
            "summary": "Tokens <leak> & \"more\"",
            "priority": {"name": priority},
            "labels": ["auth", "api"],
        }},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_gets_the_shaped_input_and_the_prompt_and_the_api_shows_it() {
    let workspace = Workspace::new();
    workspace.write(RULES);
    let mut server = Server::start(&workspace).await;
    let client = Client::builder(TokioExecutor::new()).build_http();

    let skipped = server.deliver(&client, &issue("Low")).await;
    assert_eq!(
        skipped,
        json!({"executionId": "skipped", "message": "filtered out: the filter is false", "action": "jira:issue_created"})
    );

    let started = server.deliver(&client, &issue("High")).await;
    let id = started["executionId"].as_str().unwrap().to_owned();
    let execution = server.finished(&client, &id).await;
    assert_eq!(execution["status"], "done", "{execution}");
    let prompt = "Triage SEC-9: Tokens <leak> & \"more\"\nLabels: auth, api";
    assert_eq!(execution["prompt"], prompt);

    let input: Value =
        serde_json::from_slice(&std::fs::read(workspace.path().join(format!("{id}.in"))).unwrap())
            .unwrap();
    assert_eq!(
        input,
        json!({"key": "SEC-9", "summary": "Tokens <leak> & \"more\""})
    );
    assert_eq!(
        std::fs::read_to_string(workspace.path().join(format!("{id}.prompt"))).unwrap(),
        prompt
    );
    server.child.start_kill().unwrap();
}

#[tokio::test]
async fn check_refuses_a_bad_expression_at_its_file_line_and_column() {
    let workspace = Workspace::new();
    workspace.write("filter = 'body.issue.key == \"A\" && bodyy.x'\n");
    let output = Command::new(env!("CARGO_BIN_EXE_agent-trigger"))
        .args(["check", "--config"])
        .arg(workspace.config())
        .env("TEST_KEY", KEY)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let config = std::fs::read_to_string(workspace.config()).unwrap();
    let line = 1 + config
        .lines()
        .position(|line| line.starts_with("filter"))
        .unwrap();
    let expected = format!(
        "{}:{line}:36: filter: unknown name `bodyy`",
        workspace.config().display()
    );
    assert!(stderr.contains(&expected), "{expected} not in:\n{stderr}");

    workspace.write("prompt = \"{% for x in body %}\"\n");
    let output = Command::new(env!("CARGO_BIN_EXE_agent-trigger"))
        .args(["check", "--config"])
        .arg(workspace.config())
        .env("TEST_KEY", KEY)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(": prompt: "), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_a_filter_in_and_refuses_a_bad_one() {
    let workspace = Workspace::new();
    workspace.write("filter = 'body.n == 1'\n");
    let mut server = Server::start(&workspace).await;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let two = json!({"n": 2});
    assert_eq!(
        server.deliver(&client, &two).await["executionId"],
        "skipped"
    );

    workspace.write("filter = 'body.n == 2'\n");
    hangup(&server.child);
    let mut swapped = false;
    for _ in 0..100 {
        if server.deliver(&client, &two).await["executionId"] != "skipped" {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(swapped, "the new filter never took effect");

    // A filter that does not compile is refused whole: the running one stays.
    workspace.write("filter = 'body.n =='\n");
    hangup(&server.child);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_ne!(
        server.deliver(&client, &two).await["executionId"],
        "skipped"
    );
    assert_eq!(
        server.deliver(&client, &json!({"n": 1})).await["message"],
        "filtered out: the filter is false"
    );
    server.child.start_kill().unwrap();
}

fn hangup(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
