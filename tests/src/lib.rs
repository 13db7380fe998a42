//! The local AWS for Gatekeeper: starts moto's server with the project's EC2 extension (loopback only),
//! creates the resources the SAM template creates, and drives the real handlers the way AWS wires them:
//! the bus rule delivers Connection Requests to an SQS queue that `decide` drains in batches.
//! Connection notifications reach `ingest` as Lambda's SNS event (received here through an SQS
//! subscription to the notification topic); the allowlist table's stream reaches `reconcile` as Lambda's
//! DynamoDB stream event (read with GetRecords); the schedule invokes `reconcile` with a Scheduled Event.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use serde::{Deserialize, Serialize};

use decide::config::Config;
use decide::handler::{Deps, handle};
use shared::adapters::dynamodb::{DynamoAllowlist, DynamoDecisionLog};
use shared::adapters::ec2::Ec2Connections;
use shared::adapters::eventbridge::EventBridgeBus;
use shared::adapters::sns::SnsNotifier;
use shared::domain::{DefaultAction, ServiceId};

pub const REGION: &str = "us-east-1";
pub const PROVIDER: &str = "111111111111";

/// The workspace root (where `.venv` and `tests/emulator` live).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// moto's server with the extension, as a child process on 127.0.0.1.
pub struct Emulator {
    pub url: String,
    child: Option<Child>,
}

impl Emulator {
    /// Uses `GATEKEEPER_ENDPOINT` when set (an emulator started by `make`), else starts one.
    pub async fn start_or_reuse() -> Result<Self> {
        if let Ok(url) = std::env::var("GATEKEEPER_ENDPOINT") {
            return Ok(Self { url, child: None });
        }
        Self::start(free_port()?).await
    }

    pub async fn start(port: u16) -> Result<Self> {
        let python =
            std::env::var("GATEKEEPER_PYTHON").map(PathBuf::from).unwrap_or_else(|_| root().join(".venv/bin/python"));
        let script = root().join("tests/emulator/gatekeeper_moto.py");
        let child = Command::new(&python)
            .arg(&script)
            .arg("--port")
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} (run `make setup` first)", python.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(Self { url, child: Some(child) });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the local AWS did not start on port {port}")
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// SDK configuration for one account of the local AWS, obtained the way a real cross-account caller
/// does: STS AssumeRole into a role of that account.
pub async fn account_config(endpoint: &str, account: &str) -> Result<SdkConfig> {
    // Local calls take milliseconds: retry throttling after milliseconds too (AWS's default waits ~1 s).
    let retry = aws_config::retry::RetryConfig::standard()
        .with_initial_backoff(Duration::from_millis(20))
        .with_max_backoff(Duration::from_millis(500));
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .retry_config(retry)
        .credentials_provider(Credentials::new("bootstrap", "bootstrap", None, None, "local"))
        .load()
        .await;
    let out = aws_sdk_sts::Client::new(&base)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/gatekeeper-local"))
        .role_session_name("gatekeeper-local")
        .send()
        .await
        .context("STS AssumeRole on the local AWS")?;
    let c = out.credentials().context("AssumeRole returned no credentials")?;
    let creds =
        Credentials::new(c.access_key_id(), c.secret_access_key(), Some(c.session_token().to_owned()), None, "assumed");
    Ok(base
        .into_builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(creds))
        .build())
}

/// What a client needs to use a provisioned stack: written to a JSON file by `gatekeeper-local up`.
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
    pub notifications_queue_url: String,
    /// A queue subscribed to the decisions topic, for people and tests to read what teams receive.
    pub inbox_queue_url: String,
    pub service_id: String,
    pub service_name: String,
    pub connection_notification_id: String,
    pub allowlist_stream_arn: String,
    pub default_action: DefaultAction,
    pub revoke: bool,
}

/// Choices a provider makes when deploying (the template's parameters).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub default_action: DefaultAction,
    pub revoke: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { default_action: DefaultAction::Reject, revoke: false }
    }
}

