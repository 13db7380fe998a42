"""CloudFormation for the local AWS: the resource types infra/template.yaml uses that moto lacks, fixes for
moto's CreateStack bugs, SNS delivery to Lambda subscriptions, and event source mappings kept as data.

Patched in moto (pinned: MOTO_VERSION below; test_deploy.py fails when a patch point moves):
  CreateStack
    - a resource type moto has no CloudFormation model for FAILS the stack (moto skips it and still says
      CREATE_COMPLETE); a resource that raises fails the stack (moto answers HTTP 500 and leaves the stack
      CREATE_IN_PROGRESS forever). Both give a CREATE_FAILED resource event and a CREATE_FAILED stack.
    - `Ref` to AWS::Events::EventBus is the bus name (moto returned the object: "'EventBus' object has no
      attribute 'split'").
    - `Fn::If [c, x, Ref AWS::NoValue]` as a list item removes the item (moto kept a None: TypeError in
      moto/iam/models.py for a role's Policies).
    - an AWS::IAM::Role's ManagedPolicyArns are attached (moto ignored them: the role had none), and
      detached when the stack deletes the role (else moto's DeleteRole refuses it). Not on update.
    - inline role policies are stored as JSON text, as IAM stores them (moto kept dicts; its IAM
      authorisation then fails with KeyError 'policy_document'); so is an AWS::KMS::Key's KeyPolicy (moto's
      GetKeyPolicy answered an object, which no SDK reads).
    - a role's inline policies together may not pass IAM's quota of 10,240 characters, white space not
      counted: PutRolePolicy, a role's Policies and an AWS::IAM::RolePolicy past it are refused with
      LimitExceeded, so the stack fails (moto kept the quota only for GetAccountSummary).
    - AWS::Lambda::Function keeps DeadLetterConfig, LoggingConfig, TracingConfig and Architectures, and its
      environment values are strings (moto dropped the first four; numbers stayed numbers). A function's
      environment over Lambda's 4 KB is refused, there and at CreateFunction and
      UpdateFunctionConfiguration (moto took any size).
    - AWS::DynamoDB::Table applies TimeToLiveSpecification, PointInTimeRecoverySpecification and
      SSESpecification (its key: the customer managed key named, else the AWS managed alias/aws/dynamodb).
    - AWS::Lambda::Permission gets a physical ID (moto listed it with none).
    - a parameter value (given, or the Default) that breaks its parameter's constraints (AllowedValues,
      AllowedPattern, MinLength/MaxLength, MinValue/MaxValue, a Number that is not one) is refused with a
      ValidationError naming the parameter, and nothing is created (moto took any value), at CreateStack,
      UpdateStack and CreateChangeSet (which `sam deploy` uses; moto refused only at ExecuteChangeSet).
  added resource types
    AWS::CloudWatch::Alarm, AWS::EC2::VPCEndpointConnectionNotification, AWS::IAM::RolePolicy,
    AWS::Lambda::EventInvokeConfig, AWS::SNS::Subscription, AWS::SNS::TopicPolicy, AWS::SQS::QueuePolicy
  Lambda
    - event source mappings are INERT: kept as data (ListEventSourceMappings lists them), but moto never
      receives SQS messages, reads stream records or runs a function for them. The project's runner drives
      the handlers itself.
    - an SQS mapping is refused, on create and on update, when the function's timeout exceeds the queue's
      visibility timeout, as the Lambda guide says, and when its BatchSize, batching window or
      MaximumConcurrency is one the Lambda API reference refuses (more than 10 with no window) (moto made it).
    - Put/UpdateFunctionEventInvokeConfig overwrite/merge as the Lambda API reference says (moto appended).
    - delivery from SNS to a `lambda` subscription is an asynchronous invocation: the event Lambda builds is
      queued per function, and the runner takes and finishes invocations through the control paths below;
      retries, then the dead-letter queue / on-failure destination, follow Lambda's asynchronous invocation.

Control paths (JSON bodies; answered through control()):
  POST /_gatekeeper/lambda/take  {"function_arn": "...", "max": 10, "wait_s": 0}
       -> {"invocations": [{"id", "attempt", "payload"}]}   (taken items are in flight until done)
  POST /_gatekeeper/lambda/done  {"id": "...", "ok": true|false, "error": "...", "error_type": "..."}
       -> {}  or {"error": "..."} for an ID that is not in flight
  POST /_gatekeeper/deliveries  {"delay_ms": N} (optional) sets how long after its call (SNS Publish,
       EventBridge PutEvents) a delivery to a queue is made (GATEKEEPER_EMU_DELIVERY_MS at start; default 0: at
       once, apart from the call); {"duplicate_rate": r} makes that share of deliveries (to queues, and SNS's
       to functions) twice, as at-least-once delivery may
       -> {"delay_ms", "duplicate_rate", "duplicated", "pending"}   duplicated: deliveries made twice so far;
          pending: deliveries to queues not yet made
  GET  /_gatekeeper/lambda/undelivered
       -> {"undelivered": [...]}  SNS deliveries Lambda refused (no resource-policy permission, no function)
          and failure records that had nowhere to go
"""

from __future__ import annotations

import datetime
import heapq
import json
import math
import os
import random
import re
import sys
import threading
import time
import uuid
from collections import deque
from typing import Any

import gk_control
import gk_policy
import moto
from moto.awslambda import exceptions as lambda_exceptions
from moto.awslambda import models as lambda_models
from moto.cloudformation import models as cfn_models
from moto.cloudformation import parsing
from moto.cloudwatch import models as cw_models
from moto.core.common_models import CloudFormationModel
from moto.dynamodb.models import table as ddb_table
from moto.events import models as events_models
from moto.iam import exceptions as iam_exceptions
from moto.iam import models as iam_models
from moto.kms import models as kms_models
from moto.sns import models as sns_models
from moto.sqs import models as sqs_models
from moto.utilities.utils import get_partition

MOTO_VERSION = "5.2.1"
if moto.__version__ != MOTO_VERSION:
    print(
        f"gk_cloudformation: written against moto {MOTO_VERSION}, running {moto.__version__}: "
        "run tests/emulator/test_deploy.py before trusting the local AWS",
        file=sys.stderr,
    )

# The patch points; test_deploy.py asserts each still exists in the pinned moto.
PATCH_POINTS = {
    "moto.cloudformation.parsing.clean_json": (parsing, "clean_json"),
    "moto.cloudformation.parsing.parse_and_create_resource": (parsing, "parse_and_create_resource"),
    "moto.cloudformation.parsing.resource_class_from_type": (parsing, "resource_class_from_type"),
    "moto.cloudformation.parsing.get_model_list": (parsing, "get_model_list"),
    "moto.cloudformation.parsing.get_model_map": (parsing, "get_model_map"),
    "moto.cloudformation.parsing.get_name_type_map": (parsing, "get_name_type_map"),
    "moto.cloudformation.models.Stack.create_resources": (cfn_models.Stack, "create_resources"),
    "moto.cloudformation.models.Event": (cfn_models, "Event"),
    "moto.cloudformation.models.Stack.parameter_list": (cfn_models.Stack, "parameter_list"),
    "moto.cloudformation.parsing.ResourceMap.load_parameters": (parsing.ResourceMap, "load_parameters"),
    "moto.events.models.EventBus": (events_models, "EventBus"),
    "moto.events.models.Archive": (events_models, "Archive"),
    "moto.events.models.EventsBackend._RATE_REGEX": (events_models.EventsBackend, "_RATE_REGEX"),
    "moto.events.models.Rule._send_to_sqs_queue": (events_models.Rule, "_send_to_sqs_queue"),
    "moto.cloudformation.models.CloudFormationBackend.create_change_set": (cfn_models.CloudFormationBackend, "create_change_set"),
    "moto.iam.models.Role.create_from_cloudformation_json": (iam_models.Role, "create_from_cloudformation_json"),
    "moto.iam.models.Role.put_policy": (iam_models.Role, "put_policy"),
    "moto.kms.models.Key.create_from_cloudformation_json": (kms_models.Key, "create_from_cloudformation_json"),
    "moto.awslambda.models.LambdaFunction.__init__": (lambda_models.LambdaFunction, "__init__"),
    "moto.awslambda.models.LambdaFunction.get_configuration": (lambda_models.LambdaFunction, "get_configuration"),
    "moto.awslambda.models.LambdaFunction.update_configuration": (lambda_models.LambdaFunction, "update_configuration"),
    "moto.awslambda.models.LambdaFunction.create_from_cloudformation_json": (
        lambda_models.LambdaFunction,
        "create_from_cloudformation_json",
    ),
    "moto.awslambda.models.Permission.create_from_cloudformation_json": (lambda_models.Permission, "create_from_cloudformation_json"),
    "moto.awslambda.models.LambdaBackend.create_event_source_mapping": (lambda_models.LambdaBackend, "create_event_source_mapping"),
    "moto.awslambda.models.LambdaBackend.update_event_source_mapping": (lambda_models.LambdaBackend, "update_event_source_mapping"),
    "moto.awslambda.models.LambdaBackend.put_function_event_invoke_config": (
        lambda_models.LambdaBackend,
        "put_function_event_invoke_config",
    ),
    "moto.awslambda.models.LambdaBackend.update_function_event_invoke_config": (
        lambda_models.LambdaBackend,
        "update_function_event_invoke_config",
    ),
    "moto.dynamodb.models.table.Table.create_from_cloudformation_json": (ddb_table.Table, "create_from_cloudformation_json"),
    "moto.dynamodb.models.table.Table._get_default_encryption_key": (ddb_table.Table, "_get_default_encryption_key"),
    "moto.sns.models.Subscription.publish": (sns_models.Subscription, "publish"),
    "moto.sns.models.Subscription.get_post_data": (sns_models.Subscription, "get_post_data"),
    "moto.sns.models.Subscription._parse_message_structure": (sns_models.Subscription, "_parse_message_structure"),
    "moto.lambda.models.EventInvokeConfig": (lambda_models, "EventInvokeConfig"),
}
for _name, (_owner, _attr) in PATCH_POINTS.items():
    if not hasattr(_owner, _attr):
        raise ImportError(f"gk_cloudformation: moto {moto.__version__} has no {_name}; the patches need moto {MOTO_VERSION}")


