//! A host that logs through the `log` crate and installs no tracing subscriber still sees each
//! delivery, through tracing's `log` bridge (the service skips the span only when neither a
//! subscriber nor a logger could see it). The logger is process-wide, so this file holds the
//! only test that installs one.

pub mod common;

use std::sync::Mutex;

use agent_trigger::Source;
use common::*;
use http::StatusCode;

/// Every record at `INFO` or above, as `target: message`.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{}: {}", record.target(), record.args());
            self.0.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

fn captured() -> Vec<String> {
    std::mem::take(&mut *CAPTURE.0.lock().unwrap())
}

#[tokio::test(flavor = "current_thread")]
async fn deliveries_reach_a_log_logger_without_a_tracing_subscriber() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let fixture = Fixture::new();
    let (triggers, _executions) = fixture.channel_service();
    let body = r#"{"webhookEvent":"jira:issue_created"}"#;
    let answer = send(triggers, fixture.bearer_request(Source::Jira, body)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let lines = captured();
    // The delivery's span, with its fields, and the line that closes it.
    assert!(
        lines
            .iter()
            .any(|line| line.contains("webhook_delivery") && line.contains("source=\"jira\"")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains("webhook delivery") && line.contains("status=200")),
        "{lines:#?}"
    );
    // Never the key.
    let key = fixture.key.expose();
    assert!(lines.iter().all(|line| !line.contains(key)), "{lines:#?}");
}
