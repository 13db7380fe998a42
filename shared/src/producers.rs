//! What every producer does: turn "look at these connections" into Connection Request events.

use crate::domain::time::now_ms;
use crate::domain::{AccountId, ConnectionRequest, ServiceId, Trigger};
use crate::ports::{ConnectionFilter, Connections, PortResult};

/// Requests for the connections of `service` (of `owner`, when given) in one of `states`.
pub async fn requests_for<C: Connections>(
    connections: &C,
    service: &ServiceId,
    owner: Option<&AccountId>,
    states: &[&str],
    trigger: Trigger,
) -> PortResult<Vec<ConnectionRequest>> {
    let filter = ConnectionFilter {
        owner: owner.cloned(),
        states: states.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    let requested_at = now_ms();
    Ok(connections
        .describe(service, &filter)
        .await?
        .into_iter()
        .map(|c| ConnectionRequest { service_id: c.service_id, endpoint_id: c.endpoint_id, trigger, requested_at })
        .collect())
}
