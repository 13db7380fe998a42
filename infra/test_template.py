"""The template's IAM is exactly the least privilege listed here: a widened policy fails this test. And what
the template promises elsewhere: alarms on resources the stack creates, decide's concurrency limited where the
SQS event source honours it, the parameters' constraints."""

import re
from pathlib import Path

from cfnlint.decode import cfn_yaml

TEMPLATE = cfn_yaml.load(str(Path(__file__).with_name("template.yaml")))
RESOURCES = TEMPLATE["Resources"]

LOGS = ("logs:CreateLogStream", "logs:PutLogEvents")
XRAY = ("xray:PutTelemetryRecords", "xray:PutTraceSegments")
DESCRIBE = ("ec2:DescribeVpcEndpointConnections",)

# role -> {(actions, resource)}; resources as written: "*", "Ref:X", "GetAtt:X.Attr", or the Sub string.
EXPECTED = {
    "IngestRole": {
        (LOGS, "Sub:${IngestLogs.Arn}:*"),
        (XRAY, "*"),
        (DESCRIBE, "*"),
        (("events:PutEvents",), "GetAtt:Bus.Arn"),
        (("sqs:SendMessage",), "GetAtt:IngestDeadLetterQueue.Arn"),
    },
    "DecideRole": {
        (LOGS, "Sub:${DecideLogs.Arn}:*"),
        (XRAY, "*"),
        (DESCRIBE, "*"),
        (("dynamodb:Query",), "GetAtt:AllowlistTable.Arn"),
        (("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"), "GetAtt:DecisionsTable.Arn"),
        (("sns:Publish",), "Ref:DecisionsTopic"),
        # the tenant tag on accepted connections (its tag-key condition is checked below)
        (("ec2:CreateTags",), "Sub:arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:vpc-endpoint-connection/*"),
        # the SQS event source's needs (AWSLambdaSQSQueueExecutionRole); decide makes no SQS call itself
        (("sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"), "GetAtt:RequestsQueue.Arn"),
        (("sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"), "GetAtt:DeliveriesQueue.Arn"),
        (("kms:Decrypt", "kms:GenerateDataKey"), "GetAtt:Key.Arn"),
        # exactly the managed services (what the expression gives is checked below)
        (("ec2:AcceptVpcEndpointConnections", "ec2:RejectVpcEndpointConnections"), "ManagedServiceArns"),
    },
    "ReconcileRole": {
        (LOGS, "Sub:${ReconcileLogs.Arn}:*"),
        (XRAY, "*"),
        (DESCRIBE, "*"),
        (("dynamodb:Query",), "GetAtt:AllowlistTable.Arn"),
        (("dynamodb:Query",), "Sub:${DecisionsTable.Arn}/index/owed"),
        (("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"), "GetAtt:AllowlistTable.StreamArn"),
        # no resource type in the Service Authorization Reference: only "*" grants it (docs/aws-facts.md)
        (("dynamodb:ListStreams",), "*"),
        (("events:PutEvents",), "GetAtt:Bus.Arn"),
        (("sqs:SendMessage",), "GetAtt:ReconcileDeadLetterQueue.Arn"),
        (("kms:Decrypt",), "GetAtt:Key.Arn"),
        (("ec2:DescribeVpcEndpointServiceConfigurations",), "*"),
        # ManageAllowedPrincipals: read the principals; the ledger items, and only those (condition below)
        (("ec2:DescribeVpcEndpointServicePermissions",), "*"),
        (("dynamodb:GetItem", "dynamodb:PutItem"), "GetAtt:DecisionsTable.Arn"),
        (("ec2:ModifyVpcEndpointServicePermissions",), "ManagedServiceArns"),
    },
}
# Read-only EC2 actions that take no resource-level permission (Service Authorization Reference).
DESCRIBE_STAR = DESCRIBE + ("ec2:DescribeVpcEndpointServiceConfigurations", "ec2:DescribeVpcEndpointServicePermissions")
# DynamoDB actions without a resource type there, which only "*" grants.
NO_RESOURCE_TYPE = ("dynamodb:ListStreams",)
# The managed services' ARNs, as the template writes them: one list, made from ManagedServiceIds.
MANAGED_SERVICE_ARNS = {
    "Fn::Split": [
        ",",
        {
            "Fn::Sub": [
                "arn:*:ec2:*:*:vpc-endpoint-service/${Ids}",
                {"Ids": {"Fn::Join": [",arn:*:ec2:*:*:vpc-endpoint-service/", {"Ref": "ManagedServiceIds"}]}},
            ]
        },
    ]
}


