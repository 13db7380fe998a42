//! The SNS message of a connection notification: undocumented, so any bytes. It never panics, and every
//! ID it reports is one the message itself contains.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::domain::notice::parse_notice;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = std::str::from_utf8(data) else { return };
    let notice = parse_notice(message);
    // JSON escapes (\u0076pce-...) can spell an ID the raw text does not contain: compare with both.
    let decoded = serde_json::from_str::<serde_json::Value>(message).map(|v| v.to_string()).unwrap_or_default();
    let contained = |id: &str| message.contains(id) || decoded.contains(id);
    if let Some(s) = &notice.service {
        assert!(contained(s.as_str()), "service {s} is not in the message");
    }
    if let Some(e) = &notice.endpoint {
        assert!(contained(e.as_str()), "endpoint {e} is not in the message");
        assert!(!e.as_str().starts_with("vpce-svc-"));
    }
});
