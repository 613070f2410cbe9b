//! Lambda entry point: telemetry, configuration and clients once per cold start, then the loop.

use aws_lambda_events::event::kafka::KafkaEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tracing::Instrument as _;

#[tokio::main]
async fn main() -> Result<(), Error> {
    adapters::telemetry::init();
    let config = budget_sync::Config::from_env()?;
    let deps = budget_sync::Deps::build(&config).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<KafkaEvent>| {
        let span = adapters::telemetry::invocation_span(&event.context);
        let deps = &deps;
        async move {
            budget_sync::handle(event.payload, deps)
                .await
                .map_err(Error::from)
        }
        .instrument(span)
    }))
    .await
}
