//! Durable execution queues: what a standalone server needs beyond an [`ExecutionSink`].
//!
//! A queue keeps every acknowledged execution, lets workers claim queued ones and record how
//! they ended, and answers status queries. The SQLite store implements it; a shared database
//! backend can implement the same trait without changing the server or the workers.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::SystemTime;

use crate::{Delivery, ExecutionId, ExecutionSink, StoreError};

/// Where an execution is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExecutionStatus {
    /// Acknowledged and waiting for a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// It ran and exited successfully.
    Done,
    /// It ran and failed: a non-zero exit, a timeout, or a command that could not start.
    Error,
    /// The server stopped while it was running.
    Interrupted,
    /// It failed on every attempt its retry policy allowed.
    Failed,
    /// Someone cancelled it before it ended, or its trigger was removed while it waited queued
    /// (its output then says `[agent-trigger] cancelled: its trigger was removed`).
    Cancelled,
}

impl ExecutionStatus {
    /// The status as the API spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Done => "done",
            ExecutionStatus::Error => "error",
            ExecutionStatus::Interrupted => "interrupted",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of the seven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus(pub String);

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown execution status {:?}", self.0)
    }
}

impl std::error::Error for UnknownStatus {}

impl FromStr for ExecutionStatus {
    type Err = UnknownStatus;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [
            ExecutionStatus::Queued,
            ExecutionStatus::Running,
            ExecutionStatus::Done,
            ExecutionStatus::Error,
            ExecutionStatus::Interrupted,
            ExecutionStatus::Failed,
            ExecutionStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == name)
        .ok_or_else(|| UnknownStatus(name.to_owned()))
    }
}

/// What a queue knows about one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutionRecord {
    /// Its id.
    pub id: ExecutionId,
    /// Where it is.
    pub status: ExecutionStatus,
    /// The sender.
    pub source: crate::Source,
    /// The trigger that started it.
    pub trigger_id: uuid::Uuid,
    /// The tenant that owns the trigger.
    pub tenant: String,
    /// The delivery's action.
    pub action: Option<String>,
    /// When it was acknowledged.
    pub created_at: SystemTime,
    /// When a worker started it.
    pub started_at: Option<SystemTime>,
    /// When it ended.
    pub finished_at: Option<SystemTime>,
    /// The command's exit code, when it exited by itself.
    pub exit_code: Option<i32>,
    /// The last bytes of its output; empty in the records of [`ExecutionQueue::list`].
    pub output_tail: Vec<u8>,
    /// Which attempt this is (or was, once it ended): 1 for the first.
    pub attempt: u32,
    /// The prompt its trigger's template rendered, if it has one
    /// ([`Delivery::prompt`](crate::Delivery::prompt)).
    pub prompt: Option<String>,
    /// The execution this one replays, when it is a replay.
    pub replay_of: Option<ExecutionId>,
    /// Who asked for the replay (a key id), when it is one.
    pub replayed_by: Option<String>,
    /// Who cancelled it (a key id): set when it is, or is being, cancelled on someone's
    /// request; `None` for an execution that ended any other way, or was cancelled because its
    /// trigger was removed.
    pub cancelled_by: Option<String>,
    /// Its subject's key, when its trigger has a
    /// [`Concurrency`](crate::concurrency::Concurrency).
    pub concurrency_key: Option<String>,
    /// How many deliveries it stands for: 1, or more once others joined it during its
    /// debounce.
    pub deliveries: u32,
    /// The execution that replaced it (`on_busy = "replace"`): set when it is, or is being,
    /// cancelled for that one.
    pub replaced_by: Option<ExecutionId>,
}

/// The output of a queued execution cancelled because its trigger was removed (a
/// configuration that no longer has it replaced the keys and triggers).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const TRIGGER_REMOVED: &str = "[agent-trigger] cancelled: its trigger was removed\n";

