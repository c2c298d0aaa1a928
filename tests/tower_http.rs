//! The service under a typical tower-http stack (request ids, sensitive headers, tracing,
//! panic catching, timeouts), and what reaches the trace: everything useful, never the key.

pub mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_trigger::Source;
use common::*;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnRequest, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_stack_works_and_the_authorization_header_never_reaches_a_trace() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fixture = Fixture::new();
    let (triggers, mut executions) = fixture.channel_service();
    let stack = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(
                    DefaultMakeSpan::new()
                        .level(Level::INFO)
                        .include_headers(true),
                )
                .on_request(DefaultOnRequest::new().level(Level::INFO))
                .on_response(
                    DefaultOnResponse::new()
                        .level(Level::INFO)
                        .include_headers(true),
                ),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(5),
        ))
        .service(triggers);

    let body = r#"{"webhookEvent":"jira:issue_created"}"#;
    let request = fixture
        .bearer(Source::Jira, body)
        .header("x-atlassian-webhook-identifier", "d-77")
        .body(full(body))
        .unwrap();
    let response = stack.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().contains_key("x-request-id"),
        "request ids propagate"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let execution = executions.recv().await.unwrap();
    assert_eq!(bytes, format!(r#"{{"executionId":"{}"}}"#, execution.id));

    let mut unauthenticated = Request::post(fixture.path(Source::Jira))
        .body(full(body))
        .unwrap();
    unauthenticated.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_static("Bearer atk_not_a_real_key_but_secret_anyway"),
    );
    let response = stack.oneshot(unauthenticated).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let trace = captured.text();
    // The trace is there and says what operators need...
    assert!(trace.contains("webhook_delivery"), "{trace}");
    assert!(
        trace.contains("delivery_id=\"d-77\"") || trace.contains("delivery_id=d-77"),
        "{trace}"
    );
    assert!(trace.contains("caller=key:ci"), "{trace}");
    assert!(trace.contains(&execution.id.to_string()), "{trace}");
    assert!(
        trace.contains("x-request-id"),
        "headers are traced: {trace}"
    );
    assert!(
        trace.contains("authorization: Sensitive")
            || trace.contains("\"authorization\": Sensitive"),
        "{trace}"
    );
    // ...and never the key.
    assert!(
        !trace.contains(fixture.key.expose()),
        "the API key reached a trace"
    );
    assert!(
        !trace.contains("atk_not_a_real_key_but_secret_anyway"),
        "a bearer token reached a trace"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_subscriber_that_takes_events_but_not_spans_still_gets_one_line_per_delivery() {
    use tracing_subscriber::filter;
    use tracing_subscriber::layer::SubscriberExt;

    let captured = Captured::default();
    let writer = captured.clone();
    // A global filter: spans are never created, events are.
    let subscriber = tracing_subscriber::registry()
        .with(filter::filter_fn(|metadata| metadata.is_event()))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        );
    let _guard = tracing::subscriber::set_default(subscriber);

    let fixture = Fixture::new();
    let (triggers, _executions) = fixture.channel_service();
    let body = r#"{"webhookEvent":"jira:issue_created"}"#;
    let request = fixture
        .bearer(Source::Jira, body)
        .header("x-atlassian-webhook-identifier", "delivery-7")
        .body(full(body))
        .unwrap();
    let response = triggers.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let execution_id = answer["executionId"].as_str().unwrap();

    let trace = captured.text();
    let lines: Vec<&str> = trace
        .lines()
        .filter(|line| line.contains("webhook delivery"))
        .collect();
    assert_eq!(lines.len(), 1, "{trace}");
    assert!(
        lines[0].contains("source=\"jira\"") || lines[0].contains("source=jira"),
        "{trace}"
    );
    assert!(
        lines[0].contains(&fixture.trigger(Source::Jira).to_string()),
        "{trace}"
    );
    assert!(
        lines[0].contains("outcome=\"started\"") || lines[0].contains("outcome=started"),
        "{trace}"
    );
    assert!(lines[0].contains("status=200"), "{trace}");
    // With no span to hold them, the line itself carries what the span would have.
    for field in [
        "caller=key:ci".to_owned(),
        "delivery_id=\"delivery-7\"".to_owned(),
        "action=\"jira:issue_created\"".to_owned(),
        format!("execution_id={execution_id}"),
    ] {
        assert!(lines[0].contains(&field), "no {field} in {trace}");
    }
    assert!(
        !trace.contains(fixture.key.expose()),
        "the API key reached a trace"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn what_the_pipeline_logs_is_inside_the_delivery_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fixture = Fixture::new();
    let failing = ScriptedSink::new(|_| Err(agent_trigger::SinkError::internal("queue on fire")));
    let response = fixture
        .service_with(failing)
        .oneshot(fixture.bearer_request(Source::Jira, "{}"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let trace = captured.text();
    let failure = trace
        .lines()
        .find(|line| line.contains("backend failure"))
        .unwrap_or_else(|| panic!("no failure line: {trace}"));
    assert!(failure.contains("webhook_delivery{"), "{failure}");
    assert!(
        failure.contains("source=\"jira\"") || failure.contains("source=jira"),
        "{failure}"
    );
}

/// A subscriber layer that panics on the delivery's closing line, as a faulty one might.
struct PanicsOnTheDeliveryLine;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PanicsOnTheDeliveryLine {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "agent_trigger::telemetry" {
            panic!("subscriber exploded");
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_subscriber_that_panics_on_the_record_does_not_change_the_answer() {
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(PanicsOnTheDeliveryLine);
    let _guard = tracing::subscriber::set_default(subscriber);

    let fixture = Fixture::new();
    let (service, mut executions) = fixture.channel_service();
    for _ in 0..2 {
        let answer = send(
            service.clone(),
            fixture.bearer_request(Source::Jira, r#"{"webhookEvent":"jira:issue_created"}"#),
        )
        .await;
        // The execution was started, so the caller must hear so rather than retry.
        assert_eq!(answer.status, StatusCode::OK);
        let started = executions.try_recv().expect("the execution was queued");
        assert_eq!(answer.json["executionId"], started.id.to_string());
    }
}
