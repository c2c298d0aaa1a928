//! A JetStream stream of its own for each test, deleted afterwards, or a visible skip when no
//! NATS server answers (a failure under `CI=true`).

use std::time::Duration;

use agent_trigger::nats::{JetStreamOptions, JetStreamSink};
use uuid::Uuid;

/// The server the tests use unless `AGENT_TRIGGER_TEST_NATS` names another.
const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

pub fn url() -> String {
    std::env::var("AGENT_TRIGGER_TEST_NATS").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A stream name and subject prefix of its own; the stream is deleted when this is dropped.
pub struct TestStream {
    pub client: async_nats::Client,
    pub name: String,
    pub prefix: String,
}

impl TestStream {
    /// A new stream name, or `None` (with a line saying why) when no server answers outside CI.
    pub async fn new(test: &str) -> Option<TestStream> {
        let url = url();
        let connected = tokio::time::timeout(
            Duration::from_secs(5),
            async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .max_reconnects(Some(1))
                .connect(&url),
        )
        .await;
        let error = match connected {
            Ok(Ok(client)) => {
                let id = Uuid::now_v7().simple().to_string();
                return Some(TestStream {
                    client,
                    name: format!("TEST_{id}"),
                    prefix: format!("test_{id}"),
                });
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "no answer within 5 s".to_owned(),
        };
        if std::env::var("CI").is_ok_and(|value| value == "true") {
            panic!("{test}: NATS at {url} is required under CI=true: {error}");
        }
        eprintln!("SKIPPED {test}: no NATS at {url} ({error}); set AGENT_TRIGGER_TEST_NATS");
        None
    }

    /// Options for a sink on this stream, through a client of its own (another instance).
    pub async fn options(&self) -> JetStreamOptions {
        let client = async_nats::connect(url()).await.expect("connects");
        JetStreamSink::builder(client)
            .stream(self.name.clone())
            .subject_prefix(self.prefix.clone())
    }

    /// A sink on this stream with the default options.
    pub async fn sink(&self) -> JetStreamSink {
        self.options()
            .await
            .connect()
            .await
            .expect("the sink starts")
    }

    pub fn context(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client.clone())
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Its own thread and runtime: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                if let Ok(client) = async_nats::connect(url()).await {
                    let _ = async_nats::jetstream::new(client)
                        .delete_stream(&name)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A `nats-server` of the test's own, with JetStream on file storage in a directory of its
/// own, on a free port; it can be killed and started again on the same port and directory.
pub struct OwnNatsServer {
    pub port: u16,
    store_dir: std::path::PathBuf,
    process: Option<tokio::process::Child>,
}

impl OwnNatsServer {
    /// Starts one, or `None` (with a line saying why) when no `nats-server` binary is on the
    /// `PATH` outside CI.
    pub async fn start(test: &str) -> Option<OwnNatsServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let store_dir = std::env::temp_dir().join(format!("agent-trigger-nats-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&store_dir).unwrap();
        let mut server = OwnNatsServer {
            port,
            store_dir,
            process: None,
        };
        if let Err(error) = server.restart().await {
            if std::env::var("CI").is_ok_and(|value| value == "true") {
                panic!("{test}: nats-server is required under CI=true: {error}");
            }
            eprintln!("SKIPPED {test}: cannot run nats-server ({error})");
            return None;
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (`SIGKILL`), as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.start_kill();
            let _ = process.wait().await;
        }
    }

    /// Starts the server (again), and waits until it accepts connections.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.kill().await;
        let process = tokio::process::Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("nats-server: {error}"))?;
        self.process = Some(process);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("nats-server did not listen within 5 s".to_owned())
    }
}

impl Drop for OwnNatsServer {
    fn drop(&mut self) {
        if let Some(process) = self.process.as_mut() {
            let _ = process.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.store_dir);
    }
}
