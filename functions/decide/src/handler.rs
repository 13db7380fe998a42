//! The decision loop for one SQS batch. Owner and state come only from EC2; each connection is claimed in
//! the decisions table before anything is done to it, so duplicates and concurrent invocations give one
//! action and one notification; any AWS failure leaves the message to be retried, never a reject.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use futures_util::stream::{self, StreamExt};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use shared::adapters::CALL_TIMEOUT;
use shared::adapters::ec2::MAX_IDS_PER_CALL;
use shared::domain::protocol::{Skip, Step, next_step, took_effect};
use shared::domain::quota::{Seen, take_slot};
use shared::domain::record::{ANNOUNCED_ATTRIBUTE, Announced, Announcement, DecisionRecord, Kind, Status};
use shared::domain::request::parse_event;
use shared::domain::time::now_ms;
pub use shared::domain::time::time_left;
use shared::domain::{
    Connection, ConnectionState, EndpointId, Outcome, Reason, Rules, ServiceId, TENANT_TAG, Trigger, apply_quota,
    evaluate,
};
use shared::ports::{
    Allowlist, Budget, CallBudget, Claim, ConnectionFilter, Connections, DecisionLog, ErrorKind, Notifier, PortError,
    PortResult, QuotaLedger, Written,
};
use shared::telemetry::{Metrics, names};
use tracing::{Instrument, error, info, warn};

use crate::config::Config;
use crate::error::DecideError;

/// Everything the handler needs, built once per container.
pub struct Deps<C, A, D, N, Q, B> {
    pub connections: C,
    pub allowlist: A,
    pub log: D,
    pub notifier: N,
    /// The `max_endpoints` ledgers.
    pub quota: Q,
    /// Decide's own budget of Accept/Reject calls, shared by its invocations.
    pub budget: B,
    pub config: Config,
}

/// What one batch came to: the SQS message IDs to retry, and the counters.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub failed_messages: Vec<String>,
    pub metrics: Metrics,
}

/// How long before Lambda's deadline an invocation still deciding stops ([`Deps::invoke`]): it fails the whole
/// batch, which SQS returns (a retry finds done what it finished), and its counters are written, with each
/// notification it stopped between the mark and the publish's answer counted `NotifyUncertain`. Lambda
/// would otherwise end it at the deadline with its counters unwritten. Each call gives up after
/// `shared::adapters::CALL_TIMEOUT`, the waits for EC2 end `FINISH_RESERVE_MS` before the deadline and the
/// status writes' retries start no round that could reach the stop, but the steps after those (a read-back,
/// the publish) against services that answer nothing can still reach it.
pub const CUT_OFF_MS: i64 = 1_000;
const CUT_OFF: std::time::Duration = std::time::Duration::from_millis(CUT_OFF_MS as u64);

/// What an invocation that finished its batch answers: the messages to retry, or an error when every
/// message failed on AWS errors. Only AWS errors fail the invocation: a message retried for another reason
/// (a connection EC2 does not show yet, a claim held elsewhere) is not an error of this function.
fn answer(total: usize, failed_messages: Vec<String>, metrics: &Metrics) -> Result<SqsBatchResponse, DecideError> {
    let aws_errors_only = metrics.get(names::ERRORS) > 0
        && metrics.get(names::INVALID_EVENTS) == 0
        && metrics.get(names::NOT_VISIBLE_YET) == 0;
    if total > 0 && failed_messages.len() == total && aws_errors_only {
        return Err(DecideError::BatchFailed { total });
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed_messages
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    Ok(response)
}

/// The requests of one service in the batch: endpoint → (trigger, SQS message IDs carrying it).
type ServiceWork = BTreeMap<EndpointId, Work>;

/// The requests for one connection in a batch.
#[derive(Debug)]
struct Work {
    trigger: Trigger,
    /// The SQS message IDs carrying it (duplicates included).
    messages: Vec<String>,
    /// The highest `ApproximateReceiveCount` among them: how often it has been tried.
    receives: u32,
}

/// How many receives a request for a connection EC2 does not show yet gets before it is left to the
/// sweep. EC2 is eventually consistent: a connection named by a Connect notification may not be visible
/// to Describe at once (docs/aws-facts.md, "The truth about connections").
pub const NOT_VISIBLE_RECEIVES: u32 = 3;
/// How many calls of one kind (record reads, claims, the notification steps) one invocation has in flight
/// at once: enough to hide the round trips of a 100-message batch, few enough for DynamoDB's and SNS's
/// per-partition and per-account rates.
pub const IN_FLIGHT: usize = 16;
/// The EC2 APIs decide's budget counts.
const ACCEPT_API: &str = "AcceptVpcEndpointConnections";
const REJECT_API: &str = "RejectVpcEndpointConnections";
/// How many services of one batch are decided at once.
pub const SERVICES_IN_FLIGHT: usize = 4;
/// What an Accept/Reject call keeps of its claims' lease besides `CALL_TIMEOUT` (`ServiceRun::act_until`): for
/// the moment between reading the clock for the claims and for the invocation's timers, and for clocks of
/// two execution environments that differ a little.
pub const LEASE_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);
/// Why an Accept/Reject was not started: too little of its claims' lease was left (`ServiceRun::act_until`).
const CLAIM_LEASE_ENDING: (&str, &str) = (
    "ClaimLeaseEnding",
    "too little of the claims' lease was left to make the call before another invocation may take them over",
);
/// Within one invocation, Describe is asked again after these pauses before the message is failed.
const NOT_VISIBLE_PAUSES_MS: [u64; 2] = [250, 1000];

/// What an invocation keeps of its time after waiting for EC2, to finish its batch: the notification steps
/// of up to 1,000 records, 16 calls at a time, take a few seconds.
pub const FINISH_RESERVE_MS: i64 = 15_000;
const FINISH_RESERVE: std::time::Duration = std::time::Duration::from_millis(FINISH_RESERVE_MS as u64);

/// How long an invocation may wait for EC2 (decide's budget and EC2's tokens): the configured patience, but
/// never past its deadline (`deadline_ms`, Lambda's, in ms since the epoch; 0 when unknown) less
/// `FINISH_RESERVE_MS`, so that a batch waiting for EC2 ends before Lambda's timeout would cut it off.
pub fn patience_within(configured: std::time::Duration, deadline_ms: u64, now_ms: i64) -> std::time::Duration {
    time_left(deadline_ms, now_ms, FINISH_RESERVE_MS).map_or(configured, |left| configured.min(left))
}

