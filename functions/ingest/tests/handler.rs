//! The handler against in-memory fakes of its two ports, driven by the sample events in `events/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use aws_lambda_events::event::sns::SnsEvent;
use ingest::config::Config;
use ingest::handler::{Deps, handle};
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use shared::domain::{AccountId, Connection, ConnectionRequest, ConnectionState, EndpointId, ServiceId, Trigger};
use shared::ports::{ConnectionFilter, Connections, ErrorKind, PortError, PortResult, RequestBus};

const SVC: &str = "vpce-svc-0123456789abcdef0";
const ENDPOINT: &str = "vpce-0aaaaaaaaaaaaaaa1";

#[derive(Default)]
struct World {
    conns: Vec<Connection>,
    put: Mutex<Vec<ConnectionRequest>>,
    bus_fails: Option<ErrorKind>,
    /// Describe calls made.
    describes: Mutex<usize>,
    /// EC2 shows the connections only from this Describe call on (counting from 1; 0: at once).
    visible_from: usize,
    /// A managed service EC2 refuses for good (deleted while still managed).
    gone: Option<&'static str>,
    /// Managed besides `SVC` (and `gone`), sorting after `SVC`.
    others: Vec<&'static str>,
    /// Every Describe is refused with this code (`UnauthorizedOperation`: a missing permission).
    refuse: Option<&'static str>,
}

struct Fake<'a>(&'a World);

impl Connections for Fake<'_> {
    async fn describe(&self, service: &ServiceId, filter: &ConnectionFilter) -> PortResult<Vec<Connection>> {
        let call = {
            let mut n = self.0.describes.lock().unwrap();
            *n += 1;
            *n
        };
        if let Some(code) = self.0.refuse {
            return Err(PortError {
                service: "ec2",
                operation: "DescribeVpcEndpointConnections",
                kind: ErrorKind::Permanent,
                code: code.into(),
                message: "refused".into(),
            });
        }
        if self.0.gone == Some(service.as_str()) {
            return Err(PortError {
                service: "ec2",
                operation: "DescribeVpcEndpointConnections",
                kind: ErrorKind::Permanent,
                code: "InvalidVpcEndpointServiceId.NotFound".into(),
                message: "gone".into(),
            });
        }
        if call < self.0.visible_from {
            return Ok(vec![]);
        }
        Ok(self
            .0
            .conns
            .iter()
            .filter(|c| &c.service_id == service)
            .filter(|c| filter.endpoints.is_empty() || filter.endpoints.contains(&c.endpoint_id))
            .filter(|c| filter.states.is_empty() || filter.states.iter().any(|s| s == c.state.as_str()))
            .cloned()
            .collect())
    }

    async fn accept(&self, _: &ServiceId, _: &[EndpointId]) -> PortResult<Vec<shared::domain::ItemFailure>> {
        unreachable!("ingest never acts")
    }

    async fn reject(&self, _: &ServiceId, _: &[EndpointId]) -> PortResult<Vec<shared::domain::ItemFailure>> {
        unreachable!("ingest never acts")
    }

    async fn tag(&self, _: &[String], _: &str, _: &str) -> PortResult<()> {
        unreachable!("ingest never tags")
    }
}

impl RequestBus for Fake<'_> {
    async fn put(&self, requests: &[ConnectionRequest]) -> PortResult<()> {
        if let Some(kind) = self.0.bus_fails {
            return Err(PortError {
                service: "eventbridge",
                operation: "PutEvents",
                kind,
                code: "ThrottlingException".into(),
                message: "slow down".into(),
            });
        }
        self.0.put.lock().unwrap().extend_from_slice(requests);
        Ok(())
    }
}

/// A managed service besides `SVC`, sorting before it.
const GONE: &str = "vpce-svc-00000000000000001";

fn deps(w: &World) -> Deps<Fake<'_>, Fake<'_>> {
    let managed = std::iter::once(SVC)
        .chain(w.gone)
        .chain(w.others.iter().copied())
        .map(|s| ServiceId::parse(s).unwrap())
        .collect();
    Deps { connections: Fake(w), bus: Fake(w), config: Config { bus_name: "bus".into(), managed } }
}

fn pending(endpoint: &str) -> Connection {
    Connection {
        service_id: ServiceId::parse(SVC).unwrap(),
        endpoint_id: EndpointId::parse(endpoint).unwrap(),
        owner: AccountId::parse("222222222222").unwrap(),
        state: ConnectionState::PendingAcceptance,
        region: None,
        created_at_ms: 1_000,
        connection_id: None,
    }
}

/// The SNS delivery of EC2's `Connect` notification, as Lambda passes it.
fn sns_event() -> SnsEvent {
    serde_json::from_str(include_str!("../../../events/sns/connect-notification.json")).unwrap()
}

#[tokio::test]
async fn when_a_connect_notification_arrives_should_request_a_decision_for_its_endpoint() {
    let w = World::default();
    handle(&deps(&w), LambdaEvent::new(sns_event(), Context::default())).await.unwrap();
    let put = w.put.lock().unwrap();
    assert_eq!(put.len(), 1);
    assert_eq!((put[0].service_id.as_str(), put[0].endpoint_id.as_str()), (SVC, ENDPOINT));
    assert_eq!(put[0].trigger, Trigger::Notification);
}

