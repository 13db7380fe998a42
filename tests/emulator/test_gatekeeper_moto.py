"""Tests of the EC2 endpoint-connection extension against the running server, through boto3 (the real
wire protocol), checked against the EC2 API reference and the PrivateLink guide: states, Unsuccessful items,
filters, pagination, connection fields, allowed principals, connection notifications (and when AWS sends
none), throttling per API, account and Region, eventual consistency, endpoint service configurations and
their private DNS name verification, and tags on connections and service permissions.

Nothing here waits a fixed time to synchronise: every wait is a poll with a deadline that fails loudly.
Error codes AWS does not document are never asserted."""

import functools
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest

PROVIDER = "111111111111"  # moto's default account is 123456789012; the provider assumes a role too
CONSUMER_A = "222222222222"
CONSUMER_B = "333333333333"
REGION = "us-east-1"
OTHER_REGION = "us-west-2"
NO_RETRY = botocore.config.Config(retries={"total_max_attempts": 1})


def eventually(check, what, timeout=10.0, interval=0.05):
    """Polls `check` until it returns a truthy value, which it returns; fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what} (last seen: {last!r})")
        time.sleep(interval)


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

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    eventually(up, "the emulator listens", timeout=20, interval=0.1)
    url = f"http://127.0.0.1:{port}"
    # Setup creates many services and endpoints per account: lift those actions' buckets (the throttling
    # tests use Accept, Reject and DescribeVpcEndpointConnections, whose buckets stay as EC2's).
    setup = ("CreateVpcEndpoint", "CreateVpcEndpointServiceConfiguration", "ModifyVpcEndpointServicePermissions",
             "CreateVpcEndpointConnectionNotification", "ModifyVpcEndpointServiceConfiguration",
             "StartVpcEndpointServicePrivateDnsVerification")
    control(url, "/_gatekeeper/ec2-throttle", {"enabled": True, "limits": {a: [1000, 1000] for a in setup}})
    yield url
    proc.terminate()
    proc.wait(5)


@functools.lru_cache(maxsize=None)
def session(url, account, region=REGION, role="test"):
    sts = boto3.client("sts", endpoint_url=url, region_name=region, aws_access_key_id="test", aws_secret_access_key="test")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="test")["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )


def client(url, account, name, region=REGION, **kw):
    return session(url, account, region).client(name, endpoint_url=url, **kw)


def control(url, path, body=None):
    data = json.dumps(body).encode() if body is not None else (b"{}" if path.endswith("reset") else None)
    req = urllib.request.Request(url + path, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def control_status(url, path, body):
    """(HTTP status, JSON body) of a control call that may be refused."""
    try:
        return 200, control(url, path, body)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def calls(url):
    return control(url, "/_gatekeeper/calls")


def network(ec2, region=REGION):
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{region}a")["Subnet"]["SubnetId"]
    return vpc, subnet


def vpce_statement(resource, actions, provider=PROVIDER, region=REGION, source_arn=None, extra_condition=None):
    """The statement the PrivateLink guide asks for ("Receive alerts for endpoint service events")."""
    condition = {
        "ArnLike": {"aws:SourceArn": source_arn or f"arn:aws:ec2:{region}:{provider}:vpc-endpoint-service/*"},
        "StringEquals": {"aws:SourceAccount": provider},
    }
    condition.update(extra_condition or {})
    return {"Effect": "Allow", "Principal": {"Service": "vpce.amazonaws.com"}, "Action": actions, "Resource": resource, "Condition": condition}


def topic_policy(topic_arn, **kw):
    return json.dumps({"Version": "2012-10-17", "Statement": [vpce_statement(topic_arn, "SNS:Publish", **kw)]})


def service_may_send(service, queue_arn, source_arn):
    """A queue policy letting the service principal sqs:SendMessage for `source_arn` (a topic, a rule)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sqs:SendMessage",
        "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}}}]}


def sns_may_send(queue_arn, topic_arn):
    """The queue policy the SNS developer guide gives for a topic's deliveries to a queue."""
    return service_may_send("sns.amazonaws.com", queue_arn, topic_arn)


def make_service(url, *, principals=("*",), policy="documented", kms_key=None, gateway=False, supported_regions=None, **create):
    """A provider's endpoint service with a connection notification to a topic that an SQS queue reads.
    `policy`: "documented" (the guide's topic policy), None (the topic's default policy), or a policy JSON."""
    ec2 = client(url, PROVIDER, "ec2")
    _, subnet = network(ec2)
    elb = client(url, PROVIDER, "elbv2")
    name = f"svc{time.monotonic_ns() % 10**9}"
    lb = elb.create_load_balancer(Name=name, Subnets=[subnet], Type="gateway" if gateway else "network")
    arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
    kw = {"GatewayLoadBalancerArns": [arn]} if gateway else {"NetworkLoadBalancerArns": [arn]}
    if supported_regions:
        kw["SupportedRegions"] = list(supported_regions)
    svc = ec2.create_vpc_endpoint_service_configuration(AcceptanceRequired=True, **kw, **create)["ServiceConfiguration"]
    if principals:
        ec2.modify_vpc_endpoint_service_permissions(ServiceId=svc["ServiceId"], AddAllowedPrincipals=list(principals))
    sns = client(url, PROVIDER, "sns")
    sqs = client(url, PROVIDER, "sqs")
    topic = sns.create_topic(Name=f"connections-{name}")["TopicArn"]
    if policy == "documented":
        policy = topic_policy(topic)
    if policy is not None:
        sns.set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=policy)
    if kms_key is not None:
        sns.set_topic_attributes(TopicArn=topic, AttributeName="KmsMasterKeyId", AttributeValue=kms_key)
    queue = sqs.create_queue(QueueName=f"connections-{name}")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"Policy": json.dumps(sns_may_send(qarn, topic))})
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn)
    nfn = ec2.create_vpc_endpoint_connection_notification(
        ServiceId=svc["ServiceId"], ConnectionNotificationArn=topic, ConnectionEvents=["Connect", "Accept", "Reject", "Delete"]
    )["ConnectionNotification"]
    return {"url": url, "ec2": ec2, "svc": svc, "sqs": sqs, "sns": sns, "queue": queue, "topic": topic, "nfn": nfn}


@pytest.fixture(scope="module")
def world(endpoint):
    return make_service(endpoint)


def create_endpoint(world, account, region=REGION, **kw):
    ec2 = client(world["url"], account, "ec2", region)
    vpc, subnet = network(ec2, region)
    kind = kw.pop("kind", "Interface")
    ep = ec2.create_vpc_endpoint(VpcEndpointType=kind, VpcId=vpc, ServiceName=world["svc"]["ServiceName"], SubnetIds=[subnet], **kw)
    return ec2, ep["VpcEndpoint"]["VpcEndpointId"]


def drain(world):
    out = []
    while True:
        msgs = world["sqs"].receive_message(QueueUrl=world["queue"], MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(json.loads(m["Body"])["Message"]))
            world["sqs"].delete_message(QueueUrl=world["queue"], ReceiptHandle=m["ReceiptHandle"])


def events(world, n):
    """The next `n` connection events on the world's queue (polled, with a deadline)."""
    got = []
    eventually(lambda: got.extend(drain(world)) or len(got) >= n, f"{n} notification(s)")
    return [m["connectionEvent"] for m in got]


def connections(world, **filters):
    f = [{"Name": k.replace("_", "-"), "Values": v} for k, v in filters.items()]
    return world["ec2"].describe_vpc_endpoint_connections(Filters=f)["VpcEndpointConnections"]


def state_of(world, vpce):
    found = connections(world, vpc_endpoint_id=[vpce])
    return found[0]["VpcEndpointState"] if found else None


def wait_state(world, vpce, state):
    eventually(lambda: state_of(world, vpce) == state, f"{vpce} {state}")


# ------------------------------------------------------------------------------------ connections


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
    assert events(world, 1) == ["Connect"]


def test_accept_goes_through_pending_to_available(world):
    drain(world)
    _, vpce = create_endpoint(world, CONSUMER_A)
    assert events(world, 1) == ["Connect"]
    out = world["ec2"].accept_vpc_endpoint_connections(ServiceId=world["svc"]["ServiceId"], VpcEndpointIds=[vpce])
    assert out["Unsuccessful"] == []
    assert state_of(world, vpce) == "pending"
    wait_state(world, vpce, "available")
    assert events(world, 1) == ["Accept"]


