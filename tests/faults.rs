//! The database going away under steady load, against real `agent-trigger serve` processes:
//! PostgreSQL behind a proxy that resets, drops or blackholes the connections, or whose
//! sessions are terminated; SQLite on a full disk, locked by another process, or in a
//! directory that cannot be written. In every case a delivery is answered `200` with an id
//! only once it is stored, the outage answers `503` with `Retry-After` (never `500`, never a
//! hang), `/healthz` says `unavailable`, each instance serves again within seconds of the
//! heal without a restart, and no execution runs twice.
//!
//! Each test prints its row of the fault table (`cargo test --test faults -- --nocapture`).
#![cfg(feature = "server")]

pub mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_trigger_testkit::server_process::*;
use http::StatusCode;
use http_body_util::Full;
use tokio::time::Instant;

/// Appends its execution id to `$OUT/ran.txt`.
const RECORDING_AGENT: &str =
    "#!/bin/sh\necho \"$AGENT_TRIGGER_EXECUTION_ID\" >> \"$OUT/ran.txt\"\n";

/// Longer than any answer may take: the trigger endpoint's backend deadline (10 s) and a margin.
const HANG: Duration = Duration::from_secs(15);

/// How often the load sends a delivery (alternating between the instances).
const EVERY: Duration = Duration::from_millis(25);

/// A workspace whose executor runs the recording agent, with `extra` in its `[executor]`
/// table, and the one the agent lives in (kept as long as the test runs).
fn workspace(extra: &str) -> (Workspace, Workspace) {
    let probe = Workspace::new("");
    let agent = probe.path().join("agent.sh");
    std::fs::write(&agent, RECORDING_AGENT).unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let executor = format!(
        "[executor]\ncommand = [\"{}\"]\nworkers = 2\nenv = [\"OUT\"]\n{extra}",
        agent.display()
    );
    (Workspace::new(&executor), probe)
}

