//! Test helpers of agent-trigger that need none of its types, shared by its unit tests,
//! integration tests, examples, benches and fuzz targets. It does not depend on agent-trigger,
//! so that a test using it sees one copy of the crate's types: helpers built on those types live
//! in `tests/common/`.

pub mod client;
pub mod json_reference;
pub mod server_process;
