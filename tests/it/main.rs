//! Integration tests: real endpoints created from consumer accounts in the local AWS, decided by the real
//! `decide` handler over the real SDK and wire protocol, checked in EC2, the decisions table and the SNS
//! messages a subscribed queue receives. One test binary; each test provisions its own stack.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue as V;
use gatekeeper_local::{Emulator, Options, PumpStats, StackInfo, Wiring, account_config, create_endpoint, provision};
use serde_json::Value;
use shared::domain::DefaultAction;

mod decide;
mod faults;
mod onboarding;
mod races;
mod reconcile;

static STACKS: AtomicU32 = AtomicU32::new(0);

/// How long a change takes to show in EC2's Describe calls in every test (the emulator's consistency lag),
/// unless a test sets another: EC2 is eventually consistent ("Eventual consistency in the Amazon EC2 API":
/// a result "might not be immediately visible to all subsequent commands"), and AWS gives no bound, so the
/// tests run against a lag rather than an EC2 that shows every change at once. `GATEKEEPER_TEST_EC2_LAG_MS`
/// overrides it.
pub const EC2_LAG_MS: u64 = 300;

/// How long a DynamoDB write takes to show in a Query of a global secondary index (the sweep's `owed` index)
/// in every test: an index "is updated asynchronously, using an eventually consistent model ... within a
/// fraction of a second, under normal conditions" (DynamoDB Developer Guide, "Using Global Secondary
/// Indexes"), so the tests read it late rather than at once. `GATEKEEPER_TEST_INDEX_LAG_MS` overrides it.
pub const INDEX_LAG_MS: u64 = 300;

pub struct World {
    pub info: StackInfo,
    pub wiring: Wiring,
    pub ddb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub events: aws_sdk_eventbridge::Client,
    _emulator: Emulator,
}

/// Sets one of the emulator's lags: EC2's consistency (`/_gatekeeper/consistency`) or a global index's
/// (`/_gatekeeper/index-lag`).
async fn set_lag(url: &str, path: &str, ms: u64) -> Result<()> {
    gatekeeper_local::control(url, path, Some(serde_json::json!({ "lag_ms": ms }))).await.map(|_| ())
}

