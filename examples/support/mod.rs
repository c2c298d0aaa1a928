//! What the example servers share: reading the environment, building the stores, printing how
//! to call the endpoint, logging executions, serving a tower service with hyper-util, and
//! stopping on a signal. The framework-specific mounting lives in each example.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use agent_trigger::memory::{ChannelSink, Execution, MemoryKeyStore};
use agent_trigger::{ApiKey, ApiKeyRecord, BoxError, Source, Trigger, TriggerService};
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use uuid::Uuid;

/// The tenant the example's key and triggers belong to.
const TENANT: &str = "example";

/// The service every example mounts.
pub type Triggers = TriggerService<ChannelSink, MemoryKeyStore>;

/// What an example server needs.
pub struct Setup {
    pub listen: SocketAddr,
    pub service: Triggers,
    pub executions: mpsc::Receiver<Execution>,
    pub key: ApiKey,
    pub trigger_id: Uuid,
}

impl Setup {
    /// Reads `LISTEN_ADDR` (default 127.0.0.1:3000), `API_KEY` (generated when unset) and
    /// `TRIGGER_ID` (the `webhook` trigger's id, generated when unset); the service answers
    /// under `prefix`.
    pub fn from_env(prefix: &str) -> Result<Setup, String> {
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
        Ok(Setup::new(
            listen,
            key,
            trigger_id,
            prefix,
            agent_trigger::service::DEFAULT_BODY_LIMIT,
        ))
    }

    /// One trigger per source (the `webhook` one with `trigger_id`) and one key.
    pub fn new(
        listen: SocketAddr,
        key: ApiKey,
        trigger_id: Uuid,
        prefix: &str,
        body_limit: usize,
    ) -> Setup {
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
        let service = TriggerService::builder(sink, store)
            .prefix(prefix)
            .body_limit(body_limit)
            .build();
        Setup {
            listen,
            service,
            executions,
            key,
            trigger_id,
        }
    }

    /// A setup with a fresh key and trigger id on a free loopback port, and that port's
    /// listener (for tests of the examples).
    pub async fn on_loopback(prefix: &str, body_limit: usize) -> (TcpListener, Setup) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let setup = Setup::new(
            address,
            ApiKey::generate(),
            Uuid::now_v7(),
            prefix,
            body_limit,
        );
        (listener, setup)
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

/// Stands in for an agent runner: logs every execution it is handed (`LOG_EXECUTIONS=0` only
/// drains them, as the load comparison does).
///
/// It takes whatever is queued at once, then lets the connections run before it looks again:
/// under load the executions pile up in the meantime and are taken many at a time, instead of
/// the runner being woken once for each.
pub async fn log_executions(mut executions: mpsc::Receiver<Execution>) {
    let quiet = std::env::var("LOG_EXECUTIONS").is_ok_and(|value| value == "0");
    let mut batch = Vec::with_capacity(256);
    while executions.recv_many(&mut batch, 256).await > 0 {
        for execution in batch.drain(..) {
            if !quiet {
                log_execution(&execution);
            }
        }
        tokio::task::yield_now().await;
    }
}

fn log_execution(execution: &Execution) {
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

/// Serves a tower service with hyper-util's auto builder (HTTP/1 and HTTP/2 with prior
/// knowledge) until `shutdown` resolves, then lets open connections finish.
pub async fn serve_tower<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let connection = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service.clone()))
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    graceful.shutdown().await;
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
