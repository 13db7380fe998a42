//! The handler against in-memory fakes of its ports, driven by the sample events in `events/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Mutex;

use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use reconcile::config::Config;
use reconcile::event::{ReconcileEvent, ReconcileResponse};
use reconcile::handler::{Deps, handle};
use shared::domain::Item;
use shared::domain::allowlist::Attr;
use shared::domain::principals::Ledger;
use shared::domain::service::ServiceHealth;
use shared::domain::{
    AccountId, Connection, ConnectionRequest, ConnectionState, EndpointId, Region, Rules, ServiceId, Trigger,
};
use shared::ports::{
    Allowlist, ConnectionFilter, Connections, EndpointServices, ErrorKind, OwedDecisions, PortError, PortResult,
    PrincipalLedger, RequestBus, Written,
};

const SVC: &str = "vpce-svc-0123456789abcdef0";
const OWNER: &str = "222222222222";

#[derive(Default)]
struct World {
    conns: Vec<Connection>,
    put: Mutex<Vec<ConnectionRequest>>,
    /// Every call of the named port fails with this kind.
    fails: Option<(&'static str, ErrorKind)>,
    rules: Vec<Item>,
    manage: bool,
    /// The service's allowed principals, as EC2 holds them.
    principals: Mutex<BTreeSet<String>>,
    /// (add, remove) of each ModifyVpcEndpointServicePermissions.
    changes: Mutex<Vec<(Vec<String>, Vec<String>)>>,
    ledger: Mutex<(Ledger, Option<u64>)>,
    /// Another sync gets there first: as this one writes the ledger for the first time, the allowlist's
    /// items are withdrawn and the other sync writes the ledger (its version moves on), so the write loses.
    withdrawn_by_another_sync: Mutex<bool>,
    /// `None`: a healthy service.
    health: Mutex<Option<ServiceHealth>>,
    /// DescribeVpcEndpointServicePermissions calls.
    principal_reads: Mutex<usize>,
    /// The decisions the `owed` index lists.
    owed: Vec<&'static str>,
    revoke: bool,
    /// Managed besides `SVC`.
    also_managed: Vec<&'static str>,
    /// A managed service EC2 does not know (deleted while still managed): every EC2 call that names it fails
    /// with `InvalidVpcEndpointServiceId.NotFound`, a call naming it among others too.
    unknown: Option<&'static str>,
    /// A managed service whose connections EC2 will not list now (`RequestLimitExceeded`).
    throttled: Option<&'static str>,
    /// Every call of each named kind (`describe`: a service's connections; `principals`: its allowed
    /// principals) answers after its time (tokio's clock, paused in the tests that set it).
    slow: Vec<(&'static str, std::time::Duration)>,
}

struct Fake<'a>(&'a World);

/// An AWS call's failure, as the adapters report it.
fn refused(service: &'static str, kind: ErrorKind, code: &str, message: &str) -> PortError {
    PortError { service, operation: "X", kind, code: code.into(), message: message.into() }
}

impl Fake<'_> {
    fn unknown(&self, services: &[ServiceId]) -> PortResult<()> {
        match self.0.unknown {
            Some(id) if services.iter().any(|s| s.as_str() == id) => Err(refused(
                "ec2",
                ErrorKind::Permanent,
                "InvalidVpcEndpointServiceId.NotFound",
                &format!("The VpcEndpointService Id '{id}' does not exist"),
            )),
            _ => Ok(()),
        }
    }

    async fn pace(&self, call: &'static str) {
        for (c, after) in &self.0.slow {
            if *c == call {
                tokio::time::sleep(*after).await;
            }
        }
    }

    fn fault(&self, port: &'static str) -> PortResult<()> {
        match self.0.fails {
            Some((p, kind)) if p == port => Err(refused(port, kind, "ServiceUnavailable", "try later")),
            _ => Ok(()),
        }
    }
}

impl Connections for Fake<'_> {
    async fn describe(&self, service: &ServiceId, filter: &ConnectionFilter) -> PortResult<Vec<Connection>> {
        self.pace("describe").await;
        self.fault("ec2")?;
        self.unknown(std::slice::from_ref(service))?;
        if self.0.throttled == Some(service.as_str()) {
            return Err(refused("ec2", ErrorKind::Retryable, "RequestLimitExceeded", "Request limit exceeded."));
        }
        Ok(self
            .0
            .conns
            .iter()
            .filter(|c| &c.service_id == service)
            .filter(|c| filter.owner.as_ref().is_none_or(|o| o == &c.owner))
            .filter(|c| filter.states.is_empty() || filter.states.iter().any(|s| s == c.state.as_str()))
            .cloned()
            .collect())
    }

    async fn accept(&self, _: &ServiceId, _: &[EndpointId]) -> PortResult<Vec<shared::domain::ItemFailure>> {
        unreachable!("reconcile never acts")
    }

    async fn reject(&self, _: &ServiceId, _: &[EndpointId]) -> PortResult<Vec<shared::domain::ItemFailure>> {
        unreachable!("reconcile never acts")
    }

    async fn tag(&self, _: &[String], _: &str, _: &str) -> PortResult<()> {
        unreachable!("reconcile never tags")
    }
}

