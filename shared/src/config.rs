//! Configuration helpers every function shares: the same variables mean the same thing everywhere.

use std::collections::BTreeSet;

use crate::domain::ServiceId;

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// Parses `MANAGED_SERVICES`: comma-separated endpoint service IDs, at least one.
pub fn managed_services(raw: &str) -> Result<BTreeSet<ServiceId>, ConfigError> {
    let set = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| ServiceId::parse(s).map_err(|e| ConfigError(format!("MANAGED_SERVICES: {e}"))))
        .collect::<Result<BTreeSet<_>, _>>()?;
    if set.is_empty() {
        return Err(ConfigError("MANAGED_SERVICES names no service".into()));
    }
    Ok(set)
}

/// A required variable, non-empty.
pub fn required(get: &impl Fn(&str) -> Option<String>, key: &str) -> Result<String, ConfigError> {
    get(key).filter(|v| !v.trim().is_empty()).ok_or_else(|| ConfigError(format!("{key} is not set")))
}

/// A `true`/`false` variable (absent or empty: `default`).
pub fn flag(get: &impl Fn(&str) -> Option<String>, key: &str, default: bool) -> Result<bool, ConfigError> {
    match get(key).as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(ConfigError(format!("{key} must be true or false, not {other:?}"))),
    }
}

/// A whole number in `range` (absent or empty: `default`); the error names the variable and the range.
pub fn bounded(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ConfigError> {
    match get(key).as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| ConfigError(format!("{key} must be {}..={}, not {v:?}", range.start(), range.end()))),
    }
}