def _extension():
    """gatekeeper_moto, the running extension: `__main__` when the server runs as a script (importing it by
    name would load a second copy with its own registries)."""
    for name in ("__main__", "gatekeeper_moto"):
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "_NOTIFICATIONS") and hasattr(mod, "create_vpc_endpoint_connection_notification"):
            return mod
    import gatekeeper_moto

    return gatekeeper_moto


# ============================================================================ CreateStack failures


class ResourceCreateFailed(Exception):
    def __init__(self, logical_id: str, resource_type: str, reason: str):
        super().__init__(f"{logical_id} ({resource_type}): {reason}")
        self.logical_id = logical_id
        self.resource_type = resource_type
        self.reason = reason


_orig_parse_and_create_resource = parsing.parse_and_create_resource


def _parse_and_create_resource(logical_id, resource_json, resources_map, account_id, region_name):
    condition = resource_json.get("Condition")
    if condition and not resources_map.lazy_condition_map[condition]:
        return None  # not created: its condition is false (as moto already does)
    resource_type = resource_json["Type"]
    if resource_type not in parsing.NULL_MODELS and parsing.resource_class_from_type(resource_type) is None:
        # AWS CloudFormation has the type, this emulator cannot create it: the stack must not claim it did.
        raise ResourceCreateFailed(
            logical_id, resource_type, f"the local AWS (moto {moto.__version__}) has no CloudFormation support for {resource_type}"
        )
    try:
        return _orig_parse_and_create_resource(logical_id, resource_json, resources_map, account_id, region_name)
    except ResourceCreateFailed:
        raise  # a resource this one references failed: keep that resource's name
    except Exception as e:  # noqa: BLE001 - any error of moto's is this resource's failure
        raise ResourceCreateFailed(logical_id, resource_type, f"{type(e).__name__}: {e}") from e


parsing.parse_and_create_resource = _parse_and_create_resource

_orig_create_resources = cfn_models.Stack.create_resources


def _create_resources(self) -> None:
    # CloudFormation user guide, "Stack status codes" / "Troubleshooting": a resource that fails gets a
    # CREATE_FAILED event with the reason, and the stack fails. moto cannot roll back what it created, so the
    # stack is left as CloudFormation leaves it with rollback disabled (--disable-rollback): CREATE_FAILED.
    try:
        _orig_create_resources(self)
    except ResourceCreateFailed as e:
        self.events.append(
            cfn_models.Event(
                stack_id=self.stack_id,
                stack_name=self.name,
                logical_resource_id=e.logical_id,
                physical_resource_id="",
                resource_type=e.resource_type,
                resource_status="CREATE_FAILED",
                resource_status_reason=e.reason,
                resource_properties=None,
            )
        )
        self.status = "CREATE_FAILED"
        self._add_stack_event("CREATE_FAILED", resource_status_reason=f"The following resource(s) failed to create: [{e.logical_id}].")
    except Exception as e:  # noqa: BLE001 - a failure outside any one resource (outputs, tags)
        self.status = "CREATE_FAILED"
        self._add_stack_event("CREATE_FAILED", resource_status_reason=f"{type(e).__name__}: {e}")


cfn_models.Stack.create_resources = _create_resources

_orig_parameter_list = cfn_models.Stack.parameter_list.fget


def _parameter_list(self):
    # CloudFormation API reference, Parameter: ParameterValue is a string, the value as it was given; a
    # CommaDelimitedList is "a,b" (moto answered the Python list's repr, "['a', 'b']").
    out = []
    for item in _orig_parameter_list(self):
        value = item["ParameterValue"]
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif value is not None and not isinstance(value, str):
            value = str(value)
        out.append({**item, "ParameterValue": value})
    return out


cfn_models.Stack.parameter_list = property(_parameter_list)


# CloudFormation User Guide, "Parameters syntax" (parameters-section-structure.html): AllowedPattern "When
# applied on a parameter of type String, the pattern must match the entire parameter value provided. When
# applied to a parameter of type CommaDelimitedList, the pattern must match each value in the list";
# AllowedValues, "the list of values allowed for the parameter"; MinLength/MaxLength for String types;
# MinValue/MaxValue for Number types; ConstraintDescription "explains a constraint when the constraint is
# violated". A stack created with a value that breaks them fails CreateStack with ValidationError before
# anything is created. The guide documents the constraints, not the messages' text: these name the
# parameter and the constraint, in the form CloudFormation is reported to answer ("Parameter 'X' must be
# one of AllowedValues"), and give the ConstraintDescription when the template has one.
_orig_load_parameters = parsing.ResourceMap.load_parameters