impl Allowlist for Fake<'_> {
    async fn rules_for(&self, _: &ServiceId) -> PortResult<Rules> {
        self.fault("dynamodb")?;
        let withdrawn = *self.0.withdrawn_by_another_sync.lock().unwrap() && self.0.ledger.lock().unwrap().1.is_some();
        Ok(Rules::from_items(if withdrawn { &[] as &[Item] } else { &self.0.rules }))
    }
}

impl EndpointServices for Fake<'_> {
    async fn configurations(&self, services: &[ServiceId]) -> PortResult<Vec<ServiceHealth>> {
        self.fault("ec2")?;
        self.unknown(services)?;
        let health = self.0.health.lock().unwrap().clone().unwrap_or_else(healthy);
        let others = self
            .0
            .also_managed
            .iter()
            .map(|id| ServiceHealth { service_id: ServiceId::parse(id).unwrap(), ..healthy() });
        Ok([health].into_iter().chain(others).filter(|h| services.contains(&h.service_id)).collect())
    }

    async fn allowed_principals(&self, service: &ServiceId) -> PortResult<Vec<String>> {
        self.pace("principals").await;
        self.fault("ec2")?;
        self.unknown(std::slice::from_ref(service))?;
        *self.0.principal_reads.lock().unwrap() += 1;
        Ok(self.0.principals.lock().unwrap().iter().cloned().collect())
    }

    async fn change_principals(&self, _: &ServiceId, add: &[String], remove: &[String]) -> PortResult<()> {
        self.fault("ec2-modify")?;
        self.0.changes.lock().unwrap().push((add.to_vec(), remove.to_vec()));
        let mut p = self.0.principals.lock().unwrap();
        p.extend(add.iter().cloned());
        p.retain(|x| !remove.contains(x));
        Ok(())
    }
}

impl PrincipalLedger for Fake<'_> {
    async fn managed(&self, _: &ServiceId) -> PortResult<(Ledger, Option<u64>)> {
        self.fault("dynamodb")?;
        Ok(self.0.ledger.lock().unwrap().clone())
    }

    async fn set_managed(&self, _: &ServiceId, principals: &Ledger, expected: Option<u64>) -> PortResult<Written> {
        let mut l = self.0.ledger.lock().unwrap();
        if *self.0.withdrawn_by_another_sync.lock().unwrap() && l.1.is_none() {
            *l = (Ledger::default(), Some(shared::ports::next_version(None)));
        }
        if l.1 != expected {
            return Ok(Written::Lost);
        }
        *l = (principals.clone(), Some(shared::ports::next_version(expected)));
        Ok(Written::Yes)
    }
}

impl OwedDecisions for Fake<'_> {
    async fn owed(&self, _: &ServiceId) -> PortResult<Vec<EndpointId>> {
        self.fault("dynamodb")?;
        Ok(self.0.owed.iter().map(|e| EndpointId::parse(e).unwrap()).collect())
    }
}

impl RequestBus for Fake<'_> {
    async fn put(&self, requests: &[ConnectionRequest]) -> PortResult<()> {
        self.fault("eventbridge")?;
        self.0.put.lock().unwrap().extend_from_slice(requests);
        Ok(())
    }
}

fn deps(w: &World) -> Deps<Fake<'_>, Fake<'_>, Fake<'_>, Fake<'_>, Fake<'_>, Fake<'_>> {
    Deps {
        connections: Fake(w),
        allowlist: Fake(w),
        bus: Fake(w),
        owed: Fake(w),
        services: Fake(w),
        ledger: Fake(w),
        config: Config {
            bus_name: "bus".into(),
            allowlist_table: "a".into(),
            decisions_table: "d".into(),
            managed: std::iter::once(SVC)
                .chain(w.also_managed.iter().copied())
                .map(|s| ServiceId::parse(s).unwrap())
                .collect(),
            revoke: w.revoke,
            home_region: Region::parse("us-east-1").unwrap(),
            sweep_interval_s: 300,
            manage_principals: w.manage,
        },
    }
}

fn pending(endpoint: &str) -> Connection {
    Connection {
        service_id: ServiceId::parse(SVC).unwrap(),
        endpoint_id: EndpointId::parse(endpoint).unwrap(),
        owner: AccountId::parse(OWNER).unwrap(),
        state: ConnectionState::PendingAcceptance,
        region: None,
        created_at_ms: 1_000,
        connection_id: None,
    }
}

/// A sample event as the runtime reads it: JSON into the handler's event type.
fn event(json: &str) -> LambdaEvent<ReconcileEvent> {
    LambdaEvent::new(serde_json::from_str(json).unwrap(), Context::default())
}

const SCHEDULE: &str = include_str!("../../../events/schedule/sweep.json");

