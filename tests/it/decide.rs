//! The foundation's promises, each a test.

use std::time::Duration;

use anyhow::Result;
use aws_sdk_dynamodb::types::AttributeValue as V;
use serde_json::json;
use shared::domain::DefaultAction;

use crate::{World, s};

const ALLOWED: &str = "222222222222";
const DENIED: &str = "333333333333";
const UNKNOWN: &str = "444444444444";
const EXPIRED: &str = "555555555555";
const SETTLE: Duration = Duration::from_secs(20);

fn now() -> i64 {
    shared::domain::time::now_ms() / 1000
}

#[tokio::test]
async fn when_a_consumer_connects_should_accept_allowed_and_reject_denied_unknown_and_expired() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    w.rule("SVC", ALLOWED, "allow", &[("note", s("ACME"))]).await?;
    w.rule("*", &format!("arn:aws:iam::{DENIED}:root"), "deny", &[]).await?;
    w.rule("*", DENIED, "allow", &[]).await?;
    w.rule("SVC", EXPIRED, "allow", &[("expires_at", V::N((now() - 60).to_string()))]).await?;
    let allowed = w.endpoint(ALLOWED).await?;
    let denied = w.endpoint(DENIED).await?;
    let unknown = w.endpoint(UNKNOWN).await?;
    let expired = w.endpoint(EXPIRED).await?;
    w.settle(SETTLE).await?;

    assert_eq!(w.settled_state(&allowed).await?, "available");
    for id in [&denied, &unknown, &expired] {
        assert_eq!(w.state(id).await?, "rejected", "{id}");
    }
    let inbox = w.inbox().await?;
    assert_eq!(inbox.len(), 4, "{inbox:#?}");
    let by_endpoint = |id: &str| inbox.iter().find(|m| m.body["endpoint_id"] == id).expect("message for endpoint");
    let m = by_endpoint(&allowed);
    assert_eq!(m.body["decision"], "accepted");
    assert_eq!(m.body["owner"], ALLOWED);
    assert_eq!(m.body["matched_rule"], format!("{}/{ALLOWED}", w.info.service_id));
    assert_eq!(m.attributes["decision"]["Value"], "accepted");
    assert_eq!(m.attributes["owner"]["Value"], ALLOWED);
    assert_eq!(m.attributes["service_id"]["Value"], w.info.service_id.as_str());
    assert!(m.subject.contains("accepted") && m.subject.contains(&allowed), "{}", m.subject);
    assert_eq!(by_endpoint(&denied).body["reason"], "denied");
    assert_eq!(by_endpoint(&unknown).body["reason"], "not_listed");
    assert_eq!(by_endpoint(&expired).body["reason"], "allow_expired");

    let records = w.records(&allowed).await?;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["decision"], s("accepted"));
    assert_eq!(records[0]["status"], s("notified"));
    assert_eq!(records[0]["owner"], s(ALLOWED));
    Ok(())
}

#[tokio::test]
async fn when_the_default_is_hold_should_leave_unknown_pending_then_accept_once_allowed() -> Result<()> {
    let w = World::new(DefaultAction::Hold).await?;
    let id = w.endpoint(UNKNOWN).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.state(&id).await?, "pendingAcceptance");
    let inbox = w.inbox().await?;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].body["decision"], "held");
    // The same request again: still held, not announced twice.
    w.put_request(w.request(&id)).await?;
    w.settle(SETTLE).await?;
    assert!(w.inbox().await?.is_empty());
    // A person allows the account and asks again.
    w.rule("SVC", UNKNOWN, "allow", &[]).await?;
    w.put_request(w.request(&id)).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&id).await?, "available");
    let inbox = w.inbox().await?;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].body["decision"], "accepted");
    assert_eq!(w.ec2_actions(&id, "Accept"), 1);
    Ok(())
}

