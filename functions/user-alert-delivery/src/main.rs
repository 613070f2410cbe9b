//! Lambda entry point: telemetry, configuration and clients once per cold start, then the loop.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::telemetry::init();
    let deps = user_alert_delivery::Deps::from_env().await?;
    adapters::telemetry::serve(|event| user_alert_delivery::handle(event, &deps)).await
}
