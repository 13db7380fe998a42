//! The evaluation order of ARCHITECTURE.md, pure: explicit deny, then an invalid item that could be a deny,
//! then an endpoint registered to another account (`owner_mismatch`), then an unexpired allow for the
//! service, then for `*` (an allow that is `registered_only` accepts only its registered endpoints), then
//! the configured default. Quota is applied on top with the count EC2 reports.

use serde::{Deserialize, Serialize};

use super::allowlist::{AllowlistEntry, Effect, Rules, Scope};
use super::connection::Connection;
use super::ids::Region;

/// What happens to a connection that no rule accepts or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    Reject,
    /// Leave it pending for a person, and notify.
    Hold,
}

impl std::str::FromStr for DefaultAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reject" => Ok(Self::Reject),
            "hold" => Ok(Self::Hold),
            other => Err(format!("default action must be \"reject\" or \"hold\", not {other:?}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Accept,
    Reject,
    Hold,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Reject => "reject",
            Self::Hold => "hold",
        }
    }

    /// The past tense used in records, notifications and metrics.
    pub fn past(self) -> &'static str {
        match self {
            Self::Accept => "accepted",
            Self::Reject => "rejected",
            Self::Hold => "held",
        }
    }

    pub fn from_past(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(Self::Accept),
            "rejected" => Some(Self::Reject),
            "held" => Some(Self::Hold),
            _ => None,
        }
    }
}

/// Why: a stable code (for filters and metrics) with a sentence for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// An explicit deny for the service or `*`.
    Denied,
    /// An unexpired allow for the service or `*`.
    Allowed,
    /// No rule names the account.
    NotListed,
    /// The only allow for the account has expired.
    AllowExpired,
    /// An allow exists but not for the consumer's Region.
    RegionNotAllowed,
    /// The allow's `max_endpoints` is used up.
    Quota,
    /// An item about the account does not parse: it may have been meant as a deny, so it never accepts.
    InvalidRule,
    /// An item that names no readable account does not parse and could be a deny: it blocks accepting
    /// every account it could cover. It never revokes: a typo must not cut every customer off.
    InvalidRuleUnscoped,
    /// The endpoint is registered to another account than the one EC2 reports as its owner.
    OwnerMismatch,
    /// The account's allow accepts only its registered endpoints, and this is not one of them.
    EndpointNotRegistered,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Self::Denied => "denied",
            Self::Allowed => "allowed",
            Self::NotListed => "not_listed",
            Self::AllowExpired => "allow_expired",
            Self::RegionNotAllowed => "region_not_allowed",
            Self::Quota => "quota",
            Self::InvalidRule => "invalid_rule",
            Self::InvalidRuleUnscoped => "invalid_rule_unscoped",
            Self::OwnerMismatch => "owner_mismatch",
            Self::EndpointNotRegistered => "endpoint_not_registered",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub reason: Reason,
    /// `<scope>/<principal>` of the rule that decided, if one did.
    pub matched_rule: Option<String>,
    /// A sentence a person can read.
    pub detail: String,
    /// The matched allow's cap, to be checked against EC2's count before accepting.
    pub max_endpoints: Option<u32>,
    /// The owner's tenant: the deciding rule's, else the first one an entry about the owner names.
    pub tenant: Option<String>,
}

fn default_decision(default: DefaultAction, reason: Reason, rule: Option<&AllowlistEntry>, detail: String) -> Decision {
    let outcome = match default {
        DefaultAction::Reject => Outcome::Reject,
        DefaultAction::Hold => Outcome::Hold,
    };
    Decision {
        outcome,
        reason,
        matched_rule: rule.map(AllowlistEntry::rule_ref),
        detail,
        max_endpoints: None,
        tenant: rule.and_then(|r| r.tenant.clone()),
    }
}

/// Decides one connection.
///
/// `rules` may hold entries for other accounts and services: those about the connection's owner and
/// covering its service decide, and another account's entry counts only when it registers the
/// connection's endpoint. `home_region` is the service's Region, used when EC2 reports no consumer
/// Region. `now` is epoch seconds.
pub fn evaluate(conn: &Connection, rules: &Rules, home_region: &Region, now: i64, default: DefaultAction) -> Decision {
    let decision = decide(conn, rules, home_region, now, default);
    if decision.tenant.is_some() {
        return decision;
    }
    let tenant = rules
        .entries
        .iter()
        .filter(|e| e.account == conn.owner && e.scope.covers(&conn.service_id))
        .find_map(|e| e.tenant.clone());
    Decision { tenant, ..decision }
}

