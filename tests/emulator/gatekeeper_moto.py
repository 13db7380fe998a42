"""moto's server, extended with the EC2 endpoint-connection operations it lacks, behaving as AWS documents.

Added or replaced, typed after the EC2 API reference:
  DescribeVpcEndpointConnections   filters service-id, vpc-endpoint-id, vpc-endpoint-owner, vpc-endpoint-state,
                                   ip-address-type, vpc-endpoint-region (a Region, or `cross-region`);
                                   MaxResults/NextToken; each connection with its VpcEndpointConnectionId
                                   (vpce-con-, stable per connection) and its own Tags (CreateTags on that
                                   ID), and the IpAddressType and VpcEndpointRegion of its endpoint
  AcceptVpcEndpointConnections     per-ID failures in Unsuccessful[], never a failed call for them
  RejectVpcEndpointConnections     also revokes an `available` connection
  Create/Describe/DeleteVpcEndpointConnectionNotification
  ModifyVpcEndpointServicePermissions / DescribeVpcEndpointServicePermissions
                                   AllowedPrincipals[] with PrincipalType, Principal, ServicePermissionId,
                                   ServiceId, Tags (CreateTags on the vpce-svc-perm- ID), PermissionType;
                                   AddedPrincipals[] and ReturnValue; filters permission-type, principal,
                                   principal-type; MaxResults/NextToken
  CreateVpcEndpoint (to an endpoint service)
                                   only for a caller the service's allowed principals admit (a new service
                                   admits nobody); ServiceRegion for a cross-Region endpoint; IpAddressType
  Create/Describe/ModifyVpcEndpointServiceConfiguration, StartVpcEndpointServicePrivateDnsVerification,
  CreateTags/DeleteTags/DescribeTags on PrivateLink IDs
                                   in gk_endpoint_services (its docstring lists them)

Behaviour, each cited where it is implemented:
- An interface endpoint created (from any account, through STS AssumeRole) to a service that requires
  acceptance waits in `pendingAcceptance`; an accepted one, or one to a service that accepts without asking,
  passes through `pending` to `available`; a deleted one through `deleting` to `deleted`.
- Eventual consistency (off by default): with a lag, a new connection, a connection's state change and an
  allowed-principal change become visible to DescribeVpcEndpointConnections /
  DescribeVpcEndpointServicePermissions only after the lag. Accept and Reject act on the true state.
- Throttling per API, per account and Region, as EC2's token buckets (see EC2_UNCATEGORIZED, ec2_limit), answered with
  RequestLimitExceeded.
- Connection notifications are published to their SNS topic on Connect, Accept, Reject and Delete only where a
  real one would arrive: the topic policy (and the key policy of an encrypted topic) must let
  vpce.amazonaws.com publish, and never for a Gateway Load Balancer endpoint. The notification body is not
  documented by AWS: the one sent here is this project's stand-in (camelCase fields, like EC2's own), and
  consumers must treat it as a hint.

Control API, for tests and benchmarks (a WSGI layer in front of moto, under /_gatekeeper/):
  GET  /_gatekeeper/calls    every AWS call received, counted by "service:Action"; also "changed:<endpoint>"
                             (each connection state change made by Accept/Reject), "ec2:throttled" and
                             "ec2:throttled:<Action>", "notification:published:<event>",
                             "notification:suppressed:<reason>" (reasons: topic-policy, kms-key-policy,
                             topic-not-found, gateway-load-balancer-endpoint), "ec2:principal-not-allowed",
                             "fault:<kind>"
  GET  /_gatekeeper/timeline every AWS call received, as [name, start, end] (time.time() seconds), the newest 20,000
  POST /_gatekeeper/reset    zero the counts, clear the timeline and refill every throttling bucket
  POST /_gatekeeper/faults   {"rules": [{"match": "dynamodb:PutItem", "rate": 0.3, "kind": "throttle"}]}
                             kinds: throttle (the service's own throttling error), error500, slow (+ms),
                             floor (answered no sooner than ms after the call arrived, the emulator's own
                             processing included: a service's latency includes its processing, and calls
                             in flight together are not charged for each other's),
                             drop (the connection is closed before the service sees the request),
                             drop_after (the service handles the request, then the connection is
                             closed before the answer: the call took effect, the caller cannot know),
                             partial (events:PutEvents only: each entry fails with the rule's "entries"
                             probability, default 0.5, InternalFailure or ThrottlingException in turn, the
                             rest are put);
                             "match" is "service:Action", "service:*" or "*"; an optional "key" limits a
                             rule to one caller's access key, an optional "times" to its first N faults
  POST /_gatekeeper/ec2-throttle  {"enabled": false} turns EC2's throttling off (GATEKEEPER_EMU_EC2_THROTTLE=0
                             at start); optional "limits": {"<Action>": [bucket, refill per s] | null}
                             overrides (null: not throttled) an action's bucket; answers the settings in force
  GET  /_gatekeeper/connection-state/<vpce-id>   the connection's true state (tests' assertions only)
  POST /_gatekeeper/consistency   {"lag_ms": N} sets the eventual-consistency lag (GATEKEEPER_EMU_LAG_MS at
                             start; default 0, i.e. off); an empty body only reads it
  POST /_gatekeeper/index-lag     {"lag_ms": N}: a Query or Scan of a DynamoDB global secondary index sees the
                             table as it stood N ms ago (GATEKEEPER_EMU_INDEX_LAG_MS at start; default 0, i.e.
                             off); an empty body only reads it (gk_dynamodb)
  POST /_gatekeeper/private-dns-verification  {"service_id": "vpce-svc-...", "state": "verified" | "failed" |
                             "pendingVerification"} says what the DNS check of a service's private DNS name
                             found (the emulator has no DNS, so a name stays pendingVerification until then);
                             no "state" only reads. Answers 200 {"service_id", "private_dns_name", "state",
                             "type", "name", "value"}; 404 {"error"} for an unknown service, 409 for a service
                             with no private DNS name, 400 for another state (gk_endpoint_services)
  GET  /_gatekeeper/cloudwatch/actions  every alarm action run on a change of state: {"actions": [{"alarm",
                             "alarm_arn", "old_state", "new_state", "action", "outcome": "published" | "failed"
                             | "not-emulated", "error"}]} (gk_cloudwatch; CloudWatch shows these in the alarm's
                             history)

Run: python gatekeeper_moto.py --port 4566   (binds 127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import inspect
import io
import json
import os
import random
import re
import socket
import threading
import time
import uuid

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import EC2Backend, ec2_backends
from moto.ec2.responses import EC2Response

# The extension's other parts, each in a module of its own (imported for their patches of moto):
import gk_cloudformation  # CloudFormation resource types moto lacks, SNS-to-Lambda delivery, inert mappings
import gk_cloudwatch  # an alarm's change of state publishes to its SNS actions, as CloudWatch's service principal
import gk_control  # the control paths' JSON body, read one way
import gk_dispatch  # moto's dispatch without re-listing its package and a class's methods on every call
import gk_dynamodb  # moto's DynamoDB answers written without a model walk per attribute value (bytes unchanged)
import gk_endpoint_services  # service configurations, private DNS name verification, tags on PrivateLink IDs
import gk_iam  # IAM enforced for the functions' role credentials
import gk_policy  # resource policies read for a service principal's call (topic, key, queue, function)
import gk_sqs  # moto's ReceiveMessage linear in the queue's depth (what it answers unchanged)

# After an accept (or a create that needs none), a connection is `pending` this long before it is
# `available`, and a deleted one `deleting` this long before `deleted` (as EC2 does; the time is ours).
ACCEPT_DELAY_SECONDS = float(os.environ.get("GATEKEEPER_EMU_ACCEPT_DELAY", "0.3"))
# Eventual consistency: how long a change takes to show in Describe* (0: at once).
LAG_SECONDS = float(os.environ.get("GATEKEEPER_EMU_LAG_MS", "0")) / 1000
CONNECTION_EVENTS = ("Accept", "Connect", "Delete", "Reject")
_LOCK = threading.RLock()
# Connection notifications, by ID: {"id", "service_id", "topic_arn", "events", "account", "region"}.
_NOTIFICATIONS: dict[str, dict] = {}
# Every call received, by "service:Action" (and injected faults by "fault:kind").
CALLS: dict[str, int] = {}
# The call being served by this thread: its access key (set by the WSGI layer), and CreateVpcEndpoint's
# parameters moto's backend does not take (set around that action).
_REQUEST = threading.local()


# Every call received, as [name, start, end] (wall-clock seconds, time.time()), the newest _TIMELINE_MAX: how
# the calls of one invocation overlapped, for counting its round trips (bench/run.py).
TIMELINE: list[list] = []
_TIMELINE_MAX = 20000


def _count(action: str) -> None:
    with _LOCK:
        CALLS[action] = CALLS.get(action, 0) + 1


def _rand_hex(n: int = 17) -> str:
    return "".join(random.choice("0123456789abcdef") for _ in range(n))


class _Error(EC2ClientError):
    def __init__(self, code: str, message: str):
        super().__init__(code, message)


# ---------------------------------------------------------------------------------------------- model


def _all_backends():
    for account_id in list(ec2_backends.keys()):
        regions = ec2_backends[account_id]
        for region in list(regions.keys()):
            yield regions[region]


def _service_by_name(service_name: str, region: str | None = None):
    for backend in _all_backends():
        if region is not None and backend.region_name != region:
            continue
        for svc in list(backend.configurations.values()):
            if svc.service_name == service_name:
                return svc
    return None


def _state(ep) -> str:
    """The connection's true state (what Accept and Reject act on)."""
    return ep.state


