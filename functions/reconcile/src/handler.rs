//! One function, two sources: the EventBridge schedule (sweep) and the allowlist's DynamoDB stream.
//! It only reads and emits Connection Requests; `decide` acts, so every action has one path.

use std::collections::BTreeSet;

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::LambdaEvent;
use shared::domain::allowlist::Scope;
use shared::domain::principal::account_hint;
use shared::domain::principals::{self, partition_of};
use shared::domain::service::ServiceHealth;
use shared::domain::time::{now_ms, time_left};
use shared::domain::{
    AccountId, ConnectionRequest, ConnectionState, DefaultAction, Outcome, Reason, Region, ServiceId, Trigger, evaluate,
};
use shared::ports::{
    Allowlist, ConnectionFilter, Connections, EndpointServices, ErrorKind, OwedDecisions, PortError, PrincipalLedger,
    RequestBus, Written, next_version,
};
use shared::producers::requests_for;
use shared::services::{SERVICE_NOT_FOUND, configurations_apart};
use shared::telemetry::{Metrics, names};
use tracing::{Instrument, error, info, warn};

use crate::config::Config;
use crate::error::ReconcileError;
use crate::event::{DynamoDbStream, ReconcileEvent, ReconcileResponse};

pub struct Deps<C, A, B, O, P, L> {
    pub connections: C,
    pub allowlist: A,
    pub bus: B,
    /// Decisions still owed their action or notification, which the sweep re-requests.
    pub owed: O,
    /// The endpoint services themselves: their health, and their allowed principals, which follow the
    /// allowlist when `manage_principals` is on.
    pub services: P,
    /// What Gatekeeper added to the allowed principals.
    pub ledger: L,
    pub config: Config,
}

/// One invocation: a stream batch answers with its partial failures; a sweep that could not sweep every managed
/// service fails, after sweeping the others (the schedule runs it again anyway).
pub async fn handle<
    C: Connections,
    A: Allowlist,
    B: RequestBus,
    O: OwedDecisions,
    P: EndpointServices,
    L: PrincipalLedger,
>(
    deps: &Deps<C, A, B, O, P, L>,
    event: LambdaEvent<ReconcileEvent>,
) -> Result<ReconcileResponse, ReconcileError> {
    let span = tracing::info_span!("reconcile", request_id = %event.context.request_id);
    let mut metrics = Metrics::default();
    let now = now_ms();
    let stop = time_left(event.context.deadline, now, SWEEP_RESERVE_MS).map(|left| tokio::time::Instant::now() + left);
    let result = async {
        match event.payload {
            ReconcileEvent::Stream(DynamoDbStream(stream)) => {
                Ok::<_, ReconcileError>(ReconcileResponse::Stream(deps.on_stream(&stream, &mut metrics, stop).await))
            }
            ReconcileEvent::Schedule(_) => {
                Ok(ReconcileResponse::Sweep { requests: deps.sweep(&mut metrics, now, stop).await? })
            }
        }
    }
    .instrument(span)
    .await;
    metrics.flush("reconcile");
    result
}

/// How long before Lambda's deadline a sweep starts no more services' reads or principal syncs, and abandons
/// the one under way: the time left is for emitting what it found (PutEvents, 10 requests a call) and writing
/// its counters, which Lambda's timeout would lose. Abandoning is as safe as Lambda's own cut: the reads
/// have no effect, and a principal sync is settled by the next one (the ledger claims an add before EC2
/// makes it).
pub const SWEEP_RESERVE_MS: i64 = 15_000;

/// With `ManageAllowedPrincipals` on, how long before its stop a sweep stops reading (abandoning the service
/// under way), so the services it read have their principals synced in the time left: a sweep whose reads
/// would take all its time otherwise syncs nothing, every time. At most half the time the sweep has to its
/// stop. Reads that end sooner leave the sync all the time to the stop.
pub const SYNC_SHARE_MS: i64 = 30_000;
const SYNC_SHARE: std::time::Duration = std::time::Duration::from_millis(SYNC_SHARE_MS as u64);
/// The code of the error a sweep stopped at its deadline fails with ([`cut_short`]).
const SWEEP_CUT_SHORT: &str = "SweepCutShort";