fn decide(conn: &Connection, rules: &Rules, home_region: &Region, now: i64, default: DefaultAction) -> Decision {
    let region = conn.region.as_ref().unwrap_or(home_region);
    let in_scope = |e: &&AllowlistEntry| e.scope.covers(&conn.service_id);
    let applicable: Vec<&AllowlistEntry> =
        rules.entries.iter().filter(in_scope).filter(|e| e.account == conn.owner).collect();

    if let Some(deny) = applicable.iter().find(|e| e.effect == Effect::Deny && !e.is_expired(now)) {
        return Decision {
            outcome: Outcome::Reject,
            reason: Reason::Denied,
            matched_rule: Some(deny.rule_ref()),
            detail: format!("account {} is denied by rule {}", conn.owner, deny.rule_ref()),
            max_endpoints: None,
            tenant: deny.tenant.clone(),
        };
    }
    if let Some(bad) = rules.invalid.iter().find(|e| e.blocks(&conn.owner, &conn.service_id)) {
        let (reason, about) = if bad.blocks_everyone() {
            (Reason::InvalidRuleUnscoped, "an allowlist item that names no account".to_owned())
        } else {
            (Reason::InvalidRule, format!("an allowlist item about account {}", conn.owner))
        };
        return default_decision(
            default,
            reason,
            None,
            format!("{about} is invalid ({}); it could be a deny, so nothing it covers is accepted", bad.reason),
        );
    }
    // A registration is the provider's word that the endpoint belongs to an account: EC2 reporting
    // another owner means the ID is used by someone else, whatever else that owner is allowed.
    if let Some(reg) = rules
        .entries
        .iter()
        .filter(in_scope)
        .find(|e| e.account != conn.owner && e.registers(&conn.endpoint_id) && !e.is_expired(now))
    {
        let tenant = reg.tenant.as_deref().map(|t| format!(" (tenant {t})")).unwrap_or_default();
        return Decision {
            outcome: Outcome::Reject,
            reason: Reason::OwnerMismatch,
            matched_rule: Some(reg.rule_ref()),
            detail: format!(
                "endpoint {} is registered to account {}{tenant} by rule {}, but EC2 reports account {} as its owner",
                conn.endpoint_id,
                reg.account,
                reg.rule_ref(),
                conn.owner
            ),
            max_endpoints: None,
            tenant: None,
        };
    }
    let allows = |service_scoped: bool| {
        applicable
            .iter()
            .filter(move |e| e.effect == Effect::Allow && matches!(e.scope, Scope::Service(_)) == service_scoped)
    };
    for service_scoped in [true, false] {
        if let Some(allow) = allows(service_scoped)
            .find(|e| !e.is_expired(now) && e.allows_region(region) && e.allows_endpoint(&conn.endpoint_id))
        {
            return Decision {
                outcome: Outcome::Accept,
                reason: Reason::Allowed,
                matched_rule: Some(allow.rule_ref()),
                detail: format!("account {} is allowed by rule {}", conn.owner, allow.rule_ref()),
                max_endpoints: allow.max_endpoints,
                tenant: allow.tenant.clone(),
            };
        }
    }
    let all_allows = allows(true).chain(allows(false));
    if let Some(expired) = all_allows.clone().find(|e| e.is_expired(now)) {
        let detail = format!("the allow {} for account {} has expired", expired.rule_ref(), conn.owner);
        return default_decision(default, Reason::AllowExpired, Some(expired), detail);
    }
    if let Some(other_region) = all_allows.clone().find(|e| !e.allows_region(region)) {
        let detail =
            format!("account {} is allowed by {} but not from Region {region}", conn.owner, other_region.rule_ref());
        return default_decision(default, Reason::RegionNotAllowed, Some(other_region), detail);
    }
    if let Some(registered) = all_allows.clone().find(|e| !e.allows_endpoint(&conn.endpoint_id)) {
        let detail = format!(
            "account {} is allowed by {} only from its registered endpoints, and {} is not one of them",
            conn.owner,
            registered.rule_ref(),
            conn.endpoint_id
        );
        return default_decision(default, Reason::EndpointNotRegistered, Some(registered), detail);
    }
    default_decision(default, Reason::NotListed, None, format!("account {} is not on the allowlist", conn.owner))
}

