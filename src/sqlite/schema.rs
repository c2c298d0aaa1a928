//! The database schema, as numbered migrations recorded in `PRAGMA user_version`.

use rusqlite::Connection;

/// Each entry moves the schema from version `index` to `index + 1`. Append; never edit.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: keys, triggers with their secrets, executions.
    "
    CREATE TABLE api_keys (
        id          TEXT NOT NULL PRIMARY KEY,
        tenant      TEXT NOT NULL,
        digest      BLOB NOT NULL UNIQUE,
        triggers    TEXT,              -- JSON array of trigger ids; NULL: all of the tenant's
        expires_at  INTEGER,           -- Unix milliseconds
        revoked     INTEGER NOT NULL DEFAULT 0
    ) STRICT;

    CREATE TABLE triggers (
        id                  TEXT NOT NULL PRIMARY KEY,
        tenant              TEXT NOT NULL,
        source              TEXT NOT NULL,
        enabled             INTEGER NOT NULL,
        actions             TEXT,      -- JSON array; NULL: every action
        replay_window_secs  INTEGER
    ) STRICT;

    CREATE TABLE trigger_secrets (
        trigger_id  TEXT NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
        id          TEXT NOT NULL,
        secret      BLOB NOT NULL,
        not_before  INTEGER,
        not_after   INTEGER,
        position    INTEGER NOT NULL,
        PRIMARY KEY (trigger_id, id)
    ) STRICT;

    CREATE TABLE executions (
        id           TEXT NOT NULL PRIMARY KEY,   -- UUID v7: ordered by creation
        trigger_id   TEXT NOT NULL,
        tenant       TEXT NOT NULL,
        source       TEXT NOT NULL,
        action       TEXT,
        delivery_id  TEXT,
        caller_kind  TEXT NOT NULL,               -- 'key' or 'signature'
        caller_id    TEXT NOT NULL,
        caller_tenant TEXT,
        input        BLOB NOT NULL,
        status       TEXT NOT NULL,
        received_at  INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        started_at   INTEGER,
        finished_at  INTEGER,
        exit_code    INTEGER,
        output_tail  BLOB
    ) STRICT;

    -- Idempotency that survives restarts.
    CREATE UNIQUE INDEX executions_by_delivery
        ON executions (trigger_id, delivery_id) WHERE delivery_id IS NOT NULL;
    CREATE INDEX executions_by_status ON executions (status, id);
    ",
    // 2: idempotency keys in their own table (`Delivery::idempotency_keys`): delivery ids in
    // the namespace of how they were authenticated, and the signatures of signed requests.
    "
    CREATE TABLE delivery_keys (
        trigger_id    TEXT NOT NULL,
        key           TEXT NOT NULL,
        execution_id  TEXT NOT NULL,
        PRIMARY KEY (trigger_id, key)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX delivery_keys_by_execution ON delivery_keys (execution_id);

    INSERT INTO delivery_keys (trigger_id, key, execution_id)
        SELECT trigger_id,
               CASE caller_kind WHEN 'signature' THEN 'signed:' ELSE 'key:' END || delivery_id,
               id
        FROM executions WHERE delivery_id IS NOT NULL;
    DROP INDEX executions_by_delivery;
    ",
    // 3: finished executions by when they finished, for retention.
    "
    CREATE INDEX executions_by_finished ON executions (finished_at) WHERE finished_at IS NOT NULL;
    ",
    // 4: retries: which attempt an execution is on, and when a queued one may run again.
    "
    ALTER TABLE executions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE executions ADD COLUMN not_before INTEGER;
    ",
    // 5: a trigger's rate: at most rate_count deliveries per rate_period_ms.
    "
    ALTER TABLE triggers ADD COLUMN rate_count INTEGER;
    ALTER TABLE triggers ADD COLUMN rate_period_ms INTEGER;
    ",
    // 6: a trigger's cap on running executions, and the count a claim checks it against.
    "
    ALTER TABLE triggers ADD COLUMN max_running INTEGER;
    CREATE INDEX executions_by_trigger_status ON executions (trigger_id, status);
    ",
    // 7: the count needs only the running executions: a partial index, which an acknowledged
    // (queued) execution does not enter, so that keeping it writes one B-tree fewer.
    "
    DROP INDEX executions_by_trigger_status;
    CREATE INDEX executions_running_by_trigger ON executions (trigger_id) WHERE status = 'running';
    ",
    // 8: what each key may do, a bit per right (invoke 1, read 2, operate 4).
    "
    ALTER TABLE api_keys ADD COLUMN rights INTEGER NOT NULL DEFAULT 7;
    ",
    // 9: who asked: the execution a replay replays and the key that asked for it, and the key
    // that cancelled an execution.
    "
    ALTER TABLE executions ADD COLUMN replay_of TEXT;
    ALTER TABLE executions ADD COLUMN replayed_by TEXT;
    ALTER TABLE executions ADD COLUMN cancelled_by TEXT;
    ",
    // 10: a `webhook` trigger's signature scheme (a preset's name or a table, as JSON) and the
    // public URL of the schemes that sign it.
    "
    ALTER TABLE triggers ADD COLUMN signature TEXT;
    ALTER TABLE triggers ADD COLUMN public_url TEXT;
    ",
    // 11: a trigger's rules (the texts of its filter, input and prompt, compiled when loaded),
    // and the prompt each execution was given.
    "
    ALTER TABLE triggers ADD COLUMN rule_filter TEXT;
    ALTER TABLE triggers ADD COLUMN rule_input TEXT;
    ALTER TABLE triggers ADD COLUMN rule_prompt TEXT;
    ALTER TABLE executions ADD COLUMN prompt TEXT;
    ",
    // 12: one agent per subject. A trigger's concurrency (its key's text, what a busy key does,
    // its debounce); each execution's key, how many deliveries it stands for, the execution
    // that replaced it, and until when it may wait out its debounce (NULL once claimed). No
    // two executions of one key of a trigger run at once, whatever reaches the table.
    "
    ALTER TABLE triggers ADD COLUMN concurrency_key TEXT;
    ALTER TABLE triggers ADD COLUMN on_busy TEXT;
    ALTER TABLE triggers ADD COLUMN debounce_ms INTEGER;
    ALTER TABLE triggers ADD COLUMN debounce_max_ms INTEGER;
    ALTER TABLE executions ADD COLUMN concurrency_key TEXT;
    ALTER TABLE executions ADD COLUMN deliveries INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE executions ADD COLUMN replaced_by TEXT;
    ALTER TABLE executions ADD COLUMN debounce_until INTEGER;
    CREATE INDEX executions_by_key ON executions (trigger_id, concurrency_key, status)
        WHERE concurrency_key IS NOT NULL;
    CREATE UNIQUE INDEX executions_running_key ON executions (trigger_id, concurrency_key)
        WHERE concurrency_key IS NOT NULL AND status = 'running';
    ",
    // 13: the deliveries log, one row per answered request that reached a trigger its caller
    // may see; bounded per trigger, so it is read newest first by trigger (and by tenant).
    "
    CREATE TABLE deliveries (
        id            TEXT NOT NULL PRIMARY KEY,   -- UUID v7: ordered by arrival
        trigger_id    TEXT NOT NULL,
        tenant        TEXT NOT NULL,
        source        TEXT NOT NULL,
        received_at   INTEGER NOT NULL,
        status        INTEGER NOT NULL,
        outcome       TEXT NOT NULL,
        reason        TEXT NOT NULL,
        caller_kind   TEXT,                        -- 'key', 'signature', or NULL: none yet
        caller_id     TEXT,
        caller_tenant TEXT,
        execution_id  TEXT,
        delivery_id   TEXT,
        action        TEXT,
        body_bytes    INTEGER NOT NULL,
        duration_us   INTEGER NOT NULL,
        headers       TEXT NOT NULL,               -- JSON array of [name, value], redacted
        body          BLOB                         -- only when the request was authenticated
    ) STRICT;
    CREATE INDEX deliveries_by_tenant ON deliveries (tenant, id);
    CREATE INDEX deliveries_by_trigger ON deliveries (trigger_id, id);
    CREATE INDEX deliveries_refused_by_trigger ON deliveries (trigger_id, id)
        WHERE status BETWEEN 400 AND 499;
    CREATE INDEX deliveries_by_received ON deliveries (received_at);
    ",
    // 14: two B-trees fewer for each record of the log to enter and leave: a tenant's list walks
    // the primary key (newest first, as it is shown), and a record's age is read from its id
    // (UUID v7 carries its arrival's time).
    "
    DROP INDEX deliveries_by_tenant;
    DROP INDEX deliveries_by_received;
    ",
    // 15: the deliveries log moved to a file of its own (`LOG_MIGRATIONS`), written by a thread
    // of its own; its records were copied there first (`deliveries::move_records`).
    "
    DROP TABLE deliveries;
    ",
];

