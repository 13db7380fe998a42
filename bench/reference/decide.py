"""REFERENCE IMPLEMENTATION FOR THE BENCHMARK ONLY — not part of Gatekeeper.

`decide` written the way most teams would write it as a Python Lambda with boto3: one message at a
time, one Describe, two GetItems, one conditional PutItem, one Accept or Reject call and one Publish per
endpoint. It reads the same events and tables as Gatekeeper's `decide`, so `make bench` can run both
against the same local AWS and compare them.
"""

import json
import os
import time

import boto3
from botocore.exceptions import ClientError

ec2 = boto3.client("ec2")
ddb = boto3.client("dynamodb")
sns = boto3.client("sns")

ALLOWLIST = os.environ["ALLOWLIST_TABLE"]
DECISIONS = os.environ["DECISIONS_TABLE"]
TOPIC = os.environ["TOPIC_ARN"]
MANAGED = set(os.environ["MANAGED_SERVICES"].split(","))


def rule(service, owner):
    item = ddb.get_item(TableName=ALLOWLIST, Key={"service_id": {"S": service}, "principal": {"S": owner}}, ConsistentRead=True)
    return item.get("Item")


def evaluate(service, owner):
    now = time.time()
    rules = [r for r in (rule(service, owner), rule("*", owner)) if r]
    live = [r for r in rules if "expires_at" not in r or float(r["expires_at"]["N"]) > now]
    if any(r["effect"]["S"] == "deny" for r in live):
        return "reject", "denied"
    if any(r["effect"]["S"] == "allow" for r in live):
        return "accept", "allowed"
    return "reject", "not_listed"


def handler(event, context):
    failures = []
    for record in event["Records"]:
        try:
            detail = json.loads(record["body"])["detail"]
            service, endpoint = detail["service_id"], detail["endpoint_id"]
            if service not in MANAGED:
                continue
            conns = ec2.describe_vpc_endpoint_connections(
                Filters=[{"Name": "service-id", "Values": [service]}, {"Name": "vpc-endpoint-id", "Values": [endpoint]}]
            )["VpcEndpointConnections"]
            if not conns or conns[0]["VpcEndpointState"] != "pendingAcceptance":
                continue
            conn = conns[0]
            owner = conn["VpcEndpointOwner"]
            decision, reason = evaluate(service, owner)
            created = int(conn["CreationTimestamp"].timestamp() * 1000)
            try:
                ddb.put_item(
                    TableName=DECISIONS,
                    Item={
                        "endpoint_id": {"S": endpoint},
                        "created": {"S": f"{created:015}"},
                        "decision": {"S": decision + "ed" if decision == "accept" else "rejected"},
                        "reason": {"S": reason},
                        "owner": {"S": owner},
                        "service_id": {"S": service},
                    },
                    ConditionExpression="attribute_not_exists(endpoint_id)",
                )
            except ClientError as e:
                if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    continue
                raise
            if decision == "accept":
                ec2.accept_vpc_endpoint_connections(ServiceId=service, VpcEndpointIds=[endpoint])
            else:
                ec2.reject_vpc_endpoint_connections(ServiceId=service, VpcEndpointIds=[endpoint])
            sns.publish(
                TopicArn=TOPIC,
                Subject=f"Gatekeeper {decision}ed {endpoint} from {owner}"[:100],
                Message=json.dumps({"decision": decision, "reason": reason, "owner": owner, "endpoint_id": endpoint}),
                MessageAttributes={"decision": {"DataType": "String", "StringValue": decision}},
            )
        except Exception as e:  # noqa: BLE001 - report the message as failed, as teams do
            print(json.dumps({"error": str(e), "message_id": record.get("messageId")}))
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
