//! Narrow capabilities the handlers need, named for what they do. Adapters implement them over AWS;
//! tests implement them with fakes.

use std::future::Future;

use crate::domain::record::{DecisionRecord, Kind, Notification, Status};
use crate::domain::{AccountId, Connection, ConnectionRequest, EndpointId, ItemFailure, Rules, ServiceId};

/// How the runtime should treat a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Throttling, 5xx, timeouts, dropped connections: try again later.
    Retryable,
    /// The request itself is wrong (bad input, missing permission, missing resource): retrying will not
    /// help, but the message is kept (DLQ) for a person.
    Permanent,
    /// The request may have reached AWS, but no answer came back (the connection dropped, the call timed
    /// out, the answer was unreadable): it may have taken effect. Retryable where a repeat is harmless
    /// (reads, conditional writes, EC2's accept/reject); never retried for a publish.
    Uncertain,
}

/// An AWS call that failed, with the service's error code kept.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service} {operation} failed ({kind:?}): {code}: {message}")]
pub struct PortError {
    pub service: &'static str,
    pub operation: &'static str,
    pub kind: ErrorKind,
    pub code: String,
    pub message: String,
}

pub type PortResult<T> = Result<T, PortError>;

/// The EC2 side of an endpoint service: the truth about connections, and the accept/reject actions.
pub trait Connections: Send + Sync {
    /// The connections of `service`, limited to `endpoints` when given, and to `owner`/`state` filters.
    fn describe(
        &self,
        service: &ServiceId,
        filter: &ConnectionFilter,
    ) -> impl Future<Output = PortResult<Vec<Connection>>> + Send;
    /// Accepts the IDs in one call; EC2's per-ID failures come back, not as an error.
    fn accept(
        &self,
        service: &ServiceId,
        ids: &[EndpointId],
    ) -> impl Future<Output = PortResult<Vec<ItemFailure>>> + Send;
    /// Rejects the IDs in one call (also revokes `available` ones).
    fn reject(
        &self,
        service: &ServiceId,
        ids: &[EndpointId],
    ) -> impl Future<Output = PortResult<Vec<ItemFailure>>> + Send;
}

#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub endpoints: Vec<EndpointId>,
    pub owner: Option<AccountId>,
    /// Wire state names, such as `pendingAcceptance`.
    pub states: Vec<String>,
}

/// The provider's allowlist.
pub trait Allowlist: Send + Sync {
    /// Every item that can apply to `service`: its own partition and the `*` partition.
    fn rules_for(&self, service: &ServiceId) -> impl Future<Output = PortResult<Rules>> + Send;
}

/// What a conditional write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// The condition failed: someone else got there first.
    Lost,
}

/// The decisions table.
pub trait DecisionLog: Send + Sync {
    /// The record of a connection's decision, or of its revocation.
    fn get(
        &self,
        kind: Kind,
        endpoint: &EndpointId,
        created_at_ms: i64,
    ) -> impl Future<Output = PortResult<Option<DecisionRecord>>> + Send;
    /// Writes a claim if there is no record (`expected_version` None) or the record is still at
    /// `expected_version`.
    fn claim(
        &self,
        record: &DecisionRecord,
        expected_version: Option<u64>,
    ) -> impl Future<Output = PortResult<Written>> + Send;
    /// Moves a record forward, if it is still held by `claim`.
    fn advance(&self, record: &DecisionRecord, status: Status) -> impl Future<Output = PortResult<Written>> + Send;
    /// Gives up a claim whose action failed: its lease ends now, so a retry takes it over at once and
    /// finds out from EC2 whether the action took effect.
    fn abandon(&self, record: &DecisionRecord) -> impl Future<Output = PortResult<Written>> + Send;
}

/// Decisions still owed their end: records left `claimed` or `acted` (an invocation that died, a message
/// that reached the DLQ after its EC2 action). The sweep re-requests them, so `decide` finishes them.
pub trait OwedDecisions: Send + Sync {
    /// The endpoints of `service` with a record still owed its action or its notification.
    fn owed(&self, service: &ServiceId) -> impl Future<Output = PortResult<Vec<EndpointId>>> + Send;
}

pub trait Notifier: Send + Sync {
    fn notify(&self, n: &Notification) -> impl Future<Output = PortResult<()>> + Send;
}

/// Where producers put Connection Request events.
pub trait RequestBus: Send + Sync {
    /// Puts every request, retrying failed entries; an error means some were not put.
    fn put(&self, requests: &[ConnectionRequest]) -> impl Future<Output = PortResult<()>> + Send;
}
