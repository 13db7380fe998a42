//! Each notification is a hint: the IDs it names become a Connection Request; a notification that names
//! no usable endpoint makes the service (or every managed service) be re-examined, never dropped.
//! `Accept`/`Reject`/`Delete` are counted and logged for the audit trail.

use std::collections::BTreeSet;

use aws_lambda_events::event::sns::SnsEvent;
use lambda_runtime::LambdaEvent;
use shared::domain::notice::{ConnectionEvent, parse_notice};
use shared::domain::time::now_ms;
use shared::domain::{ConnectionRequest, ServiceId, Trigger};
use shared::ports::{ConnectionFilter, Connections, RequestBus};
use shared::producers::requests_for;
use shared::telemetry::{Metrics, names};
use tracing::{Instrument, info, warn};

use crate::config::Config;
use crate::error::IngestError;

pub struct Deps<C, B> {
    pub connections: C,
    pub bus: B,
    pub config: Config,
}

/// Handles one SNS delivery. An error makes Lambda retry the invocation (and then send it to the
/// function's on-failure destination); duplicates are harmless because `decide` is idempotent.
pub async fn handle<C: Connections, B: RequestBus>(
    deps: &Deps<C, B>,
    event: LambdaEvent<SnsEvent>,
) -> Result<(), IngestError> {
    let span = tracing::info_span!("ingest", request_id = %event.context.request_id);
    let mut metrics = Metrics::default();
    let result = ingest(deps, &event.payload, &mut metrics).instrument(span).await;
    metrics.flush("ingest");
    result.map(|_| ()).map_err(Into::into)
}

fn metric(event: &ConnectionEvent) -> &'static str {
    match event {
        ConnectionEvent::Connect => names::CONNECT_NOTIFICATIONS,
        ConnectionEvent::Accept => names::ACCEPT_NOTIFICATIONS,
        ConnectionEvent::Reject => names::REJECT_NOTIFICATIONS,
        ConnectionEvent::Delete => names::DELETE_NOTIFICATIONS,
        ConnectionEvent::Other(_) | ConnectionEvent::Unnamed => names::UNKNOWN_NOTIFICATIONS,
    }
}

pub async fn ingest<C: Connections, B: RequestBus>(
    deps: &Deps<C, B>,
    event: &SnsEvent,
    metrics: &mut Metrics,
) -> Result<Vec<ConnectionRequest>, shared::ports::PortError> {
    let managed = &deps.config.managed;
    let mut requests: Vec<ConnectionRequest> = Vec::new();
    let mut rescan: BTreeSet<ServiceId> = BTreeSet::new();
    for record in &event.records {
        let notice = parse_notice(&record.sns.message);
        metrics.incr(metric(&notice.event));
        info!(
            message_id = %record.sns.message_id,
            event = notice.event.as_str(),
            service_id = notice.service.as_ref().map(ToString::to_string),
            endpoint_id = notice.endpoint.as_ref().map(ToString::to_string),
            "connection notification"
        );
        if !notice.event.needs_decision() {
            continue;
        }
        match (notice.service, notice.endpoint) {
            (Some(service), _) if !managed.contains(&service) => {
                info!(service_id = %service, "service is not managed by Gatekeeper; ignored");
                metrics.incr(names::UNMANAGED);
            }
            (Some(service_id), Some(endpoint_id)) => requests.push(ConnectionRequest {
                service_id,
                endpoint_id,
                trigger: Trigger::Notification,
                requested_at: now_ms(),
            }),
            (None, Some(endpoint)) => {
                // Which managed service is it on? EC2 knows.
                for service in managed {
                    let filter = ConnectionFilter { endpoints: vec![endpoint.clone()], ..Default::default() };
                    for c in deps.connections.describe(service, &filter).await? {
                        requests.push(ConnectionRequest {
                            service_id: c.service_id,
                            endpoint_id: c.endpoint_id,
                            trigger: Trigger::Notification,
                            requested_at: now_ms(),
                        });
                    }
                }
            }
            (Some(service), None) => {
                warn!(service_id = %service, "notification names no usable endpoint; re-examining the service");
                rescan.insert(service);
            }
            (None, None) => {
                warn!(message_id = %record.sns.message_id, "notification names no usable ID; re-examining every managed service");
                metrics.incr(names::UNUSABLE_NOTIFICATIONS);
                rescan.extend(managed.iter().cloned());
            }
        }
    }
    for service in &rescan {
        requests.extend(
            requests_for(&deps.connections, service, None, &["pendingAcceptance"], Trigger::Notification).await?,
        );
    }
    requests.sort_by(|a, b| (&a.service_id, &a.endpoint_id).cmp(&(&b.service_id, &b.endpoint_id)));
    requests.dedup_by(|a, b| a.service_id == b.service_id && a.endpoint_id == b.endpoint_id);
    deps.bus.put(&requests).await?;
    metrics.add(names::REQUESTS_EMITTED, requests.len() as u64);
    Ok(requests)
}
