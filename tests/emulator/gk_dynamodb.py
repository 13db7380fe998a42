"""DynamoDB for the local AWS: moto's JSON answers written without walking the model once per attribute value,
and a table's Query reading only the partition it names; what it answers is moto's, byte for byte.

moto 5.2.1 serialises every answer from the service model: for each `AttributeValue` of each returned item it
asks its attribute picker for all ten members of the union (`S`, `N`, `B`, `SS`, `NS`, `BS`, `M`, `L`,
`NULL`, `BOOL`), each ask trying several spellings of the name. On the benchmark machine that was about
0.35 ms per attribute value: a Query returning 25 three-attribute items took 9 ms in-process against 1.6 ms for
a GetItem, most of it there. DynamoDB documents no such cost: a Query is one request that "returns all items
with that partition key value" up to 1 MB a page (DynamoDB API reference, Query), and DynamoDB is described
as "consistent single-digit millisecond performance at any scale" (Amazon DynamoDB Developer Guide, "What is
Amazon DynamoDB?"). So an allowlist read as one partition Query was timed as the emulator's serialiser, not
as the read AWS would answer, and the benchmarks compared that with single-item GetItems.

The fast path below writes an attribute value the way moto's generic path does (a union with one member set;
strings, numbers' decimal strings, booleans and sets as they are stored, binaries through moto's own base64,
maps and lists recursively) and falls back to moto's path for anything else (a value of another shape, an
unexpected type, a response transformer registered for one of the union's members). `test_dynamodb.py`
compares the two on generated items of every type.
"""

from __future__ import annotations

import collections
import copy
import functools
import hashlib
import inspect
import json
import math
import os
import threading
import time
from typing import Any

from moto.core.serialize import JSONSerializer
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.responses import DynamoHandler
from moto.dynamodb.models.table import StreamShard, Table
from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

import gk_control

# The members of DynamoDB's AttributeValue union (DynamoDB API reference, AttributeValue).
_STRINGS = ("S", "N")
_BOOLS = ("BOOL", "NULL")
_STRING_SETS = ("SS", "NS")
MEMBERS = frozenset(_STRINGS + _BOOLS + _STRING_SETS + ("B", "BS", "M", "L"))
_SERVICES = frozenset({"dynamodb", "dynamodbstreams"})

enabled = True  # the tests compare with moto's own path by turning this off

_generic = JSONSerializer._serialize_type_structure


def attribute_value(serializer: JSONSerializer, value: Any) -> dict | None:
    """`value` (moto's stored form of one attribute value) as moto's serialiser writes it, or None when this
    path does not know the shape of `value` and moto's own must write it."""
    if type(value) is not dict or len(value) != 1:
        return None
    ((member, v),) = value.items()
    if member in _STRINGS:
        return {member: v} if type(v) is str else None
    if member in _BOOLS:
        return {member: v} if type(v) is bool else None
    if member in _STRING_SETS:
        return {member: list(v)} if type(v) is list and all(type(x) is str for x in v) else None
    if member == "B":
        return {member: serializer._base64(v)} if isinstance(v, str | bytes) else None
    if member == "BS":
        if type(v) is not list or not all(isinstance(x, str | bytes) for x in v):
            return None
        return {member: [serializer._base64(x) for x in v]}
    if member == "M":
        if type(v) is not dict or not all(type(k) is str for k in v):
            return None
        out = {}
        for k, sub in v.items():
            written = attribute_value(serializer, sub)
            if written is None:
                return None
            out[k] = written
        return {member: out}
    if member == "L":
        if type(v) is not list:
            return None
        items = [attribute_value(serializer, sub) for sub in v]
        return None if any(i is None for i in items) else {member: items}
    return None


def _transformed(serializer: JSONSerializer) -> bool:
    """Whether a response transformer could apply inside an attribute value (moto keeps them by key path);
    asked once per answer, not once per value."""
    known = serializer.__dict__.get("_gk_transformed")
    if known is None:
        transformers = getattr(serializer._value_picker, "response_transformers", None) or {}
        known = serializer.__dict__["_gk_transformed"] = any(path.rsplit(".", 1)[-1] in MEMBERS for path in transformers)
    return known


