//! Resolving where Gatekeeper is and building clients: flags and environment first, then the file
//! `make up` writes, then the deployed stack's outputs.

use std::collections::BTreeSet;

use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use serde::Deserialize;
use shared::adapters::dynamodb::{DynamoAllowlist, DynamoDecisionLog};
use shared::adapters::ec2::Ec2Connections;
use shared::adapters::eventbridge::EventBridgeBus;
use shared::adapters::ledgers::DynamoPrincipalLedger;
use shared::config::managed_services;
use shared::domain::{DefaultAction, ServiceId};
use shared::ports::PortError;

use crate::Target;
use crate::exit;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Service(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => exit::USAGE,
            Self::Config(_) => exit::CONFIG,
            Self::Service(_) => exit::SERVICE,
            Self::Other(_) => exit::OTHER,
        }
    }
}

impl From<PortError> for CliError {
    fn from(e: PortError) -> Self {
        Self::Service(format!("{} {} failed: {}: {}", e.service, e.operation, e.code, e.message))
    }
}

/// The file `gatekeeper-local up` writes (the fields the CLI needs).
#[derive(Deserialize)]
struct LocalStack {
    endpoint_url: String,
    region: String,
    provider_account: String,
    allowlist_table: String,
    decisions_table: String,
    bus_name: String,
    service_id: String,
    /// The local stack's other managed services, after `service_id` in its ManagedServiceIds.
    #[serde(default)]
    also_managed: Vec<String>,
    default_action: DefaultAction,
    #[serde(default)]
    manage_principals: bool,
}

pub struct Ctx {
    pub aws: SdkConfig,
    pub allowlist_table: String,
    pub decisions_table: Option<String>,
    pub bus_name: Option<String>,
    pub managed: BTreeSet<ServiceId>,
    /// What `pending` and `explain` evaluate with when no rule applies: the deployed stack's
    /// `DefaultAction` (or the local stack's), unless `GATEKEEPER_DEFAULT_ACTION` says otherwise.
    pub default_action: DefaultAction,
    /// The stack's `ManageAllowedPrincipals` (the local stack's choice), for `status`.
    pub manage_principals: bool,
}

impl Ctx {
    pub fn allowlist(&self) -> DynamoAllowlist {
        DynamoAllowlist::new(aws_sdk_dynamodb::Client::new(&self.aws), &self.allowlist_table)
    }

    pub fn decisions(&self) -> Result<DynamoDecisionLog, CliError> {
        let table = self.decisions_table.as_ref().ok_or_else(|| missing("the decisions table", "--decisions-table"))?;
        Ok(DynamoDecisionLog::new(aws_sdk_dynamodb::Client::new(&self.aws), table))
    }

    pub fn connections(&self) -> Ec2Connections {
        Ec2Connections::new(aws_sdk_ec2::Client::new(&self.aws))
    }

    /// The ledger of allowed principals Gatekeeper added (in the decisions table).
    pub fn principal_ledger(&self) -> Result<DynamoPrincipalLedger, CliError> {
        let table = self.decisions_table.as_ref().ok_or_else(|| missing("the decisions table", "--decisions-table"))?;
        Ok(DynamoPrincipalLedger::new(aws_sdk_dynamodb::Client::new(&self.aws), table))
    }

    pub fn bus(&self) -> Result<EventBridgeBus, CliError> {
        let bus = self.bus_name.as_ref().ok_or_else(|| missing("the event bus", "--bus-name"))?;
        Ok(EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&self.aws), bus))
    }

    /// What the commands read from the configuration beside the ports.
    pub fn settings(&self, now: i64) -> Settings {
        let region = match self.aws.region() {
            None => Err("no AWS Region: pass --region or set AWS_REGION".to_owned()),
            Some(r) => shared::domain::Region::parse(r.as_ref()).map_err(|e| e.to_string()),
        };
        Settings { managed: self.managed.clone(), region, default_action: self.default_action, now }
    }

    /// The caller's ARN (STS GetCallerIdentity), for `created_by`.
    pub async fn caller(&self) -> Result<String, CliError> {
        caller_arn(&self.aws)
            .await
            .map_err(CliError::Service)?
            .ok_or_else(|| CliError::Service("GetCallerIdentity returned no ARN".into()))
    }
}

