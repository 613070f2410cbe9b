//! The one error type every handler returns, split by what the platform should do with it.

use std::error::Error as StdError;
use std::fmt;

/// A failure while processing one record.
///
/// The split decides the record's fate: a rejection is bad input that no retry can fix, so it
/// is logged with its reason and left to the dead-letter path; a retryable error is an
/// infrastructure fault (database down, timeout) and the record is handed back for redelivery.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid input: {0}")]
    Rejected(Rejection),
    #[error("transient failure: {0:#}")]
    Retryable(anyhow::Error),
}

/// What kind of wrong a refused record is: what an operator reading a dead letter, and a
/// dashboard counting them, ask first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Not decodable, or not the shape expected: not JSON, not an object, a wrong type, bad
    /// base64.
    Malformed,
    /// Something required is absent or blank.
    Missing,
    /// A value outside what the platform accepts: a range, a length, a date, a clock skew.
    OutOfRange,
    /// Values that contradict each other or the record's context: more clicks than
    /// impressions, an episode twice, a queue this function does not read.
    Inconsistent,
    /// Our checks passed but the database refused it (a data or integrity error).
    RefusedByStore,
}

impl Flaw {
    /// The label logs and metrics carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Missing => "missing",
            Self::OutOfRange => "out_of_range",
            Self::Inconsistent => "inconsistent",
            Self::RefusedByStore => "refused_by_store",
        }
    }
}

/// Why a record is refused: its [`Flaw`], the reason as an operator reads it, and the error
/// behind it when there is one (a JSON or database error), kept as its source.
#[derive(Debug)]
pub struct Rejection {
    flaw: Flaw,
    reason: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl Rejection {
    pub fn new(flaw: Flaw, reason: impl fmt::Display) -> Self {
        Self {
            flaw,
            reason: reason.to_string(),
            source: None,
        }
    }

    /// With the error that caused it.
    pub fn caused_by(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn flaw(&self) -> Flaw {
        self.flaw
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl StdError for Rejection {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

impl WorkerError {
    pub fn rejected(flaw: Flaw, reason: impl fmt::Display) -> Self {
        Self::Rejected(Rejection::new(flaw, reason))
    }

    pub fn malformed(reason: impl fmt::Display) -> Self {
        Self::rejected(Flaw::Malformed, reason)
    }

    pub fn missing(reason: impl fmt::Display) -> Self {
        Self::rejected(Flaw::Missing, reason)
    }

    pub fn out_of_range(reason: impl fmt::Display) -> Self {
        Self::rejected(Flaw::OutOfRange, reason)
    }

    pub fn inconsistent(reason: impl fmt::Display) -> Self {
        Self::rejected(Flaw::Inconsistent, reason)
    }

    pub fn retryable(source: impl Into<anyhow::Error>) -> Self {
        Self::Retryable(source.into())
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }

    /// The rejection, when the record itself is at fault.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Self::Rejected(rejection) => Some(rejection),
            Self::Retryable(_) => None,
        }
    }

    /// A short machine-readable label for logs and metrics: `retryable`, or the rejection's
    /// [`Flaw`].
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rejected(rejection) => rejection.flaw.as_str(),
            Self::Retryable(_) => "retryable",
        }
    }
}

impl From<serde_json::Error> for WorkerError {
    fn from(err: serde_json::Error) -> Self {
        // A record we cannot decode will not decode on the next attempt either.
        let reason = format!("malformed JSON: {err}");
        Self::Rejected(Rejection::new(Flaw::Malformed, reason).caused_by(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_are_malformed_rejections_that_keep_their_source() {
        let err: WorkerError = serde_json::from_str::<u32>("{")
            .map_err(WorkerError::from)
            .expect_err("invalid JSON");
        assert!(!err.is_retryable());
        assert_eq!(err.kind(), "malformed");
        assert!(err.to_string().starts_with("invalid input: malformed JSON"));
        let rejection = err.rejection().expect("a rejection");
        let source = rejection.source().expect("the JSON error is kept");
        assert!(source.is::<serde_json::Error>());
    }

    #[test]
    fn a_rejection_reads_as_its_reason_and_is_labelled_by_its_flaw() {
        let err = WorkerError::out_of_range("score 11 is outside 0.0..=10.0");
        assert_eq!(
            err.to_string(),
            "invalid input: score 11 is outside 0.0..=10.0"
        );
        assert_eq!(err.kind(), "out_of_range");
        assert_eq!(err.rejection().map(Rejection::flaw), Some(Flaw::OutOfRange));
    }

    #[test]
    fn retryable_keeps_the_cause_chain() {
        let cause = anyhow::anyhow!("connection refused").context("connect to postgres");
        let err = WorkerError::retryable(cause);
        assert!(err.is_retryable());
        assert_eq!(err.kind(), "retryable");
        assert!(err.rejection().is_none());
        assert_eq!(
            err.to_string(),
            "transient failure: connect to postgres: connection refused"
        );
    }
}
