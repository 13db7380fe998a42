//! decide's own binary, as Lambda runs it (the stand-in for the Runtime API says how).

#![allow(clippy::unwrap_used)]

#[path = "../../runtime_api_standin.rs"]
mod runtime_api;

use runtime_api::Said;

const ENV: [(&str, &str); 5] = [
    ("MANAGED_SERVICES", "vpce-svc-0fedcba9876543210"),
    ("ALLOWLIST_TABLE", "gatekeeper-allowlist"),
    ("DECISIONS_TABLE", "gatekeeper-decisions"),
    ("TOPIC_ARN", "arn:aws:sns:us-east-1:111111111111:gatekeeper-decisions"),
    ("DELIVERIES_QUEUE_ARN", "arn:aws:sqs:us-east-1:111111111111:gatekeeper-deliveries"),
];

#[tokio::test]
async fn the_binary_should_answer_an_invocation_through_the_runtime_api() {
    // A request for a service the stack does not manage: decide answers it without an AWS call (every call
    // would fail: `NO_AWS`).
    let event = include_str!("../../../events/sqs/connection-requests.json");
    match runtime_api::invoke_once(env!("CARGO_BIN_EXE_decide"), "gatekeeper-decide", &ENV, event).await {
        Said::Response(answer) => {
            assert_eq!(answer, serde_json::json!({"batchItemFailures": []}), "the answer to the invocation");
        }
        other => panic!("decide's binary should answer the invocation; it said {other:?}"),
    }
}

#[tokio::test]
async fn the_binary_should_report_a_batch_failed_on_aws_errors_as_its_error_and_take_the_next() {
    // The same request for a managed service: its reads fail (nothing at `NO_AWS`), and a batch whose every
    // message failed on AWS errors fails the invocation (`DecideError::BatchFailed`: it shows as an error and
    // SQS returns the batch); the process lives on for the next one.
    let event = include_str!("../../../events/sqs/connection-requests.json");
    let mut env = ENV;
    env[0] = ("MANAGED_SERVICES", "vpce-svc-0123456789abcdef0");
    let report = runtime_api::invocation_error(
        "decide",
        runtime_api::invoke_once(env!("CARGO_BIN_EXE_decide"), "gatekeeper-decide", &env, event).await,
    );
    assert_eq!(report["errorType"], "Retryable", "the error report: {report}");
    assert_eq!(
        report["errorMessage"], "all 1 messages failed on AWS errors; the batch will be retried",
        "the error report: {report}"
    );
}

#[tokio::test]
async fn the_binary_should_fail_at_init_naming_each_variable_it_lacks() {
    runtime_api::fails_at_init_without_each(env!("CARGO_BIN_EXE_decide"), "gatekeeper-decide", &ENV).await;
}
