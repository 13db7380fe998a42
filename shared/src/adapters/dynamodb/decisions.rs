//! The decisions table: conditional writes for `decide` ([`DecisionLog`]), the owed index for the sweep
//! ([`OwedDecisions`]), and the CLI's reads ([`DecisionQueries`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::attrs::{n, s};
use crate::adapters::{bad_data, classify};
use crate::domain::record::{Announced, DecisionRecord, Kind, Status};
use crate::domain::{AccountId, EndpointId, Outcome, Region, ServiceId, Trigger};
use crate::ports::{Claim, DecisionLog, DecisionQueries, OwedDecisions, PortResult, Written};

#[derive(Clone, Debug)]
pub struct DynamoDecisionLog {
    client: Client,
    table: String,
}

impl DynamoDecisionLog {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

/// The sort key: the connection's creation time, zero-padded so it sorts as a string, and `#revoked`
/// for a revocation.
pub fn sort_key(kind: Kind, created_at_ms: i64) -> String {
    match kind {
        Kind::Decision => format!("{created_at_ms:015}"),
        Kind::Revocation => format!("{created_at_ms:015}#revoked"),
    }
}

pub fn record_to_item(r: &DecisionRecord) -> HashMap<String, AttributeValue> {
    let mut m = HashMap::from([
        ("endpoint_id".to_owned(), s(r.endpoint_id.as_str())),
        ("created".to_owned(), s(sort_key(r.kind, r.created_at_ms))),
        ("created_at_ms".to_owned(), n(r.created_at_ms)),
        ("service_id".to_owned(), s(r.service_id.as_str())),
        ("owner".to_owned(), s(r.owner.as_str())),
        ("decision".to_owned(), s(r.decision())),
        ("reason".to_owned(), s(&r.reason)),
        ("detail".to_owned(), s(&r.detail)),
        ("trigger".to_owned(), s(r.trigger.as_str())),
        ("decided_at_ms".to_owned(), n(r.decided_at_ms)),
        ("decided_at".to_owned(), s(crate::domain::time::rfc3339_ms(r.decided_at_ms))),
        ("status".to_owned(), s(r.status.as_str())),
        ("claim".to_owned(), s(&r.claim)),
        ("lease_until_ms".to_owned(), n(r.lease_until_ms)),
        ("version".to_owned(), n(r.version)),
    ]);
    if let Some(region) = &r.region {
        m.insert("region".into(), s(region.as_str()));
    }
    if let Some(rule) = &r.matched_rule {
        m.insert("matched_rule".into(), s(rule));
    }
    if let Some(tenant) = &r.tenant {
        m.insert("tenant".into(), s(tenant));
    }
    if let Some(t) = r.expires_at {
        m.insert("expires_at".into(), n(t));
    }
    if r.is_owed() {
        m.insert(OWED.into(), s(r.service_id.as_str()));
    }
    m
}

/// Every record by service and decision time (`service_id`, `decided_at_ms`; all attributes projected), for
/// the CLI's `decisions`.
pub const DECIDED_INDEX: &str = "decided";

/// The sparse index of records still owed their end: `owed` holds the service ID while a record is
/// `claimed` or `acted`, and is removed when it moves on.
pub const OWED_INDEX: &str = "owed";
const OWED: &str = "owed";

pub fn item_to_record(m: &HashMap<String, AttributeValue>) -> Result<DecisionRecord, String> {
    let get_s = |k: &str| m.get(k).and_then(|v| v.as_s().ok()).ok_or_else(|| format!("`{k}` missing or not a string"));
    let get_n = |k: &str| -> Result<i64, String> {
        m.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("`{k}` missing or not a number"))
    };
    let trigger: Trigger =
        serde_json::from_value(serde_json::Value::String(get_s("trigger")?.clone())).map_err(|e| e.to_string())?;
    let (kind, outcome) = match get_s("decision")?.as_str() {
        "revoked" => (Kind::Revocation, Outcome::Reject),
        other => (Kind::Decision, Outcome::from_past(other).ok_or("`decision` unknown")?),
    };
    Ok(DecisionRecord {
        kind,
        endpoint_id: EndpointId::parse(get_s("endpoint_id")?).map_err(|e| e.to_string())?,
        created_at_ms: get_n("created_at_ms")?,
        service_id: ServiceId::parse(get_s("service_id")?).map_err(|e| e.to_string())?,
        owner: AccountId::parse(get_s("owner")?).map_err(|e| e.to_string())?,
        region: m
            .get("region")
            .and_then(|v| v.as_s().ok())
            .map(|r| Region::parse(r))
            .transpose()
            .map_err(|e| e.to_string())?,
        outcome,
        reason: get_s("reason")?.clone(),
        matched_rule: m.get("matched_rule").and_then(|v| v.as_s().ok()).cloned(),
        detail: get_s("detail")?.clone(),
        tenant: m.get("tenant").and_then(|v| v.as_s().ok()).cloned(),
        trigger,
        decided_at_ms: get_n("decided_at_ms")?,
        status: Status::parse(get_s("status")?).ok_or("`status` unknown")?,
        claim: get_s("claim")?.clone(),
        lease_until_ms: get_n("lease_until_ms")?,
        version: u64::try_from(get_n("version")?).map_err(|e| e.to_string())?,
        expires_at: get_n("expires_at").ok(),
    })
}

