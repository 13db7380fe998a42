"""IAM in the local AWS (gk_iam): the functions run as their roles.

Against the running server, through boto3: credentials issued by POST /_gatekeeper/role-credentials for a
role trusting only lambda.amazonaws.com, with an inline policy modelled on the template's DecideRole (exact
actions on exact ARNs) and a second inline policy granting accept/reject on one service as the template's
DecideConnections statement does (its ARN with wildcard partition, Region and account). Allowed calls
work; the same calls on other resources, and actions the policies do not name, get each service's own
AccessDenied error; other credentials are never checked. A role's inline policies together stay within
IAM's size quota.
Conditions on dynamodb:LeadingKeys (the template's ReconcileRole PrincipalLedger statement) are evaluated;
any other condition keeps the fail-closed "conditional" denial. Plus unit tests of the resource ARNs and
leading keys derived per call and of the policy evaluation.
"""

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import botocore.exceptions
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import gk_iam  # noqa: E402  (the unit tests call its pure functions; the server runs its own copy)
import conftest  # noqa: E402
from conftest import serve  # noqa: E402

PROVIDER = "111111111111"
REGION = "us-east-1"
LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


@pytest.fixture(scope="module")
def endpoint():
    with serve({"GATEKEEPER_EMU_IAM": os.environ.get("GATEKEEPER_EMU_IAM", "1")}) as url:
        yield url


def control(url, path, payload=None):
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(f"{url}/_gatekeeper/{path}", data=data, method="GET" if data is None else "POST")
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def bootstrap(url, account=PROVIDER):
    """Test-setup credentials: sts:AssumeRole from the bootstrap keys (never checked by gk_iam)."""
    sts = boto3.client("sts", endpoint_url=url, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/test", RoleSessionName="setup")["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=REGION,
    )


def role_session(url, role_arn, session_name="decide-fn"):
    return conftest.role_session(url, role_arn, session_name, REGION)


def decide_policy(w, publish=True):
    """The template's DecideRole policy, on this world's resources (plus the bus and the stream)."""
    statements = [
        {"Sid": "ReadConnections", "Effect": "Allow", "Action": "ec2:DescribeVpcEndpointConnections", "Resource": "*"},
        {"Sid": "ReadAllowlist", "Effect": "Allow", "Action": "dynamodb:Query", "Resource": w["table:allowlist"]},
        {
            "Sid": "ReadAllowlistStream",
            "Effect": "Allow",
            "Action": ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
            "Resource": w["stream:allowlist"],
        },
        {
            "Sid": "RecordDecisions",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            "Resource": w["table:decisions"],
        },
        {"Sid": "Announce", "Effect": "Allow", "Action": "sns:Publish", "Resource": w["topic:decisions"]},
        {"Sid": "EmitRequests", "Effect": "Allow", "Action": "events:PutEvents", "Resource": w["bus:gatekeeper"]},
        {
            "Sid": "DrainRequests",
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"],
            "Resource": w["queue:requests"],
        },
    ]
    if not publish:
        statements = [s for s in statements if s["Sid"] != "Announce"]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def service_arn(service_id):
    return f"arn:aws:ec2:{REGION}:{PROVIDER}:vpc-endpoint-service/{service_id}"


@pytest.fixture(scope="module")
def world(endpoint):
    url = endpoint
    setup = bootstrap(url)
    w = {"url": url, "setup": setup}
    ddb = setup.client("dynamodb", endpoint_url=url)
    for name in ("allowlist", "decisions", "other"):
        ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        table = ddb.describe_table(TableName=name)["Table"]
        w[f"table:{name}"], w[f"stream:{name}"] = table["TableArn"], table["LatestStreamArn"]
        ddb.put_item(TableName=name, Item={"pk": {"S": "seed"}})
    sns = setup.client("sns", endpoint_url=url)
    events = setup.client("events", endpoint_url=url)
    sqs = setup.client("sqs", endpoint_url=url)
    for name in ("decisions", "other"):
        w[f"topic:{name}"] = sns.create_topic(Name=name)["TopicArn"]
    for name in ("gatekeeper", "other"):
        w[f"bus:{name}"] = events.create_event_bus(Name=name)["EventBusArn"]
    for name in ("requests", "other"):
        w[f"url:{name}"] = sqs.create_queue(QueueName=name)["QueueUrl"]
        w[f"queue:{name}"] = sqs.get_queue_attributes(QueueUrl=w[f"url:{name}"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    ec2 = setup.client("ec2", endpoint_url=url)
    elbv2 = setup.client("elbv2", endpoint_url=url)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    for name in ("svc", "othersvc"):
        lb = elbv2.create_load_balancer(Name=name, Subnets=[subnet], Type="network")["LoadBalancers"][0]["LoadBalancerArn"]
        svc = ec2.create_vpc_endpoint_service_configuration(NetworkLoadBalancerArns=[lb], AcceptanceRequired=True)
        w[f"svc:{name}"] = svc["ServiceConfiguration"]["ServiceId"]
    iam = setup.client("iam", endpoint_url=url)
    w["iam"] = iam
    w["role_arn"] = iam.create_role(RoleName="decide", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName="decide", PolicyName="decide", PolicyDocument=decide_policy(w))
    # A second inline policy (IAM grants what any of a role's policies allows), with the ARN form of the
    # template's DecideConnections statement.
    iam.put_role_policy(
        RoleName="decide",
        PolicyName="connections",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "DecideConnections",
                        "Effect": "Allow",
                        "Action": ["ec2:AcceptVpcEndpointConnections", "ec2:RejectVpcEndpointConnections"],
                        "Resource": f"arn:*:ec2:*:*:vpc-endpoint-service/{w['svc:svc']}",
                    }
                ],
            }
        ),
    )
    role = role_session(url, w["role_arn"])
    for name in ("dynamodb", "dynamodbstreams", "sns", "events", "sqs", "ec2", "sts"):
        w[name] = role.client(name, endpoint_url=url)
    return w


def denied(call, code, status):
    with pytest.raises(botocore.exceptions.ClientError) as err:
        call()
    assert err.value.response["Error"]["Code"] == code, err.value.response
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    return err.value.response["Error"].get("Message", "")


def denials(w):
    return control(w["url"], "iam/denials")


# ----------------------------------------------------------------------------------- role credentials


def test_role_credentials_belong_to_the_role_session_in_its_account(world):
    me = world["sts"].get_caller_identity()
    assert me["Account"] == PROVIDER
    assert me["Arn"] == f"arn:aws:sts::{PROVIDER}:assumed-role/decide/decide-fn"


def test_role_credentials_fail_clearly_for_a_missing_role_or_a_bad_request(world):
    url = world["url"]
    for payload, status, error in (
        ({"role_arn": f"arn:aws:iam::{PROVIDER}:role/missing"}, 404, "NoSuchEntity"),
        ({"role_arn": "arn:aws:iam::222222222222:role/decide"}, 404, "NoSuchEntity"),  # exists only in 111111111111
        ({"role_arn": "decide"}, 400, "ValidationError"),
        ({"role_arn": world["role_arn"], "session_name": "no spaces"}, 400, "ValidationError"),
    ):
        with pytest.raises(urllib.error.HTTPError) as err:
            control(url, "role-credentials", payload)
        assert err.value.code == status
        assert json.loads(err.value.read())["error"] == error


# ----------------------------------------------------------------------------------- enforcement