#[tokio::test]
async fn when_the_schedule_fires_should_request_every_pending_connection() {
    let w = World { conns: vec![pending("vpce-0aaaaaaaaaaaaaaa1")], ..Default::default() };
    let response = handle(&deps(&w), event(SCHEDULE)).await.unwrap();
    assert_eq!(response, ReconcileResponse::Sweep { requests: 1 });
    let put = w.put.lock().unwrap();
    assert_eq!(put[0].trigger, Trigger::Sweep);
}

#[tokio::test]
async fn when_a_sweep_fails_should_report_its_kind_as_the_error_type() {
    for (port, kind) in [("ec2", ErrorKind::Retryable), ("eventbridge", ErrorKind::Uncertain)] {
        let w =
            World { conns: vec![pending("vpce-0aaaaaaaaaaaaaaa1")], fails: Some((port, kind)), ..Default::default() };
        let err = handle(&deps(&w), event(SCHEDULE)).await.unwrap_err();
        let diagnostic = Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, kind.as_str(), "{port}");
        assert!(diagnostic.error_message.contains("ServiceUnavailable"), "{}", diagnostic.error_message);
    }
}

/// Every sample in `events/dynamodb/` and `events/schedule/` reads as the event `reconcile` takes, of
/// the kind its folder says.
#[test]
fn the_stream_and_schedule_samples_are_reconcile_events() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    for (folder, is_stream) in [("dynamodb", true), ("schedule", false)] {
        let mut n = 0;
        for file in std::fs::read_dir(root.join(folder)).unwrap() {
            let path = file.unwrap().path();
            let event: ReconcileEvent = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            assert_eq!(matches!(event, ReconcileEvent::Stream(_)), is_stream, "{path:?}");
            n += 1;
        }
        assert!(n > 0, "no sample in events/{folder}");
    }
}

#[tokio::test]
async fn when_the_sample_allowlist_changes_arrive_should_request_the_accounts_pending_connections() {
    for sample in [
        include_str!("../../../events/dynamodb/allowlist-insert.json"),
        include_str!("../../../events/dynamodb/allowlist-remove.json"),
    ] {
        let mut other = pending("vpce-0bbbbbbbbbbbbbbb2");
        other.owner = AccountId::parse("333333333333").unwrap();
        let w = World { conns: vec![pending("vpce-0aaaaaaaaaaaaaaa1"), other], ..Default::default() };
        let ReconcileResponse::Stream(response) = handle(&deps(&w), event(sample)).await.unwrap() else {
            panic!("a stream batch is answered with its failures")
        };
        assert!(response.batch_item_failures.is_empty());
        let put = w.put.lock().unwrap();
        assert_eq!(put.iter().map(|r| r.endpoint_id.as_str()).collect::<Vec<_>>(), ["vpce-0aaaaaaaaaaaaaaa1"]);
        assert_eq!(put[0].trigger, Trigger::AllowlistChange);
    }
}

#[tokio::test]
async fn when_a_decision_is_owed_the_sweep_should_re_request_it_though_its_connection_waits_no_more() {
    // An `acted` record whose message reached the DLQ after the accept: the connection is `available`, so
    // only the `owed` index brings it back; one both pending and owed is requested once.
    let mut accepted = pending("vpce-0bbbbbbbbbbbbbbb2");
    accepted.state = ConnectionState::Available;
    let w = World {
        conns: vec![pending("vpce-0aaaaaaaaaaaaaaa1"), accepted],
        owed: vec!["vpce-0bbbbbbbbbbbbbbb2", "vpce-0aaaaaaaaaaaaaaa1"],
        ..Default::default()
    };
    let mut metrics = shared::telemetry::Metrics::default();
    let n = deps(&w).sweep(&mut metrics, 0, None).await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(metrics.get(shared::telemetry::names::OWED_FOUND), 2);
    let mut put: Vec<String> = w.put.lock().unwrap().iter().map(|r| r.endpoint_id.to_string()).collect();
    put.sort();
    assert_eq!(put, ["vpce-0aaaaaaaaaaaaaaa1", "vpce-0bbbbbbbbbbbbbbb2"]);
}

fn item(service: &str, principal: &str, effect: &str) -> Item {
    [("service_id", service), ("principal", principal), ("effect", effect)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Attr::S(v.into())))
        .collect()
}

