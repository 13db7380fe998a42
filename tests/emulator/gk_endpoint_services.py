"""Endpoint service configurations for the local AWS, their private DNS name verification, and tags on
PrivateLink's own IDs, behaving as AWS documents (imported by gatekeeper_moto for its patches of moto 5.2.1).

Added or replaced, typed after the EC2 API reference (wire names from botocore's ec2 2016-11-15 model, the
model the Rust SDK is generated from):
  Create/Describe/ModifyVpcEndpointServiceConfiguration
                                   each ServiceConfiguration (serviceConfigurationSet/item) with serviceType,
                                   serviceId, serviceName, serviceState, availabilityZoneSet,
                                   acceptanceRequired, managesVpcEndpoints, networkLoadBalancerArnSet,
                                   gatewayLoadBalancerArnSet, supportedIpAddressTypeSet, baseEndpointDnsNameSet,
                                   privateDnsName, privateDnsNameConfiguration {state, type, value, name},
                                   tagSet, supportedRegionSet/item {region, serviceState}, remoteAccessEnabled;
                                   Describe: ServiceIds, filters service-name, service-id, service-state,
                                   supported-ip-address-types, tag:<key>, tag-key; MaxResults/NextToken.
                                   Modify: AcceptanceRequired, PrivateDnsName, RemovePrivateDnsName,
                                   Add/RemoveSupportedRegions, Add/RemoveSupportedIpAddressTypes (and moto's
                                   load balancer changes)
  StartVpcEndpointServicePrivateDnsVerification
                                   starts (or retries) the domain ownership check of the service's private
                                   DNS name
  CreateTags / DeleteTags / DescribeTags
                                   also for a service permission (vpce-svc-perm-..., shown in
                                   DescribeVpcEndpointServicePermissions' AllowedPrincipals[].Tags) and a VPC
                                   endpoint connection (vpce-con-..., shown in DescribeVpcEndpointConnections'
                                   Tags); an endpoint, service, permission or connection ID that does not exist
                                   in the caller's account and Region fails the call (moto tagged any vpce-
                                   or vpce-svc- ID, existing or not, and refused the other two as malformed)

Private DNS name verification. The emulator has no DNS, so no TXT record can ever be found: a private DNS
name stays `pendingVerification` until a test says what the DNS check found, through
  POST /_gatekeeper/private-dns-verification  {"service_id": "vpce-svc-...", "state": "verified"}
       state: verified (the check found the TXT record) | failed (it did not) | pendingVerification;
       without "state" the call only reads.
       -> 200 {"service_id", "private_dns_name", "state", "type", "name", "value"}
          404 {"error"}: no endpoint service with that ID (in any account or Region)
          409 {"error"}: the service has no private DNS name
          400 {"error"}: a state that is not one of the three
"""

from __future__ import annotations

import json
import random
import re
import string
import sys
import threading

from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.exceptions import EC2ClientError, NoLoadBalancersProvided
from moto.ec2.models import validate_resource_ids
from moto.ec2.models import vpc_service_configuration as service_models
from moto.ec2.models.tags import TagBackend
from moto.ec2.responses import EC2Response

import gk_control

_LOCK = threading.RLock()


class _Error(EC2ClientError):
    def __init__(self, code: str, message: str):
        super().__init__(code, message)


def _extension():
    """gatekeeper_moto, the running extension: `__main__` when the server runs as a script (importing it by
    name would load a second copy with its own registries)."""
    for name in ("__main__", "gatekeeper_moto"):
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "_NOTIFICATIONS") and hasattr(mod, "describe_vpc_endpoint_connections"):
            return mod
    import gatekeeper_moto

    return gatekeeper_moto


# A new service's ID has 17 hex digits after vpce-svc-, as EC2 gives new resources (EC2 User Guide, "Resource
# IDs": "any new resources will receive the longer IDs", 17 characters after the hyphen; the PrivateLink guide's
# service IDs, e.g. vpce-svc-0e123abc123198abc). moto gave 8, so whatever is sized by service IDs (the
# template's policies and the functions' environment, for many services) came out shorter than a provider's.
_orig_service_init = service_models.VPCServiceConfiguration.__init__