#[tokio::test]
async fn when_the_same_request_arrives_five_times_should_act_record_and_notify_once() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    w.rule("SVC", ALLOWED, "allow", &[]).await?;
    let id = w.endpoint(ALLOWED).await?;
    for _ in 0..4 {
        w.put_request(w.request(&id)).await?;
    }
    w.settle(SETTLE).await?;
    // One more after the decision, when EC2 may still say `pending`.
    w.put_request(w.request(&id)).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&id).await?, "available");
    assert_eq!(w.ec2_actions(&id, "Accept"), 1);
    assert_eq!(w.records(&id).await?.len(), 1);
    assert_eq!(w.inbox().await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn when_an_event_lies_or_names_an_unmanaged_service_should_change_nothing() -> Result<()> {
    let w = World::new(DefaultAction::Hold).await?;
    w.rule("SVC", ALLOWED, "allow", &[]).await?;
    // A pending endpoint of an unlisted account, whose notification never arrives: only forgeries name it.
    let unlisted = w.endpoint(UNKNOWN).await?;
    w.wiring.drop_notifications().await?;
    // Forged, well-formed: it names the endpoint and claims what a forger can (a manual trigger); the
    // owner comes from EC2 only, so it is held as unlisted, never accepted.
    w.put_request(w.request(&unlisted)).await?;
    // One that does not exist, and a service Gatekeeper does not manage.
    w.put_request(w.request("vpce-0123456789abcdef0")).await?;
    w.put_request(
        json!({"service_id": "vpce-svc-0123456789abcdef0", "endpoint_id": unlisted, "trigger": "manual", "requested_at": 1}),
    )
    .await?;
    // The missing endpoint is asked about for its bounded receives before it is left to the sweep.
    w.settle(Duration::from_secs(40)).await?;
    assert_eq!(w.state(&unlisted).await?, "pendingAcceptance", "held, never accepted");
    assert_eq!(w.ec2_actions(&unlisted, "Accept"), 0);
    let records = w.records(&unlisted).await?;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["reason"], s("not_listed"), "the owner EC2 reports is the one evaluated");
    let inbox = w.inbox().await?;
    assert_eq!(inbox.len(), 1, "one hold announced: {inbox:#?}");
    assert_eq!(inbox[0].body["owner"], UNKNOWN);
    Ok(())
}

#[tokio::test]
async fn when_an_event_is_malformed_should_take_no_action_and_keep_it_in_the_dlq() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    w.rule("SVC", ALLOWED, "allow", &[]).await?;
    let id = w.endpoint(ALLOWED).await?;
    w.sqs.send_message().queue_url(&w.info.requests_queue_url).message_body("{not json").send().await?;
    w.put_request(
        json!({"service_id": w.info.service_id, "endpoint_id": "vpce-NOT-HEX", "trigger": "manual", "requested_at": 1}),
    )
    .await?;
    // Drain only the bad messages (the endpoint's own notification is not turned into a request).
    let start = std::time::Instant::now();
    // 20 receives (the tests' RequestsMaxReceiveCount), each after the runner's 2 s visibility.
    while start.elapsed() < Duration::from_secs(90) && w.queue_depth(&w.info.requests_dlq_url).await? < 2 {
        w.wiring.pump_decide(1).await?;
    }
    assert_eq!(w.queue_depth(&w.info.requests_dlq_url).await?, 2, "both bad messages end in the DLQ");
    assert_eq!(w.state(&id).await?, "pendingAcceptance");
    assert!(w.inbox().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn when_an_allowlist_item_is_malformed_should_never_accept_its_account() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    w.rule("*", ALLOWED, "allow", &[]).await?;
    // Meant as a deny, but `expires_at` is a string: it cannot be read, so the account is not accepted.
    w.rule("SVC", ALLOWED, "deny", &[("expires_at", s("next week"))]).await?;
    // An item with the wrong effect spelling for another account never allows it.
    w.rule("SVC", UNKNOWN, "ALLOW", &[]).await?;
    let a = w.endpoint(ALLOWED).await?;
    let u = w.endpoint(UNKNOWN).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.state(&a).await?, "rejected");
    assert_eq!(w.state(&u).await?, "rejected");
    let inbox = w.inbox().await?;
    let reasons: Vec<&str> = inbox.iter().filter_map(|m| m.body["reason"].as_str()).collect();
    assert!(reasons.contains(&"invalid_rule"), "{reasons:?}");
    Ok(())
}