#[tokio::test]
async fn when_the_bus_fails_should_report_its_kind_as_the_error_type() {
    for kind in [ErrorKind::Retryable, ErrorKind::Permanent, ErrorKind::Uncertain] {
        let w = World { conns: vec![pending(ENDPOINT)], bus_fails: Some(kind), ..Default::default() };
        let err = handle(&deps(&w), LambdaEvent::new(sns_event(), Context::default())).await.unwrap_err();
        let diagnostic = Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, kind.as_str());
        assert!(diagnostic.error_message.contains("ThrottlingException"), "{}", diagnostic.error_message);
    }
}

/// Every SNS sample in `events/sns/` reads as the `SnsEvent` Lambda delivers.
#[test]
fn the_sns_samples_are_sns_events() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/sns");
    let mut n = 0;
    for file in std::fs::read_dir(&dir).unwrap() {
        let path = file.unwrap().path();
        let event: SnsEvent = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(!event.records.is_empty(), "{path:?}");
        n += 1;
    }
    assert!(n > 0, "no sample in {dir:?}");
}

/// The sample notification with its message's `serviceId` (and, with `endpoint` false, `vpcEndpointId`) left
/// out: AWS documents no body (docs/aws-facts.md), so ingest must act on any of these.
fn naming_less(endpoint: bool) -> SnsEvent {
    let mut e = sns_event();
    let message = &mut e.records[0].sns.message;
    let mut body: serde_json::Value = serde_json::from_str(message).unwrap();
    body.as_object_mut().unwrap().remove("serviceId");
    if !endpoint {
        body.as_object_mut().unwrap().remove("vpcEndpointId");
    }
    *message = body.to_string();
    e
}

#[tokio::test(start_paused = true)]
async fn when_a_notification_names_only_the_endpoint_and_ec2_lags_should_ask_again_and_request_it() {
    // EC2 shows the new connection from the third Describe on: at once, after 0.25 s (not yet), after 1 s.
    let w = World { conns: vec![pending(ENDPOINT)], visible_from: 3, ..Default::default() };
    handle(&deps(&w), LambdaEvent::new(naming_less(true), Context::default())).await.unwrap();
    let put = w.put.lock().unwrap();
    assert_eq!(
        put.iter().map(|r| (r.service_id.as_str(), r.endpoint_id.as_str())).collect::<Vec<_>>(),
        [(SVC, ENDPOINT)]
    );
    assert_eq!(*w.describes.lock().unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn when_ec2_never_shows_the_notifications_endpoint_the_invocation_should_fail_to_be_retried() {
    let w = World { conns: vec![pending(ENDPOINT)], visible_from: 100, ..Default::default() };
    let err = handle(&deps(&w), LambdaEvent::new(naming_less(true), Context::default())).await.unwrap_err();
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "Retryable", "Lambda retries it");
    assert!(diagnostic.error_message.contains("NotVisibleYet") && diagnostic.error_message.contains(ENDPOINT));
    assert_eq!(*w.describes.lock().unwrap(), 3, "asked three times within the invocation");
}

#[tokio::test]
async fn when_a_managed_service_is_gone_the_others_should_still_be_searched_and_rescanned() {
    for endpoint in [true, false] {
        let w = World { conns: vec![pending(ENDPOINT)], gone: Some(GONE), ..Default::default() };
        handle(&deps(&w), LambdaEvent::new(naming_less(endpoint), Context::default())).await.unwrap();
        let put = w.put.lock().unwrap();
        assert_eq!(
            put.iter().map(|r| r.endpoint_id.as_str()).collect::<Vec<_>>(),
            [ENDPOINT],
            "endpoint named: {endpoint}"
        );
    }
}

#[tokio::test]
async fn once_the_endpoint_is_found_no_other_service_should_be_asked_for_every_connection() {
    // The endpoint is on SVC, asked first; OTHER has a connection of its own, which must not be requested
    // (an empty endpoint filter asks EC2 for every connection of the service).
    const OTHER: &str = "vpce-svc-0fffffffffffffff1";
    let mut elsewhere = pending("vpce-0bbbbbbbbbbbbbbb2");
    elsewhere.service_id = ServiceId::parse(OTHER).unwrap();
    let w = World { conns: vec![pending(ENDPOINT), elsewhere], others: vec![OTHER], ..Default::default() };
    handle(&deps(&w), LambdaEvent::new(naming_less(true), Context::default())).await.unwrap();
    let put = w.put.lock().unwrap();
    assert_eq!(put.iter().map(|r| r.endpoint_id.as_str()).collect::<Vec<_>>(), [ENDPOINT]);
    assert_eq!(*w.describes.lock().unwrap(), 1, "OTHER not asked once the endpoint was found");
}

#[tokio::test]
async fn a_refusal_other_than_not_found_should_fail_the_notification() {
    for endpoint in [true, false] {
        let w = World { conns: vec![pending(ENDPOINT)], refuse: Some("UnauthorizedOperation"), ..Default::default() };
        let err = handle(&deps(&w), LambdaEvent::new(naming_less(endpoint), Context::default())).await.unwrap_err();
        let diagnostic = Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "Permanent", "endpoint named: {endpoint}");
        assert!(diagnostic.error_message.contains("UnauthorizedOperation"), "{}", diagnostic.error_message);
    }
}
