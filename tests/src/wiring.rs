//! The event-source wiring AWS does for the deployed stack, driving the real handlers, each with its
//! own execution role's credentials and its own deployed configuration:
//! - the requests queue → `decide`, as the SQS event source mapping does (batch size from the mapping,
//!   ReportBatchItemFailures: only successful messages are deleted; redrive as the queue says), except that
//!   what it receives is out of sight for [`RUNNER_VISIBILITY_S`], not the queue's visibility timeout;
//! - SNS's deliveries of the notifications → `decide`, the same way, on that queue's mapping;
//! - the connection-notification topic's Lambda subscription → `ingest`, through the emulator's
//!   asynchronous-invocation queue (retries and the function's dead-letter queue as Lambda does them);
//! - the allowlist stream → `reconcile`, as the stream event source mapping does (GetRecords; batches,
//!   checkpoints, retries, bisection and the on-failure destination as the mapping is deployed:
//!   [`crate::stream_source`]);
//! - the schedule → `reconcile` with a Scheduled Event.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use reconcile::event::{ReconcileEvent, ReconcileResponse};
use serde_json::{Value, json};

use crate::deployment::StackInfo;
use crate::emulator::{control, role_config};
use crate::events::{notification_event, stream_record};
use crate::stream_source::{Discarded, Outcome, Settings, Shard};

/// How long the local runner keeps what it receives from decide's queues out of sight: 2 s, where Lambda's
/// poller uses the queue's visibility timeout (360 s as deployed; Lambda refuses less than decide's 60 s).
/// A message an invocation failed comes back in 2 s instead of minutes, the tests' time rather than AWS's,
/// and the stack the tests deploy keeps the template's own visibility timeout.
pub const RUNNER_VISIBILITY_S: i32 = 2;

pub type DecideDeps = decide::wiring::AwsDeps;

/// decide's configuration as the stack deployed it (its environment, through its own parser).
pub fn decide_config(info: &StackInfo) -> Result<decide::config::Config> {
    let env = info.deployment.environment("DecideFunction")?;
    decide::config::Config::from_lookup(|k| env.get(k).cloned()).context("decide's deployed environment")
}

/// The real `decide` dependencies over `cfg`, with the deployed configuration (as `main.rs` builds them).
pub fn decide_deps(cfg: &SdkConfig, info: &StackInfo) -> Result<DecideDeps> {
    Ok(decide::wiring::deps(cfg, decide_config(info)?))
}

fn lookup(env: &BTreeMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    |k| env.get(k).cloned()
}

pub struct Wiring {
    pub info: StackInfo,
    /// decide's execution role: the SQS event source polls with it, as Lambda does.
    decide_sdk: SdkConfig,
    sqs: aws_sdk_sqs::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    ingest: ingest::wiring::AwsDeps,
    ingest_arn: String,
    reconcile: reconcile::wiring::AwsDeps,
    deps: DecideDeps,
    /// decide's two SQS event sources: the requests, and SNS's deliveries of its notifications.
    requests: DecideQueue,
    deliveries: DecideQueue,
    stream_arn: String,
    /// Where the stream's mapping starts reading (its deployed `StartingPosition`), at the first pump: with
    /// `LATEST`, a change made before then is never read, as Lambda warns for a mapping's first minutes.
    stream_start: aws_sdk_dynamodbstreams::types::ShardIteratorType,
    /// The stream mapping's batch size, retries, bisection and response types, as deployed.
    stream_settings: Settings,
    /// The mapping's on-failure destination (a queue URL), sent to with reconcile's role, as Lambda does.
    stream_on_failure: Option<String>,
    /// reconcile's SQS client (its execution role): the on-failure destination.
    reconcile_sqs: aws_sdk_sqs::Client,
    reconcile_arn: String,
    /// Each shard of the allowlist stream: where it has been read to, and what is read but not checkpointed.
    shards: tokio::sync::Mutex<Option<Vec<StreamShard>>>,
    /// Records of failed stream batches sent to the on-failure destination.
    pub stream_discards: AtomicUsize,
    /// The sequence number of every stream record handed to `reconcile`, in order (retries repeat them).
    pub stream_invoked: std::sync::Mutex<Vec<String>>,
    invocation: AtomicU64,
    /// Each function's deployed `Timeout` in seconds, by the name `context` takes.
    timeouts: std::collections::HashMap<&'static str, u64>,
    /// The access keys the functions call AWS with (fault rules can target them alone).
    pub access_keys: Vec<String>,
    /// Every connection notification seen once: (event, endpoint ID, SNS message ID). EC2 publishes
    /// `Accept`/`Reject` once per state change, so these count the EC2 actions taken.
    pub connection_events: std::sync::Mutex<Vec<(String, String, String)>>,
    /// Messages `decide` reported as failed (partial batch failures and failed invocations), as the
    /// event source mapping would see them: what the Errors metric and the DLQ are made of.
    pub decide_failures: AtomicUsize,
}