def _service_init(self, *args, **kwargs):
    _orig_service_init(self, *args, **kwargs)
    short = self.id
    self.id = f"vpce-svc-{random.getrandbits(68):017x}"
    self.service_name = self.service_name.replace(short, self.id)
    self.endpoint_dns_name = self.endpoint_dns_name.replace(short, self.id)


service_models.VPCServiceConfiguration.__init__ = _service_init


def _token(n: int) -> str:
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def _own_service(resp: EC2Response, service_id):
    """The caller's service configuration, or gatekeeper_moto's errors for it (MissingParameter,
    InvalidVpcEndpointServiceId.NotFound): one check for every action that names a service."""
    return _extension()._own_service(resp, service_id)


# ----------------------------------------------------------------------- private DNS name verification
# PrivateLink guide, "Manage DNS names for VPC endpoint services" (manage-dns-names.html): "Before you can
# configure a private DNS name for your endpoint service, you must prove that you own the domain by performing
# a domain ownership verification check"; an endpoint service has only one private DNS name. "Domain
# ownership verification": AWS gives a TXT record name and value; "the domain ownership verification is
# complete when we detect the existence of the TXT record in your domain's DNS settings" (the VPC guide's
# endpoint-services-dns-validation.html: the console's status goes from Pending to Verified; "If the DNS
# settings are not correctly updated, the domain status displays a status of failed ... After you verify that
# your TXT record was created correctly, retry the operation"; modify-vpc-endpoint-service-dns-name.html:
# "We automatically poll the DNS server to verify that the record exists on the server").
# EC2 API reference: ModifyVpcEndpointServiceConfiguration / CreateVpcEndpointServiceConfiguration "If you set
# or modify the private DNS name, you must prove that you own the private DNS domain name";
# StartVpcEndpointServicePrivateDnsVerification "Initiates the verification process ... Before the service
# provider runs this command, they must add a record to the DNS server" (answers `return`);
# PrivateDnsNameConfiguration: state (pendingVerification | verified | failed; "Consumers of the endpoint
# service can use the private name only when the state is verified"), type ("for example TXT"), value ("The
# value the service provider adds to the private DNS name domain record"), name ("The name of the record
# subdomain the service provider needs to create").
# So: a newly set name (at create or modify) starts pendingVerification with a fresh record name and value;
# Start leaves a pending name pending and puts a failed one back to pending (a retry); only the DNS check,
# here the control path, makes it verified or failed. Not documented, the emulator's choices: the record's
# form follows the guide's example (name `_` + 20 characters, value `vpce:` + 20 characters); giving the name
# the service already has changes nothing; Start on a verified name leaves it verified; Start on a service with
# no private DNS name, and PrivateDnsName together with RemovePrivateDnsName, fail with InvalidParameter /
# InvalidParameterCombination (EC2's common codes for a parameter that cannot be used / a wrong combination).
# The guide's considerations: "Private DNS names are not supported for Gateway Load Balancer endpoints", so a
# name for a Gateway Load Balancer service fails too (InvalidParameter, the emulator's choice of code).
DNS_STATES = ("pendingVerification", "verified", "failed")


def _refuse_gateway_name(gateway: bool, name) -> None:
    if gateway and name:
        raise _Error("InvalidParameter", "Private DNS names are not supported for Gateway Load Balancer endpoint services")


def _dns(svc) -> dict | None:
    """The service's private DNS name model {"name", "state", "record", "value"} (None: no name), kept in step
    with moto's `private_dns_name` (which CloudFormation may also set)."""
    with _LOCK:
        name = getattr(svc, "private_dns_name", None) or None
        current = getattr(svc, "_gk_dns", None)
        if name is None:
            svc._gk_dns = None
            return None
        if current is None or current["name"] != name:
            current = svc._gk_dns = {
                "name": name,
                "state": "pendingVerification",
                "record": f"_{_token(20)}",
                "value": f"vpce:{_token(20)}",
            }
        return current


def _dns_configuration(dns: dict) -> dict:
    return {"State": dns["state"], "Type": "TXT", "Value": dns["value"], "Name": dns["record"]}


def start_vpc_endpoint_service_private_dns_verification(self) -> ActionResult:
    svc = _own_service(self, self._get_param("ServiceId"))
    self.error_on_dryrun()
    with _LOCK:
        dns = _dns(svc)
        if dns is None:
            raise _Error("InvalidParameter", f"The VpcEndpointService '{svc.id}' has no private DNS name to verify")
        if dns["state"] == "failed":
            dns["state"] = "pendingVerification"
    return ActionResult({"ReturnValue": True})


