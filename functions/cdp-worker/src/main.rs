//! Lambda entry point: telemetry, configuration and clients once per cold start, then the loop.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    adapters::telemetry::init();
    let deps = &cdp_worker::Deps::from_env().await?;
    // Failures are reported per message in the response, so an invocation itself never fails.
    adapters::telemetry::serve(|event| async move {
        Ok::<_, std::convert::Infallible>(cdp_worker::handle(event, deps).await)
    })
    .await
}
