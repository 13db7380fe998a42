//! Ingest and reconcile: every signal becomes a Connection Request; allowlist changes and expiry take
//! effect.

use std::time::Duration;

use anyhow::Result;
use aws_sdk_dynamodb::types::AttributeValue as V;
use gatekeeper_local::Options;
use shared::domain::DefaultAction;

use crate::World;

const A: &str = "222222222222";
const B: &str = "444444444444";
const SETTLE: Duration = Duration::from_secs(20);

fn now() -> i64 {
    shared::domain::time::now_ms() / 1000
}

async fn revoking() -> Result<World> {
    World::with(Options { default_action: DefaultAction::Reject, revoke: true, ..Options::default() }).await
}

/// A stack with revocation on, and an endpoint of A's accepted under an allow, its announcement read.
async fn revoking_with_an_accepted_endpoint() -> Result<(World, String)> {
    let w = revoking().await?;
    w.rule("SVC", A, "allow", &[]).await?;
    let id = w.endpoint(A).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&id).await?, "available");
    w.inbox().await?;
    Ok((w, id))
}

#[tokio::test]
async fn when_a_notification_has_an_unknown_shape_should_reexamine_the_service() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    w.rule("SVC", A, "allow", &[]).await?;
    // The allow's stream record is read now, while A has no connection: it requests nothing, so only
    // the notification can get the endpoint decided.
    w.settle(SETTLE).await?;
    let id = w.endpoint(A).await?;
    // Lose the real notification, then deliver one that names nothing usable, once EC2 shows the
    // connection (before that, re-examining the service cannot find it: the sweep would).
    w.wiring.drop_notifications().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while w.pending_count().await? == 0 {
        anyhow::ensure!(std::time::Instant::now() < deadline, "EC2 never showed the new connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.sns
        .publish()
        .topic_arn(&w.info.notifications_topic_arn)
        .message("{\"surprise\": [1, 2, {\"x\": null}]}")
        .send()
        .await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&id).await?, "available");
    let records = w.records(&id).await?;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].get("trigger"), Some(&V::S("notification".into())), "decided on the notification");
    let inbox = w.inbox().await?;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].body["trigger"], "notification");
    w.sns.publish().topic_arn(&w.info.notifications_topic_arn).message("this is not JSON").send().await?;
    w.settle(SETTLE).await?;
    assert!(w.inbox().await?.is_empty(), "re-examining an accepted connection announces nothing new");
    Ok(())
}

/// An endpoint of B's whose request decide never got (decide was down and the request is gone): pending.
async fn missed_request(w: &World) -> Result<String> {
    let id = w.endpoint(B).await?;
    w.wiring.pump_notifications().await?;
    w.sqs.purge_queue().queue_url(&w.info.requests_queue_url).send().await?;
    w.settle(Duration::from_secs(3)).await?;
    assert_eq!(w.state(&id).await?, "pendingAcceptance");
    Ok(id)
}

/// After a sweep: the missed request was decided (B is not allowed) and announced once, as the sweep's.
async fn decided_by_the_sweep(w: &World, id: &str) -> Result<()> {
    w.settle(SETTLE).await?;
    assert_eq!(w.state(id).await?, "rejected");
    let inbox = w.inbox().await?;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].body["trigger"], "sweep");
    Ok(())
}

#[tokio::test]
async fn when_decide_missed_a_request_should_decide_it_at_the_next_sweep() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    let id = missed_request(&w).await?;
    let swept = w.wiring.sweep().await?;
    assert_eq!(swept["requests"], 1);
    decided_by_the_sweep(&w, &id).await
}

/// A provider deleted one of the stack's services and has not yet taken it out of ManagedServiceIds: EC2
/// refuses any call naming it (`InvalidVpcEndpointServiceId.NotFound`), also the sweep's one read of every
/// service's configuration. The sweep still requests the other service's missed connection, which is decided,
/// and then fails naming the deleted service (so it is retried and reaches the DLQ and its alarm).
#[tokio::test]
async fn when_a_managed_service_is_deleted_the_sweep_should_still_decide_the_others_and_name_it() -> Result<()> {
    let w = World::with(Options { also_managed: 1, ..Options::default() }).await?;
    let deleted = w.info.also_managed[0].clone();
    let gone = w.ec2.delete_vpc_endpoint_service_configurations().service_ids(&deleted).send().await?;
    assert!(gone.unsuccessful().is_empty(), "{gone:?}");
    let id = missed_request(&w).await?;
    let failed = w.wiring.sweep().await.expect_err("a sweep with a deleted service fails").to_string();
    assert!(failed.contains(&deleted) && failed.contains("InvalidVpcEndpointServiceId.NotFound"), "{failed}");
    assert!(failed.contains("1 of 2 managed services"), "{failed}");
    decided_by_the_sweep(&w, &id).await
}

