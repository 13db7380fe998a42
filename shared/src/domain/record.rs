//! The decision record: one per connection (endpoint ID + creation time), written with a conditional put
//! so that duplicate deliveries give one action and one notification.

use serde::{Deserialize, Serialize};

use super::connection::Connection;
use super::ids::{AccountId, EndpointId, Region, ServiceId};
use super::policy::{Decision, Outcome};
use super::request::Trigger;

/// How far a decision has got. Each step is written before the next starts, so a retry resumes where
/// the failed attempt stopped and never repeats a finished step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Decided and claimed by one invocation, which is about to act (lease until `lease_until_ms`).
    Claimed,
    /// EC2 has been told (or nothing needed telling, for a hold); the notification is owed.
    Acted,
    /// The notification is being published. A record left here is never published again: at most
    /// one notification per decision (a publish that failed and could not be recorded as failed is
    /// logged and counted as `NotifyUncertain`).
    Notifying,
    /// SNS took the publish: its copy reached the stack's deliveries queue, and `decide` marked the record
    /// from there ([`Announced`]). (Whether each team's subscription received it is SNS's to tell.)
    Notified,
    /// The endpoint vanished before it could be acted on: nothing more to do.
    Gone,
    /// EC2's state moved on before a reject was applied (a person accepted the connection, or the
    /// consumer deleted it): the decision was not applied and no notification is owed.
    Superseded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Acted => "acted",
            Self::Notifying => "notifying",
            Self::Notified => "notified",
            Self::Gone => "gone",
            Self::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "claimed" => Some(Self::Claimed),
            "acted" => Some(Self::Acted),
            "notifying" => Some(Self::Notifying),
            "notified" => Some(Self::Notified),
            "gone" => Some(Self::Gone),
            "superseded" => Some(Self::Superseded),
            _ => None,
        }
    }
}

/// A decision about a new connection, or the revocation of an accepted one (a separate record, so an
/// accepted connection keeps its acceptance on file next to its revocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Decision,
    Revocation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionRecord {
    pub kind: Kind,
    pub endpoint_id: EndpointId,
    /// The connection's creation time (epoch ms): a re-created endpoint with a reused ID is a new key.
    pub created_at_ms: i64,
    pub service_id: ServiceId,
    pub owner: AccountId,
    pub region: Option<Region>,
    pub outcome: Outcome,
    pub reason: String,
    pub matched_rule: Option<String>,
    pub detail: String,
    /// The owner's tenant, as the allowlist named it when this was decided.
    pub tenant: Option<String>,
    pub trigger: Trigger,
    pub decided_at_ms: i64,
    pub status: Status,
    /// Which invocation holds the claim.
    pub claim: String,
    pub lease_until_ms: i64,
    /// Bumped by every claim: the condition of the next claim.
    pub version: u64,
    /// Epoch seconds after which DynamoDB's TTL may delete the record (the stack's retention).
    pub expires_at: Option<i64>,
}

impl DecisionRecord {
    #[allow(clippy::too_many_arguments)]
    pub fn claim(
        kind: Kind,
        conn: &Connection,
        decision: &Decision,
        trigger: Trigger,
        now_ms: i64,
        claim: &str,
        lease_ms: i64,
        previous_version: Option<u64>,
    ) -> Self {
        Self {
            kind,
            endpoint_id: conn.endpoint_id.clone(),
            created_at_ms: conn.created_at_ms,
            service_id: conn.service_id.clone(),
            owner: conn.owner.clone(),
            region: conn.region.clone(),
            outcome: decision.outcome,
            reason: decision.reason.code().to_owned(),
            matched_rule: decision.matched_rule.clone(),
            detail: decision.detail.clone(),
            tenant: decision.tenant.clone(),
            trigger,
            decided_at_ms: now_ms,
            status: Status::Claimed,
            claim: claim.to_owned(),
            lease_until_ms: now_ms + lease_ms,
            version: crate::ports::next_version(previous_version),
            expires_at: None,
        }
    }
}

impl DecisionRecord {
    /// Whether the record still owes an action or a notification (the sweep finishes those).
    pub fn is_owed(&self) -> bool {
        matches!(self.status, Status::Claimed | Status::Acted)
    }

    /// The word used in records, notifications and filters: accepted, rejected, held or revoked.
    pub fn decision(&self) -> &'static str {
        match self.kind {
            Kind::Revocation => "revoked",
            Kind::Decision => self.outcome.past(),
        }
    }
}

/// Which record a notification announces, at which claim and version: sent with the notification as its
/// `record` message attribute (JSON). SNS delivers the notification to the stack's deliveries queue too, and
/// `decide`, reading this there, marks that record `notified` ([`crate::ports::DecisionLog::confirm`]): the
/// record says `notified` once SNS has taken it, whether or not the publishing invocation heard
/// the publish's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announced {
    pub kind: Kind,
    pub endpoint_id: EndpointId,
    pub created_at_ms: i64,
    pub version: u64,
    /// The invocation that marked the record `notifying` and published.
    pub claim: String,
}

