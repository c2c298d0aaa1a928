//! The soak's load and its measurements (`benches/scripts/soak.sh` starts the servers and runs
//! this): for every target server, mixed traffic for `SOAK_MINUTES` (valid deliveries,
//! redeliveries of recent ones, invalid bodies and keys, slow clients that trickle their body,
//! cancels, replays and lists of executions), a `SIGHUP` reload of each server every minute,
//! and every `SOAK_SAMPLE_SECS` one CSV row per target: the answers since the last row by
//! class, the trigger endpoint's p99 latency, the server's resident memory and open file
//! descriptors (from `/proc`), and the size of its database.
//!
//! Configuration, from the environment:
//! - `SOAK_TARGETS`: `name=http://host:port=pid=database`, comma-separated; `database` is a
//!   SQLite file's path or `pg:<schema>` (sized through `SOAK_PG_URL`).
//! - `SOAK_MINUTES` (default 60), `SOAK_SAMPLE_SECS` (10), `SOAK_RATE` (requests per second per
//!   target, default 20), `SOAK_CSV` (default `soak.csv`).
//! - `API_KEY`, `TRIGGER_ID`: the key (with every right) and the `webhook` trigger.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One server under load.
struct Target {
    name: String,
    base: String,
    pid: u32,
    database: String,
    counts: Mutex<Counts>,
    /// Recent execution ids and delivery keys, for redeliveries, cancels and replays.
    recent: Mutex<VecDeque<(String, String)>>,
}

#[derive(Default)]
struct Counts {
    requests: u64,
    ok: u64,
    unavailable: u64,
    client_errors: u64,
    server_errors: u64,
    transport_errors: u64,
    /// Latencies of the trigger endpoint's answers since the last sample, in microseconds.
    latencies: Vec<u64>,
}

impl Target {
    fn count(&self, status: Option<StatusCode>, latency: Option<Duration>) {
        let mut counts = self.counts.lock().unwrap();
        counts.requests += 1;
        match status {
            Some(status) if status.is_success() => counts.ok += 1,
            Some(StatusCode::SERVICE_UNAVAILABLE) => counts.unavailable += 1,
            Some(status) if status.is_client_error() => counts.client_errors += 1,
            Some(_) => counts.server_errors += 1,
            None => counts.transport_errors += 1,
        }
        if let Some(latency) = latency {
            counts
                .latencies
                .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        }
    }

    fn remember(&self, id: String, key: String) {
        let mut recent = self.recent.lock().unwrap();
        if recent.len() == 256 {
            recent.pop_front();
        }
        recent.push_back((id, key));
    }

