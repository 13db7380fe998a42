//! Narrow capabilities the handlers need, named for what they do. Adapters implement them over AWS;
//! tests implement them with fakes.

use std::future::Future;

use crate::domain::record::{Announced, Announcement, DecisionRecord, Status};
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

impl ErrorKind {
    /// The stable name a handler reports to the Lambda runtime as its `errorType`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "Retryable",
            Self::Permanent => "Permanent",
            Self::Uncertain => "Uncertain",
        }
    }
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

impl PortError {
    /// EC2 said "slow down" (`RequestLimitExceeded`: its token bucket for this API is empty, for this account
    /// and Region). Nothing was done; the same call succeeds once a token is back.
    pub fn is_rate_limited(&self) -> bool {
        self.kind == ErrorKind::Retryable && self.code == "RequestLimitExceeded"
    }

    /// The SDK's final error says the call was not sent: it could not serialize the request
    /// (`ConstructionFailure`, before any attempt) or its HTTP client refused the request for a reason of
    /// the caller's (a user `DispatchFailure`, such as an invalid request) with no earlier attempt of it
    /// having reached the point of being sent (the EC2 adapter counts them; after one, the error is
    /// `Uncertain`). Nothing of it reached AWS. Any other error may follow an earlier attempt of the same
    /// call that reached AWS and got no answer.
    pub fn never_sent(&self) -> bool {
        self.kind == ErrorKind::Permanent && matches!(self.code.as_str(), "ConstructionFailure" | "DispatchFailure")
    }
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
    /// Tags connections (`vpce-con-…` IDs, the provider's own resources) with one key and value, in one call.
    fn tag(&self, connection_ids: &[String], key: &str, value: &str) -> impl Future<Output = PortResult<()>> + Send;
}

#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub endpoints: Vec<EndpointId>,
    pub owner: Option<AccountId>,
    /// Wire state names, such as `pendingAcceptance`.
    pub states: Vec<String>,
}

impl ConnectionFilter {
    /// Connections waiting for the provider.
    pub fn pending() -> Self {
        Self { states: vec![crate::domain::ConnectionState::PendingAcceptance.as_str().to_owned()], ..Self::default() }
    }

    /// Connections the provider has accepted (`ConnectionState::ACCEPTED`).
    pub fn accepted() -> Self {
        Self { states: crate::domain::ConnectionState::ACCEPTED.map(String::from).to_vec(), ..Self::default() }
    }
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

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The claim stands (written now, or found to be this claim's own write answered late).
    Won,
    /// The condition failed: the record that stands instead, when DynamoDB returned a readable one (the
    /// claim asks for it with `ReturnValuesOnConditionCheckFailure`, so a claim made without reading
    /// first learns what it found without another call).
    Lost(Option<Box<DecisionRecord>>),
}

/// The version a versioned item is at after a write conditioned on `expected` (`None`: on its absence).
pub fn next_version(expected: Option<u64>) -> u64 {
    expected.map_or(1, |v| v + 1)
}

/// What asking a [`CallBudget`] for a call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Taken, in the window that ends at this epoch ms: the call is to be made before then.
    Taken(i64),
    /// The window's calls are all taken; the next window starts at this epoch ms.
    FullUntil(i64),
}