def _serialize_type_structure(self: JSONSerializer, serialized, value, shape, key) -> None:
    if (
        enabled
        and key
        and shape.name == "AttributeValue"
        and self.operation_model.service_model.service_name in _SERVICES
        and not _transformed(self)
    ):
        written = attribute_value(self, value)
        if written is not None:
            serialized[self.get_serialized_name(shape, key)] = written
            return
    _generic(self, serialized, value, shape, key)


JSONSerializer._serialize_type_structure = _serialize_type_structure


# ----------------------------------------------------------------------------- Query reads its partition

# moto 5.2.1's Table.query on a table's own key gathers its candidates from `all_items()`: every item of the
# table, sorted by (partition key, sort key) with moto's DynamoType comparisons, then kept when its partition
# key equals the one asked for. So a Query's cost grew with the whole table (a decisions table of a few
# thousand records made every Query by endpoint take tens of milliseconds), where DynamoDB reads one
# partition: "Query finds items based on primary key values ... You must provide the name of the partition
# key attribute and a single value for that attribute. Query returns all items with that partition key
# value" (DynamoDB API reference, Query). While a Query on the table's own key runs, `all_items()` gives it
# only that partition, in moto's order; everything after (sort, range conditions, filters, pages) is moto's.
# Only string partition keys take this path: moto stores items under the key's DynamoType and matches a
# Query with `==`, which for numbers ("1" and "1.0") is not the dictionary's equality.
partition_reads = True  # the tests compare with moto's own path by turning this off

_QUERYING = threading.local()
_orig_query = Table.query
_orig_all_items = Table.all_items
_QUERY_SIGNATURE = inspect.signature(_orig_query)


def _partition_items(table: Table, hash_key) -> list:
    """What `all_items()` holds of one partition, in its order."""
    stored = table.items.get(hash_key)  # .get: table.items is a defaultdict, and a read must not add a key
    if stored is None:
        return []
    items = list(stored.values()) if table.range_key_attr else [stored]
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def _all_items(self: Table) -> list:
    if getattr(_QUERYING, "index_of", None) is self:
        lagged = _as_of_lag(self)
        if lagged is not None:
            return lagged
    asked = getattr(_QUERYING, "partition", None)
    if asked is not None and asked[0] is self:
        return _partition_items(self, asked[1])
    return _orig_all_items(self)


def _query(self: Table, *args, **kwargs):
    bound = _QUERY_SIGNATURE.bind(self, *args, **kwargs)
    index_name = bound.arguments.get("index_name")
    if index_name is not None and _lags(self, index_name):
        _QUERYING.index_of = self
        try:
            return _orig_query(self, *args, **kwargs)
        finally:
            _QUERYING.index_of = None
    hash_key = bound.arguments.get("hash_key")
    own_key = index_name is None and getattr(hash_key, "type", None) == "S"
    if not (partition_reads and own_key):
        return _orig_query(self, *args, **kwargs)
    _QUERYING.partition = (self, hash_key)
    try:
        return _orig_query(self, *args, **kwargs)
    finally:
        _QUERYING.partition = None


Table.all_items = _all_items
Table.query = _query


# ------------------------------------------------------------ a global secondary index lags its table

