//! SNS: one message per decision, with attributes for subscription filter policies.

use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};

use super::classify;
use crate::domain::record::Announcement;
use crate::ports::{Notifier, PortResult};

#[derive(Clone, Debug)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    /// Takes the client as configured, and forbids its retries of a publish that may have gone out.
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        let config = client.config().to_builder().retry_classifier(NoRetryWhenUncertain).build();
        Self { client: Client::from_conf(config), topic_arn: topic_arn.into() }
    }
}

/// A publish is not idempotent (a standard topic has no deduplication): repeating one whose request may
/// have reached SNS, because the connection dropped, the call timed out or the answer was unreadable,
/// can deliver the notification twice. The SDK retries those by default; this classifier forbids it, so
/// the failure reaches `decide` as [`crate::ports::ErrorKind::Uncertain`], which never publishes again.
/// Throttling and 5xx answers (the message was refused) are still retried.
#[derive(Debug)]
pub struct NoRetryWhenUncertain;

impl ClassifyRetry for NoRetryWhenUncertain {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match ctx.output_or_error() {
            Some(Err(e)) if e.is_timeout_error() || e.is_response_error() => RetryAction::RetryForbidden,
            Some(Err(e)) if e.as_connector_error().is_some_and(|c| !c.is_user()) => RetryAction::RetryForbidden,
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "NoRetryWhenUncertain (SNS Publish)"
    }
}

impl Notifier for SnsNotifier {
    async fn notify(&self, n: &Announcement) -> PortResult<()> {
        let mut req = self.client.publish().topic_arn(&self.topic_arn).subject(&n.subject).message(&n.body);
        for (name, value) in &n.attributes {
            let attr = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| super::bad_data("sns", "Publish", e.to_string()))?;
            req = req.message_attributes(*name, attr);
        }
        req.send().await.map_err(|e| classify("sns", "Publish", e))?;
        Ok(())
    }
}
