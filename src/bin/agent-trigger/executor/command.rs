//! One execution of the configured command: its cleared environment and the execution's
//! variables, its process group, the input on stdin, the timeout, and the tail of its output,
//! recorded while it runs and kept with the result.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use agent_trigger::ExecutionId;
use agent_trigger::queue::{ClaimedExecution, ExecutionQueue, ExecutionResult, ExecutionStatus};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::config::{BASE_ENVIRONMENT, ExecutorConfig, Sandbox};
#[cfg(target_os = "linux")]
use crate::launch::{self, Launch};

/// How much output is kept per execution.
pub const OUTPUT_TAIL_BYTES: usize = 64 * 1024;

/// How often a running command's output so far is recorded, for the executions API to show.
const OUTPUT_EVERY: Duration = Duration::from_secs(1);

/// Runs one execution to its end: exit, timeout, or shutdown.
pub async fn run<Q: ExecutionQueue + Clone>(
    queue: &Q,
    config: &ExecutorConfig,
    claimed: ClaimedExecution,
    stop: &mut watch::Receiver<bool>,
    cancel: &Notify,
) -> ExecutionResult {
    let delivery = &claimed.delivery;
    let scratch = match Scratch::for_command(config, &claimed.id) {
        Ok(scratch) => scratch,
        Err(error) => {
            let message = format!("[agent-trigger] could not make a scratch directory: {error}\n");
            return ExecutionResult::new(ExecutionStatus::Error, None, message.into_bytes());
        }
    };
    let mut command = contained_command(config, scratch.path());
    command.env_clear();
    for name in BASE_ENVIRONMENT {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    if let Some(account) = &config.user {
        command.env("HOME", &account.home);
    }
    if let Some(scratch) = scratch.path() {
        command.current_dir(scratch).env("TMPDIR", scratch);
    }
    #[cfg(unix)]
    command.process_group(0);
    let spawned = command
        .envs(config.environment.iter().map(|(name, value)| (name, value)))
        .env("AGENT_TRIGGER_EXECUTION_ID", claimed.id.to_string())
        .env("AGENT_TRIGGER_SOURCE", delivery.source.as_str())
        .env("AGENT_TRIGGER_TRIGGER_ID", delivery.trigger_id.to_string())
        .env(
            "AGENT_TRIGGER_ACTION",
            delivery.action.as_deref().unwrap_or(""),
        )
        .env(
            "AGENT_TRIGGER_DELIVERY_ID",
            delivery.delivery_id.as_deref().unwrap_or(""),
        )
        // The trigger's rendered prompt: no control character but newline and tab, at most
        // 64 KiB (what one environment string may hold, with room to spare).
        .env(
            "AGENT_TRIGGER_PROMPT",
            delivery.prompt.as_deref().unwrap_or(""),
        )
        // How many deliveries of its subject this execution stands for (more than one when
        // others joined it while it waited out its debounce); the input is the newest's.
        .env("AGENT_TRIGGER_DELIVERIES", claimed.deliveries.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            let message = format!(
                "[agent-trigger] could not start {:?}: {error}\n",
                config.command[0]
            );
            return ExecutionResult::new(ExecutionStatus::Error, None, message.into_bytes());
        }
    };

    let tail = Arc::new(Mutex::new(Tail::default()));
    let mut readers = JoinSet::new();
    if let Some(stdout) = child.stdout.take() {
        readers.spawn(collect(stdout, Arc::clone(&tail)));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.spawn(collect(stderr, Arc::clone(&tail)));
    }
    if let Some(mut stdin) = child.stdin.take() {
        let input = delivery.input.clone();
        // A command that does not read its input is not an error: ignore a closed pipe.
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        });
    }

    let recording = tokio::spawn(record_output(
        queue.clone(),
        claimed.id.clone(),
        Arc::clone(&tail),
    ));
    let group = ProcessGroup::of(&child);
    let ended = tokio::select! {
        status = child.wait() => Ended::Exited(status),
        () = tokio::time::sleep(config.timeout) => Ended::TimedOut,
        _ = stop.wait_for(|stop| *stop) => Ended::Stopped,
        () = cancel.notified() => Ended::Cancelled,
        // Asked through another server sharing the queue.
        () = queue.cancel_requested(&claimed.id) => Ended::Cancelled,
    };
    recording.abort();
    // Whatever the command left behind goes with it; then the command itself, if it is still
    // there (where process groups are unknown, it is all there is to end).
    group.end();
    if !matches!(ended, Ended::Exited(_)) {
        let _ = child.kill().await;
    }
    // The pipes close when the command and anything it started are gone; do not wait forever
    // on a grandchild that kept them open.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    let mut output = std::mem::take(&mut *tail.lock().unwrap_or_else(PoisonError::into_inner));

    match ended {
        Ended::Exited(Ok(status)) if status.success() => {
            ExecutionResult::new(ExecutionStatus::Done, status.code(), output.into_bytes())
        }
        Ended::Exited(Ok(status)) => {
            if status.code().is_none() {
                output.push(b"[agent-trigger] the command was killed by a signal\n");
            }
            ExecutionResult::new(ExecutionStatus::Error, status.code(), output.into_bytes())
        }
        Ended::Exited(Err(error)) => {
            output.push(
                format!("[agent-trigger] waiting for the command failed: {error}\n").as_bytes(),
            );
            ExecutionResult::new(ExecutionStatus::Error, None, output.into_bytes())
        }
        Ended::TimedOut => {
            output.push(
                format!(
                    "[agent-trigger] killed after the {} s timeout\n",
                    config.timeout.as_secs()
                )
                .as_bytes(),
            );
            ExecutionResult::new(ExecutionStatus::Error, None, output.into_bytes())
        }
        Ended::Cancelled => {
            output.push(b"[agent-trigger] cancelled\n");
            ExecutionResult::new(ExecutionStatus::Cancelled, None, output.into_bytes())
        }
        Ended::Stopped => {
            output.push(b"[agent-trigger] interrupted: the server is shutting down\n");
            ExecutionResult::new(ExecutionStatus::Interrupted, None, output.into_bytes())
        }
    }
}