def _find_service(service_id: str):
    for backend in _extension()._all_backends():
        svc = backend.configurations.get(service_id)
        if svc is not None:
            return svc
    return None


# ------------------------------------------------------------------------------ service configurations
# EC2 API reference, ServiceConfiguration (the shape of CreateVpcEndpointServiceConfiguration's
# serviceConfiguration and DescribeVpcEndpointServiceConfigurations' serviceConfigurationSet): serviceType,
# serviceId, serviceName, serviceState (Pending | Available | Deleting | Deleted | Failed), availabilityZoneSet,
# acceptanceRequired, managesVpcEndpoints, networkLoadBalancerArnSet, gatewayLoadBalancerArnSet,
# supportedIpAddressTypeSet (ipv4 | ipv6), baseEndpointDnsNameSet, privateDnsName, privateDnsNameConfiguration,
# payerResponsibility, tagSet, supportedRegionSet (SupportedRegionDetail: region, serviceState "Pending,
# Available, Deleting, Deleted, Failed, and Closed"), remoteAccessEnabled ("whether consumers can access the
# service from a Region other than the Region where the service is hosted").
# moto 5.2.1 answered privateDnsNameConfiguration as always `verified` with the placeholders "val" and "n",
# ignored RemovePrivateDnsName, SupportedIpAddressTypes and the Describe filters and pages, named a Gateway Load
# Balancer service's type "Gateway" (ServiceType's values are Interface | Gateway | GatewayLoadBalancer; a
# Gateway Load Balancer endpoint service's is GatewayLoadBalancer, the type of the endpoints that connect to
# it: CreateVpcEndpoint VpcEndpointType) and failed (HTTP 500) removing a Region it did not have: replaced.
# Not documented, the emulator's choices: a service is Available at once and so is each supported Region it
# lists (only the Regions the provider added; removing one drops it, removing one that is not there, or adding
# one twice, changes nothing); SupportedIpAddressTypes defaults to ipv4 (the NLBs the emulator's callers make
# are IPv4), and removing the last type fails with InvalidParameterValue; payerResponsibility is left out (set
# only by ModifyVpcEndpointServicePayerResponsibility, which is not emulated).
IP_ADDRESS_TYPES = ("ipv4", "ipv6")


def _ip_types(svc) -> list[str]:
    with _LOCK:
        types = getattr(svc, "_gk_ip_types", None)
        if types is None:
            types = svc._gk_ip_types = ["ipv4"]
        return types


def _check_ip_types(values) -> list[str]:
    values = list(values or [])
    bad = [v for v in values if v not in IP_ADDRESS_TYPES]
    if bad:
        raise _Error("InvalidParameterValue", f"Invalid IP address type(s) {', '.join(bad)}: must be ipv4 or ipv6")
    return values


def _service_type(svc) -> str:
    return "GatewayLoadBalancer" if svc.gateway_load_balancer_arns else "Interface"


def _configuration_dict(svc) -> dict:
    ext = _extension()
    host = svc.ec2_backend.region_name
    regions = list(svc._supported_region_names or [])
    out = {
        "ServiceType": [{"ServiceType": _service_type(svc)}],
        "ServiceId": svc.id,
        "ServiceName": svc.service_name,
        "ServiceState": svc.service_state,
        "AvailabilityZones": list(svc.availability_zones),
        "AcceptanceRequired": ext._acceptance_required(svc),
        "ManagesVpcEndpoints": bool(svc.manages_vpc_endpoints),
        "NetworkLoadBalancerArns": list(svc.network_load_balancer_arns),
        "GatewayLoadBalancerArns": list(svc.gateway_load_balancer_arns),
        "SupportedIpAddressTypes": list(_ip_types(svc)),
        "BaseEndpointDnsNames": [svc.endpoint_dns_name],
        "Tags": ext._tags(svc.ec2_backend, svc.id),
        "SupportedRegions": [{"Region": r, "ServiceState": "Available"} for r in regions],
        "RemoteAccessEnabled": any(r != host for r in regions),
    }
    dns = _dns(svc)
    if dns is not None:
        out["PrivateDnsName"] = dns["name"]
        out["PrivateDnsNameConfiguration"] = _dns_configuration(dns)
    return out


