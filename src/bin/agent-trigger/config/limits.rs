//! The `[limits]` table: how long a request may take and how many connections and requests the
//! server holds at once, so that slow or hostile clients cannot exhaust it. The listener and
//! the API's layers enforce them; `environment.rs` lets the documented variables override them.

use std::time::Duration;

use toml::Spanned;

use super::file::RawLimits;
use super::locate::{ConfigError, Locator};

/// The longest timeout a limit takes: a day.
pub const MAX_TIMEOUT_SECS: u64 = 24 * 60 * 60;
/// The most connections or requests in flight a limit allows.
pub const MAX_COUNT: u64 = 1_000_000;

/// The server's connection and request limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A connection's first request head (protocol detection included) must arrive within this
    /// of its accept, and each later HTTP/1 head within the same time.
    pub header_timeout: Duration,
    /// A whole request, its body included, must be answered within this: `408` otherwise.
    pub request_timeout: Duration,
    /// Requests handled at once; one more is shed with `503` and `Retry-After`.
    pub max_in_flight: usize,
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed gracefully (HTTP/2:
    /// GOAWAY), whether or not it answers pings.
    pub idle_timeout: Duration,
    /// Connections open at once from one peer address; none by default, since load balancers
    /// and loopback clients share one address.
    pub max_connections_per_peer: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_in_flight: 512,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(10),
            max_connections_per_peer: None,
        }
    }
}

/// The limits a `[limits]` table sets, the defaults for the rest.
pub fn check(locate: &Locator<'_>, raw: Option<&RawLimits>) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    let Some(raw) = raw else {
        return Ok(limits);
    };
    let count = |value: &Spanned<u64>, what: &str| -> Result<usize, ConfigError> {
        if !(1..=MAX_COUNT).contains(value.get_ref()) {
            return Err(locate.at(
                value,
                format!("limits.{what} must be from 1 to {MAX_COUNT}"),
            ));
        }
        // Within MAX_COUNT, which every usize holds.
        Ok(*value.get_ref() as usize)
    };
    if let Some(value) = &raw.header_timeout_secs {
        limits.header_timeout =
            locate.seconds(value, "limits.header_timeout_secs", MAX_TIMEOUT_SECS)?;
    }
    if let Some(value) = &raw.request_timeout_secs {
        limits.request_timeout =
            locate.seconds(value, "limits.request_timeout_secs", MAX_TIMEOUT_SECS)?;
    }
    if let Some(value) = &raw.max_in_flight {
        limits.max_in_flight = count(value, "max_in_flight")?;
    }
    if let Some(value) = &raw.max_connections {
        limits.max_connections = count(value, "max_connections")?;
    }
    if let Some(value) = &raw.idle_timeout_secs {
        limits.idle_timeout =
            locate.seconds(value, "limits.idle_timeout_secs", MAX_TIMEOUT_SECS)?;
    }
    if let Some(value) = &raw.max_connections_per_peer {
        limits.max_connections_per_peer = Some(count(value, "max_connections_per_peer")?);
    }
    Ok(limits)
}
