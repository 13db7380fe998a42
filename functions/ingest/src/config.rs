//! Configuration, read once at start.

use std::collections::BTreeSet;

pub use shared::config::ConfigError;
use shared::config::{managed_services, required};
use shared::domain::ServiceId;

#[derive(Debug, Clone)]
pub struct Config {
    /// `BUS_NAME`: the gatekeeper event bus.
    pub bus_name: String,
    /// `MANAGED_SERVICES`: comma-separated endpoint service IDs.
    pub managed: BTreeSet<ServiceId>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            bus_name: required(&get, "BUS_NAME")?,
            managed: managed_services(&required(&get, "MANAGED_SERVICES")?)?,
        })
    }
}
