//! The environment's overrides, layered onto the checked configuration: the documented
//! `AGENT_TRIGGER_*` variables win over the file. These are the only variables the
//! configuration reads besides the ones the file itself names for keys and secrets (and the
//! log's, which are read before the file: see `logging.rs`).

use std::time::Duration;

use super::database::Database;
use super::limits::{Limits, MAX_COUNT, MAX_TIMEOUT_SECS};
use super::locate::ConfigError;

/// A `postgres://` URL that replaces the configured database, so that its password need not
/// be in the file.
pub const DATABASE_URL: &str = "AGENT_TRIGGER_DATABASE_URL";

/// Sets one limit from its variable's value.
type SetLimit = fn(&mut Limits, u64);

/// Every limit's variable, its bound, and the field it sets.
const LIMIT_VARIABLES: [(&str, u64, SetLimit); 4] = [
    (
        "AGENT_TRIGGER_HEADER_TIMEOUT_SECS",
        MAX_TIMEOUT_SECS,
        |limits, value| {
            limits.header_timeout = Duration::from_secs(value);
        },
    ),
    (
        "AGENT_TRIGGER_REQUEST_TIMEOUT_SECS",
        MAX_TIMEOUT_SECS,
        |limits, value| {
            limits.request_timeout = Duration::from_secs(value);
        },
    ),
    // Counts are within MAX_COUNT, which every usize holds.
    ("AGENT_TRIGGER_MAX_IN_FLIGHT", MAX_COUNT, |limits, value| {
        limits.max_in_flight = value as usize;
    }),
    (
        "AGENT_TRIGGER_MAX_CONNECTIONS",
        MAX_COUNT,
        |limits, value| {
            limits.max_connections = value as usize;
        },
    ),
];

/// Sets each limit whose variable is set; a value that is not a whole number from 1 to the
/// limit's bound is refused.
pub fn override_limits(
    limits: &mut Limits,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (name, maximum, set) in LIMIT_VARIABLES {
        let Some(text) = env(name) else { continue };
        match text.parse() {
            Ok(value) if (1..=maximum).contains(&value) => set(limits, value),
            _ => {
                return Err(ConfigError::unlocated(format!(
                    "{name}={text:?}: a whole number from 1 to {maximum} is needed"
                )));
            }
        }
    }
    Ok(())
}

/// Replaces the database with [`DATABASE_URL`]'s when it is set and not empty.
pub fn override_database(
    database: &mut Database,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match env(DATABASE_URL) {
        Some(url) if url.is_empty() => Ok(()),
        Some(url) if Database::is_postgres_url(&url) => {
            *database = Database::Postgres(url);
            Ok(())
        }
        Some(_) => Err(ConfigError::unlocated(format!(
            "{DATABASE_URL} must be a postgres:// URL"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pairs: &[(&str, &str)]) -> Result<Limits, ConfigError> {
        let mut limits = Limits::default();
        override_limits(&mut limits, &|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })?;
        Ok(limits)
    }

    #[test]
    fn each_limit_variable_overrides_within_its_bounds() {
        assert_eq!(limits(&[]).unwrap(), Limits::default());
        let set = limits(&[
            ("AGENT_TRIGGER_MAX_CONNECTIONS", "8"),
            ("AGENT_TRIGGER_MAX_IN_FLIGHT", "4"),
            ("AGENT_TRIGGER_HEADER_TIMEOUT_SECS", "2"),
            ("AGENT_TRIGGER_REQUEST_TIMEOUT_SECS", "3"),
        ])
        .unwrap();
        assert_eq!(
            set,
            Limits {
                header_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(3),
                max_in_flight: 4,
                max_connections: 8,
                ..Limits::default()
            }
        );
        for (name, value) in [
            ("AGENT_TRIGGER_REQUEST_TIMEOUT_SECS", "18446744073709551615"),
            ("AGENT_TRIGGER_REQUEST_TIMEOUT_SECS", "86401"),
            ("AGENT_TRIGGER_HEADER_TIMEOUT_SECS", "0"),
            ("AGENT_TRIGGER_MAX_IN_FLIGHT", "99999999999999999999999"),
            ("AGENT_TRIGGER_MAX_CONNECTIONS", "1000001"),
            ("AGENT_TRIGGER_MAX_CONNECTIONS", "-1"),
        ] {
            let error = limits(&[(name, value)]).unwrap_err().to_string();
            assert!(error.starts_with(name), "{error}");
        }
    }
}
