"""The template's IAM is exactly the least privilege listed here: a widened policy fails this test."""

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
        (("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"), "GetAtt:DecisionsTable.Arn"),
        (("sns:Publish",), "Ref:DecisionsTopic"),
        (
            ("sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"),
            "GetAtt:RequestsQueue.Arn",
        ),
        (("kms:Decrypt", "kms:GenerateDataKey"), "GetAtt:Key.Arn"),
    },
    "ReconcileRole": {
        (LOGS, "Sub:${ReconcileLogs.Arn}:*"),
        (XRAY, "*"),
        (DESCRIBE, "*"),
        (("dynamodb:Query",), "GetAtt:AllowlistTable.Arn"),
        (
            ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"),
            "GetAtt:AllowlistTable.StreamArn",
        ),
        (("events:PutEvents",), "GetAtt:Bus.Arn"),
        (("sqs:SendMessage",), "GetAtt:ReconcileDeadLetterQueue.Arn"),
        (("kms:Decrypt",), "GetAtt:Key.Arn"),
    },
}
# Accept/reject: per managed service, on exactly its ARN.
SERVICE_POLICY = {
    (
        ("ec2:AcceptVpcEndpointConnections", "ec2:RejectVpcEndpointConnections"),
        "Sub:arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:vpc-endpoint-service/${ServiceId}",
    )
}


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
        if "Fn::If" in p:  # the optional KMS policy
            p = p["Fn::If"][1]
        out |= statements_of(p["PolicyDocument"])
    return out


def test_each_role_has_exactly_the_expected_statements():
    for role, expected in EXPECTED.items():
        assert role_statements(role) == expected, role


def test_accept_and_reject_are_scoped_to_each_managed_service():
    (key,) = [k for k in RESOURCES if k.startswith("Fn::ForEach::DecideConnections")]
    loop_var, collection, body = RESOURCES[key]
    assert loop_var == "ServiceId" and collection == {"Ref": "ManagedServiceIds"}
    (policy,) = body.values()
    assert policy["Type"] == "AWS::IAM::RolePolicy"
    assert policy["Properties"]["RoleName"] == {"Ref": "DecideRole"}
    assert statements_of(policy["Properties"]["PolicyDocument"]) == SERVICE_POLICY


def test_no_wildcard_actions_and_wildcard_resources_only_where_aws_requires_them():
    for role in EXPECTED:
        for actions, resource in role_statements(role):
            assert all(not a.endswith("*") for a in actions), (role, actions)
            if resource == "*":
                assert set(actions) <= set(DESCRIBE + XRAY), (role, actions)


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


def test_vpce_may_publish_connection_notifications_only_from_this_account():
    st = RESOURCES["ConnectionNotificationsTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert st["Principal"] == {"Service": "vpce.amazonaws.com"} and st["Action"] == "sns:Publish"
    assert st["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert "aws:SourceArn" in st["Condition"]["ArnLike"]


def test_every_asynchronous_path_has_a_dead_letter_queue():
    props = {k: RESOURCES[k]["Properties"] for k in ("IngestFunction", "ReconcileFunction")}
    for name, p in props.items():
        assert p["DeadLetterQueue"]["Type"] == "SQS", name
    stream = RESOURCES["ReconcileFunction"]["Properties"]["Events"]["AllowlistChanges"]["Properties"]
    assert stream["DestinationConfig"]["OnFailure"]["Type"] == "SQS"
    assert "RedrivePolicy" in RESOURCES["RequestsQueue"]["Properties"]
    target = RESOURCES["ConnectionRequestRule"]["Properties"]["Targets"][0]
    assert "DeadLetterConfig" in target
