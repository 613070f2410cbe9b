//! Lambda entry point: telemetry, configuration and clients once per cold start, then the loop.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::telemetry::init();
    let deps = weekly_analysis::Deps::from_env().await?;
    adapters::telemetry::serve(|event| weekly_analysis::handle(event, &deps)).await
}