def test_each_allowed_call_succeeds(world):
    w = world
    before = len(denials(w))
    ddb, sns, events, sqs, ec2 = w["dynamodb"], w["sns"], w["events"], w["sqs"], w["ec2"]
    ddb.query(TableName="allowlist", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "seed"}})
    ddb.put_item(TableName="decisions", Item={"pk": {"S": "d1"}, "n": {"N": "1"}})
    assert ddb.get_item(TableName="decisions", Key={"pk": {"S": "d1"}})["Item"]["n"] == {"N": "1"}
    ddb.update_item(TableName="decisions", Key={"pk": {"S": "d1"}}, UpdateExpression="SET n = :n", ExpressionAttributeValues={":n": {"N": "2"}})
    # A transaction is authorized as its item actions (PutItem, UpdateItem), which the policy grants.
    ddb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "decisions", "Item": {"pk": {"S": "d2"}}}},
            {"Update": {"TableName": "decisions", "Key": {"pk": {"S": "d1"}}, "UpdateExpression": "SET n = :n", "ExpressionAttributeValues": {":n": {"N": "3"}}}},
        ]
    )
    sns.publish(TopicArn=w["topic:decisions"], Message="decided")
    sns.publish_batch(TopicArn=w["topic:decisions"], PublishBatchRequestEntries=[{"Id": "1", "Message": "decided"}])  # sns:Publish
    for bus in ("gatekeeper", w["bus:gatekeeper"]):  # a name or an ARN
        out = events.put_events(Entries=[{"EventBusName": bus, "Source": "gatekeeper", "DetailType": "request", "Detail": "{}"}])
        assert out["FailedEntryCount"] == 0
    sqs.get_queue_attributes(QueueUrl=w["url:requests"], AttributeNames=["All"])
    sqs.receive_message(QueueUrl=w["url:requests"], WaitTimeSeconds=0)
    ec2.describe_vpc_endpoint_connections()  # Resource "*"
    for call in (ec2.accept_vpc_endpoint_connections, ec2.reject_vpc_endpoint_connections):
        out = call(ServiceId=w["svc:svc"], VpcEndpointIds=["vpce-00000000000000000"])
        assert out["Unsuccessful"][0]["Error"]["Code"] == "InvalidVpcEndpointId.NotFound"  # authorized, then answered
    streams = w["dynamodbstreams"]
    shard = streams.describe_stream(StreamArn=w["stream:allowlist"])["StreamDescription"]["Shards"][0]["ShardId"]
    it = streams.get_shard_iterator(StreamArn=w["stream:allowlist"], ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert streams.get_records(ShardIterator=it)["Records"]
    w["sts"].get_caller_identity()
    assert len(denials(w)) == before


def test_the_same_call_on_another_resource_is_denied_with_the_service_error(world):
    w = world
    ddb, sns, events, sqs, ec2 = w["dynamodb"], w["sns"], w["events"], w["sqs"], w["ec2"]
    msg = denied(lambda: ddb.get_item(TableName="other", Key={"pk": {"S": "seed"}}), "AccessDeniedException", 400)
    assert f"dynamodb:GetItem on resource: {w['table:other']}" in msg
    assert f"assumed-role/decide/decide-fn" in msg
    denied(lambda: ddb.put_item(TableName="other", Item={"pk": {"S": "intruder"}}), "AccessDeniedException", 400)
    assert "Item" not in w["setup"].client("dynamodb", endpoint_url=w["url"]).get_item(TableName="other", Key={"pk": {"S": "intruder"}})
    denied(lambda: ddb.query(TableName="decisions", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "d1"}}), "AccessDeniedException", 400)
    denied(lambda: sns.publish(TopicArn=w["topic:other"], Message="x"), "AuthorizationError", 403)
    denied(lambda: sns.publish_batch(TopicArn=w["topic:other"], PublishBatchRequestEntries=[{"Id": "1", "Message": "x"}]), "AuthorizationError", 403)
    entry = {"Source": "gatekeeper", "DetailType": "request", "Detail": "{}"}
    denied(lambda: events.put_events(Entries=[{**entry, "EventBusName": "other"}]), "AccessDeniedException", 400)
    denied(lambda: events.put_events(Entries=[entry]), "AccessDeniedException", 400)  # the default bus
    denied(lambda: events.put_events(Entries=[{**entry, "EventBusName": "gatekeeper"}, {**entry, "EventBusName": "other"}]), "AccessDeniedException", 400)
    denied(lambda: sqs.receive_message(QueueUrl=w["url:other"]), "AccessDenied", 403)
    for call in (ec2.accept_vpc_endpoint_connections, ec2.reject_vpc_endpoint_connections):
        msg = denied(lambda: call(ServiceId=w["svc:othersvc"], VpcEndpointIds=["vpce-00000000000000000"]), "UnauthorizedOperation", 403)
        assert service_arn(w["svc:othersvc"]) in msg
    # GetRecords is authorized on the stream its shard iterator belongs to.
    setup_streams = w["setup"].client("dynamodbstreams", endpoint_url=w["url"])
    shard = setup_streams.describe_stream(StreamArn=w["stream:other"])["StreamDescription"]["Shards"][0]["ShardId"]
    it = setup_streams.get_shard_iterator(StreamArn=w["stream:other"], ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    denied(lambda: w["dynamodbstreams"].get_records(ShardIterator=it), "AccessDeniedException", 400)
    denied(lambda: w["dynamodbstreams"].describe_stream(StreamArn=w["stream:other"]), "AccessDeniedException", 400)
    recorded = {(d["action"], d["resource"]) for d in denials(w) if d["role_arn"] == w["role_arn"]}
    assert {
        ("dynamodb:GetItem", w["table:other"]),
        ("sns:Publish", w["topic:other"]),
        ("events:PutEvents", w["bus:other"]),
        ("events:PutEvents", f"arn:aws:events:{REGION}:{PROVIDER}:event-bus/default"),
        ("sqs:ReceiveMessage", w["queue:other"]),
        ("ec2:AcceptVpcEndpointConnections", service_arn(w["svc:othersvc"])),
        ("dynamodb:GetRecords", w["stream:other"]),
    } <= recorded


def test_an_action_the_policies_do_not_name_is_denied(world):
    w = world
    ddb = w["dynamodb"]
    counted = control(w["url"], "calls").get("iam:denied", 0)
    denied(lambda: ddb.delete_item(TableName="decisions", Key={"pk": {"S": "d1"}}), "AccessDeniedException", 400)
    denied(lambda: ddb.scan(TableName="decisions"), "AccessDeniedException", 400)
    # Transactions need each item action: ConditionCheckItem and DeleteItem are not granted.
    check = {"ConditionCheck": {"TableName": "decisions", "Key": {"pk": {"S": "d1"}}, "ConditionExpression": "attribute_exists(pk)"}}
    put = {"Put": {"TableName": "decisions", "Item": {"pk": {"S": "d3"}}}}
    denied(lambda: ddb.transact_write_items(TransactItems=[put, check]), "AccessDeniedException", 400)
    denied(lambda: ddb.transact_write_items(TransactItems=[{"Delete": {"TableName": "decisions", "Key": {"pk": {"S": "d1"}}}}]), "AccessDeniedException", 400)
    denied(lambda: w["sns"].list_topics(), "AuthorizationError", 403)
    denied(lambda: w["sqs"].send_message(QueueUrl=w["url:requests"], MessageBody="x"), "AccessDenied", 403)
    denied(lambda: w["ec2"].describe_vpcs(), "UnauthorizedOperation", 403)
    denied(lambda: w["dynamodbstreams"].list_streams(), "AccessDeniedException", 400)
    assert control(w["url"], "calls")["iam:denied"] == counted + 8
    assert {"role_arn": w["role_arn"], "action": "dynamodb:ConditionCheckItem", "resource": w["table:decisions"]}.items() <= denials(w)[-6].items()


def test_removing_publish_from_the_policy_denies_publish_only(world):
    w = world
    iam = w["iam"]
    iam.put_role_policy(RoleName="decide", PolicyName="decide", PolicyDocument=decide_policy(w, publish=False))
    try:
        denied(lambda: w["sns"].publish(TopicArn=w["topic:decisions"], Message="x"), "AuthorizationError", 403)
        assert w["dynamodb"].get_item(TableName="decisions", Key={"pk": {"S": "d1"}})["Item"]
        w["events"].put_events(Entries=[{"EventBusName": "gatekeeper", "Source": "s", "DetailType": "d", "Detail": "{}"}])
        w["ec2"].accept_vpc_endpoint_connections(ServiceId=w["svc:svc"], VpcEndpointIds=["vpce-00000000000000000"])
    finally:
        iam.put_role_policy(RoleName="decide", PolicyName="decide", PolicyDocument=decide_policy(w))
    w["sns"].publish(TopicArn=w["topic:decisions"], Message="x")  # the cache saw the change back too


def test_a_publish_to_an_encrypted_topic_needs_its_key_from_the_key_policy_and_the_roles_policies(world):
    """SNS developer guide, "Managing Amazon SNS encryption keys and costs": the publisher needs
    kms:GenerateDataKey* and kms:Decrypt on the topic's key; KMS developer guide, "Key policies": IAM policies
    grant a key only where its key policy lets the account (the template's Key: its root statement)."""
    w = world
    iam, sns = w["iam"], w["sns"]
    kms = w["setup"].client("kms", endpoint_url=w["url"])
    key = kms.create_key()["KeyMetadata"]  # the default key policy: the account's root, kms:*
    setup_sns = w["setup"].client("sns", endpoint_url=w["url"])
    topic = w["topic:decisions"]
    root = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PROVIDER}:root"}, "Action": "kms:*", "Resource": "*"}

    def key_policy(*statements):
        kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))

    def role_may(*actions):
        iam.put_role_policy(
            RoleName="decide",
            PolicyName="kms",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": key["Arn"]}]}),
        )

    publish = lambda: sns.publish(TopicArn=topic, Message="x")  # noqa: E731
    setup_sns.set_topic_attributes(TopicArn=topic, AttributeName="KmsMasterKeyId", AttributeValue=key["Arn"])
    try:
        msg = denied(publish, "KMSAccessDenied", 400)
        assert "kms:GenerateDataKey" in msg and key["Arn"] in msg, msg
        assert {"action": "kms:GenerateDataKey", "resource": key["Arn"]}.items() <= denials(w)[-1].items()
        role_may("kms:GenerateDataKey")
        assert "kms:Decrypt" in denied(publish, "KMSAccessDenied", 400)
        role_may("kms:GenerateDataKey*", "kms:Decrypt")  # the SNS guide's wording, a wildcard
        publish()
        # Without the root statement the role's policies grant nothing...
        key_policy({**root, "Principal": {"AWS": f"arn:aws:iam::{PROVIDER}:role/someone-else"}})
        denied(publish, "KMSAccessDenied", 400)
        # ...and a key policy naming the role needs none of them, unless they deny it.
        iam.delete_role_policy(RoleName="decide", PolicyName="kms")
        key_policy({**root, "Principal": {"AWS": w["role_arn"]}})
        publish()
        deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "kms:Decrypt", "Resource": key["Arn"]}]}
        iam.put_role_policy(RoleName="decide", PolicyName="no-kms", PolicyDocument=json.dumps(deny))
        assert "explicit deny" in denied(publish, "KMSAccessDenied", 400)
        iam.delete_role_policy(RoleName="decide", PolicyName="no-kms")
        publish()
        # A Deny by NotPrincipal applies to everyone it does not name (read fail-closed).
        key_policy({**root, "Principal": {"AWS": w["role_arn"]}}, {"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::999999999999:root"}, "Action": "kms:*", "Resource": "*"})
        denied(publish, "KMSAccessDenied", 400)
        # An explicit deny in the key policy wins over its allow.
        key_policy(root, {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"})
        role_may("kms:GenerateDataKey", "kms:Decrypt")
        denied(publish, "KMSAccessDenied", 400)
        key_policy(root)
        publish()
        kms.disable_key(KeyId=key["KeyId"])
        denied(publish, "KMSDisabled", 400)
        kms.enable_key(KeyId=key["KeyId"])
        publish()
        # Other credentials (the setup's) are never checked, as for every IAM rule here.
        key_policy({**root, "Principal": {"AWS": f"arn:aws:iam::{PROVIDER}:role/someone-else"}})
        setup_sns.publish(TopicArn=topic, Message="x")
    finally:
        setup_sns.set_topic_attributes(TopicArn=topic, AttributeName="KmsMasterKeyId", AttributeValue="")
        try:
            iam.delete_role_policy(RoleName="decide", PolicyName="kms")
        except botocore.exceptions.ClientError:
            pass
    publish()


def test_an_item_call_on_a_table_with_a_customer_managed_key_needs_kms_decrypt(world):
    """DynamoDB developer guide, encryption at rest usage notes: the calling principal uses a table's customer
    managed key through DynamoDB; users report PutItem and DeleteItem failing without kms:Decrypt."""
    w = world
    iam, ddb = w["iam"], w["dynamodb"]
    setup_ddb = w["setup"].client("dynamodb", endpoint_url=w["url"])
    key = w["setup"].client("kms", endpoint_url=w["url"]).create_key()["KeyMetadata"]
    tables = {}
    # SSEType may be left out: KMS is the only type.
    for name, sse in (("sealed", {"Enabled": True, "KMSMasterKeyId": key["Arn"]}), ("managed", {"Enabled": True})):
        setup_ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            SSESpecification=sse,
        )
        tables[name] = setup_ddb.describe_table(TableName=name)["Table"]["TableArn"]
    items = {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"], "Resource": list(tables.values())}

    def role_may(*statements):
        iam.put_role_policy(RoleName="decide", PolicyName="tables", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [items, *statements]}))

    role_may()
    try:
        put = lambda t: ddb.put_item(TableName=t, Item={"pk": {"S": "a"}})  # noqa: E731
        msg = denied(lambda: put("sealed"), "AccessDeniedException", 400)
        assert msg.startswith("KMS key access denied error") and "kms:Decrypt" in msg and key["Arn"] in msg, msg
        denied(lambda: ddb.get_item(TableName="sealed", Key={"pk": {"S": "a"}}), "AccessDeniedException", 400)
        put("managed")  # the AWS managed key asks nothing of the caller
        role_may({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": key["Arn"]})
        put("sealed")
        assert ddb.get_item(TableName="sealed", Key={"pk": {"S": "a"}})["Item"]
        ddb.query(TableName="sealed", KeyConditionExpression="pk = :a", ExpressionAttributeValues={":a": {"S": "a"}})
    finally:
        iam.delete_role_policy(RoleName="decide", PolicyName="tables")


def test_a_roles_inline_policies_together_may_not_pass_iams_quota_white_space_not_counted(world):
    iam = world["iam"]
    iam.create_role(RoleName="quota", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))

    def policy(resources: int, indent=None) -> str:
        arns = [f"arn:aws:sqs:{REGION}:{PROVIDER}:q{i:05}" for i in range(resources)]
        doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": arns}]}
        return json.dumps(doc, indent=indent)

    def size(text: str) -> int:
        return len("".join(text.split()))

    # Two documents of 5,025 characters each fit (10,240 together); pretty-printed, their text is far
    # longer, but IAM does not count white space.
    first, second = policy(112, indent=8), policy(112, indent=8)
    assert size(first) + size(second) <= 10_240 < len(first) + len(second)
    iam.put_role_policy(RoleName="quota", PolicyName="first", PolicyDocument=first)
    iam.put_role_policy(RoleName="quota", PolicyName="second", PolicyDocument=second)
    # A third pushes the role past it: refused, and the role keeps the two it had.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam.put_role_policy(RoleName="quota", PolicyName="third", PolicyDocument=policy(5))
    assert e.value.response["Error"]["Code"] == "LimitExceeded"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert "Maximum policy size of 10240 bytes exceeded for role quota" in e.value.response["Error"]["Message"]
    assert sorted(iam.list_role_policies(RoleName="quota")["PolicyNames"]) == ["first", "second"]
    # Replacing a policy counts the new document instead of the old one.
    iam.put_role_policy(RoleName="quota", PolicyName="second", PolicyDocument=policy(10))
    iam.put_role_policy(RoleName="quota", PolicyName="third", PolicyDocument=policy(100))
    for name in ("first", "second", "third"):
        iam.delete_role_policy(RoleName="quota", PolicyName=name)
    iam.delete_role(RoleName="quota")


def test_managed_policies_count_and_an_explicit_deny_wins(world):
    w = world
    iam, ddb = w["iam"], w["dynamodb"]
    arn = iam.create_policy(
        PolicyName="ddb-all",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}]}),
    )["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="decide", PolicyArn=arn)
    try:
        ddb.scan(TableName="decisions")
        iam.put_role_policy(
            RoleName="decide",
            PolicyName="no-scan",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "dynamodb:Scan", "Resource": w["table:decisions"]}]}),
        )
        msg = denied(lambda: ddb.scan(TableName="decisions"), "AccessDeniedException", 400)
        assert "explicit deny" in msg
        ddb.scan(TableName="other")
        iam.delete_role_policy(RoleName="decide", PolicyName="no-scan")
        ddb.scan(TableName="decisions")
    finally:
        iam.detach_role_policy(RoleName="decide", PolicyArn=arn)
    denied(lambda: ddb.scan(TableName="decisions"), "AccessDeniedException", 400)


