//! EventBridge: producers put Connection Request events on the gatekeeper bus.

use std::time::Duration;

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::{bad_data, classify};
use crate::domain::ConnectionRequest;
use crate::domain::request::{DETAIL_TYPE, SOURCE};
use crate::ports::{ErrorKind, PortError, PortResult, RequestBus};

/// PutEvents takes at most 10 entries.
const ENTRIES_PER_CALL: usize = 10;
/// Attempts for entries that PutEvents reports as failed (the SDK already retries whole-call failures).
const ATTEMPTS: u32 = 4;
/// The entry error codes EventBridge names as not retryable (API reference, `PutEventsResultEntry`:
/// "Non-retryable errors include: AccessDeniedException, InvalidAccountIdException, InvalidArgument,
/// MalformedDetail, RedactionFailure, NotAuthorizedForSourceException, NotAuthorizedForDetailTypeException").
/// An entry failing so is not sent again: the put fails at once as refused for good. Any other code
/// (`InternalFailure`, `ThrottlingException`, the two it names as retryable, or one it does not name) is
/// retried.
const NOT_RETRYABLE: &[&str] = &[
    "AccessDeniedException",
    "InvalidAccountIdException",
    "InvalidArgument",
    "MalformedDetail",
    "RedactionFailure",
    "NotAuthorizedForSourceException",
    "NotAuthorizedForDetailTypeException",
];

#[derive(Clone, Debug)]
pub struct EventBridgeBus {
    client: Client,
    bus_name: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus_name: impl Into<String>) -> Self {
        Self { client, bus_name: bus_name.into() }
    }

    fn entry(&self, r: &ConnectionRequest) -> PortResult<PutEventsRequestEntry> {
        let detail = serde_json::to_string(r).map_err(|e| bad_data("events", "PutEvents", e.to_string()))?;
        Ok(PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus_name)
            .source(SOURCE)
            .detail_type(DETAIL_TYPE)
            .resources(format!("endpoint/{}", r.endpoint_id))
            .detail(detail)
            .build())
    }
}

impl RequestBus for EventBridgeBus {
    async fn put(&self, requests: &[ConnectionRequest]) -> PortResult<()> {
        for chunk in requests.chunks(ENTRIES_PER_CALL) {
            let mut pending: Vec<PutEventsRequestEntry> =
                chunk.iter().map(|r| self.entry(r)).collect::<Result<_, _>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                attempt += 1;
                let out = self
                    .client
                    .put_events()
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(|e| classify("events", "PutEvents", e))?;
                // Results come back in the order of the entries; a failed one carries an error code. An answer
                // that does not account for every entry (fewer results, or more failures counted than carry a
                // code; the API reference describes neither) tells nothing of which were put: all are sent
                // again (a request delivered twice is decided once).
                let coded = out.entries().iter().filter(|r| r.error_code().is_some()).count();
                let accounted = out.entries().len() == pending.len()
                    && usize::try_from(out.failed_entry_count()).is_ok_and(|n| n <= coded);
                let failed: Vec<(PutEventsRequestEntry, String)> = if accounted {
                    pending
                        .into_iter()
                        .zip(out.entries())
                        .filter_map(|(entry, res)| res.error_code().map(|c| (entry, c.to_owned())))
                        .collect()
                } else if let Some(code) =
                    out.entries().iter().filter_map(|r| r.error_code()).find(|c| NOT_RETRYABLE.contains(c))
                {
                    // Whatever else the answer leaves out, EventBridge named a refusal for good.
                    return Err(PortError {
                        service: "events",
                        operation: "PutEvents",
                        kind: ErrorKind::Permanent,
                        code: code.to_owned(),
                        message: format!(
                            "EventBridge names {code} as not retryable, in an answer with {} results for {} entries",
                            out.entries().len(),
                            pending.len()
                        ),
                    });
                } else {
                    tracing::warn!(
                        sent = pending.len(),
                        results = out.entries().len(),
                        failed = out.failed_entry_count(),
                        "PutEvents answered without accounting for every entry; sending them all again"
                    );
                    pending.into_iter().map(|entry| (entry, "UnaccountedEntries".to_owned())).collect()
                };
                if failed.is_empty() {
                    break;
                }
                if let Some((_, code)) = failed.iter().find(|(_, c)| NOT_RETRYABLE.contains(&c.as_str())) {
                    return Err(PortError {
                        service: "events",
                        operation: "PutEvents",
                        kind: ErrorKind::Permanent,
                        code: code.clone(),
                        message: format!(
                            "{} of {} entries failed; EventBridge names {code} as not retryable",
                            failed.len(),
                            chunk.len()
                        ),
                    });
                }
                if attempt >= ATTEMPTS {
                    return Err(PortError {
                        service: "events",
                        operation: "PutEvents",
                        kind: ErrorKind::Retryable,
                        code: failed[0].1.clone(),
                        message: format!("{} entries still failing after {ATTEMPTS} attempts", failed.len()),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                pending = failed.into_iter().map(|(e, _)| e).collect();
            }
        }
        Ok(())
    }
}