/// The command as configured. Run as `[executor] user` or inside the sandbox, it is started
/// through the launcher (see `launch.rs`), else directly; either way by `posix_spawn` rather
/// than a fork of the server, which std does only for a program named by a path: one found on
/// `PATH` is looked up here, on the `PATH` the command gets.
fn contained_command(config: &ExecutorConfig, scratch: Option<&Path>) -> Command {
    // The program is found before the command moves to its scratch directory.
    let program = match scratch {
        Some(_) if config.command[0].contains('/') => std::path::absolute(&config.command[0])
            .unwrap_or_else(|_| config.command[0].clone().into()),
        _ => PathBuf::from(&config.command[0]),
    };
    #[cfg(target_os = "linux")]
    {
        let launch = Launch {
            account: config
                .user
                .as_ref()
                .map(|account| (account.uid, account.gid)),
            sandbox: match (config.sandbox, scratch) {
                (Sandbox::Landlock, Some(scratch)) => {
                    Some(crate::containment::allow_list(config, scratch))
                }
                _ => None,
            },
            command: std::iter::once(program.clone().into_os_string())
                .chain(config.command[1..].iter().map(OsString::from))
                .collect(),
        };
        if launch.account.is_some() || launch.sandbox.is_some() {
            let (launcher, subcommand) = launcher();
            let mut command = Command::new(launcher);
            command.args(subcommand).args(launch.to_arguments());
            return command;
        }
    }
    let mut command = Command::new(found_on_path(program, command_path(config)));
    command.args(&config.command[1..]);
    #[cfg(all(unix, not(target_os = "linux")))]
    if let Some(account) = &config.user {
        // As root, std clears the supplementary groups before it switches.
        command.uid(account.uid).gid(account.gid);
    }
    command
}

/// The launcher: `agent-trigger-exec` installed beside the server's binary, else the server's
/// own binary with its `launch` subcommand.
#[cfg(target_os = "linux")]
fn launcher() -> &'static (PathBuf, Option<&'static str>) {
    static LAUNCHER: OnceLock<(PathBuf, Option<&'static str>)> = OnceLock::new();
    LAUNCHER.get_or_init(|| {
        let server = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
        let beside = server.with_file_name(LAUNCHER_NAME);
        if beside.is_file() {
            (beside, None)
        } else {
            (server, Some(launch::SUBCOMMAND))
        }
    })
}

/// The launcher's file name.
#[cfg(target_os = "linux")]
const LAUNCHER_NAME: &str = "agent-trigger-exec";

/// The `PATH` the command gets: `[executor.environment]`'s, else the server's.
fn command_path(config: &ExecutorConfig) -> Option<OsString> {
    config
        .environment
        .iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| OsString::from(value))
        .or_else(|| std::env::var_os("PATH"))
}

