//! Lambda entry point: telemetry, configuration and clients once per cold start, then the loop.
//! Each invocation gets its deadline, which bounds the in-invocation retries.
// The handler's future (the shared Kafka processor, with retries, around the batch's
// transaction) nests deeper than the release build's layout computation of `main`'s future
// allows by default (130 levels against 128).
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::telemetry::init();
    let deps = coupon_issue::Deps::build(&coupon_issue::Config::from_env()?).await?;
    adapters::telemetry::serve_until(|event, deadline| coupon_issue::handle(event, &deps, deadline))
        .await
}
