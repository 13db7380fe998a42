//! Allowlist items as the table (or its stream) can hold them, with any attribute types. An item that
//! parses names exactly one 12-digit account, never "*", and round-trips through `to_item`.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use shared::domain::allowlist::{Attr, Item, parse_item};
use shared::domain::principal::{account_hint, normalise};

/// DynamoDB's attribute types, with the keys the parser looks for made likely.
#[derive(Arbitrary, Debug)]
enum Value {
    S(String),
    N(String),
    Int(i64),
    Bool(bool),
    Ss(Vec<String>),
    L(Vec<Value>),
    Null,
    Map,
    Account(u64),
    Arn(u8, u64, String),
    Service(u64),
    Effect(bool),
}

fn attr(v: Value, depth: u8) -> Attr {
    match v {
        Value::S(s) => Attr::S(s),
        Value::N(n) => Attr::N(n),
        Value::Int(n) => Attr::N(n.to_string()),
        Value::Bool(b) => Attr::Bool(b),
        Value::Ss(ss) => Attr::Ss(ss),
        Value::L(l) if depth < 4 => Attr::L(l.into_iter().map(|v| attr(v, depth + 1)).collect()),
        Value::L(_) | Value::Null => Attr::Null,
        Value::Map => Attr::Other("M"),
        Value::Account(n) => Attr::S(format!("{:012}", n % 1_000_000_000_000)),
        Value::Arn(p, n, rest) => {
            let partition = ["aws", "aws-cn", "aws-us-gov", "aws-iso", ""][usize::from(p % 5)];
            Attr::S(format!("arn:{partition}:iam::{:012}:{rest}", n % 1_000_000_000_000))
        }
        Value::Service(n) => Attr::S(format!("vpce-svc-{n:017x}")),
        Value::Effect(allow) => Attr::S(if allow { "allow" } else { "deny" }.into()),
    }
}

const KEYS: [&str; 9] =
    ["service_id", "principal", "effect", "expires_at", "regions", "max_endpoints", "note", "created_by", "created_at"];

fuzz_target!(|fields: Vec<(u8, Value)>| {
    let mut item = Item::new();
    for (k, v) in fields {
        let key = KEYS.get(usize::from(k)).map_or_else(|| format!("x{k}"), |k| (*k).to_owned());
        item.insert(key, attr(v, 0));
    }
    match parse_item(&item) {
        Ok(entry) => {
            let Some(Attr::S(principal)) = item.get("principal") else { panic!("parsed without a principal") };
            assert_ne!(principal, "*");
            assert_eq!(normalise(principal).as_ref(), Ok(&entry.account));
            assert!(entry.account.as_str().len() == 12 && entry.account.as_str().bytes().all(|b| b.is_ascii_digit()));
            assert!(entry.max_endpoints.is_none_or(|n| n >= 1));
            assert_eq!(parse_item(&entry.to_item()).as_ref(), Ok(&entry));
        }
        Err(e) => {
            // An error names the account its principal could be about (even inside a malformed one):
            // the account it normalises to whenever it does, and never one it does not contain.
            if let Some(Attr::S(principal)) = item.get("principal") {
                assert_eq!(e.account, account_hint(principal));
                if let (Ok(a), Some(account)) = (normalise(principal), &e.account) {
                    assert_eq!(&a, account);
                }
                if let Some(account) = &e.account {
                    assert!(principal.contains(account.as_str()));
                }
            }
            // An item that names no account and could be a deny blocks everyone it covers.
            if e.account.is_none() && e.may_deny {
                assert!(e.blocks_everyone());
            }
        }
    }
});
