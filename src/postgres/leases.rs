//! Leases: this instance renews the claims its workers hold (and learns of cancels asked for
//! them, and of claims it lost), and any instance marks `interrupted` the executions whose
//! lease lapsed (their worker, or its whole instance, died), or `cancelled` those of them
//! whose cancel was asked for.

use std::collections::HashSet;
use std::sync::Weak;

use uuid::Uuid;

use super::{Inner, database_error, pool_error};
use crate::StoreError;

/// Renews and expires leases every third of the lease until the store is dropped.
pub(super) async fn run(store: Weak<Inner>) {
    loop {
        let Some(inner) = store.upgrade() else { return };
        let every = inner.lease / 3;
        if let Err(error) = renew_and_expire(&inner).await {
            tracing::warn!(%error, "could not renew or expire execution leases");
        }
        drop(inner);
        tokio::time::sleep(every).await;
    }
}

async fn renew_and_expire(inner: &Inner) -> Result<(), StoreError> {
    let client = inner.pool.get().await.map_err(pool_error)?;
    let held: Vec<(Uuid, Uuid, bool)> = inner
        .leases
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(id, held)| (*id, held.token, held.committed))
        .collect();
    let lease = inner.lease.as_secs_f64();
    if !held.is_empty() {
        let ids: Vec<Uuid> = held.iter().map(|held| held.0).collect();
        let tokens: Vec<Uuid> = held.iter().map(|held| held.1).collect();
        let mut renewed = HashSet::new();
        // Renewing also brings back the cancels asked for, in case a notification was missed.
        for row in client
            .query(
                "UPDATE executions SET lease_until = now() + make_interval(secs => $3)
                 FROM unnest($1::uuid[], $2::uuid[]) AS held (id, token)
                 WHERE executions.id = held.id AND executions.lease_owner = held.token
                   AND executions.status = 'running'
                 RETURNING executions.id, executions.cancel_requested",
                &[&ids, &tokens, &lease],
            )
            .await
            .map_err(database_error)?
        {
            let id: Uuid = row.get(0);
            renewed.insert(id);
            if row.get::<_, bool>(1) {
                inner.cancel_asked(id);
            }
        }
        // A committed claim that could not be renewed is gone (its lease lapsed while this
        // instance was cut off, and another took the execution over): stop its agent, whose
        // result would not be recorded anyway.
        for (id, _, committed) in held {
            if committed && !renewed.contains(&id) && inner.runs_agent(id) {
                tracing::warn!(execution_id = %id, "the claim was lost: its command is stopped");
                inner.cancel_asked(id);
            }
        }
    }
    // One whose cancel was asked for ends as asked (and is not retried), the others are
    // interrupted.
    for row in client
        .query(
            "UPDATE executions
             SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'interrupted' END,
                 finished_at = now(), lease_owner = NULL, lease_until = NULL
             WHERE status = 'running' AND lease_until < now()
             RETURNING id, status",
            &[],
        )
        .await
        .map_err(database_error)?
    {
        let (id, status): (Uuid, &str) = (row.get(0), row.get(1));
        tracing::warn!(execution_id = %id, status, "its worker stopped renewing its lease");
    }
    Ok(())
}
