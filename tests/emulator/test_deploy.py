"""infra/template.yaml deployed into the local AWS by deploy.py, as CloudFormation would deploy it: every
resource created, everything read back matching the template, the SNS-to-Lambda asynchronous path with its
retries and dead-letter queue, inert event source mappings, the Fn::ForEach expander, and the moto patch
points gk_cloudformation.py depends on."""

import copy
import io
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest

import deploy
import gk_cloudformation
import gk_dynamodb
from conftest import role_session

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TEMPLATE = ROOT / "infra" / "template.yaml"
PROVIDER = "111111111111"
CONSUMER = "222222222222"
REGION = "us-east-1"
STACK = "gk-test"


def deadline_poll(what, fn, timeout=10.0, interval=0.05):
    """fn() until it returns something truthy; fails the test loudly at the deadline."""
    end = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"deadline passed ({timeout}s) waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------ server


@pytest.fixture(scope="module")
def endpoint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "gatekeeper_moto.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"GATEKEEPER_EMU_ACCEPT_DELAY": "0.2", "PATH": "/usr/bin:/bin"},
    )
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    deadline_poll("the local AWS to listen", up, timeout=20)
    yield url
    proc.terminate()
    proc.wait(5)


def control(url, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def network(ec2):
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    return vpc, subnet


def endpoint_service(session, url, subnet, name) -> dict:
    """A new endpoint service (acceptance required) in front of a new Network Load Balancer `name`."""
    lb = session.client("elbv2", endpoint_url=url).create_load_balancer(Name=name, Subnets=[subnet], Type="network")
    return session.client("ec2", endpoint_url=url).create_vpc_endpoint_service_configuration(
        NetworkLoadBalancerArns=[lb["LoadBalancers"][0]["LoadBalancerArn"]], AcceptanceRequired=True
    )["ServiceConfiguration"]


@pytest.fixture(scope="module")
def provider(endpoint):
    session = deploy.provider_session(endpoint, PROVIDER, REGION)
    ec2 = session.client("ec2", endpoint_url=endpoint)
    _, subnet = network(ec2)
    svc = endpoint_service(session, endpoint, subnet, "svc")
    # PrivateLink guide, "Manage permissions": a new service allows no principal to create endpoints.
    ec2.modify_vpc_endpoint_service_permissions(ServiceId=svc["ServiceId"], AddAllowedPrincipals=["*"])
    return {"session": session, "svc": svc}


@pytest.fixture(scope="module")
def stack(endpoint, provider, tmp_path_factory):
    """The template deployed through deploy.py's CLI; the JSON it wrote."""
    out = tmp_path_factory.mktemp("deploy") / "stack.json"
    run = subprocess.run(
        [
            sys.executable,
            str(HERE / "deploy.py"),
            "--endpoint", endpoint,
            "--account", PROVIDER,
            "--stack-name", STACK,
            "--template", str(TEMPLATE),
            "--parameter", f"ManagedServiceIds={provider['svc']['ServiceId']}",
            "--out", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, f"deploy.py failed:\n{run.stdout}\n{run.stderr}"
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def translated(provider):
    """The CloudFormation template CreateStack got (expanded, translated), and the parameter values."""
    params = {"ManagedServiceIds": provider["svc"]["ServiceId"]}
    cfn, _ = deploy.prepare(deploy.load_template(TEMPLATE), params, region=REGION, account=PROVIDER, stack_name=STACK)
    values = deploy.parameter_values(cfn, params, region=REGION, account=PROVIDER, stack_name=STACK)
    return cfn, values


def client(session, url, name):
    return session.client(name, endpoint_url=url)


# ------------------------------------------------------------------ a resolver over the read-back JSON


def resolver(stack, values, ddb=None):
    """Resolves template values against the deployed stack (read-back JSON) and the parameter values (and a
    table's attributes through DescribeTable)."""
    res = stack["resources"]

    def queue_name(lid):
        return stack["queues"][lid]["url"].rstrip("/").rsplit("/", 1)[-1]

    def getatt(lid, attr):
        if lid in stack["queues"]:
            return {"Arn": stack["queues"][lid]["arn"], "QueueName": queue_name(lid), "QueueUrl": stack["queues"][lid]["url"]}[attr]
        if lid in stack["functions"]:
            return {"Arn": stack["functions"][lid]["arn"]}[attr]
        if ddb is not None and res[lid]["type"] == "AWS::DynamoDB::Table":
            table = ddb.describe_table(TableName=res[lid]["physical_id"])["Table"]
            return {"Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn")}[attr]
        if attr == "Arn" and res[lid]["type"] == "AWS::IAM::Role":
            return f"arn:aws:iam::{PROVIDER}:role/{res[lid]['physical_id']}"
        raise KeyError(f"GetAtt {lid}.{attr} is not resolvable from the read-back")

    def ref(name):
        if name in values:
            v = values[name]
            return ",".join(v) if isinstance(v, list) else v
        return res[name]["physical_id"]

    def resolve(node):
        if isinstance(node, (str, int, float, bool)) or node is None:
            return node
        if isinstance(node, list):
            return [resolve(v) for v in node]
        if set(node) == {"Ref"}:
            return ref(node["Ref"])
        if set(node) == {"Fn::GetAtt"}:
            lid, attr = node["Fn::GetAtt"] if isinstance(node["Fn::GetAtt"], list) else node["Fn::GetAtt"].split(".", 1)
            return getatt(lid, attr)
        if set(node) == {"Fn::Join"}:
            sep, items = node["Fn::Join"]
            items = resolve(items)
            items = items.split(",") if isinstance(items, str) else items
            return sep.join(str(i) for i in items)
        if set(node) == {"Fn::Sub"}:
            text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]

            def one(m):
                name = m.group(1)
                return str(getatt(*name.split(".", 1)) if "." in name else ref(name))

            return re.sub(r"\$\{([^}!]+)\}", one, text)
        if set(node) == {"Fn::If"}:
            raise KeyError("Fn::If is evaluated by the tests that need it")
        return {k: resolve(v) for k, v in node.items()}

    return resolve


def of_type(template, rtype):
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == rtype}


