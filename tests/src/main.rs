//! `gatekeeper-local`: the local AWS and the story that shows Gatekeeper working.
//!
//!   gatekeeper-local up   [--port 4566] [--state .local/stack.json] [--default-action reject|hold]
//!   gatekeeper-local demo [--state .local/stack.json]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use gatekeeper_local::{Emulator, Options, StackInfo, Wiring, account_config, create_endpoint, provision};

#[derive(Parser)]
#[command(name = "gatekeeper-local", about = "Gatekeeper on a local AWS (moto on 127.0.0.1), no AWS account needed")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the local AWS, create the stack's resources, and run the functions wired as in AWS until interrupted.
    Up {
        #[arg(long, default_value_t = 4566)]
        port: u16,
        /// Where to write what a client needs (endpoint URL, Region, accounts, resource names).
        #[arg(long, default_value = ".local/stack.json")]
        state: PathBuf,
        #[arg(long, default_value = "reject", value_parser = ["reject", "hold"])]
        default_action: String,
        /// Reject `available` connections the allowlist no longer accepts (REVOKE_ON_REMOVAL).
        #[arg(long)]
        revoke: bool,
        /// How often the scheduled sweep runs.
        #[arg(long, default_value_t = 60)]
        sweep_seconds: u64,
        /// Start the service with no allowed principals and let Gatekeeper keep them (ManageAllowedPrincipals).
        #[arg(long)]
        manage_allowed_principals: bool,
        /// Encrypt the tables and topics with the stack's own KMS key (EncryptWithKms).
        #[arg(long)]
        encrypt_with_kms: bool,
    },
    /// Create one more stack's resources on a running local AWS and write its JSON (no wiring runs).
    Provision {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        suffix: String,
        #[arg(long)]
        state: PathBuf,
        #[arg(long, default_value = "reject", value_parser = ["reject", "hold"])]
        default_action: String,
        #[arg(long)]
        revoke: bool,
        /// Deploy the template's defaults for the claims' lease and the requests' receives, which the
        /// tests lower (what a provider deploys; `make bench` measures with it).
        #[arg(long)]
        template_defaults: bool,
    },
    /// Play a short story against a running `up`: several consumer accounts create endpoints.
    Demo {
        #[arg(long, default_value = ".local/stack.json")]
        state: PathBuf,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    shared::telemetry::init();
    match Cli::parse().command {
        Cmd::Up { port, state, default_action, revoke, sweep_seconds, manage_allowed_principals, encrypt_with_kms } => {
            let options = Options {
                default_action: default_action.parse().map_err(anyhow::Error::msg)?,
                revoke,
                manage_principals: manage_allowed_principals,
                encrypt_with_kms,
                ..Options::default()
            };
            up(port, state, options, Duration::from_secs(sweep_seconds.max(1))).await
        }
        Cmd::Provision { endpoint, suffix, state, default_action, revoke, template_defaults } => {
            let options = Options {
                default_action: default_action.parse().map_err(anyhow::Error::msg)?,
                revoke,
                template_defaults,
                ..Options::default()
            };
            let info = provision(&endpoint, &suffix, options).await?;
            std::fs::write(&state, serde_json::to_string_pretty(&info)?)?;
            println!("{}", state.display());
            Ok(())
        }
        Cmd::Demo { state } => demo(state).await,
    }
}

async fn up(port: u16, state: PathBuf, options: Options, sweep_every: Duration) -> Result<()> {
    let emulator = Emulator::start(port).await?;
    let info = provision(&emulator.url, "local", options).await?;
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&state, serde_json::to_string_pretty(&info)?)?;
    println!("local AWS on {} (region {}), provider account {}", info.endpoint_url, info.region, info.provider_account);
    println!(
        "endpoint service {} ({}) requires acceptance; default action {:?}, revocation {}",
        info.service_id,
        info.service_name,
        info.default_action,
        if info.revoke { "on" } else { "off" }
    );
    println!("stack written to {}", state.display());
    println!("Gatekeeper is running (ingest, decide, reconcile every {}s). Ctrl-C to stop.", sweep_every.as_secs());
    let wiring = Wiring::new(info).await?;
    wiring
        .run_until(sweep_every, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let _ = std::fs::remove_file(&state);
    drop(emulator);
    Ok(())
}

