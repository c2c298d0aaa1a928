//! Setup shared by the example servers: read the environment, build the stores, print how to
//! call the endpoint, and run executions by logging them.

use std::net::SocketAddr;

use agent_trigger::memory::{ChannelSink, Execution, MemoryKeyStore};
use agent_trigger::{ApiKey, ApiKeyRecord, Source, Trigger, TriggerService};
use tokio::sync::mpsc;
use uuid::Uuid;

/// The tenant the example's key and triggers belong to.
const TENANT: &str = "example";

/// What an example server needs.
pub struct Setup {
    pub listen: SocketAddr,
    pub service: TriggerService<ChannelSink, MemoryKeyStore>,
    pub executions: mpsc::Receiver<Execution>,
    key: ApiKey,
    trigger_id: Uuid,
}

impl Setup {
    /// Reads `LISTEN_ADDR` (default 127.0.0.1:3000), `API_KEY` (generated when unset) and
    /// `TRIGGER_ID` (the `webhook` trigger's id, generated when unset), and makes one trigger
    /// per source.
    pub fn from_env() -> Result<Setup, String> {
        let listen = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
        let listen = listen
            .parse()
            .map_err(|error| format!("LISTEN_ADDR {listen:?} is not an address: {error}"))?;
        let trigger_id = match std::env::var("TRIGGER_ID") {
            Ok(id) => Uuid::try_parse(&id)
                .map_err(|error| format!("TRIGGER_ID {id:?} is not a UUID: {error}"))?,
            Err(_) => Uuid::now_v7(),
        };
        let key = match std::env::var("API_KEY") {
            Ok(key) if !key.is_empty() => ApiKey::from_plaintext(key),
            _ => ApiKey::generate(),
        };
        let mut store =
            MemoryKeyStore::new().with_key(key.digest(), ApiKeyRecord::new("example", TENANT));
        for source in Source::ALL {
            let id = if source == Source::Webhook {
                trigger_id
            } else {
                Uuid::now_v7()
            };
            store = store.with_trigger(Trigger::new(id, TENANT, source));
        }
        let (sink, executions) = ChannelSink::new(1024);
        let service = TriggerService::new(sink, store);
        Ok(Setup {
            listen,
            service,
            executions,
            key,
            trigger_id,
        })
    }

    /// Prints the key, the trigger and a ready-to-paste curl line.
    pub fn print_banner(&self, framework: &str, listen: SocketAddr) {
        println!("agent-trigger {framework} example listening on http://{listen}");
        println!("API key:            {}", self.key.expose());
        println!("webhook trigger id: {}", self.trigger_id);
        println!(
            "try: curl -sS -X POST http://{listen}/api/trigger/webhook/{} \\\n  -H 'Authorization: Bearer {}' \\\n  -H 'Content-Type: application/json' \\\n  -d '{{\"type\":\"example.ping\",\"note\":\"any JSON\"}}'",
            self.trigger_id,
            self.key.expose()
        );
    }
}

/// Stands in for an agent runner: logs every execution it is handed.
pub async fn log_executions(mut executions: mpsc::Receiver<Execution>) {
    while let Some(execution) = executions.recv().await {
        let delivery = &execution.delivery;
        println!(
            "execution {} started: source={} trigger={} action={} input={}",
            execution.id,
            delivery.source,
            delivery.trigger_id,
            delivery.action.as_deref().unwrap_or("-"),
            String::from_utf8_lossy(&delivery.input),
        );
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
