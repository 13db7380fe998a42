//! The principal normaliser (account IDs and IAM ARNs): any text. What it accepts is 12 ASCII digits
//! taken from the text itself, and only in the documented forms.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::domain::principal::{PARTITIONS, normalise};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(account) = normalise(raw) else { return };
    let a = account.as_str();
    assert!(a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()), "{a:?}");
    if raw.starts_with("arn:") {
        let partition = raw.split(':').nth(1).unwrap_or_default();
        assert!(PARTITIONS.contains(&partition), "{raw:?}");
        assert!(raw.contains(&format!(":iam::{a}:")), "{raw:?}");
    } else {
        assert_eq!(raw, a);
    }
});
