//! Reading the managed services' configurations when EC2 may refuse one of them for good: a service
//! deleted while still in `ManagedServiceIds` (docs/aws-facts.md, "A service that no longer exists").

use crate::domain::ServiceId;
use crate::domain::service::ServiceHealth;
use crate::ports::{EndpointServices, ErrorKind, PortError};

/// The code EC2 answers when a call names a service ID it does not know (EC2 API reference, "Error codes":
/// "The specified VPC endpoint service does not exist").
pub const SERVICE_NOT_FOUND: &str = "InvalidVpcEndpointServiceId.NotFound";

/// What reading services' configurations came to.
#[derive(Debug, Default)]
pub struct Configurations {
    /// The configurations EC2 answered.
    pub read: Vec<ServiceHealth>,
    /// The services EC2 answered nothing for, each with its call's error: alone in that call when EC2
    /// refused it for good; with the other services of that call when the failure may pass.
    pub refused: Vec<(ServiceId, PortError)>,
}

impl Configurations {
    /// Whether EC2 says `service` does not exist.
    pub fn not_found(&self, service: &ServiceId) -> bool {
        self.refused.iter().any(|(s, e)| s == service && e.code == SERVICE_NOT_FOUND)
    }

    /// The first refusal that is not "does not exist": a failure that may pass, or another refusal for good
    /// (a missing permission, say).
    pub fn other_failure(&self) -> Option<&PortError> {
        self.refused.iter().map(|(_, e)| e).find(|e| e.code != SERVICE_NOT_FOUND)
    }
}

/// `list`'s configurations, in one call when EC2 answers it. One unknown service ID fails the whole call
/// (`SERVICE_NOT_FOUND`), so a call EC2 refuses so is halved until each unknown service is alone and the
/// others are still read: about 2·log₂ N more calls for one such service, not N. Any other refusal for good
/// refuses the services of that call together. A failure that may pass (throttling, a 5xx, no answer) ends
/// the reading at once: the services of that call are refused with it, and those not asked yet are in
/// neither list.
pub async fn configurations_apart(services: &impl EndpointServices, list: &[ServiceId]) -> Configurations {
    let mut found = Configurations::default();
    let mut lists: Vec<Vec<ServiceId>> = vec![list.to_vec()];
    while let Some(list) = lists.pop() {
        match services.configurations(&list).await {
            Ok(h) => found.read.extend(h),
            // Only "does not exist" is about one service of the call; any other refusal (a missing
            // permission, say) would refuse each half alike.
            Err(e) if e.code == SERVICE_NOT_FOUND && list.len() > 1 => {
                let (first, second) = list.split_at(list.len() / 2);
                lists.push(second.to_vec());
                lists.push(first.to_vec());
            }
            Err(e) => {
                let may_pass = e.kind != ErrorKind::Permanent;
                found.refused.extend(list.into_iter().map(|s| (s, e.clone())));
                if may_pass {
                    break;
                }
            }
        }
    }
    found
}
