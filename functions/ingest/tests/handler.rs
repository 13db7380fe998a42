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
}

struct Fake<'a>(&'a World);

impl Connections for Fake<'_> {
    async fn describe(&self, service: &ServiceId, filter: &ConnectionFilter) -> PortResult<Vec<Connection>> {
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

fn deps(w: &World) -> Deps<Fake<'_>, Fake<'_>> {
    Deps {
        connections: Fake(w),
        bus: Fake(w),
        config: Config { bus_name: "bus".into(), managed: [ServiceId::parse(SVC).unwrap()].into() },
    }
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
