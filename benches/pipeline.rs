//! The service's hot path and its rejections, beside the axum handler a user would write
//! instead, in one criterion run. Criterion's `time:` lines give its slope estimate; the run
//! ends with a table of the medians it measured, and the ratios that matter.
//!
//! ```text
//! cargo bench --bench pipeline
//! ```

pub mod support;

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group};
use http::{Request, Response};
use http_body_util::Full;
use support::{JIRA_BODY, World, json_document};
use tower::ServiceExt;
use uuid::Uuid;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Requests are built in batches of this many before each timed stretch. A server hands the
/// service a request it has just parsed, still in cache; criterion's `SmallInput` would build
/// thousands at a time in the longer samples, megabytes that are cold again when they are timed.
const BATCH: u64 = 64;

/// Times `service` answering requests from `request` (built outside the timing) with `status`.
fn bench_requests<S, B, R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    service: &S,
    status: u16,
    request: impl Fn() -> Request<B>,
) where
    S: tower::Service<Request<B>, Response = Response<R>> + Clone,
    S::Error: Debug,
{
    group.bench_function(name, |b| {
        b.to_async(runtime).iter_batched(
            &request,
            |request| {
                let service = service.clone();
                async move {
                    let response = service.oneshot(request).await.unwrap();
                    assert_eq!(response.status(), status);
                    response
                }
            },
            BatchSize::NumIterations(BATCH),
        )
    });
}

fn accepted(c: &mut Criterion) {
    let runtime = runtime();
    let world = World::new();
    let service = world.service();
    let router = support::idiomatic_router(&world);
    let mut group = c.benchmark_group("accepted");
    bench_requests(
        &mut group,
        &runtime,
        "trigger_service",
        &service,
        200,
        || world.accepted::<Full<Bytes>>(JIRA_BODY),
    );
    bench_requests(
        &mut group,
        &runtime,
        "axum_idiomatic_handler",
        &router,
        200,
        || world.accepted::<axum::body::Body>(JIRA_BODY),
    );
    bench_requests(&mut group, &runtime, "slack_signed", &service, 200, || {
        world.slack_signed()
    });
    bench_requests(
        &mut group,
        &runtime,
        "webhook_signed",
        &service,
        200,
        || world.webhook_signed(),
    );
    bench_requests(&mut group, &runtime, "github_signed", &service, 200, || {
        world.github_signed()
    });
    bench_requests(
        &mut group,
        &runtime,
        "floor_drop_and_answer",
        &support::floor_service(),
        200,
        || world.accepted::<Full<Bytes>>(JIRA_BODY),
    );
    group.finish();
}

fn rejected(c: &mut Criterion) {
    let runtime = runtime();
    let world = World::new();
    let service = world.service_with_limit(64);
    let mut group = c.benchmark_group("rejected");
    bench_requests(
        &mut group,
        &runtime,
        "401_missing_credentials",
        &service,
        401,
        || {
            Request::post(format!("/api/trigger/jira/{}", world.jira))
                .body(Full::new(Bytes::from_static(JIRA_BODY.as_bytes())))
                .unwrap()
        },
    );
    bench_requests(
        &mut group,
        &runtime,
        "404_unknown_trigger",
        &service,
        404,
        || {
            let mut request = world.accepted::<Full<Bytes>>(JIRA_BODY);
            *request.uri_mut() = format!("/api/trigger/jira/{}", Uuid::from_u128(7))
                .parse()
                .unwrap();
            request
        },
    );
    bench_requests(&mut group, &runtime, "400_bad_path", &service, 400, || {
        Request::post("/api/trigger/github/not-a-uuid")
            .body(Full::new(Bytes::new()))
            .unwrap()
    });
    bench_requests(&mut group, &runtime, "413_by_length", &service, 413, || {
        world.accepted::<Full<Bytes>>(JIRA_BODY)
    });
    group.finish();
}