def create_vpc_endpoint_service_configuration(self) -> ActionResult:
    gateway_lbs = self._get_param("GatewayLoadBalancerArns", []) or []
    network_lbs = self._get_param("NetworkLoadBalancerArns", []) or []
    if not gateway_lbs and not network_lbs:
        raise NoLoadBalancersProvided
    ip_types = _check_ip_types(self._get_param("SupportedIpAddressTypes", [])) or ["ipv4"]
    _refuse_gateway_name(bool(gateway_lbs), self._get_param("PrivateDnsName"))
    specs = self._get_param("TagSpecifications", []) or []
    tags = [t for s in specs for t in (s.get("Tags") or [])]
    regions = list(dict.fromkeys(self._get_param("SupportedRegions", []) or []))
    self.error_on_dryrun()
    svc = self.ec2_backend.create_vpc_endpoint_service_configuration(
        gateway_lbs or network_lbs,
        acceptance_required=self._get_bool_param("AcceptanceRequired", True),
        private_dns_name=self._get_param("PrivateDnsName") or None,
        tags=tags,
        supported_regions=regions,
    )
    svc._gk_ip_types = list(dict.fromkeys(ip_types))
    result = {"ServiceConfiguration": _configuration_dict(svc)}
    token = self._get_param("ClientToken")
    if token:
        result["ClientToken"] = token
    return ActionResult(result)


def _tag_match(ext, svc, name: str, values: list[str]) -> bool:
    tags = {t["Key"]: t["Value"] for t in ext._tags(svc.ec2_backend, svc.id)}
    if name == "tag-key":
        return any(v in tags for v in values)
    key = name[len("tag:"):]
    return key in tags and tags[key] in values


_CONFIG_FILTERS = {
    "service-name": lambda svc: [svc.service_name],
    "service-id": lambda svc: [svc.id],
    "service-state": lambda svc: [svc.service_state],
    "supported-ip-address-types": lambda svc: list(_ip_types(svc)),
}


def describe_vpc_endpoint_service_configurations(self) -> ActionResult:
    # EC2 API reference, DescribeVpcEndpointServiceConfigurations: ServiceId.N, Filter.N (service-name,
    # service-id, service-state, supported-ip-address-types, tag:<key>, tag-key), MaxResults ("between 5 and
    # 1,000"), NextToken. An unknown ServiceId fails with InvalidVpcEndpointServiceId.NotFound (the EC2 API's
    # error codes: "The specified VPC endpoint service does not exist").
    ext = _extension()
    filters: dict[str, list[str]] = {}
    for f in self._get_param("Filters", []) or []:
        name = f.get("Name") or ""
        if name not in _CONFIG_FILTERS and name != "tag-key" and not name.startswith("tag:"):
            raise _Error("InvalidParameterValue", f"The filter '{name}' is invalid")
        filters.setdefault(name, []).extend(f.get("Values", []) or [])
    configs = self.ec2_backend.describe_vpc_endpoint_service_configurations(self._get_param("ServiceIds", []) or [])
    items = []
    for svc in configs:
        ok = True
        for name, values in filters.items():
            if name in _CONFIG_FILTERS:
                ok = ok and any(v in values for v in _CONFIG_FILTERS[name](svc))
            else:
                ok = ok and _tag_match(ext, svc, name, values)
        if ok:
            items.append(_configuration_dict(svc))
    page, token = ext._page(self, items)
    result = {"ServiceConfigurations": page}
    if token:
        result["NextToken"] = token
    return ActionResult(result)


