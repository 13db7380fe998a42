"""IAM for the local AWS: the functions' role credentials, issued as Lambda issues them, and enforcement of
the role's policies for those credentials only.

Control API (under the extension's /_gatekeeper/ paths):
  POST /_gatekeeper/role-credentials   {"role_arn": "arn:aws:iam::<account>:role/<path/name>",
                                        "session_name": "<optional, default the role's name>",
                                        "duration_seconds": <optional, default the role's MaxSessionDuration>}
        -> {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration", "Arn"}
        The credentials of a session of the role, as Lambda obtains them for a function's execution role:
        Lambda (the service principal) assumes the role, so the role's trust policy is not evaluated
        against the caller here (moto's sts:AssumeRole evaluation of a trust policy naming only
        lambda.amazonaws.com answers 500). The session is registered in moto's STS registry of the role's
        account (sts_backends[account][partition].assume_role), so moto maps the key to that account
        (moto.iam.models.get_account_id_from) and GetCallerIdentity answers the assumed-role ARN.
        400 for a malformed request, 404 when the role does not exist in moto's IAM of that account.
  GET  /_gatekeeper/iam/denials        -> [{"role_arn", "action", "resource", "reason", "session"}], oldest first
  POST /_gatekeeper/iam/denials/reset  forget them
  POST /_gatekeeper/iam/enforce        {"enabled": false} switches enforcement off (on by default;
                                       environment GATEKEEPER_EMU_IAM=0 starts with it off) -> {"enabled"}

What is enforced, for credentials issued by /role-credentials only (every other key, e.g. the bootstrap
keys and consumer accounts' sts:AssumeRole sessions, is never checked):
  the role's identity-based policies -- its inline policies (put_role_policy, CloudFormation Policies and
  AWS::IAM::RolePolicy, stored as JSON text or as a dict) and its attached managed policies (default
  version) -- for the IAM action and the resource ARN(s) of each call, with the policy evaluation logic's
  identity-policy part (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):
  an explicit Deny wins, else an Allow is needed, else the implicit deny. Effect, Action/NotAction and
  Resource/NotResource with the * and ? wildcards (actions case-insensitive, resources case-sensitive:
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html,
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html).
  sts:GetCallerIdentity is always allowed, as in AWS ("No permissions are required to perform this
  operation": https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).
  Condition blocks made only of the condition key dynamodb:LeadingKeys (the partition key value(s) of the
  request) under StringEquals, StringNotEquals, StringLike or StringNotLike, bare or with ForAllValues: /
  ForAnyValue:, ANDed as IAM does -- for the DynamoDB item calls whose partition key values the emulator
  reads: GetItem, PutItem, UpdateItem, DeleteItem, BatchGetItem and BatchWriteItem (per table),
  TransactWriteItems and TransactGetItems (per item), and Query on a table (the key's name from the table's
  key schema in moto). See the conditions section below for the rules and their sources. An Allow whose
  condition is false does not apply (the denial's reason is the implicit deny); a Deny whose condition is
  false does not apply either.

  A call on a resource encrypted with a customer managed KMS key also needs that key, which its key policy
  and the role's policies must both grant (see "customer managed keys" below): a publish to such a topic
  kms:GenerateDataKey and kms:Decrypt (else SNS's KMSAccessDenied; KMSDisabled, KMSInvalidState,
  KMSNotFound for a key that is not usable), an item call on such a table kms:Decrypt (else DynamoDB's
  AccessDeniedException "KMS key access denied error: ...").

Not evaluated (AWS would):
  * Any other Condition: another condition key or operator (IfExists, IgnoreCase, Null, Bool, ARN, numeric,
    date, IP...), a policy variable in a condition value, a bare (no ForAllValues:/ForAnyValue:) operator
    when the request has several partition keys, or dynamodb:LeadingKeys for a call whose
    partition key values the emulator does not read (Scan, a Query on an index or whose key condition it
    cannot read, every other action). Fail closed: such a statement is taken as NOT matching when it allows
    and as matching when it denies, so the emulator never allows a call AWS might deny (it may deny one AWS
    would allow: the denial's reason says "conditional", look there first).
  * Resource-based policies (topic, queue, bus, key policies), permissions boundaries, session policies,
    SCPs/RCPs, policy variables (${aws:username} is matched literally in Resource; a Condition value holding
    one is not evaluated, as above).
  * Signatures, session tokens and expiry of the issued credentials (moto checks none of them either).
  * Resource ARNs are derived for the calls the functions and the CLI make (see `authorization_requests`); any other
    call of a role session is checked against Resource "*", like the actions that have no resource-level
    permissions.

Cost: the role's parsed and compiled statements are cached, keyed by a fingerprint of its policies (inline
documents and managed policies' default versions), so any change of them is seen by the next call.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import threading
from urllib.parse import parse_qs, urlparse

import gk_control
import gk_policy

ENFORCED = os.environ.get("GATEKEEPER_EMU_IAM", "1") != "0"
_LOCK = threading.Lock()
# Issued role sessions, by access key id.
_SESSIONS: dict[str, "_Session"] = {}
# Denied calls of role sessions, oldest first (bounded).
DENIALS: list[dict] = []
_MAX_DENIALS = 10_000
# role id -> (fingerprint, compiled statements)
_CACHE: dict[str, tuple] = {}

_ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(?:[\x21-\x7e]*/)?[\w+=,.@-]{1,64}$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
_DEFAULT_REGION = {"aws": "us-east-1", "aws-cn": "cn-north-1", "aws-us-gov": "us-gov-west-1"}


class _Session:
    __slots__ = ("key", "role_arn", "role_id", "account", "partition", "session_name")

    def __init__(self, key, role_arn, role_id, account, partition, session_name):
        self.key, self.role_arn, self.role_id = key, role_arn, role_id
        self.account, self.partition, self.session_name = account, partition, session_name

    @property
    def principal(self) -> str:
        name = self.role_arn.rsplit("/", 1)[-1]
        return f"arn:{self.partition}:sts::{self.account}:assumed-role/{name}/{self.session_name}"


# ------------------------------------------------------------------------------ role credentials


def issue(role_arn: str, session_name: str | None = None, duration_seconds: int | None = None) -> tuple[int, dict]:
    """(HTTP status, answer) for a role-credentials request."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    m = _ROLE_ARN.match(role_arn or "")
    if not m:
        return 400, {"error": "ValidationError", "message": f"role_arn {role_arn!r} is not an IAM role ARN"}
    partition, account = m.group(1), m.group(2)
    role = next((r for r in list(iam_backends[account][partition].roles.values()) if r.arn == role_arn), None)
    if role is None:
        return 404, {"error": "NoSuchEntity", "message": f"The role {role_arn} does not exist in account {account}"}
    session_name = session_name or role.name[:64]
    if not _SESSION_NAME.match(session_name):
        return 400, {"error": "ValidationError", "message": f"session_name {session_name!r} is not a valid role session name"}
    duration = int(duration_seconds or role.max_session_duration or 3600)
    assumed = sts_backends[account][partition].assume_role(
        region_name=_DEFAULT_REGION.get(partition, "us-east-1"),
        role_session_name=session_name,
        role_arn=role.arn,
        policy=None,
        duration=duration,
        external_id=None,
    )
    with _LOCK:
        _SESSIONS[assumed.access_key_id] = _Session(assumed.access_key_id, role.arn, role.id, account, partition, session_name)
    expiration = assumed.expiration.replace(tzinfo=datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    return 200, {
        "AccessKeyId": assumed.access_key_id,
        "SecretAccessKey": assumed.secret_access_key,
        "SessionToken": assumed.session_token,
        "Expiration": expiration,
        "Arn": assumed.arn,
    }


# ------------------------------------------------------------------------------ policy evaluation

ALLOW, EXPLICIT_DENY, IMPLICIT_DENY, CONDITIONAL = "allow", "explicit deny", "implicit deny", "conditional"


def _wildcard(patterns, ignore_case: bool):
    if isinstance(patterns, str):
        patterns = [patterns]
    parts = ["".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in str(p)) for p in patterns]
    return re.compile("^(?:" + "|".join(parts) + ")$", re.IGNORECASE if ignore_case else 0) if parts else None


