//! Becoming a contained command, in the process the executor starts for it.
//!
//! The server does not switch accounts or restrict itself in a child of its own: std does that
//! only in a `fork`, and forking a large server costs it milliseconds per execution (its page
//! tables are copied, and each page it writes afterwards faults). Instead the executor
//! starts a small launcher, `agent-trigger-exec`, by `posix_spawn` with a [`Launch`] as its
//! arguments. The launcher clears its supplementary groups, takes the command's account,
//! restricts itself to the sandbox's allow-list and replaces itself with the command, which so
//! keeps the process (pid, process group, pipes, working directory) the executor waits on.
//!
//! Where the launcher is not installed beside the server, the server's own binary plays it
//! (`agent-trigger launch …`, see [`SUBCOMMAND`]); that larger program's start costs about
//! 1.5 ms of CPU against the launcher's 0.6 ms.
//!
//! This file is compiled into both binaries; the launcher holds nothing else.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::ExitCode;

/// The hidden subcommand with which `agent-trigger` plays the launcher.
pub const SUBCOMMAND: &str = "launch";

/// The launcher's exit code when the command could not be started, as a shell's.
const NOT_STARTED: u8 = 127;

/// Directories a sandboxed command may read and execute from.
pub const SYSTEM_DIRECTORIES: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt",
];

/// Devices a sandboxed command may read and write.
pub const DEVICES: [&str; 4] = ["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"];

/// What the launcher does before it becomes `command`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launch {
    /// The account to take (user id, group id), with no supplementary groups.
    pub account: Option<(u32, u32)>,
    /// The Landlock allow-list to restrict itself to.
    pub sandbox: Option<AllowList>,
    /// The program and its arguments. A program without `/` is found on the `PATH` of the
    /// launcher's environment, which is the command's.
    pub command: Vec<OsString>,
}

/// Where a sandboxed command may go besides [`SYSTEM_DIRECTORIES`] and [`DEVICES`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    /// Directories it may read and execute from.
    pub read: Vec<PathBuf>,
    /// Directories it may do anything in.
    pub write: Vec<PathBuf>,
}

impl Launch {
    /// The launcher's arguments: `[--user UID:GID] [--sandbox [--read DIR]… [--write DIR]…]
    /// -- PROGRAM [ARGUMENT]…`.
    pub fn to_arguments(&self) -> Vec<OsString> {
        let mut arguments: Vec<OsString> = Vec::new();
        if let Some((uid, gid)) = self.account {
            arguments.push("--user".into());
            arguments.push(format!("{uid}:{gid}").into());
        }
        if let Some(allowed) = &self.sandbox {
            arguments.push("--sandbox".into());
            for (flag, directories) in [("--read", &allowed.read), ("--write", &allowed.write)] {
                for directory in directories {
                    arguments.push(flag.into());
                    arguments.push(directory.into());
                }
            }
        }
        arguments.push("--".into());
        arguments.extend(self.command.iter().cloned());
        arguments
    }

