//! Allowlist entries: the provider's rules, parsed from table items with no trust in their shape.

use std::collections::BTreeMap;

use super::ids::{AccountId, EndpointId, Region, ServiceId};
use super::principal::{self, PrincipalError};

/// The partition-key value that makes an entry apply to every managed service.
pub const ALL_SERVICES: &str = "*";

/// The longest tenant name: it travels as an SNS message attribute, a DynamoDB attribute and an
/// nginx map value, and a person reads it in a table.
pub const TENANT_MAX_CHARS: usize = 64;

/// Checks a tenant name: 1 to 64 characters, no surrounding spaces, no control characters.
pub fn check_tenant(raw: &str) -> Result<(), String> {
    let n = raw.chars().count();
    if n == 0 {
        return Err("`tenant` is empty: omit it for no tenant".into());
    }
    if n > TENANT_MAX_CHARS {
        return Err(format!("`tenant` is {n} characters long; at most {TENANT_MAX_CHARS} are allowed"));
    }
    if raw.trim() != raw {
        return Err(format!("`tenant` {:?} has leading or trailing spaces", clip(raw)));
    }
    if raw.chars().any(char::is_control) {
        return Err("`tenant` holds a control character".into());
    }
    Ok(())
}

/// Which services an entry covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Service(ServiceId),
    AllServices,
}

impl Scope {
    pub fn parse(raw: &str) -> Result<Self, super::ids::IdError> {
        if raw == ALL_SERVICES { Ok(Self::AllServices) } else { ServiceId::parse(raw).map(Self::Service) }
    }

    /// The partition-key value.
    pub fn key(&self) -> &str {
        match self {
            Self::Service(s) => s.as_str(),
            Self::AllServices => ALL_SERVICES,
        }
    }