/// One shard of the allowlist stream as the mapping reads it.
struct StreamShard {
    id: String,
    /// `None` once the shard is closed and read to its end.
    iterator: Option<String>,
    source: Shard<Value>,
    /// Records given up on whose on-failure record could not be sent yet: sent before the next invocation.
    unsent: Option<Discarded<Value>>,
}

/// One of decide's SQS event sources: the queue, and the mapping's batch size.
struct DecideQueue {
    url: String,
    arn: String,
    batch_size: i32,
}

impl DecideQueue {
    fn of(d: &crate::deployment::Deployment, logical_id: &str) -> Result<Self> {
        let (queue, mapping) = d.queue_mapping("DecideFunction", logical_id)?;
        anyhow::ensure!(
            mapping.function_response_types.iter().any(|t| t == "ReportBatchItemFailures"),
            "decide's event source on {logical_id} must report batch item failures"
        );
        Ok(Self {
            url: queue.url.clone(),
            arn: queue.arn.clone(),
            batch_size: i32::try_from(mapping.batch_size.unwrap_or(10)).unwrap_or(10),
        })
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PumpStats {
    pub notifications: usize,
    pub invocations: usize,
    pub messages: usize,
    pub failed_messages: usize,
}

impl Wiring {
    pub async fn new(info: StackInfo) -> Result<Self> {
        let d = &info.deployment;
        let endpoint = info.endpoint_url.clone();
        let (ingest_sdk, ingest_key) =
            role_config(&endpoint, &d.function("IngestFunction")?.role_arn, "ingest").await?;
        let (decide_sdk, decide_key) =
            role_config(&endpoint, &d.function("DecideFunction")?.role_arn, "decide").await?;
        let (reconcile_sdk, reconcile_key) =
            role_config(&endpoint, &d.function("ReconcileFunction")?.role_arn, "reconcile").await?;

        let ingest_env = d.environment("IngestFunction")?;
        let ingest_config = ingest::config::Config::from_lookup(lookup(&ingest_env)).context("ingest's environment")?;
        let reconcile_env = d.environment("ReconcileFunction")?;
        let reconcile_config =
            reconcile::config::Config::from_lookup(lookup(&reconcile_env)).context("reconcile's environment")?;

        let requests = DecideQueue::of(d, "RequestsQueue")?;
        let deliveries = DecideQueue::of(d, "DeliveriesQueue")?;
        let stream = d.mapping("ReconcileFunction", "/stream/")?;
        let notifications_topic = d.output("ConnectionNotificationsTopicArn")?;
        anyhow::ensure!(
            d.sns_lambda_subscriptions
                .iter()
                .any(|s| s.function == "IngestFunction" && s.topic_arn == notifications_topic),
            "ingest is not subscribed to the connection notifications topic"
        );
        let stream_on_failure = match &stream.on_failure_destination {
            Some(arn) => Some(d.queue_by_arn(arn).context("the stream's on-failure destination")?.url.clone()),
            None => None,
        };
        Ok(Self {
            stream_settings: Settings::of(stream)?,
            stream_on_failure,
            reconcile_sqs: aws_sdk_sqs::Client::new(&reconcile_sdk),
            reconcile_arn: d.function("ReconcileFunction")?.arn.clone(),
            stream_discards: Default::default(),
            stream_invoked: Default::default(),
            sqs: aws_sdk_sqs::Client::new(&decide_sdk),
            streams: aws_sdk_dynamodbstreams::Client::new(&reconcile_sdk),
            ingest: ingest::wiring::deps(&ingest_sdk, ingest_config),
            ingest_arn: d.function("IngestFunction")?.arn.clone(),
            reconcile: reconcile::wiring::deps(&reconcile_sdk, reconcile_config),
            deps: decide_deps(&decide_sdk, &info)?,
            requests,
            deliveries,
            stream_arn: stream.event_source_arn.clone(),
            stream_start: match stream.starting_position.as_deref() {
                Some("TRIM_HORIZON") => aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon,
                Some("LATEST") => aws_sdk_dynamodbstreams::types::ShardIteratorType::Latest,
                other => anyhow::bail!("the allowlist stream's mapping starts at {other:?}: not a stream position"),
            },
            decide_sdk,
            shards: Default::default(),
            invocation: 0.into(),
            timeouts: [("ingest", "IngestFunction"), ("decide", "DecideFunction"), ("reconcile", "ReconcileFunction")]
                .into_iter()
                .map(|(name, logical)| Ok((name, d.function(logical)?.timeout)))
                .collect::<Result<_>>()?,
            access_keys: vec![ingest_key, decide_key, reconcile_key],
            connection_events: Default::default(),
            decide_failures: Default::default(),
            info,
        })
    }

    pub fn deps(&self) -> &DecideDeps {
        &self.deps
    }

    /// decide's SDK configuration (its execution role's credentials).
    pub fn decide_sdk_config(&self) -> &SdkConfig {
        &self.decide_sdk
    }

    /// An invocation's context as Lambda gives it: a request ID, and the deadline its function's deployed
    /// `Timeout` sets from now (`Lambda-Runtime-Deadline-Ms`; docs/aws-facts.md, "Lambda and SAM").
    fn context(&self, function: &str) -> lambda_runtime::Context {
        let n = self.invocation.fetch_add(1, Ordering::Relaxed);
        let mut ctx = lambda_runtime::Context::default();
        ctx.request_id = format!("local-{function}-{}-{n}", std::process::id());
        let timeout_s = self.timeouts.get(function).copied().unwrap_or_else(|| panic!("no function {function}"));
        ctx.deadline = u64::try_from(shared::domain::time::now_ms()).unwrap_or(0) + timeout_s * 1_000;
        ctx
    }

    /// Takes up to `max` of ingest's pending asynchronous invocations (SNS deliveries).
    async fn take_notifications(&self, max: usize) -> Result<Vec<Value>> {
        let out = control(
            &self.info.endpoint_url,
            "/_gatekeeper/lambda/take",
            Some(json!({"function_arn": self.ingest_arn, "max": max})),
        )
        .await?;
        Ok(out["invocations"].as_array().cloned().unwrap_or_default())
    }

    async fn done(&self, id: &str, ok: bool, error: &str) -> Result<()> {
        control(&self.info.endpoint_url, "/_gatekeeper/lambda/done", Some(json!({"id": id, "ok": ok, "error": error})))
            .await
            .map(|_| ())
    }

    /// Drops every connection notification waiting for ingest (so only a test decides what follows).
    pub async fn drop_notifications(&self) -> Result<usize> {
        let mut n = 0;
        loop {
            let batch = self.take_notifications(100).await?;
            if batch.is_empty() {
                return Ok(n);
            }
            for inv in &batch {
                self.remember(&inv["payload"]);
                self.done(inv["id"].as_str().unwrap_or_default(), true, "").await?;
                n += 1;
            }
        }
    }

    fn remember(&self, payload: &Value) {
        for record in payload["Records"].as_array().into_iter().flatten() {
            if let Some(ev) = notification_event(&record["Sns"])
                && let Ok(mut seen) = self.connection_events.lock()
                // A redelivered notification (after a failed ingest) is the same EC2 action.
                && !seen.contains(&ev)
            {
                seen.push(ev);
            }
        }
    }

    /// Connection notifications → `ingest`, one invocation per SNS message, as SNS invokes Lambda
    /// (asynchronously: a failed invocation is retried by the emulator's Lambda, then dead-lettered).
    pub async fn pump_notifications(&self) -> Result<PumpStats> {
        let mut stats = PumpStats::default();
        for inv in self.take_notifications(10).await? {
            stats.notifications += 1;
            let id = inv["id"].as_str().unwrap_or_default().to_owned();
            self.remember(&inv["payload"]);
            let event: aws_lambda_events::event::sns::SnsEvent = match serde_json::from_value(inv["payload"].clone()) {
                Ok(e) => e,
                Err(e) => {
                    self.done(&id, false, &format!("unreadable SNS event: {e}")).await?;
                    stats.failed_messages += 1;
                    continue;
                }
            };
            stats.invocations += 1;
            let ctx = self.context("ingest");
            let deadline = ctx.deadline;
            let invocation = ingest::handler::handle(&self.ingest, lambda_runtime::LambdaEvent::new(event, ctx));
            let result = match until_deadline(deadline, invocation).await {
                Some(result) => result.map_err(|e| e.to_string()),
                None => Err(timed_out("ingest")),
            };
            match result {
                Ok(()) => self.done(&id, true, "").await?,
                Err(e) => {
                    stats.failed_messages += 1;
                    tracing::warn!(error = %e, "ingest invocation failed; Lambda retries it");
                    self.done(&id, false, &e.to_string()).await?;
                }
            }
        }
        Ok(stats)
    }

    /// The allowlist stream → `reconcile`, as Lambda's stream event source does it: per shard, one invocation
    /// of its next batch (new records read once the last batch was checkpointed), retried, bisected or
    /// discarded to the on-failure destination as the mapping is deployed ([`crate::stream_source`]).
    pub async fn pump_stream(&self) -> Result<PumpStats> {
        let mut stats = PumpStats::default();
        let mut guard = self.shards.lock().await;
        if guard.is_none() {
            let desc = self.streams.describe_stream().stream_arn(&self.stream_arn).send().await?;
            let mut shards = Vec::new();
            for shard in desc.stream_description().map(|d| d.shards()).unwrap_or_default() {
                let id = shard.shard_id().unwrap_or_default().to_owned();
                let it = self
                    .streams
                    .get_shard_iterator()
                    .stream_arn(&self.stream_arn)
                    .shard_id(&id)
                    .shard_iterator_type(self.stream_start.clone())
                    .send()
                    .await?;
                let iterator = it.shard_iterator().map(str::to_owned);
                shards.push(StreamShard { id, iterator, source: Shard::new(self.stream_settings), unsent: None });
            }
            *guard = Some(shards);
        }
        let Some(shards) = guard.as_mut() else { return Ok(stats) };
        for shard in shards.iter_mut() {
            if let Some(gone) = shard.unsent.take() {
                // Before anything newer of this shard.
                self.discard(shard, gone).await?;
            }
            if shard.source.is_idle()
                && let Some(it) = &shard.iterator
            {
                let limit = i32::try_from(self.stream_settings.batch_size).unwrap_or(1000).min(1000);
                let out = self.streams.get_records().shard_iterator(it.as_str()).limit(limit).send().await?;
                shard.iterator = out.next_shard_iterator().map(str::to_owned);
                shard.source.push(
                    out.records().iter().map(|r| stream_record(r, &self.info.region, &self.stream_arn)).collect(),
                );
            }
            let Some(batch) = shard.source.next().map(<[Value]>::to_vec) else { continue };
            stats.invocations += 1;
            stats.messages += batch.len();
            if let Ok(mut seen) = self.stream_invoked.lock() {
                seen.extend(batch.iter().map(sequence_number));
            }
            // As the runtime does: the payload is deserialised into the handler's event type (a payload it
            // cannot read fails the invocation, a function error).
            let outcome = match serde_json::from_value::<ReconcileEvent>(json!({ "Records": batch })) {
                Err(e) => {
                    tracing::warn!(error = %e, "the runtime could not read a stream batch; the mapping retries it");
                    Outcome::FunctionError
                }
                Ok(event) => {
                    let ctx = self.context("reconcile");
                    let deadline = ctx.deadline;
                    let invocation = lambda_runtime::LambdaEvent::new(event, ctx);
                    match until_deadline(deadline, reconcile::handler::handle(&self.reconcile, invocation)).await {
                        Some(Ok(ReconcileResponse::Stream(r))) => Outcome::Returned(
                            r.batch_item_failures.into_iter().map(|f| f.item_identifier.unwrap_or_default()).collect(),
                        ),
                        Some(Ok(other)) => anyhow::bail!("reconcile answered a stream batch with {other:?}"),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "reconcile failed a stream batch; the mapping retries it");
                            Outcome::FunctionError
                        }
                        None => {
                            tracing::warn!("{}; the mapping retries the batch", timed_out("reconcile"));
                            Outcome::FunctionError
                        }
                    }
                }
            };
            stats.failed_messages += match &outcome {
                Outcome::Returned(failed) => failed.len(),
                Outcome::FunctionError => batch.len(),
            };
            if let Some(gone) = shard.source.after(&outcome, sequence_number) {
                self.discard(shard, gone).await?;
            }
        }
        Ok(stats)
    }