def test_unsuccessful_items_not_a_failed_call(world):
    _, pending = create_endpoint(world, CONSUMER_B)
    _, done = create_endpoint(world, CONSUMER_B)
    svc = world["svc"]["ServiceId"]
    world["ec2"].reject_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=[done])
    out = world["ec2"].accept_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=[pending, done, "vpce-0000000000000dead"])
    codes = {u["ResourceId"]: u["Error"]["Code"] for u in out["Unsuccessful"]}
    assert set(codes) == {done, "vpce-0000000000000dead"}
    assert codes["vpce-0000000000000dead"] == "InvalidVpcEndpointId.NotFound"
    # The code for a connection in the wrong state is not documented: anything but "not found".
    assert codes[done] and "NotFound" not in codes[done]
    assert state_of(world, pending) == "pending"


def test_reject_revokes_an_available_connection(world):
    _, vpce = create_endpoint(world, CONSUMER_A)
    svc = world["svc"]["ServiceId"]
    world["ec2"].accept_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=[vpce])
    wait_state(world, vpce, "available")
    drain(world)
    assert world["ec2"].reject_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=[vpce])["Unsuccessful"] == []
    assert state_of(world, vpce) == "rejected"
    assert events(world, 1) == ["Reject"]


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


def test_a_listing_is_in_no_creation_order_and_pages_survive_endpoints_created_between_them(world):
    made = [create_endpoint(world, CONSUMER_B)[1] for _ in range(8)]
    listed = [c["VpcEndpointId"] for c in connections(world) if c["VpcEndpointId"] in made]
    assert sorted(listed) == sorted(made) and listed != made  # AWS promises no order: not creation order
    before = {c["VpcEndpointId"] for c in connections(world)}
    page = world["ec2"].describe_vpc_endpoint_connections(MaxResults=5)
    seen = [c["VpcEndpointId"] for c in page["VpcEndpointConnections"]]
    for _ in range(6):  # created between the pages: wherever they land, nothing listed before is skipped
        create_endpoint(world, CONSUMER_B)
    token = page.get("NextToken")
    while token:
        page = world["ec2"].describe_vpc_endpoint_connections(MaxResults=5, NextToken=token)
        seen += [c["VpcEndpointId"] for c in page["VpcEndpointConnections"]]
        token = page.get("NextToken")
    assert len(seen) == len(set(seen)), "no connection twice"
    assert before <= set(seen), "none of those there before the first page was skipped"


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
    drain(world)
    consumer, vpce = create_endpoint(world, CONSUMER_A)
    assert events(world, 1) == ["Connect"]
    consumer.delete_vpc_endpoints(VpcEndpointIds=[vpce])
    assert state_of(world, vpce) == "deleting"  # the lifecycle's deleting, then deleted
    assert events(world, 1) == ["Delete"]
    wait_state(world, vpce, "deleted")


def test_connection_has_its_own_tags_ip_address_type_and_region(world):
    consumer, vpce = create_endpoint(world, CONSUMER_A, TagSpecifications=[{"ResourceType": "vpc-endpoint", "Tags": [{"Key": "team", "Value": "payments"}]}])
    (conn,) = connections(world, vpc_endpoint_id=[vpce])
    # The connection's tags are the vpc-endpoint-connection's own, kept by the provider: the consumer's tags on
    # its endpoint stay the consumer's.
    assert conn["Tags"] == []
    assert consumer.describe_vpc_endpoints(VpcEndpointIds=[vpce])["VpcEndpoints"][0]["Tags"] == [{"Key": "team", "Value": "payments"}]
    world["ec2"].create_tags(Resources=[conn["VpcEndpointConnectionId"]], Tags=[{"Key": "customer", "Value": "acme"}])
    (conn,) = connections(world, vpc_endpoint_id=[vpce])
    assert conn["Tags"] == [{"Key": "customer", "Value": "acme"}]
    assert conn["IpAddressType"] == "ipv4"
    assert conn["VpcEndpointRegion"] == REGION
    assert [c["VpcEndpointId"] for c in connections(world, vpc_endpoint_id=[vpce], ip_address_type=["ipv4"])] == [vpce]
    assert connections(world, vpc_endpoint_id=[vpce], ip_address_type=["ipv6"]) == []


def test_cross_region_endpoint_shows_with_its_region(endpoint):
    w = make_service(endpoint, supported_regions=[OTHER_REGION])
    _, local = create_endpoint(w, CONSUMER_A)
    # Without ServiceRegion the name is looked up in the consumer's own Region, where the service is not.
    with pytest.raises(botocore.exceptions.ClientError):
        create_endpoint(w, CONSUMER_A, region=OTHER_REGION)
    # A Region the provider did not add to the service's supported Regions cannot reach it.
    with pytest.raises(botocore.exceptions.ClientError):
        create_endpoint(w, CONSUMER_A, region="eu-west-1", ServiceRegion=REGION)
    _, remote = create_endpoint(w, CONSUMER_A, region=OTHER_REGION, ServiceRegion=REGION)
    sid = w["svc"]["ServiceId"]
    (conn,) = connections(w, vpc_endpoint_id=[remote])
    assert conn["VpcEndpointRegion"] == OTHER_REGION and conn["VpcEndpointOwner"] == CONSUMER_A
    assert [c["VpcEndpointId"] for c in connections(w, service_id=[sid], vpc_endpoint_region=["cross-region"])] == [remote]
    assert [c["VpcEndpointId"] for c in connections(w, service_id=[sid], vpc_endpoint_region=[REGION])] == [local]
    assert [c["VpcEndpointId"] for c in connections(w, service_id=[sid], vpc_endpoint_region=[OTHER_REGION])] == [remote]


def test_connection_id_is_stable_per_connection(world):
    _, first = create_endpoint(world, CONSUMER_A)
    _, second = create_endpoint(world, CONSUMER_B)
    ids = {c["VpcEndpointId"]: c["VpcEndpointConnectionId"] for c in connections(world, vpc_endpoint_id=[first, second])}
    assert set(ids) == {first, second}
    assert all(re.fullmatch(r"vpce-con-[0-9a-f]{17}", i) for i in ids.values()), ids
    assert ids[first] != ids[second]
    world["ec2"].accept_vpc_endpoint_connections(ServiceId=world["svc"]["ServiceId"], VpcEndpointIds=[first])
    wait_state(world, first, "available")
    assert {c["VpcEndpointId"]: c["VpcEndpointConnectionId"] for c in connections(world, vpc_endpoint_id=[first, second])} == ids


def test_connection_tags_are_tagged_and_untagged_by_the_provider_only(world):
    consumer, vpce = create_endpoint(world, CONSUMER_B)
    (conn,) = connections(world, vpc_endpoint_id=[vpce])
    con_id, ec2 = conn["VpcEndpointConnectionId"], world["ec2"]
    ec2.create_tags(Resources=[con_id], Tags=[{"Key": "decision", "Value": "allowed"}, {"Key": "rule", "Value": "r1"}])
    (tag, _) = sorted(ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [con_id]}])["Tags"], key=lambda t: t["Key"])
    assert tag == {"Key": "decision", "ResourceId": con_id, "ResourceType": "vpc-endpoint-connection", "Value": "allowed"}
    typed = ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["vpc-endpoint-connection"]}, {"Name": "key", "Values": ["rule"]}])
    assert con_id in {t["ResourceId"] for t in typed["Tags"]}
    ec2.delete_tags(Resources=[con_id], Tags=[{"Key": "rule"}])
    (conn,) = connections(world, vpc_endpoint_id=[vpce])
    assert conn["Tags"] == [{"Key": "decision", "Value": "allowed"}]
    # The connection is the service owner's resource: the consumer's account has no such ID.
    with pytest.raises(botocore.exceptions.ClientError):
        consumer.create_tags(Resources=[con_id], Tags=[{"Key": "x", "Value": "y"}])
    assert connections(world, vpc_endpoint_id=[vpce])[0]["Tags"] == [{"Key": "decision", "Value": "allowed"}]


# ----------------------------------------------------------------------------- allowed principals


