//! The `serve` configuration file: parsed strictly, checked whole, and refused with the file
//! and line of the first problem, so that a server never starts half-configured.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_trigger::{
    ActionAllowlist, ApiKeyRecord, KeyDigest, KeyScope, SigningSecret, Source, Trigger,
};
use serde::Deserialize;
use toml::Spanned;
use uuid::Uuid;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE: &str = "agent-trigger.db";
const DEFAULT_WORKERS: usize = 2;
const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// How long finished executions are kept by default: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * SECONDS_PER_DAY);
const SECONDS_PER_DAY: u64 = 24 * 60 * 60;
/// The longest retention the configuration takes: 100 years, which is as good as forever.
const MAX_RETENTION_DAYS: u64 = 36_500;
/// More workers than this is a typo, not a plan: each one may run a command.
const MAX_WORKERS: usize = 1024;
/// Attempts per execution at most.
const MAX_ATTEMPTS: u32 = 100;
const DEFAULT_RETRY_BACKOFF_SECS: u64 = 30;
const DEFAULT_LEASE_SECS: u64 = 30;
const MAX_LEASE_SECS: u64 = 60 * 60;
/// The longest duration the configuration takes (30 days): beyond it, a typo.
const MAX_DURATION_SECS: u64 = 30 * SECONDS_PER_DAY;
/// The variables every command gets from the server's environment, when set.
pub const BASE_ENVIRONMENT: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

/// The variable whose `postgres://` URL overrides the configured database (so that the
/// password need not be in the file).
pub const DATABASE_URL_VARIABLE: &str = "AGENT_TRIGGER_DATABASE_URL";

/// Where keys, triggers and executions are kept.
#[derive(Clone, PartialEq)]
pub enum Database {
    /// A SQLite file, for one server.
    Sqlite(PathBuf),
    /// A PostgreSQL database, which any number of servers share.
    Postgres(String),
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

fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
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

/// A checked configuration.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: Database,
    pub body_limit: usize,
    pub retention: Duration,
    pub executor: Option<ExecutorConfig>,
    pub keys: Vec<(KeyDigest, ApiKeyRecord)>,
    pub triggers: Vec<Trigger>,
}

/// How executions are run.
#[derive(Clone, PartialEq)]
pub struct ExecutorConfig {
    pub command: Vec<String>,
    pub workers: usize,
    pub timeout: Duration,
    /// Attempts per execution: 1 (the default) runs it once, since agents have side effects.
    pub max_attempts: u32,
    /// The wait before the second attempt; each later one waits twice the one before.
    pub retry_backoff: Duration,
    /// On PostgreSQL, how long a claim holds an execution without being renewed: how soon
    /// the other servers resolve what a server that died was running.
    pub lease: Duration,
    /// What the command's environment holds besides [`BASE_ENVIRONMENT`] and the execution's
    /// own `AGENT_TRIGGER_*` variables: `[executor] env` passed through, then
    /// `[executor.environment]`.
    pub environment: Vec<(String, String)>,
}

impl fmt::Debug for ExecutorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The environment's values may be credentials of the agent's own: names only.
        let names: Vec<&str> = self
            .environment
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        f.debug_struct("ExecutorConfig")
            .field("command", &self.command)
            .field("workers", &self.workers)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("retry_backoff", &self.retry_backoff)
            .field("lease", &self.lease)
            .field("environment", &names)
            .finish()
    }
}