#[tokio::test]
async fn when_the_decisions_table_fails_should_retry_and_never_reject() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    // Every DynamoDB call of the functions fails: nothing can be claimed, so nothing may be done.
    let rules: Vec<serde_json::Value> = w
        .wiring
        .access_keys
        .iter()
        .map(|key| json!({"match": "dynamodb:*", "rate": 1.0, "kind": "error500", "key": key}))
        .collect();
    w.faults(json!(rules)).await?;
    let id = w.endpoint(UNKNOWN).await?;
    w.wiring.pump_notifications().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while w.wiring.decide_failures.load(std::sync::atomic::Ordering::Relaxed) < 2 {
        anyhow::ensure!(std::time::Instant::now() < deadline, "decide never tried (and failed) twice");
        w.wiring.pump_decide(1).await?;
    }
    assert_eq!(w.state(&id).await?, "pendingAcceptance", "a failing DynamoDB must not turn into a reject");
    assert!(w.inbox().await?.is_empty());
    assert_eq!(w.queue_depth(&w.info.requests_queue_url).await?, 1, "the request is kept for the retry");
    Ok(())
}

#[tokio::test]
async fn when_sns_fails_after_the_action_should_notify_on_retry_exactly_once() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    w.rule("SVC", ALLOWED, "allow", &[]).await?;
    let id = w.endpoint(ALLOWED).await?;
    // Take the decisions topic away: EC2 is told, the notification fails, the message is retried.
    w.sns.delete_topic().topic_arn(&w.info.decisions_topic_arn).send().await?;
    w.wiring.pump_notifications().await?;
    let first = w.wiring.pump_decide(1).await?;
    assert_eq!(first.failed_messages, 1);
    assert_eq!(w.settled_state(&id).await?, "available");
    assert_eq!(w.records(&id).await?[0]["status"], s("acted"));
    // The topic comes back (same name, same ARN) with the team's subscription.
    let arn =
        w.sns.create_topic().name(w.info.decisions_topic_arn.rsplit(':').next().unwrap_or_default()).send().await?;
    assert_eq!(arn.topic_arn(), Some(w.info.decisions_topic_arn.as_str()));
    let inbox_arn = w
        .sqs
        .get_queue_attributes()
        .queue_url(&w.info.inbox_queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    w.sns.subscribe().topic_arn(&w.info.decisions_topic_arn).protocol("sqs").endpoint(inbox_arn).send().await?;
    // The stack's own subscription went with the deleted topic too: deploying the stack again restores it
    // (the queue's policy names the topic's ARN, which is the same).
    let deliveries = &w.info.deployment.queues["DeliveriesQueue"].arn;
    w.sns
        .subscribe()
        .topic_arn(&w.info.decisions_topic_arn)
        .protocol("sqs")
        .endpoint(deliveries)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await?;
    w.settle(SETTLE).await?;
    let inbox = w.inbox().await?;
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    assert_eq!(inbox[0].body["decision"], "accepted");
    assert_eq!(w.ec2_actions(&id, "Accept"), 1);
    assert_eq!(w.records(&id).await?[0]["status"], s("notified"));
    Ok(())
}

#[tokio::test]
async fn when_the_deployed_role_lacks_sns_publish_should_act_once_and_keep_the_notification_owed() -> Result<()> {
    // A copy of the template with one action taken out of decide's role, deployed as a provider would.
    let template = std::fs::read_to_string(gatekeeper_local::root().join("infra/template.yaml"))?;
    let cut = "              - Sid: Announce\n                Effect: Allow\n                Action: sns:Publish\n                Resource: !Ref DecisionsTopic\n";
    anyhow::ensure!(template.contains(cut), "the template's Announce statement moved; update this test");
    let path = std::env::temp_dir().join(format!("gatekeeper-no-publish-{}.yaml", std::process::id()));
    std::fs::write(&path, template.replace(cut, ""))?;
    let w = World::with(gatekeeper_local::Options { template: Some(path.clone()), ..Default::default() }).await?;
    let _ = std::fs::remove_file(&path);
    w.rule("SVC", ALLOWED, "allow", &[]).await?;
    let id = w.endpoint(ALLOWED).await?;
    w.wiring.pump_notifications().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while w.wiring.decide_failures.load(std::sync::atomic::Ordering::Relaxed) < 2 {
        anyhow::ensure!(std::time::Instant::now() < deadline, "decide never failed on the missing permission");
        w.wiring.pump_decide(1).await?;
    }
    let denials = gatekeeper_local::control(&w.info.endpoint_url, "/_gatekeeper/iam/denials", None).await?;
    assert!(
        denials.as_array().into_iter().flatten().any(|d| d["action"] == "sns:Publish"),
        "IAM denied the publish: {denials}"
    );
    assert_eq!(w.settled_state(&id).await?, "available", "decided correctly, once");
    let calls = gatekeeper_local::control(&w.info.endpoint_url, "/_gatekeeper/calls", None).await?;
    assert_eq!(calls[format!("changed:{id}")], 1, "EC2 changed it once: {calls}");
    assert_eq!(w.records(&id).await?[0]["status"], s("acted"), "the notification is still owed");
    assert!(w.inbox().await?.is_empty());
    assert_eq!(w.queue_depth(&w.info.requests_queue_url).await?, 1, "the message is retried, not lost");
    Ok(())
}

