//! Logging: the runtime's own subscriber (`lambda_runtime::tracing`), which writes JSON when
//! the function's log format is JSON (the template sets it) and text elsewhere, takes its level
//! from Lambda's log level or `RUST_LOG`, and runs every invocation in a span with its request
//! id. What this module adds is the cold start: a span inside the runtime's, with
//! `cold_start = true` on the first invocation of a process, and the invocation's deadline for
//! handlers that budget their time.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::Span;

static COLD_START: AtomicBool = AtomicBool::new(true);

/// Installs the runtime's subscriber. Call once, first thing in `main`.
pub fn init() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// The span an invocation runs in, inside the runtime's (which carries the request id). The
/// first call in a process reports `cold_start = true`.
pub fn invocation_span() -> Span {
    let cold_start = COLD_START.swap(false, Ordering::Relaxed);
    tracing::info_span!("invocation", cold_start)
}

/// The function's name for metric dimensions; `local` outside Lambda.
pub fn function_name() -> String {
    std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".to_owned())
}

tokio::task_local! {
    /// The deadline of the invocation being served.
    static DEADLINE: std::time::Instant;
}

/// The deadline of the invocation being served; `None` outside [`serve`] (tests, tools).
pub fn invocation_deadline() -> Option<std::time::Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Runs `work` as an invocation ending at `deadline` would run (benchmarks, tests).
pub async fn with_deadline<F: std::future::Future>(
    deadline: std::time::Instant,
    work: F,
) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// Runs the Lambda loop: every invocation's payload goes to `handler` inside its own span,
/// with its deadline known to [`invocation_deadline`]. Each function's `main` builds its
/// clients once and passes a closure borrowing them.
pub async fn serve<'a, E, R, Err, F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    E: serde::de::DeserializeOwned + Send,
    R: serde::Serialize + 'a,
    Err: Into<lambda_runtime::Error> + 'a,
    F: Fn(E) -> Fut,
    Fut: std::future::Future<Output = Result<R, Err>> + 'a,
{
    use tracing::Instrument as _;
    lambda_runtime::run(lambda_runtime::service_fn(
        |event: lambda_runtime::LambdaEvent<E>| {
            let span = invocation_span();
            let work = DEADLINE.scope(deadline(&event.context), handler(event.payload));
            // Boxed, so the handler's future type ends here: nested inside `main`'s future it
            // would push the release build's layout computation past rustc's depth limit.
            // One allocation per invocation.
            let invocation: std::pin::Pin<Box<dyn std::future::Future<Output = _> + 'a>> =
                Box::pin(work);
            async move { invocation.await.map_err(Into::into) }.instrument(span)
        },
    ))
    .await
}

/// The invocation's deadline as an `Instant` (now, if it has passed).
pub fn deadline(ctx: &lambda_runtime::Context) -> std::time::Instant {
    let left = ctx
        .deadline()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    std::time::Instant::now() + left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_deadline_is_the_served_invocations_and_none_outside() {
        assert_eq!(invocation_deadline(), None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let seen = with_deadline(deadline, async { invocation_deadline() }).await;
        assert_eq!(seen, Some(deadline));
    }
}
