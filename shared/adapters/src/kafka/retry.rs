//! Transient failures retried inside one invocation, within its deadline.
//!
//! Written here rather than with `backon` (which devtools uses for its plain exponential
//! retries): what matters is the deadline. A retry is made only if its wait leaves the reserve
//! the caller needs to dead-letter the batch, and a retry still running near the deadline is
//! cut short and counted as a transient failure; a retry crate would need all of that wrapped
//! around it.

use std::future::Future;
use std::time::{Duration, Instant};

use domain::WorkerError;

/// How transient failures are retried inside one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// The wait before each retry; its length is the number of retries.
    pub backoff: Vec<Duration>,
    /// Time kept back from the invocation's deadline for dead-lettering: a retry whose wait
    /// would eat into it is not made.
    pub reserve: Duration,
}

impl Retry {
    /// The seed's policy (SPEC §2): three retries, after 1 s, 2 s and 3 s.
    pub fn seed() -> Self {
        Self {
            backoff: [1, 2, 3].map(Duration::from_secs).to_vec(),
            reserve: Duration::from_secs(10),
        }
    }

    /// No retries: the first failure is the answer.
    pub fn none() -> Self {
        Self {
            backoff: Vec::new(),
            reserve: Duration::ZERO,
        }
    }

    /// Runs `op` until it succeeds, fails permanently, runs out of retries or would run past
    /// `deadline`; a failure comes back with the number of attempts made. A retry is made only
    /// if `reserve` is left after its wait, and must finish half the reserve before `deadline`
    /// (a retry cut short counts as a transient failure), so the caller keeps time to act.
    pub async fn run<R, F, Fut>(
        &self,
        deadline: Instant,
        what: &str,
        mut op: F,
    ) -> Result<R, (WorkerError, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R, WorkerError>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = if attempts == 1 {
                op().await
            } else {
                let cutoff = deadline.checked_sub(self.reserve / 2).unwrap_or(deadline);
                tokio::time::timeout_at(cutoff.into(), op())
                    .await
                    .unwrap_or_else(|_| {
                        Err(WorkerError::retryable(anyhow::anyhow!(
                            "{what}: attempt {attempts} cut short by the invocation's deadline"
                        )))
                    })
            };
            let err = match result {
                Ok(done) => return Ok(done),
                Err(err) => err,
            };
            let wait = self.backoff.get(attempts as usize - 1).copied();
            let fits = wait.is_some_and(|wait| Instant::now() + wait + self.reserve <= deadline);
            match wait {
                Some(wait) if err.is_retryable() && fits => {
                    tracing::warn!(what, attempts, error = %err, wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
                _ => return Err((err, attempts)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(retries: usize) -> Retry {
        Retry {
            backoff: vec![Duration::from_millis(5); retries],
            reserve: Duration::from_millis(5),
        }
    }

    async fn attempts_until(retry: &Retry, deadline: Instant, fail: &[bool]) -> (bool, u32) {
        let calls = std::cell::Cell::new(0_usize);
        let result = retry
            .run(deadline, "test", || {
                let n = calls.get();
                calls.set(n + 1);
                let transient = fail.get(n).copied();
                async move {
                    match transient {
                        Some(true) => Err(WorkerError::retryable(anyhow::anyhow!("down"))),
                        Some(false) => Err(WorkerError::malformed("bad")),
                        None => Ok(()),
                    }
                }
            })
            .await;
        match result {
            Ok(()) => (true, u32::try_from(calls.get()).unwrap_or(u32::MAX)),
            Err((_, attempts)) => (false, attempts),
        }
    }

    #[tokio::test]
    async fn retries_transient_failures_within_the_budget() {
        let far = Instant::now() + Duration::from_secs(60);
        // Two transient failures, then success: three attempts.
        assert_eq!(
            attempts_until(&quick(3), far, &[true, true]).await,
            (true, 3)
        );
        // Four transient failures exhaust three retries after four attempts.
        assert_eq!(
            attempts_until(&quick(3), far, &[true, true, true, true]).await,
            (false, 4)
        );
        // A permanent failure is not retried.
        assert_eq!(attempts_until(&quick(3), far, &[false]).await, (false, 1));
        // No time left for the wait: no retry.
        let near = Instant::now() + Duration::from_millis(8);
        assert_eq!(attempts_until(&quick(3), near, &[true]).await, (false, 1));
        assert_eq!(Retry::seed().backoff.len(), 3);
    }

    #[tokio::test]
    async fn a_retry_is_cut_short_before_the_deadline() {
        let retry = Retry {
            backoff: vec![Duration::from_millis(1)],
            reserve: Duration::from_millis(100),
        };
        let deadline = Instant::now() + Duration::from_millis(300);
        let calls = std::cell::Cell::new(0);
        let result: Result<(), _> = retry
            .run(deadline, "test", || {
                calls.set(calls.get() + 1);
                let first = calls.get() == 1;
                async move {
                    if first {
                        return Err(WorkerError::retryable(anyhow::anyhow!("down")));
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(())
                }
            })
            .await;
        let (err, attempts) = result.expect_err("the retry cannot finish in time");
        assert_eq!(attempts, 2);
        assert!(err.to_string().contains("cut short"), "{err}");
        assert!(Instant::now() < deadline);
    }
}
