//! `database`: a SQLite file for one server, or a PostgreSQL URL that several servers share.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::locate::{ConfigError, Locator};

/// The SQLite file used when the configuration names none (beside the configuration file), and
/// demo mode's (in the working directory).
pub const DEFAULT_DATABASE: &str = "agent-trigger.db";

/// Where keys, triggers and executions are kept.
#[derive(Clone, PartialEq)]
pub enum Database {
    /// A SQLite file, for one server.
    Sqlite(PathBuf),
    /// A PostgreSQL database, which any number of servers share.
    Postgres(String),
}

impl Database {
    /// Whether `text` is a URL [`Database::Postgres`] takes.
    pub fn is_postgres_url(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }

    /// The file's `database`: a URL as it is, a relative path relative to the configuration
    /// file, [`DEFAULT_DATABASE`] beside the file when absent.
    pub fn check(locate: &Locator<'_>, raw: Option<&Spanned<String>>) -> Result<Self, ConfigError> {
        let beside_file =
            |name: &str| Database::Sqlite(locate.file.parent().unwrap_or(Path::new("")).join(name));
        match raw {
            Some(database) if Database::is_postgres_url(database.get_ref()) => {
                Ok(Database::Postgres(database.get_ref().clone()))
            }
            Some(database) if database.get_ref().is_empty() => Err(locate.at(
                database,
                "database must name a file or a postgres:// URL".to_owned(),
            )),
            Some(database) => Ok(beside_file(database.get_ref())),
            None => Ok(beside_file(DEFAULT_DATABASE)),
        }
    }
}

impl fmt::Display for Database {
    /// The file, or the URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let shown = match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    // A password may also come as a parameter.
    match shown.split_once('?') {
        Some((base, query)) => {
            let query: Vec<&str> = query
                .split('&')
                .map(|pair| {
                    if pair.starts_with("password=") {
                        "password=***"
                    } else {
                        pair
                    }
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => shown,
    }
}