    fn pick_recent(&self, n: u64) -> Option<(String, String)> {
        let recent = self.recent.lock().unwrap();
        if recent.is_empty() {
            return None;
        }
        recent
            .get(usize::try_from(n).unwrap_or(0) % recent.len())
            .cloned()
    }
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A small, fast, good-enough generator: the traffic mix needs no more.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::main]
async fn main() {
    let minutes: u64 = env("SOAK_MINUTES", "60").parse().expect("SOAK_MINUTES");
    let sample = Duration::from_secs(env("SOAK_SAMPLE_SECS", "10").parse().expect("seconds"));
    let rate: u64 = env("SOAK_RATE", "20").parse().expect("SOAK_RATE");
    let csv_path = env("SOAK_CSV", "soak.csv");
    let key = Arc::new(env("API_KEY", ""));
    let trigger = Arc::new(env("TRIGGER_ID", ""));
    let targets: Vec<Arc<Target>> = env("SOAK_TARGETS", "")
        .split(',')
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let parts: Vec<&str> = entry.splitn(4, '=').collect();
            assert_eq!(parts.len(), 4, "name=url=pid=database: {entry}");
            Arc::new(Target {
                name: parts[0].to_owned(),
                base: parts[1].to_owned(),
                pid: parts[2].parse().expect("a pid"),
                database: parts[3].to_owned(),
                counts: Mutex::default(),
                recent: Mutex::default(),
            })
        })
        .collect();
    assert!(!targets.is_empty(), "SOAK_TARGETS names no server");
    let postgres = match std::env::var("SOAK_PG_URL") {
        Ok(url) => {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("SOAK_PG_URL connects");
            tokio::spawn(connection);
            Some(client)
        }
        Err(_) => None,
    };

    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let end = Instant::now() + Duration::from_secs(minutes * 60);
    let mut tasks = tokio::task::JoinSet::new();
    for (index, target) in targets.iter().enumerate() {
        let (target, client, key, trigger) = (
            Arc::clone(target),
            client.clone(),
            Arc::clone(&key),
            Arc::clone(&trigger),
        );
        tasks.spawn(async move {
            let mut random = 0x9E37_79B9_7F4A_7C15u64 ^ (index as u64 + 1);
            let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
            let mut n = 0u64;
            while Instant::now() < end {
                ticker.tick().await;
                n += 1;
                let roll = next_random(&mut random) % 100;
                let pick = next_random(&mut random);
                let (target, client, key, trigger) = (
                    Arc::clone(&target),
                    client.clone(),
                    Arc::clone(&key),
                    Arc::clone(&trigger),
                );
                tokio::spawn(async move {
                    one_request(&target, &client, &key, &trigger, roll, pick, n).await;
                });
            }
        });
    }
    // Reloads: every server is sent SIGHUP once a minute.
    {
        let pids: Vec<u32> = targets.iter().map(|target| target.pid).collect();
        tasks.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            every.tick().await;
            while Instant::now() < end {
                every.tick().await;
                for pid in &pids {
                    let _ = tokio::process::Command::new("kill")
                        .args(["-HUP", &pid.to_string()])
                        .status()
                        .await;
                }
            }
        });
    }

    let mut csv = String::from(
        "elapsed_s,target,requests,ok,unavailable,client_errors,server_errors,transport_errors,p99_ms,rss_kib,fds,db_bytes\n",
    );
    let started = Instant::now();
    let mut every = tokio::time::interval(sample);
    every.tick().await;
    while Instant::now() < end {
        every.tick().await;
        for target in &targets {
            let counts = std::mem::take(&mut *target.counts.lock().unwrap());
            let p99 = percentile(counts.latencies, 99);
            let row = format!(
                "{},{},{},{},{},{},{},{},{:.2},{},{},{}\n",
                started.elapsed().as_secs(),
                target.name,
                counts.requests,
                counts.ok,
                counts.unavailable,
                counts.client_errors,
                counts.server_errors,
                counts.transport_errors,
                p99 as f64 / 1000.0,
                resident_kib(target.pid),
                open_fds(target.pid),
                database_bytes(&target.database, postgres.as_ref()).await,
            );
            print!("{row}");
            csv.push_str(&row);
        }
        std::fs::write(&csv_path, &csv).expect("writes the CSV");
    }
    tasks.abort_all();
}

