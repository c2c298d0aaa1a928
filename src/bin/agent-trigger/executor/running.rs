//! The executions this server's workers are running, so that a cancel through the API reaches
//! the worker that runs it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use agent_trigger::ExecutionId;
use tokio::sync::Notify;

/// The executions this server's workers are running, each with the signal that cancels it.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<HashMap<ExecutionId, Arc<Notify>>>>);

impl Running {
    pub fn start(&self, id: &ExecutionId) -> Arc<Notify> {
        let cancel = Arc::new(Notify::new());
        self.lock().insert(id.clone(), Arc::clone(&cancel));
        cancel
    }

    pub fn end(&self, id: &ExecutionId) {
        self.lock().remove(id);
    }

    /// Asks the worker running `id` to end it; `false` when no worker here runs it.
    pub fn cancel(&self, id: &ExecutionId) -> bool {
        match self.lock().get(id) {
            Some(cancel) => {
                // Stored if the worker is not waiting yet: it sees it as soon as it does.
                cancel.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, Arc<Notify>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