def test_a_new_service_admits_nobody_until_principals_are_allowed(endpoint):
    w = make_service(endpoint, principals=())
    ec2, svc = w["ec2"], w["svc"]["ServiceId"]
    assert ec2.describe_vpc_endpoint_service_permissions(ServiceId=svc)["AllowedPrincipals"] == []
    before = calls(endpoint).get("ec2:principal-not-allowed", 0)
    with pytest.raises(botocore.exceptions.ClientError):  # the code is not documented
        create_endpoint(w, CONSUMER_A)
    assert calls(endpoint)["ec2:principal-not-allowed"] == before + 1
    assert connections(w, service_id=[svc]) == [], "a refused endpoint makes no connection"

    out = ec2.modify_vpc_endpoint_service_permissions(ServiceId=svc, AddAllowedPrincipals=[f"arn:aws:iam::{CONSUMER_A}:root"])
    assert out["ReturnValue"] is True
    (added,) = out["AddedPrincipals"]
    assert added["Principal"] == f"arn:aws:iam::{CONSUMER_A}:root" and added["PrincipalType"] == "Account"
    assert added["ServiceId"] == svc and added["ServicePermissionId"].startswith("vpce-svc-perm-")
    assert added["PermissionType"] == "vpc-endpoint"  # the documented default
    (listed,) = ec2.describe_vpc_endpoint_service_permissions(ServiceId=svc)["AllowedPrincipals"]
    assert (listed["ServicePermissionId"], listed["PermissionType"]) == (added["ServicePermissionId"], "vpc-endpoint")
    _, vpce = create_endpoint(w, CONSUMER_A)  # the account's root admits every principal of the account
    with pytest.raises(botocore.exceptions.ClientError):
        create_endpoint(w, CONSUMER_B)

    # A role admits that role's sessions only.
    ec2.modify_vpc_endpoint_service_permissions(ServiceId=svc, AddAllowedPrincipals=[f"arn:aws:iam::{CONSUMER_B}:role/other"])
    with pytest.raises(botocore.exceptions.ClientError):
        create_endpoint(w, CONSUMER_B)  # its session is of role/test
    ec2.modify_vpc_endpoint_service_permissions(ServiceId=svc, AddAllowedPrincipals=[f"arn:aws:iam::{CONSUMER_B}:role/test"])
    create_endpoint(w, CONSUMER_B)

    listed = ec2.describe_vpc_endpoint_service_permissions(ServiceId=svc)["AllowedPrincipals"]
    assert {(p["Principal"], p["PrincipalType"]) for p in listed} == {
        (f"arn:aws:iam::{CONSUMER_A}:root", "Account"),
        (f"arn:aws:iam::{CONSUMER_B}:role/other", "Role"),
        (f"arn:aws:iam::{CONSUMER_B}:role/test", "Role"),
    }
    assert all(p["ServiceId"] == svc and p["ServicePermissionId"].startswith("vpce-svc-perm-") for p in listed)
    roles = ec2.describe_vpc_endpoint_service_permissions(ServiceId=svc, Filters=[{"Name": "principal-type", "Values": ["Role"]}])
    assert len(roles["AllowedPrincipals"]) == 2
    typed = ec2.describe_vpc_endpoint_service_permissions(ServiceId=svc, Filters=[{"Name": "permission-type", "Values": ["vpc-endpoint"]}])
    assert len(typed["AllowedPrincipals"]) == 3
    assert ec2.describe_vpc_endpoint_service_permissions(
        ServiceId=svc, Filters=[{"Name": "permission-type", "Values": ["transit-gateway-attachment"]}]
    )["AllowedPrincipals"] == []

    # Removing a principal refuses new endpoints and leaves existing connections alone.
    ec2.modify_vpc_endpoint_service_permissions(ServiceId=svc, RemoveAllowedPrincipals=[f"arn:aws:iam::{CONSUMER_A}:root"])
    with pytest.raises(botocore.exceptions.ClientError):
        create_endpoint(w, CONSUMER_A)
    assert state_of(w, vpce) == "pendingAcceptance"

    # `*` admits everyone.
    ec2.modify_vpc_endpoint_service_permissions(ServiceId=svc, AddAllowedPrincipals=["*"])
    create_endpoint(w, "444444444444")
    (star,) = ec2.describe_vpc_endpoint_service_permissions(ServiceId=svc, Filters=[{"Name": "principal", "Values": ["*"]}])["AllowedPrincipals"]
    assert star["PrincipalType"] == "All"


def test_removing_a_principal_that_is_not_allowed_changes_nothing(endpoint):
    # AWS documents nothing for it; the emulator answers ReturnValue true and leaves the others alone.
    w = make_service(endpoint, principals=(f"arn:aws:iam::{CONSUMER_A}:root",))
    ec2, svc = w["ec2"], w["svc"]["ServiceId"]
    before = ec2.describe_vpc_endpoint_service_permissions(ServiceId=svc)["AllowedPrincipals"]
    out = ec2.modify_vpc_endpoint_service_permissions(ServiceId=svc, RemoveAllowedPrincipals=[f"arn:aws:iam::{CONSUMER_B}:root"])
    assert out["ReturnValue"] is True and out.get("AddedPrincipals", []) == []
    assert ec2.describe_vpc_endpoint_service_permissions(ServiceId=svc)["AllowedPrincipals"] == before
    create_endpoint(w, CONSUMER_A)
    with pytest.raises(botocore.exceptions.ClientError):
        create_endpoint(w, CONSUMER_B)


def test_service_permission_tags_show_in_allowed_principals(endpoint):
    w = make_service(endpoint, principals=(f"arn:aws:iam::{CONSUMER_A}:root", f"arn:aws:iam::{CONSUMER_B}:root"))
    ec2, svc = w["ec2"], w["svc"]["ServiceId"]
    perms = {p["Principal"]: p for p in ec2.describe_vpc_endpoint_service_permissions(ServiceId=svc)["AllowedPrincipals"]}
    a = perms[f"arn:aws:iam::{CONSUMER_A}:root"]["ServicePermissionId"]
    ec2.create_tags(Resources=[a], Tags=[{"Key": "allowlist-rule", "Value": "vpce-svc/222222222222"}])
    perms = {p["Principal"]: p for p in ec2.describe_vpc_endpoint_service_permissions(ServiceId=svc)["AllowedPrincipals"]}
    assert perms[f"arn:aws:iam::{CONSUMER_A}:root"]["Tags"] == [{"Key": "allowlist-rule", "Value": "vpce-svc/222222222222"}]
    assert perms[f"arn:aws:iam::{CONSUMER_B}:root"]["Tags"] == []
    (tag,) = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [a]}])["Tags"]
    assert tag["ResourceType"] == "vpc-endpoint-service-permission"
    ec2.delete_tags(Resources=[a], Tags=[{"Key": "allowlist-rule"}])
    assert all(p["Tags"] == [] for p in ec2.describe_vpc_endpoint_service_permissions(ServiceId=svc)["AllowedPrincipals"])
    # Another account cannot tag the provider's permission.
    with pytest.raises(botocore.exceptions.ClientError):
        client(endpoint, CONSUMER_A, "ec2").create_tags(Resources=[a], Tags=[{"Key": "x", "Value": "y"}])


@pytest.mark.parametrize(
    "resource_id, documented",
    [
        ("vpce-0000000000000dead", "InvalidVpcEndpointId.NotFound"),
        ("vpce-svc-0000000000000dead", "InvalidVpcEndpointServiceId.NotFound"),
        ("vpce-con-0000000000000dead", None),  # AWS documents no code: the emulator answers InvalidID
        ("vpce-svc-perm-0000000000000dead", None),
    ],
)
def test_create_tags_on_an_id_that_does_not_exist_fails(world, resource_id, documented):
    ec2 = world["ec2"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_tags(Resources=[resource_id], Tags=[{"Key": "k", "Value": "v"}])
    code = e.value.response["Error"]["Code"]
    assert code == documented if documented else (code == "InvalidID" or code.endswith(".NotFound")), code
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [resource_id]}])["Tags"] == []


# ------------------------------------------------------------------------- service configurations


def service_configuration(w):
    (config,) = w["ec2"].describe_vpc_endpoint_service_configurations(ServiceIds=[w["svc"]["ServiceId"]])["ServiceConfigurations"]
    return config