# Eventual consistency. EC2 API reference, "Eventual consistency in the Amazon EC2 API": the result of a
# command "might not be immediately visible to all subsequent commands"; a resource just created may be
# answered as not existing, and a describe may show an older state. AWS documents no duration, so the lag
# is a setting (default 0, as tests of everything else want). The model: each connection keeps its state
# changes as (time, new state), each service its allowed principals as (time, snapshot); a Describe shows
# the latest change older than the lag, and nothing at all before the first one (a new connection is not
# found yet). Accept and Reject act on the true state, not the visible one: AWS documents nothing either
# way, and acting on the truth is the answer under which a caller that trusts Describe is most wrong (it may
# see `pendingAcceptance` for a connection that Accept then reports in the wrong state, or not see one that
# Accept accepts), which is what the code under test must survive.
def _set_state(ep, state: str) -> None:
    with _LOCK:
        ep.state = state
        history = getattr(ep, "_gk_history", None)
        if history is None:
            history = ep._gk_history = []
        history.append((time.monotonic(), state))


def _visible_state(ep, cutoff: float) -> str | None:
    with _LOCK:
        for at, state in reversed(getattr(ep, "_gk_history", [])):
            if at <= cutoff:
                return state
    return None


def _cutoff() -> float:
    return time.monotonic() - LAG_SECONDS


def _become_available(ep) -> None:
    with _LOCK:
        if ep.state == "pending":
            _set_state(ep, "available")


def _become_deleted(ep) -> None:
    with _LOCK:
        if ep.state == "deleting":
            _set_state(ep, "deleted")


def _after(seconds: float, fn, ep) -> None:
    timer = threading.Timer(seconds, fn, args=(ep,))
    timer.daemon = True
    timer.start()


def _connections_of(provider: EC2Backend):
    owned = {svc.id for svc in provider.configurations.values()}
    for backend in _all_backends():
        for ep in list(backend.vpc_end_points.values()):
            svc = getattr(ep, "_gk_service", None)
            if svc is not None and svc.id in owned and svc.ec2_backend is provider:
                yield svc, ep


# ----------------------------------------------------------------------------- allowed principals
# PrivateLink guide, "Manage permissions" (configure-endpoint-service.html#add-remove-permissions): "By
# default, your endpoint service is not available to service consumers. You must add permissions that allow
# specific AWS principals to create an interface VPC endpoint"; the principals are an account,
# arn:aws:iam::<account>:root ("includes all principals in the account"), a role
# arn:aws:iam::<account>:role/<name>, a user arn:aws:iam::<account>:user/<name>, or `*` ("All principals in
# all AWS accounts"); "If you remove permissions, it does not affect existing connections". EC2 API
# reference, ModifyVpcEndpointServicePermissions (AddAllowedPrincipals, RemoveAllowedPrincipals; answers
# ReturnValue and AddedPrincipals[]) and DescribeVpcEndpointServicePermissions (AllowedPrincipals[] of
# PrincipalType, Principal, ServicePermissionId, ServiceId, Tags, PermissionType; filters permission-type,
# principal, principal-type;
# "Principal ARNs with path components aren't supported"). moto 5.2.1 keeps the principals as bare strings,
# answers only Principal, never enforces them, and has no filters or pages: replaced here.
PRINCIPAL_TYPES = ("All", "Service", "OrganizationUnit", "Account", "User", "Role")


def _principal_type(principal: str) -> str:
    if principal == "*":
        return "All"
    if re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:root", principal):
        return "Account"
    if re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@-]+", principal):
        return "Role"
    if re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:user/[\w+=,.@-]+", principal):
        return "User"
    if re.fullmatch(r"arn:aws[a-z-]*:organizations::\d{12}:ou/o-[a-z0-9]+/ou-[a-z0-9-]+", principal):
        return "OrganizationUnit"
    if re.fullmatch(r"[a-z0-9.-]+\.amazonaws\.com", principal):
        return "Service"
    # The error code for a principal EC2 does not take is not documented; InvalidPrincipal is this
    # emulator's choice. (reconcile's allowed-principals sync does send principals; it reads an error of
    # ModifyVpcEndpointServicePermissions by its kind, never its code, so any code serves.)
    raise _Error("InvalidPrincipal", f"Invalid principal {principal}")