/// The first problem found, located in its file.
#[derive(Debug)]
pub struct ConfigError {
    file: PathBuf,
    line: Option<(usize, usize)>,
    message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some((line, column)) => write!(
                f,
                "{}:{line}:{column}: {}",
                self.file.display(),
                self.message
            ),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    database: Option<Spanned<String>>,
    body_limit_bytes: Option<Spanned<u64>>,
    retention_days: Option<Spanned<u64>>,
    executor: Option<RawExecutor>,
    #[serde(default)]
    keys: Vec<RawKey>,
    #[serde(default)]
    triggers: Vec<RawTrigger>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecutor {
    command: Spanned<Vec<String>>,
    workers: Option<Spanned<usize>>,
    timeout_secs: Option<Spanned<u64>>,
    max_attempts: Option<Spanned<u32>>,
    retry_backoff_secs: Option<Spanned<u64>>,
    lease_secs: Option<Spanned<u64>>,
    /// Variables of the server's environment passed through by name.
    env: Option<Spanned<Vec<String>>>,
    /// Variables set to these values.
    environment: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: Spanned<String>,
    tenant: Spanned<String>,
    sha256: Option<Spanned<String>>,
    env: Option<Spanned<String>>,
    triggers: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    id: Spanned<String>,
    tenant: Spanned<String>,
    source: Spanned<String>,
    enabled: Option<bool>,
    actions: Option<Vec<String>>,
    replay_window_secs: Option<Spanned<u64>>,
    /// `N/s`, `N/min` or `N/h`.
    rate_limit: Option<Spanned<String>>,
    max_running: Option<Spanned<u32>>,
    #[serde(default)]
    secrets: Vec<RawSecret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    id: Spanned<String>,
    env: Option<Spanned<String>>,
    value: Option<Spanned<String>>,
}

/// Reads and checks `file`; `env` looks up environment variables (a parameter so that tests
/// need not touch the process environment).
pub fn load(file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|error| ConfigError {
        file: file.to_owned(),
        line: None,
        message: format!("cannot read the configuration: {error}"),
    })?;
    parse(file, &text, env)
}

/// Checks the text of a configuration file.
pub fn parse(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let locate = Locator { file, text };
    let raw: RawConfig =
        toml::from_str(text).map_err(|error| locate.error(error.span(), error.message()))?;

    let listen = match &raw.listen {
        Some(listen) => listen.get_ref().parse().map_err(|_| {
            locate.at(
                listen,
                format!(
                    "listen {:?} is not an address like 127.0.0.1:8080",
                    listen.get_ref()
                ),
            )
        })?,
        None => DEFAULT_LISTEN.parse().expect("the default address parses"),
    };
    let database = match (&raw.database, env(DATABASE_URL_VARIABLE)) {
        (_, Some(url)) if !url.is_empty() => {
            if !is_postgres_url(&url) {
                return Err(ConfigError {
                    file: file.to_owned(),
                    line: None,
                    message: format!("{DATABASE_URL_VARIABLE} must be a postgres:// URL"),
                });
            }
            Database::Postgres(url)
        }
        (Some(database), _) if is_postgres_url(database.get_ref()) => {
            Database::Postgres(database.get_ref().clone())
        }
        (Some(database), _) if database.get_ref().is_empty() => {
            return Err(locate.at(
                database,
                "database must name a file or a postgres:// URL".to_owned(),
            ));
        }
        // A relative database path is relative to the configuration file.
        (Some(database), _) => Database::Sqlite(
            file.parent()
                .unwrap_or(Path::new(""))
                .join(database.get_ref()),
        ),
        (None, _) => Database::Sqlite(
            file.parent()
                .unwrap_or(Path::new(""))
                .join(DEFAULT_DATABASE),
        ),
    };
    let body_limit = match &raw.body_limit_bytes {
        Some(limit) if *limit.get_ref() == 0 => {
            return Err(locate.at(limit, "body_limit_bytes must be positive".to_owned()));
        }
        Some(limit) => usize::try_from(*limit.get_ref())
            .map_err(|_| locate.at(limit, "body_limit_bytes is too large".to_owned()))?,
        None => agent_trigger::service::DEFAULT_BODY_LIMIT,
    };
    let retention_days = match &raw.retention_days {
        Some(days) if !(1..=MAX_RETENTION_DAYS).contains(days.get_ref()) => {
            return Err(locate.at(
                days,
                format!("retention_days must be from 1 to {MAX_RETENTION_DAYS}"),
            ));
        }
        Some(days) => *days.get_ref(),
        None => DEFAULT_RETENTION.as_secs() / SECONDS_PER_DAY,
    };
    let triggers = check_triggers(&locate, &raw.triggers, env)?;
    let keys = check_keys(&locate, &raw.keys, &triggers, env)?;
    let executor = raw
        .executor
        .as_ref()
        .map(|executor| check_executor(&locate, executor, &secret_variables(&raw), env))
        .transpose()?;
    Ok(Config {
        listen,
        database,
        body_limit,
        retention: Duration::from_secs(retention_days * SECONDS_PER_DAY),
        executor,
        keys,
        triggers,
    })
}

