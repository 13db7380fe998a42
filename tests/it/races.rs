//! Races, made to happen at a chosen moment: another actor's change (an allowlist edit, a second `decide`
//! invocation) lands inside one invocation's decision, between two of its AWS calls. Everything runs
//! over the real SDK against the local AWS; only the moment is chosen. Each race ends with one outcome,
//! one record per decision, one notification per record, and a record that explains it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use decide::handler::{BatchOutcome, Deps};
use gatekeeper_local::{Options, decide_deps};
use shared::adapters::dynamodb::{DynamoAllowlist, DynamoDecisionLog};
use shared::adapters::ec2::Ec2Connections;
use shared::adapters::ledgers::{DynamoCallBudget, DynamoQuotaLedger};
use shared::adapters::sns::SnsNotifier;
use shared::domain::record::{Announced, DecisionRecord, Status};
use shared::domain::time::now_ms;
use shared::domain::{DefaultAction, EndpointId, Rules, ServiceId};
use shared::ports::{Allowlist, Claim, DecisionLog, ErrorKind, PortError, PortResult, Written};
use shared::telemetry::names;

use crate::{World, s};

const CONSUMER: &str = "222222222222";
const SETTLE: Duration = Duration::from_secs(20);

type Race<'a> = Pin<Box<dyn Future<Output = Result<Option<BatchOutcome>>> + Send + 'a>>;

/// An adapter that runs `race` once, right after the wrapped call succeeds: the moment the other
/// actor's change lands. What the race returns (another invocation's outcome) is kept for the test.
struct Racing<'a, T> {
    inner: T,
    race: Mutex<Option<Race<'a>>>,
    result: Mutex<Option<Result<Option<BatchOutcome>>>>,
    /// For a decision log: fire after the records are read, not after a claim.
    after_records: bool,
}

impl<'a, T> Racing<'a, T> {
    fn new(inner: T, race: Race<'a>) -> Self {
        Self { inner, race: Mutex::new(Some(race)), result: Mutex::new(None), after_records: false }
    }

    /// A decision log that fires right after an endpoint's records are read.
    fn after_records(inner: T, race: Race<'a>) -> Self {
        Self { after_records: true, ..Self::new(inner, race) }
    }

    async fn fire(&self) {
        let race = self.race.lock().ok().and_then(|mut r| r.take());
        if let Some(race) = race {
            let r = race.await;
            if let Ok(mut slot) = self.result.lock() {
                *slot = Some(r);
            }
        }
    }

    /// What the race did: `Some(outcome)` when it ran another invocation.
    fn raced(&self) -> Result<Option<BatchOutcome>> {
        self.result.lock().ok().and_then(|mut r| r.take()).context("the race never ran")?
    }
}

/// Fires after the allowlist was read: the edit lands between evaluation and action.
impl<T: Allowlist> Allowlist for Racing<'_, T> {
    async fn rules_for(&self, service: &ServiceId) -> PortResult<Rules> {
        let rules = self.inner.rules_for(service).await?;
        self.fire().await;
        Ok(rules)
    }
}

/// Fires after a successful claim (the other actor comes while this invocation holds the connection), or,
/// made with `after_records`, after the records are read (it comes between the read and the next write).
impl<T: DecisionLog> DecisionLog for Racing<'_, T> {
    async fn records(&self, endpoint: &EndpointId) -> PortResult<Vec<DecisionRecord>> {
        let records = self.inner.records(endpoint).await?;
        if self.after_records {
            self.fire().await;
        }
        Ok(records)
    }

    async fn claim(&self, record: &DecisionRecord, expected_version: Option<u64>) -> PortResult<Claim> {
        let claimed = self.inner.claim(record, expected_version).await?;
        if claimed == Claim::Won && !self.after_records {
            self.fire().await;
        }
        Ok(claimed)
    }

    async fn advance(&self, record: &DecisionRecord, status: Status, by: &str) -> PortResult<Written> {
        self.inner.advance(record, status, by).await
    }

    async fn abandon(&self, record: &DecisionRecord) -> PortResult<Written> {
        self.inner.abandon(record).await
    }

    async fn confirm(&self, announced: &Announced) -> PortResult<Written> {
        self.inner.confirm(announced).await
    }
}

/// A decision log whose `notifying` mark is refused for good (AccessDenied): the invocation ends, as one
/// that died would, after EC2 took its action and before anything was announced. Its claim is left to a
/// retry or the sweep to finish.
struct NeverNotifying<T>(T);

impl<T: DecisionLog> DecisionLog for NeverNotifying<T> {
    async fn records(&self, endpoint: &EndpointId) -> PortResult<Vec<DecisionRecord>> {
        self.0.records(endpoint).await
    }