def test_service_configuration_has_the_api_references_fields_and_wire_names(endpoint):
    w = make_service(endpoint, supported_regions=[OTHER_REGION], PrivateDnsName="api.example.com",
                     TagSpecifications=[{"ResourceType": "vpc-endpoint-service", "Tags": [{"Key": "product", "Value": "gk"}]}])
    raw = []
    w["ec2"].meta.events.register("after-call.ec2.DescribeVpcEndpointServiceConfigurations", lambda http_response, **_: raw.append(http_response.content.decode()))
    c = service_configuration(w)
    sid = w["svc"]["ServiceId"]
    assert c["ServiceId"] == sid and c["ServiceName"] == f"com.amazonaws.vpce.{REGION}.{sid}"
    assert c["ServiceState"] == "Available" and c["ServiceType"] == [{"ServiceType": "Interface"}]
    assert c["AcceptanceRequired"] is True and c["ManagesVpcEndpoints"] is False
    assert len(c["NetworkLoadBalancerArns"]) == 1 and c["NetworkLoadBalancerArns"][0].startswith("arn:aws:elasticloadbalancing:")
    assert c["PrivateDnsName"] == "api.example.com"
    dns = c["PrivateDnsNameConfiguration"]
    assert dns["State"] == "pendingVerification" and dns["Type"] == "TXT"  # a newly set name is not verified
    assert dns["Name"].startswith("_") and dns["Value"].startswith("vpce:")
    assert c["SupportedRegions"] == [{"Region": OTHER_REGION, "ServiceState": "Available"}]
    assert c["RemoteAccessEnabled"] is True  # consumers in another Region may connect
    assert c["SupportedIpAddressTypes"] == ["ipv4"]
    assert c["Tags"] == [{"Key": "product", "Value": "gk"}]
    # The EC2 query protocol's element names, as botocore's (and the Rust SDK's) model reads them.
    for element in ("<serviceConfigurationSet><item>", "<privateDnsNameConfiguration><state>pendingVerification</state><type>TXT</type>",
                    f"<supportedRegionSet><item><region>{OTHER_REGION}</region><serviceState>Available</serviceState></item></supportedRegionSet>",
                    "<supportedIpAddressTypeSet><item>ipv4</item></supportedIpAddressTypeSet>", "<acceptanceRequired>true</acceptanceRequired>",
                    "<tagSet><item><key>product</key><value>gk</value></item></tagSet>"):
        assert element in raw[-1], element
    with pytest.raises(botocore.exceptions.ClientError) as e:
        w["ec2"].describe_vpc_endpoint_service_configurations(ServiceIds=["vpce-svc-0000000000000dead"])
    assert e.value.response["Error"]["Code"] == "InvalidVpcEndpointServiceId.NotFound"
    g = make_service(endpoint, gateway=True)
    gateway = service_configuration(g)
    assert gateway["ServiceType"] == [{"ServiceType": "GatewayLoadBalancer"}] and gateway["GatewayLoadBalancerArns"]
    assert "NetworkLoadBalancerArns" not in gateway and gateway["RemoteAccessEnabled"] is False
    with pytest.raises(botocore.exceptions.ClientError):  # no private DNS names for Gateway Load Balancer services
        g["ec2"].modify_vpc_endpoint_service_configuration(ServiceId=g["svc"]["ServiceId"], PrivateDnsName="gw.example.com")
    assert "PrivateDnsName" not in service_configuration(g)


