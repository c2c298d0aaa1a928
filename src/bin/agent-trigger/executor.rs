//! Runs queued executions: the configured command once per execution, the input JSON on its
//! stdin, a pool of workers, a timeout, and the tail of its output kept with the result.
//!
//! The command handles untrusted text (the webhook's body), so it is treated as untrusted too:
//! its environment is cleared (it gets [`BASE_ENVIRONMENT`], what the configuration passes on,
//! and the execution's own variables; never a key or a secret the server read), and it runs in
//! a process group of its own, which is ended whole once the command exits, times out or is
//! interrupted: nothing it started in the background outlives it.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agent_trigger::ExecutionId;
use agent_trigger::queue::{ClaimedExecution, ExecutionQueue, ExecutionResult, ExecutionStatus};
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::config::{BASE_ENVIRONMENT, ExecutorConfig};

/// How much output is kept per execution.
pub const OUTPUT_TAIL_BYTES: usize = 64 * 1024;

/// Gauge of the executions the workers are running.
const RUNNING: &str = "agent_trigger_executions_running";
/// Counter of finished executions, labelled `status` (`done`, `error`, `interrupted`).
const FINISHED_TOTAL: &str = "agent_trigger_executions_finished_total";

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);

/// How often a running command's output so far is recorded, for the executions API to show.
const OUTPUT_EVERY: Duration = Duration::from_secs(1);

/// How often an idle worker looks for work even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How often interrupted executions are looked for, to be retried.
const REQUEUE_EVERY: Duration = Duration::from_secs(5);

/// What runs an execution.
pub enum Runner {
    /// The configured command, by `workers` workers.
    Command(ExecutorConfig),
    /// Demo mode's built-in executor: one worker that prints each execution's input and marks
    /// it `done`, so that a newcomer sees the whole cycle.
    Demo,
}

/// The executions this server's workers are running, each with the signal that cancels it.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<HashMap<ExecutionId, Arc<Notify>>>>);

impl Running {
    fn start(&self, id: &ExecutionId) -> Arc<Notify> {
        let cancel = Arc::new(Notify::new());
        self.lock().insert(id.clone(), Arc::clone(&cancel));
        cancel
    }

    fn end(&self, id: &ExecutionId) {
        self.lock().remove(id);
    }

