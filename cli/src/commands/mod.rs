//! The commands. Each is a function generic over the ports it uses (`shared::ports`), tested over fakes;
//! `run` validates everything the command line says before any AWS call, then resolves where Gatekeeper
//! is and hands the command the AWS adapters. Every write is validated by the shared crate's own parser
//! and is conditional on what was read, so two editors never silently overwrite each other.

mod edit;
mod file;
mod query;
mod reevaluate;
mod service;

#[cfg(test)]
mod fakes;

use std::io::Write;

use serde::Serialize;
use shared::domain::time::now_ms;
use shared::domain::{Effect, EndpointId, Scope, ServiceId};

use crate::context::{CliError, resolve};
use crate::{Cli, Command, Output, RuleArgs, Target, time};

pub type R<T> = Result<T, CliError>;

pub fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(e.to_string())
}

/// `--service`: one service, or every managed service (`*`, the default).
pub fn scope_of(service: Option<&str>) -> R<Scope> {
    match service {
        None | Some("*") => Ok(Scope::AllServices),
        Some(s) => ServiceId::parse(s).map(Scope::Service).map_err(usage),
    }
}

/// `--tenant`, checked as an item's `tenant` is, the error naming the flag.
pub fn tenant_flag(t: &str) -> R<()> {
    shared::domain::allowlist::check_tenant(t).map_err(|e| usage(e.replace("`tenant`", "--tenant")))
}

fn service_filter(service: Option<&str>) -> R<Option<ServiceId>> {
    service.map(|s| ServiceId::parse(s).map_err(usage)).transpose()
}

/// Where a command writes what it prints, in `--output`'s format: stdout, or a buffer in tests.
pub struct Out<W> {
    pub format: Output,
    w: W,
}

impl<W: Write> Out<W> {
    pub fn new(format: Output, w: W) -> Self {
        Self { format, w }
    }

    pub fn line(&mut self, text: impl std::fmt::Display) -> R<()> {
        writeln!(self.w, "{text}").map_err(|e| CliError::Other(format!("cannot write the output: {e}")))
    }

    pub fn json(&mut self, v: &impl Serialize) -> R<()> {
        let text = serde_json::to_string_pretty(v).map_err(|e| CliError::Other(e.to_string()))?;
        self.line(text)
    }
}

pub async fn run(cli: Cli) -> R<()> {
    let now = now_ms() / 1000;
    let mut out = Out::new(cli.output, std::io::stdout());
    let target = &cli.target;
    if matches!(cli.output, Output::Csv | Output::NginxMap) && !matches!(cli.command, Command::Connections { .. }) {
        return Err(usage("--output csv and nginx-map apply to `connections` only"));
    }
    match cli.command {
        Command::Allow(a) => put_rule(target, &mut out, Effect::Allow, &a, now).await,
        Command::Deny(a) => put_rule(target, &mut out, Effect::Deny, &a, now).await,
        Command::Remove { principal, service, all_services: _ } => {
            let removal = edit::removal(&principal, service.as_deref())?;
            let ctx = resolve(target).await?;
            edit::remove(&ctx.allowlist(), &mut out, &removal).await
        }
        Command::List { service, expired } => {
            let service = service_filter(service.as_deref())?;
            let ctx = resolve(target).await?;
            query::list(&ctx.allowlist(), &mut out, service.as_ref(), expired, now).await
        }
        Command::Pending => {
            let ctx = resolve(target).await?;
            query::pending(&ctx.connections(), &ctx.allowlist(), &ctx.settings(now), &mut out).await
        }
        Command::Explain { endpoint_id } => {
            let endpoint = EndpointId::parse(&endpoint_id).map_err(usage)?;
            let ctx = resolve(target).await?;
            let (log, conns, allowlist) = (ctx.decisions()?, ctx.connections(), ctx.allowlist());
            query::explain(&log, &conns, &allowlist, &ctx.settings(now), &endpoint, &mut out).await
        }
        Command::Decisions { since, service, decision, tenant } => {
            if let Some(t) = &tenant {
                tenant_flag(t)?;
            }
            let q = query::DecisionQuery {
                since_s: time::since("--since", &since, now)?,
                service: service_filter(service.as_deref())?,
                decision,
                tenant,
            };
            let ctx = resolve(target).await?;
            query::decisions(&ctx.decisions()?, &mut out, &q, &ctx.settings(now)).await
        }
        Command::Connections { service, tenant } => {
            if let Some(t) = &tenant {
                tenant_flag(t)?;
            }
            let q = service::ConnectionQuery { service: service_filter(service.as_deref())?, tenant };
            let ctx = resolve(target).await?;
            service::connections(&ctx.connections(), &ctx.allowlist(), &ctx.settings(now), &q, &mut out).await
        }
        Command::Status => {
            let ctx = resolve(target).await?;
            let (ec2, ledger) = (ctx.connections(), ctx.principal_ledger()?);
            let ports =
                service::StatusPorts { services: &ec2, ledger: &ledger, manage_principals: ctx.manage_principals };
            service::status(&ec2, &ctx.allowlist(), &ports, &ctx.settings(now), &mut out).await
        }
        Command::Reevaluate { endpoint_id, service, all } => {
            let which = reevaluate::which(endpoint_id.as_deref(), service.as_deref(), all)?;
            let ctx = resolve(target).await?;
            let (conns, bus) = (ctx.connections(), ctx.bus()?);
            reevaluate::reevaluate(&conns, &bus, &ctx.settings(now), &which, &mut out).await
        }
        Command::Import { file: path, dry_run, prune } => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
            let wanted = file::parse_file(&text, now)?;
            let ctx = resolve(target).await?;
            // The Region is known only now; nothing has been written yet.
            if let Ok(region) = ctx.settings(now).region() {
                file::check_partitions(&text, region)?;
            }
            let created_by = if dry_run { None } else { Some(ctx.caller().await?) };
            let plan = file::Import { source: path.display().to_string(), wanted, created_by, dry_run, prune, now };
            file::import(&ctx.allowlist(), &mut out, &plan).await
        }
        Command::Export { format } => {
            let ctx = resolve(target).await?;
            file::export(&ctx.allowlist(), &mut out, format).await
        }
    }
}

async fn put_rule(target: &Target, out: &mut Out<impl Write>, effect: Effect, a: &RuleArgs, now: i64) -> R<()> {
    let rule = edit::rule(effect, a, now)?;
    let ctx = resolve(target).await?;
    // The Region is known only now; nothing has been written yet.
    if let Ok(region) = ctx.settings(now).region() {
        edit::check_partition(&a.principal, region)?;
    }
    edit::put_rule(&ctx.allowlist(), out, rule.by(ctx.caller().await?)).await
}