/// The environment variables the configuration reads keys and signing secrets from.
fn secret_variables(raw: &RawConfig) -> HashSet<&str> {
    let keys = raw.keys.iter().filter_map(|key| key.env.as_ref());
    let secrets = raw
        .triggers
        .iter()
        .flat_map(|trigger| &trigger.secrets)
        .filter_map(|secret| secret.env.as_ref());
    keys.chain(secrets)
        .map(|name| name.get_ref().as_str())
        .collect()
}

fn check_executor(
    locate: &Locator<'_>,
    raw: &RawExecutor,
    secret_variables: &HashSet<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ExecutorConfig, ConfigError> {
    let command = raw.command.get_ref();
    if command.is_empty() || command[0].is_empty() {
        return Err(locate.at(
            &raw.command,
            "executor.command must name a program".to_owned(),
        ));
    }
    let workers = match &raw.workers {
        Some(workers) if *workers.get_ref() == 0 => {
            return Err(locate.at(workers, "executor.workers must be at least 1".to_owned()));
        }
        Some(workers) if *workers.get_ref() > MAX_WORKERS => {
            return Err(locate.at(
                workers,
                format!("executor.workers must be at most {MAX_WORKERS}"),
            ));
        }
        Some(workers) => *workers.get_ref(),
        None => DEFAULT_WORKERS,
    };
    let timeout = match &raw.timeout_secs {
        Some(timeout) if *timeout.get_ref() == 0 => {
            return Err(locate.at(
                timeout,
                "executor.timeout_secs must be at least 1".to_owned(),
            ));
        }
        Some(timeout) => bounded_duration(locate, timeout, "executor.timeout_secs")?,
        None => Duration::from_secs(DEFAULT_TIMEOUT_SECS),
    };
    let max_attempts = match &raw.max_attempts {
        Some(attempts) if !(1..=MAX_ATTEMPTS).contains(attempts.get_ref()) => {
            return Err(locate.at(
                attempts,
                format!("executor.max_attempts must be from 1 to {MAX_ATTEMPTS}"),
            ));
        }
        Some(attempts) => *attempts.get_ref(),
        None => 1,
    };
    let retry_backoff = match &raw.retry_backoff_secs {
        Some(seconds) if *seconds.get_ref() == 0 => {
            return Err(locate.at(
                seconds,
                "executor.retry_backoff_secs must be at least 1".to_owned(),
            ));
        }
        Some(seconds) => bounded_duration(locate, seconds, "executor.retry_backoff_secs")?,
        None => Duration::from_secs(DEFAULT_RETRY_BACKOFF_SECS),
    };
    let lease = match &raw.lease_secs {
        Some(seconds) if !(1..=MAX_LEASE_SECS).contains(seconds.get_ref()) => {
            return Err(locate.at(
                seconds,
                format!("executor.lease_secs must be from 1 to {MAX_LEASE_SECS}"),
            ));
        }
        Some(seconds) => Duration::from_secs(*seconds.get_ref()),
        None => Duration::from_secs(DEFAULT_LEASE_SECS),
    };
    let mut environment = Vec::new();
    if let Some(names) = &raw.env {
        for name in names.get_ref() {
            check_variable_name(locate, names, name)?;
            if secret_variables.contains(name.as_str()) {
                return Err(locate.at(
                    names,
                    format!("{name} holds a key or signing secret of this configuration: it is never passed to the command"),
                ));
            }
            if let Some(value) = env(name) {
                environment.push((name.clone(), value));
            }
        }
    }
    if let Some(set) = &raw.environment {
        for (name, value) in set.get_ref() {
            check_variable_name(locate, set, name)?;
            if value.contains('\0') {
                return Err(locate.at(set, format!("the value of {name} holds a NUL byte")));
            }
            environment.push((name.clone(), value.clone()));
        }
    }
    Ok(ExecutorConfig {
        command: command.clone(),
        workers,
        timeout,
        max_attempts,
        retry_backoff,
        lease,
        environment,
    })
}

/// A name a command's environment can hold, and not one of the execution's own variables.
fn check_variable_name<T>(
    locate: &Locator<'_>,
    at: &Spanned<T>,
    name: &str,
) -> Result<(), ConfigError> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(locate.at(at, format!("{name:?} is not an environment variable name")));
    }
    if name.starts_with("AGENT_TRIGGER_") {
        return Err(locate.at(
            at,
            format!("{name} is set by the executor for each execution"),
        ));
    }
    Ok(())
}

