//! SNS: one message per decision, with attributes for subscription filter policies.

use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;

use super::classify;
use crate::domain::record::Notification;
use crate::ports::{Notifier, PortResult};

#[derive(Clone, Debug)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self { client, topic_arn: topic_arn.into() }
    }
}

impl Notifier for SnsNotifier {
    async fn notify(&self, n: &Notification) -> PortResult<()> {
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