/// When executions kept here become due (a debounce's end), so that idle workers wake then
/// rather than at their next poll.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Default)]
pub(crate) struct DueTimes(std::sync::Mutex<std::collections::BTreeSet<SystemTime>>);

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl DueTimes {
    /// Remembers that an execution becomes due at `at`.
    pub(crate) fn add(&self, at: SystemTime) {
        self.lock().insert(at);
    }

    /// Resolves when `work` is notified, or when the earliest remembered time comes (then
    /// forgotten; times already past are forgotten at once, and resolve it at once).
    pub(crate) async fn wait(&self, work: &tokio::sync::Notify) {
        let next = {
            let mut times = self.lock();
            let now = SystemTime::now();
            let past = times.iter().take_while(|at| **at <= now).count();
            let passed = past > 0;
            for _ in 0..past {
                times.pop_first();
            }
            if passed {
                return;
            }
            times.first().copied()
        };
        match next.and_then(|at| at.duration_since(SystemTime::now()).ok()) {
            Some(wait) => {
                let _ = tokio::time::timeout(wait, work.notified()).await;
            }
            None => work.notified().await,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<SystemTime>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What [`ExecutionQueue::replay`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayOutcome {
    /// A new execution is queued, with this id.
    Started(ExecutionId),
    /// There is no execution with that id.
    NotFound,
    /// The execution's trigger is disabled: nothing is queued.
    TriggerDisabled,
    /// The execution's trigger no longer exists: nothing is queued.
    TriggerRemoved,
}

/// Which executions [`ExecutionQueue::list`] returns: one tenant's, newest first.
///
/// ```
/// use agent_trigger::queue::{ExecutionQuery, ExecutionStatus};
///
/// let mut query = ExecutionQuery::new("acme", 50);
/// query.status = Some(ExecutionStatus::Failed);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutionQuery {
    /// The tenant whose executions are listed.
    pub tenant: String,
    /// Only these triggers' executions; `None` for all of the tenant's.
    pub triggers: Option<Vec<uuid::Uuid>>,
    /// Only executions with this status.
    pub status: Option<ExecutionStatus>,
    /// Only executions of this subject's key.
    pub concurrency_key: Option<String>,
    /// Only executions older than this one (the cursor of the page before).
    pub before: Option<ExecutionId>,
    /// At most this many.
    pub limit: usize,
}

impl ExecutionQuery {
    /// The newest `limit` executions of `tenant`.
    pub fn new(tenant: impl Into<String>, limit: usize) -> Self {
        ExecutionQuery {
            tenant: tenant.into(),
            triggers: None,
            status: None,
            concurrency_key: None,
            before: None,
            limit,
        }
    }
}

/// An execution a worker has claimed: it is `running` until the worker finishes it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaimedExecution {
    /// Its id.
    pub id: ExecutionId,
    /// What to run it on.
    pub delivery: Delivery,
    /// Which attempt this is: 1 for the first.
    pub attempt: u32,
    /// How many deliveries it stands for (more than 1 when others joined it during its
    /// debounce); `delivery` is the newest of them.
    pub deliveries: u32,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutionResult {
    /// `Done`, `Error` or `Interrupted`.
    pub status: ExecutionStatus,
    /// The exit code, when the command exited by itself.
    pub exit_code: Option<i32>,
    /// The last bytes of its output, kept for the record.
    pub output_tail: Vec<u8>,
}

impl ExecutionResult {
    /// A result with this status, exit code and output tail.
    pub fn new(status: ExecutionStatus, exit_code: Option<i32>, output_tail: Vec<u8>) -> Self {
        ExecutionResult {
            status,
            exit_code,
            output_tail,
        }
    }
}

/// A durable [`ExecutionSink`] that workers take executions from.
///
/// `submit` must return `Started` or `Replayed` only once the execution is durably kept, so
/// that every acknowledged execution survives a crash.
pub trait ExecutionQueue: ExecutionSink {
    /// The execution with this id.
    fn execution(
        &self,
        id: &ExecutionId,
    ) -> impl Future<Output = Result<Option<ExecutionRecord>, StoreError>> + Send;

    /// Marks the oldest queued execution whose time has come, whose trigger is not disabled
    /// (its executions wait until it is enabled again) and runs fewer than its
    /// [`max_running`](crate::Trigger::max_running), `running` and hands it over, or `None`
    /// when none is ready. Replays are queued executions like any other: they count against
    /// the cap. An execution with a [concurrency key](ExecutionRecord::concurrency_key) waits
    /// while another of its trigger and key runs, or an older one of them is queued and not
    /// debouncing: one at a time per key, in order.
    fn claim(&self) -> impl Future<Output = Result<Option<ClaimedExecution>, StoreError>> + Send;

    /// Records how a claimed execution ended.
    fn finish(
        &self,
        id: &ExecutionId,
        result: ExecutionResult,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Resolves when new executions may have been queued since the last call (it may also
    /// resolve spuriously; callers claim and wait again).
    fn work_queued(&self) -> impl Future<Output = ()> + Send;

    /// Records a failed attempt of a claimed execution and queues it again, to be claimed no
    /// sooner than `not_before`, as its next attempt. A cancel asked of the attempt that failed
    /// does not carry over to the next (here and in
    /// [`retry_interrupted`](Self::retry_interrupted)).
    fn retry(
        &self,
        id: &ExecutionId,
        result: ExecutionResult,
        not_before: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Queues again the `interrupted` executions whose attempt is below `max_attempts`, as their
    /// next attempt (a crash or a shutdown cut them short); returns how many.
    fn retry_interrupted(
        &self,
        max_attempts: u32,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// The executions `query` selects, newest first, without their output: each record's
    /// `output_tail` is empty (a page of them would otherwise read every output only to drop
    /// it). [`execution`](Self::execution) gives one execution with its output.
    fn list(
        &self,
        query: &ExecutionQuery,
    ) -> impl Future<Output = Result<Vec<ExecutionRecord>, StoreError>> + Send;

    /// Cancels a queued execution at once (`cancelled`); returns its status after the call, or
    /// `None` when there is no such execution. A `running` one is left to the worker that runs
    /// it, which ends its command and records it `cancelled`. `by` (a key id) is recorded as
    /// [`cancelled_by`](ExecutionRecord::cancelled_by) of a queued or running one (the first
    /// to ask, if several do); it stays only if the execution does end `cancelled`.
    fn cancel(
        &self,
        id: &ExecutionId,
        by: &str,
    ) -> impl Future<Output = Result<Option<ExecutionStatus>, StoreError>> + Send;

    /// Resolves once a cancel of this execution, which a worker of this process has claimed
    /// and runs, was asked for through another process sharing the queue; the worker then ends
    /// it and records it `cancelled`. It resolves only on what the queue itself recorded (a
    /// [`cancel`](Self::cancel) of this attempt, or the claim taken over by another worker),
    /// never on a signal alone that others than the queue's users could send. A queue that
    /// only one process uses never needs to, and the default never resolves.
    fn cancel_requested(&self, id: &ExecutionId) -> impl Future<Output = ()> + Send {
        let _ = id;
        std::future::pending()
    }

    /// Records the output a running execution has produced so far (its last bytes), so that it
    /// can be read before the execution ends.
    fn record_output(
        &self,
        id: &ExecutionId,
        output_tail: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Queues a new execution with the same trigger, caller, action and input as `id` (and no
    /// delivery id), recording `id` as its [`replay_of`](ExecutionRecord::replay_of) and `by`
    /// (a key id) as its [`replayed_by`](ExecutionRecord::replayed_by). Refused, with nothing
    /// queued, when the trigger is disabled or no longer exists.
    fn replay(
        &self,
        id: &ExecutionId,
        by: &str,
    ) -> impl Future<Output = Result<ReplayOutcome, StoreError>> + Send;

    /// How many executions have this status now.
    fn count(
        &self,
        status: ExecutionStatus,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Whether the backend answers a trivial query: what a health check reports.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes at most `limit` executions that finished before `before`, with their inputs,
    /// outputs and idempotency keys (a redelivery of one is then new); returns how many.
    /// Callers prune in small batches, so that deliveries are never held up for long.
    fn prune_finished(
        &self,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}
