//! Converting between DynamoDB's attribute values and the domain's neutral form.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::allowlist::{Attr, Item};

/// Converts a DynamoDB attribute to the domain's neutral form.
pub fn to_attr(v: &AttributeValue) -> Attr {
    match v {
        AttributeValue::S(s) => Attr::S(s.clone()),
        AttributeValue::N(n) => Attr::N(n.clone()),
        AttributeValue::Bool(b) => Attr::Bool(*b),
        AttributeValue::Ss(ss) => Attr::Ss(ss.clone()),
        AttributeValue::L(l) => Attr::L(l.iter().map(to_attr).collect()),
        AttributeValue::Null(_) => Attr::Null,
        AttributeValue::B(_) => Attr::Other("B"),
        AttributeValue::Bs(_) => Attr::Other("BS"),
        AttributeValue::M(_) => Attr::Other("M"),
        AttributeValue::Ns(_) => Attr::Other("NS"),
        _ => Attr::Other("unknown"),
    }
}

pub fn to_item(raw: &HashMap<String, AttributeValue>) -> Item {
    raw.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect()
}

/// The inverse of `to_attr` for the types the allowlist writes.
pub fn from_attr(a: &Attr) -> AttributeValue {
    match a {
        Attr::S(s) => AttributeValue::S(s.clone()),
        Attr::N(n) => AttributeValue::N(n.clone()),
        Attr::Bool(b) => AttributeValue::Bool(*b),
        Attr::Ss(ss) => AttributeValue::Ss(ss.clone()),
        Attr::L(l) => AttributeValue::L(l.iter().map(from_attr).collect()),
        Attr::Null | Attr::Other(_) => AttributeValue::Null(true),
    }
}

/// The inverse of `to_item`.
pub(super) fn from_item(item: &Item) -> HashMap<String, AttributeValue> {
    item.iter().map(|(k, v)| (k.clone(), from_attr(v))).collect()
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