    /// Reads what [`Launch::to_arguments`] wrote.
    pub fn from_arguments(arguments: impl IntoIterator<Item = OsString>) -> Result<Self, String> {
        let mut arguments = arguments.into_iter();
        let mut launch = Launch::default();
        let value = |flag: &str, arguments: &mut dyn Iterator<Item = OsString>| {
            arguments
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        while let Some(argument) = arguments.next() {
            match argument.to_str() {
                Some("--") => {
                    launch.command = arguments.collect();
                    if launch.command.is_empty() {
                        return Err("no command after --".to_owned());
                    }
                    return Ok(launch);
                }
                Some("--user") => {
                    let account = value("--user", &mut arguments)?;
                    launch.account = Some(parse_account(&account)?);
                }
                Some("--sandbox") => launch.sandbox = Some(AllowList::default()),
                Some(flag @ ("--read" | "--write")) => {
                    let directory = PathBuf::from(value(flag, &mut arguments)?);
                    let Some(allowed) = &mut launch.sandbox else {
                        return Err(format!("{flag} needs --sandbox before it"));
                    };
                    match flag {
                        "--read" => allowed.read.push(directory),
                        _ => allowed.write.push(directory),
                    }
                }
                _ => return Err(format!("unexpected argument {argument:?}")),
            }
        }
        Err("no command: its arguments start after --".to_owned())
    }

    /// Takes the account, restricts this process to the allow-list and replaces it with the
    /// command. Returns only on failure, saying what failed.
    pub fn exec(&self) -> String {
        use std::os::unix::process::CommandExt;

        if let Some((uid, gid)) = self.account
            && let Err(error) = take_account(uid, gid)
        {
            return format!("could not become user {uid} (group {gid}): {error}");
        }
        if let Some(allowed) = &self.sandbox
            && let Err(error) = restrict_to(allowed)
        {
            return error;
        }
        let Some((program, arguments)) = self.command.split_first() else {
            return "no command to run".to_owned();
        };
        let error = std::process::Command::new(program).args(arguments).exec();
        format!("could not start {program:?}: {error}")
    }
}

/// The launcher's `main`, given its arguments after the program's name (and subcommand).
/// Whatever fails is written to standard error, which the executor records as the command's.
pub fn main(arguments: impl IntoIterator<Item = OsString>) -> ExitCode {
    let failure = match Launch::from_arguments(arguments) {
        Ok(launch) => launch.exec(),
        Err(error) => format!("bad launcher arguments: {error}"),
    };
    eprintln!("[agent-trigger] {failure}");
    ExitCode::from(NOT_STARTED)
}

fn parse_account(text: &OsStr) -> Result<(u32, u32), String> {
    let parsed = text.to_str().and_then(|text| {
        let (uid, gid) = text.split_once(':')?;
        Some((uid.parse().ok()?, gid.parse().ok()?))
    });
    parsed.ok_or_else(|| format!("--user takes UID:GID, not {text:?}"))
}

/// Clears the supplementary groups (as root: another account may not), then takes the group,
/// then the user: once the user is not root, nothing else could be changed.
fn take_account(uid: u32, gid: u32) -> nix::Result<()> {
    use nix::unistd::{Gid, Uid, getuid, setgid, setgroups, setuid};
    if getuid().is_root() {
        setgroups(&[])?;
    }
    setgid(Gid::from_raw(gid))?;
    setuid(Uid::from_raw(uid))
}

/// Restricts this process (and so the command) to the system directories, `allowed.read`
/// (read and execute), the devices (read and write) and `allowed.write` (everything).
/// Directories that do not exist are left out; an unenforced sandbox is an error.
fn restrict_to(allowed: &AllowList) -> Result<(), String> {
    use landlock::{
        ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, path_beneath_rules,
    };
    let abi = ABI::V1;
    let existing = |paths: &mut dyn Iterator<Item = PathBuf>| -> Vec<PathBuf> {
        paths.filter(|path| path.exists()).collect()
    };
    let readable = existing(
        &mut SYSTEM_DIRECTORIES
            .iter()
            .map(PathBuf::from)
            .chain(allowed.read.iter().cloned()),
    );
    let devices = existing(&mut DEVICES.iter().map(PathBuf::from));
    let writable = existing(&mut allowed.write.iter().cloned());
    let restricted = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|ruleset| ruleset.create())
        .and_then(|ruleset| {
            ruleset.add_rules(path_beneath_rules(&readable, AccessFs::from_read(abi)))
        })
        .and_then(|ruleset| {
            ruleset.add_rules(path_beneath_rules(&devices, AccessFs::from_file(abi)))
        })
        .and_then(|ruleset| {
            ruleset.add_rules(path_beneath_rules(&writable, AccessFs::from_all(abi)))
        })
        .and_then(|ruleset| ruleset.restrict_self());
    match restricted {
        Ok(status) if status.ruleset == RulesetStatus::FullyEnforced => Ok(()),
        Ok(status) => Err(format!(
            "the sandbox is not enforced ({:?})",
            status.ruleset
        )),
        Err(error) => Err(format!("cannot set up the sandbox: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(text: &[&str]) -> Vec<OsString> {
        text.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments_read_back_as_the_launch_they_were_written_from() {
        let launches = [
            Launch {
                account: Some((65534, 65533)),
                sandbox: Some(AllowList {
                    read: vec!["/srv/agent bin".into()],
                    write: vec!["/tmp/scratch".into(), "--sandbox".into()],
                }),
                command: arguments(&["claude", "--", "-p", "--user", "1:1"]),
            },
            Launch {
                account: None,
                sandbox: Some(AllowList::default()),
                command: arguments(&["/bin/sh"]),
            },
            Launch {
                account: Some((0, 0)),
                sandbox: None,
                command: arguments(&["sh", "-c", "echo --"]),
            },
        ];
        for launch in launches {
            assert_eq!(Launch::from_arguments(launch.to_arguments()), Ok(launch));
        }
    }

    #[test]
    fn malformed_arguments_are_refused_with_the_reason() {
        let refusals = [
            (&[][..], "no command"),
            (&["sh"][..], "unexpected argument"),
            (&["--user", "nobody", "--", "sh"][..], "UID:GID"),
            (&["--user", "1:x", "--", "sh"][..], "UID:GID"),
            (&["--user"][..], "needs a value"),
            (&["--write", "/tmp", "--", "sh"][..], "needs --sandbox"),
            (&["--sandbox", "--"][..], "no command after"),
        ];
        for (given, reason) in refusals {
            let refused = Launch::from_arguments(arguments(given)).unwrap_err();
            assert!(refused.contains(reason), "{given:?}: {refused}");
        }
    }

    #[test]
    fn a_program_that_does_not_exist_is_reported_not_started() {
        let launch = Launch {
            command: arguments(&["/nonexistent/agent-trigger-test-program"]),
            ..Launch::default()
        };
        let failure = launch.exec();
        assert!(
            failure.starts_with("could not start \"/nonexistent/agent-trigger-test-program\""),
            "{failure}"
        );
    }
}
