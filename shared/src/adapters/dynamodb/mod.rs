//! DynamoDB: the allowlist (read by partition, edited conditionally) and the decisions table
//! (conditional writes, queries). SDK types stop here.

mod allowlist;
mod attrs;
mod decisions;

pub use allowlist::DynamoAllowlist;
pub use attrs::{from_attr, to_attr, to_item};
pub use decisions::{DynamoDecisionLog, OWED_INDEX, item_to_record, record_to_item, sort_key};

/// Kept here for callers of the adapter's old path; the port owns it.
pub use crate::ports::Expect;