def test_service_configurations_filters_and_pages(endpoint):
    made = [make_service(endpoint, TagSpecifications=[{"ResourceType": "vpc-endpoint-service", "Tags": [{"Key": "batch", "Value": "filters"}]}])
            for _ in range(6)]
    ec2, ids = made[0]["ec2"], [m["svc"]["ServiceId"] for m in made]
    by_tag = ec2.describe_vpc_endpoint_service_configurations(Filters=[{"Name": "tag:batch", "Values": ["filters"]}])["ServiceConfigurations"]
    assert sorted(c["ServiceId"] for c in by_tag) == sorted(ids)
    one = ec2.describe_vpc_endpoint_service_configurations(Filters=[{"Name": "service-id", "Values": [ids[2]]}])["ServiceConfigurations"]
    assert [c["ServiceId"] for c in one] == [ids[2]]
    seen, token = [], None
    while True:
        page = ec2.describe_vpc_endpoint_service_configurations(MaxResults=5, Filters=[{"Name": "tag-key", "Values": ["batch"]}], **({"NextToken": token} if token else {}))
        seen += [c["ServiceId"] for c in page["ServiceConfigurations"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(seen) == sorted(ids)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_vpc_endpoint_service_configurations(Filters=[{"Name": "bogus", "Values": ["x"]}])
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_modified_configuration_shows_in_describe_and_takes_effect(endpoint):
    w = make_service(endpoint)
    ec2, sid = w["ec2"], w["svc"]["ServiceId"]
    assert ec2.modify_vpc_endpoint_service_configuration(ServiceId=sid, AcceptanceRequired=False)["Return"] is True
    assert service_configuration(w)["AcceptanceRequired"] is False
    _, auto = create_endpoint(w, CONSUMER_A)
    assert state_of(w, auto) == "pending"  # no acceptance needed any more: pending, then available
    wait_state(w, auto, "available")
    ec2.modify_vpc_endpoint_service_configuration(ServiceId=sid, AcceptanceRequired=True)
    assert service_configuration(w)["AcceptanceRequired"] is True
    _, held = create_endpoint(w, CONSUMER_A)
    assert state_of(w, held) == "pendingAcceptance"

    ec2.modify_vpc_endpoint_service_configuration(ServiceId=sid, AddSupportedRegions=[OTHER_REGION, "eu-west-1"])
    c = service_configuration(w)
    assert c["SupportedRegions"] == [{"Region": OTHER_REGION, "ServiceState": "Available"}, {"Region": "eu-west-1", "ServiceState": "Available"}]
    create_endpoint(w, CONSUMER_A, region="eu-west-1", ServiceRegion=REGION)
    ec2.modify_vpc_endpoint_service_configuration(ServiceId=sid, RemoveSupportedRegions=["eu-west-1"])
    assert service_configuration(w)["SupportedRegions"] == [{"Region": OTHER_REGION, "ServiceState": "Available"}]
    with pytest.raises(botocore.exceptions.ClientError):  # that Region can no longer reach the service
        create_endpoint(w, CONSUMER_A, region="eu-west-1", ServiceRegion=REGION)
    ec2.modify_vpc_endpoint_service_configuration(ServiceId=sid, RemoveSupportedRegions=[OTHER_REGION])
    c = service_configuration(w)
    assert c.get("SupportedRegions", []) == [] and c["RemoteAccessEnabled"] is False

    ec2.modify_vpc_endpoint_service_configuration(ServiceId=sid, AddSupportedIpAddressTypes=["ipv6"])
    assert service_configuration(w)["SupportedIpAddressTypes"] == ["ipv4", "ipv6"]
    ec2.modify_vpc_endpoint_service_configuration(ServiceId=sid, RemoveSupportedIpAddressTypes=["ipv4"])
    assert service_configuration(w)["SupportedIpAddressTypes"] == ["ipv6"]
    six = ec2.describe_vpc_endpoint_service_configurations(Filters=[{"Name": "supported-ip-address-types", "Values": ["ipv6"]}])
    assert sid in {c["ServiceId"] for c in six["ServiceConfigurations"]}


def test_private_dns_name_verification(endpoint):
    w = make_service(endpoint)
    ec2, sid, url = w["ec2"], w["svc"]["ServiceId"], w["url"]
    c = service_configuration(w)
    assert "PrivateDnsName" not in c and "PrivateDnsNameConfiguration" not in c
    with pytest.raises(botocore.exceptions.ClientError):  # nothing to verify (the code is not documented)
        ec2.start_vpc_endpoint_service_private_dns_verification(ServiceId=sid)
    assert control_status(url, "/_gatekeeper/private-dns-verification", {"service_id": sid, "state": "verified"})[0] == 409

    ec2.modify_vpc_endpoint_service_configuration(ServiceId=sid, PrivateDnsName="api.example.com")
    first = service_configuration(w)["PrivateDnsNameConfiguration"]
    assert first["State"] == "pendingVerification"
    assert ec2.start_vpc_endpoint_service_private_dns_verification(ServiceId=sid)["ReturnValue"] is True
    # The emulator has no DNS: the check finds nothing until a test says what it found.
    assert service_configuration(w)["PrivateDnsNameConfiguration"] == first
    said = control(url, "/_gatekeeper/private-dns-verification", {"service_id": sid, "state": "verified"})
    assert said == {"service_id": sid, "private_dns_name": "api.example.com", "state": "verified", "type": "TXT",
                    "name": first["Name"], "value": first["Value"]}
    assert service_configuration(w)["PrivateDnsNameConfiguration"]["State"] == "verified"

    # A new name must be proven again, with a new record.
    ec2.modify_vpc_endpoint_service_configuration(ServiceId=sid, PrivateDnsName="api2.example.com")
    second = service_configuration(w)
    assert second["PrivateDnsName"] == "api2.example.com"
    assert second["PrivateDnsNameConfiguration"]["State"] == "pendingVerification"
    assert second["PrivateDnsNameConfiguration"]["Value"] != first["Value"]
    control(url, "/_gatekeeper/private-dns-verification", {"service_id": sid, "state": "failed"})
    assert service_configuration(w)["PrivateDnsNameConfiguration"]["State"] == "failed"
    ec2.start_vpc_endpoint_service_private_dns_verification(ServiceId=sid)  # a retry after a failure
    assert service_configuration(w)["PrivateDnsNameConfiguration"]["State"] == "pendingVerification"

    ec2.modify_vpc_endpoint_service_configuration(ServiceId=sid, RemovePrivateDnsName=True)
    c = service_configuration(w)
    assert "PrivateDnsName" not in c and "PrivateDnsNameConfiguration" not in c

    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.start_vpc_endpoint_service_private_dns_verification(ServiceId="vpce-svc-0000000000000dead")
    assert e.value.response["Error"]["Code"] == "InvalidVpcEndpointServiceId.NotFound"
    assert control_status(url, "/_gatekeeper/private-dns-verification", {"service_id": "vpce-svc-0000000000000dead", "state": "verified"})[0] == 404
    ec2.modify_vpc_endpoint_service_configuration(ServiceId=sid, PrivateDnsName="api.example.com")
    assert control_status(url, "/_gatekeeper/private-dns-verification", {"service_id": sid, "state": "done"})[0] == 400
    assert control(url, "/_gatekeeper/private-dns-verification", {"service_id": sid})["state"] == "pendingVerification"


# ---------------------------------------------------------------------------- notifications


def suppressed(url, reason):
    return calls(url).get(f"notification:suppressed:{reason}", 0)


def assert_no_notification(w, reason, action):
    before = suppressed(w["url"], reason)
    action()
    assert suppressed(w["url"], reason) == before + 1, f"suppressed for {reason}"
    assert drain(w) == []


def test_no_notification_without_a_topic_policy_for_vpce(endpoint):
    w = make_service(endpoint, policy=None)  # the topic's default policy: nothing for vpce.amazonaws.com
    assert_no_notification(w, "topic-policy", lambda: create_endpoint(w, CONSUMER_A))


@pytest.mark.parametrize(
    "case",
    ["other service", "other account", "unsupported condition key", "deny", "wrong action"],
)
def test_topic_policy_conditions_are_honoured(endpoint, case):
    w = make_service(endpoint, policy=None)
    topic, svc = w["topic"], w["svc"]["ServiceId"]
    if case == "other service":
        doc = topic_policy(topic, source_arn=f"arn:aws:ec2:{REGION}:{PROVIDER}:vpc-endpoint-service/vpce-svc-0000000000000000")
    elif case == "other account":
        doc = topic_policy(topic, provider="999999999999")
    elif case == "unsupported condition key":
        doc = topic_policy(topic, extra_condition={"StringEquals": {"aws:SourceAccount": PROVIDER, "aws:SourceVpc": "vpc-1"}})
    elif case == "deny":
        doc = json.dumps({"Statement": [vpce_statement(topic, "SNS:Publish"), {"Effect": "Deny", "Principal": "*", "Action": "sns:*", "Resource": topic}]})
    else:
        doc = json.dumps({"Statement": [vpce_statement(topic, "SNS:Subscribe")]})
    w["sns"].set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=doc)
    assert_no_notification(w, "topic-policy", lambda: create_endpoint(w, CONSUMER_A))
    # The documented statement, naming this service exactly, lets it through.
    exact = topic_policy(topic, source_arn=f"arn:aws:ec2:{REGION}:{PROVIDER}:vpc-endpoint-service/{svc}")
    w["sns"].set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=exact)
    create_endpoint(w, CONSUMER_A)
    assert events(w, 1) == ["Connect"]


def test_an_encrypted_topic_needs_the_key_policy_for_vpce(endpoint):
    kms = client(endpoint, PROVIDER, "kms")
    key = kms.create_key()["KeyMetadata"]  # the default key policy: the account's root only
    w = make_service(endpoint, kms_key=key["Arn"])
    assert_no_notification(w, "kms-key-policy", lambda: create_endpoint(w, CONSUMER_A))
    root = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PROVIDER}:root"}, "Action": "kms:*", "Resource": "*"}
    half = {"Statement": [root, vpce_statement("*", ["kms:Decrypt"])]}
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(half))
    assert_no_notification(w, "kms-key-policy", lambda: create_endpoint(w, CONSUMER_A))
    full = {"Statement": [root, vpce_statement("*", ["kms:GenerateDataKey*", "kms:Decrypt"])]}
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(full))
    create_endpoint(w, CONSUMER_A)
    assert events(w, 1) == ["Connect"]


def test_no_notification_for_gateway_load_balancer_endpoints(endpoint):
    w = make_service(endpoint, gateway=True)
    before = suppressed(endpoint, "gateway-load-balancer-endpoint")
    _, vpce = create_endpoint(w, CONSUMER_A, kind="GatewayLoadBalancer")
    assert state_of(w, vpce) == "pendingAcceptance"
    w["ec2"].reject_vpc_endpoint_connections(ServiceId=w["svc"]["ServiceId"], VpcEndpointIds=[vpce])
    assert suppressed(endpoint, "gateway-load-balancer-endpoint") == before + 2
    assert drain(w) == []


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


# ----------------------------------------------------------------------------- eventual consistency


def test_changes_show_in_describe_only_after_the_lag(endpoint):
    w = make_service(endpoint)
    svc = w["svc"]["ServiceId"]
    lag = 1.0
    assert control(endpoint, "/_gatekeeper/consistency", {"lag_ms": lag * 1000}) == {"lag_ms": lag * 1000}
    try:
        t0 = time.monotonic()
        _, vpce = create_endpoint(w, CONSUMER_A)
        assert connections(w, vpc_endpoint_id=[vpce]) == [], "a new connection is not visible at once"
        # Accept acts on the true state, whatever Describe shows.
        assert w["ec2"].accept_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=[vpce])["Unsuccessful"] == []
        assert time.monotonic() - t0 < lag, "the machine was too slow to observe the lag"
        eventually(lambda: state_of(w, vpce) is not None, "the connection shows")
        assert time.monotonic() - t0 >= lag
        wait_state(w, vpce, "available")
        t1 = time.monotonic()
        w["ec2"].reject_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=[vpce])
        assert state_of(w, vpce) == "available", "the change is not visible at once"
        assert time.monotonic() - t1 < lag, "the machine was too slow to observe the lag"
        wait_state(w, vpce, "rejected")
        assert time.monotonic() - t1 >= lag

        t2 = time.monotonic()
        w["ec2"].modify_vpc_endpoint_service_permissions(ServiceId=svc, AddAllowedPrincipals=[f"arn:aws:iam::{CONSUMER_B}:root"])
        shown = lambda: {p["Principal"] for p in w["ec2"].describe_vpc_endpoint_service_permissions(ServiceId=svc)["AllowedPrincipals"]}  # noqa: E731
        assert shown() == {"*"}
        assert time.monotonic() - t2 < lag, "the machine was too slow to observe the lag"
        eventually(lambda: shown() == {"*", f"arn:aws:iam::{CONSUMER_B}:root"}, "the new principal shows")
        assert time.monotonic() - t2 >= lag
    finally:
        control(endpoint, "/_gatekeeper/consistency", {"lag_ms": 0})
    assert control(endpoint, "/_gatekeeper/consistency") == {"lag_ms": 0}


