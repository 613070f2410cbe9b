//! Pure domain types and rules shared by every worker. Nothing here does I/O, so every rule is
//! unit-tested without a running service.

pub mod admin;
pub mod alert;
pub mod analysis;
pub mod backfill;
pub mod budget;
pub mod calendar;
pub mod catalog;
pub mod coupon;
pub mod error;
pub mod metrics;
pub mod notice;
pub mod quality;
pub mod recommend;
pub mod report;
pub mod retention;
pub mod rollup;
pub mod schedule;
pub mod settlement;
pub mod text;
pub mod webtoon;

pub use error::WorkerError;