# ------------------------------------------------------------------------------ conditions
# Evaluated: the condition key dynamodb:LeadingKeys, under the string operators StringEquals, StringNotEquals,
# StringLike and StringNotLike, each bare or qualified by ForAllValues: / ForAnyValue:. Any other key or
# operator (IfExists, IgnoreCase, Null, Bool, ARN, ...) makes the whole Condition block unknown (fail closed).
#
#   dynamodb:LeadingKeys  "Represents the first key attribute of a table -- in other words, the partition key.
#       The key name LeadingKeys is plural, even if the key is used with single-item actions": the partition
#       key value(s) of the items a request names (Amazon DynamoDB Developer Guide, "Using IAM policy
#       conditions for fine-grained access control",
#       https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/specifying-conditions.html). The
#       Service Authorization Reference lists it for BatchGetItem, BatchWriteItem, ConditionCheckItem,
#       DeleteItem, GetItem, PutItem, Query, UpdateItem and Scan
#       (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html). The
#       emulator knows its values for the item actions, for Query on a table (not on an index) whose partition
#       key value it can read, and per item of TransactWriteItems/TransactGetItems (each item is authorized as
#       its underlying item action: transaction-apis-iam.html); for every other call it does not know the key
#       (not even whether AWS would call it absent, as for Scan), so a condition on it stays unknown.
#       Key names are matched exactly as "dynamodb:LeadingKeys": the IAM User Guide calls condition key names
#       case-insensitive (reference_policies_elements_condition.html) while the DynamoDB guide calls them
#       case-sensitive, so any other spelling is left unknown rather than guessed.
#   Operators (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html):
#       StringEquals exact and case-sensitive; StringLike case-sensitive with the multi-character wildcard *
#       and the single-character wildcard ? anywhere in the value; StringNotEquals/StringNotLike negated. "If
#       the key that you specify in a policy condition is not present in the request context, the values do
#       not match and the condition is false"; for a negated operator it is true.
#   Several values for one key are ORed, NORed under a negated operator; several keys under one operator,
#       and several operators, are ANDed
#       (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-logic-multiple-context-keys-or-values.html).
#   Set operators (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html,
#       https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_multi-value-conditions.html):
#       ForAllValues: true when every value in the request matches (one of) the policy values, "It also returns
#       true if there are no context keys in the request" / the values "resolve to an empty data set";
#       ForAnyValue: true when at least one request value matches; false for no values. A bare operator on a
#       key with several values in the request is not decided here (AWS says to use a set operator): unknown.
#   Policy variables (${...}) in condition values are not substituted: such a condition is unknown.

#   aws:TagKeys  "the tag keys in a request" (IAM User Guide, reference_policies_condition-keys.html#condition-keys-tagkeys),
#       multivalued; the emulator knows it for EC2 CreateTags and DeleteTags (the Tag.N.Key parameters; the
#       Service Authorization Reference lists aws:TagKeys for both). Tag keys are case-sensitive in EC2 and
#       are compared as written.

LEADING_KEYS = "dynamodb:LeadingKeys"
TAG_KEYS = "aws:TagKeys"
_CONDITION_KEYS = {LEADING_KEYS, TAG_KEYS}
# operator -> (wildcards, negated)
_STRING_OPERATORS = {
    "StringEquals": (False, False),
    "StringNotEquals": (False, True),
    "StringLike": (True, False),
    "StringNotLike": (True, True),
}
_SET_QUALIFIERS = ("ForAllValues", "ForAnyValue")


