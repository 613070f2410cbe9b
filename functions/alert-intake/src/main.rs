//! Lambda entry point: telemetry, configuration and clients once per cold start, then the router.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::telemetry::init();
    let deps = alert_intake::Deps::from_env().await?;
    adapters::http::serve(alert_intake::router(std::sync::Arc::new(deps))).await
}