# DynamoDB Developer Guide, "Using Global Secondary Indexes in DynamoDB", "Reading data from a global
# secondary index": "Queries on global secondary indexes support eventual consistency only", and
# "Data synchronization between tables and global secondary indexes": "DynamoDB automatically synchronizes
# each global secondary index with its base table. When an application writes or deletes items in a table,
# any global secondary indexes on that table are updated asynchronously, using an eventually consistent
# model. ... changes to the table data are propagated to the global secondary indexes within a fraction of
# a second, under normal conditions." moto updates an index with its table: a Query or Scan of a global
# index read every write at once. With a lag (GATEKEEPER_EMU_INDEX_LAG_MS, or POST
# /_gatekeeper/index-lag {"lag_ms": N}; 0, off, by default), a read of a global index sees each item as it
# stood `lag` ago: an item written since is read as it was before its first write in that window (absent
# if it did not exist), so a new entry shows late and a removed one lingers, as the guide describes.
# AWS documents no bound, so the lag is a fixed time the tests choose. Writes are recorded through the
# backend's PutItem, UpdateItem and DeleteItem, which BatchWriteItem and TransactWriteItems also go through;
# PartiQL writes are not recorded (the project makes none). Local secondary indexes and the table itself
# are read as they stand: both offer strongly consistent reads.
INDEX_LAG_SECONDS = max(0.0, float(os.environ.get("GATEKEEPER_EMU_INDEX_LAG_MS", "0")) / 1000)
_WRITES = threading.RLock()  # one write to a table with a global index at a time, with its old image
_HISTORY = "_gk_index_history"  # on the Table: deque of (monotonic time, (hash, range), item before or None)


def _global_index(table: Table, index_name: str) -> bool:
    return any(i.name == index_name for i in getattr(table, "global_indexes", None) or [])


def _lags(table: Table, index_name: str) -> bool:
    return INDEX_LAG_SECONDS > 0 and _global_index(table, index_name)


def _forget_before(history: collections.deque, cutoff: float) -> None:
    while history and history[0][0] <= cutoff:
        history.popleft()


