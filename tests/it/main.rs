//! Every integration test, one module per function (and the shared clients, the local MSK
//! event source and the property tests), in one binary against the real local stack. Tests run
//! in parallel; each has its own database, topics, queues and buckets (see `support`).

mod admin_api;
mod alerts;
mod budget_sync;
mod cdp_backfill;
mod coupon_issue;
mod local_triggers;
mod performance_metrics;
mod properties;
mod quality_score;
mod scheduled_jobs;
mod shared_clients;
mod toonpick;
mod webtoon_sync;
