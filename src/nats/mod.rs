//! [`JetStreamSink`]: an [`ExecutionSink`] that publishes each accepted delivery to a NATS
//! JetStream stream (feature `nats`), for hosts whose work already flows through NATS and whose
//! own consumers run the agents.
//!
//! # Messages
//!
//! One message per execution, on `{prefix}.executions.{trigger id}.{key}`: the input as the
//! payload; the execution id, source, trigger, tenant, caller, delivery id and action in
//! `Agent-Trigger-*` headers (see [`headers`]); `Nats-Msg-Id` set to the execution id. The
//! sender gets its `200` only after JetStream's publish acknowledgement. Consumers pull from
//! `{prefix}.executions.>` with a durable consumer and explicit acks (the stream keeps
//! acknowledged messages: they are what redeliveries are recognised by).
//!
//! # Redeliveries
//!
//! The `{key}` token is the SHA-256 of the delivery's first idempotency key
//! ([`Delivery::idempotency_keys`]): a signed delivery id, a key holder's id, or, for a signed
//! request without one, its signature. Every publish carries
//! `Nats-Expected-Last-Subject-Sequence: 0`, so the stream takes only the first message on a
//! subject; a copy's publish is refused, and the sink reads the first message back and answers
//! with its execution id. This holds across any number of sink instances and copies arriving
//! at the same moment (the stream decides, one publish at a time), and for as long as the
//! stream keeps the message: its `max_age` ([`JetStreamOptions::max_age`], 7 days by default)
//! is the horizon, not the duplicate window. A delivery without an id gets a subject of its
//! own.
//!
//! A signed request that also has a delivery id has a second key, its signature: it is written
//! as an alias, `{prefix}.keys.{trigger id}.{key}`, whose payload is the execution id. Before
//! publishing, the sink looks the alias up (a replayed request with another delivery id answers
//! with the original); after publishing, it writes it. Two requests with the same signature and
//! different delivery ids that arrive within the same moment can both start (the store-backed
//! sinks close that race in one transaction).
//!
//! # Subjects
//!
//! A delivery with a [`Subject`](crate::concurrency::Subject) (its trigger has a
//! [`Concurrency`](crate::concurrency::Concurrency)) is published like any other, with its key,
//! mode and debounce in the `Agent-Trigger-Concurrency-Key`, `Agent-Trigger-On-Busy` and
//! `Agent-Trigger-Debounce` headers ([`headers::CONCURRENCY_KEY`]). The sink does **not**
//! enforce them: it never learns when a consumer's execution ends, so it cannot tell a busy key
//! from a free one. Every delivery is answered `Started`; consumers that want one execution per
//! key at a time read the key from the headers (and serialise on it, for instance with a
//! consumer per key or a lock of their own). The store-backed sinks enforce all of it.
//!
//! # Cost
//!
//! Each remembered id is a stored message (its input and headers) and one subject in the
//! stream's subject index, which the server keeps in memory: measured in `tests/jetstream.rs`
//! and `benches/README.md`.
//!
//! # Durability
//!
//! A publish acknowledgement from a single-replica file stream means the server has written the
//! message to its file store, not that it reached the disk: the server syncs every
//! `sync_interval` (two minutes by default), so a power loss can take the last ones. For
//! "acknowledged means durable", give the stream three replicas
//! ([`JetStreamOptions::replicas`]: an acknowledgement then means a quorum has it), or run the
//! server with `sync_interval: always`. The sink creates its stream if it is missing and
//! refuses one whose settings would break these promises: memory storage, a retention policy
//! that deletes acknowledged messages (work queue, interest), or size limits that discard old
//! messages before their `max_age`.
//!
//! ```no_run
//! use agent_trigger::memory::MemoryKeyStore;
//! use agent_trigger::nats::JetStreamSink;
//! use agent_trigger::TriggerService;
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let sink = JetStreamSink::builder(client).stream("AGENT_TRIGGER").connect().await?;
//! let service = TriggerService::new(sink, Arc::new(MemoryKeyStore::new()));
//! # drop(service);
//! # Ok(())
//! # }
//! ```

pub mod headers;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType, Stream};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Delivery, ExecutionId, ExecutionSink, Outcome, SinkError, StoreError};

