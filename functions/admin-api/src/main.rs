//! Lambda entry point: telemetry, configuration and clients once per cold start, then the router.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::telemetry::init();
    let deps = admin_api::Deps::from_env().await?;
    adapters::http::serve(admin_api::router(std::sync::Arc::new(deps))).await
}