/// Creates what the SAM template creates, with `suffix` in every name so stacks can share one emulator.
pub async fn provision(endpoint: &str, suffix: &str, options: Options) -> Result<StackInfo> {
    let cfg = account_config(endpoint, PROVIDER).await?;
    let ddb = aws_sdk_dynamodb::Client::new(&cfg);
    let sns = aws_sdk_sns::Client::new(&cfg);
    let sqs = aws_sdk_sqs::Client::new(&cfg);
    let events = aws_sdk_eventbridge::Client::new(&cfg);
    let ec2 = aws_sdk_ec2::Client::new(&cfg);
    let elb_subnet = network(&ec2).await?.1;

    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, StreamSpecification,
        StreamViewType,
    };
    let table = |name: String, pk: &str, sk: &str| {
        ddb.create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(pk)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .ok()?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(sk)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .ok()?,
            )
            .key_schema(KeySchemaElement::builder().attribute_name(pk).key_type(KeyType::Hash).build().ok()?)
            .key_schema(KeySchemaElement::builder().attribute_name(sk).key_type(KeyType::Range).build().ok()?)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()
                    .ok()?,
            )
            .into()
    };
    let allowlist_table = format!("gatekeeper-allowlist-{suffix}");
    let decisions_table = format!("gatekeeper-decisions-{suffix}");
    let t: Option<_> = table(allowlist_table.clone(), "service_id", "principal");
    let created = t.context("table definition")?.send().await.context("create allowlist table")?;
    let allowlist_stream_arn =
        created.table_description().and_then(|d| d.latest_stream_arn()).context("allowlist stream")?.to_owned();
    let t: Option<_> = table(decisions_table.clone(), "endpoint_id", "created");
    t.context("table definition")?
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("owed").attribute_type(ScalarAttributeType::S).build()?,
        )
        .global_secondary_indexes(
            aws_sdk_dynamodb::types::GlobalSecondaryIndex::builder()
                .index_name(shared::adapters::dynamodb::OWED_INDEX)
                .key_schema(KeySchemaElement::builder().attribute_name("owed").key_type(KeyType::Hash).build()?)
                .projection(
                    aws_sdk_dynamodb::types::Projection::builder()
                        .projection_type(aws_sdk_dynamodb::types::ProjectionType::KeysOnly)
                        .build(),
                )
                .build()?,
        )
        .send()
        .await
        .context("create decisions table")?;

    let decisions_topic_arn = sns
        .create_topic()
        .name(format!("gatekeeper-decisions-{suffix}"))
        .send()
        .await?
        .topic_arn()
        .context("topic")?
        .to_owned();
    let notifications_topic_arn = sns
        .create_topic()
        .name(format!("gatekeeper-connection-notifications-{suffix}"))
        .send()
        .await?
        .topic_arn()
        .context("topic")?
        .to_owned();

    let queue = |name: String, attrs: Vec<(aws_sdk_sqs::types::QueueAttributeName, String)>| {
        let sqs = sqs.clone();
        async move {
            let mut req = sqs.create_queue().queue_name(name);
            for (k, v) in attrs {
                req = req.attributes(k, v);
            }
            let url = req.send().await?.queue_url().context("queue url")?.to_owned();
            let arn = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
                .await?
                .attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
                .context("queue arn")?;
            anyhow::Ok((url, arn))
        }
    };
    use aws_sdk_sqs::types::QueueAttributeName as Q;
    let (requests_dlq_url, dlq_arn) = queue(format!("gatekeeper-requests-dlq-{suffix}"), vec![]).await?;
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}).to_string();
    let (requests_queue_url, requests_arn) = queue(
        format!("gatekeeper-requests-{suffix}"),
        vec![(Q::VisibilityTimeout, "2".into()), (Q::RedrivePolicy, redrive)],
    )
    .await?;
    let (notifications_queue_url, notifications_arn) =
        queue(format!("gatekeeper-notifications-{suffix}"), vec![]).await?;
    let (inbox_queue_url, inbox_arn) = queue(format!("gatekeeper-inbox-{suffix}"), vec![]).await?;
    sns.subscribe().topic_arn(&notifications_topic_arn).protocol("sqs").endpoint(&notifications_arn).send().await?;
    sns.subscribe().topic_arn(&decisions_topic_arn).protocol("sqs").endpoint(&inbox_arn).send().await?;

    let bus_name = format!("gatekeeper-{suffix}");
    events.create_event_bus().name(&bus_name).send().await?;
    let rule = format!("gatekeeper-connection-requests-{suffix}");
    let pattern = serde_json::json!({"source": ["gatekeeper"], "detail-type": ["Connection Request"]}).to_string();
    events.put_rule().name(&rule).event_bus_name(&bus_name).event_pattern(pattern).send().await?;
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(&bus_name)
        .targets(aws_sdk_eventbridge::types::Target::builder().id("decide-queue").arn(&requests_arn).build()?)
        .send()
        .await?;

    let elb = aws_sdk_elasticloadbalancingv2_stub::create_nlb(endpoint, &cfg, &elb_subnet, suffix).await?;
    let svc = ec2
        .create_vpc_endpoint_service_configuration()
        .network_load_balancer_arns(elb)
        .acceptance_required(true)
        .send()
        .await?
        .service_configuration()
        .cloned()
        .context("service configuration")?;
    let service_id = svc.service_id().context("service id")?.to_owned();
    let nfn = ec2
        .create_vpc_endpoint_connection_notification()
        .service_id(&service_id)
        .connection_notification_arn(&notifications_topic_arn)
        .connection_events("Connect")
        .connection_events("Accept")
        .connection_events("Reject")
        .connection_events("Delete")
        .send()
        .await?;
    Ok(StackInfo {
        endpoint_url: endpoint.to_owned(),
        region: REGION.into(),
        provider_account: PROVIDER.into(),
        allowlist_table,
        decisions_table,
        decisions_topic_arn,
        notifications_topic_arn,
        bus_name,
        requests_queue_url,
        requests_dlq_url,
        notifications_queue_url,
        inbox_queue_url,
        service_id,
        service_name: svc.service_name().context("service name")?.to_owned(),
        connection_notification_id: nfn
            .connection_notification()
            .and_then(|n| n.connection_notification_id())
            .context("notification id")?
            .to_owned(),
        allowlist_stream_arn,
        default_action: options.default_action,
        revoke: options.revoke,
    })
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
    let out = ec2
        .create_vpc_endpoint()
        .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
        .vpc_id(vpc)
        .service_name(service_name)
        .subnet_ids(subnet)
        .send()
        .await?;
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
/// setup call goes over moto's Query API by hand (it is setup only: Gatekeeper never calls ELB).
mod aws_sdk_elasticloadbalancingv2_stub {
    use anyhow::{Context, Result};
    use aws_config::SdkConfig;