fn key(kind: Kind, endpoint: &EndpointId, created_at_ms: i64) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("endpoint_id".to_owned(), s(endpoint.as_str())),
        ("created".to_owned(), s(sort_key(kind, created_at_ms))),
    ])
}

/// The answer to a status write conditioned on claim, version and status (asking for the item a failed
/// condition finds): `Yes` when it landed, and when the item stands as it would have written it (at
/// `status`, held by `by`, at `version`): this write, whose answer was lost and which the SDK repeated.
fn status_written(
    res: Result<UpdateItemOutput, SdkError<UpdateItemError, aws_smithy_runtime_api::http::Response>>,
    by: &str,
    version: u64,
    status: Status,
) -> PortResult<Written> {
    match res {
        Ok(_) => Ok(Written::Yes),
        Err(e) => match e.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                let ours = c.item().is_some_and(|standing| {
                    standing.get("claim") == Some(&s(by))
                        && standing.get("version") == Some(&n(version))
                        && standing.get("status") == Some(&s(status.as_str()))
                });
                Ok(if ours { Written::Yes } else { Written::Lost })
            }
            _ => Err(classify("dynamodb", "UpdateItem", e)),
        },
    }
}

fn update_lost(e: &SdkError<UpdateItemError, aws_smithy_runtime_api::http::Response>) -> bool {
    matches!(e.as_service_error(), Some(UpdateItemError::ConditionalCheckFailedException(_)))
}

impl DecisionQueries for DynamoDecisionLog {
    async fn for_endpoint(&self, endpoint: &EndpointId) -> PortResult<Vec<DecisionRecord>> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("endpoint_id = :e")
            .expression_attribute_values(":e", s(endpoint.as_str()))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("dynamodb", "Query", e))?;
            for item in page.items() {
                out.push(item_to_record(item).map_err(|why| {
                    bad_data("dynamodb", "Query", format!("unreadable decision record of {endpoint}: {why}"))
                })?);
            }
        }
        Ok(out)
    }

    /// One Query of the `decided` index (the service's records by decision time): DynamoDB reads, and
    /// charges for, the window asked for only.
    async fn decided_since(&self, service: &ServiceId, since_ms: i64) -> PortResult<Vec<DecisionRecord>> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DECIDED_INDEX)
            .key_condition_expression("service_id = :s AND decided_at_ms >= :t")
            .expression_attribute_values(":s", s(service.as_str()))
            .expression_attribute_values(":t", n(since_ms))
            .scan_index_forward(false)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("dynamodb", "Query", e))?;
            for item in page.items() {
                match item_to_record(item) {
                    Ok(r) => out.push(r),
                    Err(why) => tracing::warn!(why, "unreadable decision record skipped"),
                }
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.decided_at_ms));
        Ok(out)
    }
}

