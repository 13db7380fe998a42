"""The emulator's patch of moto's DynamoDB answers (gk_dynamodb.py): byte for byte what moto's own serialiser
writes, on generated items of every attribute type, through the real Query and GetItem operation models; and
its behaviours (index lag, transaction tokens and cancellation, stream records, one request at a time)."""

import json
import random

import pytest

import gk_dynamodb
from conftest import serve
from moto.core.responses import ActionResult
from moto.core.serialize import JSONSerializer, XFormedAttributePicker
from moto.core.utils import get_service_model

MODEL = get_service_model("dynamodb")  # as the emulator loads it


def value(rng: random.Random, depth: int = 0) -> dict:
    kinds = ["S", "N", "B", "SS", "NS", "BS", "BOOL", "NULL"] + (["M", "L"] if depth < 3 else [])
    kind = rng.choice(kinds)
    text = lambda: "".join(rng.choice("ab\u00e9\u4e2d\"\\ 0") for _ in range(rng.randint(0, 6)))  # noqa: E731
    if kind == "S":
        return {"S": text()}
    if kind == "N":
        return {"N": str(rng.choice([0, -1, 3.25, 10**20]))}
    if kind == "B":
        return {"B": rng.choice([b"\x00\xff", "c3RvcmVk", b""])}
    if kind in ("SS", "NS"):
        return {kind: [text() if kind == "SS" else str(i) for i in range(rng.randint(1, 3))]}
    if kind == "BS":
        return {"BS": [bytes([i, 255]) for i in range(rng.randint(1, 3))]}
    if kind == "BOOL":
        return {"BOOL": rng.random() < 0.5}
    if kind == "NULL":
        return {"NULL": True}
    if kind == "M":
        return {"M": {text() or "k": value(rng, depth + 1) for _ in range(rng.randint(0, 3))}}
    return {"L": [value(rng, depth + 1) for _ in range(rng.randint(0, 3))]}


def serialise(operation: str, result: dict, fast: bool, transformers: dict | None = None) -> str:
    gk_dynamodb.enabled = fast
    try:
        serializer = JSONSerializer(
            operation_model=MODEL.operation_model(operation),
            value_picker=XFormedAttributePicker(response_transformers=transformers or {}),
        )
        return serializer.serialize(ActionResult(result).result)["body"]
    finally:
        gk_dynamodb.enabled = True


def test_a_query_and_a_get_item_are_written_as_moto_writes_them_for_every_attribute_type():
    rng = random.Random(20261126)
    for _ in range(300):
        items = [{f"a{i}": value(rng) for i in range(rng.randint(1, 6))} for _ in range(rng.randint(0, 4))]
        query = {"Items": items, "Count": len(items), "ScannedCount": len(items), "LastEvaluatedKey": items[0] if items else None}
        assert serialise("Query", query, fast=True) == serialise("Query", query, fast=False)
        if items:
            get = {"Item": items[0]}
            assert serialise("GetItem", get, fast=True) == serialise("GetItem", get, fast=False)


def test_a_value_of_a_shape_the_fast_path_does_not_know_is_left_to_moto():
    odd = [{"N": 5}, {"S": "x", "N": "1"}, {"BOOL": "true"}, {"M": {"k": {"N": 1.5}}}, {"L": [{"S": None}]}, {"SS": "x"}]
    for v in odd:
        assert gk_dynamodb.attribute_value(None, v) is None, v
        get = {"Item": {"a": v}}
        assert serialise("GetItem", get, fast=True) == serialise("GetItem", get, fast=False)


def test_a_response_transformer_on_a_member_of_the_union_is_applied_as_moto_applies_it():
    upper = {"Item.a.S": lambda s: s.upper() if isinstance(s, str) else s}
    get = {"Item": {"a": {"S": "lower"}, "b": {"M": {"c": {"S": "deep"}}}}}
    written = json.loads(serialise("GetItem", get, fast=True, transformers=upper))
    assert written == json.loads(serialise("GetItem", get, fast=False, transformers=upper))
    assert written["Item"]["a"] == {"S": "LOWER"}


