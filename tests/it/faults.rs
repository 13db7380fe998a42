//! Faults and races: it keeps deciding correctly and loses nothing.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use decide::handler::BatchOutcome;
use serde_json::{Value, json};
use shared::domain::DefaultAction;

use crate::World;

async fn control(w: &World, path: &str, body: Option<serde_json::Value>) -> Result<serde_json::Value> {
    gatekeeper_local::control(&w.info.endpoint_url, path, body).await
}

async fn faults(w: &World, rules: serde_json::Value) -> Result<()> {
    w.faults(rules).await
}

#[tokio::test]
async fn when_two_invocations_decide_the_same_endpoint_at_once_should_act_and_notify_once() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    w.rule("SVC", "222222222222", "allow", &[]).await?;
    let id = w.endpoint("222222222222").await?;
    w.wiring.drop_notifications().await?;
    let deps = w.wiring.deps();
    let (a, b) = tokio::join!(
        deps.decide_batch(w.sqs_event(&id, "m1"), "invocation-a", shared::domain::time::now_ms()),
        deps.decide_batch(w.sqs_event(&id, "m2"), "invocation-b", shared::domain::time::now_ms()),
    );
    // The loser leaves its message to be retried (in case the winner dies); the retry finds it done.
    assert_eq!(a.failed_messages.len() + b.failed_messages.len(), 1, "{:?} {:?}", a.failed_messages, b.failed_messages);
    // Let the emulator publish EC2's Accept notifications, then count.
    w.settle(Duration::from_secs(5)).await?;
    assert_eq!(w.settled_state(&id).await?, "available");
    assert_eq!(w.ec2_actions(&id, "Accept"), 1);
    assert_eq!(w.records(&id).await?.len(), 1);
    assert_eq!(w.inbox().await?.len(), 1);
    assert_eq!(a.metrics.get("Duplicates") + b.metrics.get("Duplicates"), 1, "the loser saw the winner's claim");
    Ok(())
}

/// Consumers `accounts` (every other one allowed) with `per_account` endpoints each.
async fn burst(w: &World, accounts: usize, per_account: usize) -> Result<(Vec<(String, String)>, HashSet<String>)> {
    let accounts: Vec<String> = (0..accounts).map(|i| format!("{:012}", 777_000_000_000u64 + i as u64)).collect();
    let allowed: HashSet<String> = accounts.iter().step_by(2).cloned().collect();
    for a in &allowed {
        w.rule("*", a, "allow", &[]).await?;
    }
    // Consumers create at once, each waiting for its own account's CreateVpcEndpoint tokens.
    let mut set = tokio::task::JoinSet::new();
    for a in accounts {
        let (url, service) = (w.info.endpoint_url.clone(), w.info.service_name.clone());
        set.spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..per_account {
                mine.push((a.clone(), gatekeeper_local::create_endpoint(&url, &a, &service).await?.1));
            }
            anyhow::Ok(mine)
        });
    }
    let mut endpoints = Vec::new();
    while let Some(done) = set.join_next().await {
        endpoints.extend(done??);
    }
    Ok((endpoints, allowed))
}

/// Runs the wiring, with the schedule's sweep between rounds, until nothing is pending (or 600 s), then
/// lifts the faults and lets the last notifications through. Fails when connections were still pending
/// at 600 s: everything must be decided while the faults are on. Returns the number of sweeps.
async fn decide_everything(w: &World) -> Result<usize> {
    let start = Instant::now();
    let mut sweeps = 0;
    let pending = loop {
        let _ = w.settle(Duration::from_secs(15)).await;
        let pending = w.pending_count().await?;
        let dlq = w.queue_depth(&w.info.requests_dlq_url).await.ok();
        let failures = w.wiring.decide_failures.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "{:.0} s: {pending} pending, {dlq:?} dead-lettered, {failures} failed",
            start.elapsed().as_secs_f64()
        );
        if pending == 0 || start.elapsed() > Duration::from_secs(600) {
            break pending;
        }
        // What the DLQ holds or a failed invocation dropped, the next sweep finds again.
        if w.wiring.sweep().await.is_ok() {
            sweeps += 1;
        }
    };
    anyhow::ensure!(
        pending == 0,
        "{pending} connections still pending after {:.0} s of faults",
        start.elapsed().as_secs_f64()
    );
    eprintln!("all decided after {:.0} s and {sweeps} sweeps", start.elapsed().as_secs_f64());
    faults(w, serde_json::json!([])).await?;
    // With the faults lifted, one sweep re-requests what is still owed (records left `claimed` or
    // `acted`, found in the `owed` index), and everything settles.
    // The bound covers the backlog the faults left (EC2's Accept/Reject notifications for ingest, owed
    // notifications) on a loaded 2-core machine; it is a bound, not a timing claim.
    w.settle(Duration::from_secs(120)).await?;
    w.wiring.sweep().await?;
    w.settle(Duration::from_secs(120)).await?;
    Ok(sweeps)
}