    pub async fn create_nlb(endpoint: &str, cfg: &SdkConfig, subnet: &str, suffix: &str) -> Result<String> {
        // moto maps the caller's account from the access key in the Authorization header.
        let provider = cfg.credentials_provider().context("credentials")?;
        let creds = aws_credential_types::provider::ProvideCredentials::provide_credentials(&provider).await?;
        let body = format!(
            "Action=CreateLoadBalancer&Version=2015-12-01&Name=gk-{suffix}&Type=network&Subnets.member.1={subnet}"
        );
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/20260101/us-east-1/elasticloadbalancing/aws4_request, SignedHeaders=host, Signature=0",
            creds.access_key_id()
        );
        let text = super::http_post(endpoint, &auth, &body).await?;
        let start = text.find("<LoadBalancerArn>").context("CreateLoadBalancer answered without an ARN")?
            + "<LoadBalancerArn>".len();
        let end = text[start..].find('<').context("malformed CreateLoadBalancer answer")? + start;
        Ok(text[start..end].to_owned())
    }
}

/// A minimal HTTP/1.1 POST over loopback (setup only).
async fn http_post(endpoint: &str, auth: &str, body: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(hostport).await?;
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await?;
    Ok(out)
}

/// The decide function's configuration for a stack.
pub fn decide_config(info: &StackInfo) -> Result<Config> {
    Ok(Config {
        allowlist_table: info.allowlist_table.clone(),
        decisions_table: info.decisions_table.clone(),
        topic_arn: info.decisions_topic_arn.clone(),
        managed: [ServiceId::parse(&info.service_id)?].into(),
        default_action: info.default_action,
        home_region: shared::domain::Region::parse(&info.region)?,
        // Short, so a crashed claim is taken over within the queue's five receives (5 × 2 s visibility).
        lease_ms: 8_000,
        revoke: info.revoke,
        retention_s: 400 * 86_400,
    })
}

pub type DecideDeps = Deps<Ec2Connections, DynamoAllowlist, DynamoDecisionLog, SnsNotifier>;

/// The real `decide` dependencies, over the provider's SDK configuration (as `main.rs` builds them).
pub fn decide_deps(cfg: &SdkConfig, info: &StackInfo) -> Result<DecideDeps> {
    Ok(decide::wiring::deps(cfg, decide_config(info)?))
}