/// The schema of the deliveries log's own file
/// ([`deliveries_log_path`](super::deliveries_log_path)), numbered like [`MIGRATIONS`].
pub(crate) const LOG_MIGRATIONS: &[&str] = &[
    // 1: one row per answered request that reached a trigger its caller may see; bounded per
    // trigger, so read newest first by trigger. A tenant's list walks the primary key (newest
    // first, as it is shown), and a record's age is read from its id (UUID v7 carries its
    // arrival's time). UUIDs are kept as their 16 bytes, in the order of their text.
    "
    CREATE TABLE deliveries (
        id            BLOB NOT NULL PRIMARY KEY,   -- UUID v7: ordered by arrival
        trigger_id    BLOB NOT NULL,
        tenant        TEXT NOT NULL,
        source        TEXT NOT NULL,
        received_at   INTEGER NOT NULL,
        status        INTEGER NOT NULL,
        outcome       TEXT NOT NULL,
        reason        TEXT NOT NULL,
        caller_kind   TEXT,                        -- 'key', 'signature', or NULL: none yet
        caller_id     TEXT,
        caller_tenant TEXT,
        execution_id  TEXT,
        delivery_id   TEXT,
        action        TEXT,
        body_bytes    INTEGER NOT NULL,
        duration_us   INTEGER NOT NULL,
        headers       TEXT NOT NULL,               -- JSON array of [name, value], redacted
        body          BLOB                         -- only when the request was authenticated
    ) STRICT;
    CREATE INDEX deliveries_by_trigger ON deliveries (trigger_id, id);
    CREATE INDEX deliveries_refused_by_trigger ON deliveries (trigger_id, id)
        WHERE status BETWEEN 400 AND 499;
    ",
];