def resolve_if(node, template, values):
    """Fn::If with the template's conditions, as deploy.expected_resources evaluates them."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        cond, yes, no = node["Fn::If"]
        return resolve_if(yes if deploy._condition(cond, values, {}, template) else no, template, values)
    return node


# ------------------------------------------------------------------------------------- the stack


def test_stack_is_create_complete(endpoint, provider, stack):
    cfn = client(provider["session"], endpoint, "cloudformation")
    (desc,) = cfn.describe_stacks(StackName=stack["stack_id"])["Stacks"]
    assert desc["StackStatus"] == "CREATE_COMPLETE"
    assert stack["stack_name"] == STACK and stack["account"] == PROVIDER and stack["region"] == REGION
    assert stack["parameters"]["ManagedServiceIds"] == provider["svc"]["ServiceId"]


def test_json_has_the_contracted_shape(stack):
    assert set(stack) == {
        "stack_name", "stack_id", "region", "account", "parameters", "outputs", "resources", "functions",
        "event_source_mappings", "queues", "sns_lambda_subscriptions", "schedules", "alarms",
    }
    for f in stack["functions"].values():
        assert set(f) == {"name", "arn", "role_arn", "timeout", "memory", "environment", "max_retry_attempts", "dead_letter_arn"}
        assert all(isinstance(v, str) for v in f["environment"].values())
    for m in stack["event_source_mappings"]:
        assert set(m) == {
            "uuid", "function", "event_source_arn", "batch_size", "maximum_batching_window_s", "function_response_types",
            "maximum_concurrency", "starting_position", "maximum_retry_attempts", "bisect_batch_on_function_error",
            "on_failure_destination",
        }
    for q in stack["queues"].values():
        assert set(q) == {"url", "arn", "visibility_timeout_s", "max_receive_count", "dead_letter_target_arn"}


def test_every_template_resource_is_created(endpoint, provider, stack, translated):
    cfn_template, _ = translated
    expected = deploy.expected_resources(
        cfn_template, {"ManagedServiceIds": provider["svc"]["ServiceId"]}, region=REGION, account=PROVIDER, stack_name=STACK
    )
    cfn = client(provider["session"], endpoint, "cloudformation")
    listed = {
        r["LogicalResourceId"]: r["ResourceType"]
        for r in cfn.list_stack_resources(StackName=stack["stack_id"])["StackResourceSummaries"]
        if r["LogicalResourceId"]
    }
    assert listed == expected
    assert {lid: r["type"] for lid, r in stack["resources"].items()} == expected
    assert all(r["physical_id"] for r in stack["resources"].values())
    # The template's loops over the managed services produced one notification and one policy per service.
    sid = re.sub(r"[^A-Za-z0-9]", "", provider["svc"]["ServiceId"])
    assert expected.get(f"ConnectionNotification{sid}") == "AWS::EC2::VPCEndpointConnectionNotification"


def test_outputs_are_read_from_the_stack(endpoint, provider, stack):
    cfn = client(provider["session"], endpoint, "cloudformation")
    (desc,) = cfn.describe_stacks(StackName=stack["stack_id"])["Stacks"]
    assert stack["outputs"] == {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs") or []}
    assert stack["outputs"], "the template declares outputs"


def test_functions_match_the_template(stack, translated):
    cfn_template, values = translated
    resolve = resolver(stack, values)
    fns = of_type(cfn_template, "AWS::Lambda::Function")
    assert set(stack["functions"]) == set(fns)
    eics = {resolve(r["Properties"]["FunctionName"]): r["Properties"] for r in of_type(cfn_template, "AWS::Lambda::EventInvokeConfig").values()}
    for lid, r in fns.items():
        p, got = r["Properties"], stack["functions"][lid]
        assert got["name"] == resolve(p["FunctionName"]) == stack["resources"][lid]["physical_id"]
        assert got["timeout"] == int(resolve(p.get("Timeout", 3)))
        assert got["memory"] == int(resolve(p.get("MemorySize", 128)))
        assert got["role_arn"] == resolve(p["Role"])
        env = {k: str(resolve(resolve_if(v, cfn_template, values))) for k, v in ((p.get("Environment") or {}).get("Variables") or {}).items()}
        assert got["environment"] == env
        dlc = (p.get("DeadLetterConfig") or {}).get("TargetArn")
        assert got["dead_letter_arn"] == (resolve(dlc) if dlc else None)
        eic = eics.get(got["name"])
        want_retries = int(eic["MaximumRetryAttempts"]) if eic and "MaximumRetryAttempts" in eic else None
        assert got["max_retry_attempts"] == want_retries


def test_event_source_mappings_match_the_template(endpoint, provider, stack, translated):
    cfn_template, values = translated
    resolve = resolver(stack, values, client(provider["session"], endpoint, "dynamodb"))
    esms = of_type(cfn_template, "AWS::Lambda::EventSourceMapping")
    got = {m["uuid"]: m for m in stack["event_source_mappings"]}
    assert len(got) == len(esms)
    for lid, r in esms.items():
        p = r["Properties"]
        m = got[stack["resources"][lid]["physical_id"]]
        fn_ref = p["FunctionName"]["Ref"]
        assert m["function"] == fn_ref
        assert m["event_source_arn"] == resolve(p["EventSourceArn"])
        if "BatchSize" in p:
            assert m["batch_size"] == int(resolve(p["BatchSize"]))
        want = lambda key: resolve(resolve_if(p[key], cfn_template, values)) if key in p else None  # noqa: E731
        assert m["maximum_batching_window_s"] == (int(want("MaximumBatchingWindowInSeconds")) if "MaximumBatchingWindowInSeconds" in p else None)
        assert m["function_response_types"] == list(p.get("FunctionResponseTypes") or [])
        scaling = want("ScalingConfig") or {}
        assert m["maximum_concurrency"] == (int(scaling["MaximumConcurrency"]) if "MaximumConcurrency" in scaling else None)
        assert m["starting_position"] == p.get("StartingPosition")
        assert m["maximum_retry_attempts"] == (int(p["MaximumRetryAttempts"]) if "MaximumRetryAttempts" in p else None)
        assert m["bisect_batch_on_function_error"] == p.get("BisectBatchOnFunctionError")
        on_failure = ((p.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        assert m["on_failure_destination"] == (resolve(on_failure) if on_failure else None)
    sqs_mappings = [m for m in stack["event_source_mappings"] if ":sqs:" in m["event_source_arn"]]
    assert sqs_mappings and all("ReportBatchItemFailures" in m["function_response_types"] for m in sqs_mappings)


def test_queues_match_the_template(stack, translated):
    cfn_template, values = translated
    resolve = resolver(stack, values)
    queues = of_type(cfn_template, "AWS::SQS::Queue")
    assert set(stack["queues"]) == set(queues)
    for lid, r in queues.items():
        p, got = r.get("Properties") or {}, stack["queues"][lid]
        assert got["url"] == stack["resources"][lid]["physical_id"]
        # SQS API reference, CreateQueue: VisibilityTimeout defaults to 30 seconds.
        assert got["visibility_timeout_s"] == int(resolve(p.get("VisibilityTimeout", 30)))
        redrive = p.get("RedrivePolicy")
        if redrive:
            assert got["max_receive_count"] == int(resolve(redrive["maxReceiveCount"]))
            assert got["dead_letter_target_arn"] == resolve(redrive["deadLetterTargetArn"])
        else:
            assert got["max_receive_count"] is None and got["dead_letter_target_arn"] is None


def test_subscriptions_and_schedules_match_the_template(stack, translated):
    cfn_template, values = translated
    resolve = resolver(stack, values)
    want_subs = sorted(
        (resolve(r["Properties"]["TopicArn"]), r["Properties"]["Endpoint"]["Fn::GetAtt"][0])
        for r in of_type(cfn_template, "AWS::SNS::Subscription").values()
        if r["Properties"]["Protocol"] == "lambda"
    )
    assert sorted((s["topic_arn"], s["function"]) for s in stack["sns_lambda_subscriptions"]) == want_subs
    assert want_subs, "the template subscribes a function to SNS"
    want_rules = sorted(
        (stack["resources"][lid]["physical_id"], resolve(resolve_if(r["Properties"]["ScheduleExpression"], cfn_template, values)),
         t["Arn"]["Fn::GetAtt"][0])
        for lid, r in of_type(cfn_template, "AWS::Events::Rule").items()
        if "ScheduleExpression" in r["Properties"]
        for t in r["Properties"].get("Targets") or []
    )
    assert sorted((s["rule_name"], s["schedule_expression"], s["function"]) for s in stack["schedules"]) == want_rules
    assert all(s["state"] == "ENABLED" for s in stack["schedules"])


def alarm_dimension_problems(stack):
    """Alarms whose FunctionName / QueueName dimension names no function / queue of the stack."""
    functions = {f["name"] for f in stack["functions"].values()}
    queues = {q["url"].rstrip("/").rsplit("/", 1)[-1] for q in stack["queues"].values()}
    problems = []
    for a in stack["alarms"]:
        for name, value in a["dimensions"].items():
            if name == "FunctionName" and value not in functions:
                problems.append(f"{a['name']}: FunctionName={value} is not a function of the stack {sorted(functions)}")
            if name == "QueueName" and value not in queues:
                problems.append(f"{a['name']}: QueueName={value} is not a queue of the stack {sorted(queues)}")
    return problems


def test_every_alarm_watches_a_function_or_queue_of_the_stack(stack, translated):
    cfn_template, _ = translated
    assert len(stack["alarms"]) == len(of_type(cfn_template, "AWS::CloudWatch::Alarm"))
    assert alarm_dimension_problems(stack) == []
    watched = {v for a in stack["alarms"] for k, v in a["dimensions"].items() if k == "FunctionName"}
    assert watched == {f["name"] for f in stack["functions"].values()}, "every function has its alarms"


LOOP_ID_ALARM_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"],
    "Resources": {
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
                }
            },
        },
        "IngestFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {"Runtime": "provided.al2023", "Handler": "bootstrap", "CodeUri": ".", "Role": {"Fn::GetAtt": ["Role", "Arn"]}},
        },
        "Fn::ForEach::Alarms": [
            "Fn",
            ["IngestFunction"],
            {
                "${Fn}ErrorsAlarm": {
                    "Type": "AWS::CloudWatch::Alarm",
                    "Properties": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Errors",
                        "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "Fn"}}],
                        "Statistic": "Sum",
                        "Period": 300,
                        "EvaluationPeriods": 1,
                        "Threshold": 0,
                        "ComparisonOperator": "GreaterThanThreshold",
                    },
                }
            },
        ],
        "GoodAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "Namespace": "AWS/Lambda",
                "MetricName": "Errors",
                "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "IngestFunction"}}],
                "Statistic": "Sum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
            },
        },
    },
}


def test_alarm_check_catches_a_ref_to_the_loop_identifier(endpoint, provider):
    # Inside Fn::ForEach, `!Ref Fn` is the literal item "IngestFunction", not the function's name.
    desc = deploy.deploy(endpoint, PROVIDER, "gk-loop-id", LOOP_ID_ALARM_TEMPLATE)
    problems = alarm_dimension_problems(desc)
    assert len(problems) == 1, problems
    assert "FunctionName=IngestFunction is not a function of the stack" in problems[0]
    good = [a for a in desc["alarms"] if a["name"] == desc["resources"]["GoodAlarm"]["physical_id"]]
    assert good[0]["dimensions"] == {"FunctionName": desc["functions"]["IngestFunction"]["name"]}


def test_a_resource_type_moto_lacks_fails_the_stack(endpoint):
    template = {"Resources": {"Pipe": {"Type": "AWS::Pipes::Pipe", "Properties": {"RoleArn": "arn:aws:iam::111111111111:role/x", "Source": "a", "Target": "b"}}}}
    with pytest.raises(deploy.DeployError) as e:
        deploy.deploy(endpoint, PROVIDER, "gk-unsupported", template)
    assert "CREATE_FAILED" in str(e.value) and "Pipe" in str(e.value) and "no CloudFormation support" in str(e.value)


def test_a_roles_managed_policy_arns_are_attached_and_an_unknown_one_fails_the_stack(endpoint, provider):
    # AWS::IAM::Role, ManagedPolicyArns: "A list of Amazon Resource Names (ARNs) of the IAM managed policies that
    # you want to attach to the role." (moto ignored it.) The stack's OperatorPolicy is attached this way.
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PROVIDER}:root"}, "Action": "sts:AssumeRole"}]}
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"}]}
    template = {"Resources": {
        "Policy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": doc}},
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "gk-attached", "AssumeRolePolicyDocument": trust, "ManagedPolicyArns": [{"Ref": "Policy"}]}},
    }}
    deploy.deploy(endpoint, PROVIDER, "gk-attached", template)
    iam = client(provider["session"], endpoint, "iam")
    policy = physical_ids(provider["session"], endpoint, "gk-attached")["Policy"]
    attached = iam.list_attached_role_policies(RoleName="gk-attached")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [policy]
    cfn = client(provider["session"], endpoint, "cloudformation")
    cfn.delete_stack(StackName="gk-attached")
    roles = [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert "gk-attached" not in roles, "the role and its attachment went with the stack"
    unknown = {"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "gk-unattached", "AssumeRolePolicyDocument": trust, "ManagedPolicyArns": [f"arn:aws:iam::{PROVIDER}:policy/none-such"]}}}}
    with pytest.raises(deploy.DeployError) as e:
        deploy.deploy(endpoint, PROVIDER, "gk-unattached", unknown)
    assert "CREATE_FAILED" in str(e.value) and "none-such" in str(e.value), e.value


def physical_ids(session, url, stack_name) -> dict[str, str]:
    """A deployed stack's physical IDs, by logical ID (as ListStackResources answers them)."""
    resources = client(session, url, "cloudformation").list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}