def modify_vpc_endpoint_service_configuration(self) -> ActionResult:
    svc = _own_service(self, self._get_param("ServiceId"))
    name = self._get_param("PrivateDnsName")
    remove_name = self._get_bool_param("RemovePrivateDnsName", False)
    acceptance = self._get_bool_param("AcceptanceRequired")
    add_regions = list(self._get_param("AddSupportedRegions", []) or [])
    remove_regions = set(self._get_param("RemoveSupportedRegions", []) or [])
    add_ip = _check_ip_types(self._get_param("AddSupportedIpAddressTypes", []))
    remove_ip = set(_check_ip_types(self._get_param("RemoveSupportedIpAddressTypes", [])))
    if name and remove_name:
        raise _Error("InvalidParameterCombination", "PrivateDnsName and RemovePrivateDnsName cannot be given together")
    _refuse_gateway_name(bool(svc.gateway_load_balancer_arns), name)
    ip_types = [t for t in dict.fromkeys(_ip_types(svc) + add_ip) if t not in remove_ip]
    if not ip_types:
        raise _Error("InvalidParameterValue", "An endpoint service must support at least one IP address type")
    self.error_on_dryrun()
    # The load balancer changes stay moto's.
    self.ec2_backend.modify_vpc_endpoint_service_configuration(
        svc.id,
        acceptance_required=None,
        private_dns_name=None,
        add_network_lbs=self._get_param("AddNetworkLoadBalancerArns", []) or [],
        remove_network_lbs=self._get_param("RemoveNetworkLoadBalancerArns", []) or [],
        add_gateway_lbs=self._get_param("AddGatewayLoadBalancerArns", []) or [],
        remove_gateway_lbs=self._get_param("RemoveGatewayLoadBalancerArns", []) or [],
        add_supported_regions=[],
        remove_supported_regions=[],
    )
    with _LOCK:
        if acceptance is not None:
            svc.acceptance_required = bool(acceptance)
        if remove_name:
            svc.private_dns_name = None
        elif name:
            svc.private_dns_name = name
        _dns(svc)
        regions = [r for r in dict.fromkeys(list(svc._supported_region_names or []) + add_regions) if r not in remove_regions]
        svc._supported_region_names = regions
        svc._gk_ip_types = ip_types
    return ActionResult({"Return": True})


# ------------------------------------------------------------------------------------------------- tags
# EC2 API reference: VpcEndpointConnection has vpcEndpointConnectionId and tagSet, AllowedPrincipal has
# servicePermissionId and tagSet, and the ResourceType enumeration (TagSpecification, "lists all the resource
# types that can be tagged"; TagDescription.resourceType) has vpc-endpoint-connection and
# vpc-endpoint-service-permission. All of these came in one EC2 API release (botocore 1.27.74 / boto3 1.24.74,
# September 2022), whose release note reads "This feature allows customers to create tags for
# vpc-endpoint-connections and vpc-endpoint-service-permissions". The Service Authorization Reference for
# Amazon EC2 (list_amazonec2.html) has the resource types vpc-endpoint-connection
# (arn:${Partition}:ec2:${Region}:${Account}:vpc-endpoint-connection/${VpcEndpointConnectionId}) and
# vpc-endpoint-service-permission (...:vpc-endpoint-service-permission/${VpcEndpointServicePermissionId}).
# So CreateTags/DeleteTags take a connection ID and a service permission ID; their tags are the connection's
# and the permission's own, kept by the service's owner (the account that describes connections and
# permissions), never the consumer's tags on its endpoint.
# An ID that does not exist in the caller's account and Region: EC2's error codes give
# InvalidVpcEndpointId.NotFound ("The specified VPC endpoint does not exist") and
# InvalidVpcEndpointServiceId.NotFound for endpoints and services. For a connection or permission ID no code is
# documented; the emulator answers InvalidID ("The specified ID for the resource you are trying to tag is not
# valid"), the code EC2 documents for an ID CreateTags cannot tag.
_KINDS = (
    (re.compile(r"vpce-svc-perm-[0-9a-f]+"), "vpc-endpoint-service-permission"),
    (re.compile(r"vpce-con-[0-9a-f]+"), "vpc-endpoint-connection"),
    (re.compile(r"vpce-svc-[0-9a-f]+"), "vpc-endpoint-service"),
    (re.compile(r"vpce-[0-9a-f]+"), "vpc-endpoint"),
)


def _kind(resource_id: str) -> str | None:
    for pattern, kind in _KINDS:
        if pattern.fullmatch(resource_id or ""):
            return kind
    return None


def _exists(backend, resource_id: str, kind: str) -> bool:
    ext = _extension()
    if kind == "vpc-endpoint":
        return resource_id in backend.vpc_end_points
    if kind == "vpc-endpoint-service":
        return resource_id in backend.configurations
    if kind == "vpc-endpoint-service-permission":
        return any(v["id"] == resource_id for svc in list(backend.configurations.values()) for v in ext._perms(svc).values())
    return any(getattr(ep, "_gk_connection_id", None) == resource_id for _, ep in ext._connections_of(backend))


