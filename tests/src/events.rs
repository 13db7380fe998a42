//! Lambda's event shapes for what the local wiring reads from AWS.

use serde_json::{Value, json};

/// (event, endpoint ID, SNS message ID) of a connection notification, from the `Sns` part of Lambda's
/// SNS event record.
pub fn notification_event(sns: &Value) -> Option<(String, String, String)> {
    let inner: Value = serde_json::from_str(sns.get("Message")?.as_str()?).ok()?;
    Some((
        inner.get("connectionEvent")?.as_str()?.to_owned(),
        inner.get("vpcEndpointId")?.as_str()?.to_owned(),
        sns.get("MessageId")?.as_str()?.to_owned(),
    ))
}

/// DynamoDB JSON for an attribute value.
fn ddb_json(v: &aws_sdk_dynamodbstreams::types::AttributeValue) -> Value {
    use aws_sdk_dynamodbstreams::types::AttributeValue as A;
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

fn image(m: Option<&std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>) -> Value {
    m.map(|m| m.iter().map(|(k, v)| (k.clone(), ddb_json(v))).collect::<serde_json::Map<_, _>>().into())
        .unwrap_or_else(|| json!({}))
}

/// Lambda's DynamoDB stream record for a GetRecords record.
pub fn stream_record(r: &aws_sdk_dynamodbstreams::types::Record, region: &str, stream_arn: &str) -> Value {
    let d = r.dynamodb();
    json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|e| e.as_str()),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "eventSourceARN": stream_arn,
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
