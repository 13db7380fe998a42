//! One module per AWS service. SDK types stop here.

pub mod dynamodb;
pub mod ec2;
pub mod eventbridge;
pub mod ledgers;
pub mod sns;

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;

use crate::ports::{ErrorKind, PortError};

/// The HTTPS client of every SDK client here: rustls with ring. The SDK crates are built without their
/// default client (`default-https-client`, which brings aws-lc), so a loader must be given this one.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// `aws_config::defaults` with [`https_client`]: where every SDK configuration starts (functions, CLI, tests).
pub fn sdk_defaults() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client())
}

/// How long one attempt of a function's AWS call may wait for its answer before the SDK gives it up as a
/// timeout, and how long the call may take with its retries. The SDK for Rust sets neither (only a 3.1 s
/// connect timeout; docs/aws-facts.md, "The SDK for Rust"), so without them one call whose answer
/// never comes would hold its invocation until Lambda's Timeout: the batch's other decisions and the
/// invocation's counters lost with it. A timeout is an uncertain error ([`classify`]): the call may have
/// taken effect, and the decision protocol treats it as a lost answer. AWS's answers take milliseconds;
/// the bounds are far above them, and below what `decide` keeps back at the end of an invocation
/// (`FINISH_RESERVE_MS`, 15 s).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
pub const CALL_TIMEOUT: Duration = Duration::from_secs(7);

/// `aws` with the functions' call timeouts ([`ATTEMPT_TIMEOUT`], [`CALL_TIMEOUT`]), its connect timeout
/// kept: what each function's wiring builds its clients from, in Lambda and in the tests alike.
pub fn with_call_timeouts(aws: &SdkConfig) -> SdkConfig {
    let timeouts = aws
        .timeout_config()
        .map_or_else(TimeoutConfig::builder, TimeoutConfig::to_builder)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(CALL_TIMEOUT)
        .build();
    aws.to_builder().timeout_config(timeouts).build()
}

/// Error codes that mean "slow down", across the services used.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceededException",
    "LimitExceededException",
    "SlowDown",
    "EC2ThrottledException",
    "TransactionInProgressException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "Unavailable",
];

/// Maps an SDK error to a port error: throttling and 5xx are retryable; timeouts, dropped connections and
/// unreadable answers are uncertain (the call may have taken effect); the rest is not retryable.
pub(crate) fn classify<E>(service: &'static str, operation: &'static str, err: SdkError<E, Response>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, code, message) = match &err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown").to_owned();
            let status = se.raw().status().as_u16();
            let retryable = status >= 500 || status == 429 || THROTTLING.contains(&code.as_str());
            let kind = if retryable { ErrorKind::Retryable } else { ErrorKind::Permanent };
            (kind, code, se.err().message().unwrap_or_default().to_owned())
        }
        SdkError::TimeoutError(_) => (ErrorKind::Uncertain, "Timeout".into(), format!("{err:?}")),
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_user() { ErrorKind::Permanent } else { ErrorKind::Uncertain };
            (kind, "DispatchFailure".into(), format!("{:?}", d.as_connector_error()))
        }
        SdkError::ResponseError(_) => (ErrorKind::Uncertain, "ResponseError".into(), format!("{err:?}")),
        SdkError::ConstructionFailure(_) => (ErrorKind::Permanent, "ConstructionFailure".into(), format!("{err:?}")),
        _ => (ErrorKind::Retryable, "Unknown".into(), format!("{err:?}")),
    };
    let message: String = message.chars().take(500).collect();
    PortError { service, operation, kind, code, message }
}

/// A port error for data AWS returned that cannot be used.
pub(crate) fn bad_data(service: &'static str, operation: &'static str, message: String) -> PortError {
    PortError { service, operation, kind: ErrorKind::Permanent, code: "UnusableResponse".into(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_functions_calls_give_up_without_an_answer_and_keep_the_sdks_connect_timeout() {
        let loaded = sdk_defaults().region(aws_config::Region::new("eu-west-1")).load().await;
        let timeouts = with_call_timeouts(&loaded).timeout_config().cloned().expect("a timeout config");
        assert_eq!(timeouts.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(timeouts.operation_timeout(), Some(CALL_TIMEOUT));
        assert_eq!(timeouts.connect_timeout(), loaded.timeout_config().and_then(TimeoutConfig::connect_timeout));
        assert_eq!(timeouts.connect_timeout(), Some(Duration::from_millis(3100)), "the SDK's default is kept");
    }
}
