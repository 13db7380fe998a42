//! `allow`, `deny` and `remove`: one entry at a time, each write conditional on what was read.

use std::io::Write;

use serde_json::json;
use shared::domain::allowlist::{AllowlistEntry, Effect, Scope, parse_item};
use shared::domain::principal::{PARTITIONS, normalise};
use shared::domain::{AccountId, EndpointId, Region};
use shared::ports::{AllowlistAdmin, Change, Expect, ItemKey, Written};

use super::{Out, R, scope_of, usage};
use crate::context::CliError;
use crate::{Output, RuleArgs, time};

/// An entry as an edit gives it, validated (through the parser the functions use).
pub struct Draft<'a> {
    pub scope: Scope,
    pub principal: &'a str,
    pub effect: Effect,
    /// Epoch seconds, already bounded.
    pub expires_at: Option<i64>,
    pub regions: &'a [String],
    pub max_endpoints: Option<u32>,
    pub endpoints: &'a [String],
    pub registered_only: bool,
    pub tenant: Option<String>,
    pub note: Option<String>,
    /// Epoch seconds.
    pub now: i64,
}

impl Draft<'_> {
    pub fn entry(self) -> R<AllowlistEntry> {
        let account = normalise(self.principal).map_err(usage)?;
        if self.effect == Effect::Deny && self.max_endpoints.is_some() {
            return Err(usage("--max-endpoints applies to an allow, not a deny"));
        }
        if self.effect == Effect::Deny && self.registered_only {
            return Err(usage("--registered-only applies to an allow, not a deny"));
        }
        if self.registered_only && self.endpoints.is_empty() {
            return Err(usage("--registered-only needs at least one --endpoint"));
        }
        // Duplicates and order are settled by `parse_item` below, which reads `endpoints` as a set.
        let endpoints = self
            .endpoints
            .iter()
            .map(|raw| EndpointId::parse(raw.trim()).map_err(|e| usage(format!("--endpoint: {e}"))))
            .collect::<R<Vec<_>>>()?;
        if let Some(t) = &self.tenant {
            super::tenant_flag(t)?;
        }
        let regions = if self.regions.is_empty() {
            None
        } else {
            Some(self.regions.iter().map(|r| Region::parse(r.trim())).collect::<Result<Vec<_>, _>>().map_err(usage)?)
        };
        let entry = AllowlistEntry {
            scope: self.scope,
            principal_key: account.to_string(),
            account,
            effect: self.effect,
            expires_at: self.expires_at,
            regions,
            max_endpoints: self.max_endpoints,
            endpoints,
            registered_only: self.registered_only,
            tenant: self.tenant,
            note: self.note,
            created_by: None,
            created_at: Some(self.now),
        };
        parse_item(&entry.to_item()).map_err(usage)
    }
}

/// An ARN principal must be of the stack's partition (`arn:aws-cn:…` means nothing to a stack in `aws`).
pub fn check_partition(principal: &str, region: &Region) -> R<()> {
    let want = shared::domain::principals::partition_of(region);
    match principal.strip_prefix("arn:").and_then(|rest| rest.split(':').next()) {
        Some(p) if p != want => Err(usage(format!(
            "principal {principal} is of partition {p}, but the stack runs in {region} (partition {want})"
        ))),
        _ => Ok(()),
    }
}

pub fn key_of(e: &AllowlistEntry) -> ItemKey {
    ItemKey { service_id: e.scope.key().to_owned(), principal: e.principal_key.clone() }
}

/// An `allow` or `deny`, validated before anything is sent.
pub struct Rule {
    entry: AllowlistEntry,
    replace: bool,
}

impl Rule {
    /// Who writes it (`created_by`).
    pub fn by(mut self, caller: String) -> Self {
        self.entry.created_by = Some(caller);
        self
    }
}