/// `EncryptWithKms=true` as a provider deploys it: both tables and the three topics use the stack's own key, and
/// the emulator asks that key of every caller as AWS does (EC2's notifications through the key policy's
/// vpce.amazonaws.com statement; each role's DynamoDB item calls kms:Decrypt, decide's publish also
/// kms:GenerateDataKey, through the key policy's account statement and the role's `kms` policy).
#[tokio::test]
async fn when_the_stack_encrypts_with_its_own_kms_key_consumers_are_decided_announced_and_recorded() -> Result<()> {
    let w = World::with(gatekeeper_local::Options { encrypt_with_kms: true, ..Default::default() }).await?;
    w.rule("SVC", ALLOWED, "allow", &[]).await?; // through the stream to reconcile, which reads the allowlist
    let allowed = w.endpoint(ALLOWED).await?;
    let unknown = w.endpoint(UNKNOWN).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&allowed).await?, "available");
    assert_eq!(w.state(&unknown).await?, "rejected");
    for id in [&allowed, &unknown] {
        // Decided through EC2's notification on the encrypted topic (settle runs no sweep).
        let connects =
            w.wiring.connection_events.lock().map(|v| v.iter().filter(|(e, i, _)| e == "Connect" && i == id).count());
        assert_eq!(connects.unwrap_or(0), 1, "{id}: EC2's Connect notification reached ingest");
        assert_eq!(w.records(id).await?[0]["status"], s("notified"), "{id}");
    }
    let inbox = w.inbox().await?;
    assert_eq!(inbox.len(), 2, "{inbox:#?}");
    let swept = w.wiring.sweep().await?; // reconcile's reads of both tables (the owed index among them)
    assert_eq!(swept["requests"], 0, "{swept}");
    // The local AWS is shared by the tests running beside this one: only this stack's roles count.
    let roles = ["IngestFunction", "DecideFunction", "ReconcileFunction"]
        .map(|f| w.info.deployment.function(f).map(|f| f.role_arn.clone()))
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let denials = gatekeeper_local::control(&w.info.endpoint_url, "/_gatekeeper/iam/denials", None).await?;
    let ours: Vec<_> = denials
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| roles.iter().any(|r| d["role_arn"] == r.as_str()))
        .collect();
    assert!(ours.is_empty(), "no call of the functions was refused: {ours:#?}");
    Ok(())
}

