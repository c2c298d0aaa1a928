//! A host's consumer for the JetStream sink: pulls executions with a durable consumer, runs
//! each, and acknowledges it once it has run. Several copies of this worker share the work.
//!
//! ```sh
//! cargo run --features nats --example jetstream_worker            # NATS_URL, STREAM, PREFIX
//! ```
//!
//! The acknowledgement is explicit and comes after the work: a worker that dies mid-execution
//! leaves it unacknowledged, and JetStream hands it to another worker once `ack_wait` passes,
//! so an execution runs at least once (make the agent idempotent, or check the execution id,
//! which is the same on every redelivery). A long execution keeps its claim by telling
//! JetStream it is still working (`AckKind::Progress`) more often than `ack_wait`.

use std::time::Duration;

use agent_trigger::nats::{JetStreamSink, headers};
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), async_nats::Error> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let stream = std::env::var("STREAM").unwrap_or_else(|_| "AGENT_TRIGGER".to_owned());
    let prefix = std::env::var("PREFIX").unwrap_or_else(|_| "agent_trigger".to_owned());
    let client = async_nats::connect(&url).await?;
    // The sink's own setup finds or creates the stream and checks it.
    let sink = JetStreamSink::builder(client.clone())
        .stream(stream.clone())
        .subject_prefix(prefix)
        .connect()
        .await?;
    let jetstream = async_nats::jetstream::new(client);
    let consumer = jetstream
        .get_stream(&stream)
        .await?
        .get_or_create_consumer(
            "agents",
            pull::Config {
                durable_name: Some("agents".to_owned()),
                filter_subject: sink.executions_subject(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .await?;
    println!("waiting for executions on {}", sink.executions_subject());
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let Some(message_headers) = message.headers.as_ref() else {
            // Not one of the sink's: nothing to run, and nothing to retry.
            message.ack_with(AckKind::Term).await?;
            continue;
        };
        match headers::decode(message_headers, message.payload.clone()) {
            Ok((id, delivery)) => {
                // The agent runs here; this one reports what it was given.
                println!(
                    "execution {id}: {} {} {} ({} bytes)",
                    delivery.source,
                    delivery.trigger_id,
                    delivery.action.as_deref().unwrap_or("-"),
                    delivery.input.len()
                );
                message.ack().await?;
            }
            Err(error) => {
                eprintln!("not an execution message: {error}");
                message.ack_with(AckKind::Term).await?;
            }
        }
    }
    Ok(())
}