def test_a_conditional_allow_does_not_allow(world):
    w = world
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "dynamodb:DeleteItem",
                "Resource": w["table:decisions"],
                "Condition": {"StringEquals": {"aws:RequestedRegion": REGION}},
            }
        ],
    }
    w["iam"].put_role_policy(RoleName="decide", PolicyName="conditional", PolicyDocument=json.dumps(doc))
    try:
        msg = denied(lambda: w["dynamodb"].delete_item(TableName="decisions", Key={"pk": {"S": "zz"}}), "AccessDeniedException", 400)
        assert "does not evaluate conditions" in msg
        assert denials(w)[-1]["reason"] == "conditional"
    finally:
        w["iam"].delete_role_policy(RoleName="decide", PolicyName="conditional")


# ----------------------------------------------------------------------------------- dynamodb:LeadingKeys


def ledger_key(endpoint_id):
    """A key of the decisions table's shape (endpoint_id HASH, created RANGE), as the principal ledger writes it."""
    return {"endpoint_id": {"S": endpoint_id}, "created": {"S": "principals"}}


@pytest.fixture(scope="module")
def ledger(world):
    """Two tables keyed like the template's DecisionsTable: "ledger" (the statement's Resource) and "ledger-other"."""
    ddb = world["setup"].client("dynamodb", endpoint_url=world["url"])
    arns = {}
    for name in ("ledger", "ledger-other"):
        arns[name] = ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "endpoint_id", "KeyType": "HASH"}, {"AttributeName": "created", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "endpoint_id", "AttributeType": "S"}, {"AttributeName": "created", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )["TableDescription"]["TableArn"]
    return arns