/// Every connection ended as the allowlist says, changed by EC2 exactly once (the emulator's own count).
async fn assert_decided_once(w: &World, endpoints: &[(String, String)], allowed: &HashSet<String>) -> Result<Value> {
    for (a, id) in endpoints {
        let state = w.settled_state(id).await?;
        let want = if allowed.contains(a) { "available" } else { "rejected" };
        assert_eq!(state, want, "{id} of {a}");
    }
    let calls = control(w, "/_gatekeeper/calls", None).await?;
    for (_, id) in endpoints {
        assert_eq!(calls[format!("changed:{id}")], 1, "{id} acted on once");
    }
    Ok(calls)
}

/// Notifications received, by endpoint.
async fn notifications(w: &World) -> Result<HashMap<String, usize>> {
    let mut per_endpoint: HashMap<String, usize> = HashMap::new();
    for m in w.inbox().await? {
        *per_endpoint.entry(m.body["endpoint_id"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    Ok(per_endpoint)
}

/// Every dependency the functions call.
const DEPENDENCIES: [&str; 5] = ["ec2:*", "dynamodb:*", "sns:*", "events:*", "sqs:*"];

/// Fault rules for the functions' own calls: each `(kind, rate)` on each of `matches`.
fn on(w: &World, matches: &[&str], kinds: &[(&str, f64)]) -> Vec<Value> {
    matches
        .iter()
        .flat_map(|m| {
            kinds.iter().flat_map(move |(kind, rate)| {
                w.wiring.access_keys.iter().map(move |key| json!({"match": m, "rate": rate, "kind": kind, "key": key}))
            })
        })
        .collect()
}

#[tokio::test]
async fn when_every_dependency_fails_30_percent_of_calls_should_still_decide_all_correctly_once() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    let (endpoints, allowed) = burst(&w, 10, 20).await?;
    // SNS answers 500 rather than throttling: a publish that was refused, and so is repeated.
    let mut rules = on(&w, &["ec2:*", "dynamodb:*", "events:*", "sqs:*"], &[("throttle", 0.3)]);
    rules.extend(on(&w, &["sns:*"], &[("error500", 0.3)]));
    faults(&w, Value::Array(rules)).await?;
    decide_everything(&w).await?;
    let calls = assert_decided_once(&w, &endpoints, &allowed).await?;
    let per_endpoint = notifications(&w).await?;
    assert!(per_endpoint.values().all(|n| *n == 1), "one notification per decision: {per_endpoint:?}");
    assert_eq!(per_endpoint.len(), endpoints.len(), "no decision went unannounced");
    // And every record says so: SNS's copy of each notification reached the deliveries queue and was
    // recorded (deliveries whose write met a fault came back until it held).
    for (_, id) in &endpoints {
        let records = w.records(id).await?;
        assert_eq!(records[0]["status"].as_s().map(String::as_str), Ok("notified"), "{id}: {records:?}");
    }
    assert!(calls["fault:throttle"].as_u64().unwrap_or(0) > 100, "faults were injected: {calls}");
    // The faults showed as failed messages (the Errors metric, retries, the DLQ), not as lost work.
    let failures = w.wiring.decide_failures.load(std::sync::atomic::Ordering::Relaxed);
    let dlq = w.queue_depth(&w.info.requests_dlq_url).await?;
    eprintln!("{failures} messages failed and were retried; {dlq} reached the DLQ");
    assert!(failures > 0, "faults surfaced as failures");
    // Each failed message came back and was decided within the redrive's receives: none was dead-lettered.
    assert_eq!(dlq, 0, "no request reached the dead-letter queue");
    Ok(())
}

#[tokio::test]
async fn when_connections_drop_before_or_after_aws_acts_should_decide_once_and_never_notify_twice() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    let (endpoints, allowed) = burst(&w, 8, 5).await?;
    // `drop`: the request never reaches the service. `drop_after`: the service acts, the answer is lost,
    // so the caller cannot tell whether its accept, claim, publish or delete took effect.
    faults(&w, Value::Array(on(&w, &DEPENDENCIES, &[("drop", 0.1), ("drop_after", 0.1)]))).await?;
    decide_everything(&w).await?;
    let calls = assert_decided_once(&w, &endpoints, &allowed).await?;
    let per_endpoint = notifications(&w).await?;
    assert!(per_endpoint.values().all(|n| *n == 1), "never two notifications for a decision: {per_endpoint:?}");
    // A publish whose answer was lost is not repeated (counted as NotifyUncertain and alarmed). Its record
    // says what SNS did: `notified` when SNS delivered it (to the team's queue and the stack's deliveries
    // queue alike), `notifying` when the publish never reached SNS. Every other decision was announced.
    let mut uncertain = 0;
    for (_, id) in &endpoints {
        let records = w.records(id).await?;
        assert_eq!(records.len(), 1, "{id}");
        let status = records[0]["status"].as_s().map(String::as_str).unwrap_or_default().to_owned();
        match (per_endpoint.get(id.as_str()), status.as_str()) {
            (None, "notifying") => uncertain += 1,
            (Some(1), "notified") => {}
            other => panic!("{id}: {other:?}"),
        }
    }
    let dropped = calls["fault:drop"].as_u64().unwrap_or(0) + calls["fault:drop_after"].as_u64().unwrap_or(0);
    eprintln!("{dropped} connections dropped; {uncertain} notifications uncertain of {}", endpoints.len());
    assert!(dropped > 20, "faults were injected: {calls}");
    // (Only an uncertain publish may go unannounced: the match above lets no other record go without a
    // notification.)
    Ok(())
}

#[tokio::test]
async fn when_every_delivery_arrives_twice_should_act_once_and_publish_once() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    // At least once, not exactly once: every SNS delivery (EC2's connection notifications to ingest, each
    // decision to the team's queue and to the stack's deliveries queue) and every EventBridge delivery (each
    // Connection Request to the requests queue) is made twice, each copy the same message.
    control(&w, "/_gatekeeper/deliveries", Some(json!({"duplicate_rate": 1.0}))).await?;
    let (endpoints, allowed) = burst(&w, 4, 3).await?;
    let decided = decide_everything(&w).await;
    control(&w, "/_gatekeeper/deliveries", Some(json!({"duplicate_rate": 0.0}))).await?;
    decided?;
    let calls = assert_decided_once(&w, &endpoints, &allowed).await?;
    assert_eq!(calls["sns:Publish"], endpoints.len(), "one publish per decision: {calls}");
    // The team's queue holds SNS's two copies of each one publish, and nothing more.
    let per_endpoint = notifications(&w).await?;
    for (_, id) in &endpoints {
        assert_eq!(per_endpoint.get(id.as_str()), Some(&2), "{id}: {per_endpoint:?}");
        let records = w.records(id).await?;
        assert_eq!(records.len(), 1, "{id}");
        assert_eq!(records[0]["status"].as_s().map(String::as_str).ok(), Some("notified"), "{id}");
    }
    // Each endpoint's Connect and Accept/Reject notifications, its request, and its decision's two copies
    // were each delivered twice.
    let duplicated = control(&w, "/_gatekeeper/deliveries", None).await?["duplicated"].as_u64().unwrap_or(0);
    assert!(duplicated >= 5 * endpoints.len() as u64, "{duplicated} deliveries made twice");
    Ok(())
}

