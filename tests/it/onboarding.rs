//! The provider's onboarding: allowed principals that follow the allowlist, registered endpoints and
//! tenants, through the template-deployed stack and the real SDK.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use aws_sdk_dynamodb::types::AttributeValue as V;
use gatekeeper_local::Options;

use crate::World;

const A: &str = "222222222222";
const B: &str = "444444444444";
const HAND: &str = "arn:aws:iam::555555555555:root";
const SETTLE: Duration = Duration::from_secs(20);

fn root(account: &str) -> String {
    format!("arn:aws:iam::{account}:root")
}

impl World {
    /// The service's allowed principals, as EC2 shows them to the provider.
    async fn principals(&self) -> Result<BTreeSet<String>> {
        let out = self.ec2.describe_vpc_endpoint_service_permissions().service_id(&self.info.service_id).send().await?;
        Ok(out.allowed_principals().iter().filter_map(|p| p.principal().map(str::to_owned)).collect())
    }

    /// Waits, bounded, for EC2 to show `want` (its answers may lag a change).
    async fn principals_become(&self, want: &[&str]) -> Result<()> {
        let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.principals().await?;
            if got == want {
                return Ok(());
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "allowed principals are {got:?}, not {want:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn when_principals_are_managed_an_allow_should_let_its_account_connect_and_removal_take_that_away() -> Result<()>
{
    let w = World::with(Options { manage_principals: true, ..Options::default() }).await?;
    // A principal the provider added by hand: Gatekeeper never removes it.
    w.ec2
        .modify_vpc_endpoint_service_permissions()
        .service_id(&w.info.service_id)
        .add_allowed_principals(HAND)
        .send()
        .await?;
    // A new service allows no one: A cannot even create an endpoint.
    let refused = w.endpoint(A).await.expect_err("a principal the service does not allow cannot connect");
    assert!(format!("{refused:?}").contains("InvalidServiceName"), "{refused:?}");

    w.rule("*", A, "allow", &[]).await?;
    w.rule("SVC", B, "deny", &[]).await?;
    w.settle(SETTLE).await?;
    w.principals_become(&[&root(A), HAND]).await?;
    let id = w.endpoint(A).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&id).await?, "available");

    // In sync: a sweep changes nothing.
    w.wiring.sweep().await?;
    w.principals_become(&[&root(A), HAND]).await?;

    w.remove_rule("*", A).await?;
    w.settle(SETTLE).await?;
    w.principals_become(&[HAND]).await?;
    assert!(w.endpoint(A).await.is_err(), "removed: A can no longer create endpoints");
    assert_eq!(w.state(&id).await?, "available", "removing a principal does not affect existing connections");

    // The provider removes its own principal: Gatekeeper does not put it back; allowing A again does.
    w.ec2
        .modify_vpc_endpoint_service_permissions()
        .service_id(&w.info.service_id)
        .remove_allowed_principals(HAND)
        .send()
        .await?;
    w.principals_become(&[]).await?;
    w.rule("*", A, "allow", &[]).await?;
    w.settle(SETTLE).await?;
    w.principals_become(&[&root(A)]).await?;
    // Drift: A's principal removed by hand while A is allowed; the sweep repairs it.
    w.ec2
        .modify_vpc_endpoint_service_permissions()
        .service_id(&w.info.service_id)
        .remove_allowed_principals(root(A))
        .send()
        .await?;
    w.principals_become(&[]).await?;
    w.wiring.sweep().await?;
    w.principals_become(&[&root(A)]).await?;
    Ok(())
}

#[tokio::test]
async fn when_principals_are_not_managed_the_stack_should_never_touch_them() -> Result<()> {
    let w = World::with(Options::default()).await?;
    w.rule("*", A, "allow", &[]).await?;
    w.settle(SETTLE).await?;
    w.wiring.sweep().await?;
    w.principals_become(&["*"]).await?;
    Ok(())
}

#[tokio::test]
async fn a_registered_endpoint_used_by_another_account_should_be_rejected_and_the_tenant_announced() -> Result<()> {
    let w = World::with(Options::default()).await?;
    let tenant = [("tenant", V::S("ACME Corp".into()))];
    w.rule(
        "*",
        A,
        "allow",
        &[
            ("registered_only", V::Bool(true)),
            ("endpoints", V::Ss(vec!["vpce-0123456789abcdef0".into()])),
            tenant[0].clone(),
        ],
    )
    .await?;
    w.rule("*", B, "allow", &[("tenant", V::S("Beta Ltd".into()))]).await?;
    w.settle(SETTLE).await?;
    // A's endpoints get new IDs it could not register in advance: A's allow accepts only the registered
    // one, so this one gets the default action.
    let a_ep = w.endpoint(A).await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&a_ep).await?, "rejected");
    // Register the ID EC2 gave A's endpoint, and also claim B's next endpoint for A.
    let b_ep = w.endpoint(B).await?;
    w.rule(
        "*",
        A,
        "allow",
        &[
            ("registered_only", V::Bool(true)),
            ("endpoints", V::Ss(vec![b_ep.clone(), a_ep.clone()])),
            tenant[0].clone(),
        ],
    )
    .await?;
    w.settle(SETTLE).await?;
    assert_eq!(w.settled_state(&b_ep).await?, "rejected", "registered to A, owned by B");
    let records = w.records(&b_ep).await?;
    assert_eq!(records[0].get("reason"), Some(&V::S("owner_mismatch".into())), "{records:?}");
    assert_eq!(records[0].get("tenant"), Some(&V::S("Beta Ltd".into())), "the owner's tenant");
    let inbox = w.inbox().await?;
    let b_msg = inbox.iter().find(|m| m.body["endpoint_id"] == b_ep.as_str()).expect("B's rejection announced");
    assert_eq!(b_msg.body["reason"], "owner_mismatch");
    assert!(b_msg.body["detail"].as_str().unwrap().contains("registered to account 222222222222 (tenant ACME Corp)"));
    assert_eq!(b_msg.attributes["tenant"]["Value"], "Beta Ltd", "{:?}", b_msg.attributes);
    let a_msg = inbox.iter().find(|m| m.body["endpoint_id"] == a_ep.as_str()).expect("A's rejection announced");
    assert_eq!(
        (a_msg.body["reason"].as_str(), a_msg.body["tenant"].as_str()),
        (Some("endpoint_not_registered"), Some("ACME Corp"))
    );
    Ok(())
}

