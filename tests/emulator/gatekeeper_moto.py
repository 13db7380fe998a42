"""moto's server, extended with the EC2 endpoint-connection operations it lacks.

Added, typed after the EC2 API reference:
  DescribeVpcEndpointConnections   (filters service-id, vpc-endpoint-id, vpc-endpoint-owner,
                                     vpc-endpoint-state, vpc-endpoint-region; MaxResults/NextToken)
  AcceptVpcEndpointConnections     (per-ID failures in Unsuccessful[], never a failed call for them)
  RejectVpcEndpointConnections     (also revokes an `available` connection)
  Create/Describe/DeleteVpcEndpointConnectionNotification
and the behaviour behind them: an interface endpoint created (from any account, through STS AssumeRole)
to a service that requires acceptance waits in `pendingAcceptance`; an accepted one passes through
`pending` to `available`; connection notifications are published to their SNS topic on Connect, Accept,
Reject and Delete. The notification body is not documented by AWS: the one sent here is this project's
stand-in (camelCase fields, like EC2's own), and consumers must treat it as a hint.

Also, for tests and benchmarks (a WSGI layer in front of moto, under /_gatekeeper/):
  GET  /_gatekeeper/calls    every AWS call received, counted by "service:Action" (and each
                             connection's state changes by Accept/Reject, by "changed:<endpoint>")
  POST /_gatekeeper/reset    zero the counts
  POST /_gatekeeper/faults   {"rules": [{"match": "dynamodb:PutItem", "rate": 0.3, "kind": "throttle"}]}
                             kinds: throttle (the service's own throttling error), error500, slow (+ms),
                             drop (the connection is closed before the service sees the request),
                             drop_after (the service handles the request, then the connection is
                             closed before the answer: the call took effect, the caller cannot know);
                             "match" is "service:Action", "service:*" or "*"; an optional "key" limits a
                             rule to one caller's access key
and EC2's throttle on mutating PrivateLink calls: a bucket of 10 Accept/Reject calls per account,
refilling at 1/s, answered with RequestLimitExceeded (GATEKEEPER_EMU_EC2_THROTTLE=0 turns it off;
POST /_gatekeeper/ec2-throttle {"enabled": false} at run time).

Run: python gatekeeper_moto.py --port 4566   (binds 127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import socket
import threading
import time

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import EC2Backend, ec2_backends
from moto.ec2.responses import EC2Response

# After an accept, a connection is `pending` this long before it is `available` (as EC2 does).
ACCEPT_DELAY_SECONDS = float(os.environ.get("GATEKEEPER_EMU_ACCEPT_DELAY", "0.3"))
CONNECTION_EVENTS = ("Accept", "Connect", "Delete", "Reject")
_LOCK = threading.RLock()
# Connection notifications, by ID: {"id", "service_id", "topic_arn", "events", "account", "region"}.
_NOTIFICATIONS: dict[str, dict] = {}
# Every call received, by "service:Action" (and injected faults by "fault:kind").
CALLS: dict[str, int] = {}


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


def _service_by_name(service_name: str):
    for backend in _all_backends():
        for svc in list(backend.configurations.values()):
            if svc.service_name == service_name:
                return svc
    return None


def _state(ep) -> str:
    return ep.state


def _become_available(ep) -> None:
    with _LOCK:
        if ep.state == "pending":
            ep.state = "available"


def _connections_of(provider: EC2Backend):
    owned = {svc.id for svc in provider.configurations.values()}
    for backend in _all_backends():
        for ep in list(backend.vpc_end_points.values()):
            svc = getattr(ep, "_gk_service", None)
            if svc is not None and svc.id in owned and svc.ec2_backend is provider:
                yield svc, ep


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
        body = {
            "connectionNotificationId": n["id"],
            "connectionEvent": event,
            "serviceId": svc.id,
            "vpcEndpointId": ep.id,
            "vpcEndpointOwner": ep.ec2_backend.account_id,
            "vpcEndpointState": _state(ep),
            "eventTime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        }
        region = n["topic_arn"].split(":")[3]
        sns = sns_backends[provider.account_id][region]
        sns.publish(json.dumps(body), arn=n["topic_arn"], subject=f"Endpoint Connection State Change: {event}")


_orig_create = EC2Backend.create_vpc_endpoint
_orig_delete = EC2Backend.delete_vpc_endpoints


def _create_vpc_endpoint(self, *args, **kwargs):
    ep = _orig_create(self, *args, **kwargs)
    svc = _service_by_name(ep.service_name)
    if svc is not None and (ep.vpc_endpoint_type or "").lower() in ("interface", "gatewayloadbalancer"):
        ep._gk_service = svc
        ep._gk_connection_id = f"vpce-con-{_rand_hex()}"
        ep.state = "pendingAcceptance" if svc.acceptance_required else "available"
        _publish(svc, ep, "Connect")
    return ep


def _delete_vpc_endpoints(self, vpce_ids=None):
    _orig_delete(self, vpce_ids)
    for vpce_id in vpce_ids or []:
        ep = self.vpc_end_points.get(vpce_id)
        svc = getattr(ep, "_gk_service", None) if ep is not None else None
        if svc is not None:
            _publish(svc, ep, "Delete")


EC2Backend.create_vpc_endpoint = _create_vpc_endpoint
EC2Backend.delete_vpc_endpoints = _delete_vpc_endpoints

# -------------------------------------------------------------------------------------------- actions

_FILTERS = {
    "service-id": lambda svc, ep: svc.id,
    "vpc-endpoint-id": lambda svc, ep: ep.id,
    "vpc-endpoint-owner": lambda svc, ep: ep.ec2_backend.account_id,
    "vpc-endpoint-state": lambda svc, ep: _state(ep),
    "vpc-endpoint-region": lambda svc, ep: ep.ec2_backend.region_name,
    "ip-address-type": lambda svc, ep: "ipv4",
}


def _filters(resp: EC2Response, allowed) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in resp._get_param("Filters", []) or []:
        name = f.get("Name")
        if name not in allowed:
            raise _Error("InvalidParameterValue", f"The filter '{name}' is invalid")
        out.setdefault(name, []).extend(f.get("Values", []))
    return out


def _page(resp: EC2Response, items: list, lo: int = 5, hi: int = 1000):
    max_results = resp._get_param("MaxResults")
    token = resp._get_param("NextToken")
    start = 0
    if token:
        try:
            start = int(token)
        except ValueError:
            raise _Error("InvalidNextToken", "The token is invalid")
    if max_results is None:
        return items[start:], None
    max_results = int(max_results)
    if not lo <= max_results <= hi:
        raise _Error("InvalidParameterValue", f"MaxResults must be between {lo} and {hi}")
    end = start + max_results
    return items[start:end], (str(end) if end < len(items) else None)


def describe_vpc_endpoint_connections(self) -> ActionResult:
    filters = _filters(self, _FILTERS)
    items = []
    for svc, ep in _connections_of(self.ec2_backend):
        if all(_FILTERS[k](svc, ep) in v for k, v in filters.items()):
            items.append(
                {
                    "ServiceId": svc.id,
                    "VpcEndpointId": ep.id,
                    "VpcEndpointOwner": ep.ec2_backend.account_id,
                    "VpcEndpointState": _state(ep),
                    "CreationTimestamp": ep.creation_timestamp,
                    "DnsEntries": ep.dns_entries or [],
                    "NetworkLoadBalancerArns": list(svc.network_load_balancer_arns),
                    "GatewayLoadBalancerArns": list(svc.gateway_load_balancer_arns),
                    "IpAddressType": "ipv4",
                    "VpcEndpointConnectionId": ep._gk_connection_id,
                    "VpcEndpointRegion": ep.ec2_backend.region_name,
                }
            )
    items.sort(key=lambda i: (i["CreationTimestamp"], i["VpcEndpointId"]))
    page, token = _page(self, items)
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
                code, msg = "InvalidState", f"Vpc Endpoint {vpce_id} is in state {_state(ep)}"
            else:
                ep.state = new_state
                if new_state == "pending":
                    timer = threading.Timer(ACCEPT_DELAY_SECONDS, _become_available, args=(ep,))
                    timer.daemon = True
                    timer.start()
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
):
    setattr(EC2Response, _fn.__name__, _fn)


# ------------------------------------------------------------------------------------ WSGI layer

EC2_THROTTLE = os.environ.get("GATEKEEPER_EMU_EC2_THROTTLE", "1") != "0"
_BUCKETS: dict[str, list[float]] = {}  # account -> [tokens, last refill time]
_FAULTS: list[dict] = []
_FAULT_RNG = random.Random(7)

# The throttling error each protocol family answers with.
_THROTTLE_JSON = {
    "dynamodb": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "events": "ThrottlingException",
    "sqs": "com.amazonaws.sqs#RequestThrottled",
}


def _take_token(account: str) -> bool:
    with _LOCK:
        now = time.monotonic()
        tokens, last = _BUCKETS.get(account, [10.0, now])
        tokens = min(10.0, tokens + (now - last) * 1.0)
        if tokens < 1.0:
            _BUCKETS[account] = [tokens, now]
            return False
        _BUCKETS[account] = [tokens - 1.0, now]
        return True


def _identify(environ) -> tuple[str, str, str, bytes]:
    """(service, action, access key, body) of a request, from SigV4's scope and the protocol."""
    import io
    import re
    from urllib.parse import parse_qs

    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/", auth)
    key, service = (m.group(1), m.group(2)) if m else ("", "unknown")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        action = target.rsplit(".", 1)[-1]
    else:
        qs = parse_qs(body.decode("utf-8", "replace")) if body else parse_qs(environ.get("QUERY_STRING", ""))
        action = (qs.get("Action") or ["unknown"])[0]
    return service, action, key, body


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


