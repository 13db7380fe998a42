//! The allowlist table: read by partition for the functions ([`Allowlist`]), edited by the CLI
//! ([`AllowlistAdmin`]) with every write conditional on what was read.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};
use aws_smithy_runtime_api::http::Response;

use super::attrs::{from_item, n, s, same_item, to_item};
use crate::adapters::{bad_data, classify};
use crate::domain::allowlist::{ALL_SERVICES, Item};
use crate::domain::{Rules, ServiceId};
use crate::ports::{
    Allowlist, AllowlistAdmin, Change, ErrorKind, Expect, ItemKey, MAX_CHANGES, PortError, PortResult, StoredItem,
    Written,
};

const VERSION: &str = "version";

#[derive(Clone, Debug)]
pub struct DynamoAllowlist {
    client: Client,
    table: String,
}

impl DynamoAllowlist {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Every item of one partition, read strongly consistent so an edit made a moment ago counts.
    pub async fn partition(&self, key: &str) -> PortResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("service_id = :s")
            .expression_attribute_values(":s", s(key))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("dynamodb", "Query", e))?;
            items.extend(page.items().iter().map(to_item));
        }
        Ok(items)
    }
}

impl Allowlist for DynamoAllowlist {
    async fn rules_for(&self, service: &ServiceId) -> PortResult<Rules> {
        // The two partitions are read side by side: one round trip.
        let (mut items, all) = tokio::try_join!(self.partition(service.as_str()), self.partition(ALL_SERVICES))?;
        items.extend(all);
        Ok(Rules::from_items(&items))
    }
}

/// The condition that makes a write apply only to the item the caller read: the one rule every put and
/// delete, alone or in a transaction, carries.
struct Guard {
    condition: &'static str,
    values: Option<HashMap<String, AttributeValue>>,
}

impl Guard {
    fn of(expect: Expect) -> Self {
        let (condition, version) = match expect {
            Expect::Absent => ("attribute_not_exists(principal)", None),
            Expect::Version(None) => ("attribute_exists(principal) AND attribute_not_exists(version)", None),
            Expect::Version(Some(v)) => ("version = :v", Some(v)),
        };
        Self { condition, values: version.map(|v| HashMap::from([(":v".to_owned(), n(v))])) }
    }
}

/// The item as written over what `expect` names: its version is the next one.
fn versioned(item: &Item, expect: Expect) -> HashMap<String, AttributeValue> {
    let next = match expect {
        Expect::Absent => 1,
        Expect::Version(v) => v.unwrap_or(0).saturating_add(1),
    };
    let mut raw = from_item(item);
    raw.insert(VERSION.into(), n(next));
    raw
}

fn version_of(item: &HashMap<String, AttributeValue>) -> Option<u64> {
    item.get(VERSION).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}

fn stored(raw: &HashMap<String, AttributeValue>) -> StoredItem {
    StoredItem { item: to_item(raw), version: version_of(raw) }
}

fn key(k: &ItemKey) -> HashMap<String, AttributeValue> {
    HashMap::from([("service_id".to_owned(), s(&k.service_id)), ("principal".to_owned(), s(&k.principal))])
}

/// Cancellation reasons that say "try again": the transaction collided with another, or was throttled.
const RETRYABLE_CANCELLATIONS: &[&str] =
    &["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"];

/// A cancelled transaction lost only if one of its conditions failed; cancelled for any other reason,
/// nothing was decided about the items, so it is an error (retryable when the reasons are).
fn transaction_outcome(e: SdkError<TransactWriteItemsError, Response>) -> PortResult<Written> {
    let Some(TransactWriteItemsError::TransactionCanceledException(c)) = e.as_service_error() else {
        return Err(classify("dynamodb", "TransactWriteItems", e));
    };
    let reasons: Vec<&str> =
        c.cancellation_reasons().iter().filter_map(|r| r.code()).filter(|c| *c != "None").collect();
    if reasons.contains(&"ConditionalCheckFailed") {
        return Ok(Written::Lost);
    }
    let retryable = reasons.iter().all(|r| RETRYABLE_CANCELLATIONS.contains(r));
    Err(PortError {
        service: "dynamodb",
        operation: "TransactWriteItems",
        kind: if retryable { ErrorKind::Retryable } else { ErrorKind::Permanent },
        code: "TransactionCanceledException".into(),
        message: format!("cancelled: {}", reasons.join(", ")),
    })
}

