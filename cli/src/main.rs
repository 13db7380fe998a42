//! `gatekeeper`: the provider's tool for the allowlist and the decisions, over the same shared crate as
//! the functions, so the CLI and Lambda read the allowlist by the same rules.

mod commands;
mod context;
mod render;
mod time;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes as in the AWS CLI.
pub mod exit {
    /// The command line or its values are wrong.
    pub const USAGE: u8 = 252;
    /// The configuration (names, credentials) cannot be resolved.
    pub const CONFIG: u8 = 253;
    /// An AWS service said no (including a conflicting edit).
    pub const SERVICE: u8 = 254;
    /// Anything else.
    pub const OTHER: u8 = 255;
}

#[derive(Parser)]
#[command(name = "gatekeeper", version, about = "Manage PrivateLink Gatekeeper's allowlist and read its decisions")]
pub struct Cli {
    #[command(flatten)]
    pub target: Target,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    /// `connections` only.
    Csv,
    /// `connections` only: an nginx `map` from the Proxy Protocol VPC endpoint ID to the tenant.
    NginxMap,
}

/// Where Gatekeeper is: flags and environment first, then `--local`'s file, then the stack's outputs.
#[derive(Args, Clone, Default)]
pub struct Target {
    /// The deployed stack whose outputs name the resources (CloudFormation DescribeStacks).
    #[arg(long, global = true, env = "GATEKEEPER_STACK")]
    pub stack_name: Option<String>,
    /// Use the local AWS that `make up` runs (reads `--local-file`).
    #[arg(long, global = true, env = "GATEKEEPER_LOCAL")]
    pub local: bool,
    /// The JSON file `make up` writes (endpoint, Region, account, names).
    #[arg(long, global = true, default_value = ".local/stack.json")]
    pub local_file: PathBuf,
    #[arg(long, global = true, env = "GATEKEEPER_ALLOWLIST_TABLE")]
    pub allowlist_table: Option<String>,
    #[arg(long, global = true, env = "GATEKEEPER_DECISIONS_TABLE")]
    pub decisions_table: Option<String>,
    #[arg(long, global = true, env = "GATEKEEPER_BUS_NAME")]
    pub bus_name: Option<String>,
    /// Comma-separated endpoint service IDs Gatekeeper manages.
    #[arg(long, global = true, env = "GATEKEEPER_MANAGED_SERVICES")]
    pub managed_services: Option<String>,
    /// Assume this role first (for example the provider account's admin role).
    #[arg(long, global = true, env = "GATEKEEPER_ROLE_ARN")]
    pub role_arn: Option<String>,
    /// The session name for --role-arn (else the caller's own name: the IAM user's, or the session's of an
    /// assumed role), which CloudTrail and each edit's `created_by` show.
    #[arg(long, global = true, env = "GATEKEEPER_ROLE_SESSION_NAME")]
    pub role_session_name: Option<String>,
    /// AWS Region (else the standard configuration: AWS_REGION, profile).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// AWS profile (else AWS_PROFILE / default).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Endpoint URL for every AWS call (else AWS_ENDPOINT_URL).
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
}

#[derive(Args, Clone)]
pub struct RuleArgs {
    /// A 12-digit account ID or an IAM ARN (arn:aws:iam::<account>:root|role/..|user/..).
    pub principal: String,
    /// The endpoint service (vpce-svc-...). Default: every managed service (`*`).
    #[arg(long, conflicts_with = "all_services")]
    pub service: Option<String>,
    /// Apply to every managed service (`*`; the default).
    #[arg(long)]
    pub all_services: bool,
    /// When the entry stops applying: a duration from now (30d, 12h, 2w) or a date (2026-12-31[T18:00:00Z]),
    /// at most 100 years ahead.
    #[arg(long)]
    pub expires: Option<String>,
    /// Consumer Regions the allow applies to (comma-separated). Default: any.
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Accept at most this many of the account's connections to the service.
    #[arg(long)]
    pub max_endpoints: Option<u32>,
    /// Register an endpoint (vpce-…) the account owns; repeat or comma-separate for several. A connection
    /// from a registered endpoint that EC2 reports under another account is rejected (owner_mismatch).
    #[arg(long = "endpoint", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Accept only the registered endpoints (`--endpoint`); any other endpoint of the account gets the
    /// default action (endpoint_not_registered).
    #[arg(long)]
    pub registered_only: bool,
    /// Who the account is (at most 64 characters): shown in records, notifications and `connections`.
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub note: Option<String>,
    /// Overwrite an existing entry for the same service and principal (still refused if someone else
    /// changed it since it was read).
    #[arg(long)]
    pub replace: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Allow an account to connect.
    Allow(RuleArgs),
    /// Deny an account (a deny wins over any allow).
    Deny(RuleArgs),
    /// Remove an entry.
    Remove {
        principal: String,
        #[arg(long, conflicts_with = "all_services")]
        service: Option<String>,
        #[arg(long)]
        all_services: bool,
    },
    /// List the allowlist.
    List {
        #[arg(long)]
        service: Option<String>,
        /// Only entries that have expired.
        #[arg(long)]
        expired: bool,
    },
    /// Connections waiting for acceptance, with what Gatekeeper would decide and why.
    Pending,
    /// Why an endpoint was decided as it was, or what would be decided now.
    Explain { endpoint_id: String },
    /// The audit trail.
    Decisions {
        /// How far back: a duration (1d, 12h) or a date, at most 100 years back.
        #[arg(long, default_value = "1d")]
        since: String,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, value_enum)]
        decision: Option<DecisionWord>,
        /// Only decisions about this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Accepted connections: endpoint, account, tenant, Region (--output table|json|csv|nginx-map).
    Connections {
        #[arg(long)]
        service: Option<String>,
        /// Only this tenant's connections.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Each managed service's health: acceptance, allowed principals, pending and accepted connections,
    /// private DNS and Regions.
    Status,
    /// Ask Gatekeeper to decide again (puts Connection Request events on the bus).
    Reevaluate {
        endpoint_id: Option<String>,
        #[arg(long, conflicts_with = "endpoint_id")]
        service: Option<String>,
        #[arg(long, conflicts_with_all = ["endpoint_id", "service"])]
        all: bool,
    },
    /// Apply an allowlist file (YAML or JSON), showing the changes first.
    Import {
        file: PathBuf,
        /// Show the changes without writing.
        #[arg(long)]
        dry_run: bool,
        /// Also remove entries the file does not list.
        #[arg(long)]
        prune: bool,
    },
    /// Print the allowlist as a file `import` reads.
    Export {
        #[arg(long, value_enum, default_value_t = FileFormat::Yaml)]
        format: FileFormat,
    },
}

/// What a decision record says happened (`decisions --decision`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DecisionWord {
    Accepted,
    Rejected,
    Held,
    Revoked,
}

impl DecisionWord {
    /// The word as records hold it (`DecisionRecord::decision`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Held => "held",
            Self::Revoked => "revoked",
        }
    }
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    Yaml,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatekeeper: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