/// A budget of calls to one API, shared by concurrent invocations: a count per fixed window of time.
pub trait CallBudget: Send + Sync {
    /// Takes one call of `api` in the window that holds `now_ms`.
    fn take(&self, api: &'static str, now_ms: i64) -> impl Future<Output = PortResult<Budget>> + Send;
}

/// The decisions table.
pub trait DecisionLog: Send + Sync {
    /// Every record of an endpoint (its decision and its revocation, for each creation time), read
    /// consistently. Keyed by the endpoint alone, so it needs nothing from EC2 and can be read alongside it.
    fn records(&self, endpoint: &EndpointId) -> impl Future<Output = PortResult<Vec<DecisionRecord>>> + Send;
    /// Writes a claim if there is no record (`expected_version` None) or the record is still at
    /// `expected_version`; a lost claim answers the record that stands.
    fn claim(
        &self,
        record: &DecisionRecord,
        expected_version: Option<u64>,
    ) -> impl Future<Output = PortResult<Claim>> + Send;
    /// Moves a record from `record.status` to `status`, if it still stands as read: at `record.status`,
    /// held by `record.claim` at `record.version`. The record is then held by `by` (the invocation
    /// writing; a finisher of a dead holder's record takes it over), so of two invocations finishing the
    /// same record only one moves it, and a stale reader never moves a record back. `Yes` also when the
    /// record already stands at `status`, held by `by` at the version: this write, whose answer was lost
    /// and which the SDK repeated.
    fn advance(
        &self,
        record: &DecisionRecord,
        status: Status,
        by: &str,
    ) -> impl Future<Output = PortResult<Written>> + Send;
    /// Gives up a claim whose action cannot land (it was never sent, or it is a hold): its lease ends now, so
    /// a retry takes it over at once. A claim whose action may still land is kept until its lease ends
    /// instead.
    fn abandon(&self, record: &DecisionRecord) -> impl Future<Output = PortResult<Written>> + Send;
    /// Marks `notified` the record SNS delivered a notification for, if it still stands as announced:
    /// `notifying` (or `acted`: a publish answered with an error that SNS delivered all the same), held
    /// by `announced.claim` at `announced.version`. `Yes` also when it stands `notified` so already (a
    /// delivery repeated); `Lost` when it moved on (a hold decided again, another finisher) or is gone.
    fn confirm(&self, announced: &Announced) -> impl Future<Output = PortResult<Written>> + Send;
}

/// Decisions still owed their end: records left `claimed` or `acted` (an invocation that died, a message
/// that reached the DLQ after its EC2 action). The sweep re-requests them, so `decide` finishes them.
pub trait OwedDecisions: Send + Sync {
    /// The endpoints of `service` with a record still owed its action or its notification.
    fn owed(&self, service: &ServiceId) -> impl Future<Output = PortResult<Vec<EndpointId>>> + Send;
}

pub trait Notifier: Send + Sync {
    fn notify(&self, n: &Announcement) -> impl Future<Output = PortResult<()>> + Send;
}

/// Where producers put Connection Request events.
pub trait RequestBus: Send + Sync {
    /// Puts every request, retrying failed entries; an error means some were not put.
    fn put(&self, requests: &[ConnectionRequest]) -> impl Future<Output = PortResult<()>> + Send;
}

/// What a conditional allowlist write expects to find under its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No item.
    Absent,
    /// The item as it was read, at this `version` (`None`: an item with no version, written by hand).
    Version(Option<u64>),
}

/// The key of an allowlist item as stored: its `service_id` (`vpce-svc-…` or `*`) and its `principal`,
/// raw, so an item written by hand with a key the parser refuses can still be replaced or removed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemKey {
    pub service_id: String,
    pub principal: String,
}

/// An allowlist item as stored, with the version a conditional write names to replace or remove it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredItem {
    pub item: crate::domain::Item,
    pub version: Option<u64>,
}

/// One change of an all-or-nothing allowlist edit ([`AllowlistAdmin::apply`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Writes the item (its key is in it) if the table holds what `Expect` says.
    Put(crate::domain::Item, Expect),
    /// Removes the item under the key if it is still at this version.
    Remove(ItemKey, Option<u64>),
}

/// The most changes one [`AllowlistAdmin::apply`] takes (DynamoDB's transaction limit).
pub const MAX_CHANGES: usize = 100;

/// Editing the provider's allowlist (the CLI). Reads are strongly consistent; every write is conditional
/// on what the caller read and bumps the item's `version`, so two editors never silently overwrite
/// each other.
///
/// `Ok(Written::Lost)` means a condition failed: an item is no longer as it was read (someone else wrote
/// or removed it) and nothing was written. Read again and decide again; the same write would lose again.
/// Errors: `Retryable` (throttling, 5xx, a transaction that collided with another): nothing was written
/// and the same call may be repeated. `Permanent`: the request is wrong (permission, table, more than
/// [`MAX_CHANGES`]). `Uncertain`: the write may have taken effect; read again before anything else,
/// since repeating it would report `Lost` against its own write.
pub trait AllowlistAdmin: Send + Sync {
    /// Every item, with its version (the allowlist is small: providers list customers, not requests).
    fn items(&self) -> impl Future<Output = PortResult<Vec<StoredItem>>> + Send;
    /// The item under `key`, if any.
    fn item(&self, key: &ItemKey) -> impl Future<Output = PortResult<Option<StoredItem>>> + Send;
    /// Writes `item` if its key holds what `expect` says.
    fn put_if(&self, item: &crate::domain::Item, expect: Expect) -> impl Future<Output = PortResult<Written>> + Send;
    /// Removes the item under `key` if it is still at `version`.
    fn delete_if(&self, key: &ItemKey, version: Option<u64>) -> impl Future<Output = PortResult<Written>> + Send;
    /// Applies every change or none: `Lost` if any one's condition failed.
    fn apply(&self, changes: &[Change]) -> impl Future<Output = PortResult<Written>> + Send;
}

