//! The configuration file as TOML gives it: every table and field with its place in the file
//! (`Spanned`), unknown fields refused. The checks that turn it into a
//! [`Config`](super::Config) live beside each table's own type.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<Spanned<String>>,
    pub database: Option<Spanned<String>>,
    pub body_limit_bytes: Option<Spanned<u64>>,
    pub retention_days: Option<Spanned<u64>>,
    /// How many deliveries log records each trigger keeps.
    pub delivery_log_max: Option<Spanned<u64>>,
    pub limits: Option<RawLimits>,
    pub executor: Option<RawExecutor>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub triggers: Vec<RawTrigger>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_connections: Option<Spanned<u64>>,
    pub header_timeout_secs: Option<Spanned<u64>>,
    pub request_timeout_secs: Option<Spanned<u64>>,
    pub max_in_flight: Option<Spanned<u64>>,
    pub idle_timeout_secs: Option<Spanned<u64>>,
    pub max_connections_per_peer: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExecutor {
    pub command: Spanned<Vec<String>>,
    pub workers: Option<Spanned<usize>>,
    pub timeout_secs: Option<Spanned<u64>>,
    pub max_attempts: Option<Spanned<u32>>,
    pub retry_backoff_secs: Option<Spanned<u64>>,
    pub lease_secs: Option<Spanned<u64>>,
    /// Variables of the server's environment passed through by name.
    pub env: Option<Spanned<Vec<String>>>,
    /// Variables set to these values.
    pub environment: Option<Spanned<BTreeMap<String, String>>>,
    /// The account commands run as, and optionally its group.
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    /// `"landlock"`: each command starts inside a filesystem allow-list.
    pub sandbox: Option<Spanned<String>>,
    /// Directories a sandboxed command may also write in.
    pub writable: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub id: Spanned<String>,
    pub tenant: Spanned<String>,
    pub sha256: Option<Spanned<String>>,
    pub env: Option<Spanned<String>>,
    pub triggers: Option<Spanned<Vec<String>>>,
    /// `invoke`, `read`, `operate`: what the key may do (all three when absent).
    pub can: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    pub id: Spanned<String>,
    pub tenant: Spanned<String>,
    pub source: Spanned<String>,
    pub enabled: Option<bool>,
    pub actions: Option<Vec<String>>,
    pub replay_window_secs: Option<Spanned<u64>>,
    /// `N/s`, `N/min` or `N/h`.
    pub rate_limit: Option<Spanned<String>>,
    pub max_running: Option<Spanned<u32>>,
    /// This trigger's bound on its deliveries log records.
    pub delivery_log_max: Option<Spanned<u64>>,
    /// A `webhook` trigger's sender: a preset's name, or a table (see `SignatureScheme`).
    pub signature: Option<Spanned<toml::Value>>,
    /// The URL the sender was given, for the schemes that sign it.
    pub public_url: Option<Spanned<String>>,
    #[serde(default)]
    pub secrets: Vec<RawSecret>,
    /// CEL: the deliveries that start an execution.
    pub filter: Option<Spanned<String>>,
    /// CEL: the execution's input instead of the body.
    pub input: Option<Spanned<String>>,
    /// A template: the command's `AGENT_TRIGGER_PROMPT`.
    pub prompt: Option<Spanned<String>>,
    /// CEL giving a string: deliveries with the same key are one subject.
    pub concurrency_key: Option<Spanned<String>>,
    /// `queue`, `skip` or `replace`: what a delivery for a busy key does.
    pub on_busy: Option<Spanned<String>>,
    /// Start once the key has been quiet this long.
    pub debounce_secs: Option<Spanned<u64>>,
    /// But no later than this after the key's first delivery.
    pub debounce_max_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    pub id: Spanned<String>,
    pub env: Option<Spanned<String>>,
    pub value: Option<Spanned<String>>,
}

impl RawConfig {
    /// The environment variables the file reads keys and signing secrets from: never passed
    /// to a command.
    pub fn secret_variables(&self) -> std::collections::HashSet<&str> {
        let keys = self.keys.iter().filter_map(|key| key.env.as_ref());
        let secrets = self
            .triggers
            .iter()
            .flat_map(|trigger| &trigger.secrets)
            .filter_map(|secret| secret.env.as_ref());
        keys.chain(secrets)
            .map(|name| name.get_ref().as_str())
            .collect()
    }

    /// Whether a secret is written in the file: a signing secret's `value = "…"`, or a
    /// database URL with a password.
    pub fn holds_secret_values(&self) -> bool {
        let signing = self
            .triggers
            .iter()
            .flat_map(|trigger| &trigger.secrets)
            .any(|secret| secret.value.is_some());
        let database = self
            .database
            .as_ref()
            .is_some_and(|url| url_has_password(url.get_ref()));
        signing || database
    }
}

/// Whether a `postgres://` URL carries a password (`user:password@` or `password=`).
fn url_has_password(text: &str) -> bool {
    let Some((_, rest)) = text.split_once("://") else {
        return false;
    };
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let in_authority = authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'));
    let in_query = rest
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|pair| pair.starts_with("password=")));
    in_authority || in_query
}

#[cfg(test)]
mod tests {
    use super::url_has_password;

    #[test]
    fn a_password_in_a_database_url_is_seen_where_libpq_takes_it() {
        assert!(url_has_password("postgres://agent:hunter2@db/x"));
        assert!(url_has_password("postgres://db/x?user=a&password=hunter2"));
        assert!(!url_has_password(
            "postgres://agent@db/x?sslmode=verify-full"
        ));
        assert!(!url_has_password("agent-trigger.db"));
    }
}