    pub fn covers(&self, service: &ServiceId) -> bool {
        match self {
            Self::Service(s) => s == service,
            Self::AllServices => true,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// One parsed allowlist item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowlistEntry {
    pub scope: Scope,
    /// The account the item's `principal` key normalises to.
    pub account: AccountId,
    /// The sort-key value as stored (an account ID or an IAM ARN).
    pub principal_key: String,
    pub effect: Effect,
    /// Epoch seconds after which the entry no longer applies.
    pub expires_at: Option<i64>,
    /// Consumer Regions an allow is limited to; `None` means any Region.
    pub regions: Option<Vec<Region>>,
    pub max_endpoints: Option<u32>,
    /// Registered endpoints: endpoint IDs the account told the provider it owns. Another account's
    /// connection from one of them is rejected (`owner_mismatch`).
    pub endpoints: Vec<EndpointId>,
    /// An allow that accepts only the registered `endpoints`.
    pub registered_only: bool,
    /// Who the account is, for people: in records, notifications and `connections`.
    pub tenant: Option<String>,
    pub note: Option<String>,
    pub created_by: Option<String>,
    pub created_at: Option<i64>,
}

impl AllowlistEntry {
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    pub fn allows_region(&self, region: &Region) -> bool {
        self.regions.as_ref().is_none_or(|rs| rs.contains(region))
    }

    /// Whether the account registered this endpoint with this entry.
    pub fn registers(&self, endpoint: &EndpointId) -> bool {
        self.endpoints.contains(endpoint)
    }

    /// Whether this entry's allow may accept `endpoint`: any endpoint, or only a registered one.
    pub fn allows_endpoint(&self, endpoint: &EndpointId) -> bool {
        !self.registered_only || self.registers(endpoint)
    }

    /// The table item for this entry (what `parse_item` reads back).
    pub fn to_item(&self) -> Item {
        let mut item = Item::new();
        item.insert("service_id".into(), Attr::S(self.scope.key().to_owned()));
        item.insert("principal".into(), Attr::S(self.principal_key.clone()));
        item.insert("effect".into(), Attr::S(self.effect.as_str().to_owned()));
        if let Some(t) = self.expires_at {
            item.insert("expires_at".into(), Attr::N(t.to_string()));
        }
        if let Some(rs) = &self.regions {
            item.insert("regions".into(), Attr::Ss(rs.iter().map(|r| r.to_string()).collect()));
        }
        if let Some(n) = self.max_endpoints {
            item.insert("max_endpoints".into(), Attr::N(n.to_string()));
        }
        if !self.endpoints.is_empty() {
            item.insert("endpoints".into(), Attr::Ss(self.endpoints.iter().map(|e| e.to_string()).collect()));
        }
        if self.registered_only {
            item.insert("registered_only".into(), Attr::Bool(true));
        }
        for (k, v) in [("tenant", &self.tenant), ("note", &self.note), ("created_by", &self.created_by)] {
            if let Some(v) = v {
                item.insert(k.into(), Attr::S(v.clone()));
            }
        }
        if let Some(t) = self.created_at {
            item.insert("created_at".into(), Attr::N(t.to_string()));
        }
        item
    }

    /// The key that names this entry in a decision record: `<scope>/<principal>`.
    pub fn rule_ref(&self) -> String {
        format!("{}/{}", self.scope, self.principal_key)
    }
}

/// A table attribute value, reduced to what the allowlist can hold. Adapters convert to this, so the
/// parsing rules live here, pure and testable.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    S(String),
    /// A number, as DynamoDB sends it: a decimal string.
    N(String),
    Bool(bool),
    Ss(Vec<String>),
    L(Vec<Attr>),
    Null,
    /// Any other type (binary, map, number set, ...), named for the error message.
    Other(&'static str),
}

impl Attr {
    fn type_name(&self) -> &'static str {
        match self {
            Self::S(_) => "S",
            Self::N(_) => "N",
            Self::Bool(_) => "BOOL",
            Self::Ss(_) => "SS",
            Self::L(_) => "L",
            Self::Null => "NULL",
            Self::Other(t) => t,
        }
    }
}

/// Why an item is not a usable entry. The item is skipped, logged and counted; it never accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowlist item ({service_id:?}, {principal:?}) is invalid: {reason}")]
pub struct EntryError {
    pub service_id: String,
    pub principal: String,
    pub reason: String,
    /// The account the item's principal key names, when one can be read, even from a malformed
    /// principal (`principal::account_hint`).
    pub account: Option<AccountId>,
    /// The services the item could be about: `None` when its `service_id` does not parse (then it
    /// could be about any service).
    pub scope: Option<Box<Scope>>,
    /// Whether the item could have been meant as a deny: its `effect` is anything but a valid "allow".
    pub may_deny: bool,
}

impl EntryError {
    /// Whether this invalid item blocks accepting `owner`'s connection to `service`. It fails closed:
    /// it blocks the account it names; an item that names no readable account and could be a deny
    /// (`{principal: "*", effect: deny}`, a garbled ARN) blocks every account of every service it could
    /// cover. An invalid allow never blocks more than its own account: it can only ever have granted.
    pub fn blocks(&self, owner: &AccountId, service: &ServiceId) -> bool {
        self.could_cover(service)
            && match &self.account {
                Some(a) => a == owner,
                None => self.may_deny,
            }
    }

    /// Whether the item could be about `service`: its scope, or any service when that does not parse.
    pub fn could_cover(&self, service: &ServiceId) -> bool {
        self.scope.as_ref().is_none_or(|s| s.covers(service))
    }