    /// Sends the record of records `shard` gave up on to the on-failure destination; one that cannot be sent
    /// is kept, and sent before anything newer of the shard (the error is the pump's, retried by its caller).
    async fn discard(&self, shard: &mut StreamShard, gone: Discarded<Value>) -> Result<()> {
        if let Err(e) = self.send_on_failure(&shard.id, &gone).await {
            shard.unsent = Some(gone);
            return Err(e);
        }
        Ok(())
    }

    /// What Lambda sends the on-failure destination for records of a stream it gave up on: metadata only
    /// (Lambda developer guide, "Error handling for DynamoDB", the example invocation record; "The actual
    /// records aren't included"). `functionError` only for a function that failed: a partial batch response
    /// is a returned function (the guide's example shows "Unhandled" and does not say).
    async fn send_on_failure(&self, shard_id: &str, gone: &Discarded<Value>) -> Result<()> {
        let arrival = |r: Option<&Value>| {
            let secs = r.and_then(|r| r["dynamodb"]["ApproximateCreationDateTime"].as_i64()).unwrap_or(0);
            shared::domain::time::rfc3339_ms(secs * 1000).replace(".000Z", "Z")
        };
        let mut response = json!({"statusCode": 200, "executedVersion": "$LATEST"});
        if gone.function_error {
            response["functionError"] = json!("Unhandled");
        }
        let record = json!({
            "requestContext": {
                "requestId": format!("local-{}-{}", std::process::id(), self.invocation.fetch_add(1, Ordering::Relaxed)),
                "functionArn": self.reconcile_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": gone.invocations,
            },
            "responseContext": response,
            "version": "1.0",
            "timestamp": shared::domain::time::rfc3339_ms(shared::domain::time::now_ms()),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": gone.records.first().map(sequence_number),
                "endSequenceNumber": gone.records.last().map(sequence_number),
                "approximateArrivalOfFirstRecord": arrival(gone.records.first()),
                "approximateArrivalOfLastRecord": arrival(gone.records.last()),
                "batchSize": gone.records.len(),
                "streamArn": self.stream_arn,
            }
        });
        tracing::warn!(records = gone.records.len(), "stream records discarded after the mapping's retries");
        if let Some(url) = &self.stream_on_failure {
            self.reconcile_sqs
                .send_message()
                .queue_url(url)
                .message_body(record.to_string())
                .send()
                .await
                .context("sending to the stream's on-failure destination")?;
        }
        self.stream_discards.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The schedule: one `reconcile` invocation with a Scheduled Event (`events/schedule/sweep.json`).
    pub async fn sweep(&self) -> Result<Value> {
        // The sample schedule event, for this stack's account and Region, now.
        let mut event: Value = serde_json::from_str(include_str!("../../events/schedule/sweep.json"))?;
        event["id"] = json!("local-sweep");
        event["account"] = json!(self.info.provider_account);
        event["region"] = json!(self.info.region);
        event["time"] = json!(shared::domain::time::rfc3339_ms(shared::domain::time::now_ms()));
        let event: ReconcileEvent = serde_json::from_value(event)?;
        let ctx = self.context("reconcile");
        let deadline = ctx.deadline;
        let response = until_deadline(
            deadline,
            reconcile::handler::handle(&self.reconcile, lambda_runtime::LambdaEvent::new(event, ctx)),
        )
        .await
        .ok_or_else(|| anyhow::anyhow!("reconcile sweep failed: {}", timed_out("reconcile")))?
        .map_err(|e| anyhow::anyhow!("reconcile sweep failed: {e}"))?;
        Ok(serde_json::to_value(response)?)
    }