/// Reading the decisions table (the CLI's `explain` and `decisions`). Reads only, so any error may be
/// retried; `Permanent` is a wrong request (permission, table) or, for [`Self::for_endpoint`], a record
/// that cannot be read (code `UnusableResponse`).
pub trait DecisionQueries: Send + Sync {
    /// Every record of `endpoint` (its decision and any revocation), read strongly consistent.
    fn for_endpoint(&self, endpoint: &EndpointId) -> impl Future<Output = PortResult<Vec<DecisionRecord>>> + Send;
    /// The records of `service` decided at or after `since_ms` (epoch milliseconds), newest first: what the
    /// window holds, not the whole table. Eventually consistent; a record that cannot be read is skipped
    /// and logged.
    fn decided_since(
        &self,
        service: &ServiceId,
        since_ms: i64,
    ) -> impl Future<Output = PortResult<Vec<DecisionRecord>>> + Send;
}

/// The `max_endpoints` ledger of each (service, account): which endpoints hold its slots
/// (`domain::quota`). Written whole and conditionally, so concurrent invocations never both take the
/// last slot.
pub trait QuotaLedger: Send + Sync {
    /// The ledger and its version (`None`: there is no ledger yet).
    fn read(
        &self,
        service: &ServiceId,
        owner: &AccountId,
    ) -> impl Future<Output = PortResult<(crate::domain::quota::Slots, Option<u64>)>> + Send;
    /// Writes the ledger if it is still at `expected` (`None`: only if there is none). `Lost`: another
    /// invocation wrote first; read again.
    fn write(
        &self,
        service: &ServiceId,
        owner: &AccountId,
        slots: &crate::domain::quota::Slots,
        expected: Option<u64>,
    ) -> impl Future<Output = PortResult<Written>> + Send;
}

/// The provider's endpoint services themselves: their configuration (EC2
/// `DescribeVpcEndpointServiceConfigurations`) and allowed principals
/// (`DescribeVpcEndpointServicePermissions`, `ModifyVpcEndpointServicePermissions`).
pub trait EndpointServices: Send + Sync {
    /// Each service's configuration: acceptance, private DNS and its verification, Regions.
    fn configurations(
        &self,
        services: &[ServiceId],
    ) -> impl Future<Output = PortResult<Vec<crate::domain::service::ServiceHealth>>> + Send;
    /// The principals EC2 shows as allowed (eventually consistent: a change may take seconds to show).
    fn allowed_principals(&self, service: &ServiceId) -> impl Future<Output = PortResult<Vec<String>>> + Send;
    /// Adds and removes principals in one call.
    fn change_principals(
        &self,
        service: &ServiceId,
        add: &[String],
        remove: &[String],
    ) -> impl Future<Output = PortResult<()>> + Send;
}

/// The principals Gatekeeper added to each service (`domain::principals`), written whole and conditionally.
pub trait PrincipalLedger: Send + Sync {
    /// The principals with when each was claimed, and the ledger's version (`None`: no ledger yet).
    fn managed(
        &self,
        service: &ServiceId,
    ) -> impl Future<Output = PortResult<(crate::domain::principals::Ledger, Option<u64>)>> + Send;
    /// Writes the ledger if it is still at `expected`. `Lost`: another invocation wrote first.
    fn set_managed(
        &self,
        service: &ServiceId,
        principals: &crate::domain::principals::Ledger,
        expected: Option<u64>,
    ) -> impl Future<Output = PortResult<Written>> + Send;
}
