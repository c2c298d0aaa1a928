//! A trigger's `filter`, `input`, `prompt` and `concurrency_key` (with `on_busy` and the
//! debounce): compiled when the configuration loads, so that an error is reported at its place
//! in the file, never met by a delivery.

use std::time::Duration;

use agent_trigger::Trigger;
use agent_trigger::concurrency::{Concurrency, ConcurrencyKey, Debounce, OnBusy};
use agent_trigger::rules::{Filter, InputExpression, PromptTemplate, RuleError};
use toml::Spanned;

use super::file::RawTrigger;
use super::locate::{ConfigError, Locator};

/// `trigger` with the rules `entry` writes.
pub fn compile(
    locate: &Locator<'_>,
    entry: &RawTrigger,
    mut trigger: Trigger,
) -> Result<Trigger, ConfigError> {
    if let Some(text) = &entry.filter {
        trigger = trigger.with_filter(
            Filter::parse(text.get_ref())
                .map_err(|error| refused(locate, text, "filter", error))?,
        );
    }
    if let Some(text) = &entry.input {
        trigger = trigger.with_input(
            InputExpression::parse(text.get_ref())
                .map_err(|error| refused(locate, text, "input", error))?,
        );
    }
    if let Some(text) = &entry.prompt {
        trigger = trigger.with_prompt(
            PromptTemplate::parse(text.get_ref())
                .map_err(|error| refused(locate, text, "prompt", error))?,
        );
    }
    concurrency(locate, entry, trigger)
}

/// The longest debounce, and the default maximum's multiple of the quiet period.
const MAX_DEBOUNCE_SECS: u64 = 30 * 24 * 60 * 60;
const DEFAULT_MAX_FACTOR: u64 = 10;

/// `concurrency_key`, `on_busy`, `debounce_secs` and `debounce_max_secs`; the last three need
/// the first.
fn concurrency(
    locate: &Locator<'_>,
    entry: &RawTrigger,
    trigger: Trigger,
) -> Result<Trigger, ConfigError> {
    let Some(text) = &entry.concurrency_key else {
        let without_key =
            |what: &str| format!("{what} needs a concurrency_key: the subject it applies to");
        if let Some(on_busy) = &entry.on_busy {
            return Err(locate.at(on_busy, without_key("on_busy")));
        }
        if let Some(debounce) = &entry.debounce_secs {
            return Err(locate.at(debounce, without_key("debounce_secs")));
        }
        if let Some(max) = &entry.debounce_max_secs {
            return Err(locate.at(max, without_key("debounce_max_secs")));
        }
        return Ok(trigger);
    };
    let key = ConcurrencyKey::parse(text.get_ref())
        .map_err(|error| refused(locate, text, "concurrency_key", error))?;
    let mut concurrency = Concurrency::new(key);
    if let Some(name) = &entry.on_busy {
        let on_busy: OnBusy = name.get_ref().parse().map_err(
            |error: agent_trigger::concurrency::UnknownOnBusy| locate.at(name, error.to_string()),
        )?;
        concurrency = concurrency.with_on_busy(on_busy);
    }
    match (&entry.debounce_secs, &entry.debounce_max_secs) {
        (None, Some(max)) => {
            return Err(locate.at(
                max,
                "debounce_max_secs needs debounce_secs: the quiet period it bounds".to_owned(),
            ));
        }
        (None, None) => {}
        (Some(quiet), max) => {
            let quiet_for = locate.seconds(quiet, "debounce_secs", MAX_DEBOUNCE_SECS)?;
            let max_for = match max {
                Some(max) => locate.seconds(max, "debounce_max_secs", MAX_DEBOUNCE_SECS)?,
                None => Duration::from_secs(
                    (quiet.get_ref() * DEFAULT_MAX_FACTOR).min(MAX_DEBOUNCE_SECS),
                ),
            };
            let debounce = Debounce::new(quiet_for, max_for).ok_or_else(|| {
                locate.at(
                    max.as_ref().unwrap_or(quiet),
                    "debounce_max_secs must be at least debounce_secs".to_owned(),
                )
            })?;
            concurrency = concurrency.with_debounce(debounce);
        }
    }
    Ok(trigger.with_concurrency(concurrency))
}

/// The error at its place in the file: the line and column inside the expression, carried over
/// to the file when the string is written as it reads (no escapes); else at the string, with
/// the place inside it named.
fn refused(
    locate: &Locator<'_>,
    text: &Spanned<String>,
    what: &str,
    error: RuleError,
) -> ConfigError {
    let (Some(line), Some(column)) = (error.line(), error.column()) else {
        return locate.at(text, format!("{what}: {}", error.message()));
    };
    match offset_in_file(locate.text, text, line, column) {
        Some(at) => locate.error(Some(at..at), format!("{what}: {}", error.message())),
        None => locate.at(
            text,
            format!(
                "{what}: line {line}, column {column} of the {what}: {}",
                error.message()
            ),
        ),
    }
}

/// Where character `column` of line `line` of the string `value` is in the file, when the
/// file holds the string's text as is between its quotes.
fn offset_in_file(file: &str, value: &Spanned<String>, line: u32, column: u32) -> Option<usize> {
    let span = value.span();
    let written = file.get(span.clone())?;
    let quotes = if written.starts_with("'''") || written.starts_with("\"\"\"") {
        3
    } else {
        1
    };
    let mut start = span.start + quotes;
    // A multi-line string drops the newline right after its opening quotes.
    if quotes == 3 {
        let rest = &file[start..];
        start += if rest.starts_with("\r\n") {
            2
        } else if rest.starts_with('\n') {
            1
        } else {
            0
        };
    }
    let contents = file.get(start..span.end.checked_sub(quotes)?)?;
    if contents != value.get_ref() {
        return None;
    }
    let line_start: usize = contents
        .split_inclusive('\n')
        .take(line.saturating_sub(1) as usize)
        .map(str::len)
        .sum();
    let within: usize = contents[line_start..]
        .chars()
        .take(column.saturating_sub(1) as usize)
        .map(char::len_utf8)
        .sum();
    Some(start + line_start + within)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn first_error(file: &str) -> String {
        #[derive(serde::Deserialize)]
        struct One {
            filter: Spanned<String>,
        }
        let one: One = toml::from_str(file).unwrap();
        let locate = Locator {
            file: Path::new("c.toml"),
            text: file,
        };
        let error = Filter::parse(one.filter.get_ref()).unwrap_err();
        refused(&locate, &one.filter, "filter", error).to_string()
    }

    #[test]
    fn errors_point_into_the_expression() {
        assert!(
            first_error("filter = 'body.a == 1 && bodyy.b'\n")
                .starts_with("c.toml:1:26: filter: unknown name `bodyy`")
        );
        assert!(
            first_error("\n\nfilter = '''\nbody.a == 1 &&\n  bodyy.b'''\n")
                .starts_with("c.toml:5:3: filter: unknown name `bodyy`")
        );
        // Escapes move the text: the string itself, with the place inside it.
        assert!(
            first_error("filter = \"body.a == \\\"x\\\" && bodyy.b\"\n").starts_with(
                "c.toml:1:10: filter: line 1, column 18 of the filter: unknown name `bodyy`"
            )
        );
    }
}
