//! `list`, `pending`, `explain` and `decisions`: reads only.

use std::io::Write;

use serde_json::{Value, json};
use shared::domain::allowlist::{AllowlistEntry, Attr, parse_item};
use shared::domain::record::DecisionRecord;
use shared::domain::time::rfc3339_ms;
use shared::domain::{Connection, Decision, EndpointId, Rules, ServiceId, evaluate};
use shared::ports::{Allowlist, AllowlistAdmin, ConnectionFilter, Connections, DecisionQueries};

use super::{Out, R};
use crate::context::{CliError, Settings};
use crate::render::table;
use crate::{DecisionWord, Output, time};

pub fn entry_json(e: &AllowlistEntry) -> Value {
    json!({
        "service": e.scope.key(),
        "principal": e.principal_key,
        "account": e.account.as_str(),
        "effect": e.effect.as_str(),
        "expires_at": e.expires_at,
        "regions": e.regions.as_ref().map(|r| r.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "max_endpoints": e.max_endpoints,
        "endpoints": e.endpoints.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "registered_only": e.registered_only,
        "tenant": e.tenant,
        "note": e.note,
        "created_by": e.created_by,
        "created_at": e.created_at,
    })
}

fn text_attr(item: &shared::domain::Item, k: &str) -> String {
    match item.get(k) {
        Some(Attr::S(s)) => s.clone(),
        _ => String::new(),
    }
}

pub async fn list<A: AllowlistAdmin>(
    store: &A,
    out: &mut Out<impl Write>,
    service: Option<&ServiceId>,
    expired: bool,
    now: i64,
) -> R<()> {
    let mut items = store.items().await?;
    items.sort_by_key(|s| (text_attr(&s.item, "service_id"), text_attr(&s.item, "principal")));
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for stored in items {
        match parse_item(&stored.item) {
            Ok(e) => {
                if service.is_some_and(|f| !e.scope.covers(f)) || (expired && !e.is_expired(now)) {
                    continue;
                }
                let exp = match e.expires_at {
                    None => "-".to_owned(),
                    Some(t) if t <= now => format!("{} (expired)", time::shown(t)),
                    Some(t) => time::shown(t),
                };
                let endpoints = match (e.endpoints.is_empty(), e.registered_only) {
                    (true, _) => "-".to_owned(),
                    (false, only) => {
                        let list = e.endpoints.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
                        if only { format!("{list} (only)") } else { list }
                    }
                };
                rows.push(vec![
                    e.scope.to_string(),
                    e.principal_key.clone(),
                    e.tenant.clone().unwrap_or_else(|| "-".into()),
                    e.effect.as_str().into(),
                    exp,
                    e.regions
                        .as_ref()
                        .map_or("any".into(), |r| r.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
                    e.max_endpoints.map_or("-".into(), |n| n.to_string()),
                    endpoints,
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
                    "-".into(),
                    "INVALID".into(),
                    "-".into(),
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
    match out.format {
        Output::Json => out.json(&json_rows),
        Output::Table | Output::Csv | Output::NginxMap => out.line(table(
            &[
                "SERVICE",
                "PRINCIPAL",
                "TENANT",
                "EFFECT",
                "EXPIRES",
                "REGIONS",
                "MAX",
                "ENDPOINTS",
                "NOTE",
                "CREATED BY",
            ],
            &rows,
        )),
    }
}

/// What Gatekeeper would decide about `c` now, under `rules`.
fn would(settings: &Settings, c: &Connection, rules: &Rules) -> R<Decision> {
    Ok(evaluate(c, rules, settings.region()?, settings.now, settings.default_action))
}

pub async fn pending<C: Connections, A: Allowlist>(
    conns: &C,
    allowlist: &A,
    settings: &Settings,
    out: &mut Out<impl Write>,
) -> R<()> {
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for service in settings.managed()? {
        let mut pending = conns.describe(service, &ConnectionFilter::pending()).await?;
        if pending.is_empty() {
            continue;
        }
        // Oldest first: EC2 documents no order for its answer.
        pending.sort_by(|a, b| (a.created_at_ms, &a.endpoint_id).cmp(&(b.created_at_ms, &b.endpoint_id)));
        let rules = allowlist.rules_for(service).await?;
        for c in pending {
            let d = would(settings, &c, &rules)?;
            rows.push(vec![
                c.service_id.to_string(),
                c.endpoint_id.to_string(),
                c.owner.to_string(),
                c.region.as_ref().map_or("-".into(), ToString::to_string),
                time::shown_ms(c.created_at_ms),
                d.outcome.as_str().into(),
                d.reason.code().into(),
                d.detail.clone(),
            ]);
            json_rows.push(json!({
                "service_id": c.service_id, "endpoint_id": c.endpoint_id, "owner": c.owner,
                "region": c.region, "created": rfc3339_ms(c.created_at_ms),
                "would": d.outcome.as_str(), "reason": d.reason.code(), "detail": d.detail, "matched_rule": d.matched_rule,
                "tenant": d.tenant,
            }));
        }
    }
    match out.format {
        Output::Json => out.json(&json_rows),
        Output::Table | Output::Csv | Output::NginxMap if rows.is_empty() => {
            out.line("no connections are waiting for acceptance")
        }
        Output::Table | Output::Csv | Output::NginxMap => {
            out.line(table(&["SERVICE", "ENDPOINT", "OWNER", "REGION", "CREATED", "WOULD", "REASON", "DETAIL"], &rows))
        }
    }
}

fn record_json(r: &DecisionRecord) -> Value {
    json!({
        "endpoint_id": r.endpoint_id, "service_id": r.service_id, "owner": r.owner, "region": r.region,
        "decision": r.decision(), "reason": r.reason, "detail": r.detail, "matched_rule": r.matched_rule,
        "tenant": r.tenant, "trigger": r.trigger.as_str(), "decided_at": rfc3339_ms(r.decided_at_ms),
        "connection_created": rfc3339_ms(r.created_at_ms), "status": r.status.as_str(),
    })
}

/// Finds an endpoint's connection among the managed services.
pub async fn find<C: Connections>(conns: &C, settings: &Settings, endpoint: &EndpointId) -> R<Option<Connection>> {
    for service in settings.managed()? {
        let filter = ConnectionFilter { endpoints: vec![endpoint.clone()], ..Default::default() };
        if let Some(c) = conns.describe(service, &filter).await?.into_iter().next() {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

pub async fn explain<D: DecisionQueries, C: Connections, A: Allowlist>(
    log: &D,
    conns: &C,
    allowlist: &A,
    settings: &Settings,
    endpoint: &EndpointId,
    out: &mut Out<impl Write>,
) -> R<()> {
    let records = log.for_endpoint(endpoint).await?;
    if !records.is_empty() {
        return match out.format {
            Output::Json => out.json(&records.iter().map(record_json).collect::<Vec<_>>()),
            Output::Table | Output::Csv | Output::NginxMap => {
                for r in &records {
                    out.line(format!("{} {} from {} on {}", r.endpoint_id, r.decision(), r.owner, r.service_id))?;
                    out.line(format!("  reason:       {} — {}", r.reason, r.detail))?;
                    out.line(format!("  matched rule: {}", r.matched_rule.as_deref().unwrap_or("none")))?;
                    out.line(format!("  tenant:       {}", r.tenant.as_deref().unwrap_or("-")))?;
                    out.line(format!("  trigger:      {}", r.trigger.as_str()))?;
                    out.line(format!(
                        "  decided at:   {}   (status {})",
                        rfc3339_ms(r.decided_at_ms),
                        r.status.as_str()
                    ))?;
                }
                Ok(())
            }
        };
    }
    let Some(c) = find(conns, settings, endpoint).await? else {
        return Err(CliError::Service(format!(
            "no decision is recorded for {endpoint} and no managed service has such a connection"
        )));
    };
    let rules = allowlist.rules_for(&c.service_id).await?;
    let d = would(settings, &c, &rules)?;
    match out.format {
        Output::Json => out.json(&json!({
            "endpoint_id": c.endpoint_id, "service_id": c.service_id, "owner": c.owner, "state": c.state.as_str(),
            "recorded": false, "would": d.outcome.as_str(), "reason": d.reason.code(), "detail": d.detail,
            "matched_rule": d.matched_rule,
        })),
        Output::Table | Output::Csv | Output::NginxMap => {
            out.line(format!(
                "{} from {} on {} is {}; no decision is recorded.",
                c.endpoint_id,
                c.owner,
                c.service_id,
                c.state.as_str()
            ))?;
            out.line(format!(
                "  dry run: Gatekeeper would {} it — {} ({})",
                d.outcome.as_str(),
                d.detail,
                d.reason.code()
            ))
        }
    }
}

/// `decisions`' filters, validated before anything is sent.
pub struct DecisionQuery {
    /// Epoch seconds, already bounded.
    pub since_s: i64,
    pub service: Option<ServiceId>,
    pub decision: Option<DecisionWord>,
    pub tenant: Option<String>,
}

/// One Query of the decisions table's `decided` index per service: the one `--service` names (managed or not:
/// a service taken out of `ManagedServiceIds` keeps its records until they expire), else each managed one.
pub async fn decisions<D: DecisionQueries>(
    log: &D,
    out: &mut Out<impl Write>,
    q: &DecisionQuery,
    settings: &Settings,
) -> R<()> {
    let services: Vec<ServiceId> = match &q.service {
        Some(s) => vec![s.clone()],
        None => settings.managed()?.iter().cloned().collect(),
    };
    let mut records: Vec<DecisionRecord> = Vec::new();
    for service in &services {
        records.extend(log.decided_since(service, q.since_s.saturating_mul(1000)).await?);
    }
    records.sort_by_key(|r| std::cmp::Reverse(r.decided_at_ms));
    let records: Vec<DecisionRecord> = records
        .into_iter()
        .filter(|r| q.decision.is_none_or(|d| r.decision() == d.as_str()))
        .filter(|r| q.tenant.as_ref().is_none_or(|t| r.tenant.as_ref() == Some(t)))
        .collect();
    match out.format {
        Output::Json => out.json(&records.iter().map(record_json).collect::<Vec<_>>()),
        Output::Table | Output::Csv | Output::NginxMap => {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        time::shown_ms(r.decided_at_ms),
                        r.decision().into(),
                        r.endpoint_id.to_string(),
                        r.owner.to_string(),
                        r.tenant.clone().unwrap_or_else(|| "-".into()),
                        r.service_id.to_string(),
                        r.reason.clone(),
                        r.trigger.as_str().into(),
                    ]
                })
                .collect();
            out.line(table(
                &["DECIDED", "DECISION", "ENDPOINT", "OWNER", "TENANT", "SERVICE", "REASON", "TRIGGER"],
                &rows,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::commands::fakes::{
        FakeAllowlist, FakeConnections, FakeDecisions, allow_item, connection, out, record, settings,
    };
    use shared::domain::{Outcome, Trigger};

    const NOW: i64 = 1_790_000_000;
    const SVC: &str = "vpce-svc-0123456789abcdef0";
    const EP: &str = "vpce-0123456789abcdef0";

    fn expiring(principal: &str, expires_at: &str) -> shared::domain::Item {
        let mut item = allow_item("*", principal);
        item.insert("expires_at".into(), Attr::N(expires_at.into()));
        item
    }

    #[tokio::test]
    async fn pending_lists_the_oldest_connection_first_whatever_order_ec2_answers_in() {
        // EC2 documents no order for DescribeVpcEndpointConnections: here it answers newest first.
        let mut newer = connection("vpce-0123456789abcdef1", SVC, "222222222222");
        newer.created_at_ms += 60_000;
        let older = connection("vpce-0123456789abcdef2", SVC, "333333333333");
        let conns = FakeConnections(vec![newer, older]);
        let allowlist = FakeAllowlist::with(&[allow_item("*", "222222222222")]);
        let mut o = out(Output::Json);
        pending(&conns, &allowlist, &settings(&[SVC], NOW), &mut o).await.unwrap();
        let rows: Value = serde_json::from_str(&o.text()).unwrap();
        let order: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["endpoint_id"].as_str().unwrap()).collect();
        assert_eq!(order, ["vpce-0123456789abcdef2", "vpce-0123456789abcdef1"]);
        assert_eq!((rows[0]["would"].as_str(), rows[1]["would"].as_str()), (Some("reject"), Some("accept")));
    }

    #[tokio::test]
    async fn when_a_stored_expiry_is_out_of_range_list_should_show_the_raw_number() {
        let store = FakeAllowlist::with(&[
            expiring("222222222222", "9223372036854775807"),
            expiring("333333333333", "-9223372036854775808"),
            expiring("444444444444", "17280000000000000"),
            expiring("555555555555", "1893456000"),
        ]);
        let mut o = out(Output::Table);
        list(&store, &mut o, None, false, NOW).await.unwrap();
        let text = o.text();
        for shown in
            ["9223372036854775807", "-9223372036854775808 (expired)", "17280000000000000", "2030-01-01 00:00:00Z"]
        {
            assert!(text.contains(shown), "{shown} missing:\n{text}");
        }
        let mut o = out(Output::Json);
        list(&store, &mut o, None, true, NOW).await.unwrap();
        let rows: Value = serde_json::from_str(&o.text()).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), 1, "only the one expired: {rows}");
        assert_eq!(rows[0]["expires_at"], i64::MIN);
    }

    #[tokio::test]
    async fn when_a_decision_is_recorded_explain_should_show_it_and_otherwise_what_would_be_decided() {
        let log = FakeDecisions(vec![record(EP, SVC, Outcome::Accept, NOW * 1000)]);
        let conns = FakeConnections(vec![connection("vpce-0123456789abcdef1", SVC, "222222222222")]);
        let allowlist = FakeAllowlist::with(&[allow_item("*", "222222222222")]);
        let s = settings(&[SVC], NOW);
        let mut o = out(Output::Json);
        explain(&log, &conns, &allowlist, &s, &EndpointId::parse(EP).unwrap(), &mut o).await.unwrap();
        let recorded: Value = serde_json::from_str(&o.text()).unwrap();
        assert_eq!(recorded[0]["decision"], "accepted");

        let mut o = out(Output::Json);
        let other = EndpointId::parse("vpce-0123456789abcdef1").unwrap();
        explain(&log, &conns, &allowlist, &s, &other, &mut o).await.unwrap();
        let dry: Value = serde_json::from_str(&o.text()).unwrap();
        assert_eq!((dry["recorded"].clone(), dry["would"].clone()), (json!(false), json!("accept")), "{dry}");

        let unknown = EndpointId::parse("vpce-0123456789abcdef2").unwrap();
        let err = explain(&log, &conns, &allowlist, &s, &unknown, &mut out(Output::Json)).await.unwrap_err();
        assert_eq!(err.exit_code(), 254);
        let unmanaged = settings(&[], NOW);
        let err = explain(&log, &conns, &allowlist, &unmanaged, &other, &mut out(Output::Json)).await.unwrap_err();
        assert_eq!(err.exit_code(), 253, "{err}");
    }

    #[tokio::test]
    async fn when_filtering_decisions_should_keep_only_the_window_service_and_word_asked_for() {
        let log = FakeDecisions(vec![
            record(EP, SVC, Outcome::Accept, NOW * 1000),
            record("vpce-0123456789abcdef1", SVC, Outcome::Reject, NOW * 1000),
            record("vpce-0123456789abcdef2", SVC, Outcome::Accept, (NOW - 7200) * 1000),
        ]);
        let q =
            DecisionQuery { since_s: NOW - 3600, service: None, decision: Some(DecisionWord::Accepted), tenant: None };
        let mut o = out(Output::Json);
        decisions(&log, &mut o, &q, &settings(&[SVC], NOW)).await.unwrap();
        let rows: Value = serde_json::from_str(&o.text()).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
        assert_eq!((rows[0]["endpoint_id"].clone(), rows[0]["trigger"].clone()), (json!(EP), json!(Trigger::Sweep)));
    }

    #[tokio::test]
    async fn decisions_should_read_each_managed_service_or_the_one_asked_for_managed_or_not() {
        const SVC2: &str = "vpce-svc-0fedcba9876543210";
        const EP2: &str = "vpce-0123456789abcdef1";
        // The service read second has the newer record: the answers are merged newest first.
        let log = FakeDecisions(vec![
            record(EP, SVC, Outcome::Accept, (NOW - 60) * 1000),
            record(EP2, SVC2, Outcome::Reject, NOW * 1000),
        ]);
        let shown = |q: DecisionQuery, managed: &'static [&'static str]| {
            let log = &log;
            async move {
                let mut o = out(Output::Json);
                decisions(log, &mut o, &q, &settings(managed, NOW)).await.map(|()| {
                    let rows: Value = serde_json::from_str(&o.text()).unwrap();
                    rows.as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r["endpoint_id"].as_str().unwrap().to_owned())
                        .collect::<Vec<_>>()
                })
            }
        };
        let all = || DecisionQuery { since_s: NOW - 3600, service: None, decision: None, tenant: None };
        assert_eq!(shown(all(), &[SVC, SVC2]).await.unwrap(), [EP2, EP], "every managed service, newest first");
        assert_eq!(shown(all(), &[SVC]).await.unwrap(), [EP], "only the managed ones");
        let asked = DecisionQuery { service: Some(ServiceId::parse(SVC2).unwrap()), ..all() };
        assert_eq!(shown(asked, &[SVC]).await.unwrap(), [EP2], "the one asked for, though no longer managed");
        let err = shown(all(), &[]).await.unwrap_err();
        assert!(err.to_string().contains("--managed-services"), "{err}");
    }

    #[tokio::test]
    async fn when_filtering_decisions_by_tenant_should_keep_only_that_tenants() {
        let mut acme = record(EP, SVC, Outcome::Accept, NOW * 1000);
        acme.tenant = Some("ACME Corp".into());
        let mut other = record("vpce-0123456789abcdef1", SVC, Outcome::Accept, NOW * 1000);
        other.tenant = Some("ACME".into());
        let log = FakeDecisions(vec![acme, other, record("vpce-0123456789abcdef2", SVC, Outcome::Accept, NOW * 1000)]);
        let q = DecisionQuery { since_s: NOW - 3600, service: None, decision: None, tenant: Some("ACME Corp".into()) };
        let mut o = out(Output::Table);
        decisions(&log, &mut o, &q, &settings(&[SVC], NOW)).await.unwrap();
        let text = o.text();
        assert!(text.contains(EP) && text.contains("ACME Corp"), "{text}");
        assert!(!text.contains("vpce-0123456789abcdef1") && !text.contains("vpce-0123456789abcdef2"), "{text}");
    }
}
