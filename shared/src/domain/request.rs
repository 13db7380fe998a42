//! The one contract between producers and `decide`: the "Connection Request" event on the gatekeeper bus.

use serde::{Deserialize, Serialize};

use super::ids::{EndpointId, ServiceId};

pub const SOURCE: &str = "gatekeeper";
pub const DETAIL_TYPE: &str = "Connection Request";
/// Bodies larger than this are refused before parsing (an EventBridge event is at most 256 KiB).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// What made a producer ask for a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A connection notification (`Connect`) from the endpoint service.
    Notification,
    /// The scheduled sweep of pending connections.
    Sweep,
    /// An allowlist edit.
    AllowlistChange,
    /// A person, through `gatekeeper reevaluate`.
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notification => "notification",
            Self::Sweep => "sweep",
            Self::AllowlistChange => "allowlist_change",
            Self::Manual => "manual",
        }
    }
}

/// The event's `detail`. Owner and state are deliberately absent: `decide` takes them from EC2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionRequest {
    pub service_id: ServiceId,
    pub endpoint_id: EndpointId,
    pub trigger: Trigger,
    /// Epoch milliseconds at which the producer asked.
    pub requested_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("event is {0} bytes, more than the {MAX_EVENT_BYTES} an EventBridge event can be")]
    TooLarge(usize),
    #[error("event is not a gatekeeper Connection Request: {0}")]
    Envelope(String),
    #[error("Connection Request detail is invalid: {0}")]
    Detail(String),
}

#[derive(Deserialize)]
struct Envelope {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: serde_json::Value,
}

/// Parses the JSON of an EventBridge event (as the bus rule delivers it to SQS) into a request.
pub fn parse_event(body: &str) -> Result<ConnectionRequest, RequestError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(RequestError::TooLarge(body.len()));
    }
    let env: Envelope = serde_json::from_str(body).map_err(|e| RequestError::Envelope(e.to_string()))?;
    if env.source != SOURCE || env.detail_type != DETAIL_TYPE {
        return Err(RequestError::Envelope(format!(
            "source {:?} and detail-type {:?}, expected {SOURCE:?} and {DETAIL_TYPE:?}",
            env.source.chars().take(64).collect::<String>(),
            env.detail_type.chars().take(64).collect::<String>()
        )));
    }
    // The error names the field it failed on (`requested_at: invalid type: …`), not only what was wrong.
    serde_path_to_error::deserialize(env.detail).map_err(|e| RequestError::Detail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(detail: &str) -> String {
        format!(
            r#"{{"version":"0","id":"1","detail-type":"Connection Request","source":"gatekeeper","account":"111111111111","time":"2026-01-01T00:00:00Z","region":"us-east-1","resources":[],"detail":{detail}}}"#
        )
    }

    #[test]
    fn parses_the_sample_event() {
        let body = include_str!("../../../events/eventbridge/connection-request.json");
        let r = parse_event(body).unwrap();
        assert_eq!(r.trigger, Trigger::Notification);
    }

    #[test]
    fn refuses_lies_and_junk_with_a_reason_naming_the_field() {
        let ok = r#"{"service_id":"vpce-svc-0123456789abcdef0","endpoint_id":"vpce-0123456789abcdef0","trigger":"sweep","requested_at":1}"#;
        assert!(parse_event(&event(ok)).is_ok());
        for (detail, want) in [
            (
                r#"{"service_id":"vpce-svc-0123456789abcdef0","endpoint_id":"vpce-0123456789abcdef0","trigger":"sweep","requested_at":1,"owner":"111122223333"}"#,
                "unknown field",
            ),
            (
                r#"{"service_id":"vpce-svc-XYZ","endpoint_id":"vpce-0123456789abcdef0","trigger":"sweep","requested_at":1}"#,
                "service_id: invalid service ID",
            ),
            (
                r#"{"service_id":"vpce-svc-0123456789abcdef0","endpoint_id":"vpce-0123456789abcdef0","trigger":"magic","requested_at":1}"#,
                "trigger: unknown variant",
            ),
            (
                r#"{"service_id":"vpce-svc-0123456789abcdef0","endpoint_id":"vpce-0123456789abcdef0","trigger":"sweep","requested_at":"now"}"#,
                "requested_at: invalid type",
            ),
            (
                r#"{"service_id":"vpce-svc-0123456789abcdef0","endpoint_id":"vpce-0","trigger":"sweep","requested_at":1}"#,
                "endpoint_id: ",
            ),
            (r#"{"service_id":"vpce-svc-0123456789abcdef0","trigger":"sweep","requested_at":1}"#, "endpoint_id"),
            (r#"[]"#, "expected struct ConnectionRequest"),
        ] {
            let err = parse_event(&event(detail)).unwrap_err().to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        }
        assert!(parse_event("not json").is_err());
        let other = event(ok).replace("\"source\":\"gatekeeper\"", "\"source\":\"aws.ec2\"");
        assert!(parse_event(&other).unwrap_err().to_string().contains("aws.ec2"));
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_event(&deep).is_err());
        assert!(matches!(parse_event(&" ".repeat(MAX_EVENT_BYTES + 1)), Err(RequestError::TooLarge(_))));
    }
}
