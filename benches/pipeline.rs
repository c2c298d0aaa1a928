//! The service's hot path and its rejections, beside the axum handler a user would write
//! instead, in one criterion run.
//!
//! ```text
//! cargo bench --bench pipeline
//! ```

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Request;
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

fn accepted(c: &mut Criterion) {
    let runtime = runtime();
    let world = World::new();
    let service = world.service();
    let router = support::idiomatic_router(&world);
    let mut group = c.benchmark_group("accepted");
    group.bench_function("trigger_service", |b| {
        b.to_async(&runtime).iter_batched(
            || world.accepted::<Full<Bytes>>(JIRA_BODY),
            |request| {
                let service = service.clone();
                async move {
                    let response = service.oneshot(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                    response
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("axum_idiomatic_handler", |b| {
        b.to_async(&runtime).iter_batched(
            || world.accepted::<axum::body::Body>(JIRA_BODY),
            |request| {
                let router = router.clone();
                async move {
                    let response = router.oneshot(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                    response
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("slack_signed", |b| {
        b.to_async(&runtime).iter_batched(
            || world.slack_signed(),
            |request| {
                let service = service.clone();
                async move {
                    let response = service.oneshot(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                    response
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn rejected(c: &mut Criterion) {
    let runtime = runtime();
    let world = World::new();
    let service = world.service_with_limit(64);
    let mut group = c.benchmark_group("rejected");
    type MakeRequest<'a> = Box<dyn Fn() -> Request<Full<Bytes>> + 'a>;
    let cases: [(&str, u16, MakeRequest<'_>); 4] = [
        (
            "401_missing_credentials",
            401,
            Box::new(|| {
                Request::post(format!("/api/trigger/jira/{}", world.jira))
                    .body(Full::new(Bytes::from_static(JIRA_BODY.as_bytes())))
                    .unwrap()
            }),
        ),
        (
            "404_unknown_trigger",
            404,
            Box::new(|| {
                let mut request = world.accepted::<Full<Bytes>>(JIRA_BODY);
                *request.uri_mut() = format!("/api/trigger/jira/{}", Uuid::from_u128(7))
                    .parse()
                    .unwrap();
                request
            }),
        ),
        (
            "400_bad_path",
            400,
            Box::new(|| {
                Request::post("/api/trigger/github/not-a-uuid")
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            }),
        ),
        (
            "413_by_length",
            413,
            Box::new(|| world.accepted::<Full<Bytes>>(JIRA_BODY)),
        ),
    ];
    for (name, status, make) in &cases {
        group.bench_function(*name, |b| {
            b.to_async(&runtime).iter_batched(
                make,
                |request| {
                    let service = service.clone();
                    async move {
                        let response = service.oneshot(request).await.unwrap();
                        assert_eq!(response.status(), *status);
                        response
                    }
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn validation(c: &mut Criterion) {
    let runtime = runtime();
    let world = World::new();
    let service = world.service_with_limit(2 * 1024 * 1024);
    let mut group = c.benchmark_group("body_validation");
    for (name, size) in [("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let document = json_document(size);
        group.throughput(Throughput::Bytes(document.len() as u64));
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_batched(
                || {
                    let mut request = world.accepted::<Full<Bytes>>("");
                    *request.body_mut() = Full::new(document.clone());
                    request
                        .headers_mut()
                        .insert("content-length", document.len().into());
                    request
                },
                |request| {
                    let service = service.clone();
                    async move {
                        let response = service.oneshot(request).await.unwrap();
                        assert_eq!(response.status(), 200);
                        response
                    }
                },
                criterion::BatchSize::SmallInput,
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
criterion_main!(benches);
