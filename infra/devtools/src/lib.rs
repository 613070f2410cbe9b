//! Local tooling shared by the `devtools` binary and the integration tests.

pub mod redrive;
pub mod token;
