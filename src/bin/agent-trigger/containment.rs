//! Keeping the commands the executor runs away from the server's secrets. A command reads text
//! an attacker can write, so whatever it can reach, a prompt injection can print: the server's
//! environment (`/proc/<server>/environ`), its configuration file (named in
//! `/proc/<server>/cmdline`) and its database.
//!
//! - At start, before any thread exists, the server makes itself non-dumpable (its `/proc`
//!   files then belong to root, out of reach of a process of the same user), sets
//!   `no_new_privs` (inherited by every command: no setuid program gives one root) and a umask
//!   that keeps the files it creates (the SQLite database) to itself.
//! - [`check_start`] refuses what would leave a command next to the secrets: a root server
//!   running commands as root without saying so, a database or a configuration holding secrets
//!   that the command's account can read, a sandbox whose allow-list would include them.
//! - Commands run as `[executor] user` (supplementary groups cleared), and with `sandbox =
//!   "landlock"` inside the [`allow_list`]: the launcher (`launch.rs`) takes the account and
//!   restricts itself, then becomes the command.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use agent_trigger::sqlite::deliveries_log_path;

use crate::config::{Account, Config, Database, ExecutorConfig, Sandbox};
use crate::launch::{AllowList, SYSTEM_DIRECTORIES};

/// Makes the process non-dumpable, sets `no_new_privs` and a umask of `077`. Called first in
/// `main`, so that every thread (and so every command) inherits `no_new_privs`.
pub fn harden_process() -> std::io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    rustix::thread::set_no_new_privs(true)?;
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    Ok(())
}

/// What `serve` (and `check`) refuse about a configuration read from `config_file`, with the
/// reason; and the one warning line about a command that runs as the server's own user without
/// the sandbox. Nothing to refuse without an executor.
pub fn check_start(config: &Config, config_file: &Path) -> Result<(), String> {
    let Some(executor) = &config.startup.executor else {
        return Ok(());
    };
    let server_uid = rustix::process::geteuid().as_raw();
    match &executor.user {
        None if server_uid == 0 => {
            return Err("the server runs as root and [executor] names no user: commands would run as root, next to every secret. Set [executor] user to an unprivileged account (or user = \"root\" to run them as root anyway)".to_owned());
        }
        Some(account) if account.uid == 0 => {
            tracing::warn!("[executor] user = \"root\": commands run as root");
        }
        Some(account) if account.uid != server_uid && server_uid != 0 => {
            return Err(format!(
                "[executor] user = {:?}: only a server running as root can run commands as another user",
                account.name
            ));
        }
        _ => {}
    }
    let own_user = executor
        .user
        .as_ref()
        .is_none_or(|account| account.uid == server_uid);
    if own_user && server_uid != 0 && executor.sandbox == Sandbox::None {
        tracing::warn!(
            "commands run as the server's own user and can read what it can: set [executor] user to another account, or sandbox = \"landlock\""
        );
    }
    if executor.sandbox == Sandbox::Landlock {
        landlock_available()?;
    }
    check_files(
        executor,
        &config.startup.database,
        config_file,
        config.reloadable.secrets_in_file,
    )
}