@pytest.fixture(scope="module")
def kms_stack(endpoint, provider):
    """The template deployed with EncryptWithKms=true as the stack "gk-kms": its physical IDs."""
    session = provider["session"]
    # A service of its own: the module's service has the module's stack (one connection notification each).
    _, subnet = network(client(session, endpoint, "ec2"))
    svc = endpoint_service(session, endpoint, subnet, "svc-kms")
    deploy.deploy(endpoint, PROVIDER, "gk-kms", TEMPLATE, {"ManagedServiceIds": svc["ServiceId"], "EncryptWithKms": "true"})
    return physical_ids(session, endpoint, "gk-kms")


# README, "Deploy": the most endpoint services one stack manages.
MOST_SERVICES = 100


def test_a_stack_managing_the_most_services_the_readme_names_deploys_with_every_option(endpoint, provider):
    # IAM caps a role's inline policies together at 10,240 characters, white space not counted (the
    # emulator refuses more, as IAM does): a policy per service stopped a stack at about 30 services. The
    # largest roles are those of EncryptWithKms and ManageAllowedPrincipals, both on here.
    session = provider["session"]
    iam = client(session, endpoint, "iam")
    _, subnet = network(client(session, endpoint, "ec2"))
    control(endpoint, "/_gatekeeper/ec2-throttle", {"enabled": False})  # the setup, not at EC2's pace
    try:
        services = [endpoint_service(session, endpoint, subnet, f"many-{i}")["ServiceId"] for i in range(MOST_SERVICES)]
    finally:
        control(endpoint, "/_gatekeeper/ec2-throttle", {"enabled": True})
    params = {"ManagedServiceIds": ",".join(services), "EncryptWithKms": "true", "ManageAllowedPrincipals": "true"}
    deploy.deploy(endpoint, PROVIDER, "gk-many", TEMPLATE, params, timeout_s=180)
    physical = physical_ids(session, endpoint, "gk-many")
    for role in ("IngestRole", "DecideRole", "ReconcileRole"):
        names = iam.list_role_policies(RoleName=physical[role])["PolicyNames"]
        docs = [iam.get_role_policy(RoleName=physical[role], PolicyName=n)["PolicyDocument"] for n in names]
        size = sum(len("".join(json.dumps(d).split())) for d in docs)
        print(f"{role}: {len(names)} inline policies, {size} characters of IAM's 10,240")
        assert size <= 10_240, role
    # Each function's environment names every service (MANAGED_SERVICES) within Lambda's 4 KB, which the
    # emulator enforces as Lambda does.
    lam = client(session, endpoint, "lambda")
    for fn in ("IngestFunction", "DecideFunction", "ReconcileFunction"):
        env = lam.get_function_configuration(FunctionName=physical[fn])["Environment"]["Variables"]
        assert env["MANAGED_SERVICES"] == ",".join(services), fn
        print(f"{fn}: environment {len(json.dumps(env, separators=(',', ':')))} bytes of Lambda's 4,096")
    # Every managed service is granted, and only those: decide's role may accept on the last one, not on
    # the module's service, which this stack does not manage.
    role_arn = iam.get_role(RoleName=physical["DecideRole"])["Role"]["Arn"]
    as_decide = role_session(endpoint, role_arn, region=REGION).client("ec2", endpoint_url=endpoint)
    answer = as_decide.accept_vpc_endpoint_connections(ServiceId=services[-1], VpcEndpointIds=["vpce-00000000000000000"])
    assert [u["ResourceId"] for u in answer["Unsuccessful"]] == ["vpce-00000000000000000"], answer
    with pytest.raises(botocore.exceptions.ClientError) as e:
        as_decide.accept_vpc_endpoint_connections(ServiceId=provider["svc"]["ServiceId"], VpcEndpointIds=["vpce-00000000000000000"])
    assert e.value.response["Error"]["Code"] == "UnauthorizedOperation"