class _Clause:
    """One condition key under one operator, e.g. ForAllValues:StringLike {dynamodb:LeadingKeys: [...]}."""

    __slots__ = ("key", "qualifier", "negated", "pattern")

    def __init__(self, key: str, qualifier: str | None, wildcards: bool, negated: bool, values: list[str]):
        self.key, self.qualifier, self.negated = key, qualifier, negated
        if wildcards:
            parts = ["".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in v) for v in values]
        else:
            parts = [re.escape(v) for v in values]
        self.pattern = re.compile("(?:" + "|".join(parts) + ")", re.DOTALL)

    def holds(self, context: dict):
        """True, False, or None (the request's values for the key are not known)."""
        values = context.get(self.key)
        if values is None:
            return None

        def test(v: str) -> bool:  # matches one of the policy values (OR); negated: none of them (NOR)
            return (self.pattern.fullmatch(v) is not None) != self.negated

        if self.qualifier == "ForAllValues":
            return all(test(v) for v in values)  # True for no values
        if self.qualifier == "ForAnyValue":
            return any(test(v) for v in values)  # False for no values
        if not values:
            return self.negated  # the key is absent: false, true for a negated operator
        if len(values) == 1:
            return test(values[0])
        return None  # a multivalued key without a set operator: not decided here


def _compile_condition(block):
    """[_Clause] (ANDed), or None when the block holds anything this emulator does not evaluate."""
    if not isinstance(block, dict):
        return None
    clauses = []
    for operator, keys in block.items():
        qualifier, _, base = operator.rpartition(":")
        if (qualifier and qualifier not in _SET_QUALIFIERS) or base not in _STRING_OPERATORS or not isinstance(keys, dict) or not keys:
            return None
        wildcards, negated = _STRING_OPERATORS[base]
        for key, values in keys.items():
            values = [values] if isinstance(values, str) else values
            if key not in _CONDITION_KEYS or not isinstance(values, list) or not values:
                return None
            if not all(isinstance(v, str) and "${" not in v for v in values):
                return None  # not a string, or a policy variable
            clauses.append(_Clause(key, qualifier or None, wildcards, negated, values))
    return clauses


class _Statement:
    __slots__ = ("allow", "not_action", "action", "not_resource", "resource", "conditional", "condition")

    def __init__(self, s: dict):
        self.allow = s.get("Effect") == "Allow"
        self.not_action = "NotAction" in s
        self.action = _wildcard(s.get("NotAction" if self.not_action else "Action", []), True)
        self.not_resource = "NotResource" in s
        self.resource = _wildcard(s.get("NotResource" if self.not_resource else "Resource", []), False)
        self.conditional = bool(s.get("Condition"))
        self.condition = _compile_condition(s["Condition"]) if self.conditional else []

    def applies(self, action: str, resource: str) -> bool:
        a = self.action is not None and self.action.match(action) is not None
        r = self.resource is not None and self.resource.match(resource) is not None
        return (a != self.not_action) and (r != self.not_resource)

    def condition_holds(self, context: dict):
        """True (no Condition, or it holds), False (it does not), None (the emulator cannot tell)."""
        if self.condition is None:
            return None
        verdicts = [c.holds(context) for c in self.condition]
        if None in verdicts:
            return None
        return all(verdicts)


def compile_policy(document) -> list[_Statement]:
    doc = json.loads(document) if isinstance(document, (str, bytes)) else document
    statements = doc.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    return [_Statement(s) for s in statements]


def evaluate(statements, action: str, resource: str, context: dict | None = None) -> str:
    """ALLOW, EXPLICIT_DENY, IMPLICIT_DENY, or CONDITIONAL (only an Allow whose condition the emulator cannot
    evaluate would have allowed). `context`: the request's condition keys the emulator knows, e.g.
    {"dynamodb:LeadingKeys": ["principals#vpce-svc-1"]} (see `authorization_requests`); a key missing from it
    is unknown."""
    context = context or {}
    allowed = conditional = False
    for st in statements:
        if not st.applies(action, resource):
            continue
        holds = st.condition_holds(context)
        if not st.allow:
            if holds is not False:
                return EXPLICIT_DENY  # a Deny whose condition cannot be evaluated counts as matching (fail closed)
            continue
        if holds is None:
            conditional = True  # an Allow whose condition cannot be evaluated does not allow (fail closed)
        elif holds:
            allowed = True
    return ALLOW if allowed else CONDITIONAL if conditional else IMPLICIT_DENY


def _default_document(policy):
    for v in policy.versions:
        if v.version_id == policy.default_version_id:
            return v.document
    return '{"Statement": []}'


def _statements(session: _Session):
    """The role's compiled statements (cached while its policies are unchanged); None: the role is gone."""
    from moto.iam.models import iam_backends

    role = iam_backends[session.account][session.partition].roles.get(session.role_id)
    if role is None:
        return None
    inline = tuple((n, d if isinstance(d, str) else json.dumps(d, sort_keys=True)) for n, d in role.policies.items())
    managed = tuple((arn, p.default_version_id, id(p)) for arn, p in role.managed_policies.items())
    fingerprint = (inline, managed)
    cached = _CACHE.get(session.role_id)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    statements = []
    for _, doc in inline:
        statements.extend(compile_policy(doc))
    for p in list(role.managed_policies.values()):
        statements.extend(compile_policy(_default_document(p)))
    _CACHE[session.role_id] = (fingerprint, statements)
    return statements


