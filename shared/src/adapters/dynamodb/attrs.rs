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

/// Whether two items hold the same values, a set's members in any order: DynamoDB does not keep the order
/// of a set's values ("The order of the values within a set is not preserved", Developer Guide, "Supported
/// data types and naming rules"), so an item read back may list them otherwise than it was written.
pub(super) fn same_item(a: &HashMap<String, AttributeValue>, b: &HashMap<String, AttributeValue>) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same_value(v, w)))
}

fn same_value(a: &AttributeValue, b: &AttributeValue) -> bool {
    fn same_set<T: Ord + Clone>(a: &[T], b: &[T]) -> bool {
        let (mut a, mut b) = (a.to_vec(), b.to_vec());
        a.sort();
        b.sort();
        a == b
    }
    match (a, b) {
        (AttributeValue::Ss(x), AttributeValue::Ss(y)) | (AttributeValue::Ns(x), AttributeValue::Ns(y)) => {
            same_set(x, y)
        }
        (AttributeValue::Bs(x), AttributeValue::Bs(y)) => same_set(
            &x.iter().map(|b| b.as_ref().to_vec()).collect::<Vec<_>>(),
            &y.iter().map(|b| b.as_ref().to_vec()).collect::<Vec<_>>(),
        ),
        (AttributeValue::M(x), AttributeValue::M(y)) => same_item(x, y),
        (AttributeValue::L(x), AttributeValue::L(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_value(v, w))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_the_same_whatever_order_their_sets_come_back_in() {
        let ss = |v: &[&str]| AttributeValue::Ss(v.iter().map(|s| (*s).to_owned()).collect());
        let written =
            HashMap::from([("regions".to_owned(), ss(&["eu-west-1", "us-east-1"])), ("p".to_owned(), s("1"))]);
        let read = HashMap::from([("regions".to_owned(), ss(&["us-east-1", "eu-west-1"])), ("p".to_owned(), s("1"))]);
        assert!(same_item(&written, &read));
        let nested = |v| HashMap::from([("m".to_owned(), AttributeValue::M(HashMap::from([("r".to_owned(), v)])))]);
        assert!(same_item(&nested(ss(&["a", "b"])), &nested(ss(&["b", "a"]))));
        // A list keeps its order; a set with another member, or another attribute, is another item.
        let list = |v: &[&str]| AttributeValue::L(v.iter().map(|x| s(*x)).collect());
        assert!(!same_item(
            &HashMap::from([("l".to_owned(), list(&["a", "b"]))]),
            &HashMap::from([("l".to_owned(), list(&["b", "a"]))])
        ));
        let other = HashMap::from([("regions".to_owned(), ss(&["us-east-1", "eu-west-2"])), ("p".to_owned(), s("1"))]);
        assert!(!same_item(&written, &other));
        let more = HashMap::from([
            ("regions".to_owned(), ss(&["eu-west-1", "us-east-1"])),
            ("p".to_owned(), s("1")),
            ("q".to_owned(), s("2")),
        ]);
        assert!(!same_item(&written, &more) && !same_item(&more, &written));
    }
}
