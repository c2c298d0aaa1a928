//! The command the executor runs cannot reach the server's secrets (contract §7.1): not through
//! `/proc/<server>/environ`, not through the configuration file, not through the database; as
//! another user, or sandboxed as the server's own. Through the real binary.
#![cfg(all(feature = "server", target_os = "linux"))]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agent_trigger_testkit::server_process::*;
use http::StatusCode;
use tokio::process::Command;
use uuid::Uuid;

/// A signing secret written in the configuration file itself.
const FILE_SECRET: &str = "whsec_ZmlsZS1zZWNyZXQtNGYxZDljMmU=";
/// A secret only the server's environment holds.
const ENV_SECRET: &str = "env-secret-8a7b6c5d";

/// Tries every route to a secret and writes where it may; prints what it got.
const PROBE: &str = r#"#!/bin/sh
echo "uid=$(id -u) groups=$(id -G)"
echo "environ: $(cat /proc/$PPID/environ 2>&1 | tr '\0' ' ')"
echo "config: $(cat "$CONFIG_FILE" 2>&1)"
echo "database: $(cat "$DATABASE_FILE" 2>&1 | tr -cd '[:print:]')"
echo scratch > "$TMPDIR/note" && echo "scratch: $(cat "$TMPDIR/note")"
echo "scratch-mode: $(stat -c '%a %U' "$TMPDIR") in $(stat -c '%a %U' "$TMPDIR/..")"
echo "outside: $( (echo x > "$OUTSIDE/escaped") 2>&1)"
"#;

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// A directory any account can read, holding the probe and a configuration with a secret in
/// it; `executor` is the `[executor]` table's extra lines.
struct Setup {
    dir: PathBuf,
}

