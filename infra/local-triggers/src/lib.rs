//! Lambda's event sources for a SAM template, and its API Gateway HTTP and WebSocket APIs, run locally: the template that deploys says which
//! function each queue, topic and schedule feeds, with which batch sizes, windows, retries and
//! destinations, and this crate delivers to the functions through the Lambda invoke API that
//! `cargo lambda watch` serves. See `docs/local-stack.md#local-triggers`.

pub mod cron;
pub mod http_api;
pub mod invoke;
pub mod msk;
pub mod report;
pub mod scheduler;
pub mod sqs;
pub mod template;
pub mod websocket;
