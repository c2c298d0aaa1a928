//! The `[executor]` table: the command run once per execution, its workers, timeout, retries,
//! lease, and the environment it gets.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::file::RawExecutor;
use super::locate::{ConfigError, Locator};

const DEFAULT_WORKERS: usize = 2;
const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// More workers than this is a typo, not a plan: each one may run a command.
const MAX_WORKERS: usize = 1024;
/// Attempts per execution at most.
const MAX_ATTEMPTS: u32 = 100;
const DEFAULT_RETRY_BACKOFF_SECS: u64 = 30;
const DEFAULT_LEASE_SECS: u64 = 30;
const MAX_LEASE_SECS: u64 = 60 * 60;
/// The variables every command gets from the server's environment, when set.
pub const BASE_ENVIRONMENT: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

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
    /// The names `[executor] env` passes through from the server's environment.
    pub passed_through: Vec<String>,
    /// The account commands run as; `None`: the server's own.
    pub user: Option<Account>,
    /// Whether each command starts inside the Landlock allow-list.
    pub sandbox: Sandbox,
    /// Directories a sandboxed command may write in besides its scratch directory.
    pub writable: Vec<PathBuf>,
}

/// An account commands run as: `[executor] user` and `group`, looked up when the file loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The user's home directory: the command's `HOME`.
    pub home: PathBuf,
}

/// `[executor] sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    /// Commands can reach what their user can.
    None,
    /// Commands start inside a Landlock filesystem allow-list.
    Landlock,
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
            .field("passed_through", &self.passed_through)
            .field("user", &self.user)
            .field("sandbox", &self.sandbox)
            .field("writable", &self.writable)
            .finish()
    }
}

/// The table, checked; `secret_variables` are the variables the file reads keys and secrets
/// from, which the command never gets.
pub fn check(
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
        Some(timeout) => locate.bounded_duration(timeout, "executor.timeout_secs")?,
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
        Some(seconds) => locate.bounded_duration(seconds, "executor.retry_backoff_secs")?,
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
    let user = raw
        .user
        .as_ref()
        .map(|user| account(locate, user, raw.group.as_ref()))
        .transpose()?;
    if let (None, Some(group)) = (&raw.user, &raw.group) {
        return Err(locate.at(group, "executor.group needs executor.user".to_owned()));
    }
    let sandbox = match &raw.sandbox {
        None => Sandbox::None,
        Some(name) if name.get_ref() == "landlock" && cfg!(target_os = "linux") => {
            Sandbox::Landlock
        }
        Some(name) if name.get_ref() == "landlock" => {
            return Err(locate.at(
                name,
                "executor.sandbox = \"landlock\" needs Linux".to_owned(),
            ));
        }
        Some(name) => {
            return Err(locate.at(
                name,
                format!(
                    "executor.sandbox {:?} is not a sandbox: the one there is is \"landlock\"",
                    name.get_ref()
                ),
            ));
        }
    };
    let mut writable = Vec::new();
    if let Some(directories) = &raw.writable {
        if sandbox == Sandbox::None {
            return Err(locate.at(
                directories,
                "executor.writable needs sandbox = \"landlock\"".to_owned(),
            ));
        }
        for directory in directories.get_ref() {
            let path = PathBuf::from(directory);
            if !path.is_absolute() {
                return Err(locate.at(
                    directories,
                    format!("executor.writable: {directory:?} is not an absolute path"),
                ));
            }
            writable.push(path);
        }
    }
    Ok(ExecutorConfig {
        passed_through: raw
            .env
            .as_ref()
            .map_or_else(Vec::new, |names| names.get_ref().clone()),
        user,
        sandbox,
        writable,
        command: command.clone(),
        workers,
        timeout,
        max_attempts,
        retry_backoff,
        lease,
        environment,
    })
}

/// The account `user` names (and `group`, else the user's own group), from the system's
/// user database.
fn account(
    locate: &Locator<'_>,
    user: &Spanned<String>,
    group: Option<&Spanned<String>>,
) -> Result<Account, ConfigError> {
    let found = nix::unistd::User::from_name(user.get_ref())
        .map_err(|error| locate.at(user, format!("executor.user: cannot look it up: {error}")))?
        .ok_or_else(|| {
            locate.at(
                user,
                format!("executor.user {:?} is not an account here", user.get_ref()),
            )
        })?;
    let gid = match group {
        Some(group) => nix::unistd::Group::from_name(group.get_ref())
            .map_err(|error| {
                locate.at(group, format!("executor.group: cannot look it up: {error}"))
            })?
            .ok_or_else(|| {
                locate.at(
                    group,
                    format!("executor.group {:?} is not a group here", group.get_ref()),
                )
            })?
            .gid
            .as_raw(),
        None => found.gid.as_raw(),
    };
    Ok(Account {
        name: found.name,
        uid: found.uid.as_raw(),
        gid,
        home: found.dir,
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