/// One request of the mix, chosen by `roll` (0..100).
async fn one_request(
    target: &Target,
    client: &HttpClient,
    key: &str,
    trigger: &str,
    roll: u64,
    pick: u64,
    n: u64,
) {
    let endpoint = format!("{}/api/trigger/webhook/{trigger}", target.base);
    let body = format!(r#"{{"soak":{n},"issue":{{"key":"SOAK-{n}"}}}}"#);
    let post = |delivery: &str, key: &str, body: String| {
        Request::post(&endpoint)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .header("idempotency-key", delivery)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    match roll {
        // A new delivery.
        0..60 => {
            let delivery = format!("{}-{n}", target.name);
            let (status, latency, json) = send(client, post(&delivery, key, body)).await;
            target.count(status, Some(latency));
            if let Some(id) = json.and_then(|json| json["executionId"].as_str().map(str::to_owned))
            {
                target.remember(id, delivery);
            }
        }
        // A redelivery of a recent one.
        60..70 => {
            let delivery = target
                .pick_recent(pick)
                .map_or_else(|| format!("{}-{n}", target.name), |(_, delivery)| delivery);
            let (status, latency, _) = send(client, post(&delivery, key, body)).await;
            target.count(status, Some(latency));
        }
        // Invalid: a body that is not JSON, or an unknown key.
        70..75 => {
            let (status, _, _) = send(
                client,
                post(&format!("bad-{n}"), key, "{\"unclosed\":".to_owned()),
            )
            .await;
            target.count(status, None);
        }
        75..80 => {
            let unknown = "atk_unknown_soak_key_000000000000000000000000";
            let (status, _, _) = send(client, post(&format!("bad-{n}"), unknown, body)).await;
            target.count(status, None);
        }
        // A slow client: its body trickles in over 3 s.
        80..85 => {
            let status = slow_client(&target.base, trigger, key, &body).await;
            target.count(status, None);
        }
        // A cancel or a replay of a recent execution, or a list.
        _ => {
            let request = match (roll, target.pick_recent(pick)) {
                (85..90, Some((id, _))) => {
                    Request::post(format!("{}/api/executions/{id}/cancel", target.base))
                }
                (90..95, Some((id, _))) => {
                    Request::post(format!("{}/api/executions/{id}/replay", target.base))
                }
                _ => Request::get(format!("{}/api/executions?limit=20", target.base)),
            };
            let request = request
                .header("authorization", format!("Bearer {key}"))
                .body(Full::default())
                .unwrap();
            let (status, _, _) = send(client, request).await;
            // A cancel of one that already ended answers 409: expected.
            target.count(
                status.map(|status| {
                    if status == StatusCode::CONFLICT {
                        StatusCode::OK
                    } else {
                        status
                    }
                }),
                None,
            );
        }
    }
}

async fn send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> (Option<StatusCode>, Duration, Option<serde_json::Value>) {
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(60), async {
        let response = client.request(request).await.ok()?;
        let status = response.status();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, serde_json::from_slice(&body).ok()))
    })
    .await
    .ok()
    .flatten();
    let latency = started.elapsed();
    match answer {
        Some((status, json)) => (Some(status), latency, json),
        None => (None, latency, None),
    }
}

/// A delivery whose body arrives a few bytes at a time over about 3 s, on a connection of its
/// own: the status it gets (or `None`).
async fn slow_client(base: &str, trigger: &str, key: &str, body: &str) -> Option<StatusCode> {
    let address = base.strip_prefix("http://")?;
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let head = format!(
        "POST /api/trigger/webhook/{trigger} HTTP/1.1\r\nhost: {address}\r\n\
         authorization: Bearer {key}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    let chunks: Vec<&[u8]> = body.as_bytes().chunks(body.len().div_ceil(6)).collect();
    for chunk in chunks {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stream.write_all(chunk).await.ok()?;
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    let line = String::from_utf8_lossy(&answer);
    let code = line.split_whitespace().nth(1)?;
    StatusCode::from_bytes(code.as_bytes()).ok()
}

fn percentile(mut values: Vec<u64>, percent: usize) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = (values.len() * percent).div_ceil(100).max(1) - 1;
    values[rank.min(values.len() - 1)]
}

fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// A SQLite file with its WAL, or the tables and indexes of a PostgreSQL schema.
async fn database_bytes(database: &str, postgres: Option<&tokio_postgres::Client>) -> u64 {
    if let Some(schema) = database.strip_prefix("pg:") {
        let Some(client) = postgres else { return 0 };
        return client
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind = 'r'",
                &[&schema],
            )
            .await
            .map_or(0, |row| row.get::<_, i64>(0).unsigned_abs());
    }
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{database}{suffix}")).ok())
        .map(|metadata| metadata.len())
        .sum()
}