/// The event-source wiring AWS would do, for one stack.
pub struct Wiring {
    pub info: StackInfo,
    sqs: aws_sdk_sqs::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    ingest: ingest::handler::Deps<Ec2Connections, EventBridgeBus>,
    reconcile: reconcile::wiring::AwsDeps,
    deps: DecideDeps,
    /// Where each shard of the allowlist stream has been read to.
    shard_iterators: tokio::sync::Mutex<Option<Vec<String>>>,
    invocation: std::sync::atomic::AtomicU64,
    /// The access key the functions call AWS with (fault rules can target it alone).
    pub access_key: String,
    /// Every connection notification seen once: (event, endpoint ID, SNS message ID). EC2 publishes
    /// `Accept`/`Reject` once per state change, so these count the EC2 actions taken.
    pub connection_events: std::sync::Mutex<Vec<(String, String, String)>>,
    /// Messages `decide` reported as failed (partial batch failures and failed invocations), as the
    /// event source mapping would see them: what the Errors metric and the DLQ are made of.
    pub decide_failures: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PumpStats {
    pub notifications: usize,
    pub requests_put: usize,
    pub invocations: usize,
    pub messages: usize,
    pub failed_messages: usize,
}

impl Wiring {
    pub async fn new(info: StackInfo) -> Result<Self> {
        let cfg = account_config(&info.endpoint_url, &info.provider_account).await?;
        let managed: std::collections::BTreeSet<ServiceId> = [ServiceId::parse(&info.service_id)?].into();
        let provider = cfg.credentials_provider().context("credentials")?;
        let access_key = aws_credential_types::provider::ProvideCredentials::provide_credentials(&provider)
            .await?
            .access_key_id()
            .to_owned();
        let ec2 = Ec2Connections::new(aws_sdk_ec2::Client::new(&cfg));
        let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&cfg), &info.bus_name);
        Ok(Self {
            sqs: aws_sdk_sqs::Client::new(&cfg),
            streams: aws_sdk_dynamodbstreams::Client::new(&cfg),
            ingest: ingest::handler::Deps {
                connections: ec2.clone(),
                bus: bus.clone(),
                config: ingest::config::Config { bus_name: info.bus_name.clone(), managed: managed.clone() },
            },
            reconcile: reconcile::wiring::deps(
                &cfg,
                reconcile::config::Config {
                    bus_name: info.bus_name.clone(),
                    allowlist_table: info.allowlist_table.clone(),
                    decisions_table: info.decisions_table.clone(),
                    managed,
                    revoke: info.revoke,
                    home_region: shared::domain::Region::parse(&info.region)?,
                    sweep_interval_s: 60,
                },
            ),
            deps: decide_deps(&cfg, &info)?,
            shard_iterators: Default::default(),
            access_key,
            info,
            invocation: 0.into(),
            connection_events: Default::default(),
            decide_failures: Default::default(),
        })
    }

    pub fn deps(&self) -> &DecideDeps {
        &self.deps
    }

    fn context(&self, function: &str) -> lambda_runtime::Context {
        let n = self.invocation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut ctx = lambda_runtime::Context::default();
        ctx.request_id = format!("local-{function}-{}-{n}", std::process::id());
        ctx
    }

    /// Connection notifications → `ingest`, one invocation per SNS message, as SNS invokes Lambda.
    /// A failed invocation leaves the message to come back (Lambda's asynchronous retries).
    pub async fn pump_notifications(&self) -> Result<PumpStats> {
        let mut stats = PumpStats::default();
        let msgs = self
            .sqs
            .receive_message()
            .queue_url(&self.info.notifications_queue_url)
            .max_number_of_messages(10)
            .send()
            .await?
            .messages
            .unwrap_or_default();
        for m in &msgs {
            stats.notifications += 1;
            let body = m.body().unwrap_or_default();
            if let Some(ev) = notification_event(body) {
                // A redelivered notification (after a failed ingest) is the same EC2 action.
                let mut seen = self.connection_events.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                if !seen.contains(&ev) {
                    seen.push(ev);
                }
            }
            let event = sns_event(body)?;
            stats.invocations += 1;
            match ingest::handler::handle(&self.ingest, lambda_runtime::LambdaEvent::new(event, self.context("ingest")))
                .await
            {
                Ok(()) => {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.info.notifications_queue_url)
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .send()
                        .await?;
                }
                Err(e) => {
                    stats.failed_messages += 1;
                    tracing::warn!(error = %e, "ingest invocation failed; the notification will be retried");
                }
            }
        }
        Ok(stats)
    }

    /// New allowlist stream records → one `reconcile` invocation, as Lambda's stream event source does.
    pub async fn pump_stream(&self) -> Result<PumpStats> {
        let mut stats = PumpStats::default();
        let mut guard = self.shard_iterators.lock().await;
        if guard.is_none() {
            let desc = self.streams.describe_stream().stream_arn(&self.info.allowlist_stream_arn).send().await?;
            let mut its = Vec::new();
            for shard in desc.stream_description().map(|d| d.shards()).unwrap_or_default() {
                let it = self
                    .streams
                    .get_shard_iterator()
                    .stream_arn(&self.info.allowlist_stream_arn)
                    .shard_id(shard.shard_id().unwrap_or_default())
                    .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
                    .send()
                    .await?;
                its.extend(it.shard_iterator().map(str::to_owned));
            }
            *guard = Some(its);
        }
        let Some(iterators) = guard.as_mut() else { return Ok(stats) };
        for it in iterators.iter_mut() {
            let out = self.streams.get_records().shard_iterator(it.as_str()).send().await?;
            let records: Vec<serde_json::Value> = out.records().iter().map(|r| stream_record(r, &self.info)).collect();
            if !records.is_empty() {
                let event: aws_lambda_events::event::dynamodb::Event =
                    serde_json::from_value(serde_json::json!({ "Records": records }))?;
                stats.invocations += 1;
                stats.messages += records.len();
                let response = reconcile::handler::handle(
                    &self.reconcile,
                    lambda_runtime::LambdaEvent::new(serde_json::to_value(event)?, self.context("reconcile")),
                )
                .await
                .map_err(|e| anyhow::anyhow!("reconcile failed: {e}"))?;
                let failures = response["batchItemFailures"].as_array().map_or(0, Vec::len);
                if failures > 0 {
                    // Lambda would retry from the failed record; keep the iterator where it was.
                    stats.failed_messages += failures;
                    continue;
                }
            }
            if let Some(next) = out.next_shard_iterator() {
                *it = next.to_owned();
            }
        }
        Ok(stats)
    }

    /// The schedule: one `reconcile` invocation with a Scheduled Event.
    pub async fn sweep(&self) -> Result<serde_json::Value> {
        let event = serde_json::json!({
            "version": "0", "id": "local-sweep", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": self.info.provider_account, "time": shared::domain::time::rfc3339_ms(shared::domain::time::now_ms()),
            "region": self.info.region, "resources": [], "detail": {}
        });
        reconcile::handler::handle(&self.reconcile, lambda_runtime::LambdaEvent::new(event, self.context("reconcile")))
            .await
            .map_err(|e| anyhow::anyhow!("reconcile sweep failed: {e}"))
    }

    /// One `decide` invocation with up to 10 messages from the requests queue, as Lambda's SQS event
    /// source mapping does it (ReportBatchItemFailures: only successful messages are deleted).
    pub async fn pump_decide(&self, wait_seconds: i32) -> Result<PumpStats> {
        let mut stats = PumpStats::default();
        let msgs = self
            .sqs
            .receive_message()
            .queue_url(&self.info.requests_queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .send()
            .await?
            .messages
            .unwrap_or_default();
        if msgs.is_empty() {
            return Ok(stats);
        }
        let records = msgs
            .iter()
            .map(|m| {
                let mut r = SqsMessage::default();
                r.message_id = m.message_id().map(str::to_owned);
                r.receipt_handle = m.receipt_handle().map(str::to_owned);
                r.body = m.body().map(str::to_owned);
                r.event_source = Some("aws:sqs".into());
                r
            })
            .collect();
        let mut event = SqsEvent::default();
        event.records = records;
        let ctx = self.context("decide");
        stats.invocations = 1;
        stats.messages = msgs.len();
        let failed: Vec<String> = match handle(&self.deps, lambda_runtime::LambdaEvent::new(event, ctx)).await {
            Ok(resp) => resp.batch_item_failures.into_iter().map(|f| f.item_identifier).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "decide invocation failed; the whole batch returns to the queue");
                msgs.iter().filter_map(|m| m.message_id().map(str::to_owned)).collect()
            }
        };
        stats.failed_messages = failed.len();
        self.decide_failures.fetch_add(failed.len(), std::sync::atomic::Ordering::Relaxed);
        for m in &msgs {
            if !failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                self.sqs
                    .delete_message()
                    .queue_url(&self.info.requests_queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await?;
            }
        }
        Ok(stats)
    }

    /// Runs every source until `stop` resolves; the sweep every `sweep_every`.
    pub async fn run_until(&self, sweep_every: Duration, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::pin!(stop);
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                r = async {
                    self.pump_notifications().await?;
                    self.pump_stream().await?;
                    if last_sweep.elapsed() >= sweep_every {
                        last_sweep = tokio::time::Instant::now();
                        self.sweep().await?;
                    }
                    self.pump_decide(1).await
                } => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "wiring pump failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    }
}

