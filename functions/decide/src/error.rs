//! What `decide` reports to the runtime when an invocation fails: a thiserror enum turned into a
//! `Diagnostic` whose `errorType` is stable (as the runtime's `basic-error-thiserror` example does).

use lambda_runtime::Diagnostic;

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// Every message of the batch failed on AWS errors: the invocation fails, so it shows as an error,
    /// and SQS returns the whole batch.
    #[error("all {total} messages failed on AWS errors; the batch will be retried")]
    BatchFailed { total: usize },
    /// The invocation neared its deadline with its batch unfinished (`handler::CUT_OFF_MS`): it stopped and
    /// wrote its counters, and fails so that SQS returns the whole batch.
    #[error("neared the deadline with {total} messages unfinished; the batch will be retried")]
    CutShort { total: usize },
}

impl DecideError {
    /// The `errorType` the runtime reports.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::BatchFailed { .. } | Self::CutShort { .. } => "Retryable",
        }
    }
}

impl From<DecideError> for Diagnostic {
    fn from(e: DecideError) -> Self {
        Diagnostic { error_type: e.error_type().into(), error_message: e.to_string() }
    }
}