/// The `Retry-After` of a delivery that could not be published.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How a [`JetStreamSink`] finds or creates its stream; see [`JetStreamSink::builder`].
///
/// ```
/// # async fn doc(client: async_nats::Client) {
/// use std::time::Duration;
/// use agent_trigger::nats::JetStreamSink;
///
/// let options = JetStreamSink::builder(client)
///     .stream("WEBHOOKS")
///     .subject_prefix("webhooks")
///     .max_age(Duration::from_secs(30 * 24 * 3600))
///     .replicas(3);
/// # drop(options);
/// # }
/// ```
pub struct JetStreamOptions {
    client: async_nats::Client,
    stream: String,
    prefix: String,
    max_age: Duration,
    replicas: usize,
}

impl JetStreamOptions {
    /// The stream's name (default `AGENT_TRIGGER`).
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// The first token of every subject (default `agent_trigger`).
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a created stream keeps messages, and with them the ids it recognises
    /// redeliveries by (default 7 days). An existing stream keeps its own.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How many replicas a created stream has (default 1).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Finds the stream, or creates it, and checks its settings.
    pub async fn connect(self) -> Result<JetStreamSink, StoreError> {
        JetStreamSink::open(self).await
    }
}

impl fmt::Debug for JetStreamOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamOptions")
            .field("stream", &self.stream)
            .field("prefix", &self.prefix)
            .field("max_age", &self.max_age)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

/// An [`ExecutionSink`] over a JetStream stream; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct JetStreamSink {
    inner: Arc<Inner>,
}

struct Inner {
    context: async_nats::jetstream::Context,
    stream: Stream,
    name: String,
    prefix: String,
}

