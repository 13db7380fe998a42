//! What `reconcile` reports to the runtime when an invocation fails: a thiserror enum turned into a
//! `Diagnostic` whose `errorType` is the failure's stable kind (as the runtime's
//! `basic-error-thiserror` example does). Only a sweep fails as a whole; a stream batch answers with
//! its partial failures instead.

use lambda_runtime::Diagnostic;
use shared::ports::PortError;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The sweep could not read EC2, the allowlist or the owed decisions for some managed service (it swept
    /// the others; the message names it), or could not emit its requests; the schedule runs it again. The
    /// AWS error code is kept.
    #[error("reconcile sweep: {0}")]
    Sweep(#[from] PortError),
}

impl ReconcileError {
    /// The `errorType` the runtime reports: `Retryable`, `Permanent` or `Uncertain`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Sweep(e) => e.kind.as_str(),
        }
    }
}

impl From<ReconcileError> for Diagnostic {
    fn from(e: ReconcileError) -> Self {
        Diagnostic { error_type: e.error_type().into(), error_message: e.to_string() }
    }
}
