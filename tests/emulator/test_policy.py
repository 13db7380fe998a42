"""gk_policy: the emulator's one reader of resource policies for a service principal's call, as the IAM User
Guide describes evaluation ("Policy evaluation logic", "IAM JSON policy elements: Condition operators")."""

import gk_policy

TOPIC = "arn:aws:sns:us-east-1:111111111111:decisions"
CTX = gk_policy.on_behalf_of(TOPIC, "111111111111")


def test_conditions_are_anded_and_each_keys_values_ored():
    hold = gk_policy.condition
    assert hold(None, CTX) is True
    assert hold({"ArnLike": {"AWS:SourceArn": "arn:aws:sns:us-east-1:111111111111:*"}}, CTX) is True
    assert hold({"ArnEquals": {"aws:SourceArn": TOPIC}, "StringEquals": {"aws:SourceAccount": "111111111111"}}, CTX) is True
    assert hold({"ArnEquals": {"aws:SourceArn": TOPIC}, "StringEquals": {"aws:SourceAccount": "222222222222"}}, CTX) is False
    assert hold({"StringEquals": {"aws:SourceAccount": ["222222222222", "111111111111"]}}, CTX) is True
    assert hold({"ArnEquals": {"aws:SourceArn": TOPIC + "-other"}}, CTX) is False


def test_what_is_not_evaluated_is_neither_true_nor_false():
    hold = gk_policy.condition
    assert hold({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, CTX) is None
    assert hold({"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}, CTX) is None
    # ...but a condition that fails, alongside one not evaluated, fails.
    assert hold({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}, "ArnEquals": {"aws:SourceArn": "x"}}, CTX) is False


def test_negated_operators_hold_when_no_value_matches():
    hold = gk_policy.condition
    assert hold({"StringNotEquals": {"aws:SourceAccount": "222222222222"}}, CTX) is True
    assert hold({"StringNotEquals": {"aws:SourceAccount": ["222222222222", "111111111111"]}}, CTX) is False
    assert hold({"ArnNotLike": {"aws:SourceArn": "arn:aws:sns:*:*:other"}}, CTX) is True
    assert hold({"ArnNotEquals": {"aws:SourceArn": TOPIC}}, CTX) is False
    assert hold({"StringNotLike": {"aws:SourceVpc": "vpc-*"}}, CTX) is None  # a key the call is not known to carry
    # The confused-deputy Deny: it does not apply to the topic's own account's call, and does to another's.
    q = "arn:aws:sqs:us-east-1:111111111111:q"
    allow = {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage", "Resource": q}
    deny = {"Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage", "Resource": q,
            "Condition": {"StringNotEquals": {"aws:SourceAccount": "111111111111"}}}
    policy = {"Statement": [allow, deny]}
    assert gk_policy.policy_allows(policy, ("sqs:SendMessage",), q, "sns.amazonaws.com", CTX)
    other = gk_policy.on_behalf_of("arn:aws:sns:us-east-1:999999999999:t", "999999999999")
    assert not gk_policy.policy_allows(policy, ("sqs:SendMessage",), q, "sns.amazonaws.com", other)


def test_if_exists_reads_a_present_key_as_its_operator():
    hold = gk_policy.condition
    assert hold({"ArnLikeIfExists": {"aws:SourceArn": TOPIC}}, CTX) is True
    assert hold({"ArnEqualsIfExists": {"aws:SourceArn": TOPIC + "-other"}}, CTX) is False
    assert hold({"StringEqualsIfExists": {"aws:SourceVpc": "vpc-1"}}, CTX) is None


def test_wildcards_are_iams_star_and_question_mark_only():
    # fnmatch would read [1] as a character class; IAM has no such thing: the bracket is literal.
    assert not gk_policy.wild("arn:aws:sns:*:[1]11111111111:*", TOPIC)
    assert gk_policy.wild("arn:aws:sns:*:11111111111?:*", TOPIC)
    # ArnLike compares the six ARN parts, each with the wildcards: * does not run across a part boundary
    # into fewer parts.
    assert gk_policy.arn_like("arn:aws:sns:*:*:decisions", TOPIC)
    assert not gk_policy.arn_like("arn:aws:sns:*:decisions", TOPIC)


def test_an_explicit_deny_wins_and_an_allow_is_needed():
    allow = {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
             "Resource": "arn:aws:sqs:us-east-1:111111111111:q", "Condition": {"ArnEquals": {"aws:SourceArn": TOPIC}}}
    q = "arn:aws:sqs:us-east-1:111111111111:q"
    ok = gk_policy.policy_allows
    assert ok({"Statement": [allow]}, ("sqs:SendMessage",), q, "sns.amazonaws.com", CTX)
    assert not ok({"Statement": [allow]}, ("sqs:SendMessage",), q, "events.amazonaws.com", CTX)  # another principal
    assert not ok({"Statement": [allow]}, ("sqs:SendMessage",), q + "2", "sns.amazonaws.com", CTX)  # another resource
    assert not ok({"Statement": []}, ("sqs:SendMessage",), q, "sns.amazonaws.com", CTX)
    deny = {"Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": "*"}
    assert not ok({"Statement": [allow, deny]}, ("sqs:SendMessage",), q, "sns.amazonaws.com", CTX)
    # A Deny whose condition fails does not apply; one whose condition is not evaluated does.
    assert ok({"Statement": [allow, dict(deny, Condition={"StringEquals": {"aws:SourceAccount": "999999999999"}})]},
              ("sqs:SendMessage",), q, "sns.amazonaws.com", CTX)
    assert not ok({"Statement": [allow, dict(deny, Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})]},
                  ("sqs:SendMessage",), q, "sns.amazonaws.com", CTX)
    # An Allow with NotAction (not evaluated) grants nothing; the policy as JSON text reads the same.
    assert not ok({"Statement": [dict(allow, NotAction="sqs:ReceiveMessage")]}, ("sqs:SendMessage",), q, "sns.amazonaws.com", CTX)
    import json
    assert ok(json.dumps({"Statement": allow}), ("sqs:SendMessage",), q, "sns.amazonaws.com", CTX)
