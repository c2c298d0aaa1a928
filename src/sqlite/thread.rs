//! The database thread: one connection, commands in order, and deliveries committed in groups
//! so that many concurrent acknowledgements share one transaction and one fsync.

use std::sync::Arc;
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::mpsc::Receiver;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Notify, oneshot};

use super::codec::unix_millis;
use super::deliveries::LogWriter;
use crate::{Delivery, ExecutionId, Outcome, SinkError};

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
    /// Anything else, run on the thread's connection in order.
    Call(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Records wait in the deliveries log's queue.
    FlushLog,
}

/// Runs until every sender is gone, then finishes what was sent.
pub(super) fn run(
    mut connection: Connection,
    mut commands: Receiver<Command>,
    work: Arc<Notify>,
    mut log: LogWriter,
) {
    while let Some(command) = commands.blocking_recv() {
        match command {
            Command::Call(call) => call(&mut connection),
            Command::FlushLog => {}
            Command::Submit { delivery, reply } => {
                // Group commit: a request worker woke this thread with the first delivery and
                // may be about to send more. Letting it run first (when it shares this core)
                // puts them in this group, under one commit and one fsync, rather than each
                // in a group of one. Where nothing else waits for the core this returns at
                // once.
                std::thread::yield_now();
                let mut group = vec![(delivery, reply)];
                let mut next_call = None;
                while group.len() < MAX_GROUP {
                    match commands.try_recv() {
                        Ok(Command::Submit { delivery, reply }) => group.push((delivery, reply)),
                        Ok(Command::Call(call)) => {
                            next_call = Some(call);
                            break;
                        }
                        // The group's transaction takes the log along.
                        Ok(Command::FlushLog) => {}
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                commit_group(&mut connection, group, &work, &mut log);
                if let Some(call) = next_call {
                    call(&mut connection);
                }
            }
        }
        // The log waits while more work does: the next group's transaction takes it along.
        if commands.is_empty() && log.has_waiting() {
            log.write_alone(&mut connection);
        }
    }
    if log.has_waiting() {
        log.write_alone(&mut connection);
    }
}

type Submission = (Delivery, oneshot::Sender<Result<Outcome, SinkError>>);

/// Keeps a group of deliveries in one transaction and answers each once it has committed. A
/// failure answers every one of them with an error: nothing is acknowledged that is not kept.
fn commit_group(
    connection: &mut Connection,
    group: Vec<Submission>,
    work: &Notify,
    log: &mut LogWriter,
) {
    match insert_group(connection, &group, log) {
        Ok(outcomes) => {
            let started = outcomes
                .iter()
                .filter(|outcome| matches!(outcome, Some(Outcome::Started(_))))
                .count();
            for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
                if let Some(outcome) = outcome {
                    let _ = reply.send(Ok(outcome));
                }
            }
            for _ in 0..started {
                work.notify_one();
            }
        }
        Err(error) => {
            tracing::error!(error = %error, deliveries = group.len(), "could not keep deliveries");
            for (_, reply) in group {
                let _ = reply.send(Err(SinkError::internal(format!("database: {error}"))));
            }
        }
    }
}

/// Inserts each delivery of the group that is not a redelivery; `None` for one whose caller
/// stopped waiting (a deadline answered it with an error already), which is not kept: the
/// sender will retry it, and keeping it too would run it twice.
fn insert_group(
    connection: &mut Connection,
    group: &[Submission],
    log: &mut LogWriter,
) -> rusqlite::Result<Vec<Option<Outcome>>> {
    // Waits here for the write lock, which another connection may hold for a while.
    let mut transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(group.len());
    {
        let mut find = transaction.prepare_cached(
            "SELECT execution_id FROM delivery_keys WHERE trigger_id = ?1 AND key = ?2",
        )?;
        let mut insert = transaction.prepare_cached(
            "INSERT INTO executions (id, trigger_id, tenant, source, action, delivery_id,
                 caller_kind, caller_id, caller_tenant, input, status, received_at, created_at,
                 prompt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'queued', ?11, ?12, ?13)",
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
            let id = ExecutionId::new_v7();
            let id_text = id.to_string();
            let (caller_kind, caller_id, caller_tenant) = delivery.caller.columns();
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
            ])?;
            for key in &keys {
                insert_key.execute(params![trigger_id, key, id_text])?;
            }
            outcomes.push(Some(Outcome::Started(id)));
        }
    }
    log.write_within(&mut transaction);
    transaction.commit()?;
    Ok(outcomes)
}