# ------------------------------------------------------------------------------ resource ARNs
# Each call's IAM action(s) and resource ARN(s), as the Service Authorization Reference defines them:
#   DynamoDB  https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html
#             table  arn:${Partition}:dynamodb:${Region}:${Account}:table/${TableName}
#             index  ...:table/${TableName}/index/${IndexName}    stream ...:table/${TableName}/stream/${StreamLabel}
#             TransactWriteItems/TransactGetItems are authorized as the underlying item actions per table
#             (dynamodb:PutItem/UpdateItem/DeleteItem/ConditionCheckItem/GetItem):
#             https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html
#             ListStreams, ListTables, DescribeLimits have no resource type there: Resource "*" (the DynamoDB
#             guide's iam-policy-read-stream-only.html example scopes ListStreams to a stream ARN anyway, which
#             such a statement never grants; the template's ReconcileRole grants it on "*").
#   SNS       https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsns.html
#             topic  arn:${Partition}:sns:${Region}:${Account}:${TopicName}; PublishBatch is authorized by
#             sns:Publish: https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-language-api-permissions-reference.html
#   EC2       https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
#             vpc-endpoint-service  arn:${Partition}:ec2:${Region}:${Account}:vpc-endpoint-service/${VpcEndpointServiceId}
#             (Accept/RejectVpcEndpointConnections); DescribeVpcEndpointConnections has no resource type: "*"
#             CreateTags/DeleteTags: each ResourceId.N by its type; the PrivateLink ones are modelled:
#             vpc-endpoint-connection  ...:vpc-endpoint-connection/${VpcEndpointConnectionId}
#             vpc-endpoint-service-permission  ...:vpc-endpoint-service-permission/${VpcEndpointServicePermissionId}
#             vpc-endpoint  ...:vpc-endpoint/${VpcEndpointId}; vpc-endpoint-service as above. Any other ID is
#             not modelled and is authorized against "*" (only a Resource "*" statement matches it).
#   EventBridge https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoneventbridge.html
#             event-bus  arn:${Partition}:events:${Region}:${Account}:event-bus/${EventBusName}; PutEvents checks
#             each entry's bus (a name or an ARN; the account's "default" bus when absent)
#   SQS       https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsqs.html
#             queue  arn:${Partition}:sqs:${Region}:${Account}:${QueueName}, from QueueUrl (as moto's
#             SQSResponse._determine_resource derives it, without needing the queue to exist)
#   STS       AssumeRole: the role ARN; GetCallerIdentity: always allowed (not checked at all)

_SQS_BATCH = {
    "DeleteMessageBatch": "DeleteMessage",
    "SendMessageBatch": "SendMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
_TRANSACT_WRITE = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}
_NO_RESOURCE = {"dynamodb": {"ListStreams", "ListTables", "DescribeLimits", "DescribeEndpoints", "ListBackups", "ListGlobalTables"}}


def authorization_requests(
    service: str, action: str, params: dict, region: str, account: str, partition: str = "aws", *, context: bool = False, key_schema=None
):
    """[(IAM action, resource ARN)] that must all be allowed for this call; with context=True,
    [(IAM action, resource ARN, condition context)], the context holding the condition keys the emulator knows
    for that request ({"dynamodb:LeadingKeys": [...]} for DynamoDB item calls, see `_dynamodb`; else {}).
    key_schema(table name or ARN) -> the table's KeySchema ([{"AttributeName", "KeyType"}]) or None; by default
    the table's in moto's DynamoDB backend of that account and Region."""
    if service == "dynamodb":
        if context:
            schema_of = key_schema or _moto_key_schema(region, account)
        else:
            schema_of = lambda _table: None  # noqa: E731 - the pairs need no key schema
        requests = _dynamodb(action, params, region, account, partition, schema_of)
    elif service == "ec2" and action in ("CreateTags", "DeleteTags"):
        requests = _ec2_tags(action, params, region, account, partition)
    else:
        requests = [(a, r, {}) for a, r in _requests(service, action, params, region, account, partition)]
    out = []
    for req in requests if context else [(a, r) for a, r, _ in requests]:
        if req not in out:
            out.append(req)
    return out


_TAGGABLE = (
    (re.compile(r"vpce-svc-perm-[0-9a-f]+"), "vpc-endpoint-service-permission"),
    (re.compile(r"vpce-con-[0-9a-f]+"), "vpc-endpoint-connection"),
    (re.compile(r"vpce-svc-[0-9a-f]+"), "vpc-endpoint-service"),
    (re.compile(r"vpce-[0-9a-f]+"), "vpc-endpoint"),
)


def _indexed(params: dict, prefix: str) -> list[str]:
    """The values of a query-protocol list (`ResourceId.1`, `ResourceId.2`, ...; `Tag.1.Key`, ...) in order."""
    pattern = re.compile(re.escape(prefix).replace(r"\#", r"(\d+)"))
    found = []
    for k, v in params.items():
        m = pattern.fullmatch(k)
        if m:
            found.append((int(m.group(1)), v))
    return [v for _, v in sorted(found)]


def _ec2_tags(action, params, region, account, partition):
    """CreateTags/DeleteTags: one (ec2:<action>, resource ARN, {aws:TagKeys}) per resource ID."""
    keys = _indexed(params, "Tag.#.Key")
    out = []
    for rid in _indexed(params, "ResourceId.#") or ["*"]:
        arn = "*"
        for pattern, kind in _TAGGABLE:
            if pattern.fullmatch(rid):
                arn = f"arn:{partition}:ec2:{region}:{account}:{kind}/{rid}"
                break
        out.append((f"ec2:{action}", arn, {TAG_KEYS: keys}))
    return out