# ------------------------------------------------------------------------------ calls, throttling, faults


def test_calls_are_counted_by_service_and_action(world):
    control(world["url"], "/_gatekeeper/reset")
    connections(world)
    world["ec2"].describe_vpc_endpoint_connections()
    assert calls(world["url"])["ec2:DescribeVpcEndpointConnections"] == 2


def rejects(ec2, svc, n):
    codes = []
    for _ in range(n):
        try:
            ec2.reject_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=["vpce-0000000000000beef"])
            codes.append("ok")
        except botocore.exceptions.ClientError as e:
            codes.append(e.response["Error"]["Code"])
    return codes


def test_mutating_privatelink_calls_are_throttled_per_api_account_and_region(world):
    url, svc = world["url"], world["svc"]["ServiceId"]
    ec2 = session(url, PROVIDER).client("ec2", endpoint_url=url, config=NO_RETRY)
    control(url, "/_gatekeeper/reset")  # full buckets
    codes = rejects(ec2, svc, 25)
    assert codes[:10] == ["ok"] * 10 and codes.count("RequestLimitExceeded") >= 10, codes
    counted = calls(url)
    assert counted["ec2:throttled"] >= 10 and counted["ec2:throttled:RejectVpcEndpointConnections"] >= 10
    # Accept has a bucket of its own; so does another account, and the same account in another Region.
    assert ec2.accept_vpc_endpoint_connections(ServiceId=svc, VpcEndpointIds=["vpce-0000000000000beef"])["Unsuccessful"]
    assert rejects(session(url, CONSUMER_A).client("ec2", endpoint_url=url, config=NO_RETRY), svc, 1) == ["InvalidVpcEndpointServiceId.NotFound"]
    west = session(url, PROVIDER, OTHER_REGION).client("ec2", endpoint_url=url, config=NO_RETRY)
    assert rejects(west, svc, 1) == ["InvalidVpcEndpointServiceId.NotFound"]
    # The bucket refills at 1 token a second.
    eventually(lambda: rejects(ec2, svc, 1) == ["ok"], "a token refilled", timeout=3, interval=0.25)


def test_other_actions_have_the_throttling_pages_buckets_tags_their_own_and_the_rest_their_category(world):
    # "Request throttling for the Amazon EC2 API": CreateTags is an uncategorized action of its own (100, 10
    # per s); CreateVpc, like any mutating action the page does not name, is a "Mutating action" (50, 5 per
    # s); DescribeVpcs a "Non-mutating action" (100, 20 per s). A fresh account, so its buckets are full.
    url = world["url"]
    ec2 = session(url, "444455556666").client("ec2", endpoint_url=url, config=NO_RETRY)

    def bucket(call, n, size, refill):
        """Calls `call` n times at once: the first `size` pass, then no more than the refill brings."""
        codes, start = [], time.monotonic()
        for _ in range(n):
            try:
                call()
                codes.append("ok")
            except botocore.exceptions.ClientError as e:
                codes.append(e.response["Error"]["Code"])
        elapsed = time.monotonic() - start
        ok = codes.count("ok")
        assert codes[:size] == ["ok"] * size and codes.count("RequestLimitExceeded") == n - ok, codes
        assert ok < n and ok <= size + refill * elapsed + 1, (ok, n, elapsed)

    made = []
    bucket(lambda: made.append(ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]), 70, 50, 5)
    bucket(lambda: ec2.create_tags(Resources=[made[0]], Tags=[{"Key": "k", "Value": "v"}]), 140, 100, 10)
    for _ in range(100):
        ec2.describe_vpcs(VpcIds=[made[0]])
    assert calls(url)["ec2:throttled:CreateVpc"] >= 1 and calls(url)["ec2:throttled:CreateTags"] >= 1


def test_describe_connections_has_a_bucket_of_100_refilling_20_per_second(endpoint):
    ec2 = session(endpoint, "555555555555").client("ec2", endpoint_url=endpoint, config=NO_RETRY)
    ok = throttled = 0
    t0 = time.monotonic()
    for _ in range(300):
        try:
            ec2.describe_vpc_endpoint_connections()
            ok += 1
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "RequestLimitExceeded"
            throttled += 1
    elapsed = time.monotonic() - t0
    assert throttled > 0 and ok <= 100 + 20 * elapsed + 1, (ok, throttled, elapsed)
    assert ok >= 100


def test_throttling_can_be_turned_off_and_tuned(world):
    url, svc = world["url"], world["svc"]["ServiceId"]
    ec2 = session(url, PROVIDER).client("ec2", endpoint_url=url, config=NO_RETRY)
    try:
        assert control(url, "/_gatekeeper/ec2-throttle", {"enabled": False})["enabled"] is False
        assert rejects(ec2, svc, 15) == ["ok"] * 15
        out = control(url, "/_gatekeeper/ec2-throttle", {"enabled": True, "limits": {"RejectVpcEndpointConnections": [2, 0.001]}})
        assert out["limits"]["RejectVpcEndpointConnections"] == [2, 0.001]
        assert rejects(ec2, svc, 3) == ["ok", "ok", "RequestLimitExceeded"]
    finally:
        control(url, "/_gatekeeper/ec2-throttle", {"enabled": True, "limits": {"RejectVpcEndpointConnections": [10, 1]}})


def test_injected_faults_answer_in_the_service_protocol(world):
    control(world["url"], "/_gatekeeper/faults", {"rules": [{"match": "dynamodb:*", "rate": 1.0, "kind": "throttle"}, {"match": "sns:Publish", "rate": 1.0, "kind": "error500"}]})
    try:
        ddb = session(world["url"], PROVIDER).client("dynamodb", endpoint_url=world["url"], config=NO_RETRY)
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ddb.list_tables()
        assert e.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
        sns = session(world["url"], PROVIDER).client("sns", endpoint_url=world["url"], config=NO_RETRY)
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sns.publish(TopicArn=world["topic"], Message="x")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert e.value.response["Error"]["Code"] == "InternalError"  # the SNS model's InternalErrorException
        assert calls(world["url"])["fault:throttle"] >= 1
    finally:
        control(world["url"], "/_gatekeeper/faults", {"rules": []})
    assert "TableNames" in ddb.list_tables()


def test_injected_sns_throttles_take_both_documented_faces_and_500s_each_services_code(world):
    # SNS: the API model's Throttled (429) and the Knowledge Center's ThrottlingException (400), in turn.
    control(world["url"], "/_gatekeeper/faults", {"rules": [{"match": "sns:Publish", "rate": 1.0, "kind": "throttle"},
                                                             {"match": "dynamodb:*", "rate": 1.0, "kind": "error500"}]})
    try:
        sns = session(world["url"], PROVIDER).client("sns", endpoint_url=world["url"], config=NO_RETRY)
        seen = set()
        for _ in range(2):
            with pytest.raises(botocore.exceptions.ClientError) as e:
                sns.publish(TopicArn=world["topic"], Message="x")
            seen.add((e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]))
        assert seen == {("Throttled", 429), ("ThrottlingException", 400)}
        ddb = session(world["url"], PROVIDER).client("dynamodb", endpoint_url=world["url"], config=NO_RETRY)
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ddb.list_tables()
        assert (e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("InternalServerError", 500)
    finally:
        control(world["url"], "/_gatekeeper/faults", {"rules": []})


def test_a_latency_floor_answers_its_ms_after_arrival_with_the_processing_inside_it(world):
    """The bench's AWS-like latency: a call is answered no sooner than `ms` after it arrived; what the
    emulator spends on it (here a 200 ms `slow`) counts toward the floor instead of adding to it, and calls
    in flight together wait out their floors side by side."""
    import concurrent.futures

    ddb = session(world["url"], PROVIDER).client("dynamodb", endpoint_url=world["url"], config=NO_RETRY)

    def timed(n=1):
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda _: ddb.list_tables(), range(n)))
        return time.monotonic() - t0

    floor = {"match": "dynamodb:ListTables", "rate": 1.0, "kind": "floor", "ms": 300}
    try:
        control(world["url"], "/_gatekeeper/faults", {"rules": [floor]})
        assert timed() >= 0.3
        assert timed(5) < 1.0, "five calls at once wait out their floors together, not one after another"
        slow = {"match": "dynamodb:ListTables", "rate": 1.0, "kind": "slow", "ms": 200}
        control(world["url"], "/_gatekeeper/faults", {"rules": [slow, floor]})
        assert 0.3 <= timed() < 0.5, "the 200 ms spent inside the call count toward its 300 ms floor"
    finally:
        control(world["url"], "/_gatekeeper/faults", {"rules": []})
    assert calls(world["url"])["fault:floor"] >= 1