    /// Whether it blocks a whole scope rather than one named account.
    pub fn blocks_everyone(&self) -> bool {
        self.account.is_none() && self.may_deny
    }
}

pub type Item = BTreeMap<String, Attr>;

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

/// Parses one table item. Unknown attributes are ignored; known ones must have the documented type.
pub fn parse_item(item: &Item) -> Result<AllowlistEntry, EntryError> {
    let key_str = |name: &str| match item.get(name) {
        Some(Attr::S(s)) => Ok(s.clone()),
        Some(other) => Err(format!("`{name}` must be a string, found {}", other.type_name())),
        None => Err(format!("`{name}` is missing")),
    };
    let service_raw = key_str("service_id");
    let principal_raw = key_str("principal");
    let account = principal_raw.as_ref().ok().and_then(|p| principal::account_hint(p));
    let may_deny = !matches!(item.get("effect"), Some(Attr::S(s)) if s == "allow");
    let fail = |reason: String| EntryError {
        service_id: service_raw.as_deref().map(clip).unwrap_or_default(),
        principal: principal_raw.as_deref().map(clip).unwrap_or_default(),
        reason,
        account: account.clone(),
        scope: service_raw.as_deref().ok().and_then(|s| Scope::parse(s).ok()).map(Box::new),
        may_deny,
    };
    let service_raw = service_raw.clone().map_err(&fail)?;
    let principal_raw = principal_raw.clone().map_err(&fail)?;
    let scope = Scope::parse(&service_raw).map_err(|e| fail(e.to_string()))?;
    let account = principal::normalise(&principal_raw).map_err(|e: PrincipalError| fail(e.to_string()))?;

    let effect = match item.get("effect") {
        Some(Attr::S(s)) if s == "allow" => Effect::Allow,
        Some(Attr::S(s)) if s == "deny" => Effect::Deny,
        Some(Attr::S(s)) => return Err(fail(format!("`effect` must be \"allow\" or \"deny\", found {:?}", clip(s)))),
        Some(other) => return Err(fail(format!("`effect` must be a string, found {}", other.type_name()))),
        None => return Err(fail("`effect` is missing".into())),
    };
    let number = |name: &str| -> Result<Option<i64>, EntryError> {
        match item.get(name) {
            None | Some(Attr::Null) => Ok(None),
            Some(Attr::N(n)) => n
                .parse::<i64>()
                .map(Some)
                .map_err(|_| fail(format!("`{name}` must be a whole number, found {}", clip(n)))),
            Some(other) => Err(fail(format!("`{name}` must be a number, found {}", other.type_name()))),
        }
    };
    let expires_at = number("expires_at")?;
    let created_at = number("created_at")?;
    let max_endpoints = match number("max_endpoints")? {
        None => None,
        Some(n) => Some(
            u32::try_from(n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| fail(format!("`max_endpoints` must be at least 1, found {n}")))?,
        ),
    };
    let regions = match item.get("regions") {
        None | Some(Attr::Null) => None,
        Some(Attr::Ss(list)) => Some(list.iter().map(String::as_str).collect::<Vec<_>>()),
        Some(Attr::L(list)) => Some(
            list.iter()
                .map(|a| match a {
                    Attr::S(s) => Ok(s.as_str()),
                    other => Err(fail(format!("`regions` must hold strings, found {}", other.type_name()))),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(fail(format!("`regions` must be a string set or list, found {}", other.type_name())));
        }
    }
    .map(|list| {
        if list.is_empty() {
            return Err(fail("`regions` is empty: omit it to allow every Region".into()));
        }
        list.into_iter().map(|r| Region::parse(r).map_err(|e| fail(e.to_string()))).collect::<Result<Vec<_>, _>>()
    })
    .transpose()?
    .map(as_set);
    let text = |name: &str| -> Result<Option<String>, EntryError> {
        match item.get(name) {
            None | Some(Attr::Null) => Ok(None),
            Some(Attr::S(s)) => Ok(Some(s.clone())),
            Some(other) => Err(fail(format!("`{name}` must be a string, found {}", other.type_name()))),
        }
    };
    let endpoints = match item.get("endpoints") {
        None | Some(Attr::Null) => Vec::new(),
        Some(Attr::Ss(list)) => list.iter().map(String::as_str).collect(),
        Some(Attr::L(list)) => list
            .iter()
            .map(|a| match a {
                Attr::S(s) => Ok(s.as_str()),
                other => Err(fail(format!("`endpoints` must hold strings, found {}", other.type_name()))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(fail(format!("`endpoints` must be a string set or list, found {}", other.type_name())));
        }
    }
    .into_iter()
    .map(|e| EndpointId::parse(e).map_err(|err| fail(format!("`endpoints`: {err}"))))
    .collect::<Result<Vec<_>, _>>()
    .map(as_set)?;
    let registered_only = match item.get("registered_only") {
        None | Some(Attr::Null) => false,
        Some(Attr::Bool(b)) => *b,
        Some(other) => return Err(fail(format!("`registered_only` must be a boolean, found {}", other.type_name()))),
    };
    if registered_only && effect == Effect::Deny {
        return Err(fail("`registered_only` applies to an allow, not a deny".into()));
    }
    let tenant = text("tenant")?;
    if let Some(t) = &tenant {
        check_tenant(t).map_err(&fail)?;
    }
    Ok(AllowlistEntry {
        scope,
        account,
        principal_key: principal_raw,
        effect,
        expires_at,
        regions,
        max_endpoints,
        endpoints,
        registered_only,
        tenant,
        note: text("note")?,
        created_by: text("created_by")?,
        created_at,
    })
}

/// `regions` and `endpoints` as the sets they are, sorted: DynamoDB keeps no order in a set ("The order of
/// the values within a set is not preserved", Developer Guide, "Supported data types"), so an entry read back
/// equals the one written whatever order its sets come back in.
fn as_set<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

/// The entries that may apply to one connection's owner: parsed ones and the invalid ones about it.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub entries: Vec<AllowlistEntry>,
    pub invalid: Vec<EntryError>,
}

impl Rules {
    /// Parses items, keeping the valid ones and the errors apart.
    pub fn from_items<'a>(items: impl IntoIterator<Item = &'a Item>) -> Self {
        let mut rules = Self::default();
        for item in items {
            match parse_item(item) {
                Ok(e) => rules.entries.push(e),
                Err(e) => rules.invalid.push(e),
            }
        }
        rules
    }

    pub fn extend(&mut self, other: Rules) {
        self.entries.extend(other.entries);
        self.invalid.extend(other.invalid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{AccountId, ServiceId};

    pub(crate) fn item(pairs: &[(&str, Attr)]) -> Item {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    fn s(v: &str) -> Attr {
        Attr::S(v.into())
    }

    #[test]
    fn an_entry_round_trips_through_its_item() {
        let it = item(&[
            ("service_id", s("vpce-svc-0123456789abcdef0")),
            ("principal", s("111122223333")),
            ("effect", s("deny")),
            ("expires_at", Attr::N("1900000000".into())),
            ("regions", Attr::Ss(vec!["eu-west-1".into(), "us-east-1".into()])),
            ("max_endpoints", Attr::N("2".into())),
            ("endpoints", Attr::Ss(vec!["vpce-0123456789abcdef0".into()])),
            ("tenant", s("ACME Corp")),
            ("note", s("n")),
            ("created_by", s("arn:aws:iam::111111111111:user/alice")),
            ("created_at", Attr::N("5".into())),
        ]);
        let e = parse_item(&it).unwrap();
        assert_eq!(e.to_item(), it);
        assert_eq!(parse_item(&e.to_item()).unwrap(), e);
    }

    #[test]
    fn an_entry_is_the_same_whatever_order_its_sets_are_read_in() {
        // DynamoDB keeps no order within a set, so the CLI's import finds nothing to change in an entry
        // read back with its regions or endpoints in another order.
        let with = |regions: &[&str], endpoints: &[&str]| {
            parse_item(&item(&[
                ("service_id", s("*")),
                ("principal", s("111122223333")),
                ("effect", s("allow")),
                ("regions", Attr::Ss(regions.iter().map(|r| (*r).to_owned()).collect())),
                ("endpoints", Attr::Ss(endpoints.iter().map(|e| (*e).to_owned()).collect())),
            ]))
            .unwrap()
        };
        let (a, b) = ("vpce-0123456789abcdef0", "vpce-0fedcba9876543210");
        assert_eq!(with(&["us-east-1", "eu-west-1"], &[b, a]), with(&["eu-west-1", "us-east-1"], &[a, b]));
        assert_ne!(with(&["us-east-1"], &[a]), with(&["eu-west-1"], &[a]));
    }

    #[test]
    fn parses_a_full_item() {
        let e = parse_item(&item(&[
            ("service_id", s("vpce-svc-0123456789abcdef0")),
            ("principal", s("arn:aws:iam::111122223333:role/Deploy")),
            ("effect", s("allow")),
            ("expires_at", Attr::N("1900000000".into())),
            ("regions", Attr::Ss(vec!["eu-west-1".into()])),
            ("max_endpoints", Attr::N("3".into())),
            ("note", s("ACME prod")),
            ("unknown_future_field", Attr::Other("M")),
        ]))
        .unwrap();
        assert_eq!(e.account.as_str(), "111122223333");
        assert_eq!(e.effect, Effect::Allow);
        assert_eq!(e.max_endpoints, Some(3));
        assert_eq!(e.rule_ref(), "vpce-svc-0123456789abcdef0/arn:aws:iam::111122223333:role/Deploy");
    }

    #[test]
    fn refuses_wrong_types_and_values_with_a_reason() {
        let base = [("service_id", s("*")), ("principal", s("111122223333")), ("effect", s("allow"))];
        let cases: Vec<(Vec<(&str, Attr)>, &str)> = vec![
            (vec![("effect", s("Allow"))], "`effect` must be"),
            (vec![("effect", Attr::Bool(true))], "`effect` must be a string"),
            (vec![("expires_at", s("tomorrow"))], "`expires_at` must be a number"),
            (vec![("expires_at", Attr::N("1.5".into()))], "whole number"),
            (vec![("max_endpoints", Attr::N("0".into()))], "at least 1"),
            (vec![("regions", Attr::Ss(vec![]))], "empty"),
            (vec![("regions", Attr::L(vec![Attr::N("1".into())]))], "must hold strings"),
            (vec![("principal", s("*"))], "cannot be listed"),
            (vec![("principal", s("arn:aws:iam::111122223333:group/x"))], "not an IAM ARN"),
            (vec![("service_id", s("svc-1"))], "service ID"),
            (
                vec![("endpoints", Attr::Ss(vec!["vpce-svc-0123456789abcdef0".into()]))],
                "`endpoints`: invalid endpoint ID",
            ),
            (vec![("endpoints", Attr::Ss(vec!["vpce-XYZ".into()]))], "`endpoints`"),
            (vec![("endpoints", s("vpce-0123456789abcdef0"))], "`endpoints` must be a string set"),
            (vec![("registered_only", s("yes"))], "`registered_only` must be a boolean"),
            (vec![("registered_only", Attr::Bool(true)), ("effect", s("deny"))], "applies to an allow"),
            (vec![("tenant", s(&"x".repeat(65)))], "`tenant` is 65 characters long"),
            (vec![("tenant", s(""))], "`tenant` is empty"),
            (vec![("tenant", s(" ACME"))], "`tenant`"),
            (vec![("tenant", s("AC\nME"))], "control character"),
            (vec![("tenant", Attr::N("1".into()))], "`tenant` must be a string"),
        ];
        for (overrides, want) in cases {
            let mut it = item(&base);
            for (k, v) in overrides {
                it.insert(k.to_owned(), v);
            }
            let err = parse_item(&it).unwrap_err();
            assert!(err.to_string().contains(want), "{err} lacks {want}");
        }
        let err = parse_item(&item(&[("service_id", s("*")), ("effect", s("allow"))])).unwrap_err();
        assert!(err.reason.contains("`principal` is missing"));
    }

    #[test]
    fn an_invalid_item_still_names_its_account_when_readable() {
        let err = parse_item(&item(&[
            ("service_id", s("*")),
            ("principal", s("111122223333")),
            ("effect", s("deny")),
            ("expires_at", s("soon")),
        ]))
        .unwrap_err();
        assert_eq!(err.account.unwrap().as_str(), "111122223333");
    }

    #[test]
    fn an_invalid_deny_blocks_every_account_it_could_be_about() {
        let svc = ServiceId::parse("vpce-svc-0123456789abcdef0").unwrap();
        let other_svc = ServiceId::parse("vpce-svc-0fedcba987654321f").unwrap();
        let a = AccountId::parse("222233334444").unwrap();
        let b = AccountId::parse("111122223333").unwrap();
        let bad = |service: &str, principal: &str, effect: &str| {
            parse_item(&item(&[("service_id", s(service)), ("principal", s(principal)), ("effect", s(effect))]))
                .unwrap_err()
        };
        // Named inside a malformed principal: that account, in the scope written.
        for p in
            ["arn:aws:sts::222233334444:assumed-role/Admin/bob", "222233334444 ", "arn:aws:iam::222233334444:group/A"]
        {
            let e = bad("*", p, "deny");
            assert!(e.blocks(&a, &svc) && e.blocks(&a, &other_svc), "{p}");
            assert!(!e.blocks(&b, &svc), "{p}");
            let e = bad(svc.as_str(), p, "deny");
            assert!(e.blocks(&a, &svc) && !e.blocks(&a, &other_svc), "{p}");
        }
        // No account to read: everyone in scope; an unreadable service: every service.
        let e = bad("*", "*", "deny");
        assert!(e.blocks(&a, &svc) && e.blocks(&b, &other_svc) && e.blocks_everyone());
        let e = bad("vpce-svc-nope", "222233334444", "deny");
        assert!(e.blocks(&a, &other_svc) && !e.blocks(&b, &svc));
        // A garbled effect could be a deny.
        assert!(bad("*", "*", "Deny").blocks(&b, &svc));
        // An invalid allow only ever blocks its own account.
        assert!(!bad("*", "*", "allow").blocks(&b, &svc));
        assert!(bad("*", "arn:aws:iam::222233334444:group/A", "allow").blocks(&a, &svc));
    }
}
