//! The `gatekeeper` binary against the local AWS: what a provider types, what it prints, its exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Result;
use gatekeeper_local::{Emulator, Options, StackInfo, Wiring, account_config, create_endpoint, provision};
use serde_json::Value;
use shared::domain::DefaultAction;

static N: AtomicU32 = AtomicU32::new(0);

struct Local {
    info: StackInfo,
    file: PathBuf,
    _emulator: Emulator,
}

impl Local {
    async fn new(default_action: DefaultAction) -> Result<Self> {
        Self::with(Options { default_action, ..Options::default() }).await
    }

    async fn with(options: Options) -> Result<Self> {
        let emulator = Emulator::start_or_reuse().await?;
        let suffix = format!("cli-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let info = provision(&emulator.url, &suffix, options).await?;
        let file = std::env::temp_dir().join(format!("gatekeeper-{suffix}.json"));
        std::fs::write(&file, serde_json::to_string(&info)?)?;
        Ok(Self { info, file, _emulator: emulator })
    }

    fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_gatekeeper"))
            .arg("--local")
            .arg("--local-file")
            .arg(&self.file)
            .args(args)
            .env_remove("AWS_PROFILE")
            .env("GATEKEEPER_DEFAULT_ACTION", "hold")
            .output()
            .expect("run gatekeeper")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Fails with `code`; returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stderr).unwrap()
    }

    async fn settle(&self, wiring: &Wiring) -> Result<()> {
        for _ in 0..20 {
            let n = wiring.pump_notifications().await?;
            let d = wiring.pump_decide(0).await?;
            if n.notifications == 0 && d.messages == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let d = wiring.pump_decide(0).await?;
                if d.messages == 0 {
                    return Ok(());
                }
            }
        }
        anyhow::bail!("the wiring did not settle within 20 rounds")
    }

    /// Runs `args` (JSON output) until `done` holds for what it prints, bounded: EC2's answers lag.
    async fn json_until(&self, args: &[&str], done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.json(args);
            if done(&v) {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "{args:?} never showed what was expected: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

#[tokio::test]
async fn edits_the_allowlist_with_validation_and_conditional_writes() -> Result<()> {
    let l = Local::new(DefaultAction::Reject).await?;
    let svc = l.info.service_id.clone();
    let out = l.ok(&[
        "allow",
        "arn:aws:iam::222222222222:role/Deploy",
        "--service",
        &svc,
        "--expires",
        "30d",
        "--note",
        "ACME",
    ]);
    assert!(out.starts_with(&format!("allowed 222222222222 on {svc} until ")), "{out}");
    l.ok(&["deny", "333333333333"]);

    let listed = l.json(&["list"]);
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let acme = rows.iter().find(|r| r["principal"] == "222222222222").unwrap();
    assert_eq!(acme["service"], svc.as_str());
    assert_eq!(acme["note"], "ACME");
    assert!(acme["created_by"].as_str().unwrap().starts_with("arn:aws:sts::111111111111:assumed-role/"), "{acme}");
    let table = l.ok(&["list"]);
    assert!(table.lines().next().unwrap().starts_with("SERVICE"), "{table}");
    assert!(table.contains("333333333333") && table.contains("deny"), "{table}");

    // A second editor does not silently overwrite the first.
    let err = l.fails(&["allow", "222222222222", "--service", &svc], 254);
    assert!(err.contains("already exists") && err.contains("--replace"), "{err}");
    l.ok(&["allow", "222222222222", "--service", &svc, "--replace", "--max-endpoints", "3"]);
    assert_eq!(l.json(&["list", "--service", &svc]).as_array().unwrap().len(), 2, "the service's entry and the * deny");

    // An edit whose answer is lost is repeated by the SDK and fails its own condition; the item it finds is
    // its own write, its regions and endpoints in DynamoDB's order rather than as written (a set keeps no
    // order): written, not "changed since it was read".
    let (a, b) = ("vpce-0fedcba9876543210", "vpce-0123456789abcdef0");
    let drop_once =
        serde_json::json!({"rules": [{"match": "dynamodb:PutItem", "rate": 1.0, "kind": "drop_after", "times": 1}]});
    gatekeeper_local::control(&l.info.endpoint_url, "/_gatekeeper/faults", Some(drop_once)).await?;
    let out = l.run(&[
        "allow",
        "222222222222",
        "--service",
        &svc,
        "--replace",
        "--regions",
        "us-east-1,eu-west-1,ap-south-1",
        "--endpoint",
        &format!("{a},{b}"),
    ]);
    gatekeeper_local::control(&l.info.endpoint_url, "/_gatekeeper/faults", Some(serde_json::json!({"rules": []})))
        .await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let entry = l
        .json(&["list", "--service", &svc])
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["principal"] == "222222222222")
        .cloned();
    assert_eq!(entry.unwrap()["regions"], serde_json::json!(["ap-south-1", "eu-west-1", "us-east-1"]));

    // Bad input: a clear one-line error, exit 252, nothing written.
    for (args, why) in [
        (vec!["allow", "*"], "cannot be listed"),
        (vec!["allow", "12345"], "12 ASCII digits"),
        (vec!["allow", "arn:aws:iam::222222222222:group/x"], "not an IAM ARN"),
        (vec!["allow", "444444444444", "--service", "svc-123"], "service ID"),
        (vec!["allow", "444444444444", "--expires", "2001-01-01"], "not in the future"),
        (vec!["allow", "444444444444", "--regions", "Mars"], "region"),
        (vec!["deny", "444444444444", "--max-endpoints", "2"], "applies to an allow"),
    ] {
        let err = l.fails(&args, 252);
        assert!(err.contains(why), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert_eq!(l.json(&["list"]).as_array().unwrap().len(), 2);

    l.ok(&["remove", "333333333333"]);
    assert!(l.fails(&["remove", "333333333333"], 254).contains("no entry"));
    assert_eq!(l.json(&["list"]).as_array().unwrap().len(), 1);
    Ok(())
}

#[tokio::test]
async fn shows_pending_explains_reevaluates_and_lists_decisions() -> Result<()> {
    let l = Local::new(DefaultAction::Hold).await?;
    let wiring = Wiring::new(l.info.clone()).await?;
    let (_, id) = create_endpoint(&l.info.endpoint_url, "444444444444", &l.info.service_name).await?;
    l.settle(&wiring).await?;

    let pending = l.json(&["pending"]);
    assert_eq!(pending[0]["endpoint_id"], id.as_str());
    assert_eq!(pending[0]["would"], "hold");
    assert_eq!(pending[0]["reason"], "not_listed");
    let explained = l.json(&["explain", &id]);
    assert_eq!(explained[0]["decision"], "held");

    l.ok(&["allow", "444444444444"]);
    assert_eq!(l.json(&["pending"])[0]["would"], "accept");
    let out = l.ok(&["reevaluate", &id]);
    assert!(out.contains("1 connection"), "{out}");
    l.settle(&wiring).await?;
    // Describe shows the accept once EC2 has caught up (eventually consistent): wait for it, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !l.json(&["pending"]).as_array().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the accepted connection still shows as pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let explained = l.json(&["explain", &id]);
    assert_eq!(explained[0]["decision"], "accepted");
    assert_eq!(explained[0]["trigger"], "manual");
    let text = l.ok(&["explain", &id]);
    assert!(text.contains("accepted from 444444444444") && text.contains("matched rule: */444444444444"), "{text}");

    // `decisions` reads a global secondary index, eventually consistent (300 ms behind its table here, as
    // the local AWS keeps it): wait for the accept to show there, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let accepted = loop {
        let accepted = l.json(&["decisions", "--decision", "accepted", "--since", "1h"]);
        if !accepted.as_array().unwrap().is_empty() || std::time::Instant::now() > deadline {
            break accepted;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(accepted.as_array().unwrap().len(), 1, "{accepted}");
    assert_eq!(accepted[0]["endpoint_id"], id.as_str());
    let service = l.info.service_id.as_str();
    assert_eq!(l.json(&["decisions", "--service", service, "--since", "1h"]).as_array().unwrap().len(), 1);
    assert!(l.fails(&["decisions", "--decision", "maybe"], 252).contains("--decision"));
    assert!(l.fails(&["explain", "vpce-0123456789abcdef0"], 254).contains("no decision"));
    assert!(l.fails(&["explain", "i-123"], 252).contains("endpoint ID"));
    Ok(())
}

#[tokio::test]
async fn imports_and_exports_the_allowlist_as_a_reviewed_file() -> Result<()> {
    let l = Local::new(DefaultAction::Reject).await?;
    let svc = l.info.service_id.clone();
    l.ok(&["allow", "222222222222", "--note", "old"]);
    l.ok(&["allow", "555555555555"]);
    let file = std::env::temp_dir().join(format!("allowlist-{}.yaml", std::process::id()));
    std::fs::write(
        &file,
        format!(
            "entries:\n  - {{service: '*', principal: '222222222222', effect: allow, note: new, regions: [us-east-1, eu-west-1, ap-south-1]}}\n  - {{service: {svc}, principal: 'arn:aws:iam::333333333333:root', effect: deny}}\n"
        ),
    )?;
    let f = file.to_str().unwrap();
    let plan = l.ok(&["import", f, "--prune", "--dry-run"]);
    assert!(plan.contains("~ allow * 222222222222"), "{plan}");
    assert!(plan.contains(&format!("+ deny {svc} 333333333333")), "{plan}");
    assert!(plan.contains("- * 555555555555"), "{plan}");
    assert!(plan.contains("dry run"), "{plan}");
    assert_eq!(l.json(&["list"]).as_array().unwrap().len(), 2, "a dry run writes nothing");

    // The transaction's answer is lost once: the SDK repeats it with its client request token, and DynamoDB
    // (the emulator as it) answers as the first call did rather than running it again.
    let drop_once = serde_json::json!({"rules": [{"match": "dynamodb:TransactWriteItems", "rate": 1.0, "kind": "drop_after", "times": 1}]});
    gatekeeper_local::control(&l.info.endpoint_url, "/_gatekeeper/faults", Some(drop_once)).await?;
    let imported = l.run(&["import", f, "--prune"]);
    gatekeeper_local::control(&l.info.endpoint_url, "/_gatekeeper/faults", Some(serde_json::json!({"rules": []})))
        .await?;
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    let listed = l.json(&["list"]);
    let principals: Vec<&str> = listed.as_array().unwrap().iter().map(|r| r["principal"].as_str().unwrap()).collect();
    assert_eq!(principals.len(), 2);
    assert!(principals.contains(&"222222222222") && principals.contains(&"333333333333"));
    // Its regions come back in DynamoDB's order, not the file's: still nothing to change.
    assert!(l.ok(&["import", f, "--prune"]).contains("already matches"));

    let exported = l.ok(&["export"]);
    std::fs::write(&file, &exported)?;
    assert!(l.ok(&["import", f, "--prune"]).contains("already matches"), "export → import is a no-op:\n{exported}");

    std::fs::write(
        &file,
        "entries:\n  - {service: '*', principal: '666666666666', effect: allow}\n  - {service: '*', principal: '*', effect: allow}\n",
    )?;
    let err = l.fails(&["import", f], 252);
    assert!(err.contains("entry 2"), "{err}");
    assert_eq!(l.json(&["list"]).as_array().unwrap().len(), 2, "an invalid file writes nothing");
    let _ = std::fs::remove_file(&file);
    Ok(())
}

#[tokio::test]
async fn bounds_the_times_it_accepts_and_shows_any_stored_expiry() -> Result<()> {
    let l = Local::new(DefaultAction::Reject).await?;
    for (args, flag) in [
        (vec!["allow", "222222222222", "--expires", "200000000000d"], "--expires 200000000000d"),
        (vec!["allow", "222222222222", "--expires", "2200-01-01"], "--expires 2200-01-01"),
        (vec!["decisions", "--since", "200000000000d"], "--since 200000000000d"),
    ] {
        let err = l.fails(&args, 252);
        assert!(err.contains(flag) && err.contains("more than 100 years"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert_eq!(l.json(&["list"]).as_array().unwrap().len(), 0, "nothing was written");

    // An expiry written by hand that no date can show: listed and exported as the number it is.
    use aws_sdk_dynamodb::types::AttributeValue as V;
    let provider = account_config(&l.info.endpoint_url, &l.info.provider_account).await?;
    aws_sdk_dynamodb::Client::new(&provider)
        .put_item()
        .table_name(&l.info.allowlist_table)
        .item("service_id", V::S("*".into()))
        .item("principal", V::S("222222222222".into()))
        .item("effect", V::S("allow".into()))
        .item("expires_at", V::N(i64::MAX.to_string()))
        .send()
        .await?;
    let table = l.ok(&["list"]);
    assert!(table.contains(&i64::MAX.to_string()), "{table}");
    assert_eq!(l.json(&["list"])[0]["expires_at"], i64::MAX);
    let exported = l.ok(&["export"]);
    assert!(exported.contains(&format!("expires: '{}'", i64::MAX)), "{exported}");
    Ok(())
}

#[tokio::test]
async fn onboards_a_tenant_and_shows_its_connections_and_each_services_health() -> Result<()> {
    let l = Local::new(DefaultAction::Reject).await?;
    let wiring = Wiring::new(l.info.clone()).await?;
    l.ok(&["allow", "444444444444", "--tenant", "ACME Corp"]);
    let (_, id) = create_endpoint(&l.info.endpoint_url, "444444444444", &l.info.service_name).await?;
    l.settle(&wiring).await?;

    let rows = l.json_until(&["connections"], |v| v.as_array().is_some_and(|a| !a.is_empty())).await;
    assert_eq!((rows[0]["endpoint_id"].as_str(), rows[0]["tenant"].as_str()), (Some(id.as_str()), Some("ACME Corp")));
    assert_eq!(rows[0]["account"], "444444444444");
    let csv = l.ok(&["connections", "--output", "csv"]);
    assert!(csv.contains(&format!("{id},444444444444,ACME Corp,{},{}", l.info.region, l.info.service_id)), "{csv}");
    let map = l.ok(&["connections", "--output", "nginx-map"]);
    assert!(map.contains(&format!("    {id} \"ACME Corp\";")), "{map}");
    assert!(l.json(&["connections", "--tenant", "Someone Else"]).as_array().unwrap().is_empty());
    let decided = l.json(&["decisions", "--tenant", "ACME Corp"]);
    assert_eq!(decided[0]["tenant"], "ACME Corp");

    let status = l.ok(&["status"]);
    for want in
        ["acceptance:         required", "allowed principals: * (everyone", "accepted:           1 (ACME Corp 1)"]
    {
        assert!(status.contains(want), "{want} missing:\n{status}");
    }
    let health = l.json(&["status"]);
    assert_eq!(
        (health[0]["gates"].clone(), health[0]["principals_setup"].clone()),
        (Value::Bool(true), "everyone".into())
    );

    // The provider turns acceptance off: Gatekeeper gates nothing, and says so.
    let provider = aws_sdk_ec2::Client::new(&account_config(&l.info.endpoint_url, &l.info.provider_account).await?);
    provider
        .modify_vpc_endpoint_service_configuration()
        .service_id(&l.info.service_id)
        .acceptance_required(false)
        .send()
        .await?;
    let status = l.ok(&["status"]);
    assert!(status.contains("WARNING: NOT REQUIRED") && status.contains("Gatekeeper gates nothing"), "{status}");

    // Bad input: named, exit 252, nothing sent.
    assert!(l.fails(&["list", "--output", "csv"], 252).contains("apply to `connections` only"));
    assert!(
        l.fails(&["allow", "555555555555", "--tenant", &"x".repeat(65)], 252).contains("--tenant is 65 characters")
    );
    assert!(l.fails(&["allow", "555555555555", "--endpoint", "vpce-nothex"], 252).contains("--endpoint"));
    assert!(l.fails(&["allow", "arn:aws-cn:iam::555555555555:root"], 252).contains("partition"));
    Ok(())
}

/// A provider deleted a managed service and has not yet taken it out of ManagedServiceIds: EC2 refuses every
/// call naming it (`InvalidVpcEndpointServiceId.NotFound`), the one read of every service's configuration too.
/// `status` says so for that service and still shows the other.
#[tokio::test]
async fn status_names_a_deleted_managed_service_and_still_shows_the_others() -> Result<()> {
    let l = Local::with(Options { also_managed: 1, ..Options::default() }).await?;
    let deleted = l.info.also_managed[0].clone();
    let provider = aws_sdk_ec2::Client::new(&account_config(&l.info.endpoint_url, &l.info.provider_account).await?);
    let gone = provider.delete_vpc_endpoint_service_configurations().service_ids(&deleted).send().await?;
    assert!(gone.unsuccessful().is_empty(), "{gone:?}");

    let status = l.ok(&["status"]);
    for want in [
        format!("{deleted}   NOT FOUND in EC2"),
        "EC2 says this service does not exist (InvalidVpcEndpointServiceId.NotFound)".to_owned(),
        format!("{}   Available", l.info.service_id),
        "acceptance:         required".to_owned(),
    ] {
        assert!(status.contains(&want), "{want} missing:\n{status}");
    }
    let health = l.json(&["status"]);
    let by_id = |id: &str| health.as_array().unwrap().iter().find(|r| r["service_id"] == id).cloned().unwrap();
    assert_eq!((by_id(&deleted)["exists"].clone(), by_id(&deleted)["gates"].clone()), (false.into(), false.into()));
    assert_eq!(
        (by_id(&l.info.service_id)["exists"].clone(), by_id(&l.info.service_id)["gates"].clone()),
        (true.into(), true.into())
    );
    Ok(())
}

/// The credentials of a session of `role_arn`, issued as the local AWS issues a role's (IAM enforced for them).
async fn role_session(endpoint: &str, role_arn: &str) -> Result<[String; 3]> {
    let c = gatekeeper_local::control(
        endpoint,
        "/_gatekeeper/role-credentials",
        Some(serde_json::json!({"role_arn": role_arn, "session_name": "alice"})),
    )
    .await?;
    Ok(["AccessKeyId", "SecretAccessKey", "SessionToken"].map(|k| c[k].as_str().unwrap_or_default().to_owned()))
}

/// The stack's `OperatorPolicyArn` is what the README tells a provider to attach to whoever runs the CLI. A
/// role with that policy alone runs every command against the deployed stack, found by `--stack-name`, IAM
/// enforced (the local AWS enforces a role's policies for its sessions' credentials) with no call denied; a
/// role without it is refused.
#[tokio::test]
async fn a_role_with_only_the_stacks_operator_policy_runs_every_command() -> Result<()> {
    use aws_sdk_cloudformation::types::{Capability, StackStatus};
    let l = Local::new(DefaultAction::Reject).await?;
    let wiring = Wiring::new(l.info.clone()).await?;
    let url = l.info.endpoint_url.clone();
    let policy = l.info.deployment.output("OperatorPolicyArn")?.to_owned();
    // Two roles, made as a provider would make them (CloudFormation): one with the policy, one without.
    let tag = format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{}:root", l.info.provider_account)}, "Action": "sts:AssumeRole"}]});
    let role = |name: &str, policies: Vec<&str>| {
        serde_json::json!({"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": name, "AssumeRolePolicyDocument": trust, "ManagedPolicyArns": policies}})
    };
    let (operator, bystander) = (format!("gk-operator-{tag}"), format!("gk-bystander-{tag}"));
    let template = serde_json::json!({"Resources": {
        "Operator": role(&operator, vec![&policy]), "Bystander": role(&bystander, vec![])}});
    let cfn = aws_sdk_cloudformation::Client::new(&account_config(&url, &l.info.provider_account).await?);
    let roles_stack = format!("gk-operators-{tag}");
    cfn.create_stack()
        .stack_name(&roles_stack)
        .template_body(template.to_string())
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = cfn.describe_stacks().stack_name(&roles_stack).send().await?;
        let status = d.stacks()[0].stack_status().cloned();
        if status == Some(StackStatus::CreateComplete) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the roles' stack never completed: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let arn = |name: &str| format!("arn:aws:iam::{}:role/{name}", l.info.provider_account);
    let creds = role_session(&url, &arn(&operator)).await?;
    let as_role = |creds: &[String; 3], args: &[&str]| -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_gatekeeper"))
            .args(["--stack-name", &l.info.deployment.stack_name, "--endpoint-url", &url, "--region", &l.info.region])
            .args(args)
            .env_remove("AWS_PROFILE")
            .env("AWS_ACCESS_KEY_ID", &creds[0])
            .env("AWS_SECRET_ACCESS_KEY", &creds[1])
            .env("AWS_SESSION_TOKEN", &creds[2])
            .output()
            .expect("run gatekeeper")
    };
    let ok = |args: &[&str]| {
        let out = as_role(&creds, args);
        assert!(out.status.success(), "{args:?} as the operator: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };

    ok(&["allow", "444444444444", "--tenant", "ACME Corp"]);
    let (_, id) = create_endpoint(&url, "444444444444", &l.info.service_name).await?;
    l.settle(&wiring).await?;
    ok(&["list"]);
    ok(&["pending"]);
    ok(&["explain", &id]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ok(&["decisions", "--since", "1h"]).contains(id.as_str()) {
        assert!(std::time::Instant::now() < deadline, "the decision never showed in the `decided` index");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ok(&["connections"]);
    ok(&["status"]);
    ok(&["reevaluate", "--all"]);
    let mut exported: Value = serde_json::from_str(&ok(&["export", "--format", "json"]))?;
    let more = serde_json::json!({"service": "*", "principal": "555555555555", "effect": "deny"});
    exported["entries"].as_array_mut().expect("entries").push(more);
    let file = std::env::temp_dir().join(format!("gatekeeper-operator-{tag}.json"));
    std::fs::write(&file, exported.to_string())?;
    ok(&["import", file.to_str().unwrap(), "--dry-run"]);
    ok(&["import", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    ok(&["remove", "444444444444"]);
    let denials = gatekeeper_local::control(&url, "/_gatekeeper/iam/denials", None).await?;
    let mine: Vec<&Value> =
        denials.as_array().unwrap().iter().filter(|d| d["role_arn"] == arn(&operator).as_str()).collect();
    assert!(mine.is_empty(), "the operator's calls IAM denied: {mine:?}");

    // Without it even the stack cannot be read: a configuration error (253) naming IAM's refusal.
    let refused = as_role(&role_session(&url, &arn(&bystander)).await?, &["list"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(253), "{said}");
    assert!(said.contains("AccessDenied"), "{said}");
    Ok(())
}

/// `--role-arn`'s session is named `--role-session-name` when given (checked as STS checks it), which each
/// edit's `created_by` shows; else after the caller.
#[tokio::test]
async fn an_assumed_roles_session_is_named_as_asked_and_shows_in_created_by() -> Result<()> {
    let l = Local::new(DefaultAction::Reject).await?;
    let role = format!("arn:aws:iam::{}:role/gatekeeper-cli", l.info.provider_account);
    l.ok(&["allow", "222222222222", "--role-arn", &role, "--role-session-name", "alice@example.com"]);
    let listed = l.json(&["list"]);
    let by = listed[0]["created_by"].as_str().unwrap_or_default().to_owned();
    assert!(by.ends_with(":assumed-role/gatekeeper-cli/alice@example.com"), "{by}");
    let said = l.fails(&["list", "--role-arn", &role, "--role-session-name", "a b"], 252);
    assert!(said.contains("--role-session-name"), "{said}");
    // Named after the caller: not the local stack's own session name.
    l.ok(&["allow", "333333333333", "--role-arn", &role]);
    let listed = l.json(&["list"]);
    let by =
        listed.as_array().unwrap().iter().find(|r| r["principal"] == "333333333333").unwrap()["created_by"].clone();
    let by = by.as_str().unwrap_or_default();
    assert!(by.contains(":assumed-role/gatekeeper-cli/") && !by.ends_with("/gatekeeper-cli"), "{by}");
    Ok(())
}