#[tokio::test]
async fn with_revocation_an_invalid_deny_that_names_no_one_should_revoke_no_one() {
    let mut accepted = pending("vpce-0bbbbbbbbbbbbbbb2");
    accepted.state = ConnectionState::Available;
    // A deny naming no one it could be about (principal "*" is refused) blocks new accepts, never revokes.
    let w = World {
        conns: vec![accepted.clone()],
        rules: vec![item("*", "*", "deny")],
        revoke: true,
        ..Default::default()
    };
    let mut metrics = shared::telemetry::Metrics::default();
    deps(&w).sweep(&mut metrics, 0, None).await.unwrap();
    assert!(w.put.lock().unwrap().is_empty(), "{:?}", w.put.lock().unwrap());
    // A valid deny of the owner does revoke: the sweep asks decide about it.
    let w = World { conns: vec![accepted], rules: vec![item("*", OWNER, "deny")], revoke: true, ..Default::default() };
    deps(&w).sweep(&mut metrics, 0, None).await.unwrap();
    assert_eq!(w.put.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn when_a_malformed_item_changes_the_stream_should_re_request_whom_it_could_be_about() {
    // An item whose principal does not parse still names its account: that account's pending connections
    // (on every managed service, for an item under "*") are decided again.
    let malformed = include_str!("../../../events/dynamodb/allowlist-insert.json")
        .replace("arn:aws:iam::222222222222:root", "arn:aws:sts::222222222222:assumed-role/Deploy/session")
        .replace("\"vpce-svc-0123456789abcdef0\"", "\"*\"");
    let mut other = pending("vpce-0bbbbbbbbbbbbbbb2");
    other.owner = AccountId::parse("333333333333").unwrap();
    let w = World { conns: vec![pending("vpce-0aaaaaaaaaaaaaaa1"), other], ..Default::default() };
    let ReconcileResponse::Stream(response) = handle(&deps(&w), event(&malformed)).await.unwrap() else {
        panic!("a stream batch is answered with its failures")
    };
    assert!(response.batch_item_failures.is_empty());
    let put = w.put.lock().unwrap();
    assert_eq!(put.iter().map(|r| r.endpoint_id.as_str()).collect::<Vec<_>>(), ["vpce-0aaaaaaaaaaaaaaa1"]);
}

#[tokio::test]
async fn when_the_bus_fails_on_a_stream_batch_should_report_the_record_as_failed() {
    let w = World {
        conns: vec![pending("vpce-0aaaaaaaaaaaaaaa1")],
        fails: Some(("eventbridge", ErrorKind::Retryable)),
        ..Default::default()
    };
    let sample = include_str!("../../../events/dynamodb/allowlist-insert.json");
    let ReconcileResponse::Stream(response) = handle(&deps(&w), event(sample)).await.unwrap() else {
        panic!("a stream batch is answered with its failures")
    };
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failed, [Some("111100000000000000000001".to_owned())]);
}

const ROOT: &str = "arn:aws:iam::222222222222:root";
const GONE: &str = "arn:aws:iam::333333333333:root";
const HAND: &str = "arn:aws:iam::444444444444:root";

fn allow(principal: &str) -> Item {
    item("*", principal, "allow")
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn when_principals_are_managed_a_sweep_should_make_them_follow_the_allowlist_and_leave_hand_added_ones() {
    let w = World {
        rules: vec![allow(OWNER)],
        manage: true,
        principals: Mutex::new(set(&[GONE, HAND])),
        ledger: Mutex::new(([(GONE.to_owned(), 1)].into(), Some(4))),
        ..Default::default()
    };
    handle(&deps(&w), event(SCHEDULE)).await.unwrap();
    assert_eq!(*w.principals.lock().unwrap(), set(&[ROOT, HAND]));
    assert_eq!(*w.changes.lock().unwrap(), [(vec![ROOT.to_owned()], vec![GONE.to_owned()])], "one call");
    let (ledger, version) = w.ledger.lock().unwrap().clone();
    assert_eq!(
        (ledger.keys().cloned().collect::<BTreeSet<_>>(), version),
        (set(&[ROOT]), Some(6)),
        "claimed, then settled"
    );

    // In sync: the next sweep changes nothing.
    handle(&deps(&w), event(SCHEDULE)).await.unwrap();
    assert_eq!(w.changes.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn when_principals_are_not_managed_nothing_should_touch_them() {
    let w = World { rules: vec![allow(OWNER)], principals: Mutex::new(set(&[GONE])), ..Default::default() };
    handle(&deps(&w), event(SCHEDULE)).await.unwrap();
    handle(&deps(&w), event(include_str!("../../../events/dynamodb/allowlist-insert.json"))).await.unwrap();
    assert!(w.changes.lock().unwrap().is_empty());
    assert_eq!(*w.principals.lock().unwrap(), set(&[GONE]));
}

#[tokio::test]
async fn when_an_allowlist_change_arrives_its_services_principals_should_follow_at_once() {
    let w = World { rules: vec![allow(OWNER)], manage: true, ..Default::default() };
    let sample = include_str!("../../../events/dynamodb/allowlist-insert.json");
    let ReconcileResponse::Stream(response) = handle(&deps(&w), event(sample)).await.unwrap() else { panic!() };
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(*w.principals.lock().unwrap(), set(&[ROOT]));
}

#[tokio::test]
async fn a_stream_batch_should_sync_each_service_once_however_many_records_cover_it() {
    let w = World { rules: vec![allow(OWNER)], manage: true, ..Default::default() };
    let mut batch: serde_json::Value =
        serde_json::from_str(include_str!("../../../events/dynamodb/allowlist-insert.json")).unwrap();
    let record = batch["Records"][0].clone();
    batch["Records"].as_array_mut().unwrap().push(record);
    let ReconcileResponse::Stream(response) = handle(&deps(&w), event(&batch.to_string())).await.unwrap() else {
        panic!()
    };
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(*w.principals.lock().unwrap(), set(&[ROOT]));
    assert_eq!(*w.principal_reads.lock().unwrap(), 1, "the sync reads the table as it is now: once is enough");
}

#[tokio::test]
async fn when_ec2_refuses_the_change_the_record_should_be_retried_and_the_claim_kept() {
    let w = World {
        rules: vec![allow(OWNER)],
        manage: true,
        fails: Some(("ec2-modify", ErrorKind::Retryable)),
        ..Default::default()
    };
    let sample = include_str!("../../../events/dynamodb/allowlist-insert.json");
    let ReconcileResponse::Stream(response) = handle(&deps(&w), event(sample)).await.unwrap() else { panic!() };
    assert_eq!(response.batch_item_failures.len(), 1);
    assert!(w.principals.lock().unwrap().is_empty());
    assert!(
        w.ledger.lock().unwrap().0.contains_key(ROOT),
        "claimed before EC2 was asked: never mistaken for a hand-added one"
    );
}

fn healthy() -> ServiceHealth {
    ServiceHealth {
        service_id: ServiceId::parse(SVC).unwrap(),
        state: "Available".into(),
        acceptance_required: true,
        private_dns_name: None,
        private_dns_state: None,
        regions: vec![],
    }
}

#[tokio::test]
async fn a_sweep_should_report_a_service_that_gates_nothing_or_has_an_unverified_private_dns_name() {
    use shared::telemetry::{Metrics, names};
    let gauges = |h: ServiceHealth| async move {
        let w = World { health: Mutex::new(Some(h)), ..Default::default() };
        let mut m = Metrics::default();
        deps(&w).sweep(&mut m, 0, None).await.unwrap();
        let doc = m.emf("reconcile", 0);
        (doc[names::ACCEPTANCE_NOT_REQUIRED].as_u64(), doc[names::PRIVATE_DNS_UNVERIFIED].as_u64())
    };
    assert_eq!(gauges(healthy()).await, (Some(0), Some(0)));
    assert_eq!(gauges(ServiceHealth { acceptance_required: false, ..healthy() }).await, (Some(1), Some(0)));
    let dns = |state: &str| ServiceHealth {
        private_dns_name: Some("api.example.com".into()),
        private_dns_state: Some(state.into()),
        ..healthy()
    };
    assert_eq!(gauges(dns("pendingVerification")).await, (Some(0), Some(1)));
    assert_eq!(gauges(dns("verified")).await, (Some(0), Some(0)));
    let gone = ServiceHealth { service_id: ServiceId::parse("vpce-svc-0fedcba987654321f").unwrap(), ..healthy() };
    assert_eq!(gauges(gone).await.0, Some(1), "a managed service EC2 does not show is not gated either");
}

/// A managed service that EC2 no longer knows, in the tests that delete one: it sorts before `SVC`, so it is
/// swept and synced first.
const DELETED: &str = "vpce-svc-00000000000000001";

/// `w`, with `DELETED` managed too.
fn and_deleted(w: World) -> World {
    World { also_managed: vec![DELETED], unknown: Some(DELETED), ..w }
}

#[tokio::test]
async fn when_a_managed_service_is_gone_the_sweep_should_still_request_the_others_pending_connections_and_then_fail() {
    use shared::telemetry::{Metrics, names};
    let w = and_deleted(World {
        conns: vec![pending("vpce-0aaaaaaaaaaaaaaa1")],
        health: Mutex::new(Some(ServiceHealth { acceptance_required: false, ..healthy() })),
        ..Default::default()
    });
    let mut m = Metrics::default();
    let e = deps(&w).sweep(&mut m, 0, None).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ErrorKind::Permanent, "InvalidVpcEndpointServiceId.NotFound"));
    assert!(e.message.contains(DELETED) && e.message.starts_with("1 of 2 managed services"), "{}", e.message);
    let put = w.put.lock().unwrap();
    assert_eq!(put.iter().map(|r| r.endpoint_id.as_str()).collect::<Vec<_>>(), ["vpce-0aaaaaaaaaaaaaaa1"]);
    let doc = m.emf("reconcile", 0);
    assert_eq!(doc[names::PENDING_FOUND].as_u64(), Some(1));
    assert_eq!(
        doc[names::ACCEPTANCE_NOT_REQUIRED].as_u64(),
        Some(2),
        "the readable service's health is still checked, and the deleted one gates nothing"
    );
}

#[tokio::test]
async fn when_a_managed_service_is_gone_the_others_principals_should_still_follow_the_allowlist() {
    let w = and_deleted(World { manage: true, rules: vec![allow(OWNER)], ..Default::default() });
    let e = deps(&w).sweep(&mut shared::telemetry::Metrics::default(), 0, None).await.unwrap_err();
    assert!(e.message.contains(DELETED) && e.message.starts_with("1 of 2 managed services"), "{}", e.message);
    assert_eq!(*w.principals.lock().unwrap(), set(&[ROOT]), "SVC, synced after the deleted service failed");
}

#[tokio::test]
async fn when_every_managed_service_reads_the_sweep_should_succeed_with_several() {
    let w = World { conns: vec![pending("vpce-0aaaaaaaaaaaaaaa1")], also_managed: vec![DELETED], ..Default::default() };
    let swept = deps(&w).sweep(&mut shared::telemetry::Metrics::default(), 0, None).await.unwrap();
    assert_eq!(swept, 1);
}

#[tokio::test]
async fn when_ec2_throttles_a_services_reads_the_sweep_should_stop_there_and_fail_as_retryable() {
    let w = World {
        conns: vec![pending("vpce-0aaaaaaaaaaaaaaa1")],
        also_managed: vec![DELETED],
        throttled: Some(DELETED),
        ..Default::default()
    };
    let e = deps(&w).sweep(&mut shared::telemetry::Metrics::default(), 0, None).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ErrorKind::Retryable, "RequestLimitExceeded"));
    assert!(
        e.message.starts_with("2 of 2 managed services") && e.message.contains(SVC) && e.message.contains(DELETED),
        "the service not reached is named with the one that failed: {}",
        e.message
    );
    assert!(w.put.lock().unwrap().is_empty(), "no more calls after a throttled one: SVC, after it, was not swept");
}

