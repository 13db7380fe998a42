"""Tests of the EC2 endpoint-connection extension against the running server, through boto3 (the real
wire protocol), checked against the EC2 API reference: states, error codes, Unsuccessful items, filters,
pagination and connection notifications."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest

PROVIDER = "111111111111"  # moto's default account is 123456789012; the provider assumes a role too
CONSUMER_A = "222222222222"
CONSUMER_B = "333333333333"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def endpoint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("gatekeeper_moto.py")), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"GATEKEEPER_EMU_ACCEPT_DELAY": "0.2", "PATH": "/usr/bin:/bin"},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(5)


def session(url, account):
    sts = boto3.client("sts", endpoint_url=url, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/test", RoleSessionName="test")["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=REGION,
    )


def client(url, account, name):
    return session(url, account).client(name, endpoint_url=url)


def network(ec2):
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    return vpc, subnet


@pytest.fixture(scope="module")
def world(endpoint):
    ec2 = client(endpoint, PROVIDER, "ec2")
    _, subnet = network(ec2)
    lb = client(endpoint, PROVIDER, "elbv2").create_load_balancer(Name="svc", Subnets=[subnet], Type="network")
    svc = ec2.create_vpc_endpoint_service_configuration(
        NetworkLoadBalancerArns=[lb["LoadBalancers"][0]["LoadBalancerArn"]], AcceptanceRequired=True
    )["ServiceConfiguration"]
    sns = client(endpoint, PROVIDER, "sns")
    sqs = client(endpoint, PROVIDER, "sqs")
    topic = sns.create_topic(Name="connections")["TopicArn"]
    queue = sqs.create_queue(QueueName="connections")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn)
    nfn = ec2.create_vpc_endpoint_connection_notification(
        ServiceId=svc["ServiceId"], ConnectionNotificationArn=topic, ConnectionEvents=["Connect", "Accept", "Reject", "Delete"]
    )["ConnectionNotification"]
    return {"url": endpoint, "ec2": ec2, "svc": svc, "sqs": sqs, "queue": queue, "topic": topic, "nfn": nfn}


def create_endpoint(world, account):
    ec2 = client(world["url"], account, "ec2")
    vpc, subnet = network(ec2)
    ep = ec2.create_vpc_endpoint(
        VpcEndpointType="Interface", VpcId=vpc, ServiceName=world["svc"]["ServiceName"], SubnetIds=[subnet]
    )["VpcEndpoint"]
    return ec2, ep["VpcEndpointId"]


def drain(world):
    out = []
    while True:
        msgs = world["sqs"].receive_message(QueueUrl=world["queue"], MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(json.loads(m["Body"])["Message"]))
            world["sqs"].delete_message(QueueUrl=world["queue"], ReceiptHandle=m["ReceiptHandle"])


def connections(world, **filters):
    f = [{"Name": k.replace("_", "-"), "Values": v} for k, v in filters.items()]
    return world["ec2"].describe_vpc_endpoint_connections(Filters=f)["VpcEndpointConnections"]


def test_cross_account_endpoint_waits_in_pending_acceptance_and_notifies_connect(world):
    drain(world)
    consumer, vpce = create_endpoint(world, CONSUMER_A)
    assert consumer.describe_vpc_endpoints(VpcEndpointIds=[vpce])["VpcEndpoints"][0]["State"] == "pendingAcceptance"
    (conn,) = connections(world, vpc_endpoint_id=[vpce])
    assert conn["VpcEndpointOwner"] == CONSUMER_A
    assert conn["VpcEndpointState"] == "pendingAcceptance"
    assert conn["ServiceId"] == world["svc"]["ServiceId"]
    assert conn["VpcEndpointRegion"] == REGION
    assert conn["CreationTimestamp"].year >= 2024
    (msg,) = drain(world)
    assert msg["connectionEvent"] == "Connect"
    assert msg["vpcEndpointId"] == vpce and msg["serviceId"] == world["svc"]["ServiceId"]


def test_accept_goes_through_pending_to_available(world):
    _, vpce = create_endpoint(world, CONSUMER_A)
    drain(world)
    out = world["ec2"].accept_vpc_endpoint_connections(ServiceId=world["svc"]["ServiceId"], VpcEndpointIds=[vpce])
    assert out["Unsuccessful"] == []
    assert connections(world, vpc_endpoint_id=[vpce])[0]["VpcEndpointState"] == "pending"
    time.sleep(0.3)
    assert connections(world, vpc_endpoint_id=[vpce])[0]["VpcEndpointState"] == "available"
    assert [m["connectionEvent"] for m in drain(world)] == ["Accept"]


def test_unsuccessful_items_not_a_failed_call(world):
    _, pending = create_endpoint(world, CONSUMER_B)
    _, done = create_endpoint(world, CONSUMER_B)
    svc = world["svc"]["ServiceId"]
    world["ec2"].reject_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=[done])
    out = world["ec2"].accept_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=[pending, done, "vpce-0000000000000dead"])
    codes = {u["ResourceId"]: u["Error"]["Code"] for u in out["Unsuccessful"]}
    assert codes == {done: "InvalidState", "vpce-0000000000000dead": "InvalidVpcEndpointId.NotFound"}
    assert connections(world, vpc_endpoint_id=[pending])[0]["VpcEndpointState"] == "pending"


def test_reject_revokes_an_available_connection(world):
    _, vpce = create_endpoint(world, CONSUMER_A)
    svc = world["svc"]["ServiceId"]
    world["ec2"].accept_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=[vpce])
    time.sleep(0.3)
    drain(world)
    assert world["ec2"].reject_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=[vpce])["Unsuccessful"] == []
    assert connections(world, vpc_endpoint_id=[vpce])[0]["VpcEndpointState"] == "rejected"
    assert [m["connectionEvent"] for m in drain(world)] == ["Reject"]


def test_unknown_service_fails_the_call(world):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        world["ec2"].accept_vpc_endpoint_connections(ServiceId="vpce-svc-00000000000000000", VpcEndpointIds=["vpce-00000000000000000"])
    assert e.value.response["Error"]["Code"] == "InvalidVpcEndpointServiceId.NotFound"


def test_another_accounts_service_cannot_be_acted_on(world):
    stranger = client(world["url"], CONSUMER_A, "ec2")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        stranger.reject_vpc_endpoint_connections(ServiceId=world["svc"]["ServiceId"], VpcEndpointIds=["vpce-00000000000000000"])
    assert e.value.response["Error"]["Code"] == "InvalidVpcEndpointServiceId.NotFound"
    assert stranger.describe_vpc_endpoint_connections()["VpcEndpointConnections"] == []


def test_filters_and_pagination(world):
    for _ in range(3):
        create_endpoint(world, CONSUMER_B)
    mine = connections(world, vpc_endpoint_owner=[CONSUMER_B], vpc_endpoint_state=["pendingAcceptance"])
    assert len(mine) >= 3 and all(c["VpcEndpointOwner"] == CONSUMER_B for c in mine)
    assert all(c["VpcEndpointState"] == "pendingAcceptance" for c in mine)
    seen, token = [], None
    while True:
        kw = {"MaxResults": 5, **({"NextToken": token} if token else {})}
        page = world["ec2"].describe_vpc_endpoint_connections(**kw)
        seen += [c["VpcEndpointId"] for c in page["VpcEndpointConnections"]]
        token = page.get("NextToken")
        if not token:
            break
    assert len(seen) == len(set(seen)) == len(connections(world))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        world["ec2"].describe_vpc_endpoint_connections(Filters=[{"Name": "bogus", "Values": ["x"]}])
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_delete_notifies_and_shows_deleted(world):
    consumer, vpce = create_endpoint(world, CONSUMER_A)
    drain(world)
    consumer.delete_vpc_endpoints(VpcEndpointIds=[vpce])
    assert connections(world, vpc_endpoint_id=[vpce])[0]["VpcEndpointState"] == "deleted"
    assert [m["connectionEvent"] for m in drain(world)] == ["Delete"]


def test_connection_notification_lifecycle(world):
    ec2, nfn = world["ec2"], world["nfn"]
    assert nfn["ConnectionNotificationId"].startswith("vpce-nfn-")
    assert nfn["ConnectionNotificationState"] == "Enabled" and nfn["ConnectionNotificationType"] == "Topic"
    listed = ec2.describe_vpc_endpoint_connection_notifications(
        Filters=[{"Name": "service-id", "Values": [world["svc"]["ServiceId"]]}]
    )["ConnectionNotificationSet"]
    assert [n["ConnectionNotificationId"] for n in listed] == [nfn["ConnectionNotificationId"]]
    with pytest.raises(botocore.exceptions.ClientError):
        ec2.create_vpc_endpoint_connection_notification(
            ServiceId=world["svc"]["ServiceId"], ConnectionNotificationArn=world["topic"], ConnectionEvents=["Explode"]
        )
    extra = ec2.create_vpc_endpoint_connection_notification(
        ServiceId=world["svc"]["ServiceId"], ConnectionNotificationArn=world["topic"], ConnectionEvents=["Reject"]
    )["ConnectionNotification"]["ConnectionNotificationId"]
    out = ec2.delete_vpc_endpoint_connection_notifications(ConnectionNotificationIds=[extra, "vpce-nfn-00000000000000000"])
    assert [u["ResourceId"] for u in out["Unsuccessful"]] == ["vpce-nfn-00000000000000000"]


def control(world, path, body=None):
    import urllib.request

    req = urllib.request.Request(world["url"] + path, data=json.dumps(body).encode() if body is not None else None, method="POST" if body is not None or path.endswith("reset") else "GET")
    if path.endswith("reset"):
        req.data = b"{}"
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def test_calls_are_counted_by_service_and_action(world):
    control(world, "/_gatekeeper/reset")
    connections(world)
    world["ec2"].describe_vpc_endpoint_connections()
    calls = control(world, "/_gatekeeper/calls")
    assert calls["ec2:DescribeVpcEndpointConnections"] == 2


def test_accept_and_reject_are_throttled_like_ec2(world):
    svc = world["svc"]["ServiceId"]
    ec2 = session(world["url"], PROVIDER).client(
        "ec2", endpoint_url=world["url"], config=botocore.config.Config(retries={"total_max_attempts": 1})
    )
    time.sleep(2)  # let earlier tests' calls refill part of the bucket; a full burst still drains it
    codes = []
    for _ in range(25):
        try:
            ec2.reject_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=["vpce-0000000000000beef"])
            codes.append("ok")
        except botocore.exceptions.ClientError as e:
            codes.append(e.response["Error"]["Code"])
    assert codes[0] == "ok" and codes.count("RequestLimitExceeded") >= 10, codes
    time.sleep(1.5)
    assert ec2.reject_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=["vpce-0000000000000beef"])["Unsuccessful"]


def test_injected_faults_answer_in_the_service_protocol(world):
    control(world, "/_gatekeeper/faults", {"rules": [{"match": "dynamodb:*", "rate": 1.0, "kind": "throttle"}, {"match": "sns:Publish", "rate": 1.0, "kind": "error500"}]})
    try:
        ddb = session(world["url"], PROVIDER).client("dynamodb", endpoint_url=world["url"], config=botocore.config.Config(retries={"total_max_attempts": 1}))
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ddb.list_tables()
        assert e.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
        sns = session(world["url"], PROVIDER).client("sns", endpoint_url=world["url"], config=botocore.config.Config(retries={"total_max_attempts": 1}))
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sns.publish(TopicArn=world["topic"], Message="x")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert control(world, "/_gatekeeper/calls")["fault:throttle"] >= 1
    finally:
        control(world, "/_gatekeeper/faults", {"rules": []})
    assert "TableNames" in ddb.list_tables()


def test_dropped_connections_before_and_after_the_service_handles_the_call(world):
    sqs = session(world["url"], PROVIDER).client(
        "sqs", endpoint_url=world["url"], config=botocore.config.Config(retries={"total_max_attempts": 1})
    )
    url = sqs.create_queue(QueueName="drops")["QueueUrl"]
    control(world, "/_gatekeeper/reset")
    try:
        control(world, "/_gatekeeper/faults", {"rules": [{"match": "sqs:SendMessage", "rate": 1.0, "kind": "drop"}]})
        with pytest.raises(botocore.exceptions.HTTPClientError):  # closed with no answer
            sqs.send_message(QueueUrl=url, MessageBody="never arrives")
        control(world, "/_gatekeeper/faults", {"rules": [{"match": "sqs:SendMessage", "rate": 1.0, "kind": "drop_after"}]})
        with pytest.raises(botocore.exceptions.HTTPClientError):  # closed with no answer
            sqs.send_message(QueueUrl=url, MessageBody="arrives unacknowledged")
    finally:
        control(world, "/_gatekeeper/faults", {"rules": []})
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])]
    assert bodies == ["arrives unacknowledged"], "drop loses the call, drop_after only its answer"
    calls = control(world, "/_gatekeeper/calls")
    assert calls["fault:drop"] == 1 and calls["fault:drop_after"] == 1
