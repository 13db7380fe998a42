//! Validated identifiers. Every ID that reaches an AWS call or a table key passes through one of these
//! constructors, so an event with a forged, empty, non-ASCII or oversized ID is refused at the edge.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {why}")]
pub struct IdError {
    pub kind: &'static str,
    /// The offending value, cut to 80 characters so a hostile payload cannot flood the logs.
    pub value: String,
    pub why: &'static str,
}

impl IdError {
    fn new(kind: &'static str, value: &str, why: &'static str) -> Self {
        Self { kind, value: value.chars().take(80).collect(), why }
    }
}

fn lower_hex_suffix(
    kind: &'static str,
    value: &str,
    prefix: &str,
    len: std::ops::RangeInclusive<usize>,
) -> Result<(), IdError> {
    let Some(rest) = value.strip_prefix(prefix) else {
        return Err(IdError::new(kind, value, "wrong prefix"));
    };
    if !len.contains(&rest.len()) {
        return Err(IdError::new(kind, value, "wrong length"));
    }
    if !rest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(IdError::new(kind, value, "not lowercase hexadecimal"));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let check: fn(&str) -> Result<(), IdError> = $check;
                check(value)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// An endpoint service ID: `vpce-svc-` and 8 or 17 lowercase hex digits.
    ServiceId,
    "service ID",
    |v| lower_hex_suffix("service ID", v, "vpce-svc-", 8..=17)
);

id_type!(
    /// An interface endpoint ID: `vpce-` and 8 or 17 lowercase hex digits.
    EndpointId,
    "endpoint ID",
    |v| lower_hex_suffix("endpoint ID", v, "vpce-", 8..=17)
);

id_type!(
    /// A 12-digit AWS account ID.
    AccountId,
    "account ID",
    |v| {
        if v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
            Ok(())
        } else {
            Err(IdError::new("account ID", v, "must be exactly 12 ASCII digits"))
        }
    }
);

id_type!(
    /// An AWS Region name such as `eu-west-1` (lowercase letters, digits and dashes, at most 32).
    Region,
    "region",
    |v| {
        let ok = (4..=32).contains(&v.len())
            && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && v.contains('-')
            && !v.starts_with('-')
            && !v.ends_with('-');
        if ok { Ok(()) } else { Err(IdError::new("region", v, "not a Region name")) }
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_ids() {
        assert!(ServiceId::parse("vpce-svc-0123456789abcdef0").is_ok());
        assert!(ServiceId::parse("vpce-svc-01234567").is_ok());
        assert!(EndpointId::parse("vpce-0123456789abcdef0").is_ok());
        assert!(AccountId::parse("123456789012").is_ok());
        assert!(Region::parse("eu-west-1").is_ok());
    }

    #[test]
    fn refuses_lookalikes() {
        for bad in [
            "",
            "vpce-svc-",
            "vpce-svc-0123456789ABCDEF0",
            "vpce-svc-0123456789abcdef0 ",
            "vpce-svc-０１２３４５６７",
            "vpce-svc-0123456789abcdef0123",
            "vpce-0123456789abcdef0",
        ] {
            assert!(ServiceId::parse(bad).is_err(), "{bad:?} accepted");
        }
        for bad in ["12345678901", "1234567890123", "12345678901a", "１２３４５６７８９０１２", " 123456789012"]
        {
            assert!(AccountId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(EndpointId::parse("vpce-svc-01234567").is_err());
    }

    #[test]
    fn long_values_are_cut_in_errors() {
        let long = "x".repeat(10_000);
        let err = AccountId::parse(&long).unwrap_err();
        assert_eq!(err.value.len(), 80);
    }
}