def leading_keys_role(w, name, statements):
    """A role with exactly these statements; its session's DynamoDB client."""
    iam = w["iam"]
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}))
    return role_session(w["url"], arn, f"{name}-fn").client("dynamodb", endpoint_url=w["url"])


def principal_ledger(arn, condition=None):
    """The template's ReconcileRole PrincipalLedger statement, on `arn`."""
    return {
        "Sid": "PrincipalLedger",
        "Effect": "Allow",
        "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
        "Resource": arn,
        "Condition": condition or {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["principals#*"]}},
    }


def test_the_principal_ledger_statement_allows_only_principals_items(world, ledger):
    w = world
    ddb = leading_keys_role(w, "reconcile", [principal_ledger(ledger["ledger"])])
    before = len(denials(w))
    ddb.put_item(TableName="ledger", Item={**ledger_key("principals#vpce-svc-0123"), "version": {"N": "1"}})
    assert ddb.get_item(TableName="ledger", Key=ledger_key("principals#vpce-svc-0123"), ConsistentRead=True)["Item"]["version"] == {"N": "1"}
    ddb.put_item(TableName=ledger["ledger"], Item=ledger_key("principals#x"))  # the table's ARN as TableName
    assert len(denials(w)) == before
    # Another partition of the same table: the condition is false, so the Allow does not apply (implicit deny).
    for call in (
        lambda: ddb.put_item(TableName="ledger", Item=ledger_key("quota#x")),
        lambda: ddb.get_item(TableName="ledger", Key=ledger_key("quota#x")),
        lambda: ddb.put_item(TableName="ledger", Item=ledger_key("Principals#x")),  # StringLike is case-sensitive
    ):
        msg = denied(call, "AccessDeniedException", 400)
        assert f"on resource: {ledger['ledger']} because no identity-based policy allows" in msg
        assert "conditional" not in msg
        assert denials(w)[-1]["reason"] == "implicit deny"
    setup = w["setup"].client("dynamodb", endpoint_url=w["url"])
    assert "Item" not in setup.get_item(TableName="ledger", Key=ledger_key("quota#x"))
    # The right partition, but a table the statement does not name.
    denied(lambda: ddb.put_item(TableName="ledger-other", Item=ledger_key("principals#x")), "AccessDeniedException", 400)
    assert (denials(w)[-1]["resource"], denials(w)[-1]["reason"]) == (ledger["ledger-other"], "implicit deny")
    assert "Item" not in setup.get_item(TableName="ledger-other", Key=ledger_key("principals#x"))
    # Actions the statement does not name stay denied, whatever the key.
    denied(lambda: ddb.delete_item(TableName="ledger", Key=ledger_key("principals#x")), "AccessDeniedException", 400)


