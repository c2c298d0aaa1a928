//! The server's text log lines, timestamp and fields, written as `tracing-subscriber`'s
//! default format writes them (an RFC 3339 time in microseconds, `name=value` with strings
//! quoted and escaped, the message as it is with terminal escapes neutralised), with less work
//! per line: the default field formatter paints every field name, coloured or not, and writes
//! each field through a three-argument `write!`, and its timer costs several times what
//! `humantime`'s formatter does. Here a field's name is written as it is and only its value is formatted, and the
//! time comes from `humantime` (the JSON lines take this timer too). The message, and any value
//! this does not specialise (errors), still go through the default visitor, so the escaping of
//! what a caller could put in a message is `tracing-subscriber`'s own. `benches/README.md` has
//! the figures.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::FormatTime;

/// The server's log timer: the UTC time in microseconds, as
/// [`time::SystemTime`](tracing_subscriber::fmt::time::SystemTime) writes it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LineTime;

impl FormatTime for LineTime {
    fn format_time(&self, writer: &mut Writer<'_>) -> fmt::Result {
        write_time(writer, SystemTime::now())
    }
}

fn write_time(writer: &mut Writer<'_>, now: SystemTime) -> fmt::Result {
    // `humantime` panics on a time before 1970 and refuses one after 9999: a clock set that
    // far off gets the default timer, which copes.
    if now >= UNIX_EPOCH && write!(writer, "{}", humantime::format_rfc3339_micros(now)).is_ok() {
        return Ok(());
    }
    tracing_subscriber::fmt::time::SystemTime.format_time(writer)
}

/// The server's [`FormatFields`](tracing_subscriber::fmt::FormatFields) for text lines; same
/// output as [`DefaultFields`](tracing_subscriber::fmt::format::DefaultFields).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LineFields;

impl<'writer> MakeVisitor<Writer<'writer>> for LineFields {
    type Visitor = LineVisitor<'writer>;

    fn make_visitor(&self, writer: Writer<'writer>) -> Self::Visitor {
        LineVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// Writes one event's or span's fields, separated by spaces.
#[derive(Debug)]
pub(crate) struct LineVisitor<'writer> {
    writer: Writer<'writer>,
    is_empty: bool,
    result: fmt::Result,
}

impl LineVisitor<'_> {
    /// Writes `name=` and the value, or leaves out what the default format leaves out: the
    /// `log.*` fields by which `log` records carry what the line already says.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = self.pad().and_then(|()| {
            let writer = &mut self.writer;
            if writer.has_ansi_escapes() {
                // The default format's italic name and dimmed `=`.
                write!(writer, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")?;
            } else {
                writer.write_str(name)?;
                writer.write_char('=')?;
            }
            value(writer)
        });
    }

    /// What the default visitor writes, for the message and the values not specialised here.
    fn by_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() {
            return;
        }
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut visitor);
        self.result = visitor.finish();
        self.is_empty = false;
    }

    fn pad(&mut self) -> fmt::Result {
        if std::mem::take(&mut self.is_empty) {
            Ok(())
        } else {
            self.writer.write_char(' ')
        }
    }
}