def test_a_functions_environment_past_lambdas_4_kb_is_refused_at_create_and_update(endpoint, provider):
    # Lambda quotas: 4 KB of environment variables per function, in aggregate (moto took any size).
    session = provider["session"]
    lam, iam = client(session, endpoint, "lambda"), client(session, endpoint, "iam")
    role = iam.create_role(RoleName="env-quota", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    ))["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    fits = {"A": "x" * 4000}  # {"A":"xxx..."}: 4,008 bytes measured
    too_big = {"A": "x" * 4000, "B": "y" * 100}

    def create(name, variables):
        return lam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="bootstrap", Role=role,
                                   Code={"ZipFile": code.getvalue()}, Environment={"Variables": variables})

    with pytest.raises(botocore.exceptions.ClientError) as e:
        create("env-too-big", too_big)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "exceeded the 4KB limit" in e.value.response["Error"]["Message"]
    create("env-fits", fits)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lam.update_function_configuration(FunctionName="env-fits", Environment={"Variables": too_big})
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert lam.get_function_configuration(FunctionName="env-fits")["Environment"]["Variables"] == fits
    lam.delete_function(FunctionName="env-fits")


def test_encrypt_with_kms_puts_the_stacks_key_on_both_tables_and_the_three_topics(endpoint, provider, stack, kms_stack):
    # The template's EncryptWithKms: one customer managed key (rotation on), as each resource's own property
    # names it (AWS::DynamoDB::Table SSESpecification.KMSMasterKeyId, AWS::SNS::Topic KmsMasterKeyId), read back
    # through the APIs a provider would use; its key policy is JSON text, as KMS's GetKeyPolicy answers it.
    session = provider["session"]
    physical = kms_stack
    kms = client(session, endpoint, "kms")
    key = kms.describe_key(KeyId=physical["Key"])["KeyMetadata"]
    assert key["Enabled"] and kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"]
    policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    assert {s["Sid"] for s in policy["Statement"]} == {"AccountAdministers", "EndpointServiceNotificationsPublish", "CloudWatchAlarmsPublish"}
    ddb = client(session, endpoint, "dynamodb")
    for table in ("AllowlistTable", "DecisionsTable"):
        sse = ddb.describe_table(TableName=physical[table])["Table"]["SSEDescription"]
        assert sse["Status"] == "ENABLED" and sse["SSEType"] == "KMS" and sse["KMSMasterKeyArn"] == key["Arn"], (table, sse)
    sns = client(session, endpoint, "sns")
    for topic in ("DecisionsTopic", "AlertsTopic", "ConnectionNotificationsTopic"):
        given = sns.get_topic_attributes(TopicArn=physical[topic])["Attributes"]["KmsMasterKeyId"]
        assert kms.describe_key(KeyId=given)["KeyMetadata"]["Arn"] == key["Arn"], (topic, given)
    # Without it (the module's stack), SSEEnabled alone: "an AWS managed key is used".
    managed = kms.describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]["Arn"]
    plain = [r for r in client(session, endpoint, "cloudformation").list_stack_resources(StackName=STACK)["StackResourceSummaries"] if r["LogicalResourceId"] == "AllowlistTable"]
    assert ddb.describe_table(TableName=plain[0]["PhysicalResourceId"])["Table"]["SSEDescription"]["KMSMasterKeyArn"] == managed


def alarm_actions(url) -> list[dict]:
    with urllib.request.urlopen(url + "/_gatekeeper/cloudwatch/actions", timeout=30) as r:
        return json.loads(r.read())["actions"]