/// Whole seconds, from 1 up to [`MAX_DURATION_SECS`].
fn bounded_duration(
    locate: &Locator<'_>,
    seconds: &Spanned<u64>,
    what: &str,
) -> Result<Duration, ConfigError> {
    if *seconds.get_ref() > MAX_DURATION_SECS {
        return Err(locate.at(
            seconds,
            format!("{what} must be at most {MAX_DURATION_SECS} (30 days)"),
        ));
    }
    Ok(Duration::from_secs(*seconds.get_ref()))
}

fn check_triggers(
    locate: &Locator<'_>,
    raw: &[RawTrigger],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Trigger>, ConfigError> {
    let mut seen = HashSet::new();
    let mut triggers = Vec::with_capacity(raw.len());
    for entry in raw {
        let id = parse_uuid(entry.id.get_ref()).ok_or_else(|| {
            locate.at(
                &entry.id,
                format!(
                    "trigger id {:?} is not a hyphenated UUID",
                    entry.id.get_ref()
                ),
            )
        })?;
        if !seen.insert(id) {
            return Err(locate.at(&entry.id, format!("trigger id {id} appears twice")));
        }
        let tenant = non_empty(locate, &entry.tenant, "tenant")?;
        let source: Source = entry.source.get_ref().parse().map_err(|_| {
            let names: Vec<_> = Source::ALL.iter().map(|source| source.as_str()).collect();
            locate.at(
                &entry.source,
                format!(
                    "source {:?} is not one of {}",
                    entry.source.get_ref(),
                    names.join(", ")
                ),
            )
        })?;
        let mut trigger = Trigger::new(id, tenant, source).enabled(entry.enabled.unwrap_or(true));
        if let Some(actions) = &entry.actions {
            trigger =
                trigger.with_actions(ActionAllowlist::new(actions.iter().map(String::as_str)));
        }
        if let Some(window) = &entry.replay_window_secs {
            trigger =
                trigger.with_replay_window(bounded_duration(locate, window, "replay_window_secs")?);
        }
        if let Some(rate) = &entry.rate_limit {
            let (count, period) = parse_rate(rate.get_ref()).ok_or_else(|| {
                locate.at(
                    rate,
                    format!(
                        "rate_limit {:?} is not a rate like \"60/min\" (N/s, N/min or N/h, N from 1)",
                        rate.get_ref()
                    ),
                )
            })?;
            trigger = trigger.with_rate_limit(count, period);
        }
        if let Some(count) = &entry.max_running {
            let count = std::num::NonZeroU32::new(*count.get_ref())
                .ok_or_else(|| locate.at(count, "max_running must be at least 1".to_owned()))?;
            trigger = trigger.with_max_running(count);
        }
        if !entry.secrets.is_empty() && !source.is_signed() {
            return Err(locate.at(&entry.source, format!("source {source} does not sign its deliveries: remove its secrets and use a bearer key")));
        }
        let mut secret_ids = HashSet::new();
        for secret in &entry.secrets {
            let secret_id = non_empty(locate, &secret.id, "secret id")?;
            if !secret_ids.insert(secret_id.clone()) {
                return Err(locate.at(
                    &secret.id,
                    format!("secret id {secret_id:?} appears twice in this trigger"),
                ));
            }
            let value = match (&secret.env, &secret.value) {
                (Some(name), None) => from_env(locate, name, env)?,
                (None, Some(value)) => value.get_ref().clone(),
                _ => {
                    return Err(locate.at(
                        &secret.id,
                        "a secret needs exactly one of `env` or `value`".to_owned(),
                    ));
                }
            };
            let signing = SigningSecret::new(secret_id, value)
                .map_err(|error| locate.at(&secret.id, error.to_string()))?;
            trigger = trigger.with_secret(signing);
        }
        triggers.push(trigger);
    }
    Ok(triggers)
}

fn check_keys(
    locate: &Locator<'_>,
    raw: &[RawKey],
    triggers: &[Trigger],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(KeyDigest, ApiKeyRecord)>, ConfigError> {
    let mut ids = HashSet::new();
    let mut digests = HashSet::new();
    let mut keys = Vec::with_capacity(raw.len());
    for entry in raw {
        let id = non_empty(locate, &entry.id, "key id")?;
        if !ids.insert(id.clone()) {
            return Err(locate.at(&entry.id, format!("key id {id:?} appears twice")));
        }
        let tenant = non_empty(locate, &entry.tenant, "tenant")?;
        let digest = match (&entry.sha256, &entry.env) {
            (Some(hex), None) => KeyDigest::from_hex(hex.get_ref())
                .map_err(|error| locate.at(hex, error.to_string()))?,
            (None, Some(name)) => {
                let key = from_env(locate, name, env)?;
                KeyDigest::of_token(&key)
            }
            _ => {
                return Err(locate.at(
                    &entry.id,
                    "a key needs exactly one of `sha256` or `env`".to_owned(),
                ));
            }
        };
        if !digests.insert(digest) {
            return Err(locate.at(
                &entry.id,
                "this key is the same as an earlier one".to_owned(),
            ));
        }
        let mut record = ApiKeyRecord::new(id, tenant.clone());
        if let Some(list) = &entry.triggers {
            if list.get_ref().iter().any(|entry| entry == "*") {
                if list.get_ref().len() > 1 {
                    return Err(locate.at(
                        list,
                        "\"*\" already means all of the tenant's triggers".to_owned(),
                    ));
                }
            } else {
                let mut scope = Vec::new();
                for text in list.get_ref() {
                    let trigger_id = parse_uuid(text).ok_or_else(|| {
                        locate.at(
                            list,
                            format!("{text:?} is not a trigger id (a hyphenated UUID) or \"*\""),
                        )
                    })?;
                    if !triggers
                        .iter()
                        .any(|trigger| trigger.id() == trigger_id && trigger.tenant() == tenant)
                    {
                        return Err(locate.at(
                            list,
                            format!(
                                "trigger {trigger_id} is not one of tenant {tenant:?}'s triggers"
                            ),
                        ));
                    }
                    scope.push(trigger_id);
                }
                record = record.with_scope(KeyScope::Triggers(scope));
            }
        }
        keys.push((digest, record));
    }
    Ok(keys)
}

/// The non-empty value of the environment variable `name` names.
fn from_env(
    locate: &Locator<'_>,
    name: &Spanned<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    env(name.get_ref())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| {
            locate.at(
                name,
                format!(
                    "environment variable {} is not set (or empty)",
                    name.get_ref()
                ),
            )
        })
}

fn non_empty(
    locate: &Locator<'_>,
    value: &Spanned<String>,
    what: &str,
) -> Result<String, ConfigError> {
    if value.get_ref().trim().is_empty() {
        return Err(locate.at(value, format!("{what} must not be empty")));
    }
    Ok(value.get_ref().clone())
}

/// `N/s`, `N/min` or `N/h`, N at least 1.
fn parse_rate(text: &str) -> Option<(std::num::NonZeroU32, Duration)> {
    let (count, unit) = text.split_once('/')?;
    let count = count.trim().parse().ok()?;
    let period = match unit.trim() {
        "s" => Duration::from_secs(1),
        "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(60 * 60),
        _ => return None,
    };
    Some((count, period))
}

/// Hyphenated UUIDs only, as in the endpoint's path.
fn parse_uuid(text: &str) -> Option<Uuid> {
    (text.len() == 36)
        .then(|| Uuid::try_parse(text).ok())
        .flatten()
}

/// Turns byte spans into `file:line:column`.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn at<T>(&self, value: &Spanned<T>, message: String) -> ConfigError {
        self.error(Some(value.span()), message)
    }

    fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
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
            file: self.file.to_owned(),
            line,
            message: message.into().trim_end().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
