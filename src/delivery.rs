//! What the sink receives for one accepted webhook: the [`Delivery`], and the id of the
//! execution it starts.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::Source;
use crate::concurrency::Subject;

/// Who the service authenticated a delivery as.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Caller {
    /// A bearer API key.
    ApiKey {
        /// The key's id (never the key).
        key_id: Arc<str>,
        /// The key's tenant.
        tenant: Arc<str>,
    },
    /// The sender's signature, verified with this secret of the trigger's ring.
    Signature {
        /// The id of the secret that matched (never the secret).
        secret_id: Arc<str>,
    },
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "nats"))]
impl Caller {
    /// `(kind, id, tenant)`: how the durable stores and the JetStream messages keep a caller.
    pub(crate) fn columns(&self) -> (&'static str, &str, Option<&str>) {
        match self {
            Caller::ApiKey { key_id, tenant } => ("key", key_id, Some(tenant)),
            Caller::Signature { secret_id } => ("signature", secret_id, None),
        }
    }

    /// The caller a durable store kept as [`columns`](Self::columns).
    pub(crate) fn from_columns(kind: &str, id: String, tenant: Option<String>) -> Caller {
        match (kind, tenant) {
            ("key", Some(tenant)) => Caller::ApiKey {
                key_id: id.into(),
                tenant: tenant.into(),
            },
            _ => Caller::Signature {
                secret_id: id.into(),
            },
        }
    }
}

/// One accepted delivery, handed to the [`ExecutionSink`](crate::ExecutionSink).
///
/// `input` is known to be exactly one valid JSON text: the body as received, `null` for an
/// empty body, the JSON object made from a Slack form, or what the trigger's
/// [`InputExpression`](crate::rules::InputExpression) made of it. `prompt` is what the
/// trigger's [`PromptTemplate`](crate::rules::PromptTemplate) rendered, if it has one.
///
/// ```
/// use agent_trigger::{Caller, Delivery, Source};
/// use bytes::Bytes;
/// use uuid::Uuid;
///
/// let delivery = Delivery::new(
///     Source::Webhook,
///     Uuid::now_v7(),
///     "acme".into(),
///     Caller::Signature { secret_id: "2026-11".into() },
///     Bytes::from_static(br#"{"type":"invoice.paid"}"#),
/// );
/// assert_eq!(delivery.delivery_id, None);
/// let input: serde_json::Value = serde_json::from_slice(&delivery.input).unwrap();
/// assert_eq!(input["type"], "invoice.paid");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery {
    /// The sender.
    pub source: Source,
    /// The trigger invoked.
    pub trigger_id: Uuid,
    /// The tenant that owns the trigger.
    pub tenant: Arc<str>,
    /// Who the service authenticated the request as.
    pub caller: Caller,
    /// The sender's id for this delivery, used to recognise redeliveries.
    pub delivery_id: Option<Box<str>>,
    /// The event the delivery is about (`jira:issue_created`, `app_mention`, `Issue.create` …).
    pub action: Option<String>,
    /// When the service received the request.
    pub received_at: SystemTime,
    /// The tag of the signature that verified the request, if one did: see
    /// [`Delivery::idempotency_keys`].
    pub(crate) signature_tag: Option<[u8; 32]>,
    /// The request's extensions, moved from it: what the host's own layers put there (a
    /// request id, `ConnectInfo`, an authenticated user) reaches the executor. A durable sink
    /// keeps what it needs of them itself: they are not part of a stored execution.
    pub extensions: http::Extensions,
    /// The agent's input: one valid JSON text (the body, or the trigger's input expression's
    /// value).
    ///
    /// A body that arrived in one frame is handed on without a copy, so this may be a slice of
    /// the server's read buffer. A sink that keeps deliveries waiting in memory should copy it
    /// first (`Bytes::copy_from_slice`, when `input.is_unique()` is false), as
    /// [`ChannelSink`](crate::memory::ChannelSink) does, or each one keeps that whole buffer
    /// alive.
    pub input: Bytes,
    /// The agent's prompt, when the trigger has a
    /// [`PromptTemplate`](crate::rules::PromptTemplate): without control characters other than
    /// newline and tab, and at most [`MAX_PROMPT_LEN`](crate::rules::MAX_PROMPT_LEN) bytes.
    pub prompt: Option<String>,
    /// What the delivery is about, when the trigger has a
    /// [`Concurrency`](crate::concurrency::Concurrency): its key's value and the trigger's
    /// settings for it. A sink that keeps executions decides with it whether this delivery
    /// queues, is skipped, replaces or joins another.
    pub subject: Option<Subject>,
}

impl Delivery {
    /// A delivery received now, with no delivery id and no action.
    pub fn new(
        source: Source,
        trigger_id: Uuid,
        tenant: Arc<str>,
        caller: Caller,
        input: Bytes,
    ) -> Self {
        Delivery {
            source,
            trigger_id,
            tenant,
            caller,
            delivery_id: None,
            action: None,
            received_at: SystemTime::now(),
            signature_tag: None,
            extensions: http::Extensions::new(),
            input,
            prompt: None,
            subject: None,
        }
    }

