//! Acknowledged executions per second through the whole service, with the in-memory sink and
//! with the SQLite sink (every acknowledgement committed to disk), side by side in one run.
//!
//! ```text
//! cargo bench --features sqlite --bench sink_throughput
//! ```
//!
//! Options through the environment: `DELIVERIES` (default 20000 per sink), `CONCURRENCY`
//! (default 64 requests in flight), `ROUNDS` (default 3; the median is reported).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_trigger::memory::{ChannelSink, MemoryKeyStore};
use agent_trigger::sqlite::SqliteStore;
use agent_trigger::{
    ApiKey, ApiKeyRecord, ExecutionSink, KeyStore, Source, Trigger, TriggerService,
};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tower::ServiceExt;
use uuid::Uuid;

const BODY: &str = r#"{"timestamp":1732800000000,"webhookEvent":"jira:issue_created","issue":{"id":"10042","key":"SEC-42","fields":{"summary":"Rotate the leaked token","priority":{"name":"High"},"labels":["security","triage"]}},"user":{"accountId":"5b10ac8d82e05b22cc7d4ef5"}}"#;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Sends `deliveries` requests, `concurrency` at a time, and returns acknowledgements per second.
async fn drive<E: ExecutionSink, A: KeyStore>(
    service: TriggerService<E, A>,
    path: Arc<str>,
    key: Arc<str>,
    deliveries: usize,
    concurrency: usize,
) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let service = service.clone();
        let (path, key) = (Arc::clone(&path), Arc::clone(&key));
        let share = deliveries / concurrency + usize::from(task < deliveries % concurrency);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                let request = Request::post(&*path)
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                    .unwrap();
                let response = service.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    deliveries as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let deliveries = env_number("DELIVERIES", 20_000);
    let concurrency = env_number("CONCURRENCY", 64).max(1);
    let rounds = env_number("ROUNDS", 3).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let trigger_id = Uuid::now_v7();
        let key = ApiKey::generate();
        let path: Arc<str> = format!("/api/trigger/jira/{trigger_id}").into();
        let plaintext: Arc<str> = key.expose().into();
        let trigger = || Trigger::new(trigger_id, "bench", Source::Jira);

        let directory = std::env::temp_dir().join(format!("agent-trigger-bench-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&directory).unwrap();
        let sqlite = SqliteStore::open(directory.join("bench.db")).unwrap();
        sqlite.insert_trigger(trigger()).await.unwrap();
        sqlite.insert_key(key.digest(), ApiKeyRecord::new("bench", "bench")).await.unwrap();
        let sqlite_service = TriggerService::new(sqlite.clone(), sqlite.clone());

        let memory = Arc::new(
            MemoryKeyStore::new()
                .with_trigger(trigger())
                .with_key(key.digest(), ApiKeyRecord::new("bench", "bench")),
        );
        let (sink, mut executions) = ChannelSink::new(65_536);
        tokio::spawn(async move { while executions.recv().await.is_some() {} });
        let memory_service = TriggerService::builder(sink, memory).backend_timeout(Duration::from_secs(60)).build();

        let (mut memory_rates, mut sqlite_rates) = (Vec::new(), Vec::new());
        // Alternate the two so that drift on a noisy machine falls on both alike.
        for _ in 0..rounds {
            memory_rates.push(drive(memory_service.clone(), Arc::clone(&path), Arc::clone(&plaintext), deliveries, concurrency).await);
            sqlite_rates.push(drive(sqlite_service.clone(), Arc::clone(&path), Arc::clone(&plaintext), deliveries, concurrency).await);
        }
        let (memory_rate, sqlite_rate) = (median(memory_rates), median(sqlite_rates));
        println!("acknowledged executions per second ({deliveries} deliveries, {concurrency} in flight, median of {rounds} rounds)");
        println!("  in-memory sink (ChannelSink):  {memory_rate:>10.0}");
        println!("  SQLite sink (durable commits): {sqlite_rate:>10.0}");
        println!("  ratio in-memory / SQLite:      {:>10.1}x", memory_rate / sqlite_rate);
        drop((sqlite_service, sqlite));
        let _ = std::fs::remove_dir_all(&directory);
    });
}
