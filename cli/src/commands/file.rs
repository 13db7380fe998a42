//! `import` and `export`: the allowlist as a reviewed file, applied in one all-or-nothing change.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::domain::Region;
use shared::domain::allowlist::{AllowlistEntry, Attr, Effect, parse_item};
use shared::ports::{AllowlistAdmin, Change, Expect, ItemKey, MAX_CHANGES, StoredItem, Written};

use super::edit::{self, Draft, key_of};
use super::{Out, R, scope_of, usage};
use crate::context::CliError;
use crate::{FileFormat, Output, time};

/// The file form of an entry (`export` writes it, `import` reads it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// `vpce-svc-…` or `*`.
    pub service: String,
    pub principal: String,
    pub effect: String,
    /// A date (2026-12-31 or 2026-12-31T18:00:00Z).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_endpoints: Option<u32>,
    /// Registered endpoint IDs (vpce-…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub registered_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistFile {
    pub entries: Vec<FileEntry>,
}

/// What an entry means, without who wrote it when: the file form (compared to tell whether anything
/// changed).
fn to_file_entry(e: &AllowlistEntry) -> FileEntry {
    FileEntry {
        service: e.scope.key().to_owned(),
        principal: e.principal_key.clone(),
        effect: e.effect.as_str().to_owned(),
        expires: e.expires_at.map(time::file_date),
        regions: e.regions.as_ref().map(|r| r.iter().map(ToString::to_string).collect()),
        max_endpoints: e.max_endpoints,
        endpoints: e.endpoints.iter().map(ToString::to_string).collect(),
        registered_only: e.registered_only,
        tenant: e.tenant.clone(),
        note: e.note.clone(),
    }
}

/// Validates a whole file: every entry or none.
pub fn parse_file(text: &str, now: i64) -> R<Vec<AllowlistEntry>> {
    let file: AllowlistFile =
        serde_norway::from_str(text).map_err(|e| usage(format!("the file is not a valid allowlist: {e}")))?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, f) in file.entries.iter().enumerate() {
        let at = |e: &dyn std::fmt::Display| usage(format!("entry {} ({} {}): {e}", i + 1, f.service, f.principal));
        let effect = match f.effect.as_str() {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            other => return Err(at(&format!("effect must be allow or deny, not {other:?}"))),
        };
        let expires_at = f.expires.as_deref().map(|x| time::file_expiry(x, now)).transpose().map_err(|e| at(&e))?;
        let e = Draft {
            scope: scope_of(Some(&f.service)).map_err(|e| at(&e))?,
            principal: &f.principal,
            effect,
            expires_at,
            regions: f.regions.as_deref().unwrap_or_default(),
            max_endpoints: f.max_endpoints,
            endpoints: &f.endpoints,
            registered_only: f.registered_only,
            tenant: f.tenant.clone(),
            note: f.note.clone(),
            now,
        }
        .entry()
        .map_err(|e| at(&e))?;
        if !seen.insert(key_of(&e)) {
            return Err(at(&"listed twice"));
        }
        out.push(e);
    }
    Ok(out)
}

pub async fn export<A: AllowlistAdmin>(store: &A, out: &mut Out<impl Write>, format: FileFormat) -> R<()> {
    let mut entries = Vec::new();
    for stored in store.items().await? {
        match parse_item(&stored.item) {
            Ok(e) => entries.push(to_file_entry(&e)),
            Err(e) => eprintln!("gatekeeper: skipped an invalid item: {e}"),
        }
    }
    entries.sort_by(|a, b| (&a.service, &a.principal).cmp(&(&b.service, &b.principal)));
    let file = AllowlistFile { entries };
    let text = match format {
        FileFormat::Json => serde_json::to_string_pretty(&file).map_err(|e| CliError::Other(e.to_string()))?,
        FileFormat::Yaml => serde_norway::to_string(&file).map_err(|e| CliError::Other(e.to_string()))?,
    };
    out.line(text.trim_end())
}

/// An `import`, its file validated whole before anything is sent.
pub struct Import {
    /// Where the file came from (for the messages).
    pub source: String,
    pub wanted: Vec<AllowlistEntry>,
    /// Who applies it (`created_by`); `None` for a dry run.
    pub created_by: Option<String>,
    pub dry_run: bool,
    /// Also remove the entries the file does not list.
    pub prune: bool,
    /// Now, in seconds since the epoch: an entry of the file already expired is not written back.
    pub now: i64,
}

fn stored_key(s: &StoredItem) -> Option<ItemKey> {
    match (s.item.get("service_id"), s.item.get("principal")) {
        (Some(Attr::S(service_id)), Some(Attr::S(principal))) => {
            Some(ItemKey { service_id: service_id.clone(), principal: principal.clone() })
        }
        _ => None,
    }
}

