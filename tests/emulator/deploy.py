"""Deploys a SAM template (infra/template.yaml) into the local AWS the way CloudFormation would, offline.

  1. Load the YAML with CloudFormation's short tags (cfn-lint's loader).
  2. Expand `Fn::ForEach` (the AWS::LanguageExtensions transform) with the expander below, after the
     CloudFormation template reference, "Fn::ForEach" (and "AWS::LanguageExtensions transform").
  3. Translate SAM to CloudFormation with the pinned aws-sam-translator, as `sam deploy` has CloudFormation do
     (the AWS::Serverless-2016-10-31 transform). The functions' code is a placeholder object in the local S3.
  4. Assume the provider account's role (STS AssumeRole, how the project's code maps keys to accounts in
     moto), CreateStack with CAPABILITY_IAM + CAPABILITY_AUTO_EXPAND, wait for CREATE_COMPLETE (a deadline that
     fails loudly), fail on any *_FAILED / ROLLBACK_* status with the stack's events.
  5. Check that EVERY resource the translated template creates (conditions evaluated) is in
     ListStackResources: moto skips resource types it does not support without an error.
  6. Read everything back from the deployed stack through the AWS APIs (never from constants) and write the
     JSON the Rust runner consumes (see `read_back`).

CLI:
  python tests/emulator/deploy.py --endpoint http://127.0.0.1:4566 --account 111111111111 \
      --stack-name gatekeeper --template infra/template.yaml --parameter ManagedServiceIds=vpce-svc-0123456789abcdef0 \
      --out .local/stack.json
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import re
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

DEFAULT_REGION = "us-east-1"
BOOTSTRAP_KEY = "bootstrap"  # the access key/secret the local tooling signs its bootstrap calls with
PROVIDER_ROLE = "gatekeeper-local"
LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
# Sections where Fn::ForEach may be used (CloudFormation template reference, "Fn::ForEach": "Conditions,
# Outputs, and Resources (including the resource properties)"; not the other sections).
FOREACH_SECTIONS = ("Conditions", "Resources", "Outputs")
FOREACH_PREFIX = "Fn::ForEach::"


class DeployError(Exception):
    """The template cannot be deployed as CloudFormation would deploy it (the message says why)."""


# ------------------------------------------------------------------------------------------ loading


def load_template(path: str | Path) -> dict:
    """The template as plain JSON-like data, short tags (!Ref, !Sub, ...) turned into their long form."""
    from cfnlint.decode import cfn_yaml

    text = Path(path).read_text()
    if text.lstrip().startswith("{"):
        return json.loads(text)
    # cfn-lint's node classes subclass dict/list/str: a JSON round trip leaves plain values.
    return json.loads(json.dumps(cfn_yaml.loads(text, str(path))))


def transforms_of(template: dict) -> list[str]:
    t = template.get("Transform") or []
    return [t] if isinstance(t, str) else list(t)


# ------------------------------------------------------------------------------- Fn::ForEach expansion
#
# CloudFormation template reference, "Fn::ForEach":
#   "Fn::ForEach::UniqueLoopName": [Identifier, Collection, {OutputKey: OutputValue}]
#   - Collection: "an array in this parameter, or ... a Ref to a CommaDelimitedList".
#   - "All instances of ${Identifier}, or &{Identifier}, in the OutputKey and OutputValue parameters are
#     replaced with the values from the Collection parameter"; &{} drops the non-alphanumeric characters
#     ("When using the &{Identifier}, non-alphanumeric characters can be passed in the Collection").
#   - A Ref to the identifier is the collection item itself (the examples' `Ref: Identifier`; RFC 0009 of
#     cfn-language-discussion): so `Value: !Ref Fn` in a loop over logical IDs is the literal logical ID,
#     NOT a Ref to that resource.
#   - Fn::ForEach can contain Fn::ForEach (nesting), and the loop name is not in the output.
# AWS documents no rule for a collection item that is not a string: items are used as strings here.


def _parameter_list(name: str, template: dict, parameters: dict[str, str]) -> list[str]:
    decl = (template.get("Parameters") or {}).get(name)
    if decl is None:
        raise DeployError(f"Fn::ForEach collection: Ref to {name!r}, which is not a parameter of the template")
    ptype = str(decl.get("Type", "String"))
    if ptype != "CommaDelimitedList" and not ptype.startswith("List<"):
        raise DeployError(f"Fn::ForEach collection: parameter {name} is a {ptype}, not a CommaDelimitedList/List")
    if name in parameters:
        raw = parameters[name]
    elif "Default" in decl:
        raw = decl["Default"]
    else:
        raise DeployError(
            f"Fn::ForEach collection: parameter {name} has no value and no Default; pass --parameter {name}=a,b"
        )
    if isinstance(raw, list):
        return [str(v) for v in raw]
    # CloudFormation user guide, "Parameters" (CommaDelimitedList): "Each member string is space trimmed".
    return [v.strip() for v in str(raw).split(",")]


def _collection(loop: str, coll: Any, template: dict, parameters: dict[str, str]) -> list[str]:
    if isinstance(coll, list):
        if any(isinstance(v, (dict, list)) for v in coll):
            raise DeployError(f"{loop}: the collection's items must be literal values, got {coll!r}")
        return [str(v) for v in coll]
    if isinstance(coll, dict) and set(coll) == {"Ref"} and isinstance(coll["Ref"], str):
        return _parameter_list(coll["Ref"], template, parameters)
    raise DeployError(f"{loop}: the collection must be a list or a Ref to a CommaDelimitedList parameter, got {coll!r}")


def _strip(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", value)


def _substitute(node: Any, ident: str, value: str) -> Any:
    """The fragment with the loop identifier replaced by one collection item (in keys and values)."""
    if isinstance(node, str):
        return node.replace("${" + ident + "}", value).replace("&{" + ident + "}", _strip(value))
    if isinstance(node, list):
        return [_substitute(v, ident, value) for v in node]
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] == ident:
            return value
        return {_substitute(k, ident, value): _substitute(v, ident, value) for k, v in node.items()}
    return node


def _expand(node: Any, template: dict, parameters: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_expand(v, template, parameters) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict = {}
    for key, value in node.items():
        if isinstance(key, str) and key.startswith(FOREACH_PREFIX):
            if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and isinstance(value[2], dict)):
                raise DeployError(f"{key}: expected [Identifier, Collection, {{OutputKey: OutputValue}}]")
            ident, coll, fragment = value
            for item in _collection(key, coll, template, parameters):
                for k, v in _expand(_substitute(fragment, ident, item), template, parameters).items():
                    if k in out or k in node:
                        raise DeployError(f"{key}: the key {k!r} it produces already exists")
                    out[k] = v
        else:
            if key in out:
                raise DeployError(f"the key {key!r} is produced twice")
            out[key] = _expand(value, template, parameters)
    return out


def _length(node: Any, template: dict, parameters: dict[str, str]) -> Any:
    """Fn::Length (also AWS::LanguageExtensions): the number of items of a list or of a list parameter."""
    if isinstance(node, list):
        return [_length(v, template, parameters) for v in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::Length"}:
        arg = node["Fn::Length"]
        if isinstance(arg, list):
            return len(arg)
        if isinstance(arg, dict) and set(arg) == {"Ref"}:
            return len(_parameter_list(arg["Ref"], template, parameters))
        raise DeployError(f"Fn::Length of {arg!r} is not resolvable before deployment")
    return {k: _length(v, template, parameters) for k, v in node.items()}


def expand_language_extensions(template: dict, parameters: dict[str, str]) -> dict:
    """The template with AWS::LanguageExtensions applied (Fn::ForEach, Fn::Length) and the transform removed."""
    out = copy.deepcopy(template)
    transforms = transforms_of(out)
    if LANGUAGE_EXTENSIONS not in transforms:
        return out
    for section in FOREACH_SECTIONS:
        if section in out:
            out[section] = _length(_expand(out[section], template, parameters), template, parameters)
    rest = [t for t in transforms if t != LANGUAGE_EXTENSIONS]
    if rest:
        out["Transform"] = rest if len(rest) > 1 else rest[0]
    else:
        out.pop("Transform", None)
    left = [p for p in _paths(out) if FOREACH_PREFIX in p]
    if left:
        raise DeployError(f"Fn::ForEach outside the sections where CloudFormation expands it: {left[:3]}")
    return out


def _paths(node: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(f"{prefix}/{k}")
            out.extend(_paths(v, f"{prefix}/{k}"))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, f"{prefix}/{i}"))
    return out


# ---------------------------------------------------------------------------------- SAM translation


def code_bucket(account: str) -> str:
    return f"gatekeeper-local-code-{account}"


def _binary_of(logical_id: str, resource: dict) -> str:
    # cargo-lambda's SAM metadata: Metadata.BuildProperties.Binary names the binary of the function.
    props = (resource.get("Metadata") or {}).get("BuildProperties") or {}
    return str(props.get("Binary") or logical_id)


def translate_sam(template: dict, parameters: dict[str, str], *, region: str, account: str, stack_name: str) -> tuple[dict, dict[str, str]]:
    """(CloudFormation template, {S3 key: binary}) for a SAM template. CodeUri that is a local path (the
    translator refuses it: "'CodeUri' is not a valid S3 Uri") becomes s3://<code bucket>/<binary>.zip: a
    placeholder object deploy() puts in the local S3, as `sam deploy` uploads the built code."""
    if SAM_TRANSFORM not in transforms_of(template):
        return copy.deepcopy(template), {}
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = copy.deepcopy(template)
    bucket = code_bucket(account)
    keys: dict[str, str] = {}
    globals_fn = (sam.get("Globals") or {}).get("Function") or {}
    for logical_id, res in (sam.get("Resources") or {}).items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        props = res.setdefault("Properties", {})
        uri = props.get("CodeUri", globals_fn.get("CodeUri"))
        if "InlineCode" in props or "ImageUri" in props or isinstance(uri, dict) or (isinstance(uri, str) and uri.startswith("s3://")):
            continue
        key = f"{_binary_of(logical_id, res)}.zip"
        keys[key] = _binary_of(logical_id, res)
        props["CodeUri"] = f"s3://{bucket}/{key}"
    if "CodeUri" in globals_fn:
        del globals_fn["CodeUri"]
    values: dict[str, Any] = {}
    for name, decl in (sam.get("Parameters") or {}).items():
        if name in parameters:
            values[name] = parameters[name]
        elif "Default" in decl:
            values[name] = decl["Default"]
    values.update({"AWS::Region": region, "AWS::AccountId": account, "AWS::StackName": stack_name, "AWS::Partition": "aws"})
    try:
        out = Translator(managed_policy_map={}, sam_parser=Parser(), boto_session=boto3.Session(region_name=region)).translate(sam, values)
    except Exception as e:  # noqa: BLE001 - the translator's own errors name the problem
        raise DeployError(f"SAM translation failed: {e}") from e
    return out, keys


# --------------------------------------------------------------------------------------- conditions
#
# To know which resources CloudFormation creates, the template's conditions are evaluated as the user guide
# ("Condition functions") defines them. Only what conditions may contain is supported; anything else fails.


def _resolve(node: Any, values: dict[str, Any], conds: dict[str, bool], template: dict) -> Any:
    if isinstance(node, (str, int, float, bool)):
        return node
    if isinstance(node, dict) and len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Ref":
            if arg not in values:
                raise DeployError(f"condition: Ref {arg} has no value")
            return values[arg]
        if fn == "Condition":
            return _condition(arg, values, conds, template)
        if fn == "Fn::Equals":
            a, b = (_resolve(x, values, conds, template) for x in arg)
            return _str(a) == _str(b)
        if fn == "Fn::Not":
            return not _truth(_resolve(arg[0], values, conds, template))
        if fn == "Fn::And":
            return all(_truth(_resolve(x, values, conds, template)) for x in arg)
        if fn == "Fn::Or":
            return any(_truth(_resolve(x, values, conds, template)) for x in arg)
        if fn == "Fn::Join":
            sep, items = arg
            items = _resolve(items, values, conds, template)
            return sep.join(_str(i) for i in items)
        if fn == "Fn::Select":
            idx, items = arg
            return _resolve(items, values, conds, template)[int(_resolve(idx, values, conds, template))]
        if fn == "Fn::Split":
            sep, s = arg
            return _str(_resolve(s, values, conds, template)).split(sep)
        if fn == "Fn::FindInMap":
            m, k1, k2 = (_resolve(x, values, conds, template) for x in arg[:3])
            return template["Mappings"][m][k1][k2]
    if isinstance(node, list):
        return [_resolve(v, values, conds, template) for v in node]
    raise DeployError(f"condition: cannot evaluate {node!r} before deployment")


def _str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(_str(x) for x in v)
    return str(v)


def _truth(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise DeployError(f"condition: {v!r} is not a boolean")


def _condition(name: str, values: dict, conds: dict[str, bool], template: dict) -> bool:
    if name not in conds:
        decl = (template.get("Conditions") or {}).get(name)
        if decl is None:
            raise DeployError(f"condition {name} is not declared")
        conds[name] = _truth(_resolve(decl, values, conds, template))
    return conds[name]


def parameter_values(template: dict, parameters: dict[str, str], *, region: str, account: str, stack_name: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::StackName": stack_name,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NoValue": None,
    }
    for name, decl in (template.get("Parameters") or {}).items():
        if name in parameters:
            raw = parameters[name]
        elif "Default" in decl:
            raw = decl["Default"]
        else:
            raise DeployError(f"parameter {name} has no value and no Default; pass --parameter {name}=...")
        ptype = str(decl.get("Type", "String"))
        if ptype == "CommaDelimitedList" or ptype.startswith("List<"):
            values[name] = [v.strip() for v in _str(raw).split(",")] if not isinstance(raw, list) else raw
        else:
            values[name] = _str(raw)
    unknown = set(parameters) - set(template.get("Parameters") or {})
    if unknown:
        # CloudFormation refuses them: "Parameters: [X] do not exist in the template".
        raise DeployError(f"Parameters: {sorted(unknown)} do not exist in the template")
    return values


def expected_resources(template: dict, parameters: dict[str, str], *, region: str, account: str, stack_name: str) -> dict[str, str]:
    """{logical ID: type} of every resource CloudFormation creates from this (translated) template."""
    values = parameter_values(template, parameters, region=region, account=account, stack_name=stack_name)
    conds: dict[str, bool] = {}
    out = {}
    for logical_id, res in (template.get("Resources") or {}).items():
        cond = res.get("Condition")
        if cond is None or _condition(cond, values, conds, template):
            out[logical_id] = res["Type"]
    return out


# ------------------------------------------------------------------------------------- the stack


def provider_session(endpoint: str, account: str, region: str):
    """A boto3 session in the provider account: STS AssumeRole into arn:aws:iam::<account>:role/gatekeeper-local
    with the bootstrap keys (moto maps the issued keys to the role's account)."""
    import boto3

    sts = boto3.client(
        "sts", endpoint_url=endpoint, region_name=region, aws_access_key_id=BOOTSTRAP_KEY, aws_secret_access_key=BOOTSTRAP_KEY
    )
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{PROVIDER_ROLE}", RoleSessionName="gatekeeper-deploy")["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )


def _placeholder_zip(binary: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        # provided.al2023 runs `bootstrap`; the local runner runs the real binary itself, never this one.
        z.writestr("bootstrap", f"#!/bin/sh\necho 'placeholder for {binary}: the local runner runs the handler' >&2\nexit 1\n")
    return buf.getvalue()


def upload_code(session, endpoint: str, account: str, region: str, keys: dict[str, str]) -> None:
    if not keys:
        return
    s3 = session.client("s3", endpoint_url=endpoint)
    bucket = code_bucket(account)
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    for key, binary in keys.items():
        s3.put_object(Bucket=bucket, Key=key, Body=_placeholder_zip(binary))


TERMINAL_OK = "CREATE_COMPLETE"


def wait_for_stack(cfn, stack_id: str, timeout_s: float) -> dict:
    """The stack once CREATE_COMPLETE; DeployError on a failure status or when the deadline passes."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        stack = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
        status = stack["StackStatus"]
        if status == TERMINAL_OK:
            return stack
        if not status.endswith("_IN_PROGRESS") and status != "CREATE_PENDING":
            raise DeployError(f"stack {stack['StackName']} is {status}:\n{_events_text(cfn, stack_id)}")
        if time.monotonic() > deadline:
            raise DeployError(
                f"stack {stack['StackName']} still {status} after {timeout_s:.0f}s (deadline passed):\n{_events_text(cfn, stack_id)}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _events_text(cfn, stack_id: str) -> str:
    try:
        events = cfn.describe_stack_events(StackName=stack_id)["StackEvents"]
    except Exception as e:  # noqa: BLE001 - the events are only for the message
        return f"  (DescribeStackEvents failed: {e})"
    return "\n".join(
        f"  {e.get('LogicalResourceId')} {e.get('ResourceType')} {e.get('ResourceStatus')} {e.get('ResourceStatusReason') or ''}"
        for e in events
    )


def _paginate(client, op: str, key: str, **kwargs) -> list:
    if client.can_paginate(op):
        out = []
        for page in client.get_paginator(op).paginate(**kwargs):
            out.extend(page.get(key, []))
        return out
    return client.__getattribute__(op)(**kwargs).get(key, [])


def stack_resources(cfn, stack_id: str) -> dict[str, dict]:
    out = {}
    for r in _paginate(cfn, "list_stack_resources", "StackResourceSummaries", StackName=stack_id):
        if r.get("LogicalResourceId"):  # moto lists a resource skipped by its Condition with no ID: not one
            out[r["LogicalResourceId"]] = {"type": r["ResourceType"], "physical_id": r.get("PhysicalResourceId") or ""}
    return out


def verify_resources(expected: dict[str, str], listed: dict[str, dict]) -> None:
    missing = sorted(f"{lid} ({t})" for lid, t in expected.items() if lid not in listed)
    if missing:
        raise DeployError(
            "the stack is CREATE_COMPLETE but these template resources were not created "
            f"(moto skips resource types it does not support): {', '.join(missing)}"
        )
    wrong = sorted(f"{lid}: {listed[lid]['type']} != {t}" for lid, t in expected.items() if listed[lid]["type"] != t)
    if wrong:
        raise DeployError(f"resources created with another type: {', '.join(wrong)}")
    no_id = sorted(lid for lid in expected if not listed[lid]["physical_id"])
    if no_id:
        raise DeployError(f"resources without a physical ID: {', '.join(no_id)}")


# ------------------------------------------------------------------------------------- read back


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)


def read_back(session, endpoint: str, stack: dict, resources: dict[str, dict], *, account: str, region: str) -> dict:
    """The deployed stack, as the Rust runner consumes it; every value read from the local AWS."""
    c = lambda name: session.client(name, endpoint_url=endpoint)  # noqa: E731
    lam, sqs, sns, events, cw = c("lambda"), c("sqs"), c("sns"), c("events"), c("cloudwatch")
    of_type = lambda t: {lid: r["physical_id"] for lid, r in resources.items() if r["type"] == t}  # noqa: E731

    functions: dict[str, dict] = {}
    by_arn: dict[str, str] = {}
    for lid, name in of_type("AWS::Lambda::Function").items():
        cfg = lam.get_function_configuration(FunctionName=name)
        try:
            eic = lam.get_function_event_invoke_config(FunctionName=name)
        except lam.exceptions.ResourceNotFoundException:
            eic = {}
        functions[lid] = {
            "name": cfg["FunctionName"],
            "arn": cfg["FunctionArn"],
            "role_arn": cfg["Role"],
            "timeout": int(cfg["Timeout"]),
            "memory": int(cfg["MemorySize"]),
            "environment": {k: _str(v) for k, v in ((cfg.get("Environment") or {}).get("Variables") or {}).items()},
            "max_retry_attempts": _int_or_none(eic.get("MaximumRetryAttempts")),
            "dead_letter_arn": (cfg.get("DeadLetterConfig") or {}).get("TargetArn") or None,
        }
        by_arn[cfg["FunctionArn"]] = lid

    def function_of(arn: str) -> str | None:
        # A qualified ARN (…:function:name:qualifier) names the same function.
        base = ":".join(arn.split(":")[:7])
        return by_arn.get(arn) or by_arn.get(base)

    mappings = []
    wanted = set(of_type("AWS::Lambda::EventSourceMapping").values())
    seen = set()
    for m in _paginate(lam, "list_event_source_mappings", "EventSourceMappings"):
        if m["UUID"] not in wanted:
            continue
        seen.add(m["UUID"])
        mappings.append(
            {
                "uuid": m["UUID"],
                "function": function_of(m["FunctionArn"]),
                "event_source_arn": m["EventSourceArn"],
                "batch_size": _int_or_none(m.get("BatchSize")),
                "maximum_batching_window_s": _int_or_none(m.get("MaximumBatchingWindowInSeconds")),
                "function_response_types": list(m.get("FunctionResponseTypes") or []),
                "maximum_concurrency": _int_or_none((m.get("ScalingConfig") or {}).get("MaximumConcurrency")),
                "starting_position": m.get("StartingPosition"),
                "maximum_retry_attempts": _int_or_none(m.get("MaximumRetryAttempts")),
                "bisect_batch_on_function_error": m.get("BisectBatchOnFunctionError"),
                "on_failure_destination": ((m.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination"),
            }
        )
    if wanted - seen:
        raise DeployError(f"event source mappings of the stack missing from ListEventSourceMappings: {sorted(wanted - seen)}")
    mappings.sort(key=lambda m: (m["function"] or "", m["event_source_arn"]))

    queues = {}
    for lid, url in of_type("AWS::SQS::Queue").items():
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attrs["RedrivePolicy"]) if attrs.get("RedrivePolicy") else {}
        queues[lid] = {
            "url": url,
            "arn": attrs["QueueArn"],
            "visibility_timeout_s": int(attrs["VisibilityTimeout"]),
            "max_receive_count": _int_or_none(redrive.get("maxReceiveCount")),
            "dead_letter_target_arn": redrive.get("deadLetterTargetArn"),
        }

    subscriptions = []
    for topic_arn in of_type("AWS::SNS::Topic").values():
        for s in _paginate(sns, "list_subscriptions_by_topic", "Subscriptions", TopicArn=topic_arn):
            if s["Protocol"] == "lambda" and function_of(s["Endpoint"]):
                subscriptions.append({"topic_arn": topic_arn, "function": function_of(s["Endpoint"]), "subscription_arn": s["SubscriptionArn"]})
    subscriptions.sort(key=lambda s: (s["function"], s["topic_arn"]))

    schedules = []
    buses = ["default"] + list(of_type("AWS::Events::EventBus").values())
    rule_names = set(of_type("AWS::Events::Rule").values())
    for bus in buses:
        for rule in _paginate(events, "list_rules", "Rules", EventBusName=bus):
            if rule["Name"] not in rule_names or not rule.get("ScheduleExpression"):
                continue
            for target in _paginate(events, "list_targets_by_rule", "Targets", Rule=rule["Name"], EventBusName=bus):
                fn = function_of(target["Arn"])
                if fn:
                    schedules.append(
                        {"rule_name": rule["Name"], "schedule_expression": rule["ScheduleExpression"], "function": fn, "state": rule.get("State")}
                    )
    schedules.sort(key=lambda s: (s["function"], s["rule_name"]))

    alarms = []
    names = sorted(of_type("AWS::CloudWatch::Alarm").values())
    for i in range(0, len(names), 100):  # DescribeAlarms takes at most 100 names
        for a in _paginate(cw, "describe_alarms", "MetricAlarms", AlarmNames=names[i : i + 100]):
            alarms.append(
                {
                    "name": a["AlarmName"],
                    "namespace": a.get("Namespace"),
                    "metric": a.get("MetricName"),
                    "dimensions": {d["Name"]: d["Value"] for d in a.get("Dimensions") or []},
                }
            )
    if len(alarms) != len(names):
        raise DeployError(f"DescribeAlarms returned {len(alarms)} of the stack's {len(names)} alarms")
    alarms.sort(key=lambda a: a["name"])

    return {
        "stack_name": stack["StackName"],
        "stack_id": stack["StackId"],
        "region": region,
        "account": account,
        "parameters": {p["ParameterKey"]: _str(p.get("ParameterValue")) for p in stack.get("Parameters") or []},
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []},
        "resources": resources,
        "functions": functions,
        "event_source_mappings": mappings,
        "queues": queues,
        "sns_lambda_subscriptions": subscriptions,
        "schedules": schedules,
        "alarms": alarms,
    }


# ---------------------------------------------------------------------------------------- deploy


def prepare(template: dict, parameters: dict[str, str], *, region: str, account: str, stack_name: str) -> tuple[dict, dict[str, str]]:
    """(the CloudFormation template CreateStack gets, {S3 key: binary} of the code placeholders)."""
    expanded = expand_language_extensions(template, parameters)
    cfn, keys = translate_sam(expanded, parameters, region=region, account=account, stack_name=stack_name)
    left = [t for t in transforms_of(cfn)]
    if left:
        raise DeployError(f"transforms this deployer does not apply: {left}")
    return cfn, keys


def deploy(
    endpoint: str,
    account: str,
    stack_name: str,
    template: str | Path | dict,
    parameters: dict[str, str] | None = None,
    *,
    region: str = DEFAULT_REGION,
    timeout_s: float = 60.0,
) -> dict:
    """Deploys the template as stack `stack_name` and returns the read-back description (see read_back)."""
    parameters = {k: str(v) for k, v in (parameters or {}).items()}
    source = template if isinstance(template, dict) else load_template(template)
    cfn_template, keys = prepare(source, parameters, region=region, account=account, stack_name=stack_name)
    expected = expected_resources(cfn_template, parameters, region=region, account=account, stack_name=stack_name)
    session = provider_session(endpoint, account, region)
    upload_code(session, endpoint, account, region, keys)
    cfn = session.client("cloudformation", endpoint_url=endpoint)
    stack_id = cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(cfn_template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )["StackId"]
    stack = wait_for_stack(cfn, stack_id, timeout_s)
    resources = stack_resources(cfn, stack_id)
    verify_resources(expected, resources)
    return read_back(session, endpoint, stack, resources, account=account, region=region)


def _parse_parameters(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--parameter {item!r}: expected Key=Value")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", required=True, help="the local AWS, e.g. http://127.0.0.1:4566")
    p.add_argument("--account", required=True, help="the provider account (12 digits)")
    p.add_argument("--stack-name", required=True)
    p.add_argument("--template", required=True)
    p.add_argument("--parameter", action="append", default=[], metavar="Key=Value")
    p.add_argument("--region", default=DEFAULT_REGION)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for CREATE_COMPLETE")
    p.add_argument("--out", required=True, help="where to write the JSON description of the stack")
    args = p.parse_args(argv)
    try:
        desc = deploy(
            args.endpoint,
            args.account,
            args.stack_name,
            args.template,
            _parse_parameters(args.parameter),
            region=args.region,
            timeout_s=args.timeout,
        )
    except DeployError as e:
        print(f"deploy failed: {e}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(desc, indent=2, sort_keys=True) + "\n")
    tmp.replace(out)  # readers never see a half-written file
    print(f"stack {desc['stack_name']} CREATE_COMPLETE: {len(desc['resources'])} resources; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