impl World {
    /// The tags on the connection of `endpoint` (the provider's own, on its `vpce-con-` ID).
    async fn connection_tags(&self, endpoint: &str) -> Result<Vec<(String, String)>> {
        let out = self
            .ec2
            .describe_vpc_endpoint_connections()
            .filters(aws_sdk_ec2::types::Filter::builder().name("vpc-endpoint-id").values(endpoint).build())
            .send()
            .await?;
        let conn = out.vpc_endpoint_connections().first().ok_or_else(|| anyhow::anyhow!("no connection {endpoint}"))?;
        anyhow::ensure!(conn.vpc_endpoint_connection_id().is_some_and(|id| id.starts_with("vpce-con-")), "{conn:?}");
        Ok(conn.tags().iter().map(|t| (t.key().unwrap_or("").to_owned(), t.value().unwrap_or("").to_owned())).collect())
    }
}

#[tokio::test]
async fn an_accepted_connection_should_be_tagged_with_its_tenant_and_a_rejected_one_not() -> Result<()> {
    let w = World::with(Options::default()).await?;
    w.rule("*", A, "allow", &[("tenant", V::S("ACME Corp".into()))]).await?;
    w.rule("*", B, "deny", &[("tenant", V::S("Beta Ltd".into()))]).await?;
    w.settle(SETTLE).await?;
    let a_ep = w.endpoint(A).await?;
    let b_ep = w.endpoint(B).await?;
    w.settle(SETTLE).await?;
    assert_eq!(
        (w.settled_state(&a_ep).await?.as_str(), w.settled_state(&b_ep).await?.as_str()),
        ("available", "rejected")
    );
    // The tag is put alongside the notification, in the same invocation: wait for it, bounded.
    let want = vec![("gatekeeper:tenant".to_owned(), "ACME Corp".to_owned())];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = w.connection_tags(&a_ep).await?;
        if got == want {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "A's connection has tags {got:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // decide ran with its template role under the local IAM: the tag shows the role may tag connections.
    assert_eq!(w.connection_tags(&b_ep).await?, vec![], "a rejected connection is not tagged");
    Ok(())
}

#[tokio::test]
async fn an_allowlist_edit_repeated_after_its_answer_was_lost_is_recognised_as_written() -> Result<()> {
    use shared::adapters::dynamodb::DynamoAllowlist;
    use shared::domain::allowlist::{Attr, Item};
    use shared::ports::{AllowlistAdmin, Expect, ItemKey, Written};
    let w = World::with(Options::default()).await?;
    let table = DynamoAllowlist::new(w.ddb.clone(), &w.info.allowlist_table);
    let item = |effect: &str| -> Item {
        [("service_id", w.info.service_id.as_str()), ("principal", A), ("effect", effect)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Attr::S(v.into())))
            .collect()
    };
    let key = ItemKey { service_id: w.info.service_id.clone(), principal: A.into() };
    assert_eq!(table.put_if(&item("allow"), Expect::Absent).await?, Written::Yes);
    // The same put again, as the SDK repeats it when its answer was lost: its condition fails on the item
    // it wrote, which the failure returns; that is this put, landed.
    assert_eq!(table.put_if(&item("allow"), Expect::Absent).await?, Written::Yes);
    // Another editor's put on what it read before (nothing) finds a different item: a lost race.
    assert_eq!(table.put_if(&item("deny"), Expect::Absent).await?, Written::Lost);
    // An edit of version 1 wins; a second editor's edit of version 1 finds version 2: lost.
    assert_eq!(table.put_if(&item("deny"), Expect::Version(Some(1))).await?, Written::Yes);
    assert_eq!(table.put_if(&item("allow"), Expect::Version(Some(1))).await?, Written::Lost);
    // A removal of version 1 finds version 2 standing: lost. Of version 2: removed, and again (repeated): gone.
    assert_eq!(table.delete_if(&key, Some(1)).await?, Written::Lost);
    assert_eq!(table.delete_if(&key, Some(2)).await?, Written::Yes);
    assert_eq!(table.delete_if(&key, Some(2)).await?, Written::Yes);
    Ok(())
}