#[tokio::test]
async fn when_putevents_fails_some_entries_every_request_still_arrives_and_each_is_decided_once() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    // Every PutEvents of the functions answers with each entry failed with probability 0.3 (InternalFailure,
    // ThrottlingException), the rest put: ingest sends only the failed ones again (four attempts, then Lambda's
    // two retries of the invocation: a request lost that way is about 0.3^12, so none is left to the sweep).
    let mut rules = on(&w, &["events:PutEvents"], &[("partial", 1.0)]);
    for rule in &mut rules {
        rule["entries"] = json!(0.3);
    }
    faults(&w, Value::Array(rules)).await?;
    let (endpoints, allowed) = burst(&w, 4, 4).await?;
    let sweeps = decide_everything(&w).await?;
    assert_eq!(sweeps, 0, "every request arrived through ingest, none was left for the sweep to find");
    let calls = assert_decided_once(&w, &endpoints, &allowed).await?;
    assert!(calls["fault:partial_entry"].as_u64().unwrap_or(0) > 0, "entries were failed: {calls}");
    let per_endpoint = notifications(&w).await?;
    assert!(endpoints.iter().all(|(_, id)| per_endpoint.get(id.as_str()) == Some(&1)), "{per_endpoint:?}");
    Ok(())
}

#[tokio::test]
async fn when_an_accept_lands_but_every_answer_is_lost_should_ask_ec2_and_announce_it_in_the_same_invocation()
-> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    // Describe must show the accept at once for the invocation to find it (with a lag it is retried, as
    // decide's handler tests show).
    w.ec2_lag(0).await?;
    w.rule("SVC", "222222222222", "allow", &[]).await?;
    let id = w.endpoint("222222222222").await?;
    // `drop_after` on every Accept: EC2 acts, then the connection closes before its answer, and so for the
    // SDK's repeats (which EC2 refuses, the connection no longer waiting): the call ends with no answer.
    let rules =
        w.wiring.access_keys.iter().map(
            |key| json!({"match": "ec2:AcceptVpcEndpointConnections", "rate": 1.0, "kind": "drop_after", "key": key}),
        );
    faults(&w, Value::Array(rules.collect())).await?;
    let out =
        w.wiring.deps().decide_batch(w.sqs_event(&id, "m1"), "invocation-a", shared::domain::time::now_ms()).await;
    faults(&w, json!([])).await?;
    // Not failed back to the queue (in AWS, announced only after the visibility timeout, 360 s) nor counted
    // as an error: Describe shows the accept took effect.
    assert!(out.failed_messages.is_empty(), "{:?}", out.metrics);
    assert_eq!(out.metrics.get("Errors"), 0, "{:?}", out.metrics);
    assert_eq!(out.metrics.get("Accepted"), 1, "{:?}", out.metrics);
    let calls = control(&w, "/_gatekeeper/calls", None).await?;
    assert!(calls["fault:drop_after"].as_u64().unwrap_or(0) >= 1, "the answers were dropped: {calls}");
    assert_eq!(calls["sns:Publish"], 1, "{calls}");
    w.settle(Duration::from_secs(5)).await?;
    assert_eq!(w.settled_state(&id).await?, "available");
    assert_eq!(w.ec2_actions(&id, "Accept"), 1);
    assert_eq!(w.inbox().await?.len(), 1);
    Ok(())
}

