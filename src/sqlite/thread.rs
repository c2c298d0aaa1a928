//! The database thread: one connection, commands in order, and deliveries and executions' ends
//! committed in groups, so that many concurrent acknowledgements share one transaction and one
//! fsync.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::mpsc::Receiver;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Notify, oneshot};

use super::codec::{from_unix_millis, unix_millis};
use super::{FULL_RETRY_AFTER, is_unavailable};
use crate::concurrency::{OnBusy, Subject};
use crate::queue::{DueTimes, ExecutionResult};
use crate::{Delivery, ExecutionId, Outcome, SinkError, StoreError};

/// At most this many deliveries share one transaction.
const MAX_GROUP: usize = 512;

/// Work for the database thread.
#[expect(
    clippy::large_enum_variant,
    reason = "deliveries are most of the commands: boxing each would cost an allocation"
)]
pub(super) enum Command {
    /// A delivery to keep; answered once its transaction has committed.
    Submit {
        delivery: Delivery,
        reply: oneshot::Sender<Result<Outcome, SinkError>>,
    },
    /// An execution's end to record; answered once its transaction has committed. Ends that
    /// arrive together share one transaction and one fsync, with each other and with
    /// deliveries, so that a burst of short executions does not queue an fsync each.
    Finish {
        id: String,
        result: ExecutionResult,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Anything else, run on the thread's connection in order.
    Call(Box<dyn FnOnce(&mut Connection) + Send>),
}

/// Runs until every sender is gone, then finishes what was sent.
pub(super) fn run(
    mut connection: Connection,
    mut commands: Receiver<Command>,
    work: Arc<Notify>,
    replaced: Arc<Replaced>,
    due: Arc<DueTimes>,
) {
    while let Some(command) = commands.blocking_recv() {
        match command {
            Command::Call(call) => call(&mut connection),
            first @ (Command::Submit { .. } | Command::Finish { .. }) => {
                // Group commit: a request worker woke this thread with the first delivery and
                // may be about to send more. Letting it run first (when it shares this core)
                // puts them in this group, under one commit and one fsync, rather than each
                // in a group of one. Where nothing else waits for the core this returns at
                // once.
                std::thread::yield_now();
                let mut group = Group::default();
                group.add(first);
                let mut next_call = None;
                while group.len() < MAX_GROUP {
                    match commands.try_recv() {
                        Ok(Command::Call(call)) => {
                            next_call = Some(call);
                            break;
                        }
                        Ok(command) => group.add(command),
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                commit_group(&mut connection, group, &work, &replaced, &due);
                if let Some(call) = next_call {
                    call(&mut connection);
                }
            }
        }
    }
}

type Submission = (Delivery, oneshot::Sender<Result<Outcome, SinkError>>);

/// An execution's end, with where its answer goes.
type End = (
    String,
    ExecutionResult,
    oneshot::Sender<Result<(), StoreError>>,
);

/// The writes that share one transaction.
#[derive(Default)]
struct Group {
    deliveries: Vec<Submission>,
    ends: Vec<End>,
}

impl Group {
    fn add(&mut self, command: Command) {
        match command {
            Command::Submit { delivery, reply } => self.deliveries.push((delivery, reply)),
            Command::Finish { id, result, reply } => self.ends.push((id, result, reply)),
            Command::Call(_) => {}
        }
    }

    fn len(&self) -> usize {
        self.deliveries.len() + self.ends.len()
    }
}

/// Keeps a group of deliveries and executions' ends in one transaction and answers each once
/// it has committed. A failure answers every one of them with an error: nothing is
/// acknowledged that is not kept.
fn commit_group(
    connection: &mut Connection,
    Group {
        deliveries: group,
        ends,
    }: Group,
    work: &Notify,
    replaced: &Replaced,
    due: &DueTimes,
) {
    match insert_group(connection, &group, &ends) {
        Ok((outcomes, to_end, due_at)) => {
            for (_, _, reply) in ends {
                let _ = reply.send(Ok(()));
            }
            let moved = !due_at.is_empty();
            for at in due_at {
                due.add(from_unix_millis(at));
            }
            let started = outcomes
                .iter()
                .filter(|outcome| matches!(outcome, Some(Outcome::Started(_))))
                .count();
            for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
                if let Some(outcome) = outcome {
                    let _ = reply.send(Ok(outcome));
                }
            }
            // Running executions that were replaced: their workers end them.
            replaced.ask(to_end);
            // A join moves a start: an idle worker looks again at when it comes.
            for _ in 0..started.max(usize::from(moved)) {
                work.notify_one();
            }
        }
        Err(error) => {
            tracing::error!(error = %error, deliveries = group.len(), ends = ends.len(), "could not keep deliveries");
            let unavailable = is_unavailable(&error);
            for (_, _, reply) in ends {
                let message = format!("database: {error}");
                let _ = reply.send(Err(if unavailable {
                    StoreError::unavailable(message)
                } else {
                    StoreError::new(message)
                }));
            }
            for (_, reply) in group {
                let _ = reply.send(Err(if unavailable {
                    SinkError::Unavailable {
                        retry_after: FULL_RETRY_AFTER,
                    }
                } else {
                    SinkError::internal(format!("database: {error}"))
                }));
            }
        }
    }
}

/// Running executions replaced by a newer one of their subject, to be ended by the workers
/// that run them ([`ExecutionQueue::cancel_requested`](crate::queue::ExecutionQueue)).
#[derive(Default)]
pub(super) struct Replaced {
    ids: Mutex<HashSet<String>>,
    asked: Notify,
}

impl Replaced {
    fn ask(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        self.lock().extend(ids);
        self.asked.notify_waiters();
    }

    /// Resolves once `id` was replaced.
    pub(super) async fn wait(&self, id: &str) {
        loop {
            let asked = self.asked.notified();
            tokio::pin!(asked);
            asked.as_mut().enable();
            if self.lock().remove(id) {
                return;
            }
            asked.await;
        }
    }

    /// Forgets `id`, which ended.
    pub(super) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one group's transaction answered, the running executions it replaced, and when the
/// debouncing executions it kept or joined become due (Unix milliseconds).
type Kept = (Vec<Option<Outcome>>, Vec<String>, Vec<i64>);

/// Inserts each delivery of the group that is not a redelivery; `None` for one whose caller
/// stopped waiting (a deadline answered it with an error already), which is not kept: the
/// sender will retry it, and keeping it too would run it twice. A delivery with a subject is
/// decided here too, in the same transaction: earlier deliveries of the group are visible to
/// later ones, so a burst is decided exactly as if its deliveries came one by one.
fn insert_group(
    connection: &mut Connection,
    group: &[Submission],
    ends: &[End],
) -> rusqlite::Result<Kept> {
    // Waits here for the write lock, which another connection may hold for a while.
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(group.len());
    let mut to_end = Vec::new();
    let mut due_at = Vec::new();
    {
        let mut find = transaction.prepare_cached(
            "SELECT execution_id FROM delivery_keys WHERE trigger_id = ?1 AND key = ?2",
        )?;
        let mut insert = transaction.prepare_cached(
            "INSERT INTO executions (id, trigger_id, tenant, source, action, delivery_id,
                 caller_kind, caller_id, caller_tenant, input, status, received_at, created_at,
                 prompt, concurrency_key, not_before, debounce_until)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'queued', ?11, ?12, ?13, ?14, ?15,
                 ?16)",
        )?;
        let mut insert_key = transaction.prepare_cached(
            "INSERT INTO delivery_keys (trigger_id, key, execution_id) VALUES (?1, ?2, ?3)",
        )?;
        let created_at = unix_millis(SystemTime::now());
        'delivery: for (delivery, reply) in group {
            if reply.is_closed() {
                outcomes.push(None);
                continue;
            }
            let trigger_id = delivery.trigger_id.to_string();
            let keys: Vec<String> = delivery.idempotency_keys().collect();
            // Earlier copies in this same group are visible here too: one execution per key.
            for key in &keys {
                let original: Option<String> = find
                    .query_row(params![trigger_id, key], |row| row.get(0))
                    .optional()?;
                if let Some(original) = original {
                    outcomes.push(Some(Outcome::Replayed(ExecutionId::from(original))));
                    continue 'delivery;
                }
            }
            let mut debounce = None;
            let mut replace = false;
            if let Some(subject) = &delivery.subject {
                match decide(&transaction, &trigger_id, delivery, subject, created_at)? {
                    Decision::Joined(id, at) => {
                        due_at.push(at);
                        for key in &keys {
                            insert_key.execute(params![trigger_id, key, id])?;
                        }
                        outcomes.push(Some(Outcome::Joined(ExecutionId::from(id))));
                        continue 'delivery;
                    }
                    Decision::Skip(busy) => {
                        outcomes.push(Some(Outcome::Skipped {
                            message: Subject::busy_message(&ExecutionId::from(busy)),
                            action: delivery.action.clone(),
                        }));
                        continue 'delivery;
                    }
                    Decision::Start { replace: busy } => {
                        replace = busy;
                        debounce = subject.debounce.map(|debounce| {
                            let after = |wait: std::time::Duration| {
                                created_at.saturating_add(
                                    i64::try_from(wait.as_millis()).unwrap_or(i64::MAX),
                                )
                            };
                            (after(debounce.quiet()), after(debounce.max()))
                        });
                    }
                }
            }
            due_at.extend(debounce.map(|(start, _)| start));
            let id = ExecutionId::new_v7();
            let id_text = id.to_string();
            let (caller_kind, caller_id, caller_tenant) = delivery.caller.columns();
            let subject_key = delivery
                .subject
                .as_ref()
                .map(|subject| subject.key.as_str());
            insert.execute(params![
                id_text,
                trigger_id,
                &*delivery.tenant,
                delivery.source.as_str(),
                delivery.action.as_deref(),
                delivery.delivery_id.as_deref(),
                caller_kind,
                caller_id,
                caller_tenant,
                &delivery.input[..],
                unix_millis(delivery.received_at),
                created_at,
                delivery.prompt.as_deref(),
                subject_key,
                debounce.map(|(start, _)| start),
                debounce.map(|(_, until)| until),
            ])?;
            for key in &keys {
                insert_key.execute(params![trigger_id, key, id_text])?;
            }
            if replace && let Some(subject_key) = subject_key {
                to_end.extend(replace_others(
                    &transaction,
                    &trigger_id,
                    subject_key,
                    &id_text,
                    created_at,
                )?);
            }
            outcomes.push(Some(Outcome::Started(id)));
        }
    }
    for (id, result, _) in ends {
        super::executions::record_end(&transaction, id, result)?;
    }
    transaction.commit()?;
    Ok((outcomes, to_end, due_at))
}