impl Visit for LineVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.by_default(|visitor| visitor.record_str(field, value));
        } else {
            self.field(field, |writer| write!(writer, "{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |writer| write!(writer, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |writer| write!(writer, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |writer| write!(writer, "{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.by_default(|visitor| visitor.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.by_default(|visitor| visitor.record_debug(field, value));
        } else {
            self.field(field, |writer| write!(writer, "{value:?}"));
        }
    }
}

impl VisitOutput<fmt::Result> for LineVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for LineVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::{Duration, UNIX_EPOCH};

    use tracing_subscriber::fmt::format::{DefaultFields, Writer};
    use tracing_subscriber::fmt::time::FormatTime;
    use tracing_subscriber::fmt::{FormatFields, MakeWriter};

    use super::{LineFields, LineTime, write_time};

    /// Keeps what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Failure;

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("refused: \x1b[31mred")
        }
    }

    impl std::error::Error for Failure {}

    /// Every kind of field, including what a caller could choose: quotes, line breaks and
    /// terminal escapes in values and in the message.
    fn log_everything() {
        let hostile = "a \"quoted\"\nline\x1b[2J";
        let none: Option<&str> = None;
        tracing::info!(
            source = "webhook",
            delivery_id = Some(hostile),
            action = none,
            trigger_id = %uuid::Uuid::nil(),
            caller = %"key:ci",
            status = 200u16,
            offset = -3i64,
            replayed = false,
            r#type = "raw name",
            error = &Failure as &(dyn std::error::Error + 'static),
            "webhook delivery"
        );
        tracing::warn!("a message that clears \x1b[2J and titles \x1b]0;title\x07");
        tracing::error!(count = 2u64, "only numbers");
        tracing::info!(log.target = "from_log", "a `log` record's line");
    }

    fn lines<F>(fields: F, ansi: bool) -> String
    where
        F: for<'writer> FormatFields<'writer> + Send + Sync + 'static,
    {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(fields)
            .with_ansi(ansi)
            .without_time()
            .with_writer(captured.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        let bytes = captured
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        String::from_utf8(bytes).expect("the log is UTF-8")
    }

    #[test]
    fn lines_are_those_of_the_default_format_plain_and_coloured() {
        for ansi in [false, true] {
            let expected = lines(DefaultFields::new(), ansi);
            assert_eq!(lines(LineFields, ansi), expected, "ansi: {ansi}");
        }
        // The comparison means something: the lines hold each field, escaped.
        let plain = lines(LineFields, false);
        assert_eq!(plain.lines().count(), 4, "{plain}");
        assert!(
            plain.contains(r#"delivery_id="a \"quoted\"\nline\u{1b}[2J""#),
            "{plain}"
        );
        assert!(plain.contains("status=200 offset=-3 replayed=false type=\"raw name\""));
        assert!(
            !plain.contains('\x1b'),
            "an escape reached the log: {plain}"
        );
        assert!(!plain.contains("log.target"), "{plain}");
    }

    fn time_with(timer: &impl FormatTime) -> String {
        let mut line = String::new();
        timer
            .format_time(&mut Writer::new(&mut line))
            .expect("the time is written");
        line
    }

    #[test]
    fn the_time_is_written_as_the_default_timer_writes_it() {
        let ours = time_with(&LineTime);
        let default = time_with(&tracing_subscriber::fmt::time::SystemTime);
        // 2026-12-02T15:24:33.976982Z: the same shape, and the same moment within a second.
        assert_eq!(ours.len(), default.len(), "{ours} / {default}");
        assert_eq!(ours.len(), 27, "{ours}");
        let shape = |time: &str| {
            time.bytes()
                .map(|byte| if byte.is_ascii_digit() { b'0' } else { byte })
                .collect::<Vec<u8>>()
        };
        assert_eq!(shape(&ours), shape(&default), "{ours} / {default}");
        let ours = humantime::parse_rfc3339(&ours).expect("RFC 3339");
        let default = humantime::parse_rfc3339(&default).expect("RFC 3339");
        let apart = default.duration_since(ours).unwrap_or_default();
        assert!(apart < Duration::from_secs(1), "{apart:?} apart");
    }

    #[test]
    fn a_clock_before_1970_or_after_9999_gets_the_default_timer() {
        for far_off in [
            UNIX_EPOCH - Duration::from_secs(1),
            UNIX_EPOCH + Duration::from_secs(253_402_300_800),
        ] {
            let mut line = String::new();
            write_time(&mut Writer::new(&mut line), far_off).expect("a time is written");
            assert_eq!(line.len(), 27, "{line}");
        }
        let mut line = String::new();
        let moment = UNIX_EPOCH + Duration::from_micros(1_764_689_073_976_982);
        write_time(&mut Writer::new(&mut line), moment).expect("the time is written");
        assert_eq!(line, "2025-12-02T15:24:33.976982Z");
    }
}