class GatekeeperLayer:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_gatekeeper/"):
            return self.control(environ, start_response, path)
        service, action, key, _ = _identify(environ)
        name = f"{service}:{action}"
        _count(name)
        drop_after = False
        for rule in list(_FAULTS):
            pattern = rule.get("match", "*")
            hit = pattern in ("*", name) or (pattern.endswith(":*") and name.startswith(pattern[:-1]))
            hit = hit and rule.get("key") in (None, key)
            if hit and _FAULT_RNG.random() < float(rule.get("rate", 0)):
                kind = rule.get("kind", "throttle")
                _count(f"fault:{kind}")
                if kind == "slow":
                    time.sleep(float(rule.get("ms", 500)) / 1000)
                elif kind == "drop":
                    _drop(environ)
                elif kind == "drop_after":
                    drop_after = True
                elif kind == "error500":
                    return _error(start_response, service, "InternalError", "injected", "500 Internal Server Error")
                else:
                    code = _THROTTLE_JSON.get(service, "RequestLimitExceeded" if service == "ec2" else "Throttling")
                    return _error(start_response, service, code, "Rate exceeded (injected)", "400 Bad Request")
        if EC2_THROTTLE and service == "ec2" and action in ("AcceptVpcEndpointConnections", "RejectVpcEndpointConnections"):
            if not _take_token(_account_of(key)):
                _count("ec2:throttled")
                return _error(start_response, "ec2", "RequestLimitExceeded", "Request limit exceeded.", "503 Service Unavailable")
        if drop_after:
            # Let the service do the work (its body is produced and thrown away), then lose the answer.
            answer = self.app(environ, lambda status, headers, exc_info=None: (lambda data: None))
            for _ in answer:
                pass
            if hasattr(answer, "close"):
                answer.close()
            _drop(environ)
        return self.app(environ, start_response)

    def control(self, environ, start_response, path):
        global _FAULTS
        if path == "/_gatekeeper/calls":
            with _LOCK:
                body = json.dumps(dict(sorted(CALLS.items()))).encode()
        elif path == "/_gatekeeper/reset":
            with _LOCK:
                CALLS.clear()
                _BUCKETS.clear()
            body = b"{}"
        elif path == "/_gatekeeper/ec2-throttle":
            global EC2_THROTTLE
            length = int(environ.get("CONTENT_LENGTH") or 0)
            EC2_THROTTLE = bool(json.loads(environ["wsgi.input"].read(length) or b"{}").get("enabled", True))
            body = json.dumps({"enabled": EC2_THROTTLE}).encode()
        elif path == "/_gatekeeper/faults":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            spec = json.loads(environ["wsgi.input"].read(length) or b"{}")
            _FAULTS = list(spec.get("rules", []))
            body = json.dumps({"rules": _FAULTS}).encode()
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"unknown control path"]
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
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
    server.serve_forever()


if __name__ == "__main__":
    main()
