//! Logs and metrics: `tracing` (JSON inside Lambda, readable text elsewhere) and CloudWatch EMF lines.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::json;

/// Metrics namespace in CloudWatch.
pub const NAMESPACE: &str = "Gatekeeper";

/// Sets up `tracing`: JSON lines when running in Lambda (or `LOG_FORMAT=json`), text otherwise.
/// The level comes from `RUST_LOG` (default `info`). Safe to call twice (the second call does nothing).
pub fn init() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        || std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).with_current_span(true).without_time().try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}

/// Counters for one invocation, written as one EMF line when flushed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Metrics {
    counts: BTreeMap<&'static str, u64>,
    /// Values that are not counts (name → (value, CloudWatch unit)).
    gauges: BTreeMap<&'static str, (u64, &'static str)>,
}

impl Metrics {
    pub fn add(&mut self, name: &'static str, n: u64) {
        *self.counts.entry(name).or_default() += n;
    }

    pub fn incr(&mut self, name: &'static str) {
        self.add(name, 1);
    }

    pub fn get(&self, name: &str) -> u64 {
        self.counts.get(name).copied().or_else(|| self.gauges.get(name).map(|g| g.0)).unwrap_or(0)
    }

    /// Records a value such as an age in seconds (the largest one given wins).
    pub fn gauge(&mut self, name: &'static str, value: u64, unit: &'static str) {
        let g = self.gauges.entry(name).or_insert((value, unit));
        g.0 = g.0.max(value);
    }

    /// The EMF document for these counts, with the function as the only dimension (low cardinality).
    pub fn emf(&self, function: &str, timestamp_ms: i64) -> serde_json::Value {
        let mut doc = json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": self.counts.keys().map(|k| json!({"Name": k, "Unit": "Count"}))
                        .chain(self.gauges.iter().map(|(k, (_, unit))| json!({"Name": k, "Unit": unit})))
                        .collect::<Vec<_>>(),
                }],
            },
            "Function": function,
        });
        for (k, v) in &self.counts {
            doc[*k] = json!(v);
        }
        for (k, (v, _)) in &self.gauges {
            doc[*k] = json!(v);
        }
        doc
    }

    /// Writes the EMF line to stdout (Lambda ships it to CloudWatch Logs, which extracts the metrics).
    pub fn flush(&self, function: &str) {
        if self.counts.is_empty() && self.gauges.is_empty() {
            return;
        }
        let line = self.emf(function, crate::domain::time::now_ms()).to_string();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

/// Metric names, one place.
pub mod names {
    pub const ACCEPTED: &str = "Accepted";
    pub const REJECTED: &str = "Rejected";
    pub const HELD: &str = "Held";
    /// A sweep found a connection held less than a day ago: not re-evaluated (backed off).
    pub const HELD_WAITING: &str = "HeldWaiting";
    pub const REVOKED: &str = "Revoked";
    pub const ERRORS: &str = "Errors";
    pub const DUPLICATES: &str = "Duplicates";
    pub const INVALID_EVENTS: &str = "InvalidEvents";
    pub const INVALID_RULES: &str = "InvalidRules";
    pub const UNMANAGED: &str = "Unmanaged";
    pub const NOT_PENDING: &str = "NotPending";
    /// A requested connection EC2 did not show (yet): its message is retried a bounded number of times.
    pub const NOT_VISIBLE_YET: &str = "NotVisibleYet";
    /// Notifications published (SNS answered the publish).
    pub const NOTIFIED: &str = "Notified";
    /// Notifications SNS delivered to the stack's deliveries queue, whose records `decide` then marked
    /// `notified`.
    pub const DELIVERED: &str = "Delivered";
    /// Records the sweep found still owed their action or notification (re-requested).
    pub const OWED_FOUND: &str = "OwedFound";
    /// A reject not applied because EC2's state moved on just before it (a person accepted it).
    pub const SUPERSEDED: &str = "Superseded";
    /// A notification failed and the failure could not be recorded: it may be lost (alarm on it).
    pub const NOTIFY_UNCERTAIN: &str = "NotifyUncertain";
    /// Invocations of decide stopped just before Lambda's deadline with their batch unfinished (the batch is
    /// retried; the invocation fails, so Lambda's Errors alarm counts it too).
    pub const CUT_SHORT: &str = "CutShort";
    /// Times an Accept/Reject call was throttled by EC2 and waited for a token instead of failing.
    pub const EC2_THROTTLED_WAITS: &str = "Ec2ThrottledWaits";
    /// Times an Accept/Reject call waited for the next window of decide's own budget of EC2 calls.
    pub const EC2_BUDGET_WAITS: &str = "Ec2BudgetWaits";
    /// Accepted connections that could not be tagged with their tenant (best effort; the accept stands).
    pub const TENANT_TAG_FAILED: &str = "TenantTagFailed";
    /// Connections whose Accept/Reject got no answer, or was refused for them, and which Describe then
    /// showed decided: announced in the same invocation rather than retried (decide).
    pub const EC2_RECHECKED: &str = "Ec2Rechecked";
    /// Age of the oldest connection still pending at a sweep: alarmed on when a connection waits longer
    /// than the sweep should allow.
    pub const OLDEST_PENDING_SECONDS: &str = "OldestPendingSeconds";
    /// Connections pending longer than three sweeps (alarmed on).
    pub const PENDING_OVERDUE: &str = "PendingOverdue";
    /// Connection Requests a producer (ingest, reconcile) put on the bus.
    pub const REQUESTS_EMITTED: &str = "RequestsEmitted";
    /// Pending connections a sweep found.
    pub const PENDING_FOUND: &str = "PendingFound";
    /// Accepted connections a sweep found the allowlist no longer accepts (revocation on).
    pub const REVOCATIONS_FOUND: &str = "RevocationsFound";
    /// Allowed principals a sweep added or removed (`ManageAllowedPrincipals`): drift, or allows that
    /// expired since the last sweep.
    pub const PRINCIPALS_DRIFT: &str = "AllowedPrincipalsDrift";
    /// Managed services that do not require acceptance, or that EC2 does not show (alarmed on).
    pub const ACCEPTANCE_NOT_REQUIRED: &str = "AcceptanceNotRequired";
    /// Managed services whose private DNS name is not verified (alarmed on).
    pub const PRIVATE_DNS_UNVERIFIED: &str = "PrivateDnsUnverified";
    /// Connection notifications ingest read, by the event they name.
    pub const CONNECT_NOTIFICATIONS: &str = "ConnectNotifications";
    pub const ACCEPT_NOTIFICATIONS: &str = "AcceptNotifications";
    pub const REJECT_NOTIFICATIONS: &str = "RejectNotifications";
    pub const DELETE_NOTIFICATIONS: &str = "DeleteNotifications";
    /// A notification naming an event other than the four documented ones, or none.
    pub const UNKNOWN_NOTIFICATIONS: &str = "UnknownNotifications";
    /// A notification naming no usable ID: every managed service is re-examined.
    pub const UNUSABLE_NOTIFICATIONS: &str = "UnusableNotifications";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_names_every_counter_once() {
        let mut m = Metrics::default();
        m.incr(names::ACCEPTED);
        m.add(names::ACCEPTED, 2);
        m.incr(names::ERRORS);
        let doc = m.emf("decide", 5);
        assert_eq!(doc["Accepted"], 3);
        assert_eq!(doc["Errors"], 1);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len(), 2);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Gatekeeper");
    }
}