/// Who `aws`'s credentials are (STS GetCallerIdentity): their ARN (`None` when STS names none), or why it
/// could not be told.
async fn caller_arn(aws: &SdkConfig) -> Result<Option<String>, String> {
    let out = aws_sdk_sts::Client::new(aws)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| format!("sts GetCallerIdentity failed: {}", aws_sdk_sts::error::DisplayErrorContext(e)))?;
    Ok(out.arn().map(str::to_owned))
}

/// The session name of the local stack's role.
const LOCAL_SESSION: &str = "gatekeeper-cli";

/// The session name for `--role-arn`: `given` (checked as STS checks it: 2 to 64 of `[\w+=,.@-]`), else the
/// caller's own name (the last part of its ARN: `user/alice` → `alice`, `assumed-role/Admin/alice@corp` →
/// `alice@corp`), its other characters made `-`, else `gatekeeper-cli`.
async fn session_name(aws: &SdkConfig, given: Option<&str>) -> Result<String, CliError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    if let Some(name) = given {
        if (2..=64).contains(&name.len()) && name.chars().all(allowed) {
            return Ok(name.to_owned());
        }
        return Err(CliError::Usage(format!(
            "--role-session-name {name:?}: 2 to 64 letters, digits or _+=,.@- (STS's RoleSessionName)"
        )));
    }
    let caller = caller_arn(aws).await.map_err(|e| CliError::Config(format!("cannot tell who is calling: {e}")))?;
    let last = caller.as_deref().and_then(|a| a.rsplit(['/', ':']).next()).unwrap_or_default();
    let name: String = last.chars().map(|c| if allowed(c) { c } else { '-' }).take(64).collect();
    Ok(if name.len() >= 2 { name } else { LOCAL_SESSION.to_owned() })
}

/// `GATEKEEPER_DEFAULT_ACTION`, when set: it overrides what the stack says (a malformed value is an error).
fn default_action_override() -> Result<Option<DefaultAction>, CliError> {
    match std::env::var("GATEKEEPER_DEFAULT_ACTION") {
        Err(_) => Ok(None),
        Ok(v) => v.trim().parse().map(Some).map_err(|e| CliError::Config(format!("GATEKEEPER_DEFAULT_ACTION: {e}"))),
    }
}

/// What the commands read from the configuration beside the ports, each checked where a command needs
/// it, so a command that does not need one runs without it.
pub struct Settings {
    pub managed: BTreeSet<ServiceId>,
    pub region: Result<shared::domain::Region, String>,
    pub default_action: DefaultAction,
    /// Epoch seconds.
    pub now: i64,
}

impl Settings {
    /// The endpoint services Gatekeeper manages.
    pub fn managed(&self) -> Result<&BTreeSet<ServiceId>, CliError> {
        if self.managed.is_empty() {
            return Err(missing("the managed services", "--managed-services"));
        }
        Ok(&self.managed)
    }

    /// The Region Gatekeeper runs in (what `evaluate` compares a consumer's Region with).
    pub fn region(&self) -> Result<&shared::domain::Region, CliError> {
        self.region.as_ref().map_err(|e| CliError::Config(e.clone()))
    }
}

fn missing(what: &str, flag: &str) -> CliError {
    CliError::Config(format!(
        "cannot tell {what}: pass {flag} (or its GATEKEEPER_ environment variable), --stack-name, or --local"
    ))
}

