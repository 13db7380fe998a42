//! The Connection Request event as `decide` receives it (an SQS body): any bytes. It never panics, and
//! what it accepts names well-formed IDs and survives a round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::domain::request::{DETAIL_TYPE, SOURCE, parse_event};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    let Ok(request) = parse_event(body) else { return };
    let service = request.service_id.as_str();
    let endpoint = request.endpoint_id.as_str();
    assert!(service.starts_with("vpce-svc-") && service.is_ascii(), "{service:?}");
    assert!(endpoint.starts_with("vpce-") && !endpoint.starts_with("vpce-svc-") && endpoint.is_ascii(), "{endpoint:?}");
    let again = serde_json::json!({"source": SOURCE, "detail-type": DETAIL_TYPE, "detail": request}).to_string();
    assert_eq!(parse_event(&again).ok(), Some(request));
});
