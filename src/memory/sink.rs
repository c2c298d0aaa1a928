//! An [`ExecutionSink`] that hands executions to the host through a bounded channel and
//! remembers each trigger's recent idempotency keys.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};
use uuid::Uuid;

use crate::{Delivery, ExecutionId, ExecutionSink, Outcome, SinkError};

/// The default number of idempotency keys remembered per trigger.
const DEFAULT_WINDOW: usize = 10_000;
/// The default `Retry-After` when the channel is full.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// One execution for the host to run.
#[derive(Debug)]
#[non_exhaustive]
pub struct Execution {
    /// The id the sender was given.
    pub id: ExecutionId,
    /// What to run it on.
    pub delivery: Delivery,
}

/// A sink that sends each accepted delivery down a bounded tokio channel, with a fresh UUID v7
/// execution id.
///
/// When the channel is full the sender gets `503` with `Retry-After`, and nothing is
/// remembered. The last `window` idempotency keys of each trigger
/// ([`Delivery::idempotency_keys`]: its delivery id, and for a signed request its signature)
/// are remembered, each trigger in a window of its own, so a redelivery gets the original
/// execution id and starts nothing, even when both copies arrive at once. Memory grows with the
/// number of triggers that receive deliveries times the window. A queued
/// execution holds its own copy of an input that was a slice of a larger buffer (such as the
/// server's read buffer), so a backed-up queue weighs what its bodies do.
///
/// A delivery's [`subject`](crate::Delivery::subject) (its trigger's
/// [`Concurrency`](crate::concurrency::Concurrency)) is handed on with it, not enforced: the
/// sink does not learn when the host's executions end, so it cannot tell a busy key from a free
/// one, and every delivery is answered `Started`. A host that wants one execution per key at a
/// time serialises on `execution.delivery.subject` itself, or uses a store-backed queue
/// ([`SqliteStore`](crate::sqlite::SqliteStore), [`PostgresStore`](crate::postgres::PostgresStore)),
/// which enforces queue, skip, replace and debounce.
///
/// ```
/// use agent_trigger::memory::ChannelSink;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (sink, mut executions) = ChannelSink::new(1024);
/// tokio::spawn(async move {
///     while let Some(execution) = executions.recv().await {
///         println!("run {} for {}", execution.id, execution.delivery.trigger_id);
///     }
/// });
/// # drop(sink);
/// # }
/// ```
pub struct ChannelSink {
    sender: mpsc::Sender<Execution>,
    seen: Mutex<DeliveryWindow>,
    retry_after: Duration,
}

impl ChannelSink {
    /// A sink whose channel holds `capacity` executions, and the receiving end.
    ///
    /// # Panics
    ///
    /// When `capacity` is zero, as [`tokio::sync::mpsc::channel`] does.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Execution>) {
        let (sender, receiver) = mpsc::channel(capacity);
        let sink = ChannelSink {
            sender,
            seen: Mutex::new(DeliveryWindow::new(DEFAULT_WINDOW)),
            retry_after: DEFAULT_RETRY_AFTER,
        };
        (sink, receiver)
    }

    /// Remembers the last `ids` idempotency keys of each trigger instead of 10 000.
    pub fn remember(mut self, ids: usize) -> Self {
        self.seen = Mutex::new(DeliveryWindow::new(ids));
        self
    }

    /// The `Retry-After` sent when the channel is full; default 1 s.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = delay;
        self
    }

    fn send(&self, execution: Execution) -> Result<(), SinkError> {
        self.sender
            .try_send(execution)
            .map_err(|error| match error {
                TrySendError::Full(_) => SinkError::Unavailable {
                    retry_after: self.retry_after,
                },
                TrySendError::Closed(_) => {
                    SinkError::internal("the execution receiver was dropped")
                }
            })
    }
}

impl ExecutionSink for ChannelSink {
    async fn submit(&self, mut delivery: Delivery) -> Result<Outcome, SinkError> {
        // An execution may wait long for the host, so it takes only its input's own bytes: a
        // body that arrived in one frame is usually a slice of the server's read buffer (8 KiB
        // or more in hyper), which a queued slice would keep alive. Copied before the lock
        // below, which every delivery with an id takes.
        if !delivery.input.is_unique() {
            delivery.input = Bytes::copy_from_slice(&delivery.input);
        }
        let keys: Vec<Box<str>> = delivery.idempotency_keys().map(Box::from).collect();
        if keys.is_empty() {
            let id = ExecutionId::new_v7();
            self.send(Execution {
                id: id.clone(),
                delivery,
            })?;
            return Ok(Outcome::Started(id));
        }
        let trigger = delivery.trigger_id;
        // Check, send and remember under one lock: two copies arriving together start once.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(original) = seen.find(trigger, &keys) {
            return Ok(Outcome::Replayed(original.clone()));
        }
        let id = ExecutionId::new_v7();
        self.send(Execution {
            id: id.clone(),
            delivery,
        })?;
        seen.remember(trigger, keys, &id);
        Ok(Outcome::Started(id))
    }
}