    /// One `decide` invocation with up to the mapping's batch size of messages from the requests queue,
    /// as Lambda's SQS event source mapping does it (ReportBatchItemFailures: only successful messages
    /// are deleted; the rest come back after [`RUNNER_VISIBILITY_S`]).
    pub async fn pump_decide(&self, wait_seconds: i32) -> Result<PumpStats> {
        self.pump_queue(&self.requests, wait_seconds).await
    }

    /// One `decide` invocation with SNS's deliveries of its notifications, as [`Self::pump_decide`] does it
    /// for the requests: each marks the record it names `notified`.
    pub async fn pump_deliveries(&self, wait_seconds: i32) -> Result<PumpStats> {
        self.pump_queue(&self.deliveries, wait_seconds).await
    }

    async fn pump_queue(&self, source: &DecideQueue, wait_seconds: i32) -> Result<PumpStats> {
        let mut stats = PumpStats::default();
        let mut msgs = Vec::new();
        while (msgs.len() as i32) < source.batch_size {
            let want = (source.batch_size - msgs.len() as i32).min(10);
            let got = self
                .sqs
                .receive_message()
                .queue_url(&source.url)
                .max_number_of_messages(want)
                .wait_time_seconds(if msgs.is_empty() { wait_seconds } else { 0 })
                .visibility_timeout(RUNNER_VISIBILITY_S)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                .message_attribute_names("All")
                .send()
                .await;
            let got = match got {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) if msgs.is_empty() => return Err(e.into()),
                // A poller that failed to fill the batch invokes with what it received rather than leave
                // those messages invisible until their timeout: dropping them would spend a receive of each
                // (toward the dead-letter queue) for nothing. AWS does not document its poller's behaviour
                // here; losing received messages would be the only choice that could lose work.
                Err(e) => {
                    tracing::debug!(error = %e, "a receive failed; invoking with the batch so far");
                    break;
                }
            };
            if got.is_empty() {
                break;
            }
            msgs.extend(got);
        }
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
                r.event_source_arn = Some(source.arn.clone());
                for (k, v) in m.attributes().into_iter().flatten() {
                    r.attributes.insert(k.as_str().to_owned(), v.clone());
                }
                // Lambda's SQS event: each message attribute's stringValue and dataType (Lambda developer
                // guide, "Using Lambda with Amazon SQS", the example event).
                for (k, v) in m.message_attributes().into_iter().flatten() {
                    let mut a = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
                    a.string_value = v.string_value().map(str::to_owned);
                    a.data_type = Some(v.data_type().to_owned());
                    r.message_attributes.insert(k.clone(), a);
                }
                r
            })
            .collect();
        let mut event = SqsEvent::default();
        event.records = records;
        stats.invocations = 1;
        stats.messages = msgs.len();
        let batch: Vec<String> = msgs.iter().filter_map(|m| m.message_id().map(str::to_owned)).collect();
        let ctx = self.context("decide");
        let deadline = ctx.deadline;
        let failed: Vec<String> =
            match until_deadline(deadline, self.deps.handle(lambda_runtime::LambdaEvent::new(event, ctx))).await {
                Some(Ok(resp)) => {
                    returned_messages(&batch, resp.batch_item_failures.into_iter().map(|f| f.item_identifier).collect())
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "decide invocation failed; the whole batch returns to the queue");
                    batch.clone()
                }
                None => {
                    tracing::warn!("{}; the whole batch returns to the queue", timed_out("decide"));
                    batch.clone()
                }
            };
        stats.failed_messages = failed.len();
        self.decide_failures.fetch_add(failed.len(), Ordering::Relaxed);
        // The successful messages are deleted, ten to a DeleteMessageBatch call. A delete that fails (the
        // call, or one entry) leaves its message to come back after the visibility timeout, a duplicate
        // delivery that SQS's at-least-once delivery allows anyway; it does not stop the other deletes.
        let done: Vec<_> = msgs.iter().filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id())).collect();
        for chunk in done.chunks(10) {
            let entries = chunk.iter().enumerate().map(|(i, m)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
            });
            let out = self
                .sqs
                .delete_message_batch()
                .queue_url(&source.url)
                .set_entries(Some(entries.collect::<Result<Vec<_>, _>>()?))
                .send()
                .await;
            match out {
                Ok(out) if out.failed().is_empty() => {}
                Ok(out) => tracing::debug!(failed = out.failed().len(), "deletes failed; those messages come back"),
                Err(e) => tracing::debug!(error = %e, "a delete failed; its messages come back"),
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
                    self.pump_deliveries(0).await?;
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

/// Runs one invocation as Lambda runs it: ended at its context's deadline (`deadline_ms`, the function's
/// deployed Timeout from the invocation's start), which Lambda counts as a function error ("Task timed out
/// after N seconds"; Lambda developer guide, "Configure Lambda function timeout"): `None` then.
pub async fn until_deadline<F: std::future::Future>(deadline_ms: u64, invocation: F) -> Option<F::Output> {
    let left = deadline_ms.saturating_sub(u64::try_from(shared::domain::time::now_ms()).unwrap_or(0));
    tokio::time::timeout(Duration::from_millis(left), invocation).await.ok()
}

fn timed_out(function: &str) -> String {
    format!("{function} timed out at its deployed Timeout (Lambda ends the invocation: a function error)")
}

/// Which of a batch's messages go back to the queue, as Lambda reads a partial batch response (Lambda
/// developer guide, "Handling errors for an SQS event source in Lambda": "Lambda treats a batch as a
/// complete failure if your function returns ... An empty string itemIdentifier ... An itemIdentifier value
/// with a message ID that doesn't exist"): the messages the response names, or every message of the batch
/// when one identifier is empty or names none of them.
pub fn returned_messages(batch: &[String], failures: Vec<String>) -> Vec<String> {
    if failures.iter().any(|f| f.is_empty() || !batch.contains(f)) {
        return batch.to_vec();
    }
    failures
}

/// A Lambda stream record's sequence number (its `batchItemFailures` item identifier).
fn sequence_number(r: &Value) -> String {
    r["dynamodb"]["SequenceNumber"].as_str().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_partial_batch_response_returns_what_it_names_or_the_whole_batch_when_it_names_nothing_of_it() {
        let batch = ids(&["m1", "m2", "m3"]);
        assert_eq!(returned_messages(&batch, ids(&["m2"])), ids(&["m2"]));
        assert_eq!(returned_messages(&batch, vec![]), Vec::<String>::new());
        // Lambda treats these as a complete failure: every message comes back.
        assert_eq!(returned_messages(&batch, ids(&["m2", ""])), batch);
        assert_eq!(returned_messages(&batch, ids(&["m9"])), batch);
    }

    #[tokio::test]
    async fn an_invocation_is_ended_at_its_deadline_and_one_that_answers_in_time_is_not() {
        let now = u64::try_from(shared::domain::time::now_ms()).unwrap();
        let hung = until_deadline(now + 50, std::future::pending::<()>());
        assert_eq!(tokio::time::timeout(Duration::from_secs(10), hung).await, Ok(None), "ended at the deadline");
        assert_eq!(until_deadline(now + 5_000, async { 7 }).await, Some(7));
        assert_eq!(until_deadline(now.saturating_sub(1), std::future::pending::<()>()).await, None, "already past");
    }
}