/// Where `program` is on `path`, when it is a bare name found there; else `program` itself,
/// for the spawn to report.
fn found_on_path(program: PathBuf, path: Option<OsString>) -> PathBuf {
    if program.components().count() != 1 {
        return program;
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    which::which_in(&program, path, cwd).unwrap_or(program)
}

/// A command's own scratch directory, when it runs as another user or sandboxed: its working
/// directory and `TMPDIR`, owned by its account, removed when the execution ends.
///
/// Each is made inside [`scratch_root`], a directory only the server may write in, and made
/// exclusively: nothing another local account planted (a directory, a symlink) is ever taken
/// over or handed to the command's account.
struct Scratch(Option<PathBuf>);

impl Scratch {
    fn for_command(config: &ExecutorConfig, id: &ExecutionId) -> std::io::Result<Self> {
        if config.user.is_none() && config.sandbox == Sandbox::None {
            return Ok(Scratch(None));
        }
        let path = scratch_root()?.join(id.to_string());
        private_directory().create(&path)?;
        // From here on, dropping it removes the directory, whatever fails next.
        let scratch = Scratch(Some(path));
        #[cfg(unix)]
        if let (Some(account), Some(path)) = (&config.user, scratch.path()) {
            std::os::unix::fs::lchown(path, Some(account.uid), Some(account.gid))?;
        }
        Ok(scratch)
    }

    fn path(&self) -> Option<&Path> {
        self.0.as_deref()
    }
}

/// The server's directory of scratch directories, made at first use under the system's
/// temporary directory with a name no one can guess in advance, and never one that existed
/// before: others may enter it (to reach their own scratch directory) but not list or write it.
fn scratch_root() -> std::io::Result<&'static Path> {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    if let Some(root) = ROOT.get() {
        return Ok(root);
    }
    let builder = private_directory();
    let root = loop {
        let candidate =
            std::env::temp_dir().join(format!("agent-trigger-{}", uuid::Uuid::now_v7()));
        match builder.create(&candidate) {
            Ok(()) => {
                // Set after the fact: the server's umask would take the others' `x` away.
                #[cfg(unix)]
                std::fs::set_permissions(
                    &candidate,
                    std::os::unix::fs::PermissionsExt::from_mode(0o711),
                )?;
                break candidate;
            }
            // Someone took that name: draw another.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    };
    // Two workers may race here: one root wins, the other's is removed.
    let chosen = ROOT.get_or_init(|| root.clone());
    if *chosen != root {
        let _ = std::fs::remove_dir(&root);
    }
    Ok(chosen)
}

/// A builder of directories only their owner may enter, that fails on an existing path.
fn private_directory() -> std::fs::DirBuilder {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// The process group a command leads (it was spawned with `process_group(0)`).
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    fn of(child: &tokio::process::Child) -> Self {
        ProcessGroup(child.id())
    }

    /// Kills every process left in the group.
    fn end(&self) {
        #[cfg(unix)]
        if let Some(pid) = self
            .0
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            // ESRCH, the group being empty already, is the usual answer.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

enum Ended {
    Cancelled,
    Exited(std::io::Result<std::process::ExitStatus>),
    TimedOut,
    Stopped,
}

async fn collect(mut stream: impl AsyncRead + Unpin, tail: Arc<Mutex<Tail>>) {
    let mut buffer = [0u8; 8192];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        tail.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(&buffer[..read]);
    }
}

/// Records the output so far every [`OUTPUT_EVERY`] while it grows; aborted when the command
/// ends, whose result then records the whole tail.
async fn record_output<Q: ExecutionQueue>(queue: Q, id: ExecutionId, tail: Arc<Mutex<Tail>>) {
    let mut recorded = 0;
    loop {
        tokio::time::sleep(OUTPUT_EVERY).await;
        let snapshot = {
            let tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
            (tail.pushed != recorded).then(|| (tail.pushed, tail.bytes.iter().copied().collect()))
        };
        if let Some((pushed, bytes)) = snapshot {
            if let Err(error) = queue.record_output(&id, bytes).await {
                tracing::warn!(execution_id = %id, %error, "could not record the output so far");
            }
            recorded = pushed;
        }
    }
}

/// The last [`OUTPUT_TAIL_BYTES`] of the output, and how many bytes came in all.
#[derive(Default)]
struct Tail {
    bytes: VecDeque<u8>,
    pushed: u64,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.pushed += bytes.len() as u64;
        let bytes = &bytes[bytes.len().saturating_sub(OUTPUT_TAIL_BYTES)..];
        let overflow = (self.bytes.len() + bytes.len()).saturating_sub(OUTPUT_TAIL_BYTES);
        self.bytes.drain(..overflow);
        self.bytes.extend(bytes);
    }

    fn into_bytes(self) -> Vec<u8> {
        self.bytes.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut tail = Tail::default();
        tail.push(&vec![b'a'; OUTPUT_TAIL_BYTES - 1]);
        tail.push(b"xyz");
        let bytes = tail.into_bytes();
        assert_eq!(bytes.len(), OUTPUT_TAIL_BYTES);
        assert!(bytes.ends_with(b"axyz"));
        let mut tail = Tail::default();
        tail.push(&vec![b'b'; OUTPUT_TAIL_BYTES * 2]);
        tail.push(b"!");
        let bytes = tail.into_bytes();
        assert_eq!(bytes.len(), OUTPUT_TAIL_BYTES);
        assert_eq!(bytes.last(), Some(&b'!'));
    }

    #[cfg(unix)]
    #[test]
    fn a_bare_program_name_is_found_on_the_commands_path() {
        use std::os::unix::fs::PermissionsExt;
        let directory =
            std::env::temp_dir().join(format!("agent-trigger-path-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir(&directory).unwrap();
        let program = directory.join("agent-trigger-test-tool");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = Some(OsString::from(format!(
            "/nonexistent:{}",
            directory.display()
        )));

        let found = found_on_path("agent-trigger-test-tool".into(), path.clone());
        assert_eq!(found, program);
        // Not there, or named by a path: left for the spawn.
        let missing = found_on_path("agent-trigger-no-such-tool".into(), path.clone());
        assert_eq!(missing, PathBuf::from("agent-trigger-no-such-tool"));
        let relative = found_on_path("./agent-trigger-test-tool".into(), path);
        assert_eq!(relative, PathBuf::from("./agent-trigger-test-tool"));
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