/// Every ARN principal of a file [`parse_file`] accepted must be of the stack's partition (as `allow`/`deny`
/// check it; the parsed entries keep only the account, so this reads the principals as written). The error
/// names the entry; nothing is written.
pub fn check_partitions(text: &str, region: &Region) -> R<()> {
    let file: AllowlistFile =
        serde_norway::from_str(text).map_err(|e| usage(format!("the file is not a valid allowlist: {e}")))?;
    for (i, f) in file.entries.iter().enumerate() {
        edit::check_partition(&f.principal, region)
            .map_err(|err| usage(format!("entry {} ({} {}): {err}", i + 1, f.service, f.principal)))?;
    }
    Ok(())
}

pub async fn import<A: AllowlistAdmin>(store: &A, out: &mut Out<impl Write>, plan: &Import) -> R<()> {
    let current: BTreeMap<ItemKey, StoredItem> =
        store.items().await?.into_iter().filter_map(|s| Some((stored_key(&s)?, s))).collect();
    let mut changes = Vec::new();
    let mut lines = Vec::new();
    let mut gone = Vec::new();
    for wanted in &plan.wanted {
        let e = AllowlistEntry { created_by: plan.created_by.clone(), ..wanted.clone() };
        let (sign, expect) = match current.get(&key_of(&e)) {
            // Expired and no longer in the table: DynamoDB's TTL deletes expired items ("typically within a
            // few days"), so writing it back would only be deleted again, and an exported file would never
            // import as a no-op once TTL had removed its expired entries.
            None if e.is_expired(plan.now) => {
                let f = to_file_entry(&e);
                gone.push(format!(
                    "= {} {} {} (expired, and removed by the table's TTL: not written back)",
                    f.effect, f.service, f.principal
                ));
                continue;
            }
            None => ('+', Expect::Absent),
            Some(s) if parse_item(&s.item).is_ok_and(|old| to_file_entry(&old) == to_file_entry(&e)) => continue,
            Some(s) => ('~', Expect::Version(s.version)),
        };
        let f = to_file_entry(&e);
        let until = f.expires.map(|x| format!(" until {x}")).unwrap_or_default();
        lines.push(format!("{sign} {} {} {}{until}", f.effect, f.service, f.principal));
        changes.push(Change::Put(e.to_item(), expect));
    }
    if plan.prune {
        let keep: BTreeSet<ItemKey> = plan.wanted.iter().map(key_of).collect();
        for (key, s) in current.into_iter().filter(|(k, _)| !keep.contains(k)) {
            // An item that does not parse is one `export` leaves out, so an exported file prunes it: said, as
            // removing an invalid deny lets its account be accepted.
            let why = match parse_item(&s.item) {
                Ok(_) => String::new(),
                Err(e) => format!(
                    " (an invalid item, which export leaves out: {e}; an invalid deny blocks accepting its account)"
                ),
            };
            lines.push(format!("- {} {}{why}", key.service_id, key.principal));
            changes.push(Change::Remove(key, s.version));
        }
    }
    if out.format == Output::Table && !gone.is_empty() {
        out.line(gone.join("\n"))?;
    }
    // Nothing to change: said in words; JSON answers as below, with empty lists.
    if lines.is_empty() && out.format != Output::Json {
        return out.line(format!("the allowlist already matches {}", plan.source));
    }
    if out.format == Output::Table {
        out.line(lines.join("\n"))?;
    }
    // Refused before a dry run answers too, so that a dry run never shows a plan the real one refuses.
    if changes.len() > MAX_CHANGES {
        return Err(usage(format!(
            "{} changes are more than one transaction takes ({MAX_CHANGES}); split the file",
            changes.len()
        )));
    }
    if plan.dry_run {
        return match out.format {
            Output::Json => out.json(&json!({"dry_run": true, "changes": lines, "left_out": gone})),
            Output::Table | Output::Csv | Output::NginxMap => out.line("(dry run: nothing written)"),
        };
    }
    if !changes.is_empty() && store.apply(&changes).await? == Written::Lost {
        return Err(CliError::Service(
            "the allowlist changed while the file was being applied; nothing was written, run it again".into(),
        ));
    }
    match out.format {
        Output::Json => out.json(&json!({"applied": lines, "left_out": gone})),
        Output::Table | Output::Csv | Output::NginxMap => out.line(format!("applied {} change(s)", lines.len())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::commands::fakes::{FakeAllowlist, Table, allow_item, out};

    const NOW: i64 = 1_790_000_000;
    const SVC: &str = "vpce-svc-0123456789abcdef0";

    #[test]
    fn a_file_is_validated_whole() {
        let ok = "entries:\n  - {service: '*', principal: 'arn:aws:iam::222222222222:root', effect: allow, expires: 2030-01-01}\n  - {service: vpce-svc-0123456789abcdef0, principal: '333333333333', effect: deny}\n";
        let entries = parse_file(ok, NOW).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].principal_key, "222222222222");
        for (bad, why) in [
            ("entries:\n  - {service: '*', principal: '*', effect: allow}\n", "cannot be listed"),
            ("entries:\n  - {service: '*', principal: '222222222222', effect: permit}\n", "effect"),
            ("entries:\n  - {service: 'svc', principal: '222222222222', effect: allow}\n", "service ID"),
            ("entries:\n  - {service: '*', principal: '222222222222', effect: allow, expires: soon}\n", "duration"),
            (
                "entries:\n  - {service: '*', principal: '222222222222', effect: allow, expires: 2200-01-01}\n",
                "entry 1 (* 222222222222): expires 2200-01-01 is more than 100 years ahead",
            ),
            ("entries:\n  - {service: '*', principal: '222222222222', effect: allow, colour: red}\n", "unknown field"),
            (
                "entries:\n  - {service: '*', principal: '222222222222', effect: allow}\n  - {service: '*', principal: 'arn:aws:iam::222222222222:root', effect: deny}\n",
                "listed twice",
            ),
        ] {
            let err = parse_file(bad, NOW).unwrap_err();
            assert_eq!(err.exit_code(), 252);
            assert!(err.to_string().contains(why), "{err} lacks {why}");
        }
    }

    #[test]
    fn a_file_principal_of_another_partition_is_refused_naming_its_entry() {
        let text = "entries:\n  - {service: '*', principal: '333333333333', effect: deny}\n  - {service: '*', principal: 'arn:aws-cn:iam::222222222222:root', effect: allow}\n";
        parse_file(text, NOW).unwrap();
        let err = check_partitions(text, &Region::parse("eu-west-1").unwrap()).unwrap_err();
        assert_eq!(err.exit_code(), 252);
        assert!(err.to_string().starts_with("entry 2 (* arn:aws-cn:iam::222222222222:root): "), "{err}");
        assert!(err.to_string().contains("partition aws-cn"), "{err}");
        check_partitions(text, &Region::parse("cn-north-1").unwrap()).unwrap();
    }

    fn plan(text: &str, prune: bool) -> Import {
        Import {
            source: "allowlist.yaml".into(),
            wanted: parse_file(text, NOW).unwrap(),
            created_by: Some("arn:aws:iam::111111111111:user/me".into()),
            dry_run: false,
            prune,
            now: NOW,
        }
    }

    #[tokio::test]
    async fn an_expired_entry_the_tables_ttl_removed_is_not_written_back_and_one_still_there_is_kept() {
        // Exported while both were there; since then TTL removed the expired allow of 222222222222.
        let file = "entries:\n  - {service: '*', principal: '222222222222', effect: allow, expires: 2020-01-01}\n  - {service: '*', principal: '333333333333', effect: allow, expires: 2020-01-01}\n";
        let mut still = allow_item("*", "333333333333");
        still.insert("expires_at".into(), Attr::N("1577836800".into()));
        let store = FakeAllowlist::with(&[still]);
        let mut o = out(Output::Table);
        import(&store, &mut o, &plan(file, true)).await.unwrap();
        assert_eq!(
            o.text(),
            "= allow * 222222222222 (expired, and removed by the table's TTL: not written back)\nthe allowlist already matches allowlist.yaml\n"
        );
        assert_eq!(store.applied(), 0, "nothing written");
        let mut json = out(Output::Json);
        import(&store, &mut json, &plan(file, true)).await.unwrap();
        let answered: serde_json::Value = serde_json::from_str(&json.text()).unwrap();
        let left_out = "= allow * 222222222222 (expired, and removed by the table's TTL: not written back)";
        assert_eq!(answered, json!({"applied": [], "left_out": [left_out]}), "JSON, even with nothing to do");
    }

    const FILE: &str = "entries:\n  - {service: '*', principal: '222222222222', effect: allow, note: new}\n  - {service: vpce-svc-0123456789abcdef0, principal: '333333333333', effect: deny}\n";

    fn before() -> FakeAllowlist {
        let mut old = allow_item("*", "222222222222");
        old.insert("note".into(), Attr::S("old".into()));
        FakeAllowlist::with(&[old, allow_item("*", "555555555555")])
    }

    fn key(service_id: &str, principal: &str) -> ItemKey {
        ItemKey { service_id: service_id.into(), principal: principal.into() }
    }

    #[tokio::test]
    async fn when_importing_should_apply_every_change_at_once_and_then_match() {
        let store = before();
        let mut o = out(Output::Table);
        import(&store, &mut o, &plan(FILE, true)).await.unwrap();
        assert_eq!(
            o.text(),
            format!("~ allow * 222222222222\n+ deny {SVC} 333333333333\n- * 555555555555\napplied 3 change(s)\n")
        );
        assert_eq!(store.applied(), 1, "one transaction");
        let t = store.snapshot();
        assert_eq!(t.keys(), vec![key("*", "222222222222"), key(SVC, "333333333333")]);
        assert_eq!(t.get(&key("*", "222222222222")).unwrap().version, Some(2));

        let mut o = out(Output::Table);
        export(&store, &mut o, FileFormat::Yaml).await.unwrap();
        let mut again = out(Output::Table);
        import(&store, &mut again, &plan(&o.text(), true)).await.unwrap();
        assert_eq!(again.text(), "the allowlist already matches allowlist.yaml\n", "export → import is a no-op");
    }

    #[tokio::test]
    async fn when_an_import_loses_its_race_should_write_nothing_and_exit_254() {
        let store = before().racing(|t: &mut Table| t.edit(&key("*", "555555555555"), "note", "someone else's"));
        let raced = {
            let mut t = before().snapshot();
            t.edit(&key("*", "555555555555"), "note", "someone else's");
            t
        };
        let err = import(&store, &mut out(Output::Table), &plan(FILE, true)).await.unwrap_err();
        assert_eq!(err.exit_code(), 254);
        assert!(err.to_string().contains("nothing was written"), "{err}");
        assert_eq!(store.snapshot(), raced, "only the other editor's change");
    }

    #[tokio::test]
    async fn when_an_import_has_more_changes_than_one_transaction_should_refuse_with_252() {
        let entries: String = (0..=MAX_CHANGES)
            .map(|i| format!("  - {{service: '*', principal: '{:012}', effect: allow}}\n", 100_000_000_000 + i))
            .collect();
        let store = FakeAllowlist::default();
        let err =
            import(&store, &mut out(Output::Json), &plan(&format!("entries:\n{entries}"), false)).await.unwrap_err();
        assert_eq!(err.exit_code(), 252);
        assert_eq!(store.applied(), 0);
        // A dry run of it says so too, rather than show a plan the real run refuses.
        let dry_run = Import { dry_run: true, ..plan(&format!("entries:\n{entries}"), false) };
        let err = import(&store, &mut out(Output::Table), &dry_run).await.unwrap_err();
        assert_eq!(err.exit_code(), 252, "{err}");
    }

    #[tokio::test]
    async fn when_a_prune_would_remove_an_invalid_item_the_plan_should_say_so() {
        let mut invalid = allow_item("*", "444444444444");
        invalid.insert("effect".into(), Attr::S("block".into()));
        let store = FakeAllowlist::with(&[allow_item("*", "222222222222"), invalid]);
        let file = "entries:\n  - {service: '*', principal: '222222222222', effect: allow}\n";
        let mut o = out(Output::Table);
        import(&store, &mut o, &Import { dry_run: true, ..plan(file, true) }).await.unwrap();
        assert!(o.text().contains("- * 444444444444 (an invalid item, which export leaves out:"), "{}", o.text());
        assert_eq!(store.applied(), 0, "a dry run");
    }

    #[tokio::test]
    async fn when_a_stored_expiry_is_out_of_range_export_should_write_the_raw_number() {
        let mut huge = allow_item("*", "222222222222");
        huge.insert("expires_at".into(), Attr::N(i64::MAX.to_string()));
        let mut later = allow_item("*", "333333333333");
        later.insert("expires_at".into(), Attr::N("1893456000".into()));
        let store = FakeAllowlist::with(&[huge, later]);
        let mut o = out(Output::Table);
        export(&store, &mut o, FileFormat::Json).await.unwrap();
        let file: AllowlistFile = serde_json::from_str(&o.text()).unwrap();
        let expires: Vec<_> = file.entries.iter().map(|e| e.expires.clone().unwrap()).collect();
        assert_eq!(expires, vec![i64::MAX.to_string(), "2030-01-01T00:00:00Z".to_owned()]);
        let mut o = out(Output::Table);
        import(&store, &mut o, &Import { dry_run: true, ..plan(FILE, false) }).await.unwrap();
        assert!(o.text().starts_with("~ allow * 222222222222\n"), "the huge row diffs without panicking: {}", o.text());
    }
}