async fn put_rule(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    service: &str,
    principal: &str,
    effect: &str,
    extra: &[(&str, aws_sdk_dynamodb::types::AttributeValue)],
) -> Result<()> {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    let mut req = ddb
        .put_item()
        .table_name(table)
        .item("service_id", V::S(service.into()))
        .item("principal", V::S(principal.into()))
        .item("effect", V::S(effect.into()))
        .item("created_by", V::S("demo".into()));
    for (k, v) in extra {
        req = req.item(*k, v.clone());
    }
    req.send().await?;
    Ok(())
}

async fn demo(state: PathBuf) -> Result<()> {
    let info: StackInfo = serde_json::from_str(
        &std::fs::read_to_string(&state)
            .with_context(|| format!("reading {} (is `make up` running?)", state.display()))?,
    )?;
    let provider = account_config(&info.endpoint_url, &info.provider_account).await?;
    let ddb = aws_sdk_dynamodb::Client::new(&provider);
    let now = shared::domain::time::now_ms() / 1000;
    use aws_sdk_dynamodb::types::AttributeValue as V;
    let story: [(&str, &str); 4] = [
        ("222222222222", "ACME Corp: allowed for this service"),
        ("333333333333", "Globex: explicitly denied everywhere"),
        ("444444444444", "Initech: nobody has heard of them"),
        ("555555555555", "Umbrella: allowed, but the allow expired yesterday"),
    ];
    println!("The provider's allowlist:");
    put_rule(
        &ddb,
        &info.allowlist_table,
        &info.service_id,
        "222222222222",
        "allow",
        &[("note", V::S("ACME prod".into()))],
    )
    .await?;
    put_rule(
        &ddb,
        &info.allowlist_table,
        "*",
        "arn:aws:iam::333333333333:root",
        "deny",
        &[("note", V::S("chargeback".into()))],
    )
    .await?;
    put_rule(
        &ddb,
        &info.allowlist_table,
        &info.service_id,
        "555555555555",
        "allow",
        &[("expires_at", V::N((now - 86_400).to_string()))],
    )
    .await?;
    println!(
        "  allow {} 222222222222\n  deny  *  arn:aws:iam::333333333333:root\n  allow {} 555555555555 (expired)\n",
        info.service_id, info.service_id
    );

    let mut endpoints = Vec::new();
    for (account, who) in story {
        let (ec2, id) = create_endpoint(&info.endpoint_url, account, &info.service_name).await?;
        println!("{who}\n  account {account} creates interface endpoint {id} -> pendingAcceptance");
        endpoints.push((account, ec2, id));
    }
    println!("\nGatekeeper decides (connection notification -> ingest -> Connection Request -> decide):\n");
    let sqs = aws_sdk_sqs::Client::new(&provider);
    let started = Instant::now();
    let mut seen = 0;
    while seen < endpoints.len() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("only {seen} of {} decisions arrived within 60 s", endpoints.len());
        }
        let msgs = sqs
            .receive_message()
            .queue_url(&info.inbox_queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        for m in msgs.messages() {
            let envelope: serde_json::Value = serde_json::from_str(m.body().unwrap_or_default())?;
            let body: serde_json::Value = serde_json::from_str(envelope["Message"].as_str().unwrap_or("{}"))?;
            println!(
                "  [{:.1}s] {}",
                started.elapsed().as_secs_f64(),
                envelope["Subject"].as_str().unwrap_or_default()
            );
            println!(
                "         reason: {} — {}",
                body["reason"].as_str().unwrap_or_default(),
                body["detail"].as_str().unwrap_or_default()
            );
            sqs.delete_message()
                .queue_url(&info.inbox_queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await?;
            seen += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("\nWhat each consumer now sees (DescribeVpcEndpoints in its own account):");
    for (account, ec2, id) in &endpoints {
        let out = ec2.describe_vpc_endpoints().vpc_endpoint_ids(id).send().await?;
        let state =
            out.vpc_endpoints().first().and_then(|e| e.state()).map(|s| s.as_str().to_owned()).unwrap_or_default();
        println!("  {account}  {id}  {state}");
    }
    Ok(())
}