    async fn claim(&self, record: &DecisionRecord, expected_version: Option<u64>) -> PortResult<Claim> {
        self.0.claim(record, expected_version).await
    }

    async fn advance(&self, record: &DecisionRecord, status: Status, by: &str) -> PortResult<Written> {
        if status == Status::Notifying {
            return Err(PortError {
                service: "dynamodb",
                operation: "UpdateItem",
                kind: ErrorKind::Permanent,
                code: "AccessDeniedException".into(),
                message: "refused by the test".into(),
            });
        }
        self.0.advance(record, status, by).await
    }

    async fn abandon(&self, record: &DecisionRecord) -> PortResult<Written> {
        self.0.abandon(record).await
    }

    async fn confirm(&self, announced: &Announced) -> PortResult<Written> {
        self.0.confirm(announced).await
    }
}

/// `decide` over the real adapters (`decide_deps`, as `main.rs` builds them), one of them wrapped.
async fn real_deps<A, D>(
    w: &World,
    wrap_allowlist: impl FnOnce(DynamoAllowlist) -> A,
    wrap_log: impl FnOnce(DynamoDecisionLog) -> D,
) -> Result<Deps<Ec2Connections, A, D, SnsNotifier, DynamoQuotaLedger, DynamoCallBudget>> {
    let d = decide_deps(w.wiring.decide_sdk_config(), &w.info)?;
    Ok(Deps {
        connections: d.connections,
        allowlist: wrap_allowlist(d.allowlist),
        log: wrap_log(d.log),
        notifier: d.notifier,
        quota: d.quota,
        budget: d.budget,
        config: d.config,
    })
}

/// Invocation A decides `id` (message "a"); `race` runs right after A has read the allowlist.
/// Returns A's outcome and what the race returned.
async fn decide_racing_allowlist<'a>(
    w: &'a World,
    id: &str,
    race: Race<'a>,
) -> Result<(BatchOutcome, Option<BatchOutcome>)> {
    let deps = real_deps(w, |a| Racing::new(a, race), |l| l).await?;
    let a = deps.decide_batch(w.sqs_event(id, "a"), "invocation-a", now_ms()).await;
    Ok((a, deps.allowlist.raced()?))
}

/// Invocation A decides `id` (message "a"); `race` runs right after A's claim is written.
async fn decide_racing_claim<'a>(
    w: &'a World,
    id: &str,
    race: Race<'a>,
) -> Result<(BatchOutcome, Option<BatchOutcome>)> {
    let deps = real_deps(w, |a| a, |l| Racing::new(l, race)).await?;
    let a = deps.decide_batch(w.sqs_event(id, "a"), "invocation-a", now_ms()).await;
    Ok((a, deps.log.raced()?))
}

/// Invocation B: the plain `decide` of the local wiring, deciding `id` (message "b").
async fn invocation_b(w: &World, id: &str, name: &str) -> BatchOutcome {
    w.wiring.deps().decide_batch(w.sqs_event(id, "b"), name, now_ms()).await
}

/// The race in which the allow is withdrawn and invocation B then decides `id` with the new rules.
fn withdraw_then_invocation_b<'a>(w: &'a World, id: &'a str) -> Race<'a> {
    Box::pin(async move {
        w.remove_rule("SVC", CONSUMER).await?;
        Ok(Some(invocation_b(w, id, "invocation-b").await))
    })
}

/// The decisions announced to the team's queue, in order.
async fn announced(w: &World) -> Result<Vec<String>> {
    Ok(w.inbox().await?.iter().map(|m| m.body["decision"].as_str().unwrap_or_default().to_owned()).collect())
}

/// A new endpoint of `CONSUMER`, whose Connect notification is dropped so that only the test decides it.
async fn quiet_endpoint(w: &World) -> Result<String> {
    let id = w.endpoint(CONSUMER).await?;
    w.wiring.drop_notifications().await?;
    Ok(id)
}

/// (decision, status) of each of the endpoint's records, decisions first.
async fn record_summary(w: &World, id: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = w
        .records(id)
        .await?
        .iter()
        .map(|r| {
            let get = |k: &str| r.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            (get("decision"), get("status"))
        })
        .collect();
    out.sort_by_key(|(d, _)| d == "revoked");
    Ok(out)
}

fn pair(decision: &str, status: &str) -> (String, String) {
    (decision.to_owned(), status.to_owned())
}