impl fmt::Debug for ChannelSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelSink")
            .field("capacity", &self.sender.max_capacity())
            .field(
                "queued",
                &(self.sender.max_capacity() - self.sender.capacity()),
            )
            .finish()
    }
}

/// The most recent idempotency keys of each trigger and their executions, oldest forgotten
/// first. Each trigger has a window of its own, so one trigger's traffic cannot evict another's.
struct DeliveryWindow {
    triggers: HashMap<Uuid, TriggerWindow>,
    capacity: usize,
}

#[derive(Default)]
struct TriggerWindow {
    ids: HashMap<Box<str>, ExecutionId>,
    order: VecDeque<Box<str>>,
}

impl DeliveryWindow {
    fn new(capacity: usize) -> Self {
        DeliveryWindow {
            triggers: HashMap::new(),
            capacity,
        }
    }

    /// The execution any of `keys` belongs to.
    fn find(&self, trigger: Uuid, keys: &[Box<str>]) -> Option<&ExecutionId> {
        let window = self.triggers.get(&trigger)?;
        keys.iter().find_map(|key| window.ids.get(key))
    }

    fn remember(&mut self, trigger: Uuid, keys: Vec<Box<str>>, id: &ExecutionId) {
        if self.capacity == 0 {
            return;
        }
        let window = self.triggers.entry(trigger).or_default();
        for key in keys {
            if window.order.len() == self.capacity
                && let Some(oldest) = window.order.pop_front()
            {
                window.ids.remove(&oldest);
            }
            window.order.push_back(key.clone());
            window.ids.insert(key, id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(keys: &[&str]) -> Vec<Box<str>> {
        keys.iter().map(|&key| Box::from(key)).collect()
    }

    #[test]
    fn window_forgets_the_oldest_of_each_trigger() {
        let mut window = DeliveryWindow::new(2);
        let (busy, quiet) = (Uuid::now_v7(), Uuid::now_v7());
        window.remember(quiet, keys(&["q"]), &ExecutionId::from("0"));
        window.remember(busy, keys(&["a"]), &ExecutionId::from("1"));
        window.remember(busy, keys(&["b"]), &ExecutionId::from("2"));
        window.remember(busy, keys(&["c"]), &ExecutionId::from("3"));
        assert!(window.find(busy, &keys(&["a"])).is_none());
        assert_eq!(
            window.find(busy, &keys(&["b"])),
            Some(&ExecutionId::from("2"))
        );
        assert_eq!(
            window.find(busy, &keys(&["x", "c"])),
            Some(&ExecutionId::from("3"))
        );
        // The busy trigger's traffic evicted nothing of the quiet one's.
        assert_eq!(
            window.find(quiet, &keys(&["q"])),
            Some(&ExecutionId::from("0"))
        );
        assert!(window.find(quiet, &keys(&["b"])).is_none());
        assert_eq!(window.triggers[&busy].ids.len(), 2);
    }

    #[tokio::test]
    async fn a_queued_execution_holds_its_own_bytes_not_the_buffer_it_was_sliced_from() {
        let delivery = |input| {
            let caller = crate::Caller::Signature {
                secret_id: "s".into(),
            };
            Delivery::new(
                crate::Source::Webhook,
                Uuid::nil(),
                "t".into(),
                caller,
                input,
            )
        };
        let (sink, mut executions) = ChannelSink::new(4);
        let read_buffer = Bytes::from(br#"{"type":"a"}{"type":"next request"}"#.to_vec());
        sink.submit(delivery(read_buffer.slice(..12)))
            .await
            .unwrap();
        let execution = executions.try_recv().unwrap();
        assert_eq!(&execution.delivery.input[..], br#"{"type":"a"}"#);
        assert!(
            read_buffer.is_unique(),
            "the queued execution holds the buffer"
        );

        // An input that is its own allocation already is handed on as it is.
        let own = Bytes::from(br#"{"type":"b"}"#.to_vec());
        let address = own.as_ptr();
        sink.submit(delivery(own)).await.unwrap();
        assert_eq!(
            executions.try_recv().unwrap().delivery.input.as_ptr(),
            address
        );
    }

    #[test]
    fn zero_window_remembers_nothing() {
        let mut window = DeliveryWindow::new(0);
        let trigger = Uuid::nil();
        window.remember(trigger, keys(&["a"]), &ExecutionId::from("1"));
        assert!(window.find(trigger, &keys(&["a"])).is_none());
    }
}