#[tokio::test]
async fn a_decision_owed_its_notification_after_its_message_is_gone_is_found_by_the_sweep_and_announced() -> Result<()>
{
    let w = World::new(DefaultAction::Reject).await?;
    w.rule("SVC", ALLOWED, "allow", &[]).await?;
    let id = w.endpoint(ALLOWED).await?;
    w.wiring.drop_notifications().await?; // the Connect notification would request it again
    // Every publish refused (SNS throttling): decide accepts and leaves the record `acted`, owed. Its message
    // is handed to decide directly, so nothing of it stays in the queue: as if it had reached the DLQ.
    w.faults(json!([{"match": "sns:Publish", "rate": 1.0, "kind": "throttle"}])).await?;
    let out =
        w.wiring.deps().decide_batch(w.sqs_event(&id, "m1"), "invocation-a", shared::domain::time::now_ms()).await;
    w.faults(json!([])).await?;
    assert_eq!(out.failed_messages, ["m1"], "{:?}", out.metrics);
    assert_eq!(w.records(&id).await?[0]["status"], s("acted"));
    assert_eq!(w.settled_state(&id).await?, "available", "no longer pending: only the owed index brings it back");
    w.settle(SETTLE).await?;
    assert!(w.inbox().await?.is_empty(), "nothing announced yet");
    // The `owed` index is a global secondary index: the record shows in it after the index's lag.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let swept = loop {
        let swept = w.wiring.sweep().await?;
        if swept["requests"] != 0 || std::time::Instant::now() > deadline {
            break swept;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(swept["requests"], 1, "{swept}");
    w.settle(SETTLE).await?;
    let inbox = w.inbox().await?;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].body["decision"], "accepted");
    assert_eq!(w.records(&id).await?[0]["status"], s("notified"));
    assert_eq!(w.ec2_actions(&id, "Accept"), 1, "announced, not accepted again");
    Ok(())
}

/// Decide's budget of Accept/Reject calls, in the deployed decisions table with decide's own role: twelve
/// concurrent asks in one window get exactly its five calls; the rest learn when the next window starts,
/// which has room again; each API is counted apart.
#[tokio::test]
async fn decides_budget_of_ec2_calls_gives_a_window_its_calls_and_no_more_under_concurrency() -> Result<()> {
    use shared::adapters::ec2::{ACT_CALLS_PER_WINDOW, ACT_WINDOW_MS};
    use shared::ports::{Budget, CallBudget};
    let w = World::with(Default::default()).await?;
    let budget = &w.wiring.deps().budget;
    let window = 1_700_000_000_000 - 1_700_000_000_000 % ACT_WINDOW_MS;
    let now = window + 1_234;
    let asks = (0..12).map(|_| {
        let budget = budget.clone();
        async move { budget.take("AcceptVpcEndpointConnections", now).await }
    });
    let (mut taken, mut full) = (0, 0);
    for answer in tokio::task::JoinSet::from_iter(asks).join_all().await {
        match answer? {
            Budget::Taken(until) => {
                assert_eq!(until, window + ACT_WINDOW_MS, "the window's end");
                taken += 1;
            }
            Budget::FullUntil(next) => {
                assert_eq!(next, window + ACT_WINDOW_MS, "the next window's start");
                full += 1;
            }
        }
    }
    assert_eq!((taken, full), (ACT_CALLS_PER_WINDOW, 12 - ACT_CALLS_PER_WINDOW));
    let next = window + ACT_WINDOW_MS;
    assert_eq!(budget.take("RejectVpcEndpointConnections", now).await?, Budget::Taken(next), "each API apart");
    assert_eq!(budget.take("AcceptVpcEndpointConnections", next).await?, Budget::Taken(next + ACT_WINDOW_MS));
    Ok(())
}