impl JetStreamSink {
    /// Options for a sink publishing through `client`.
    pub fn builder(client: async_nats::Client) -> JetStreamOptions {
        JetStreamOptions {
            client,
            stream: "AGENT_TRIGGER".to_owned(),
            prefix: "agent_trigger".to_owned(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
        }
    }

    async fn open(options: JetStreamOptions) -> Result<Self, StoreError> {
        if !is_token(&options.prefix) {
            return Err(StoreError::new(format!(
                "subject prefix {:?}: use letters, digits, `-` and `_`",
                options.prefix
            )));
        }
        let context = async_nats::jetstream::new(options.client);
        let subjects = format!("{}.>", options.prefix);
        let stream = context
            .get_or_create_stream(Config {
                name: options.stream.clone(),
                subjects: vec![subjects.clone()],
                storage: StorageType::File,
                retention: RetentionPolicy::Limits,
                discard: DiscardPolicy::New,
                max_age: options.max_age,
                num_replicas: options.replicas,
                ..Config::default()
            })
            .await
            .map_err(|error| StoreError::new(format!("stream {}: {error}", options.stream)))?;
        check(&stream.cached_info().config, &subjects)
            .map_err(|problem| StoreError::new(format!("stream {}: {problem}", options.stream)))?;
        Ok(JetStreamSink {
            inner: Arc::new(Inner {
                context,
                stream,
                name: options.stream,
                prefix: options.prefix,
            }),
        })
    }

    /// The subject consumers filter on: every execution this sink publishes.
    pub fn executions_subject(&self) -> String {
        format!("{}.executions.>", self.inner.prefix)
    }

    fn subject(&self, kind: &str, trigger: Uuid, key: &str) -> String {
        let digest = hex::encode(Sha256::digest(key.as_bytes()));
        format!("{}.{kind}.{trigger}.{digest}", self.inner.prefix)
    }

    /// Publishes `payload` on `subject` only if the subject holds no message yet: `Ok(None)`
    /// when it went in, `Ok(Some(first))` with the message already there.
    async fn publish_first(
        &self,
        subject: String,
        mut headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, SinkError> {
        headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
        let acknowledged = self
            .inner
            .context
            .publish_with_headers(subject.clone(), headers, payload)
            .await
            .map_err(unavailable)?
            .await;
        match acknowledged {
            Ok(_) => Ok(None),
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                let first = self
                    .inner
                    .stream
                    .get_last_raw_message_by_subject(&subject)
                    .await
                    .map_err(unavailable)?;
                Ok(Some(first))
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    /// The execution an alias names, if the alias exists.
    async fn alias(&self, subject: &str) -> Result<Option<ExecutionId>, SinkError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self
            .inner
            .stream
            .get_last_raw_message_by_subject(subject)
            .await
        {
            Ok(message) => Ok(Some(execution_in_alias(&message.payload)?)),
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }
}

impl ExecutionSink for JetStreamSink {
    async fn submit(&self, delivery: Delivery) -> Result<Outcome, SinkError> {
        let trigger = delivery.trigger_id;
        let id = ExecutionId::new_v7();
        let mut keys = delivery.idempotency_keys();
        let primary = keys.next();
        let aliases: Vec<String> = keys
            .map(|key| self.subject("keys", trigger, &key))
            .collect();
        // A replay of a signed request under another delivery id: the alias names the original.
        for alias in &aliases {
            if let Some(original) = self.alias(alias).await? {
                return Ok(Outcome::Replayed(original));
            }
        }
        let subject = match &primary {
            Some(key) => self.subject("executions", trigger, key),
            None => self.subject("executions", trigger, &id.to_string()),
        };
        let headers = headers::of(&delivery, &id);
        if let Some(first) = self
            .publish_first(subject, headers, delivery.input.clone())
            .await?
        {
            return Ok(Outcome::Replayed(headers::execution_id(&first.headers)?));
        }
        for alias in aliases {
            // Best effort beyond the first: the execution is in, and the answer names it.
            if let Err(error) = self
                .publish_first(alias, HeaderMap::new(), Bytes::from(id.to_string()))
                .await
            {
                tracing::warn!(%error, execution_id = %id, "could not record a signature alias");
            }
        }
        Ok(Outcome::Started(id))
    }
}

impl fmt::Debug for JetStreamSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamSink")
            .field("stream", &self.inner.name)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// Why a stream's settings break the sink's promises, if they do.
fn check(config: &Config, subjects: &str) -> Result<(), String> {
    if !config.subjects.iter().any(|subject| subject == subjects) {
        return Err(format!(
            "it does not take {subjects} (its subjects: {:?})",
            config.subjects
        ));
    }
    if config.storage != StorageType::File {
        return Err("memory storage loses acknowledged executions on a restart".to_owned());
    }
    if config.retention != RetentionPolicy::Limits {
        return Err(
            "its retention deletes acknowledged messages, and with them the ids redeliveries are recognised by: use limits".to_owned(),
        );
    }
    if config.discard == DiscardPolicy::Old
        && (config.max_messages > 0 || config.max_bytes > 0 || config.max_messages_per_subject > 0)
    {
        return Err(
            "its limits discard old messages before their max_age: use discard = new".to_owned(),
        );
    }
    Ok(())
}

fn execution_in_alias(payload: &[u8]) -> Result<ExecutionId, SinkError> {
    std::str::from_utf8(payload)
        .map(ExecutionId::from)
        .map_err(|_| SinkError::internal("an alias whose payload is not an execution id"))
}

fn unavailable(error: impl fmt::Display) -> SinkError {
    tracing::error!(%error, "JetStream did not take the delivery");
    SinkError::Unavailable {
        retry_after: UNAVAILABLE_RETRY_AFTER,
    }
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_that_would_lose_ids_or_executions_are_refused() {
        let subjects = "agent_trigger.>";
        let good = Config {
            name: "S".to_owned(),
            subjects: vec![subjects.to_owned()],
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::New,
            max_bytes: 1 << 30,
            ..Config::default()
        };
        assert_eq!(check(&good, subjects), Ok(()));
        for (broken, reason) in [
            (
                Config {
                    storage: StorageType::Memory,
                    ..good.clone()
                },
                "memory",
            ),
            (
                Config {
                    retention: RetentionPolicy::WorkQueue,
                    ..good.clone()
                },
                "retention",
            ),
            (
                Config {
                    retention: RetentionPolicy::Interest,
                    ..good.clone()
                },
                "retention",
            ),
            (
                Config {
                    discard: DiscardPolicy::Old,
                    ..good.clone()
                },
                "discard",
            ),
            (
                Config {
                    subjects: vec!["other.>".to_owned()],
                    ..good.clone()
                },
                "does not take",
            ),
        ] {
            let problem = check(&broken, subjects).unwrap_err();
            assert!(problem.contains(reason), "{problem}");
        }
    }
}