def stack_alarms(session, url, stack_name) -> list[str]:
    resources = client(session, url, "cloudformation").list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    return sorted(r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::CloudWatch::Alarm")


def subscribed_queue(session, url, topic_arn: str, name: str) -> str:
    """A queue subscribed (raw) to `topic_arn`, its policy letting the topic send: its URL."""
    sqs, sns = client(session, url, "sqs"), client(session, url, "sns")
    q = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    statement = {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage", "Resource": arn,
                 "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}}
    sqs.set_queue_attributes(QueueUrl=q, Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": [statement]})})
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return q


def test_every_alarm_of_the_stack_reaches_the_alerts_topic_with_the_key_or_without(endpoint, provider, stack, kms_stack, translated):
    # CloudWatch publishes an alarm's notification as cloudwatch.amazonaws.com (gk_cloudwatch): the template's
    # AlertsTopicPolicy must allow it, and with EncryptWithKms the key policy too (CloudWatchAlarmsPublish).
    # Fails with either statement taken out of the template.
    session = provider["session"]
    sqs, cw = client(session, endpoint, "sqs"), client(session, endpoint, "cloudwatch")
    for stack_name, physical in ((STACK, physical_ids(session, endpoint, STACK)), ("gk-kms", kms_stack)):
        alarms = stack_alarms(session, endpoint, stack_name)
        # Every alarm the template makes (one service each: the same count for both stacks).
        assert len(alarms) == sum(r["Type"] == "AWS::CloudWatch::Alarm" for r in translated[0]["Resources"].values()), alarms
        for alarm in cw.describe_alarms(AlarmNames=alarms)["MetricAlarms"]:
            assert alarm["AlarmActions"] == [physical["AlertsTopic"]], alarm
        queue = subscribed_queue(session, endpoint, physical["AlertsTopic"], f"alerts-{stack_name}")
        before = len(alarm_actions(endpoint))
        for name in alarms:
            cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
        cw.set_alarm_state(AlarmName=alarms[0], StateValue="ALARM", StateReason="again")  # no change of state: no action
        ran = alarm_actions(endpoint)[before:]
        assert [(a["alarm"], a["outcome"]) for a in ran] == [(name, "published") for name in alarms], (stack_name, ran)
        seen: dict[str, dict] = {}

        def all_received():
            for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
                body = json.loads(m["Body"])
                seen[body["AlarmName"]] = body
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            return set(seen) == set(alarms)

        deadline_poll(f"{stack_name}'s {len(alarms)} alarm notifications", all_received)
        for body in seen.values():
            assert body["NewStateValue"] == "ALARM" and body["OldStateValue"] == "OK" and body["AWSAccountId"] == PROVIDER


def test_an_alarm_action_the_key_policy_refuses_fails_and_publishes_nothing(endpoint, provider, kms_stack):
    # The knowledge center's case: an encrypted topic whose key policy does not let CloudWatch use the key.
    session = provider["session"]
    kms, cw = client(session, endpoint, "kms"), client(session, endpoint, "cloudwatch")
    policy = json.loads(kms.get_key_policy(KeyId=kms_stack["Key"], PolicyName="default")["Policy"])
    kept = [st for st in policy["Statement"] if st.get("Sid") != "CloudWatchAlarmsPublish"]
    assert len(kept) == len(policy["Statement"]) - 1
    kms.put_key_policy(KeyId=kms_stack["Key"], PolicyName="default", Policy=json.dumps({**policy, "Statement": kept}))
    try:
        name = stack_alarms(session, endpoint, "gk-kms")[0]
        cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="test")
        before = len(alarm_actions(endpoint))
        cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
        (ran,) = alarm_actions(endpoint)[before:]
        assert ran["outcome"] == "failed" and "encryption key" in ran["error"] and kms_stack["AlertsTopic"] in ran["error"], ran
    finally:
        kms.put_key_policy(KeyId=kms_stack["Key"], PolicyName="default", Policy=json.dumps(policy))


def test_a_parameter_value_its_constraints_refuse_fails_create_stack_and_creates_nothing(endpoint, provider):
    # CloudFormation User Guide, "Parameters syntax": the template's constraints on each parameter; a value
    # that breaks one fails CreateStack with ValidationError (moto took any value).
    cfn = client(provider["session"], endpoint, "cloudformation")
    svc = provider["svc"]["ServiceId"]
    cases = {
        "RequestsVisibilityTimeoutSeconds": ("59", "must be a number not less than 60"),
        "ClaimLeaseSeconds": ("3601", "must be a number not greater than 3600"),
        "DefaultAction": ("accept", "must be one of AllowedValues"),
        "SweepIntervalMinutes": ("2.5", "failed to satisfy constraint: must be a whole number of minutes from 1 to 60"),
        "ManagedServiceIds": (f"{svc},vpce-svc-XYZ", "failed to satisfy constraint: each value must be an endpoint service ID"),
    }
    for key, (value, says) in cases.items():
        params = {"ManagedServiceIds": svc, key: value}
        with pytest.raises(botocore.exceptions.ClientError) as e:
            deploy.deploy(endpoint, PROVIDER, f"gk-bad-{key.lower()}", TEMPLATE, params)
        err = e.value.response["Error"]
        assert err["Code"] == "ValidationError", (key, err)
        assert f"Parameter '{key}'" in err["Message"] and says in err["Message"], (key, err["Message"])
        stacks = cfn.list_stacks()["StackSummaries"]
        assert not [s for s in stacks if s["StackName"] == f"gk-bad-{key.lower()}"], (key, stacks)


def test_a_parameter_value_its_constraints_refuse_fails_create_change_set_as_sam_deploy_makes_it(endpoint, provider):
    # `sam deploy` deploys through a change set (CreateChangeSet, then ExecuteChangeSet). CloudFormation checks
    # the parameters when the change set is created; moto took any value there and refused it only when the
    # change set was executed, after a REVIEW_IN_PROGRESS stack existed.
    cfn = client(provider["session"], endpoint, "cloudformation")
    svc = provider["svc"]["ServiceId"]
    for kind in ("CREATE", "UPDATE"):
        name = "gk-bad-changeset" if kind == "CREATE" else "gk-bad-changeset-update"
        prepared, _ = deploy.prepare(deploy.load_template(TEMPLATE), {"ManagedServiceIds": svc}, region=REGION,
                                     account=PROVIDER, stack_name=name)
        body = json.dumps(prepared)
        if kind == "UPDATE":
            cfn.create_stack(StackName=name, TemplateBody=json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}))
        with pytest.raises(botocore.exceptions.ClientError) as e:
            cfn.create_change_set(StackName=name, ChangeSetName="bad", ChangeSetType=kind, TemplateBody=body,
                                  Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
                                  Parameters=[{"ParameterKey": "ManagedServiceIds", "ParameterValue": svc},
                                              {"ParameterKey": "DefaultAction", "ParameterValue": "accept"}])
        err = e.value.response["Error"]
        assert err["Code"] == "ValidationError" and "Parameter 'DefaultAction'" in err["Message"], (kind, err)
        stacks = [x for x in cfn.list_stacks()["StackSummaries"] if x["StackName"] == name]
        assert [x["StackStatus"] for x in stacks] == ([] if kind == "CREATE" else ["CREATE_COMPLETE"]), (kind, stacks)