    /// The keys under which a sink remembers this delivery to recognise redeliveries. Each is
    /// unique per trigger: a delivery with a key the sink already holds for the same trigger is
    /// a redelivery of that key's execution, and starts nothing.
    ///
    /// - The delivery id, in the namespace of how the request was authenticated: `signed:` for
    ///   a signature, `key:` for a bearer API key. A key holder cannot claim, in advance, an id
    ///   that the real sender will use.
    /// - For a signed request, the signature that verified it, as `signature:` and hex: a
    ///   byte-identical copy of a signed request is a replay whatever delivery-id header it
    ///   carries (the senders that sign no timestamp could be replayed forever otherwise).
    ///
    /// A delivery with no keys cannot be recognised again, and every copy starts anew.
    ///
    /// ```
    /// use agent_trigger::{Caller, Delivery, Source};
    /// use bytes::Bytes;
    /// use uuid::Uuid;
    ///
    /// let caller = Caller::ApiKey { key_id: "ci".into(), tenant: "acme".into() };
    /// let mut delivery =
    ///     Delivery::new(Source::Slack, Uuid::now_v7(), "acme".into(), caller, Bytes::from_static(b"{}"));
    /// assert_eq!(delivery.idempotency_keys().count(), 0);
    /// delivery.delivery_id = Some("Ev123".into());
    /// assert_eq!(delivery.idempotency_keys().collect::<Vec<_>>(), ["key:Ev123"]);
    /// ```
    pub fn idempotency_keys(&self) -> impl Iterator<Item = String> + '_ {
        let namespace = match self.caller {
            Caller::Signature { .. } => "signed:",
            Caller::ApiKey { .. } => "key:",
        };
        let id = self
            .delivery_id
            .as_deref()
            .map(|id| format!("{namespace}{id}"));
        let signature = self
            .signature_tag
            .map(|tag| format!("signature:{}", hex::encode(tag)));
        id.into_iter().chain(signature)
    }
}

/// The id of an execution, as returned in `{"executionId": …}`.
///
/// Sinks mint their own; UUIDs (v7 in this crate's sinks) are stored without formatting. Two
/// ids are equal, and hash alike, exactly when their texts are equal: text that is a UUID in
/// its canonical form (lowercase, hyphenated) is held as that UUID.
///
/// ```
/// use agent_trigger::ExecutionId;
/// use uuid::Uuid;
///
/// let id = ExecutionId::from(Uuid::nil());
/// assert_eq!(id.to_string(), "00000000-0000-0000-0000-000000000000");
/// assert_eq!(id.as_uuid(), Some(Uuid::nil()));
/// assert_eq!(ExecutionId::from("run-42").to_string(), "run-42");
/// assert_eq!(ExecutionId::from("00000000-0000-0000-0000-000000000000"), id);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ExecutionId(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Uuid(Uuid),
    Text(Arc<str>),
}

impl ExecutionId {
    /// A fresh time-ordered id (UUID v7).
    pub fn new_v7() -> Self {
        ExecutionId(Repr::Uuid(Uuid::now_v7()))
    }

    /// The id as a UUID, when it is one.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match &self.0 {
            Repr::Uuid(id) => Some(*id),
            Repr::Text(text) => Uuid::try_parse(text).ok(),
        }
    }
}

impl ExecutionId {
    /// `{"executionId":"<id>"}`, written straight into a buffer of its exact size.
    pub(crate) fn json_body(&self) -> Bytes {
        const OPEN: &[u8] = br#"{"executionId":""#;
        const CLOSE: &[u8] = br#""}"#;
        match &self.0 {
            Repr::Uuid(id) => {
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                let text = id.hyphenated().encode_lower(&mut text);
                let mut body = Vec::with_capacity(OPEN.len() + text.len() + CLOSE.len());
                body.extend_from_slice(OPEN);
                body.extend_from_slice(text.as_bytes());
                body.extend_from_slice(CLOSE);
                Bytes::from(body)
            }
            Repr::Text(_) => {
                #[derive(Serialize)]
                #[serde(rename_all = "camelCase")]
                struct Body<'a> {
                    execution_id: &'a ExecutionId,
                }
                let body =
                    serde_json::to_vec(&Body { execution_id: self }).expect("an id serialises");
                Bytes::from(body.into_boxed_slice())
            }
        }
    }
}

impl From<Uuid> for ExecutionId {
    fn from(id: Uuid) -> Self {
        ExecutionId(Repr::Uuid(id))
    }
}

impl From<String> for ExecutionId {
    fn from(id: String) -> Self {
        ExecutionId::from(id.as_str())
    }
}

impl From<&str> for ExecutionId {
    fn from(id: &str) -> Self {
        match Uuid::try_parse(id) {
            Ok(uuid) if uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == id => {
                ExecutionId(Repr::Uuid(uuid))
            }
            _ => ExecutionId(Repr::Text(id.into())),
        }
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Uuid(id) => fmt::Display::fmt(&id.hyphenated(), f),
            Repr::Text(text) => f.write_str(text),
        }
    }
}

impl fmt::Debug for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExecutionId({self})")
    }
}

impl Serialize for ExecutionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_and_hashing_follow_the_text() {
        use std::hash::BuildHasher;
        let uuid = Uuid::now_v7();
        let (minted, read) = (ExecutionId::from(uuid), ExecutionId::from(uuid.to_string()));
        assert_eq!(minted, read);
        let state = std::hash::RandomState::new();
        assert_eq!(state.hash_one(&minted), state.hash_one(&read));
        // Other spellings of the same UUID are other texts, so other ids.
        let upper = ExecutionId::from(uuid.to_string().to_uppercase());
        assert_ne!(minted, upper);
        assert_eq!(upper.to_string(), uuid.to_string().to_uppercase());
        assert_ne!(ExecutionId::from(uuid.simple().to_string()), minted);
    }

    #[test]
    fn json_body_for_uuids_and_text() {
        let id = ExecutionId::from(Uuid::nil());
        assert_eq!(
            &id.json_body()[..],
            br#"{"executionId":"00000000-0000-0000-0000-000000000000"}"#
        );
        let text = ExecutionId::from("run \"42\"");
        let parsed: serde_json::Value = serde_json::from_slice(&text.json_body()).unwrap();
        assert_eq!(parsed["executionId"], "run \"42\"");
    }
}
