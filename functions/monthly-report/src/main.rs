//! Lambda entry point: telemetry, configuration and clients once per cold start, then the loop.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::telemetry::init();
    let deps = monthly_report::Deps::from_env().await?;
    adapters::telemetry::serve(|event| monthly_report::handle(event, &deps)).await
}