def test_eventbridge_takes_a_rate_only_with_its_unit_in_the_number_of_its_value(endpoint, provider):
    # EventBridge, "Rate expressions reference": a positive value; "If the value is equal to 1, then the unit
    # must be singular. If the value is greater than 1, the unit must be plural". moto took rate(1 minutes).
    events = client(provider["session"], endpoint, "events")
    for expr in ("rate(1 minutes)", "rate(5 minute)", "rate(0 minutes)", "rate(minutes)", "rate(1.5 hours)"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            events.put_rule(Name="gk-rate-bad", ScheduleExpression=expr)
        assert e.value.response["Error"]["Code"] == "ValidationException", expr
        assert "ScheduleExpression is not valid" in e.value.response["Error"]["Message"], expr
    for expr in ("rate(1 minute)", "rate(5 minutes)", "rate(1 hour)", "rate(2 days)", "cron(0 12 * * ? *)"):
        events.put_rule(Name="gk-rate-good", ScheduleExpression=expr)
    events.delete_rule(Name="gk-rate-good")


def test_every_sweep_interval_the_template_takes_is_a_schedule_eventbridge_takes(endpoint, provider):
    # What SweepIntervalMinutes allows (MinValue to MaxValue) each gives the sweep rule a schedule that
    # EventBridge's PutRule takes; rate(1 minutes) from a bare !Sub would fail the stack at the rule.
    template = deploy.load_template(TEMPLATE)
    pattern = re.compile(template["Parameters"]["SweepIntervalMinutes"]["AllowedPattern"])
    taken = [v for v in [str(n) for n in range(0, 1500)] + ["01", "1.0", "2.5", "-1", " 5"] if pattern.fullmatch(v)]
    assert taken == [str(n) for n in range(1, 61)], taken  # what CloudFormation lets through: 1..60, as written
    events = client(provider["session"], endpoint, "events")
    seen = set()
    for minutes in taken:
        params = {"ManagedServiceIds": provider["svc"]["ServiceId"], "SweepIntervalMinutes": str(minutes)}
        cfn, _ = deploy.prepare(copy.deepcopy(template), params, region=REGION, account=PROVIDER, stack_name=STACK)
        values = deploy.parameter_values(cfn, params, region=REGION, account=PROVIDER, stack_name=STACK)
        (rule,) = [r for r in of_type(cfn, "AWS::Events::Rule").values() if "ScheduleExpression" in r["Properties"]]
        expr = resolver({"resources": {}}, values)(resolve_if(rule["Properties"]["ScheduleExpression"], cfn, values))
        events.put_rule(Name="gk-sweep-schedule", ScheduleExpression=expr)
        seen.add(expr)
    events.delete_rule(Name="gk-sweep-schedule")
    assert {"rate(1 minute)", "rate(5 minutes)", "rate(60 minutes)"} <= seen


def test_parameter_constraints_as_the_guide_describes_them():
    number = {"Type": "Number", "MinValue": 60, "MaxValue": 100}
    assert gk_cloudformation.parameter_problem("N", number, "60") is None
    assert gk_cloudformation.parameter_problem("N", number, "59") == "Parameter 'N' must be a number not less than 60"
    assert gk_cloudformation.parameter_problem("N", number, "ten") == "Parameter 'N' must be a number"
    listed = {"Type": "CommaDelimitedList", "AllowedPattern": "^a[0-9]$"}
    assert gk_cloudformation.parameter_problem("L", listed, "a1,a2") is None  # each value matches
    assert gk_cloudformation.parameter_problem("L", listed, "a1,b2") == "Parameter 'L' must match pattern ^a[0-9]$"
    whole = {"Type": "String", "AllowedPattern": "[a-z]+"}
    assert gk_cloudformation.parameter_problem("S", whole, "abc") is None
    assert gk_cloudformation.parameter_problem("S", whole, "abc1") is not None  # the entire value must match
    sized = {"Type": "String", "MinLength": 2, "MaxLength": 3, "ConstraintDescription": "two or three"}
    assert gk_cloudformation.parameter_problem("S", sized, "a") == "Parameter 'S' failed to satisfy constraint: two or three"
    assert gk_cloudformation.parameter_problem("S", sized, "abcd") is not None
    assert gk_cloudformation.parameter_problem("S", {"AllowedValues": ["x", "y"]}, "y") is None
    # "Each member string is space trimmed"; YAML booleans are "true"/"false"; a number is written as one.
    assert gk_cloudformation.parameter_problem("L", listed, "a1, a2") is None
    assert gk_cloudformation.parameter_problem("B", {"AllowedValues": [True, False]}, "true") is None
    assert gk_cloudformation.parameter_problem("B", {"AllowedValues": [True, False]}, False) is None
    for bad in ("nan", "inf", "1_000", "", "6O"):
        assert gk_cloudformation.parameter_problem("N", number, bad) == "Parameter 'N' must be a number", bad
    assert gk_cloudformation.parameter_problem("N", number, 61) is None


def test_a_default_its_own_constraints_refuse_fails_create_stack(endpoint):
    template = {"Parameters": {"Receives": {"Type": "Number", "Default": 5, "MinValue": 10}},
                "Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "gk-default-refused"}}}}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        deploy.deploy(endpoint, PROVIDER, "gk-default-refused", template)
    assert e.value.response["Error"]["Message"] == "Parameter 'Receives' must be a number not less than 10"


def test_sns_reads_a_functions_policy_and_a_queues_policy_alike():
    # One reader (gk_policy) for both: a condition it does not evaluate grants nothing on either, an explicit
    # Deny wins on either, and the documented statement grants on both.
    topic = f"arn:aws:sns:{REGION}:{PROVIDER}:decisions"
    unknown = {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}
    statement = {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "lambda:InvokeFunction",
                 "Condition": unknown}
    fn = type("Fn", (), {"function_arn": f"arn:aws:lambda:{REGION}:{PROVIDER}:function:f",
                         "policy": type("P", (), {"statements": [statement]})()})()
    assert not gk_cloudformation._sns_may_invoke(fn, topic)
    statement["Condition"] = {"ArnLike": {"AWS:SourceArn": topic}}
    assert gk_cloudformation._sns_may_invoke(fn, topic)
    fn.policy.statements.append({"Effect": "Deny", "Principal": "*", "Action": "lambda:*", "Condition": {"ArnEquals": {"aws:SourceArn": topic}}})
    assert not gk_cloudformation._sns_may_invoke(fn, topic)

    allow = {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage", "Resource": "*", "Condition": unknown}
    queue = type("Q", (), {"queue_arn": f"arn:aws:sqs:{REGION}:{PROVIDER}:q", "_policy_json": {"Statement": [allow]}})()
    assert not gk_cloudformation._sns_may_send(queue, topic)
    allow["Condition"] = {"ArnEquals": {"aws:SourceArn": topic}}
    assert gk_cloudformation._sns_may_send(queue, topic)
    queue._policy_json["Statement"].append({"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sqs:SendMessage", "Resource": "*"})
    assert not gk_cloudformation._sns_may_send(queue, topic)


# ------------------------------------------------------------------------------ behaviour at run time


def test_connection_notification_exists_for_the_managed_service(endpoint, provider, stack):
    ec2 = client(provider["session"], endpoint, "ec2")
    sid = provider["svc"]["ServiceId"]
    (n,) = ec2.describe_vpc_endpoint_connection_notifications(Filters=[{"Name": "service-id", "Values": [sid]}])["ConnectionNotificationSet"]
    assert n["ConnectionNotificationArn"] == stack["outputs"]["ConnectionNotificationsTopicArn"]
    assert set(n["ConnectionEvents"]) == {"Connect", "Accept", "Reject", "Delete"}
    assert n["ConnectionNotificationId"] == stack["resources"][f"ConnectionNotification{re.sub('[^A-Za-z0-9]', '', sid)}"]["physical_id"]


def take(url, function_arn, wait_s=0.0):
    return control(url, "/_gatekeeper/lambda/take", {"function_arn": function_arn, "max": 10, "wait_s": wait_s})["invocations"]


def test_consumer_endpoint_reaches_ingest_and_failures_reach_its_dead_letter_queue(endpoint, provider, stack):
    ingest = stack["functions"]["IngestFunction"]
    (sub,) = [s for s in stack["sns_lambda_subscriptions"] if s["function"] == "IngestFunction"]
    consumer = deploy.provider_session(endpoint, CONSUMER, REGION)
    ec2 = client(consumer, endpoint, "ec2")
    vpc, subnet = network(ec2)
    vpce = ec2.create_vpc_endpoint(
        VpcEndpointType="Interface", VpcId=vpc, ServiceName=provider["svc"]["ServiceName"], SubnetIds=[subnet]
    )["VpcEndpoint"]["VpcEndpointId"]

    (inv,) = deadline_poll("the Connect notification in ingest's async queue", lambda: take(endpoint, ingest["arn"], 0.5))
    assert inv["attempt"] == 1
    (record,) = inv["payload"]["Records"]
    assert record["EventSource"] == "aws:sns" and record["EventVersion"] == "1.0"
    assert record["EventSubscriptionArn"] == sub["subscription_arn"]
    sns = record["Sns"]
    assert sns["Type"] == "Notification" and sns["TopicArn"] == sub["topic_arn"]
    for key in ("MessageId", "Timestamp", "SignatureVersion", "Signature", "SigningCertUrl", "UnsubscribeUrl", "MessageAttributes"):
        assert key in sns
    body = json.loads(sns["Message"])
    assert body["vpcEndpointId"] == vpce and body["connectionEvent"] == "Connect"

    # Lambda's asynchronous invocation: MaximumRetryAttempts (2 here) retries, then the dead-letter queue.
    assert ingest["max_retry_attempts"] == 2
    assert control(endpoint, "/_gatekeeper/lambda/done", {"id": inv["id"], "ok": False, "error": "boom 1"}) == {}
    for attempt in (2, 3):
        (again,) = deadline_poll(f"retry {attempt}", lambda: take(endpoint, ingest["arn"], 0.5))
        assert again["id"] == inv["id"] and again["attempt"] == attempt and again["payload"] == inv["payload"]
        assert control(endpoint, "/_gatekeeper/lambda/done", {"id": again["id"], "ok": False, "error": f"boom {attempt}"}) == {}
    assert take(endpoint, ingest["arn"]) == []
    assert "error" in control(endpoint, "/_gatekeeper/lambda/done", {"id": inv["id"], "ok": True})

    sqs = client(provider["session"], endpoint, "sqs")
    dlq = next(q for q in stack["queues"].values() if q["arn"] == ingest["dead_letter_arn"])

    def dead_letter():
        return sqs.receive_message(QueueUrl=dlq["url"], MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages")

    (msg,) = deadline_poll("the event in ingest's dead-letter queue", dead_letter)
    assert json.loads(msg["Body"]) == inv["payload"]
    attrs = msg["MessageAttributes"]
    assert attrs["RequestID"] == {"StringValue": inv["id"], "DataType": "String"}
    assert attrs["ErrorCode"]["DataType"] == "Number" and len(attrs["ErrorCode"]["StringValue"]) == 3
    assert attrs["ErrorMessage"]["StringValue"] == "boom 3"


def test_a_successful_invocation_is_not_retried(endpoint, stack, provider):
    ingest = stack["functions"]["IngestFunction"]
    sns = client(provider["session"], endpoint, "sns")
    sns.publish(TopicArn=stack["outputs"]["ConnectionNotificationsTopicArn"], Message='{"hello": 1}')
    (inv,) = deadline_poll("the published message", lambda: take(endpoint, ingest["arn"], 0.5))
    assert inv["payload"]["Records"][0]["Sns"]["Subject"] is None
    assert control(endpoint, "/_gatekeeper/lambda/done", {"id": inv["id"], "ok": True}) == {}
    assert take(endpoint, ingest["arn"], 0.3) == []


def queue_arn(sqs, name: str, visibility: int) -> str:
    """A new queue with this visibility timeout: its ARN."""
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility)})["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def test_lambda_refuses_a_queue_whose_visibility_timeout_is_under_the_functions_timeout(endpoint, provider, stack):
    # What users of CreateEventSourceMapping report Lambda answering (hashicorp/terraform-provider-aws#18099):
    # the queue must keep a message out of sight at least as long as the function may run.
    session = provider["session"]
    sqs, lam = client(session, endpoint, "sqs"), client(session, endpoint, "lambda")
    decide = stack["functions"]["DecideFunction"]
    assert decide["timeout"] == 60
    for visibility, refused in ((59, True), (60, False)):
        arn = queue_arn(sqs, f"gk-visibility-{visibility}", visibility)
        if refused:
            with pytest.raises(botocore.exceptions.ClientError) as e:
                lam.create_event_source_mapping(FunctionName=decide["name"], EventSourceArn=arn, BatchSize=10)
            err = e.value.response["Error"]
            assert err["Code"] == "InvalidParameterValueException", err
            assert err["Message"] == "Queue visibility timeout: 59 seconds is less than Function timeout: 60 seconds"
            listed = lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]
            assert listed == [], listed
        else:
            made = lam.create_event_source_mapping(FunctionName=decide["name"], EventSourceArn=arn, BatchSize=10)
            # "...when you create or update an event source mapping": reconcile runs up to 120 s.
            reconcile = stack["functions"]["ReconcileFunction"]
            assert reconcile["timeout"] == 120
            with pytest.raises(botocore.exceptions.ClientError) as e:
                lam.update_event_source_mapping(UUID=made["UUID"], FunctionName=reconcile["name"])
            assert e.value.response["Error"]["Message"] == "Queue visibility timeout: 60 seconds is less than Function timeout: 120 seconds"
            assert lam.get_event_source_mapping(UUID=made["UUID"])["FunctionArn"].endswith(decide["name"])  # unchanged
            lam.delete_event_source_mapping(UUID=made["UUID"])


def test_lambda_refuses_sqs_mapping_settings_its_api_reference_refuses(endpoint, provider, stack):
    session = provider["session"]
    sqs = client(session, endpoint, "sqs")
    # botocore checks the model's ranges before sending; the SDK for Rust and CloudFormation do not, so the
    # service's own answer is what is tested here.
    lam = session.client("lambda", endpoint_url=endpoint, config=botocore.config.Config(parameter_validation=False))
    decide = stack["functions"]["DecideFunction"]["name"]
    arn = queue_arn(sqs, "gk-settings", 360)
    refused = {
        "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10": {"BatchSize": 11},
        "BatchSize 10001 is out of range": {"BatchSize": 10001, "MaximumBatchingWindowInSeconds": 1},
        "MaximumBatchingWindowInSeconds 301 is out of range": {"BatchSize": 100, "MaximumBatchingWindowInSeconds": 301},
        "ScalingConfig.MaximumConcurrency 1 is out of range": {"ScalingConfig": {"MaximumConcurrency": 1}},
    }
    for says, settings in refused.items():
        with pytest.raises(botocore.exceptions.ClientError) as e:
            lam.create_event_source_mapping(FunctionName=decide, EventSourceArn=arn, **settings)
        assert e.value.response["Error"]["Code"] == "InvalidParameterValueException", settings
        assert says in e.value.response["Error"]["Message"], (settings, e.value.response["Error"]["Message"])
    assert lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"] == []
    # The template's settings (BatchSize 1000 with a 2 s window, MaximumConcurrency 2) are taken ...
    made = lam.create_event_source_mapping(FunctionName=decide, EventSourceArn=arn, BatchSize=1000,
                                           MaximumBatchingWindowInSeconds=2, ScalingConfig={"MaximumConcurrency": 2})
    # ... and an update is judged on the settings it would leave: 1000 with no window is refused.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lam.update_event_source_mapping(UUID=made["UUID"], MaximumBatchingWindowInSeconds=0)
    assert "greater than 10" in e.value.response["Error"]["Message"]
    lam.update_event_source_mapping(UUID=made["UUID"], BatchSize=10, MaximumBatchingWindowInSeconds=0)
    lam.delete_event_source_mapping(UUID=made["UUID"])


def test_event_source_mappings_are_inert(endpoint, provider, stack):
    session = provider["session"]
    sqs = client(session, endpoint, "sqs")
    url = stack["queues"]["RequestsQueue"]["url"]
    sqs.send_message(QueueUrl=url, MessageBody='{"probe": true}')
    got = deadline_poll("the message moto must leave in the requests queue", lambda: sqs.receive_message(QueueUrl=url).get("Messages"))
    assert json.loads(got[0]["Body"]) == {"probe": True}
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])

    # The allowlist stream's records stay for the runner (moto cleared them after a failed delivery).
    ddb = client(session, endpoint, "dynamodb")
    table = stack["outputs"]["AllowlistTableName"]
    ddb.put_item(TableName=table, Item={"service_id": {"S": "*"}, "principal": {"S": "999999999999"}, "effect": {"S": "allow"}})
    stream_arn = next(m["event_source_arn"] for m in stack["event_source_mappings"] if ":dynamodb:" in m["event_source_arn"])
    streams = client(session, endpoint, "dynamodbstreams")
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = streams.get_records(ShardIterator=it)["Records"]
    assert [r["eventName"] for r in records] == ["INSERT"]


