//! Configuration errors and where they are: `file:line:column` from the TOML parser's byte
//! spans, so that an operator goes straight to the line.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

/// The longest duration a setting takes (30 days): beyond it, a typo.
pub const MAX_DURATION_SECS: u64 = 30 * 24 * 60 * 60;

/// The first problem found, located in its file when it came from one.
#[derive(Debug)]
pub struct ConfigError {
    file: Option<PathBuf>,
    line: Option<(usize, usize)>,
    message: String,
}

impl ConfigError {
    /// A problem with no file to point at: an environment variable's value.
    pub fn unlocated(message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            line: None,
            message: message.into(),
        }
    }

    /// A problem with the whole file (it cannot be read, say).
    pub fn in_file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: Some(file.to_owned()),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some((line, column))) => {
                write!(f, "{}:{line}:{column}: {}", file.display(), self.message)
            }
            (Some(file), None) => write!(f, "{}: {}", file.display(), self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Turns byte spans of one file's text into `file:line:column`.
pub struct Locator<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl Locator<'_> {
    /// An error at `value`'s place in the file.
    pub fn at<T>(&self, value: &Spanned<T>, message: String) -> ConfigError {
        self.error(Some(value.span()), message)
    }

    /// An error at `span`, or about the whole file without one.
    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let line = span.map(|span| {
            let before = &self.text[..span.start.min(self.text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit('\n')
                .next()
                .map_or(0, |last| last.chars().count())
                + 1;
            (line, column)
        });
        ConfigError {
            file: Some(self.file.to_owned()),
            line,
            message: message.into().trim_end().to_owned(),
        }
    }

    /// The non-empty text of `value`.
    pub fn non_empty(&self, value: &Spanned<String>, what: &str) -> Result<String, ConfigError> {
        if value.get_ref().trim().is_empty() {
            return Err(self.at(value, format!("{what} must not be empty")));
        }
        Ok(value.get_ref().clone())
    }

    /// The non-empty value of the environment variable `name` names.
    pub fn variable(
        &self,
        name: &Spanned<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ConfigError> {
        env(name.get_ref())
            .filter(|value| !value.is_empty())
            .ok_or_else(|| {
                self.at(
                    name,
                    format!(
                        "environment variable {} is not set (or empty)",
                        name.get_ref()
                    ),
                )
            })
    }

    /// Whole seconds up to [`MAX_DURATION_SECS`]; a zero is the caller's to refuse.
    pub fn bounded_duration(
        &self,
        seconds: &Spanned<u64>,
        what: &str,
    ) -> Result<std::time::Duration, ConfigError> {
        if *seconds.get_ref() > MAX_DURATION_SECS {
            return Err(self.at(
                seconds,
                format!("{what} must be at most {MAX_DURATION_SECS} (30 days)"),
            ));
        }
        Ok(std::time::Duration::from_secs(*seconds.get_ref()))
    }

    /// Whole seconds, from 1 up to `maximum` (`what` names the setting in the error).
    pub fn seconds(
        &self,
        seconds: &Spanned<u64>,
        what: &str,
        maximum: u64,
    ) -> Result<std::time::Duration, ConfigError> {
        if !(1..=maximum).contains(seconds.get_ref()) {
            return Err(self.at(seconds, format!("{what} must be from 1 to {maximum}")));
        }
        Ok(std::time::Duration::from_secs(*seconds.get_ref()))
    }
}
