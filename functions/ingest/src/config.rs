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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| map.get(k).cloned()
    }

    const BASE: [(&str, &str); 2] =
        [("BUS_NAME", "gatekeeper"), ("MANAGED_SERVICES", "vpce-svc-0123456789abcdef0, vpce-svc-01234567")];

    #[test]
    fn reads_a_complete_environment() {
        let c = Config::from_lookup(env(&BASE)).unwrap();
        assert_eq!(c.bus_name, "gatekeeper");
        assert_eq!(
            c.managed.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["vpce-svc-01234567", "vpce-svc-0123456789abcdef0"]
        );
    }

    #[test]
    fn fails_fast_naming_the_variable() {
        for missing in 0..BASE.len() {
            let mut partial = BASE.to_vec();
            let (key, _) = partial.remove(missing);
            let err = Config::from_lookup(env(&partial)).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
            // Set but blank is the same as missing.
            partial.push((key, "  "));
            let err = Config::from_lookup(env(&partial)).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        for bad in ["svc-1", "vpce-svc-0123456789abcdef0,nope", ","] {
            let err = Config::from_lookup(env(&[BASE[0], ("MANAGED_SERVICES", bad)])).unwrap_err().to_string();
            assert!(err.contains("MANAGED_SERVICES"), "{bad}: {err}");
        }
    }
}