#[tokio::test]
async fn when_no_managed_service_can_be_read_the_sweep_should_name_them_all_and_publish_no_health() {
    use shared::telemetry::{Metrics, names};
    let w = World { fails: Some(("ec2", ErrorKind::Permanent)), also_managed: vec![DELETED], ..Default::default() };
    let mut m = Metrics::default();
    let e = deps(&w).sweep(&mut m, 0, None).await.unwrap_err();
    assert!(e.message.starts_with("2 of 2 managed services"), "{}", e.message);
    let doc = m.emf("reconcile", 0);
    assert_eq!(doc[names::ACCEPTANCE_NOT_REQUIRED].as_u64(), None, "an unread service is not reported healthy");
}

#[tokio::test]
async fn when_a_sync_loses_the_ledger_to_a_newer_one_should_plan_again_from_the_allowlist_as_it_is_now() {
    // This sync reads OWNER allowed and claims its principal; meanwhile the allow is withdrawn and another
    // sync, which read the allowlist after that, writes the ledger first. Planning again from the rules read
    // before would add OWNER's principal back, against the allowlist, until the next sweep.
    let w = World {
        rules: vec![allow(OWNER)],
        manage: true,
        withdrawn_by_another_sync: Mutex::new(true),
        ..Default::default()
    };
    deps(&w).sweep(&mut shared::telemetry::Metrics::default(), 0, None).await.unwrap();
    assert_eq!(*w.principals.lock().unwrap(), set(&[]), "not added back from rules that no longer stand");
    assert!(w.changes.lock().unwrap().is_empty(), "no change made: {:?}", w.changes.lock().unwrap());
}