listen = "127.0.0.1:9000"
database = "data/agent-trigger.db"
body_limit_bytes = 65536

[executor]
command = ["./run-agent.sh", "--fast"]
workers = 4
timeout_secs = 30

[[keys]]
id = "ci"
tenant = "acme"
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
triggers = ["*"]

[[keys]]
id = "bot"
tenant = "acme"
env = "BOT_KEY"
triggers = ["6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11"]

[[triggers]]
id = "6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11"
tenant = "acme"
source = "slack"
enabled = true
actions = ["app_mention"]
replay_window_secs = 120
[[triggers.secrets]]
id = "2026-11"
env = "SLACK_SIGNING_SECRET"
[[triggers.secrets]]
id = "2026-10"
value = "old secret"
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "BOT_KEY" => Some("atk_bot".to_owned()),
            "SLACK_SIGNING_SECRET" => Some("slack secret".to_owned()),
            _ => None,
        }
    }

    fn error_of(text: &str) -> String {
        parse(Path::new("/etc/agent-trigger.toml"), text, &env)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_documented_example_parses() {
        let config = parse(Path::new("/etc/agent-trigger/config.toml"), FULL, &env).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(
            config.database,
            Database::Sqlite("/etc/agent-trigger/data/agent-trigger.db".into())
        );
        assert_eq!(config.body_limit, 65536);
        let executor = config.executor.unwrap();
        assert_eq!(executor.command, ["./run-agent.sh", "--fast"]);
        assert_eq!(
            (executor.workers, executor.timeout),
            (4, Duration::from_secs(30))
        );
        assert_eq!(config.keys.len(), 2);
        assert_eq!(config.keys[1].0, KeyDigest::of_token("atk_bot"));
        assert_eq!(config.keys[0].1.scope(), &KeyScope::Tenant);
        let trigger = &config.triggers[0];
        assert_eq!(trigger.secrets().len(), 2);
        assert_eq!(trigger.replay_window(), Some(Duration::from_secs(120)));
    }

    #[test]
    fn the_command_environment_passes_through_what_is_set_and_sets_the_rest() {
        let text = "[executor]\ncommand = [\"x\"]\nenv = [\"AGENT_HOME\", \"UNSET\"]\n[executor.environment]\nMODE = \"review\"";
        let env = |name: &str| (name == "AGENT_HOME").then(|| "/srv/agent".to_owned());
        let config = parse(Path::new("c.toml"), text, &env).unwrap();
        let environment = config.executor.unwrap().environment;
        assert_eq!(
            environment,
            [
                ("AGENT_HOME".to_owned(), "/srv/agent".to_owned()),
                ("MODE".to_owned(), "review".to_owned())
            ]
        );
    }

    #[test]
    fn a_trigger_takes_its_rate_and_cap_on_running_executions() {
        let text = "[[triggers]]\nid = \"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"jira\"\nrate_limit = \"60/min\"\nmax_running = 2";
        let config = parse(Path::new("c.toml"), text, &env).unwrap();
        let trigger = &config.triggers[0];
        assert_eq!(trigger.max_running().map(|count| count.get()), Some(2));
        assert_eq!(
            trigger
                .rate_limit()
                .map(|(count, period)| (count.get(), period)),
            Some((60, Duration::from_secs(60)))
        );
        let zero = text.replace("max_running = 2", "max_running = 0");
        assert!(
            error_of(&zero).contains(":6:15: max_running must be at least 1"),
            "{}",
            error_of(&zero)
        );
    }

    #[test]
    fn rates_are_per_second_minute_or_hour() {
        for (text, count, seconds) in [("5/s", 5, 1), ("60/min", 60, 60), (" 1 / h ", 1, 3600)] {
            let (parsed, period) = parse_rate(text).unwrap();
            assert_eq!(
                (parsed.get(), period),
                (count, Duration::from_secs(seconds)),
                "{text}"
            );
        }
        for text in ["0/s", "5", "5/d", "-1/s", "x/min", "5/"] {
            assert!(parse_rate(text).is_none(), "{text}");
        }
    }

    #[test]
    fn defaults() {
        let config = parse(Path::new("c.toml"), "", &env).unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(config.database, Database::Sqlite("agent-trigger.db".into()));
        assert!(config.executor.is_none());
    }

    #[test]
    fn a_postgres_database_from_the_file_or_the_environment() {
        let url = "postgres://agent:hunter2@db.internal:5432/agent_trigger?sslmode=verify-full";
        let config = parse(Path::new("c.toml"), &format!("database = {url:?}"), &env).unwrap();
        assert_eq!(config.database, Database::Postgres(url.to_owned()));
        // Shown without its password.
        assert_eq!(
            config.database.to_string(),
            "postgres://agent:***@db.internal:5432/agent_trigger?sslmode=verify-full"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        let in_query = Database::Postgres("postgres://db/x?user=a&password=hunter2".to_owned());
        assert_eq!(in_query.to_string(), "postgres://db/x?user=a&password=***");

        let from_env = |name: &str| {
            (name == DATABASE_URL_VARIABLE).then(|| "postgresql://other/db".to_owned())
        };
        let config = parse(Path::new("c.toml"), "database = \"local.db\"", &from_env).unwrap();
        assert_eq!(
            config.database,
            Database::Postgres("postgresql://other/db".to_owned())
        );
        let not_a_url = |name: &str| (name == DATABASE_URL_VARIABLE).then(|| "x.db".to_owned());
        let error = parse(Path::new("c.toml"), "", &not_a_url).unwrap_err();
        assert!(
            error.to_string().contains("must be a postgres:// URL"),
            "{error}"
        );
    }

    #[test]
    fn every_error_names_the_file_and_line() {
        let cases = [
            ("lissten = \"x\"", ":1:1: unknown field `lissten`"),
            (
                "listen = \"nowhere\"",
                ":1:10: listen \"nowhere\" is not an address",
            ),
            (
                "database = \"\"",
                ":1:12: database must name a file or a postgres:// URL",
            ),
            ("body_limit_bytes = 0", "body_limit_bytes must be positive"),
            (
                "[executor]\ncommand = []",
                ":2:11: executor.command must name a program",
            ),
            (
                "[executor]\ncommand = [\"x\"]\nworkers = 0",
                ":3:11: executor.workers must be at least 1",
            ),
            (
                "[[triggers]]\nid = \"nope\"\ntenant = \"a\"\nsource = \"jira\"",
                ":2:6: trigger id \"nope\" is not a hyphenated UUID",
            ),
            (
                "[[triggers]]\nid = \"6f1c1c527a574f7e9d438d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"jira\"",
                "is not a hyphenated UUID",
            ),
            (
                "[[triggers]]\nid = \"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"jira\"\n[[triggers]]\nid = \"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"jira\"",
                ":6:6: trigger id 6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11 appears twice",
            ),
            (
                "[[triggers]]\nid = \"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"github\"",
                ":4:10: source \"github\" is not one of jira",
            ),
            (
                "[[triggers]]\nid = \"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"slack\"\n[[triggers.secrets]]\nid = \"s\"\nenv = \"MISSING\"",
                ":7:7: environment variable MISSING is not set",
            ),
            (
                "[[triggers]]\nid = \"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"slack\"\n[[triggers.secrets]]\nid = \"s\"\nvalue = \"\"",
                "a signing secret must not be empty",
            ),
            (
                "[[triggers]]\nid = \"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"jira-automation\"\n[[triggers.secrets]]\nid = \"s\"\nvalue = \"x\"",
                "does not sign its deliveries",
            ),
            (
                "[[keys]]\nid = \"k\"\ntenant = \"a\"\nsha256 = \"abc\"",
                ":4:10: a key digest is 64 hex digits",
            ),
            (
                "[[keys]]\nid = \"k\"\ntenant = \"a\"",
                "exactly one of `sha256` or `env`",
            ),
            (
                "[[keys]]\nid = \"k\"\ntenant = \"a\"\nenv = \"NOPE\"",
                "environment variable NOPE is not set",
            ),
            (
                "[[keys]]\nid = \"k\"\ntenant = \"a\"\nenv = \"BOT_KEY\"\n[[keys]]\nid = \"k\"\ntenant = \"a\"\nenv = \"BOT_KEY\"",
                ":6:6: key id \"k\" appears twice",
            ),
            (
                "[[keys]]\nid = \"k\"\ntenant = \"a\"\nenv = \"BOT_KEY\"\ntriggers = [\"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"]",
                "is not one of tenant \"a\"'s triggers",
            ),
            ("listen = ", ":1:"),
            (
                "retention_days = 0",
                ":1:18: retention_days must be from 1 to 36500",
            ),
            (
                "[[triggers]]\nid = \"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"jira\"\nrate_limit = \"0/s\"",
                ":5:14: rate_limit \"0/s\" is not a rate",
            ),
            (
                "[executor]\ncommand = [\"x\"]\nmax_attempts = 0",
                ":3:16: executor.max_attempts must be from 1 to 100",
            ),
            (
                "[executor]\ncommand = [\"x\"]\nworkers = 100000000",
                ":3:11: executor.workers must be at most 1024",
            ),
            (
                "[executor]\ncommand = [\"x\"]\ntimeout_secs = 18446744073709551615",
                ":3:16: executor.timeout_secs must be at most 2592000",
            ),
            (
                "[[triggers]]\nid = \"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"jira\"\nreplay_window_secs = 9999999999",
                ":5:22: replay_window_secs must be at most 2592000",
            ),
            (
                "[executor]\ncommand = [\"x\"]\nenv = [\"BOT_KEY\"]\n[[keys]]\nid = \"k\"\ntenant = \"a\"\nenv = \"BOT_KEY\"",
                ":3:7: BOT_KEY holds a key or signing secret of this configuration",
            ),
            (
                "[executor]\ncommand = [\"x\"]\n[executor.environment]\nAGENT_TRIGGER_ACTION = \"x\"",
                "AGENT_TRIGGER_ACTION is set by the executor for each execution",
            ),
            (
                "[executor]\ncommand = [\"x\"]\nenv = [\"A=B\"]",
                "\"A=B\" is not an environment variable name",
            ),
        ];
        for (text, expected) in cases {
            let error = error_of(text);
            assert!(error.starts_with("/etc/agent-trigger.toml:"), "{error}");
            assert!(
                error.contains(expected),
                "{text:?}\n  gave: {error}\n  want: {expected}"
            );
        }
    }
}