/// The refusals about files, at start and at each reload: a database or a configuration
/// holding secrets that the command's account can read, and a sandbox whose allow-list would
/// hold them.
pub fn check_files(
    executor: &ExecutorConfig,
    database: &Database,
    config_file: &Path,
    secrets_in_file: bool,
) -> Result<(), String> {
    let server_uid = rustix::process::geteuid().as_raw();
    let other_account = executor
        .user
        .as_ref()
        .filter(|account| account.uid != server_uid && account.uid != 0);
    if let Some(account) = other_account {
        let mut secrets: Vec<PathBuf> = database_files(database)
            .into_iter()
            .filter(|file| file.exists())
            .collect();
        if secrets_in_file {
            secrets.push(config_file.to_owned());
        }
        for file in secrets {
            if readable_by(&file, account) {
                return Err(format!(
                    "{} is readable by [executor] user {:?}: commands could read its secrets (make it readable by the server's account only, e.g. chmod 600)",
                    file.display(),
                    account.name
                ));
            }
        }
    }
    if executor.sandbox == Sandbox::Landlock {
        let mut kept_out = database_files(database);
        kept_out.push(config_file.to_owned());
        for allowed in allowed_directories(executor) {
            let Ok(allowed) = allowed.canonicalize() else {
                continue;
            };
            for file in &kept_out {
                if resolved(file).starts_with(&allowed) {
                    return Err(format!(
                        "sandbox = \"landlock\" would let commands reach {} through {}: keep the database and the configuration outside the command's directory, [executor] writable and {}",
                        file.display(),
                        allowed.display(),
                        SYSTEM_DIRECTORIES.join(", ")
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `file` with its directory's symlinks resolved, whether or not the file exists yet.
fn resolved(file: &Path) -> PathBuf {
    if let Ok(path) = file.canonicalize() {
        return path;
    }
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .map_or_else(|_| absolute.clone(), |parent| parent.join(name)),
        _ => absolute,
    }
}

/// The files of `database` that hold secrets, whether or not they exist yet: a SQLite file, its
/// deliveries log's file, and their journal files. A PostgreSQL database is the server's to
/// protect with the role's password.
fn database_files(database: &Database) -> Vec<PathBuf> {
    match database {
        Database::Sqlite(path) => [path.clone(), deliveries_log_path(path)]
            .into_iter()
            .flat_map(|file| {
                ["", "-wal", "-shm", "-journal"].map(|suffix| {
                    let mut name = file.clone().into_os_string();
                    name.push(suffix);
                    PathBuf::from(name)
                })
            })
            .collect(),
        Database::Postgres(_) => Vec::new(),
    }
}

/// Whether `account` (with no supplementary groups) may read `file`, by its mode bits.
fn readable_by(file: &Path, account: &Account) -> bool {
    let Ok(metadata) = std::fs::metadata(file) else {
        return false;
    };
    let mode = metadata.mode();
    if metadata.uid() == account.uid {
        mode & 0o400 != 0
    } else if metadata.gid() == account.gid {
        mode & 0o040 != 0
    } else {
        mode & 0o004 != 0
    }
}

/// Every directory a sandboxed command may reach besides its scratch directory: the system's,
/// the command's own, and `[executor] writable`.
fn allowed_directories(executor: &ExecutorConfig) -> Vec<PathBuf> {
    let mut directories: Vec<PathBuf> = SYSTEM_DIRECTORIES.iter().map(PathBuf::from).collect();
    directories.extend(command_directory(&executor.command[0]));
    directories.extend(executor.writable.iter().cloned());
    directories
}

/// The directory holding the program, when it is named by a path rather than found on `PATH`.
fn command_directory(program: &str) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.components().count() < 2 {
        return None;
    }
    let absolute = std::path::absolute(path).ok()?;
    absolute.parent().map(Path::to_owned)
}

/// Where the sandboxed `executor.command` may go besides the system's directories: read the
/// directory holding its program (when named by a path), write its `scratch` directory and
/// `[executor] writable`.
pub fn allow_list(executor: &ExecutorConfig, scratch: &Path) -> AllowList {
    AllowList {
        read: command_directory(&executor.command[0])
            .into_iter()
            .collect(),
        write: std::iter::once(scratch.to_owned())
            .chain(executor.writable.iter().cloned())
            .collect(),
    }
}

/// Whether the kernel enforces Landlock: a start-up error otherwise, never a silent no-op.
fn landlock_available() -> Result<(), String> {
    use landlock::{ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr};
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .and_then(|ruleset| ruleset.create())
        .map(drop)
        .map_err(|error| {
            format!("sandbox = \"landlock\", but this kernel does not enforce Landlock: {error}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deliveries_log_and_every_journal_count_as_the_databases_files() {
        let files = database_files(&Database::Sqlite(PathBuf::from("/srv/at.db")));
        for name in [
            "/srv/at.db",
            "/srv/at.db-wal",
            "/srv/at.db-shm",
            "/srv/at.db-journal",
            "/srv/at.db-deliveries",
            "/srv/at.db-deliveries-wal",
            "/srv/at.db-deliveries-shm",
            "/srv/at.db-deliveries-journal",
        ] {
            assert!(files.contains(&PathBuf::from(name)), "{name} is missing");
        }
        assert_eq!(files.len(), 8);
    }

    #[test]
    fn a_command_named_by_path_brings_its_directory_into_the_allow_list() {
        assert_eq!(command_directory("sh"), None);
        assert_eq!(
            command_directory("/srv/agent/run.sh"),
            Some(PathBuf::from("/srv/agent"))
        );
    }

    #[test]
    fn readability_follows_the_mode_bits_for_owner_group_and_others() {
        use std::os::unix::fs::PermissionsExt;
        let directory = std::env::temp_dir().join(format!("containment-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let file = directory.join("secrets");
        std::fs::write(&file, "x").unwrap();
        let metadata = std::fs::metadata(&file).unwrap();
        let stranger = Account {
            name: "stranger".to_owned(),
            uid: metadata.uid().wrapping_add(4242),
            gid: metadata.gid().wrapping_add(4242),
            home: PathBuf::from("/"),
        };
        let same_group = Account {
            gid: metadata.gid(),
            ..stranger.clone()
        };
        for (mode, stranger_reads, group_reads) in [
            (0o600, false, false),
            (0o640, false, true),
            (0o644, true, true),
            (0o604, true, false),
        ] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(readable_by(&file, &stranger), stranger_reads, "{mode:o}");
            assert_eq!(readable_by(&file, &same_group), group_reads, "{mode:o}");
        }
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