#[tokio::test]
async fn when_an_allowlist_change_covers_a_deleted_service_the_others_principals_should_still_follow() {
    let w = and_deleted(World { rules: vec![allow(OWNER)], manage: true, ..Default::default() });
    // An allow under "*": every managed service, the deleted one (synced first) among them.
    let sample = include_str!("../../../events/dynamodb/allowlist-insert.json")
        .replace("\"vpce-svc-0123456789abcdef0\"", "\"*\"");
    let ReconcileResponse::Stream(response) = handle(&deps(&w), event(&sample)).await.unwrap() else { panic!() };
    assert!(
        response.batch_item_failures.is_empty(),
        "a deleted service is the sweep's to report: failing the record would fail the rest of its batch with it"
    );
    assert_eq!(*w.principals.lock().unwrap(), set(&[ROOT]), "SVC's principals followed the allow all the same");
}

#[test]
fn consecutive_sweeps_should_start_at_consecutive_services() {
    use reconcile::handler::sweep_order;
    let managed: BTreeSet<ServiceId> = [SVC, DELETED, OTHER].iter().map(|s| ServiceId::parse(s).unwrap()).collect();
    let sorted: Vec<&ServiceId> = managed.iter().collect();
    assert_eq!(sweep_order(&managed, 0, 300), sorted, "the first interval since the epoch starts at the first");
    assert_eq!(sweep_order(&managed, 299_999, 300), sorted, "the same interval, the same start");
    let firsts: BTreeSet<&ServiceId> = (0..3).map(|k| sweep_order(&managed, k * 300_000, 300)[0]).collect();
    assert_eq!(firsts.len(), 3, "three sweeps in a row start at each service once");
    for k in 0..6 {
        let order = sweep_order(&managed, k * 300_000 + 7, 300);
        assert_eq!(order.iter().copied().collect::<BTreeSet<_>>(), managed.iter().collect(), "each service once");
        let at = sorted.iter().position(|s| *s == order[0]).unwrap();
        assert_eq!(order, sorted[at..].iter().chain(&sorted[..at]).copied().collect::<Vec<_>>(), "in turn");
    }
    assert!(sweep_order(&BTreeSet::new(), 1_000, 300).is_empty());
}

