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

/// The span an invocation runs in, inside the runtime's (which carries the request id), with
/// the time it has (`time_left_ms`). The first call in a process reports `cold_start = true`.
fn invocation_span(deadline: std::time::Instant) -> Span {
    let cold_start = COLD_START.swap(false, Ordering::Relaxed);
    let time_left_ms = deadline
        .saturating_duration_since(std::time::Instant::now())
        .as_millis();
    tracing::info_span!("invocation", cold_start, time_left_ms)
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
            let deadline = deadline(&event.context);
            let span = invocation_span(deadline);
            let work = DEADLINE.scope(deadline, handler(event.payload));
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
///
/// Lambda sends the deadline as milliseconds since the epoch. `cargo lambda watch` sends
/// 600,000 — ten minutes meant as a duration, read as 00:10 on 1 January 1970 — so locally
/// every invocation would have no time left and no in-invocation retry would ever run. A
/// deadline that early is taken as the local emulator's: the function gets the timeout the
/// template gives it (`LOCAL_FUNCTION_TIMEOUTS`, written by the local stack's provisioning),
/// or the emulator's figure read as the duration it meant.
pub fn deadline(ctx: &lambda_runtime::Context) -> std::time::Instant {
    // Read once per process (the cold start), not per invocation.
    static LOCAL_TIMEOUT: std::sync::OnceLock<Option<std::time::Duration>> =
        std::sync::OnceLock::new();
    let local = *LOCAL_TIMEOUT.get_or_init(|| {
        std::env::var("LOCAL_FUNCTION_TIMEOUTS")
            .ok()
            .and_then(|timeouts| timeout_of(&timeouts, &function_name()))
    });
    std::time::Instant::now() + time_left(ctx.deadline, std::time::SystemTime::now(), local)
}

/// No real deadline is before this (2001-09-09, 10^12 ms after the epoch).
const EARLIEST_REAL_DEADLINE_MS: u64 = 1_000_000_000_000;

/// The time an invocation has, from its deadline in epoch milliseconds; see [`deadline`].
fn time_left(
    deadline_ms: u64,
    now: std::time::SystemTime,
    local_timeout: Option<std::time::Duration>,
) -> std::time::Duration {
    if deadline_ms < EARLIEST_REAL_DEADLINE_MS {
        return local_timeout.unwrap_or(std::time::Duration::from_millis(deadline_ms));
    }
    (std::time::UNIX_EPOCH + std::time::Duration::from_millis(deadline_ms))
        .duration_since(now)
        .unwrap_or_default()
}

/// `function`'s timeout in `timeouts` (`name=seconds,name=seconds`, `LOCAL_FUNCTION_TIMEOUTS`).
pub fn timeout_of(timeouts: &str, function: &str) -> Option<std::time::Duration> {
    timeouts.split(',').find_map(|entry| {
        let (name, seconds) = entry.split_once('=')?;
        (name.trim() == function)
            .then(|| seconds.trim().parse().ok())
            .flatten()
            .map(std::time::Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lambda's deadlines are epoch milliseconds; `cargo lambda watch` sends 600,000. Planted:
    /// both, and the template's 60 s for the local one.
    #[test]
    fn a_local_emulators_deadline_becomes_the_functions_timeout() {
        use std::time::{Duration, UNIX_EPOCH};
        let now = UNIX_EPOCH + Duration::from_millis(1_796_000_000_000); // December 2026
        assert_eq!(
            time_left(1_796_000_045_000, now, Some(Duration::from_secs(60))),
            Duration::from_secs(45),
            "Lambda's own deadline stands"
        );
        assert_eq!(time_left(1_795_999_999_000, now, None), Duration::ZERO);
        assert_eq!(
            time_left(600_000, now, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert_eq!(time_left(600_000, now, None), Duration::from_secs(600));
        let timeouts = "admin-api=20,coupon-issue=60,recommendations=900";
        assert_eq!(
            timeout_of(timeouts, "coupon-issue"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(timeout_of(timeouts, "coupon"), None);
        assert_eq!(timeout_of("coupon-issue=soon", "coupon-issue"), None);
    }

    #[tokio::test]
    async fn the_deadline_is_the_served_invocations_and_none_outside() {
        assert_eq!(invocation_deadline(), None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let seen = with_deadline(deadline, async { invocation_deadline() }).await;
        assert_eq!(seen, Some(deadline));
    }
}