/// Applies an allow's `max_endpoints` given how many of the owner's connections to the service are
/// already available (or accepted earlier in the same batch).
pub fn apply_quota(decision: Decision, already_accepted: u32, default: DefaultAction) -> Decision {
    match decision.max_endpoints {
        Some(cap) if decision.outcome == Outcome::Accept && already_accepted >= cap => {
            let detail =
                format!("{}, but its max_endpoints of {cap} is used up ({already_accepted} accepted)", decision.detail);
            Decision {
                matched_rule: decision.matched_rule,
                tenant: decision.tenant,
                ..default_decision(default, Reason::Quota, None, detail)
            }
        }
        _ => decision,
    }
}

#[cfg(test)]
mod tests {
    use super::super::allowlist::{Attr, Item, parse_item};
    use super::super::connection::ConnectionState;
    use super::super::ids::{AccountId, EndpointId, ServiceId};
    use super::*;
    use proptest::prelude::*;

    const SVC: &str = "vpce-svc-0123456789abcdef0";
    const OTHER_SVC: &str = "vpce-svc-0fedcba987654321f";
    const OWNER: &str = "111122223333";
    const NOW: i64 = 1_800_000_000;

    fn conn(region: Option<&str>) -> Connection {
        Connection {
            service_id: ServiceId::parse(SVC).unwrap(),
            endpoint_id: EndpointId::parse("vpce-0aaaaaaaaaaaaaaaa").unwrap(),
            owner: AccountId::parse(OWNER).unwrap(),
            state: ConnectionState::PendingAcceptance,
            region: region.map(|r| Region::parse(r).unwrap()),
            created_at_ms: 0,
            connection_id: None,
        }
    }

    fn home() -> Region {
        Region::parse("us-east-1").unwrap()
    }

    fn rule(scope: &str, principal: &str, effect: &str, extra: &[(&str, Attr)]) -> Item {
        let mut it: Item = [
            ("service_id".to_owned(), Attr::S(scope.into())),
            ("principal".to_owned(), Attr::S(principal.into())),
            ("effect".to_owned(), Attr::S(effect.into())),
        ]
        .into_iter()
        .collect();
        for (k, v) in extra {
            it.insert((*k).to_owned(), v.clone());
        }
        it
    }

    fn rules(items: &[Item]) -> Rules {
        Rules::from_items(items)
    }

    fn decide(items: &[Item]) -> Decision {
        evaluate(&conn(None), &rules(items), &home(), NOW, DefaultAction::Reject)
    }

    #[test]
    fn when_allowed_for_the_service_should_accept() {
        let d = decide(&[rule(SVC, OWNER, "allow", &[])]);
        assert_eq!((d.outcome, d.reason), (Outcome::Accept, Reason::Allowed));
        assert_eq!(d.matched_rule.as_deref(), Some(&*format!("{SVC}/{OWNER}")));
    }

    #[test]
    fn when_allowed_for_all_services_should_accept() {
        let d = decide(&[rule("*", &format!("arn:aws:iam::{OWNER}:root"), "allow", &[])]);
        assert_eq!((d.outcome, d.reason), (Outcome::Accept, Reason::Allowed));
    }

    #[test]
    fn when_denied_anywhere_should_reject_even_if_allowed() {
        let d = decide(&[rule(SVC, OWNER, "allow", &[]), rule("*", OWNER, "deny", &[])]);
        assert_eq!((d.outcome, d.reason), (Outcome::Reject, Reason::Denied));
    }

    #[test]
    fn when_unknown_should_apply_the_default() {
        assert_eq!(decide(&[]).reason, Reason::NotListed);
        let d = evaluate(&conn(None), &rules(&[]), &home(), NOW, DefaultAction::Hold);
        assert_eq!(d.outcome, Outcome::Hold);
    }

    #[test]
    fn when_allowed_for_another_service_only_should_not_accept() {
        let d = decide(&[rule(OTHER_SVC, OWNER, "allow", &[])]);
        assert_eq!((d.outcome, d.reason), (Outcome::Reject, Reason::NotListed));
    }

    #[test]
    fn when_the_allow_expired_should_not_accept() {
        let d = decide(&[rule(SVC, OWNER, "allow", &[("expires_at", Attr::N(NOW.to_string()))])]);
        assert_eq!((d.outcome, d.reason), (Outcome::Reject, Reason::AllowExpired));
        let d = decide(&[rule(SVC, OWNER, "allow", &[("expires_at", Attr::N((NOW + 1).to_string()))])]);
        assert_eq!(d.outcome, Outcome::Accept);
    }