/// Brings the database up to the last of [`MIGRATIONS`], each in its own transaction.
/// A database newer than this build is refused rather than misread.
pub(crate) fn migrate(connection: &mut Connection) -> rusqlite::Result<Result<(), String>> {
    apply(connection, MIGRATIONS)
}

/// Brings the deliveries log's file up to the last of [`LOG_MIGRATIONS`], as [`migrate`] does.
pub(crate) fn migrate_log(connection: &mut Connection) -> rusqlite::Result<Result<(), String>> {
    apply(connection, LOG_MIGRATIONS)
}

/// The schema version recorded in the file.
pub(crate) fn version(connection: &Connection) -> rusqlite::Result<usize> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    Ok(usize::try_from(version).unwrap_or(usize::MAX))
}

fn apply(connection: &mut Connection, migrations: &[&str]) -> rusqlite::Result<Result<(), String>> {
    let version = version(connection)?;
    if version > migrations.len() {
        return Ok(Err(format!(
            "the database has schema version {version}, newer than this build's {}",
            migrations.len()
        )));
    }
    for (from, migration) in migrations.iter().enumerate().skip(version) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", (from + 1) as i64)?;
        transaction.commit()?;
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_from_empty_and_is_idempotent() {
        let mut connection = Connection::open_in_memory().unwrap();
        migrate(&mut connection).unwrap().unwrap();
        migrate(&mut connection).unwrap().unwrap();
        assert_eq!(version(&connection).unwrap(), MIGRATIONS.len());

        let mut log = Connection::open_in_memory().unwrap();
        migrate_log(&mut log).unwrap().unwrap();
        migrate_log(&mut log).unwrap().unwrap();
        assert_eq!(version(&log).unwrap(), LOG_MIGRATIONS.len());
    }

    #[test]
    fn delivery_ids_of_version_1_become_keys_in_their_namespace() {
        let mut connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(MIGRATIONS[0]).unwrap();
        connection.pragma_update(None, "user_version", 1).unwrap();
        connection
            .execute_batch(
                "INSERT INTO executions (id, trigger_id, tenant, source, delivery_id, caller_kind,
                     caller_id, input, status, received_at, created_at)
                 VALUES ('e1', 't', 'acme', 'slack', 'Ev1', 'signature', 's', x'7b7d', 'done', 0, 0),
                        ('e2', 't', 'acme', 'slack', 'Ev2', 'key', 'k', x'7b7d', 'done', 0, 0),
                        ('e3', 't', 'acme', 'slack', NULL, 'key', 'k', x'7b7d', 'done', 0, 0);",
            )
            .unwrap();
        migrate(&mut connection).unwrap().unwrap();
        let mut keys: Vec<(String, String)> = connection
            .prepare("SELECT key, execution_id FROM delivery_keys ORDER BY key")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        keys.sort();
        assert_eq!(
            keys,
            [
                ("key:Ev2".to_owned(), "e2".to_owned()),
                ("signed:Ev1".to_owned(), "e1".to_owned())
            ]
        );
    }

    #[test]
    fn refuses_a_newer_database() {
        let mut connection = Connection::open_in_memory().unwrap();
        connection
            .pragma_update(None, "user_version", MIGRATIONS.len() as i64 + 1)
            .unwrap();
        assert!(migrate(&mut connection).unwrap().is_err());
    }
}