# --------------------------------------------------------------------------------- the expander


def expand(template, params=None):
    return deploy.expand_language_extensions(template, params or {})


def test_ref_to_the_loop_identifier_is_the_literal_item():
    t = {
        "Transform": "AWS::LanguageExtensions",
        "Resources": {"Fn::ForEach::A": ["Fn", ["IngestFunction"], {"${Fn}Alarm": {"Type": "T", "Properties": {"V": {"Ref": "Fn"}, "W": {"Ref": "Other"}}}}]},
    }
    out = expand(t)
    assert out["Resources"] == {"IngestFunctionAlarm": {"Type": "T", "Properties": {"V": "IngestFunction", "W": {"Ref": "Other"}}}}
    assert "Transform" not in out


def test_substitution_of_dollar_and_ampersand_in_keys_and_sub_strings():
    t = {
        "Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"],
        "Resources": {
            "Fn::ForEach::S": [
                "Id",
                ["vpce-svc-0a1", "10.0.0.0/24"],
                {"R&{Id}": {"Type": "T", "Properties": {"Name": {"Fn::Sub": "x-${Id}-&{Id}-${AWS::Region}"}, "GetAtt": {"Fn::GetAtt": [{"Ref": "Id"}, "Arn"]}}}},
            ]
        },
    }
    out = expand(t)
    assert out["Transform"] == "AWS::Serverless-2016-10-31"
    assert out["Resources"]["Rvpcesvc0a1"]["Properties"]["Name"] == {"Fn::Sub": "x-vpce-svc-0a1-vpcesvc0a1-${AWS::Region}"}
    assert out["Resources"]["Rvpcesvc0a1"]["Properties"]["GetAtt"] == {"Fn::GetAtt": ["vpce-svc-0a1", "Arn"]}
    assert out["Resources"]["R1000024"]["Properties"]["Name"] == {"Fn::Sub": "x-10.0.0.0/24-1000024-${AWS::Region}"}