    #[test]
    fn when_an_expired_deny_remains_should_follow_the_allow() {
        let d = decide(&[
            rule(SVC, OWNER, "deny", &[("expires_at", Attr::N((NOW - 5).to_string()))]),
            rule("*", OWNER, "allow", &[]),
        ]);
        assert_eq!(d.outcome, Outcome::Accept);
    }

    #[test]
    fn when_the_consumer_region_is_not_allowed_should_not_accept() {
        let regions = [("regions", Attr::Ss(vec!["eu-west-1".into()]))];
        let r = rules(&[rule(SVC, OWNER, "allow", &regions)]);
        let d = evaluate(&conn(Some("ap-south-1")), &r, &home(), NOW, DefaultAction::Reject);
        assert_eq!((d.outcome, d.reason), (Outcome::Reject, Reason::RegionNotAllowed));
        let d = evaluate(&conn(Some("eu-west-1")), &r, &home(), NOW, DefaultAction::Reject);
        assert_eq!(d.outcome, Outcome::Accept);
        let d = evaluate(&conn(None), &r, &home(), NOW, DefaultAction::Reject);
        assert_eq!(d.outcome, Outcome::Reject, "no consumer Region means the home Region");
    }

    #[test]
    fn when_an_item_about_the_owner_is_invalid_should_never_accept() {
        let d = decide(&[
            rule("*", OWNER, "allow", &[]),
            rule(SVC, OWNER, "deny", &[("expires_at", Attr::S("soon".into()))]),
        ]);
        assert_eq!((d.outcome, d.reason), (Outcome::Reject, Reason::InvalidRule));
    }

    #[test]
    fn when_a_deny_does_not_parse_should_not_accept_anyone_it_could_name() {
        for principal in [
            format!("arn:aws:sts::{OWNER}:assumed-role/Admin/bob"),
            format!("{OWNER} "),
            format!("arn:aws:iam::{OWNER}:group/Admins"),
        ] {
            let d = decide(&[rule(SVC, OWNER, "allow", &[]), rule("*", &principal, "deny", &[])]);
            assert_eq!((d.outcome, d.reason), (Outcome::Reject, Reason::InvalidRule), "{principal}");
        }
        let d = decide(&[rule(SVC, OWNER, "allow", &[]), rule("*", "*", "deny", &[])]);
        assert_eq!((d.outcome, d.reason), (Outcome::Reject, Reason::InvalidRuleUnscoped));
        // An invalid allow about nobody in particular blocks nobody.
        let d = decide(&[rule(SVC, OWNER, "allow", &[]), rule("*", "*", "allow", &[])]);
        assert_eq!(d.outcome, Outcome::Accept);
    }

    #[test]
    fn when_the_quota_is_used_up_should_not_accept() {
        let d = decide(&[rule(SVC, OWNER, "allow", &[("max_endpoints", Attr::N("2".into()))])]);
        assert_eq!(d.max_endpoints, Some(2));
        assert_eq!(apply_quota(d.clone(), 1, DefaultAction::Reject).outcome, Outcome::Accept);
        let q = apply_quota(d, 2, DefaultAction::Hold);
        assert_eq!((q.outcome, q.reason), (Outcome::Hold, Reason::Quota));
        assert!(q.matched_rule.is_some());
    }

    const EP: &str = "vpce-0aaaaaaaaaaaaaaaa";
    const OTHER_EP: &str = "vpce-0bbbbbbbbbbbbbbbb";
    const STRANGER: &str = "444455556666";

    fn registers(endpoints: &[&str], only: bool) -> Vec<(&'static str, Attr)> {
        let mut extra = vec![("endpoints", Attr::Ss(endpoints.iter().map(|e| (*e).to_owned()).collect()))];
        if only {
            extra.push(("registered_only", Attr::Bool(true)));
        }
        extra
    }

    #[test]
    fn when_the_endpoint_is_registered_to_another_account_should_reject_for_owner_mismatch() {
        let d = decide(&[rule(SVC, OWNER, "allow", &[]), rule("*", STRANGER, "allow", &registers(&[EP], false))]);
        assert_eq!((d.outcome, d.reason), (Outcome::Reject, Reason::OwnerMismatch));
        assert!(d.detail.contains(STRANGER) && d.detail.contains(OWNER) && d.detail.contains(EP), "{}", d.detail);
        // Always a reject, whatever the default action; a registration for another service does not count.
        let r = rules(&[rule(OTHER_SVC, STRANGER, "allow", &registers(&[EP], false)), rule(SVC, OWNER, "allow", &[])]);
        assert_eq!(evaluate(&conn(None), &r, &home(), NOW, DefaultAction::Hold).outcome, Outcome::Accept);
        let r = rules(&[rule(SVC, STRANGER, "allow", &registers(&[EP], false))]);
        assert_eq!(evaluate(&conn(None), &r, &home(), NOW, DefaultAction::Hold).reason, Reason::OwnerMismatch);
    }

