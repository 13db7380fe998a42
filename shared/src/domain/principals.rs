//! Allowed principals that follow the allowlist (`ManageAllowedPrincipals`), pure: which account roots a
//! service should allow, and the change that gets it there without touching a principal Gatekeeper did
//! not add.
//!
//! EC2 lets a provider list the principals that may create an endpoint to its service
//! (`ModifyVpcEndpointServicePermissions`; docs/aws-facts.md). Gatekeeper adds
//! `arn:<partition>:iam::<account>:root` for every account an unexpired allow covers, and removes it when
//! the allow is removed, expires or is overridden by a deny. What Gatekeeper added is kept in a ledger
//! written *before* the add, so a crash between the two never leaves a principal that looks like the
//! provider's own: EC2 takes no tags with the permission change, so a tag would be a second call.

use std::collections::{BTreeMap, BTreeSet};

use super::allowlist::{Effect, Rules};
use super::ids::{AccountId, Region, ServiceId};

/// The partition of a Region: `aws-cn` for `cn-*`, `aws-us-gov` for `us-gov-*`, else `aws`.
pub fn partition_of(region: &Region) -> &'static str {
    let r = region.as_str();
    if r.starts_with("cn-") {
        "aws-cn"
    } else if r.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The principal that admits every IAM principal of an account: `arn:<partition>:iam::<account>:root`.
pub fn root(partition: &str, account: &AccountId) -> String {
    format!("arn:{partition}:iam::{account}:root")
}

/// What the allowlist wants a service's allowed principals to be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Account roots to allow: an unexpired allow covers the service and no unexpired deny does.
    pub principals: BTreeSet<String>,
    /// Roots of accounts an invalid item is about: neither added nor removed until it is fixed.
    pub frozen: BTreeSet<String>,
    /// An invalid item that names no account and could be a deny covers the service: nothing changes.
    pub all_frozen: bool,
}

pub fn wanted(rules: &Rules, service: &ServiceId, now: i64, partition: &str) -> Wanted {
    let live = |effect: Effect| {
        rules
            .entries
            .iter()
            .filter(move |e| e.effect == effect && e.scope.covers(service) && !e.is_expired(now))
            .map(|e| e.account.clone())
            .collect::<BTreeSet<AccountId>>()
    };
    let denied = live(Effect::Deny);
    let mut w = Wanted::default();
    for bad in rules.invalid.iter().filter(|e| e.could_cover(service)) {
        match &bad.account {
            Some(a) => {
                w.frozen.insert(root(partition, a));
            }
            None if bad.may_deny => w.all_frozen = true,
            None => {}
        }
    }
    w.principals =
        live(Effect::Allow).difference(&denied).map(|a| root(partition, a)).filter(|p| !w.frozen.contains(p)).collect();
    w
}

/// The ledger: each principal Gatekeeper added, with when it claimed it (epoch ms).
pub type Ledger = BTreeMap<String, i64>;

/// How long a claimed principal that EC2 does not show is kept in the ledger. EC2's answers lag its
/// changes by seconds (docs/aws-facts.md): right after an add, a Describe may not show it yet, and
/// forgetting it then would leave it allowed for good.
pub const FORGET_AFTER_MS: i64 = 15 * 60 * 1000;

/// One service's change: the ledger is written with `claimed` before EC2 is asked to add, and with
/// `settled` after EC2 has answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// The ledger before the change: what it held, plus what is about to be added.
    pub claimed: Ledger,
    /// The ledger after it: less what was removed, and less what EC2 has long not shown and nobody wants.
    pub settled: Ledger,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// The change from `current` (what EC2 shows) to `wanted`, touching only what `managed` (the ledger)
