//! reconcile's own binary, as Lambda runs it (the stand-in for the Runtime API says how).

#![allow(clippy::unwrap_used)]

#[path = "../../runtime_api_standin.rs"]
mod runtime_api;

use runtime_api::Said;

const ENV: [(&str, &str); 4] = [
    ("BUS_NAME", "gatekeeper"),
    ("ALLOWLIST_TABLE", "gatekeeper-allowlist"),
    ("DECISIONS_TABLE", "gatekeeper-decisions"),
    ("MANAGED_SERVICES", "vpce-svc-0fedcba9876543210"),
];

#[tokio::test]
async fn the_binary_should_answer_an_invocation_through_the_runtime_api() {
    // An allowlist change about a service the stack does not manage: nothing to re-examine, so no AWS call
    // (every call would fail: `NO_AWS`), and no record to retry.
    let event = include_str!("../../../events/dynamodb/allowlist-insert.json");
    match runtime_api::invoke_once(env!("CARGO_BIN_EXE_reconcile"), "gatekeeper-reconcile", &ENV, event).await {
        Said::Response(answer) => {
            assert_eq!(answer, serde_json::json!({"batchItemFailures": []}), "the answer to the invocation");
        }
        other => panic!("reconcile's binary should answer the invocation; it said {other:?}"),
    }
}

#[tokio::test]
async fn the_binary_should_report_a_sweep_that_cannot_read_ec2_as_its_error_and_take_the_next() {
    // The schedule's sweep reads each managed service from EC2 (its configuration, then its connections);
    // nothing answers at `NO_AWS`, so the sweep fails, its message naming the call (the errors alarm counts
    // it), and the process lives on for the next one.
    let event = include_str!("../../../events/schedule/sweep.json");
    let said = runtime_api::invoke_once(env!("CARGO_BIN_EXE_reconcile"), "gatekeeper-reconcile", &ENV, event).await;
    let report = runtime_api::invocation_error("reconcile", said);
    assert!(
        report["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("ec2 DescribeVpcEndpointServiceConfigurations failed")),
        "the error report should name the failed call: {report}"
    );
}

#[tokio::test]
async fn the_binary_should_fail_at_init_naming_each_variable_it_lacks() {
    runtime_api::fails_at_init_without_each(env!("CARGO_BIN_EXE_reconcile"), "gatekeeper-reconcile", &ENV).await;
}
