//! The `metrics` feature: deliveries counted by source, outcome and status, and timed.
#![cfg(feature = "metrics")]

pub mod common;

use std::future::Future;

use agent_trigger::Source;
use agent_trigger::telemetry::{DELIVERIES_TOTAL, DELIVERY_DURATION_SECONDS};
use common::*;
use http::Request;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};

#[test]
fn deliveries_are_counted_and_timed() {
    let snapshot = recorded(|| async {
        let fixture = Fixture::new();
        let (service, _rx) = fixture.channel_service();
        let body = r#"{"webhookEvent":"jira:issue_created"}"#;
        for _ in 0..2 {
            send(
                service.clone(),
                fixture.bearer(Source::Jira, body).body(full(body)).unwrap(),
            )
            .await;
        }
        send(
            service.clone(),
            Request::post(fixture.path(Source::Slack))
                .body(full("{}"))
                .unwrap(),
        )
        .await;
    });

    let counter = |source, outcome, status| delivery_count(&snapshot, source, outcome, status);
    assert_eq!(counter("jira", "started", "200"), Some(2));
    assert_eq!(counter("slack", "missing_credentials", "401"), Some(1));
    let timings: usize = snapshot
        .iter()
        .filter(|(key, ..)| key.key().name() == DELIVERY_DURATION_SECONDS)
        .map(|(_, _, _, value)| match value {
            DebugValue::Histogram(values) => values.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(timings, 3);
}

#[test]
fn a_delivery_that_panics_is_still_counted_as_a_500() {
    let snapshot = recorded(|| async {
        let fixture = Fixture::new();
        let sink = ScriptedSink::new(|_| panic!("sink exploded"));
        let answer = send(
            fixture.service_with(sink),
            fixture.bearer_request(Source::Jira, "{}"),
        )
        .await;
        assert_eq!(answer.status, 500);
    });
    assert_eq!(
        delivery_count(&snapshot, "jira", "internal_error", "500"),
        Some(1)
    );
}

type Snapshot = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// What a recorder of its own took while `deliveries` ran on a fresh runtime.
fn recorded<F: Future<Output = ()>>(deliveries: impl FnOnce() -> F) -> Snapshot {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(deliveries());
    });
    snapshotter.snapshot().into_vec()
}

/// The deliveries counted with these labels, if any were.
fn delivery_count(snapshot: &Snapshot, source: &str, outcome: &str, status: &str) -> Option<u64> {
    snapshot.iter().find_map(|(key, _, _, value)| {
        let labels: Vec<_> = key
            .key()
            .labels()
            .map(|label| (label.key(), label.value()))
            .collect();
        let wanted = key.kind() == MetricKind::Counter
            && key.key().name() == DELIVERIES_TOTAL
            && labels == [("source", source), ("outcome", outcome), ("status", status)];
        match (wanted, value) {
            (true, DebugValue::Counter(count)) => Some(*count),
            _ => None,
        }
    })
}