def _not_found(resource_id: str, kind: str) -> _Error:
    if kind == "vpc-endpoint":
        return _Error("InvalidVpcEndpointId.NotFound", f"The Vpc Endpoint Id '{resource_id}' does not exist")
    if kind == "vpc-endpoint-service":
        return _Error("InvalidVpcEndpointServiceId.NotFound", f"The VpcEndpointService Id '{resource_id}' does not exist")
    return _Error("InvalidID", f"The ID '{resource_id}' is not valid")


def _check_resources(resp: EC2Response, resource_ids: list[str], check_others: bool) -> None:
    if not resource_ids:
        raise _Error("MissingParameter", "The request must contain the parameter resourceIdSet")
    others = [r for r in resource_ids if _kind(r) is None]
    if others:
        validate_resource_ids(others)
        if check_others:
            resp.ec2_backend.do_resources_exist(others)
    for r in resource_ids:
        kind = _kind(r)
        if kind is not None and not _exists(resp.ec2_backend, r, kind):
            raise _not_found(r, kind)


def create_tags(self) -> EmptyResult:
    resource_ids = self._get_param("Resources", []) or []
    _check_resources(self, resource_ids, check_others=True)
    # CreateTags, Tag.N.Value: "if you don't want the tag to have a value, specify the parameter with no value,
    # and we set the value to an empty string."
    tags = {t["Key"]: t.get("Value") or "" for t in self._get_param("Tags", []) or []}
    self.error_on_dryrun()
    self.ec2_backend.create_tags(resource_ids, tags)
    return EmptyResult()


def delete_tags(self) -> EmptyResult:
    resource_ids = self._get_param("Resources", []) or []
    _check_resources(self, resource_ids, check_others=False)  # moto checks no existence for the others
    tags = {t["Key"]: t.get("Value") for t in self._get_param("Tags", []) or []}
    self.error_on_dryrun()
    self.ec2_backend.delete_tags(resource_ids, tags)
    return EmptyResult()


_orig_describe_tags = TagBackend.describe_tags


def _describe_tags(self, filters=None):
    """moto's, with the resource type of a connection or service permission right (moto's prefix table reads
    vpce-con- as a vpc-endpoint and vpce-svc-perm- as a vpc-endpoint-service) and the resource-type filter on
    the corrected type."""
    wanted = None
    if filters is not None and "resource-type" in filters:
        wanted = set(filters["resource-type"])
        filters = {k: v for k, v in filters.items() if k != "resource-type"}
    found = _orig_describe_tags(self, filters)
    for t in found:
        kind = _kind(t.get("resource_id", ""))
        if kind is not None:
            t["resource_type"] = kind
    return [t for t in found if wanted is None or t.get("resource_type") in wanted]


TagBackend.describe_tags = _describe_tags

for _fn in (
    create_vpc_endpoint_service_configuration,
    describe_vpc_endpoint_service_configurations,
    modify_vpc_endpoint_service_configuration,
    start_vpc_endpoint_service_private_dns_verification,
    create_tags,
    delete_tags,
):
    setattr(EC2Response, _fn.__name__, _fn)


# ====================================================================================== control paths


def _answer(status: str, body: dict):
    return status, json.dumps(body).encode()


def control(path: str, environ):
    """Answers this module's /_gatekeeper/ control paths (None: not ours)."""
    if path != "/_gatekeeper/private-dns-verification":
        return None
    spec = gk_control.body(environ)
    service_id = str(spec.get("service_id") or "")
    state = spec.get("state")
    svc = _find_service(service_id)
    if svc is None:
        return _answer("404 Not Found", {"error": f"no endpoint service {service_id!r}"})
    if state is not None and state not in DNS_STATES:
        return _answer("400 Bad Request", {"error": f"state must be one of {', '.join(DNS_STATES)}"})
    with _LOCK:
        dns = _dns(svc)
        if dns is None:
            return _answer("409 Conflict", {"error": f"endpoint service {service_id} has no private DNS name"})
        if state is not None:
            dns["state"] = state
        answer = {"service_id": svc.id, "private_dns_name": dns["name"], "state": dns["state"], "type": "TXT", "name": dns["record"], "value": dns["value"]}
    return _answer("200 OK", answer)