/// Body validation through the service, and the same document through the parsers a host
/// could reach for instead, outside any service: serde_json skipping every value
/// (`IgnoredAny`, its cheapest full check), serde_json building a `Value` (what the axum handler
/// does), simd-json building its tape (a simdjson-class parser, with its SIMD code chosen at run
/// time), and sonic-rs skipping every value (a SIMD parser that validates without building a
/// tree, the candidate to replace the service's own scan). The ratios come out of one run.
fn validation(c: &mut Criterion) {
    let runtime = runtime();
    let world = World::new();
    let service = world.service_with_limit(2 * 1024 * 1024);
    let mut group = c.benchmark_group("body_validation");
    for (size, length) in [("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let document = json_document(length);
        group.throughput(Throughput::Bytes(document.len() as u64));
        let name = format!("{size}/trigger_service");
        bench_requests(&mut group, &runtime, &name, &service, 200, || {
            world.accepted_document(&document)
        });
        group.bench_function(format!("{size}/serde_json_ignored_any"), |b| {
            b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(&document).unwrap())
        });
        group.bench_function(format!("{size}/serde_json_value"), |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(&document).unwrap())
        });
        group.bench_function(format!("{size}/sonic_rs_ignored_any"), |b| {
            b.iter(|| sonic_rs::from_slice::<serde::de::IgnoredAny>(&document).unwrap())
        });
        // simd-json parses in place: each iteration gets its own copy, made outside the timing.
        group.bench_function(format!("{size}/simd_json_tape"), |b| {
            b.iter_batched_ref(
                || document.to_vec(),
                |copy| simd_json::to_tape(copy).unwrap().0.len(),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = accepted, rejected, validation
}

fn main() {
    let started = SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_medians(started);
}

/// One benchmark's median from what criterion wrote for it.
struct Median {
    id: String,
    nanos: f64,
    bytes: Option<f64>,
}

/// Where criterion keeps its results, found as criterion finds it.
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from);
    target.join("criterion")
}

/// The medians of the benchmarks measured since `started` (a filtered run leaves the others'
/// older results in place), and the ratios the performance targets are stated in.
fn print_medians(started: SystemTime) {
    let mut medians: Vec<Median> = ["accepted", "rejected", "body_validation"]
        .iter()
        .flat_map(|group| {
            std::fs::read_dir(criterion_home().join(group))
                .into_iter()
                .flatten()
        })
        .filter_map(|entry| read_median(&entry.ok()?.path().join("new"), started))
        .collect();
    if medians.is_empty() {
        return;
    }
    medians.sort_by(|a, b| a.id.cmp(&b.id));
    println!("\nmedians of this run:");
    for median in &medians {
        match median.bytes {
            Some(bytes) => println!(
                "  {:<40} {:>10.3} µs  {:.2} GiB/s",
                median.id,
                median.nanos / 1000.0,
                bytes / median.nanos * 1e9 / f64::from(1u32 << 30)
            ),
            None => println!("  {:<40} {:>10.3} µs", median.id, median.nanos / 1000.0),
        }
    }
    let find = |id: &str| {
        medians
            .iter()
            .find(|median| median.id == id)
            .map(|median| median.nanos)
    };
    if let (Some(service), Some(axum)) = (
        find("accepted/trigger_service"),
        find("accepted/axum_idiomatic_handler"),
    ) {
        println!(
            "  the axum handler takes {:.1}x the service's time",
            axum / service
        );
    }
    for size in ["64KiB", "1MiB"] {
        let Some(service) = find(&format!("body_validation/{size}/trigger_service")) else {
            continue;
        };
        let others: Vec<String> = [
            "serde_json_ignored_any",
            "serde_json_value",
            "simd_json_tape",
            "sonic_rs_ignored_any",
        ]
        .iter()
        .filter_map(|other| {
            let time = find(&format!("body_validation/{size}/{other}"))?;
            Some(format!("{other} {:.2}x", time / service))
        })
        .collect();
        if !others.is_empty() {
            println!(
                "  {size}: time of each parser / the service's: {}",
                others.join(", ")
            );
        }
    }
}

fn read_median(directory: &Path, started: SystemTime) -> Option<Median> {
    let estimates = directory.join("estimates.json");
    if std::fs::metadata(&estimates).ok()?.modified().ok()? < started {
        return None;
    }
    let read = |file: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(directory.join(file)).ok()?).ok()
    };
    let benchmark = read("benchmark.json")?;
    Some(Median {
        id: benchmark["full_id"].as_str()?.to_owned(),
        nanos: read("estimates.json")?["median"]["point_estimate"].as_f64()?,
        bytes: benchmark["throughput"]["Bytes"].as_f64(),
    })
}
