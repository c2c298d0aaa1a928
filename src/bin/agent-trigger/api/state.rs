//! What the routes share.

use agent_trigger::TriggerService;

use crate::executor::Running;

/// The store, the executions this server's workers are running (a cancel reaches them), and
/// the trigger endpoint (a redelivery goes through it).
#[derive(Clone)]
pub struct Api<S> {
    pub store: S,
    pub running: Running,
    pub triggers: TriggerService<S, S>,
}