def resolve(node, parameters):
    """What CloudFormation makes of Fn::Split, Fn::Sub (with its variable map), Fn::Join and Ref to a
    parameter, given the parameters' values."""
    if isinstance(node, str):
        return node
    (fn, arg), = node.items()
    if fn == "Ref":
        return parameters[arg]
    if fn == "Fn::Join":
        return arg[0].join(resolve(v, parameters) for v in resolve_list(arg[1], parameters))
    if fn == "Fn::Split":
        return resolve(arg[1], parameters).split(arg[0])
    if fn == "Fn::Sub":
        text, variables = arg
        return re.sub(r"\$\{(\w+)\}", lambda m: resolve(variables[m.group(1)], parameters), text)
    raise AssertionError(f"unexpected intrinsic {node}")


def resolve_list(node, parameters):
    return node if isinstance(node, list) else resolve(node, parameters)


def resource_repr(r):
    if isinstance(r, str):
        return r
    (fn, arg), = r.items()
    if fn == "Ref":
        return f"Ref:{arg}"
    if fn == "Fn::GetAtt":
        return "GetAtt:" + (arg if isinstance(arg, str) else ".".join(arg))
    if fn == "Fn::Sub":
        return "Sub:" + (arg if isinstance(arg, str) else arg[0])
    if r == MANAGED_SERVICE_ARNS:
        return "ManagedServiceArns"
    raise AssertionError(f"unexpected resource form {r}")


def statements_of(policy_document):
    out = set()
    for st in policy_document["Statement"]:
        assert st["Effect"] == "Allow", st
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for r in resources:
            out.add((tuple(sorted(actions)), resource_repr(r)))
    return out


def role_statements(role):
    props = RESOURCES[role]["Properties"]
    assert "ManagedPolicyArns" not in props, f"{role} has managed policies"
    out = set()
    for p in props["Policies"]:
        if "Fn::If" in p:  # the optional KMS and principal-sync policies
            p = p["Fn::If"][1]
        out |= statements_of(p["PolicyDocument"])
    return out


def conditional_policy(role, condition):
    (p,) = [p["Fn::If"][1] for p in RESOURCES[role]["Properties"]["Policies"] if "Fn::If" in p and p["Fn::If"][0] == condition]
    return p


def test_each_role_has_exactly_the_expected_statements():
    for role, expected in EXPECTED.items():
        assert role_statements(role) == expected, role


def statement(policy_document, sid):
    (st,) = [st for st in policy_document["Statement"] if st.get("Sid") == sid]
    return st


def decide_policy():
    """DecideRole's own inline policy ("decide")."""
    (policy,) = [p for p in RESOURCES["DecideRole"]["Properties"]["Policies"] if p.get("PolicyName") == "decide"]
    return policy


def test_accept_and_reject_are_scoped_to_exactly_the_managed_services_in_one_statement():
    resource = statement(decide_policy()["PolicyDocument"], "DecideConnections")["Resource"]
    for services in (["vpce-svc-0123456789abcdef0"], ["vpce-svc-0123456789abcdef0", "vpce-svc-01234567", "vpce-svc-0fedcba9"]):
        arns = resolve(resource, {"ManagedServiceIds": services})
        assert arns == [f"arn:*:ec2:*:*:vpc-endpoint-service/{s}" for s in services]
    # One statement for every service, not a policy each: IAM's quota on a role's inline policies together.
    assert not [k for k, r in RESOURCES.items() if isinstance(r, dict) and r.get("Type") == "AWS::IAM::RolePolicy"]
    assert not [k for k in RESOURCES if k.startswith("Fn::ForEach::") and "RolePolicy" in str(RESOURCES[k])]


