"""The emulator's one reader of resource-based policies, for a call an AWS service principal makes on a
resource's behalf: vpce.amazonaws.com publishing a connection notification to a topic (and using the topic's
KMS key), sns.amazonaws.com delivering to a queue or invoking a function.

IAM User Guide, "Policy evaluation logic" and "IAM JSON policy elements":
- An explicit Deny that applies wins; otherwise an Allow that applies is needed.
- Principal "*" and {"AWS": "*"} are everyone; {"Service": "<principal>"} is that service.
- Action and Resource match with the wildcards * and ? ("Action", "Resource"; action names are not case
  sensitive).
- Conditions: every operator block and every key in it must hold (they are ANDed); a key's values are ORed.
  Evaluated here: StringEquals, StringLike, ArnEquals, ArnLike ("Condition operators": ArnEquals and ArnLike
  both compare the six colon-delimited ARN parts, each with * and ? wildcards; StringLike has the same
  wildcards), their negations StringNotEquals, StringNotLike, ArnNotEquals, ArnNotLike (the confused-deputy
  Deny "StringNotEquals aws:SourceAccount" among them), and their ...IfExists forms ("...IfExists": when the key is present, as the operator), on
  the keys aws:SourceArn and aws:SourceAccount, which a service principal's call on a resource's behalf
  carries ("AWS global condition context keys").

What is not evaluated (another operator or key, ...IfExists or a negation on a key the call is not known to
carry, NotPrincipal, NotAction, NotResource) never lets more through than AWS might: an Allow that holds one does not apply, a Deny that holds one does. So a topic with moto's
(and AWS's) default policy, whose Allow has the condition AWS:SourceOwner, grants a service nothing.
"""

from __future__ import annotations

import json
import re

CONDITION_OPERATORS = ("StringEquals", "StringLike", "ArnEquals", "ArnLike",
                       "StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike")


def arn_parts(arn: str) -> tuple[str, str, str, str]:
    """(service, region, account, resource) of an ARN; ValueError if it is not one."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[2], parts[3], parts[4], parts[5]


def as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def wild(pattern: str, value: str) -> bool:
    """IAM's wildcard match: * any run of characters, ? any one; nothing else is special."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.S) is not None


def arn_like(pattern: str, value: str) -> bool:
    p, v = pattern.split(":", 5), value.split(":", 5)
    return len(p) == len(v) == 6 and all(wild(a, b) for a, b in zip(p, v))


def condition(cond, ctx: dict[str, str]) -> bool | None:
    """True: holds; False: fails; None: holds nothing this reader evaluates (and fails nothing).
    `ctx`: the request's condition keys, lower case."""
    if not cond:
        return True
    if not isinstance(cond, dict):
        return None
    unknown = False
    for op, block in cond.items():
        base = op.removesuffix("IfExists")
        if base not in CONDITION_OPERATORS or not isinstance(block, dict):
            unknown = True
            continue
        for key, values in block.items():
            actual = ctx.get(key.lower())
            if actual is None:
                # A key this reader does not know: whether AWS's call carries it is not known either.
                unknown = True
                continue
            values = [str(v) for v in as_list(values)]
            positive = base.replace("Not", "")
            if positive == "StringEquals":
                ok = actual in values
            elif positive == "StringLike":
                ok = any(wild(v, actual) for v in values)
            else:
                ok = any(arn_like(v, actual) for v in values)
            if "Not" in base:
                ok = not ok  # "...Not...": none of the values matches
            if not ok:
                return False
    return None if unknown else True


def principal_matches(principal, service: str) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        if "*" in as_list(principal.get("AWS", [])):
            return True
        return service in as_list(principal.get("Service", []))
    return False


def statements_of(policy) -> list[dict]:
    """A policy's statements (the policy a document or its JSON text); none for anything else."""
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except ValueError:
            return []
    if not isinstance(policy, dict):
        return []
    return [s for s in as_list(policy.get("Statement", [])) if isinstance(s, dict)]


