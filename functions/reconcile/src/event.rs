//! What `reconcile` is invoked with: the schedule's event or a batch of the allowlist's stream, each
//! read by serde into its `aws_lambda_events` type (the runtime deserialises the payload into
//! [`ReconcileEvent`]), and what it answers.

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use serde::{Deserialize, Serialize};

/// The two sources of `reconcile`. Untagged: a stream batch is `{"Records": [...]}` whose records all
/// come from `aws:dynamodb`; a schedule is an EventBridge event whose `source` is `aws.events` and
/// whose `detail-type` is `Scheduled Event`. Anything else is refused by the runtime before the
/// handler runs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged, expecting = "a DynamoDB stream batch or an EventBridge Scheduled Event")]
pub enum ReconcileEvent {
    Stream(DynamoDbStream),
    Schedule(Box<Scheduled>),
}

/// A batch of the allowlist's DynamoDB stream.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "StreamEvent", into = "StreamEvent")]
pub struct DynamoDbStream(pub StreamEvent);

impl TryFrom<StreamEvent> for DynamoDbStream {
    type Error = String;

    fn try_from(event: StreamEvent) -> Result<Self, String> {
        match event.records.iter().find(|r| r.event_source.as_deref() != Some("aws:dynamodb")) {
            Some(r) => Err(format!("record {} is not from aws:dynamodb", r.event_id)),
            None => Ok(Self(event)),
        }
    }
}

impl From<DynamoDbStream> for StreamEvent {
    fn from(s: DynamoDbStream) -> Self {
        s.0
    }
}

/// The schedule's event (EventBridge Scheduler and EventBridge rules send the same shape).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "EventBridgeEvent", into = "EventBridgeEvent")]
pub struct Scheduled(pub EventBridgeEvent);

impl TryFrom<EventBridgeEvent> for Scheduled {
    type Error = String;

    fn try_from(event: EventBridgeEvent) -> Result<Self, String> {
        if event.source == "aws.events" && event.detail_type == "Scheduled Event" {
            Ok(Self(event))
        } else {
            Err(format!("not a Scheduled Event: {} from {}", event.detail_type, event.source))
        }
    }
}

impl From<Scheduled> for EventBridgeEvent {
    fn from(s: Scheduled) -> Self {
        s.0
    }
}

/// What `reconcile` answers: the stream's partial batch failures, or how many requests a sweep emitted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ReconcileResponse {
    Stream(DynamoDbEventResponse),
    Sweep { requests: usize },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stream_record(source: &str) -> serde_json::Value {
        json!({
            "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": source,
            "awsRegion": "us-east-1",
            "dynamodb": {
                "Keys": {"service_id": {"S": "*"}, "principal": {"S": "arn:aws:iam::111111111111:root"}},
                "SequenceNumber": "100", "SizeBytes": 26, "StreamViewType": "NEW_AND_OLD_IMAGES"
            },
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:111111111111:table/a/stream/2024-01-01T00:00:00.000"
        })
    }

    #[test]
    fn when_the_payload_is_a_stream_batch_should_read_a_stream_event() {
        let ev: ReconcileEvent = serde_json::from_value(json!({"Records": [stream_record("aws:dynamodb")]})).unwrap();
        let ReconcileEvent::Stream(DynamoDbStream(s)) = ev else { panic!("{ev:?}") };
        assert_eq!(s.records.len(), 1);
    }

    #[test]
    fn when_the_payload_is_a_scheduled_event_should_read_a_schedule() {
        let ev: ReconcileEvent = serde_json::from_value(json!({
            "version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "111111111111", "time": "2024-01-01T00:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {}
        }))
        .unwrap();
        assert!(matches!(ev, ReconcileEvent::Schedule(_)), "{ev:?}");
    }

    #[test]
    fn when_the_payload_is_neither_should_be_refused() {
        for bad in [
            json!({}),
            json!({"Records": [stream_record("aws:kinesis")]}),
            json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {}}),
            json!({"detail-type": "Scheduled Event", "source": "com.example", "detail": {}}),
            json!({"Records": [{"Sns": {}}]}),
        ] {
            let err = serde_json::from_value::<ReconcileEvent>(bad.clone()).unwrap_err();
            assert!(err.to_string().contains("Scheduled Event"), "{bad}: {err}");
        }
    }
}
