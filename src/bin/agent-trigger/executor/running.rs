//! The executions this server's workers are running, so that a cancel through the API reaches
//! the worker that runs it and learns when that worker has recorded the end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use agent_trigger::ExecutionId;
use tokio::sync::{Notify, watch};

/// The registry: each running execution's cancel signal, and a receiver that closes once its
/// worker has recorded how it ended.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<HashMap<ExecutionId, Entry>>>);

struct Entry {
    cancel: Arc<Notify>,
    recorded: watch::Receiver<()>,
}

/// A worker's hold on a running execution: it leaves the registry, and waiting cancels learn
/// that the end is recorded, when this is dropped.
pub struct Registration {
    running: Running,
    id: ExecutionId,
    /// Notified when the execution is to be cancelled.
    pub cancel: Arc<Notify>,
    _recorded: watch::Sender<()>,
}

impl Running {
    /// Registers `id` as running here until the returned registration is dropped.
    pub fn start(&self, id: &ExecutionId) -> Registration {
        let cancel = Arc::new(Notify::new());
        let (recorded_sender, recorded) = watch::channel(());
        self.lock().insert(
            id.clone(),
            Entry {
                cancel: Arc::clone(&cancel),
                recorded,
            },
        );
        Registration {
            running: self.clone(),
            id: id.clone(),
            cancel,
            _recorded: recorded_sender,
        }
    }

    /// Asks the worker running `id` to end it, and gives what closes once the worker has
    /// recorded the end (`changed()` then fails); `None` when no worker here runs it.
    pub fn cancel(&self, id: &ExecutionId) -> Option<watch::Receiver<()>> {
        let running = self.lock();
        let entry = running.get(id)?;
        // Stored if the worker is not waiting yet: it sees it as soon as it does.
        entry.cancel.notify_one();
        Some(entry.recorded.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, Entry>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.running.lock().remove(&self.id);
    }
}