def _requests(service: str, action: str, params: dict, region: str, account: str, partition: str):
    prefix = service
    if service == "sns":
        if action in ("Publish", "PublishBatch"):
            arn = params.get("TopicArn") or params.get("TargetArn") or "*"  # "*": SMS to a PhoneNumber
            return [("sns:Publish", arn)]
        return [(f"sns:{action}", params.get("TopicArn") or "*")]
    if service == "ec2":
        # Each takes the vpc-endpoint-service resource type (Service Authorization Reference, EC2).
        if action in (
            "AcceptVpcEndpointConnections",
            "RejectVpcEndpointConnections",
            "ModifyVpcEndpointServicePermissions",
            "ModifyVpcEndpointServiceConfiguration",
        ):
            sid = params.get("ServiceId") or "*"
            return [(f"ec2:{action}", f"arn:{partition}:ec2:{region}:{account}:vpc-endpoint-service/{sid}")]
        return [(f"ec2:{action}", "*")]
    if service == "events":
        if action == "PutEvents":
            buses = []
            for entry in params.get("Entries") or [{}]:
                bus = entry.get("EventBusName") or "default"
                arn = bus if bus.startswith("arn:") else f"arn:{partition}:events:{region}:{account}:event-bus/{bus}"
                if arn not in buses:
                    buses.append(arn)
            return [("events:PutEvents", b) for b in buses]
        return [(f"events:{action}", "*")]
    if service == "sqs":
        # The batch actions are authorized by their single-message action (SQS developer guide, "Amazon
        # SQS API permissions: Actions and resource reference": DeleteMessageBatch needs
        # sqs:DeleteMessage, SendMessageBatch sqs:SendMessage, ChangeMessageVisibilityBatch
        # sqs:ChangeMessageVisibility).
        action = _SQS_BATCH.get(action, action)
        url = params.get("QueueUrl")
        if url:
            return [(f"sqs:{action}", _queue_arn(url, region, account, partition))]
        if action == "CreateQueue" and params.get("QueueName"):
            return [(f"sqs:{action}", f"arn:{partition}:sqs:{region}:{account}:{params['QueueName']}")]
        return [(f"sqs:{action}", "*")]
    if service == "sts" and action in ("AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"):
        return [(f"sts:{action}", params.get("RoleArn") or "*")]
    if service == "cloudformation" and action in ("DescribeStacks", "DescribeStackResources", "DescribeStackEvents", "GetTemplate"):
        # Each takes the stack resource type, arn:${Partition}:cloudformation:${Region}:${Account}:stack/${StackName}/${Id}
        # (Service Authorization Reference, AWS CloudFormation); a call naming no stack (DescribeStacks lists
        # every stack), or one naming a stack that does not exist, is checked against "*".
        return [(f"cloudformation:{action}", _stack_arn(params.get("StackName"), region, account))]
    return [(f"{prefix}:{action}", "*")]


def _stack_arn(name, region, account) -> str:
    """The ARN of the stack `name` (a stack name or ID) in moto's CloudFormation, or "*" when none is live."""
    if not name:
        return "*"
    if name.startswith("arn:"):
        return name
    try:
        from moto.cloudformation.models import cloudformation_backends

        for stack in cloudformation_backends[account][region].stacks.values():
            if stack.name == name and stack.status != "DELETE_COMPLETE":
                return stack.stack_id
    except (KeyError, AttributeError):
        pass
    return "*"


def _table(name: str, region, account, partition) -> str:
    return name if name.startswith("arn:") else f"arn:{partition}:dynamodb:{region}:{account}:table/{name}"


def _attr_string(value):
    """The string form of a key attribute value in the wire JSON: {"S": "x"} -> "x", {"N": "5"} -> "5"; None
    for any other type (a binary partition key is not matched against policy strings here)."""
    if isinstance(value, dict) and len(value) == 1:
        ((kind, v),) = value.items()
        if kind in ("S", "N") and isinstance(v, str):
            return v
    return None


def _hash_key(schema) -> str | None:
    for elem in schema or []:
        if isinstance(elem, dict) and elem.get("KeyType") == "HASH":
            return elem.get("AttributeName")
    return None


def _moto_key_schema(region: str, account: str):
    """Table name or ARN -> its KeySchema in moto's DynamoDB (the account and Region of an ARN, else the
    caller's), or None when moto has no such table."""

    def lookup(table: str):
        try:
            from moto.dynamodb.models import dynamodb_backends

            r, a, name = region, account, table
            if table.startswith("arn:"):
                _, _, _, r, a, rest = table.split(":", 5)  # arn:aws:dynamodb:<region>:<account>:table/<name>
                name = rest.split("/", 1)[1]
            return list(dynamodb_backends[a][r].get_table(name).schema)
        except Exception:  # noqa: BLE001 - no such table (or backend): the key stays unknown
            return None

    return lookup


def _leading_keys(schema_of, table: str, items) -> dict:
    """{"dynamodb:LeadingKeys": [the partition key values of these keys/items]}, or {} (unknown) when the
    table's key schema or any item's partition key value cannot be read."""
    hash_key = _hash_key(schema_of(table))
    values = []
    for item in items:
        v = _attr_string(item.get(hash_key)) if hash_key and isinstance(item, dict) else None
        if v is None:
            return {}
        if v not in values:
            values.append(v)
    return {LEADING_KEYS: values} if values else {}