/// (event, endpoint ID, SNS message ID) of a connection notification delivered through SQS.
pub fn notification_event(sqs_body: &str) -> Option<(String, String, String)> {
    let envelope: serde_json::Value = serde_json::from_str(sqs_body).ok()?;
    let inner: serde_json::Value = serde_json::from_str(envelope.get("Message")?.as_str()?).ok()?;
    Some((
        inner.get("connectionEvent")?.as_str()?.to_owned(),
        inner.get("vpcEndpointId")?.as_str()?.to_owned(),
        envelope.get("MessageId")?.as_str()?.to_owned(),
    ))
}

/// Lambda's SNS event for one notification delivered through an SQS subscription (SNS's JSON envelope).
pub fn sns_event(sqs_body: &str) -> Result<aws_lambda_events::event::sns::SnsEvent> {
    let env: serde_json::Value = serde_json::from_str(sqs_body).context("SNS envelope")?;
    let record = serde_json::json!({
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{}:local", env["TopicArn"].as_str().unwrap_or_default()),
        "Sns": {
            "Type": env["Type"], "MessageId": env["MessageId"], "TopicArn": env["TopicArn"],
            "Subject": env["Subject"], "Message": env["Message"], "Timestamp": env["Timestamp"],
            "SignatureVersion": env["SignatureVersion"], "Signature": env["Signature"],
            "SigningCertUrl": env["SigningCertURL"], "UnsubscribeUrl": env["UnsubscribeURL"],
            "MessageAttributes": env.get("MessageAttributes").cloned().unwrap_or_else(|| serde_json::json!({})),
        }
    });
    Ok(serde_json::from_value(serde_json::json!({ "Records": [record] }))?)
}

