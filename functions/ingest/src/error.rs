//! What `ingest` reports to the runtime when an invocation fails: a thiserror enum turned into a
//! `Diagnostic` whose `errorType` is the failure's stable kind (as the runtime's
//! `basic-error-thiserror` example does). Lambda retries a failed asynchronous invocation, then sends
//! it to the function's dead-letter queue.

use lambda_runtime::Diagnostic;
use shared::ports::PortError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// EC2 (finding which service an endpoint is on, or a service's pending connections) or
    /// EventBridge (emitting the requests) failed; the AWS error code is kept.
    #[error("ingest: {0}")]
    Aws(#[from] PortError),
}

impl IngestError {
    /// The `errorType` the runtime reports: `Retryable`, `Permanent` or `Uncertain`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Aws(e) => e.kind.as_str(),
        }
    }
}

impl From<IngestError> for Diagnostic {
    fn from(e: IngestError) -> Self {
        Diagnostic { error_type: e.error_type().into(), error_message: e.to_string() }
    }
}
