//! The real `agent-trigger` binary in a temporary workspace, and a client for it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

pub const KEY_A: &str = "atk_tenant_a_test_key_0000000000000000000000";
pub const KEY_B: &str = "atk_tenant_b_test_key_0000000000000000000000";
pub const TRIGGER_A: &str = "6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11";
pub const TRIGGER_B: &str = "0b4d7e0e-2d8c-4f43-9a51-3e1f6c7a9b20";

/// A temporary directory with a configuration file, removed when dropped.
pub struct Workspace(PathBuf);

impl Workspace {
    /// A workspace whose configuration holds `executor` (an `[executor]` table, or nothing).
    /// An executor without `user` runs its commands as the test's own account: as root (CI),
    /// `user = "root"`, which a root server requires to be said.
    pub fn new(executor: &str) -> Self {
        let executor = as_the_tests_own_account(executor);
        let dir = std::env::temp_dir().join(format!("agent-trigger-server-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            r#"
database = "executions.db"

{executor}

[[keys]]
id = "a"
tenant = "acme"
env = "TEST_KEY_A"

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
"#
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        Workspace(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `executor` with `user = "root"` added to its `[executor]` table when the test runs as root
/// and the table names no user.
fn as_the_tests_own_account(executor: &str) -> String {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0");
    let names_a_user = executor
        .lines()
        .any(|line| line.trim_start().starts_with("user"));
    if is_root && !names_a_user && executor.contains("[executor]") {
        executor.replacen("[executor]", "[executor]\nuser = \"root\"", 1)
    } else {
        executor.to_owned()
    }
}

/// The `agent-trigger` binary cargo built for the running test: `CARGO_BIN_EXE_agent-trigger`
/// when cargo sets it at run time, as recent versions do, else where cargo puts a package's
/// binaries, one directory above the test's own (`target/<profile>/deps/..`).
pub fn program() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_agent-trigger") {
        return path.into();
    }
    let test = std::env::current_exe().expect("the test knows its own path");
    let profile = test
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    profile.join(format!("agent-trigger{}", std::env::consts::EXE_SUFFIX))
}

/// A running server and the address it listens on.
pub struct Server {
    pub child: Child,
    pub address: String,
}

impl Server {
    pub async fn start(workspace: &Workspace) -> Server {
        Self::start_with(workspace, &[]).await
    }

    /// Starts the server with extra environment variables.
    pub async fn start_with(workspace: &Workspace, env: &[(&str, &str)]) -> Server {
        Self::start_logging_to(workspace, env, Stdio::null()).await
    }

    /// Starts the server with extra environment variables, its log going to `stderr`.
    pub async fn start_logging_to(
        workspace: &Workspace,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Server {
        Self::start_through(&[], workspace, env, stderr).await
    }

    /// Starts the server through `launcher` (a program and its first arguments, which ends by
    /// running the rest of its arguments: `["sh", "-c", "trap '' XFSZ; exec \"$@\"", "sh"]`),
    /// or directly when it is empty. The child is the launcher: it should `exec`.
    pub async fn start_through(
        launcher: &[&str],
        workspace: &Workspace,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Server {
        let mut command = match launcher.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program());
                command
            }
            None => Command::new(program()),
        };
        let mut child = command
            .args(["serve", "--config"])
            .arg(workspace.path().join("config.toml"))
            .args(["--listen", "127.0.0.1:0"])
            .env("TEST_KEY_A", KEY_A)
            .env("TEST_KEY_B", KEY_B)
            .env("OUT", workspace.path())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let address = listening_address(&mut child)
            .await
            .expect("the server exited before listening");
        Server { child, address }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

/// The address a server started with `--listen 127.0.0.1:0` prints once it listens, read from
/// its standard output (which must be piped, and is taken); `None` when it exits first.
/// Panics after 30 s of neither.
pub async fn listening_address(child: &mut Child) -> Option<String> {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(address) = line.strip_prefix("agent-trigger listening on http://") {
                return Some(address.to_owned());
            }
        }
        None
    })
    .await
    .expect("the server listens or exits within 30 s")
}

pub use crate::client::HttpClient;

/// An HTTP/1.1 client.
pub fn client() -> HttpClient {
    crate::client::http1()
}

pub async fn call(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, http::HeaderMap, Value), String> {
    let response = client
        .request(request)
        .await
        .map_err(|error| error.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    let json = serde_json::from_slice(&body).map_err(|error| format!("{error}: {body:?}"))?;
    Ok((parts.status, parts.headers, json))
}

pub fn delivery(
    server: &Server,
    key: &str,
    body: &str,
    idempotency_key: Option<&str>,
) -> Request<Full<Bytes>> {
    let mut request = Request::post(server.url(&format!("/api/trigger/webhook/{TRIGGER_A}")))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json");
    if let Some(idempotency_key) = idempotency_key {
        request = request.header("idempotency-key", idempotency_key);
    }
    request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

pub fn status_request(server: &Server, key: Option<&str>, id: &str) -> Request<Full<Bytes>> {
    let mut request = Request::get(server.url(&format!("/api/executions/{id}")));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    request.body(Full::default()).unwrap()
}
