//! The database thread: one connection, commands in order, and deliveries committed in groups
//! so that many concurrent acknowledgements share one transaction and one fsync.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{Notify, oneshot};

use super::codec::{caller_columns, parse_execution_id, unix_millis};
use crate::{Delivery, ExecutionId, Outcome, SinkError};

/// At most this many deliveries share one transaction.
const MAX_GROUP: usize = 512;

/// Work for the database thread.
pub(super) enum Command {
    /// A delivery to keep; answered once its transaction has committed.
    Submit {
        delivery: Delivery,
        reply: oneshot::Sender<Result<Outcome, SinkError>>,
    },
    /// Anything else, run on the thread's connection in order.
    Call(Box<dyn FnOnce(&mut Connection) + Send>),
}

/// Runs until every sender is gone, then finishes what was sent.
pub(super) fn run(mut connection: Connection, commands: Receiver<Command>, work: Arc<Notify>) {
    while let Ok(command) = commands.recv() {
        match command {
            Command::Call(call) => call(&mut connection),
            Command::Submit { delivery, reply } => {
                let mut group = vec![(delivery, reply)];
                let mut next_call = None;
                while group.len() < MAX_GROUP {
                    match commands.try_recv() {
                        Ok(Command::Submit { delivery, reply }) => group.push((delivery, reply)),
                        Ok(Command::Call(call)) => {
                            next_call = Some(call);
                            break;
                        }
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                commit_group(&mut connection, group, &work);
                if let Some(call) = next_call {
                    call(&mut connection);
                }
            }
        }
    }
}

type Submission = (Delivery, oneshot::Sender<Result<Outcome, SinkError>>);

/// Keeps a group of deliveries in one transaction and answers each once it has committed. A
/// failure answers every one of them with an error: nothing is acknowledged that is not kept.
fn commit_group(connection: &mut Connection, group: Vec<Submission>, work: &Notify) {
    match insert_group(connection, &group) {
        Ok(outcomes) => {
            let started = outcomes
                .iter()
                .filter(|outcome| matches!(outcome, Outcome::Started(_)))
                .count();
            for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
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

fn insert_group(
    connection: &mut Connection,
    group: &[Submission],
) -> rusqlite::Result<Vec<Outcome>> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(group.len());
    {
        let mut find = transaction.prepare_cached(
            "SELECT id FROM executions WHERE trigger_id = ?1 AND delivery_id = ?2",
        )?;
        let mut insert = transaction.prepare_cached(
            "INSERT INTO executions (id, trigger_id, tenant, source, action, delivery_id,
                 caller_kind, caller_id, caller_tenant, input, status, received_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'queued', ?11, ?12)",
        )?;
        let created_at = unix_millis(SystemTime::now());
        for (delivery, _) in group {
            let trigger_id = delivery.trigger_id.to_string();
            // Earlier copies in this same group are visible here too: one execution per id.
            if let Some(delivery_id) = &delivery.delivery_id {
                let original: Option<String> = find
                    .query_row(params![trigger_id, delivery_id], |row| row.get(0))
                    .optional()?;
                if let Some(original) = original {
                    outcomes.push(Outcome::Replayed(parse_execution_id(&original)));
                    continue;
                }
            }
            let id = ExecutionId::new_v7();
            let (caller_kind, caller_id, caller_tenant) = caller_columns(&delivery.caller);
            insert.execute(params![
                id.to_string(),
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
            ])?;
            outcomes.push(Outcome::Started(id));
        }
    }
    transaction.commit()?;
    Ok(outcomes)
}
