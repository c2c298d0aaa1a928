//! The documentation's configurations are real: every ```toml block in `README.md` and
//! `docs/*.md` passes `agent-trigger check`, unless the line before its fence is
//! `<!-- fragment -->` (a piece of a file, shown for one table or key).
#![cfg(feature = "server")]

use std::path::{Path, PathBuf};
use std::process::Command;

use uuid::Uuid;

/// The marker that exempts the block after it.
const FRAGMENT: &str = "<!-- fragment -->";

/// Variables that would change what `check` makes of a file; the test's environment must not.
const OVERRIDES: [&str; 5] = [
    "AGENT_TRIGGER_DATABASE_URL",
    "AGENT_TRIGGER_MAX_CONNECTIONS",
    "AGENT_TRIGGER_HEADER_TIMEOUT_SECS",
    "AGENT_TRIGGER_REQUEST_TIMEOUT_SECS",
    "AGENT_TRIGGER_MAX_IN_FLIGHT",
];

/// A ```toml block: where it starts, and its text.
struct Block {
    file: PathBuf,
    line: usize,
    text: String,
}

/// The ```toml blocks of `file` that are not marked as fragments.
fn configurations(file: &Path) -> Vec<Block> {
    let markdown = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let fence = lines[index].trim_start();
        if !fence.starts_with("```") {
            index += 1;
            continue;
        }
        let is_toml = fence.trim_start_matches('`').trim() == "toml";
        let is_fragment = index > 0 && lines[index - 1].trim() == FRAGMENT;
        let start = index;
        index += 1;
        let mut text = String::new();
        while index < lines.len() && !lines[index].trim_start().starts_with("```") {
            text.push_str(lines[index]);
            text.push('\n');
            index += 1;
        }
        index += 1;
        if is_toml && !is_fragment {
            blocks.push(Block {
                file: file.to_owned(),
                line: start + 1,
                text,
            });
        }
    }
    blocks
}

/// The variables a configuration reads keys and secrets from (`env = "NAME"`), which `check`
/// needs set.
fn variables(configuration: &str) -> Vec<String> {
    configuration
        .lines()
        .filter_map(|line| {
            let value = line
                .trim()
                .strip_prefix("env")?
                .trim_start()
                .strip_prefix('=')?;
            let name = value.trim_start().strip_prefix('"')?;
            Some(name[..name.find('"')?].to_owned())
        })
        .collect()
}

fn documentation() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "md"))
        .collect();
    pages.sort();
    pages.insert(0, root.join("README.md"));
    pages
}

#[test]
fn every_configuration_in_the_docs_passes_check() {
    let blocks: Vec<Block> = documentation()
        .iter()
        .flat_map(|page| configurations(page))
        .collect();
    assert!(
        blocks
            .iter()
            .any(|block| block.file.ends_with("docs/server.md")),
        "docs/server.md shows a whole configuration"
    );
    let dir = std::env::temp_dir().join(format!("agent-trigger-docs-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for (number, block) in blocks.iter().enumerate() {
        let file = dir.join(format!("example-{number}.toml"));
        std::fs::write(&file, &block.text).unwrap();
        let mut check = Command::new(env!("CARGO_BIN_EXE_agent-trigger"));
        check.args(["check", "--config"]).arg(&file);
        for name in OVERRIDES {
            check.env_remove(name);
        }
        for name in variables(&block.text) {
            let value = format!("docs-example-value-of-{name}");
            check.env(name, value);
        }
        let output = check.output().unwrap();
        if !output.status.success() {
            failures.push(format!(
                "{}:{}: {}",
                block.file.display(),
                block.line,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "configurations in the docs that `agent-trigger check` refuses (mark a piece of a file \
         with {FRAGMENT} on the line before its fence):\n{}",
        failures.join("\n")
    );
}

#[test]
fn fragments_and_other_blocks_are_left_out() {
    let dir = std::env::temp_dir().join(format!("agent-trigger-docs-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("page.md");
    std::fs::write(
        &page,
        "```toml\nlisten = \"127.0.0.1:1\"\n```\n\n<!-- fragment -->\n```toml\n[executor]\n```\n\n\
         ```sh\nagent-trigger check --config FILE\n```\n\n```toml\n[[keys]]\nenv = \"KEY\"\n```\n",
    )
    .unwrap();
    let blocks = configurations(&page);
    let _ = std::fs::remove_dir_all(&dir);
    let found: Vec<(usize, &str)> = blocks
        .iter()
        .map(|block| (block.line, block.text.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (1, "listen = \"127.0.0.1:1\"\n"),
            (14, "[[keys]]\nenv = \"KEY\"\n")
        ]
    );
    assert_eq!(variables(&blocks[1].text), ["KEY"]);
}