/// The name of the message attribute that carries [`Announced`].
pub const ANNOUNCED_ATTRIBUTE: &str = "record";

impl Announced {
    pub fn of(r: &DecisionRecord) -> Self {
        Self {
            kind: r.kind,
            endpoint_id: r.endpoint_id.clone(),
            created_at_ms: r.created_at_ms,
            version: r.version,
            claim: r.claim.clone(),
        }
    }

    /// Reads the `record` attribute's value; the error names what is wrong.
    pub fn parse(value: &str) -> Result<Self, String> {
        let a: Self = serde_json::from_str(value).map_err(|e| format!("`{ANNOUNCED_ATTRIBUTE}` attribute: {e}"))?;
        if a.claim.is_empty() {
            return Err(format!("`{ANNOUNCED_ATTRIBUTE}` attribute: `claim` is empty"));
        }
        Ok(a)
    }
}

/// The SNS message for a decision: a readable subject, a JSON body and filterable attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub subject: String,
    pub body: String,
    /// (name, value) pairs sent as String message attributes.
    pub attributes: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct Body<'a> {
    decision: &'static str,
    reason: &'a str,
    detail: &'a str,
    matched_rule: Option<&'a str>,
    tenant: Option<&'a str>,
    owner: &'a str,
    endpoint_id: &'a str,
    service_id: &'a str,
    region: Option<&'a str>,
    trigger: &'static str,
    time: String,
    connection_created: String,
}

impl Announcement {
    pub fn for_record(r: &DecisionRecord) -> Self {
        let decision = r.decision();
        let subject = match r.outcome {
            Outcome::Hold => format!("Gatekeeper held {} from {} for review", r.endpoint_id, r.owner),
            _ => format!("Gatekeeper {decision} {} from {}", r.endpoint_id, r.owner),
        };
        let body = Body {
            decision,
            reason: &r.reason,
            detail: &r.detail,
            matched_rule: r.matched_rule.as_deref(),
            tenant: r.tenant.as_deref(),
            owner: r.owner.as_str(),
            endpoint_id: r.endpoint_id.as_str(),
            service_id: r.service_id.as_str(),
            region: r.region.as_ref().map(Region::as_str),
            trigger: r.trigger.as_str(),
            time: super::time::rfc3339_ms(r.decided_at_ms),
            connection_created: super::time::rfc3339_ms(r.created_at_ms),
        };
        let mut attributes = vec![
            ("decision", decision.to_owned()),
            ("reason", r.reason.clone()),
            ("service_id", r.service_id.to_string()),
            ("owner", r.owner.to_string()),
        ];
        // An SNS String attribute cannot be empty: a connection with no tenant has no `tenant` attribute,
        // so a subscription filtering on one tenant never matches it.
        if let Some(t) = r.tenant.as_ref().filter(|t| !t.is_empty()) {
            attributes.push(("tenant", t.clone()));
        }
        // Which record at which claim: the delivery confirmation's key (at most 10 attributes in all, SNS's
        // limit for a message delivered to SQS as SQS message attributes: docs/aws-facts.md).
        attributes.push((ANNOUNCED_ATTRIBUTE, serde_json::to_string(&Announced::of(r)).unwrap_or_default()));
        Self {
            // SNS subjects: ASCII, no line breaks, at most 100 characters; every part here is a validated ID.
            subject: subject.chars().take(100).collect(),
            body: serde_json::to_string_pretty(&body).unwrap_or_default(),
            attributes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::connection::ConnectionState;
    use crate::domain::policy::Reason;

    fn record(tenant: Option<&str>) -> DecisionRecord {
        let conn = Connection {
            service_id: ServiceId::parse("vpce-svc-0123456789abcdef0").unwrap(),
            endpoint_id: EndpointId::parse("vpce-0123456789abcdef0").unwrap(),
            owner: AccountId::parse("222222222222").unwrap(),
            state: ConnectionState::PendingAcceptance,
            region: None,
            created_at_ms: 5,
            connection_id: None,
        };
        let d = Decision {
            outcome: Outcome::Reject,
            reason: Reason::OwnerMismatch,
            matched_rule: None,
            detail: "x".into(),
            max_endpoints: None,
            tenant: tenant.map(str::to_owned),
        };
        DecisionRecord::claim(Kind::Decision, &conn, &d, Trigger::Sweep, 10, "inv", 1000, None)
    }

    #[test]
    fn an_announcement_names_the_tenant_in_its_body_and_as_a_filterable_attribute() {
        let a = Announcement::for_record(&record(Some("ACME Corp")));
        let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!((body["tenant"].as_str(), body["reason"].as_str()), (Some("ACME Corp"), Some("owner_mismatch")));
        assert!(a.attributes.contains(&("tenant", "ACME Corp".to_owned())), "{:?}", a.attributes);

        let a = Announcement::for_record(&record(None));
        let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert!(body["tenant"].is_null());
        assert!(a.attributes.iter().all(|(k, _)| *k != "tenant"), "no empty attribute: {:?}", a.attributes);
    }
}
