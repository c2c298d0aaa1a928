//! `agent-trigger-exec`: the executor's launcher. The server starts it, by `posix_spawn`, for
//! each command that runs as `[executor] user` or inside the sandbox; it takes the command's
//! account, restricts itself, and becomes the command (see `agent-trigger/launch.rs`).
//!
//! Not meant to be run by hand:
//! `agent-trigger-exec [--user UID:GID] [--sandbox [--read DIR]… [--write DIR]…] -- PROGRAM …`

// The server's half of the module (writing the arguments, its own subcommand) is unused here.
#[cfg(target_os = "linux")]
#[allow(dead_code)]
#[path = "agent-trigger/launch.rs"]
mod launch;

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    launch::main(std::env::args_os().skip(1))
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("agent-trigger-exec: the executor's launcher runs on Linux only");
    std::process::ExitCode::FAILURE
}
