//! Heap allocations made inside the service for one accepted request, counted with a counting
//! global allocator (the request is built before counting starts, the response dropped after).
//!
//! ```text
//! cargo bench --bench allocations
//! ```
//!
//! With `PROFILE_LOOP=N` it then sends N more accepted requests through the service, for a
//! profiler to watch (`perf record`, `valgrind --tool=callgrind`); with `PROFILE_LARGE=N`, N
//! requests whose body is the 1 MiB document of the validation benchmark; with
//! `PROFILE_PRETTY=N`, N whose body is that document pretty-printed (its size is printed). For
//! comparison, `PROFILE_SONIC=N` and `PROFILE_SONIC_LARGE=N` validate the Jira body and the
//! 1 MiB document N times with sonic-rs (`IgnoredAny`), outside any service.

pub mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use support::{JIRA_BODY, World, json_document};
use tower::ServiceExt;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: the caller's layout is passed on as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the pointer came from `System.alloc` with this layout.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(new_size, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUNDS: usize = 1000;

/// Counts what `service` allocates for `ROUNDS` accepted requests, built before counting starts
/// and whose responses are dropped after it stops.
async fn measure<S, B, R>(label: &str, service: &S, request: impl Fn() -> http::Request<B>)
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone,
    S::Error: std::fmt::Debug,
{
    let requests: Vec<_> = (0..ROUNDS).map(|_| request()).collect();
    let mut responses = Vec::with_capacity(ROUNDS);
    ALLOCATIONS.store(0, Ordering::SeqCst);
    BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for request in requests {
        responses.push(service.clone().oneshot(request).await.unwrap());
    }
    COUNTING.store(false, Ordering::SeqCst);
    assert!(responses.iter().all(|response| response.status() == 200));
    println!(
        "{label:<34} {:>5.1} allocations, {:>6.0} bytes per accepted request",
        ALLOCATIONS.load(Ordering::SeqCst) as f64 / ROUNDS as f64,
        BYTES.load(Ordering::SeqCst) as f64 / ROUNDS as f64
    );
}

/// How many profiling rounds the variable `name` asks for; none when it is unset.
fn rounds_from_env(name: &str) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `document` with the indentation and line breaks serde_json's pretty printer writes.
fn pretty_printed(document: &Bytes) -> Bytes {
    let value: serde_json::Value = serde_json::from_slice(document).unwrap();
    Bytes::from(serde_json::to_vec_pretty(&value).unwrap())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let world = World::new();
    let service = world.service();
    let router = support::idiomatic_router(&world);
    runtime.block_on(async {
        // Warm up lazily initialised state (tracing callsites, the timer) first.
        for _ in 0..10 {
            let _ = service
                .clone()
                .oneshot(world.accepted::<Full<Bytes>>(JIRA_BODY))
                .await;
            let _ = router
                .clone()
                .oneshot(world.accepted::<axum::body::Body>(JIRA_BODY))
                .await;
        }
        measure("TriggerService", &service, || {
            world.accepted::<Full<Bytes>>(JIRA_BODY)
        })
        .await;
        measure("axum idiomatic handler", &router, || {
            world.accepted::<axum::body::Body>(JIRA_BODY)
        })
        .await;

        let profile_rounds = rounds_from_env("PROFILE_LOOP");
        for _ in 0..profile_rounds {
            let response = service
                .clone()
                .oneshot(world.accepted::<Full<Bytes>>(JIRA_BODY))
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }

        let large_rounds = rounds_from_env("PROFILE_LARGE");
        let pretty_rounds = rounds_from_env("PROFILE_PRETTY");
        if large_rounds > 0 || pretty_rounds > 0 {
            let document = json_document(1024 * 1024);
            // Pretty-printing a megabyte through serde_json is left out when nobody asked.
            let pretty = if pretty_rounds > 0 {
                let pretty = pretty_printed(&document);
                println!("pretty-printed document: {} bytes", pretty.len());
                pretty
            } else {
                Bytes::new()
            };
            let service = world.service_with_limit(4 * 1024 * 1024);
            for (rounds, document) in [(large_rounds, &document), (pretty_rounds, &pretty)] {
                for _ in 0..rounds {
                    let request = world.accepted_document(document);
                    let response = service.clone().oneshot(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                }
            }
        }

        let sonic_rounds = rounds_from_env("PROFILE_SONIC");
        let sonic_large_rounds = rounds_from_env("PROFILE_SONIC_LARGE");
        // Built in every run, so that a run without rounds is the base that counts it.
        let document = json_document(1024 * 1024);
        for (rounds, body) in [
            (sonic_rounds, JIRA_BODY.as_bytes()),
            (sonic_large_rounds, &document[..]),
        ] {
            for _ in 0..rounds {
                let parsed =
                    sonic_rs::from_slice::<serde::de::IgnoredAny>(std::hint::black_box(body));
                assert!(parsed.is_ok());
            }
        }
    });
}