impl AllowlistAdmin for DynamoAllowlist {
    async fn items(&self) -> PortResult<Vec<StoredItem>> {
        let mut out = Vec::new();
        let mut pages = self.client.scan().table_name(&self.table).consistent_read(true).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("dynamodb", "Scan", e))?;
            out.extend(page.items().iter().map(stored));
        }
        Ok(out)
    }

    async fn item(&self, k: &ItemKey) -> PortResult<Option<StoredItem>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(k)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb", "GetItem", e))?;
        Ok(out.item().map(stored))
    }

    /// A put whose answer was lost and which the SDK repeated fails its own condition: the item the failure
    /// returns (`ReturnValuesOnConditionCheckFailure: ALL_OLD`) standing exactly as this put wrote it, with
    /// the version it set, shows the put landed, so it is `Yes`, not a lost race.
    async fn put_if(&self, item: &Item, expect: Expect) -> PortResult<Written> {
        let guard = Guard::of(expect);
        let written = versioned(item, expect);
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(written.clone()))
            .condition_expression(guard.condition)
            .set_expression_attribute_values(guard.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(_) => Ok(Written::Yes),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c))
                    if c.item().is_some_and(|i| same_item(i, &written)) =>
                {
                    Ok(Written::Yes)
                }
                Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(Written::Lost),
                _ => Err(classify("dynamodb", "PutItem", e)),
            },
        }
    }

    /// A delete whose condition fails on no item at all (`ALL_OLD` returns none) finds what it was asked
    /// for standing: the item is gone, by this delete's own earlier attempt when its answer was lost and the
    /// SDK repeated it (or by another's), so it is `Yes`; an item that stands, changed, is a lost race.
    async fn delete_if(&self, k: &ItemKey, version: Option<u64>) -> PortResult<Written> {
        let guard = Guard::of(Expect::Version(version));
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(k)))
            .condition_expression(guard.condition)
            .set_expression_attribute_values(guard.values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(_) => Ok(Written::Yes),
            Err(e) => match e.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(c)) if c.item().is_none_or(HashMap::is_empty) => {
                    Ok(Written::Yes)
                }
                Some(DeleteItemError::ConditionalCheckFailedException(_)) => Ok(Written::Lost),
                _ => Err(classify("dynamodb", "DeleteItem", e)),
            },
        }
    }

    async fn apply(&self, changes: &[Change]) -> PortResult<Written> {
        if changes.is_empty() {
            return Ok(Written::Yes);
        }
        if changes.len() > MAX_CHANGES {
            return Err(PortError {
                service: "dynamodb",
                operation: "TransactWriteItems",
                kind: ErrorKind::Permanent,
                code: "TooManyChanges".into(),
                message: format!("{} changes, more than the {MAX_CHANGES} one transaction takes", changes.len()),
            });
        }
        let unbuildable =
            |e: aws_sdk_dynamodb::error::BuildError| bad_data("dynamodb", "TransactWriteItems", e.to_string());
        let mut items = Vec::with_capacity(changes.len());
        for change in changes {
            let write = match change {
                Change::Put(item, expect) => {
                    let guard = Guard::of(*expect);
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(versioned(item, *expect)))
                        .condition_expression(guard.condition)
                        .set_expression_attribute_values(guard.values)
                        .build()
                        .map_err(unbuildable)?;
                    TransactWriteItem::builder().put(put).build()
                }
                Change::Remove(k, version) => {
                    let guard = Guard::of(Expect::Version(*version));
                    let delete = Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(k)))
                        .condition_expression(guard.condition)
                        .set_expression_attribute_values(guard.values)
                        .build()
                        .map_err(unbuildable)?;
                    TransactWriteItem::builder().delete(delete).build()
                }
            };
            items.push(write);
        }
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(Written::Yes),
            Err(e) => transaction_outcome(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use aws_credential_types::Credentials;
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
    use aws_sdk_dynamodb::types::error::{ConditionalCheckFailedException, TransactionCanceledException};
    use aws_sdk_dynamodb::types::{CancellationReason, TransactWriteItem};
    use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};

    use super::*;
    use crate::domain::allowlist::Attr;

    fn ddb(rules: &[&Rule]) -> Client {
        let interceptor =
            rules.iter().fold(MockResponseInterceptor::new().rule_mode(RuleMode::Sequential), |i, r| i.with_rule(r));
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(Credentials::new("a", "b", None, None, "test"))
            .http_client(create_mock_http_client())
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .interceptor(interceptor)
            .build();
        Client::from_conf(conf)
    }

    fn item() -> Item {
        Item::from([
            ("service_id".to_owned(), Attr::S("*".into())),
            ("principal".to_owned(), Attr::S("222222222222".into())),
            ("effect".to_owned(), Attr::S("allow".into())),
        ])
    }

    fn k() -> ItemKey {
        ItemKey { service_id: "*".into(), principal: "222222222222".into() }
    }

    /// The condition and the version a write carries, however it is sent.
    fn guarded(
        condition: Option<&str>,
        values: Option<&HashMap<String, AttributeValue>>,
        written_version: Option<&AttributeValue>,
    ) -> (String, Option<String>, Option<String>) {
        let v = |a: Option<&AttributeValue>| a.and_then(|a| a.as_n().ok()).cloned();
        (condition.unwrap_or_default().to_owned(), v(values.and_then(|m| m.get(":v"))), v(written_version))
    }

    fn transact_guards(items: &[TransactWriteItem]) -> Vec<(String, Option<String>, Option<String>)> {
        items
            .iter()
            .map(|w| match (w.put(), w.delete()) {
                (Some(p), _) => {
                    guarded(p.condition_expression(), p.expression_attribute_values(), p.item().get(VERSION))
                }
                (_, Some(d)) => guarded(d.condition_expression(), d.expression_attribute_values(), None),
                _ => Default::default(),
            })
            .collect()
    }

    const ABSENT: &str = "attribute_not_exists(principal)";
    const UNVERSIONED: &str = "attribute_exists(principal) AND attribute_not_exists(version)";
    const AT_VERSION: &str = "version = :v";

    fn expected(c: &str, v: Option<&str>, next: Option<&str>) -> (String, Option<String>, Option<String>) {
        (c.to_owned(), v.map(str::to_owned), next.map(str::to_owned))
    }

    #[tokio::test]
    async fn when_writing_what_was_read_every_write_should_carry_its_condition_and_the_next_version() {
        let puts: Vec<Rule> = [
            expected(ABSENT, None, Some("1")),
            expected(UNVERSIONED, None, Some("1")),
            expected(AT_VERSION, Some("4"), Some("5")),
        ]
        .into_iter()
        .map(|want| {
            mock!(Client::put_item)
                .match_requests(move |r| {
                    guarded(
                        r.condition_expression(),
                        r.expression_attribute_values(),
                        r.item().and_then(|i| i.get(VERSION)),
                    ) == want
                })
                .then_output(|| PutItemOutput::builder().build())
        })
        .collect();
        let deletes: Vec<Rule> = [expected(UNVERSIONED, None, None), expected(AT_VERSION, Some("4"), None)]
            .into_iter()
            .map(|want| {
                mock!(Client::delete_item)
                    .match_requests(move |r| {
                        guarded(r.condition_expression(), r.expression_attribute_values(), None) == want
                    })
                    .then_output(|| DeleteItemOutput::builder().build())
            })
            .collect();
        let transaction = mock!(Client::transact_write_items)
            .match_requests(|r| {
                transact_guards(r.transact_items())
                    == vec![
                        expected(ABSENT, None, Some("1")),
                        expected(AT_VERSION, Some("4"), Some("5")),
                        expected(UNVERSIONED, None, None),
                        expected(AT_VERSION, Some("7"), None),
                    ]
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let rules: Vec<&Rule> = puts.iter().chain(&deletes).chain([&transaction]).collect();
        let table = DynamoAllowlist::new(ddb(&rules), "allowlist");

        for expect in [Expect::Absent, Expect::Version(None), Expect::Version(Some(4))] {
            assert_eq!(table.put_if(&item(), expect).await.unwrap(), Written::Yes, "{expect:?}");
        }
        for version in [None, Some(4)] {
            assert_eq!(table.delete_if(&k(), version).await.unwrap(), Written::Yes, "{version:?}");
        }
        let changes = [
            Change::Put(item(), Expect::Absent),
            Change::Put(item(), Expect::Version(Some(4))),
            Change::Remove(k(), None),
            Change::Remove(k(), Some(7)),
        ];
        assert_eq!(table.apply(&changes).await.unwrap(), Written::Yes);
    }

    /// A condition failure carrying `item` (`ALL_OLD`), as DynamoDB answers it.
    fn failed(item: Option<HashMap<String, AttributeValue>>) -> ConditionalCheckFailedException {
        ConditionalCheckFailedException::builder().message("no").set_item(item).build()
    }

    /// Someone else's newer version of the item.
    fn theirs() -> HashMap<String, AttributeValue> {
        versioned(&item(), Expect::Version(Some(8)))
    }

    #[tokio::test]
    async fn when_a_condition_fails_a_write_should_be_lost_not_an_error() {
        let put = mock!(Client::put_item)
            .match_requests(|r| {
                r.return_values_on_condition_check_failure() == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
            })
            .then_error(|| PutItemError::ConditionalCheckFailedException(failed(Some(theirs()))));
        let delete = mock!(Client::delete_item)
            .match_requests(|r| {
                r.return_values_on_condition_check_failure() == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
            })
            .then_error(|| DeleteItemError::ConditionalCheckFailedException(failed(Some(theirs()))));
        let table = DynamoAllowlist::new(ddb(&[&put, &delete]), "allowlist");
        assert_eq!(table.put_if(&item(), Expect::Absent).await.unwrap(), Written::Lost);
        assert_eq!(table.delete_if(&k(), Some(1)).await.unwrap(), Written::Lost);
    }

    #[tokio::test]
    async fn when_a_repeated_edit_finds_its_own_write_standing_it_should_be_written_not_lost() {
        // The SDK repeated a put whose answer was lost: the item stands as this put wrote it (version 5).
        let put = mock!(Client::put_item).then_error(|| {
            PutItemError::ConditionalCheckFailedException(failed(Some(versioned(&item(), Expect::Version(Some(4))))))
        });
        // The same for a delete: the item is gone.
        let delete =
            mock!(Client::delete_item).then_error(|| DeleteItemError::ConditionalCheckFailedException(failed(None)));
        let table = DynamoAllowlist::new(ddb(&[&put, &delete]), "allowlist");
        assert_eq!(table.put_if(&item(), Expect::Version(Some(4))).await.unwrap(), Written::Yes);
        assert_eq!(table.delete_if(&k(), Some(4)).await.unwrap(), Written::Yes);
    }

    #[tokio::test]
    async fn when_a_repeated_edit_finds_its_own_write_with_its_sets_in_another_order_it_should_be_written() {
        // DynamoDB keeps no order within a set: the standing item may list the regions otherwise.
        let mut mine = item();
        mine.insert("regions".into(), Attr::Ss(vec!["eu-west-1".into(), "us-east-1".into()]));
        let mut standing = versioned(&mine, Expect::Version(Some(4)));
        standing.insert("regions".into(), AttributeValue::Ss(vec!["us-east-1".into(), "eu-west-1".into()]));
        let put = mock!(Client::put_item)
            .then_error(move || PutItemError::ConditionalCheckFailedException(failed(Some(standing.clone()))));
        // Another region in the standing item: another write, a lost race.
        let mut other = versioned(&mine, Expect::Version(Some(4)));
        other.insert("regions".into(), AttributeValue::Ss(vec!["us-east-1".into(), "eu-west-2".into()]));
        let lost = mock!(Client::put_item)
            .then_error(move || PutItemError::ConditionalCheckFailedException(failed(Some(other.clone()))));
        let table = DynamoAllowlist::new(ddb(&[&put, &lost]), "allowlist");
        assert_eq!(table.put_if(&mine, Expect::Version(Some(4))).await.unwrap(), Written::Yes);
        assert_eq!(table.put_if(&mine, Expect::Version(Some(4))).await.unwrap(), Written::Lost);
    }

    fn cancelled(codes: &'static [&'static str]) -> Rule {
        mock!(Client::transact_write_items).then_error(move || {
            TransactWriteItemsError::TransactionCanceledException(
                TransactionCanceledException::builder()
                    .message("cancelled")
                    .set_cancellation_reasons(Some(
                        codes.iter().map(|c| CancellationReason::builder().code(*c).build()).collect(),
                    ))
                    .build(),
            )
        })
    }

    #[tokio::test]
    async fn when_a_transaction_is_cancelled_it_should_be_lost_only_for_a_failed_condition() {
        let lost = cancelled(&["None", "ConditionalCheckFailed"]);
        let conflict = cancelled(&["TransactionConflict", "None"]);
        let invalid = cancelled(&["ValidationError"]);
        let table = DynamoAllowlist::new(ddb(&[&lost, &conflict, &invalid]), "allowlist");
        let changes = [Change::Put(item(), Expect::Absent), Change::Remove(k(), Some(1))];
        assert_eq!(table.apply(&changes).await.unwrap(), Written::Lost);
        let err = table.apply(&changes).await.unwrap_err();
        assert_eq!((err.kind, err.code.as_str()), (ErrorKind::Retryable, "TransactionCanceledException"), "{err}");
        assert!(err.message.contains("TransactionConflict"), "{err}");
        assert_eq!(table.apply(&changes).await.unwrap_err().kind, ErrorKind::Permanent);
    }
}