def test_dropped_connections_before_and_after_the_service_handles_the_call(world):
    sqs = session(world["url"], PROVIDER).client("sqs", endpoint_url=world["url"], config=NO_RETRY)
    url = sqs.create_queue(QueueName="drops")["QueueUrl"]
    control(world["url"], "/_gatekeeper/reset")
    try:
        control(world["url"], "/_gatekeeper/faults", {"rules": [{"match": "sqs:SendMessage", "rate": 1.0, "kind": "drop"}]})
        with pytest.raises(botocore.exceptions.HTTPClientError):  # closed with no answer
            sqs.send_message(QueueUrl=url, MessageBody="never arrives")
        control(world["url"], "/_gatekeeper/faults", {"rules": [{"match": "sqs:SendMessage", "rate": 1.0, "kind": "drop_after"}]})
        with pytest.raises(botocore.exceptions.HTTPClientError):  # closed with no answer
            sqs.send_message(QueueUrl=url, MessageBody="arrives unacknowledged")
    finally:
        control(world["url"], "/_gatekeeper/faults", {"rules": []})
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])]
    assert bodies == ["arrives unacknowledged"], "drop loses the call, drop_after only its answer"
    counted = calls(world["url"])
    assert counted["fault:drop"] == 1 and counted["fault:drop_after"] == 1


def test_a_partial_fault_fails_some_putevents_entries_and_puts_the_rest(world):
    """EventBridge PutEvents: "if an individual entry within a request fails, EventBridge continues processing
    the rest"; the answer lists every entry in order, a failed one with ErrorCode, and FailedEntryCount."""
    events = session(world["url"], PROVIDER).client("events", endpoint_url=world["url"], config=NO_RETRY)
    entries = [{"Source": "s", "DetailType": "d", "Detail": json.dumps({"n": i})} for i in range(10)]
    try:
        control(world["url"], "/_gatekeeper/faults", {"rules": [{"match": "events:PutEvents", "rate": 1.0, "kind": "partial", "entries": 0.5}]})
        out = events.put_events(Entries=entries)
    finally:
        control(world["url"], "/_gatekeeper/faults", {"rules": []})
    failed = [e for e in out["Entries"] if "ErrorCode" in e]
    assert len(out["Entries"]) == 10 and out["FailedEntryCount"] == len(failed) and 0 < len(failed) < 10, out
    assert {e["ErrorCode"] for e in failed} <= {"InternalFailure", "ThrottlingException"}
    assert all("EventId" in e for e in out["Entries"] if "ErrorCode" not in e)
    assert events.put_events(Entries=entries)["FailedEntryCount"] == 0, "the rule lifted"


def test_a_fault_rule_with_times_applies_to_that_many_calls(world):
    sqs = session(world["url"], PROVIDER).client("sqs", endpoint_url=world["url"], config=NO_RETRY)
    url = sqs.create_queue(QueueName="times")["QueueUrl"]
    try:
        control(world["url"], "/_gatekeeper/faults", {"rules": [{"match": "sqs:SendMessage", "rate": 1.0, "kind": "throttle", "times": 2}]})
        for _ in range(2):
            with pytest.raises(botocore.exceptions.ClientError):
                sqs.send_message(QueueUrl=url, MessageBody="refused")
        sqs.send_message(QueueUrl=url, MessageBody="taken")  # the rule is spent
        assert control(world["url"], "/_gatekeeper/faults", {"rules": [{"match": "x", "times": 0}]})["rules"][0]["times"] == 0
    finally:
        control(world["url"], "/_gatekeeper/faults", {"rules": []})


def test_sns_delivers_to_a_queue_only_as_its_policy_allows_raw_with_its_attributes(endpoint):
    """SNS developer guide: "Subscribing an Amazon SQS queue to an Amazon SNS topic" (the queue's policy must
    let the topic sqs:SendMessage), "Amazon SNS raw message delivery" (the message as published, no SNS
    metadata) and "Amazon SNS message attributes" (at most 10 for a raw delivery to SQS; more are discarded)."""
    sns, sqs = client(endpoint, PROVIDER, "sns"), client(endpoint, PROVIDER, "sqs")
    topic = sns.create_topic(Name="deliveries-test")["TopicArn"]

    def subscribed(name, source):
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        if source:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(sns_may_send(arn, source))})
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
        return url, arn

    allowed, _ = subscribed("deliveries-allowed", topic)
    _, no_policy = subscribed("deliveries-no-policy", None)
    _, other_topic = subscribed("deliveries-other-topic", topic + "-other")

    def undelivered_to(arn):
        return [u for u in control(endpoint, "/_gatekeeper/lambda/undelivered")["undelivered"] if u["target"] == arn]

    sns.publish(TopicArn=topic, Message='{"decision": "accepted"}',
                MessageAttributes={"record": {"DataType": "String", "StringValue": "r1"}})
    got = eventually(lambda: sqs.receive_message(QueueUrl=allowed, MessageAttributeNames=["All"]).get("Messages"),
                     "the delivery to the queue whose policy allows the topic")
    assert got[0]["Body"] == '{"decision": "accepted"}', "raw: the message as published"
    assert got[0]["MessageAttributes"]["record"] == {"StringValue": "r1", "DataType": "String"}
    sqs.delete_message(QueueUrl=allowed, ReceiptHandle=got[0]["ReceiptHandle"])
    for arn in (no_policy, other_topic):
        assert "policy" in eventually(lambda arn=arn: undelivered_to(arn), f"no delivery to {arn}")[0]["error"]

    # Not raw ("false"): the JSON envelope, the message and its attributes inside it.
    url = sqs.create_queue(QueueName="deliveries-envelope")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(sns_may_send(arn, topic))})
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "false"},
                        ReturnSubscriptionArn=True)["SubscriptionArn"]
    sns.publish(TopicArn=topic, Message="enveloped", MessageAttributes={"record": {"DataType": "String", "StringValue": "r2"}})
    got = eventually(lambda: sqs.receive_message(QueueUrl=url).get("Messages"), "the envelope delivery")
    envelope = json.loads(got[0]["Body"])
    assert (envelope["Type"], envelope["Message"], envelope["MessageAttributes"]["record"]["Value"]) == ("Notification", "enveloped", "r2")
    sns.unsubscribe(SubscriptionArn=sub)
    drained = eventually(lambda: sqs.receive_message(QueueUrl=allowed).get("Messages"), "the raw copy of it")
    sqs.delete_message(QueueUrl=allowed, ReceiptHandle=drained[0]["ReceiptHandle"])

    too_many = {f"a{i}": {"DataType": "String", "StringValue": "x"} for i in range(11)}
    sns.publish(TopicArn=topic, Message="eleven", MessageAttributes=too_many)
    allowed_arn = sqs.get_queue_attributes(QueueUrl=allowed, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert "10 message attributes" in eventually(lambda: undelivered_to(allowed_arn), "eleven attributes discarded")[0]["error"]
    assert not sqs.receive_message(QueueUrl=allowed).get("Messages")


def test_eventbridge_delivers_to_a_queue_only_as_its_policy_allows_else_to_the_targets_dlq(endpoint):
    """EventBridge user guide: "For Lambda, Amazon SNS, Amazon SQS, and Amazon CloudWatch Logs resources,
    EventBridge uses resource-based policies"; "for errors that result from missing permissions to a target
    ... EventBridge sends these events directly to the target DLQ, if you have specified one", with the
    attributes RULE_ARN, TARGET_ARN, ERROR_CODE and ERROR_MESSAGE. Delivery is apart from PutEvents."""
    events, sqs = client(endpoint, PROVIDER, "events"), client(endpoint, PROVIDER, "sqs")
    bus = events.create_event_bus(Name="delivery-test")["EventBusArn"]

    def queue(name):
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def allow(url, arn, rule_arn):
        policy = service_may_send("events.amazonaws.com", arn, rule_arn)
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})

    def rule(name, kind, target_arn, dlq_arn=None):
        arn = events.put_rule(Name=name, EventBusName="delivery-test", EventPattern=json.dumps({"detail-type": [kind]}))["RuleArn"]
        target = {"Id": "q", "Arn": target_arn, **({"DeadLetterConfig": {"Arn": dlq_arn}} if dlq_arn else {})}
        events.put_targets(Rule=name, EventBusName="delivery-test", Targets=[target])
        return arn

    def put(kind):
        out = events.put_events(Entries=[{"EventBusName": bus, "Source": "gatekeeper", "DetailType": kind, "Detail": '{"n": 1}'}])
        assert out["FailedEntryCount"] == 0

    ok_url, ok_arn = queue("eb-allowed")
    allow(ok_url, ok_arn, rule("eb-allowed", "allowed", ok_arn))
    bad_url, bad_arn = queue("eb-other-rule")
    dlq_url, dlq_arn = queue("eb-dlq")
    refused_rule = rule("eb-refused", "refused", bad_arn, dlq_arn)
    allow(bad_url, bad_arn, refused_rule + "-another")  # names another rule: EventBridge may not send
    allow(dlq_url, dlq_arn, refused_rule)
    lost_url, lost_arn = queue("eb-no-dlq")
    rule("eb-lost", "lost", lost_arn)  # no policy at all, no DLQ

    try:
        control(endpoint, "/_gatekeeper/deliveries", {"delay_ms": 2000})
        put("allowed")
        assert not sqs.receive_message(QueueUrl=ok_url).get("Messages"), "delivered apart from PutEvents"
        got = eventually(lambda: sqs.receive_message(QueueUrl=ok_url).get("Messages"), "the event in the allowed queue")
        assert json.loads(got[0]["Body"])["detail"] == {"n": 1}
    finally:
        control(endpoint, "/_gatekeeper/deliveries", {"delay_ms": 0})

    put("refused")
    got = eventually(lambda: sqs.receive_message(QueueUrl=dlq_url, MessageAttributeNames=["All"]).get("Messages"), "the event in the DLQ")
    attrs = {k: v["StringValue"] for k, v in got[0]["MessageAttributes"].items()}
    assert (attrs["ERROR_CODE"], attrs["RULE_ARN"], attrs["TARGET_ARN"]) == ("NO_PERMISSIONS", refused_rule, bad_arn)
    assert json.loads(got[0]["Body"])["detail-type"] == "refused"
    assert not sqs.receive_message(QueueUrl=bad_url).get("Messages")

    put("lost")
    eventually(lambda: [u for u in control(endpoint, "/_gatekeeper/lambda/undelivered")["undelivered"] if u["target"] == lost_arn],
               "the dropped event recorded")
    assert not sqs.receive_message(QueueUrl=lost_url).get("Messages")