# A number as a template writes one: digits, an optional fraction and exponent (not Python's "nan", "inf" or
# "1_000", which float() takes).
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _number(raw: Any) -> float | None:
    text = _text(raw)
    if _NUMBER.fullmatch(text) is None:
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _text(v: Any) -> str:
    """A parameter value or constraint as CloudFormation writes it: a YAML boolean as "true"/"false", a list
    comma-joined (as deploy.py's `_str`)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(_text(x) for x in v)
    return str(v)


def parameter_problem(name: str, slot: dict, value: Any) -> str | None:
    """Why `value` breaks the constraints of the template parameter `slot` named `name`, or None."""
    kind = slot.get("Type", "String")
    described = slot.get("ConstraintDescription")

    def broken(what: str) -> str:
        return f"Parameter '{name}' failed to satisfy constraint: {described}" if described else f"Parameter '{name}' {what}"

    text = _text(value)
    # CloudFormation User Guide, "Parameters syntax", CommaDelimitedList: "Each member string is space trimmed"
    # (deploy.py expands Fn::ForEach over the same trimmed members).
    items = [v.strip() for v in text.split(",")] if kind == "CommaDelimitedList" or kind.startswith("List<") else [text]
    if kind == "Number" or kind == "List<Number>":
        for item in items:
            number = _number(item)
            if number is None:
                return f"Parameter '{name}' must be a number"
            if "MinValue" in slot and number < float(slot["MinValue"]):
                return broken(f"must be a number not less than {slot['MinValue']}")
            if "MaxValue" in slot and number > float(slot["MaxValue"]):
                return broken(f"must be a number not greater than {slot['MaxValue']}")
    if "AllowedValues" in slot:
        allowed = {_text(v) for v in slot["AllowedValues"]}
        if any(item not in allowed for item in items):
            return broken("must be one of AllowedValues")
    if "AllowedPattern" in slot:
        pattern = re.compile(slot["AllowedPattern"])
        if any(pattern.fullmatch(item) is None for item in items):
            return broken(f"must match pattern {slot['AllowedPattern']}")
    if "MinLength" in slot and len(text) < int(slot["MinLength"]):
        return broken(f"must contain at least {slot['MinLength']} characters")
    if "MaxLength" in slot and len(text) > int(slot["MaxLength"]):
        return broken(f"must contain at most {slot['MaxLength']} characters")
    return None


def refuse_broken_parameters(template: dict, given: dict) -> None:
    """ValidationError for the first parameter whose value (given, or else its Default) breaks its constraints."""
    from moto.cloudformation.exceptions import ValidationError

    for name, slot in ((template or {}).get("Parameters") or {}).items():
        value = given.get(name, slot.get("Default"))
        if value is None or re.match(r"(List<)?AWS::", str(slot.get("Type", ""))):
            continue  # a missing value is moto's MissingParameterError; AWS-specific types are looked up, not matched
        problem = parameter_problem(name, slot, value)
        if problem:
            raise ValidationError(message=problem)


def _load_parameters(self) -> None:
    refuse_broken_parameters(self._template, self.input_parameters)
    _orig_load_parameters(self)


parsing.ResourceMap.load_parameters = _load_parameters

# A change set (what `sam deploy` and `aws cloudformation deploy` create, then execute) is refused at
# CreateChangeSet for the same reasons, before a change set or a REVIEW_IN_PROGRESS stack exists; moto took
# any value there and refused it only at ExecuteChangeSet. A parameter left out of an update takes its
# Default, as in UpdateStack; UsePreviousValue has been read by moto into the stack's value already.
_orig_create_change_set = cfn_models.CloudFormationBackend.create_change_set


def _create_change_set(self, stack_name, change_set_name, template, parameters, *args, **kwargs):
    if template:
        refuse_broken_parameters(cfn_models.Stack.parse_template(template), parameters or {})
    return _orig_create_change_set(self, stack_name, change_set_name, template, parameters, *args, **kwargs)


cfn_models.CloudFormationBackend.create_change_set = _create_change_set

# =================================================================================== intrinsics

_orig_clean_json = parsing.clean_json


def _clean_json(resource_json, resources_map):
    # CloudFormation user guide, "Pseudo parameters reference", AWS::NoValue: "Removes the corresponding
    # resource property when specified as a return value in the Fn::If intrinsic function"; as a list item
    # (the documented `Fn::If` in a list, e.g. a role's Policies), the item is removed.
    if isinstance(resource_json, list):
        out = []
        for item in resource_json:
            cleaned = _clean_json(item, resources_map)
            if cleaned is None and isinstance(item, dict) and ("Fn::If" in item or item.get("Ref") == "AWS::NoValue"):
                continue
            out.append(cleaned)
        return out
    return _orig_clean_json(resource_json, resources_map)


parsing.clean_json = _clean_json  # the original's recursion looks the name up in the module: it calls this


# CloudFormation template reference, AWS::Events::EventBus, "Return values": "Ref returns the name of the
# event bus".
events_models.EventBus.physical_resource_id = property(lambda self: self.name)
# AWS::Events::Archive, "Return values": "Ref returns the archive name" (moto listed it with no physical ID).
events_models.Archive.physical_resource_id = property(lambda self: self.name)
# EventBridge, "Rate expressions reference": rate(value unit), value "A positive number"; "If the value is
# equal to 1, then the unit must be singular. If the value is greater than 1, the unit must be plural. For
# example, rate(1 hours) and rate(5 hour) aren't valid". moto's pattern took any digits (none, 0, or 1 with a
# plural unit) and anything after the unit; PutRule (and a stack's AWS::Events::Rule, through it) now
# answers its ValidationException "Parameter ScheduleExpression is not valid." for those.
events_models.EventsBackend._RATE_REGEX = re.compile(r"^rate\((1 (minute|hour|day)|(?!0)(?!1 )\d+ (minutes|hours|days))\)$")

# ================================================================================== IAM roles

_orig_role_create = iam_models.Role.create_from_cloudformation_json.__func__


def _policy_text(doc: Any) -> str:
    # IAM API reference, GetRolePolicy: the PolicyDocument is a (URL-encoded) JSON text; IAM stores text.
    return doc if isinstance(doc, str) else json.dumps(doc)


def _role_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    props = cloudformation_json.get("Properties") or {}
    props["Policies"] = [
        {**p, "PolicyDocument": _policy_text(p["PolicyDocument"])} for p in props.get("Policies") or [] if p is not None
    ]
    role = _orig_role_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    # AWS::IAM::Role, ManagedPolicyArns: "A list of Amazon Resource Names (ARNs) of the IAM managed policies that
    # you want to attach to the role." (CloudFormation template reference). moto ignored the property; each is
    # attached as AttachRolePolicy attaches it (an ARN IAM does not know fails the resource, so the stack).
    backend = iam_models.iam_backends[account_id][get_partition(region_name)]
    for arn in props.get("ManagedPolicyArns") or []:
        if arn is not None:
            backend.attach_role_policy(arn, role.name)
    return role


iam_models.Role.create_from_cloudformation_json = classmethod(_role_create)

_orig_role_delete = iam_models.Role.delete_from_cloudformation_json.__func__


def _role_delete(cls, resource_name, cloudformation_json, account_id, region_name):
    # CloudFormation detaches what it attached (ManagedPolicyArns) when it deletes the role; moto's DeleteRole
    # refuses a role with managed policies attached (DeleteConflict), as IAM's does.
    backend = iam_models.iam_backends[account_id][get_partition(region_name)]
    for role in list(backend.roles.values()):
        if role.name == resource_name:
            for policy in list(role.managed_policies.values()):
                policy.detach_from(role)
    return _orig_role_delete(cls, resource_name, cloudformation_json, account_id, region_name)


iam_models.Role.delete_from_cloudformation_json = classmethod(_role_delete)

# IAM and AWS STS quotas (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html): "You
# can add as many inline policies as you want to an IAM user, role, or group. But the total aggregate policy
# size (the sum size of all inline policies) per entity cannot exceed the following limits: ... Role policy
# size cannot exceed 10,240 characters." and "IAM does not count white space when calculating the size of a
# policy against these limitations." The refusal is PutRolePolicy's LimitExceeded (HTTP 409, IAM API
# reference), worded "Maximum policy size of 10240 bytes exceeded for role <name>" as users report it
# (aws/aws-cdk#12403, serverless/serverless#7643, gchq/sleeper#1459). The API's PutRolePolicy, a role's
# Policies and AWS::IAM::RolePolicy all reach Role.put_policy.
ROLE_POLICY_SIZE_QUOTA = 10_240
_WHITE_SPACE = re.compile(r"\s+")
_orig_put_policy = iam_models.Role.put_policy


def policy_size(document: Any) -> int:
    """A policy's size as IAM counts it against its quotas: its JSON text's characters but white space."""
    return len(_WHITE_SPACE.sub("", _policy_text(document)))


def _put_policy(self, policy_name: str, policy_json: Any) -> None:
    others = sum(policy_size(d) for name, d in self.policies.items() if name != policy_name)
    if others + policy_size(policy_json) > ROLE_POLICY_SIZE_QUOTA:
        raise iam_exceptions.LimitExceededException(
            f"Maximum policy size of {ROLE_POLICY_SIZE_QUOTA} bytes exceeded for role {self.name}"
        )
    _orig_put_policy(self, policy_name, policy_json)


iam_models.Role.put_policy = _put_policy

# ================================================================================== KMS keys

_orig_key_create = kms_models.Key.create_from_cloudformation_json.__func__


def _key_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    # KMS API reference, GetKeyPolicy: "Policy: A key policy document, in JSON format" (a string); moto kept
    # the template's mapping, so GetKeyPolicy answered an object where every SDK expects text.
    props = cloudformation_json.get("Properties") or {}
    if "KeyPolicy" in props:
        props["KeyPolicy"] = _policy_text(props["KeyPolicy"])
    return _orig_key_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)


kms_models.Key.create_from_cloudformation_json = classmethod(_key_create)

# ============================================================================== Lambda functions

_orig_fn_init = lambda_models.LambdaFunction.__init__
_orig_fn_config = lambda_models.LambdaFunction.get_configuration
_orig_fn_update = lambda_models.LambdaFunction.update_configuration
_orig_fn_create = lambda_models.LambdaFunction.create_from_cloudformation_json.__func__


# Lambda quotas (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): "Function environment
# variables: 4 KB, for all environment variables associated with the function, in aggregate". The refusal is
# InvalidParameterValueException, "Lambda was unable to configure your environment variables because the
# environment variables you have provided exceeded the 4KB limit. String measured: {...}", as users report it
# (github-aws-runners/terraform-aws-github-runner#3594, aws-samples/aws-genai-llm-chatbot#583): measured here as
# that string, the variables as compact JSON, the larger of the measures reported (another: keys and values
# summed). moto took any size.
ENVIRONMENT_QUOTA = 4096


def check_environment(variables) -> None:
    measured = json.dumps(variables or {}, separators=(",", ":"))
    if len(measured.encode()) > ENVIRONMENT_QUOTA:
        raise lambda_exceptions.InvalidParameterValueException(
            "Lambda was unable to configure your environment variables because the environment variables you have "
            f"provided exceeded the 4KB limit. String measured: {measured}"
        )


def _fn_init(self, account_id, spec, region, version=1):
    check_environment((spec.get("Environment") or {}).get("Variables"))
    _orig_fn_init(self, account_id, spec, region, version)
    self._gk_dead_letter_config = spec.get("DeadLetterConfig") or None
    self._gk_logging_config = spec.get("LoggingConfig") or None


def _fn_config(self, on_create=False):
    config = _orig_fn_config(self, on_create)
    # Lambda API reference, FunctionConfiguration: DeadLetterConfig {TargetArn}; LoggingConfig {LogFormat,
    # ApplicationLogLevel, SystemLogLevel, LogGroup} with the default log group /aws/lambda/<function name>.
    dlc = getattr(self, "_gk_dead_letter_config", None)
    if dlc and dlc.get("TargetArn"):
        config["DeadLetterConfig"] = {"TargetArn": dlc["TargetArn"]}
    logging_config = dict(getattr(self, "_gk_logging_config", None) or {"LogFormat": "Text"})
    logging_config.setdefault("LogGroup", f"/aws/lambda/{self.function_name}")
    config["LoggingConfig"] = logging_config
    return config


def _fn_update(self, config_updates):
    if "Environment" in config_updates:
        check_environment((config_updates["Environment"] or {}).get("Variables"))
    if "DeadLetterConfig" in config_updates:
        self._gk_dead_letter_config = config_updates["DeadLetterConfig"] or None
    if "LoggingConfig" in config_updates:
        self._gk_logging_config = config_updates["LoggingConfig"] or None
    if "TracingConfig" in config_updates:
        self.tracing_config = config_updates["TracingConfig"]
    return _orig_fn_update(self, config_updates)


def _fn_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    props = cloudformation_json["Properties"]
    env = (props.get("Environment") or {}).get("Variables")
    if env:
        # Lambda API reference, Environment: Variables is a map of string to string.
        props["Environment"] = {"Variables": {k: v if isinstance(v, str) else json.dumps(v) for k, v in env.items()}}
    fn = _orig_fn_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    if props.get("DeadLetterConfig"):
        fn._gk_dead_letter_config = props["DeadLetterConfig"]
    if props.get("LoggingConfig"):
        fn._gk_logging_config = props["LoggingConfig"]
    if props.get("TracingConfig"):
        fn.tracing_config = props["TracingConfig"]
    if props.get("Architectures"):
        fn.architectures = list(props["Architectures"])
    if props.get("EphemeralStorage"):
        fn.ephemeral_storage = int(props["EphemeralStorage"]["Size"])
    return fn


lambda_models.LambdaFunction.__init__ = _fn_init
lambda_models.LambdaFunction.get_configuration = _fn_config
lambda_models.LambdaFunction.update_configuration = _fn_update
lambda_models.LambdaFunction.create_from_cloudformation_json = classmethod(_fn_create)

_orig_permission_create = lambda_models.Permission.create_from_cloudformation_json.__func__


def _permission_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    perm = _orig_permission_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    # The template reference documents no format for this physical ID; the generated name stands in.
    perm.physical_resource_id = resource_name
    return perm


lambda_models.Permission.create_from_cloudformation_json = classmethod(_permission_create)


def _put_eic(self, function_name, config):
    # Lambda API reference, PutFunctionEventInvokeConfig: "If a configuration already exists for a function,
    # alias, or version, this operation overwrites it." (moto appended a second one and kept reading the first)
    fn = self.get_function(function_name)
    event_config = lambda_models.EventInvokeConfig(fn.function_arn, fn.last_modified, dict(config))
    fn.event_invoke_config = [event_config]
    return event_config.response()


def _update_eic(self, function_name, config):
    # Lambda API reference, UpdateFunctionEventInvokeConfig: updates only the settings given.
    fn = self.get_function(function_name)
    merged = dict(fn.event_invoke_config[0].config) if fn.event_invoke_config else {}
    merged.update(config)
    return _put_eic(self, function_name, merged)


lambda_models.LambdaBackend.put_function_event_invoke_config = _put_eic
lambda_models.LambdaBackend.update_function_event_invoke_config = _update_eic

# ============================================================================== DynamoDB tables

_orig_table_create = ddb_table.Table.create_from_cloudformation_json.__func__


def _table_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    from moto.dynamodb.models import dynamodb_backends

    table = _orig_table_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    props = cloudformation_json.get("Properties") or {}
    backend = dynamodb_backends[account_id][region_name]
    # CloudFormation template reference, AWS::DynamoDB::Table: TimeToLiveSpecification {AttributeName,
    # Enabled} and PointInTimeRecoverySpecification {PointInTimeRecoveryEnabled}, as the UpdateTimeToLive and
    # UpdateContinuousBackups APIs set them.
    ttl = props.get("TimeToLiveSpecification")
    if ttl and str(ttl.get("Enabled")).lower() == "true":
        backend.update_time_to_live(table.name, {"AttributeName": ttl["AttributeName"], "Enabled": True})
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr and str(pitr.get("PointInTimeRecoveryEnabled")).lower() == "true":
        backend.update_continuous_backups(table.name, {"PointInTimeRecoveryEnabled": True})
    # SSESpecification {SSEEnabled, SSEType, KMSMasterKeyId}: "If enabled (true), server-side encryption type is
    # set to KMS and an AWS managed key is used"; KMSMasterKeyId, "The AWS KMS key that should be used for the
    # AWS KMS encryption" (key ID, ARN, alias name or alias ARN). moto read the API's `Enabled`, not
    # `SSEEnabled`, so a template's table showed no encryption and its key was never known (gk_iam asks a
    # table's customer managed key of its callers).
    sse = props.get("SSESpecification") or {}
    if str(sse.get("SSEEnabled")).lower() == "true":
        from moto.kms.models import kms_backends

        kms = kms_backends[account_id][region_name]
        key = kms.describe_key(sse["KMSMasterKeyId"]).arn if sse.get("KMSMasterKeyId") else table._get_default_encryption_key(account_id, region_name)
        table.sse_specification = {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key}
    return table


ddb_table.Table.create_from_cloudformation_json = classmethod(_table_create)

# ====================================================================== inert event source mappings

_orig_create_esm = lambda_models.LambdaBackend.create_event_source_mapping


def _visibility_problem(backend, source: str, function_name) -> str | None:
    """Lambda Developer Guide, "Creating and configuring an Amazon SQS event source mapping", Note: "Your
    function's timeout must be less than or equal to the queue's visibility timeout. Lambda validates this
    requirement when you create or update an event source mapping and will return an error if the function
    timeout exceeds the queue's visibility timeout." The error's text is not in the guide; this is the one
    users report (`InvalidParameterValueException: Queue visibility timeout: 30 seconds is less than Function
    timeout: 60 seconds`, e.g. hashicorp/terraform-provider-aws#18099; through CloudFormation, "Invalid
    request provided: Queue visibility timeout: ..."). moto created and updated the mapping."""
    queue = next((q for q in sqs_models.sqs_backends[backend.account_id][backend.region_name].queues.values() if q.queue_arn == source), None)
    fn = _function_named(backend.account_id, backend.region_name, str(function_name or ""))
    if queue is None or fn is None:
        return None  # moto's own checks answer a missing queue or function (an update may name none)
    visibility, timeout = int(queue.visibility_timeout), int(fn.timeout)
    if visibility < timeout:
        return f"Queue visibility timeout: {visibility} seconds is less than Function timeout: {timeout} seconds"
    return None


def _sqs_settings_problem(spec: dict, fifo: bool) -> str | None:
    """What the Lambda API reference refuses in an SQS mapping's settings (CreateEventSourceMapping, the
    `InvalidParameterValueException` "One of the parameters in the request is not valid"), or None:
    - BatchSize: "Amazon Simple Queue Service – Default 10. For standard queues the max is 10,000. For FIFO
      queues the max is 10" (minimum 1);
    - MaximumBatchingWindowInSeconds, 0 to 300: "For streams and Amazon SQS event sources, when you set
      BatchSize to a value greater than 10, you must set MaximumBatchingWindowInSeconds to at least 1";
    - ScalingConfig.MaximumConcurrency, 2 to 1000 (ScalingConfig).
    The texts are not documented; the batching window's is the one users report, the others name the field."""
    batch = 10 if spec.get("BatchSize") is None else int(spec["BatchSize"])
    window = 0 if spec.get("MaximumBatchingWindowInSeconds") is None else int(spec["MaximumBatchingWindowInSeconds"])
    most = 10 if fifo else 10000
    if not 1 <= batch <= most:
        return f"BatchSize {batch} is out of range: 1 to {most} for {'a FIFO' if fifo else 'a standard'} queue"
    if not 0 <= window <= 300:
        return f"MaximumBatchingWindowInSeconds {window} is out of range: 0 to 300"
    if batch > 10 and window < 1:
        return "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10"
    concurrency = (spec.get("ScalingConfig") or {}).get("MaximumConcurrency")
    if concurrency is not None and not 2 <= int(concurrency) <= 1000:
        return f"ScalingConfig.MaximumConcurrency {concurrency} is out of range: 2 to 1000"
    return None


def _check_sqs_mapping(backend, spec: dict) -> None:
    """Refuses an SQS mapping Lambda refuses, its visibility rule first, then its settings: `spec` as
    CreateEventSourceMapping takes it, or, for an update, the mapping as the update would leave it."""
    from moto.awslambda.exceptions import InvalidParameterValueException

    source = str(spec.get("EventSourceArn") or "")
    if ":sqs:" not in source:
        return
    problem = _visibility_problem(backend, source, spec.get("FunctionName")) or _sqs_settings_problem(
        spec, fifo=source.endswith(".fifo")
    )
    if problem:
        raise InvalidParameterValueException(problem)


def _create_esm(self, spec):
    _check_sqs_mapping(self, spec)
    esm = _orig_create_esm(self, spec)
    # moto registers the mapping on the queue / table / stream, and then acts on it itself (receives SQS
    # messages, sends stream records to a function it runs in Docker). The project's runner polls as Lambda
    # does, so the mapping stays data only: unregister it everywhere moto would act on it.
    from moto.dynamodb.models import dynamodb_backends
    from moto.kinesis.models import kinesis_backends

    for queue in sqs_models.sqs_backends[self.account_id][self.region_name].queues.values():
        for key, m in list(queue.lambda_event_source_mappings.items()):
            if m is esm:
                del queue.lambda_event_source_mappings[key]
    for table in dynamodb_backends[self.account_id][self.region_name].tables.values():
        for key, m in list(getattr(table, "lambda_event_source_mappings", {}).items()):
            if m is esm:
                del table.lambda_event_source_mappings[key]
    for stream in kinesis_backends[self.account_id][self.region_name].streams.values():
        for key, m in list(stream.lambda_event_source_mappings.items()):
            if m is esm:
                del stream.lambda_event_source_mappings[key]
    return esm


lambda_models.LambdaBackend.create_event_source_mapping = _create_esm

_orig_update_esm = lambda_models.LambdaBackend.update_event_source_mapping


def _update_esm(self, uuid, spec):
    esm = self.get_event_source_mapping(uuid)
    if esm is not None:
        # The visibility rule is judged when the update names a function; the settings as they would stand.
        current = {"BatchSize": esm.batch_size, "MaximumBatchingWindowInSeconds": esm.max_batch_window,
                   "ScalingConfig": esm.scaling_config}
        changed = {k: v for k, v in spec.items() if v is not None and k != "EventSourceArn"}
        _check_sqs_mapping(self, {**current, **changed, "EventSourceArn": esm.event_source_arn})
    return _orig_update_esm(self, uuid, spec)


lambda_models.LambdaBackend.update_event_source_mapping = _update_esm


# ============================================================================ added resource types


# moto's model metaclass files every model under the service named by its module ("moto.<service>...").
_MOTO_MODULE = "moto.cloudformation.gk_cloudformation"


def _function_named(account_id: str, region: str, name_or_arn: str):
    try:
        return lambda_models.lambda_backends[account_id][region].get_function(name_or_arn)
    except Exception:  # noqa: BLE001 - moto raises several "not found" types
        return None


def _props(cloudformation_json) -> dict:
    return cloudformation_json.get("Properties") or {}


class CfnAlarm(CloudFormationModel):
    """AWS::CloudWatch::Alarm. Template reference: Ref is the alarm name; GetAtt Arn. Properties as the
    PutMetricAlarm API takes them."""

    __module__ = _MOTO_MODULE

    def __init__(self, alarm, account_id: str, region_name: str):
        self.alarm = alarm
        self.account_id = account_id
        self.region_name = region_name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @property
    def physical_resource_id(self) -> str:
        return self.alarm.name

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name == "Arn":
            return self.alarm.alarm_arn
        raise UnformattedGetAttTemplateException()

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        p = _props(cloudformation_json)
        backend = cw_models.cloudwatch_backends[account_id][region_name]
        queries = None
        if p.get("Metrics"):
            queries = []
            for m in p["Metrics"]:
                stat = m.get("MetricStat")
                metric_stat = None
                if stat:
                    metric = stat["Metric"]
                    metric_stat = cw_models.MetricStat(
                        metric=cw_models.Metric(
                            metric_name=metric.get("MetricName"),
                            namespace=metric.get("Namespace"),
                            dimensions=[cw_models.Dimension(d.get("Name"), d.get("Value")) for d in metric.get("Dimensions") or []],
                        ),
                        period=stat.get("Period"),
                        stat=stat.get("Stat"),
                        unit=stat.get("Unit"),
                    )
                queries.append(
                    cw_models.MetricDataQuery(
                        query_id=m.get("Id"),
                        label=m.get("Label"),
                        period=m.get("Period"),
                        return_data=m.get("ReturnData"),
                        expression=m.get("Expression"),
                        metric_stat=metric_stat,
                    )
                )
        alarm = backend.put_metric_alarm(
            name=p.get("AlarmName") or resource_name,
            namespace=p.get("Namespace"),
            metric_name=p.get("MetricName"),
            metric_data_queries=queries,
            comparison_operator=p.get("ComparisonOperator"),
            evaluation_periods=int(p["EvaluationPeriods"]) if "EvaluationPeriods" in p else None,
            datapoints_to_alarm=int(p["DatapointsToAlarm"]) if "DatapointsToAlarm" in p else None,
            period=int(p["Period"]) if "Period" in p else None,
            threshold=float(p["Threshold"]) if "Threshold" in p else None,
            statistic=p.get("Statistic"),
            extended_statistic=p.get("ExtendedStatistic"),
            description=p.get("AlarmDescription"),
            dimensions=[{"Name": d["Name"], "Value": str(d["Value"])} for d in p.get("Dimensions") or []],
            alarm_actions=list(p.get("AlarmActions") or []),
            ok_actions=list(p.get("OKActions") or []),
            insufficient_data_actions=list(p.get("InsufficientDataActions") or []),
            unit=p.get("Unit"),
            actions_enabled=str(p.get("ActionsEnabled", True)).lower() == "true",
            treat_missing_data=p.get("TreatMissingData"),
            evaluate_low_sample_count_percentile=p.get("EvaluateLowSampleCountPercentile"),
            threshold_metric_id=p.get("ThresholdMetricId"),
            tags=p.get("Tags"),
        )
        return cls(alarm, account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        cw_models.cloudwatch_backends[account_id][region_name].delete_alarms([self.alarm.name])


class CfnConnectionNotification(CloudFormationModel):
    """AWS::EC2::VPCEndpointConnectionNotification, created in the extension's own notification registry,
    validated as its CreateVpcEndpointConnectionNotification validates. Template reference: Ref is the
    notification ID (vpce-nfn-...)."""

    __module__ = _MOTO_MODULE

    def __init__(self, notification_id: str):
        self.notification_id = notification_id

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::EC2::VPCEndpointConnectionNotification"

    @property
    def physical_resource_id(self) -> str:
        return self.notification_id

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "VPCEndpointConnectionNotificationId"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return self.notification_id

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        from moto.ec2.models import ec2_backends
        from moto.sns.models import sns_backends

        ext = _extension()
        p = _props(cloudformation_json)
        service_id, endpoint_id = p.get("ServiceId"), p.get("VPCEndpointId")
        topic_arn = p.get("ConnectionNotificationArn")
        events = list(p.get("ConnectionEvents") or [])
        if bool(service_id) == bool(endpoint_id):
            raise ValueError("Specify exactly one of ServiceId and VPCEndpointId")
        if endpoint_id:
            raise ValueError("Only endpoint service notifications are emulated")
        if service_id not in ec2_backends[account_id][region_name].configurations:
            raise ValueError(f"The VpcEndpointService Id '{service_id}' does not exist")
        if not topic_arn or not str(topic_arn).startswith("arn:aws:sns:"):
            raise ValueError("ConnectionNotificationArn must be an SNS topic ARN")
        if topic_arn not in sns_backends[account_id][topic_arn.split(":")[3]].topics:
            raise ValueError(f"Topic {topic_arn} does not exist")
        if not events or any(e not in ext.CONNECTION_EVENTS for e in events):
            raise ValueError(f"ConnectionEvents must be among {', '.join(ext.CONNECTION_EVENTS)}")
        n = {
            "id": f"vpce-nfn-{ext._rand_hex()}",
            "service_id": service_id,
            "topic_arn": topic_arn,
            "events": list(dict.fromkeys(events)),
            "account": account_id,
            "region": region_name,
        }
        with ext._LOCK:
            ext._NOTIFICATIONS[n["id"]] = n
        return cls(n["id"])

    def delete(self, account_id: str, region_name: str) -> None:
        ext = _extension()
        with ext._LOCK:
            ext._NOTIFICATIONS.pop(self.notification_id, None)


class CfnRolePolicy(CloudFormationModel):
    """AWS::IAM::RolePolicy: PutRolePolicy with the document as JSON text. The template reference documents
    no format for its physical ID; the generated name stands in."""

    __module__ = _MOTO_MODULE

    def __init__(self, name: str, role_name: str, policy_name: str, partition: str):
        self.name = name
        self.role_name = role_name
        self.policy_name = policy_name
        self.partition = partition

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::IAM::RolePolicy"

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        from moto.utilities.utils import get_partition

        p = _props(cloudformation_json)
        partition = get_partition(region_name)
        iam_models.iam_backends[account_id][partition].put_role_policy(p["RoleName"], p["PolicyName"], _policy_text(p["PolicyDocument"]))
        return cls(resource_name, p["RoleName"], p["PolicyName"], partition)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = iam_models.iam_backends[account_id][self.partition]
        role = next((r for r in backend.roles.values() if r.name == self.role_name), None)
        if role is not None and self.policy_name in role.policies:  # gone with its role: nothing to delete
            backend.delete_role_policy(self.role_name, self.policy_name)


class CfnSubscription(CloudFormationModel):
    """AWS::SNS::Subscription (any protocol moto's Subscribe takes: lambda, sqs, email, http/s, ...).
    Template reference: Ref is the subscription ARN. Attributes as Subscribe/SetSubscriptionAttributes."""

    __module__ = _MOTO_MODULE

    def __init__(self, subscription, account_id: str, region: str):
        self.subscription = subscription
        self.account_id = account_id
        self.region = region

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::Subscription"

    @property
    def physical_resource_id(self) -> str:
        return self.subscription.arn

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        p = _props(cloudformation_json)
        topic_arn = p["TopicArn"]
        region = p.get("Region") or topic_arn.split(":")[3]
        backend = sns_models.sns_backends[account_id][region]
        sub = backend.subscribe(topic_arn, p["Endpoint"], p["Protocol"])
        # SNS API reference, Subscribe: FilterPolicyScope first (the filter policy is validated against it).
        for name in ("FilterPolicyScope", "FilterPolicy", "RawMessageDelivery", "RedrivePolicy", "DeliveryPolicy", "SubscriptionRoleArn", "ReplayPolicy"):
            if name in p:
                value = p[name]
                if isinstance(value, (dict, list)):
                    value = json.dumps(value)
                elif isinstance(value, bool):
                    value = "true" if value else "false"
                backend.set_subscription_attributes(sub.arn, name, str(value))
        if p["Protocol"] in ("email", "email-json", "http", "https"):
            # SNS developer guide, "Confirm your subscription": these endpoints must confirm; until then the
            # subscription is pending and gets no messages. Nobody confirms here.
            sub.attributes["PendingConfirmation"] = "true"
            sub.confirmed = False
        return cls(sub, account_id, region)

    def delete(self, account_id: str, region_name: str) -> None:
        sns_models.sns_backends[account_id][self.region].unsubscribe(self.subscription.arn)


class CfnTopicPolicy(CloudFormationModel):
    """AWS::SNS::TopicPolicy: each topic's Policy attribute, as SetTopicAttributes sets it."""

    __module__ = _MOTO_MODULE

    def __init__(self, name: str, topics: list[str], account_id: str):
        self.name = name
        self.topics = topics
        self.account_id = account_id

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::TopicPolicy"

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        p = _props(cloudformation_json)
        text = _policy_text(p["PolicyDocument"])
        topics = list(p.get("Topics") or [])
        for arn in topics:
            sns_models.sns_backends[account_id][arn.split(":")[3]].set_topic_attribute(arn, "policy", text)
        return cls(resource_name, topics, account_id)

    def delete(self, account_id: str, region_name: str) -> None:
        for arn in self.topics:
            backend = sns_models.sns_backends[account_id][arn.split(":")[3]]
            if arn in backend.topics:
                topic = backend.topics[arn]
                # Deleting the policy resource leaves the topic's default policy (SNS developer guide).
                topic._policy_json = topic._create_default_topic_policy(backend.region_name, account_id, topic.name)


class CfnQueuePolicy(CloudFormationModel):
    """AWS::SQS::QueuePolicy: each queue's Policy attribute (Queues are queue URLs), as SetQueueAttributes."""

    __module__ = _MOTO_MODULE

    def __init__(self, name: str, queues: list[str]):
        self.name = name
        self.queues = queues

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SQS::QueuePolicy"

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def _locate(url: str, account_id: str, region_name: str):
        # https://sqs.<region>.amazonaws.com/<account>/<name> (moto: also http://localhost:port/<account>/<name>)
        parts = url.rstrip("/").split("/")
        name, account = parts[-1], parts[-2]
        region = region_name
        host = parts[2] if len(parts) > 2 else ""
        if host.startswith("sqs.") and host.count(".") >= 3:
            region = host.split(".")[1]
        return sqs_models.sqs_backends[account if account.isdigit() else account_id][region], name

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        p = _props(cloudformation_json)
        text = _policy_text(p["PolicyDocument"])
        queues = list(p.get("Queues") or [])
        for url in queues:
            backend, name = cls._locate(url, account_id, region_name)
            backend.get_queue(name).policy = text
        return cls(resource_name, queues)

    def delete(self, account_id: str, region_name: str) -> None:
        for url in self.queues:
            backend, name = self._locate(url, account_id, region_name)
            if name in backend.queues:
                backend.queues[name].policy = None


class CfnEventInvokeConfig(CloudFormationModel):
    """AWS::Lambda::EventInvokeConfig, through moto's own PutFunctionEventInvokeConfig. The template reference
    documents no format for its physical ID; the generated name stands in."""

    __module__ = _MOTO_MODULE

    def __init__(self, name: str, function_name: str, region: str):
        self.name = name
        self.function_name = function_name
        self.region = region

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::EventInvokeConfig"

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        p = _props(cloudformation_json)
        config = {}
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if key in p:
                config[key] = int(p[key])
        if p.get("DestinationConfig"):
            config["DestinationConfig"] = p["DestinationConfig"]
        backend = lambda_models.lambda_backends[account_id][region_name]
        backend.put_function_event_invoke_config(p["FunctionName"], config)
        return cls(resource_name, p["FunctionName"], region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        fn = _function_named(account_id, self.region, self.function_name)
        if fn is not None:  # gone with its function: nothing to delete
            fn.event_invoke_config = []


ADDED_TYPES = (CfnAlarm, CfnConnectionNotification, CfnRolePolicy, CfnSubscription, CfnTopicPolicy, CfnQueuePolicy, CfnEventInvokeConfig)
# moto builds its type map from CloudFormationModel.__subclasses__() once (lru_cache): rebuild it.
for _cache in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
    _cache.cache_clear()
assert all(parsing.get_model_map().get(c.cloudformation_type()) is c for c in ADDED_TYPES)

# ====================================================================== Lambda asynchronous invocation
#
# Lambda developer guide, "Asynchronous invocation" / "Error handling and automatic retries in Lambda":
#   - an asynchronously invoked event is queued; on a function error Lambda retries it, MaximumRetryAttempts
#     times (0-2, default 2) from the function's event invoke config;
#   - an event older than MaximumEventAgeInSeconds (60-21600, default 21600) is not retried again;
#   - then the event goes to the function's dead-letter queue (DeadLetterConfig: SQS or SNS; "the payload
#     written to the DLQ target ARN is the original event payload with no modifications to the message body",
#     message attributes RequestID (String), ErrorCode (Number, "3-digit HTTP error code") and ErrorMessage
#     (String, "truncated to 1 KB")) and to the on-failure destination (an invocation record with
#     requestContext.condition RetriesExhausted/EventAgeExceeded; "Capturing records of Lambda asynchronous
#     invocations"). AWS documents no precedence when both are set: both get it here.
#   - Lambda waits between retries (at least a minute, then two). Here a retry is available at once unless
#     GATEKEEPER_EMU_ASYNC_RETRY_SCALE scales those waits (e.g. 0.01 = 0.6 s, 1.2 s): the runner's clock.
#   - a function that does not answer within its Timeout has failed ("Task timed out after N seconds"): an
#     invocation in flight longer than the function's timeout is failed when the queue is next taken from.
# Not documented by AWS, chosen here: the request ID stays the same across the retries of one event, and the
# DLQ's ErrorCode for a function error is 200 (the Invoke call itself succeeded).

ASYNC_RETRY_SCALE = float(os.environ.get("GATEKEEPER_EMU_ASYNC_RETRY_SCALE", "0"))
_RETRY_WAITS_S = (60.0, 120.0)
_ASYNC = threading.Condition(threading.RLock())
_QUEUED: dict[str, deque] = {}  # function ARN -> events waiting
_IN_FLIGHT: dict[str, dict] = {}  # invocation id -> event
_UNDELIVERED: list[dict] = []


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _function(function_arn: str):
    _, region, account, _ = gk_policy.arn_parts(function_arn)
    try:
        return lambda_models.lambda_backends[account][region].get_function(function_arn)
    except Exception:  # noqa: BLE001 - moto raises several "not found" types
        return None


def _invoke_config(fn) -> dict:
    return dict(fn.event_invoke_config[0].config) if fn is not None and fn.event_invoke_config else {}


def invoke_async(function_arn: str, payload: dict) -> str:
    """Queues an asynchronous invocation of the function (as Lambda's Invoke with InvocationType=Event)."""
    base = ":".join(function_arn.split(":")[:7])
    item = {"id": str(uuid.uuid4()), "function_arn": base, "payload": payload, "attempt": 0, "queued_at": time.time(), "not_before": 0.0}
    with _ASYNC:
        _QUEUED.setdefault(base, deque()).append(item)
        _ASYNC.notify_all()
    return item["id"]


def _send(target_arn: str, body: str, attributes: dict[str, tuple[str, str]], why: dict) -> None:
    service, region, account, resource = gk_policy.arn_parts(target_arn)
    try:
        if service == "sqs":
            sqs_models.sqs_backends[account][region].send_message(
                resource, body, message_attributes={k: {"DataType": t, "StringValue": v} for k, (t, v) in attributes.items()}
            )
        elif service == "sns":
            sns_models.sns_backends[account][region].publish(
                body, arn=target_arn, message_attributes={k: {"Type": t, "Value": v} for k, (t, v) in attributes.items()}
            )
        else:
            raise ValueError(f"{service} targets are not emulated")
    except Exception as e:  # noqa: BLE001 - Lambda counts a failed DLQ send (DeadLetterErrors) and drops it
        _UNDELIVERED.append({**why, "target": target_arn, "error": f"{type(e).__name__}: {e}"})


def _give_up(item: dict, condition: str, error: str, error_type: str) -> None:
    fn = _function(item["function_arn"])
    why = {"id": item["id"], "function_arn": item["function_arn"], "condition": condition}
    dlq = (getattr(fn, "_gk_dead_letter_config", None) or {}).get("TargetArn") if fn is not None else None
    if dlq:
        _send(
            dlq,
            json.dumps(item["payload"]),
            {"RequestID": ("String", item["id"]), "ErrorCode": ("Number", "200"), "ErrorMessage": ("String", error.encode()[:1024].decode("utf-8", "ignore") or "error")},
            why,
        )
    on_failure = ((_invoke_config(fn).get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    if on_failure:
        record = {
            "version": "1.0",
            "timestamp": _now_iso(),
            "requestContext": {
                "requestId": item["id"],
                "functionArn": item["function_arn"] + ":$LATEST",
                "condition": condition,
                "approximateInvokeCount": item["attempt"],
            },
            "requestPayload": item["payload"],
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": error, "errorType": error_type},
        }
        _send(on_failure, json.dumps(record), {}, why)
    if not dlq and not on_failure:
        # "Functions without an associated DLQ discard events after they have exhausted their retries."
        _UNDELIVERED.append({**why, "target": None, "error": error})


def _fail(item: dict, error: str, error_type: str) -> None:
    """A failed attempt: retried while the retries and the event's age allow, else given up. Lock held."""
    fn = _function(item["function_arn"])
    cfg = _invoke_config(fn)
    retries = int(cfg.get("MaximumRetryAttempts", 2))
    max_age = float(cfg.get("MaximumEventAgeInSeconds", 21600))
    if time.time() - item["queued_at"] > max_age:
        _give_up(item, "EventAgeExceeded", error, error_type)
    elif item["attempt"] <= retries:
        wait = _RETRY_WAITS_S[min(item["attempt"], len(_RETRY_WAITS_S)) - 1] * ASYNC_RETRY_SCALE
        item["not_before"] = time.time() + wait
        _QUEUED.setdefault(item["function_arn"], deque()).append(item)
        _ASYNC.notify_all()
    else:
        _give_up(item, "RetriesExhausted", error, error_type)


def _expire(now: float) -> None:
    """Fails in-flight invocations older than their function's timeout, and drops queued events older than
    their maximum age. Lock held."""
    for inv_id, item in list(_IN_FLIGHT.items()):
        if now > item["deadline"]:
            del _IN_FLIGHT[inv_id]
            _fail(item, f"Task timed out after {item['timeout']:.2f} seconds", "Sandbox.Timedout")
    for arn, q in _QUEUED.items():
        for item in list(q):
            max_age = float(_invoke_config(_function(arn)).get("MaximumEventAgeInSeconds", 21600))
            if now - item["queued_at"] > max_age:
                q.remove(item)
                _give_up(item, "EventAgeExceeded", "event too old", "EventAgeExceeded")


def take(function_arn: str, max_items: int = 10, wait_s: float = 0.0) -> list[dict]:
    base = ":".join(function_arn.split(":")[:7])
    deadline = time.monotonic() + max(0.0, min(float(wait_s), 20.0))
    out: list[dict] = []
    with _ASYNC:
        while True:
            now = time.time()
            _expire(now)
            q = _QUEUED.get(base) or deque()
            for item in list(q):
                if len(out) >= max_items:
                    break
                if item["not_before"] <= now:
                    q.remove(item)
                    item["attempt"] += 1
                    fn = _function(base)
                    item["timeout"] = float(getattr(fn, "timeout", 3) or 3)
                    item["deadline"] = now + item["timeout"] + 5.0  # the runner's start-up slack
                    _IN_FLIGHT[item["id"]] = item
                    out.append({"id": item["id"], "attempt": item["attempt"], "payload": item["payload"]})
            left = deadline - time.monotonic()
            if out or left <= 0:
                return out
            _ASYNC.wait(min(left, 0.25))


def done(inv_id: str, ok: bool, error: str = "", error_type: str = "Unhandled") -> dict:
    with _ASYNC:
        item = _IN_FLIGHT.pop(inv_id, None)
        if item is None:
            return {"error": f"invocation {inv_id} is not in flight (unknown, finished, or timed out)"}
        if not ok:
            _fail(item, error or "Unhandled", error_type or "Unhandled")
    return {}


# ================================================================================ SNS to Lambda

_orig_sub_publish = sns_models.Subscription.publish

# SNS delivers to a subscribed queue apart from the Publish call: "When a messageId is returned, the message
# is saved and Amazon SNS immediately delivers it to subscribers" (SNS API reference, Publish), so the
# copy may reach the queue before or after the publisher has its answer, and a Publish whose answer was
# lost is delivered all the same. moto delivered inside Publish, before the answer: the one order AWS
# least often shows. Here each delivery is made on a delivery thread, DELIVERY_DELAY_SECONDS after the
# Publish that made it (GATEKEEPER_EMU_DELIVERY_MS at start, or POST /_gatekeeper/deliveries
# {"delay_ms": N}; 0 by default: at once, racing the answer). AWS documents no delivery time. The queue's
# existence and policy are read when the delivery is made, as SNS reads them then. Deliveries to Lambda
# were already asynchronous (invoke_async).
DELIVERY_DELAY_SECONDS = max(0.0, float(os.environ.get("GATEKEEPER_EMU_DELIVERY_MS", "0")) / 1000)
# At least once, not exactly once: the share of deliveries made twice (0 by default; POST
# /_gatekeeper/deliveries {"duplicate_rate": r}). SNS's features page, standard topics
# ("Best-effort deduplication"): "A message is delivered at least once, but occasionally more than one copy of
# a message is delivered";
# Lambda developer guide, "Error handling for asynchronous invocation": "it's possible for it to receive the
# same event from Lambda multiple times"; EventBridge retries a delivery that met "network conditions"
# ("How EventBridge retries delivering events"), so one that landed but was not acknowledged is sent again
# (inferred: the guide names no duplicates). Applied to SNS's deliveries to queues and functions and
# EventBridge's to queues; a copy carries the same message (the same SNS MessageId, the same event id).
DUPLICATE_RATE = 0.0
_DUPLICATE_RNG = random.Random(11)


_DUPLICATED = [0]  # deliveries made twice so far


def _copies() -> int:
    """How many times the next delivery is made: twice for DUPLICATE_RATE of them."""
    with _DELIVERIES:
        twice = DUPLICATE_RATE > 0 and _DUPLICATE_RNG.random() < DUPLICATE_RATE
        _DUPLICATED[0] += twice
        return 2 if twice else 1
_DELIVERIES = threading.Condition()
_DUE: list = []  # heap of (due, sequence, fn, args)
_DELIVERING = [0]  # deliveries taken off _DUE and not yet made
_SEQUENCE = iter(range(1 << 62))
_DELIVERER: list[threading.Thread] = []


def _deliver_later(fn, *args) -> None:
    copies = _copies()
    with _DELIVERIES:
        for _ in range(copies):
            heapq.heappush(_DUE, (time.monotonic() + DELIVERY_DELAY_SECONDS, next(_SEQUENCE), fn, args))
        if not _DELIVERER or not _DELIVERER[0].is_alive():
            _DELIVERER[:] = [threading.Thread(target=_deliver_forever, name="deliveries", daemon=True)]
            _DELIVERER[0].start()
        _DELIVERIES.notify_all()


def _deliver_forever() -> None:
    while True:
        with _DELIVERIES:
            while not _DUE or _DUE[0][0] > time.monotonic():
                _DELIVERIES.wait(None if not _DUE else _DUE[0][0] - time.monotonic())
            _, _, fn, args = heapq.heappop(_DUE)
            _DELIVERING[0] += 1
        try:
            fn(*args)
        except BaseException as e:  # noqa: BLE001 - a delivery that fails is recorded (as a service's delivery logs record it); the thread goes on
            target = getattr(args[0], "endpoint", None) or (args[1].get("Arn") if len(args) > 1 and isinstance(args[1], dict) else None)
            _UNDELIVERED.append({"target": target, "condition": "Delivery", "via": getattr(fn, "__name__", "?"), "error": repr(e)})
        finally:
            with _DELIVERIES:
                _DELIVERING[0] -= 1
                _DELIVERIES.notify_all()


def deliveries_pending() -> int:
    """Deliveries to queues (SNS's, EventBridge's) not yet made (for a test waiting until everything has landed)."""
    with _DELIVERIES:
        return len(_DUE) + _DELIVERING[0]



SNS_PRINCIPAL = "sns.amazonaws.com"


def _sns_may_invoke(fn, topic_arn: str) -> bool:
    # Lambda developer guide, "Using Lambda with Amazon SNS": SNS invokes the function only if the function's
    # resource-based policy lets the service principal sns.amazonaws.com call lambda:InvokeFunction (SAM
    # adds that permission for an SNS event). Read by gk_policy, as a queue's policy is.
    policy = {"Statement": list(getattr(fn.policy, "statements", []))}
    ctx = gk_policy.on_behalf_of(topic_arn, topic_arn.split(":")[4])
    return gk_policy.policy_allows(policy, ("lambda:InvokeFunction",), fn.function_arn, SNS_PRINCIPAL, ctx)


def _service_may_send(queue, principal: str, source_arn: str) -> bool:
    """Whether the queue's policy lets the service `principal` sqs:SendMessage on behalf of `source_arn` (an
    SNS topic, an EventBridge rule). Read by gk_policy, as a function's policy is: an explicit Deny wins, else
    an Allow that holds is needed."""
    ctx = gk_policy.on_behalf_of(source_arn, source_arn.split(":")[4])
    policy = getattr(queue, "_policy_json", None) or {}
    return gk_policy.policy_allows(policy, ("sqs:SendMessage",), queue.queue_arn, principal, ctx)


def _sns_may_send(queue, topic_arn: str) -> bool:
    # SNS developer guide, "Subscribing an Amazon SQS queue to an Amazon SNS topic", step 2: "you must set a
    # policy on the queue that allows the Amazon SNS topic to perform the sqs:SendMessage action" (its example:
    # Principal {"Service": "sns.amazonaws.com"}, Condition ArnEquals aws:SourceArn the topic).
    return _service_may_send(queue, SNS_PRINCIPAL, topic_arn)


def _queue_of(arn: str):
    """(the queue or None, its SQS backend, its name) of a queue ARN."""
    from moto.sqs.models import sqs_backends

    _, region, account, name = gk_policy.arn_parts(arn)
    backend = sqs_backends[account][region]
    return backend.queues.get(name), backend, name


def _deliver_to_sqs(self, message, message_id, subject, message_attributes, group_id, deduplication_id, message_structure) -> None:
    """One SNS delivery to a subscribed queue, made on the delivery thread (see _DELIVERIES)."""
    why = {"id": message_id, "target": self.endpoint, "condition": "SnsDelivery"}
    queue, queue_backend, name = _queue_of(self.endpoint)
    if queue is None:
        _UNDELIVERED.append({**why, "error": "queue does not exist"})
        return
    if not _sns_may_send(queue, self.topic.arn):
        _UNDELIVERED.append({**why, "error": "the queue's policy does not allow sns.amazonaws.com to send from this topic"})
        return
    # SNS developer guide, "Amazon SNS message attributes": "Messages with more than 10 message attributes
    # directed towards Raw Message Delivery enabled Amazon SQS subscriptions will be discarded as client
    # side errors."
    raw = str(self.attributes.get("RawMessageDelivery", "false")).lower() == "true"
    if raw and len(message_attributes or {}) > 10:
        _UNDELIVERED.append({**why, "error": "more than 10 message attributes for a raw delivery to SQS"})
        return
    if not raw and self.attributes.get("RawMessageDelivery"):
        # moto delivers raw for any non-empty RawMessageDelivery, "false" included; SNS delivers the JSON
        # envelope unless it is "true": send what moto sends for an envelope delivery.
        if message_structure == "json":
            message = self._parse_message_structure(message, self.protocol)
        envelope = self.get_post_data(message, message_id, subject, message_attributes=message_attributes)
        queue_backend.send_message(name, json.dumps(envelope, sort_keys=True, indent=2, separators=(",", ": ")),
                                   deduplication_id=deduplication_id, group_id=group_id, validate_group_id=False)
        return
    _orig_sub_publish(self, message, message_id, subject, message_attributes, group_id, deduplication_id, message_structure)


def _sub_publish(self, message, message_id, subject=None, message_attributes=None, group_id=None, deduplication_id=None, message_structure=None):
    if self.protocol == "sqs":
        if self._filter_policy_matcher is not None and not self._filter_policy_matcher.matches(message_attributes, message):
            return None
        _deliver_later(_deliver_to_sqs, self, message, message_id, subject, message_attributes, group_id, deduplication_id, message_structure)
        return None
    if self.protocol != "lambda":
        return _orig_sub_publish(self, message, message_id, subject, message_attributes, group_id, deduplication_id, message_structure)
    if self._filter_policy_matcher is not None and not self._filter_policy_matcher.matches(message_attributes, message):
        return None  # SNS developer guide, "Message filtering": a message the policy rejects is not delivered
    if message_structure == "json":
        message = self._parse_message_structure(message, self.protocol)
    fn = _function(self.endpoint)
    why = {"id": message_id, "function_arn": self.endpoint, "condition": "SnsDelivery"}
    if fn is None:
        _UNDELIVERED.append({**why, "target": self.endpoint, "error": "function does not exist"})
        return None
    if not _sns_may_invoke(fn, self.topic.arn):
        _UNDELIVERED.append({**why, "target": self.endpoint, "error": "the function's resource policy does not allow sns.amazonaws.com"})
        return None
    # moto's SNS notification: a real message ID, timestamp and signature, with a signing certificate moto
    # serves. SignatureVersion is moto's "2" (SHA256): moto cannot sign with SHA1.
    post = self.get_post_data(message, message_id, subject, message_attributes=message_attributes)
    region = self.topic.sns_backend.region_name
    # Lambda developer guide, "Using Lambda with Amazon SNS", the example event. Subject is null when the
    # message has none and MessageAttributes {} when it has none (what Lambda sends; the guide's example
    # always has both).
    record = {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": self.arn,
        "Sns": {
            "Type": "Notification",
            "MessageId": post["MessageId"],
            "TopicArn": self.topic.arn,
            "Subject": subject if subject else None,
            "Message": message,
            "Timestamp": post["Timestamp"],
            "SignatureVersion": post["SignatureVersion"],
            "Signature": post["Signature"],
            "SigningCertUrl": post["SigningCertURL"],
            "UnsubscribeUrl": f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={self.arn}",
            "MessageAttributes": {k: {"Type": v["Type"], "Value": v["Value"]} for k, v in (message_attributes or {}).items()},
        },
    }
    # SNS invokes Lambda asynchronously (Lambda developer guide, "Invoking Lambda functions": SNS is an
    # asynchronous caller).
    for _ in range(_copies()):
        invoke_async(fn.function_arn, {"Records": [record]})
    return None


sns_models.Subscription.publish = _sub_publish

# ================================================================================ EventBridge to SQS

# moto put a matched event on its SQS target at once, inside PutEvents, whatever the queue's policy said, and
# never used the target's DeadLetterConfig. EventBridge, as documented:
#   - "For Lambda, Amazon SNS, Amazon SQS, and Amazon CloudWatch Logs resources, EventBridge uses
#     resource-based policies" (EventBridge user guide, "Using resource-based policies for Amazon
#     EventBridge"): the queue's policy must let events.amazonaws.com sqs:SendMessage, read here by gk_policy
#     with aws:SourceArn the rule's ARN, as for SNS's deliveries;
#   - "for errors that result from missing permissions to a target, or if a target resource that no longer
#     exists, no retry attempts will happen ... EventBridge sends these events directly to the target DLQ, if
#     you have specified one", each message with the attributes RULE_ARN, TARGET_ARN, ERROR_CODE (e.g.
#     NO_PERMISSIONS, NO_RESOURCE) and ERROR_MESSAGE (user guide, "Using dead-letter queues to process
#     undelivered events"); the DLQ's own policy must allow EventBridge too ("Granting permissions to the
#     dead-letter queue"). An event neither queue takes is dropped: recorded in /_gatekeeper/lambda/undelivered.
#   - delivery is apart from the PutEvents call, made on the delivery thread (as SNS's deliveries above).
# The error message text is not documented; the emulator's is its own.
EVENTS_PRINCIPAL = "events.amazonaws.com"
_orig_send_to_sqs_queue = events_models.Rule._send_to_sqs_queue


def _event_to_sqs(rule, target: dict, event: dict, group_id) -> None:
    """One EventBridge delivery to a queue target (on the delivery thread), or to the target's DLQ."""
    queue, _, name = _queue_of(target["Arn"])
    if queue is not None and _service_may_send(queue, EVENTS_PRINCIPAL, rule.arn):
        _orig_send_to_sqs_queue(rule, name, dict(event), group_id)  # a copy: moto rewrites its "time" in place
        return
    code, why = ("NO_RESOURCE", "the target queue does not exist") if queue is None else (
        "NO_PERMISSIONS", "the target queue's policy does not allow events.amazonaws.com to send from this rule")
    dlq_arn = (target.get("DeadLetterConfig") or {}).get("Arn")
    dlq, dlq_backend, dlq_name = _queue_of(dlq_arn) if dlq_arn else (None, None, None)
    if dlq is not None and _service_may_send(dlq, EVENTS_PRINCIPAL, rule.arn):
        attributes = {"RULE_ARN": rule.arn, "TARGET_ARN": target["Arn"], "ERROR_CODE": code, "ERROR_MESSAGE": why}
        dlq_backend.send_message(dlq_name, json.dumps(event),
                                 message_attributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()})
        return
    _UNDELIVERED.append({"target": target["Arn"], "rule_arn": rule.arn, "condition": "EventBridgeDelivery", "error": why,
                         "dlq": dlq_arn and ("dead-letter queue missing or its policy does not allow events.amazonaws.com")})


def _send_to_sqs_queue(self, resource_id: str, event: dict, group_id=None) -> None:
    target = next((t for t in self.targets if t.get("Arn", "").startswith("arn:aws:sqs:")
                   and t["Arn"].rsplit(":", 1)[-1] == resource_id), None)
    if target is None:  # not one of this rule's targets: moto's own call
        return _orig_send_to_sqs_queue(self, resource_id, event, group_id)
    _deliver_later(_event_to_sqs, self, target, dict(event), group_id)
    return None


events_models.Rule._send_to_sqs_queue = _send_to_sqs_queue

# ================================================================================= control paths


def control(path: str, environ) -> bytes | None:
    """Answers this module's /_gatekeeper/ control paths (None: not ours)."""
    if path == "/_gatekeeper/lambda/take":
        spec = gk_control.body(environ)
        if not spec.get("function_arn"):
            return json.dumps({"error": "function_arn is required"}).encode()
        items = take(str(spec["function_arn"]), int(spec.get("max", 10)), float(spec.get("wait_s", 0)))
        return json.dumps({"invocations": items}).encode()
    if path == "/_gatekeeper/lambda/done":
        spec = gk_control.body(environ)
        return json.dumps(done(str(spec.get("id")), bool(spec.get("ok")), str(spec.get("error") or ""), str(spec.get("error_type") or "Unhandled"))).encode()
    if path == "/_gatekeeper/deliveries":
        global DELIVERY_DELAY_SECONDS, DUPLICATE_RATE
        spec = gk_control.body(environ)
        if "delay_ms" in spec:
            DELIVERY_DELAY_SECONDS = max(0.0, float(spec["delay_ms"]) / 1000)
        if "duplicate_rate" in spec:
            DUPLICATE_RATE = min(1.0, max(0.0, float(spec["duplicate_rate"])))
        return json.dumps({"delay_ms": DELIVERY_DELAY_SECONDS * 1000, "duplicate_rate": DUPLICATE_RATE,
                           "duplicated": _DUPLICATED[0], "pending": deliveries_pending()}).encode()
    if path == "/_gatekeeper/lambda/undelivered":
        with _ASYNC:
            return json.dumps({"undelivered": list(_UNDELIVERED)}).encode()
    return None