#[tokio::test]
async fn when_a_held_account_is_allowed_should_accept_its_waiting_endpoints() -> Result<()> {
    let w = World::new(DefaultAction::Hold).await?;
    let first = w.endpoint(B).await?;
    let second = w.endpoint(B).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.state(&first).await?, "pendingAcceptance");
    assert_eq!(w.inbox().await?.len(), 2);
    w.rule("*", &format!("arn:aws:iam::{B}:root"), "allow", &[]).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&first).await?, "available");
    assert_eq!(w.settled_state(&second).await?, "available");
    let inbox = w.inbox().await?;
    assert_eq!(inbox.len(), 2);
    assert!(inbox.iter().all(|m| m.body["decision"] == "accepted" && m.body["trigger"] == "allowlist_change"));
    Ok(())
}

#[tokio::test]
async fn when_an_allowed_account_is_removed_should_revoke_with_revocation_on() -> Result<()> {
    let (w, id) = revoking_with_an_accepted_endpoint().await?;
    w.remove_rule("SVC", A).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.state(&id).await?, "rejected");
    let inbox = w.inbox().await?;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].body["decision"], "revoked");
    assert_eq!(inbox[0].body["reason"], "not_listed");
    assert_eq!(inbox[0].attributes["decision"]["Value"], "revoked");
    assert_eq!(w.records(&id).await?.len(), 2, "the acceptance and the revocation are both on file");
    Ok(())
}

#[tokio::test]
async fn with_revocation_on_an_invalid_deny_that_names_no_one_should_block_new_accepts_and_revoke_no_one() -> Result<()>
{
    let (w, id) = revoking_with_an_accepted_endpoint().await?;
    // Written behind the CLI's back (it refuses a "*" principal): a deny about everyone and no one. Its
    // stream record names no account, so it asks only about pending connections; the sweep leaves the
    // accepted one out (decide would refuse to revoke it if asked: its handler test).
    w.rule("*", "*", "deny", &[]).await?;
    w.settle(SETTLE).await?;
    w.wiring.sweep().await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.state(&id).await?, "available", "never revoked en masse");
    assert!(w.inbox().await?.is_empty());
    assert_eq!(w.records(&id).await?.len(), 1, "no revocation on file");
    // A new connection from the same account is not accepted while the item stands.
    let next = w.endpoint(A).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.state(&next).await?, "rejected");
    let inbox = w.inbox().await?;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].body["reason"], "invalid_rule_unscoped");
    Ok(())
}

#[tokio::test]
async fn when_an_allowed_account_is_removed_should_leave_it_with_revocation_off() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    w.rule("SVC", A, "allow", &[]).await?;
    let id = w.endpoint(A).await?;
    w.settle(SETTLE).await?;
    w.inbox().await?;
    w.remove_rule("SVC", A).await?;
    w.settle(SETTLE).await?;
    w.wiring.sweep().await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&id).await?, "available");
    assert!(w.inbox().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn when_an_allow_expires_should_revoke_at_the_next_sweep_without_waiting_for_ttl() -> Result<()> {
    let w = revoking().await?;
    w.rule("SVC", A, "allow", &[("expires_at", V::N((now() + 2).to_string()))]).await?;
    let id = w.endpoint(A).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&id).await?, "available");
    w.inbox().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let swept = w.wiring.sweep().await?;
    assert_eq!(swept["requests"], 1);
    w.settle(SETTLE).await?;
    assert_eq!(w.state(&id).await?, "rejected");
    let inbox = w.inbox().await?;
    assert_eq!(inbox.len(), 1);
    assert_eq!(
        (inbox[0].body["decision"].as_str(), inbox[0].body["reason"].as_str()),
        (Some("revoked"), Some("allow_expired"))
    );
    Ok(())
}

#[tokio::test]
async fn when_an_allow_has_a_quota_should_accept_at_most_that_many() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    w.rule("SVC", A, "allow", &[("max_endpoints", V::N("2".into()))]).await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(w.endpoint(A).await?);
    }
    w.settle(SETTLE).await?;
    let mut states = Vec::new();
    for id in &ids {
        states.push(w.settled_state(id).await?);
    }
    assert_eq!(states.iter().filter(|s| *s == "available").count(), 2, "{states:?}");
    assert_eq!(states.iter().filter(|s| *s == "rejected").count(), 1, "{states:?}");
    let inbox = w.inbox().await?;
    assert!(inbox.iter().any(|m| m.body["reason"] == "quota"), "{inbox:#?}");
    Ok(())
}