def test_for_all_values_needs_every_leading_key_and_for_any_value_one(world, ledger):
    w = world
    setup = w["setup"].client("dynamodb", endpoint_url=w["url"])
    for key in ("principals#a", "principals#b", "quota#c"):
        setup.put_item(TableName="ledger", Item=ledger_key(key))
    mixed = {"ledger": {"Keys": [ledger_key("principals#a"), ledger_key("quota#c")]}}
    principals = {"ledger": {"Keys": [ledger_key("principals#a"), ledger_key("principals#b")]}}
    quota = {"ledger": {"Keys": [ledger_key("quota#c")]}}

    def role(name, qualifier):
        condition = {f"{qualifier}:StringLike": {"dynamodb:LeadingKeys": ["principals#?", "principals#z*"]}}
        statement = {**principal_ledger(ledger["ledger"], condition), "Action": ["dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem"]}
        return leading_keys_role(w, name, [statement])

    every = role("leading-all", "ForAllValues")
    assert len(every.batch_get_item(RequestItems=principals)["Responses"]["ledger"]) == 2
    denied(lambda: every.batch_get_item(RequestItems=mixed), "AccessDeniedException", 400)  # quota#c matches no value
    denied(lambda: every.batch_get_item(RequestItems=quota), "AccessDeniedException", 400)
    assert denials(w)[-1]["reason"] == "implicit deny"
    # Query: the partition key value from the key condition (through an attribute name placeholder too).
    out = every.query(
        TableName="ledger",
        KeyConditionExpression="#e = :p AND created = :c",
        ExpressionAttributeNames={"#e": "endpoint_id"},
        ExpressionAttributeValues={":p": {"S": "principals#a"}, ":c": {"S": "principals"}},
    )
    assert out["Count"] == 1
    for partition_key in ("quota#c", "principals#ab"):  # ? is exactly one character
        query = {"KeyConditionExpression": "endpoint_id = :p", "ExpressionAttributeValues": {":p": {"S": partition_key}}}
        denied(lambda: every.query(TableName="ledger", **query), "AccessDeniedException", 400)

    anyone = role("leading-any", "ForAnyValue")
    assert len(anyone.batch_get_item(RequestItems=mixed)["Responses"]["ledger"]) == 2  # principals#a matches
    assert len(anyone.batch_get_item(RequestItems=principals)["Responses"]["ledger"]) == 2
    denied(lambda: anyone.batch_get_item(RequestItems=quota), "AccessDeniedException", 400)
    # A transaction is authorized per item, each with its own leading key: the quota# item is not allowed.
    put = lambda key: {"Put": {"TableName": "ledger", "Item": ledger_key(key)}}  # noqa: E731
    anyone.transact_write_items(TransactItems=[put("principals#a"), put("principals#zz")])
    denied(lambda: anyone.transact_write_items(TransactItems=[put("principals#a"), put("quota#d")]), "AccessDeniedException", 400)
    assert (denials(w)[-1]["action"], denials(w)[-1]["reason"]) == ("dynamodb:PutItem", "implicit deny")
    assert "Item" not in setup.get_item(TableName="ledger", Key=ledger_key("quota#d"))


def test_a_condition_the_emulator_cannot_evaluate_stays_denied(world, ledger):
    w = world
    leading = {"dynamodb:LeadingKeys": ["principals#*"]}
    cases = {
        # Another condition key beside dynamodb:LeadingKeys (ANDed: the whole block is unknown).
        "unknown-key": {"ForAllValues:StringLike": leading, "StringEquals": {"aws:RequestedRegion": REGION}},
        # Another operator on the key.
        "unknown-operator": {"ForAllValues:StringLikeIfExists": leading},
        # A policy variable in the value.
        "policy-variable": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["principals#${aws:username}*"]}},
    }
    for name, condition in cases.items():
        ddb = leading_keys_role(w, f"cond-{name}", [principal_ledger(ledger["ledger"], condition)])
        msg = denied(lambda: ddb.get_item(TableName="ledger", Key=ledger_key("principals#a")), "AccessDeniedException", 400)
        assert "does not evaluate conditions" in msg, name
        assert denials(w)[-1]["reason"] == "conditional", name
    # A call whose leading keys the emulator does not read: Scan.
    scan = {**principal_ledger(ledger["ledger"]), "Action": "dynamodb:Scan"}
    ddb = leading_keys_role(w, "cond-scan", [scan])
    denied(lambda: ddb.scan(TableName="ledger"), "AccessDeniedException", 400)
    assert denials(w)[-1]["reason"] == "conditional"