def _perms(svc) -> dict[str, dict]:
    """The service's allowed principals (true state), principal -> {"id", "type"}; creates the model lazily."""
    with _LOCK:
        perms = getattr(svc, "_gk_perms", None)
        if perms is None:
            perms = svc._gk_perms = {}
            for p in getattr(svc, "principals", []) or []:
                perms[p] = {"id": f"vpce-svc-perm-{_rand_hex()}", "type": _principal_type(p)}
            svc._gk_perm_history = [(float("-inf"), [(p, dict(v)) for p, v in perms.items()])]
        return perms


def _modify_vpc_endpoint_service_permissions(self, service_id, add_principals=None, remove_principals=None):
    """Backend form (also what a CloudFormation AWS::EC2::VPCEndpointServicePermissions calls): returns the
    principals added, as [(principal, {"id", "type"})]."""
    config = self.describe_vpc_endpoint_service_configurations([service_id])[0]
    add_principals = list(add_principals or [])
    remove = set(remove_principals or [])
    types = {p: _principal_type(p) for p in add_principals}  # all valid, or nothing changes
    added = []
    with _LOCK:
        perms = _perms(config)
        for p in add_principals:
            # What EC2 does with a principal it already allows, and with the removal of one it does not, is
            # not documented: here the first keeps its permission (and is not in AddedPrincipals) and the
            # second is a no-op. reconcile adds only principals it read as missing and removes only ones it
            # read as present, so it depends on neither.
            if p not in perms:
                perms[p] = {"id": f"vpce-svc-perm-{_rand_hex()}", "type": types[p]}
                added.append((p, dict(perms[p])))
        for p in remove:
            perms.pop(p, None)
        config.principals = list(perms)
        config._gk_perm_history.append((time.monotonic(), [(p, dict(v)) for p, v in perms.items()]))
    return added


def _describe_vpc_endpoint_service_permissions(self, service_id):
    """Backend form, as moto's: the principals (visible after the lag)."""
    config = self.describe_vpc_endpoint_service_configurations([service_id])[0]
    return [p for p, _ in _visible_perms(config)]


def _visible_perms(svc) -> list[tuple[str, dict]]:
    _perms(svc)
    cutoff = _cutoff()
    with _LOCK:
        for at, snapshot in reversed(svc._gk_perm_history):
            if at <= cutoff:
                return list(snapshot)
    return []


EC2Backend.modify_vpc_endpoint_service_permissions = _modify_vpc_endpoint_service_permissions
EC2Backend.describe_vpc_endpoint_service_permissions = _describe_vpc_endpoint_service_permissions


def _caller_principals(account: str) -> set[str]:
    """The principal ARNs the caller of this request is (the account's root stands for every principal of
    the account, so it is always one of them)."""
    found = {f"arn:aws:iam::{account}:root"}
    key = getattr(_REQUEST, "key", "")
    if not key:
        return found
    try:
        from moto.sts.models import sts_backends

        for acct in list(sts_backends.keys()):
            for backend in list(sts_backends[acct].values()):
                role = backend.get_assumed_role_from_access_key(key)
                if role is not None and role.account_id == account:
                    name = role.role_arn.split("/")[-1]  # "Principal ARNs with path components aren't supported"
                    found |= {role.role_arn, f"arn:aws:iam::{account}:role/{name}"}
                    return found
    except Exception:  # noqa: BLE001 - another moto's STS: the account alone
        return found
    try:
        from moto.iam.models import iam_backends

        for backend in list(iam_backends[account].values()):
            user = backend.get_user_from_access_key_id(key)
            if user is not None:
                found.add(user.arn)
    except Exception:  # noqa: BLE001
        pass
    return found


def _admits(svc, account: str) -> bool:
    """Whether the service's allowed principals (true state: see the consistency note) admit the caller."""
    allowed = set(_perms(svc))
    return "*" in allowed or bool(allowed & _caller_principals(account))


# ------------------------------------------------------------------------- connection notifications
# PrivateLink guide, "Receive alerts for endpoint service events" (create-notification-endpoint-service.html):
# the topic needs an access policy letting the service principal vpce.amazonaws.com SNS:Publish, with
# aws:SourceArn (ArnLike arn:aws:ec2:<region>:<account>:vpc-endpoint-service/<id>) and aws:SourceAccount
# (StringEquals) against the confused deputy; an encrypted topic's KMS key policy must let
# vpce.amazonaws.com kms:GenerateDataKey* and kms:Decrypt, with the same conditions. EC2 API reference,
# CreateVpcEndpointConnectionNotification: "You can create a connection notification for interface endpoints
# only" - so no notification for a Gateway Load Balancer endpoint. (Whether AWS refuses to create one for a
# Gateway Load Balancer service, and with which error, is not documented: the emulator creates it, and
# publishes nothing for such endpoints.)
# The policies are read by gk_policy (an explicit Deny wins, else an Allow is needed; its docstring says
# what is evaluated), for the caller vpce.amazonaws.com with the notification's aws:SourceArn and
# aws:SourceAccount. So a topic with moto's (and AWS's) default policy, whose Allow has the condition
# AWS:SourceOwner, gets nothing: add the documented statement.
VPCE_PRINCIPAL = "vpce.amazonaws.com"


def _delivery_blocked(svc, topic_arn: str) -> str | None:
    """Why a notification for `svc` would not reach `topic_arn` (None: it would)."""
    provider = svc.ec2_backend
    ctx = gk_policy.on_behalf_of(
        f"arn:aws:ec2:{provider.region_name}:{provider.account_id}:vpc-endpoint-service/{svc.id}", provider.account_id
    )
    return gk_policy.topic_refuses(topic_arn, VPCE_PRINCIPAL, ctx)


