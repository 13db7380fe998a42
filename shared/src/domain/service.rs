//! An endpoint service's own configuration, as far as it decides whether Gatekeeper gates anything.

use super::ids::ServiceId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    pub service_id: ServiceId,
    /// `ServiceState` (Pending, Available, Deleting, Deleted, Failed).
    pub state: String,
    /// Whether a connection waits for the provider. Off, EC2 accepts every allowed principal's endpoint
    /// at once and Gatekeeper gates nothing.
    pub acceptance_required: bool,
    pub private_dns_name: Option<String>,
    /// `PrivateDnsNameConfiguration.State`: pendingVerification, verified or failed.
    pub private_dns_state: Option<String>,
    /// (Region, its service state) for cross-Region access.
    pub regions: Vec<(String, String)>,
}

impl ServiceHealth {
    /// A private DNS name is set but the domain's ownership is not verified: consumers cannot use it.
    pub fn private_dns_unverified(&self) -> bool {
        self.private_dns_name.is_some() && self.private_dns_state.as_deref() != Some("verified")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_set_and_unverified_name_is_unverified() {
        let h = |name: Option<&str>, state: Option<&str>| ServiceHealth {
            service_id: ServiceId::parse("vpce-svc-0123456789abcdef0").unwrap(),
            state: "Available".into(),
            acceptance_required: true,
            private_dns_name: name.map(str::to_owned),
            private_dns_state: state.map(str::to_owned),
            regions: vec![],
        };
        assert!(!h(None, None).private_dns_unverified());
        assert!(!h(Some("api.example.com"), Some("verified")).private_dns_unverified());
        assert!(h(Some("api.example.com"), Some("pendingVerification")).private_dns_unverified());
        assert!(h(Some("api.example.com"), Some("failed")).private_dns_unverified());
        assert!(h(Some("api.example.com"), None).private_dns_unverified());
    }
}
