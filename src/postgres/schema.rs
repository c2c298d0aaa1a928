//! The database schema, as numbered migrations recorded in `agent_trigger_schema`.
//!
//! Instances that start together migrate one at a time: each migration runs under a
//! transaction-level advisory lock, and a schema newer than this build is refused rather than
//! misread.

use tokio_postgres::Client;

/// Each entry moves the schema from version `index` to `index + 1`. Append; never edit.
const MIGRATIONS: &[&str] = &[
    // 1: keys, triggers with their secrets, executions with their leases, idempotency keys,
    // and the version of the keys and triggers that instances cache.
    "
    CREATE TABLE api_keys (
        id          text PRIMARY KEY,
        tenant      text NOT NULL,
        digest      bytea NOT NULL UNIQUE,
        triggers    uuid[],                 -- NULL: every trigger of the tenant
        expires_at  timestamptz,
        revoked     boolean NOT NULL DEFAULT false
    );

    CREATE TABLE triggers (
        id                  uuid PRIMARY KEY,
        tenant              text NOT NULL,
        source              text NOT NULL,
        enabled             boolean NOT NULL,
        actions             text[],         -- NULL: every action
        replay_window_secs  bigint,
        rate_count          integer,
        rate_period_ms      bigint,
        max_running         integer
    );

    CREATE TABLE trigger_secrets (
        trigger_id  uuid NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
        id          text NOT NULL,
        secret      bytea NOT NULL,
        not_before  timestamptz,
        not_after   timestamptz,
        position    integer NOT NULL,
        PRIMARY KEY (trigger_id, id)
    );

    -- Bumped by every change of keys, triggers or secrets: instances reload their copy when
    -- it moves.
    CREATE TABLE config_version (
        only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        version   bigint NOT NULL
    );
    INSERT INTO config_version (version) VALUES (0);

    CREATE TABLE executions (
        id            uuid PRIMARY KEY,     -- UUID v7: ordered by creation
        trigger_id    uuid NOT NULL,
        tenant        text NOT NULL,
        source        text NOT NULL,
        action        text,
        delivery_id   text,
        caller_kind   text NOT NULL,        -- 'key' or 'signature'
        caller_id     text NOT NULL,
        caller_tenant text,
        input         bytea NOT NULL,
        status        text NOT NULL,
        received_at   timestamptz NOT NULL,
        created_at    timestamptz NOT NULL,
        started_at    timestamptz,
        finished_at   timestamptz,
        exit_code     integer,
        output_tail   bytea,
        attempt       integer NOT NULL DEFAULT 1,
        not_before    timestamptz,
        lease_owner   uuid,                 -- the claim that holds it while it runs
        lease_until   timestamptz,
        cancel_requested boolean NOT NULL DEFAULT false  -- for the worker that runs it
    );
    -- Claims (queued, oldest first), counts by status, and expired leases.
    CREATE INDEX executions_by_status ON executions (status, id);
    CREATE INDEX executions_leased ON executions (lease_until) WHERE status = 'running';
    -- A trigger's running executions, for its cap (a queued execution does not enter it).
    CREATE INDEX executions_running_by_trigger ON executions (trigger_id) WHERE status = 'running';
    -- The executions API: a tenant's, newest first.
    CREATE INDEX executions_by_tenant ON executions (tenant, id);
    -- Retention.
    CREATE INDEX executions_by_finished ON executions (finished_at) WHERE finished_at IS NOT NULL;

    CREATE TABLE delivery_keys (
        trigger_id    uuid NOT NULL,
        key           text NOT NULL,
        execution_id  uuid NOT NULL,
        PRIMARY KEY (trigger_id, key)
    );
    CREATE INDEX delivery_keys_by_execution ON delivery_keys (execution_id);
    ",
    // 2: what each key may do, a bit per right (invoke 1, read 2, operate 4).
    "
    ALTER TABLE api_keys ADD COLUMN rights smallint NOT NULL DEFAULT 7;
    ",
    // 3: who asked: the execution a replay replays and the key that asked for it, and the key
    // that cancelled an execution.
    "
    ALTER TABLE executions
        ADD COLUMN replay_of uuid,
        ADD COLUMN replayed_by text,
        ADD COLUMN cancelled_by text;
    ",
    // 4: a `webhook` trigger's signature scheme (a preset's name or a table, as JSON) and the
    // public URL of the schemes that sign it.
    "
    ALTER TABLE triggers ADD COLUMN signature text, ADD COLUMN public_url text;
    ",
    // 5: a trigger's rules (the texts of its filter, input and prompt, compiled when loaded),
    // and the prompt each execution was given.
    "
    ALTER TABLE triggers ADD COLUMN rule_filter text;
    ALTER TABLE triggers ADD COLUMN rule_input text;
    ALTER TABLE triggers ADD COLUMN rule_prompt text;
    ALTER TABLE executions ADD COLUMN prompt text;
    ",
    // 6: one agent per subject. A trigger's concurrency (its key's text, what a busy key does,
    // its debounce); each execution's key, how many deliveries it stands for, the execution
    // that replaced it, and until when it may wait out its debounce (NULL once claimed). No
    // two executions of one key of a trigger run at once, whatever reaches the table.
    "
    ALTER TABLE triggers ADD COLUMN concurrency_key text, ADD COLUMN on_busy text,
        ADD COLUMN debounce_ms bigint, ADD COLUMN debounce_max_ms bigint;
    ALTER TABLE executions ADD COLUMN concurrency_key text,
        ADD COLUMN deliveries integer NOT NULL DEFAULT 1, ADD COLUMN replaced_by uuid,
        ADD COLUMN debounce_until timestamptz;
    CREATE INDEX executions_by_key ON executions (trigger_id, concurrency_key, status)
        WHERE concurrency_key IS NOT NULL;
    CREATE UNIQUE INDEX executions_running_key ON executions (trigger_id, concurrency_key)
        WHERE concurrency_key IS NOT NULL AND status = 'running';
    ",
    // 7: the deliveries log, one row per answered request that reached a trigger its caller
    // may see; bounded per trigger, so it is read newest first by trigger (and by tenant).
    "
    CREATE TABLE deliveries (
        id            uuid PRIMARY KEY,     -- UUID v7: ordered by arrival
        trigger_id    uuid NOT NULL,
        tenant        text NOT NULL,
        source        text NOT NULL,
        received_at   timestamptz NOT NULL,
        status        integer NOT NULL,
        outcome       text NOT NULL,
        reason        text NOT NULL,
        caller_kind   text,                 -- 'key', 'signature', or NULL: none yet
        caller_id     text,
        caller_tenant text,
        execution_id  text,
        delivery_id   text,
        action        text,
        body_bytes    bigint NOT NULL,
        duration_us   bigint NOT NULL,
        headers       text NOT NULL,        -- JSON array of [name, value], redacted
        body          bytea                 -- only when the request was authenticated
    );
    CREATE INDEX deliveries_by_tenant ON deliveries (tenant, id);
    CREATE INDEX deliveries_by_trigger ON deliveries (trigger_id, id);
    CREATE INDEX deliveries_refused_by_trigger ON deliveries (trigger_id, id)
        WHERE status BETWEEN 400 AND 499;
    CREATE INDEX deliveries_by_received ON deliveries (received_at);
    ",
];

