//! The acknowledgement path: deliveries gathered into batches, each batch kept by one
//! transaction (one WAL flush), several batches in flight on separate connections.
//!
//! A batch takes two round trips whatever its size: `BEGIN` with one statement that inserts
//! the idempotency keys of all its new deliveries (`INSERT … SELECT FROM unnest(…) ON CONFLICT
//! DO NOTHING`) and the executions of those whose keys all went in; then the notification that
//! wakes idle workers with `COMMIT`. Statements are prepared once per connection. Only when a key
//! is already taken does it read which execution holds it, which a statement of its own does
//! so that it sees a copy that another instance committed while this one waited.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use tokio::sync::mpsc::Receiver;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::{CHANNEL, DATABASE_DEADLINE, describe, is_unavailable};
use crate::{Delivery, ExecutionId, Outcome, SinkError};

/// At most this many deliveries share one transaction.
const MAX_BATCH: usize = 512;

/// How many times a batch is tried again after a deadlock or a key that vanished under it.
const MAX_TRIES: usize = 5;

/// How long one batch may take before its connection counts as lost.
const BATCH_DEADLINE: Duration = Duration::from_secs(2 * DATABASE_DEADLINE.as_secs());

/// The `Retry-After` of a delivery that could not be kept because the database is away.
pub(super) const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A delivery waiting to be kept, with where its answer goes.
pub(super) struct Submission {
    pub(super) delivery: Delivery,
    pub(super) reply: oneshot::Sender<Result<Outcome, SinkError>>,
}

/// Gathers deliveries into batches until every sender is gone, then commits what is left.
pub(super) async fn run(
    mut waiting: Receiver<Submission>,
    pool: Pool,
    work: Arc<Notify>,
    payload: String,
    in_flight: usize,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    let payload: Arc<str> = payload.into();
    loop {
        // A free slot first: while every slot is busy, arrivals gather into the next batch.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(submission) => batch.push(submission),
                Err(_) => break,
            }
        }
        let (pool, work, payload) = (pool.clone(), Arc::clone(&work), Arc::clone(&payload));
        tokio::spawn(async move {
            commit(&pool, batch, &work, &payload).await;
            drop(slot);
        });
    }
    // Wait for the batches in flight, so that a store dropped after its last answer has
    // nothing left running.
    let _ = slots.acquire_many(in_flight as u32).await;
}

/// Keeps a batch and answers each delivery once the transaction has committed. A failure
/// answers every one with an error: nothing is acknowledged that is not kept.
async fn commit(pool: &Pool, batch: Vec<Submission>, work: &Notify, payload: &str) {
    let outcome = match pool.get().await {
        Ok(client) => {
            // A connection that stopped answering mid-batch is not given back to the pool;
            // its callers have been answered by their own deadline already.
            match tokio::time::timeout(BATCH_DEADLINE, keep_retrying(&client, &batch, payload))
                .await
            {
                Ok(outcome) => outcome,
                Err(_) => {
                    drop(deadpool_postgres::Object::take(client));
                    Err(Failure::Unavailable(format!(
                        "the database did not answer within {} s",
                        BATCH_DEADLINE.as_secs()
                    )))
                }
            }
        }
        Err(error) => Err(Failure::Unavailable(error.to_string())),
    };
    match outcome {
        Ok(outcomes) => {
            let started = started(&outcomes);
            for (submission, outcome) in batch.into_iter().zip(outcomes) {
                if let Some(outcome) = outcome {
                    let _ = submission.reply.send(Ok(outcome));
                }
            }
            // One worker of this instance for each execution, at once (the other instances'
            // through the notification): waking them all would have them race for the rows,
            // each claim holding a connection the next batch waits for.
            for _ in 0..started {
                work.notify_one();
            }
        }
        Err(failure) => {
            let (message, error): (String, fn(String) -> SinkError) = match failure {
                Failure::Unavailable(message) => (message, |_| SinkError::Unavailable {
                    retry_after: UNAVAILABLE_RETRY_AFTER,
                }),
                Failure::Database(message) => (message, |message| {
                    SinkError::internal(format!("database: {message}"))
                }),
            };
            tracing::error!(error = %message, deliveries = batch.len(), "could not keep deliveries");
            for submission in batch {
                let _ = submission.reply.send(Err(error(message.clone())));
            }
        }
    }
}

enum Failure {
    /// The database could not be reached: worth retrying later.
    Unavailable(String),
    Database(String),
}