impl OwedDecisions for DynamoDecisionLog {
    async fn owed(&self, service: &ServiceId) -> PortResult<Vec<EndpointId>> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OWED_INDEX)
            .key_condition_expression("owed = :svc")
            .expression_attribute_values(":svc", s(service.as_str()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("dynamodb", "Query", e))?;
            for item in page.items() {
                match item.get("endpoint_id").and_then(|v| v.as_s().ok()).map(|e| EndpointId::parse(e)) {
                    Some(Ok(e)) => out.push(e),
                    _ => tracing::warn!("owed decision record without a readable endpoint_id skipped"),
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl DecisionLog for DynamoDecisionLog {
    async fn records(&self, endpoint: &EndpointId) -> PortResult<Vec<DecisionRecord>> {
        // The same consistent read the CLI's `decisions --endpoint` makes.
        self.for_endpoint(endpoint).await
    }

    /// A claim whose answer was lost is retried by the SDK and then fails its own condition; the item
    /// the failure returns tells whether the claim that stands is this one (same claim, same version),
    /// so a dropped answer does not leave the connection waiting out its own lease. Any other standing
    /// item is returned, so a claim made without reading the record first learns what it found.
    async fn claim(&self, record: &DecisionRecord, expected_version: Option<u64>) -> PortResult<Claim> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(record_to_item(record)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        req = match expected_version {
            None => req.condition_expression("attribute_not_exists(endpoint_id)"),
            Some(v) => req.condition_expression("version = :v").expression_attribute_values(":v", n(v)),
        };
        match req.send().await {
            Ok(_) => Ok(Claim::Won),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => {
                    let Some(standing) = c.item() else { return Ok(Claim::Lost(None)) };
                    let ours = standing.get("claim") == Some(&s(&record.claim))
                        && standing.get("version") == Some(&n(record.version));
                    if ours {
                        return Ok(Claim::Won);
                    }
                    match item_to_record(standing) {
                        Ok(r) => Ok(Claim::Lost(Some(Box::new(r)))),
                        Err(why) => {
                            tracing::warn!(endpoint_id = %record.endpoint_id, why, "the record a claim found is unreadable");
                            Ok(Claim::Lost(None))
                        }
                    }
                }
                _ => Err(classify("dynamodb", "PutItem", e)),
            },
        }
    }

    /// Conditioned on the status it moves from as well as the claim and version: two finishers of one
    /// record (a queue retry and the sweep) read the same claim and version, and only the status tells
    /// the second that the first moved it. A write whose answer was lost fails its own condition on the
    /// SDK's retry; the item the failure returns (`ReturnValuesOnConditionCheckFailure`) shows whether it
    /// was this write (at `status`, held by `by`, same version), as for a claim.
    async fn advance(&self, record: &DecisionRecord, status: Status, by: &str) -> PortResult<Written> {
        let owed = matches!(status, Status::Claimed | Status::Acted);
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(record.kind, &record.endpoint_id, record.created_at_ms)))
            .update_expression(if owed {
                "SET #st = :st, claim = :by, owed = :svc"
            } else {
                "SET #st = :st, claim = :by REMOVE owed"
            })
            .condition_expression("claim = :c AND version = :v AND #st = :from")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":st", s(status.as_str()))
            .expression_attribute_values(":by", s(by))
            .expression_attribute_values(":c", s(&record.claim))
            .expression_attribute_values(":v", n(record.version))
            .expression_attribute_values(":from", s(record.status.as_str()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if owed {
            req = req.expression_attribute_values(":svc", s(record.service_id.as_str()));
        }
        status_written(req.send().await, by, record.version, status)
    }

    /// Conditioned like [`Self::advance`] on the claim and version the notification was published at, and on
    /// the status `notifying`, or `acted`: a publish SNS answered with an error (refused, the invocation
    /// took it) but delivered all the same, which the publisher moved back to owed; marked `notified`, the
    /// message's retry and the sweep find it finished and do not publish it again. A repeated delivery, or
    /// this write repeated by the SDK, finds the record `notified` by the same claim at the same version:
    /// `Yes`. The condition needs the record, so a delivery never creates one.
    async fn confirm(&self, a: &Announced) -> PortResult<Written> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(a.kind, &a.endpoint_id, a.created_at_ms)))
            .update_expression("SET #st = :notified REMOVE owed")
            .condition_expression("claim = :c AND version = :v AND (#st = :notifying OR #st = :acted)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":notified", s(Status::Notified.as_str()))
            .expression_attribute_values(":notifying", s(Status::Notifying.as_str()))
            .expression_attribute_values(":acted", s(Status::Acted.as_str()))
            .expression_attribute_values(":c", s(&a.claim))
            .expression_attribute_values(":v", n(a.version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        status_written(res, &a.claim, a.version, Status::Notified)
    }

    async fn abandon(&self, record: &DecisionRecord) -> PortResult<Written> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(record.kind, &record.endpoint_id, record.created_at_ms)))
            .update_expression("SET lease_until_ms = :zero")
            .condition_expression("claim = :c AND version = :v AND #st = :claimed")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":c", s(&record.claim))
            .expression_attribute_values(":v", n(record.version))
            .expression_attribute_values(":claimed", s(Status::Claimed.as_str()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(Written::Yes),
            Err(e) if update_lost(&e) => Ok(Written::Lost),
            Err(e) => Err(classify("dynamodb", "UpdateItem", e)),
        }
    }
}