/// The schema version this build writes.
pub(crate) const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// An arbitrary constant: the advisory lock that migrations hold.
const MIGRATION_LOCK: i64 = 0x6167_656e_7474_7267;

/// Brings the database up to [`CURRENT_VERSION`], each migration in its own transaction.
/// Returns `Err` with a message when the schema is newer than this build.
pub(crate) async fn migrate(
    client: &mut Client,
) -> Result<Result<(), String>, tokio_postgres::Error> {
    loop {
        let transaction = client.transaction().await?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        transaction
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS agent_trigger_schema (
                     only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                     version  bigint NOT NULL
                 )",
            )
            .await?;
        let version: i64 = transaction
            .query_opt("SELECT version FROM agent_trigger_schema", &[])
            .await?
            .map_or(0, |row| row.get(0));
        if version > CURRENT_VERSION {
            return Ok(Err(format!(
                "the database has schema version {version}, newer than this build's {CURRENT_VERSION}"
            )));
        }
        let Some(migration) = MIGRATIONS.get(version as usize) else {
            return Ok(Ok(()));
        };
        transaction.batch_execute(migration).await?;
        transaction
            .execute(
                "INSERT INTO agent_trigger_schema (version) VALUES ($1)
                 ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
                &[&(version + 1)],
            )
            .await?;
        transaction.commit().await?;
    }
}

/// Creates `schema` if it is missing, under the migrations' lock, so that instances starting
/// together do not race to create it.
pub(crate) async fn create_schema(
    client: &mut Client,
    schema: &str,
) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    transaction
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .await?;
    transaction.commit().await
}
