//! A PostgreSQL schema of its own for each test, dropped afterwards, or a visible skip when no
//! server answers (a failure under `CI=true`).

use std::time::Duration;

use agent_trigger::postgres::{PostgresOptions, PostgresStore};
use uuid::Uuid;

/// The server the tests use unless `AGENT_TRIGGER_TEST_POSTGRES` names another.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn url() -> String {
    std::env::var("AGENT_TRIGGER_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A schema of its own, dropped with everything in it when this is dropped.
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

impl TestSchema {
    /// A new schema, or `None` (with a line saying why) when no server answers outside CI.
    pub async fn new(test: &str) -> Option<TestSchema> {
        let url = url();
        let reached = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_postgres::connect(&url, tokio_postgres::NoTls),
        )
        .await;
        let error = match reached {
            Ok(Ok((client, connection))) => {
                tokio::spawn(connection);
                drop(client);
                let name = format!("test_{}", Uuid::now_v7().simple());
                return Some(TestSchema { url, name });
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "no answer within 5 s".to_owned(),
        };
        if std::env::var("CI").is_ok_and(|value| value == "true") {
            panic!("{test}: PostgreSQL at {url} is required under CI=true: {error}");
        }
        eprintln!(
            "SKIPPED {test}: no PostgreSQL at {url} ({error}); set AGENT_TRIGGER_TEST_POSTGRES"
        );
        None
    }

    /// Options for a store in this schema.
    pub fn options(&self) -> PostgresOptions {
        PostgresStore::builder(self.url.clone()).schema(self.name.clone())
    }

    /// A store in this schema with the default options.
    pub async fn store(&self) -> PostgresStore {
        self.options().connect().await.expect("the store connects")
    }

    /// The URL with this schema as the search path, for a server process.
    pub fn url_with_schema(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.url, self.name
        )
    }

    /// A plain client on the same database, for what the store does not expose.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connects");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("SET search_path = {}", self.name))
            .await
            .expect("sets the search path");
        client
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Its own thread and runtime: the test's runtime may be shutting down.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
                    .ok()
            })
        });
        let _ = dropped.join();
    }
}
