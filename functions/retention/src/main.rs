//! Lambda entry point: telemetry, configuration and clients once per cold start, then the loop.
// The handler's future nests deeply (one step per retention rule); the release build's layout
// computation of `main`'s future needs more than the default 128 levels.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::telemetry::init();
    let deps = retention::Deps::build(&retention::Config::from_env()?).await?;
    adapters::telemetry::serve(|event| retention::handle(event, &deps)).await
}