pub fn rule(effect: Effect, a: &RuleArgs, now: i64) -> R<Rule> {
    let expires_at = a.expires.as_deref().map(|s| time::expiry("--expires", s, now)).transpose()?;
    if a.max_endpoints == Some(0) {
        return Err(usage("--max-endpoints must be at least 1"));
    }
    let entry = Draft {
        scope: scope_of(a.service.as_deref())?,
        principal: &a.principal,
        effect,
        expires_at,
        regions: &a.regions,
        max_endpoints: a.max_endpoints,
        endpoints: &a.endpoints,
        registered_only: a.registered_only,
        tenant: a.tenant.clone(),
        note: a.note.clone(),
        now,
    }
    .entry()?;
    Ok(Rule { entry, replace: a.replace })
}

pub async fn put_rule<A: AllowlistAdmin>(store: &A, out: &mut Out<impl Write>, rule: Rule) -> R<()> {
    let entry = rule.entry;
    let expect = match (store.item(&key_of(&entry)).await?, rule.replace) {
        (None, _) => Expect::Absent,
        (Some(stored), true) => Expect::Version(stored.version),
        (Some(stored), false) => {
            let what = parse_item(&stored.item)
                .map(|e| e.effect.as_str().to_owned())
                .unwrap_or_else(|e| format!("invalid: {}", e.reason));
            return Err(CliError::Service(format!(
                "an entry for {} on {} already exists ({what}); pass --replace to overwrite it",
                entry.principal_key, entry.scope
            )));
        }
    };
    if store.put_if(&entry.to_item(), expect).await? == Written::Lost {
        return Err(CliError::Service(format!(
            "the entry for {} on {} changed since it was read; nothing was written, run the command again",
            entry.principal_key, entry.scope
        )));
    }
    match out.format {
        Output::Json => out.json(&super::query::entry_json(&entry)),
        Output::Table | Output::Csv | Output::NginxMap => {
            let verb = if entry.effect == Effect::Allow { "allowed" } else { "denied" };
            let until = entry.expires_at.map(|t| format!(" until {}", time::shown(t))).unwrap_or_default();
            out.line(format!("{verb} {} on {}{until}", entry.account, entry.scope))
        }
    }
}

/// A `remove`, validated before anything is sent.
pub struct Removal {
    scope: Scope,
    /// The principal as given, which is the key of an entry written by hand with an ARN.
    principal: String,
    account: AccountId,
}

pub fn removal(principal: &str, service: Option<&str>) -> R<Removal> {
    Ok(Removal {
        scope: scope_of(service)?,
        principal: principal.to_owned(),
        account: normalise(principal).map_err(usage)?,
    })
}

