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
    /// `MANAGE_ALLOWED_PRINCIPALS` (default false): the services' allowed principals follow the allowlist.
    pub manage_principals: bool,
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
            manage_principals: flag(&get, "MANAGE_ALLOWED_PRINCIPALS", false)?,
            home_region: Region::parse(&required(&get, "AWS_REGION")?)
                .map_err(|e| ConfigError(format!("AWS_REGION: {e}")))?,
            sweep_interval_s: shared::config::bounded(&get, "SWEEP_INTERVAL_MINUTES", 5, 1..=1440)? * 60,
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

    const BASE: [(&str, &str); 5] = [
        ("BUS_NAME", "gatekeeper"),
        ("ALLOWLIST_TABLE", "allow"),
        ("DECISIONS_TABLE", "decisions"),
        ("MANAGED_SERVICES", "vpce-svc-0123456789abcdef0"),
        ("AWS_REGION", "eu-west-1"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut pairs = BASE.to_vec();
        pairs.extend_from_slice(extra);
        pairs
    }

    #[test]
    fn reads_a_complete_environment() {
        let c = Config::from_lookup(env(&BASE)).unwrap();
        assert_eq!(
            (c.bus_name.as_str(), c.allowlist_table.as_str(), c.decisions_table.as_str()),
            ("gatekeeper", "allow", "decisions")
        );
        assert_eq!(c.managed.len(), 1);
        assert_eq!(c.home_region.to_string(), "eu-west-1");
        assert!(!c.revoke, "revocation is off by default");
        assert!(!c.manage_principals, "principal sync is off by default");
        assert_eq!(c.sweep_interval_s, 300);
        let c = Config::from_lookup(env(&with(&[
            ("REVOKE_ON_REMOVAL", "true"),
            ("SWEEP_INTERVAL_MINUTES", "15"),
            ("MANAGE_ALLOWED_PRINCIPALS", "true"),
        ])))
        .unwrap();
        assert!(c.revoke && c.manage_principals);
        assert_eq!(c.sweep_interval_s, 900);
    }

    #[test]
    fn fails_fast_naming_the_variable() {
        for missing in 0..BASE.len() {
            let mut partial = BASE.to_vec();
            let (key, _) = partial.remove(missing);
            let err = Config::from_lookup(env(&partial)).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let mut bad_region = BASE.to_vec();
        bad_region[4] = ("AWS_REGION", "Mars");
        let mut bad_services = BASE.to_vec();
        bad_services[3] = ("MANAGED_SERVICES", "svc-1");
        for (key, pairs) in [
            ("AWS_REGION", bad_region),
            ("MANAGED_SERVICES", bad_services),
            ("REVOKE_ON_REMOVAL", with(&[("REVOKE_ON_REMOVAL", "yes")])),
            ("MANAGE_ALLOWED_PRINCIPALS", with(&[("MANAGE_ALLOWED_PRINCIPALS", "1")])),
            ("SWEEP_INTERVAL_MINUTES", with(&[("SWEEP_INTERVAL_MINUTES", "0")])),
            ("SWEEP_INTERVAL_MINUTES", with(&[("SWEEP_INTERVAL_MINUTES", "1441")])),
            ("SWEEP_INTERVAL_MINUTES", with(&[("SWEEP_INTERVAL_MINUTES", "five")])),
        ] {
            let err = Config::from_lookup(env(&pairs)).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