def _as_of_lag(table: Table) -> list | None:
    """Every item of `table` as it stood INDEX_LAG_SECONDS ago, in all_items()'s order; None when nothing
    was written since (the table as it stands)."""
    with _WRITES:
        history = table.__dict__.get(_HISTORY)
        if not history:
            return None
        _forget_before(history, time.monotonic() - INDEX_LAG_SECONDS)
        before: dict = {}
        for _, key, old in history:
            before.setdefault(key, old)  # the first write in the window: the item as it stood before it
        if not before:
            return None
        items = {(i.hash_key, i.range_key): i for i in _orig_all_items(table)}
    for key, old in before.items():
        if old is None:
            items.pop(key, None)
        else:
            items[key] = old
    return sorted(items.values(), key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def _has_idx_items(self: Table, index_name: str) -> list:
    if not _lags(self, index_name):
        return _orig_has_idx_items(self, index_name)
    lagged = _as_of_lag(self)
    if lagged is None:
        return _orig_has_idx_items(self, index_name)
    wanted = {k["AttributeName"] for k in self.get_index(index_name).schema}
    return [i for i in lagged if wanted.issubset(i.attrs)]  # moto's rule: the item has every key attribute


def _recorded(write, key_of):
    """`write` (a backend's PutItem, UpdateItem or DeleteItem), recording the item it replaces while a global
    index lags."""

    @functools.wraps(write)
    def recorded(backend, table_name, attrs, *args, **kwargs):
        table = backend.tables.get(table_name) if INDEX_LAG_SECONDS > 0 else None
        if table is None or not table.global_indexes:
            return write(backend, table_name, attrs, *args, **kwargs)
        try:
            key = key_of(backend, table, attrs)
        except Exception:  # a malformed key: moto's own write refuses it
            return write(backend, table_name, attrs, *args, **kwargs)
        with _WRITES:
            old = copy.deepcopy(table.get_item(*key))
            done = write(backend, table_name, attrs, *args, **kwargs)  # raises on a failed condition: nothing recorded
            history = table.__dict__.setdefault(_HISTORY, collections.deque())
            now = time.monotonic()
            _forget_before(history, now - INDEX_LAG_SECONDS)
            history.append((now, key, old))
        return done

    return recorded


def _key_of_item(backend, table: Table, item: dict) -> tuple:
    return backend.get_keys_value(table, {k: item[k] for k in (table.hash_key_attr, table.range_key_attr) if k})


def _key_of_key(backend, table: Table, key: dict) -> tuple:
    return backend.get_keys_value(table, key)


_orig_has_idx_items = Table.has_idx_items
Table.has_idx_items = _has_idx_items
DynamoDBBackend.put_item = _recorded(DynamoDBBackend.put_item, _key_of_item)
DynamoDBBackend.update_item = _recorded(DynamoDBBackend.update_item, _key_of_key)
DynamoDBBackend.delete_item = _recorded(DynamoDBBackend.delete_item, _key_of_key)


# ---------------------------------------------------------------------- a set keeps no order

# DynamoDB Developer Guide, "Supported data types and naming rules", Sets: "The order of the values within a
# set is not preserved. Therefore, your applications must not rely on any particular order of elements
# within the set." moto kept a set's values in the order they were written, so code that compared a set
# read back with the one it wrote passed here and failed against DynamoDB. A set (SS, NS, BS) is stored here
# in an order of its own: by a salted hash of each value (GATEKEEPER_EMU_ORDER_SALT, as EC2's listing order),
# fixed so that a run repeats. Equality, conditions and updates are moto's: it compares sets as sets.
SET_ORDER_SALT = os.environ.get("GATEKEEPER_EMU_ORDER_SALT") or "gatekeeper"
_SET_TYPES = frozenset({"SS", "NS", "BS"})
_orig_dynamo_type_init = DynamoType.__init__


def _set_order(value) -> str:
    raw = value if isinstance(value, bytes) else str(value).encode()
    return hashlib.sha256(SET_ORDER_SALT.encode() + b"\0" + raw).hexdigest()


def _dynamo_type_init(self, type_as_dict) -> None:
    _orig_dynamo_type_init(self, type_as_dict)
    if self.type in _SET_TYPES and type(self.value) is list and len(self.value) > 1:
        self.value = sorted(self.value, key=_set_order)


DynamoType.__init__ = _dynamo_type_init


# ----------------------------------------------------- TransactWriteItems is idempotent by its token

# DynamoDB API reference, TransactWriteItems, ClientRequestToken: "Providing a ClientRequestToken makes the
# call to TransactWriteItems idempotent, meaning that multiple identical calls have the same effect as one
# single call. ... A client request token is valid for 10 minutes after the first request that uses it is
# completed. After 10 minutes, any request with the same client token is treated as a new request. ... If you
# submit a request with the same client token but a change in other parameters within the 10-minute
# idempotency window, DynamoDB returns an IdempotentParameterMismatch exception." The SDKs fill the token in
# and send it again on a retry. moto ignored it: a retried transaction whose answer was lost ran again and
# failed its own conditions, where DynamoDB answers the first call's success. A token is remembered here for
# a transaction that succeeded; one that was cancelled wrote nothing, and runs again (the reference does not
# say what a retry of a cancelled one answers).
TOKEN_SECONDS = 600.0
_TOKENS: dict = {}  # (account, region, token) -> (expires, the request's items, the answer)
_TOKENS_LOCK = threading.Lock()
_orig_transact_write_items = DynamoHandler.transact_write_items


class IdempotentParameterMismatch(DynamodbException):
    def __init__(self) -> None:
        super().__init__(ERROR_TYPE_PREFIX + "IdempotentParameterMismatchException",
                         message="The request uses the same client token as a previous, but non-identical request.")


class TransactionInProgress(DynamodbException):
    # API reference, TransactWriteItems errors: TransactionInProgressException, "The transaction with the given
    # request token is already in progress."
    def __init__(self) -> None:
        super().__init__(ERROR_TYPE_PREFIX + "TransactionInProgressException",
                         message="The transaction with the given request token is already in progress.")


_IN_PROGRESS = object()


def _transact_write_items(self):
    token = self.body.get("ClientRequestToken")
    if not token:
        return _orig_transact_write_items(self)
    key = (self.current_account, self.region, token)
    items = json.dumps(self.body.get("TransactItems"), sort_keys=True)
    now = time.monotonic()
    with _TOKENS_LOCK:
        for k in [k for k, (expires, _, answer) in _TOKENS.items() if expires <= now and answer is not _IN_PROGRESS]:
            del _TOKENS[k]
        seen = _TOKENS.get(key)
        if seen is None:
            _TOKENS[key] = (math.inf, items, _IN_PROGRESS)  # taken before running: a concurrent repeat waits its turn
    if seen is not None:
        if seen[1] != items:
            raise IdempotentParameterMismatch()
        if seen[2] is _IN_PROGRESS:
            raise TransactionInProgress()
        return seen[2]
    try:
        answer = _orig_transact_write_items(self)
    except BaseException:
        with _TOKENS_LOCK:  # cancelled or refused: it wrote nothing, and a repeat runs again
            _TOKENS.pop(key, None)
        raise
    with _TOKENS_LOCK:
        _TOKENS[key] = (time.monotonic() + TOKEN_SECONDS, items, answer)
    return answer


DynamoHandler.transact_write_items = _transact_write_items


# ------------------------------------------------------------- a write that changes nothing is no record

# DynamoDB Developer Guide, "Change data capture for DynamoDB Streams": "If you perform a PutItem or
# UpdateItem operation that does not change any data in an item, DynamoDB Streams does not write a stream
# record for that operation." moto wrote a MODIFY record for every write, so a function reading the stream
# was invoked for changes DynamoDB never reports.
_orig_stream_add = StreamShard.add


def _stream_add(self, old, new) -> None:
    if old is not None and new is not None and old == new:
        return None
    return _orig_stream_add(self, old, new)


StreamShard.add = _stream_add


# ------------------------------------------------------ one request at a time; a cancelled transaction undone

# DynamoDB API reference, UpdateItem/PutItem/DeleteItem: a conditional write checks its condition and writes
# as one step ("Edits an existing item's attributes, or adds a new item ... You can also perform a conditional
# update"; the Developer Guide's "Condition expressions" build optimistic locking on it), and TransactWriteItems
# is "all-or-nothing", serializable against the single-item calls (Developer Guide, "Amazon DynamoDB
# Transactions: How it works", Isolation levels). moto's server runs each request on its own thread and reads,
# checks and writes with nothing between them, so two conditional writes to one item could both pass, and a
# read could see half a transaction. Here each DynamoDB and DynamoDB Streams request is answered whole before
# the next starts: stricter than DynamoDB (which runs calls on different items side by side), never looser.
_REQUESTS = threading.RLock()


def _one_at_a_time(handler: type) -> None:
    answer = handler.call_action

    @functools.wraps(answer)
    def call_action(self):
        with _REQUESTS:
            return answer(self)

    handler.call_action = call_action


_one_at_a_time(DynamoHandler)
_one_at_a_time(DynamoDBStreamsHandler)

# A cancelled transaction writes nothing ("The actions are completed atomically so that either all of them
# succeed, or all of them fail", TransactWriteItems), so it leaves no stream record either. moto ran the
# writes, then put the copy of each table it took before them in the table's place: the table object that a
# stream reader's shard iterator (and the index-lag history) holds kept the cancelled writes' records and got
# no later write, so a stream read after a cancelled transaction went silent. Here the copy's items, stream
# records and index history go back into the table, which stays the one object.
_orig_backend_transact = DynamoDBBackend.transact_write_items


def _backend_transact(self, transact_items):
    tables = dict(self.tables)
    try:
        return _orig_backend_transact(self, transact_items)
    except BaseException:
        for name, table in tables.items():
            before = self.tables.get(name)
            if before is None or before is table:  # not rolled back: the transaction never wrote to it
                continue
            table.items = before.items
            if table.stream_shard is not None and before.stream_shard is not None:
                table.stream_shard.items[:] = before.stream_shard.items
            if _HISTORY in before.__dict__:
                table.__dict__[_HISTORY] = before.__dict__[_HISTORY]
            self.tables[name] = table
        raise


DynamoDBBackend.transact_write_items = _backend_transact


def control(path: str, environ) -> bytes | None:
    """Answers this module's /_gatekeeper/ control paths (None: not ours)."""
    global INDEX_LAG_SECONDS
    if path != "/_gatekeeper/index-lag":
        return None
    spec = gk_control.body(environ)
    if "lag_ms" in spec:
        INDEX_LAG_SECONDS = max(0.0, float(spec["lag_ms"]) / 1000)
    return json.dumps({"lag_ms": INDEX_LAG_SECONDS * 1000}).encode()