def judge(policy, action: str, resource: str, names, ctx: dict[str, str]) -> str:
    """"deny" when an explicit Deny applies to `action` on `resource`, else "allow" when an Allow does, else
    "none"; `names(principal)` says whether a statement's Principal names the caller. A Deny holding
    NotPrincipal, NotAction or NotResource applies, an Allow holding one does not (fail closed)."""
    allowed = False
    for st in statements_of(policy):
        acts = any(wild(str(a).lower(), action.lower()) for a in as_list(st.get("Action", [])))
        res = "Resource" not in st or any(wild(str(r), resource) for r in as_list(st["Resource"]))
        cond = condition(st.get("Condition"), ctx)
        if st.get("Effect") == "Deny":
            who = "NotPrincipal" in st or names(st.get("Principal"))
            if who and (acts or "NotAction" in st) and (res or "NotResource" in st) and cond is not False:
                return "deny"
        elif st.get("Effect") == "Allow":
            if any(k in st for k in ("NotPrincipal", "NotAction", "NotResource")):
                continue
            if names(st.get("Principal")) and acts and res and cond is True:
                allowed = True
    return "allow" if allowed else "none"


def policy_allows(policy, actions: tuple[str, ...], resource: str, service: str, ctx: dict[str, str]) -> bool:
    """Whether `policy` (a document, or its JSON) lets the service principal `service` take every one of
    `actions` on `resource`, with the condition keys `ctx` (lower-case names)."""
    names = lambda p: principal_matches(p, service)  # noqa: E731
    return all(judge(policy, action, resource, names, ctx) == "allow" for action in actions)


def names_aws(principal, identities: set[str]) -> bool:
    """Whether a Principal names everyone or one of `identities` (an AWS principal: role ARN, account root
    ARN, or account ID)."""
    if principal == "*":
        return True
    if isinstance(principal, dict):
        named = {str(p) for p in as_list(principal.get("AWS", []))}
        return "*" in named or bool(named & identities)
    return False


def on_behalf_of(source_arn: str, source_account: str) -> dict[str, str]:
    """The condition keys of a service principal's call made for the resource `source_arn`."""
    return {"aws:sourcearn": source_arn, "aws:sourceaccount": source_account}


# What a publisher needs of a topic's KMS key (SNS developer guide, below): role callers (gk_iam) and service
# principals (topic_refuses) alike.
KMS_PUBLISH_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


def topic(topic_arn: str):
    """moto's SNS topic `topic_arn` (None: not an ARN, a Region moto lacks, no such topic)."""
    from moto.sns.models import sns_backends

    try:
        _, region, account, _ = arn_parts(topic_arn)
        return sns_backends[account][region].topics.get(topic_arn)
    except (ValueError, KeyError):
        return None


def topic_refuses(topic_arn: str, service: str, ctx: dict[str, str]) -> str | None:
    """Why the service principal `service`, publishing for the resource `ctx` names, would not get a message
    onto the SNS topic `topic_arn`: "topic-not-found", "topic-policy" (the topic's access policy does not
    allow sns:Publish), "kms-key-policy" (the topic's KMS key, or its policy, does not let the service
    kms:GenerateDataKey and kms:Decrypt: "The publisher must have the kms:GenerateDataKey and kms:Decrypt
    permissions for the AWS KMS key", SNS developer guide, "Managing Amazon SNS encryption keys and costs");
    None when it would."""
    from moto.kms.models import kms_backends

    found = topic(topic_arn)
    if found is None:
        return "topic-not-found"
    if not policy_allows(getattr(found, "_policy_json", None), ("sns:Publish",), topic_arn, service, ctx):
        return "topic-policy"
    key_id = getattr(found, "kms_master_key_id", "") or ""
    if key_id:
        _, region, account, _ = arn_parts(topic_arn)
        try:
            key = kms_backends[account][region].describe_key(key_id)
        except Exception:  # noqa: BLE001 - moto's NotFoundException: a key that does not exist encrypts nothing
            return "kms-key-policy"
        if key.key_state != "Enabled" or not policy_allows(key.policy, KMS_PUBLISH_ACTIONS, key.arn, service, ctx):
            return "kms-key-policy"
    return None
