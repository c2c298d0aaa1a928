//! Acknowledged executions per second through the whole service, with the in-memory sink, the
//! SQLite sink, the PostgreSQL sink (every acknowledgement committed) and the JetStream sink
//! (every acknowledgement after JetStream's publish ack), side by side in one run; then what
//! each id the stream remembers costs the NATS server.
//!
//! ```text
//! cargo bench --features sqlite,postgres,nats --bench sink_throughput
//! ```
//!
//! Options through the environment: `DELIVERIES` (default 20000 per sink), `CONCURRENCY`
//! (default 64 requests in flight), `ROUNDS` (default 3; the median is reported),
//! `IDEMPOTENCY_KEYS=1` (each request carries its own `Idempotency-Key`, as senders' delivery
//! ids do, so that every sink also records and checks one key per delivery),
//! `AGENT_TRIGGER_BENCH_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`; the
//! bench works in a schema of its own and drops it), `AGENT_TRIGGER_BENCH_NATS` (default
//! `nats://127.0.0.1:4222`; a stream of its own, deleted after). Without a feature, or with no
//! server answering, its row says so and the others run.

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
    let with_keys = env_number("IDEMPOTENCY_KEYS", 0) == 1;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let service = service.clone();
        let (path, key) = (Arc::clone(&path), Arc::clone(&key));
        let share = deliveries / concurrency + usize::from(task < deliveries % concurrency);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                let mut request = Request::post(&*path)
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json");
                if with_keys {
                    request = request.header("idempotency-key", Uuid::now_v7().to_string());
                }
                let request = request
                    .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                    .unwrap();
                let response = service.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), 200, "{:?}", response.headers());
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
        // Room for a whole round: the drain below must never be what a round measures.
        let (sink, mut executions) = ChannelSink::new(deliveries.max(65_536));
        tokio::spawn(async move { while executions.recv().await.is_some() {} });
        let memory_service = TriggerService::builder(sink, Arc::clone(&memory)).backend_timeout(Duration::from_secs(60)).build();

        #[cfg(feature = "nats")]
        let jetstream = jetstream::open().await;
        #[cfg(feature = "nats")]
        let jetstream_service = jetstream.as_ref().map(|(sink, _)| {
            TriggerService::builder(sink.clone(), Arc::clone(&memory))
                .backend_timeout(Duration::from_secs(60))
                .build()
        });
        #[cfg(feature = "nats")]
        let (mut jetstream_rates, server_memory_before) = (Vec::new(), jetstream::server_memory());
        #[cfg(feature = "postgres")]
        let postgres = postgres::open(trigger(), &key).await;
        #[cfg(feature = "postgres")]
        let postgres_service = postgres
            .as_ref()
            .map(|(store, _)| TriggerService::new(store.clone(), store.clone()));

        let (mut memory_rates, mut sqlite_rates) = (Vec::new(), Vec::new());
        #[cfg(feature = "postgres")]
        let mut postgres_rates = Vec::new();
        // Alternate them so that drift on a noisy machine falls on all alike.
        for _ in 0..rounds {
            memory_rates.push(drive(memory_service.clone(), Arc::clone(&path), Arc::clone(&plaintext), deliveries, concurrency).await);
            sqlite_rates.push(drive(sqlite_service.clone(), Arc::clone(&path), Arc::clone(&plaintext), deliveries, concurrency).await);
            #[cfg(feature = "postgres")]
            if let Some(service) = &postgres_service {
                postgres_rates.push(drive(service.clone(), Arc::clone(&path), Arc::clone(&plaintext), deliveries, concurrency).await);
            }
            #[cfg(feature = "nats")]
            if let Some(service) = &jetstream_service {
                jetstream_rates.push(drive(service.clone(), Arc::clone(&path), Arc::clone(&plaintext), deliveries, concurrency).await);
            }
        }
        let (memory_rate, sqlite_rate) = (median(memory_rates), median(sqlite_rates));
        let keys = if env_number("IDEMPOTENCY_KEYS", 0) == 1 { "each with an idempotency key" } else { "without ids" };
        println!("acknowledged executions per second ({deliveries} deliveries {keys}, {concurrency} in flight, median of {rounds} rounds)");
        println!("  in-memory sink (ChannelSink):      {memory_rate:>10.0}");
        println!("  SQLite sink (durable commits):     {sqlite_rate:>10.0}");
        #[cfg(feature = "postgres")]
        match postgres_rates.is_empty() {
            false => {
                let postgres_rate = median(postgres_rates);
                println!("  PostgreSQL sink (durable commits): {postgres_rate:>10.0}");
                println!("  ratio in-memory / SQLite:          {:>10.1}x", memory_rate / sqlite_rate);
                println!("  ratio PostgreSQL / SQLite:         {:>10.2}x", postgres_rate / sqlite_rate);
                println!("  ratio in-memory / PostgreSQL:      {:>10.1}x", memory_rate / postgres_rate);
            }
            true => {
                println!("  PostgreSQL sink:                   no server answered at {}", postgres::url());
                println!("  ratio in-memory / SQLite:          {:>10.1}x", memory_rate / sqlite_rate);
            }
        }
        #[cfg(not(feature = "postgres"))]
        {
            println!("  PostgreSQL sink:                   not built (add --features postgres)");
            println!("  ratio in-memory / SQLite:          {:>10.1}x", memory_rate / sqlite_rate);
        }
        #[cfg(feature = "nats")]
        match jetstream {
            Some((_, name)) => {
                let rate = median(jetstream_rates);
                println!("  JetStream sink (publish acks):     {rate:>10.0}");
                println!("  ratio JetStream / SQLite:          {:>10.2}x", rate / sqlite_rate);
                jetstream::report_and_delete(&name, server_memory_before).await;
            }
            None => println!("  JetStream sink:                    no server answered at {}", jetstream::url()),
        }
        #[cfg(not(feature = "nats"))]
        println!("  JetStream sink:                    not built (add --features nats)");
        drop((sqlite_service, sqlite));
        let _ = std::fs::remove_dir_all(&directory);
        #[cfg(feature = "postgres")]
        if let Some((store, schema)) = postgres {
            drop((postgres_service, store));
            postgres::drop_schema(&schema).await;
        }
    });
}