async fn keep_retrying(
    client: &deadpool_postgres::Object,
    batch: &[Submission],
    payload: &str,
) -> Result<Vec<Option<Outcome>>, Failure> {
    let mut tries = 0;
    loop {
        tries += 1;
        match keep(client, batch, payload).await {
            Ok(Kept::Done(outcomes)) => return Ok(outcomes),
            Ok(Kept::KeyVanished) if tries < MAX_TRIES => continue,
            Ok(Kept::KeyVanished) => {
                return Err(Failure::Database(
                    "idempotency keys kept vanishing under the batch".to_owned(),
                ));
            }
            Err(error)
                if tries < MAX_TRIES
                    && matches!(
                        error.code(),
                        Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED
                            || *code == SqlState::T_R_SERIALIZATION_FAILURE
                    ) =>
            {
                continue;
            }
            Err(error) if is_unavailable(&error) => {
                return Err(Failure::Unavailable(describe(&error)));
            }
            Err(error) => return Err(Failure::Database(describe(&error))),
        }
    }
}

enum Kept {
    Done(Vec<Option<Outcome>>),
    /// A key that conflicted was gone by the time it was read (pruned in between): try again.
    KeyVanished,
}

/// Which delivery of the batch each one is: the first with its keys, or a copy of one.
enum Role {
    /// Its caller stopped waiting before the transaction: not kept, not answered.
    Abandoned,
    /// The first in the batch with its keys: kept under this new id unless a key is taken.
    First(Uuid),
    /// Shares a key with the earlier delivery at this index: answered with its execution.
    CopyOf(usize),
}

/// The whole batch in one statement: its idempotency keys, unless taken, and the executions
/// of the deliveries whose every key went in (a delivery without keys always goes in). It
/// returns the keys that went in; the others are redeliveries.
const KEEP: &str = "WITH keys AS (
         INSERT INTO delivery_keys (trigger_id, key, execution_id)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[])
         ON CONFLICT DO NOTHING RETURNING trigger_id, key, execution_id),
     new AS (
         SELECT * FROM unnest($4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::text[],
             $9::text[], $10::text[], $11::text[], $12::text[], $13::bytea[],
             $14::timestamptz[], $15::bigint[], $16::text[])
             AS d (id, trigger_id, tenant, source, action, delivery_id, caller_kind, caller_id,
                   caller_tenant, input, received_at, key_count, prompt)
         LEFT JOIN (SELECT execution_id, count(*) AS went_in FROM keys GROUP BY execution_id)
             AS k ON k.execution_id = d.id
         WHERE d.key_count = coalesce(k.went_in, 0)),
     inserted AS (
         INSERT INTO executions (id, trigger_id, tenant, source, action, delivery_id,
             caller_kind, caller_id, caller_tenant, input, received_at, status, created_at,
             prompt)
         SELECT id, trigger_id, tenant, source, action, delivery_id, caller_kind, caller_id,
             caller_tenant, input, received_at, 'queued', now(), prompt
         FROM new)
     SELECT trigger_id, key FROM keys";

const FIND_KEYS: &str = "SELECT k.trigger_id, k.key, k.execution_id FROM delivery_keys AS k
     JOIN unnest($1::uuid[], $2::text[]) AS c (trigger_id, key)
         ON k.trigger_id = c.trigger_id AND k.key = c.key";

const DELETE_KEYS: &str = "DELETE FROM delivery_keys WHERE execution_id = ANY($1::uuid[])";

const TAKE_OUT: &str =
    "WITH keys AS (DELETE FROM delivery_keys WHERE execution_id = ANY($1::uuid[]))
     DELETE FROM executions WHERE id = ANY($1::uuid[])";

/// Keeps a batch in one transaction. A transaction that does not commit is rolled back before
/// the connection goes back to the pool.
async fn keep(
    client: &deadpool_postgres::Object,
    batch: &[Submission],
    payload: &str,
) -> Result<Kept, tokio_postgres::Error> {
    let mut transaction = Pipelined {
        client,
        begun: false,
    };
    let kept = write(&mut transaction, batch, payload).await;
    if transaction.begun {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    kept
}

/// A transaction whose `BEGIN` travels with its first statement and whose notification
/// travels with its `COMMIT`, and whose statements are prepared once per connection: a batch
/// without conflicts takes two round trips.
struct Pipelined<'a> {
    client: &'a deadpool_postgres::Object,
    begun: bool,
}

impl Pipelined<'_> {
    async fn query(
        &mut self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let statement = self.client.prepare_cached(statement).await?;
        if self.begun {
            return self.client.query(&statement, params).await;
        }
        self.begun = true;
        let (_, rows) = tokio::try_join!(
            self.client.batch_execute("BEGIN"),
            self.client.query(&statement, params)
        )?;
        Ok(rows)
    }

    /// Commits, with a notification on [`CHANNEL`] carrying `notify` when there is one (in
    /// the same round trip; it is delivered when the commit is).
    async fn commit(&mut self, notify: Option<&str>) -> Result<(), tokio_postgres::Error> {
        if self.begun {
            match notify {
                // The payload is ours (a schema name and a word); quoted all the same.
                Some(payload) => {
                    let payload = payload.replace('\'', "''");
                    self.client
                        .batch_execute(&format!("NOTIFY {CHANNEL}, '{payload}'; COMMIT"))
                        .await?;
                }
                None => self.client.batch_execute("COMMIT").await?,
            }
            self.begun = false;
        }
        Ok(())
    }
}

