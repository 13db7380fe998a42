//! The commands. Every write is validated by the shared crate's own parser before it is sent, and is
//! conditional on what was read, so two editors never silently overwrite each other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::adapters::dynamodb::Expect;
use shared::domain::allowlist::{AllowlistEntry, Effect, Item, Scope, parse_item};
use shared::domain::principal::normalise;
use shared::domain::record::DecisionRecord;
use shared::domain::time::{now_ms, parse_date, parse_when, rfc3339_ms};
use shared::domain::{
    Connection, ConnectionRequest, ConnectionState, DefaultAction, EndpointId, Region, Rules, ServiceId, Trigger,
    evaluate,
};
use shared::ports::{Allowlist, ConnectionFilter, Connections, RequestBus, Written};
use shared::producers::requests_for;

use crate::context::{CliError, Ctx, resolve};
use crate::render::table;
use crate::{Cli, Command, FileFormat, Output, RuleArgs};

/// What `reevaluate --service`/`--all` asks about: connections waiting for acceptance, and accepted ones
/// (`available`, or `pending` on its way there), which `decide` revokes when revocation is on.
const REEVALUATED: [&str; 3] = ["pendingAcceptance", ConnectionState::ACCEPTED[0], ConnectionState::ACCEPTED[1]];

type R<T> = Result<T, CliError>;

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(e.to_string())
}

pub async fn run(cli: Cli) -> R<()> {
    // Validate what can be validated before any AWS call.
    if let Command::Allow(a) | Command::Deny(a) = &cli.command {
        normalise(&a.principal).map_err(usage)?;
        scope_of(a.service.as_deref())?;
    }
    let ctx = resolve(&cli.target).await?;
    let out = cli.output;
    match cli.command {
        Command::Allow(a) => put_rule(&ctx, out, Effect::Allow, a).await,
        Command::Deny(a) => put_rule(&ctx, out, Effect::Deny, a).await,
        Command::Remove { principal, service, all_services: _ } => {
            remove(&ctx, out, &principal, service.as_deref()).await
        }
        Command::List { service, expired } => list(&ctx, out, service.as_deref(), expired).await,
        Command::Pending => pending(&ctx, out).await,
        Command::Explain { endpoint_id } => explain(&ctx, out, &endpoint_id).await,
        Command::Decisions { since, service, decision } => {
            decisions(&ctx, out, &since, service.as_deref(), decision.as_deref()).await
        }
        Command::Reevaluate { endpoint_id, service, all } => {
            reevaluate(&ctx, out, endpoint_id.as_deref(), service.as_deref(), all).await
        }
        Command::Import { file, dry_run, prune } => import(&ctx, out, &file, dry_run, prune).await,
        Command::Export { format } => export(&ctx, format).await,
    }
}

fn scope_of(service: Option<&str>) -> R<Scope> {
    match service {
        None | Some("*") => Ok(Scope::AllServices),
        Some(s) => ServiceId::parse(s).map(Scope::Service).map_err(usage),
    }
}

fn print_json(v: &impl Serialize) -> R<()> {
    println!("{}", serde_json::to_string_pretty(v).map_err(|e| CliError::Other(e.to_string()))?);
    Ok(())
}

fn date(epoch_s: Option<i64>) -> String {
    epoch_s.map(|t| rfc3339_ms(t * 1000)[..19].replace('T', " ") + "Z").unwrap_or_else(|| "-".into())
}

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistFile {
    pub entries: Vec<FileEntry>,
}

