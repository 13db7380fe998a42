//! Configuration, read once at start.

use std::collections::BTreeSet;

pub use shared::config::ConfigError;
use shared::config::{flag, managed_services, required};
use shared::domain::{Region, ServiceId};

#[derive(Debug, Clone)]
pub struct Config {
    /// `BUS_NAME`
    pub bus_name: String,
    /// `ALLOWLIST_TABLE`: read by the sweep to find `available` connections to revoke.
    pub allowlist_table: String,
    /// `DECISIONS_TABLE`: the sweep finds decisions still owed their end in its `owed` index.
    pub decisions_table: String,
    /// `MANAGED_SERVICES`
    pub managed: BTreeSet<ServiceId>,
    /// `REVOKE_ON_REMOVAL` (default false)
    pub revoke: bool,
    /// `AWS_REGION`
    pub home_region: Region,
    /// `SWEEP_INTERVAL_MINUTES` (default 5): a connection pending longer than three sweeps is overdue.
    pub sweep_interval_s: i64,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            bus_name: required(&get, "BUS_NAME")?,
            allowlist_table: required(&get, "ALLOWLIST_TABLE")?,
            decisions_table: required(&get, "DECISIONS_TABLE")?,
            managed: managed_services(&required(&get, "MANAGED_SERVICES")?)?,
            revoke: flag(&get, "REVOKE_ON_REMOVAL", false)?,
            home_region: Region::parse(&required(&get, "AWS_REGION")?)
                .map_err(|e| ConfigError(format!("AWS_REGION: {e}")))?,
            sweep_interval_s: match get("SWEEP_INTERVAL_MINUTES").as_deref().map(str::trim) {
                None | Some("") => 300,
                Some(v) => v
                    .parse::<i64>()
                    .ok()
                    .filter(|m| (1..=1440).contains(m))
                    .map(|m| m * 60)
                    .ok_or_else(|| ConfigError(format!("SWEEP_INTERVAL_MINUTES must be 1..=1440, not {v:?}")))?,
            },
        })
    }
}