async fn write(
    transaction: &mut Pipelined<'_>,
    batch: &[Submission],
    payload: &str,
) -> Result<Kept, tokio_postgres::Error> {
    // Just before the first statement: a caller that gave up by now (a deadline answered it)
    // is not kept, so that its sender's retry does not run it twice.
    let keys: Vec<Vec<String>> = batch
        .iter()
        .map(|submission| submission.delivery.idempotency_keys().collect())
        .collect();
    let roles = assign_roles(batch, &keys);

    // Every key of every first delivery, sorted so that concurrent batches take the unique
    // index's locks in one order (no deadlock between them), and every first delivery.
    let mut rows: Vec<(Uuid, &str, Uuid)> = Vec::new();
    let mut firsts = NewExecutions::default();
    for (index, role) in roles.iter().enumerate() {
        if let Role::First(id) = role {
            let delivery = &batch[index].delivery;
            rows.extend(
                keys[index]
                    .iter()
                    .map(|key| (delivery.trigger_id, key.as_str(), *id)),
            );
            firsts.push(*id, delivery, keys[index].len());
        }
    }
    if firsts.ids.is_empty() {
        // Every caller gave up: nothing to keep.
        return Ok(Kept::Done(roles.iter().map(|_| None).collect()));
    }
    rows.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let triggers: Vec<Uuid> = rows.iter().map(|row| row.0).collect();
    let names: Vec<&str> = rows.iter().map(|row| row.1).collect();
    let ids: Vec<Uuid> = rows.iter().map(|row| row.2).collect();
    // Waits for a transaction that inserted one of the same keys and has not ended yet.
    let inserted = firsts.keep(transaction, &triggers, &names, &ids).await?;

    let mut taken: HashMap<(Uuid, &str), Uuid> = HashMap::new();
    if inserted.len() < rows.len() {
        let inserted: std::collections::HashSet<(Uuid, String)> = inserted
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let conflicts: Vec<(Uuid, &str)> = rows
            .iter()
            .filter(|row| !inserted.contains(&(row.0, row.1.to_owned())))
            .map(|row| (row.0, row.1))
            .collect();
        // A statement of its own, so that its snapshot includes the copy whose commit the
        // insert waited for.
        let triggers: Vec<Uuid> = conflicts.iter().map(|conflict| conflict.0).collect();
        let names: Vec<&str> = conflicts.iter().map(|conflict| conflict.1).collect();
        for row in transaction.query(FIND_KEYS, &[&triggers, &names]).await? {
            let (trigger, key, execution): (Uuid, &str, Uuid) =
                (row.get(0), row.get(1), row.get(2));
            if let Some(conflict) = conflicts
                .iter()
                .find(|conflict| conflict.0 == trigger && conflict.1 == key)
            {
                taken.insert(*conflict, execution);
            }
        }
        if taken.len() < conflicts.len() {
            return Ok(Kept::KeyVanished);
        }
    }

    // A first delivery one of whose keys is taken is a redelivery of that execution (the
    // statement did not insert it); the keys it did insert are removed again.
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(batch.len());
    // The execution each delivery is answered with, for the copies that follow it.
    let mut execution_of: Vec<Option<ExecutionId>> = Vec::with_capacity(batch.len());
    let mut replayed_firsts: Vec<Uuid> = Vec::new();
    for (index, role) in roles.iter().enumerate() {
        let outcome = match role {
            Role::Abandoned => None,
            Role::CopyOf(first) => execution_of[*first].clone().map(Outcome::Replayed),
            Role::First(id) => {
                let trigger = batch[index].delivery.trigger_id;
                match keys[index]
                    .iter()
                    .find_map(|key| taken.get(&(trigger, key.as_str())))
                {
                    Some(original) => {
                        replayed_firsts.push(*id);
                        Some(Outcome::Replayed(ExecutionId::from(*original)))
                    }
                    None => Some(Outcome::Started(ExecutionId::from(*id))),
                }
            }
        };
        execution_of.push(match &outcome {
            Some(Outcome::Started(id) | Outcome::Replayed(id)) => Some(id.clone()),
            _ => None,
        });
        outcomes.push(outcome);
    }
    if !replayed_firsts.is_empty() {
        transaction.query(DELETE_KEYS, &[&replayed_firsts]).await?;
    }
    take_out_abandoned(transaction, batch, &roles, &mut outcomes).await?;
    // One notification for the batch, sent with the commit: idle workers wake once it is in,
    // as many as it started executions.
    let started = started(&outcomes);
    let notify = (started > 0).then(|| format!("{payload}:{started}"));
    transaction.commit(notify.as_deref()).await?;
    Ok(Kept::Done(outcomes))
}

