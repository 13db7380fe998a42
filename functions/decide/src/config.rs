//! Configuration: an explicit list of environment variables, read once at start, failing fast.

use std::collections::BTreeSet;

use shared::domain::{DefaultAction, Region, ServiceId};

#[derive(Debug, Clone)]
pub struct Config {
    /// `ALLOWLIST_TABLE`
    pub allowlist_table: String,
    /// `DECISIONS_TABLE`
    pub decisions_table: String,
    /// `TOPIC_ARN`: where decisions are announced.
    pub topic_arn: String,
    /// `DELIVERIES_QUEUE_ARN`: the queue SNS delivers each announcement to as well; messages from it (their
    /// `eventSourceARN`) confirm a notification went out rather than request a decision.
    pub deliveries_queue_arn: String,
    /// `MANAGED_SERVICES`: comma-separated endpoint service IDs; requests for any other are ignored.
    pub managed: BTreeSet<ServiceId>,
    /// `DEFAULT_ACTION`: `reject` (default) or `hold`.
    pub default_action: DefaultAction,
    /// `AWS_REGION` (set by Lambda): the services' Region, for connections with no consumer Region.
    pub home_region: Region,
    /// `REVOKE_ON_REMOVAL` (default false): reject `available` connections the allowlist no longer accepts.
    pub revoke: bool,
    /// `CLAIM_LEASE_SECONDS` (default 120): how long a claim keeps other invocations off a connection.
    pub lease_ms: i64,
    /// `DECISION_RETENTION_DAYS` (default 400, 1..=3650): records carry `expires_at` this far ahead, the
    /// decisions table's TTL attribute.
    pub retention_s: i64,
    /// `EC2_THROTTLE_PATIENCE_SECONDS` (default 45, 0..=600): how long one invocation, in all, waits for
    /// room in decide's budget of Accept/Reject calls, and for EC2's tokens when Accept/Reject answer
    /// `RequestLimitExceeded`, before failing those messages back to the queue; never past the
    /// invocation's deadline less 15 s (`handler::patience_within`).
    pub ec2_patience: std::time::Duration,
}

pub use shared::config::{ConfigError, managed_services};

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |k: &str| shared::config::required(&get, k);
        let managed = managed_services(&required("MANAGED_SERVICES")?)?;
        let default_action = match get("DEFAULT_ACTION") {
            None => DefaultAction::Reject,
            Some(v) => v.trim().parse().map_err(|e| ConfigError(format!("DEFAULT_ACTION: {e}")))?,
        };
        let home_region =
            Region::parse(&required("AWS_REGION")?).map_err(|e| ConfigError(format!("AWS_REGION: {e}")))?;
        let lease_s = shared::config::bounded(&get, "CLAIM_LEASE_SECONDS", 120, 10..=3600)?;
        let revoke = shared::config::flag(&get, "REVOKE_ON_REMOVAL", false)?;
        let retention_days = shared::config::bounded(&get, "DECISION_RETENTION_DAYS", 400, 1..=3650)?;
        let patience_s = shared::config::bounded(&get, "EC2_THROTTLE_PATIENCE_SECONDS", 45, 0..=600)?;
        Ok(Self {
            revoke,
            allowlist_table: required("ALLOWLIST_TABLE")?,
            decisions_table: required("DECISIONS_TABLE")?,
            topic_arn: required("TOPIC_ARN")?,
            deliveries_queue_arn: sqs_arn(required("DELIVERIES_QUEUE_ARN")?)
                .map_err(|e| ConfigError(format!("DELIVERIES_QUEUE_ARN: {e}")))?,
            managed,
            default_action,
            home_region,
            lease_ms: lease_s * 1000,
            retention_s: retention_days * 86_400,
            ec2_patience: std::time::Duration::from_secs(patience_s.unsigned_abs()),
        })
    }
}

/// An SQS queue's ARN, `arn:<partition>:sqs:<region>:<account>:<name>` (what a record's `eventSourceARN` is
/// compared with): a value of another shape would take every delivery for a request.
fn sqs_arn(v: String) -> Result<String, String> {
    let parts: Vec<&str> = v.trim().split(':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "sqs"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty();
    if ok {
        Ok(v.trim().to_owned())
    } else {
        Err(format!("`{v}` is not an SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| map.get(k).cloned()
    }

    const BASE: [(&str, &str); 6] = [
        ("ALLOWLIST_TABLE", "allow"),
        ("DECISIONS_TABLE", "decisions"),
        ("TOPIC_ARN", "arn:aws:sns:us-east-1:111111111111:t"),
        ("DELIVERIES_QUEUE_ARN", "arn:aws:sqs:us-east-1:111111111111:d"),
        ("MANAGED_SERVICES", "vpce-svc-0123456789abcdef0, vpce-svc-01234567"),
        ("AWS_REGION", "us-east-1"),
    ];

    #[test]
    fn reads_a_complete_environment() {
        let c = Config::from_lookup(env(&BASE)).unwrap();
        assert_eq!(c.managed.len(), 2);
        assert_eq!(c.default_action, DefaultAction::Reject);
        assert_eq!(c.lease_ms, 120_000);
        assert_eq!(c.retention_s, 400 * 86_400);
    }

    #[test]
    fn fails_fast_naming_the_variable() {
        let err = Config::from_lookup(env(&BASE[1..])).unwrap_err().to_string();
        assert!(err.contains("ALLOWLIST_TABLE"), "{err}");
        let mut bad = BASE.to_vec();
        bad.push(("DEFAULT_ACTION", "accept"));
        assert!(Config::from_lookup(env(&bad)).unwrap_err().to_string().contains("DEFAULT_ACTION"));
        let mut bad = BASE.to_vec();
        bad[4] = ("MANAGED_SERVICES", "svc-1");
        assert!(Config::from_lookup(env(&bad)).unwrap_err().to_string().contains("MANAGED_SERVICES"));
        for (k, v) in [
            ("DECISION_RETENTION_DAYS", "0"),
            ("CLAIM_LEASE_SECONDS", "5"),
            ("DELIVERIES_QUEUE_ARN", "https://sqs.us-east-1.amazonaws.com/111111111111/d"),
            ("DELIVERIES_QUEUE_ARN", "arn:aws:sns:us-east-1:111111111111:d"),
        ] {
            let mut bad = BASE.to_vec();
            bad.push((k, v));
            assert!(Config::from_lookup(env(&bad)).unwrap_err().to_string().contains(k), "{k}");
        }
    }
}