/// How long a hung call's answer is held back: far longer than the functions' call timeouts
/// (`shared::adapters::CALL_TIMEOUT`, 7 s). Without them the invocation waits all of it (measured: 40.1 s
/// and 40.2 s with decide's wiring built without them).
const HUNG: Duration = Duration::from_secs(40);

/// Decides `endpoint` once (message `m1`) while every answer to `matches` (`service:Action`) is held back
/// for [`HUNG`], and checks that the invocation gave those calls up rather than waiting for them.
async fn decide_while_hung(w: &World, endpoint: &str, matches: &str) -> Result<BatchOutcome> {
    let ms = HUNG.as_millis() as u64;
    let rules = w
        .wiring
        .access_keys
        .iter()
        .map(|key| json!({"match": matches, "rate": 1.0, "kind": "slow", "ms": ms, "key": key}));
    faults(w, Value::Array(rules.collect())).await?;
    let started = Instant::now();
    let out =
        w.wiring.deps().decide_batch(w.sqs_event(endpoint, "m1"), "invocation-a", shared::domain::time::now_ms()).await;
    let took = started.elapsed();
    assert!(took < HUNG / 2, "the invocation waited {took:?} for an answer that never came");
    Ok(out)
}

#[tokio::test]
async fn when_the_publish_never_answers_should_give_it_up_in_time_and_count_the_notification_uncertain() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    w.rule("SVC", "222222222222", "allow", &[]).await?;
    let id = w.endpoint("222222222222").await?;
    // The publish is given up (it may still go out: a timeout is uncertain), not waited for.
    let out = decide_while_hung(&w, &id, "sns:Publish").await?;
    assert_eq!(out.metrics.get("NotifyUncertain"), 1, "{:?}", out.metrics);
    assert_eq!(out.metrics.get("Accepted"), 1, "{:?}", out.metrics);
    w.settle(Duration::from_secs(5)).await?;
    assert_eq!(w.settled_state(&id).await?, "available");
    assert_eq!(w.ec2_actions(&id, "Accept"), 1);
    // Never published again: the one Publish is the hung one (SNS may still deliver it, and its delivery
    // would mark the record `notified`; within this test the emulator still holds it).
    let calls = control(&w, "/_gatekeeper/calls", None).await?;
    assert_eq!(calls["sns:Publish"], 1, "{calls}");
    let records = w.records(&id).await?;
    assert_eq!(records[0]["status"].as_s().map(String::as_str), Ok("notifying"), "{records:?}");
    Ok(())
}

#[tokio::test]
async fn when_a_read_never_answers_should_give_it_up_in_time_and_leave_the_message_to_be_retried() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    let id = w.endpoint("222222222222").await?;
    // The decision records and the allowlist are read with Query: no answer, so nothing may be decided.
    let out = decide_while_hung(&w, &id, "dynamodb:Query").await?;
    assert_eq!(out.failed_messages, ["m1"], "{:?}", out.metrics);
    assert_eq!(out.metrics.get("Errors"), 1, "{:?}", out.metrics);
    // A read that failed is never a reject: the connection is still waiting, nothing was recorded.
    assert_eq!(w.state(&id).await?, "pendingAcceptance");
    assert!(w.records(&id).await?.is_empty());
    Ok(())
}