fn lag_ms(variable: &str, default: u64) -> u64 {
    std::env::var(variable).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A decision message as a subscribed team receives it.
#[derive(Debug)]
pub struct Received {
    pub subject: String,
    pub body: Value,
    pub attributes: Value,
}

impl World {
    pub async fn new(default_action: DefaultAction) -> Result<Self> {
        Self::with(Options { default_action, ..Options::default() }).await
    }

    pub async fn with(options: Options) -> Result<Self> {
        let emulator = Emulator::start_or_reuse().await?;
        let suffix = format!("{}-{}", std::process::id(), STACKS.fetch_add(1, Ordering::Relaxed));
        let info = provision(&emulator.url, &suffix, options).await?;
        let cfg = account_config(&info.endpoint_url, &info.provider_account).await?;
        set_lag(&info.endpoint_url, "/_gatekeeper/consistency", lag_ms("GATEKEEPER_TEST_EC2_LAG_MS", EC2_LAG_MS))
            .await?;
        set_lag(&info.endpoint_url, "/_gatekeeper/index-lag", lag_ms("GATEKEEPER_TEST_INDEX_LAG_MS", INDEX_LAG_MS))
            .await?;
        Ok(Self {
            wiring: Wiring::new(info.clone()).await?,
            ddb: aws_sdk_dynamodb::Client::new(&cfg),
            sqs: aws_sdk_sqs::Client::new(&cfg),
            sns: aws_sdk_sns::Client::new(&cfg),
            ec2: aws_sdk_ec2::Client::new(&cfg),
            events: aws_sdk_eventbridge::Client::new(&cfg),
            info,
            _emulator: emulator,
        })
    }

    /// Sets EC2's consistency lag for the rest of this test (see [`EC2_LAG_MS`]): a test whose scenario needs
    /// Describe to show a change at once says so with 0.
    pub async fn ec2_lag(&self, ms: u64) -> Result<()> {
        set_lag(&self.info.endpoint_url, "/_gatekeeper/consistency", ms).await
    }

    pub async fn rule(&self, scope: &str, principal: &str, effect: &str, extra: &[(&str, V)]) -> Result<()> {
        let mut req = self
            .ddb
            .put_item()
            .table_name(&self.info.allowlist_table)
            .item("service_id", V::S(scope.replace("SVC", &self.info.service_id)))
            .item("principal", V::S(principal.into()))
            .item("effect", V::S(effect.into()));
        for (k, v) in extra {
            req = req.item(*k, v.clone());
        }
        req.send().await?;
        Ok(())
    }

    /// Deletes an allowlist item, as a person editing the table would (`SVC` stands for the stack's service).
    pub async fn remove_rule(&self, scope: &str, principal: &str) -> Result<()> {
        self.ddb
            .delete_item()
            .table_name(&self.info.allowlist_table)
            .key("service_id", V::S(scope.replace("SVC", &self.info.service_id)))
            .key("principal", V::S(principal.into()))
            .send()
            .await?;
        Ok(())
    }

    /// An interface endpoint to the stack's service, created in `account` (which assumes a role there).
    pub async fn endpoint(&self, account: &str) -> Result<String> {
        self.endpoint_to(account, &self.info.service_name).await
    }

    pub async fn endpoint_to(&self, account: &str, service_name: &str) -> Result<String> {
        Ok(create_endpoint(&self.info.endpoint_url, account, service_name).await?.1)
    }

    /// Runs the wiring until nothing moves: notifications turned into requests, requests decided.
    /// Failed messages come back after the runner's 2 s (`RUNNER_VISIBILITY_S`), so `patience` bounds the wait;
    /// not settling within it is an error.
    pub async fn settle(&self, patience: Duration) -> Result<()> {
        let start = Instant::now();
        let mut quiet = 0;
        // What moved last (notifications, stream records, requests, requests failed), for the error.
        let mut last = (0, 0, 0, 0);
        while start.elapsed() < patience {
            // A pump that fails (an SQS or stream call failing) is retried, as Lambda's pollers do.
            let (n, st, d) = match (
                self.wiring.pump_notifications().await,
                self.wiring.pump_stream().await,
                self.wiring.pump_decide(0).await,
                self.wiring.pump_deliveries(0).await,
            ) {
                (Ok(n), Ok(st), Ok(d), Ok(dl)) => (n, st, PumpStats { messages: d.messages + dl.messages, ..d }),
                _ => {
                    quiet = 0;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            if n.notifications == 0 && d.messages == 0 && st.messages == 0 {
                quiet += 1;
                let deliveries = &self.info.deployment.queues["DeliveriesQueue"].url;
                // Deliveries first: one made after the queues were read would be missed.
                if quiet >= 3
                    && self.deliveries_pending().await.unwrap_or(1) == 0
                    && self.queue_depth(&self.info.requests_queue_url).await.unwrap_or(1) == 0
                    && self.queue_depth(deliveries).await.unwrap_or(1) == 0
                {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            } else {
                quiet = 0;
                last = (n.notifications, st.messages, d.messages, d.failed_messages);
            }
        }
        let depth = self.queue_depth(&self.info.requests_queue_url).await.ok();
        anyhow::bail!(
            "the wiring did not settle within {patience:?}: the last round moved {} notifications, {} stream \
             records and {} requests ({} failed); the requests queue holds {depth:?}",
            last.0,
            last.1,
            last.2,
            last.3
        )
    }

    /// Deliveries to queues that the emulator has not made yet: SNS and EventBridge deliver apart from
    /// `Publish` and `PutEvents`, so a request, or a decision's copies (the team's, decide's own), may land
    /// after everything else has gone quiet.
    async fn deliveries_pending(&self) -> Result<u64> {
        let answer = gatekeeper_local::control(&self.info.endpoint_url, "/_gatekeeper/deliveries", None).await?;
        answer["pending"].as_u64().context("pending")
    }

    pub async fn queue_depth(&self, url: &str) -> Result<u64> {
        use aws_sdk_sqs::types::QueueAttributeName as Q;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(Q::ApproximateNumberOfMessages)
            .attribute_names(Q::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?;
        let attrs = out.attributes().context("attributes")?;
        let get = |k: Q| attrs.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok(get(Q::ApproximateNumberOfMessages) + get(Q::ApproximateNumberOfMessagesNotVisible))
    }

    /// The connection's state as the provider sees it in EC2.
    /// The connection's state, as EC2 holds it (the emulator's truth: with a consistency lag on,
    /// Describe may still show an older one). Gatekeeper itself only ever reads Describe.
    pub async fn state(&self, endpoint: &str) -> Result<String> {
        let out = gatekeeper_local::control(
            &self.info.endpoint_url,
            &format!("/_gatekeeper/connection-state/{endpoint}"),
            None,
        )
        .await?;
        out["state"].as_str().map(str::to_owned).context("no such connection")
    }

    /// How many of the service's connections still wait for acceptance (one paginated call).
    pub async fn pending_count(&self) -> Result<usize> {
        let mut n = 0;
        let mut pages = self
            .ec2
            .describe_vpc_endpoint_connections()
            .filters(aws_sdk_ec2::types::Filter::builder().name("service-id").values(&self.info.service_id).build())
            .filters(
                aws_sdk_ec2::types::Filter::builder().name("vpc-endpoint-state").values("pendingAcceptance").build(),
            )
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            n += page?.vpc_endpoint_connections().len();
        }
        Ok(n)
    }

    /// Waits out EC2's `pending` step after an accept.
    pub async fn settled_state(&self, endpoint: &str) -> Result<String> {
        for _ in 0..40 {
            let s = self.state(endpoint).await?;
            if s != "pending" {
                return Ok(s);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.state(endpoint).await
    }

    /// Every decision message received so far by the team's queue (and removes them).
    pub async fn inbox(&self) -> Result<Vec<Received>> {
        let mut out = Vec::new();
        loop {
            let msgs = self
                .sqs
                .receive_message()
                .queue_url(&self.info.inbox_queue_url)
                .max_number_of_messages(10)
                .send()
                .await?;
            if msgs.messages().is_empty() {
                return Ok(out);
            }
            for m in msgs.messages() {
                let env: Value = serde_json::from_str(m.body().unwrap_or_default())?;
                out.push(Received {
                    subject: env["Subject"].as_str().unwrap_or_default().to_owned(),
                    body: serde_json::from_str(env["Message"].as_str().unwrap_or("null"))?,
                    attributes: env["MessageAttributes"].clone(),
                });
                self.sqs
                    .delete_message()
                    .queue_url(&self.info.inbox_queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await?;
            }
        }
    }

    /// The decision records of an endpoint.
    pub async fn records(&self, endpoint: &str) -> Result<Vec<std::collections::HashMap<String, V>>> {
        let out = self
            .ddb
            .query()
            .table_name(&self.info.decisions_table)
            .key_condition_expression("endpoint_id = :e")
            .expression_attribute_values(":e", V::S(endpoint.into()))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.items().to_vec())
    }

    /// How many times EC2 changed this connection by `event` (`Accept` or `Reject`).
    pub fn ec2_actions(&self, endpoint: &str, event: &str) -> usize {
        self.wiring
            .connection_events
            .lock()
            .map(|v| v.iter().filter(|(e, id, _)| e == event && id == endpoint).count())
            .unwrap_or(0)
    }

    /// Replaces the emulator's fault rules (see tests/emulator/gatekeeper_moto.py).
    pub async fn faults(&self, rules: Value) -> Result<()> {
        gatekeeper_local::control(
            &self.info.endpoint_url,
            "/_gatekeeper/faults",
            Some(serde_json::json!({ "rules": rules })),
        )
        .await
        .map(|_| ())
    }

    /// Puts a Connection Request event on the bus, as any producer (or a forger) can.
    pub async fn put_request(&self, detail: Value) -> Result<()> {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.info.bus_name)
            .source("gatekeeper")
            .detail_type("Connection Request")
            .detail(detail.to_string())
            .build();
        let out = self.events.put_events().entries(entry).send().await?;
        anyhow::ensure!(out.failed_entry_count() == 0, "PutEvents failed");
        Ok(())
    }

    /// Lambda's SQS event carrying one Connection Request for `endpoint` (message ID `message_id`), as the
    /// bus rule and the queue deliver it to `decide`.
    pub fn sqs_event(&self, endpoint: &str, message_id: &str) -> aws_lambda_events::event::sqs::SqsEvent {
        let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
        m.message_id = Some(message_id.to_owned());
        m.body = Some(
            serde_json::json!({"source": "gatekeeper", "detail-type": "Connection Request", "detail": self.request(endpoint)})
                .to_string(),
        );
        let mut e = aws_lambda_events::event::sqs::SqsEvent::default();
        e.records = vec![m];
        e
    }

    pub fn request(&self, endpoint: &str) -> Value {
        serde_json::json!({"service_id": self.info.service_id, "endpoint_id": endpoint, "trigger": "manual", "requested_at": 1})
    }
}

pub fn s(v: &str) -> V {
    V::S(v.into())
}
