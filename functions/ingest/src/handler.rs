//! Each notification is a hint: the IDs it names become a Connection Request; a notification that names
//! no usable endpoint makes the service (or every managed service) be re-examined, never dropped.
//! `Accept`/`Reject`/`Delete` are counted and logged for the audit trail.

use std::collections::BTreeSet;

use aws_lambda_events::event::sns::SnsEvent;
use lambda_runtime::LambdaEvent;
use shared::domain::notice::{ConnectionEvent, parse_notice};
use shared::domain::time::now_ms;
use shared::domain::{ConnectionRequest, EndpointId, ServiceId, Trigger};
use shared::ports::{ConnectionFilter, Connections, ErrorKind, PortError, RequestBus};
use shared::producers::requests_for;
use shared::services::SERVICE_NOT_FOUND;
use shared::telemetry::{Metrics, names};
use tracing::{Instrument, error, info, warn};

use crate::config::Config;
use crate::error::IngestError;

/// Within one invocation, EC2 is asked again after these pauses about an endpoint it does not show yet.
pub const NOT_VISIBLE_PAUSES_MS: [u64; 2] = [250, 1000];

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
    // Endpoints named without their service: which managed service each is on, EC2 knows.
    let mut lookups: BTreeSet<EndpointId> = BTreeSet::new();
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
                lookups.insert(endpoint);
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
    // A service EC2 says does not exist (deleted while still managed) is passed over; the others are read. Any
    // other refusal (a missing permission, say) fails the notification, so its retries and DLQ say so.
    let mut refused: Option<PortError> = None;
    let unseen = services_of(deps, lookups, &mut requests, &mut refused).await?;
    for service in &rescan {
        match requests_for(&deps.connections, service, None, &["pendingAcceptance"], Trigger::Notification).await {
            Ok(found) => requests.extend(found),
            Err(e) if e.code == SERVICE_NOT_FOUND => {
                warn!(%service, error = %e, "could not list this service's pending connections; listing the others");
                refused.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    requests.sort_by(|a, b| (&a.service_id, &a.endpoint_id).cmp(&(&b.service_id, &b.endpoint_id)));
    requests.dedup_by(|a, b| a.service_id == b.service_id && a.endpoint_id == b.endpoint_id);
    deps.bus.put(&requests).await?;
    metrics.add(names::REQUESTS_EMITTED, requests.len() as u64);
    if !unseen.is_empty() {
        // Lambda retries the invocation (a minute later, then two), by when EC2 shows it; the sweep would
        // find it in any case.
        metrics.add(names::NOT_VISIBLE_YET, unseen.len() as u64);
        let named = unseen.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let also = refused.map(|e| format!(" (one service could not be read: {e})")).unwrap_or_default();
        return Err(PortError {
            service: "ec2",
            operation: "DescribeVpcEndpointConnections",
            kind: ErrorKind::Retryable,
            code: "NotVisibleYet".into(),
            message: format!(
                "EC2 shows no managed service with endpoint {named} yet{also}; the notification is retried"
            ),
        });
    }
    // What could be read is requested; a service EC2 says does not exist is the sweep's to report (it fails
    // naming it, and its DLQ alarms), so it does not fail the notification too.
    if let Some(e) = refused {
        error!(error = %e, "a managed service no longer exists; the others' connections are requested");
    }
    Ok(requests)
}

/// Requests for `endpoints` on whichever managed service EC2 shows each on, asking again after each of
/// `NOT_VISIBLE_PAUSES_MS` for those it does not show yet (EC2 is eventually consistent: a connection
/// named in a Connect notification may not show at once; docs/aws-facts.md, "The truth about connections").
/// Returns those it still does not show. A service EC2 says does not exist is kept in `refused` and passed over;
/// any other failure ends the lookup.
async fn services_of<C: Connections, B: RequestBus>(
    deps: &Deps<C, B>,
    endpoints: BTreeSet<EndpointId>,
    requests: &mut Vec<ConnectionRequest>,
    refused: &mut Option<PortError>,
) -> Result<BTreeSet<EndpointId>, PortError> {
    let mut unseen = endpoints;
    for pause in std::iter::once(0).chain(NOT_VISIBLE_PAUSES_MS) {
        if unseen.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        for service in &deps.config.managed {
            // Found everywhere already: an empty filter would ask for every connection of the service.
            if unseen.is_empty() {
                break;
            }
            let filter = ConnectionFilter { endpoints: unseen.iter().cloned().collect(), ..Default::default() };
            match deps.connections.describe(service, &filter).await {
                Ok(found) => {
                    for c in found {
                        unseen.remove(&c.endpoint_id);
                        requests.push(ConnectionRequest {
                            service_id: c.service_id,
                            endpoint_id: c.endpoint_id,
                            trigger: Trigger::Notification,
                            requested_at: now_ms(),
                        });
                    }
                }
                Err(e) if e.code == SERVICE_NOT_FOUND => {
                    warn!(%service, error = %e, "could not look for the endpoint on this service; looking on the others");
                    refused.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(unseen)
}
