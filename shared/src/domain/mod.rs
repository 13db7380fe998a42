//! The pure domain: no SDK types, no I/O.

pub mod allowlist;
pub mod connection;
pub mod ids;
pub mod notice;
pub mod policy;
pub mod principal;
pub mod principals;
pub mod protocol;
pub mod quota;
pub mod record;
pub mod request;
pub mod service;
pub mod time;

pub use allowlist::{AllowlistEntry, Attr, Effect, EntryError, Item, Rules, Scope};
pub use connection::{Connection, ConnectionState, ItemFailure, TENANT_TAG};
pub use ids::{AccountId, EndpointId, IdError, Region, ServiceId};
pub use policy::{Decision, DefaultAction, Outcome, Reason, apply_quota, evaluate};
pub use request::{ConnectionRequest, Trigger};