pub async fn remove<A: AllowlistAdmin>(store: &A, out: &mut Out<impl Write>, r: &Removal) -> R<()> {
    // The key as written: the account (as `allow`/`deny` write it), the principal as typed, or the account's
    // root ARN in any partition (as an entry written by hand or imported may be keyed: `remove 333333333333`
    // finds `arn:aws:iam::333333333333:root`).
    let mut keys = vec![r.account.to_string()];
    let roots = PARTITIONS.map(|p| format!("arn:{p}:iam::{}:root", r.account));
    for k in std::iter::once(r.principal.clone()).chain(roots) {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    // Every entry of the account under the scope goes: one left behind would still allow (or deny) it.
    let mut found = Vec::new();
    for principal in keys {
        let key = ItemKey { service_id: r.scope.key().to_owned(), principal };
        if let Some(stored) = store.item(&key).await? {
            found.push((key, stored.version));
        }
    }
    let lost = match found.as_slice() {
        [] => return Err(CliError::Service(format!("no entry for {} on {}", r.principal, r.scope))),
        [(key, version)] => store.delete_if(key, *version).await?,
        // Several keys for one account (one written by hand): removed together or not at all.
        several => store.apply(&several.iter().map(|(k, v)| Change::Remove(k.clone(), *v)).collect::<Vec<_>>()).await?,
    } == Written::Lost;
    let named = found.iter().map(|(k, _)| k.principal.as_str()).collect::<Vec<_>>().join(", ");
    if lost {
        return Err(CliError::Service(format!(
            "the entry for {named} on {} changed since it was read; nothing was removed",
            r.scope
        )));
    }
    // The account's other entries still apply (a `*` removal leaves a service's own allow; an entry keyed by one
    // of its roles is another key): said, so that "removed" is not read as "no longer allowed". A failed read
    // only loses the hint.
    let remaining: Vec<AllowlistEntry> = match store.items().await {
        Ok(items) => items
            .iter()
            .filter_map(|stored| parse_item(&stored.item).ok())
            .filter(|e| e.account == r.account)
            .filter(|e| !found.iter().any(|(k, _)| k.service_id == e.scope.key() && k.principal == e.principal_key))
            .collect(),
        Err(e) => {
            eprintln!("gatekeeper: could not read the allowlist for the account's other entries: {e}");
            vec![]
        }
    };
    match out.format {
        Output::Json => out.json(&json!({
            "removed": found.iter().map(|(k, _)| json!({"service": k.service_id, "principal": k.principal})).collect::<Vec<_>>(),
            "remaining": remaining.iter().map(|e| json!({"service": e.scope.key(), "principal": e.principal_key, "effect": e.effect.as_str()})).collect::<Vec<_>>(),
        })),
        Output::Table | Output::Csv | Output::NginxMap => {
            out.line(format!("removed {named} on {}", r.scope))?;
            for e in &remaining {
                // The command that removes it: its own key, and its scope (`*` is the default, unquoted a glob).
                let service = match &e.scope {
                    Scope::AllServices => String::new(),
                    Scope::Service(s) => format!(" --service {s}"),
                };
                out.line(format!(
                    "still {} on {}: {} (gatekeeper remove {}{service})",
                    e.effect.as_str(),
                    e.scope,
                    e.principal_key,
                    e.principal_key
                ))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::commands::fakes::{FakeAllowlist, Table, allow_item, out};

    const NOW: i64 = 1_790_000_000;
    const SVC: &str = "vpce-svc-0123456789abcdef0";

    fn args(principal: &str) -> RuleArgs {
        RuleArgs {
            principal: principal.into(),
            service: Some(SVC.into()),
            all_services: false,
            expires: None,
            regions: vec![],
            max_endpoints: None,
            endpoints: vec![],
            registered_only: false,
            tenant: None,
            note: None,
            replace: false,
        }
    }

    fn key(principal: &str) -> ItemKey {
        ItemKey { service_id: SVC.into(), principal: principal.into() }
    }

    async fn put(store: &FakeAllowlist, a: RuleArgs) -> R<String> {
        let mut o = out(Output::Table);
        put_rule(store, &mut o, rule(Effect::Allow, &a, NOW)?.by("arn:aws:iam::111111111111:user/me".into())).await?;
        Ok(o.text())
    }

    #[tokio::test]
    async fn when_the_entry_is_new_should_write_it_at_the_first_version() {
        let store = FakeAllowlist::default();
        let text = put(&store, RuleArgs { expires: Some("2030-01-01".into()), ..args("222222222222") }).await.unwrap();
        assert_eq!(text, format!("allowed 222222222222 on {SVC} until 2030-01-01 00:00:00Z\n"));
        let stored = store.get(&key("222222222222")).unwrap();
        assert_eq!(stored.version, Some(1));
        assert_eq!(parse_item(&stored.item).unwrap().created_by.as_deref(), Some("arn:aws:iam::111111111111:user/me"));
    }

    #[tokio::test]
    async fn when_an_entry_exists_without_replace_should_refuse_with_254_and_with_it_replace_what_was_read() {
        // Written by hand: no version yet.
        let mut table = Table::default();
        table.insert(allow_item(SVC, "222222222222"), None);
        let store = FakeAllowlist::from_table(table);
        let err = put(&store, args("222222222222")).await.unwrap_err();
        assert_eq!(err.exit_code(), 254);
        assert!(err.to_string().contains("already exists (allow); pass --replace"), "{err}");
        for version in [1, 2] {
            let replaced =
                put(&store, RuleArgs { replace: true, max_endpoints: Some(3), ..args("222222222222") }).await;
            assert!(replaced.is_ok(), "{replaced:?}");
            assert_eq!(store.get(&key("222222222222")).unwrap().version, Some(version));
        }
    }

    #[tokio::test]
    async fn when_a_replace_loses_its_race_should_write_nothing_and_exit_254() {
        let store = FakeAllowlist::with(&[allow_item(SVC, "222222222222")])
            .racing(|t| t.edit(&key("222222222222"), "note", "someone else's"));
        let err = put(&store, RuleArgs { replace: true, note: Some("mine".into()), ..args("222222222222") })
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 254);
        assert!(err.to_string().contains("changed since it was read; nothing was written"), "{err}");
        let stored = store.get(&key("222222222222")).unwrap();
        assert_eq!(parse_item(&stored.item).unwrap().note.as_deref(), Some("someone else's"));
        assert_eq!(stored.version, Some(2), "only the other editor's write");
    }

    #[tokio::test]
    async fn when_another_editor_creates_the_entry_first_should_write_nothing_and_exit_254() {
        let store = FakeAllowlist::default().racing(|t| t.insert(allow_item(SVC, "222222222222"), Some(1)));
        let err = put(&store, RuleArgs { note: Some("mine".into()), ..args("222222222222") }).await.unwrap_err();
        assert_eq!(err.exit_code(), 254);
        assert!(err.to_string().contains("changed since it was read"), "{err}");
        assert_eq!(parse_item(&store.get(&key("222222222222")).unwrap().item).unwrap().note, None);
    }

    #[tokio::test]
    async fn when_an_expiry_is_too_far_ahead_should_refuse_with_252_before_writing() {
        let a = RuleArgs { expires: Some("200000000000d".into()), ..args("222222222222") };
        let err = rule(Effect::Allow, &a, NOW).err().unwrap();
        assert_eq!(err.exit_code(), 252);
        assert!(err.to_string().contains("--expires 200000000000d is more than 100 years ahead"), "{err}");
    }

    #[tokio::test]
    async fn when_registering_endpoints_and_a_tenant_should_store_them_and_refuse_bad_ones_naming_the_flag() {
        let store = FakeAllowlist::default();
        let a = RuleArgs {
            endpoints: vec!["vpce-0123456789abcdef0".into(), "vpce-0123456789abcdef0".into(), "vpce-01234567".into()],
            registered_only: true,
            tenant: Some("ACME Corp".into()),
            ..args("222222222222")
        };
        put(&store, a).await.unwrap();
        let e = parse_item(&store.get(&key("222222222222")).unwrap().item).unwrap();
        let ids: Vec<String> = e.endpoints.iter().map(ToString::to_string).collect();
        assert_eq!(ids, ["vpce-01234567", "vpce-0123456789abcdef0"], "deduplicated, sorted: a set keeps no order");
        assert!(e.registered_only);
        assert_eq!(e.tenant.as_deref(), Some("ACME Corp"));

        let cases: Vec<(RuleArgs, &str)> = vec![
            (
                RuleArgs { endpoints: vec!["vpce-svc-0123456789abcdef0".into()], ..args("3") },
                "--endpoint: invalid endpoint ID",
            ),
            (RuleArgs { endpoints: vec!["vpce-XYZ".into()], ..args("3") }, "--endpoint"),
            (RuleArgs { registered_only: true, ..args("3") }, "--registered-only needs at least one --endpoint"),
            (RuleArgs { tenant: Some("x".repeat(65)), ..args("3") }, "--tenant is 65 characters long"),
            (RuleArgs { tenant: Some(String::new()), ..args("3") }, "--tenant is empty"),
        ];
        for (a, want) in cases {
            let a = RuleArgs { principal: "333333333333".into(), ..a };
            let err = rule(Effect::Allow, &a, NOW).err().unwrap();
            assert_eq!(err.exit_code(), 252, "{err}");
            assert!(err.to_string().contains(want), "{err} lacks {want}");
        }
        let deny = RuleArgs { registered_only: true, endpoints: vec!["vpce-01234567".into()], ..args("333333333333") };
        assert!(rule(Effect::Deny, &deny, NOW).err().unwrap().to_string().contains("applies to an allow"));
    }

    #[tokio::test]
    async fn when_removing_should_find_a_hand_written_key_and_remove_it_at_its_version() {
        let arn = "arn:aws:iam::222222222222:root";
        let store = FakeAllowlist::with(&[allow_item(SVC, arn)]);
        let mut o = out(Output::Table);
        remove(&store, &mut o, &removal(arn, Some(SVC)).unwrap()).await.unwrap();
        assert_eq!(o.text(), format!("removed {arn} on {SVC}\n"));
        assert!(store.get(&key(arn)).is_none());
        let err = remove(&store, &mut o, &removal(arn, Some(SVC)).unwrap()).await.unwrap_err();
        assert_eq!((err.exit_code(), err.to_string()), (254, format!("no entry for {arn} on {SVC}")));
    }

    #[tokio::test]
    async fn when_removing_an_account_should_find_its_entry_keyed_by_its_root_arn() {
        let arn = "arn:aws:iam::222222222222:root";
        let store = FakeAllowlist::with(&[allow_item(SVC, arn)]);
        let mut o = out(Output::Table);
        remove(&store, &mut o, &removal("222222222222", Some(SVC)).unwrap()).await.unwrap();
        assert_eq!(o.text(), format!("removed {arn} on {SVC}\n"));
        assert!(store.get(&key(arn)).is_none());
    }

    #[tokio::test]
    async fn when_an_account_has_entries_under_two_keys_remove_should_take_both_at_once() {
        let arn = "arn:aws:iam::222222222222:root";
        let store = FakeAllowlist::with(&[allow_item(SVC, "222222222222"), allow_item(SVC, arn)]);
        let mut o = out(Output::Table);
        remove(&store, &mut o, &removal("222222222222", Some(SVC)).unwrap()).await.unwrap();
        assert_eq!(o.text(), format!("removed 222222222222, {arn} on {SVC}\n"));
        assert!(store.get(&key("222222222222")).is_none() && store.get(&key(arn)).is_none(), "none left to allow it");
        assert_eq!(store.applied(), 1, "one transaction");
    }

    #[tokio::test]
    async fn when_the_account_keeps_entries_under_other_scopes_remove_should_say_which_still_apply() {
        let store = FakeAllowlist::with(&[allow_item("*", "222222222222"), allow_item(SVC, "222222222222")]);
        let mut o = out(Output::Table);
        remove(&store, &mut o, &removal("222222222222", None).unwrap()).await.unwrap();
        assert_eq!(
            o.text(),
            format!(
                "removed 222222222222 on *\nstill allow on {SVC}: 222222222222 (gatekeeper remove 222222222222 --service {SVC})\n"
            )
        );
        assert!(store.get(&key("222222222222")).is_some(), "the service's own entry is not removed by a `*` removal");
        // An entry keyed by one of the account's roles is another key, in the same scope: said too, with its
        // own command (no --service for `*`, the default).
        let role = "arn:aws:iam::222222222222:role/Deploy";
        let with_role = FakeAllowlist::with(&[allow_item("*", "222222222222"), allow_item("*", role)]);
        let mut o = out(Output::Table);
        remove(&with_role, &mut o, &removal("222222222222", None).unwrap()).await.unwrap();
        assert_eq!(
            o.text(),
            format!("removed 222222222222 on *\nstill allow on *: {role} (gatekeeper remove {role})\n")
        );
        let mut o = out(Output::Json);
        remove(&store, &mut o, &removal("222222222222", Some(SVC)).unwrap()).await.unwrap();
        let said: serde_json::Value = serde_json::from_str(&o.text()).unwrap();
        assert_eq!(said["remaining"], json!([]), "{said}");
        assert_eq!(said["removed"], json!([{"service": SVC, "principal": "222222222222"}]), "{said}");
    }

    #[tokio::test]
    async fn when_a_remove_loses_its_race_should_keep_the_other_edit_and_exit_254() {
        let store = FakeAllowlist::with(&[allow_item(SVC, "222222222222")])
            .racing(|t| t.edit(&key("222222222222"), "note", "extended"));
        let err =
            remove(&store, &mut out(Output::Table), &removal("222222222222", Some(SVC)).unwrap()).await.unwrap_err();
        assert_eq!(err.exit_code(), 254);
        assert!(err.to_string().contains("changed since it was read; nothing was removed"), "{err}");
        assert!(store.get(&key("222222222222")).is_some());
    }
}