/// `decide`'s entry points, over any implementation of its ports.
impl<C, A, D, N, Q, B> Deps<C, A, D, N, Q, B>
where
    C: Connections,
    A: Allowlist,
    D: DecisionLog,
    N: Notifier,
    Q: QuotaLedger,
    B: CallBudget,
{
    /// The Lambda entry point: reports partial batch failures; fails the whole invocation only when nothing
    /// in the batch could be done because of AWS errors (so it shows as an error and is retried).
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, DecideError> {
        let (answer, metrics) = self.invoke(event).await;
        metrics.flush("decide");
        answer
    }

    /// [`Self::handle`] without writing the counters: what the invocation answers, and its counters. Stops the
    /// batch `CUT_OFF_MS` before the deadline (`DecideError::CutShort`, counted `CutShort`), keeping the
    /// counters of what it did until then.
    pub async fn invoke(&self, event: LambdaEvent<SqsEvent>) -> (Result<SqsBatchResponse, DecideError>, Metrics) {
        let total = event.payload.records.len();
        let span = tracing::info_span!("decide", request_id = %event.context.request_id, messages = total);
        let now = now_ms();
        let patience = patience_within(self.config.ec2_patience, event.context.deadline, now);
        let counters = Mutex::new(Tally::default());
        let batch = self
            .decide_batch_counting(event.payload, &event.context.request_id, now, patience, &counters)
            .instrument(span);
        let failed = match time_left(event.context.deadline, now, CUT_OFF_MS) {
            None => Some(batch.await),
            Some(left) => tokio::select! {
                failed = batch => Some(failed),
                () = tokio::time::sleep(left) => None,
            },
        };
        let Tally { mut metrics, at_risk } = counters.into_inner().unwrap_or_else(PoisonError::into_inner);
        let Some(failed_messages) = failed else {
            error!(
                messages = total,
                "the invocation neared its deadline with its batch unfinished; stopped, the batch will be retried"
            );
            metrics.incr(names::CUT_SHORT);
            if at_risk > 0 {
                // Stopped between a `notifying` mark and its publish's answer: never published from again.
                error!(records = at_risk, "stopped with notifications marked but unanswered; they may be lost");
                metrics.add(names::NOTIFY_UNCERTAIN, at_risk);
            }
            return (Err(DecideError::CutShort { total }), metrics);
        };
        (answer(total, failed_messages, &metrics), metrics)
    }

    /// Decides a batch with the configured patience. `claim` names this invocation in the records it claims.
    pub async fn decide_batch(&self, event: SqsEvent, claim: &str, now: i64) -> BatchOutcome {
        self.decide_batch_within(event, claim, now, self.config.ec2_patience).await
    }

    /// Decides a batch, waiting for EC2 at most `patience` in all.
    pub async fn decide_batch_within(
        &self,
        event: SqsEvent,
        claim: &str,
        now: i64,
        patience: std::time::Duration,
    ) -> BatchOutcome {
        let counters = Mutex::new(Tally::default());
        let failed_messages = self.decide_batch_counting(event, claim, now, patience, &counters).await;
        BatchOutcome { failed_messages, metrics: counters.into_inner().unwrap_or_else(PoisonError::into_inner).metrics }
    }

    /// Decides a batch, counting into `counters` as it goes (so that what was counted is there even when the
    /// batch is stopped before it ends); returns the SQS message IDs to retry.
    async fn decide_batch_counting(
        &self,
        event: SqsEvent,
        claim: &str,
        now: i64,
        patience: std::time::Duration,
        counters: &Mutex<Tally>,
    ) -> Vec<String> {
        let mut failed_messages = Vec::new();
        let mut work: BTreeMap<ServiceId, ServiceWork> = BTreeMap::new();
        let mut deliveries: Vec<(String, Announced)> = Vec::new();
        for (i, record) in event.records.into_iter().enumerate() {
            let receives = record.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1);
            let message_id = record.message_id.unwrap_or_else(|| format!("#{i}"));
            if record.event_source_arn.as_deref() == Some(self.config.deliveries_queue_arn.as_str()) {
                let announced = record
                    .message_attributes
                    .get(ANNOUNCED_ATTRIBUTE)
                    .and_then(|a| a.string_value.as_deref())
                    .ok_or_else(|| format!("no `{ANNOUNCED_ATTRIBUTE}` message attribute"))
                    .and_then(Announced::parse);
                match announced {
                    Ok(a) => deliveries.push((message_id, a)),
                    // Only the stack's topic delivers here (the queue's policy), so this is a notification
                    // of another version or a hand-sent message: nothing to confirm, and retrying cannot
                    // change that.
                    Err(e) => {
                        error!(message_id, error = %e, "a delivered notification that names no record; nothing confirmed, dropped");
                        count(counters, names::INVALID_EVENTS, 1);
                    }
                }
                continue;
            }
            let request = match record.body.as_deref().map(parse_event) {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    error!(message_id, error = %e, "invalid Connection Request event; no action taken, kept for the DLQ");
                    count(counters, names::INVALID_EVENTS, 1);
                    failed_messages.push(message_id);
                    continue;
                }
                None => {
                    error!(message_id, "SQS message without a body; no action taken, kept for the DLQ");
                    count(counters, names::INVALID_EVENTS, 1);
                    failed_messages.push(message_id);
                    continue;
                }
            };
            if !self.config.managed.contains(&request.service_id) {
                info!(message_id, service_id = %request.service_id, "service is not managed by Gatekeeper; ignored");
                count(counters, names::UNMANAGED, 1);
                continue;
            }
            let entry = work.entry(request.service_id).or_default().entry(request.endpoint_id).or_insert(Work {
                trigger: request.trigger,
                messages: vec![],
                receives: 0,
            });
            if !entry.messages.is_empty() {
                count(counters, names::DUPLICATES, 1);
            }
            // The same connection requested for several reasons: a sweep's request only re-announces a
            // hold a day on, so any other reason (an allowlist change, a person's) is the one decided on.
            if entry.trigger == Trigger::Sweep {
                entry.trigger = request.trigger;
            }
            entry.messages.push(message_id);
            entry.receives = entry.receives.max(receives);
        }
        let started = tokio::time::Instant::now();
        let patience_until = started + patience;
        // The claims this invocation makes hold until `now` + the lease (`DecisionRecord::claim`); an
        // Accept/Reject call starts only while one call's longest time and `LEASE_MARGIN` are left of that.
        let lease = std::time::Duration::from_millis(u64::try_from(self.config.lease_ms).unwrap_or(0));
        let act_until = (started + lease).checked_sub(CALL_TIMEOUT + LEASE_MARGIN).unwrap_or(started);
        // Services are independent (their own connections, allowlist partition and EC2 calls), so a batch over
        // many services decides a few at a time: one service's wait for an EC2 token overlaps another's work.
        // Owned items: a closure over borrowed ones trips rustc's higher-ranked `Send` inference.
        let runs = stream::iter(work)
            .map(|(service, requests)| async move {
                let run = ServiceRun { deps: self, service: &service, patience_until, act_until, claim, now, counters };
                let failed = run.run(&requests).await;
                (requests, failed)
            })
            .buffer_unordered(SERVICES_IN_FLIGHT)
            .collect::<Vec<_>>();
        let (runs, unconfirmed) = tokio::join!(runs, self.confirm_all(deliveries, counters));
        failed_messages.extend(unconfirmed);
        for (requests, failed) in runs {
            for endpoint in failed {
                if let Some(w) = requests.get(&endpoint) {
                    failed_messages.extend(w.messages.iter().cloned());
                }
            }
        }
        failed_messages
    }
}

