//! `[[triggers]]`: each trigger's id, tenant, source, allowlist, limits and signing secrets.

use std::collections::HashSet;
use std::time::Duration;

use agent_trigger::deliveries::LogLimits;
use agent_trigger::{ActionAllowlist, SignatureScheme, SigningSecret, Source, Trigger};
use uuid::Uuid;

use super::file::RawTrigger;
use super::locate::{ConfigError, Locator};

/// The triggers, checked: ids unique and hyphenated, sources known, secrets only where the
/// source signs.
pub fn check(
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
        let tenant = locate.non_empty(&entry.tenant, "tenant")?;
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
                trigger.with_replay_window(locate.bounded_duration(window, "replay_window_secs")?);
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
        trigger = signature(locate, entry, source, trigger)?;
        if !entry.secrets.is_empty() && !source.is_signed() {
            return Err(locate.at(&entry.source, format!("source {source} does not sign its deliveries: remove its secrets and use a bearer key")));
        }
        let mut secret_ids = HashSet::new();
        for secret in &entry.secrets {
            let secret_id = locate.non_empty(&secret.id, "secret id")?;
            if !secret_ids.insert(secret_id.clone()) {
                return Err(locate.at(
                    &secret.id,
                    format!("secret id {secret_id:?} appears twice in this trigger"),
                ));
            }
            let value = match (&secret.env, &secret.value) {
                (Some(name), None) => locate.variable(name, env)?,
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
        if let Err((secret, error)) = trigger.check_secrets() {
            let at = entry
                .secrets
                .iter()
                .find(|raw| raw.id.get_ref() == secret.id())
                .map_or(&entry.id, |raw| &raw.id);
            return Err(locate.at(
                at,
                format!(
                    "secret {:?} does not fit the trigger's signature scheme: {error}",
                    secret.id()
                ),
            ));
        }
        let trigger = super::rules::compile(locate, entry, trigger)?;
        triggers.push(trigger);
    }
    Ok(triggers)
}

/// The most records a trigger's deliveries log may keep (0: none).
pub const MAX_LOG_MAX: u64 = 10_000_000;

/// Each trigger's bound on its deliveries log: its own `delivery_log_max`, or `default`.
pub fn log_limits(
    locate: &Locator<'_>,
    raw: &[RawTrigger],
    default: usize,
) -> Result<LogLimits, ConfigError> {
    let mut limits = LogLimits::new(default);
    for entry in raw {
        if let Some(max) = &entry.delivery_log_max {
            let id = parse_uuid(entry.id.get_ref()).ok_or_else(|| {
                locate.at(&entry.id, "trigger id is not a hyphenated UUID".to_owned())
            })?;
            limits = limits.with_trigger(id, log_max(locate, max)?);
        }
    }
    Ok(limits)
}

/// A `delivery_log_max`, checked.
pub fn log_max(locate: &Locator<'_>, max: &toml::Spanned<u64>) -> Result<usize, ConfigError> {
    if *max.get_ref() > MAX_LOG_MAX {
        return Err(locate.at(
            max,
            format!("delivery_log_max must be from 0 to {MAX_LOG_MAX}"),
        ));
    }
    // Within MAX_LOG_MAX, which every usize holds.
    Ok(*max.get_ref() as usize)
}

/// A `webhook` trigger's `signature` (a preset's name or a table) and its `public_url`.
fn signature(
    locate: &Locator<'_>,
    entry: &RawTrigger,
    source: Source,
    mut trigger: Trigger,
) -> Result<Trigger, ConfigError> {
    let Some(raw) = &entry.signature else {
        if let Some(url) = &entry.public_url {
            return Err(locate.at(
                url,
                "public_url is only for a signature scheme that signs the URL".to_owned(),
            ));
        }
        return Ok(trigger);
    };
    if source != Source::Webhook {
        return Err(locate.at(
            raw,
            format!("signature is for webhook triggers: {source} signs its own way"),
        ));
    }
    let scheme: SignatureScheme =
        raw.get_ref()
            .clone()
            .try_into()
            .map_err(|error: toml::de::Error| {
                locate.at(raw, format!("signature: {}", error.message().trim_end()))
            })?;
    match (&entry.public_url, scheme.signs_url()) {
        (None, true) => {
            return Err(locate.at(
                raw,
                "this scheme signs the URL the sender was given: set public_url to it".to_owned(),
            ));
        }
        (Some(url), false) => {
            return Err(locate.at(
                url,
                "public_url is only for a signature scheme that signs the URL".to_owned(),
            ));
        }
        (Some(url), true) => {
            if !(url.get_ref().starts_with("https://") || url.get_ref().starts_with("http://")) {
                return Err(locate.at(url, "public_url must be an http(s):// URL".to_owned()));
            }
            if url.get_ref().contains(['?', '#']) {
                return Err(locate.at(
                    url,
                    "public_url is the URL without a query: the request's own query is added as it arrives".to_owned(),
                ));
            }
            trigger = trigger.with_public_url(url.get_ref().clone());
        }
        (None, false) => {}
    }
    Ok(trigger.with_signature(scheme))
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
pub fn parse_uuid(text: &str) -> Option<Uuid> {
    (text.len() == 36)
        .then(|| Uuid::try_parse(text).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
