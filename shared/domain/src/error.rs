//! The one error type every handler returns, split by what the platform should do with it.

use std::fmt;

/// A failure while processing one record.
///
/// The split decides the record's fate: a permanent error is bad input that no retry can fix, so
/// it is logged with its reason and left to the dead-letter path; a retryable error is an
/// infrastructure fault (database down, timeout) and the record is handed back for redelivery.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid input: {0}")]
    Permanent(String),
    #[error("transient failure: {0:#}")]
    Retryable(anyhow::Error),
}

impl WorkerError {
    pub fn permanent(reason: impl fmt::Display) -> Self {
        Self::Permanent(reason.to_string())
    }

    pub fn retryable(source: impl Into<anyhow::Error>) -> Self {
        Self::Retryable(source.into())
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }

    /// A short machine-readable label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Permanent(_) => "permanent",
            Self::Retryable(_) => "retryable",
        }
    }
}

impl From<serde_json::Error> for WorkerError {
    fn from(err: serde_json::Error) -> Self {
        // A record we cannot decode will not decode on the next attempt either.
        Self::permanent(format_args!("malformed JSON: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_are_permanent() {
        let err: WorkerError = serde_json::from_str::<u32>("{")
            .map_err(WorkerError::from)
            .expect_err("invalid JSON");
        assert!(!err.is_retryable());
        assert!(err.to_string().starts_with("invalid input: malformed JSON"));
    }

    #[test]
    fn retryable_keeps_the_cause_chain() {
        let cause = anyhow::anyhow!("connection refused").context("connect to postgres");
        let err = WorkerError::retryable(cause);
        assert!(err.is_retryable());
        assert_eq!(err.kind(), "retryable");
        assert_eq!(
            err.to_string(),
            "transient failure: connect to postgres: connection refused"
        );
    }
}
