//! Demo mode: `agent-trigger` with no arguments, on `./agent-trigger.db`, with a fresh key,
//! one trigger per source, and a built-in executor that prints what it receives.

use std::net::SocketAddr;
use std::path::Path;

use agent_trigger::sqlite::SqliteStore;
use agent_trigger::{ApiKey, ApiKeyRecord, Source, Trigger};
use uuid::Uuid;

use crate::config::{self, Database, Startup};
use crate::executor::Runner;
use crate::server::{self, Error};

/// The tenant of demo mode's key and triggers.
const DEMO_TENANT: &str = "demo";

/// Demo mode. Each start mints one key and revokes the keys earlier starts printed: the demo
/// database holds no other keys.
pub async fn run(listen: Option<SocketAddr>) -> Result<(), Error> {
    let database = Path::new(config::DEFAULT_DATABASE);
    let startup = Startup::demo(
        Database::Sqlite(database.to_owned()),
        listen,
        &config::process_env,
    )?;
    let store = SqliteStore::open(database)?;
    let mut triggers: Vec<_> = store
        .triggers()
        .into_iter()
        .filter(|trigger| trigger.tenant() == DEMO_TENANT)
        .collect();
    if triggers.is_empty() {
        for source in Source::ALL {
            store
                .insert_trigger(Trigger::new(Uuid::now_v7(), DEMO_TENANT, source))
                .await?;
        }
        triggers = store.triggers();
    }
    let key_id = format!("demo-{}", &Uuid::now_v7().simple().to_string()[..12]);
    let key = ApiKey::generate();
    let every_trigger = store
        .triggers()
        .iter()
        .map(|trigger| (**trigger).clone())
        .collect();
    store
        .replace_keys_and_triggers(
            vec![(key.digest(), ApiKeyRecord::new(key_id, DEMO_TENANT))],
            every_trigger,
        )
        .await?;
    server::serve(store, &startup, Some(Runner::Demo), |address| {
        say!("agent-trigger demo: database {}", database.display());
        say!("API key (shown once, keep it): {}", key.expose());
        say!("triggers (tenant {DEMO_TENANT:?}):");
        for trigger in &triggers {
            say!("  {:<16} {}", trigger.source().as_str(), trigger.id());
        }
        if let Some(webhook) = triggers.iter().find(|trigger| trigger.source() == Source::Webhook) {
            say!("send a delivery:");
            say!(
                "  curl -sS -X POST http://{address}/api/trigger/webhook/{} -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' -d '{{\"type\":\"demo.ping\",\"note\":\"any JSON\"}}'",
                webhook.id(),
                key.expose()
            );
        }
        say!("then its status (the built-in demo executor prints each input and marks it done):");
        say!(
            "  curl -sS http://{address}/api/executions/<executionId> -H 'Authorization: Bearer {}'",
            key.expose()
        );
        say!("to run your own agent instead, `agent-trigger serve --config FILE` with an [executor] command (see the README).");
    })
    .await
}
