//! ingest's own binary, as Lambda runs it (the stand-in for the Runtime API says how).

#![allow(clippy::unwrap_used)]

#[path = "../../runtime_api_standin.rs"]
mod runtime_api;

use runtime_api::Said;

const ENV: [(&str, &str); 2] = [("BUS_NAME", "gatekeeper"), ("MANAGED_SERVICES", "vpce-svc-0fedcba9876543210")];

#[tokio::test]
async fn the_binary_should_answer_an_invocation_through_the_runtime_api() {
    // A notification about a service the stack does not manage: ingest passes it over without an AWS call
    // (every call would fail: `NO_AWS`), and answers nothing (its handler returns `()`).
    let event = include_str!("../../../events/sns/connect-notification.json");
    match runtime_api::invoke_once(env!("CARGO_BIN_EXE_ingest"), "gatekeeper-ingest", &ENV, event).await {
        Said::Response(answer) => assert_eq!(answer, serde_json::Value::Null, "the answer to the invocation"),
        other => panic!("ingest's binary should answer the invocation; it said {other:?}"),
    }
}

#[tokio::test]
async fn the_binary_should_report_a_failed_invocation_as_its_error_and_take_the_next() {
    // The same notification about a managed service: the request it emits to the bus cannot be put (nothing
    // at `NO_AWS`), so the invocation fails (Lambda retries it, then its dead-letter queue has it), its
    // errorType the failure's kind and its message the call, and the process lives on.
    let event = include_str!("../../../events/sns/connect-notification.json");
    let env = [ENV[0], ("MANAGED_SERVICES", "vpce-svc-0123456789abcdef0")];
    let said = runtime_api::invoke_once(env!("CARGO_BIN_EXE_ingest"), "gatekeeper-ingest", &env, event).await;
    let report = runtime_api::invocation_error("ingest", said);
    assert!(
        report["errorMessage"].as_str().is_some_and(|m| m.contains("events PutEvents failed")),
        "the error report should name the failed call: {report}"
    );
}

#[tokio::test]
async fn the_binary_should_fail_at_init_naming_each_variable_it_lacks() {
    runtime_api::fails_at_init_without_each(env!("CARGO_BIN_EXE_ingest"), "gatekeeper-ingest", &ENV).await;
}