#[tokio::test]
async fn when_two_invocations_decide_a_quota_while_ec2_lags_should_accept_exactly_the_quota() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    w.rule("SVC", A, "allow", &[("max_endpoints", V::N("3".into()))]).await?;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(w.endpoint(A).await?);
    }
    w.wiring.drop_notifications().await?;
    // From here on, Describe shows each accept only 3 s after it happened (EC2's eventual consistency).
    let url = w.info.endpoint_url.clone();
    gatekeeper_local::control(&url, "/_gatekeeper/consistency", Some(serde_json::json!({"lag_ms": 3000}))).await?;
    let event = |order: &[String], name: &str| {
        let mut e = w.sqs_event(&order[0], &format!("{name}-0"));
        for (i, id) in order.iter().enumerate().skip(1) {
            e.records.extend(w.sqs_event(id, &format!("{name}-{i}")).records);
        }
        e
    };
    let reversed: Vec<String> = ids.iter().rev().cloned().collect();
    let now = shared::domain::time::now_ms();
    let deps = w.wiring.deps();
    let (a, b) = tokio::join!(
        deps.decide_batch(event(&ids, "a"), "invocation-a", now),
        deps.decide_batch(event(&reversed, "b"), "invocation-b", now),
    );
    eprintln!("a: {:?}\nb: {:?}", a.metrics, b.metrics);
    gatekeeper_local::control(&url, "/_gatekeeper/consistency", Some(serde_json::json!({"lag_ms": 0}))).await?;
    // What either left (a claim held by the other) is decided by a third invocation.
    deps.decide_batch(event(&ids, "c"), "invocation-c", shared::domain::time::now_ms() + 20_000).await;
    let mut states = Vec::new();
    for id in &ids {
        states.push(w.settled_state(id).await?);
    }
    assert_eq!(states.iter().filter(|s| *s == "available").count(), 3, "{states:?}");
    assert_eq!(states.iter().filter(|s| *s == "rejected").count(), 7, "{states:?}");
    Ok(())
}

/// The allowlist stream's mapping as deployed (`MaximumRetryAttempts: 10`, `OnFailure`: reconcile's DLQ): a
/// change reconcile cannot apply is invoked once and retried ten times, then its record (metadata, as Lambda
/// sends it) is in the DLQ, and the shard moves on: a later change is read and applied.
#[tokio::test]
async fn when_an_allowlist_change_keeps_failing_it_is_retried_then_recorded_in_the_dlq_and_later_changes_apply()
-> Result<()> {
    let w = World::new(DefaultAction::Hold).await?;
    let id = w.endpoint(A).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.state(&id).await?, "pendingAcceptance", "held: A is not listed yet");
    // reconcile's Describe (its access key only) answers 500 every time, through the SDK's own retries.
    let reconcile_key = &w.wiring.access_keys[2];
    w.faults(serde_json::json!([{"match": "ec2:DescribeVpcEndpointConnections", "rate": 1.0, "kind": "error500", "key": reconcile_key}]))
        .await?;
    w.rule("SVC", A, "allow", &[]).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut invocations = 0;
    while w.wiring.stream_discards.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the change was never given up on ({invocations} invocations)"
        );
        invocations += w.wiring.pump_stream().await?.invocations;
    }
    assert_eq!(invocations, 11, "the first invocation and the mapping's ten retries");

    let dlq = &w.info.deployment.queues["ReconcileDeadLetterQueue"].url;
    let got = w.sqs.receive_message().queue_url(dlq).wait_time_seconds(5).send().await?;
    let [msg] = got.messages() else { anyhow::bail!("one record in the DLQ: {got:?}") };
    let record: serde_json::Value = serde_json::from_str(msg.body().unwrap_or_default())?;
    assert_eq!(record["requestContext"]["condition"], "RetryAttemptsExhausted", "{record:#}");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 11, "{record:#}");
    assert_eq!(record["requestContext"]["functionArn"], w.info.deployment.function("ReconcileFunction")?.arn.as_str());
    let info = &record["DDBStreamBatchInfo"];
    assert_eq!(info["batchSize"], 1, "{record:#}");
    assert_eq!(info["startSequenceNumber"], info["endSequenceNumber"], "{record:#}");
    assert!(info["shardId"].as_str().is_some_and(|s| !s.is_empty()), "{record:#}");
    assert_eq!(
        info["streamArn"],
        w.info.deployment.mapping("ReconcileFunction", "/stream/")?.event_source_arn.as_str()
    );
    assert_eq!(w.state(&id).await?, "pendingAcceptance", "the change was not applied");

    // Faults off: the next change is read, and only it (the one given up on is not read again), and applied.
    let given_up = info["endSequenceNumber"].as_str().unwrap_or_default().to_owned();
    let before = w.wiring.stream_invoked.lock().map(|v| v.len()).unwrap_or(0);
    w.faults(serde_json::json!([])).await?;
    w.rule("SVC", A, "allow", &[("note", V::S("again".into()))]).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&id).await?, "available");
    let after: Vec<String> = w.wiring.stream_invoked.lock().map(|v| v[before..].to_vec()).unwrap_or_default();
    let [next] = after.as_slice() else { anyhow::bail!("one record read after the faults: {after:?}") };
    // Sequence numbers grow: numeric strings, compared as numbers (by length, then digits).
    assert!((next.len(), next) > (given_up.len(), &given_up), "{next} after {given_up}");
    assert_eq!(w.wiring.stream_discards.load(std::sync::atomic::Ordering::Relaxed), 1);
    Ok(())
}