    #[test]
    fn when_the_owner_registered_the_endpoint_should_accept_and_deny_still_wins() {
        let d = decide(&[rule(SVC, OWNER, "allow", &registers(&[EP], true))]);
        assert_eq!((d.outcome, d.reason), (Outcome::Accept, Reason::Allowed));
        let d = decide(&[rule(SVC, OWNER, "allow", &registers(&[EP], true)), rule("*", OWNER, "deny", &[])]);
        assert_eq!((d.outcome, d.reason), (Outcome::Reject, Reason::Denied));
        let d = decide(&[rule(SVC, STRANGER, "allow", &registers(&[EP], false)), rule("*", OWNER, "deny", &[])]);
        assert_eq!(d.reason, Reason::Denied, "deny first");
    }

    #[test]
    fn when_only_registered_endpoints_are_allowed_another_endpoint_should_get_the_default() {
        let d = decide(&[rule(SVC, OWNER, "allow", &registers(&[OTHER_EP], true))]);
        assert_eq!((d.outcome, d.reason), (Outcome::Reject, Reason::EndpointNotRegistered));
        let r = rules(&[rule(SVC, OWNER, "allow", &registers(&[OTHER_EP], true))]);
        let d = evaluate(&conn(None), &r, &home(), NOW, DefaultAction::Hold);
        assert_eq!((d.outcome, d.reason), (Outcome::Hold, Reason::EndpointNotRegistered));
        // Registered but not restricted: any endpoint of the account.
        assert_eq!(decide(&[rule(SVC, OWNER, "allow", &registers(&[OTHER_EP], false))]).outcome, Outcome::Accept);
        // A second, unrestricted allow still accepts.
        let d = decide(&[rule(SVC, OWNER, "allow", &registers(&[OTHER_EP], true)), rule("*", OWNER, "allow", &[])]);
        assert_eq!(d.outcome, Outcome::Accept);
    }

    #[test]
    fn the_decision_should_carry_the_owners_tenant() {
        let tenant = [("tenant", Attr::S("ACME Corp".into()))];
        let d = decide(&[rule(SVC, OWNER, "allow", &tenant)]);
        assert_eq!(d.tenant.as_deref(), Some("ACME Corp"));
        let d = decide(&[rule(SVC, OWNER, "deny", &tenant)]);
        assert_eq!((d.reason, d.tenant.as_deref()), (Reason::Denied, Some("ACME Corp")));
        // Rejected for another reason: still the owner's tenant, from any entry about it.
        let d = decide(&[
            rule(OTHER_SVC, OWNER, "allow", &tenant),
            rule(
                "*",
                OWNER,
                "allow",
                &[("regions", Attr::Ss(vec!["eu-west-1".into()])), ("tenant", Attr::S("ACME EU".into()))],
            ),
        ]);
        assert_eq!((d.reason, d.tenant.as_deref()), (Reason::RegionNotAllowed, Some("ACME EU")));
        let q = apply_quota(
            decide(&[rule(SVC, OWNER, "allow", &[("max_endpoints", Attr::N("1".into())), tenant[0].clone()])]),
            1,
            DefaultAction::Reject,
        );
        assert_eq!((q.reason, q.tenant.as_deref()), (Reason::Quota, Some("ACME Corp")));
        // Never another account's tenant.
        let d = decide(&[rule(SVC, STRANGER, "allow", &[("tenant", Attr::S("Other".into()))])]);
        assert_eq!(d.tenant, None);
    }

