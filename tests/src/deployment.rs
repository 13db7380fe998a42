//! `infra/template.yaml`, deployed into the local AWS as a provider deploys it: the provider's endpoint
//! service first (what Gatekeeper is for), then the stack through the emulator's CloudFormation
//! (tests/emulator/deploy.py expands `Fn::ForEach`, translates SAM offline and calls CreateStack), then
//! everything read back from the deployed stack, never from constants.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};
use shared::domain::DefaultAction;

use crate::emulator::{PROVIDER, REGION, account_config, http, python, root};

/// The deployed stack as `deploy.py` reads it back (see its `read_back`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub stack_name: String,
    pub region: String,
    pub account: String,
    pub parameters: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
    pub resources: BTreeMap<String, Resource>,
    pub functions: BTreeMap<String, Function>,
    pub event_source_mappings: Vec<Mapping>,
    pub queues: BTreeMap<String, Queue>,
    pub sns_lambda_subscriptions: Vec<Subscription>,
    pub schedules: Vec<Schedule>,
    pub alarms: Vec<Alarm>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    pub physical_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Function {
    pub name: String,
    pub arn: String,
    pub role_arn: String,
    pub timeout: u64,
    pub environment: BTreeMap<String, String>,
    pub max_retry_attempts: Option<u32>,
    pub dead_letter_arn: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mapping {
    pub function: Option<String>,
    pub event_source_arn: String,
    pub batch_size: Option<u32>,
    pub maximum_batching_window_s: Option<u32>,
    pub function_response_types: Vec<String>,
    pub maximum_concurrency: Option<u32>,
    pub starting_position: Option<String>,
    /// Streams: retries before the records are discarded (-1: until they expire).
    #[serde(default)]
    pub maximum_retry_attempts: Option<i64>,
    #[serde(default)]
    pub bisect_batch_on_function_error: Option<bool>,
    /// Streams: where a record of the records discarded goes (`DestinationConfig.OnFailure`).
    #[serde(default)]
    pub on_failure_destination: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Queue {
    pub url: String,
    pub arn: String,
    pub visibility_timeout_s: u32,
    pub max_receive_count: Option<u32>,
    pub dead_letter_target_arn: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscription {
    pub topic_arn: String,
    pub function: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Schedule {
    pub rule_name: String,
    pub schedule_expression: String,
    pub function: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alarm {
    pub name: String,
    pub dimensions: BTreeMap<String, String>,
}

impl Deployment {
    pub fn output(&self, key: &str) -> Result<&str> {
        self.outputs.get(key).map(String::as_str).with_context(|| format!("the stack has no output {key}"))
    }

    pub fn function(&self, logical_id: &str) -> Result<&Function> {
        self.functions.get(logical_id).with_context(|| format!("the stack has no function {logical_id}"))
    }

    /// The one event source mapping of `function` whose source ARN contains `kind` (`/stream/`). More than one
    /// is an error, not the first found: decide has two SQS mappings (requests and deliveries), which
    /// [`Self::queue_mapping`] tells apart by the queue.
    pub fn mapping(&self, function: &str, kind: &str) -> Result<&Mapping> {
        let mut found = self
            .event_source_mappings
            .iter()
            .filter(|m| m.function.as_deref() == Some(function) && m.event_source_arn.contains(kind));
        let first = found.next().with_context(|| format!("no {kind} event source mapping for {function}"))?;
        anyhow::ensure!(
            found.next().is_none(),
            "{function} has more than one {kind} event source mapping: name the queue"
        );
        Ok(first)
    }

    /// The queue `logical_id` and `function`'s event source mapping on it.
    pub fn queue_mapping(&self, function: &str, logical_id: &str) -> Result<(&Queue, &Mapping)> {
        let queue = self.queues.get(logical_id).with_context(|| format!("the stack has no queue {logical_id}"))?;
        let mapping = self
            .event_source_mappings
            .iter()
            .find(|m| m.function.as_deref() == Some(function) && m.event_source_arn == queue.arn)
            .with_context(|| format!("no event source mapping of {function} on {logical_id}"))?;
        Ok((queue, mapping))
    }

    /// The queue whose ARN is `arn`.
    pub fn queue_by_arn(&self, arn: &str) -> Result<&Queue> {
        self.queues.values().find(|q| q.arn == arn).with_context(|| format!("the stack has no queue {arn}"))
    }

    /// The environment Lambda gives `function`: the template's variables and Lambda's reserved ones.
    pub fn environment(&self, function: &str) -> Result<BTreeMap<String, String>> {
        let f = self.function(function)?;
        let mut env = f.environment.clone();
        env.insert("AWS_REGION".into(), self.region.clone());
        env.insert("AWS_DEFAULT_REGION".into(), self.region.clone());
        env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), f.name.clone());
        Ok(env)
    }
}

/// Choices a provider makes when deploying (the template's parameters), and the template itself.
#[derive(Debug, Clone)]
pub struct Options {
    pub default_action: DefaultAction,
    pub revoke: bool,
    /// `ManageAllowedPrincipals`: the service starts with no allowed principals (as a new service does) and
    /// Gatekeeper keeps them; off, the service allows `*` and Gatekeeper's accept/reject is the gate.
    pub manage_principals: bool,
    /// `EncryptWithKms`: both tables and the three topics encrypted with the stack's customer managed key.
    pub encrypt_with_kms: bool,
    /// The template to deploy (default `infra/template.yaml`).
    pub template: Option<PathBuf>,
    /// How many more endpoint services the stack manages besides its own (each set up as it is).
    pub also_managed: usize,
    /// Deploy with the template's own defaults for what [`LOCAL_PARAMETERS`] sets (the claims' lease, the
    /// requests' receives): what a provider deploys, for `make bench`, whose stand-in for Lambda's event
    /// source receives with decide's 60 s Timeout as the visibility (the least Lambda allows), which the
    /// 120 s lease fits: 120 < 60 x (10 - 1).
    pub template_defaults: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            default_action: DefaultAction::Reject,
            revoke: false,
            manage_principals: false,
            encrypt_with_kms: false,
            template: None,
            also_managed: 0,
            template_defaults: false,
        }
    }
}

/// What a client needs to use a deployed stack: written to a JSON file by `gatekeeper-local up`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackInfo {
    pub endpoint_url: String,
    pub region: String,
    pub provider_account: String,
    pub allowlist_table: String,
    pub decisions_table: String,
    pub decisions_topic_arn: String,
    pub notifications_topic_arn: String,
    pub bus_name: String,
    pub requests_queue_url: String,
    pub requests_dlq_url: String,
    /// A queue subscribed to the decisions topic, for people and tests to read what teams receive
    /// (set up beside the stack, as a team would subscribe).
    pub inbox_queue_url: String,
    pub service_id: String,
    /// The stack's other managed services (`Options::also_managed`), after `service_id` in ManagedServiceIds.
    #[serde(default)]
    pub also_managed: Vec<String>,
    pub service_name: String,
    pub default_action: DefaultAction,
    pub revoke: bool,
    /// `ManageAllowedPrincipals`, as deployed.
    #[serde(default)]
    pub manage_principals: bool,
    pub deployment: Deployment,
}

