//! What the routes share.

use crate::executor::Running;

/// The store, and the executions this server's workers are running (a cancel reaches them).
#[derive(Clone)]
pub struct Api<S> {
    pub store: S,
    pub running: Running,
}