def test_a_deny_on_leading_keys_applies_only_to_its_partitions(world, ledger):
    w = world
    allow = {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": ledger["ledger"]}
    deny = {**allow, "Effect": "Deny", "Condition": {"ForAnyValue:StringEquals": {"dynamodb:LeadingKeys": ["quota#c"]}}}
    ddb = leading_keys_role(w, "deny-quota", [allow, deny])
    ddb.get_item(TableName="ledger", Key=ledger_key("principals#a"))
    msg = denied(lambda: ddb.get_item(TableName="ledger", Key=ledger_key("quota#c")), "AccessDeniedException", 400)
    assert "explicit deny" in msg


def test_describe_connections_needs_resource_star(world):
    w = world
    iam = w["iam"]
    arn = iam.create_role(RoleName="scoped-describe", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeVpcEndpointConnections", "Resource": service_arn(w["svc:svc"])}]}
    iam.put_role_policy(RoleName="scoped-describe", PolicyName="p", PolicyDocument=json.dumps(doc))
    ec2 = role_session(w["url"], arn, "ingest-fn").client("ec2", endpoint_url=w["url"])
    denied(lambda: ec2.describe_vpc_endpoint_connections(), "UnauthorizedOperation", 403)  # the action has no resource type
    w["ec2"].describe_vpc_endpoint_connections()  # "*" (the template's ReadConnections)


def test_bootstrap_and_assume_role_credentials_are_never_checked(world):
    w = world
    before = len(denials(w))
    setup = w["setup"]  # sts:AssumeRole session in the provider account
    setup.client("dynamodb", endpoint_url=w["url"]).get_item(TableName="other", Key={"pk": {"S": "seed"}})
    setup.client("dynamodb", endpoint_url=w["url"]).scan(TableName="decisions")
    setup.client("sns", endpoint_url=w["url"]).publish(TopicArn=w["topic:other"], Message="x")
    setup.client("events", endpoint_url=w["url"]).put_events(Entries=[{"EventBusName": "other", "Source": "s", "DetailType": "d", "Detail": "{}"}])
    setup.client("sqs", endpoint_url=w["url"]).receive_message(QueueUrl=w["url:other"], WaitTimeSeconds=0)
    setup.client("ec2", endpoint_url=w["url"]).accept_vpc_endpoint_connections(ServiceId=w["svc:othersvc"], VpcEndpointIds=["vpce-00000000000000000"])
    setup.client("ec2", endpoint_url=w["url"]).describe_vpcs()
    # A consumer account's session, and the raw bootstrap keys.
    bootstrap(w["url"], "222222222222").client("ec2", endpoint_url=w["url"]).describe_vpcs()
    boto3.client("dynamodb", endpoint_url=w["url"], region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test").list_tables()
    assert len(denials(w)) == before


def test_enforcement_can_be_switched_off_and_on(world):
    w = world
    assert control(w["url"], "iam/enforce", {"enabled": False}) == {"enabled": False}
    try:
        w["dynamodb"].scan(TableName="other")
    finally:
        assert control(w["url"], "iam/enforce", {"enabled": True}) == {"enabled": True}
    denied(lambda: w["dynamodb"].scan(TableName="other"), "AccessDeniedException", 400)


def test_a_deleted_role_denies_its_sessions(world):
    w = world
    iam = w["iam"]
    arn = iam.create_role(RoleName="short-lived", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    iam.put_role_policy(
        RoleName="short-lived",
        PolicyName="p",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sns:ListTopics", "Resource": "*"}]}),
    )
    sns = role_session(w["url"], arn, "gone").client("sns", endpoint_url=w["url"])
    sns.list_topics()
    iam.delete_role_policy(RoleName="short-lived", PolicyName="p")
    iam.delete_role(RoleName="short-lived")
    denied(lambda: sns.list_topics(), "AuthorizationError", 403)


# ----------------------------------------------------------------------------------- unit tests


def test_resource_arns_per_service():
    def reqs(service, action, params):
        return gk_iam.authorization_requests(service, action, params, "eu-west-1", "999999999999")

    q = "https://sqs.eu-west-1.amazonaws.com/999999999999/q"
    assert reqs("sqs", "DeleteMessageBatch", {"QueueUrl": q}) == [("sqs:DeleteMessage", "arn:aws:sqs:eu-west-1:999999999999:q")]
    assert reqs("sqs", "SendMessageBatch", {"QueueUrl": q}) == [("sqs:SendMessage", "arn:aws:sqs:eu-west-1:999999999999:q")]
    table = "arn:aws:dynamodb:eu-west-1:999999999999:table"
    for action in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"):
        assert reqs("dynamodb", action, {"TableName": "t"}) == [(f"dynamodb:{action}", f"{table}/t")]
    assert reqs("dynamodb", "Query", {"TableName": "t", "IndexName": "by-x"}) == [("dynamodb:Query", f"{table}/t/index/by-x")]
    assert reqs("dynamodb", "GetItem", {"TableName": f"{table}/t"}) == [("dynamodb:GetItem", f"{table}/t")]  # an ARN as TableName
    assert reqs("dynamodb", "BatchGetItem", {"RequestItems": {"a": {}, "b": {}}}) == [
        ("dynamodb:BatchGetItem", f"{table}/a"),
        ("dynamodb:BatchGetItem", f"{table}/b"),
    ]
    items = [
        {"Put": {"TableName": "a"}},
        {"Update": {"TableName": "a"}},
        {"Delete": {"TableName": "b"}},
        {"ConditionCheck": {"TableName": "b"}},
        {"Put": {"TableName": "a"}},
    ]
    assert reqs("dynamodb", "TransactWriteItems", {"TransactItems": items}) == [
        ("dynamodb:PutItem", f"{table}/a"),
        ("dynamodb:UpdateItem", f"{table}/a"),
        ("dynamodb:DeleteItem", f"{table}/b"),
        ("dynamodb:ConditionCheckItem", f"{table}/b"),
    ]
    assert reqs("dynamodb", "TransactGetItems", {"TransactItems": [{"Get": {"TableName": "a"}}]}) == [("dynamodb:GetItem", f"{table}/a")]
    stream = f"{table}/t/stream/2024-01-01T00:00:00.000"
    assert reqs("dynamodb", "DescribeStream", {"StreamArn": stream}) == [("dynamodb:DescribeStream", stream)]
    assert reqs("dynamodb", "GetShardIterator", {"StreamArn": stream, "ShardId": "s"}) == [("dynamodb:GetShardIterator", stream)]
    assert reqs("dynamodb", "GetRecords", {"ShardIterator": f"{stream}|1|AAAAopaque"}) == [("dynamodb:GetRecords", stream)]
    assert reqs("dynamodb", "GetRecords", {"ShardIterator": "opaque"}) == [("dynamodb:GetRecords", "*")]
    assert reqs("dynamodb", "ListStreams", {"TableName": "t"}) == [("dynamodb:ListStreams", "*")]
    assert reqs("dynamodb", "ListTables", {}) == [("dynamodb:ListTables", "*")]

    topic = "arn:aws:sns:eu-west-1:999999999999:t"
    assert reqs("sns", "Publish", {"TopicArn": topic}) == [("sns:Publish", topic)]
    assert reqs("sns", "Publish", {"TargetArn": topic}) == [("sns:Publish", topic)]
    assert reqs("sns", "Publish", {"PhoneNumber": "+15555550100"}) == [("sns:Publish", "*")]
    assert reqs("sns", "PublishBatch", {"TopicArn": topic}) == [("sns:Publish", topic)]

    svc = "arn:aws:ec2:eu-west-1:999999999999:vpc-endpoint-service/vpce-svc-0123"
    assert reqs("ec2", "AcceptVpcEndpointConnections", {"ServiceId": "vpce-svc-0123"}) == [("ec2:AcceptVpcEndpointConnections", svc)]
    assert reqs("ec2", "RejectVpcEndpointConnections", {"ServiceId": "vpce-svc-0123"}) == [("ec2:RejectVpcEndpointConnections", svc)]
    assert reqs("ec2", "DescribeVpcEndpointConnections", {}) == [("ec2:DescribeVpcEndpointConnections", "*")]

    bus = "arn:aws:events:eu-west-1:999999999999:event-bus"
    other = "arn:aws:events:eu-west-1:888888888888:event-bus/x"
    entries = [{"EventBusName": "b"}, {"EventBusName": other}, {}, {"EventBusName": "b"}]
    assert reqs("events", "PutEvents", {"Entries": entries}) == [
        ("events:PutEvents", f"{bus}/b"),
        ("events:PutEvents", other),
        ("events:PutEvents", f"{bus}/default"),
    ]

    queue = "arn:aws:sqs:eu-west-1:999999999999:q"
    for url in ("https://sqs.eu-west-1.amazonaws.com/999999999999/q", "http://127.0.0.1:4566/999999999999/q", "q"):
        assert reqs("sqs", "ReceiveMessage", {"QueueUrl": url}) == [("sqs:ReceiveMessage", queue)]
    assert reqs("sts", "AssumeRole", {"RoleArn": "arn:aws:iam::1:role/r"}) == [("sts:AssumeRole", "arn:aws:iam::1:role/r")]
    assert reqs("logs", "PutLogEvents", {}) == [("logs:PutLogEvents", "*")]
    stack = "arn:aws:cloudformation:eu-west-1:999999999999:stack/s/0a1b2c3d"
    assert reqs("cloudformation", "DescribeStacks", {"StackName": stack}) == [("cloudformation:DescribeStacks", stack)]
    assert reqs("cloudformation", "DescribeStacks", {}) == [("cloudformation:DescribeStacks", "*")]
    assert reqs("cloudformation", "DescribeStacks", {"StackName": "none-such"}) == [("cloudformation:DescribeStacks", "*")]


def test_policy_evaluation():
    def verdict(statements, action, resource):
        return gk_iam.evaluate(gk_iam.compile_policy({"Statement": statements}), action, resource)

    t = "arn:aws:dynamodb:us-east-1:1:table/t"
    allow = {"Effect": "Allow", "Action": "dynamodb:Get*", "Resource": "arn:aws:dynamodb:*:*:table/?"}
    assert verdict([allow], "dynamodb:GetItem", t) == gk_iam.ALLOW
    assert verdict([allow], "DynamoDB:getitem", t) == gk_iam.ALLOW  # actions are case-insensitive
    assert verdict([allow], "dynamodb:GetItem", t + "x") == gk_iam.IMPLICIT_DENY  # ? is one character
    assert verdict([allow], "dynamodb:GetItem", t.upper()) == gk_iam.IMPLICIT_DENY  # resources are not
    assert verdict([allow], "dynamodb:PutItem", t) == gk_iam.IMPLICIT_DENY
    assert verdict([allow, {"Effect": "Deny", "Action": "*", "Resource": t}], "dynamodb:GetItem", t) == gk_iam.EXPLICIT_DENY
    assert verdict([{"Effect": "Allow", "NotAction": "dynamodb:Delete*", "Resource": "*"}], "dynamodb:GetItem", t) == gk_iam.ALLOW
    assert verdict([{"Effect": "Allow", "NotAction": "dynamodb:Delete*", "Resource": "*"}], "dynamodb:DeleteItem", t) == gk_iam.IMPLICIT_DENY
    assert verdict([{"Effect": "Allow", "Action": "*", "NotResource": t}], "sns:Publish", t) == gk_iam.IMPLICIT_DENY
    assert verdict([{"Effect": "Allow", "Action": "*", "NotResource": t}], "sns:Publish", "arn:aws:sns:x") == gk_iam.ALLOW
    assert verdict([{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "arn:aws:ec2:*"}], "ec2:DescribeVpcs", "*") == gk_iam.IMPLICIT_DENY
    conditional = {**allow, "Condition": {"Bool": {"aws:SecureTransport": "true"}}}
    assert verdict([conditional], "dynamodb:GetItem", t) == gk_iam.CONDITIONAL
    assert verdict([allow, {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"Bool": {"x": "y"}}}], "dynamodb:GetItem", t) == gk_iam.EXPLICIT_DENY
    assert verdict([{"Effect": "Allow", "Action": ["sns:Publish"], "Resource": ["a", "b"]}], "sns:Publish", "b") == gk_iam.ALLOW
    assert gk_iam.evaluate(gk_iam.compile_policy('{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}'), "x:Y", "z") == gk_iam.ALLOW


def test_leading_keys_condition_evaluation():
    t = "arn:aws:dynamodb:us-east-1:1:table/t"

    def verdict(condition, keys, effect="Allow"):
        statement = {"Effect": effect, "Action": "dynamodb:GetItem", "Resource": t, "Condition": condition}
        context = {} if keys is None else {"dynamodb:LeadingKeys": keys}
        return gk_iam.evaluate(gk_iam.compile_policy({"Statement": [statement]}), "dynamodb:GetItem", t, context)

    ALLOW, DENY, UNKNOWN = gk_iam.ALLOW, gk_iam.IMPLICIT_DENY, gk_iam.CONDITIONAL
    like = lambda op, *v: {op: {"dynamodb:LeadingKeys": list(v)}}  # noqa: E731
    # ForAllValues: every request value matches one policy value; true for no values (AWS: "also returns true
    # if there are no context keys in the request").
    assert verdict(like("ForAllValues:StringLike", "principals#*"), ["principals#a", "principals#b"]) == ALLOW
    assert verdict(like("ForAllValues:StringLike", "principals#*"), ["principals#a", "quota#b"]) == DENY
    assert verdict(like("ForAllValues:StringLike", "a*", "b*"), ["a1", "b2"]) == ALLOW  # values ORed
    assert verdict(like("ForAllValues:StringLike", "principals#*"), []) == ALLOW
    # ForAnyValue: at least one; false for no values.
    assert verdict(like("ForAnyValue:StringLike", "principals#*"), ["principals#a", "quota#b"]) == ALLOW
    assert verdict(like("ForAnyValue:StringLike", "principals#*"), ["quota#b"]) == DENY
    assert verdict(like("ForAnyValue:StringLike", "principals#*"), []) == DENY
    # Bare operators: one request value; the key absent is false (true when negated); several values: unknown.
    assert verdict(like("StringEquals", "k1", "k2"), ["k2"]) == ALLOW
    assert verdict(like("StringEquals", "k1"), ["K1"]) == DENY  # case-sensitive
    assert verdict(like("StringEquals", "k*"), ["k1"]) == DENY  # no wildcards in StringEquals
    assert verdict(like("StringEquals", "k*"), ["k*"]) == ALLOW
    assert verdict(like("StringLike", "k?"), ["k1"]) == ALLOW
    assert verdict(like("StringLike", "k?"), ["k12"]) == DENY  # ? is exactly one character
    assert verdict(like("StringLike", "k.*"), ["kx"]) == DENY  # . is literal
    assert verdict(like("StringLike", "k*"), ["k\nx"]) == ALLOW
    assert verdict(like("StringEquals", "k1"), []) == DENY
    assert verdict(like("StringNotEquals", "k1"), []) == ALLOW
    assert verdict(like("StringEquals", "k1"), ["k1", "k1x"]) == UNKNOWN
    # Negated operators: none of the policy values (NOR), per request value.
    assert verdict(like("StringNotLike", "quota#*", "x"), ["principals#a"]) == ALLOW
    assert verdict(like("StringNotLike", "quota#*", "x"), ["x"]) == DENY
    assert verdict(like("ForAllValues:StringNotLike", "quota#*"), ["principals#a", "quota#b"]) == DENY
    assert verdict(like("ForAnyValue:StringNotLike", "quota#*"), ["principals#a", "quota#b"]) == ALLOW
    assert verdict(like("ForAllValues:StringNotEquals", "quota#b"), ["principals#a"]) == ALLOW
    # Several operators (and keys) are ANDed.
    both = {**like("ForAllValues:StringLike", "p*"), **like("ForAnyValue:StringEquals", "p2")}
    assert verdict(both, ["p1", "p2"]) == ALLOW
    assert verdict(both, ["p1"]) == DENY
    # Unknown: the key's values (not in the context), another key or operator anywhere in the block, a policy
    # variable, a non-string value.
    assert verdict(like("ForAllValues:StringLike", "principals#*"), None) == UNKNOWN
    assert verdict({**like("ForAllValues:StringLike", "p*"), "StringEquals": {"aws:RequestedRegion": "us-east-1"}}, ["p1"]) == UNKNOWN
    assert verdict({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": "p*", "dynamodb:Attributes": "a"}}, ["p1"]) == UNKNOWN
    for operator in ("StringLikeIfExists", "ForAllValues:StringEqualsIgnoreCase", "Null", "ForSomeValues:StringLike", "ArnLike"):
        assert verdict(like(operator, "p*"), ["p1"]) == UNKNOWN, operator
    assert verdict({"ForAllValues:StringLike": {"dynamodb:leadingkeys": "p*"}}, ["p1"]) == UNKNOWN
    assert verdict(like("ForAllValues:StringEquals", "${aws:userid}"), ["${aws:userid}"]) == UNKNOWN
    assert verdict(like("ForAllValues:StringEquals", 5), ["5"]) == UNKNOWN
    assert verdict({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": []}}, ["p1"]) == UNKNOWN
    # A Deny applies when its condition holds or is unknown, not when it is false.
    deny = like("ForAnyValue:StringLike", "quota#*")
    allow_all = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    statements = gk_iam.compile_policy({"Statement": [allow_all, {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": deny}]})
    assert gk_iam.evaluate(statements, "dynamodb:GetItem", t, {"dynamodb:LeadingKeys": ["quota#1"]}) == gk_iam.EXPLICIT_DENY
    assert gk_iam.evaluate(statements, "dynamodb:GetItem", t, {"dynamodb:LeadingKeys": ["principals#1"]}) == ALLOW
    assert gk_iam.evaluate(statements, "dynamodb:GetItem", t) == gk_iam.EXPLICIT_DENY
    # A false conditional Allow beside an unknown one: still "conditional" (the unknown one might allow).
    statements = gk_iam.compile_policy(
        {"Statement": [{**allow_all, "Condition": like("StringEquals", "a")}, {**allow_all, "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]}
    )
    assert gk_iam.evaluate(statements, "dynamodb:GetItem", t, {"dynamodb:LeadingKeys": ["b"]}) == UNKNOWN


def test_leading_keys_of_each_dynamodb_call():
    schemas = {"ledger": [{"AttributeName": "endpoint_id", "KeyType": "HASH"}, {"AttributeName": "created", "KeyType": "RANGE"}]}
    table = "arn:aws:dynamodb:eu-west-1:999999999999:table"

    def contexts(action, params):
        out = gk_iam.authorization_requests(
            "dynamodb", action, params, "eu-west-1", "999999999999", context=True, key_schema=lambda t: schemas.get(t.rsplit("/", 1)[-1])
        )
        return [(a, r.removeprefix(f"{table}/"), c.get("dynamodb:LeadingKeys")) for a, r, c in out]

    def key(v, kind="S"):
        return {"endpoint_id": {kind: v}, "created": {"S": "c"}}

    assert contexts("GetItem", {"TableName": "ledger", "Key": key("principals#a")}) == [("dynamodb:GetItem", "ledger", ["principals#a"])]
    assert contexts("GetItem", {"TableName": f"{table}/ledger", "Key": key("7", "N")}) == [("dynamodb:GetItem", "ledger", ["7"])]
    assert contexts("DeleteItem", {"TableName": "ledger", "Key": key("a")}) == [("dynamodb:DeleteItem", "ledger", ["a"])]
    assert contexts("UpdateItem", {"TableName": "ledger", "Key": key("a")}) == [("dynamodb:UpdateItem", "ledger", ["a"])]
    assert contexts("PutItem", {"TableName": "ledger", "Item": {**key("a"), "n": {"N": "1"}}}) == [("dynamodb:PutItem", "ledger", ["a"])]
    # Unknown: a table moto does not know, a binary partition key, an item without its partition key.
    assert contexts("GetItem", {"TableName": "gone", "Key": key("a")}) == [("dynamodb:GetItem", "gone", None)]
    assert contexts("GetItem", {"TableName": "ledger", "Key": key("AAA=", "B")}) == [("dynamodb:GetItem", "ledger", None)]
    assert contexts("PutItem", {"TableName": "ledger", "Item": {"created": {"S": "c"}}}) == [("dynamodb:PutItem", "ledger", None)]
    # Batches: per table, every key's partition value.
    batch = {"RequestItems": {"ledger": {"Keys": [key("a"), key("b"), key("a")]}, "gone": {"Keys": [key("a")]}}}
    assert contexts("BatchGetItem", batch) == [("dynamodb:BatchGetItem", "ledger", ["a", "b"]), ("dynamodb:BatchGetItem", "gone", None)]
    writes = {"RequestItems": {"ledger": [{"PutRequest": {"Item": key("a")}}, {"DeleteRequest": {"Key": key("b")}}]}}
    assert contexts("BatchWriteItem", writes) == [("dynamodb:BatchWriteItem", "ledger", ["a", "b"])]
    # Transactions: per item, as its underlying action.
    items = [
        {"Put": {"TableName": "ledger", "Item": key("a")}},
        {"Update": {"TableName": "ledger", "Key": key("b")}},
        {"ConditionCheck": {"TableName": "ledger", "Key": key("c")}},
        {"Put": {"TableName": "ledger", "Item": key("a")}},
        {"Put": {"TableName": "ledger", "Item": key("d")}},
    ]
    assert contexts("TransactWriteItems", {"TransactItems": items}) == [
        ("dynamodb:PutItem", "ledger", ["a"]),
        ("dynamodb:UpdateItem", "ledger", ["b"]),
        ("dynamodb:ConditionCheckItem", "ledger", ["c"]),
        ("dynamodb:PutItem", "ledger", ["d"]),
    ]
    assert contexts("TransactGetItems", {"TransactItems": [{"Get": {"TableName": "ledger", "Key": key("e")}}]}) == [("dynamodb:GetItem", "ledger", ["e"])]
    # Query: the partition key value of the key condition, or KeyConditions' EQ.
    q = {"TableName": "ledger", "KeyConditionExpression": "#e = :p AND begins_with(created, :c)"}
    q |= {"ExpressionAttributeNames": {"#e": "endpoint_id"}, "ExpressionAttributeValues": {":p": {"S": "principals#q"}, ":c": {"S": "2"}}}
    assert contexts("Query", q) == [("dynamodb:Query", "ledger", ["principals#q"])]
    legacy = {"endpoint_id": {"AttributeValueList": [{"S": "k"}], "ComparisonOperator": "EQ"}}
    assert contexts("Query", {"TableName": "ledger", "KeyConditions": legacy}) == [("dynamodb:Query", "ledger", ["k"])]
    unreadable = [
        {"TableName": "ledger", "KeyConditionExpression": "created = :c", "ExpressionAttributeValues": {":c": {"S": "x"}}},
        {"TableName": "ledger", "KeyConditionExpression": "endpoint_id = :missing"},
        {"TableName": "ledger", "KeyConditions": {"endpoint_id": {"AttributeValueList": [{"S": "k"}], "ComparisonOperator": "BEGINS_WITH"}}},
        {"TableName": "ledger"},
    ]
    for params in unreadable:
        assert contexts("Query", params) == [("dynamodb:Query", "ledger", None)], params
    on_index = {**q, "IndexName": "owed"}
    assert contexts("Query", on_index) == [("dynamodb:Query", "ledger/index/owed", None)]
    # Every other call: unknown (Scan included: the emulator does not decide what AWS puts there).
    assert contexts("Scan", {"TableName": "ledger"}) == [("dynamodb:Scan", "ledger", None)]
    assert contexts("DescribeTable", {"TableName": "ledger"}) == [("dynamodb:DescribeTable", "ledger", None)]
    assert gk_iam.authorization_requests("sns", "Publish", {"TopicArn": "arn:aws:sns:eu-west-1:1:t"}, "eu-west-1", "1", context=True) == [
        ("sns:Publish", "arn:aws:sns:eu-west-1:1:t", {})
    ]
    # Without context=True: the (action, resource) pairs as before, one per distinct pair.
    assert gk_iam.authorization_requests("dynamodb", "TransactWriteItems", {"TransactItems": items}, "eu-west-1", "999999999999") == [
        ("dynamodb:PutItem", f"{table}/ledger"),
        ("dynamodb:UpdateItem", f"{table}/ledger"),
        ("dynamodb:ConditionCheckItem", f"{table}/ledger"),
    ]


def test_create_tags_is_authorized_per_resource_with_its_tag_keys():
    def reqs(action, params):
        return gk_iam.authorization_requests("ec2", action, params, "eu-west-1", "999999999999", context=True)

    arn = "arn:aws:ec2:eu-west-1:999999999999"
    params = {"ResourceId.2": "vpce-svc-perm-0a", "ResourceId.1": "vpce-con-0b", "ResourceId.3": "i-0c", "Tag.1.Key": "gatekeeper:tenant", "Tag.1.Value": "ACME"}
    keys = {"aws:TagKeys": ["gatekeeper:tenant"]}
    assert reqs("CreateTags", params) == [
        ("ec2:CreateTags", f"{arn}:vpc-endpoint-connection/vpce-con-0b", keys),
        ("ec2:CreateTags", f"{arn}:vpc-endpoint-service-permission/vpce-svc-perm-0a", keys),
        ("ec2:CreateTags", "*", keys),  # not a PrivateLink ID: not modelled, only Resource "*" matches
    ]
    two = {"ResourceId.1": "vpce-0d", "Tag.2.Key": "b", "Tag.1.Key": "a"}
    assert reqs("DeleteTags", two) == [("ec2:DeleteTags", f"{arn}:vpc-endpoint/vpce-0d", {"aws:TagKeys": ["a", "b"]})]

    # The template's statement: CreateTags on connections, only the tenant tag key.
    statement = {
        "Effect": "Allow",
        "Action": "ec2:CreateTags",
        "Resource": f"{arn}:vpc-endpoint-connection/*",
        "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["gatekeeper:tenant"]}},
    }
    policy = gk_iam.compile_policy({"Statement": [statement]})

    def verdict(params):
        return [gk_iam.evaluate(policy, a, r, c) for a, r, c in reqs("CreateTags", params)]

    assert verdict({"ResourceId.1": "vpce-con-0b", "Tag.1.Key": "gatekeeper:tenant"}) == [gk_iam.ALLOW]
    assert verdict({"ResourceId.1": "vpce-con-0b", "Tag.1.Key": "gatekeeper:tenant", "Tag.2.Key": "Name"}) == [gk_iam.IMPLICIT_DENY]
    assert verdict({"ResourceId.1": "vpce-con-0b", "Tag.1.Key": "Gatekeeper:Tenant"}) == [gk_iam.IMPLICIT_DENY]
    assert verdict({"ResourceId.1": "vpce-0d", "Tag.1.Key": "gatekeeper:tenant"}) == [gk_iam.IMPLICIT_DENY]