/// A third managed service, sorting after `SVC`.
const OTHER: &str = "vpce-svc-0fffffffffffffff1";

/// A connection of `service` waiting for acceptance.
fn pending_of(service: &str, endpoint: &str) -> Connection {
    Connection { service_id: ServiceId::parse(service).unwrap(), ..pending(endpoint) }
}

/// Three managed services, each with a connection waiting, whose listings take 20 s each.
fn three_slow_services() -> World {
    World {
        conns: vec![
            pending_of(DELETED, "vpce-0aaaaaaaaaaaaaaa1"),
            pending_of(SVC, "vpce-0aaaaaaaaaaaaaaa2"),
            pending_of(OTHER, "vpce-0aaaaaaaaaaaaaaa3"),
        ],
        also_managed: vec![DELETED, OTHER],
        slow: vec![("describe", std::time::Duration::from_secs(20))],
        ..Default::default()
    }
}

/// A sweep of `w` whose stop is `after` from now (tokio's clock): the error it fails with, and its metrics.
async fn sweep_stopped_after(w: &World, after: std::time::Duration) -> (PortError, shared::telemetry::Metrics) {
    let stop = tokio::time::Instant::now() + after;
    let mut m = shared::telemetry::Metrics::default();
    let e = deps(w).sweep(&mut m, 0, Some(stop)).await.unwrap_err();
    (e, m)
}

#[tokio::test(start_paused = true)]
async fn when_a_sweep_reaches_its_stop_it_should_emit_what_it_found_and_name_the_services_it_did_not_read() {
    use shared::telemetry::names;
    let w = three_slow_services();
    let stop = tokio::time::Instant::now() + std::time::Duration::from_secs(45);
    let (e, m) = sweep_stopped_after(&w, std::time::Duration::from_secs(45)).await;
    assert_eq!(tokio::time::Instant::now(), stop, "stopped at its stop, the third listing under way");
    assert_eq!((e.kind, e.code.as_str()), (ErrorKind::Retryable, "SweepCutShort"));
    assert!(e.message.starts_with(&format!("1 of 3 managed services not fully swept ({OTHER})")), "{}", e.message);
    let put: Vec<String> = w.put.lock().unwrap().iter().map(|r| r.endpoint_id.to_string()).collect();
    assert_eq!(put, ["vpce-0aaaaaaaaaaaaaaa1", "vpce-0aaaaaaaaaaaaaaa2"], "the two services read are requested");
    let doc = m.emf("reconcile", 0);
    assert_eq!(doc[names::CUT_SHORT].as_u64(), Some(1));
    assert_eq!(doc[names::PENDING_FOUND].as_u64(), Some(2), "the abandoned service counts nothing");
}

#[tokio::test(start_paused = true)]
async fn when_a_sweep_nears_lambdas_deadline_it_should_stop_the_reserve_before_and_fail_as_retryable() {
    use reconcile::handler::SWEEP_RESERVE_MS;
    let w = three_slow_services();
    let started = tokio::time::Instant::now();
    let mut context = Context::default();
    context.deadline = u64::try_from(shared::domain::time::now_ms() + 60_000).unwrap();
    let e = handle(&deps(&w), LambdaEvent::new(serde_json::from_str(SCHEDULE).unwrap(), context)).await.unwrap_err();
    let took = started.elapsed().as_millis();
    let stop = 60_000 - u128::try_from(SWEEP_RESERVE_MS).unwrap();
    assert!(took.abs_diff(stop) < 1_000, "stopped {took} ms in, {SWEEP_RESERVE_MS} ms before a 60 s deadline");
    let diagnostic = Diagnostic::from(e);
    assert_eq!(diagnostic.error_type, "Retryable");
    // Which service is left depends on when the sweep ran (`sweep_order`): the one not requested.
    let put = w.put.lock().unwrap();
    assert_eq!(put.len(), 2, "two services read in 45 s");
    let left = w.conns.iter().find(|c| !put.iter().any(|r| r.endpoint_id == c.endpoint_id)).unwrap();
    assert!(diagnostic.error_message.contains(left.service_id.as_str()), "{}", diagnostic.error_message);
}

#[tokio::test(start_paused = true)]
async fn when_a_sweep_reaches_its_stop_while_syncing_principals_it_should_name_the_services_left() {
    let w = World {
        manage: true,
        rules: vec![allow(OWNER)],
        also_managed: vec![DELETED],
        slow: vec![("principals", std::time::Duration::from_secs(30))],
        ..Default::default()
    };
    let (e, _) = sweep_stopped_after(&w, std::time::Duration::from_secs(45)).await;
    assert_eq!(e.code, "SweepCutShort");
    assert!(e.message.starts_with(&format!("1 of 2 managed services not fully swept ({SVC})")), "{}", e.message);
    assert!(e.message.contains("sync the allowed principals"), "{}", e.message);
    assert_eq!(w.changes.lock().unwrap().len(), 1, "the first service (DELETED, here readable) synced; SVC not");
}