/// The decision log's status writes in the deployed decisions table, with decide's own role: a record
/// moves only from the status it was read at, so of two invocations finishing one record (same claim,
/// same version) only the first moves it, and a stale reader never moves a finished record back; the
/// writer holds it afterwards; a write repeated after its answer was lost is recognised as landed; SNS's
/// delivery of its notification marks it `notified`.
#[tokio::test]
async fn a_record_moves_only_from_the_status_it_was_read_at_and_a_repeated_write_is_recognised() -> Result<()> {
    use shared::domain::record::{Announced, DecisionRecord, Kind, Status};
    use shared::domain::{
        AccountId, Connection, ConnectionState, Decision, EndpointId, Outcome, Reason, ServiceId, Trigger,
    };
    use shared::ports::{Claim, DecisionLog, Written};
    let w = World::with(Default::default()).await?;
    let log = &w.wiring.deps().log;
    let conn = Connection {
        service_id: ServiceId::parse(&w.info.service_id)?,
        endpoint_id: EndpointId::parse("vpce-0123456789abcdef0")?,
        owner: AccountId::parse(ALLOWED)?,
        state: ConnectionState::PendingAcceptance,
        region: None,
        created_at_ms: 1_700_000_000_000,
        connection_id: None,
    };
    let d = Decision {
        outcome: Outcome::Accept,
        reason: Reason::Allowed,
        matched_rule: None,
        detail: String::new(),
        max_endpoints: None,
        tenant: None,
    };
    let held = DecisionRecord::claim(Kind::Decision, &conn, &d, Trigger::Notification, 1, "dead", 0, None);
    assert_eq!(log.claim(&held, None).await?, Claim::Won);
    let stored = || async {
        let r = log.records(&conn.endpoint_id).await?;
        anyhow::Ok(r.into_iter().map(|r| (r.status, r.claim)).collect::<Vec<_>>())
    };

    // A delivery never moves a record that is not `notifying`.
    assert_eq!(log.confirm(&Announced::of(&held)).await?, Written::Lost);
    // Two finishers read the dead claim (claimed, "dead", version 1). The first marks it and holds it.
    assert_eq!(log.advance(&held, Status::Notifying, "retry").await?, Written::Yes);
    assert_eq!(stored().await?, [(Status::Notifying, "retry".to_owned())]);
    // The first's write again, as the SDK repeats it after a lost answer: recognised, not a loss.
    assert_eq!(log.advance(&held, Status::Notifying, "retry").await?, Written::Yes);
    // The second finisher, with the same claim and version, finds it moved on.
    assert_eq!(log.advance(&held, Status::Notifying, "sweep").await?, Written::Lost);
    let marked = DecisionRecord { status: Status::Notifying, claim: "retry".into(), ..held.clone() };
    // SNS's delivery of the notification marks it `notified`: only the delivery of the one its holder
    // published at this version, and again when delivered again (SQS delivers at least once).
    let announced = Announced::of(&marked);
    assert_eq!(log.confirm(&Announced { claim: "sweep".into(), ..announced.clone() }).await?, Written::Lost);
    assert_eq!(log.confirm(&Announced { version: 2, ..announced.clone() }).await?, Written::Lost);
    assert_eq!(stored().await?, [(Status::Notifying, "retry".to_owned())]);
    assert_eq!(log.confirm(&announced).await?, Written::Yes);
    assert_eq!(log.confirm(&announced).await?, Written::Yes);
    // A reader that saw it owed (`acted`, or `claimed`) before it was finished never moves it back.
    let stale = DecisionRecord { status: Status::Acted, ..marked.clone() };
    assert_eq!(log.advance(&stale, Status::Notifying, "sweep").await?, Written::Lost);
    assert_eq!(log.advance(&held, Status::Notifying, "sweep").await?, Written::Lost);
    assert_eq!(stored().await?, [(Status::Notified, "retry".to_owned())]);

    // A publish SNS answered with an error but delivered: its publisher moved the record back to owed
    // (`acted`). The delivery marks it `notified` and takes it out of the owed index, so neither the
    // message's retry nor the sweep publishes it again.
    let other = Connection { endpoint_id: EndpointId::parse("vpce-0123456789abcdef1")?, ..conn.clone() };
    let claimed = DecisionRecord::claim(Kind::Decision, &other, &d, Trigger::Notification, 1, "inv", 120_000, None);
    assert_eq!(log.claim(&claimed, None).await?, Claim::Won);
    assert_eq!(log.advance(&claimed, Status::Notifying, "inv").await?, Written::Yes);
    let published = DecisionRecord { status: Status::Notifying, ..claimed.clone() };
    assert_eq!(log.advance(&published, Status::Acted, "inv").await?, Written::Yes);
    assert!(w.records(other.endpoint_id.as_str()).await?[0].contains_key("owed"), "owed once refused");
    assert_eq!(log.confirm(&Announced::of(&published)).await?, Written::Yes);
    let item = &w.records(other.endpoint_id.as_str()).await?[0];
    assert_eq!(item["status"], s("notified"));
    assert!(!item.contains_key("owed"), "no longer owed: {item:?}");
    // A delivery naming a record that does not exist creates none.
    let missing = Announced { endpoint_id: EndpointId::parse("vpce-0123456789abcdef2")?, ..Announced::of(&published) };
    assert_eq!(log.confirm(&missing).await?, Written::Lost);
    assert!(w.records(missing.endpoint_id.as_str()).await?.is_empty());
    Ok(())
}
