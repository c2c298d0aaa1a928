//! The commands that start no server: `keygen` and `check`.

use std::path::Path;

use agent_trigger::ApiKey;

use crate::config;
use crate::server::Error;

/// `agent-trigger keygen`.
pub fn keygen() {
    let key = ApiKey::generate();
    println!("API key (store it now; it is not shown again):");
    println!("  {}", key.expose());
    println!("for the [[keys]] entry of the configuration:");
    println!("  sha256 = \"{}\"", key.digest().to_hex());
}

/// `agent-trigger check`: the checks `serve` makes of the file (and of the environment
/// variables it names), with the same located errors, and nothing started.
pub fn check(file: &Path) -> Result<(), Error> {
    let config = config::load(file, &config::process_env)?;
    #[cfg(target_os = "linux")]
    crate::containment::check_start(&config, file)?;
    println!(
        "{}: OK ({} keys, {} triggers, {})",
        file.display(),
        config.reloadable.keys.len(),
        config.reloadable.triggers.len(),
        if config.startup.executor.is_some() {
            "with an executor"
        } else {
            "no executor"
        }
    );
    Ok(())
}
