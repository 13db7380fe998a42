//! Connection notifications: the SNS message EC2 publishes for an endpoint service on Connect, Accept,
//! Reject and Delete. Its body is not documented (ARCHITECTURE.md fact 2), so it is read as a hint:
//! the IDs it mentions, and the event if it names one. Owner and state are never taken from it.

use serde_json::Value;

use super::ids::{EndpointId, ServiceId};

/// Bodies longer than this are not searched (an SNS message is at most 256 KiB).
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// How deep a JSON body is searched.
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    Connect,
    Accept,
    Reject,
    Delete,
    /// Named, but not one of the four documented events.
    Other(String),
    /// The message names no event.
    Unnamed,
}

impl ConnectionEvent {
    fn parse(s: &str) -> Self {
        match s {
            "Connect" | "connect" => Self::Connect,
            "Accept" | "accept" => Self::Accept,
            "Reject" | "reject" => Self::Reject,
            "Delete" | "delete" => Self::Delete,
            other => Self::Other(other.chars().take(32).collect()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Connect => "Connect",
            Self::Accept => "Accept",
            Self::Reject => "Reject",
            Self::Delete => "Delete",
            Self::Other(s) => s,
            Self::Unnamed => "unnamed",
        }
    }

    /// Only a new connection (or one whose event cannot be told) needs a decision; the others are
    /// recorded for the audit trail.
    pub fn needs_decision(&self) -> bool {
        matches!(self, Self::Connect | Self::Other(_) | Self::Unnamed)
    }
}

/// What a notification tells, at best.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionNotice {
    pub event: ConnectionEvent,
    /// The one service the message names, if exactly one.
    pub service: Option<ServiceId>,
    /// The one endpoint the message names, if exactly one.
    pub endpoint: Option<EndpointId>,
}

fn walk<'a>(v: &'a Value, depth: usize, out: &mut Vec<(&'a str, &'a str)>) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if let Value::String(s) = v {
                    out.push((k.as_str(), s.as_str()));
                }
                walk(v, depth + 1, out);
            }
        }
        Value::Array(items) => {
            for i in items {
                if let Value::String(s) = i {
                    out.push(("", s.as_str()));
                }
                walk(i, depth + 1, out);
            }
        }
        _ => {}
    }
}

/// Every maximal run of `[a-z0-9-]` in the text that parses as an ID of the given kind.
fn ids_in<T: Ord>(text: &str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    let mut found: Vec<T> =
        text.split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')).filter_map(&parse).collect();
    found.sort();
    found.dedup();
    found
}

fn only<T>(mut v: Vec<T>) -> Option<T> {
    if v.len() == 1 { v.pop() } else { None }
}

/// Reads a notification message (the SNS `Message` string).
pub fn parse_notice(message: &str) -> ConnectionNotice {
    let text = if message.len() > MAX_MESSAGE_BYTES { "" } else { message };
    let mut event = ConnectionEvent::Unnamed;
    let mut pairs = Vec::new();
    let json: Option<Value> = serde_json::from_str(text).ok();
    if let Some(v) = &json {
        walk(v, 0, &mut pairs);
        let named = pairs.iter().find(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k == "connectionevent" || k == "event" || k == "eventtype" || k == "event_type"
        });
        if let Some((_, e)) = named {
            event = ConnectionEvent::parse(e);
        }
    }
    // IDs by shape, wherever they are: a renamed or nested field still counts; two different ones of a
    // kind make the message ambiguous, and an ambiguous message names none.
    let haystack: String =
        if json.is_some() { pairs.iter().map(|(_, v)| *v).collect::<Vec<_>>().join(" ") } else { text.to_owned() };
    let service = only(ids_in(&haystack, |t| ServiceId::parse(t).ok()));
    let endpoint =
        only(ids_in(&haystack, |t| if t.starts_with("vpce-svc-") { None } else { EndpointId::parse(t).ok() }));
    ConnectionNotice { event, service, endpoint }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sample_notification() {
        let sns = include_str!("../../../events/sns/connect-notification.json");
        let v: Value = serde_json::from_str(sns).unwrap();
        let msg = v["Records"][0]["Sns"]["Message"].as_str().unwrap();
        let h = parse_notice(msg);
        assert_eq!(h.event, ConnectionEvent::Connect);
        assert_eq!(h.service.unwrap().as_str(), "vpce-svc-0123456789abcdef0");
        assert_eq!(h.endpoint.unwrap().as_str(), "vpce-0aaaaaaaaaaaaaaa1");
    }

    #[test]
    fn tolerates_other_shapes() {
        let nested =
            r#"{"detail":{"ids":["vpce-svc-0123456789abcdef0","vpce-0aaaaaaaaaaaaaaa1"]},"EventType":"Accept","x":1}"#;
        let h = parse_notice(nested);
        assert_eq!(h.event, ConnectionEvent::Accept);
        assert!(h.service.is_some() && h.endpoint.is_some());
        assert!(!h.event.needs_decision());

        let text = "Endpoint vpce-0aaaaaaaaaaaaaaa1 connected to vpce-svc-0123456789abcdef0.";
        let h = parse_notice(text);
        assert_eq!(h.event, ConnectionEvent::Unnamed);
        assert!(h.event.needs_decision());
        assert_eq!(h.endpoint.unwrap().as_str(), "vpce-0aaaaaaaaaaaaaaa1");

        let ambiguous = r#"{"a":"vpce-0aaaaaaaaaaaaaaa1","b":"vpce-0bbbbbbbbbbbbbbb2","connectionEvent":"Connect"}"#;
        assert_eq!(parse_notice(ambiguous).endpoint, None);
        assert_eq!(parse_notice("not json at all").service, None);
        assert_eq!(parse_notice(r#"{"vpcEndpointId":"VPCE-0AAAAAAAAAAAAAAA1"}"#).endpoint, None);
        let deep = format!("{}\"vpce-0aaaaaaaaaaaaaaa1\"{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(parse_notice(&deep).endpoint, None);
    }
}
