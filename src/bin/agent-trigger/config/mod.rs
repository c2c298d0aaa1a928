//! The configuration: one typed [`Config`], read from the TOML file, checked whole, with the
//! environment's documented overrides layered on, and refused with the file and line of the
//! first problem, so that a server never starts half-configured.
//!
//! It has two parts. [`Startup`] holds what the server is built from (address, database,
//! limits, executor): a reload compares it as a whole and, when it differs, says that it takes
//! effect at the next start. [`Reloadable`] (keys and triggers) is swapped in at each SIGHUP.
//! Each table is checked in the module named for it; a new option is a field in `file.rs`, its
//! default and check in its table's module, and its use.

mod database;
mod environment;
mod executor;
mod file;
mod keys;
mod limits;
mod locate;
mod rules;
mod triggers;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use agent_trigger::deliveries::LogLimits;
use agent_trigger::{ApiKeyRecord, KeyDigest, Trigger};

pub use self::database::{DEFAULT_DATABASE, Database};
pub use self::executor::{Account, BASE_ENVIRONMENT, ExecutorConfig, Sandbox};
use self::file::RawConfig;
pub use self::limits::Limits;
pub use self::locate::ConfigError;
use self::locate::Locator;

/// The address the server listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const SECONDS_PER_DAY: u64 = 24 * 60 * 60;
/// How long finished executions are kept by default: 30 days.
const DEFAULT_RETENTION_DAYS: u64 = 30;
/// The longest retention the configuration takes: 100 years, which is as good as forever.
const MAX_RETENTION_DAYS: u64 = 36_500;

/// A checked configuration.
#[derive(Debug)]
pub struct Config {
    /// What takes effect when the server starts.
    pub startup: Startup,
    /// What a reload swaps in.
    pub reloadable: Reloadable,
}

/// The settings the server is built from; a reload that changes any of them is told they wait
/// for the next start.
#[derive(Debug, Clone, PartialEq)]
pub struct Startup {
    pub listen: SocketAddr,
    pub database: Database,
    pub body_limit: usize,
    pub retention: Duration,
    pub limits: Limits,
    pub executor: Option<ExecutorConfig>,
}

impl Startup {
    /// Demo mode's settings: every default, on `database` and `listen`, with the environment's
    /// limits.
    pub fn demo(
        database: Database,
        listen: Option<SocketAddr>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut limits = Limits::default();
        environment::override_limits(&mut limits, env)?;
        Ok(Startup {
            listen: listen.unwrap_or_else(default_listen),
            database,
            body_limit: agent_trigger::service::DEFAULT_BODY_LIMIT,
            retention: Duration::from_secs(DEFAULT_RETENTION_DAYS * SECONDS_PER_DAY),
            limits,
            executor: None,
        })
    }
}

/// The keys and triggers, which SIGHUP reloads.
#[derive(Debug)]
pub struct Reloadable {
    pub keys: Vec<(KeyDigest, ApiKeyRecord)>,
    pub triggers: Vec<Trigger>,
    /// How many deliveries log records each trigger keeps.
    pub log_limits: LogLimits,
    /// Whether the file itself holds a secret (`value = "…"`): then it must stay out of the
    /// commands' reach.
    pub secrets_in_file: bool,
    /// The environment variables the file reads keys and secrets from.
    pub secret_variables: Vec<String>,
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("the default address parses")
}

/// Reads the variables a configuration names from the process's environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads and checks `file`; `env` looks up environment variables (a parameter so that tests
/// need not touch the process environment).
pub fn load(file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|error| {
        ConfigError::in_file(file, format!("cannot read the configuration: {error}"))
    })?;
    parse(file, &text, env)
}

