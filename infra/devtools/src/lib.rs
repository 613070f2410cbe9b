//! Local tooling shared by the `devtools` binary and the integration tests.

pub mod kafka_source;
pub mod redrive;
