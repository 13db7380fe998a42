//! The times the CLI accepts and shows. What it accepts is bounded, at most [`HORIZON_YEARS`] from now,
//! so nothing it writes overflows when it is read back; what it shows renders for any stored number.

use shared::domain::time::{parse_date, parse_duration, rfc3339_ms};

use crate::context::CliError;

/// How far from now a time given to the CLI may be.
pub const HORIZON_YEARS: i64 = 100;
/// [`HORIZON_YEARS`] in seconds (years of 365.25 days).
const HORIZON_S: i64 = HORIZON_YEARS * 31_557_600;

/// The instants that render as dates `parse_date` reads back: years 0000 to 9999.
const FIRST_DATE: i64 = -62_167_219_200;
const LAST_DATE: i64 = 253_402_300_799;

#[derive(Clone, Copy)]
enum Direction {
    Ahead,
    Back,
}

impl Direction {
    fn word(self) -> &'static str {
        match self {
            Self::Ahead => "ahead",
            Self::Back => "back",
        }
    }
}

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(e.to_string())
}

fn too_far(flag: &str, raw: &str, dir: Direction) -> CliError {
    usage(format!("{flag} {raw} is more than {HORIZON_YEARS} years {}", dir.word()))
}

/// Whether `raw` is written as a duration (digits and one unit), whatever its value.
fn duration_shaped(raw: &str) -> bool {
    let digits = raw.trim_end_matches(['s', 'm', 'h', 'd', 'w']);
    raw.len() == digits.len() + 1 && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A time given to `flag` as a duration from `now` (in `dir`) or as a date; at most the horizon away.
fn when(flag: &str, raw: &str, now: i64, dir: Direction) -> Result<i64, CliError> {
    let t = match parse_duration(raw) {
        Ok(d) => match dir {
            Direction::Ahead => now.saturating_add(d),
            Direction::Back => now.saturating_sub(d),
        },
        Err(_) if duration_shaped(raw) && raw.trim_start_matches('0').len() == 1 => {
            return Err(usage(format!("{flag} {raw}: a duration must be more than 0")));
        }
        Err(_) if duration_shaped(raw) => return Err(too_far(flag, raw, dir)),
        Err(e) => parse_date(raw).map_err(|_| usage(format!("{flag}: {e}")))?,
    };
    let (lo, hi) = (now.saturating_sub(HORIZON_S), now.saturating_add(HORIZON_S));
    match dir {
        Direction::Ahead if t > hi => Err(too_far(flag, raw, dir)),
        Direction::Back if t < lo => Err(too_far(flag, raw, dir)),
        _ => Ok(t),
    }
}

/// An expiry (`--expires`): in the future, at most [`HORIZON_YEARS`] ahead. Epoch seconds.
pub fn expiry(flag: &str, raw: &str, now: i64) -> Result<i64, CliError> {
    let t = when(flag, raw, now, Direction::Ahead)?;
    if t <= now {
        return Err(usage(format!("{flag} {raw} is not in the future")));
    }
    Ok(t)
}

/// The start of a window into the past (`--since`): not in the future, at most [`HORIZON_YEARS`] back.
pub fn since(flag: &str, raw: &str, now: i64) -> Result<i64, CliError> {
    let t = when(flag, raw, now, Direction::Back)?;
    if t > now {
        return Err(usage(format!("{flag} {raw} is in the future")));
    }
    Ok(t)
}

/// An allowlist file's `expires`: a date, at most [`HORIZON_YEARS`] ahead (a past one is kept: an
/// expired entry exports and imports as it is).
pub fn file_expiry(raw: &str, now: i64) -> Result<i64, String> {
    let t = parse_date(raw).map_err(|e| e.to_string())?;
    if t > now.saturating_add(HORIZON_S) {
        return Err(format!("expires {raw} is more than {HORIZON_YEARS} years ahead"));
    }
    Ok(t)
}

/// `2026-12-31 18:00:00Z` for people; a stored number no date can show is shown as itself.
pub fn shown(epoch_s: i64) -> String {
    if (FIRST_DATE..=LAST_DATE).contains(&epoch_s) {
        rfc3339_ms(epoch_s * 1000)[..19].replace('T', " ") + "Z"
    } else {
        epoch_s.to_string()
    }
}

/// [`shown`] for epoch milliseconds, without the zone (the decision tables' columns).
pub fn shown_ms(epoch_ms: i64) -> String {
    let s = epoch_ms.div_euclid(1000);
    if (FIRST_DATE..=LAST_DATE).contains(&s) {
        rfc3339_ms(epoch_ms)[..19].replace('T', " ")
    } else {
        epoch_ms.to_string()
    }
}

/// `2026-12-31T18:00:00Z`, as an allowlist file holds it (what `parse_date` reads); a stored number no
/// date can show is written as itself, which `import` then refuses with a clear error.
pub fn file_date(epoch_s: i64) -> String {
    if (FIRST_DATE..=LAST_DATE).contains(&epoch_s) {
        format!("{}Z", &rfc3339_ms(epoch_s * 1000)[..19])
    } else {
        epoch_s.to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const NOW: i64 = 1_790_000_000; // 2026-09-21

    fn refused(r: Result<i64, CliError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.exit_code(), 252, "{e}");
        e.to_string()
    }

    #[test]
    fn when_an_expiry_is_beyond_the_horizon_should_refuse_it_naming_the_flag() {
        assert_eq!(expiry("--expires", "30d", NOW).unwrap(), NOW + 30 * 86_400);
        assert_eq!(expiry("--expires", "36524d", NOW).unwrap(), NOW + 36_524 * 86_400);
        assert_eq!(expiry("--expires", "2030-01-01", NOW).unwrap(), 1_893_456_000);
        for too_far in [
            "200000000000d",
            "36526d",
            "5218w",
            "106751991167300d", // overflows `now + d` in the shared parser
            "99999999999999999999999999d",
            "9999-12-31",
            "2200-01-01T00:00:00Z",
        ] {
            let e = refused(expiry("--expires", too_far, NOW));
            assert!(e.contains("--expires") && e.contains("more than 100 years ahead"), "{too_far}: {e}");
        }
        assert!(refused(expiry("--expires", "2001-01-01", NOW)).contains("--expires 2001-01-01 is not in the future"));
        assert!(refused(expiry("--expires", "0d", NOW)).contains("more than 0"));
        assert!(refused(expiry("--expires", "soon", NOW)).starts_with("--expires: \"soon\" is neither"));
    }

    #[test]
    fn when_a_since_is_beyond_the_horizon_or_ahead_should_refuse_it_naming_the_flag() {
        assert_eq!(since("--since", "1d", NOW).unwrap(), NOW - 86_400);
        assert_eq!(since("--since", "2026-01-01", NOW).unwrap(), 1_767_225_600);
        for too_far in ["200000000000d", "106751991167300d", "0001-01-01"] {
            let e = refused(since("--since", too_far, NOW));
            assert!(e.contains("--since") && e.contains("more than 100 years back"), "{too_far}: {e}");
        }
        assert!(refused(since("--since", "2030-01-01", NOW)).contains("in the future"));
    }

    #[test]
    fn when_a_file_expiry_is_beyond_the_horizon_should_refuse_it() {
        assert_eq!(file_expiry("2001-01-01", NOW).unwrap(), 978_307_200, "a past expiry is kept");
        assert!(file_expiry("2200-01-01", NOW).unwrap_err().contains("more than 100 years ahead"));
    }

    #[test]
    fn any_stored_number_should_render_without_panicking() {
        assert_eq!(shown(1_893_456_000), "2030-01-01 00:00:00Z");
        assert_eq!(file_date(1_893_456_000), "2030-01-01T00:00:00Z");
        assert_eq!(parse_date(&file_date(LAST_DATE)).unwrap(), LAST_DATE);
        assert_eq!(parse_date(&file_date(FIRST_DATE)).unwrap(), FIRST_DATE);
        for n in [i64::MAX, i64::MIN, 17_280_000_000_000_000, LAST_DATE + 1, FIRST_DATE - 1] {
            assert_eq!(shown(n), n.to_string());
            assert_eq!(file_date(n), n.to_string());
        }
        assert_eq!(shown_ms(i64::MAX), i64::MAX.to_string());
        assert_eq!(shown_ms(1_893_456_000_123), "2030-01-01 00:00:00");
    }
}
