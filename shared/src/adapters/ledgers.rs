//! The ledgers in the decisions table, each item written whole with a version condition: the
//! `max_endpoints` ledger of each (service, account) (`endpoint_id` = `quota#<service>#<account>`,
//! `created` = `quota`), the allowed principals Gatekeeper added to each service, and `decide`'s budget of
//! EC2 calls (`endpoint_id` = `budget#ec2#<api>`, `created` = the window's start).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::classify;
use crate::domain::principals::Ledger;
use crate::domain::quota::Slots;
use crate::domain::{AccountId, ServiceId};
use crate::ports::{Budget, CallBudget, PortResult, PrincipalLedger, QuotaLedger, Written, next_version};

#[derive(Clone, Debug)]
pub struct DynamoQuotaLedger {
    client: Client,
    table: String,
}

impl DynamoQuotaLedger {
    pub fn new(client: Client, table: &str) -> Self {
        Self { client, table: table.to_owned() }
    }
}

/// A ledger item's key in the decisions table: `endpoint_id` (a `quota#…`/`principals#…` partition that no
/// endpoint ID can take) and `created` (the ledger's kind).
fn ledger_key(endpoint_id: String, created: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("endpoint_id".to_owned(), AttributeValue::S(endpoint_id)),
        ("created".to_owned(), AttributeValue::S(created.to_owned())),
    ])
}

fn key(service: &ServiceId, owner: &AccountId) -> HashMap<String, AttributeValue> {
    ledger_key(format!("quota#{service}#{owner}"), "quota")
}

impl QuotaLedger for DynamoQuotaLedger {
    async fn read(&self, service: &ServiceId, owner: &AccountId) -> PortResult<(Slots, Option<u64>)> {
        get_versioned(&self.client, &self.table, key(service, owner), "slots").await
    }

    async fn write(
        &self,
        service: &ServiceId,
        owner: &AccountId,
        slots: &Slots,
        expected: Option<u64>,
    ) -> PortResult<Written> {
        let mut item = key(service, owner);
        item.insert("slots".into(), number_map(slots));
        put_versioned(&self.client, &self.table, item, expected).await
    }
}

/// `decide`'s budget of EC2 calls: one item per API and window, counting the calls taken in it (an atomic
/// `ADD` conditional on the count being under the limit, so concurrent invocations never take more), kept an
/// hour by the table's TTL.
#[derive(Clone, Debug)]
pub struct DynamoCallBudget {
    client: Client,
    table: String,
    limit: u32,
    window_ms: i64,
}

impl DynamoCallBudget {
    pub fn new(client: Client, table: &str, limit: u32, window_ms: i64) -> Self {
        Self { client, table: table.to_owned(), limit, window_ms: window_ms.max(1) }
    }
}

impl CallBudget for DynamoCallBudget {
    async fn take(&self, api: &'static str, now_ms: i64) -> PortResult<Budget> {
        let window = now_ms - now_ms.rem_euclid(self.window_ms);
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(ledger_key(format!("budget#ec2#{api}"), &format!("{window:015}"))))
            .update_expression("ADD calls :one SET expires_at = :ttl")
            .condition_expression("attribute_not_exists(calls) OR calls < :limit")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":limit", AttributeValue::N(self.limit.to_string()))
            .expression_attribute_values(":ttl", AttributeValue::N((window / 1000 + 3600).to_string()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(Budget::Taken(window + self.window_ms)),
            Err(e) if matches!(e.as_service_error(), Some(UpdateItemError::ConditionalCheckFailedException(_))) => {
                Ok(Budget::FullUntil(window + self.window_ms))
            }
            Err(e) => Err(classify("dynamodb", "UpdateItem", e)),
        }
    }
}

/// A map attribute of numbers, as both ledgers hold them (name → epoch ms); unreadable entries are skipped.
fn numbers(attr: Option<&AttributeValue>) -> BTreeMap<String, i64> {
    attr.and_then(|v| v.as_m().ok())
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_n().ok()?.parse::<i64>().ok()?))).collect())
        .unwrap_or_default()
}

fn number_map<'a>(m: impl IntoIterator<Item = (&'a String, &'a i64)>) -> AttributeValue {
    AttributeValue::M(m.into_iter().map(|(k, v)| (k.clone(), AttributeValue::N(v.to_string()))).collect())
}

/// Reads a ledger item consistently: its map of numbers under `field` and its version (`None`, with an
/// empty map: no item yet).
async fn get_versioned(
    client: &Client,
    table: &str,
    key: HashMap<String, AttributeValue>,
    field: &str,
) -> PortResult<(BTreeMap<String, i64>, Option<u64>)> {
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| classify("dynamodb", "GetItem", e))?;
    let Some(item) = out.item() else { return Ok((BTreeMap::new(), None)) };
    let version = item.get("version").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok());
    Ok((numbers(item.get(field)), version))
}

/// Puts a whole ledger item (`endpoint_id`, `created` and its fields) at the version after `expected`,
/// only if it is still at `expected` (`None`: only if there is none). `Lost` when another writer was first.
pub(crate) async fn put_versioned(
    client: &Client,
    table: &str,
    mut item: HashMap<String, AttributeValue>,
    expected: Option<u64>,
) -> PortResult<Written> {
    item.insert("version".into(), AttributeValue::N(next_version(expected).to_string()));
    let mut req = client.put_item().table_name(table).set_item(Some(item));
    req = match expected {
        None => req.condition_expression("attribute_not_exists(endpoint_id)"),
        Some(v) => {
            req.condition_expression("version = :v").expression_attribute_values(":v", AttributeValue::N(v.to_string()))
        }
    };
    match req.send().await {
        Ok(_) => Ok(Written::Yes),
        Err(e) if matches!(e.as_service_error(), Some(PutItemError::ConditionalCheckFailedException(_))) => {
            Ok(Written::Lost)
        }
        Err(e) => Err(classify("dynamodb", "PutItem", e)),
    }
}

/// The principals Gatekeeper added to each service's allowed principals, one item per service in the
/// decisions table (`endpoint_id` = `principals#<service>`, `created` = `principals`), written whole
/// with a version condition.
#[derive(Clone, Debug)]
pub struct DynamoPrincipalLedger {
    client: Client,
    table: String,
}

impl DynamoPrincipalLedger {
    pub fn new(client: Client, table: &str) -> Self {
        Self { client, table: table.to_owned() }
    }

    fn key(service: &ServiceId) -> HashMap<String, AttributeValue> {
        ledger_key(format!("principals#{service}"), "principals")
    }
}

impl PrincipalLedger for DynamoPrincipalLedger {
    async fn managed(&self, service: &ServiceId) -> PortResult<(Ledger, Option<u64>)> {
        get_versioned(&self.client, &self.table, Self::key(service), "principals").await
    }

    async fn set_managed(
        &self,
        service: &ServiceId,
        principals: &Ledger,
        expected: Option<u64>,
    ) -> PortResult<Written> {
        let mut item = Self::key(service);
        item.insert("principals".into(), number_map(principals));
        put_versioned(&self.client, &self.table, item, expected).await
    }
}