    fn arb_item() -> impl Strategy<Value = Item> {
        let scope = prop_oneof![Just(SVC.to_owned()), Just(OTHER_SVC.to_owned()), Just("*".to_owned())];
        let principal = prop_oneof![
            Just(OWNER.to_owned()),
            Just(format!("arn:aws:iam::{OWNER}:root")),
            Just("444455556666".to_owned()),
            Just("*".to_owned()),
            Just(format!("arn:aws:sts::{OWNER}:assumed-role/Admin/bob")),
            Just(format!("{OWNER} ")),
            Just(format!("arn:aws:iam::{OWNER}:group/Admins")),
        ];
        let effect = prop_oneof![Just("allow"), Just("deny"), Just("ALLOW")];
        let expires = proptest::option::of(prop_oneof![Just(NOW - 100), Just(NOW), Just(NOW + 100)]);
        let endpoints =
            proptest::option::of(prop_oneof![Just(vec![EP]), Just(vec![OTHER_EP]), Just(vec![EP, OTHER_EP])]);
        (scope, principal, effect, expires, endpoints, any::<bool>()).prop_map(|(s, p, e, x, eps, only)| {
            let mut extra: Vec<(&str, Attr)> = x.map(|x| ("expires_at", Attr::N(x.to_string()))).into_iter().collect();
            if let Some(eps) = eps {
                extra.extend(registers(&eps, only && e == "allow"));
            }
            rule(&s, &p, e, &extra)
        })
    }

    proptest! {
        /// Accept only ever comes from a valid, unexpired allow naming the owner and covering the service,
        /// with no unexpired deny and no invalid item about the owner.
        #[test]
        fn accept_requires_an_applicable_allow_and_no_deny(items in proptest::collection::vec(arb_item(), 0..8), hold in any::<bool>()) {
            let default = if hold { DefaultAction::Hold } else { DefaultAction::Reject };
            let c = conn(None);
            let d = evaluate(&c, &rules(&items), &home(), NOW, default);
            let parsed: Vec<AllowlistEntry> = items.iter().filter_map(|i| parse_item(i).ok()).collect();
            let about = |e: &&AllowlistEntry| e.account == c.owner && e.scope.covers(&c.service_id) && !e.is_expired(NOW);
            let has_allow = parsed.iter().filter(about).any(|e| e.effect == Effect::Allow && e.allows_endpoint(&c.endpoint_id));
            let has_deny = parsed.iter().filter(about).any(|e| e.effect == Effect::Deny);
            let invalid_about_owner = items.iter().any(|i| parse_item(i).is_err_and(|e| e.blocks(&c.owner, &c.service_id)));
            let registered_elsewhere = parsed.iter().any(|e| {
                e.account != c.owner && e.scope.covers(&c.service_id) && !e.is_expired(NOW) && e.registers(&c.endpoint_id)
            });
            if d.outcome == Outcome::Accept {
                prop_assert!(has_allow && !has_deny && !invalid_about_owner && !registered_elsewhere);
                // Two items can share a rule reference (`*/111122223333` is both `111122223333` and
                // `arn:aws:iam::111122223333:root`, written by hand as two keys): one of those it names allowed it.
                let matched: Vec<&AllowlistEntry> =
                    parsed.iter().filter(|e| Some(e.rule_ref()) == d.matched_rule).collect();
                prop_assert!(!matched.is_empty(), "the accept names no rule it came from");
                prop_assert!(
                    matched.iter().any(|e| e.allows_endpoint(&c.endpoint_id)),
                    "a registered-only allow accepted another endpoint"
                );
            }
            if has_deny {
                prop_assert_eq!((d.outcome, d.reason), (Outcome::Reject, Reason::Denied));
            }
            if registered_elsewhere && !has_deny && !invalid_about_owner {
                prop_assert_eq!((d.outcome, d.reason), (Outcome::Reject, Reason::OwnerMismatch));
            }
            if has_allow && !has_deny && !invalid_about_owner && !registered_elsewhere {
                prop_assert_eq!(d.outcome, Outcome::Accept);
            }
            if d.outcome == Outcome::Hold {
                prop_assert!(hold);
            }
        }

        /// Adding items about other accounts that register none of the connection's endpoints never
        /// changes a decision.
        #[test]
        fn other_accounts_rules_do_not_matter(items in proptest::collection::vec(arb_item(), 0..6)) {
            let c = conn(None);
            let base = evaluate(&c, &rules(&items), &home(), NOW, DefaultAction::Reject);
            let mut more = items.clone();
            more.push(rule("*", "999988887777", "deny", &[]));
            more.push(rule(SVC, "999988887777", "allow", &[("expires_at", Attr::S("x".into()))]));
            let with_more = evaluate(&c, &rules(&more), &home(), NOW, DefaultAction::Reject);
            prop_assert_eq!(base.outcome, with_more.outcome);
            prop_assert_eq!(base.reason, with_more.reason);
        }
    }
}
