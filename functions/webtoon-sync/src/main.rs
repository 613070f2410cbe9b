//! Lambda entry point: telemetry, configuration and clients once per cold start, then the loop.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tracing::Instrument as _;

#[tokio::main]
async fn main() -> Result<(), Error> {
    adapters::telemetry::init();
    let config = webtoon_sync::Config::from_env()?;
    let deps = webtoon_sync::Deps::build(&config).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let span = adapters::telemetry::invocation_span(&event.context);
        let deps = &deps;
        async move { Ok::<_, Error>(webtoon_sync::handle(event.payload, deps).await) }
            .instrument(span)
    }))
    .await
}