/// The managed services in the order a sweep started at `now_ms` visits them: from the `k`th on, round, where
/// `k` counts sweep intervals since the epoch. Consecutive sweeps start at consecutive services, so a sweep
/// cut short at its deadline does not leave the same services unswept every time.
pub fn sweep_order(managed: &BTreeSet<ServiceId>, now_ms: i64, interval_s: i64) -> Vec<&ServiceId> {
    let n = i64::try_from(managed.len()).unwrap_or(i64::MAX).max(1);
    let start = usize::try_from(now_ms.div_euclid(interval_s.max(1) * 1000).rem_euclid(n)).unwrap_or(0);
    managed.iter().cycle().skip(start).take(managed.len()).collect()
}

/// Runs `step` to its end, or until `stop` (`None`: no deadline known): `None` when it was stopped. The step
/// is boxed: nested in the timeout, the sweep's future types otherwise grow past rustc's layout depth limit.
async fn before<T>(stop: Option<tokio::time::Instant>, step: impl Future<Output = T>) -> Option<T> {
    let step = Box::pin(step);
    match stop {
        Some(at) => tokio::time::timeout_at(at, step).await.ok(),
        None => Some(step.await),
    }
}

/// What reconcile does, over the ports it needs (named once, here).
impl<C: Connections, A: Allowlist, B: RequestBus, O: OwedDecisions, P: EndpointServices, L: PrincipalLedger>
    Deps<C, A, B, O, P, L>
{
    /// The scheduled sweep: every pending connection of every managed service; with revocation on, every
    /// `available` connection that the allowlist, evaluated now, does not accept.
    ///
    /// Each service is swept on its own. One that EC2 refuses for good (deleted while still managed:
    /// `InvalidVpcEndpointServiceId.NotFound`; a missing permission) is logged and the others are swept:
    /// their requests emitted and, once emitted, their principals synced. Then the invocation fails, naming
    /// every service it could not sweep, so the failure is retried and reaches the DLQ and its alarm; one
    /// broken service no longer leaves every other service unswept. A failure that may pass (throttling, a
    /// 5xx, no answer) ends the sweep where it is: what was found is emitted, and the invocation fails
    /// within seconds rather than spending its Timeout on more calls EC2 would refuse too.
    ///
    /// `now_ms` orders the services ([`sweep_order`]). At `stop` (`SWEEP_RESERVE_MS` before Lambda's deadline;
    /// `None`: none known) the sweep stops where it is: the services it has not read or synced are named in
    /// its error, and it counts `CutShort`. With principals managed, reads stop `SYNC_SHARE_MS` before `stop`,
    /// and the services read are synced after their requests are emitted, until `stop`.
    pub async fn sweep(
        &self,
        metrics: &mut Metrics,
        now_ms: i64,
        stop: Option<tokio::time::Instant>,
    ) -> Result<usize, PortError> {
        let mut unswept: Vec<(ServiceId, PortError)> = Vec::new();
        let managed = self.config.managed.len();
        let order = sweep_order(&self.config.managed, now_ms, self.config.sweep_interval_s);
        service_health(&self.services, &self.config.managed, metrics, &mut unswept).await;
        if let Some(e) = unswept_error(&unswept, managed).filter(|e| e.kind != ErrorKind::Permanent) {
            return Err(e);
        }
        let mut requests = Vec::new();
        let read_stop = match stop {
            Some(at) if self.config.manage_principals => {
                Some(at - SYNC_SHARE.min(at.saturating_duration_since(tokio::time::Instant::now()) / 2))
            }
            other => other,
        };
        // How many services of `order` were read: all but those a stop at `read_stop` left (after a failure
        // that may pass, nothing is synced, so it need not say).
        let mut read = order.len();
        for (i, service) in order.iter().enumerate() {
            let Some(found) = before(read_stop, self.sweep_service(service, metrics)).await else {
                cut_short(&mut unswept, &order[i..], "read", metrics);
                read = i;
                break;
            };
            match found {
                Ok(found) => requests.extend(found),
                Err(e) => {
                    if set_aside(&mut unswept, service, e, "the sweep could not read this managed service") {
                        not_reached(&mut unswept, &order[i + 1..], "read");
                        break;
                    }
                }
            }
        }
        if let Err(e) = self.bus.put(&requests).await {
            if let Some(unswept) = unswept_error(&unswept, managed) {
                error!(error = %unswept, "besides the requests not emitted");
            }
            return Err(e);
        }
        info!(requests = requests.len(), "sweep emitted Connection Requests");
        metrics.add(names::REQUESTS_EMITTED, requests.len() as u64);
        // The services read (up to a cut at `read_stop`), unless a failure that may pass ended the reads.
        if self.config.manage_principals && !any_may_pass(&unswept) {
            let mut changed = 0;
            for (i, service) in order[..read].iter().enumerate() {
                let Some(synced) = before(stop, self.sync_principals(service)).await else {
                    cut_short(&mut unswept, &order[i..read], "sync the allowed principals of", metrics);
                    break;
                };
                match synced {
                    Ok(n) => changed += n,
                    Err(e) => {
                        let what = "the sweep could not sync this service's allowed principals";
                        if set_aside(&mut unswept, service, e, what) {
                            not_reached(&mut unswept, &order[i + 1..read], "sync the allowed principals of");
                            break;
                        }
                    }
                }
            }
            // The stream applies every edit at once: what a sweep still has to change is drift (a principal
            // edited by hand, a failed stream batch) or an allow that expired since the last sweep.
            metrics.add(names::PRINCIPALS_DRIFT, changed as u64);
        }
        match unswept_error(&unswept, managed) {
            Some(e) => Err(e),
            None => Ok(requests.len()),
        }
    }

    /// One service's share of the sweep: its pending connections, the decisions it is owed and, with
    /// revocation on, its revocable connections.
    async fn sweep_service(
        &self,
        service: &ServiceId,
        metrics: &mut Metrics,
    ) -> Result<Vec<ConnectionRequest>, PortError> {
        let pending = self.connections.describe(service, &ConnectionFilter::pending()).await?;
        let now = now_ms();
        // Decisions an invocation left unfinished (it died, or its message reached the DLQ after the EC2
        // action): `decide` finishes them from their record.
        let owed = self.owed.owed(service).await?;
        let revocable = if self.config.revoke {
            Some(revocable(&self.connections, &self.allowlist, &self.config.home_region, service).await?)
        } else {
            None
        };
        // Counted once the service's reads have all succeeded, so a service that failed counts nothing.
        let oldest = pending.iter().map(|c| now.saturating_sub(c.created_at_ms) / 1000).max().unwrap_or(0);
        metrics.gauge(names::OLDEST_PENDING_SECONDS, u64::try_from(oldest).unwrap_or(0), "Seconds");
        let overdue =
            pending.iter().filter(|c| now - c.created_at_ms > 3 * self.config.sweep_interval_s * 1000).count();
        metrics.add(names::PENDING_OVERDUE, overdue as u64);
        metrics.add(names::PENDING_FOUND, pending.len() as u64);
        metrics.add(names::OWED_FOUND, owed.len() as u64);
        let mut requests: Vec<ConnectionRequest> = pending
            .into_iter()
            .map(|c| ConnectionRequest {
                service_id: c.service_id,
                endpoint_id: c.endpoint_id,
                trigger: Trigger::Sweep,
                requested_at: now,
            })
            .collect();
        let pending_ids: BTreeSet<_> = requests.iter().map(|r| r.endpoint_id.clone()).collect();
        requests.extend(owed.into_iter().filter(|e| !pending_ids.contains(e)).map(|endpoint_id| ConnectionRequest {
            service_id: service.clone(),
            endpoint_id,
            trigger: Trigger::Sweep,
            requested_at: now,
        }));
        if let Some(revocable) = revocable {
            metrics.add(names::REVOCATIONS_FOUND, revocable.len() as u64);
            requests.extend(revocable);
        }
        Ok(requests)
    }

    /// Brings `service`'s allowed principals to what the allowlist wants (`domain::principals`): the ledger
    /// claims an add before EC2 makes it, and is settled after. Returns how many principals changed.
    async fn sync_principals(&self, service: &ServiceId) -> Result<usize, PortError> {
        let partition = partition_of(&self.config.home_region);
        for _ in 0..3 {
            // The allowlist is read after the ledger, in each round: a sync that lost the ledger to another
            // one plans again from rules no older than those the ledger it now sees was written from (read
            // once before the rounds, a sweep's older rules could put back a principal a stream's newer sync
            // had just removed, until the next sweep).
            let (managed, mut version) = self.ledger.managed(service).await?;
            let rules = self.allowlist.rules_for(service).await?;
            let now = now_ms();
            let wanted = principals::wanted(&rules, service, now / 1000, partition);
            let current: BTreeSet<String> = self.services.allowed_principals(service).await?.into_iter().collect();
            let plan = principals::plan(&wanted, &current, &managed, now);
            if plan.claimed != managed {
                if self.ledger.set_managed(service, &plan.claimed, version).await? == Written::Lost {
                    continue;
                }
                version = Some(next_version(version));
            }
            if !plan.is_empty() {
                self.services.change_principals(service, &plan.add, &plan.remove).await?;
                info!(%service, added = ?plan.add, removed = ?plan.remove, "allowed principals follow the allowlist");
            }
            if plan.settled != plan.claimed
                && self.ledger.set_managed(service, &plan.settled, version).await? == Written::Lost
            {
                continue;
            }
            return Ok(plan.add.len() + plan.remove.len());
        }
        Err(PortError {
            service: "dynamodb",
            operation: "PutItem",
            kind: ErrorKind::Retryable,
            code: "LedgerContention".into(),
            message: format!("the allowed-principal ledger of {service} kept changing under this invocation"),
        })
    }

    /// An allowlist change: the account's pending connections (it may now be allowed) and, with revocation
    /// on, its accepted ones, `available` or `pending` (it may now be removed, denied or expired). `decide`
    /// evaluates each. With `manage_principals`, each service it covers has its allowed principals brought to
    /// the allowlist, once per batch: a sync reads the table as it is now, which already holds every later
    /// record of the batch.
    /// Records are handled in order; the first failure is reported and the rest left for the retry. At `stop`
    /// (`SWEEP_RESERVE_MS` before Lambda's deadline) the record under way is abandoned and reported as the
    /// first failure, so the records already applied are not retried, and `CutShort` is counted.
    pub async fn on_stream(
        &self,
        stream: &StreamEvent,
        metrics: &mut Metrics,
        stop: Option<tokio::time::Instant>,
    ) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        let mut synced = BTreeSet::new();
        for record in &stream.records {
            let (account, services) = match scope_of(record, &self.config.managed) {
                Ok(x) => x,
                Err(why) => {
                    warn!(event_id = %record.event_id, why, "allowlist change without the table's keys; skipped");
                    metrics.incr(names::INVALID_RULES);
                    continue;
                }
            };
            let about = account.as_ref().map_or_else(|| "every account".to_owned(), ToString::to_string);
            info!(event = %record.event_name, account = %about, services = services.len(), "allowlist changed");
            let Some(applied) = before(stop, self.on_change(account.as_ref(), &services, &mut synced)).await else {
                error!(event_id = %record.event_id, "neared the invocation's deadline applying this change; it and the rest will be retried");
                metrics.incr(names::CUT_SHORT);
                response.batch_item_failures.push(retry_from(record));
                break;
            };
            match applied {
                Ok(emitted) => metrics.add(names::REQUESTS_EMITTED, emitted as u64),
                Err(e) => {
                    error!(event_id = %record.event_id, error = %e, "could not apply this change; it will be retried");
                    metrics.incr(names::ERRORS);
                    response.batch_item_failures.push(retry_from(record));
                    break;
                }
            }
        }
        response
    }

    /// One allowlist change about `account` (`None`: an invalid item about no readable account, which blocks
    /// new accepts for everyone and never revokes) covering `services`. Returns the requests emitted.
    async fn on_change(
        &self,
        account: Option<&AccountId>,
        services: &[ServiceId],
        synced: &mut BTreeSet<ServiceId>,
    ) -> Result<usize, PortError> {
        let pending = ConnectionState::PendingAcceptance.as_str();
        let states: Vec<&str> = match account {
            Some(_) if self.config.revoke => [pending].into_iter().chain(ConnectionState::ACCEPTED).collect(),
            _ => vec![pending],
        };
        // A service EC2 says does not exist (deleted while still managed) is passed over: the sweep fails
        // naming it (its DLQ alarms), as ingest does. Failing the record would fail every later record of the
        // batch with it (the stream's retries start again from the first failed record), all ten retries
        // alike, and the mapping would then discard them together. A service refused for another reason (a
        // missing permission) does not keep the change from the others, and the record fails and is retried
        // (each retry requests and syncs again: harmless).
        let mut refused = None;
        let mut requests = Vec::new();
        for service in services {
            match requests_for(&self.connections, service, account, &states, Trigger::AllowlistChange).await {
                Ok(found) => requests.extend(found),
                Err(e) if e.code == SERVICE_NOT_FOUND => {
                    error!(%service, error = %e, "a managed service no longer exists; the others' connections are requested");
                }
                Err(e) if e.kind == ErrorKind::Permanent => {
                    error!(%service, error = %e, "could not read this service's connections; reading the others");
                    refused.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        self.bus.put(&requests).await?;
        if self.config.manage_principals {
            for service in services {
                if synced.contains(service) {
                    continue;
                }
                match self.sync_principals(service).await {
                    Ok(_) => {
                        synced.insert(service.clone());
                    }
                    Err(e) if e.code == SERVICE_NOT_FOUND => {
                        error!(%service, error = %e, "a managed service no longer exists; the others' principals are synced");
                    }
                    Err(e) if e.kind == ErrorKind::Permanent => {
                        error!(%service, error = %e, "could not sync this service's allowed principals; syncing the others");
                        refused.get_or_insert(e);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(requests.len()),
        }
    }
}

/// Each managed service's own health, as metrics (alarmed on): a service that does not require acceptance,
/// or that EC2 no longer shows (Gatekeeper gates nothing there), and a private DNS name whose domain is not
/// verified.
///
/// Read with [`configurations_apart`] (one call for every service, halved around a service EC2 does not
/// know). A service EC2 reports as not found counts as not gated and is added to `unswept`; one refused for
/// another reason, or any failure that may pass, leaves the gauges unpublished this sweep (the alarms keep
/// their state) and is added to `unswept`.
async fn service_health(
    services: &impl EndpointServices,
    managed: &BTreeSet<ServiceId>,
    metrics: &mut Metrics,
    unswept: &mut Vec<(ServiceId, PortError)>,
) {
    let list: Vec<ServiceId> = managed.iter().cloned().collect();
    let found = configurations_apart(services, &list).await;
    for (service, e) in &found.refused {
        error!(%service, error = %e, "the sweep could not read this managed service's configuration");
    }
    unswept.extend(found.refused.iter().cloned());
    if found.other_failure().is_some() {
        return;
    }
    let health = &found.read;
    let mut acceptance_off = 0;
    let mut unverified = 0;
    for service in managed {
        let h = health.iter().find(|h| &h.service_id == service);
        match h {
            None if found.not_found(service) => {
                warn!(%service, "EC2 says this managed service does not exist: take it out of ManagedServiceIds");
                acceptance_off += 1;
            }
            None => {
                warn!(%service, "EC2 does not show this managed service's configuration");
                acceptance_off += 1;
            }
            Some(h) if !h.acceptance_required => {
                warn!(%service, "acceptance is not required: EC2 accepts every allowed principal's endpoint at once, and Gatekeeper gates nothing");
                acceptance_off += 1;
            }
            Some(_) => {}
        }
        if h.is_some_and(ServiceHealth::private_dns_unverified) {
            warn!(%service, "the private DNS name is not verified");
            unverified += 1;
        }
    }
    metrics.gauge(names::ACCEPTANCE_NOT_REQUIRED, acceptance_off, "Count");
    metrics.gauge(names::PRIVATE_DNS_UNVERIFIED, unverified, "Count");
}

/// Whether a failure that may pass (throttling, a 5xx, no answer) is among the sweep's: then it stops
/// making calls. A stop at `read_stop` ([`cut_short`]) is not one: the services read are still synced.
fn any_may_pass(unswept: &[(ServiceId, PortError)]) -> bool {
    unswept.iter().any(|(_, e)| e.kind != ErrorKind::Permanent && e.code != SWEEP_CUT_SHORT)
}

/// Logs and keeps a service the sweep could not handle (`what` it could not do); returns whether the sweep
/// stops there (see [`any_may_pass`]).
fn set_aside(unswept: &mut Vec<(ServiceId, PortError)>, service: &ServiceId, e: PortError, what: &str) -> bool {
    error!(%service, error = %e, "{what}");
    unswept.push((service.clone(), e));
    any_may_pass(unswept)
}

/// Keeps the services a sweep did not get to because a failure that may pass stopped it first (`what` it did
/// not do), so that its error names every service not swept, not only the one that failed.
fn not_reached(unswept: &mut Vec<(ServiceId, PortError)>, services: &[&ServiceId], what: &str) {
    let e = PortError {
        service: "lambda",
        operation: "Invoke",
        kind: ErrorKind::Retryable,
        code: "NotReached".into(),
        message: format!("the sweep stopped at an earlier failure before it could {what} them"),
    };
    unswept.extend(services.iter().map(|s| ((*s).clone(), e.clone())));
}

/// Keeps the services a sweep stopped ahead of its deadline (`SWEEP_RESERVE_MS` before it; reads, with
/// principals managed, `SYNC_SHARE_MS` earlier) before it could `what` them, with an error that may pass (the next sweep, starting at another service, may reach them), and
/// counts `CutShort`.
fn cut_short(unswept: &mut Vec<(ServiceId, PortError)>, services: &[&ServiceId], what: &str, metrics: &mut Metrics) {
    error!(
        services = services.len(),
        "the sweep neared its deadline and stopped before it could {what} every managed service; what it found is emitted"
    );
    if !unswept.iter().any(|(_, e)| e.code == SWEEP_CUT_SHORT) {
        metrics.incr(names::CUT_SHORT);
    }
    let e = PortError {
        service: "lambda",
        operation: "Invoke",
        kind: ErrorKind::Retryable,
        code: SWEEP_CUT_SHORT.into(),
        message: format!(
            "stopped ahead of the invocation's deadline (the function's Timeout) before it could {what} them"
        ),
    };
    unswept.extend(services.iter().map(|s| ((*s).clone(), e.clone())));
}

/// The sweep's error when some services could not be swept: named, each once, with the kind and code of the
/// first failure that may pass (a retry may then succeed), else of the first.
fn unswept_error(unswept: &[(ServiceId, PortError)], managed: usize) -> Option<PortError> {
    let first = unswept.iter().find(|(_, e)| e.kind != ErrorKind::Permanent).or(unswept.first()).map(|(_, e)| e)?;
    let services: BTreeSet<&ServiceId> = unswept.iter().map(|(s, _)| s).collect();
    let named = services.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    Some(PortError {
        message: format!(
            "{} of {managed} managed services not fully swept ({named}): {}",
            services.len(),
            first.message
        ),
        ..first.clone()
    })
}

/// Accepted (`available`, or `pending` on its way there) connections of `service` the allowlist does not
/// accept now (expired by time included).
async fn revocable(
    connections: &impl Connections,
    allowlist: &impl Allowlist,
    home_region: &Region,
    service: &ServiceId,
) -> Result<Vec<ConnectionRequest>, PortError> {
    let available = connections.describe(service, &ConnectionFilter::accepted()).await?;
    if available.is_empty() {
        return Ok(vec![]);
    }
    let rules = allowlist.rules_for(service).await?;
    let now = now_ms();
    Ok(available
        .into_iter()
        .filter(|c| {
            let d = evaluate(c, &rules, home_region, now / 1000, DefaultAction::Reject);
            d.outcome != Outcome::Accept && d.reason != Reason::InvalidRuleUnscoped
        })
        .map(|c| ConnectionRequest {
            service_id: c.service_id,
            endpoint_id: c.endpoint_id,
            trigger: Trigger::Sweep,
            requested_at: now,
        })
        .collect())
}

/// The partial batch failure that has the stream retry from `record` on (its sequence number).
fn retry_from(record: &EventRecord) -> DynamoDbBatchItemFailure {
    let mut f = DynamoDbBatchItemFailure::default();
    f.item_identifier = record.change.sequence_number.clone();
    f
}

/// The item keys a stream record is about.
fn keys(record: &EventRecord) -> Option<(String, String)> {
    let keys = serde_json::to_value(&record.change.keys).ok()?;
    let s = |k: &str| keys.get(k)?.get("S")?.as_str().map(str::to_owned);
    Some((s("service_id")?, s("principal")?))
}

/// What an allowlist change touches: the account (`None`: an invalid item that names no account and
/// could be a deny, which blocks everyone it covers), and the managed services it covers (every one when
/// its `service_id` does not parse). Parsed leniently on purpose: a change to an invalid item still
/// re-requests whom it could be about, so a malformed deny takes effect as a block at once.
fn scope_of(
    record: &EventRecord,
    managed: &BTreeSet<ServiceId>,
) -> Result<(Option<AccountId>, Vec<ServiceId>), String> {
    let (service, principal) = keys(record).ok_or("stream record without the table's keys")?;
    let account = account_hint(&principal);
    let services = match Scope::parse(&service) {
        Ok(Scope::Service(s)) if managed.contains(&s) => vec![s],
        Ok(Scope::Service(_)) => vec![],
        Ok(Scope::AllServices) | Err(_) => managed.iter().cloned().collect(),
    };
    Ok((account, services))
}
