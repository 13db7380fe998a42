//! The `max_endpoints` ledgers, one item per (service, account) in the decisions table
//! (`endpoint_id` = `quota#<service>#<account>`, `created` = `quota`), written with a version condition.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::classify;
use crate::domain::quota::Slots;
use crate::domain::{AccountId, ServiceId};
use crate::ports::{PortResult, QuotaLedger, Written};

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

fn key(service: &ServiceId, owner: &AccountId) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("endpoint_id".to_owned(), AttributeValue::S(format!("quota#{service}#{owner}"))),
        ("created".to_owned(), AttributeValue::S("quota".to_owned())),
    ])
}

impl QuotaLedger for DynamoQuotaLedger {
    async fn read(&self, service: &ServiceId, owner: &AccountId) -> PortResult<(Slots, Option<u64>)> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(service, owner)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb", "GetItem", e))?;
        let Some(item) = out.item() else { return Ok((Slots::new(), None)) };
        let version = item.get("version").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok());
        let slots = item
            .get("slots")
            .and_then(|v| v.as_m().ok())
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_n().ok()?.parse::<i64>().ok()?))).collect())
            .unwrap_or_default();
        Ok((slots, version))
    }

    async fn write(
        &self,
        service: &ServiceId,
        owner: &AccountId,
        slots: &Slots,
        expected: Option<u64>,
    ) -> PortResult<Written> {
        let mut item = key(service, owner);
        item.insert(
            "slots".into(),
            AttributeValue::M(slots.iter().map(|(k, v)| (k.clone(), AttributeValue::N(v.to_string()))).collect()),
        );
        item.insert("version".into(), AttributeValue::N(expected.map_or(1, |v| v + 1).to_string()));
        let mut req = self.client.put_item().table_name(&self.table).set_item(Some(item));
        req = match expected {
            None => req.condition_expression("attribute_not_exists(endpoint_id)"),
            Some(v) => req
                .condition_expression("version = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        match req.send().await {
            Ok(_) => Ok(Written::Yes),
            Err(e) if matches!(e.as_service_error(), Some(PutItemError::ConditionalCheckFailedException(_))) => {
                Ok(Written::Lost)
            }
            Err(e) => Err(classify("dynamodb", "PutItem", e)),
        }
    }
}