fn entry_json(e: &AllowlistEntry) -> Value {
    json!({
        "service": e.scope.key(),
        "principal": e.principal_key,
        "account": e.account.as_str(),
        "effect": e.effect.as_str(),
        "expires_at": e.expires_at,
        "regions": e.regions.as_ref().map(|r| r.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "max_endpoints": e.max_endpoints,
        "note": e.note,
        "created_by": e.created_by,
        "created_at": e.created_at,
    })
}

/// Builds and validates an entry (through the same parser the functions use).
#[allow(clippy::too_many_arguments)]
fn build_entry(
    scope: Scope,
    principal: &str,
    effect: Effect,
    expires_at: Option<i64>,
    regions: &[String],
    max_endpoints: Option<u32>,
    note: Option<String>,
    created_by: Option<String>,
) -> R<AllowlistEntry> {
    let account = normalise(principal).map_err(usage)?;
    if effect == Effect::Deny && max_endpoints.is_some() {
        return Err(usage("--max-endpoints applies to an allow, not a deny"));
    }
    let regions = if regions.is_empty() {
        None
    } else {
        Some(regions.iter().map(|r| Region::parse(r.trim())).collect::<Result<Vec<_>, _>>().map_err(usage)?)
    };
    let entry = AllowlistEntry {
        scope,
        principal_key: account.to_string(),
        account,
        effect,
        expires_at,
        regions,
        max_endpoints,
        note,
        created_by,
        created_at: Some(now_ms() / 1000),
    };
    parse_item(&entry.to_item()).map_err(usage)
}

async fn put_rule(ctx: &Ctx, out: Output, effect: Effect, a: RuleArgs) -> R<()> {
    let now = now_ms() / 1000;
    let expires_at = match &a.expires {
        None => None,
        Some(s) => {
            let t = parse_when(s, now, true).map_err(usage)?;
            if t <= now {
                return Err(usage(format!("--expires {s} is not in the future")));
            }
            Some(t)
        }
    };
    if a.max_endpoints == Some(0) {
        return Err(usage("--max-endpoints must be at least 1"));
    }
    let scope = scope_of(a.service.as_deref())?;
    let caller = ctx.caller().await?;
    let entry = build_entry(
        scope,
        &a.principal,
        effect,
        expires_at,
        &a.regions,
        a.max_endpoints,
        a.note.clone(),
        Some(caller),
    )?;
    let store = ctx.allowlist();
    let existing = store.get(entry.scope.key(), &entry.principal_key).await?;
    let expect = match (&existing, a.replace) {
        (None, _) => Expect::Absent,
        (Some((_, v)), true) => Expect::Version(*v),
        (Some((item, _)), false) => {
            let what = parse_item(item)
                .map(|e| e.effect.as_str().to_owned())
                .unwrap_or_else(|e| format!("invalid: {}", e.reason));
            return Err(CliError::Service(format!(
                "an entry for {} on {} already exists ({what}); pass --replace to overwrite it",
                entry.principal_key, entry.scope
            )));
        }
    };
    match store.put_if(&entry.to_item(), expect).await? {
        Written::Yes => {}
        Written::Lost => {
            return Err(CliError::Service(format!(
                "the entry for {} on {} changed since it was read; nothing was written, run the command again",
                entry.principal_key, entry.scope
            )));
        }
    }
    match out {
        Output::Json => print_json(&entry_json(&entry)),
        Output::Table => {
            let verb = if effect == Effect::Allow { "allowed" } else { "denied" };
            let until = entry.expires_at.map(|t| format!(" until {}", date(Some(t)))).unwrap_or_default();
            println!("{verb} {} on {}{until}", entry.account, entry.scope);
            Ok(())
        }
    }
}

async fn remove(ctx: &Ctx, out: Output, principal: &str, service: Option<&str>) -> R<()> {
    let scope = scope_of(service)?;
    let account = normalise(principal).map_err(usage)?;
    let store = ctx.allowlist();
    // The key as written: the account, or the raw principal for entries written by hand.
    let mut found = None;
    for key in [account.to_string(), principal.to_owned()] {
        if let Some((_, v)) = store.get(scope.key(), &key).await? {
            found = Some((key, v));
            break;
        }
    }
    let Some((key, version)) = found else {
        return Err(CliError::Service(format!("no entry for {principal} on {scope}")));
    };
    if store.delete_if(scope.key(), &key, version).await? == Written::Lost {
        return Err(CliError::Service(format!(
            "the entry for {key} on {scope} changed since it was read; nothing was removed"
        )));
    }
    match out {
        Output::Json => print_json(&json!({"removed": {"service": scope.key(), "principal": key}})),
        Output::Table => {
            println!("removed {key} on {scope}");
            Ok(())
        }
    }
}

async fn list(ctx: &Ctx, out: Output, service: Option<&str>, expired: bool) -> R<()> {
    let filter = service.map(|s| ServiceId::parse(s).map_err(usage)).transpose()?;
    let now = now_ms() / 1000;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    let mut items = ctx.allowlist().scan().await?;
    let key = |item: &Item| {
        let text = |k: &str| match item.get(k) {
            Some(shared::domain::Attr::S(s)) => s.clone(),
            _ => String::new(),
        };
        (text("service_id"), text("principal"))
    };
    items.sort_by_key(|(item, _)| key(item));
    for (item, _) in items {
        match parse_item(&item) {
            Ok(e) => {
                if filter.as_ref().is_some_and(|f| !e.scope.covers(f)) || (expired && !e.is_expired(now)) {
                    continue;
                }
                let exp = match e.expires_at {
                    Some(t) if t <= now => format!("{} (expired)", date(Some(t))),
                    t => date(t),
                };
                rows.push(vec![
                    e.scope.to_string(),
                    e.principal_key.clone(),
                    e.effect.as_str().into(),
                    exp,
                    e.regions
                        .as_ref()
                        .map_or("any".into(), |r| r.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
                    e.max_endpoints.map_or("-".into(), |n| n.to_string()),
                    e.note.clone().unwrap_or_default(),
                    e.created_by.clone().unwrap_or_default(),
                ]);
                json_rows.push(entry_json(&e));
            }
            Err(err) => {
                if expired {
                    continue;
                }
                rows.push(vec![
                    err.service_id.clone(),
                    err.principal.clone(),
                    "INVALID".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    err.reason.clone(),
                    String::new(),
                ]);
                json_rows.push(json!({"service": err.service_id, "principal": err.principal, "invalid": err.reason}));
            }
        }
    }
    match out {
        Output::Json => print_json(&json_rows),
        Output::Table => {
            println!(
                "{}",
                table(&["SERVICE", "PRINCIPAL", "EFFECT", "EXPIRES", "REGIONS", "MAX", "NOTE", "CREATED BY"], &rows)
            );
            Ok(())
        }
    }
}

fn default_action() -> DefaultAction {
    std::env::var("GATEKEEPER_DEFAULT_ACTION").ok().and_then(|v| v.parse().ok()).unwrap_or(DefaultAction::Reject)
}

fn would(ctx: &Ctx, c: &Connection, rules: &Rules) -> R<shared::domain::Decision> {
    Ok(evaluate(c, rules, &ctx.region()?, now_ms() / 1000, default_action()))
}

async fn pending(ctx: &Ctx, out: Output) -> R<()> {
    let conns = ctx.connections();
    let allowlist = ctx.allowlist();
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for service in ctx.managed()? {
        let filter = ConnectionFilter { states: vec!["pendingAcceptance".into()], ..Default::default() };
        let pending = conns.describe(service, &filter).await?;
        if pending.is_empty() {
            continue;
        }
        let rules = allowlist.rules_for(service).await?;
        for c in pending {
            let d = would(ctx, &c, &rules)?;
            rows.push(vec![
                c.service_id.to_string(),
                c.endpoint_id.to_string(),
                c.owner.to_string(),
                c.region.as_ref().map_or("-".into(), ToString::to_string),
                rfc3339_ms(c.created_at_ms)[..19].replace('T', " "),
                d.outcome.as_str().into(),
                d.reason.code().into(),
                d.detail.clone(),
            ]);
            json_rows.push(json!({
                "service_id": c.service_id, "endpoint_id": c.endpoint_id, "owner": c.owner,
                "region": c.region, "created": rfc3339_ms(c.created_at_ms),
                "would": d.outcome.as_str(), "reason": d.reason.code(), "detail": d.detail, "matched_rule": d.matched_rule,
            }));
        }
    }
    match out {
        Output::Json => print_json(&json_rows),
        Output::Table if rows.is_empty() => {
            println!("no connections are waiting for acceptance");
            Ok(())
        }
        Output::Table => {
            println!(
                "{}",
                table(&["SERVICE", "ENDPOINT", "OWNER", "REGION", "CREATED", "WOULD", "REASON", "DETAIL"], &rows)
            );
            Ok(())
        }
    }
}

fn record_json(r: &DecisionRecord) -> Value {
    json!({
        "endpoint_id": r.endpoint_id, "service_id": r.service_id, "owner": r.owner, "region": r.region,
        "decision": r.decision(), "reason": r.reason, "detail": r.detail, "matched_rule": r.matched_rule,
        "trigger": r.trigger.as_str(), "decided_at": rfc3339_ms(r.decided_at_ms),
        "connection_created": rfc3339_ms(r.created_at_ms), "status": r.status.as_str(),
    })
}

/// Finds an endpoint's connection among the managed services.
async fn find(ctx: &Ctx, endpoint: &EndpointId) -> R<Option<Connection>> {
    let conns = ctx.connections();
    for service in ctx.managed()? {
        let filter = ConnectionFilter { endpoints: vec![endpoint.clone()], ..Default::default() };
        if let Some(c) = conns.describe(service, &filter).await?.into_iter().next() {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

async fn explain(ctx: &Ctx, out: Output, endpoint: &str) -> R<()> {
    let endpoint = EndpointId::parse(endpoint).map_err(usage)?;
    let records = ctx.decisions()?.for_endpoint(&endpoint).await?;
    if !records.is_empty() {
        return match out {
            Output::Json => print_json(&records.iter().map(record_json).collect::<Vec<_>>()),
            Output::Table => {
                for r in &records {
                    println!("{} {} from {} on {}", r.endpoint_id, r.decision(), r.owner, r.service_id);
                    println!("  reason:       {} — {}", r.reason, r.detail);
                    println!("  matched rule: {}", r.matched_rule.as_deref().unwrap_or("none"));
                    println!("  trigger:      {}", r.trigger.as_str());
                    println!("  decided at:   {}   (status {})", rfc3339_ms(r.decided_at_ms), r.status.as_str());
                }
                Ok(())
            }
        };
    }
    let Some(c) = find(ctx, &endpoint).await? else {
        return Err(CliError::Service(format!(
            "no decision is recorded for {endpoint} and no managed service has such a connection"
        )));
    };
    let rules = ctx.allowlist().rules_for(&c.service_id).await?;
    let d = would(ctx, &c, &rules)?;
    match out {
        Output::Json => print_json(&json!({
            "endpoint_id": c.endpoint_id, "service_id": c.service_id, "owner": c.owner, "state": c.state.as_str(),
            "recorded": false, "would": d.outcome.as_str(), "reason": d.reason.code(), "detail": d.detail,
            "matched_rule": d.matched_rule,
        })),
        Output::Table => {
            println!(
                "{} from {} on {} is {}; no decision is recorded.",
                c.endpoint_id,
                c.owner,
                c.service_id,
                c.state.as_str()
            );
            println!("  dry run: Gatekeeper would {} it — {} ({})", d.outcome.as_str(), d.detail, d.reason.code());
            Ok(())
        }
    }
}

async fn decisions(ctx: &Ctx, out: Output, since: &str, service: Option<&str>, decision: Option<&str>) -> R<()> {
    let since_s = parse_when(since, now_ms() / 1000, false).map_err(usage)?;
    let service = service.map(|s| ServiceId::parse(s).map_err(usage)).transpose()?;
    if let Some(d) = decision.filter(|d| !["accepted", "rejected", "held", "revoked"].contains(d)) {
        return Err(usage(format!("--decision must be accepted, rejected, held or revoked, not {d:?}")));
    }
    let records: Vec<DecisionRecord> = ctx
        .decisions()?
        .since(since_s * 1000)
        .await?
        .into_iter()
        .filter(|r| service.as_ref().is_none_or(|s| &r.service_id == s))
        .filter(|r| decision.is_none_or(|d| r.decision() == d))
        .collect();
    match out {
        Output::Json => print_json(&records.iter().map(record_json).collect::<Vec<_>>()),
        Output::Table => {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        rfc3339_ms(r.decided_at_ms)[..19].replace('T', " "),
                        r.decision().into(),
                        r.endpoint_id.to_string(),
                        r.owner.to_string(),
                        r.service_id.to_string(),
                        r.reason.clone(),
                        r.trigger.as_str().into(),
                    ]
                })
                .collect();
            println!("{}", table(&["DECIDED", "DECISION", "ENDPOINT", "OWNER", "SERVICE", "REASON", "TRIGGER"], &rows));
            Ok(())
        }
    }
}

async fn reevaluate(ctx: &Ctx, out: Output, endpoint: Option<&str>, service: Option<&str>, all: bool) -> R<()> {
    let conns = ctx.connections();
    let requests: Vec<ConnectionRequest> = match (endpoint, service, all) {
        (Some(e), _, _) => {
            let e = EndpointId::parse(e).map_err(usage)?;
            let c = find(ctx, &e)
                .await?
                .ok_or_else(|| CliError::Service(format!("no managed service has a connection {e}")))?;
            vec![ConnectionRequest {
                service_id: c.service_id,
                endpoint_id: c.endpoint_id,
                trigger: Trigger::Manual,
                requested_at: now_ms(),
            }]
        }
        (None, Some(s), _) => {
            let s = ServiceId::parse(s).map_err(usage)?;
            requests_for(&conns, &s, None, &REEVALUATED, Trigger::Manual).await?
        }
        (None, None, true) => {
            let mut all = Vec::new();
            for s in ctx.managed()? {
                all.extend(requests_for(&conns, s, None, &REEVALUATED, Trigger::Manual).await?);
            }
            all
        }
        (None, None, false) => return Err(usage("name an ENDPOINT_ID, --service ID or --all")),
    };
    ctx.bus()?.put(&requests).await?;
    match out {
        Output::Json => {
            print_json(&json!({"requested": requests.iter().map(|r| r.endpoint_id.to_string()).collect::<Vec<_>>()}))
        }
        Output::Table => {
            println!("asked Gatekeeper to decide {} connection(s) again", requests.len());
            Ok(())
        }
    }
}

fn to_file_entry(e: &AllowlistEntry) -> FileEntry {
    FileEntry {
        service: e.scope.key().to_owned(),
        principal: e.principal_key.clone(),
        effect: e.effect.as_str().to_owned(),
        expires: e.expires_at.map(|t| format!("{}Z", &rfc3339_ms(t * 1000)[..19])),
        regions: e.regions.as_ref().map(|r| r.iter().map(ToString::to_string).collect()),
        max_endpoints: e.max_endpoints,
        note: e.note.clone(),
    }
}

async fn export(ctx: &Ctx, format: FileFormat) -> R<()> {
    let mut entries = Vec::new();
    for (item, _) in ctx.allowlist().scan().await? {
        match parse_item(&item) {
            Ok(e) => entries.push(to_file_entry(&e)),
            Err(e) => eprintln!("gatekeeper: skipped an invalid item: {e}"),
        }
    }
    entries.sort_by(|a, b| (&a.service, &a.principal).cmp(&(&b.service, &b.principal)));
    let file = AllowlistFile { entries };
    let text = match format {
        FileFormat::Json => serde_json::to_string_pretty(&file).map_err(|e| CliError::Other(e.to_string()))?,
        FileFormat::Yaml => serde_yaml::to_string(&file).map_err(|e| CliError::Other(e.to_string()))?,
    };
    println!("{}", text.trim_end());
    Ok(())
}

/// Validates a whole file: every entry or none.
pub fn parse_file(text: &str) -> R<Vec<AllowlistEntry>> {
    let file: AllowlistFile =
        serde_yaml::from_str(text).map_err(|e| usage(format!("the file is not a valid allowlist: {e}")))?;
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for (i, f) in file.entries.iter().enumerate() {
        let at = |e: &dyn std::fmt::Display| usage(format!("entry {} ({} {}): {e}", i + 1, f.service, f.principal));
        let effect = match f.effect.as_str() {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            other => return Err(at(&format!("effect must be allow or deny, not {other:?}"))),
        };
        let expires_at = f.expires.as_deref().map(parse_date).transpose().map_err(|e| at(&e))?;
        let scope = scope_of(Some(&f.service)).map_err(|e| at(&e))?;
        let e = build_entry(
            scope,
            &f.principal,
            effect,
            expires_at,
            f.regions.as_deref().unwrap_or_default(),
            f.max_endpoints,
            f.note.clone(),
            None,
        )
        .map_err(|e| at(&e))?;
        if seen.insert((e.scope.key().to_owned(), e.principal_key.clone()), i).is_some() {
            return Err(at(&"listed twice"));
        }
        out.push(e);
    }
    Ok(out)
}

/// What an entry means, without who wrote it when (compared to decide whether anything changed).
fn meaning(e: &AllowlistEntry) -> FileEntry {
    to_file_entry(e)
}

async fn import(ctx: &Ctx, out: Output, path: &std::path::Path, dry_run: bool, prune: bool) -> R<()> {
    let text = std::fs::read_to_string(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    let wanted = parse_file(&text)?;
    let store = ctx.allowlist();
    let current: BTreeMap<(String, String), (Item, Option<u64>)> = store
        .scan()
        .await?
        .into_iter()
        .filter_map(|(item, v)| {
            let key = match (item.get("service_id"), item.get("principal")) {
                (Some(shared::domain::Attr::S(s)), Some(shared::domain::Attr::S(p))) => (s.clone(), p.clone()),
                _ => return None,
            };
            Some((key, (item, v)))
        })
        .collect();
    let caller = if dry_run { None } else { Some(ctx.caller().await?) };
    let mut changes: Vec<(char, AllowlistEntry, Expect)> = Vec::new();
    let mut removals: Vec<((String, String), Option<u64>)> = Vec::new();
    for mut e in wanted.iter().cloned() {
        let key = (e.scope.key().to_owned(), e.principal_key.clone());
        e.created_by = caller.clone();
        match current.get(&key) {
            None => changes.push(('+', e, Expect::Absent)),
            Some((item, v)) => {
                let same = parse_item(item).is_ok_and(|old| meaning(&old) == meaning(&e));
                if !same {
                    changes.push(('~', e, Expect::Version(*v)));
                }
            }
        }
    }
    if prune {
        let keep: std::collections::BTreeSet<(String, String)> =
            wanted.iter().map(|e| (e.scope.key().to_owned(), e.principal_key.clone())).collect();
        removals = current.iter().filter(|(k, _)| !keep.contains(*k)).map(|(k, (_, v))| (k.clone(), *v)).collect();
    }
    let mut lines = Vec::new();
    for (sign, e, _) in &changes {
        let f = to_file_entry(e);
        lines.push(format!(
            "{sign} {} {} {}{}",
            f.effect,
            f.service,
            f.principal,
            f.expires.map(|x| format!(" until {x}")).unwrap_or_default()
        ));
    }
    for ((s, p), _) in &removals {
        lines.push(format!("- {s} {p}"));
    }
    if lines.is_empty() {
        println!("the allowlist already matches {}", path.display());
        return Ok(());
    }
    if out == Output::Table {
        println!("{}", lines.join("\n"));
    }
    if dry_run {
        if out == Output::Json {
            print_json(&json!({"dry_run": true, "changes": lines}))?;
        } else {
            println!("(dry run: nothing written)");
        }
        return Ok(());
    }
    let items: Vec<Item> = changes.iter().map(|(_, e, _)| e.to_item()).collect();
    let mut writes: Vec<(Option<&Item>, (&str, &str), Expect)> = changes
        .iter()
        .zip(&items)
        .map(|((_, e, x), item)| (Some(item), (e.scope.key(), e.principal_key.as_str()), *x))
        .collect();
    writes.extend(removals.iter().map(|((s, p), v)| (None, (s.as_str(), p.as_str()), Expect::Version(*v))));
    if writes.len() > 100 {
        return Err(usage(format!(
            "{} changes are more than one transaction takes (100); split the file",
            writes.len()
        )));
    }
    if store.transact(&writes).await? == Written::Lost {
        return Err(CliError::Service(
            "the allowlist changed while the file was being applied; nothing was written, run it again".into(),
        ));
    }
    match out {
        Output::Json => print_json(&json!({"applied": lines})),
        Output::Table => {
            println!("applied {} change(s)", lines.len());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_validated_whole() {
        let ok = "entries:\n  - {service: '*', principal: 'arn:aws:iam::222222222222:root', effect: allow, expires: 2030-01-01}\n  - {service: vpce-svc-0123456789abcdef0, principal: '333333333333', effect: deny}\n";
        let entries = parse_file(ok).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].principal_key, "222222222222");
        for (bad, why) in [
            ("entries:\n  - {service: '*', principal: '*', effect: allow}\n", "cannot be listed"),
            ("entries:\n  - {service: '*', principal: '222222222222', effect: permit}\n", "effect"),
            ("entries:\n  - {service: 'svc', principal: '222222222222', effect: allow}\n", "service ID"),
            ("entries:\n  - {service: '*', principal: '222222222222', effect: allow, expires: soon}\n", "duration"),
            ("entries:\n  - {service: '*', principal: '222222222222', effect: allow, colour: red}\n", "unknown field"),
            (
                "entries:\n  - {service: '*', principal: '222222222222', effect: allow}\n  - {service: '*', principal: 'arn:aws:iam::222222222222:root', effect: deny}\n",
                "listed twice",
            ),
        ] {
            let err = parse_file(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{err} lacks {why}");
        }
    }
}