/// DynamoDB JSON for an attribute value.
fn ddb_json(v: &aws_sdk_dynamodbstreams::types::AttributeValue) -> serde_json::Value {
    use aws_sdk_dynamodbstreams::types::AttributeValue as A;
    use serde_json::json;
    match v {
        A::S(s) => json!({ "S": s }),
        A::N(n) => json!({ "N": n }),
        A::Bool(b) => json!({ "BOOL": b }),
        A::Null(b) => json!({ "NULL": b }),
        A::Ss(ss) => json!({ "SS": ss }),
        A::Ns(ns) => json!({ "NS": ns }),
        A::L(l) => json!({ "L": l.iter().map(ddb_json).collect::<Vec<_>>() }),
        A::M(m) => json!({ "M": m.iter().map(|(k, v)| (k.clone(), ddb_json(v))).collect::<serde_json::Map<_, _>>() }),
        _ => json!({ "NULL": true }),
    }
}

fn image(
    m: Option<&std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>,
) -> serde_json::Value {
    m.map(|m| m.iter().map(|(k, v)| (k.clone(), ddb_json(v))).collect::<serde_json::Map<_, _>>().into())
        .unwrap_or_else(|| serde_json::json!({}))
}

/// Lambda's DynamoDB stream record for a GetRecords record.
fn stream_record(r: &aws_sdk_dynamodbstreams::types::Record, info: &StackInfo) -> serde_json::Value {
    let d = r.dynamodb();
    serde_json::json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|e| e.as_str()),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": info.region,
        "eventSourceARN": info.allowlist_stream_arn,
        "dynamodb": {
            "ApproximateCreationDateTime": d.and_then(|d| d.approximate_creation_date_time()).map_or(0, |t| t.secs()),
            "Keys": image(d.and_then(|d| d.keys.as_ref())),
            "NewImage": image(d.and_then(|d| d.new_image.as_ref())),
            "OldImage": image(d.and_then(|d| d.old_image.as_ref())),
            "SequenceNumber": d.and_then(|d| d.sequence_number()),
            "SizeBytes": d.and_then(|d| d.size_bytes()).unwrap_or(0),
            "StreamViewType": d.and_then(|d| d.stream_view_type()).map(|v| v.as_str()),
        }
    })
}