def test_collection_from_a_parameter_given_else_default_and_nesting():
    t = {
        "Transform": "AWS::LanguageExtensions",
        "Parameters": {"Ids": {"Type": "CommaDelimitedList", "Default": "a,b"}},
        "Resources": {
            "Fn::ForEach::Outer": [
                "Id",
                {"Ref": "Ids"},
                {"Fn::ForEach::Inner": ["Kind", ["X", "Y"], {"${Kind}${Id}": {"Type": "T", "Properties": {"P": {"Fn::Sub": "${Id}/${Kind}"}}}}]},
            ]
        },
    }
    assert sorted(expand(t)["Resources"]) == ["Xa", "Xb", "Ya", "Yb"]
    out = expand(t, {"Ids": "p, q"})  # CommaDelimitedList members are space-trimmed
    assert sorted(out["Resources"]) == ["Xp", "Xq", "Yp", "Yq"]
    assert out["Resources"]["Yq"]["Properties"]["P"] == {"Fn::Sub": "q/Y"}


def test_a_collection_parameter_without_a_value_fails_loudly():
    t = {
        "Transform": "AWS::LanguageExtensions",
        "Parameters": {"ManagedServiceIds": {"Type": "CommaDelimitedList"}},
        "Resources": {"Fn::ForEach::N": ["S", {"Ref": "ManagedServiceIds"}, {"N&{S}": {"Type": "T"}}]},
    }
    with pytest.raises(deploy.DeployError, match="ManagedServiceIds has no value and no Default"):
        expand(t)
    with pytest.raises(deploy.DeployError, match="ManagedServiceIds"):
        deploy.prepare(deploy.load_template(TEMPLATE), {}, region=REGION, account=PROVIDER, stack_name="x")


def test_the_expander_refuses_what_cloudformation_refuses():
    base = {"Transform": "AWS::LanguageExtensions", "Parameters": {"S": {"Type": "String", "Default": "a"}}}
    with pytest.raises(deploy.DeployError, match="not a CommaDelimitedList"):
        expand({**base, "Resources": {"Fn::ForEach::N": ["I", {"Ref": "S"}, {"N${I}": {"Type": "T"}}]}})
    with pytest.raises(deploy.DeployError, match="already exists"):
        expand({**base, "Resources": {"Na": {"Type": "T"}, "Fn::ForEach::N": ["I", ["a"], {"N${I}": {"Type": "T"}}]}})
    with pytest.raises(deploy.DeployError, match="collection must be"):
        expand({**base, "Resources": {"Fn::ForEach::N": ["I", {"Fn::Split": [",", "a,b"]}, {"N${I}": {"Type": "T"}}]}})


# ------------------------------------------------------------------------------- the moto pin


def test_moto_is_the_pinned_version_and_every_patch_point_exists():
    import moto
    from moto.cloudformation import parsing

    pinned = re.search(r"^moto\[server\]==(\S+)$", (HERE / "requirements.txt").read_text(), re.M).group(1)
    assert moto.__version__ == pinned == gk_cloudformation.MOTO_VERSION
    for name, (owner, attr) in gk_cloudformation.PATCH_POINTS.items():
        assert hasattr(owner, attr), name
    # The patches are installed where moto looks them up.
    assert parsing.parse_and_create_resource is gk_cloudformation._parse_and_create_resource
    assert parsing.clean_json is gk_cloudformation._clean_json
    for cls in gk_cloudformation.ADDED_TYPES:
        assert parsing.get_model_map()[cls.cloudformation_type()] is cls
    # moto still keeps the registrations the inert mappings remove, under the same names.
    from moto.sqs.models import Queue

    assert "lambda_event_source_mappings" in Queue.__init__.__code__.co_names
    import inspect

    from moto.dynamodb.models.table import StreamShard

    assert "lambda_event_source_mappings" in inspect.getsource(gk_dynamodb._orig_stream_add)
    assert StreamShard.add is gk_dynamodb._stream_add
    from moto.sns.models import Subscription

    assert "send_sns_message" in inspect.getsource(gk_cloudformation._orig_sub_publish)
    assert Subscription.publish is gk_cloudformation._sub_publish