/// How many new executions `outcomes` started.
fn started(outcomes: &[Option<Outcome>]) -> usize {
    outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Some(Outcome::Started(_))))
        .count()
}

/// Takes out again the new executions whose caller gave up while the batch was written (it
/// waited on a lock, say): their senders retry, and keeping them too would run them twice. One
/// that a copy in the batch is answered with stays. What is left is the commit's round trip.
async fn take_out_abandoned(
    transaction: &mut Pipelined<'_>,
    batch: &[Submission],
    roles: &[Role],
    outcomes: &mut [Option<Outcome>],
) -> Result<(), tokio_postgres::Error> {
    let mut has_copies = vec![false; batch.len()];
    for role in roles {
        if let Role::CopyOf(first) = role {
            has_copies[*first] = true;
        }
    }
    let mut abandoned = Vec::new();
    for (index, role) in roles.iter().enumerate() {
        if let Role::First(id) = role
            && matches!(outcomes[index], Some(Outcome::Started(_)))
            && !has_copies[index]
            && batch[index].reply.is_closed()
        {
            abandoned.push(*id);
            outcomes[index] = None;
        }
    }
    if !abandoned.is_empty() {
        transaction.query(TAKE_OUT, &[&abandoned]).await?;
    }
    Ok(())
}

/// Merges copies within the batch: a delivery that shares a key with an earlier one is that
/// one's copy.
fn assign_roles(batch: &[Submission], keys: &[Vec<String>]) -> Vec<Role> {
    let mut first_with_key: HashMap<(Uuid, &str), usize> = HashMap::new();
    let mut roles = Vec::with_capacity(batch.len());
    for (index, submission) in batch.iter().enumerate() {
        if submission.reply.is_closed() {
            roles.push(Role::Abandoned);
            continue;
        }
        let trigger = submission.delivery.trigger_id;
        let earlier = keys[index]
            .iter()
            .find_map(|key| first_with_key.get(&(trigger, key.as_str())).copied());
        match earlier {
            Some(first) => roles.push(Role::CopyOf(first)),
            None => {
                for key in &keys[index] {
                    first_with_key.insert((trigger, key.as_str()), index);
                }
                roles.push(Role::First(Uuid::now_v7()));
            }
        }
    }
    roles
}

/// The columns of a batch's first deliveries, one array per column, with how many keys each has.
#[derive(Default)]
struct NewExecutions<'a> {
    ids: Vec<Uuid>,
    triggers: Vec<Uuid>,
    tenants: Vec<&'a str>,
    sources: Vec<&'a str>,
    actions: Vec<Option<&'a str>>,
    delivery_ids: Vec<Option<&'a str>>,
    caller_kinds: Vec<&'static str>,
    caller_ids: Vec<&'a str>,
    caller_tenants: Vec<Option<&'a str>>,
    inputs: Vec<&'a [u8]>,
    received: Vec<SystemTime>,
    key_counts: Vec<i64>,
    prompts: Vec<Option<&'a str>>,
}

impl<'a> NewExecutions<'a> {
    fn push(&mut self, id: Uuid, delivery: &'a Delivery, keys: usize) {
        let (kind, caller_id, caller_tenant) = delivery.caller.columns();
        self.ids.push(id);
        self.triggers.push(delivery.trigger_id);
        self.tenants.push(&delivery.tenant);
        self.sources.push(delivery.source.as_str());
        self.actions.push(delivery.action.as_deref());
        self.delivery_ids.push(delivery.delivery_id.as_deref());
        self.caller_kinds.push(kind);
        self.caller_ids.push(caller_id);
        self.caller_tenants.push(caller_tenant);
        self.inputs.push(&delivery.input);
        self.received.push(delivery.received_at);
        self.key_counts
            .push(i64::try_from(keys).unwrap_or(i64::MAX));
        self.prompts.push(delivery.prompt.as_deref());
    }

    /// Runs [`KEEP`] with these deliveries and their sorted keys; returns the keys that went in.
    async fn keep(
        &self,
        transaction: &mut Pipelined<'_>,
        key_triggers: &[Uuid],
        key_names: &[&str],
        key_executions: &[Uuid],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        transaction
            .query(
                KEEP,
                &[
                    &key_triggers,
                    &key_names,
                    &key_executions,
                    &self.ids,
                    &self.triggers,
                    &self.tenants,
                    &self.sources,
                    &self.actions,
                    &self.delivery_ids,
                    &self.caller_kinds,
                    &self.caller_ids,
                    &self.caller_tenants,
                    &self.inputs,
                    &self.received,
                    &self.key_counts,
                    &self.prompts,
                ],
            )
            .await
    }
}