#[tokio::test]
async fn when_an_allow_is_withdrawn_between_evaluation_and_action_should_accept_then_revoke_once() -> Result<()> {
    let w = World::with(Options { default_action: DefaultAction::Reject, revoke: true, ..Options::default() }).await?;
    w.rule("SVC", CONSUMER, "allow", &[]).await?;
    let id = quiet_endpoint(&w).await?;
    let edit: Race = Box::pin(async { w.remove_rule("SVC", CONSUMER).await.map(|()| None) });
    let (a, _) = decide_racing_allowlist(&w, &id, edit).await?;
    // It decided on the rules it read: the withdrawal came after them.
    assert!(a.failed_messages.is_empty() && a.metrics.get(names::ACCEPTED) == 1, "{a:?}");

    // The withdrawal reaches reconcile through the table's stream, and decide revokes.
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&id).await?, "rejected");
    assert_eq!(record_summary(&w, &id).await?, [pair("accepted", "notified"), pair("revoked", "notified")]);
    assert_eq!(announced(&w).await?, ["accepted", "revoked"], "one notification per record, in order");
    assert_eq!((w.ec2_actions(&id, "Accept"), w.ec2_actions(&id, "Reject")), (1, 1));
    Ok(())
}

#[tokio::test]
async fn when_an_allow_lands_between_evaluation_and_action_should_reject_once_and_record_why() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    let id = quiet_endpoint(&w).await?;
    let edit: Race = Box::pin(async { w.rule("SVC", CONSUMER, "allow", &[]).await.map(|()| None) });
    let (a, _) = decide_racing_allowlist(&w, &id, edit).await?;
    assert!(a.failed_messages.is_empty() && a.metrics.get(names::REJECTED) == 1, "{a:?}");
    // The allow's stream record reaches reconcile, which finds nothing pending for the account:
    // EC2 cannot un-reject, so the reject stands (the consumer re-creates the endpoint).
    w.settle(SETTLE).await?;
    assert_eq!(w.state(&id).await?, "rejected");
    let records = w.records(&id).await?;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["reason"], s("not_listed"), "the record says it was decided with no rule for the account");
    assert_eq!(announced(&w).await?, ["rejected"]);
    assert_eq!((w.ec2_actions(&id, "Accept"), w.ec2_actions(&id, "Reject")), (0, 1));
    Ok(())
}

#[tokio::test]
async fn when_the_default_is_hold_and_an_allow_lands_mid_decision_should_hold_then_accept() -> Result<()> {
    let w = World::new(DefaultAction::Hold).await?;
    let id = quiet_endpoint(&w).await?;
    let edit: Race = Box::pin(async { w.rule("SVC", CONSUMER, "allow", &[]).await.map(|()| None) });
    let (a, _) = decide_racing_allowlist(&w, &id, edit).await?;
    assert!(a.failed_messages.is_empty() && a.metrics.get(names::HELD) == 1, "{a:?}");
    // With `hold`, nothing is lost to the race: the allow's stream record brings it back and it is accepted.
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&id).await?, "available");
    assert_eq!(announced(&w).await?, ["held", "accepted"]);
    assert_eq!(record_summary(&w, &id).await?, [pair("accepted", "notified")], "the hold was superseded in place");
    assert_eq!(w.ec2_actions(&id, "Accept"), 1);
    Ok(())
}