def _publish(svc, ep, event: str) -> None:
    from moto.sns.models import sns_backends

    provider = svc.ec2_backend
    with _LOCK:
        targets = [
            n
            for n in _NOTIFICATIONS.values()
            if n["service_id"] == svc.id and event in n["events"] and n["account"] == provider.account_id
        ]
    for n in targets:
        if (ep.vpc_endpoint_type or "").lower() == "gatewayloadbalancer":
            _count("notification:suppressed:gateway-load-balancer-endpoint")
            continue
        blocked = _delivery_blocked(svc, n["topic_arn"])
        if blocked:
            _count(f"notification:suppressed:{blocked}")
            continue
        body = {
            "connectionNotificationId": n["id"],
            "connectionEvent": event,
            "serviceId": svc.id,
            "vpcEndpointId": ep.id,
            "vpcEndpointOwner": ep.ec2_backend.account_id,
            "vpcEndpointState": _state(ep),
            "eventTime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        }
        _, _, _, region, account, _ = n["topic_arn"].split(":", 5)
        sns = sns_backends[account][region]
        sns.publish(json.dumps(body), arn=n["topic_arn"], subject=f"Endpoint Connection State Change: {event}")
        _count(f"notification:published:{event}")


# ----------------------------------------------------------------------------- endpoints (consumer side)

_orig_create = EC2Backend.create_vpc_endpoint
_orig_delete = EC2Backend.delete_vpc_endpoints
_CREATE_SIGNATURE = inspect.signature(_orig_create)
_VPCE_SERVICE_NAME = re.compile(r"com\.amazonaws\.vpce\.[a-z0-9-]+\.vpce-svc-[0-9a-f]+")


def _not_visible(service_name: str) -> _Error:
    # What CreateVpcEndpoint answers for a service the caller may not see (its allowed principals do not
    # admit the caller, or it is not offered in the caller's Region) is not documented. A service a consumer
    # may not use is not visible to it; the answer consumers report for a service they cannot see is
    # InvalidServiceName "The Vpc Endpoint Service '<name>' does not exist", which the emulator gives.
    # Gatekeeper's code never depends on it (it never creates endpoints).
    return _Error("InvalidServiceName", f"The Vpc Endpoint Service '{service_name}' does not exist")


def _create_vpc_endpoint(self, *args, **kwargs):
    bound = _CREATE_SIGNATURE.bind(self, *args, **kwargs)
    name = bound.arguments.get("service_name") or ""
    kind = (bound.arguments.get("endpoint_type") or "").lower()
    extra = getattr(_REQUEST, "create", None) or {}
    svc = None
    if kind in ("interface", "gatewayloadbalancer"):
        # EC2 API reference, CreateVpcEndpoint: ServiceRegion, "The Region where the service is hosted. The
        # default is the current Region." PrivateLink guide, cross-Region access (Nov 2024): a consumer in
        # another Region reaches a service whose provider added that Region to its supported Regions.
        service_region = extra.get("service_region") or self.region_name
        svc = _service_by_name(name, service_region)
        if svc is None and _VPCE_SERVICE_NAME.fullmatch(name):
            raise _not_visible(name)
        if svc is not None:
            if service_region != self.region_name and self.region_name not in (svc._supported_region_names or []):
                raise _not_visible(name)
            if not _admits(svc, self.account_id):
                _count("ec2:principal-not-allowed")
                raise _not_visible(name)
    ep = _orig_create(self, *args, **kwargs)
    if svc is not None:
        ep._gk_service = svc
        # EC2 API reference, VpcEndpointConnection: vpcEndpointConnectionId, "The ID of the VPC endpoint
        # connection" (vpce-con-, a resource of its own: the Service Authorization Reference's
        # vpc-endpoint-connection). One per connection, made with it and never changed.
        ep._gk_connection_id = f"vpce-con-{_rand_hex()}"
        # EC2 API reference, CreateVpcEndpoint IpAddressType (ipv4 | dualstack | ipv6); with IPv4 subnets
        # (the only ones the emulator's callers make) an endpoint is ipv4 unless asked otherwise.
        ep._gk_ip_address_type = extra.get("ip_address_type") or "ipv4"
        # Amazon VPC User Guide, "Interface endpoint lifecycle": an endpoint waits in pendingAcceptance for the
        # provider, or, to a service that accepts without asking, goes through pending to available, as an
        # accepted one does ("it can take time ... for the state to be available"; the delay is ours).
        if _acceptance_required(svc):
            _set_state(ep, "pendingAcceptance")
        else:
            _set_state(ep, "pending")
            _after(ACCEPT_DELAY_SECONDS, _become_available, ep)
        _publish(svc, ep, "Connect")
    return ep


def _acceptance_required(svc) -> bool:
    value = svc.acceptance_required
    return value.lower() != "false" if isinstance(value, str) else bool(value)


def _delete_vpc_endpoints(self, vpce_ids=None):
    before = {i: self.vpc_end_points[i].state for i in vpce_ids or [] if i in self.vpc_end_points}
    _orig_delete(self, vpce_ids)
    for vpce_id, was in before.items():
        ep = self.vpc_end_points.get(vpce_id)
        svc = getattr(ep, "_gk_service", None) if ep is not None else None
        if svc is not None and was not in ("deleting", "deleted"):
            # The same lifecycle: a deleted endpoint is deleting, then deleted (the delay is ours).
            _set_state(ep, "deleting")
            _after(ACCEPT_DELAY_SECONDS, _become_deleted, ep)
            _publish(svc, ep, "Delete")


EC2Backend.create_vpc_endpoint = _create_vpc_endpoint
EC2Backend.delete_vpc_endpoints = _delete_vpc_endpoints

_orig_create_response = EC2Response.create_vpc_endpoint


def create_vpc_endpoint(self) -> ActionResult:
    _REQUEST.create = {"service_region": self._get_param("ServiceRegion"), "ip_address_type": self._get_param("IpAddressType")}
    try:
        return _orig_create_response(self)
    finally:
        _REQUEST.create = None


# -------------------------------------------------------------------------------------------- actions


def _region_filter(svc, ep, values) -> bool:
    # EC2 API reference, DescribeVpcEndpointConnections: "vpc-endpoint-region - The Region of the endpoint or
    # cross-region to find endpoints for other Regions."
    region = ep.ec2_backend.region_name
    return region in values or ("cross-region" in values and region != svc.ec2_backend.region_name)


_FILTERS = {
    "service-id": lambda svc, ep, state, v: svc.id in v,
    "vpc-endpoint-id": lambda svc, ep, state, v: ep.id in v,
    "vpc-endpoint-owner": lambda svc, ep, state, v: ep.ec2_backend.account_id in v,
    "vpc-endpoint-state": lambda svc, ep, state, v: state in v,
    "vpc-endpoint-region": lambda svc, ep, state, v: _region_filter(svc, ep, v),
    "ip-address-type": lambda svc, ep, state, v: getattr(ep, "_gk_ip_address_type", "ipv4") in v,
}


def _filters(resp: EC2Response, allowed) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in resp._get_param("Filters", []) or []:
        name = f.get("Name")
        if name not in allowed:
            raise _Error("InvalidParameterValue", f"The filter '{name}' is invalid")
        out.setdefault(name, []).extend(f.get("Values", []))
    return out


def _page(resp: EC2Response, items: list, lo: int = 5, hi: int = 1000, key=None):
    # EC2 API reference (the Describe* actions here): MaxResults "can be between 5 and 1,000; if MaxResults
    # is given a value larger than 1,000, only 1,000 results are returned." With `key` (items sorted by it),
    # the token is the last key returned and the next page starts after it, so items created between two
    # pages neither repeat nor push others out; without, an offset.
    max_results = resp._get_param("MaxResults")
    token = resp._get_param("NextToken")
    start = 0
    if token and key is not None:
        start = next((i for i, item in enumerate(items) if key(item) > token), len(items))
    elif token:
        try:
            start = int(token)
        except ValueError:
            raise _Error("InvalidNextToken", "The token is invalid")
    if max_results is None:
        return items[start:], None
    max_results = min(int(max_results), hi)
    if max_results < lo:
        raise _Error("InvalidParameterValue", f"MaxResults must be between {lo} and {hi}")
    end = start + max_results
    if end >= len(items):
        return items[start:end], None
    return items[start:end], (key(items[end - 1]) if key is not None else str(end))


def _tags(backend, resource_id: str) -> list[dict]:
    try:
        found = backend.describe_tags(filters={"resource-id": [resource_id]})
    except Exception:  # noqa: BLE001
        return []
    return [{"Key": t.get("key", t.get("Key")), "Value": t.get("value", t.get("Value"))} for t in found]


def describe_vpc_endpoint_connections(self) -> ActionResult:
    filters = _filters(self, _FILTERS)
    cutoff = _cutoff()
    items = []
    for svc, ep in _connections_of(self.ec2_backend):
        state = _visible_state(ep, cutoff)
        if state is None:  # not visible yet (eventual consistency)
            continue
        if all(_FILTERS[k](svc, ep, state, v) for k, v in filters.items()):
            items.append(
                {
                    "ServiceId": svc.id,
                    "VpcEndpointId": ep.id,
                    "VpcEndpointOwner": ep.ec2_backend.account_id,
                    "VpcEndpointState": state,
                    "CreationTimestamp": ep.creation_timestamp,
                    "DnsEntries": ep.dns_entries or [],
                    "NetworkLoadBalancerArns": list(svc.network_load_balancer_arns),
                    "GatewayLoadBalancerArns": list(svc.gateway_load_balancer_arns),
                    "IpAddressType": getattr(ep, "_gk_ip_address_type", "ipv4"),
                    "VpcEndpointConnectionId": ep._gk_connection_id,
                    # The connection's own tags (CreateTags on its vpce-con- ID, by the service's owner: see
                    # gk_endpoint_services), never the consumer's tags on its endpoint.
                    "Tags": _tags(svc.ec2_backend, ep._gk_connection_id),
                    "VpcEndpointRegion": ep.ec2_backend.region_name,
                }
            )
    # AWS documents no order for DescribeVpcEndpointConnections. The emulator answers in an order of its own
    # that is neither creation nor ID order (a hash of the ID with a salt), paged by that hash, so a caller
    # that leans on an order it was never promised shows up in the tests.
    items.sort(key=_listing_order)
    page, token = _page(self, items, key=_listing_order)
    result = {"VpcEndpointConnections": page}
    if token:
        result["NextToken"] = token
    return ActionResult(result)


def _act(self, action: str, allowed_from: tuple[str, ...], new_state: str, event: str) -> ActionResult:
    service_id = self._get_param("ServiceId")
    ids = self._get_param("VpcEndpointIds", []) or []
    if not service_id:
        raise _Error("MissingParameter", "The request must contain the parameter ServiceId")
    if not ids:
        raise _Error("MissingParameter", "The request must contain the parameter VpcEndpointId")
    svc = self.ec2_backend.configurations.get(service_id)
    if svc is None:
        raise _Error("InvalidVpcEndpointServiceId.NotFound", f"The VpcEndpointService Id '{service_id}' does not exist")
    conns = {ep.id: ep for s, ep in _connections_of(self.ec2_backend) if s.id == service_id}
    unsuccessful, changed = [], []
    with _LOCK:
        for vpce_id in ids:
            ep = conns.get(vpce_id)
            if ep is None:
                code, msg = "InvalidVpcEndpointId.NotFound", f"The Vpc Endpoint Id '{vpce_id}' does not exist"
            elif _state(ep) not in allowed_from:
                # The code EC2 gives a connection in the wrong state is not documented (only ...NotFound is,
                # by usage). The emulator answers InvalidState; callers must not depend on the code.
                code, msg = "InvalidState", f"Vpc Endpoint {vpce_id} is in state {_state(ep)}"
            else:
                _set_state(ep, new_state)
                if new_state == "pending":
                    _after(ACCEPT_DELAY_SECONDS, _become_available, ep)
                changed.append(ep)
                continue
            unsuccessful.append({"ResourceId": vpce_id, "Error": {"Code": code, "Message": msg}})
    for ep in changed:
        _count(f"changed:{ep.id}")
        _publish(svc, ep, event)
    return ActionResult({"Unsuccessful": unsuccessful})


def accept_vpc_endpoint_connections(self) -> ActionResult:
    return _act(self, "AcceptVpcEndpointConnections", ("pendingAcceptance",), "pending", "Accept")


def reject_vpc_endpoint_connections(self) -> ActionResult:
    return _act(self, "RejectVpcEndpointConnections", ("pendingAcceptance", "pending", "available"), "rejected", "Reject")


def _own_service(self, service_id):
    if not service_id:
        raise _Error("MissingParameter", "The request must contain the parameter ServiceId")
    svc = self.ec2_backend.configurations.get(service_id)
    if svc is None:
        raise _Error("InvalidVpcEndpointServiceId.NotFound", f"The VpcEndpointService Id '{service_id}' does not exist")
    return svc


# EC2 API reference, ModifyVpcEndpointServicePermissions PermissionType: vpc-endpoint ("Principals can create
# VPC endpoints that connect to the endpoint service") | transit-gateway-attachment (Gateway Load Balancer
# services only); "Default: vpc-endpoint". AllowedPrincipal and AddedPrincipal carry permissionType. Only
# vpc-endpoint permissions are emulated. RemoveAllowedPrincipals naming a principal that is not allowed: AWS
# documents nothing; the emulator leaves the others alone and answers ReturnValue true (the removal's
# outcome, that principal not being allowed, holds).
def _permission_type(resp: EC2Response) -> str:
    ptype = resp._get_param("PermissionType") or "vpc-endpoint"
    if ptype == "transit-gateway-attachment":
        raise _Error("InvalidParameterValue", "transit-gateway-attachment permissions are not emulated")
    if ptype != "vpc-endpoint":
        raise _Error("InvalidParameterValue", f"Invalid PermissionType {ptype}")
    return ptype


def modify_vpc_endpoint_service_permissions(self) -> ActionResult:
    svc = _own_service(self, self._get_param("ServiceId"))
    ptype = _permission_type(self)
    added = self.ec2_backend.modify_vpc_endpoint_service_permissions(
        svc.id, self._get_param("AddAllowedPrincipals", []) or [], self._get_param("RemoveAllowedPrincipals", []) or []
    )
    return ActionResult(
        {
            "AddedPrincipals": [
                {"PrincipalType": v["type"], "Principal": p, "ServicePermissionId": v["id"], "ServiceId": svc.id, "PermissionType": ptype}
                for p, v in added or []
            ],
            "ReturnValue": True,
        }
    )


_PERM_FILTERS = {
    "permission-type": lambda p, v: "vpc-endpoint",
    "principal": lambda p, v: p,
    "principal-type": lambda p, v: v["type"],
}


def describe_vpc_endpoint_service_permissions(self) -> ActionResult:
    svc = _own_service(self, self._get_param("ServiceId"))
    filters = _filters(self, _PERM_FILTERS)
    items = [
        {
            "PrincipalType": v["type"],
            "Principal": p,
            "ServicePermissionId": v["id"],
            "ServiceId": svc.id,
            # The permission's own tags: CreateTags on its vpce-svc-perm- ID (see gk_endpoint_services).
            "Tags": _tags(self.ec2_backend, v["id"]),
            "PermissionType": "vpc-endpoint",
        }
        for p, v in _visible_perms(svc)
        if all(_PERM_FILTERS[k](p, v) in vals for k, vals in filters.items())
    ]
    page, token = _page(self, items)
    result = {"AllowedPrincipals": page}
    if token:
        result["NextToken"] = token
    return ActionResult(result)


def _notification_dict(n: dict) -> dict:
    return {
        "ConnectionNotificationId": n["id"],
        "ServiceId": n["service_id"],
        "ConnectionNotificationType": "Topic",
        "ConnectionNotificationArn": n["topic_arn"],
        "ConnectionEvents": list(n["events"]),
        "ConnectionNotificationState": "Enabled",
    }


def create_vpc_endpoint_connection_notification(self) -> ActionResult:
    service_id = self._get_param("ServiceId")
    endpoint_id = self._get_param("VpcEndpointId")
    topic_arn = self._get_param("ConnectionNotificationArn")
    events = self._get_param("ConnectionEvents", []) or []
    if bool(service_id) == bool(endpoint_id):
        raise _Error("InvalidParameterCombination", "Specify exactly one of ServiceId and VpcEndpointId")
    if endpoint_id:
        raise _Error("InvalidParameterValue", "Only endpoint service notifications are emulated")
    if service_id not in self.ec2_backend.configurations:
        raise _Error("InvalidVpcEndpointServiceId.NotFound", f"The VpcEndpointService Id '{service_id}' does not exist")
    if not topic_arn or not topic_arn.startswith("arn:aws:sns:"):
        raise _Error("InvalidParameterValue", "ConnectionNotificationArn must be an SNS topic ARN")
    from moto.sns.models import sns_backends

    region = topic_arn.split(":")[3]
    if topic_arn not in sns_backends[self.current_account][region].topics:
        raise _Error("InvalidParameterValue", f"Topic {topic_arn} does not exist")
    if not events or any(e not in CONNECTION_EVENTS for e in events):
        raise _Error("InvalidParameterValue", f"ConnectionEvents must be among {', '.join(CONNECTION_EVENTS)}")
    n = {
        "id": f"vpce-nfn-{_rand_hex()}",
        "service_id": service_id,
        "topic_arn": topic_arn,
        "events": list(dict.fromkeys(events)),
        "account": self.current_account,
        "region": self.region,
    }
    with _LOCK:
        _NOTIFICATIONS[n["id"]] = n
    result = {"ConnectionNotification": _notification_dict(n)}
    token = self._get_param("ClientToken")
    if token:
        result["ClientToken"] = token
    return ActionResult(result)


_NFN_FILTERS = {
    "connection-notification-arn": lambda n: n["topic_arn"],
    "connection-notification-id": lambda n: n["id"],
    "connection-notification-state": lambda n: "Enabled",
    "connection-notification-type": lambda n: "Topic",
    "service-id": lambda n: n["service_id"],
    "vpc-endpoint-id": lambda n: "",
}


def _mine(self):
    with _LOCK:
        return [n for n in _NOTIFICATIONS.values() if n["account"] == self.current_account and n["region"] == self.region]


def describe_vpc_endpoint_connection_notifications(self) -> ActionResult:
    wanted = self._get_param("ConnectionNotificationId")
    filters = _filters(self, _NFN_FILTERS)
    mine = _mine(self)
    if wanted and wanted not in {n["id"] for n in mine}:
        raise _Error("InvalidConnectionNotification", f"The connection notification {wanted} does not exist")
    items = [
        _notification_dict(n)
        for n in mine
        if (not wanted or n["id"] == wanted) and all(_NFN_FILTERS[k](n) in v for k, v in filters.items())
    ]
    page, token = _page(self, items)
    result = {"ConnectionNotificationSet": page}
    if token:
        result["NextToken"] = token
    return ActionResult(result)


def delete_vpc_endpoint_connection_notifications(self) -> ActionResult:
    ids = self._get_param("ConnectionNotificationIds", []) or []
    mine = {n["id"] for n in _mine(self)}
    unsuccessful = []
    with _LOCK:
        for i in ids:
            if i in mine:
                del _NOTIFICATIONS[i]
            else:
                unsuccessful.append(
                    {"ResourceId": i, "Error": {"Code": "InvalidConnectionNotification", "Message": f"{i} does not exist"}}
                )
    return ActionResult({"Unsuccessful": unsuccessful})


for _fn in (
    describe_vpc_endpoint_connections,
    accept_vpc_endpoint_connections,
    reject_vpc_endpoint_connections,
    create_vpc_endpoint_connection_notification,
    describe_vpc_endpoint_connection_notifications,
    delete_vpc_endpoint_connection_notifications,
    create_vpc_endpoint,
    modify_vpc_endpoint_service_permissions,
    describe_vpc_endpoint_service_permissions,
):
    setattr(EC2Response, _fn.__name__, _fn)


# ------------------------------------------------------------------------------------ WSGI layer

# EC2 developer guide, "Request throttling for the Amazon EC2 API" (https://docs.aws.amazon.com/ec2/latest/devguide/
# ec2-api-throttling.html): EC2 throttles "for each AWS account on a per-Region basis", with the token bucket
# algorithm; under request rate limiting "each API is evaluated individually ... Each request that you make
# removes one token from the API's bucket", buckets refill at a set rate up to their size, and an exceeded
# limit answers RequestLimitExceeded. The sizes and refill rates are the page's: its "Uncategorized actions"
# table names the actions below ("API actions that receive their own token bucket sizes and refill rates");
# any other action is in its category: "Non-mutating actions", "The Describe*, List*, Search*, and Get* API
# actions that are not included in another category", 100 and 20 per second; "Mutating actions", "All
# mutating API actions that are not Resource-intensive actions or Uncategorized actions", 50 and 5 per second.
# Not modelled: the smaller bucket of the "Unfiltered and unpaginated non-mutating actions" (DescribeInstances,
# DescribeNetworkInterfaces, ... when asked with neither a filter nor pagination: 50 and 10), the resource
# token buckets of RunInstances and its kin, and the console's own category; Gatekeeper calls none of them.
EC2_UNCATEGORIZED: dict[str, tuple[float, float]] = {
    "AcceptVpcEndpointConnections": (10.0, 1.0),
    "RejectVpcEndpointConnections": (10.0, 1.0),
    "CreateVpcEndpoint": (4.0, 0.3),
    "ModifyVpcEndpoint": (4.0, 0.3),
    "DeleteVpcEndpoints": (4.0, 0.3),
    "CreateVpcEndpointServiceConfiguration": (10.0, 1.0),
    "ModifyVpcEndpointServiceConfiguration": (10.0, 1.0),
    "DeleteVpcEndpointServiceConfigurations": (10.0, 1.0),
    "CreateTags": (100.0, 10.0),
    "DeleteTags": (100.0, 10.0),
}
NON_MUTATING = (100.0, 20.0)
MUTATING = (50.0, 5.0)
EC2_LIMITS: dict[str, tuple[float, float] | None] = dict(EC2_UNCATEGORIZED)  # a test's overrides (None: unthrottled)


def ec2_limit(action: str) -> tuple[float, float] | None:
    """(bucket size, refill per second) of an EC2 action, as the throttling page gives it."""
    if action in EC2_LIMITS:
        return EC2_LIMITS[action]
    return NON_MUTATING if action.startswith(("Describe", "List", "Search", "Get")) else MUTATING


EC2_THROTTLE = os.environ.get("GATEKEEPER_EMU_EC2_THROTTLE", "1") != "0"
_BUCKETS: dict[tuple[str, str, str], list[float]] = {}  # (account, region, action) -> [tokens, last refill]
_FAULTS: list[dict] = []
_FAULT_RNG = random.Random(7)
# The salt of the listing order below, fixed so that a run repeats; GATEKEEPER_EMU_ORDER_SALT gives another
# order (the server prints the one it uses).
_ORDER_SALT = os.environ.get("GATEKEEPER_EMU_ORDER_SALT") or "gatekeeper"


def _spend(rule: dict) -> bool:
    """Whether a fault rule that matched a call still applies: a rule with "times" applies to that many calls."""
    if "times" not in rule:
        return True
    with _LOCK:
        left = int(rule.get("times", 0))
        if left <= 0:
            return False
        rule["times"] = left - 1
        return True


def _listing_order(item: dict) -> str:
    return hashlib.sha256((_ORDER_SALT + item["VpcEndpointId"]).encode()).hexdigest()

# The throttling error each protocol family answers with.
_THROTTLE_JSON = {
    "dynamodb": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "events": "ThrottlingException",
    "sqs": "com.amazonaws.sqs#RequestThrottled",
}
# SNS documents two faces for a throttled call: the API reference's ThrottledException (code "Throttled",
# HTTP 429: the SNS API model), and the Knowledge Center's "How do I troubleshoot ThrottlingException and
# Rate exceeded errors in Amazon SNS?" ("An error occurred (ThrottlingException) when calling the publish
# operation: Rate exceeded"). The SDK's standard retry takes the second as throttling and not the first
# (429 is not among its transient statuses), so the two reach the caller differently: the injected
# throttle answers them in turn, so that code is tried under both.
_SNS_THROTTLES = (("Throttled", "429 Too Many Requests"), ("ThrottlingException", "400 Bad Request"))
_SNS_THROTTLE_TURN = [0]
# The error a service answers for its own failure (HTTP 500), as each API model names it; EC2's from the EC2 API
# reference, "Error codes" (InternalError); any other, the common error InternalFailure ("Common errors").
_INTERNAL_ERROR = {"dynamodb": "com.amazonaws.dynamodb.v20120810#InternalServerError", "events": "InternalException",
                   "sns": "InternalError", "ec2": "InternalError"}


def _throttle_answer(service: str) -> tuple[str, str]:
    """(code, HTTP status) of `service`'s own throttling error. EC2's RequestLimitExceeded is documented by its
    code (EC2 API reference, "Request throttling"); its status, 503, is what users report (AWS does not
    document it). DynamoDB, SQS and EventBridge answer 400 with their models' codes; another awsQuery service
    the generic Throttling."""
    if service == "sns":
        with _LOCK:
            turn = _SNS_THROTTLE_TURN[0]
            _SNS_THROTTLE_TURN[0] += 1
        return _SNS_THROTTLES[turn % len(_SNS_THROTTLES)]
    if service == "ec2":
        return "RequestLimitExceeded", "503 Service Unavailable"
    return _THROTTLE_JSON.get(service, "Throttling"), "400 Bad Request"


def _take_token(account: str, region: str, action: str) -> bool:
    limit = ec2_limit(action)
    if limit is None:
        return True
    size, refill = limit
    with _LOCK:
        now = time.monotonic()
        tokens, last = _BUCKETS.get((account, region, action), [size, now])
        tokens = min(size, tokens + (now - last) * refill)
        if tokens < 1.0:
            _BUCKETS[(account, region, action)] = [tokens, now]
            return False
        _BUCKETS[(account, region, action)] = [tokens - 1.0, now]
        return True


def _identify(environ) -> tuple[str, str, str, bytes, str]:
    """(service, action, access key, body, region) of a request, from SigV4's scope and the protocol."""
    from urllib.parse import parse_qs

    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=([^/]+)/[^/]+/([^/]+)/([^/]+)/", auth)
    key, region, service = (m.group(1), m.group(2), m.group(3)) if m else ("", "", "unknown")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        action = target.rsplit(".", 1)[-1]
    else:
        qs = parse_qs(body.decode("utf-8", "replace")) if body else parse_qs(environ.get("QUERY_STRING", ""))
        action = (qs.get("Action") or ["unknown"])[0]
    return service, action, key, body, region


def _account_of(key: str) -> str:
    try:
        from moto.iam.models import get_account_id_from

        return get_account_id_from(key)
    except Exception:  # noqa: BLE001 - older/newer moto: fall back to one shared bucket
        return key


def _error(start_response, service: str, code: str, message: str, status: str):
    if service in _THROTTLE_JSON or service in ("dynamodb", "events"):
        body = json.dumps({"__type": code, "message": message}).encode()
        ctype = "application/x-amz-json-1.0"
    elif service != "ec2":  # awsQuery (SNS, STS, ...): <ErrorResponse><Error>, what the Rust SDK's parser reads
        body = f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>gatekeeper-emu</RequestId></ErrorResponse>".encode()
        ctype = "text/xml"
    else:
        body = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>gatekeeper-emu</RequestID></Response>"
        ).encode()
        ctype = "text/xml"
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _drop(environ):
    """Closes the client's connection with no answer (the caller sees the connection closed mid-call)."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    # werkzeug treats a ConnectionError from the application as a connection the client dropped.
    raise ConnectionAbortedError("gatekeeper emulator: injected dropped connection")


def _held_until(until: float, answer):
    """The answer, produced now and given back no sooner than `until` (a sleep, which lets other calls
    proceed meanwhile)."""
    body = list(answer)
    if hasattr(answer, "close"):
        answer.close()
    time.sleep(max(0.0, until - time.time()))
    return body


# EventBridge API reference, PutEvents: "if an individual entry within a request fails, EventBridge continues
# processing the rest of the entries"; the answer lists every entry in request order, a failed one with
# ErrorCode and ErrorMessage instead of EventId, and FailedEntryCount counts them (PutEventsResultEntry names
# InternalFailure and ThrottlingException among the codes to retry). The `partial` fault fails each entry of a
# PutEvents with the rule's "entries" probability (0.5 by default), those codes in turn; moto handles the rest.
_PARTIAL_CODES = ("InternalFailure", "ThrottlingException")
_PARTIAL_TURN = [0]


def _put_events_partly(app, environ, start_response, body: bytes, share: float):
    request = json.loads(body or b"{}")
    entries = request.get("Entries") or []
    failing = {i for i in range(len(entries)) if _FAULT_RNG.random() < share}
    for _ in failing:
        _count("fault:partial_entry")
    answered: dict = {"FailedEntryCount": 0, "Entries": []}
    status, headers = "200 OK", [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", str(uuid.uuid4()))]
    kept = [e for i, e in enumerate(entries) if i not in failing]
    if kept:
        sent = json.dumps({**request, "Entries": kept}).encode()
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(sent), str(len(sent))
        seen: dict = {}
        raw = b"".join(app(environ, lambda st, hd, exc_info=None: seen.update(status=st, headers=hd) or (lambda data: None)))
        if not seen.get("status", "").startswith("200"):  # the whole call failed: answer as moto did
            start_response(seen["status"], seen["headers"])
            return [raw]
        answered = json.loads(raw)
        status, headers = seen["status"], seen["headers"]
    done = iter(answered.get("Entries") or [])
    merged = []
    for i in range(len(entries)):
        if i in failing:
            code = _PARTIAL_CODES[_PARTIAL_TURN[0] % len(_PARTIAL_CODES)]
            _PARTIAL_TURN[0] += 1
            merged.append({"ErrorCode": code, "ErrorMessage": "injected entry failure"})
        else:
            merged.append(next(done))
    out = json.dumps({"FailedEntryCount": int(answered.get("FailedEntryCount") or 0) + len(failing), "Entries": merged}).encode()
    start_response(status, [(k, v) for k, v in headers if k.lower() != "content-length"] + [("Content-Length", str(len(out)))])
    return [out]


class GatekeeperLayer:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_gatekeeper/"):
            return self.control(environ, start_response, path)
        start = time.time()
        name = []
        try:
            return self._serve(environ, start_response, name)
        finally:
            with _LOCK:
                TIMELINE.append([name[0] if name else "?", start, time.time()])
                del TIMELINE[:-_TIMELINE_MAX]

    def _serve(self, environ, start_response, named: list):
        arrived = time.time()
        service, action, key, body, region = _identify(environ)
        named.append(f"{service}:{action}")
        name = f"{service}:{action}"
        _count(name)
        _REQUEST.key = key
        denied = gk_iam.check(environ, service, action, key, body)
        if denied is not None:
            code, message, status = denied
            _count("iam:denied")
            return _error(start_response, service, code, message, status)
        drop_after = False
        floor = None
        partly = None
        for rule in list(_FAULTS):
            pattern = rule.get("match", "*")
            hit = pattern in ("*", name) or (pattern.endswith(":*") and name.startswith(pattern[:-1]))
            hit = hit and rule.get("key") in (None, key)
            hit = hit and (rule.get("kind") != "partial" or name == "events:PutEvents")  # partial acts on PutEvents only
            if hit and _FAULT_RNG.random() < float(rule.get("rate", 0)) and _spend(rule):
                kind = rule.get("kind", "throttle")
                _count(f"fault:{kind}")
                if kind == "slow":
                    time.sleep(float(rule.get("ms", 500)) / 1000)
                elif kind == "floor":
                    floor = arrived + float(rule.get("ms", 10)) / 1000
                elif kind == "drop":
                    _drop(environ)
                elif kind == "drop_after":
                    drop_after = True
                elif kind == "partial":
                    partly = float(rule.get("entries", 0.5))
                elif kind == "error500":
                    code = _INTERNAL_ERROR.get(service, "InternalFailure")
                    return _error(start_response, service, code, "injected", "500 Internal Server Error")
                else:
                    code, status = _throttle_answer(service)
                    return _error(start_response, service, code, "Rate exceeded (injected)", status)
        if EC2_THROTTLE and service == "ec2" and not _take_token(_account_of(key), region, action):
            _count("ec2:throttled")
            _count(f"ec2:throttled:{action}")
            code, status = _throttle_answer("ec2")
            return _error(start_response, "ec2", code, "Request limit exceeded.", status)
        if partly is not None:
            return _put_events_partly(self.app, environ, start_response, body, partly)
        if drop_after:
            # Let the service do the work (its body is produced and thrown away), then lose the answer.
            answer = self.app(environ, lambda status, headers, exc_info=None: (lambda data: None))
            for _ in answer:
                pass
            if hasattr(answer, "close"):
                answer.close()
            _drop(environ)
        if floor is not None:
            return _held_until(floor, self.app(environ, start_response))
        return self.app(environ, start_response)

    def control(self, environ, start_response, path):
        global _FAULTS, EC2_THROTTLE, LAG_SECONDS
        if path == "/_gatekeeper/calls":
            with _LOCK:
                body = json.dumps(dict(sorted(CALLS.items()))).encode()
        elif path == "/_gatekeeper/timeline":
            with _LOCK:
                body = json.dumps(TIMELINE).encode()
        elif path == "/_gatekeeper/reset":
            with _LOCK:
                CALLS.clear()
                TIMELINE.clear()
                _BUCKETS.clear()
            body = b"{}"
        elif path == "/_gatekeeper/ec2-throttle":
            spec = gk_control.body(environ)
            with _LOCK:
                EC2_THROTTLE = bool(spec.get("enabled", True))
                for action, limit in (spec.get("limits") or {}).items():
                    EC2_LIMITS[action] = None if limit is None else (float(limit[0]), float(limit[1]))
                    for k in [k for k in _BUCKETS if k[2] == action]:
                        del _BUCKETS[k]
                limits = {a: (None if v is None else list(v)) for a, v in sorted(EC2_LIMITS.items())}
            body = json.dumps({"enabled": EC2_THROTTLE, "limits": limits}).encode()
        elif path == "/_gatekeeper/consistency":
            spec = gk_control.body(environ)
            if "lag_ms" in spec:
                LAG_SECONDS = max(0.0, float(spec["lag_ms"]) / 1000)
            body = json.dumps({"lag_ms": LAG_SECONDS * 1000}).encode()
        elif path.startswith("/_gatekeeper/connection-state/"):
            # For test assertions only: the connection's true state, whatever lag Describe has. A test
            # checks what EC2 did; Gatekeeper itself only ever reads Describe.
            wanted = path.rsplit("/", 1)[-1]
            state = None
            for backend in _all_backends():
                ep = backend.vpc_end_points.get(wanted)
                if ep is not None and getattr(ep, "_gk_service", None) is not None:
                    state = _state(ep)
            body = json.dumps({"endpoint_id": wanted, "state": state}).encode()
        elif path == "/_gatekeeper/faults":
            spec = gk_control.body(environ)
            _FAULTS = list(spec.get("rules", []))
            body = json.dumps({"rules": _FAULTS}).encode()
        else:
            body = None
            for part in (gk_cloudformation, gk_cloudwatch, gk_dynamodb, gk_endpoint_services, gk_iam):
                body = part.control(path, environ)
                if body is not None:
                    break
            if body is None:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"unknown control path"]
        status, body = body if isinstance(body, tuple) else ("200 OK", body)  # a part may answer ("404 Not Found", body)
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args()
    from werkzeug.serving import make_server

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    app = GatekeeperLayer(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    print(f"gatekeeper local AWS listening on http://127.0.0.1:{server.server_port}", flush=True)
    print(f"connection listings ordered with GATEKEEPER_EMU_ORDER_SALT={_ORDER_SALT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
