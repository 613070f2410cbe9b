//! I/O adapters shared by every worker: configuration, telemetry, metrics, Postgres, Redis, AWS
//! clients, the SQS batch processor and the guarded image fetcher. Handlers build what they need
//! once per cold start and borrow it for every invocation.

pub mod activity;
pub mod aws;
pub mod backfill;
pub mod bootstrap;
pub mod config;
pub mod coupons;
pub mod db;
pub mod emf;
pub mod guarded_http;
pub mod http;
pub mod images;
pub mod jobs;
pub mod jwt;
pub mod kafka;
pub mod msk_iam;
pub mod outbox;
pub mod redis;
pub mod sqs_batch;
pub mod telemetry;
