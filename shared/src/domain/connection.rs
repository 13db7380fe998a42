//! A connection as EC2 reports it: the only source of truth for owner and state.

use super::ids::{AccountId, EndpointId, Region, ServiceId};

/// Connection states, compared by their wire strings (EC2 sends camelCase values that the SDK's enum
/// does not know; see ARCHITECTURE.md fact 4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    PendingAcceptance,
    Pending,
    Available,
    Rejected,
    Deleting,
    Deleted,
    Failed,
    Expired,
    Other(String),
}

impl ConnectionState {
    /// The wire states of a connection the provider has accepted: `available`, or `pending` on its way
    /// there. A quota counts them, and revocation applies to them.
    pub const ACCEPTED: [&str; 2] = ["available", "pending"];

    /// Whether this is one of [`Self::ACCEPTED`].
    pub fn is_accepted(&self) -> bool {
        matches!(self, Self::Available | Self::Pending)
    }

    pub fn from_wire(s: &str) -> Self {
        match s {
            "pendingAcceptance" | "PendingAcceptance" => Self::PendingAcceptance,
            "pending" | "Pending" => Self::Pending,
            "available" | "Available" => Self::Available,
            "rejected" | "Rejected" => Self::Rejected,
            "deleting" | "Deleting" => Self::Deleting,
            "deleted" | "Deleted" => Self::Deleted,
            "failed" | "Failed" => Self::Failed,
            "expired" | "Expired" => Self::Expired,
            other => Self::Other(other.chars().take(64).collect()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::PendingAcceptance => "pendingAcceptance",
            Self::Pending => "pending",
            Self::Available => "available",
            Self::Rejected => "rejected",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Other(s) => s,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub service_id: ServiceId,
    pub endpoint_id: EndpointId,
    pub owner: AccountId,
    pub state: ConnectionState,
    /// The consumer's Region for a cross-Region endpoint; `None` means the service's own Region.
    pub region: Option<Region>,
    /// `CreationTimestamp`, epoch milliseconds: with the endpoint ID it keys the decision record.
    pub created_at_ms: i64,
    /// `VpcEndpointConnectionId` (`vpce-con-…`): the connection as a taggable resource of the provider's
    /// account. `None` when EC2 does not send it.
    pub connection_id: Option<String>,
}

/// The tag key Gatekeeper puts on an accepted connection: the tenant of the allowlist entry that accepted it.
pub const TENANT_TAG: &str = "gatekeeper:tenant";

/// One ID that EC2 refused in an accept/reject call (`Unsuccessful[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFailure {
    pub endpoint_id: String,
    pub code: String,
    pub message: String,
}

impl ItemFailure {
    /// The endpoint is gone: nothing to retry.
    pub fn is_not_found(&self) -> bool {
        self.code.contains("NotFound")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_states_and_their_wire_names_agree() {
        for s in ConnectionState::ACCEPTED {
            assert!(ConnectionState::from_wire(s).is_accepted(), "{s}");
        }
        for s in ["pendingAcceptance", "rejected", "deleted", "failed", "expired", "other"] {
            assert!(!ConnectionState::from_wire(s).is_accepted(), "{s}");
        }
    }
}