/// Checks the text of a configuration file, then layers the environment's overrides on.
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
        None => default_listen(),
    };
    let mut database = Database::check(&locate, raw.database.as_ref())?;
    environment::override_database(&mut database, env)?;
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
        None => DEFAULT_RETENTION_DAYS,
    };
    let mut limits = limits::check(&locate, raw.limits.as_ref())?;
    environment::override_limits(&mut limits, env)?;
    let triggers = triggers::check(&locate, &raw.triggers, env)?;
    let log_max = match &raw.delivery_log_max {
        Some(max) => triggers::log_max(&locate, max)?,
        None => agent_trigger::deliveries::DEFAULT_LOG_MAX,
    };
    let log_limits = triggers::log_limits(&locate, &raw.triggers, log_max)?;
    let keys = keys::check(&locate, &raw.keys, &triggers, env)?;
    let executor = raw
        .executor
        .as_ref()
        .map(|executor| executor::check(&locate, executor, &raw.secret_variables(), env))
        .transpose()?;
    Ok(Config {
        startup: Startup {
            listen,
            database,
            body_limit,
            retention: Duration::from_secs(retention_days * SECONDS_PER_DAY),
            limits,
            executor,
        },
        reloadable: Reloadable {
            keys,
            triggers,
            log_limits,
            secrets_in_file: raw.holds_secret_values(),
            secret_variables: raw
                .secret_variables()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_trigger::KeyScope;

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
        assert_eq!(config.startup.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(
            config.startup.database,
            Database::Sqlite("/etc/agent-trigger/data/agent-trigger.db".into())
        );
        assert_eq!(config.startup.body_limit, 65536);
        let executor = config.startup.executor.unwrap();
        assert_eq!(executor.command, ["./run-agent.sh", "--fast"]);
        assert_eq!(
            (executor.workers, executor.timeout),
            (4, Duration::from_secs(30))
        );
        assert_eq!(config.reloadable.keys.len(), 2);
        assert_eq!(config.reloadable.keys[1].0, KeyDigest::of_token("atk_bot"));
        assert_eq!(config.reloadable.keys[0].1.scope(), &KeyScope::Tenant);
        let trigger = &config.reloadable.triggers[0];
        assert_eq!(trigger.secrets().len(), 2);
        assert_eq!(trigger.replay_window(), Some(Duration::from_secs(120)));
    }

    #[test]
    fn a_trigger_takes_its_concurrency_key_mode_and_debounce() {
        let head = "[[triggers]]\nid = \"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"jira\"\n";
        let text = format!(
            "{head}concurrency_key = 'body.issue.key'\non_busy = \"replace\"\ndebounce_secs = 30\ndebounce_max_secs = 300"
        );
        let config = parse(Path::new("c.toml"), &text, &env).unwrap();
        let concurrency = config.reloadable.triggers[0].concurrency().unwrap();
        assert_eq!(concurrency.key().as_str(), "body.issue.key");
        assert_eq!(
            concurrency.on_busy(),
            agent_trigger::concurrency::OnBusy::Replace
        );
        let debounce = concurrency.debounce().unwrap();
        assert_eq!(
            (debounce.quiet(), debounce.max()),
            (Duration::from_secs(30), Duration::from_secs(300))
        );
        // Without a maximum: ten quiet periods.
        let text = format!("{head}concurrency_key = 'body.issue.key'\ndebounce_secs = 30");
        let config = parse(Path::new("c.toml"), &text, &env).unwrap();
        let concurrency = config.reloadable.triggers[0].concurrency().unwrap();
        assert_eq!(
            concurrency.on_busy(),
            agent_trigger::concurrency::OnBusy::Queue
        );
        assert_eq!(
            concurrency.debounce().unwrap().max(),
            Duration::from_secs(300)
        );

        for (tail, expected) in [
            (
                "on_busy = \"skip\"",
                ":5:11: on_busy needs a concurrency_key",
            ),
            (
                "debounce_secs = 5",
                ":5:17: debounce_secs needs a concurrency_key",
            ),
            (
                "debounce_max_secs = 5",
                ":5:21: debounce_max_secs needs a concurrency_key",
            ),
            ("concurrency_key = 'body.'", ":5:"),
            (
                "concurrency_key = 'source'\non_busy = \"cancel\"",
                ":6:11: unknown on_busy \"cancel\"",
            ),
            (
                "concurrency_key = 'source'\ndebounce_max_secs = 5",
                ":6:21: debounce_max_secs needs debounce_secs",
            ),
            (
                "concurrency_key = 'source'\ndebounce_secs = 60\ndebounce_max_secs = 5",
                ":7:21: debounce_max_secs must be at least debounce_secs",
            ),
            (
                "concurrency_key = 'source'\ndebounce_secs = 0",
                ":6:17: debounce_secs must be from 1",
            ),
        ] {
            let error = error_of(&format!("{head}{tail}"));
            assert!(error.contains(expected), "{tail}: {error}");
        }
    }

    #[test]
    fn the_command_environment_passes_through_what_is_set_and_sets_the_rest() {
        let text = "[executor]\ncommand = [\"x\"]\nenv = [\"AGENT_HOME\", \"UNSET\"]\n[executor.environment]\nMODE = \"review\"";
        let env = |name: &str| (name == "AGENT_HOME").then(|| "/srv/agent".to_owned());
        let config = parse(Path::new("c.toml"), text, &env).unwrap();
        let environment = config.startup.executor.unwrap().environment;
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
        let trigger = &config.reloadable.triggers[0];
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
    fn every_limit_is_set_in_the_file_and_its_variable_overrides_it() {
        let text = "[limits]\nmax_connections = 64\nheader_timeout_secs = 5\nrequest_timeout_secs = 20\nmax_in_flight = 32\nidle_timeout_secs = 7\nmax_connections_per_peer = 16";
        let limits = parse(Path::new("c.toml"), text, &env)
            .unwrap()
            .startup
            .limits;
        assert_eq!(
            limits,
            Limits {
                header_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(20),
                max_in_flight: 32,
                max_connections: 64,
                idle_timeout: Duration::from_secs(7),
                max_connections_per_peer: Some(16),
            }
        );
        let fewer = |name: &str| (name == "AGENT_TRIGGER_MAX_CONNECTIONS").then(|| "8".to_owned());
        let limits = parse(Path::new("c.toml"), text, &fewer)
            .unwrap()
            .startup
            .limits;
        assert_eq!((limits.max_connections, limits.max_in_flight), (8, 32));
    }

    #[test]
    fn a_reload_sees_a_changed_startup_part_as_a_whole() {
        let before = parse(Path::new("c.toml"), FULL, &env).unwrap().startup;
        let same = parse(Path::new("c.toml"), FULL, &env).unwrap().startup;
        assert_eq!(before, same);
        for change in [
            FULL.replace("workers = 4", "workers = 5"),
            format!("{FULL}\n[limits]\nmax_in_flight = 7"),
            FULL.replace("body_limit_bytes = 65536", "body_limit_bytes = 1024"),
        ] {
            // A [limits] table after [[triggers]] is still the top-level table.
            let changed = parse(Path::new("c.toml"), &change, &env).unwrap().startup;
            assert_ne!(before, changed, "{change}");
        }
    }

    #[test]
    fn a_webhook_trigger_takes_a_preset_or_a_table_of_its_own() {
        let webhook = "[[triggers]]\nid = \"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"webhook\"\n";
        let preset = format!(
            "{webhook}signature = \"github\"\n[[triggers.secrets]]\nid = \"s\"\nvalue = \"x\""
        );
        let config = parse(Path::new("c.toml"), &preset, &env).unwrap();
        let scheme = config.reloadable.triggers[0].signature().unwrap();
        assert_eq!(scheme.name(), Some("github"));

        let table = format!(
            "{webhook}[triggers.signature]\nheader = \"X-Acme-Signature\"\nprefix = \"sha256=\"\nalgorithm = \"hmac-sha512\"\nencoding = \"base64\"\nsigned = \"{{timestamp}}.{{body}}\"\ntimestamp_header = \"X-Acme-Timestamp\"\n"
        );
        let config = parse(Path::new("c.toml"), &table, &env).unwrap();
        let scheme = config.reloadable.triggers[0].signature().unwrap();
        assert_eq!(scheme.signature_header(), "x-acme-signature");

        let twilio = format!(
            "{webhook}signature = \"twilio\"\npublic_url = \"https://hooks.example.com/api/trigger/webhook/6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\""
        );
        let config = parse(Path::new("c.toml"), &twilio, &env).unwrap();
        assert!(config.reloadable.triggers[0].public_url().is_some());
    }

    #[test]
    fn defaults() {
        let config = parse(Path::new("c.toml"), "", &env).unwrap();
        assert_eq!(config.startup.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(
            config.startup.database,
            Database::Sqlite("agent-trigger.db".into())
        );
        assert!(config.startup.executor.is_none());
    }

    #[test]
    fn a_postgres_database_from_the_file_or_the_environment() {
        let url = "postgres://agent:hunter2@db.internal:5432/agent_trigger?sslmode=verify-full";
        let config = parse(Path::new("c.toml"), &format!("database = {url:?}"), &env).unwrap();
        assert_eq!(config.startup.database, Database::Postgres(url.to_owned()));
        // Shown without its password.
        assert_eq!(
            config.startup.database.to_string(),
            "postgres://agent:***@db.internal:5432/agent_trigger?sslmode=verify-full"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        let in_query = Database::Postgres("postgres://db/x?user=a&password=hunter2".to_owned());
        assert_eq!(in_query.to_string(), "postgres://db/x?user=a&password=***");

        let from_env = |name: &str| {
            (name == environment::DATABASE_URL).then(|| "postgresql://other/db".to_owned())
        };
        let config = parse(Path::new("c.toml"), "database = \"local.db\"", &from_env).unwrap();
        assert_eq!(
            config.startup.database,
            Database::Postgres("postgresql://other/db".to_owned())
        );
        let not_a_url = |name: &str| (name == environment::DATABASE_URL).then(|| "x.db".to_owned());
        let error = parse(Path::new("c.toml"), "", &not_a_url).unwrap_err();
        assert!(
            error.to_string().contains("must be a postgres:// URL"),
            "{error}"
        );
    }

    #[test]
    fn the_deliveries_log_bound_has_a_default_and_a_per_trigger_override() {
        let text = "delivery_log_max = 500\n[[triggers]]\nid = \"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"jira\"\ndelivery_log_max = 40\n";
        let config = parse(Path::new("c.toml"), text, &|_| None).unwrap();
        let limits = &config.reloadable.log_limits;
        let trigger = uuid::Uuid::parse_str("6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11").unwrap();
        assert_eq!(limits.max(trigger), 40);
        assert_eq!(limits.refused_max(trigger), 4);
        assert_eq!(limits.max(uuid::Uuid::nil()), 500);
        let default = parse(Path::new("c.toml"), "", &|_| None).unwrap();
        assert_eq!(
            default.reloadable.log_limits.max(trigger),
            agent_trigger::deliveries::DEFAULT_LOG_MAX
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
                "[limits]\nmax_connections = 0",
                ":2:19: limits.max_connections must be from 1 to 1000000",
            ),
            (
                "[limits]\nrequest_timeout_secs = 86401",
                ":2:24: limits.request_timeout_secs must be from 1 to 86400",
            ),
            (
                "[limits]\nmax_conections = 5",
                ":2:1: unknown field `max_conections`",
            ),
            (
                "retention_days = 0",
                ":1:18: retention_days must be from 1 to 36500",
            ),
            (
                "delivery_log_max = 10000001",
                ":1:20: delivery_log_max must be from 0 to 10000000",
            ),
            (
                "[[triggers]]\nid = \"6f1c1c52-7a57-4f7e-9d43-8d2b8f1d0c11\"\ntenant = \"a\"\nsource = \"jira\"\ndelivery_log_max = -1",
                ":5:20:",
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