def test_no_wildcard_actions_and_wildcard_resources_only_where_aws_requires_them():
    for role in EXPECTED:
        for actions, resource in role_statements(role):
            assert all(not a.endswith("*") for a in actions), (role, actions)
            if resource == "*":
                assert set(actions) <= set(DESCRIBE_STAR + XRAY + NO_RESOURCE_TYPE), (role, actions)


def test_decide_may_tag_only_connections_and_only_with_the_tenant_key():
    (tag,) = [st for st in decide_policy()["PolicyDocument"]["Statement"] if st["Action"] == "ec2:CreateTags"]
    assert tag["Condition"] == {"ForAllValues:StringEquals": {"aws:TagKeys": ["gatekeeper:tenant"]}}


def test_the_principal_sync_may_change_only_managed_services_and_write_only_its_ledger():
    policy = conditional_policy("ReconcileRole", "ManagePrincipals")
    ledger = statement(policy["PolicyDocument"], "PrincipalLedger")
    assert ledger["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["principals#*"]}}
    change = statement(policy["PolicyDocument"], "ChangeAllowedPrincipals")
    assert change["Action"] == "ec2:ModifyVpcEndpointServicePermissions"
    services = ["vpce-svc-0123456789abcdef0", "vpce-svc-01234567"]
    assert resolve(change["Resource"], {"ManagedServiceIds": services}) == [f"arn:*:ec2:*:*:vpc-endpoint-service/{s}" for s in services]
    assert TEMPLATE["Conditions"]["ManagePrincipals"] == {"Fn::Equals": [{"Ref": "ManageAllowedPrincipals"}, "true"]}
    assert TEMPLATE["Parameters"]["ManageAllowedPrincipals"]["Default"] == "false"


def test_every_function_has_its_own_role_and_the_stated_runtime():
    functions = {k: v for k, v in RESOURCES.items() if isinstance(v, dict) and v.get("Type") == "AWS::Serverless::Function"}
    assert set(functions) == {"IngestFunction", "DecideFunction", "ReconcileFunction"}
    roles = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()]
    assert sorted(roles) == sorted(EXPECTED), roles
    glob = TEMPLATE["Globals"]["Function"]
    assert glob["Runtime"] == "provided.al2023" and glob["Architectures"] == ["arm64"]
    assert glob["LoggingConfig"]["LogFormat"] == "JSON" and glob["Tracing"] == "Active"
    for name, f in functions.items():
        assert f["Metadata"]["BuildMethod"] == "rust-cargolambda", name


ACCOUNT_ENDPOINT_SERVICES = {
    "Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:vpc-endpoint-service/*"
}