def _query_leading_keys(schema_of, params) -> dict:
    """The partition key value a Query names, from KeyConditionExpression (parsed with moto's own parser,
    against the table's key schema) or the legacy KeyConditions (EQ); {} (unknown) otherwise, and for a
    Query on an index (whose partition key is not the table's)."""
    table = params.get("TableName") or ""
    schema = schema_of(table)
    hash_key = _hash_key(schema)
    if not hash_key or params.get("IndexName"):
        return {}
    try:
        if params.get("KeyConditionExpression"):
            from moto.dynamodb.parsing.key_condition_expression import parse_expression

            hashes, _, _ = parse_expression(
                key_condition_expression=params["KeyConditionExpression"],
                expression_attribute_values=params.get("ExpressionAttributeValues") or {},
                expression_attribute_names=params.get("ExpressionAttributeNames") or {},
                schema=schema,
            )
            values = [_attr_string(v) for name, v in hashes if name == hash_key]
        else:
            cond = (params.get("KeyConditions") or {}).get(hash_key) or {}
            listed = cond.get("AttributeValueList") or []
            values = [_attr_string(listed[0])] if cond.get("ComparisonOperator") == "EQ" and len(listed) == 1 else []
    except Exception:  # noqa: BLE001 - unreadable: unknown (moto answers the malformed request itself)
        return {}
    return {LEADING_KEYS: values} if len(values) == 1 and values[0] is not None else {}


def _dynamodb(action, params, region, account, partition, schema_of):
    """[(IAM action, resource ARN, condition context)]; the context carries dynamodb:LeadingKeys where the
    emulator can read it (see the conditions section above)."""
    a = f"dynamodb:{action}"
    if action in _NO_RESOURCE["dynamodb"]:
        return [(a, "*", {})]
    if action in ("BatchGetItem", "BatchWriteItem"):
        out = []
        for t, req in (params.get("RequestItems") or {}).items():
            if action == "BatchGetItem":
                items = (req.get("Keys") if isinstance(req, dict) else None) or [None]
            else:  # [{"PutRequest": {"Item"}} | {"DeleteRequest": {"Key"}}]
                items = [
                    ((w.get("PutRequest") or {}).get("Item") or (w.get("DeleteRequest") or {}).get("Key")) if isinstance(w, dict) else None
                    for w in (req if isinstance(req, list) else [None])
                ] or [None]
            out.append((a, _table(t, region, account, partition), _leading_keys(schema_of, t, items)))
        return out or [(a, "*", {})]
    if action == "TransactWriteItems":
        out = []
        for item in params.get("TransactItems") or []:
            for kind, sub in item.items():
                if kind in _TRANSACT_WRITE and isinstance(sub, dict):
                    t = sub.get("TableName", "")
                    key = sub.get("Item") if kind == "Put" else sub.get("Key")
                    ctx = _leading_keys(schema_of, t, [key])
                    out.append((f"dynamodb:{_TRANSACT_WRITE[kind]}", _table(t, region, account, partition), ctx))
        return out or [(a, "*", {})]
    if action == "TransactGetItems":
        out = []
        for item in params.get("TransactItems") or []:
            get = item.get("Get") or {}
            t = get.get("TableName", "")
            out.append(("dynamodb:GetItem", _table(t, region, account, partition), _leading_keys(schema_of, t, [get.get("Key")])))
        return out or [(a, "*", {})]
    # DynamoDB Streams (signing name "dynamodb", IAM prefix "dynamodb").
    if action in ("DescribeStream", "GetShardIterator"):
        return [(a, params.get("StreamArn") or "*", {})]
    if action == "GetRecords":
        # Shard iterators (AWS's and moto's alike) begin with the stream ARN: "<stream arn>|1|<opaque>".
        it = params.get("ShardIterator") or ""
        return [(a, it.split("|", 1)[0] if it.startswith("arn:") else "*", {})]
    name = params.get("TableName")
    if name:
        arn = _table(name, region, account, partition)
        if params.get("IndexName") and action in ("Query", "Scan"):
            arn = f"{arn}/index/{params['IndexName']}"
        ctx = {}
        if action in ("GetItem", "DeleteItem", "UpdateItem"):
            ctx = _leading_keys(schema_of, name, [params.get("Key")])
        elif action == "PutItem":
            ctx = _leading_keys(schema_of, name, [params.get("Item")])
        elif action == "Query":
            ctx = _query_leading_keys(schema_of, params)
        return [(a, arn, ctx)]
    return [(a, "*", {})]


def _queue_arn(url: str, region: str, account: str, partition: str) -> str:
    if url.startswith(("http://", "https://")):
        parts = [p for p in urlparse(url).path.split("/") if p]
        if len(parts) >= 2:
            account, name = parts[-2], parts[-1]
        else:
            name = parts[-1] if parts else ""
    else:
        name = url
    return f"arn:{partition}:sqs:{region}:{account}:{name}"


# ------------------------------------------------------------------------------ the check

# The AccessDenied error of each service, for its protocol (code, HTTP status):
#   EC2          UnauthorizedOperation 403  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
#   DynamoDB     AccessDeniedException 400  https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/CommonErrors.html
#                (awsJson1_0 "__type" with the service's namespace, as DynamoDB sends its errors)
#   SNS          AuthorizationError 403     botocore sns model: AuthorizationErrorException {"code": "AuthorizationError",
#                "httpStatusCode": 403}; https://docs.aws.amazon.com/sns/latest/api/API_Publish.html#API_Publish_Errors
#   EventBridge  AccessDeniedException 400  botocore events model AccessDeniedException;
#                https://docs.aws.amazon.com/eventbridge/latest/APIReference/CommonErrors.html
#   SQS          AccessDenied 403           the awsQuery-compatible code (SQS sends x-amzn-query-error: AccessDenied;Sender
#                with the JSON protocol, which botocore and the Rust SDK report as the code)
#   STS, others  AccessDenied 403 (Query services) / AccessDeniedException 400 (JSON services)
_DENIED = {
    "ec2": ("UnauthorizedOperation", "403 Forbidden"),
    "dynamodb": ("com.amazonaws.dynamodb.v20120810#AccessDeniedException", "400 Bad Request"),
    "sns": ("AuthorizationError", "403 Forbidden"),
    "events": ("AccessDeniedException", "400 Bad Request"),
    "sqs": ("AccessDenied", "403 Forbidden"),
}