/// Test-only settings, passed as the template's parameters at deploy time, each one a provider may
/// choose: a crashed claim is taken over after 10 s (the least the template allows), within the queue's
/// receives. The queues keep the template's visibility timeout; the runner receives with a shorter one
/// ([`crate::wiring::RUNNER_VISIBILITY_S`]) so a returned message comes back in seconds. That compresses the
/// visibility timeout five times more than the lease: a request meeting a kept claim (an Accept/Reject that
/// may have landed) is received about five times before the lease ends, where the deployed 360 s visibility
/// and 120 s lease receive it once. 20 receives keep the deployed default's (10) room for other retries.
const LOCAL_PARAMETERS: [(&str, &str); 2] = [("ClaimLeaseSeconds", "10"), ("RequestsMaxReceiveCount", "20")];

/// The provider's endpoint service (an NLB behind it, acceptance required, allowed principals `*`:
/// Gatekeeper is the gate), then the stack deployed for it, with `suffix` in the stack name.
pub async fn provision(endpoint: &str, suffix: &str, options: Options) -> Result<StackInfo> {
    let cfg = account_config(endpoint, PROVIDER).await?;
    let ec2 = aws_sdk_ec2::Client::new(&cfg);
    let subnet = network(&ec2).await?.1;
    let svc = endpoint_service(endpoint, &cfg, &ec2, &subnet, suffix, options.manage_principals).await?;
    let service_id = svc.service_id().context("service id")?.to_owned();
    let mut also_managed = Vec::new();
    for i in 0..options.also_managed {
        let other =
            endpoint_service(endpoint, &cfg, &ec2, &subnet, &format!("{suffix}-{i}"), options.manage_principals)
                .await?;
        also_managed.push(other.service_id().context("service id")?.to_owned());
    }
    let managed = std::iter::once(service_id.clone()).chain(also_managed.iter().cloned()).collect::<Vec<_>>().join(",");

    let mut params: Vec<(String, String)> = vec![
        ("ManagedServiceIds".into(), managed),
        ("DefaultAction".into(), if options.default_action == DefaultAction::Hold { "hold" } else { "reject" }.into()),
        ("RevokeOnRemoval".into(), options.revoke.to_string()),
        ("ManageAllowedPrincipals".into(), options.manage_principals.to_string()),
        ("EncryptWithKms".into(), options.encrypt_with_kms.to_string()),
    ];
    if !options.template_defaults {
        params.extend(LOCAL_PARAMETERS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    }
    let stack_name = format!("gatekeeper-{suffix}");
    let deployment = deploy(endpoint, &stack_name, options.template.as_ref(), &params).await?;

    // What a team does: subscribe a queue to the decisions topic.
    let topic = deployment.output("DecisionsTopicArn")?.to_owned();
    let sqs = aws_sdk_sqs::Client::new(&cfg);
    let inbox = sqs.create_queue().queue_name(format!("gatekeeper-inbox-{suffix}")).send().await?;
    let inbox_url = inbox.queue_url().context("inbox url")?.to_owned();
    let inbox_arn = sqs
        .get_queue_attributes()
        .queue_url(&inbox_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
        .context("inbox arn")?;
    // SNS delivers to a queue only if the queue's policy lets the topic send (SNS developer guide,
    // "Subscribing an Amazon SQS queue to an Amazon SNS topic", step 2).
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": inbox_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}]});
    sqs.set_queue_attributes()
        .queue_url(&inbox_url)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::Policy, policy.to_string())
        .send()
        .await?;
    aws_sdk_sns::Client::new(&cfg).subscribe().topic_arn(&topic).protocol("sqs").endpoint(inbox_arn).send().await?;

    // The decision settings as decide itself reads them from its deployed environment.
    let env = deployment.environment("DecideFunction")?;
    let decide =
        decide::config::Config::from_lookup(|k| env.get(k).cloned()).context("decide's deployed environment")?;
    let requests = deployment.queue_mapping("DecideFunction", "RequestsQueue")?.0.arn.clone();
    Ok(StackInfo {
        endpoint_url: endpoint.to_owned(),
        region: deployment.region.clone(),
        provider_account: deployment.account.clone(),
        allowlist_table: deployment.output("AllowlistTableName")?.to_owned(),
        decisions_table: deployment.output("DecisionsTableName")?.to_owned(),
        decisions_topic_arn: topic,
        notifications_topic_arn: deployment.output("ConnectionNotificationsTopicArn")?.to_owned(),
        bus_name: deployment.output("BusName")?.to_owned(),
        requests_queue_url: deployment.queue_by_arn(&requests)?.url.clone(),
        requests_dlq_url: deployment.output("RequestsDeadLetterQueueUrl")?.to_owned(),
        inbox_queue_url: inbox_url,
        service_name: svc.service_name().context("service name")?.to_owned(),
        service_id,
        also_managed,
        default_action: decide.default_action,
        revoke: decide.revoke,
        manage_principals: options.manage_principals,
        deployment,
    })
}

/// An endpoint service as a provider has one: an NLB behind it, acceptance required, and, unless Gatekeeper
/// manages them, allowed principals `*`.
async fn endpoint_service(
    endpoint: &str,
    cfg: &aws_config::SdkConfig,
    ec2: &aws_sdk_ec2::Client,
    subnet: &str,
    suffix: &str,
    manage_principals: bool,
) -> Result<aws_sdk_ec2::types::ServiceConfiguration> {
    let nlb = create_nlb(endpoint, cfg, subnet, suffix).await?;
    let svc = ec2
        .create_vpc_endpoint_service_configuration()
        .network_load_balancer_arns(nlb)
        .acceptance_required(true)
        .send()
        .await?
        .service_configuration()
        .cloned()
        .context("service configuration")?;
    // A new service allows no one to connect (PrivateLink guide, "Manage permissions"); with `*`,
    // acceptance is the gate. With ManageAllowedPrincipals, Gatekeeper adds each allowed account.
    if !manage_principals {
        ec2.modify_vpc_endpoint_service_permissions()
            .service_id(svc.service_id().context("service id")?)
            .add_allowed_principals("*")
            .send()
            .await
            .context("allowing every principal to connect")?;
    }
    Ok(svc)
}

/// Runs tests/emulator/deploy.py: the template into the local AWS as stack `stack_name`.
pub async fn deploy(
    endpoint: &str,
    stack_name: &str,
    template: Option<&PathBuf>,
    params: &[(String, String)],
) -> Result<Deployment> {
    let out = std::env::temp_dir().join(format!("gatekeeper-{stack_name}-{}.json", std::process::id()));
    let template = template.cloned().unwrap_or_else(|| root().join("infra/template.yaml"));
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(root().join("tests/emulator/deploy.py"))
        .args(["--endpoint", endpoint, "--account", PROVIDER, "--region", REGION, "--stack-name", stack_name])
        .arg("--template")
        .arg(&template)
        .arg("--out")
        .arg(&out);
    for (k, v) in params {
        cmd.arg("--parameter").arg(format!("{k}={v}"));
    }
    let run = cmd.output().await.context("running tests/emulator/deploy.py (run `make setup` first)")?;
    anyhow::ensure!(
        run.status.success(),
        "deploying {} failed: {}{}",
        template.display(),
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    serde_json::from_str(&text).context("the deployment description")
}

/// A consumer's interface endpoint to `service_name`, created in `account` (through AssumeRole), in a
/// new VPC of its own. Returns the consumer's EC2 client and the endpoint ID.
pub async fn create_endpoint(
    endpoint: &str,
    account: &str,
    service_name: &str,
) -> Result<(aws_sdk_ec2::Client, String)> {
    let cfg = account_config(endpoint, account).await?;
    let ec2 = aws_sdk_ec2::Client::new(&cfg);
    let (vpc, subnet) = network(&ec2).await?;
    // The emulator throttles CreateVpcEndpoint per account as EC2 does (a bucket of 4, refilled 0.3/s):
    // a consumer creating many endpoints waits for its tokens (bounded: 60 s).
    let mut waits = 0;
    let out = loop {
        let res = ec2
            .create_vpc_endpoint()
            .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
            .vpc_id(&vpc)
            .service_name(service_name)
            .subnet_ids(&subnet)
            .send()
            .await;
        match res {
            Err(e) if e.code() == Some("RequestLimitExceeded") && waits < 60 => {
                waits += 1;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            other => break other?,
        }
    };
    let id = out.vpc_endpoint().and_then(|e| e.vpc_endpoint_id()).context("endpoint id")?.to_owned();
    Ok((ec2, id))
}

/// A VPC and a subnet in the caller's account.
pub async fn network(ec2: &aws_sdk_ec2::Client) -> Result<(String, String)> {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await?
        .vpc()
        .and_then(|v| v.vpc_id())
        .context("vpc")?
        .to_owned();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.0.1.0/24")
        .availability_zone(format!("{REGION}a"))
        .send()
        .await?
        .subnet()
        .and_then(|s| s.subnet_id())
        .context("subnet")?
        .to_owned();
    Ok((vpc, subnet))
}

/// The load balancer behind the endpoint service. ELBv2 is not in the project's SDK set, so this one
/// setup call goes over moto's Query API by hand (setup only: Gatekeeper never calls ELB).
async fn create_nlb(endpoint: &str, cfg: &aws_config::SdkConfig, subnet: &str, suffix: &str) -> Result<String> {
    // moto maps the caller's account from the access key in the Authorization header.
    let provider = cfg.credentials_provider().context("credentials")?;
    let creds = aws_credential_types::provider::ProvideCredentials::provide_credentials(&provider).await?;
    let name: String =
        format!("gk-{suffix}").chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(32).collect();
    let body =
        format!("Action=CreateLoadBalancer&Version=2015-12-01&Name={name}&Type=network&Subnets.member.1={subnet}");
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={}/20260101/{REGION}/elasticloadbalancing/aws4_request, SignedHeaders=host, Signature=0",
        creds.access_key_id()
    );
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
    let (_, text) = http(endpoint, "POST", "/", &headers, &body).await?;
    let start = text.find("<LoadBalancerArn>").context("CreateLoadBalancer answered without an ARN")?
        + "<LoadBalancerArn>".len();
    let end = text[start..].find('<').context("malformed CreateLoadBalancer answer")? + start;
    Ok(text[start..end].to_owned())
}