    /// Asks the worker running `id` to end it; `false` when no worker here runs it.
    pub fn cancel(&self, id: &ExecutionId) -> bool {
        match self.lock().get(id) {
            Some(cancel) => {
                // Stored if the worker is not waiting yet: it sees it as soon as it does.
                cancel.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, Arc<Notify>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts the runner's workers; they stop, interrupting what they run, once `stop` turns true.
pub fn spawn<Q>(
    queue: Q,
    runner: Runner,
    running: Running,
    stop: watch::Receiver<bool>,
) -> JoinSet<()>
where
    Q: ExecutionQueue + Clone,
{
    let workers = match &runner {
        Runner::Command(config) => config.workers,
        Runner::Demo => 1,
    };
    let runner = Arc::new(runner);
    let mut set = JoinSet::new();
    if let Runner::Command(config) = &*runner
        && config.max_attempts > 1
    {
        set.spawn(requeue_interrupted(
            queue.clone(),
            config.max_attempts,
            stop.clone(),
        ));
    }
    for worker in 0..workers {
        set.spawn(work(
            queue.clone(),
            Arc::clone(&runner),
            running.clone(),
            stop.clone(),
            worker,
        ));
    }
    set
}

/// Gives executions that were cut short their next attempt, as the policy allows: at start
/// (what a crash or a shutdown interrupted) and then every [`REQUEUE_EVERY`] (on a shared
/// database, what an instance that died was running, once its lease lapsed).
async fn requeue_interrupted<Q: ExecutionQueue>(
    queue: Q,
    max_attempts: u32,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        match queue.retry_interrupted(max_attempts).await {
            Ok(0) => {}
            Ok(requeued) => tracing::info!(
                requeued,
                "interrupted executions queued for their next attempt"
            ),
            Err(error) => tracing::error!(%error, "could not queue interrupted executions again"),
        }
        let _ = tokio::time::timeout(REQUEUE_EVERY, stop.changed()).await;
    }
}

async fn work<Q: ExecutionQueue + Clone>(
    queue: Q,
    runner: Arc<Runner>,
    running: Running,
    mut stop: watch::Receiver<bool>,
    worker: usize,
) {
    while !*stop.borrow() {
        match queue.claim().await {
            Ok(Some(claimed)) => {
                let (id, attempt) = (claimed.id.clone(), claimed.attempt);
                metrics::gauge!(RUNNING).increment(1.0);
                let cancel = running.start(&id);
                let (mut result, max_attempts, backoff) = match &*runner {
                    Runner::Command(config) => (
                        run(&queue, config, claimed, &mut stop, &cancel).await,
                        config.max_attempts,
                        config.retry_backoff,
                    ),
                    Runner::Demo => (run_demo(&claimed), 1, Duration::ZERO),
                };
                running.end(&id);
                metrics::gauge!(RUNNING).decrement(1.0);
                if result.status == ExecutionStatus::Error && attempt < max_attempts {
                    let wait = next_wait(backoff, attempt);
                    tracing::info!(execution_id = %id, worker, attempt, exit_code = result.exit_code, wait_secs = wait.as_secs_f64(), "execution failed; it will be retried");
                    if let Err(error) = queue.retry(&id, result, SystemTime::now() + wait).await {
                        tracing::error!(execution_id = %id, %error, "could not queue an execution again");
                    }
                    continue;
                }
                if result.status == ExecutionStatus::Error && max_attempts > 1 {
                    result.status = ExecutionStatus::Failed;
                }
                metrics::counter!(FINISHED_TOTAL, "status" => result.status.as_str()).increment(1);
                tracing::info!(execution_id = %id, worker, attempt, status = %result.status, exit_code = result.exit_code, "execution finished");
                if let Err(error) = queue.finish(&id, result).await {
                    tracing::error!(execution_id = %id, %error, "could not record how an execution ended");
                }
            }
            Ok(None) => {
                tokio::select! {
                    () = queue.work_queued() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(error) => {
                tracing::error!(%error, "could not claim an execution");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
}

/// The wait after failed attempt `attempt`: `base` doubled for each attempt before it, at most
/// [`MAX_BACKOFF`], and spread by a quarter either way so that executions that failed together
/// do not all come back at once.
fn next_wait(base: Duration, attempt: u32) -> Duration {
    let doubled = base.saturating_mul(1 << attempt.saturating_sub(1).min(20));
    let wait = doubled.min(MAX_BACKOFF);
    let spread = f64::from(getrandom::u32().unwrap_or(0)) / f64::from(u32::MAX); // 0..=1
    wait.mul_f64(0.75 + spread / 2.0)
}

/// Demo mode's execution: the input, printed where the demo's instructions are, and `done`.
fn run_demo(claimed: &ClaimedExecution) -> ExecutionResult {
    let delivery = &claimed.delivery;
    let input = String::from_utf8_lossy(&delivery.input);
    // Not println!: a closed stdout must not end the worker.
    let _ = writeln!(
        std::io::stdout().lock(),
        "demo executor: execution {} ({} {}) received {input}",
        claimed.id,
        delivery.source,
        delivery.action.as_deref().unwrap_or("-"),
    );
    let output = format!(
        "[agent-trigger] demo executor: received {} bytes\n",
        input.len()
    );
    ExecutionResult::new(ExecutionStatus::Done, Some(0), output.into_bytes())
}

/// Runs one execution to its end: exit, timeout, or shutdown.
async fn run<Q: ExecutionQueue + Clone>(
    queue: &Q,
    config: &ExecutorConfig,
    claimed: ClaimedExecution,
    stop: &mut watch::Receiver<bool>,
    cancel: &Notify,
) -> ExecutionResult {
    let delivery = &claimed.delivery;
    let mut command = Command::new(&config.command[0]);
    command.args(&config.command[1..]).env_clear();
    for name in BASE_ENVIRONMENT {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
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
    fn waits_double_from_the_base_within_a_quarter_and_an_hour() {
        let base = Duration::from_secs(10);
        for (attempt, nominal) in [(1, 10.0), (2, 20.0), (3, 40.0), (9, 2560.0), (30, 3600.0)] {
            for _ in 0..50 {
                let wait = next_wait(base, attempt).as_secs_f64();
                assert!(
                    (nominal * 0.75..=nominal * 1.25).contains(&wait),
                    "attempt {attempt}: {wait}"
                );
            }
        }
    }

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
}