#[cfg(feature = "postgres")]
mod postgres {
    use agent_trigger::postgres::PostgresStore;
    use agent_trigger::{ApiKey, ApiKeyRecord, Trigger};
    use uuid::Uuid;

    pub fn url() -> String {
        std::env::var("AGENT_TRIGGER_BENCH_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// A store in a schema of its own, or `None` when no server answers.
    pub async fn open(trigger: Trigger, key: &ApiKey) -> Option<(PostgresStore, String)> {
        let schema = format!("bench_{}", Uuid::now_v7().simple());
        let store = PostgresStore::builder(url())
            .schema(schema.clone())
            .connect()
            .await
            .ok()?;
        store.insert_trigger(trigger).await.unwrap();
        store
            .insert_key(key.digest(), ApiKeyRecord::new("bench", "bench"))
            .await
            .unwrap();
        Some((store, schema))
    }

    pub async fn drop_schema(schema: &str) {
        if let Ok((client, connection)) =
            tokio_postgres::connect(&url(), tokio_postgres::NoTls).await
        {
            tokio::spawn(connection);
            let _ = client
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await;
        }
    }
}

#[cfg(feature = "nats")]
mod jetstream {
    use agent_trigger::nats::JetStreamSink;
    use uuid::Uuid;

    pub fn url() -> String {
        std::env::var("AGENT_TRIGGER_BENCH_NATS")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
    }

    /// A sink on a stream of its own, or `None` when no server answers.
    pub async fn open() -> Option<(JetStreamSink, String)> {
        let client = async_nats::connect(url()).await.ok()?;
        let id = Uuid::now_v7().simple().to_string();
        let name = format!("BENCH_{id}");
        let sink = JetStreamSink::builder(client)
            .stream(name.clone())
            .subject_prefix(format!("bench_{id}"))
            .connect()
            .await
            .ok()?;
        Some((sink, name))
    }

    /// The local nats-server's resident memory in bytes, when it runs on this machine.
    pub fn server_memory() -> Option<u64> {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim() == "nats-server" {
                let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
                let kib: u64 = status
                    .lines()
                    .find(|line| line.starts_with("VmRSS:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                return Some(kib * 1024);
            }
        }
        None
    }

    /// What each remembered id (one message on a subject of its own) costs the server, then
    /// the stream goes.
    pub async fn report_and_delete(name: &str, memory_before: Option<u64>) {
        let Ok(client) = async_nats::connect(url()).await else {
            return;
        };
        let context = async_nats::jetstream::new(client);
        if let Ok(mut stream) = context.get_stream(name).await
            && let Ok(info) = stream.info().await
        {
            let (messages, bytes) = (info.state.messages, info.state.bytes);
            println!(
                "  JetStream stream: {messages} remembered ids, {:.0} bytes stored each ({:.0} MB per million)",
                bytes as f64 / messages as f64,
                bytes as f64 / messages as f64
            );
            if let (Some(before), Some(after)) = (memory_before, server_memory()) {
                let grown = after.saturating_sub(before) as f64 / messages as f64;
                println!(
                    "  nats-server resident memory grew {grown:.0} bytes per remembered id ({:.0} MB per million)",
                    grown
                );
            }
        }
        let _ = context.delete_stream(name).await;
    }
}
