"""`make bench`: Gatekeeper's function binaries against a reference Python/boto3 `decide`, on the same local
AWS (tests/emulator, with infra/template.yaml deployed into it), measured the same way. Prints tables and
the ratios, and writes target/bench/results.json (bench/readme_table.py turns it into the README's tables).
Not part of `make test`.

  init            process start → first Runtime API `next` (Lambda's "Init Duration"), and peak RSS then
  warm            one Connection Request per invocation, EC2's throttling off: handler latency p50/p99 and
                  AWS calls per decision
  burst           N endpoints from 50 accounts, all requested at once, batches of the template's BatchSize
                  handed to one execution environment, one invocation at a time: time until all are decided,
                  EC2 accept/reject calls, throttled calls, wrong or doubled actions
  burst_services  one stack managing S services, S × E endpoints requested at once through the bus and the
                  requests queue; Lambda's SQS event source stood in for (MaximumConcurrency execution
                  environments, BatchSize, batching window, ReportBatchItemFailures, the queue's redrive):
                  time until the queue is empty, decided, dead-lettered, throttled
  end_to_end      consumers' CreateVpcEndpoint, one every --e2e-interval s → connection notification → SNS →
                  ingest → bus → requests queue → decide → decision announced on SNS (the decisions inbox):
                  p50/p99 in total and per stage

Each function runs as Lambda runs it: its binary started by a stand-in for the Runtime API, with its deployed
environment (from the state file `gatekeeper-local provision` writes), AWS_REGION, AWS_ENDPOINT_URL, and its
template role's credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, issued by the
emulator's /_gatekeeper/role-credentials; IAM enforced). The reference runs under IAM as well, with a role
of its own: decide's deployed policies plus GetItem on the allowlist (a call decide does not make). Every
measurement starts on a fresh local AWS.

`--profile debug` (or BENCH_PROFILE=debug) runs the debug binaries, for checking the harness only: it writes
target/bench/results-debug.json, never results.json.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import concurrent.futures
import contextlib
import datetime
import json
import os
import platform
import queue
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "bench"
REGION = "us-east-1"
PROVIDER = "111111111111"
PYTHON = os.environ.get("GATEKEEPER_PYTHON") or str(ROOT / ".venv/bin/python")
# The least visibility timeout Lambda allows a function's SQS event source: the function's Timeout (decide's,
# 60 s in infra/template.yaml; docs/aws-facts.md, "Lambda and SAM", with its source). The bench's
# stand-in for the event source receives with it, and burst_services gives its requests queue it by default.
LEAST_VISIBILITY_S = 60
# Counters of the emulator's /_gatekeeper/calls that are not AWS calls (gatekeeper_moto.py, gk_iam.py).
NOT_CALLS = ("notification:", "ec2:throttled", "ec2:principal-not-allowed", "iam:", "changed:", "fault:")
# The bench's own clients: no SDK retries (the bench waits for EC2's tokens itself, visibly).
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=20)

_STARTED: list[subprocess.Popen] = []  # every process this run started, ended at exit


def _end_started():
    for p in _STARTED:
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(_end_started)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def p50_p99(xs):
    return {"p50_ms": round(statistics.median(xs), 1), "p99_ms": round(percentile(xs, 99), 1)} if xs else {"p50_ms": None, "p99_ms": None}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- a Lambda Runtime API


class RuntimeApi:
    """Serves invocations to one execution environment (one process) and times them."""

    def __init__(self, timeout_s):
        self.timeout_ms = int(timeout_s * 1000)
        self.events = queue.Queue()
        self.results = {}
        self.first_next = threading.Event()
        self.first_next_at = None
        self.pid = None
        self.rss_at_init_kb = None
        self.init_error = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if not self.path.endswith("/invocation/next"):
                    self.send_error(404)
                    return
                if not api.first_next.is_set():
                    api.first_next_at = time.perf_counter()
                    api.rss_at_init_kb = peak_rss_kb(api.pid)
                    api.first_next.set()
                request_id, body, done = api.events.get()
                done["served"] = time.perf_counter()
                done["served_wall"] = time.time()
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                # The invocation's deadline, as Lambda gives it: now plus the function's deployed Timeout.
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + api.timeout_ms))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", f"arn:aws:lambda:{REGION}:{PROVIDER}:function:bench")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = self.path.split("/")
                self.send_response(202)
                self.end_headers()
                if "invocation" in parts and parts[-1] in ("response", "error"):
                    done = api.results[parts[-2]]
                    done["finished"] = time.perf_counter()
                    done["finished_wall"] = time.time()
                    done["ok"] = parts[-1] == "response"
                    done["body"] = body
                    done["event"].set()
                elif parts[-1] == "error":  # /runtime/init/error
                    api.init_error = body.decode("utf-8", "replace")
                    api.first_next.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def cpu_seconds(pid):
    """The CPU time (user and system, all of the process's threads, ended ones included) the process has used,
    in seconds: proc(5), /proc/[pid]/stat fields 14 and 15, in clock ticks. None once it has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class FunctionProcess:
    """One execution environment: the function's process, started against its own Runtime API."""

    def __init__(self, cmd, env, log_name, timeout_s=60):
        self.cmd, self.env, self.log_name, self.timeout_s = cmd, env, log_name, timeout_s
        self.timed_out = 0
        self._start()

    def _start(self):
        cmd, env, log_name, timeout_s = self.cmd, self.env, self.log_name, self.timeout_s
        self.api = RuntimeApi(timeout_s)
        env = dict(env, AWS_LAMBDA_RUNTIME_API=self.api.address)
        OUT.joinpath("logs").mkdir(parents=True, exist_ok=True)
        self.log_path = OUT / "logs" / f"{log_name}.log"
        out = open(self.log_path, "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        _STARTED.append(self.proc)
        self.api.pid = self.proc.pid
        deadline = time.monotonic() + 60
        while not self.api.first_next.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{cmd[-1]} never asked for an invocation (see {self.log_path})")
        if self.api.init_error:
            self.close()
            raise RuntimeError(f"{cmd[-1]} failed its init: {self.api.init_error} (see {self.log_path})")
        self.init_ms = (self.api.first_next_at - t0) * 1000
        self.rss_mib = (self.api.rss_at_init_kb or 0) / 1024

    def invoke(self, event):
        """One invocation, ended as Lambda ends it at the function's deployed Timeout: the invocation fails
        (an SQS event source then returns its whole batch to the queue) and the execution environment is
        reset, so the next invocation starts a fresh one (AWS Lambda Developer Guide, "Understand the Lambda
        execution environment lifecycle": a function that times out during the Invoke phase has its execution
        environment reset, and Init runs again)."""
        request_id = str(uuid.uuid4())
        done = {"event": threading.Event()}
        self.api.results[request_id] = done
        self.api.events.put((request_id, event, done))
        deadline = time.monotonic() + self.timeout_s
        while not done["event"].wait(0.25):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the function's process ended (see {self.log_path})")
            if time.monotonic() > deadline:
                log(f"{Path(self.cmd[-1]).name}: invocation timed out after the deployed {self.timeout_s} s; execution environment reset")
                self.timed_out += 1
                self.close()
                self._start()
                done.update(ok=False, timed_out=True, body=b"", finished=time.perf_counter(), finished_wall=time.time())
                done.setdefault("served", done["finished"])  # never served: the process never asked for it
                return done
        return done

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.api.close()


def batch_failures(done, records):
    """The message IDs an invocation failed (ReportBatchItemFailures; a failed invocation fails them all)."""
    ids = [r["messageId"] for r in records]
    if not done.get("ok"):
        return set(ids)
    try:
        answer = json.loads(done.get("body") or b"{}") or {}
    except ValueError:
        return set(ids)
    return {f.get("itemIdentifier") for f in answer.get("batchItemFailures") or []}


# ----------------------------------------------------------------------------- the local AWS


class Emulator:
    """A fresh local AWS (moto with the project's extension) for one measurement."""

    def __init__(self, name):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        OUT.joinpath("logs").mkdir(parents=True, exist_ok=True)
        out = open(OUT / "logs" / f"emulator-{name}.log", "wb")
        self.proc = subprocess.Popen([PYTHON, str(ROOT / "tests/emulator/gatekeeper_moto.py"), "--port", str(self.port)], stdout=out, stderr=subprocess.STDOUT)
        out.close()
        _STARTED.append(self.proc)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the local AWS did not start (see {OUT / 'logs' / f'emulator-{name}.log'})")
                time.sleep(0.1)

    def control(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        if data is None and path.endswith(("/reset", "/lambda/take", "/lambda/done")):
            data = b"{}"
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def calls(self):
        return self.control("/_gatekeeper/calls")

    def timeline(self):
        return self.control("/_gatekeeper/timeline")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def in_flight(timeline, start, end):
    """The spans during which calls that began in [start, end] were in flight: calls that overlap in time are
    merged into one span (they were in flight together)."""
    merged = []
    for s, e in sorted((s, e) for _, s, e in timeline if start <= s <= end):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


def round_trips(timeline, start, end):
    """The round trips of the calls that began in [start, end]: calls in flight together count once, so this
    is the length of the invocation's chain of waits on AWS."""
    return len(in_flight(timeline, start, end))


def outside_calls(timeline, start, end):
    """Seconds of [start, end] during which no AWS call that began in it was in flight: the function's own
    time, its HTTP client's, and the gaps between one answer and the next call."""
    return (end - start) - sum(min(e, end) - s for s, e in in_flight(timeline, start, end))


def aws_calls(calls):
    return sum(v for k, v in calls.items() if not k.startswith(NOT_CALLS))


def doubled(calls):
    """Connections whose state Accept/Reject changed more than once (the emulator's changed:<endpoint>)."""
    return sum(1 for k, v in calls.items() if k.startswith("changed:") and v > 1)


_SESSIONS = {}
_SESSIONS_LOCK = threading.Lock()


def session(url, account):
    """A boto3 session in `account`, through STS AssumeRole (how the local AWS maps keys to accounts)."""
    with _SESSIONS_LOCK:
        if (url, account) in _SESSIONS:
            return _SESSIONS[(url, account)]
        sts = boto3.client("sts", endpoint_url=url, region_name=REGION, aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/bench", RoleSessionName="bench")["Credentials"]
        s = boto3.Session(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"], region_name=REGION)
        _SESSIONS[(url, account)] = (s, c)
        return s, c


def client(url, account, service):
    s, _ = session(url, account)
    with _SESSIONS_LOCK:  # boto3 sessions are not thread-safe; the clients they make are
        return s.client(service, endpoint_url=url, config=NO_RETRY)


def ec2_retry(fn, *, pause=(0.5, 1.0), attempts=120, **kw):
    """One EC2 call, waiting for the API's tokens: RequestLimitExceeded → a short pause, then again (bounded).
    Returns (answer, throttled answers seen)."""
    for n in range(attempts):
        try:
            return fn(**kw), n
        except ClientError as e:
            if e.response["Error"]["Code"] != "RequestLimitExceeded" or n == attempts - 1:
                raise
            time.sleep(random.uniform(*pause))
    raise AssertionError("unreachable")


def provision(emu, suffix):
    """One stack for one endpoint service, as `gatekeeper-local provision` deploys it (infra/template.yaml)."""
    path = OUT / "stacks" / f"{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # The template's defaults (a 120 s claim lease), not the tests' 10 s: with 10 s, an invocation may start
    # an Accept/Reject only in the first 2 s (the lease less CALL_TIMEOUT and LEASE_MARGIN), which a batch
    # of 1,000 does not reach.
    subprocess.run([str(ROOT / "target/debug/gatekeeper-local"), "provision", "--endpoint", emu.url, "--suffix", suffix,
                    "--state", str(path), "--template-defaults"], check=True, stdout=subprocess.DEVNULL)
    stack = json.loads(path.read_text())
    stack["service_ids"] = [stack["service_id"]]
    stack["service_names"] = [stack["service_name"]]
    # The queues keep the template's visibility timeout (360 s); Lambda's stand-in receives with
    # LEAST_VISIBILITY_S (60 s), which the template's 120 s lease fits (lease < visibility
    # x (receives - 1), the template's ClaimLeaseSeconds rule): with the tests' 2 s, a request that met a
    # claim kept for its lease would reach the DLQ in about 20 s, and one waiting out a 2 s batching window
    # would be received twice.
    stack["receive_visibility_s"] = LEAST_VISIBILITY_S
    return stack


def provision_services(emu, suffix, n, parameters):
    """One stack managing `n` endpoint services (ManagedServiceIds with all of them): `gatekeeper-local
    provision` makes one service per stack, so the services are made here as it makes its one (an NLB each,
    acceptance required, allowed principals `*`) and the template is deployed by tests/emulator/deploy.py."""
    ec2 = client(emu.url, PROVIDER, "ec2")
    elb = client(emu.url, PROVIDER, "elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    ids, names = [], []
    for i in range(n):
        nlb = elb.create_load_balancer(Name=f"gk-{suffix}-{i}", Type="network", Subnets=[subnet])["LoadBalancers"][0]["LoadBalancerArn"]
        svc = ec2_retry(ec2.create_vpc_endpoint_service_configuration, NetworkLoadBalancerArns=[nlb], AcceptanceRequired=True)[0]["ServiceConfiguration"]
        ec2_retry(ec2.modify_vpc_endpoint_service_permissions, ServiceId=svc["ServiceId"], AddAllowedPrincipals=["*"])
        ids.append(svc["ServiceId"])
        names.append(svc["ServiceName"])
    out = OUT / "stacks" / f"{suffix}-deployment.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [PYTHON, str(ROOT / "tests/emulator/deploy.py"), "--endpoint", emu.url, "--account", PROVIDER, "--region", REGION,
           "--stack-name", f"gatekeeper-{suffix}", "--template", str(ROOT / "infra/template.yaml"), "--out", str(out), "--timeout", "600",
           "--parameter", f"ManagedServiceIds={','.join(ids)}"]
    for k, v in parameters.items():
        cmd += ["--parameter", f"{k}={v}"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"deploying the template with {n} services failed:\n{run.stdout}{run.stderr}")
    dep = json.loads(out.read_text())
    o = dep["outputs"]
    requests_arn = dep["queues"]["RequestsQueue"]["arn"]
    return {
        "endpoint_url": emu.url,
        "provider_account": dep["account"],
        "allowlist_table": o["AllowlistTableName"],
        "decisions_table": o["DecisionsTableName"],
        "decisions_topic_arn": o["DecisionsTopicArn"],
        "bus_name": o["BusName"],
        "requests_queue_url": next(q["url"] for q in dep["queues"].values() if q["arn"] == requests_arn),
        "requests_dlq_url": o["RequestsDeadLetterQueueUrl"],
        "service_ids": ids,
        "service_names": names,
        "deployment": dep,
    }


def mapping(stack, function="DecideFunction"):
    """decide's event source mapping on the requests queue (its other one reads SNS's deliveries)."""
    requests = stack["deployment"]["queues"]["RequestsQueue"]["arn"]
    return next(m for m in stack["deployment"]["event_source_mappings"] if m["function"] == function and m["event_source_arn"] == requests)


def role_credentials(emu, stack, logical_id):
    f = stack["deployment"]["functions"][logical_id]
    return emu.control("/_gatekeeper/role-credentials", {"role_arn": f["role_arn"], "session_name": f["name"][-64:]})


def lambda_env(emu, stack, logical_id, creds):
    """What Lambda gives the function: its deployed environment, the reserved variables, the role's credentials."""
    f = stack["deployment"]["functions"][logical_id]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update(f["environment"])
    env.update({
        "AWS_REGION": stack["deployment"]["region"],
        "AWS_DEFAULT_REGION": stack["deployment"]["region"],
        "AWS_ENDPOINT_URL": emu.url,
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "AWS_LAMBDA_FUNCTION_NAME": f["name"],
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{f['name']}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
    })
    return env


class Impl:
    """How to start one implementation of decide (or another function) on a stack."""

    def __init__(self, label, cmd, logical_id, reference=False):
        self.label, self.cmd, self.logical_id, self.reference = label, cmd, logical_id, reference

    def timeout_s(self, stack):
        """The function's deployed Timeout (the reference runs as decide: DecideFunction's)."""
        return stack["deployment"]["functions"][self.logical_id]["timeout"]

    def start(self, emu, stack, log_name, env=None):
        """An execution environment of this function, as deployed in `stack`."""
        return FunctionProcess(self.cmd, env or self.env(emu, stack), log_name, self.timeout_s(stack))

    def env(self, emu, stack):
        if self.reference:  # decide's deployed environment, a role of its own under the same IAM
            return lambda_env(emu, stack, "DecideFunction", reference_credentials(emu, stack))
        return lambda_env(emu, stack, self.logical_id, role_credentials(emu, stack, self.logical_id))


def reference_credentials(emu, stack):
    """The reference runs under IAM too, as Gatekeeper does (the local IAM's checks cost every call the same):
    a role with decide's deployed policies plus the one call the reference makes that decide does not,
    GetItem on the allowlist table."""
    iam = client(emu.url, PROVIDER, "iam")
    decide_role = stack["deployment"]["functions"]["DecideFunction"]["role_arn"].rsplit("/", 1)[-1]
    name = "bench-reference-decide"
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        trust = iam.get_role(RoleName=decide_role)["Role"]["AssumeRolePolicyDocument"]
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust if isinstance(trust, str) else json.dumps(trust))["Role"]["Arn"]
        for policy in iam.list_role_policies(RoleName=decide_role)["PolicyNames"]:
            doc = iam.get_role_policy(RoleName=decide_role, PolicyName=policy)["PolicyDocument"]
            iam.put_role_policy(RoleName=name, PolicyName=policy, PolicyDocument=doc if isinstance(doc, str) else json.dumps(doc))
        table = stack["deployment"]["functions"]["DecideFunction"]["environment"]["ALLOWLIST_TABLE"]
        extra = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": f"arn:aws:dynamodb:{REGION}:{PROVIDER}:table/{table}"}]}
        iam.put_role_policy(RoleName=name, PolicyName="reference-allowlist-getitem", PolicyDocument=json.dumps(extra))
    return emu.control("/_gatekeeper/role-credentials", {"role_arn": arn, "session_name": "reference-decide"})


# ----------------------------------------------------------------------------- workload


def create_endpoints(emu, plan):
    """Consumers create interface endpoints, each account in a VPC of its own, the accounts concurrently;
    CreateVpcEndpoint's tokens (4, then 0.3/s per account) are waited for. `plan`: [(account, service_name)]
    in the order wanted. Returns ([(account, service_name, endpoint_id)] in plan order, throttled answers)."""
    by_account = collections.defaultdict(list)
    for i, (account, name) in enumerate(plan):
        by_account[account].append((i, name))
    out = [None] * len(plan)
    throttled = [0]
    lock = threading.Lock()

    def one_account(account):
        ec2 = client(emu.url, account, "ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
        for i, name in by_account[account]:
            ep, waits = ec2_retry(ec2.create_vpc_endpoint, VpcEndpointType="Interface", VpcId=vpc, ServiceName=name, SubnetIds=[subnet])
            out[i] = (account, name, ep["VpcEndpoint"]["VpcEndpointId"])
            with lock:
                throttled[0] += waits

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(64, len(by_account))) as pool:
        for f in [pool.submit(one_account, a) for a in by_account]:
            f.result()
    return out, throttled[0]


def allow(emu, stack, accounts):
    ddb = client(emu.url, PROVIDER, "dynamodb")
    for a in accounts:
        ddb.put_item(TableName=stack["allowlist_table"], Item={"service_id": {"S": "*"}, "principal": {"S": a}, "effect": {"S": "allow"}})


def request_body(service_id, endpoint_id, trigger="sweep"):
    """A Connection Request as the bus rule delivers it to the requests queue."""
    detail = {"service_id": service_id, "endpoint_id": endpoint_id, "trigger": trigger, "requested_at": int(time.time() * 1000)}
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Connection Request", "source": "gatekeeper",
            "account": PROVIDER, "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION, "resources": [f"endpoint/{endpoint_id}"], "detail": detail}


def sqs_event(stack, endpoints):
    """An SQS event source's event, for [(account, service_name, endpoint_id)] (the stack's first service)."""
    records = []
    for _, _, ep in endpoints:
        records.append({"messageId": str(uuid.uuid4()), "receiptHandle": "x", "body": json.dumps(request_body(stack["service_ids"][0], ep)),
                        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
                        "eventSource": "aws:sqs", "eventSourceARN": mapping(stack)["event_source_arn"], "awsRegion": REGION})
    return {"Records": records}


def states(emu, stack):
    """Every connection of the stack's services: endpoint ID → state (the bench's own Describe calls, waited for)."""
    ec2 = client(emu.url, PROVIDER, "ec2")
    out = {}
    for service in stack["service_ids"]:
        token = None
        while True:
            kw = {"Filters": [{"Name": "service-id", "Values": [service]}], "MaxResults": 1000}
            if token:
                kw["NextToken"] = token
            page, _ = ec2_retry(ec2.describe_vpc_endpoint_connections, **kw)
            for c in page["VpcEndpointConnections"]:
                out[c["VpcEndpointId"]] = c["VpcEndpointState"]
            token = page.get("NextToken")
            if not token:
                break
    return out


def outcome(emu, stack, endpoints, allowed):
    """decided, wrong (a decided connection whose state disagrees with the allowlist) and decision records."""
    final = states(emu, stack)
    decided = [e for _, _, e in endpoints if final.get(e) not in ("pendingAcceptance", None)]
    wrong = sum(1 for a, _, e in endpoints if final.get(e) not in ("pendingAcceptance", None) and (final[e] in ("available", "pending")) != (a in allowed))
    ddb = client(emu.url, PROVIDER, "dynamodb")
    # Decision records only: the table also holds the quota and principal ledgers (`quota#…`, `principals#…`).
    pages = ddb.get_paginator("scan").paginate(TableName=stack["decisions_table"], Select="COUNT",
                                               FilterExpression="begins_with(endpoint_id, :vpce)",
                                               ExpressionAttributeValues={":vpce": {"S": "vpce-"}})
    records = sum(page["Count"] for page in pages)
    return len(decided), wrong, records


def queue_depth(sqs, url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"])["Attributes"]
    return sum(int(a.get(k, 0)) for k in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"))


class SqsEventSource:
    """Lambda's SQS event source mapping, stood in for: up to `concurrency` execution environments, each
    polling the queue with the function's role (as Lambda does), gathering up to `batch_size` messages for up
    to `window` seconds, invoking, and deleting only the messages the function did not report as failed
    (the others come back after the visibility timeout, the queue's or the stack's `receive_visibility_s`; the
    queue's redrive dead-letters them)."""

    def __init__(self, emu, stack, start, concurrency, batch_size, window, on_received=None, on_invoked=None):
        self.emu, self.stack, self.start_fn = emu, stack, start
        self.concurrency, self.batch_size, self.window = concurrency, batch_size, window
        self.on_received, self.on_invoked = on_received, on_invoked
        self.queue_url = stack["requests_queue_url"]
        self.queue_arn = mapping(stack)["event_source_arn"]
        self.creds = role_credentials(emu, stack, "DecideFunction")
        self.stop = threading.Event()
        self.invocations = 0
        self.failed_messages = 0
        self.stale_deletes = 0
        self.errors = []
        self.procs = []
        self.lock = threading.Lock()
        self.threads = []

    def _client(self):
        with _SESSIONS_LOCK:
            return boto3.client("sqs", endpoint_url=self.emu.url, region_name=REGION, aws_access_key_id=self.creds["AccessKeyId"],
                                aws_secret_access_key=self.creds["SecretAccessKey"], aws_session_token=self.creds["SessionToken"], config=NO_RETRY)

    def begin(self):
        for i in range(self.concurrency):
            proc = self.start_fn(i)
            self.procs.append(proc)
            t = threading.Thread(target=self._poll, args=(proc,), daemon=True)
            t.start()
            self.threads.append(t)

    def _receive(self, sqs, n, wait):
        held = {"VisibilityTimeout": self.stack["receive_visibility_s"]} if self.stack.get("receive_visibility_s") else {}
        return sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=n, WaitTimeSeconds=wait, AttributeNames=["All"], **held).get("Messages", [])

    def _poll(self, proc):
        sqs = self._client()
        while not self.stop.is_set():
            try:
                msgs = self._receive(sqs, 10, 1)
                if not msgs:
                    continue
                first = time.monotonic()
                if self.on_received:
                    self.on_received(msgs, time.time())
                while len(msgs) < self.batch_size and not self.stop.is_set():
                    left = self.window - (time.monotonic() - first)
                    if left <= 0:
                        break
                    more = self._receive(sqs, min(10, self.batch_size - len(msgs)), 1 if left >= 1 else 0)
                    if more:
                        if self.on_received:
                            self.on_received(more, time.time())
                        msgs += more
                    elif left < 1:
                        time.sleep(min(left, 0.05))
                if self.stop.is_set():
                    break
                records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"], "attributes": m.get("Attributes", {}),
                            "messageAttributes": {}, "md5OfBody": m.get("MD5OfBody", ""), "eventSource": "aws:sqs",
                            "eventSourceARN": self.queue_arn, "awsRegion": REGION} for m in msgs]
                done = proc.invoke({"Records": records})
                failed = batch_failures(done, records)
                with self.lock:
                    self.invocations += 1
                    self.failed_messages += len(failed)
                if self.on_invoked:
                    self.on_invoked(msgs, done)
                # Ten to a DeleteMessageBatch (authorized by sqs:DeleteMessage, which the role grants as
                # AWSLambdaSQSQueueExecutionRole does; SQS developer guide, "Amazon SQS API permissions").
                done_msgs = [m for m in msgs if m["MessageId"] not in failed]
                for i in range(0, len(done_msgs), 10):
                    entries = [{"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(done_msgs[i:i + 10])]
                    answer = sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
                    for f in answer.get("Failed", []):
                        # Received again after its visibility timeout (a batch that took longer): the newer
                        # receipt holds it now. SQS accepts the stale handle and keeps the message; moto refuses it.
                        if f.get("Code") != "ReceiptHandleIsInvalid":
                            raise RuntimeError(f"DeleteMessageBatch failed: {f}")
                        with self.lock:
                            self.stale_deletes += 1
            except Exception as e:  # noqa: BLE001 - a stopped process, or the emulator going away
                if not self.stop.is_set():
                    self.errors.append(repr(e))
                    time.sleep(0.5)

    def end(self):
        self.stop.set()
        for p in self.procs:
            p.close()
        for t in self.threads:
            t.join(5)


# ----------------------------------------------------------------------------- measurements


def measure_init(emu, stack, impl, runs):
    env = impl.env(emu, stack)
    times, rss = [], []
    for i in range(runs):
        p = FunctionProcess(impl.cmd, env, f"init-{impl.label}-{i}")
        times.append(p.init_ms)
        rss.append(p.rss_mib)
        p.close()
    return statistics.median(times), statistics.median(rss)


def warm(impls, accounts, allowed, n, latency_ms=0, interval=0.6, latency_kind="slow"):
    """n single-message invocations of a warm execution environment of each implementation, EC2's throttling
    off, each started `interval` s after the one before (as single decisions arrive: the accounts alternate
    allowed and not, so each of Accept and Reject is called once per 2 x interval, within EC2's documented
    1 per s; decide's budget of EC2 calls holds it to that rate, so decisions back to back would time its
    waits, not a decision). Each implementation has a local AWS of its own, and their invocations interleave
    (half an interval apart, the first of each pair alternating), so that both are measured under the same
    conditions of the machine rather than one after the other. With latency_ms, every AWS call is answered
    that much later (the emulator's `slow` fault on every call: a sleep that lets other calls proceed), as an
    AWS service in the same Region is a few milliseconds away; on loopback the emulator, one Python process,
    answers concurrent calls one after another. With latency_kind "floor", every call is answered latency_ms
    after it arrived, the emulator's processing included (the `floor` fault): calls in flight together are
    not charged for each other's processing, which the one Python process serialises and AWS does not.
    Returns {label: row}."""
    with contextlib.ExitStack() as stack_of:
        envs = []
        for impl in impls:
            emu = stack_of.enter_context(Emulator(f"warm-{impl.label}"))
            stack = provision(emu, "warm")
            allow(emu, stack, allowed)
            plan = [(accounts[i % len(accounts)], stack["service_name"]) for i in range(n + 1)]
            endpoints, _ = create_endpoints(emu, plan)
            proc = impl.start(emu, stack, f"warm-{impl.label}")
            stack_of.callback(proc.close)
            proc.invoke(sqs_event(stack, endpoints[:1]))  # a warm environment has served a request before
            emu.control("/_gatekeeper/reset")
            emu.control("/_gatekeeper/ec2-throttle", {"enabled": False})  # handler latency, not EC2's rate limit
            if latency_ms:
                emu.control("/_gatekeeper/faults", {"rules": [{"match": "*", "rate": 1.0, "kind": latency_kind, "ms": latency_ms}]})
            envs.append({"impl": impl, "emu": emu, "stack": stack, "proc": proc, "endpoints": endpoints[1:],
                         "lat": [], "failed": 0, "windows": [], "pid": proc.proc.pid, "cpu": cpu_seconds(proc.proc.pid)})
        next_start = time.monotonic()
        for i in range(n):
            order = envs if i % 2 == 0 else envs[::-1]
            for env in order:
                time.sleep(max(0.0, next_start - time.monotonic()))  # pacing, not synchronisation
                next_start = time.monotonic() + interval / len(envs)
                event = sqs_event(env["stack"], [env["endpoints"][i]])
                done = env["proc"].invoke(event)
                env["failed"] += len(batch_failures(done, event["Records"]))
                env["lat"].append((done["finished"] - done["served"]) * 1000)
                env["windows"].append((done["served_wall"], done["finished_wall"]))
        rows = {}
        for env in envs:
            # CPU used by the process over the n invocations (what it does between them is wait on the Runtime
            # API's next, which uses none); unknown when an invocation timed out and the process was replaced.
            after = cpu_seconds(env["pid"]) if env["proc"].proc.pid == env["pid"] else None
            cpu_ms = round((after - env["cpu"]) * 1000 / n, 2) if after is not None and env["cpu"] is not None else None
            rows[env["impl"].label] = {**warm_row(env["emu"], env["lat"], env["failed"], env["windows"], n), "cpu_ms_per_invocation": cpu_ms}
        return rows


def warm_row(emu, lat, failed, windows, n):
    """One implementation's warm row, from its invocations' latencies and windows and its emulator's calls."""
    calls = emu.calls()
    timeline = [c for c in emu.timeline() if not c[0].startswith(NOT_CALLS)]
    by_action = {k: v for k, v in calls.items() if not k.startswith(NOT_CALLS)}
    trips = [round_trips(timeline, a, b) for a, b in windows]
    outside = [outside_calls(timeline, a, b) * 1000 for a, b in windows]
    # Announced: from the invocation's start to the end of its Publish (what a provider waits for; the
    # invocation may go on after it: Gatekeeper records that the publish went out).
    publishes = [(s, e) for name, s, e in timeline if name == "sns:Publish"]
    announced = [(max(ends) - a) * 1000 for a, b in windows if (ends := [e for s, e in publishes if a <= s <= b])]
    # Acted: from the invocation's start to the end of its Accept or Reject call (what the consumer waits
    # for: the connection leaves pendingAcceptance).
    actions = [(s, e) for name, s, e in timeline if name in ("ec2:AcceptVpcEndpointConnections", "ec2:RejectVpcEndpointConnections")]
    acted = [(max(ends) - a) * 1000 for a, b in windows if (ends := [e for s, e in actions if a <= s <= b])]
    # Where the time goes: the emulator's time per call, by action (median ms, injected latency included).
    spent = {}
    for name, s, e in timeline:
        spent.setdefault(name, []).append((e - s) * 1000)
    return {
        **p50_p99(lat),
        "aws_calls_per_decision": round(aws_calls(calls) / n, 2),
        "round_trips_per_decision": statistics.median(trips) if trips else None,
        "round_trips_max": max(trips) if trips else None,
        "decisions": n,
        "failed": failed,
        "calls": by_action,
        "acted": p50_p99(acted),
        "announced": p50_p99(announced),
        "outside_calls_ms": p50_p99(outside),
        "emulator_ms_per_call": {k: round(statistics.median(v), 1) for k, v in sorted(spent.items())},
    }


def burst(impl, accounts, allowed, per_account, cap_s, batch_size):
    """Every endpoint requested at once; batches handed to one execution environment, one at a time;
    failed messages come back at the end, as SQS redelivers them."""
    with Emulator(f"burst-{impl.label}") as emu:
        stack = provision(emu, "burst")
        allow(emu, stack, allowed)
        batch_size = batch_size or int(mapping(stack).get("batch_size") or 10)
        plan = [(a, stack["service_name"]) for _ in range(per_account) for a in accounts]
        t = time.perf_counter()
        endpoints, create_throttled = create_endpoints(emu, plan)
        log(f"burst {impl.label}: {len(endpoints)} endpoints created in {time.perf_counter() - t:.1f} s ({create_throttled} CreateVpcEndpoint calls throttled, retried)")
        proc = impl.start(emu, stack, f"burst-{impl.label}")
        try:
            proc.invoke(sqs_event(stack, []))
            emu.control("/_gatekeeper/reset")
            pending = list(endpoints)
            t0 = time.perf_counter()
            invocations = 0
            while pending and time.perf_counter() - t0 < cap_s:
                batch, pending = pending[:batch_size], pending[batch_size:]
                event = sqs_event(stack, batch)
                done = proc.invoke(event)
                invocations += 1
                failed = batch_failures(done, event["Records"])
                pending.extend(ep for ep, r in zip(batch, event["Records"]) if r["messageId"] in failed)
            elapsed = time.perf_counter() - t0
            calls = emu.calls()
        finally:
            proc.close()
        decided, wrong, records = outcome(emu, stack, endpoints, set(allowed))
        return {
            "endpoints": len(endpoints),
            "decided": decided,
            "seconds": round(elapsed, 1),
            "ec2_calls": calls.get("ec2:AcceptVpcEndpointConnections", 0) + calls.get("ec2:RejectVpcEndpointConnections", 0),
            "throttled": calls.get("ec2:throttled", 0),
            "wrong": wrong,
            "doubled": doubled(calls),
            "recorded_not_acted": max(0, records - decided),
            "invocations": invocations,
            "timed_out": proc.timed_out,
            "batch_size": batch_size,
            "stopped_at_cap": bool(pending),
        }


def burst_services(impl, accounts, allowed, services, per_service, cap_s, visibility):
    """One stack managing `services` services; services × per_service endpoints requested at once through
    the bus; decided through the requests queue by the SQS event source stand-in."""
    with Emulator(f"services-{impl.label}") as emu:
        t = time.perf_counter()
        stack = provision_services(emu, "services", services, {"RequestsVisibilityTimeoutSeconds": visibility})
        log(f"burst_services {impl.label}: a stack managing {services} services deployed in {time.perf_counter() - t:.1f} s")
        allow(emu, stack, allowed)
        # Each consumer account connects to every service; requests interleave the services, as a burst does.
        users = [accounts[i % len(accounts)] for i in range(per_service)]
        plan = [(a, name) for a in users for name in stack["service_names"]]
        t = time.perf_counter()
        endpoints, create_throttled = create_endpoints(emu, plan)
        log(f"burst_services {impl.label}: {len(endpoints)} endpoints created in {time.perf_counter() - t:.1f} s ({create_throttled} CreateVpcEndpoint calls throttled, retried)")
        by_name = dict(zip(stack["service_names"], stack["service_ids"]))
        m = mapping(stack)
        env = impl.env(emu, stack)
        source = SqsEventSource(emu, stack, lambda i: impl.start(emu, stack, f"services-{impl.label}-{i}", env),
                                int(m.get("maximum_concurrency") or 1000), int(m.get("batch_size") or 10), float(m.get("maximum_batching_window_s") or 0))
        events = client(emu.url, PROVIDER, "events")
        sqs = client(emu.url, PROVIDER, "sqs")
        # The burst is queued before the event source starts: EventBridge takes thousands of events a second
        # and SQS delivers them at once, so on AWS a burst is in the queue within a batching window; the
        # emulator's PutEvents is far slower, and polling while it trickles in would time the emulator's bus.
        t = time.perf_counter()
        for i in range(0, len(endpoints), 10):
            entries = [{"EventBusName": stack["bus_name"], "Source": "gatekeeper", "DetailType": "Connection Request",
                        "Resources": [f"endpoint/{e}"], "Detail": json.dumps(request_body(by_name[n], e, "notification")["detail"])}
                       for _, n, e in endpoints[i:i + 10]]
            answer = events.put_events(Entries=entries)
            if answer.get("FailedEntryCount"):
                raise RuntimeError(f"PutEvents failed entries: {answer}")
        # EventBridge delivers to the queue apart from PutEvents (the emulator too): wait, bounded, until the
        # emulator has no delivery left to make.
        deadline = time.monotonic() + 60
        while emu.control("/_gatekeeper/deliveries", {})["pending"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the bus's deliveries to the queue were still pending after 60 s")
            time.sleep(0.05)  # polling the emulator's count, bounded above
        depth = queue_depth(sqs, stack["requests_queue_url"])
        if depth != len(endpoints):
            raise RuntimeError(f"the bus delivered {depth} of {len(endpoints)} requests to the queue")
        log(f"burst_services {impl.label}: {len(endpoints)} requests queued through the bus in {time.perf_counter() - t:.1f} s")
        try:
            emu.control("/_gatekeeper/reset")
            t0 = time.perf_counter()
            source.begin()
            stopped = True
            while time.perf_counter() - t0 < cap_s:
                if queue_depth(sqs, stack["requests_queue_url"]) == 0:
                    stopped = False
                    break
                time.sleep(0.5)
            elapsed = time.perf_counter() - t0
            calls = emu.calls()
        finally:
            source.end()
        dead = queue_depth(sqs, stack["requests_dlq_url"])
        decided, wrong, records = outcome(emu, stack, endpoints, set(allowed))
        if source.errors:
            log(f"burst_services {impl.label}: event source errors: {source.errors[:3]}")
        return {
            "services": services,
            "endpoints": len(endpoints),
            "decided": decided,
            "seconds": round(elapsed, 1),
            "dead_lettered": dead,
            "ec2_calls": calls.get("ec2:AcceptVpcEndpointConnections", 0) + calls.get("ec2:RejectVpcEndpointConnections", 0),
            "throttled": calls.get("ec2:throttled", 0),
            "wrong": wrong,
            "doubled": doubled(calls),
            "recorded_not_acted": max(0, records - decided),
            "invocations": source.invocations,
            "timed_out": sum(p.timed_out for p in source.procs),
            "failed_messages": source.failed_messages,
            "redelivered_while_running": source.stale_deletes,
            "concurrency": source.concurrency,
            "batch_size": source.batch_size,
            "batching_window_s": source.window,
            "visibility_timeout_s": visibility,
            "stopped_at_cap": stopped,
        }


def end_to_end(ingest, decide, accounts, allowed, n, interval, tail_s):
    """Consumers create endpoints one every `interval` s; each is timed from its CreateVpcEndpoint call to
    the SNS Timestamp of its announced decision (read from the decisions inbox), through the deployed wiring."""
    with Emulator("e2e") as emu:
        stack = provision(emu, "e2e")
        dep = stack["deployment"]
        allow(emu, stack, allowed)
        users = accounts[:max(1, min(len(accounts), n))]
        prepared = {}
        for a in users:
            ec2 = client(emu.url, a, "ec2")
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
            prepared[a] = (ec2, vpc, subnet)
        created, ingest_at, received, decide_at, announced = {}, {}, {}, {}, {}
        lock = threading.Lock()
        stop = threading.Event()
        errors = []

        # SNS → ingest: the emulator queues Lambda's asynchronous invocations; one execution environment takes them.
        ingest_proc = ingest.start(emu, stack, "e2e-ingest")
        ingest_arn = dep["functions"]["IngestFunction"]["arn"]

        def run_ingest():
            while not stop.is_set():
                try:
                    for inv in emu.control("/_gatekeeper/lambda/take", {"function_arn": ingest_arn, "max": 10, "wait_s": 1})["invocations"]:
                        done = ingest_proc.invoke(inv["payload"])
                        for r in inv["payload"].get("Records", []):
                            body = json.loads(r.get("Sns", {}).get("Message") or "{}")
                            if body.get("connectionEvent") == "Connect":
                                with lock:
                                    ingest_at.setdefault(body.get("vpcEndpointId"), (done["served_wall"], done["finished_wall"]))
                        answer = {"id": inv["id"], "ok": bool(done.get("ok"))}
                        if not done.get("ok"):
                            answer["error"] = (done.get("body") or b"").decode("utf-8", "replace")[:500]
                        emu.control("/_gatekeeper/lambda/done", answer)
                except Exception as e:  # noqa: BLE001
                    if not stop.is_set():
                        errors.append(repr(e))
                        time.sleep(0.5)

        def on_received(msgs, at):
            with lock:
                for m in msgs:
                    ep = json.loads(m["Body"]).get("detail", {}).get("endpoint_id")
                    sent = int(m.get("Attributes", {}).get("SentTimestamp", 0)) / 1000 or at
                    received.setdefault(ep, (sent, at))

        def on_invoked(msgs, done):
            with lock:
                for m in msgs:
                    ep = json.loads(m["Body"]).get("detail", {}).get("endpoint_id")
                    decide_at.setdefault(ep, (done["served_wall"], done["finished_wall"]))

        m = mapping(stack)
        source = SqsEventSource(emu, stack, lambda i: decide.start(emu, stack, f"e2e-decide-{i}"),
                                int(m.get("maximum_concurrency") or 1000), int(m.get("batch_size") or 10), float(m.get("maximum_batching_window_s") or 0),
                                on_received, on_invoked)
        inbox = client(emu.url, PROVIDER, "sqs")

        def read_inbox():
            while not stop.is_set():
                try:
                    msgs = inbox.receive_message(QueueUrl=stack["inbox_queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
                    for msg in msgs:
                        envelope = json.loads(msg["Body"])
                        body = json.loads(envelope.get("Message") or "{}")
                        at = datetime.datetime.fromisoformat(envelope["Timestamp"].replace("Z", "+00:00")).timestamp()
                        with lock:
                            announced.setdefault(body.get("endpoint_id"), at)
                        inbox.delete_message(QueueUrl=stack["inbox_queue_url"], ReceiptHandle=msg["ReceiptHandle"])
                except Exception as e:  # noqa: BLE001
                    if not stop.is_set():
                        errors.append(repr(e))
                        time.sleep(0.5)

        threads = [threading.Thread(target=f, daemon=True) for f in (run_ingest, read_inbox)]
        try:
            source.begin()
            for t in threads:
                t.start()
            emu.control("/_gatekeeper/reset")
            t_start = time.monotonic()
            create_throttled = 0
            for i in range(n):
                account = users[i % len(users)]
                ec2, vpc, subnet = prepared[account]
                at = time.time()
                ep, waits = ec2_retry(ec2.create_vpc_endpoint, VpcEndpointType="Interface", VpcId=vpc, ServiceName=stack["service_name"], SubnetIds=[subnet])
                create_throttled += waits
                created[ep["VpcEndpoint"]["VpcEndpointId"]] = at
                time.sleep(max(0.0, t_start + (i + 1) * interval - time.monotonic()))
            deadline = time.monotonic() + tail_s
            while time.monotonic() < deadline:
                with lock:
                    if all(e in announced for e in created):
                        break
                time.sleep(0.2)
            calls = emu.calls()
        finally:
            stop.set()
            source.end()
            ingest_proc.close()
            for t in threads:
                t.join(5)
        if errors or source.errors:
            log(f"end_to_end: errors: {(errors + source.errors)[:3]}")
        # Consecutive stages (they add up to the total), and ingest's own invocation time beside them.
        stages = {k: [] for k in ("notify", "ingest_to_queue", "queue", "batching", "decide_announce", "ingest_invocation")}
        totals = []
        for ep, t0 in created.items():
            if ep not in announced:
                continue
            totals.append((announced[ep] - t0) * 1000)
            if ep in ingest_at and ep in received and ep in decide_at:
                (i_s, i_f), (sent, got), (d_s, _) = ingest_at[ep], received[ep], decide_at[ep]
                for k, v in (("notify", i_s - t0), ("ingest_to_queue", sent - i_s), ("queue", got - sent), ("batching", d_s - got),
                             ("decide_announce", announced[ep] - d_s), ("ingest_invocation", i_f - i_s)):
                    stages[k].append(v * 1000)
        return {
            "endpoints": n,
            "announced": len(totals),
            "interval_s": interval,
            **p50_p99(totals),
            "stages": {k: p50_p99(v) for k, v in stages.items()},
            "create_throttled": create_throttled,
            "throttled": calls.get("ec2:throttled", 0),
            "decide_concurrency": source.concurrency,
            "batch_size": source.batch_size,
            "batching_window_s": source.window,
        }


# ----------------------------------------------------------------------------- the run


def ratio(a, b):
    return None if a is None or not b else round(a / b, 3)


def rate(row):
    return row["decided"] / row["seconds"] if row and row.get("seconds") else None


# The rows, and the keys of results.json each one writes.
ROWS = {"init": ("init_ms", "rss_mib", "binary_mb"), "warm": ("warm", "warm_with_latency", "warm_with_latency_floor"), "burst": ("burst",),
        "burst_services": ("burst_services",), "end_to_end": ("end_to_end",)}


def merge_rows(results, earlier, measured):
    """Keeps the rows of an earlier results file (of the same build profile) that this run did not measure,
    with the time each was measured (`row_when`), so that `--only` re-measures some rows without losing the
    others; the README's text names the times when they differ."""
    if earlier.get("profile") != results["profile"]:
        return
    for row, keys in ROWS.items():
        if row in measured or not all(k in earlier for k in keys if not k.startswith("warm_with_latency")):
            continue
        for k in keys:
            if k in earlier:
                results[k] = earlier[k]
        results["row_when"][row] = earlier.get("row_when", {}).get(row, earlier.get("when"))
        if row in earlier.get("phase_seconds", {}):
            results["phase_seconds"][row] = earlier["phase_seconds"][row]


def main():
    p = argparse.ArgumentParser(description="Gatekeeper vs a Python/boto3 reference on the local AWS")
    p.add_argument("--profile", default=os.environ.get("BENCH_PROFILE", "release"), choices=["release", "debug"],
                   help="which build of the functions to run (debug only to check the harness; default release, or BENCH_PROFILE)")
    p.add_argument("--only", default="init,warm,burst,burst_services,end_to_end",
                   help="comma-separated rows to measure; the other rows of an earlier results file are kept (see --fresh)")
    p.add_argument("--fresh", action="store_true", help="with --only: write only the rows measured now")
    p.add_argument("--init-runs", type=int, default=5)
    p.add_argument("--warm", type=int, default=100)
    p.add_argument("--warm-interval", type=float, default=0.6,
                   help="seconds between the starts of two warm invocations (0.6: Accept and Reject each at most once per 1.2 s, within EC2's 1/s)")
    p.add_argument("--call-latency-ms", type=int, default=10,
                   help="warm is measured again with every AWS call answered this much later (0: not)")
    p.add_argument("--burst", type=int, default=1000, help="endpoints in the burst, from 50 accounts")
    p.add_argument("--batch", type=int, default=None, help="messages per invocation in the burst (default: the deployed event source's BatchSize)")
    p.add_argument("--reference-cap", type=float, default=120.0, help="seconds the reference may spend on each burst")
    p.add_argument("--services", type=int, default=20, help="services the burst_services stack manages")
    p.add_argument("--per-service", type=int, default=50, help="endpoints per service in burst_services")
    p.add_argument("--gatekeeper-cap", type=float, default=600.0, help="seconds Gatekeeper may spend on each burst")
    p.add_argument("--services-visibility", type=int, default=LEAST_VISIBILITY_S,
                   help=f"the requests queue's visibility timeout in burst_services ({LEAST_VISIBILITY_S}: the least AWS allows with decide's timeout)")
    p.add_argument("--e2e", type=int, default=50, help="endpoints timed end to end")
    p.add_argument("--e2e-interval", type=float, default=0.5, help="seconds between two consumers' CreateVpcEndpoint calls")
    args = p.parse_args()
    rows = {r.strip() for r in args.only.split(",") if r.strip()}

    build = ROOT / "target" / args.profile
    rust = {name: Impl(f"gatekeeper-{name}", [str(build / name)], f"{name.capitalize()}Function") for name in ("decide", "ingest", "reconcile")}
    for name, impl in rust.items():
        if not Path(impl.cmd[0]).exists():
            sys.exit(f"{impl.cmd[0]} is missing: build the {args.profile} binaries first")
    if not (ROOT / "target/debug/gatekeeper-local").exists():
        sys.exit("target/debug/gatekeeper-local is missing: run `make build`")
    reference = Impl("reference", [sys.executable, str(ROOT / "bench/reference/bootstrap.py")], "DecideFunction", reference=True)
    accounts = [f"{900000000000 + i:012}" for i in range(50)]
    allowed = accounts[::2]

    results = {"profile": args.profile, "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "settings": {k: v for k, v in vars(args).items() if k != "only"},
               "credentials": {"gatekeeper": "each function's template role (IAM enforced)", "reference": "a role with decide's policies plus GetItem on the allowlist (IAM enforced)"},
               "phase_seconds": {}}
    if args.profile != "release":
        print(f"\n**{args.profile} build: for checking the harness only; these numbers are not Gatekeeper's.**")
    started = time.perf_counter()

    def phase(name, fn):
        if name not in rows:
            return
        t = time.perf_counter()
        log(f"{name} ...")
        fn()
        results["phase_seconds"][name] = round(time.perf_counter() - t, 1)
        log(f"{name} done in {results['phase_seconds'][name]} s")

    def do_init():
        with Emulator("init") as emu:
            stack = provision(emu, "init")
            init, rss = {}, {}
            for name, impl in rust.items():
                init[name], rss[name] = measure_init(emu, stack, impl, args.init_runs)
            init["reference"], rss["reference"] = measure_init(emu, stack, reference, args.init_runs)
        results["init_ms"] = {k: round(v, 1) for k, v in init.items()}
        results["rss_mib"] = {k: round(v, 1) for k, v in rss.items()}
        results["binary_mb"] = {name: round((build / name).stat().st_size / 1e6, 1) for name in rust}

    def do_warm():
        warm_accounts = accounts[:10]  # five allowed, five not, alternating
        iv = args.warm_interval
        pair = [rust["decide"], reference]
        rows = warm(pair, warm_accounts, allowed, args.warm, interval=iv)
        results["warm"] = {"gatekeeper": rows[rust["decide"].label], "reference": rows[reference.label], "interleaved": True}
        if args.call_latency_ms:
            ms = args.call_latency_ms
            rows = warm(pair, warm_accounts, allowed, args.warm, ms, iv)
            results["warm_with_latency"] = {"call_latency_ms": ms, "gatekeeper": rows[rust["decide"].label],
                                            "reference": rows[reference.label], "interleaved": True}
            rows = warm(pair, warm_accounts, allowed, args.warm, ms, iv, latency_kind="floor")
            results["warm_with_latency_floor"] = {"call_latency_ms": ms, "gatekeeper": rows[rust["decide"].label],
                                                  "reference": rows[reference.label], "interleaved": True}

    def do_burst():
        per = max(1, args.burst // len(accounts))
        results["burst"] = {"gatekeeper": burst(rust["decide"], accounts, allowed, per, args.gatekeeper_cap, args.batch),
                            "reference": burst(reference, accounts, allowed, per, args.reference_cap, args.batch)}

    def do_services():
        results["burst_services"] = {
            "gatekeeper": burst_services(rust["decide"], accounts, allowed, args.services, args.per_service, args.gatekeeper_cap, args.services_visibility),
            "reference": burst_services(reference, accounts, allowed, args.services, args.per_service, args.reference_cap, args.services_visibility),
        }

    def do_e2e():
        results["end_to_end"] = end_to_end(rust["ingest"], rust["decide"], accounts[:10], allowed, args.e2e, args.e2e_interval, 60.0)

    phase("init", do_init)
    phase("warm", do_warm)
    phase("burst", do_burst)
    phase("burst_services", do_services)
    phase("end_to_end", do_e2e)
    results["phase_seconds"]["total"] = round(time.perf_counter() - started, 1)
    results["row_when"] = {row: results["when"] for row in ROWS if row in rows}
    path = OUT / ("results.json" if args.profile == "release" else f"results-{args.profile}.json")
    if not args.fresh and rows != set(ROWS) and path.exists():
        merge_rows(results, json.loads(path.read_text()), rows)

    g, r = "gatekeeper", "reference"
    ratios = {}
    if "init_ms" in results:
        ratios["init"] = ratio(results["init_ms"]["decide"], results["init_ms"]["reference"])
        ratios["rss"] = ratio(results["rss_mib"]["decide"], results["rss_mib"]["reference"])
    if "warm" in results:
        w = results["warm"]
        ratios["warm_p50"] = ratio(w[g]["p50_ms"], w[r]["p50_ms"])
        ratios["warm_p99"] = ratio(w[g]["p99_ms"], w[r]["p99_ms"])
        ratios["aws_calls_per_decision"] = ratio(w[g]["aws_calls_per_decision"], w[r]["aws_calls_per_decision"])
        ratios["cpu_per_invocation"] = ratio(w[g].get("cpu_ms_per_invocation"), w[r].get("cpu_ms_per_invocation"))
    if "warm_with_latency" in results:
        w = results["warm_with_latency"]
        # Round trips are counted where calls in flight together overlap in time: on loopback the emulator
        # answers them one after another, and they would count as one round trip each.
        ratios["round_trips_per_decision"] = ratio(w[g].get("round_trips_per_decision"), w[r].get("round_trips_per_decision"))
        ratios["warm_with_latency_p50"] = ratio(w[g]["p50_ms"], w[r]["p50_ms"])
        ratios["warm_with_latency_p99"] = ratio(w[g]["p99_ms"], w[r]["p99_ms"])
        ratios["acted_with_latency_p50"] = ratio(w[g]["acted"]["p50_ms"], w[r]["acted"]["p50_ms"])
        ratios["acted_with_latency_p99"] = ratio(w[g]["acted"]["p99_ms"], w[r]["acted"]["p99_ms"])
        ratios["announced_with_latency_p50"] = ratio(w[g]["announced"]["p50_ms"], w[r]["announced"]["p50_ms"])
        ratios["announced_with_latency_p99"] = ratio(w[g]["announced"]["p99_ms"], w[r]["announced"]["p99_ms"])
    if "warm_with_latency_floor" in results:
        w = results["warm_with_latency_floor"]
        ratios["warm_with_latency_floor_p50"] = ratio(w[g]["p50_ms"], w[r]["p50_ms"])
        ratios["warm_with_latency_floor_p99"] = ratio(w[g]["p99_ms"], w[r]["p99_ms"])
        ratios["acted_with_latency_floor_p50"] = ratio(w[g]["acted"]["p50_ms"], w[r]["acted"]["p50_ms"])
        ratios["announced_with_latency_floor_p50"] = ratio(w[g]["announced"]["p50_ms"], w[r]["announced"]["p50_ms"])
    for row in ("burst", "burst_services"):
        if row in results:
            ratios[f"{row}_decisions_per_second"] = ratio(rate(results[row][g]), rate(results[row][r]))
    results["ratios"] = ratios

    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    sys.path.insert(0, str(ROOT / "bench"))
    import readme_table

    print()
    print(readme_table.markdown(results))
    print(f"\nwritten to {path.relative_to(ROOT)} ({results['phase_seconds']['total']:.0f} s)")
    if args.profile == "release":
        print("README: .venv/bin/python bench/readme_table.py --write README.md")


if __name__ == "__main__":
    main()
