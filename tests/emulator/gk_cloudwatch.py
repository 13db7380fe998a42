"""CloudWatch alarm actions to SNS, as CloudWatch documents them. moto keeps an alarm's state and runs none of
its actions, so nothing local ever showed that an alarm of the stack can reach the stack's alerts topic.

- When an alarm's state changes, the actions of the new state run: CloudWatch API reference, PutMetricAlarm,
  AlarmActions "The actions to execute when this alarm transitions to the ALARM state from any other state",
  OKActions and InsufficientDataActions the same for OK and INSUFFICIENT_DATA; ActionsEnabled "Indicates
  whether actions should be executed during any changes to the alarm state". moto evaluates no metric, so the
  one change here is SetAlarmState's (API reference: "When the updated state differs from the previous value,
  the action configured for the appropriate state is invoked. For example, if your alarm is configured to send
  an Amazon SNS message when an alarm is triggered, temporarily changing the alarm state to ALARM sends an SNS
  message."). Setting the state it already has runs nothing.
- The publish is CloudWatch's, the service principal cloudwatch.amazonaws.com on the alarm's behalf
  (aws:SourceArn the alarm's ARN, aws:SourceAccount its account); the topic's deliveries to its subscribers
  are made apart from the SetAlarmState call, as every SNS delivery here (gk_cloudformation):
  - the topic's access policy must allow it. AWS re:Post knowledge center, "Why didn't I receive an SNS
    notification for my CloudWatch alarm trigger?": a publish the policy refuses fails with "Resource:
    arn:aws:cloudwatch:<region>:<account>:alarm:<name> is not authorized to perform: SNS:Publish on resource:
    <topic>", fixed by a statement for the service principal cloudwatch.amazonaws.com (aws:SourceArn to
    restrict it to alarms). Whether a topic's default policy (an Allow conditioned on AWS:SourceOwner) admits
    CloudWatch is not documented; gk_policy does not evaluate AWS:SourceOwner, so here it does not: a template
    must name the principal, which is right under either answer.
  - an encrypted topic's key policy must let cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey*
    (knowledge center, "How do I configure a CloudWatch alarm with an encrypted SNS topic?": with the AWS
    managed key alias/aws/sns, whose policy cannot be edited, the alarm cannot run its action; a customer
    managed key's policy needs the statement). Read by gk_policy.topic_refuses, as for vpce.amazonaws.com.
- A failed action is not an error of SetAlarmState: it shows in the alarm's history ("Failed to execute action
  <topic>. Received error: ...", same knowledge center article; DescribeAlarmHistory, which moto lacks). The
  emulator keeps every action it ran in ACTIONS, read at GET /_gatekeeper/cloudwatch/actions.
- The message body is CloudWatch's alarm notification JSON (AlarmName, NewStateValue, OldStateValue, ...), as
  subscribers receive it; its schema is in no API reference, and nothing in Gatekeeper reads it. The subject is
  '<STATE>: "<name>" in <Region>', as users see it.
Actions other than SNS topics (EC2, Auto Scaling, Systems Manager) are recorded as not run.
"""

from __future__ import annotations

import datetime
import json
import threading

from moto.cloudwatch.models import CloudWatchBackend

import gk_policy

CLOUDWATCH_PRINCIPAL = "cloudwatch.amazonaws.com"
_LOCK = threading.Lock()
# Every action run, oldest first (the newest _MAX_ACTIONS): {"alarm", "alarm_arn", "old_state", "new_state",
# "action", "outcome": "published" | "failed" | "not-emulated", "error"}.
ACTIONS: list[dict] = []
_MAX_ACTIONS = 10_000

_orig_set_alarm_state = CloudWatchBackend.set_alarm_state


def _set_alarm_state(self: CloudWatchBackend, alarm_name: str, reason: str, reason_data: str, state_value: str) -> None:
    alarm = self.alarms.get(alarm_name)
    old_state = getattr(alarm, "state_value", None)
    _orig_set_alarm_state(self, alarm_name, reason, reason_data, state_value)  # validates; raises as moto does
    alarm = self.alarms[alarm_name]
    if old_state == state_value or not alarm.actions_enabled:
        return
    actions = {"ALARM": alarm.alarm_actions, "OK": alarm.ok_actions, "INSUFFICIENT_DATA": alarm.insufficient_data_actions}[state_value]
    for action in actions or []:
        _run(self, alarm, old_state, action)


def _run(backend: CloudWatchBackend, alarm, old_state: str, action: str) -> None:
    from moto.sns.models import sns_backends

    entry = {"alarm": alarm.name, "alarm_arn": alarm.alarm_arn, "old_state": old_state, "new_state": alarm.state_value, "action": action, "error": None}
    try:
        service, region, account, _ = gk_policy.arn_parts(action)
    except ValueError:
        service = ""
    if service != "sns":
        entry["outcome"] = "not-emulated"
    else:
        ctx = gk_policy.on_behalf_of(alarm.alarm_arn, backend.account_id)
        refused = gk_policy.topic_refuses(action, CLOUDWATCH_PRINCIPAL, ctx)
        if refused:
            entry["outcome"] = "failed"
            entry["error"] = (
                f"Failed to execute action {action}. Received error: "
                + (
                    "CloudWatch Alarms does not have authorization to access the SNS topic encryption key."
                    if refused == "kms-key-policy"
                    else f"Resource: {alarm.alarm_arn} is not authorized to perform: SNS:Publish on resource: {action}"
                )
            )
        else:
            sns_backends[account][region].publish(_message(backend, alarm, old_state), arn=action, subject=f'{alarm.state_value}: "{alarm.name}" in {region}'[:100])
            entry["outcome"] = "published"
    with _LOCK:
        ACTIONS.append(entry)
        del ACTIONS[:-_MAX_ACTIONS]


def _message(backend: CloudWatchBackend, alarm, old_state: str) -> str:
    def when(t) -> str | None:
        return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000" if t else None

    return json.dumps(
        {
            "AlarmName": alarm.name,
            "AlarmDescription": alarm.description,
            "AWSAccountId": backend.account_id,
            "AlarmConfigurationUpdatedTimestamp": when(alarm.configuration_updated_timestamp),
            "NewStateValue": alarm.state_value,
            "NewStateReason": alarm.state_reason,
            "StateChangeTime": when(alarm.state_updated_timestamp),
            "Region": alarm.region_name,
            "AlarmArn": alarm.alarm_arn,
            "OldStateValue": old_state,
            "OKActions": list(alarm.ok_actions or []),
            "AlarmActions": list(alarm.alarm_actions or []),
            "InsufficientDataActions": list(alarm.insufficient_data_actions or []),
            "Trigger": {
                "MetricName": alarm.metric_name,
                "Namespace": alarm.namespace,
                "Statistic": alarm.statistic,
                "Dimensions": [{"name": d.name, "value": d.value} for d in alarm.dimensions],
                "Period": alarm.period,
                "EvaluationPeriods": alarm.evaluation_periods,
                "ComparisonOperator": alarm.comparison_operator,
                "Threshold": alarm.threshold,
            },
        }
    )


CloudWatchBackend.set_alarm_state = _set_alarm_state


def control(path: str, environ):
    """GET /_gatekeeper/cloudwatch/actions -> {"actions": [...]} (None: not ours)."""
    if path != "/_gatekeeper/cloudwatch/actions":
        return None
    with _LOCK:
        return json.dumps({"actions": ACTIONS}).encode()
