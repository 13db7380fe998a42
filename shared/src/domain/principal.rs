//! Principals as providers write them (an account ID or an IAM ARN) and their normal form, the account.
//!
//! EC2 reports the consumer of a connection as an account ID (`VpcEndpointOwner`), so the allowlist is
//! keyed on accounts: `arn:aws:iam::111122223333:role/x` and `111122223333` name the same consumer.

use super::ids::{AccountId, IdError};

/// The partitions whose IAM ARNs are understood.
pub const PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    #[error("principal {0:?} is neither a 12-digit account ID nor an IAM ARN")]
    Unrecognised(String),
    #[error("principal {0:?} is an ARN of an unknown partition (expected one of aws, aws-cn, aws-us-gov)")]
    Partition(String),
    #[error("principal {0:?} is not an IAM ARN of the form arn:<partition>:iam::<account>:root|user/..|role/..")]
    NotIam(String),
    #[error(transparent)]
    Account(#[from] IdError),
    #[error("principal \"*\" (everyone) cannot be listed: name accounts")]
    Wildcard,
}

/// Normalises an account ID or IAM ARN to the account it belongs to.
pub fn normalise(raw: &str) -> Result<AccountId, PrincipalError> {
    let short = || raw.chars().take(120).collect::<String>();
    if raw == "*" {
        return Err(PrincipalError::Wildcard);
    }
    if !raw.starts_with("arn:") {
        if raw.len() == 12 || raw.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(AccountId::parse(raw)?);
        }
        return Err(PrincipalError::Unrecognised(short()));
    }
    // arn:partition:service:region:account:resource
    let parts: Vec<&str> = raw.splitn(6, ':').collect();
    let [_, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(PrincipalError::NotIam(short()));
    };
    if !PARTITIONS.contains(partition) {
        return Err(PrincipalError::Partition(short()));
    }
    if *service != "iam" || !region.is_empty() {
        return Err(PrincipalError::NotIam(short()));
    }
    let resource_ok = *resource == "root"
        || ["user/", "role/"].iter().any(|p| {
            resource.strip_prefix(p).is_some_and(|name| {
                !name.is_empty()
                    && name.len() <= 512
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
            })
        });
    if !resource_ok {
        return Err(PrincipalError::NotIam(short()));
    }
    Ok(AccountId::parse(account)?)
}

/// The account a principal that does not normalise could still be about: the account it normalises to
/// once trimmed, else the one 12-digit run it holds (`arn:aws:sts::111122223333:assumed-role/a/b`,
/// `arn:aws:iam::111122223333:group/x`, `"111122223333 "`). `None` when it names no account or several:
/// an invalid item that could be a deny then blocks everyone it could cover.
pub fn account_hint(raw: &str) -> Option<AccountId> {
    if let Ok(a) = normalise(raw.trim()) {
        return Some(a);
    }
    let mut found: Option<&str> = None;
    for run in raw.split(|c: char| !c.is_ascii_digit()).filter(|r| r.len() == 12) {
        match found {
            Some(f) if f != run => return None,
            _ => found = Some(run),
        }
    }
    found.and_then(|f| AccountId::parse(f).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_the_documented_forms() {
        for raw in [
            "111122223333",
            "arn:aws:iam::111122223333:root",
            "arn:aws:iam::111122223333:role/Admin",
            "arn:aws:iam::111122223333:user/path/to/alice",
            "arn:aws-us-gov:iam::111122223333:root",
        ] {
            assert_eq!(normalise(raw).unwrap().as_str(), "111122223333", "{raw}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_iam_principal() {
        for raw in [
            "*",
            "arn:aws:iam::*:root",
            "arn:aws:sts::111122223333:assumed-role/x/y",
            "arn:aws:iam:us-east-1:111122223333:root",
            "arn:aws:iam::111122223333:group/devs",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role/a b",
            "arn:evil:iam::111122223333:root",
            "arn:aws:iam::11112222333:root",
            "arn:aws:iam::111122223333",
            "alice",
            "1111-2222-3333",
        ] {
            assert!(normalise(raw).is_err(), "{raw} accepted");
        }
    }

    #[test]
    fn a_malformed_principal_still_names_its_account() {
        for raw in [
            "222233334444 ",
            " 222233334444",
            "arn:aws:sts::222233334444:assumed-role/Admin/bob",
            "arn:aws:iam::222233334444:group/Admins",
            "arn:aws:iam::222233334444:role/a b",
            "account 222233334444",
        ] {
            assert_eq!(account_hint(raw).map(|a| a.to_string()).as_deref(), Some("222233334444"), "{raw}");
        }
        for raw in ["*", "alice", "1111-2222-3333", "222233334444 111122223333", "2222333344445"] {
            assert_eq!(account_hint(raw), None, "{raw}");
        }
    }

    proptest! {
        #[test]
        fn every_account_id_round_trips_through_every_form(account in "[0-9]{12}", role in "[A-Za-z0-9_+=,.@-]{1,64}") {
            let a = normalise(&account).unwrap();
            prop_assert_eq!(a.as_str(), account.as_str());
            for p in PARTITIONS {
                prop_assert_eq!(&normalise(&format!("arn:{p}:iam::{account}:root")).unwrap(), &a);
                prop_assert_eq!(&normalise(&format!("arn:{p}:iam::{account}:role/{role}")).unwrap(), &a);
            }
        }

        #[test]
        fn never_panics_and_only_yields_twelve_digits(raw in ".{0,200}") {
            if let Ok(a) = normalise(&raw) {
                prop_assert!(a.as_str().len() == 12 && a.as_str().bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }
}