def test_deliveries_may_be_made_twice_as_at_least_once_delivery_allows(endpoint):
    """SNS developer guide (standard topics): "A message is delivered at least once, but occasionally more than
    one copy of a message is delivered." With duplicate_rate 1, every delivery to a queue is made twice, each
    copy the same message; by default each is made once."""
    sns, sqs = client(endpoint, PROVIDER, "sns"), client(endpoint, PROVIDER, "sqs")
    topic = sns.create_topic(Name="twice-test")["TopicArn"]
    url = sqs.create_queue(QueueName="twice")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(sns_may_send(arn, topic))})
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def received(n):
        got = []
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            got += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return [json.loads(m["Body"])["MessageId"] for m in got]

    try:
        assert control(endpoint, "/_gatekeeper/deliveries", {"duplicate_rate": 1.0})["duplicate_rate"] == 1.0
        published = sns.publish(TopicArn=topic, Message="twice")["MessageId"]
        eventually(lambda: control(endpoint, "/_gatekeeper/deliveries")["pending"] == 0, "both copies made")
        assert received(2) == [published, published], "two copies of the one message"
    finally:
        control(endpoint, "/_gatekeeper/deliveries", {"duplicate_rate": 0})
    published = sns.publish(TopicArn=topic, Message="once")["MessageId"]
    eventually(lambda: control(endpoint, "/_gatekeeper/deliveries")["pending"] == 0, "the copy made")
    assert received(1) == [published] and not sqs.receive_message(QueueUrl=url).get("Messages")

    # EventBridge's delivery to a queue alike: two copies of the one event (each its own, whole).
    events = client(endpoint, PROVIDER, "events")
    events.create_event_bus(Name="twice-bus")
    rule_arn = events.put_rule(Name="twice", EventBusName="twice-bus", EventPattern=json.dumps({"source": ["twice"]}))["RuleArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(service_may_send("events.amazonaws.com", arn, rule_arn))})
    events.put_targets(Rule="twice", EventBusName="twice-bus", Targets=[{"Id": "q", "Arn": arn}])
    try:
        control(endpoint, "/_gatekeeper/deliveries", {"duplicate_rate": 1.0})
        events.put_events(Entries=[{"EventBusName": "twice-bus", "Source": "twice", "DetailType": "d", "Detail": "{}"}])
        eventually(lambda: control(endpoint, "/_gatekeeper/deliveries")["pending"] == 0, "both copies made")
    finally:
        control(endpoint, "/_gatekeeper/deliveries", {"duplicate_rate": 0})
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        got += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    ids = [json.loads(m["Body"])["id"] for m in got]
    assert len(ids) == 2 and ids[0] == ids[1], got


def test_sns_delivers_to_a_queue_apart_from_the_publish_and_after_a_lost_answer(endpoint):
    """SNS API reference, Publish: "When a messageId is returned, the message is saved and Amazon SNS
    immediately delivers it to subscribers": the delivery is not part of the call, so the publisher may have
    its answer before the copy is in the queue, and a publish whose answer is lost is delivered all the
    same. The queue's policy is read when the delivery is made."""
    sns, sqs = client(endpoint, PROVIDER, "sns"), client(endpoint, PROVIDER, "sqs")
    topic = sns.create_topic(Name="later-test")["TopicArn"]
    url = sqs.create_queue(QueueName="later")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(sns_may_send(arn, topic))})
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    pending = lambda: control(endpoint, "/_gatekeeper/deliveries")["pending"]  # noqa: E731
    try:
        assert control(endpoint, "/_gatekeeper/deliveries", {"delay_ms": 2000})["delay_ms"] == 2000
        sns.publish(TopicArn=topic, Message="first")
        assert pending() == 1 and not sqs.receive_message(QueueUrl=url).get("Messages"), "answered before delivered"
        got = eventually(lambda: sqs.receive_message(QueueUrl=url).get("Messages"), "the delivery, after the answer")
        assert [m["Body"] for m in got] == ["first"] and pending() == 0
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])

        control(endpoint, "/_gatekeeper/faults", {"rules": [{"match": "sns:Publish", "rate": 1.0, "kind": "drop_after"}]})
        try:
            with pytest.raises(botocore.exceptions.HTTPClientError):  # no answer
                client(endpoint, PROVIDER, "sns", config=NO_RETRY).publish(TopicArn=topic, Message="unanswered")
        finally:
            control(endpoint, "/_gatekeeper/faults", {"rules": []})
        got = eventually(lambda: sqs.receive_message(QueueUrl=url).get("Messages"), "the delivery of the unanswered publish")
        assert [m["Body"] for m in got] == ["unanswered"]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])

        sns.publish(TopicArn=topic, Message="refused at delivery")
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": ""})  # before the delivery is made
        eventually(lambda: pending() == 0, "the delivery made")
        assert any(u["target"] == arn and "policy" in u["error"]
                   for u in control(endpoint, "/_gatekeeper/lambda/undelivered")["undelivered"])
        assert not sqs.receive_message(QueueUrl=url).get("Messages")
    finally:
        control(endpoint, "/_gatekeeper/deliveries", {"delay_ms": 0})
