//! In-memory stores for tests and small hosts: [`MemoryKeyStore`] and [`ChannelSink`].
//!
//! Nothing here survives a restart; the `sqlite` feature has the durable store.

mod sink;
mod store;

pub use self::sink::{ChannelSink, Execution};
pub use self::store::MemoryKeyStore;
