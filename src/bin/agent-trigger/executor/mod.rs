//! Runs queued executions: the configured command once per execution, the input JSON on its
//! stdin, a pool of workers, a timeout, and the tail of its output kept with the result.
//!
//! The command handles untrusted text (the webhook's body), so it is treated as untrusted too:
//! its environment is cleared (it gets [`BASE_ENVIRONMENT`](crate::config::BASE_ENVIRONMENT), what the configuration passes on,
//! and the execution's own variables; never a key or a secret the server read), and it runs in
//! a process group of its own, which is ended whole once the command exits, times out or is
//! interrupted: nothing it started in the background outlives it.

mod command;
mod running;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agent_trigger::ExecutionId;
use agent_trigger::StoreError;
use agent_trigger::queue::{ClaimedExecution, ExecutionQueue, ExecutionResult, ExecutionStatus};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use self::running::Running;
use crate::config::ExecutorConfig;

/// Gauge of the executions the workers are running.
const RUNNING: &str = "agent_trigger_executions_running";
/// Counter of finished executions, labelled `status` (`done`, `error`, `interrupted`).
const FINISHED_TOTAL: &str = "agent_trigger_executions_finished_total";

/// How long a worker keeps trying to record an execution's end while the database is away.
const RECORD_FOR: Duration = Duration::from_secs(10 * 60);

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);

/// How often an idle worker looks for work even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How often interrupted executions are looked for, to be retried.
const REQUEUE_EVERY: Duration = Duration::from_secs(5);

/// What runs an execution.
pub enum Runner {
    /// The configured command, by `workers` workers.
    Command(Box<ExecutorConfig>),
    /// Demo mode's built-in executor: one worker that prints each execution's input and marks
    /// it `done`, so that a newcomer sees the whole cycle.
    Demo,
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
        requeue_once(&queue, max_attempts).await;
        let _ = tokio::time::timeout(REQUEUE_EVERY, stop.changed()).await;
    }
}

/// Gives the `interrupted` executions their next attempt, as `runner`'s policy allows, once.
/// The server calls it before it answers, so that an execution a crash cut short is never
/// shown `interrupted` in between the restart and its next attempt.
pub async fn requeue_before_start<Q: ExecutionQueue>(queue: &Q, runner: &Runner) {
    if let Runner::Command(config) = runner
        && config.max_attempts > 1
    {
        requeue_once(queue, config.max_attempts).await;
    }
}

async fn requeue_once<Q: ExecutionQueue>(queue: &Q, max_attempts: u32) {
    match queue.retry_interrupted(max_attempts).await {
        Ok(0) => {}
        Ok(requeued) => tracing::info!(
            requeued,
            "interrupted executions queued for their next attempt"
        ),
        Err(error) => tracing::error!(%error, "could not queue interrupted executions again"),
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
                // Held until the end is recorded below: a cancel waits for that.
                let registration = running.start(&id);
                let (mut result, max_attempts, backoff) = match &*runner {
                    Runner::Command(config) => (
                        command::run(&queue, config, claimed, &mut stop, &registration.cancel)
                            .await,
                        config.max_attempts,
                        config.retry_backoff,
                    ),
                    Runner::Demo => (run_demo(&claimed), 1, Duration::ZERO),
                };
                metrics::gauge!(RUNNING).decrement(1.0);
                if result.status == ExecutionStatus::Error && attempt < max_attempts {
                    let wait = next_wait(backoff, attempt);
                    tracing::info!(execution_id = %id, worker, attempt, exit_code = result.exit_code, wait_secs = wait.as_secs_f64(), "execution failed; it will be retried");
                    let not_before = SystemTime::now() + wait;
                    let requeued = until_recorded(&id, &mut stop, || {
                        queue.retry(&id, result.clone(), not_before)
                    });
                    if let Err(error) = requeued.await {
                        tracing::error!(execution_id = %id, %error, "could not queue an execution again");
                    }
                    continue;
                }
                if result.status == ExecutionStatus::Error && max_attempts > 1 {
                    result.status = ExecutionStatus::Failed;
                }
                metrics::counter!(FINISHED_TOTAL, "status" => result.status.as_str()).increment(1);
                tracing::info!(execution_id = %id, worker, attempt, status = %result.status, exit_code = result.exit_code, "execution finished");
                if let Err(error) =
                    until_recorded(&id, &mut stop, || queue.finish(&id, result.clone())).await
                {
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

/// Records an execution's end with `record`, again and again while the database is away (the
/// claim stays held meanwhile, its lease renewed, so no one else runs it), for at most
/// [`RECORD_FOR`] or until the server stops.
async fn until_recorded<F, Fut>(
    id: &ExecutionId,
    stop: &mut watch::Receiver<bool>,
    mut record: F,
) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    let give_up = tokio::time::Instant::now() + RECORD_FOR;
    let mut wait = Duration::from_millis(100);
    loop {
        match record().await {
            Err(error) if error.is_unavailable() && tokio::time::Instant::now() < give_up => {
                tracing::warn!(execution_id = %id, %error, "the database is unavailable: the end is recorded when it is back");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return Err(error),
                }
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            recorded => return recorded,
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
    say!(
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
}