pub async fn resolve(t: &Target) -> Result<Ctx, CliError> {
    let local: Option<LocalStack> = match t.local.then_some(&t.local_file) {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::Config(format!("cannot read {}: {e} (is `make up` running?)", path.display()))
            })?;
            Some(serde_json::from_str(&text).map_err(|e| CliError::Config(format!("{}: {e}", path.display())))?)
        }
    };
    let mut loader = shared::adapters::sdk_defaults();
    if let Some(p) = &t.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = t.region.clone().or_else(|| local.as_ref().map(|l| l.region.clone())) {
        loader = loader.region(Region::new(r));
    }
    if let Some(u) = t.endpoint_url.clone().or_else(|| local.as_ref().map(|l| l.endpoint_url.clone())) {
        loader = loader.endpoint_url(u);
    }
    if local.is_some() && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() && t.profile.is_none() {
        // The local AWS accepts any key; the role below decides the account.
        loader = loader.credentials_provider(Credentials::new("local", "local", None, None, "gatekeeper-local"));
    }
    // A call that never answers fails after the functions' timeouts rather than hanging the terminal.
    let mut aws = shared::adapters::with_call_timeouts(&loader.load().await);
    // The local stack's role, or the one named. A named role's session is named after the caller (unless
    // told otherwise), so CloudTrail and each edit's `created_by` tell one operator from another; the SDK's
    // provider renews the role's credentials before they expire.
    let (role, session) = match (&t.role_arn, &local) {
        (Some(role), _) => (Some(role.clone()), session_name(&aws, t.role_session_name.as_deref()).await?),
        (None, Some(l)) => {
            (Some(format!("arn:aws:iam::{}:role/gatekeeper-cli", l.provider_account)), LOCAL_SESSION.into())
        }
        (None, None) => (None, String::new()),
    };
    if let Some(role) = role {
        let provider =
            aws_config::sts::AssumeRoleProvider::builder(&role).session_name(&session).configure(&aws).build().await;
        // Asked once now, so that a role that cannot be assumed is a configuration error before anything is sent.
        provider.provide_credentials().await.map_err(|e| {
            CliError::Config(format!("cannot assume {role}: {}", aws_sdk_sts::error::DisplayErrorContext(e)))
        })?;
        aws = aws.into_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build();
    }

    let mut allowlist_table = t.allowlist_table.clone().or_else(|| local.as_ref().map(|l| l.allowlist_table.clone()));
    let mut decisions_table = t.decisions_table.clone().or_else(|| local.as_ref().map(|l| l.decisions_table.clone()));
    let mut bus_name = t.bus_name.clone().or_else(|| local.as_ref().map(|l| l.bus_name.clone()));
    let mut managed_raw = t.managed_services.clone().or_else(|| {
        local
            .as_ref()
            .map(|l| std::iter::once(&l.service_id).chain(&l.also_managed).cloned().collect::<Vec<_>>().join(","))
    });
    let mut manage_principals = local.as_ref().is_some_and(|l| l.manage_principals);
    let mut default_action = match default_action_override()? {
        Some(a) => Some(a),
        None => local.as_ref().map(|l| l.default_action),
    };
    if let Some(stack) = &t.stack_name {
        let (outputs, parameters) = stack_outputs(&aws, stack).await?;
        let get = |k: &str| outputs.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone());
        allowlist_table = allowlist_table.or_else(|| get("AllowlistTableName"));
        decisions_table = decisions_table.or_else(|| get("DecisionsTableName"));
        bus_name = bus_name.or_else(|| get("BusName"));
        managed_raw = managed_raw.or_else(|| get("ManagedServices"));
        manage_principals = parameters.iter().any(|(k, v)| k == "ManageAllowedPrincipals" && v == "true");
        if default_action.is_none() {
            let deployed = parameters.iter().find(|(k, _)| k == "DefaultAction").map(|(_, v)| v.clone());
            default_action = deployed
                .map(|v| v.parse().map_err(|e| CliError::Config(format!("stack {stack} parameter DefaultAction: {e}"))))
                .transpose()?;
        }
    }
    let managed = match managed_raw {
        Some(raw) => managed_services(&raw).map_err(|e| CliError::Config(e.to_string()))?,
        None => BTreeSet::new(),
    };
    Ok(Ctx {
        allowlist_table: allowlist_table.ok_or_else(|| missing("the allowlist table", "--allowlist-table"))?,
        decisions_table,
        bus_name,
        managed,
        default_action: default_action.unwrap_or(DefaultAction::Reject),
        manage_principals,
        aws,
    })
}

type Pairs = Vec<(String, String)>;

/// The stack's outputs and its parameters (DescribeStacks).
async fn stack_outputs(aws: &SdkConfig, stack: &str) -> Result<(Pairs, Pairs), CliError> {
    let out =
        aws_sdk_cloudformation::Client::new(aws).describe_stacks().stack_name(stack).send().await.map_err(|e| {
            CliError::Config(format!(
                "cannot read stack {stack}: {}",
                aws_sdk_cloudformation::error::DisplayErrorContext(e)
            ))
        })?;
    let s = out.stacks().first().ok_or_else(|| CliError::Config(format!("no stack named {stack}")))?;
    let outputs =
        s.outputs().iter().filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned()))).collect();
    let parameters = s
        .parameters()
        .iter()
        .filter_map(|p| Some((p.parameter_key()?.to_owned(), p.parameter_value()?.to_owned())))
        .collect();
    Ok((outputs, parameters))
}