impl<C, A, D, N, Q, B> Deps<C, A, D, N, Q, B>
where
    D: DecisionLog,
{
    /// Marks `notified` the records whose notifications SNS delivered to the deliveries queue, side by side
    /// (at most [`IN_FLIGHT`] in flight); returns the SQS message IDs of those that could not be marked for
    /// an AWS error (retried). A record that moved on (a hold decided again) is left as it stands.
    async fn confirm_all(&self, deliveries: Vec<(String, Announced)>, counters: &Mutex<Tally>) -> Vec<String> {
        let log = &self.log;
        stream::iter(deliveries)
            .map(|(message_id, a)| async move {
                match log.confirm(&a).await {
                    Ok(Written::Yes) => {
                        count(counters, names::DELIVERED, 1);
                        None
                    }
                    Ok(Written::Lost) => {
                        info!(endpoint_id = %a.endpoint_id, version = a.version, "delivered, but the record has moved on since; left as it stands");
                        None
                    }
                    Err(e) => {
                        warn!(endpoint_id = %a.endpoint_id, error = %e, "could not record a delivered notification; retried");
                        count(counters, names::ERRORS, 1);
                        Some(message_id)
                    }
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .filter_map(std::future::ready)
            .collect()
            .await
    }
}

/// What an invocation has counted, counted into as things happen (so that a batch stopped before its end
/// keeps it), and how many of its notifications are at risk right now.
#[derive(Debug, Default)]
struct Tally {
    metrics: Metrics,
    /// Records whose `notifying` mark has been sent and whose publish has not answered yet. Stopped now,
    /// each may be left `notifying` with nothing published, so a stop (`CUT_OFF_MS`) counts each as
    /// `NotifyUncertain`.
    at_risk: u64,
}

/// Adds `n` to the counter `name` of an invocation's counters.
fn count(counters: &Mutex<Tally>, name: &'static str, n: u64) {
    counters.lock().unwrap_or_else(PoisonError::into_inner).metrics.add(name, n);
}

struct ServiceRun<'a, C, A, D, N, Q, B> {
    deps: &'a Deps<C, A, D, N, Q, B>,
    service: &'a ServiceId,
    /// Until when this invocation may wait for EC2's tokens (shared by all its services). The status writes
    /// start no round that could outlast the reserve after it (`advance_firmly`).
    patience_until: tokio::time::Instant,
    /// Until when this invocation may start an Accept/Reject call: its claims' lease less one call's longest
    /// time (`CALL_TIMEOUT`, the SDK's retries included) and `LEASE_MARGIN`. After it another invocation may take a claim over
    /// (`ClaimLeaseSeconds` may be as short as 10 s, and the waits for EC2 as long as 45 s), and both would
    /// act; so a call that cannot land within the lease is not made, and the message is retried.
    act_until: tokio::time::Instant,
    claim: &'a str,
    now: i64,
    /// The invocation's counters, shared by its services and counted into as things happen.
    counters: &'a Mutex<Tally>,
}

impl<C, A, D, N, Q, B> ServiceRun<'_, C, A, D, N, Q, B>
where
    C: Connections,
    A: Allowlist,
    D: DecisionLog,
    N: Notifier,
    Q: QuotaLedger,
    B: CallBudget,
{
    fn count(&self, name: &'static str) {
        count(self.counters, name, 1);
    }

    fn fail(&mut self, failed: &mut BTreeSet<EndpointId>, endpoint: &EndpointId, e: &PortError) {
        error!(service_id = %self.service, endpoint_id = %endpoint, error = %e, kind = ?e.kind, "AWS call failed; the request will be retried");
        self.count(names::ERRORS);
        failed.insert(endpoint.clone());
    }

    /// Closes `r` at `status` (`gone` or `superseded`: no action taken), counting `Superseded` for a close that
    /// landed; a write that fails fails its endpoint. Returns whether the write was answered (landed or lost).
    async fn close(&mut self, r: &DecisionRecord, status: Status, failed: &mut BTreeSet<EndpointId>) -> bool {
        match self.deps.log.advance(r, status, self.claim).await {
            Ok(written) => {
                if written == Written::Yes && status == Status::Superseded {
                    self.count(names::SUPERSEDED);
                }
                true
            }
            Err(e) => {
                self.fail(failed, &r.endpoint_id, &e);
                false
            }
        }
    }

    /// Returns the endpoints whose messages must be retried.
    ///
    /// Round trips: Describe and the allowlist go out together; then the claims, all at once (at most
    /// [`IN_FLIGHT`] calls in flight), each a conditional put made without reading the record first; one
    /// Accept and one Reject call; then each record's notifying write and publish, the records side by side:
    /// five round trips (the `notified` write follows SNS's delivery, in another invocation). Records are
    /// read first only for connections not waiting for acceptance, and a claim that finds a record is
    /// planned again with it (a second round of claims).
    async fn run(mut self, requests: &ServiceWork) -> BTreeSet<EndpointId> {
        let mut failed = BTreeSet::new();
        let endpoints: Vec<EndpointId> = requests.keys().cloned().collect();
        let filter = ConnectionFilter { endpoints: endpoints.clone(), ..Default::default() };
        // Neither read depends on the other: they go out together.
        let (described, rules) = tokio::join!(
            self.deps.connections.describe(self.service, &filter),
            self.deps.allowlist.rules_for(self.service),
        );
        let mut conns = match described {
            Ok(c) => c,
            Err(e) => {
                for endpoint in requests.keys() {
                    self.fail(&mut failed, endpoint, &e);
                }
                return failed;
            }
        };
        let missing = |conns: &[Connection]| -> Vec<EndpointId> {
            requests.keys().filter(|e| !conns.iter().any(|c| &c.endpoint_id == *e)).cloned().collect()
        };
        // "Not found" right after a Connect notification means "not yet": ask again, briefly.
        for pause in NOT_VISIBLE_PAUSES_MS {
            let endpoints = missing(&conns);
            if endpoints.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            let filter = ConnectionFilter { endpoints, ..Default::default() };
            match self.deps.connections.describe(self.service, &filter).await {
                Ok(more) => conns.extend(more),
                Err(e) => {
                    warn!(service_id = %self.service, error = %e, "could not ask EC2 again about connections it did not show");
                    break;
                }
            }
        }
        let mut unlisted = Vec::new();
        for endpoint in missing(&conns) {
            let receives = requests.get(&endpoint).map_or(u32::MAX, |w| w.receives);
            if receives < NOT_VISIBLE_RECEIVES {
                info!(service_id = %self.service, endpoint_id = %endpoint, receives, "EC2 does not show this connection yet; retried");
                self.count(names::NOT_VISIBLE_YET);
                failed.insert(endpoint);
            } else {
                info!(service_id = %self.service, endpoint_id = %endpoint, receives, "EC2 has no such connection for the service; what its records owe is finished without it");
                self.count(names::NOT_PENDING);
                unlisted.push(endpoint);
            }
        }
        if let Ok(r) = &rules {
            for bad in &r.invalid {
                error!(error = %bad, "invalid allowlist item skipped; it never accepts");
            }
            count(self.counters, names::INVALID_RULES, r.invalid.len() as u64);
        }

        // A connection waiting for acceptance is claimed without reading its record first: a new one has
        // none, and otherwise the claim's condition (no record yet) fails and answers the record it found,
        // which is then planned for as if it had been read (a second, rarer round of claims). Records are
        // read first only for connections in other states (a retry finishing a notification, a revocation,
        // a dead claim to close), which need them to know what is owed.
        let settled: Vec<EndpointId> = conns
            .iter()
            .filter(|c| c.state != ConnectionState::PendingAcceptance)
            .map(|c| c.endpoint_id.clone())
            .collect();
        let records = self.records_of(&[settled, unlisted.clone()].concat()).await;
        let mut claims: Vec<Claiming> = Vec::new();
        let mut to_notify: Vec<DecisionRecord> = Vec::new();
        // Connections EC2 does not list even after their receives (deleted, and gone from its answers): the
        // sweep re-requests their owed records for as long as they are owed, so these are finished here,
        // without EC2: an `acted` record's notification (EC2 was told), and a dead claim closed `gone` (the
        // protocol decides it again should EC2 show the connection waiting after all).
        for endpoint in &unlisted {
            match records.get(endpoint) {
                Some(Ok(stored)) => {
                    for r in stored {
                        match r.status {
                            Status::Acted => to_notify.push(r.clone()),
                            Status::Claimed if r.lease_until_ms <= self.now => {
                                self.close(r, Status::Gone, &mut failed).await;
                            }
                            _ => {}
                        }
                    }
                }
                Some(Err(e)) => self.fail(&mut failed, endpoint, e),
                None => {}
            }
        }
        for conn in &conns {
            let optimistic = conn.state == ConnectionState::PendingAcceptance;
            let stored: &[DecisionRecord] = if optimistic {
                &[]
            } else {
                match records.get(&conn.endpoint_id) {
                    Some(Ok(r)) => r,
                    Some(Err(e)) => {
                        self.fail(&mut failed, &conn.endpoint_id, e);
                        continue;
                    }
                    // Describe answers only for the endpoints asked about, whose records were all read.
                    None => continue,
                }
            };
            match self.plan(conn, stored, requests, &rules, &mut failed).await {
                Plan::Claim(record, previous) => claims.push(Claiming { record, previous, optimistic }),
                Plan::Notify(r) => to_notify.push(r),
                Plan::Nothing => {}
            }
        }
        // Decide's budget of EC2 calls is asked alongside the claims, for the calls they will need.
        let needs = |o: Outcome| claims.iter().any(|c| c.record.outcome == o);
        let wanted = [needs(Outcome::Accept), needs(Outcome::Reject)];
        let ((claimed, states_now), mut pretaken) = tokio::join!(self.claim_all(claims), self.pre_take(wanted));
        let (won, found) = self.sort_claims(claimed, &mut failed);
        let by_endpoint: HashMap<&EndpointId, &Connection> = conns.iter().map(|c| (&c.endpoint_id, c)).collect();
        let mut again: Vec<Claiming> = Vec::new();
        for standing in found {
            let Some(conn) = by_endpoint.get(&standing.endpoint_id) else { continue };
            match self.plan(conn, std::slice::from_ref(&standing), requests, &rules, &mut failed).await {
                Plan::Claim(record, previous) => again.push(Claiming { record, previous, optimistic: false }),
                Plan::Notify(r) => to_notify.push(r),
                Plan::Nothing => {}
            }
        }
        let (claimed_again, states_again) = self.claim_all(again).await;
        let (won_again, _) = self.sort_claims(claimed_again, &mut failed);
        // Holds are only announced; each round's rejects are checked against that round's re-read.
        let mut acts: Vec<DecisionRecord> = Vec::new();
        for (won, states) in [(won, &states_now), (won_again, &states_again)] {
            let (holds, act): (Vec<_>, Vec<_>) = won.into_iter().partition(|r| r.outcome == Outcome::Hold);
            to_notify.extend(holds);
            let (rejects, accepts): (Vec<_>, Vec<_>) = act.into_iter().partition(|r| r.outcome == Outcome::Reject);
            acts.extend(accepts);
            let (to_act, done) = self.recheck_rejects(rejects, states, &mut failed).await;
            acts.extend(to_act);
            to_notify.extend(done);
        }

        // One accept and one reject call per service per batch (chunked for very large batches).
        // Tenant → the connection IDs accepted for it: tagged alongside the notifications.
        let mut to_tag: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let connection_ids: HashMap<&EndpointId, &String> =
            conns.iter().filter_map(|c| Some((&c.endpoint_id, c.connection_id.as_ref()?))).collect();
        for (i, outcome) in [Outcome::Accept, Outcome::Reject].into_iter().enumerate() {
            let batch: Vec<DecisionRecord> = acts.extract_if(.., |r| r.outcome == outcome).collect();
            for chunk in batch.chunks(MAX_IDS_PER_CALL) {
                let acted = self.act(outcome, chunk, pretaken[i].take(), &mut failed).await;
                for r in acted.iter().filter(|r| r.outcome == Outcome::Accept) {
                    if let (Some(tenant), Some(id)) = (&r.tenant, connection_ids.get(&r.endpoint_id)) {
                        to_tag.entry(tenant.clone()).or_default().push((*id).clone());
                    }
                }
                to_notify.extend(acted);
            }
        }
        let this = &self;
        let finishing = stream::iter(to_notify).map(|r| this.finish(r)).buffered(IN_FLIGHT).collect::<Vec<_>>();
        let (finished, untagged) = tokio::join!(finishing, this.tag_tenants(to_tag));
        count(self.counters, names::TENANT_TAG_FAILED, untagged);
        for f in finished {
            if let Some(e) = f.error {
                self.fail(&mut failed, &f.endpoint_id, &e);
            }
        }
        failed
    }

    /// What to do for `conn`, given its records (`stored`: both kinds, any creation time): claim it (a
    /// decision or revocation to make), notify (EC2 already reflects a decision whose notification is
    /// owed), or nothing (skipped, closed, or failed: then its endpoint is in `failed`).
    async fn plan(
        &mut self,
        conn: &Connection,
        stored: &[DecisionRecord],
        requests: &ServiceWork,
        rules: &PortResult<Rules>,
        failed: &mut BTreeSet<EndpointId>,
    ) -> Plan {
        let trigger = requests.get(&conn.endpoint_id).map_or(Trigger::Manual, |w| w.trigger);
        let record_of =
            |kind: Kind| stored.iter().find(|r| r.kind == kind && r.created_at_ms == conn.created_at_ms).cloned();
        let mut kind = Kind::Decision;
        let mut step = next_step(Kind::Decision, conn, record_of(Kind::Decision), trigger, self.now);
        let revocable = conn.state.is_accepted() || conn.state == ConnectionState::Rejected;
        // A decided (or never decided) connection that is no longer pending may be due a revocation.
        if matches!(step, Step::Skip(why) if why.may_revoke()) && self.deps.config.revoke && revocable {
            kind = Kind::Revocation;
            step = next_step(Kind::Revocation, conn, record_of(Kind::Revocation), trigger, self.now);
        }
        let (previous, previous_hold) = match step {
            Step::Skip(why) => {
                info!(endpoint_id = %conn.endpoint_id, state = conn.state.as_str(), why = why.as_str(), "no action");
                self.count(match why {
                    Skip::NotPending => names::NOT_PENDING,
                    Skip::HeldRecently => names::HELD_WAITING,
                    _ => names::DUPLICATES,
                });
                // A stale read can hide an accepted connection a revocation is asked for: ask again once
                // EC2 has caught up (bounded like a connection it does not show yet).
                let stale = why == Skip::StaleRead
                    && self.deps.config.revoke
                    && requests.get(&conn.endpoint_id).is_some_and(|w| w.receives < NOT_VISIBLE_RECEIVES);
                if why.retry() || stale {
                    failed.insert(conn.endpoint_id.clone());
                }
                return Plan::Nothing;
            }
            Step::Notify(r) => return Plan::Notify(*r),
            Step::Close(r) => {
                info!(endpoint_id = %conn.endpoint_id, state = conn.state.as_str(), "a dead claim's action never took effect; closed");
                if self.close(&r, Status::Superseded, failed).await && self.deps.config.revoke && kind == Kind::Decision
                {
                    failed.insert(conn.endpoint_id.clone());
                }
                return Plan::Nothing;
            }
            Step::Decide { previous, previous_hold } => (previous, previous_hold),
        };
        let rules = match rules {
            Ok(r) => r,
            Err(e) => {
                self.fail(failed, &conn.endpoint_id, e);
                return Plan::Nothing;
            }
        };
        let cfg = &self.deps.config;
        let mut decision = evaluate(conn, rules, &cfg.home_region, self.now / 1000, cfg.default_action);
        if kind == Kind::Revocation {
            let why_not = if decision.outcome == Outcome::Accept {
                Some("still allowed; not revoked")
            } else if decision.reason == Reason::InvalidRuleUnscoped {
                Some("an invalid allowlist item blocks new accepts; it never revokes")
            } else {
                None
            };
            if let Some(why_not) = why_not {
                info!(endpoint_id = %conn.endpoint_id, "{why_not}");
                // A dead revocation claim no longer wanted is closed, or the sweep would ask for it forever.
                if let Some(dead) = record_of(Kind::Revocation).filter(|_| previous.is_some()) {
                    self.close(&dead, Status::Superseded, failed).await;
                }
                return Plan::Nothing;
            }
            decision.outcome = Outcome::Reject;
            decision.detail = format!("access revoked: {}", decision.detail);
        } else if decision.outcome == Outcome::Accept
            && let Some(cap) = decision.max_endpoints
        {
            // One at a time: slots of one owner's ledger are taken in turn. Taking a slot is idempotent
            // per endpoint, so a claim that then finds a record (and plans again) costs nothing twice.
            match self.take_quota_slot(conn, cap).await {
                Ok(None) => {}
                Ok(Some(used)) => decision = apply_quota(decision, used, cfg.default_action),
                Err(e) => {
                    self.fail(failed, &conn.endpoint_id, &e);
                    return Plan::Nothing;
                }
            }
        }
        if previous_hold && decision.outcome == Outcome::Hold {
            info!(endpoint_id = %conn.endpoint_id, "still held; already notified");
            self.count(names::DUPLICATES);
            return Plan::Nothing;
        }
        let cfg = &self.deps.config;
        let mut record =
            DecisionRecord::claim(kind, conn, &decision, trigger, self.now, self.claim, cfg.lease_ms, previous);
        record.expires_at = Some(self.now / 1000 + cfg.retention_s);
        Plan::Claim(record, previous)
    }

    /// Makes the claims side by side (at most [`IN_FLIGHT`] in flight) and, alongside them, re-reads the
    /// states of the connections about to be rejected (decided rejects, not revocations: `recheck_rejects`).
    async fn claim_all(
        &self,
        claims: Vec<Claiming>,
    ) -> (Vec<(Claiming, PortResult<Claim>)>, PortResult<HashMap<EndpointId, ConnectionState>>) {
        let to_reject: Vec<EndpointId> = claims
            .iter()
            .filter(|c| c.record.kind == Kind::Decision && c.record.outcome == Outcome::Reject)
            .map(|c| c.record.endpoint_id.clone())
            .collect();
        let log = &self.deps.log;
        let claiming = stream::iter(claims)
            .map(|c| async move {
                let result = log.claim(&c.record, c.previous).await;
                (c, result)
            })
            .buffered(IN_FLIGHT)
            .collect::<Vec<_>>();
        tokio::join!(claiming, self.states_now(&to_reject))
    }

    /// Sorts the answers to the claims: the records won, and the records that optimistic claims found
    /// standing (to be planned for again). Every other lost claim is retried later.
    fn sort_claims(
        &mut self,
        claimed: Vec<(Claiming, PortResult<Claim>)>,
        failed: &mut BTreeSet<EndpointId>,
    ) -> (Vec<DecisionRecord>, Vec<DecisionRecord>) {
        let (mut won, mut found) = (Vec::new(), Vec::new());
        for (c, result) in claimed {
            let record = c.record;
            match result {
                Ok(Claim::Won) => {
                    info!(endpoint_id = %record.endpoint_id, owner = %record.owner, decision = record.outcome.as_str(), reason = %record.reason, "decided");
                    won.push(record);
                }
                Ok(Claim::Lost(Some(standing))) if c.optimistic => found.push(*standing),
                Ok(Claim::Lost(_)) => {
                    info!(endpoint_id = %record.endpoint_id, "another invocation claimed this connection first; retried later");
                    self.count(names::DUPLICATES);
                    failed.insert(record.endpoint_id.clone());
                }
                Err(e) => self.fail(failed, &record.endpoint_id, &e),
            }
        }
        (won, found)
    }

    /// Every record of each endpoint (both kinds), read side by side; by endpoint.
    async fn records_of(&self, endpoints: &[EndpointId]) -> HashMap<EndpointId, PortResult<Vec<DecisionRecord>>> {
        let log = &self.deps.log;
        // Owned items: a closure over borrowed ones trips rustc's higher-ranked `Send` inference.
        stream::iter(endpoints.to_vec())
            .map(|e| async move {
                let records = log.records(&e).await;
                (e, records)
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await
    }

    /// Tags accepted connections with their tenant (`gatekeeper:tenant`), one CreateTags per tenant. Best
    /// effort: the accept and its notification stand without it, so a failure is logged and counted
    /// (`TenantTagFailed`; the connections not tagged are returned), never retried through the message (a
    /// retry would find the decision done).
    async fn tag_tenants(&self, to_tag: BTreeMap<String, Vec<String>>) -> u64 {
        let mut untagged = 0;
        for (tenant, ids) in to_tag {
            for chunk in ids.chunks(MAX_IDS_PER_CALL) {
                if let Err(e) = self.deps.connections.tag(chunk, TENANT_TAG, &tenant).await {
                    warn!(service_id = %self.service, tenant, connections = ?chunk, error = %e, "could not tag accepted connections with their tenant");
                    untagged += chunk.len() as u64;
                }
            }
        }
        untagged
    }

    /// Claims whose action was not sent to EC2 because of `e`: their messages are retried, and each claim
    /// ends now, so the retry takes it over at once (no call of this invocation can land after it). A claim
    /// whose call went out is kept instead ([`Self::took_effect_after_all`]).
    async fn give_up(&mut self, claims: &[DecisionRecord], e: &PortError, failed: &mut BTreeSet<EndpointId>) {
        for r in claims {
            self.fail(failed, &r.endpoint_id, e);
            self.end_early(r).await;
        }
    }

    /// Ends this invocation's claim on `r` now ([`DecisionLog::abandon`]), so a retry takes it over at once;
    /// if that fails, the claim ends with its lease.
    async fn end_early(&self, r: &DecisionRecord) {
        if let Err(e) = self.deps.log.abandon(r).await {
            warn!(endpoint_id = %r.endpoint_id, error = %e, "could not end the claim early; it ends with its lease");
        }
    }

    /// The state EC2 shows now for each of `endpoints` (none asked about: none, without a call).
    async fn states_now(&self, endpoints: &[EndpointId]) -> PortResult<HashMap<EndpointId, ConnectionState>> {
        if endpoints.is_empty() {
            return Ok(HashMap::new());
        }
        let filter = ConnectionFilter { endpoints: endpoints.to_vec(), ..Default::default() };
        let conns = self.deps.connections.describe(self.service, &filter).await?;
        Ok(conns.into_iter().map(|c| (c.endpoint_id, c.state)).collect())
    }

    /// EC2's Reject also revokes an accepted connection, so a reject decided on a `pendingAcceptance`
    /// read is checked against a second read made alongside its claim (`states_now`), just before the
    /// call. Returns the records to reject, and those EC2 shows rejected already (to announce).
    /// - Still `pendingAcceptance`: rejected.
    /// - `rejected` already: the reject took effect (an earlier claim's Reject that got no answer, which the
    ///   first, eventually consistent read did not show yet, or a person's): announced, as the retry of an
    ///   unanswered call announces it (`Ec2Rechecked`), not closed unannounced.
    /// - Another state (a person accepted it, the consumer deleted it): not rejected, the record closed
    ///   `superseded`; with revocation on, the retry decides whether the new state may stand.
    /// - Not shown at all (deleted and gone, or a read EC2's lag answered without it): not rejected, the
    ///   record closed `gone`, which the protocol decides again if EC2 shows the connection waiting.
    ///
    /// Revocations pass through: they are meant for accepted connections.
    async fn recheck_rejects(
        &mut self,
        batch: Vec<DecisionRecord>,
        states_now: &PortResult<HashMap<EndpointId, ConnectionState>>,
        failed: &mut BTreeSet<EndpointId>,
    ) -> (Vec<DecisionRecord>, Vec<DecisionRecord>) {
        let (revocations, decisions): (Vec<_>, Vec<_>) = batch.into_iter().partition(|r| r.kind == Kind::Revocation);
        if decisions.is_empty() {
            return (revocations, vec![]);
        }
        let states = match states_now {
            Ok(s) => s,
            Err(e) => {
                self.give_up(&decisions, e, failed).await;
                return (revocations, vec![]);
            }
        };
        let (mut out, mut done) = (revocations, vec![]);
        for r in decisions {
            match states.get(&r.endpoint_id) {
                Some(ConnectionState::PendingAcceptance) => {
                    out.push(r);
                    continue;
                }
                Some(state) if took_effect(&r, state) => {
                    info!(endpoint_id = %r.endpoint_id, "EC2 shows it rejected already, just before the reject; announcing it");
                    self.count(names::EC2_RECHECKED);
                    done.push(r);
                    continue;
                }
                Some(_) => {}
                // Not shown: deleted and gone, or a read EC2's lag answered without it. Closed `gone`, which
                // the protocol decides again if EC2 shows the connection waiting (the sweep asks for every
                // waiting connection); `superseded` would close it for good.
                None => {
                    info!(endpoint_id = %r.endpoint_id, "EC2 did not show it just before the reject; not rejected, closed as gone");
                    self.close(&r, Status::Gone, failed).await;
                    continue;
                }
            }
            info!(endpoint_id = %r.endpoint_id, "no longer pendingAcceptance just before the reject; not rejected");
            // With revocation on, the retry decides whether the new state may stand.
            if self.close(&r, Status::Superseded, failed).await && self.deps.config.revoke {
                failed.insert(r.endpoint_id.clone());
            }
        }
        (out, done)
    }

    /// Takes a `max_endpoints` slot for `conn` in its owner's ledger: `None` when it holds one now,
    /// `Some(used)` when all are taken. The ledger catches up with EC2 first (accepted connections it
    /// missed count; rejected or deleted ones free their slot), and is written conditionally, so two
    /// invocations never both take the last slot, and an accept EC2 does not show yet keeps its own.
    async fn take_quota_slot(&self, conn: &Connection, cap: u32) -> Result<Option<u32>, PortError> {
        for _ in 0..5 {
            let (slots, version) = self.deps.quota.read(self.service, &conn.owner).await?;
            let accepted = ConnectionFilter { owner: Some(conn.owner.clone()), ..ConnectionFilter::accepted() };
            let mut seen = Seen {
                accepted: self
                    .deps
                    .connections
                    .describe(self.service, &accepted)
                    .await?
                    .into_iter()
                    .map(|c| c.endpoint_id.to_string())
                    .collect(),
                ..Default::default()
            };
            let members: Vec<EndpointId> = slots.keys().filter_map(|k| EndpointId::parse(k).ok()).collect();
            if !members.is_empty() {
                let filter = ConnectionFilter { endpoints: members, ..Default::default() };
                for c in self.deps.connections.describe(self.service, &filter).await? {
                    seen.members.insert(c.endpoint_id.to_string(), c.state);
                }
            }
            match take_slot(&slots, &conn.endpoint_id, cap, &seen, self.now) {
                Err(used) => return Ok(Some(used)),
                Ok(next) if next == slots => return Ok(None),
                Ok(next) => match self.deps.quota.write(self.service, &conn.owner, &next, version).await? {
                    Written::Yes => return Ok(None),
                    Written::Lost => info!(owner = %conn.owner, "quota ledger changed under us; reading it again"),
                },
            }
        }
        Err(PortError {
            service: "dynamodb",
            operation: "PutItem",
            kind: ErrorKind::Retryable,
            code: "QuotaLedgerContended".into(),
            message: "the quota ledger changed five times in a row; retried later".into(),
        })
    }

    /// Asks decide's budget for an Accept and a Reject call, where `wanted` (in that order): what the
    /// budget answered for each (`None`: not asked).
    async fn pre_take(&self, wanted: [bool; 2]) -> [Option<PortResult<Budget>>; 2] {
        let budget = &self.deps.budget;
        let ask = |want: bool, api: &'static str| async move {
            if want { Some(budget.take(api, now_ms()).await) } else { None }
        };
        let (accept, reject) = tokio::join!(ask(wanted[0], ACCEPT_API), ask(wanted[1], REJECT_API));
        [accept, reject]
    }

    /// Waits until decide's budget of EC2 calls has room for one call of `api` (`answer`: what the budget
    /// already answered, if it was asked alongside the claims). `false` when the next window with room
    /// starts after the invocation's patience. The budget is a courtesy to EC2's rate limit, not a
    /// guarantee: when it cannot be read, the call goes ahead (and waits on EC2's throttling if need be).
    async fn budget_room(&mut self, api: &'static str, mut answer: Option<PortResult<Budget>>) -> bool {
        loop {
            let answered = match answer.take() {
                Some(a) => a,
                None => self.deps.budget.take(api, now_ms()).await,
            };
            let next = match answered {
                Ok(Budget::Taken(until)) if now_ms() < until => return true,
                // Taken alongside the claims, in a window that has ended since: the call would land in a
                // window that does not count it, so a call of this window is taken instead.
                Ok(Budget::Taken(_)) => {
                    answer = Some(self.deps.budget.take(api, now_ms()).await);
                    continue;
                }
                Ok(Budget::FullUntil(next)) => next,
                Err(e) => {
                    warn!(api, error = %e, "decide's budget of EC2 calls could not be read; calling EC2 without it");
                    return true;
                }
            };
            let wait = std::time::Duration::from_millis(u64::try_from(next - now_ms()).unwrap_or(0).min(60_000));
            if tokio::time::Instant::now() + wait > self.patience_until.min(self.act_until) {
                return false;
            }
            info!(service_id = %self.service, api, wait_ms = wait.as_millis() as u64, "decide's budget of EC2 calls is used up for now; waiting for the next window");
            self.count(names::EC2_BUDGET_WAITS);
            tokio::time::sleep(wait).await;
        }
    }

    /// Calls EC2 for one chunk; returns the records now owed a notification.
    async fn act(
        &mut self,
        outcome: Outcome,
        chunk: &[DecisionRecord],
        pretaken: Option<PortResult<Budget>>,
        failed: &mut BTreeSet<EndpointId>,
    ) -> Vec<DecisionRecord> {
        let ids: Vec<EndpointId> = chunk.iter().map(|r| r.endpoint_id.clone()).collect();
        let api = if outcome == Outcome::Accept { ACCEPT_API } else { REJECT_API };
        // No call is made, so none can land: the claims end now, and the retry takes them over at once. The
        // lease is checked again after the budget, whose DynamoDB call may itself take `CALL_TIMEOUT`.
        let act_until = self.act_until;
        let lease_ending = || tokio::time::Instant::now() > act_until;
        let no_call = if lease_ending() {
            Some(CLAIM_LEASE_ENDING)
        } else if !self.budget_room(api, pretaken).await {
            Some((
                "BudgetExhausted",
                "decide's budget of EC2 calls had no room within the invocation's patience and its claims' lease",
            ))
        } else if lease_ending() {
            Some(CLAIM_LEASE_ENDING)
        } else {
            None
        };
        if let Some((code, message)) = no_call {
            let e = PortError {
                service: "ec2",
                operation: api,
                kind: ErrorKind::Retryable,
                code: code.into(),
                message: message.into(),
            };
            self.give_up(chunk, &e, failed).await;
            return vec![];
        }
        // EC2 throttles Accept/Reject per API and account (docs/aws-facts.md). The claims are held, so a
        // throttled call waits here for a token (1, 2, 4, 8 s, within the invocation's patience) rather than
        // sending the batch back to the queue, which returns it only after the visibility timeout.
        let mut pause = std::time::Duration::from_secs(1);
        // A throttled call went out: its throttle answers only the SDK's last attempt, and an earlier one may
        // have landed unanswered. So once one has, a later call that was never sent does not make the claims'
        // action certain not to land (`give_up` would end them at once); EC2 tells, as after any sent call.
        let mut sent_before = false;
        let result = loop {
            let result = match outcome {
                Outcome::Accept => self.deps.connections.accept(self.service, &ids).await,
                _ => self.deps.connections.reject(self.service, &ids).await,
            };
            match result {
                Err(e)
                    if e.is_rate_limited()
                        && tokio::time::Instant::now() + pause <= self.patience_until.min(self.act_until) =>
                {
                    info!(service_id = %self.service, pause_ms = pause.as_millis() as u64, "EC2 is throttling; waiting for a token");
                    self.count(names::EC2_THROTTLED_WAITS);
                    sent_before = true;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(8));
                }
                other => break other,
            }
        };
        let item_failures = match result {
            Ok(f) => f,
            // The SDK could not send it, nor any call before it: nothing of it reached EC2.
            Err(e) if e.never_sent() && !sent_before => {
                self.give_up(chunk, &e, failed).await;
                return vec![];
            }
            // The call went out and failed, so it may have taken effect all the same: with no answer (a
            // timeout, a dropped connection) certainly, and after any other error too (a throttle, a 5xx, a
            // refusal), which answers only the SDK's last attempt, after one that may have landed
            // unanswered. EC2 tells.
            Err(e) => {
                warn!(service_id = %self.service, error = %e, "EC2's {api} failed once sent; asking EC2 whether it took effect");
                return self
                    .took_effect_after_all(chunk.iter().map(|r| (r.clone(), e.clone())).collect(), failed)
                    .await;
            }
        };
        let by_id: HashMap<&str, _> = item_failures.iter().map(|f| (f.endpoint_id.as_str(), f)).collect();
        // A failure naming none of this call's IDs (the API reference gives each its ResourceId): which one
        // failed is unknown, so none is taken as done on the answer alone; EC2 tells (one Describe).
        let unnamed = item_failures.iter().find(|f| !chunk.iter().any(|r| r.endpoint_id.as_str() == f.endpoint_id));
        let mut done = Vec::new();
        let mut refused = Vec::new();
        for r in chunk {
            match by_id.get(r.endpoint_id.as_str()) {
                // (Not an `if let` guard: those need Rust 1.95, and the workspace declares 1.94.)
                None => match unnamed {
                    Some(f) => {
                        warn!(endpoint_id = %r.endpoint_id, code = %f.code, "EC2 refused an ID it did not name; asking EC2 which");
                        let e = refusal(api, f);
                        refused.push((
                            r.clone(),
                            PortError { message: format!("a failure naming no ID of the call: {}", e.message), ..e },
                        ));
                    }
                    None => done.push(r.clone()),
                },
                Some(f) if f.is_not_found() => {
                    // Closed `gone`; decided again if EC2 shows it waiting after all (its lag: the protocol).
                    info!(endpoint_id = %r.endpoint_id, code = %f.code, "EC2 does not know the endpoint; not acted on, closed as gone");
                    self.close(r, Status::Gone, failed).await;
                }
                Some(f) => {
                    // The state moved under us: a person acted, the consumer deleted it, or this call is the
                    // SDK's repeat of one that landed unanswered (EC2's code for it is not documented).
                    warn!(endpoint_id = %r.endpoint_id, code = %f.code, message = %f.message, "EC2 refused this endpoint; asking EC2 why");
                    refused.push((r.clone(), refusal(api, f)));
                }
            }
        }
        done.extend(self.took_effect_after_all(refused, failed).await);
        done
    }

    /// Whether a call started `after` from now would end, were it to time out
    /// (`shared::adapters::CALL_TIMEOUT`), no later than the finishing reserve after the invocation's patience
    /// less the cut-off: the bound every call made after the EC2 waits keeps, so none carries the batch into
    /// its stop.
    fn call_ends_in_time(&self, after: std::time::Duration) -> bool {
        tokio::time::Instant::now() + after + shared::adapters::CALL_TIMEOUT
            <= self.patience_until + FINISH_RESERVE - CUT_OFF
    }

    /// Of claims whose Accept/Reject failed once sent or was refused for their endpoint (each with why),
    /// those EC2 now shows as decided (`protocol::took_effect`): they go on to their notification in this
    /// invocation, as their retry would after the visibility timeout, and are counted `Ec2Rechecked`, not
    /// as errors. The rest, and all of them if EC2 cannot be asked, are retried, and their claims are kept
    /// until their lease ends: a call the SDK gave up on may still land (EC2 is eventually consistent, and
    /// documents no bound on when a request its client abandoned stops taking effect), and a claim ended
    /// now would let another invocation make a second call meanwhile, possibly the opposite one. One
    /// Describe, made only when a call went wrong, and only if it could time out
    /// (`shared::adapters::CALL_TIMEOUT`) before the finishing reserve less the cut-off: an unanswered
    /// Accept/Reject started late does not carry the batch into its stop.
    async fn took_effect_after_all(
        &mut self,
        unsure: Vec<(DecisionRecord, PortError)>,
        failed: &mut BTreeSet<EndpointId>,
    ) -> Vec<DecisionRecord> {
        if unsure.is_empty() {
            return vec![];
        }
        let filter = ConnectionFilter {
            endpoints: unsure.iter().map(|(r, _)| r.endpoint_id.clone()).collect(),
            ..Default::default()
        };
        let in_time = self.call_ends_in_time(std::time::Duration::ZERO);
        let states: HashMap<EndpointId, ConnectionState> = if !in_time {
            warn!(service_id = %self.service, "too near the deadline to ask EC2 whether its actions took effect; retried");
            HashMap::new()
        } else {
            match self.deps.connections.describe(self.service, &filter).await {
                Ok(conns) => conns.into_iter().map(|c| (c.endpoint_id, c.state)).collect(),
                Err(e) => {
                    warn!(service_id = %self.service, error = %e, "could not ask EC2 whether its actions took effect; retried");
                    HashMap::new()
                }
            }
        };
        let mut done = Vec::new();
        for (r, e) in unsure {
            if states.get(&r.endpoint_id).is_some_and(|state| took_effect(&r, state)) {
                info!(endpoint_id = %r.endpoint_id, error = %e, "EC2 shows the action took effect all the same; announcing it");
                self.count(names::EC2_RECHECKED);
                done.push(r);
            } else {
                self.fail(failed, &r.endpoint_id, &e);
            }
        }
        done
    }

    /// Moves `record` to `status`, trying harder than the SDK's own retries: up to five rounds, with a
    /// growing pause between rounds, none started that could end, if its call timed out
    /// (`shared::adapters::CALL_TIMEOUT`), later than the finishing reserve after the invocation's patience
    /// less the cut-off (`CUT_OFF_MS`): a DynamoDB that answers nothing does not hold the batch into its
    /// stop. For the two writes a lost announcement hangs on: the `notifying` mark
    /// (the publish waits for it) and, after a refused publish, the move back to `acted` (owed). Each is
    /// conditional and recognises its own landed write, so repeating it is harmless.
    async fn advance_firmly(&self, record: &DecisionRecord, status: Status) -> PortResult<Written> {
        let mut pause = std::time::Duration::from_millis(50);
        let mut round = 0;
        loop {
            round += 1;
            let written = self.deps.log.advance(record, status, self.claim).await;
            let in_time = self.call_ends_in_time(pause);
            match written {
                Err(e) if e.kind != ErrorKind::Permanent && round < 5 && in_time => {
                    warn!(endpoint_id = %record.endpoint_id, status = status.as_str(), error = %e, round, "could not write the record's status; trying again");
                }
                other => return other,
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }

    /// Whether `record` stands marked `notifying` by this invocation (read consistently): after a mark that
    /// got no answer, whether it landed.
    async fn marked_by_us(&self, record: &DecisionRecord) -> PortResult<bool> {
        let records = self.deps.log.records(&record.endpoint_id).await?;
        Ok(records.iter().any(|r| {
            r.kind == record.kind
                && r.created_at_ms == record.created_at_ms
                && r.status == Status::Notifying
                && r.claim == self.claim
                && r.version == record.version
        }))
    }

    /// Records that EC2 has been told and the notification is going out (one write) and publishes once;
    /// SNS's delivery of it to the deliveries queue marks the record `notified` later. The record is marked
    /// `notifying` before the publish so that a retry never publishes twice (publish and write are not atomic). The mark is conditioned on the status read, so
    /// of two invocations finishing the same record (a queue retry and the sweep) only one publishes; the
    /// one that marks it holds it from then on. Takes `&self` only: records are finished side by side, and
    /// what each came to is merged afterwards.
    async fn finish(&self, record: DecisionRecord) -> Finished {
        // From the mark until the publish answers, a stop leaves the notification at risk (`Tally::at_risk`):
        // the count goes down only when `announce` returns, which a stop never lets it do.
        let at_risk = |delta: i64| {
            let mut t = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
            t.at_risk = t.at_risk.saturating_add_signed(delta);
        };
        at_risk(1);
        let done = self.announce(record).await;
        at_risk(-1);
        done
    }

    /// [`Self::finish`] up to the publish's answer.
    async fn announce(&self, record: DecisionRecord) -> Finished {
        let mut done = Finished { endpoint_id: record.endpoint_id.clone(), error: None };
        let marked = match self.advance_firmly(&record, Status::Notifying).await {
            Ok(Written::Yes) => Ok(()),
            Ok(Written::Lost) => {
                info!(endpoint_id = %record.endpoint_id, "record moved on under us; another invocation finishes it");
                return done;
            }
            // Five rounds without an answer: the record, read again, tells whether the mark landed.
            Err(e) => match self.marked_by_us(&record).await {
                Ok(true) => {
                    info!(endpoint_id = %record.endpoint_id, error = %e, "the notifying mark landed, unanswered; publishing");
                    Ok(())
                }
                Ok(false) => Err((e, false)),
                Err(read) => {
                    warn!(endpoint_id = %record.endpoint_id, error = %read, "could not read the record back after its notifying mark failed");
                    Err((e, true))
                }
            },
        };
        if let Err((e, unknown)) = marked {
            // Only this invocation's own claim of a hold is ended early, so a retry takes it over at once: no
            // EC2 call was made for it. An accepted or rejected one keeps its claim until the lease ends: a
            // retry taking it over sooner might find EC2, eventually consistent, still showing
            // `pendingAcceptance`, and decide again (with an allowlist changed meanwhile, the opposite
            // action). A dead holder's record finished here has a lease that has ended already.
            if record.status == Status::Claimed && record.claim == self.claim && record.outcome == Outcome::Hold {
                self.end_early(&record).await;
            }
            if unknown && e.kind != ErrorKind::Permanent {
                // The mark may have landed, and a record left `notifying` is never published from.
                error!(endpoint_id = %record.endpoint_id, error = %e, "the notifying mark may have landed unanswered; the notification may be lost");
                self.count(names::NOTIFY_UNCERTAIN);
            }
            done.error = Some(e);
            return done;
        }
        if record.status == Status::Claimed {
            self.count(match (record.kind, record.outcome) {
                (Kind::Revocation, _) => names::REVOKED,
                (_, Outcome::Accept) => names::ACCEPTED,
                (_, Outcome::Reject) => names::REJECTED,
                (_, Outcome::Hold) => names::HELD,
            });
        }
        // Marked: held by this invocation now, at `notifying`; the next writes start from there.
        let record = DecisionRecord { status: Status::Notifying, claim: self.claim.to_owned(), ..record };
        if let Err(e) = self.deps.notifier.notify(&Announcement::for_record(&record)).await {
            if e.kind == ErrorKind::Uncertain {
                // It may have gone out: publishing again could send it twice. The record stays
                // `notifying` (never published again); the miss, if it was one, is counted and alarmed.
                error!(endpoint_id = %record.endpoint_id, error = %e, "notification may or may not have been published; not repeated");
                self.count(names::NOTIFY_UNCERTAIN);
                return done;
            }
            // Not published, for certain: mark it owed, so the retry publishes. This write is all that
            // stands between a refused publish and a lost notification (a record left `notifying` is
            // never published again), so it is tried harder than the SDK's own retries.
            if let Err(revert) = self.advance_firmly(&record, Status::Acted).await {
                error!(endpoint_id = %record.endpoint_id, error = %revert, "notification failed and could not be re-queued; it may be lost");
                self.count(names::NOTIFY_UNCERTAIN);
            }
            done.error = Some(e);
            return done;
        }
        // SNS delivers it to the deliveries queue too, and that delivery marks the record `notified`
        // (`Deps::confirm_all`): off this invocation's path, and true even if this answer had been lost.
        self.count(names::NOTIFIED);
        done
    }
}

/// A claim to make: the record, the version it must find (`None`: no record), and whether it was planned
/// without reading the record (a connection waiting for acceptance), so a loss is planned for again.
struct Claiming {
    record: DecisionRecord,
    previous: Option<u64>,
    optimistic: bool,
}

/// What one connection needs ([`ServiceRun::plan`]).
enum Plan {
    Claim(DecisionRecord, Option<u64>),
    Notify(DecisionRecord),
    Nothing,
}

/// What finishing one record came to: the error that fails its message (its counters are counted as it goes).
struct Finished {
    endpoint_id: EndpointId,
    error: Option<PortError>,
}

/// EC2's per-ID refusal `f` of an Accept/Reject (`api`), as the error its endpoint is retried with unless EC2
/// shows the action took effect.
fn refusal(api: &'static str, f: &shared::domain::ItemFailure) -> PortError {
    PortError {
        service: "ec2",
        operation: api,
        kind: ErrorKind::Retryable,
        code: f.code.clone(),
        message: f.message.clone(),
    }
}