/// What a delivery with a subject does, decided inside the group's transaction.
enum Decision {
    /// It joined this execution, still waiting out its debounce, which now starts at this
    /// time (Unix milliseconds).
    Joined(String, i64),
    /// The key is busy with this execution and the subject skips.
    Skip(String),
    /// A new execution; `replace` when it replaces the key's queued and running ones.
    Start { replace: bool },
}

fn decide(
    transaction: &rusqlite::Transaction<'_>,
    trigger_id: &str,
    delivery: &Delivery,
    subject: &Subject,
    now: i64,
) -> rusqlite::Result<Decision> {
    if let Some(debounce) = subject.debounce {
        let quiet = i64::try_from(debounce.quiet().as_millis()).unwrap_or(i64::MAX);
        // Takes the newest input, prompt, action, delivery id and caller; starts once quiet,
        // but never past the deadline its first delivery set.
        let (caller_kind, caller_id, caller_tenant) = delivery.caller.columns();
        let joined: Option<(String, i64)> = transaction
            .prepare_cached(
                "UPDATE executions SET input = ?4, prompt = ?5, action = ?6, delivery_id = ?7,
                     caller_kind = ?8, caller_id = ?9, caller_tenant = ?10, received_at = ?11,
                     not_before = min(?3 + ?12, debounce_until), deliveries = deliveries + 1
                 WHERE id = (
                     SELECT id FROM executions
                     WHERE trigger_id = ?1 AND concurrency_key = ?2 AND status = 'queued'
                       AND debounce_until IS NOT NULL AND not_before > ?3
                     ORDER BY id LIMIT 1)
                 RETURNING id, not_before",
            )?
            .query_row(
                params![
                    trigger_id,
                    subject.key,
                    now,
                    &delivery.input[..],
                    delivery.prompt.as_deref(),
                    delivery.action.as_deref(),
                    delivery.delivery_id.as_deref(),
                    caller_kind,
                    caller_id,
                    caller_tenant,
                    unix_millis(delivery.received_at),
                    quiet,
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        if let Some((id, at)) = joined {
            return Ok(Decision::Joined(id, at));
        }
    }
    if subject.on_busy == OnBusy::Queue {
        return Ok(Decision::Start { replace: false });
    }
    // Busy: running, or queued and not debouncing; a running one is named first.
    let busy: Option<String> = transaction
        .prepare_cached(
            "SELECT id FROM executions
             WHERE trigger_id = ?1 AND concurrency_key = ?2
               AND (status = 'running' OR (status = 'queued'
                    AND (debounce_until IS NULL OR not_before IS NULL OR not_before <= ?3)))
             ORDER BY status = 'running' DESC, id LIMIT 1",
        )?
        .query_row(params![trigger_id, subject.key, now], |row| row.get(0))
        .optional()?;
    Ok(match (busy, subject.on_busy) {
        (Some(busy), OnBusy::Skip) => Decision::Skip(busy),
        (busy, _) => Decision::Start {
            replace: busy.is_some(),
        },
    })
}

/// Cancels every queued or running execution of the key but `by`, recording `by` as what
/// replaced them: the queued ones at once, the running ones (returned) by their workers.
fn replace_others(
    transaction: &rusqlite::Transaction<'_>,
    trigger_id: &str,
    key: &str,
    by: &str,
    now: i64,
) -> rusqlite::Result<Vec<String>> {
    let mut running = Vec::new();
    let mut statement = transaction.prepare_cached(
        "UPDATE executions
         SET status = CASE status WHEN 'queued' THEN 'cancelled' ELSE status END,
             finished_at = CASE status WHEN 'queued' THEN ?4 ELSE finished_at END,
             replaced_by = coalesce(replaced_by, ?3)
         WHERE trigger_id = ?1 AND concurrency_key = ?2 AND status IN ('queued', 'running')
           AND id != ?3
         RETURNING id, status",
    )?;
    let mut rows = statement.query(params![trigger_id, key, by, now])?;
    while let Some(row) = rows.next()? {
        if row.get::<_, String>(1)? == "running" {
            running.push(row.get(0)?);
        }
    }
    Ok(running)
}