impl Setup {
    fn new(executor_lines: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("agent-trigger-contain-{}", Uuid::now_v7()));
        std::fs::create_dir_all(dir.join("agent")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        for sub in ["", "agent", "data", "outside"] {
            std::fs::set_permissions(dir.join(sub), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        // Anyone may write here: only the sandbox stops the command.
        std::fs::set_permissions(dir.join("outside"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        let probe = dir.join("agent/probe.sh");
        std::fs::write(&probe, PROBE).unwrap();
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = format!(
            r#"
database = "executions.db"

[executor]
command = ["{probe}"]
environment = {{ CONFIG_FILE = "{config}", DATABASE_FILE = "{database}", OUTSIDE = "{outside}" }}
{executor_lines}

[[keys]]
id = "a"
tenant = "acme"
env = "TEST_KEY_A"

[[triggers]]
id = "{TRIGGER_A}"
tenant = "acme"
source = "webhook"
[[triggers.secrets]]
id = "in-file"
value = "{FILE_SECRET}"
"#,
            probe = probe.display(),
            config = dir.join("data/config.toml").display(),
            database = dir.join("data/executions.db").display(),
            outside = dir.join("outside").display(),
        );
        let file = dir.join("data/config.toml");
        std::fs::write(&file, config).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        Setup { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("data/config.toml")
    }

    /// Gives the workspace to `account` (the server then runs as it).
    fn give_to(&self, account: &str) {
        let status = std::process::Command::new("chown")
            .args(["-R", account])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `program` on the setup's configuration (as `run_as` when given: the test is root),
/// and returns it with its address, or the error it exited with.
async fn start(
    program: &Path,
    setup: &Setup,
    run_as: Option<&str>,
) -> Result<(tokio::process::Child, String), String> {
    let mut command = match run_as {
        Some(account) => {
            let group = std::process::Command::new("id")
                .args(["-g", account])
                .output()
                .unwrap()
                .stdout;
            let group = String::from_utf8(group).unwrap();
            let mut command = Command::new("setpriv");
            command
                .args([
                    "--reuid",
                    account,
                    "--regid",
                    group.trim(),
                    "--clear-groups",
                    "--",
                ])
                .arg(program);
            command
        }
        None => Command::new(program),
    };
    let mut child = command
        .args(["serve", "--config"])
        .arg(setup.config())
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(setup.dir.join("data"))
        .env("TEST_KEY_A", KEY_A)
        .env("ENV_SECRET", ENV_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    match listening_address(&mut child).await {
        Some(address) => Ok((child, address)),
        None => {
            let mut stderr = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(
                child.stderr.as_mut().unwrap(),
                &mut stderr,
            )
            .await;
            Err(stderr)
        }
    }
}

/// Sends one delivery and returns the finished execution's output.
async fn probe_output(address: &str) -> String {
    let server = Server {
        child: Command::new("true").spawn().unwrap(),
        address: address.to_owned(),
    };
    let client = client();
    let (status, _, json) = call(&client, delivery(&server, KEY_A, "{}", None))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{json}");
    let id = json["executionId"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        let (_, _, execution) = call(&client, status_request(&server, Some(KEY_A), &id))
            .await
            .unwrap();
        if execution["status"] != "queued" && execution["status"] != "running" {
            assert_eq!(execution["status"], "done", "{execution}");
            return execution["output"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the probe did not finish");
}

/// What no route may have printed.
fn assert_no_secret(output: &str) {
    for secret in [KEY_A, FILE_SECRET, ENV_SECRET] {
        assert!(!output.contains(secret), "{secret} leaked:\n{output}");
    }
    for line in ["environ: ", "config: "] {
        let shown = output
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("no {line} line in\n{output}"));
        assert!(shown.contains("Permission denied"), "{line}{shown}");
    }
    assert!(output.contains("scratch: scratch"), "{output}");
}

/// Copies the server, and its launcher when `with_launcher`, where any account can run them
/// (the build directory may be private); returns the server's copy.
fn public_program(setup: &Setup, with_launcher: bool) -> PathBuf {
    let mut binaries = vec![program()];
    if with_launcher {
        binaries.push(program().with_file_name("agent-trigger-exec"));
    }
    for binary in binaries {
        let copy = setup.dir.join("agent").join(binary.file_name().unwrap());
        std::fs::copy(&binary, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    setup.dir.join("agent/agent-trigger")
}

fn skip(reason: &str) {
    assert!(
        std::env::var_os("CI").is_none_or(|ci| ci != "true"),
        "under CI this must run: {reason}"
    );
    eprintln!("SKIPPED: {reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_server_refuses_to_run_commands_as_root_unless_told() {
    if !running_as_root() {
        return skip("the server is not root here");
    }
    let setup = Setup::new("");
    let error = start(&program(), &setup, None).await.unwrap_err();
    assert!(error.contains("names no user"), "{error}");
    // `check` says the same.
    let checked = std::process::Command::new(program())
        .args(["check", "--config"])
        .arg(setup.config())
        .env("TEST_KEY_A", KEY_A)
        .output()
        .unwrap();
    assert!(!checked.status.success());
    assert!(String::from_utf8_lossy(&checked.stderr).contains("names no user"));

    let setup = Setup::new("user = \"root\"");
    let (_server, address) = start(&program(), &setup, None).await.unwrap();
    let output = probe_output(&address).await;
    assert!(output.contains("uid=0"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_run_as_another_user_reaches_no_secret_and_still_works() {
    if !running_as_root() {
        return skip("switching users needs root");
    }
    let setup = Setup::new("user = \"nobody\"");
    // A configuration holding a secret that the command's account could read is refused.
    std::fs::set_permissions(setup.config(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = start(&program(), &setup, None).await.unwrap_err();
    assert!(
        error.contains("config.toml is readable by [executor] user \"nobody\""),
        "{error}"
    );
    std::fs::set_permissions(setup.config(), std::fs::Permissions::from_mode(0o600)).unwrap();

    let (_server, address) = start(&program(), &setup, None).await.unwrap();
    let output = probe_output(&address).await;
    assert!(output.contains("uid=65534 groups=65534\n"), "{output}");
    assert_no_secret(&output);
    // Its scratch directory is its own, inside one only the server writes in.
    assert!(
        output.contains("scratch-mode: 700 nobody in 711 root"),
        "{output}"
    );
    let database = output
        .lines()
        .find(|l| l.starts_with("database: "))
        .unwrap();
    assert!(database.contains("Permission denied"), "{database}");
}

/// Without `agent-trigger-exec` beside it, the server's own binary launches the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_run_as_another_user_starts_where_the_launcher_is_not_installed() {
    if !running_as_root() {
        return skip("switching users needs root");
    }
    let setup = Setup::new("user = \"nobody\"");
    let server = public_program(&setup, false);
    assert!(!server.with_file_name("agent-trigger-exec").exists());
    let (_server, address) = start(&server, &setup, None).await.unwrap();
    let output = probe_output(&address).await;
    assert!(output.contains("uid=65534 groups=65534\n"), "{output}");
    assert_no_secret(&output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_command_of_the_servers_own_user_reaches_no_secret_and_writes_only_where_it_may()
 {
    let setup = Setup::new("sandbox = \"landlock\"");
    // As root, the server itself runs as an ordinary account: the case the sandbox is for.
    let run_as = running_as_root().then_some("nobody");
    let program = if run_as.is_some() {
        setup.give_to("nobody");
        public_program(&setup, true)
    } else {
        program()
    };
    let (_server, address) = match start(&program, &setup, run_as).await {
        Ok(started) => started,
        Err(error) if error.contains("does not enforce Landlock") => {
            return skip("this kernel has no Landlock");
        }
        Err(error) => panic!("{error}"),
    };
    let output = probe_output(&address).await;
    assert_no_secret(&output);
    let database = output
        .lines()
        .find(|l| l.starts_with("database: "))
        .unwrap();
    assert!(database.contains("Permission denied"), "{database}");
    let outside = output.lines().find(|l| l.starts_with("outside: ")).unwrap();
    assert!(outside.contains("Permission denied"), "{outside}");
    assert!(!setup.dir.join("outside/escaped").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_whose_allow_list_holds_the_database_is_refused() {
    // The command kept beside the database: its directory would be in the allow-list.
    let setup = Setup::new("sandbox = \"landlock\"");
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let beside = setup.dir.join("data/probe.sh");
    std::fs::copy(setup.dir.join("agent/probe.sh"), &beside).unwrap();
    std::fs::write(
        setup.config(),
        config.replace(
            &setup.dir.join("agent/probe.sh").display().to_string(),
            &beside.display().to_string(),
        ),
    )
    .unwrap();
    let run_as = running_as_root().then_some("nobody");
    let program = if run_as.is_some() {
        setup.give_to("nobody");
        public_program(&setup, true)
    } else {
        program()
    };
    let error = start(&program, &setup, run_as).await.unwrap_err();
    if error.contains("does not enforce Landlock") {
        return skip("this kernel has no Landlock");
    }
    assert!(
        error.contains("would let commands reach") && error.contains("/data/"),
        "{error}"
    );

    // The same for a database that does not exist yet, beside the command.
    std::fs::write(
        setup.config(),
        config.replace(
            "database = \"executions.db\"",
            &format!(
                "database = \"{}\"",
                setup.dir.join("agent/executions.db").display()
            ),
        ),
    )
    .unwrap();
    if run_as.is_some() {
        setup.give_to("nobody");
    }
    let error = start(&program, &setup, run_as).await.unwrap_err();
    assert!(
        error.contains("would let commands reach") && error.contains("agent/executions.db"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_would_read_a_secret_from_a_variable_the_commands_get_is_refused() {
    const SHARED: &str = "atk_shared_with_every_command_000000000000";
    const OTHER: &str = "atk_from_a_variable_of_its_own_0000000000";
    let workspace = Workspace::new("[executor]\ncommand = [\"/bin/true\"]\nenv = [\"SHARED\"]");
    let server = Server::start_with(&workspace, &[("SHARED", SHARED), ("OTHER", OTHER)]).await;
    let file = workspace.path().join("config.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    let with_key = |variable: &str| {
        format!("{original}\n[[keys]]\nid = \"added\"\ntenant = \"acme\"\nenv = \"{variable}\"\n")
    };
    let reload_and_try = |token: &'static str| {
        let pid = server.child.id().unwrap().to_string();
        let server = &server;
        async move {
            let status = std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap();
            assert!(status.success());
            let mut last = StatusCode::UNAUTHORIZED;
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                last = call(&client(), delivery(server, token, "{}", None))
                    .await
                    .unwrap()
                    .0;
                if last == StatusCode::OK {
                    break;
                }
            }
            last
        }
    };

    std::fs::write(&file, with_key("SHARED")).unwrap();
    assert_eq!(reload_and_try(SHARED).await, StatusCode::UNAUTHORIZED);
    // Reloads themselves work: the same key from a variable of its own is taken.
    std::fs::write(&file, with_key("OTHER")).unwrap();
    assert_eq!(reload_and_try(OTHER).await, StatusCode::OK);
}