def _region(environ) -> str:
    m = re.search(r"Credential=[^/]+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    return m.group(1) if m else "us-east-1"


def _params(environ, body: bytes) -> dict:
    ctype = environ.get("CONTENT_TYPE", "")
    if environ.get("HTTP_X_AMZ_TARGET") or "json" in ctype:
        try:
            return json.loads(body or b"{}")
        except ValueError:
            return {}
    raw = body.decode("utf-8", "replace") if body else environ.get("QUERY_STRING", "")
    return {k: v[0] for k, v in parse_qs(raw).items()}


def _record_denial(session: _Session, action: str, resource: str, reason: str) -> None:
    """Keeps a refusal for /_gatekeeper/iam/denials (the newest _MAX_DENIALS)."""
    with _LOCK:
        DENIALS.append({"role_arn": session.role_arn, "action": action, "resource": resource, "reason": reason, "session": session.session_name})
        del DENIALS[:-_MAX_DENIALS]


def check(environ, service: str, action: str, key: str, body: bytes):
    """(code, message, HTTP status) when IAM denies this call, else None."""
    session = _SESSIONS.get(key)
    if session is None or not ENFORCED:
        return None
    if service == "sts" and action == "GetCallerIdentity":
        return None
    statements = _statements(session)
    params, region = _params(environ, body), _region(environ)
    requests = authorization_requests(service, action, params, region, session.account, session.partition, context=True)
    for iam_action, resource, context in requests:
        verdict = EXPLICIT_DENY if statements is None else evaluate(statements, iam_action, resource, context)
        if verdict == ALLOW:
            continue
        reason = {
            EXPLICIT_DENY: "with an explicit deny in an identity-based policy",
            IMPLICIT_DENY: f"because no identity-based policy allows the {iam_action} action",
            CONDITIONAL: f"because no identity-based policy allows the {iam_action} action "
            "(a conditional Allow matched: the emulator does not evaluate conditions other than dynamodb:LeadingKeys "
            "on the DynamoDB item calls)",
        }[verdict]
        if statements is None:
            reason = "because the role no longer exists"
        _record_denial(session, iam_action, resource, verdict if statements is not None else "role deleted")
        message = f"User: {session.principal} is not authorized to perform: {iam_action} on resource: {resource} {reason}"
        code, status = _DENIED.get(service) or (
            ("AccessDeniedException", "400 Bad Request") if environ.get("HTTP_X_AMZ_TARGET") else ("AccessDenied", "403 Forbidden")
        )
        if service == "ec2":
            message = f"You are not authorized to perform this operation. {message}"
        return code, message, status
    return _keys_refuse(session, statements, service, action, params, region, requests)


# ------------------------------------------------------------------------------ customer managed keys
# A call on a resource encrypted with a customer managed KMS key uses that key as the caller:
#   SNS: SNS developer guide, "Managing Amazon SNS encryption keys and costs" (sns-key-management.html), "Allow a
#   user to send messages to a topic with SSE": "The publisher must have the kms:GenerateDataKey and kms:Decrypt
#   permissions for the AWS KMS key." Errors (SNS API reference, Publish; each HTTP 400): KMSAccessDenied,
#   KMSDisabled, KMSInvalidState, KMSNotFound. Which one a missing permission gives is not documented; the
#   emulator answers KMSAccessDenied ("...a key that doesn't exist or that you don't have access to").
#   DynamoDB: developer guide, "Usage notes" of encryption at rest (encryption.usagenotes.html): with a customer
#   managed key "the policies on that KMS key must give DynamoDB permission to use it on your behalf", by the
#   calling principal ("kms:ViaService ... allows the permissions only when the request comes from DynamoDB on
#   behalf of the principals listed"). No per-API list is documented; users report that PutItem and DeleteItem
#   need kms:Decrypt and fail with AccessDeniedException "KMS key access denied error: ..." (aws/aws-cdk#10010,
#   #19531): the emulator asks kms:Decrypt of every item call on such a table (not of stream reads, of which
#   nothing is documented).
#   KMS developer guide, "Key policies in AWS KMS" (key-policies.html): "Unless the key policy explicitly allows
#   it, you cannot use IAM policies to allow access to a KMS key"; the default key policy's statement for the
#   account ("arn:aws:iam::<account>:root") is what lets IAM policies grant it ("Default key policy").
# So: an explicit Deny in the key policy or the role's policies refuses; else the key policy must allow the role
# itself (its ARN, or "*"), or allow the account while the role's policies allow the action on the key's ARN.
# Key policy conditions are read by gk_policy with kms:ViaService and kms:CallerAccount known; any other
# condition never allows (fail closed). An AWS managed key (alias/aws/<service>) lets every principal of the
# account that may use the service: not checked.
KMS_ITEM_ACTIONS = ("kms:Decrypt",)
_DYNAMODB_ITEM_CALLS = frozenset(
    "GetItem PutItem UpdateItem DeleteItem Query Scan BatchGetItem BatchWriteItem TransactGetItems TransactWriteItems".split()
)


def _key_policy_verdict(policy, action: str, resource: str, session: _Session, ctx: dict) -> str:
    """What the key policy says of `action` for the role: "deny", "role" (allowed to the role itself),
    "account" (allowed to the account: IAM policies decide) or "none"."""
    root = f"arn:{session.partition}:iam::{session.account}:root"
    account = {root, session.account}
    if gk_policy.judge(policy, action, resource, lambda p: gk_policy.names_aws(p, account | {session.role_arn}), ctx) == "deny":
        return "deny"
    if gk_policy.judge(policy, action, resource, lambda p: gk_policy.names_aws(p, {session.role_arn}), ctx) == "allow":
        return "role"
    if gk_policy.judge(policy, action, resource, lambda p: gk_policy.names_aws(p, account), ctx) == "allow":
        return "account"
    return "none"


def _key_refuses(session: _Session, statements, key_ref: str, account: str, region: str, actions, via: str):
    """None when the role may use the key `key_ref` for `actions` through the service `via`; else (kind,
    message), kind one of "denied", "disabled", "invalid-state", "not-found"."""
    from moto.kms.models import kms_backends

    if not key_ref or key_ref.startswith("alias/aws/") or ":alias/aws/" in key_ref:
        return None
    try:
        key = kms_backends[account][region].describe_key(key_ref)
    except Exception:  # noqa: BLE001 - moto raises its NotFoundException (or KeyError: a Region it lacks)
        return "not-found", f"Invalid keyId {key_ref}"
    if any(str(a).startswith("alias/aws/") for a in getattr(key, "aliases", {})):
        return None  # an AWS managed key (moto makes alias/aws/dynamodb's for a table without a key of its own)
    if key.key_state == "Disabled":
        return "disabled", f"{key.arn} is disabled."
    if key.key_state != "Enabled":  # PendingDeletion, PendingImport, Unavailable...
        return "invalid-state", f"{key.arn} is {key.key_state}."
    ctx = {"kms:viaservice": f"{via}.{region}.amazonaws.com", "kms:calleraccount": session.account}
    for action in actions:
        by_key = _key_policy_verdict(key.policy, action, key.arn, session, ctx)
        by_iam = EXPLICIT_DENY if statements is None else evaluate(statements, action, key.arn)
        if by_key == "role" and by_iam != EXPLICIT_DENY or by_key == "account" and by_iam == ALLOW:
            continue
        _record_denial(session, action, key.arn, f"key policy: {by_key}, IAM: {by_iam}")
        return "denied", (
            f"User: {session.principal} is not authorized to perform: {action} on resource: {key.arn} "
            f"(the key policy: {by_key}; the role's policies: {by_iam})"
        )
    return None


_SNS_KMS_ERRORS = {"denied": "KMSAccessDenied", "disabled": "KMSDisabled", "invalid-state": "KMSInvalidState", "not-found": "KMSNotFound"}


def _keys_refuse(session: _Session, statements, service: str, action: str, params: dict, region: str, requests):
    """(code, message, HTTP status) when a customer managed key of the resources this call uses refuses the
    role (the topic a publish goes to; the tables an item call reads or writes), else None."""
    if service == "sns" and action in ("Publish", "PublishBatch"):
        arn = params.get("TopicArn") or params.get("TargetArn") or ""
        key_ref = getattr(gk_policy.topic(arn), "kms_master_key_id", "") or ""  # no such topic: moto answers the call
        if key_ref:
            _, region, account, _ = gk_policy.arn_parts(arn)
            refused = _key_refuses(session, statements, key_ref, account, region, gk_policy.KMS_PUBLISH_ACTIONS, "sns")
            if refused:
                # The text is the emulator's: SNS documents the codes, not their messages.
                return _SNS_KMS_ERRORS[refused[0]], refused[1], "400 Bad Request"
    if service == "dynamodb" and action in _DYNAMODB_ITEM_CALLS:
        from moto.dynamodb.models import dynamodb_backends

        # Each table once (a TransactWriteItems asks one authorization per item).
        for resource in dict.fromkeys(resource for _, resource, _ in requests):
            try:
                _, region, account, name = gk_policy.arn_parts(resource)
                if not name.startswith("table/"):
                    continue
                table = dynamodb_backends[account][region].tables.get(name.split("/")[1])
            except (ValueError, KeyError):  # not an ARN, a Region moto lacks: moto answers the call itself
                continue
            sse = getattr(table, "sse_specification", None) or {}
            # The API's SSESpecification: Enabled, and SSEType KMS (the only type; absent means KMS).
            if not (sse.get("Enabled") is True and sse.get("SSEType", "KMS") == "KMS"):
                continue
            refused = _key_refuses(session, statements, sse.get("KMSMasterKeyId") or "", account, region, KMS_ITEM_ACTIONS, "dynamodb")
            if refused:
                # The code and the message's start as users report them (aws/aws-cdk#10010); the rest is the emulator's.
                return "com.amazonaws.dynamodb.v20120810#AccessDeniedException", f"KMS key access denied error: {refused[1]}", "400 Bad Request"
    return None


# ------------------------------------------------------------------------------ control paths


_STATUS = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found", 405: "405 Method Not Allowed"}


def control(path: str, environ):
    """Answers this module's /_gatekeeper/ control paths: body bytes, or ("<status>", body bytes) for an
    error (None: not ours)."""
    global ENFORCED
    method = environ.get("REQUEST_METHOD", "GET")
    if path == "/_gatekeeper/role-credentials":
        if method != "POST":
            return _STATUS[405], b'{"error": "use POST"}'
        try:
            req = gk_control.body(environ)
        except ValueError:
            return _STATUS[400], b'{"error": "ValidationError", "message": "the body is not JSON"}'
        code, answer = issue(req.get("role_arn", ""), req.get("session_name"), req.get("duration_seconds"))
        body = json.dumps(answer).encode()
        return body if code == 200 else (_STATUS[code], body)
    if path == "/_gatekeeper/iam/denials":
        with _LOCK:
            return json.dumps(DENIALS).encode()
    if path == "/_gatekeeper/iam/denials/reset":
        with _LOCK:
            DENIALS.clear()
        return b"[]"
    if path == "/_gatekeeper/iam/enforce":
        if method == "POST":
            ENFORCED = bool(gk_control.body(environ).get("enabled", True))
        return json.dumps({"enabled": ENFORCED}).encode()
    return None