#[tokio::test]
async fn when_a_revocation_races_an_accept_in_flight_should_accept_then_revoke_never_interleave() -> Result<()> {
    let w = World::with(Options { default_action: DefaultAction::Reject, revoke: true, ..Options::default() }).await?;
    w.rule("SVC", CONSUMER, "allow", &[]).await?;
    let id = quiet_endpoint(&w).await?;
    // While A holds its claim (accept), the allow is withdrawn and B decides the same endpoint.
    let (a, b) = decide_racing_claim(&w, &id, withdraw_then_invocation_b(&w, &id)).await?;
    let b = b.context("B ran")?;
    assert!(a.failed_messages.is_empty() && a.metrics.get(names::ACCEPTED) == 1, "A finishes its accept: {a:?}");
    assert_eq!(b.failed_messages, ["b"], "B neither acts nor drops its request while A holds the claim");
    assert_eq!(w.ec2_actions(&id, "Reject"), 0);

    // B's retry (the queue redelivers it) finds the accepted connection and revokes it: at once, or,
    // with EC2's consistency lag, once Describe shows the accept (until then the request is retried).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let retry = loop {
        let retry = invocation_b(&w, &id, "invocation-b-retry").await;
        if retry.metrics.get(names::REVOKED) == 1 || std::time::Instant::now() > deadline {
            break retry;
        }
        assert_eq!(retry.failed_messages, ["b"], "not revoked yet, so retried: {retry:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(retry.failed_messages.is_empty() && retry.metrics.get(names::REVOKED) == 1, "{retry:?}");
    w.settle(SETTLE).await?;
    assert_eq!(w.state(&id).await?, "rejected");
    assert_eq!(record_summary(&w, &id).await?, [pair("accepted", "notified"), pair("revoked", "notified")]);
    assert_eq!(announced(&w).await?, ["accepted", "revoked"]);
    assert_eq!((w.ec2_actions(&id, "Accept"), w.ec2_actions(&id, "Reject")), (1, 1));
    Ok(())
}

#[tokio::test]
async fn when_a_newer_decision_claims_first_should_leave_the_stale_one_without_effect() -> Result<()> {
    let w = World::with(Options { default_action: DefaultAction::Reject, revoke: true, ..Options::default() }).await?;
    // A must see the connection waiting before B acts: with a lag, A's first Describe may not show it yet,
    // and A then finds it rejected (NotPending), a different race.
    w.ec2_lag(0).await?;
    w.rule("SVC", CONSUMER, "allow", &[]).await?;
    let id = quiet_endpoint(&w).await?;
    // A has read "allowed"; before it claims, the allow is withdrawn and B decides with the new rules.
    let (a, b) = decide_racing_allowlist(&w, &id, withdraw_then_invocation_b(&w, &id)).await?;
    let b = b.context("B ran")?;
    assert!(b.failed_messages.is_empty() && b.metrics.get(names::REJECTED) == 1, "B decides first: {b:?}");
    // A's stale claim loses; the failed condition answers B's record, so A knows the decision is done
    // without another read, and nothing is retried.
    assert!(a.failed_messages.is_empty(), "A's stale claim loses to B's finished decision: {a:?}");
    assert_eq!(a.metrics.get(names::DUPLICATES), 1);
    assert_eq!(a.metrics.get(names::REJECTED) + a.metrics.get(names::ACCEPTED), 0);
    // A duplicate of A's message re-reads EC2 and the record: nothing left to do.
    let retry = w.wiring.deps().decide_batch(w.sqs_event(&id, "a"), "invocation-a-retry", now_ms()).await;
    assert!(retry.failed_messages.is_empty(), "{retry:?}");
    w.settle(SETTLE).await?;
    assert_eq!(w.state(&id).await?, "rejected");
    assert_eq!(record_summary(&w, &id).await?, [pair("rejected", "notified")]);
    assert_eq!(announced(&w).await?, ["rejected"]);
    assert_eq!((w.ec2_actions(&id, "Accept"), w.ec2_actions(&id, "Reject")), (0, 1));
    Ok(())
}

#[tokio::test]
async fn when_two_invocations_finish_the_same_owed_decision_should_announce_it_once() -> Result<()> {
    let w = World::new(DefaultAction::Reject).await?;
    w.rule("SVC", CONSUMER, "allow", &[]).await?;
    let id = quiet_endpoint(&w).await?;
    // The first invocation accepts, then ends before its notifying mark: the announcement is owed. It ran a
    // lease ago, so its claim has ended (a claim whose action EC2 took is kept until its lease ends).
    let dying = real_deps(&w, |a| a, NeverNotifying).await?;
    let a_lease_ago = now_ms() - dying.config.lease_ms - 1_000;
    let first = dying.decide_batch(w.sqs_event(&id, "a"), "invocation-dead", a_lease_ago).await;
    assert_eq!(first.failed_messages, ["a"], "{first:?}");
    assert_eq!(w.settled_state(&id).await?, "available");
    assert_eq!(record_summary(&w, &id).await?, [pair("accepted", "claimed")]);
    assert!(announced(&w).await?.is_empty());

    // A (the message's retry) reads the owed record; before A marks it, B (another request for the same
    // endpoint, as the sweep makes) finishes it. Both read the dead claim's claim and version.
    let b: Race = Box::pin(async { Ok(Some(invocation_b(&w, &id, "invocation-b").await)) });
    let deps = real_deps(&w, |a| a, |l| Racing::after_records(l, b)).await?;
    let a = deps.decide_batch(w.sqs_event(&id, "a"), "invocation-a", now_ms()).await;
    let b = deps.log.raced()?.context("B ran")?;
    assert!(b.failed_messages.is_empty() && b.metrics.get(names::NOTIFIED) == 1, "B announces it: {b:?}");
    assert!(a.failed_messages.is_empty(), "A finds it finished, nothing to retry: {a:?}");
    assert_eq!(a.metrics.get(names::NOTIFIED) + a.metrics.get(names::NOTIFY_UNCERTAIN), 0, "{a:?}");
    w.settle(SETTLE).await?;
    assert_eq!(announced(&w).await?, ["accepted"], "one notification for the decision");
    assert_eq!(record_summary(&w, &id).await?, [pair("accepted", "notified")]);
    assert_eq!((w.ec2_actions(&id, "Accept"), w.ec2_actions(&id, "Reject")), (1, 0));
    Ok(())
}
