//! The server's log: text or JSON lines on stderr, written off the request path.

use crate::log_format::{LineFields, LineTime};

/// Logs to stderr: text by default, one JSON object per line with
/// `AGENT_TRIGGER_LOG_FORMAT=json`; the level from `AGENT_TRIGGER_LOG` (default `info`).
///
/// Lines are written by a thread of their own, through a buffer that is flushed whenever no
/// more lines wait: a request does not wait for a write to stderr, and under load many lines
/// share one write. When lines come faster than stderr takes them, requests wait (none is
/// dropped).
///
/// The log takes no spans: each delivery's line is then one flat event that carries every
/// field of the delivery (see the crate's telemetry), which costs a request far less than a
/// span built, recorded into, entered and closed. The span's other use, naming the delivery in
/// the lines logged while it is handled, is not needed here: such a line (a backend failure)
/// is followed by the delivery's own line, with its answer. Its timestamp and fields are
/// written by [`crate::log_format`].
pub fn init() -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let levels =
        EnvFilter::try_from_env("AGENT_TRIGGER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = levels.and(filter_fn(|metadata| !metadata.is_span()));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let logs = tracing_subscriber::fmt::layer()
        .with_timer(LineTime)
        .with_writer(writer);
    let registry = tracing_subscriber::registry();
    if std::env::var("AGENT_TRIGGER_LOG_FORMAT").is_ok_and(|format| format == "json") {
        registry
            .with(logs.json().flatten_event(true).with_filter(filter))
            .init();
    } else {
        registry
            .with(
                logs.fmt_fields(LineFields)
                    .with_ansi(colour)
                    .with_filter(filter),
            )
            .init();
    }
    guard
}