/// Reads that would take all of a sweep's time stop `SYNC_SHARE_MS` (30 s) before its stop, so the services read
/// get their principals synced: three services read in 30 s each against a stop at 75 s, the reads stop at 45 s
/// after one, whose principals are synced; without the share the third read is cut at 75 s and none is synced,
/// every sweep alike.
#[tokio::test(start_paused = true)]
async fn when_reads_would_take_the_whole_sweep_the_services_read_should_still_get_their_principals_synced() {
    use shared::telemetry::names;
    let w = World {
        manage: true,
        rules: vec![allow(OWNER)],
        slow: vec![("describe", std::time::Duration::from_secs(30))],
        ..three_slow_services()
    };
    let (e, m) = sweep_stopped_after(&w, std::time::Duration::from_secs(75)).await;
    assert_eq!(e.code, "SweepCutShort");
    assert!(e.message.starts_with("2 of 3 managed services not fully swept"), "{}", e.message);
    assert!(e.message.contains("read them"), "{}", e.message);
    assert_eq!(w.put.lock().unwrap().len(), 1, "the one service read is requested");
    assert_eq!(w.changes.lock().unwrap().len(), 1, "and its principals synced");
    assert_eq!(m.emf("reconcile", 0)[names::CUT_SHORT].as_u64(), Some(1));
}

/// Cut twice, reading (at 45 s: two services read in 20 s each, the third abandoned) and syncing (at 75 s: the
/// first synced in 20 s, the second abandoned): one `CutShort`, both services left named.
#[tokio::test(start_paused = true)]
async fn a_sweep_cut_while_reading_and_again_while_syncing_should_count_cut_short_once() {
    use shared::telemetry::names;
    let w = World {
        manage: true,
        rules: vec![allow(OWNER)],
        slow: vec![
            ("describe", std::time::Duration::from_secs(20)),
            ("principals", std::time::Duration::from_secs(20)),
        ],
        ..three_slow_services()
    };
    let (e, m) = sweep_stopped_after(&w, std::time::Duration::from_secs(75)).await;
    assert!(e.message.starts_with("2 of 3 managed services not fully swept"), "{}", e.message);
    assert_eq!((w.put.lock().unwrap().len(), w.changes.lock().unwrap().len()), (2, 1), "two read, one synced");
    assert_eq!(m.emf("reconcile", 0)[names::CUT_SHORT].as_u64(), Some(1));
}

/// The share is at most half the time to the stop: against a stop 40 s away the reads stop at 20 s, not at
/// 10 s (a reconcile Timeout lowered toward the 30 s share would otherwise leave no time to read at all).
#[tokio::test(start_paused = true)]
async fn the_sync_share_should_be_at_most_half_the_time_to_the_stop() {
    let w = World {
        manage: true,
        rules: vec![allow(OWNER)],
        slow: vec![("describe", std::time::Duration::from_secs(15))],
        ..three_slow_services()
    };
    sweep_stopped_after(&w, std::time::Duration::from_secs(40)).await;
    assert_eq!(w.put.lock().unwrap().len(), 1, "one 15 s read fits in 20 s; none would in 10 s");
    assert_eq!(w.changes.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn when_a_stream_batch_nears_lambdas_deadline_the_change_under_way_should_be_its_first_failure() {
    // Two changes in one batch (the two samples' records); each takes one 30 s listing of the service.
    let mut batch: serde_json::Value =
        serde_json::from_str(include_str!("../../../events/dynamodb/allowlist-insert.json")).unwrap();
    let second: serde_json::Value =
        serde_json::from_str(include_str!("../../../events/dynamodb/allowlist-remove.json")).unwrap();
    batch["Records"].as_array_mut().unwrap().push(second["Records"][0].clone());
    let w = World {
        conns: vec![pending("vpce-0aaaaaaaaaaaaaaa1")],
        slow: vec![("describe", std::time::Duration::from_secs(30))],
        ..Default::default()
    };
    let started = tokio::time::Instant::now();
    let mut context = Context::default();
    context.deadline = u64::try_from(shared::domain::time::now_ms() + 60_000).unwrap();
    let payload = serde_json::from_value(batch).unwrap();
    let ReconcileResponse::Stream(response) = handle(&deps(&w), LambdaEvent::new(payload, context)).await.unwrap()
    else {
        panic!("a stream batch is answered with its failures")
    };
    assert!(started.elapsed().as_millis().abs_diff(45_000) < 1_000, "stopped 15 s before the 60 s deadline");
    let failed: Vec<&str> =
        response.batch_item_failures.iter().map(|f| f.item_identifier.as_deref().unwrap_or_default()).collect();
    assert_eq!(failed, ["111200000000000000000002"], "the first change applied; the second, cut, is retried");
    assert_eq!(w.put.lock().unwrap().len(), 1, "the first change's request");
}