/// says Gatekeeper added. A principal the provider added by hand is never removed, and never claimed.
pub fn plan(wanted: &Wanted, current: &BTreeSet<String>, managed: &Ledger, now_ms: i64) -> Plan {
    if wanted.all_frozen {
        return Plan { claimed: managed.clone(), settled: managed.clone(), ..Plan::default() };
    }
    let add: Vec<String> = wanted.principals.difference(current).cloned().collect();
    let unwanted = |p: &String| !wanted.principals.contains(p) && !wanted.frozen.contains(p);
    let remove: Vec<String> = managed.keys().filter(|p| current.contains(*p) && unwanted(p)).cloned().collect();
    let mut claimed = managed.clone();
    for a in &add {
        claimed.insert(a.clone(), now_ms);
    }
    let settled = claimed
        .iter()
        .filter(|(p, _)| !remove.contains(p))
        .filter(|(p, at)| !(unwanted(p) && !current.contains(*p) && now_ms - **at > FORGET_AFTER_MS))
        .map(|(p, at)| (p.clone(), *at))
        .collect();
    Plan { add, remove, claimed, settled }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::allowlist::{Attr, Item};
    use proptest::prelude::*;

    const SVC: &str = "vpce-svc-0123456789abcdef0";
    const NOW: i64 = 1_800_000_000;

    fn item(scope: &str, principal: &str, effect: &str, expires: Option<i64>) -> Item {
        let mut it: Item = [
            ("service_id".to_owned(), Attr::S(scope.into())),
            ("principal".to_owned(), Attr::S(principal.into())),
            ("effect".to_owned(), Attr::S(effect.into())),
        ]
        .into_iter()
        .collect();
        if let Some(t) = expires {
            it.insert("expires_at".into(), Attr::N(t.to_string()));
        }
        it
    }

    fn svc() -> ServiceId {
        ServiceId::parse(SVC).unwrap()
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn ledger(v: &[&str], at: i64) -> Ledger {
        v.iter().map(|s| ((*s).to_owned(), at)).collect()
    }

    const T: i64 = 1_800_000_000_000;

    const A: &str = "arn:aws:iam::222222222222:root";
    const B: &str = "arn:aws:iam::333333333333:root";
    const HAND: &str = "arn:aws:iam::444444444444:root";

    #[test]
    fn an_unexpired_allow_without_a_deny_is_wanted_in_the_stacks_partition() {
        let rules = Rules::from_items(&[
            item("*", "222222222222", "allow", None),
            item(SVC, "333333333333", "allow", Some(NOW)),
            item(SVC, "555555555555", "allow", None),
            item("*", "555555555555", "deny", None),
            item("vpce-svc-0fedcba987654321f", "666666666666", "allow", None),
        ]);
        let w = wanted(&rules, &svc(), NOW, "aws");
        assert_eq!(w.principals, set(&[A]));
        let cn = wanted(&rules, &svc(), NOW, partition_of(&Region::parse("cn-north-1").unwrap()));
        assert_eq!(cn.principals, set(&["arn:aws-cn:iam::222222222222:root"]));
    }

    #[test]
    fn adds_what_is_wanted_and_removes_only_what_gatekeeper_added() {
        let w = Wanted { principals: set(&[A]), ..Wanted::default() };
        let p = plan(&w, &set(&[B, HAND, "*"]), &ledger(&[B], T - 5), T);
        assert_eq!((p.add, p.remove.clone()), (vec![A.to_owned()], vec![B.to_owned()]));
        assert_eq!(p.claimed, [(A.to_owned(), T), (B.to_owned(), T - 5)].into_iter().collect());
        assert_eq!(p.settled, ledger(&[A], T));
        // A principal the provider added that the allowlist also wants is left alone and not claimed.
        let p = plan(&w, &set(&[A]), &Ledger::new(), T);
        assert!(p.is_empty() && p.settled.is_empty());
    }

    #[test]
    fn an_invalid_item_freezes_its_account_and_one_about_nobody_freezes_the_service() {
        let mut garbled_deny = item(SVC, "222222222222", "deny", None);
        garbled_deny.insert("expires_at".into(), Attr::S("soon".into()));
        let rules = Rules::from_items(&[item("*", "222222222222", "allow", None), garbled_deny]);
        let w = wanted(&rules, &svc(), NOW, "aws");
        assert!(w.principals.is_empty() && w.frozen.contains(A));
        let p = plan(&w, &set(&[A]), &ledger(&[A], 0), T);
        assert!(p.is_empty() && p.settled.contains_key(A), "neither added nor removed");

        let rules = Rules::from_items(&[item("*", "222222222222", "allow", None), item("*", "*", "deny", None)]);
        let w = wanted(&rules, &svc(), NOW, "aws");
        assert!(w.all_frozen);
        assert!(plan(&w, &set(&[B]), &ledger(&[B], 0), T).is_empty());
    }

    #[test]
    fn a_principal_ec2_does_not_show_is_forgotten_only_long_after_it_was_claimed() {
        let w = Wanted::default();
        let recent = plan(&w, &set(&[]), &ledger(&[A], T - 1000), T);
        assert_eq!(recent.settled, ledger(&[A], T - 1000), "maybe not visible yet: kept, to be removed later");
        assert!(plan(&w, &set(&[]), &ledger(&[A], T - FORGET_AFTER_MS - 1), T).settled.is_empty());
    }

    fn arb_set() -> impl Strategy<Value = BTreeSet<String>> {
        proptest::collection::btree_set(
            prop_oneof![Just(A.to_owned()), Just(B.to_owned()), Just(HAND.to_owned()), Just("*".to_owned())],
            0..4,
        )
    }

    proptest! {
        /// Whatever EC2 shows and the ledger holds: a principal outside the ledger is never removed, a
        /// wanted one is never removed, every wanted one ends up added or present, and whatever is added is
        /// claimed before it is added.
        #[test]
        fn never_removes_a_principal_it_did_not_add(wanted_set in arb_set(), current in arb_set(), managed in arb_set(), frozen in arb_set(), age in prop_oneof![Just(0i64), Just(FORGET_AFTER_MS + 1)]) {
            let w = Wanted { principals: wanted_set.difference(&frozen).cloned().collect(), frozen, all_frozen: false };
            let managed: Ledger = managed.into_iter().map(|p| (p, T - age)).collect();
            let p = plan(&w, &current, &managed, T);
            for r in &p.remove {
                prop_assert!(managed.contains_key(r) && current.contains(r) && !w.principals.contains(r) && !w.frozen.contains(r));
            }
            for x in &w.principals {
                prop_assert!(current.contains(x) || p.add.contains(x));
            }
            for a in &p.add {
                prop_assert!(p.claimed.contains_key(a) && p.settled.contains_key(a) && !current.contains(a));
            }
            for (k, at) in &p.settled {
                prop_assert_eq!(p.claimed.get(k), Some(at));
            }
            // Nothing claimed is forgotten while EC2 may still show it, or soon after it was claimed.
            for k in p.claimed.keys().filter(|k| !p.settled.contains_key(*k) && !p.remove.contains(*k)) {
                prop_assert!(!current.contains(k) && T - p.claimed[k] > FORGET_AFTER_MS);
            }
        }
    }
}