def test_the_fast_path_is_what_the_emulator_uses_for_dynamodb():
    # Without it, this is moto's generic path: the patch must be in place in the emulator process.
    import gatekeeper_moto  # noqa: F401 - imports the patches as the server does

    assert JSONSerializer._serialize_type_structure is gk_dynamodb._serialize_type_structure


# ------------------------------------------------------------------------------ Query reads its partition


def _query_everything(ddb, request: dict) -> list:
    """Every page of a Query: (items, count, scanned count, last evaluated key) of each page."""
    pages, start = [], None
    while True:
        answer = ddb.query(**request, **({"ExclusiveStartKey": start} if start else {}))
        start = answer.get("LastEvaluatedKey")
        pages.append((answer["Items"], answer["Count"], answer["ScannedCount"], start))
        if not start:
            return pages


def test_a_query_reads_only_its_partition_and_answers_what_moto_answers():
    import boto3
    from moto import mock_aws

    rng = random.Random(7)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
        ddb.create_table(TableName="ranged", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}])
        ddb.create_table(TableName="plain", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        for i in range(300):
            pk = f"p{rng.randint(0, 14)}"
            ddb.put_item(TableName="ranged", Item={"pk": {"S": pk}, "sk": {"N": str(rng.randint(-50, 50))}, "v": value(rng)})
            ddb.put_item(TableName="plain", Item={"pk": {"S": f"p{i}"}, "v": value(rng)})
        requests = []
        for pk in ["p0", "p3", "p14", "absent", "*"]:
            key = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": pk}}}
            requests += [
                {"TableName": "ranged", **key},
                {"TableName": "ranged", **key, "ScanIndexForward": False, "Limit": 3},
                {"TableName": "ranged", "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
                 "ExpressionAttributeValues": {":p": {"S": pk}, ":a": {"N": "-10"}, ":b": {"N": "20"}}, "Limit": 2},
                {"TableName": "ranged", **key, "FilterExpression": "attribute_exists(v.k) OR sk > :z",
                 "ExpressionAttributeValues": {":p": {"S": pk}, ":z": {"N": "0"}}, "Limit": 4},
                {"TableName": "plain", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": pk.replace('p', 'p1')}}},
            ]
        read_whole_table = []
        original = gk_dynamodb._orig_all_items
        gk_dynamodb._orig_all_items = lambda table: read_whole_table.append(table.name) or original(table)
        try:
            for request in requests:
                gk_dynamodb.partition_reads = False
                moto_answer = _query_everything(ddb, request)
                assert read_whole_table, "moto's own path reads the whole table"
                read_whole_table.clear()
                gk_dynamodb.partition_reads = True
                assert _query_everything(ddb, request) == moto_answer, request
                assert read_whole_table == [], f"read the whole of {read_whole_table} for {request}"
        finally:
            gk_dynamodb._orig_all_items = original
            gk_dynamodb.partition_reads = True
        assert sum(len(p[0]) for p in _query_everything(ddb, requests[0])) > 0  # the generated partitions are not empty


# ------------------------------------------------------------ a global secondary index lags its table


def _owed_table(ddb):
    ddb.create_table(TableName="records", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"},
                                           {"AttributeName": "owed", "AttributeType": "S"}],
                     GlobalSecondaryIndexes=[{"IndexName": "owed", "KeySchema": [{"AttributeName": "owed", "KeyType": "HASH"}],
                                              "Projection": {"ProjectionType": "KEYS_ONLY"}}])


def _owed(ddb) -> list:
    answer = ddb.query(TableName="records", IndexName="owed", KeyConditionExpression="owed = :s",
                       ExpressionAttributeValues={":s": {"S": "svc"}})
    return sorted(i["pk"]["S"] for i in answer["Items"])


def _scanned(ddb) -> list:
    return sorted(i["pk"]["S"] for i in ddb.scan(TableName="records", IndexName="owed")["Items"])


def test_a_global_index_shows_each_write_only_after_the_lag_and_the_table_at_once():
    import boto3
    from moto import mock_aws

    clock = [1000.0]
    real_monotonic = gk_dynamodb.time.monotonic
    gk_dynamodb.time.monotonic = lambda: clock[0]  # the lag is read against this clock, moved by the test
    gk_dynamodb.INDEX_LAG_SECONDS = 0.5
    try:
        with mock_aws():
            ddb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
            _owed_table(ddb)
            key = lambda pk: {"pk": {"S": pk}, "sk": {"S": "0"}}  # noqa: E731
            ddb.put_item(TableName="records", Item={**key("a"), "owed": {"S": "svc"}})
            clock[0] += 0.4
            assert _owed(ddb) == [] and _scanned(ddb) == [], "a new entry is not in the index before the lag"
            got = ddb.get_item(TableName="records", Key=key("a"), ConsistentRead=True)
            assert got["Item"]["owed"]["S"] == "svc", "the table itself shows the write at once"
            clock[0] += 0.2
            assert _owed(ddb) == ["a"] and _scanned(ddb) == ["a"]

            # A removed entry lingers for the lag; an item written twice in it is read as before the first.
            ddb.update_item(TableName="records", Key=key("a"), UpdateExpression="REMOVE owed")
            ddb.put_item(TableName="records", Item={**key("b"), "owed": {"S": "svc"}})
            clock[0] += 0.1
            ddb.update_item(TableName="records", Key=key("b"), UpdateExpression="SET note = :n", ExpressionAttributeValues={":n": {"S": "x"}})
            ddb.delete_item(TableName="records", Key=key("b"))
            assert _owed(ddb) == ["a"] and _scanned(ddb) == ["a"]
            clock[0] += 0.45  # as of 0.05 s after the removal and b's put: a gone, b as put (before its update)
            assert _owed(ddb) == ["b"]
            clock[0] += 0.1  # as of 0.15 s after: b's update and delete (at +0.1) show too
            assert _owed(ddb) == [] and _scanned(ddb) == []

            # A write whose condition fails changes nothing in the index.
            ddb.put_item(TableName="records", Item={**key("c"), "owed": {"S": "svc"}})
            clock[0] += 0.6
            try:
                ddb.put_item(TableName="records", Item=key("c"), ConditionExpression="attribute_not_exists(pk)")
                raise AssertionError("the condition should fail")
            except ddb.exceptions.ConditionalCheckFailedException:
                pass
            assert _owed(ddb) == ["c"]

            gk_dynamodb.INDEX_LAG_SECONDS = 0.0  # off: moto's own reading, every write at once
            ddb.put_item(TableName="records", Item={**key("d"), "owed": {"S": "svc"}})
            assert _owed(ddb) == ["c", "d"]
    finally:
        gk_dynamodb.time.monotonic = real_monotonic
        gk_dynamodb.INDEX_LAG_SECONDS = 0.0


def test_the_index_lag_is_set_through_the_control_path():
    import io

    environ = lambda body: {"CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}  # noqa: E731
    try:
        assert json.loads(gk_dynamodb.control("/_gatekeeper/index-lag", environ(b'{"lag_ms": 250}'))) == {"lag_ms": 250.0}
        assert gk_dynamodb.INDEX_LAG_SECONDS == 0.25
        assert json.loads(gk_dynamodb.control("/_gatekeeper/index-lag", environ(b""))) == {"lag_ms": 250.0}
        assert gk_dynamodb.control("/_gatekeeper/other", environ(b"")) is None
    finally:
        gk_dynamodb.INDEX_LAG_SECONDS = 0.0


def test_a_set_is_read_back_in_an_order_of_its_own_not_as_written():
    # DynamoDB Developer Guide, Sets: "The order of the values within a set is not preserved."
    import boto3
    from moto import mock_aws

    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
        ddb.create_table(TableName="sets", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        written = [f"r{i}" for i in range(8)]
        for order in (written, written[::-1]):
            ddb.put_item(TableName="sets", Item={"pk": {"S": "a"}, "ss": {"SS": order}, "ns": {"NS": ["1", "2", "3"]}})
            got = ddb.get_item(TableName="sets", Key={"pk": {"S": "a"}}, ConsistentRead=True)["Item"]
            assert sorted(got["ss"]["SS"]) == sorted(written), "the same members"
            assert got["ss"]["SS"] != order, "not in the order written"
            reread = ddb.get_item(TableName="sets", Key={"pk": {"S": "a"}}, ConsistentRead=True)["Item"]
            assert reread["ss"]["SS"] == got["ss"]["SS"], "the same order each read"
        # A condition compares the set as a set, in any order.
        ddb.put_item(TableName="sets", Item={"pk": {"S": "a"}, "ss": {"SS": ["x"]}}, ConditionExpression="ss = :s",
                     ExpressionAttributeValues={":s": {"SS": written[::-1]}})


def test_a_transaction_repeated_with_its_token_answers_as_the_first_and_does_not_run_again():
    # DynamoDB API reference, TransactWriteItems, ClientRequestToken: idempotent for 10 minutes; the same
    # token with other parameters is IdempotentParameterMismatchException.
    import boto3
    import botocore.exceptions
    import pytest
    from moto import mock_aws

    clock = [5000.0]
    real_monotonic = gk_dynamodb.time.monotonic
    gk_dynamodb.time.monotonic = lambda: clock[0]
    try:
        with mock_aws():
            ddb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
            ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                             AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
            put = lambda pk: [{"Put": {"TableName": "t", "Item": {"pk": {"S": pk}}, "ConditionExpression": "attribute_not_exists(pk)"}}]  # noqa: E731
            ddb.transact_write_items(TransactItems=put("a"), ClientRequestToken="token-1")
            ddb.transact_write_items(TransactItems=put("a"), ClientRequestToken="token-1")  # the SDK's retry: as the first
            with pytest.raises(botocore.exceptions.ClientError) as e:
                ddb.transact_write_items(TransactItems=put("b"), ClientRequestToken="token-1")
            assert e.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
            with pytest.raises(ddb.exceptions.TransactionCanceledException):  # another token: a new request
                ddb.transact_write_items(TransactItems=put("a"), ClientRequestToken="token-2")
            clock[0] += 601  # past the 10 minutes: a new request, which fails its condition
            with pytest.raises(ddb.exceptions.TransactionCanceledException):
                ddb.transact_write_items(TransactItems=put("a"), ClientRequestToken="token-1")
            assert [i["pk"]["S"] for i in ddb.scan(TableName="t")["Items"]] == ["a"]
            # A repeat that arrives while the first is still running is told so, and runs nothing.
            items = json.dumps(put("c"), sort_keys=True)
            gk_dynamodb._TOKENS[("123456789012", "us-east-1", "token-3")] = (float("inf"), items, gk_dynamodb._IN_PROGRESS)
            with pytest.raises(botocore.exceptions.ClientError) as e:
                ddb.transact_write_items(TransactItems=put("c"), ClientRequestToken="token-3")
            assert e.value.response["Error"]["Code"] == "TransactionInProgressException"
            gk_dynamodb._TOKENS.clear()
    finally:
        gk_dynamodb.time.monotonic = real_monotonic


def test_a_write_that_changes_nothing_writes_no_stream_record():
    # DynamoDB Developer Guide, "Change data capture for DynamoDB Streams": "If you perform a PutItem or
    # UpdateItem operation that does not change any data in an item, DynamoDB Streams does not write a stream
    # record for that operation."
    import boto3
    from moto import mock_aws

    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
        ddb.create_table(TableName="s", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        item = {"pk": {"S": "a"}, "ss": {"SS": ["x", "y"]}}
        ddb.put_item(TableName="s", Item=item)
        ddb.put_item(TableName="s", Item={**item, "ss": {"SS": ["y", "x"]}})  # the same set: no change
        ddb.update_item(TableName="s", Key={"pk": {"S": "a"}}, UpdateExpression="SET n = :n", ExpressionAttributeValues={":n": {"N": "1"}})
        ddb.update_item(TableName="s", Key={"pk": {"S": "a"}}, UpdateExpression="SET n = :n", ExpressionAttributeValues={":n": {"N": "1"}})
        ddb.delete_item(TableName="s", Key={"pk": {"S": "a"}})
        from moto.dynamodb.models import dynamodb_backends

        shard = dynamodb_backends["123456789012"]["us-east-1"].get_table("s").stream_shard
        events = [r.to_json()["eventName"] for r in shard.items]
        assert events == ["INSERT", "MODIFY", "REMOVE"], events


@pytest.fixture(scope="module")
def server():
    """The emulator's server (moto's mock mode routes DynamoDB Streams' calls to DynamoDB's handler)."""
    with serve() as url:
        yield url


def clients(url, *names):
    import boto3

    kw = {"region_name": "us-east-1", "aws_access_key_id": "k", "aws_secret_access_key": "s", "endpoint_url": url}
    return [boto3.client(n, **kw) for n in names]


def test_a_cancelled_transaction_leaves_no_stream_record_and_the_stream_goes_on(server):
    # TransactWriteItems: "either all of them succeed, or all of them fail": a cancelled transaction writes
    # nothing, its first write's record included, and a reader of the stream (an iterator taken before it)
    # sees the writes after it. moto put a copy of the table in its place, and the reader's shard got no
    # later write.
    ddb, streams = clients(server, "dynamodb", "dynamodbstreams")
    arn = ddb.create_table(TableName="x", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                           AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                           StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})["TableDescription"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    ddb.put_item(TableName="x", Item={"pk": {"S": "taken"}})
    put = lambda pk: {"Put": {"TableName": "x", "Item": {"pk": {"S": pk}}, "ConditionExpression": "attribute_not_exists(pk)"}}  # noqa: E731
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=[put("new"), put("taken")])
    ddb.put_item(TableName="x", Item={"pk": {"S": "after"}})
    records = streams.get_records(ShardIterator=iterator)["Records"]
    assert [(r["eventName"], r["dynamodb"]["Keys"]["pk"]["S"]) for r in records] == [("INSERT", "taken"), ("INSERT", "after")]
    assert sorted(i["pk"]["S"] for i in ddb.scan(TableName="x")["Items"]) == ["after", "taken"]


def test_conditional_writes_from_many_threads_each_see_the_last(monkeypatch):
    # A conditional write checks and writes as one step: of the writers each setting the counter to what they
    # read plus 1, only where it still holds what they read, every success is one step of it, none lost. moto checks the
    # condition, then writes, with nothing between them; a pause after each check (in-process, through the same
    # handler the server runs) opens that gap wide enough for the writers to meet in it.
    import concurrent.futures
    import time

    import boto3
    import botocore.exceptions
    import moto.dynamodb.models as ddb_models
    from moto import mock_aws

    make_parser = ddb_models.create_condition_expression_parser

    class SlowCheck:
        def __init__(self, op):
            self.op = op

        def expr(self, item):
            verdict = self.op.expr(item)
            time.sleep(0.002)
            return verdict

    class SlowParser:
        def __init__(self, *args):
            self.parser = make_parser(*args)

        def parse(self):
            return SlowCheck(self.parser.parse())

    monkeypatch.setattr(ddb_models, "create_condition_expression_parser", SlowParser)
    kw = {"region_name": "us-east-1", "aws_access_key_id": "k", "aws_secret_access_key": "s"}
    with mock_aws():
        ddb = boto3.client("dynamodb", **kw)
        ddb.create_table(TableName="c", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        ddb.put_item(TableName="c", Item={"pk": {"S": "n"}, "v": {"N": "0"}})

        def bump(_):
            mine = boto3.client("dynamodb", **kw)
            won = 0
            for _ in range(20):
                seen = mine.get_item(TableName="c", Key={"pk": {"S": "n"}}, ConsistentRead=True)["Item"]["v"]["N"]
                try:
                    mine.update_item(TableName="c", Key={"pk": {"S": "n"}}, UpdateExpression="SET v = :next", ConditionExpression="v = :seen",
                                     ExpressionAttributeValues={":next": {"N": str(int(seen) + 1)}, ":seen": {"N": seen}})
                    won += 1
                except botocore.exceptions.ClientError as e:
                    assert e.response["Error"]["Code"] == "ConditionalCheckFailedException"
            return won

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            wins = sum(pool.map(bump, range(6)))
        final = int(ddb.get_item(TableName="c", Key={"pk": {"S": "n"}}, ConsistentRead=True)["Item"]["v"]["N"])
        assert final == wins, f"{wins} conditional writes succeeded, the counter moved {final}"
