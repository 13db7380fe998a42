//! Instants as text: RFC 3339 rendering for records and notifications, and the durations and dates the
//! CLI reads. The calendar is `jiff`'s.

use jiff::SignedDuration;
use jiff::civil::DateTime;

/// The Unix epoch as a civil (UTC) date-time. The arithmetic is civil, not `jiff::Timestamp`, so the
/// whole of the years 0000..=9999 is in range (a timestamp stops a day short of 9999-12-31).
const EPOCH: DateTime = DateTime::constant(1970, 1, 1, 0, 0, 0, 0);

/// Renders epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC). An instant outside the years
/// -9999..=9999 (jiff's range; no record holds one) renders as its number of milliseconds.
pub fn rfc3339_ms(epoch_ms: i64) -> String {
    match EPOCH.checked_add(SignedDuration::from_millis(epoch_ms)) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => format!("{epoch_ms} ms after 1970-01-01T00:00:00Z"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither a duration (30m, 12h, 7d, 2w) nor a date (2026-12-31 or 2026-12-31T18:00:00Z)")]
pub struct TimeError(pub String);

/// Parses a duration such as `90s`, `30m`, `12h`, `7d`, `2w` into seconds.
pub fn parse_duration(s: &str) -> Result<i64, TimeError> {
    let err = || TimeError(s.chars().take(40).collect());
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?);
    let n: i64 = num.parse().map_err(|_| err())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(err()),
    };
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(err)
}

/// Parses `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` into epoch seconds.
pub fn parse_date(s: &str) -> Result<i64, TimeError> {
    let err = || TimeError(s.chars().take(40).collect());
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimeError> {
        let part = s.get(r).ok_or_else(err)?;
        if part.bytes().all(|c| c.is_ascii_digit()) { part.parse().map_err(|_| err()) } else { Err(err()) }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(err());
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = if b.len() > 10 {
        if b.len() != 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
            return Err(err());
        }
        (num(11..13)?, num(14..16)?, num(17..19)?)
    } else {
        (0, 0, 0)
    };
    let small = |v: i64| i8::try_from(v).map_err(|_| err());
    // jiff refuses a day the month does not have (2026-02-30), hour 24 and second 60.
    let at = DateTime::new(
        i16::try_from(y).map_err(|_| err())?,
        small(m)?,
        small(d)?,
        small(hh)?,
        small(mm)?,
        small(ss)?,
        0,
    )
    .map_err(|_| err())?;
    Ok(at.duration_since(EPOCH).as_secs())
}

/// A point in time given as a duration from `now` (epoch seconds) or as a date.
pub fn parse_when(s: &str, now: i64, forward: bool) -> Result<i64, TimeError> {
    match parse_duration(s) {
        Ok(d) => Ok(if forward { now + d } else { now - d }),
        Err(_) => parse_date(s),
    }
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How long until `margin_ms` before an invocation's deadline (`deadline_ms`, Lambda's, in ms since the
/// epoch; 0 when unknown, then `None`); zero when that has passed.
pub fn time_left(deadline_ms: u64, now_ms: i64, margin_ms: i64) -> Option<std::time::Duration> {
    let deadline = i64::try_from(deadline_ms).ok().filter(|d| *d > 0)?;
    Some(std::time::Duration::from_millis(u64::try_from(deadline - now_ms - margin_ms).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_dates() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("2w"), Ok(1_209_600));
        assert!(parse_duration("0d").is_err() && parse_duration("d").is_err() && parse_duration("5y").is_err());
        assert_eq!(parse_date("2026-11-23"), Ok(1_795_392_000));
        assert_eq!(parse_date("2026-11-23T12:00:00Z"), Ok(1_795_435_200));
        assert_eq!(parse_date("2024-02-29"), Ok(1_709_164_800));
        for bad in [
            "2026-02-30",
            "2025-02-29",
            "2026-13-01",
            "26-11-23",
            "2026-11-23T25:00:00Z",
            "2026-11-23T23:59:60Z",
            "2026-11-23 12:00",
            "2026-11-23T12:00:00+01:00",
            "+02026-11-23",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_when("1d", 100, false), Ok(100 - 86_400));
    }

    proptest::proptest! {
        /// What `rfc3339_ms` renders (to the second), `parse_date` reads back, for years 0000 to 9999.
        #[test]
        fn rendered_instants_read_back(secs in -62_167_219_200i64..253_402_300_800) {
            let text = rfc3339_ms(secs * 1000);
            let whole = format!("{}Z", &text[..19]);
            proptest::prop_assert_eq!(parse_date(&whole), Ok(secs), "{}", text);
        }
    }

    #[test]
    fn renders_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_795_435_200_000), "2026-11-23T12:00:00.000Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert!(rfc3339_ms(i64::MAX).starts_with("9223372036854775807 ms"));
    }
}