fn ran(workspace: &Workspace) -> Vec<String> {
    std::fs::read_to_string(workspace.path().join("ran.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One answer of `/healthz`: the instance, when it was asked, the status and what it said.
type HealthCheck = (usize, Instant, StatusCode, String);

/// One delivery's fate.
#[derive(Debug, Clone)]
struct Sent {
    instance: usize,
    sent_at: Instant,
    /// The status, or `None` for a transport error or no answer within [`HANG`].
    status: Option<StatusCode>,
    retry_after: bool,
    id: Option<String>,
    detail: String,
}

/// Deliveries sent every [`EVERY`] to the instances in turn, each with an idempotency key of
/// its own, and `/healthz` asked of each every 100 ms, until stopped.
struct Load {
    sent: Arc<Mutex<Vec<Sent>>>,
    health: Arc<Mutex<Vec<HealthCheck>>>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Load {
    fn start(servers: &[Server]) -> Load {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let health = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let addresses: Vec<String> = servers.iter().map(|server| server.url("")).collect();
        {
            let (sent, stopped, addresses) =
                (Arc::clone(&sent), stopped.clone(), addresses.clone());
            tasks.spawn(async move {
                let client = client();
                let mut inflight = tokio::task::JoinSet::new();
                let mut n = 0usize;
                while !*stopped.borrow() {
                    let instance = n % addresses.len();
                    let request = http::Request::post(format!(
                        "{}/api/trigger/webhook/{TRIGGER_A}",
                        addresses[instance]
                    ))
                    .header("authorization", format!("Bearer {KEY_A}"))
                    .header("content-type", "application/json")
                    .header("idempotency-key", format!("load-{n}"))
                    .body(Full::new(bytes::Bytes::from(format!(r#"{{"n":{n}}}"#))))
                    .unwrap();
                    let (client, sent) = (client.clone(), Arc::clone(&sent));
                    inflight.spawn(async move {
                        let sent_at = Instant::now();
                        let answer = tokio::time::timeout(HANG, call(&client, request)).await;
                        let record = match answer {
                            Ok(Ok((status, headers, json))) => Sent {
                                instance,
                                sent_at,
                                status: Some(status),
                                retry_after: headers.contains_key("retry-after"),
                                id: json["executionId"].as_str().map(str::to_owned),
                                detail: json.to_string(),
                            },
                            Ok(Err(error)) => Sent {
                                instance,
                                sent_at,
                                status: None,
                                retry_after: false,
                                id: None,
                                detail: error,
                            },
                            Err(_) => Sent {
                                instance,
                                sent_at,
                                status: None,
                                retry_after: false,
                                id: None,
                                detail: "no answer within 15 s".to_owned(),
                            },
                        };
                        sent.lock().unwrap().push(record);
                    });
                    n += 1;
                    tokio::time::sleep(EVERY).await;
                }
                while inflight.join_next().await.is_some() {}
            });
        }
        for (instance, address) in addresses.into_iter().enumerate() {
            let (health, stopped) = (Arc::clone(&health), stopped.clone());
            tasks.spawn(async move {
                let client = client();
                while !*stopped.borrow() {
                    let request = http::Request::get(format!("{address}/healthz"))
                        .body(Full::default())
                        .unwrap();
                    let at = Instant::now();
                    if let Ok(Ok((status, _, json))) =
                        tokio::time::timeout(HANG, call(&client, request)).await
                    {
                        let said = json["status"].as_str().unwrap_or_default().to_owned();
                        health.lock().unwrap().push((instance, at, status, said));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        Load {
            sent,
            health,
            stop,
            tasks,
        }
    }

    /// Stops sending and waits for every answer.
    async fn finish(mut self) -> (Vec<Sent>, Vec<HealthCheck>) {
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
        let sent = std::mem::take(&mut *self.sent.lock().unwrap());
        let health = std::mem::take(&mut *self.health.lock().unwrap());
        (sent, health)
    }
}

/// What the clients saw, summed up, checked against what the contract allows.
struct Seen {
    ok: usize,
    unavailable: usize,
    other: Vec<Sent>,
    acknowledged: Vec<String>,
    /// Per instance: from the heal to the first `200` of a delivery sent after it.
    recovered_in: Vec<Duration>,
    health_said_unavailable: Vec<bool>,
}

fn judge(sent: &[Sent], health: &[HealthCheck], instances: usize, healed_at: Instant) -> Seen {
    let mut seen = Seen {
        ok: 0,
        unavailable: 0,
        other: Vec::new(),
        acknowledged: Vec::new(),
        recovered_in: Vec::new(),
        health_said_unavailable: vec![false; instances],
    };
    for answer in sent {
        match answer.status {
            Some(StatusCode::OK) => {
                seen.ok += 1;
                let id = answer.id.clone().expect("a 200 names its execution");
                seen.acknowledged.push(id);
            }
            Some(StatusCode::SERVICE_UNAVAILABLE) => {
                assert!(answer.retry_after, "a 503 without Retry-After: {answer:?}");
                seen.unavailable += 1;
            }
            _ => seen.other.push(answer.clone()),
        }
    }
    for instance in 0..instances {
        let first_ok = sent
            .iter()
            .filter(|answer| {
                answer.instance == instance
                    && answer.sent_at >= healed_at
                    && answer.status == Some(StatusCode::OK)
            })
            .map(|answer| answer.sent_at)
            .min()
            .expect("the instance serves again after the heal");
        seen.recovered_in.push(first_ok - healed_at);
    }
    for (instance, _, status, said) in health {
        if *status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(said, "unavailable");
            seen.health_said_unavailable[*instance] = true;
        }
    }
    seen
}

/// Every acknowledged execution ran exactly once (the agent's record), and nothing ran that
/// was not acknowledged or stored; returns how many ran twice.
async fn ran_once_each(workspace: &Workspace, acknowledged: &[String]) -> usize {
    let wanted: HashSet<&String> = acknowledged.iter().collect();
    for _ in 0..600 {
        let runs: HashSet<String> = ran(workspace).into_iter().collect();
        if wanted.iter().all(|id| runs.contains(*id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in ran(workspace) {
        *counts.entry(id).or_default() += 1;
    }
    let missing: Vec<&&String> = wanted
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never ran: {missing:?}"
    );
    counts.values().filter(|&&count| count > 1).count()
}

fn row(fault: &str, backend: &str, seen: &Seen, stored: usize, twice: usize) {
    let recovery = seen
        .recovered_in
        .iter()
        .map(|took| format!("{:.1} s", took.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(" / ");
    println!(
        "FAULT | {fault} | {backend} | 200: {} | 503: {} | other: {} | acknowledged: {} | \
         stored: {stored} | ran twice: {twice} | recovered in: {recovery}",
        seen.ok,
        seen.unavailable,
        seen.other.len(),
        seen.acknowledged.len(),
    );
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::fault::{FaultProxy, postgres_address};
    use common::postgres::TestSchema;

    /// How a fault is made, and how long it lasts.
    #[derive(Clone, Copy, Debug)]
    enum Fault {
        /// Every connection reset, again and again.
        Reset,
        /// The database down: connections refused (reset as soon as accepted).
        Down,
        /// A partition shorter than the lease: nothing forwarded either way.
        Blackhole,
        /// `pg_terminate_backend` of the servers' sessions, again and again.
        Terminate,
    }

    /// Two instances through the proxy under steady load; the fault in the middle.
    async fn two_instances_through(fault: Fault, test: &str) {
        let Some(schema) = TestSchema::new(test).await else {
            return;
        };
        // The schema exists and is migrated before the servers start.
        drop(schema.store().await);
        let upstream = postgres_address(&schema.url);
        let proxy = FaultProxy::start(upstream).await;
        let application = format!("agent-trigger-{}", schema.name);
        let url = format!(
            "{}&application_name={application}",
            proxy.postgres_url(&schema.url_with_schema(), upstream)
        );
        // A partition lasts longer than the trigger endpoint's deadline (10 s), so that it is
        // answered 503; the others come and go within 3 s.
        let lasts = match fault {
            Fault::Blackhole => Duration::from_secs(12),
            _ => Duration::from_secs(3),
        };
        // A lease longer than the fault: no claim lapses while it lasts. A second attempt, so
        // that a claim whose commit was cut off and whose lease then lapsed still runs.
        let (workspace, _agent) = workspace(&format!(
            "lease_secs = {}\nmax_attempts = 2\nretry_backoff_secs = 1\n",
            lasts.as_secs() * 2 + 4
        ));
        let env = [("AGENT_TRIGGER_DATABASE_URL", url.as_str())];
        let servers = [
            Server::start_with(&workspace, &env).await,
            Server::start_with(&workspace, &env).await,
        ];
        let load = Load::start(&servers);
        tokio::time::sleep(Duration::from_secs(2)).await;

        let fault_ends = Instant::now() + lasts;
        match fault {
            Fault::Reset => {
                while Instant::now() < fault_ends {
                    proxy.reset();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Fault::Down => {
                proxy.down();
                tokio::time::sleep_until(fault_ends).await;
            }
            Fault::Blackhole => {
                proxy.blackhole();
                tokio::time::sleep_until(fault_ends).await;
            }
            Fault::Terminate => {
                let admin = schema.client().await;
                while Instant::now() < fault_ends {
                    admin
                        .execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                             WHERE application_name = $1",
                            &[&application],
                        )
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        proxy.heal();
        let healed_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (sent, health) = load.finish().await;

        let seen = judge(&sent, &health, servers.len(), healed_at);
        let other: Vec<String> = seen
            .other
            .iter()
            .map(|answer| format!("{:?} {}", answer.status, answer.detail))
            .collect();
        assert!(
            other.is_empty(),
            "only 200 and 503 while the database is away: {other:?}"
        );
        let acknowledged: HashSet<&String> = seen.acknowledged.iter().collect();
        assert_eq!(
            acknowledged.len(),
            seen.acknowledged.len(),
            "one execution per delivery id"
        );
        // Every acknowledged execution is stored and ends `done`.
        let admin = schema.client().await;
        let mut statuses: HashMap<String, String> = HashMap::new();
        for _ in 0..600 {
            statuses = admin
                .query("SELECT id::text, status FROM executions", &[])
                .await
                .unwrap()
                .into_iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
            if acknowledged
                .iter()
                .all(|id| statuses.get(*id).is_some_and(|status| status == "done"))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stored = acknowledged
            .iter()
            .filter(|id| statuses.contains_key(**id))
            .count();
        assert_eq!(stored, acknowledged.len(), "every 200 is stored");
        let not_done: Vec<_> = acknowledged
            .iter()
            .filter(|id| statuses[**id] != "done")
            .map(|id| (id, &statuses[*id]))
            .collect();
        assert!(
            not_done.is_empty(),
            "every acknowledged execution ends: {not_done:?}"
        );
        let twice = ran_once_each(&workspace, &seen.acknowledged).await;
        row(&format!("{fault:?}"), "PostgreSQL ×2", &seen, stored, twice);
        assert_eq!(twice, 0, "no execution runs twice");
        for took in &seen.recovered_in {
            assert!(
                *took < Duration::from_secs(5),
                "serves again within 5 s: {took:?}"
            );
        }
        if !matches!(fault, Fault::Terminate | Fault::Reset) {
            // A fault that lasts, rather than one that comes and goes between statements, is
            // seen by every client and by the health check.
            assert!(seen.unavailable > 0, "the outage answers 503");
            assert!(
                seen.health_said_unavailable.iter().all(|said| *said),
                "/healthz says unavailable on each instance"
            );
        }
    }

    /// A partition longer than the lease, the documented outcome: the other instance marks
    /// the cut-off one's execution `interrupted` and runs it again (a second attempt); the
    /// cut-off instance stops its agent once it reaches the database again, and its result is
    /// not recorded. The execution ends `done` once, by its second attempt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partition_longer_than_the_lease_hands_the_execution_over_once() {
        let Some(schema) = TestSchema::new("a_partition_longer_than_the_lease").await else {
            return;
        };
        drop(schema.store().await);
        let upstream = postgres_address(&schema.url);
        let proxy = FaultProxy::start(upstream).await;
        let direct = schema.url_with_schema();
        let through = proxy.postgres_url(&direct, upstream);
        // The agent says when it starts and when it ends; it takes 12 s.
        let probe = Workspace::new("");
        let agent = probe.path().join("agent.sh");
        std::fs::write(
            &agent,
            "#!/bin/sh\necho \"start $AGENT_TRIGGER_EXECUTION_ID\" >> \"$OUT/ran.txt\"\n\
             sleep 12\necho \"end $AGENT_TRIGGER_EXECUTION_ID\" >> \"$OUT/ran.txt\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let workspace = Workspace::new(&format!(
            "[executor]\ncommand = [\"{}\"]\nworkers = 1\nenv = [\"OUT\"]\nlease_secs = 2\n\
             max_attempts = 2\nretry_backoff_secs = 1\n",
            agent.display()
        ));
        let lines = |prefix: &str| {
            ran(&workspace)
                .iter()
                .filter(|line| line.starts_with(prefix))
                .count()
        };
        let cut_off = Server::start_with(
            &workspace,
            &[("AGENT_TRIGGER_DATABASE_URL", through.as_str())],
        )
        .await;
        let client = client();
        let (status, _, json) = call(&client, delivery(&cut_off, KEY_A, "{}", Some("long")))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{json}");
        let id = json["executionId"].as_str().unwrap().to_owned();
        for _ in 0..100 {
            if lines("start") == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(lines("start"), 1, "the first instance runs it");
        // Only now the other instance, which reaches the database directly.
        let other = Server::start_with(
            &workspace,
            &[("AGENT_TRIGGER_DATABASE_URL", direct.as_str())],
        )
        .await;
        proxy.blackhole();
        tokio::time::sleep(Duration::from_secs(8)).await;
        proxy.heal();

        let admin = schema.client().await;
        let mut row = (String::new(), 0);
        for _ in 0..400 {
            let found = admin
                .query_one(
                    "SELECT status, attempt FROM executions WHERE id::text = $1",
                    &[&id],
                )
                .await
                .unwrap();
            row = (found.get(0), found.get(1));
            if row.0 == "done" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(row, ("done".to_owned(), 2), "ended by its second attempt");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(lines("start"), 2, "run again once, after the lease lapsed");
        assert_eq!(
            lines("end"),
            1,
            "the cut-off agent was stopped; one run ended"
        );
        println!(
            "FAULT | partition of one instance, 8 s > lease 2 s | PostgreSQL ×2 | 200: 1 | \
             503: 0 | other: 0 | acknowledged: 1 | stored: 1 | started twice, ended once \
             (attempt 2) | recovered in: n/a"
        );
        drop((cut_off, other));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_reset_under_load() {
        two_instances_through(Fault::Reset, "connections_reset_under_load").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn database_down_under_load() {
        two_instances_through(Fault::Down, "database_down_under_load").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn database_partitioned_under_load() {
        two_instances_through(Fault::Blackhole, "database_partitioned_under_load").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_terminated_under_load() {
        two_instances_through(Fault::Terminate, "sessions_terminated_under_load").await;
    }
}

mod sqlite {
    use std::process::Stdio;

    use super::*;

    /// Runs the server with `SIGXFSZ` ignored, so that a file-size limit fails its writes
    /// (`EFBIG`, as a full disk fails them with `ENOSPC`) rather than killing it.
    const IGNORING_SIGXFSZ: [&str; 4] = ["sh", "-c", "trap '' XFSZ; exec \"$@\"", "sh"];

    /// Limits the size of the files process `pid` may write to `bytes` (`None`: no limit).
    fn limit_file_size(pid: u32, bytes: Option<u64>) {
        use rustix::process::{Pid, Resource, Rlimit, prlimit};
        let pid = Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
        prlimit(
            Some(pid),
            Resource::Fsize,
            Rlimit {
                current: bytes,
                maximum: None,
            },
        )
        .expect("prlimit of the server");
    }

    /// Every acknowledged execution is in the database file and ends `done`; returns how many
    /// of them are stored.
    async fn stored_and_done(workspace: &Workspace, acknowledged: &[String]) -> usize {
        let path = workspace.path().join("executions.db");
        let mut statuses: HashMap<String, String> = HashMap::new();
        for _ in 0..600 {
            let connection = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let mut query = connection
                .prepare("SELECT id, status FROM executions")
                .unwrap();
            statuses = query
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            if acknowledged
                .iter()
                .all(|id| statuses.get(id).is_some_and(|status| status == "done"))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stored = acknowledged
            .iter()
            .filter(|id| statuses.contains_key(*id))
            .count();
        assert_eq!(stored, acknowledged.len(), "every 200 is stored");
        let not_done: Vec<_> = acknowledged
            .iter()
            .filter(|id| statuses[*id] != "done")
            .collect();
        assert!(
            not_done.is_empty(),
            "every acknowledged execution ends: {not_done:?}"
        );
        stored
    }

    fn only_200_and_503(seen: &Seen) {
        let other: Vec<String> = seen
            .other
            .iter()
            .map(|answer| format!("{:?} {}", answer.status, answer.detail))
            .collect();
        assert!(
            other.is_empty(),
            "only 200 and 503 while the disk is away: {other:?}"
        );
        assert!(seen.unavailable > 0, "the outage answers 503");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_answers_503_loses_nothing_and_recovers() {
        let (workspace, _agent) = workspace("max_attempts = 2\nretry_backoff_secs = 1\n");
        let server = Server::start_through(&IGNORING_SIGXFSZ, &workspace, &[], Stdio::null()).await;
        let pid = server.child.id().unwrap();
        let servers = [server];
        let load = Load::start(&servers);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // No file may grow: every write past the files' start fails, as on a full disk.
        limit_file_size(pid, Some(0));
        tokio::time::sleep(Duration::from_secs(3)).await;
        limit_file_size(pid, None);
        let healed_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let (sent, health) = load.finish().await;

        let seen = judge(&sent, &health, 1, healed_at);
        only_200_and_503(&seen);
        let stored = stored_and_done(&workspace, &seen.acknowledged).await;
        let twice = ran_once_each(&workspace, &seen.acknowledged).await;
        row("disk full (RLIMIT_FSIZE)", "SQLite", &seen, stored, twice);
        assert_eq!(twice, 0, "no execution runs twice");
        assert!(
            seen.recovered_in[0] < Duration::from_secs(5),
            "{:?}",
            seen.recovered_in
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_locked_by_another_process_answers_503_and_recovers() {
        let (workspace, _agent) = workspace("");
        let servers = [Server::start(&workspace).await];
        let load = Load::start(&servers);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Another process's write transaction, held for 12 s (longer than the server's busy
        // timeout and its deadline).
        let path = workspace.path().join("executions.db");
        let locker = tokio::task::spawn_blocking(move || {
            let connection = rusqlite::Connection::open(path).unwrap();
            connection.busy_timeout(Duration::from_secs(10)).unwrap();
            connection.execute_batch("BEGIN EXCLUSIVE").unwrap();
            std::thread::sleep(Duration::from_secs(12));
            connection.execute_batch("COMMIT").unwrap();
        });
        locker.await.unwrap();
        let healed_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let (sent, health) = load.finish().await;

        let seen = judge(&sent, &health, 1, healed_at);
        only_200_and_503(&seen);
        assert!(seen.health_said_unavailable[0], "/healthz says unavailable");
        let stored = stored_and_done(&workspace, &seen.acknowledged).await;
        let twice = ran_once_each(&workspace, &seen.acknowledged).await;
        row(
            "file locked 12 s (BEGIN EXCLUSIVE)",
            "SQLite",
            &seen,
            stored,
            twice,
        );
        assert_eq!(twice, 0, "no execution runs twice");
        assert!(
            seen.recovered_in[0] < Duration::from_secs(5),
            "{:?}",
            seen.recovered_in
        );
    }

    #[tokio::test]
    async fn a_database_in_a_read_only_directory_is_refused_at_start_with_a_clear_error() {
        let workspace = Workspace::new("");
        // Root writes any directory whatever its mode: then a file system that refuses even
        // root is used instead.
        let read_only = workspace.path().join("read-only");
        std::fs::create_dir(&read_only).unwrap();
        std::fs::set_permissions(
            &read_only,
            std::os::unix::fs::PermissionsExt::from_mode(0o555),
        )
        .unwrap();
        let database = if rustix::process::geteuid().is_root() {
            std::path::PathBuf::from("/sys/agent-trigger-executions.db")
        } else {
            read_only.join("executions.db")
        };
        let config_path = workspace.path().join("config.toml");
        let config = std::fs::read_to_string(&config_path).unwrap().replace(
            "database = \"executions.db\"",
            &format!("database = \"{}\"", database.display()),
        );
        std::fs::write(&config_path, config).unwrap();
        let output = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new(program())
                .args(["serve", "--config"])
                .arg(&config_path)
                .args(["--listen", "127.0.0.1:0"])
                .env("TEST_KEY_A", KEY_A)
                .env("TEST_KEY_B", KEY_B)
                .output(),
        )
        .await
        .expect("the server gives up at once")
        .unwrap();
        std::fs::set_permissions(
            &read_only,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let said = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{said}");
        assert!(!said.contains("panicked"), "{said}");
        assert!(
            said.contains(&database.display().to_string()),
            "names the file: {said}"
        );
        assert!(
            said.contains("ermission denied") || said.contains("ead-only"),
            "says why: {said}"
        );
    }
}