def test_vpce_may_publish_connection_notifications_only_from_this_account():
    st = RESOURCES["ConnectionNotificationsTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert st["Principal"] == {"Service": "vpce.amazonaws.com"} and st["Action"] == "sns:Publish"
    assert st["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert st["Condition"]["ArnLike"]["aws:SourceArn"] == ACCOUNT_ENDPOINT_SERVICES


def test_vpce_may_use_the_key_only_for_this_accounts_endpoint_services():
    (st,) = [
        st
        for st in RESOURCES["Key"]["Properties"]["KeyPolicy"]["Statement"]
        if st["Principal"] == {"Service": "vpce.amazonaws.com"}
    ]
    assert st["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert st["Condition"]["ArnLike"]["aws:SourceArn"] == ACCOUNT_ENDPOINT_SERVICES


def test_every_asynchronous_path_has_a_dead_letter_queue():
    props = {k: RESOURCES[k]["Properties"] for k in ("IngestFunction", "ReconcileFunction")}
    for name, p in props.items():
        assert p["DeadLetterQueue"]["Type"] == "SQS", name
    stream = RESOURCES["ReconcileFunction"]["Properties"]["Events"]["AllowlistChanges"]["Properties"]
    assert stream["DestinationConfig"]["OnFailure"]["Type"] == "SQS"
    assert "RedrivePolicy" in RESOURCES["RequestsQueue"]["Properties"]
    redrive = RESOURCES["DeliveriesQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeliveriesDeadLetterQueue", "Arn"]}
    assert "DeliveriesDeadLetterQueue" in TEMPLATE["Resources"]["Fn::ForEach::DeadLetterAlarms"][1], "alarmed"
    target = RESOURCES["ConnectionRequestRule"]["Properties"]["Targets"][0]
    assert "DeadLetterConfig" in target


def test_list_streams_is_granted_on_star_as_an_action_without_a_resource_type():
    """The Service Authorization Reference gives dynamodb:ListStreams no resource type, so IAM applies only a
    statement with Resource "*" to it: the emulator authorizes it so (gk_iam._NO_RESOURCE), and the reconcile
    role grants it so, in a statement of its own, with the stream reads on the stream's ARN only."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "emulator"))
    import gk_iam

    assert "ListStreams" in gk_iam._NO_RESOURCE["dynamodb"]
    ours = role_statements("ReconcileRole")
    assert (("dynamodb:ListStreams",), "*") in ours
    assert [r for a, r in ours if "dynamodb:ListStreams" in a] == ["*"]
    reads = ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator")
    assert [r for a, r in ours if set(a) & set(reads)] == ["GetAtt:AllowlistTable.StreamArn"]


def test_the_allowlist_stream_is_read_from_its_oldest_record_so_no_change_is_missed():
    # Lambda developer guide, "Polling and stream starting positions" (the sentence below as its Kafka page
    # words it; the DynamoDB streams page has a section of that name): polling starts minutes after a mapping
    # is created (up to 90 s after an update), so "if you specify LATEST as the starting position for the
    # stream, the event source mapping could miss events during a create or update. To ensure that no events
    # are missed, specify either TRIM_HORIZON or AT_TIMESTAMP." A missed change is a revocation or principal
    # sync left to the next sweep.
    stream = RESOURCES["ReconcileFunction"]["Properties"]["Events"]["AllowlistChanges"]["Properties"]
    assert stream["StartingPosition"] == "TRIM_HORIZON"


def test_the_decisions_topic_delivers_to_decide_through_a_queue_only_that_topic_may_send_to():
    sub = RESOURCES["DeliveriesSubscription"]["Properties"]
    assert (sub["TopicArn"], sub["Protocol"], sub["Endpoint"]) == (
        {"Ref": "DecisionsTopic"}, "sqs", {"Fn::GetAtt": ["DeliveriesQueue", "Arn"]})
    assert sub["RawMessageDelivery"] is True, "decide reads the record attribute as an SQS message attribute"
    assert RESOURCES["DeliveriesSubscription"]["DependsOn"] == "DeliveriesQueuePolicy"
    (statement,) = RESOURCES["DeliveriesQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "DecisionsTopic"}}}
    decide = RESOURCES["DecideFunction"]["Properties"]
    event = decide["Events"]["Deliveries"]
    assert (event["Type"], event["Properties"]["Queue"]) == ("SQS", {"Fn::GetAtt": ["DeliveriesQueue", "Arn"]})
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert decide["Environment"]["Variables"]["DELIVERIES_QUEUE_ARN"] == {"Fn::GetAtt": ["DeliveriesQueue", "Arn"]}
    assert RESOURCES["DeliveriesQueue"]["Properties"]["VisibilityTimeout"] == {"Ref": "RequestsVisibilityTimeoutSeconds"}


# ---------------------------------------------------------------------------------------------- after Fn::ForEach
SAMPLE_PARAMETERS = {"ManagedServiceIds": ["vpce-svc-0123456789abcdef0", "vpce-svc-01234567"]}


def _substitute(node, ident, item):
    """A Fn::ForEach fragment for one item: Ref to the identifier and ${identifier} in Fn::Sub become the item."""
    if isinstance(node, dict):
        if dict(node) == {"Ref": ident}:
            return item
        if list(node) == ["Fn::Sub"]:
            sub = node["Fn::Sub"]
            if isinstance(sub, str):
                return {"Fn::Sub": sub.replace("${%s}" % ident, item)}
            return {"Fn::Sub": [sub[0].replace("${%s}" % ident, item), _substitute(sub[1], ident, item)]}
        return {k: _substitute(v, ident, item) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, ident, item) for v in node]
    return node


def expand_foreach(resources, parameters=SAMPLE_PARAMETERS):
    """The Resources as AWS::LanguageExtensions leaves them (one level of Fn::ForEach, as this template uses)."""
    out = {}
    for key, value in resources.items():
        if not key.startswith("Fn::ForEach::"):
            out[key] = value
            continue
        ident, collection, fragment = value
        items = collection if isinstance(collection, list) else parameters[collection["Ref"]]
        for item in items:
            for out_key, body in fragment.items():
                name = out_key.replace("${%s}" % ident, item).replace("&{%s}" % ident, re.sub(r"[^A-Za-z0-9]", "", item))
                assert name not in out, f"{key} makes {name} twice"
                out[name] = _substitute(body, ident, item)
    return out


EXPANDED = expand_foreach(RESOURCES)


def of_type(t):
    return {k: v for k, v in EXPANDED.items() if v["Type"] == t}


def test_every_alarm_dimension_names_something_the_stack_creates():
    functions = of_type("AWS::Serverless::Function")
    function_names = [f["Properties"]["FunctionName"] for f in functions.values()]
    queues = of_type("AWS::SQS::Queue")
    queue_names = [q["Properties"]["QueueName"] for q in queues.values() if "QueueName" in q["Properties"]]
    binaries = {f["Metadata"]["BuildProperties"]["Binary"] for f in functions.values()}  # the Gatekeeper metrics' Function
    alarms = of_type("AWS::CloudWatch::Alarm")
    per_function = [a for a in alarms.values() if a["Properties"]["Namespace"] == "AWS/Lambda"]
    assert len(per_function) == 2 * len(functions), "an Errors and a Throttles alarm per function"
    for name, alarm in alarms.items():
        for dim in alarm["Properties"]["Dimensions"]:
            value = dim["Value"]
            if dim["Name"] == "FunctionName":
                ok = value in function_names or (
                    isinstance(value, dict) and list(value) == ["Ref"] and value["Ref"] in functions
                )
            elif dim["Name"] == "QueueName":
                ok = value in queue_names or (
                    isinstance(value, dict)
                    and list(value) == ["Fn::GetAtt"]
                    and list(value["Fn::GetAtt"]) in ([q, "QueueName"] for q in queues)
                )
            elif dim["Name"] == "Function":
                ok = value in binaries
            else:
                ok = False
            assert ok, f"{name}: dimension {dim['Name']} = {value!r} names nothing this stack creates"
    covered = {d["Value"]["Fn::Sub"] for a in per_function for d in a["Properties"]["Dimensions"]}
    assert covered == {f["Fn::Sub"] for f in function_names}, "every function has its alarms"


def test_each_managed_service_gets_a_connection_notification():
    services = sorted(SAMPLE_PARAMETERS["ManagedServiceIds"])
    notifications = of_type("AWS::EC2::VPCEndpointConnectionNotification").values()
    assert sorted(n["Properties"]["ServiceId"] for n in notifications) == services


# ---------------------------------------------------------------------------------------------- decide and its queue
PARAMETERS = TEMPLATE["Parameters"]


def test_decide_concurrency_is_limited_by_the_sqs_event_source_not_reserved():
    decide = RESOURCES["DecideFunction"]["Properties"]
    assert "ReservedConcurrentExecutions" not in decide, "the SQS event source ignores reserved concurrency"
    assert "ReservedConcurrentExecutions" not in TEMPLATE["Globals"]["Function"]
    event = decide["Events"]["Requests"]
    assert event["Type"] == "SQS"
    assert event["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "DecideMaximumConcurrency"}}
    p = PARAMETERS["DecideMaximumConcurrency"]
    assert (p["Type"], p["Default"], p["MinValue"], p["MaxValue"]) == ("Number", 2, 2, 1000)
    assert "DecideReservedConcurrency" not in PARAMETERS


def test_requests_queue_retries_a_burst_before_dead_lettering():
    queue = RESOURCES["RequestsQueue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "RequestsMaxReceiveCount"}
    assert queue["VisibilityTimeout"] == {"Ref": "RequestsVisibilityTimeoutSeconds"}
    receives = PARAMETERS["RequestsMaxReceiveCount"]
    assert receives["Default"] == 10 and receives["MinValue"] >= 1 and receives["MaxValue"] <= 1000
    visibility = PARAMETERS["RequestsVisibilityTimeoutSeconds"]
    timeout = RESOURCES["DecideFunction"]["Properties"]["Timeout"]
    assert visibility["Default"] == 6 * timeout, "six times decide's timeout"
    # Lambda refuses a mapping whose queue's visibility timeout is under the function's timeout: the
    # parameter refuses such a value before anything is created.
    assert visibility["MinValue"] == timeout and visibility["MaxValue"] <= 43200


def test_decide_gets_its_lease_and_retention():
    env = RESOURCES["DecideFunction"]["Properties"]["Environment"]["Variables"]
    assert env["CLAIM_LEASE_SECONDS"] == {"Ref": "ClaimLeaseSeconds"}
    assert env["DECISION_RETENTION_DAYS"] == {"Ref": "DecisionRetentionDays"}
    lease = PARAMETERS["ClaimLeaseSeconds"]
    assert (lease["Default"], lease["MinValue"], lease["MaxValue"]) == (120, 10, 3600)  # decide's own bounds
    days = PARAMETERS["DecisionRetentionDays"]
    assert (days["Default"], days["MinValue"], days["MaxValue"]) == (400, 1, 3650)


def test_decide_waits_for_ec2_tokens_well_within_its_timeout_and_takes_big_batches():
    props = RESOURCES["DecideFunction"]["Properties"]
    patience = int(props["Environment"]["Variables"]["EC2_THROTTLE_PATIENCE_SECONDS"])
    # decide never waits past its deadline less 15 s (handler::FINISH_RESERVE_MS), whatever this says; a
    # value beyond that would be a setting that does not do what it says.
    assert 0 < patience <= props["Timeout"] - 15, "room left for the batch's own calls"
    source = props["Events"]["Requests"]["Properties"]
    assert source["BatchSize"] == {"Ref": "DecideBatchSize"}
    size = PARAMETERS["DecideBatchSize"]
    assert (size["MinValue"], size["MaxValue"]) == (10, 1000) and size["Default"] == 1000
    # AWS: a BatchSize over 10 needs MaximumBatchingWindowInSeconds of at least 1 (standard queues).
    assert source["MaximumBatchingWindowInSeconds"] >= 1


def test_tables_are_protected_and_decisions_expire():
    for table in ("AllowlistTable", "DecisionsTable"):
        r = RESOURCES[table]
        assert r["Properties"]["DeletionProtectionEnabled"] is True, table
        assert r["DeletionPolicy"] == "Retain" and r["UpdateReplacePolicy"] == "Retain", table
    ttl = RESOURCES["DecisionsTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expires_at", "Enabled": True}


def test_decisions_are_indexed_by_service_and_time_for_the_cli():
    """`gatekeeper decisions` queries `decided` (shared DECIDED_INDEX) by service_id and decided_at_ms, the
    attributes and types decide writes (record_to_item); the operator may query that index and nothing scans."""
    props = RESOURCES["DecisionsTable"]["Properties"]
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert (types["service_id"], types["decided_at_ms"]) == ("S", "N")
    index = next(i for i in props["GlobalSecondaryIndexes"] if i["IndexName"] == "decided")
    assert index["KeySchema"] == [
        {"AttributeName": "service_id", "KeyType": "HASH"},
        {"AttributeName": "decided_at_ms", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}, "the CLI shows every attribute"
    operator = [s for s in RESOURCES["OperatorPolicy"]["Properties"]["PolicyDocument"]["Statement"] if "Sid" in s]
    by_time = next(s for s in operator if s.get("Sid") == "ReadTheDecisionsByTime")
    assert by_time["Resource"] == {"Fn::Sub": "${DecisionsTable.Arn}/index/decided"}
    decisions_table = [s for s in operator if s.get("Resource") == {"Fn::GetAtt": ["DecisionsTable", "Arn"]}]
    assert len(decisions_table) == 1, decisions_table
    scans = [s for s in operator if "dynamodb:Scan" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
    assert [s["Resource"] for s in scans] == [{"Fn::GetAtt": ["AllowlistTable", "Arn"]}], "only the allowlist is scanned"


def references(node) -> set[str]:
    """The logical IDs a template node refers to (Ref, Fn::GetAtt, ${X} and ${X.Attr} in Fn::Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                found.add(v)
            elif k == "Fn::GetAtt":
                found.add((v[0] if isinstance(v, list) else str(v).split(".")[0]))
            elif k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", str(text))}
            found |= references(v)
    elif isinstance(node, list):
        for v in node:
            found |= references(v)
    return found


def test_a_retained_resource_keeps_the_kms_key_it_is_encrypted_with():
    # CloudFormation template reference, AWS::KMS::Key PendingWindowInDays: "When you remove a KMS key from a
    # CloudFormation stack, KMS schedules the KMS key for deletion" (30 days by default). DynamoDB API reference,
    # TableStatus INACCESSIBLE_ENCRYPTION_CREDENTIALS: a table whose key stays inaccessible "for more than seven
    # days" is archived. A table retained when the stack goes must keep its key, or it is lost all the same.
    plain = {k: r for k, r in RESOURCES.items() if isinstance(r, dict)}  # not the Fn::ForEach blocks
    keys = {k for k, r in plain.items() if r["Type"] == "AWS::KMS::Key"}
    retained = {k: r for k, r in plain.items() if r.get("DeletionPolicy") == "Retain"}
    assert keys and {"AllowlistTable", "DecisionsTable"} <= set(retained)
    for name, r in retained.items():
        for key in references(r.get("Properties", {})) & keys:
            assert RESOURCES[key].get("DeletionPolicy") == "Retain", (name, key)
            assert RESOURCES[key].get("UpdateReplacePolicy") == "Retain", (name, key)


def test_managed_service_ids_must_each_be_an_endpoint_service_id():
    p = PARAMETERS["ManagedServiceIds"]
    assert p["Type"] == "CommaDelimitedList" and p["ConstraintDescription"]
    pattern = re.compile(p["AllowedPattern"])  # CloudFormation applies it to each value of the list
    for good in ("vpce-svc-0123456789abcdef0", "vpce-svc-01234567"):
        assert pattern.fullmatch(good), good
    for bad in ("vpce-svc-EDIT-ME", "vpce-svc-0123456", "vpce-svc-0123456789ABCDEF0", "vpce-0123456789abcdef0", ""):
        assert not pattern.fullmatch(bad), bad


def test_no_output_is_named_like_a_parameter():
    # SAM CLI resolves Outputs with the parameters in its symbol table: an output named like a list
    # parameter makes `sam build` fail (TypeError: unhashable type: 'list').
    assert not set(TEMPLATE["Outputs"]) & set(PARAMETERS)


# ---------------------------------------------------------------------------------------------- metric names
TELEMETRY = Path(__file__).resolve().parent.parent / "shared" / "src" / "telemetry.rs"


def metric_names_in_code(source=None):
    """The metric names the code defines: `pub const X: &str = "Name";` inside `pub mod names { ... }`."""
    source = TELEMETRY.read_text() if source is None else source
    block = re.search(r"pub mod names \{(.*?)\n\}", source, re.S)
    assert block, "shared/src/telemetry.rs has no `pub mod names`"
    names = re.findall(r'pub const [A-Z0-9_]+: &str = "([A-Za-z0-9]+)";', block.group(1))
    assert names, "`names` defines no metric"
    return set(names)


def gatekeeper_metrics_in_template(template=TEMPLATE):
    """Every metric of the Gatekeeper namespace that an alarm or the dashboard names: (where, name)."""
    import json

    used = []
    resources = expand_foreach(template["Resources"])
    for key, res in resources.items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::CloudWatch::Alarm":
            if props.get("Namespace") == "Gatekeeper":
                used.append((key, props["MetricName"]))
            for query in props.get("Metrics", []):
                stat = query.get("MetricStat", {}).get("Metric", {})
                if stat.get("Namespace") == "Gatekeeper":
                    used.append((key, stat["MetricName"]))
        elif res["Type"] == "AWS::CloudWatch::Dashboard":
            body = props["DashboardBody"]
            body = body["Fn::Sub"] if isinstance(body, dict) else body
            body = body[0] if isinstance(body, list) else body
            for widget in json.loads(body)["widgets"]:
                for metric in widget.get("properties", {}).get("metrics", []):
                    if metric and metric[0] == "Gatekeeper":
                        used.append((key, metric[1]))
    return used


def unknown_metrics(template=TEMPLATE, defined=None):
    defined = metric_names_in_code() if defined is None else defined
    return sorted({f"{where}: {name}" for where, name in gatekeeper_metrics_in_template(template) if name not in defined})


def test_every_gatekeeper_metric_the_alarms_and_dashboard_name_is_one_the_code_defines():
    used = {where for where, _ in gatekeeper_metrics_in_template()}
    assert "Dashboard" in used and len(used) > 1, f"the dashboard and some alarm name Gatekeeper metrics: {used}"
    unknown = unknown_metrics()
    assert not unknown, f"named in the template but not defined in shared/src/telemetry.rs `names`: {unknown}"


def test_the_metric_check_fails_on_a_name_the_code_does_not_define():
    import copy

    template = copy.deepcopy(TEMPLATE)
    alarms = [r for r in template["Resources"].values() if isinstance(r, dict) and r["Type"] == "AWS::CloudWatch::Alarm"]
    alarm = next(a for a in alarms if a["Properties"].get("Namespace") == "Gatekeeper")
    alarm["Properties"]["MetricName"] = "PendingOverdu"
    assert unknown_metrics(template) == [f"{k}: PendingOverdu" for k, r in template["Resources"].items() if r is alarm]
    # and one the code stops defining
    assert unknown_metrics(defined=metric_names_in_code() - {"InvalidRules"})
    source = 'pub mod names {\n    pub const A: &str = "Accepted";\n}\n'
    assert metric_names_in_code(source) == {"Accepted"}


def test_alarms_on_what_each_sweep_publishes_keep_their_state_between_sweeps():
    # A sweep runs every SweepIntervalMinutes (up to 60) and publishes these, 0 included; a period without a
    # sweep has no data, which notBreaching would take as good and end the alarm until the next sweep.
    swept = {"PendingOverdue", "AcceptanceNotRequired", "PrivateDnsUnverified"}
    alarms = [r["Properties"] for r in RESOURCES.values() if isinstance(r, dict) and r.get("Type") == "AWS::CloudWatch::Alarm"]
    published = {a["MetricName"]: a for a in alarms if a.get("Namespace") == "Gatekeeper"}
    assert swept <= set(published)
    for name, alarm in published.items():
        assert alarm["TreatMissingData"] == ("ignore" if name in swept else "notBreaching"), name


def test_every_dead_letter_queue_is_an_output_an_operator_can_find():
    # The README's runbooks name each DLQ; the stack's outputs are where an operator finds its URL.
    dlqs = {name for name, r in RESOURCES.items() if isinstance(r, dict) and r["Type"] == "AWS::SQS::Queue" and "DeadLetterQueue" in name}
    assert len(dlqs) == 4, dlqs
    named = {o["Value"].get("Ref") for o in TEMPLATE["Outputs"].values() if isinstance(o["Value"], dict)}
    assert dlqs <= named, dlqs - named
    for name in dlqs:  # 14 days, SQS's longest: the README tells the operator how long a message waits there
        assert RESOURCES[name]["Properties"]["MessageRetentionPeriod"] == 1209600, name
