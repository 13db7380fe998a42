"""`make bench`: Gatekeeper's release binaries against a reference Python/boto3 `decide`, on the same local
AWS, measured the same way. Prints one table. Not part of `make test`.

  init     process start → first Runtime API `next` (Lambda's "Init Duration"), and peak RSS then
  warm     one Connection Request per invocation: handler latency p50/p99 and AWS calls per decision
  burst    N endpoints from 50 accounts, all requested at once, SQS-style batches of 10, one invocation
           at a time: time until all are decided, EC2 accept/reject calls, wrong or double decisions
"""

import argparse
import json
import os
import queue
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

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
PROVIDER = "111111111111"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- a Lambda Runtime API


class RuntimeApi:
    """Serves invocations to one function process and times them."""

    def __init__(self):
        self.events = queue.Queue()
        self.results = {}
        self.first_next = threading.Event()
        self.first_next_at = None
        self.pid = None
        self.rss_at_init_kb = None
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
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", f"arn:aws:lambda:{REGION}:{PROVIDER}:function:bench")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = self.path.split("/")
                if "invocation" in parts and parts[-1] in ("response", "error"):
                    request_id = parts[-2]
                    self.send_response(202)
                    self.end_headers()
                    done = api.results[request_id]
                    done["finished"] = time.perf_counter()
                    done["ok"] = parts[-1] == "response"
                    done["body"] = body
                    done["event"].set()
                else:
                    self.send_response(202)
                    self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event, timeout=60):
        request_id = str(uuid.uuid4())
        done = {"event": threading.Event()}
        self.results[request_id] = done
        self.events.put((request_id, event, done))
        if not done["event"].wait(timeout):
            raise RuntimeError("invocation timed out")
        return done

    def close(self):
        self.server.shutdown()


def peak_rss_kb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# ----------------------------------------------------------------------------- the local AWS


def control(url, path, body=None):
    req = urllib.request.Request(url + path, data=json.dumps(body or {}).encode() if body is not None or "reset" in path else None)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def session(url, account):
    sts = boto3.client("sts", endpoint_url=url, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/bench", RoleSessionName="bench")["Credentials"]
    return boto3.Session(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"], region_name=REGION), c


def provision(url, suffix):
    path = ROOT / ".local" / f"bench-{suffix}.json"
    subprocess.run([str(ROOT / "target/debug/gatekeeper-local"), "provision", "--endpoint", url, "--suffix", suffix, "--state", str(path)], check=True, stdout=subprocess.DEVNULL)
    return json.loads(path.read_text())


def function_env(url, stack, creds, name):
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "ALLOWLIST_TABLE": stack["allowlist_table"],
        "DECISIONS_TABLE": stack["decisions_table"],
        "TOPIC_ARN": stack["decisions_topic_arn"],
        "BUS_NAME": stack["bus_name"],
        "MANAGED_SERVICES": stack["service_id"],
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "RUST_LOG": "warn",
    }


def start(cmd, env, api):
    env = dict(env, AWS_LAMBDA_RUNTIME_API=api.address)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api.pid = proc.pid
    if not api.first_next.wait(60):
        proc.kill()
        raise RuntimeError(f"{cmd} never asked for an invocation")
    return proc, (api.first_next_at - t0) * 1000


def measure_init(cmd, env, runs):
    times, rss = [], []
    for _ in range(runs):
        api = RuntimeApi()
        proc, ms = start(cmd, env, api)
        times.append(ms)
        rss.append(api.rss_at_init_kb or 0)
        proc.kill()
        proc.wait()
        api.close()
    return statistics.median(times), statistics.median(rss) / 1024


# ----------------------------------------------------------------------------- workload


def create_endpoints(url, stack, accounts, per_account):
    ids = []
    for account in accounts:
        s, _ = session(url, account)
        ec2 = s.client("ec2", endpoint_url=url)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
        for _ in range(per_account):
            ep = ec2.create_vpc_endpoint(VpcEndpointType="Interface", VpcId=vpc, ServiceName=stack["service_name"], SubnetIds=[subnet])
            ids.append((account, ep["VpcEndpoint"]["VpcEndpointId"]))
    return ids


def allow(url, stack, accounts):
    s, _ = session(url, PROVIDER)
    ddb = s.client("dynamodb", endpoint_url=url)
    for a in accounts:
        ddb.put_item(TableName=stack["allowlist_table"], Item={"service_id": {"S": "*"}, "principal": {"S": a}, "effect": {"S": "allow"}})


def sqs_event(stack, endpoints):
    records = []
    for _, ep in endpoints:
        detail = {"service_id": stack["service_id"], "endpoint_id": ep, "trigger": "sweep", "requested_at": int(time.time() * 1000)}
        body = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Connection Request", "source": "gatekeeper",
                "account": PROVIDER, "time": "2026-01-01T00:00:00Z", "region": REGION, "resources": [], "detail": detail}
        records.append({"messageId": str(uuid.uuid4()), "receiptHandle": "x", "body": json.dumps(body), "attributes": {},
                        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:111111111111:q", "awsRegion": REGION})
    return {"Records": records}


def states(url, stack):
    s, _ = session(url, PROVIDER)
    ec2 = s.client("ec2", endpoint_url=url)
    out = {}
    for page in ec2.get_paginator("describe_vpc_endpoint_connections").paginate(Filters=[{"Name": "service-id", "Values": [stack["service_id"]]}]):
        for c in page["VpcEndpointConnections"]:
            out[c["VpcEndpointId"]] = c["VpcEndpointState"]
    return out


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def warm(url, stack, cmd, env, n, allowed):
    endpoints = create_endpoints(url, stack, [allowed[0], "999900000001"], n // 2)
    api = RuntimeApi()
    proc, _ = start(cmd, env, api)
    api.invoke(sqs_event(stack, []))  # the first invocation warms connections
    control(url, "/_gatekeeper/reset")
    control(url, "/_gatekeeper/ec2-throttle", {"enabled": False})  # handler latency, not EC2's rate limit
    lat = []
    for ep in endpoints:
        done = api.invoke(sqs_event(stack, [ep]))
        lat.append((done["finished"] - done["served"]) * 1000)
    calls = control(url, "/_gatekeeper/calls")
    control(url, "/_gatekeeper/ec2-throttle", {"enabled": True})
    proc.kill()
    api.close()
    aws_calls = sum(v for k, v in calls.items() if not k.startswith(("fault:", "sts:", "changed:")) and k != "ec2:throttled")
    return statistics.median(lat), percentile(lat, 99), aws_calls / len(endpoints)


def burst(url, stack, cmd, env, accounts, per_account, allowed, cap_s, batch_size):
    endpoints = create_endpoints(url, stack, accounts, per_account)
    allowed_set = set(allowed)
    api = RuntimeApi()
    proc, _ = start(cmd, env, api)
    api.invoke(sqs_event(stack, []))
    control(url, "/_gatekeeper/reset")
    pending = list(endpoints)
    t0 = time.perf_counter()
    invocations = 0
    while pending and time.perf_counter() - t0 < cap_s:
        batch, pending = pending[:batch_size], pending[batch_size:]
        done = api.invoke(sqs_event(stack, batch), timeout=max(cap_s, 900))
        invocations += 1
        failed = {f["itemIdentifier"] for f in json.loads(done.get("body") or b"{}").get("batchItemFailures", [])} if done.get("ok") else None
        if failed is None or failed:
            pending.extend(batch)  # failed messages come back, as SQS redelivers them
    elapsed = time.perf_counter() - t0
    calls = control(url, "/_gatekeeper/calls")
    proc.kill()
    api.close()
    final = states(url, stack)
    decided = [e for _, e in endpoints if final.get(e) not in ("pendingAcceptance", None)]
    wrong = sum(
        1 for a, e in endpoints
        if final.get(e) not in ("pendingAcceptance", None) and (final[e] in ("available", "pending")) != (a in allowed_set)
    )
    s, _ = session(url, PROVIDER)
    ddb = s.client("dynamodb", endpoint_url=url)
    records = 0
    for page in ddb.get_paginator("scan").paginate(TableName=stack["decisions_table"], Select="COUNT"):
        records += page["Count"]
    return {
        "decided": len(decided),
        "total": len(endpoints),
        "seconds": elapsed,
        "ec2_actions": calls.get("ec2:AcceptVpcEndpointConnections", 0) + calls.get("ec2:RejectVpcEndpointConnections", 0),
        "throttled": calls.get("ec2:throttled", 0),
        "wrong": wrong,
        "twice": max(0, records - len(decided)),  # decision records with no matching EC2 state change
        "invocations": invocations,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--burst", type=int, default=1000)
    p.add_argument("--warm", type=int, default=100)
    p.add_argument("--init-runs", type=int, default=5)
    p.add_argument("--reference-cap", type=float, default=120.0, help="seconds the reference may spend on the burst")
    p.add_argument("--batch", type=int, default=100, help="messages per invocation in the burst (the template's BatchSize)")
    p.add_argument("--profile", default="release", help="which build of the functions to measure (release for real numbers)")
    args = p.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    emu = subprocess.Popen([sys.executable, str(ROOT / "tests/emulator/gatekeeper_moto.py"), "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        run(url, args)
    finally:
        emu.terminate()


def run(url, args):
    (ROOT / ".local").mkdir(exist_ok=True)
    _, creds = session(url, PROVIDER)
    release = ROOT / "target" / args.profile
    rust = {name: [str(release / name)] for name in ("decide", "ingest", "reconcile")}
    python = [sys.executable, str(ROOT / "bench/reference/bootstrap.py")]
    accounts = [f"{900000000000 + i:012}" for i in range(50)]
    allowed = accounts[::2]

    rows = []
    stack = provision(url, "init")
    env = function_env(url, stack, creds, "bench")
    for name, cmd in rust.items():
        ms, mb = measure_init(cmd, env, args.init_runs)
        size = (release / name).stat().st_size / 1e6
        rows.append((f"gatekeeper {name}", ms, mb, size))
    ms, mb = measure_init(python, env, args.init_runs)
    rows.append(("reference decide (Python 3.11 + boto3)", ms, mb, None))

    print(f"\n## Init (median of {args.init_runs}; process start → first Runtime API `next`)\n")
    print("| function | init ms | peak RSS MiB | stripped binary MB |")
    print("|---|---|---|---|")
    for name, ms, mb, size in rows:
        print(f"| {name} | {ms:.1f} | {mb:.1f} | {'' if size is None else f'{size:.1f}'} |")
    ref_init = rows[-1]
    print(f"\nratio decide ÷ reference: init {rows[0][1] / ref_init[1]:.3f}, peak RSS {rows[0][2] / ref_init[2]:.3f}")

    results = {}
    for label, cmd in (("gatekeeper decide", rust["decide"]), ("reference decide", python)):
        stack = provision(url, f"warm{len(results)}")
        env = function_env(url, stack, creds, "bench")
        allow(url, stack, allowed)
        p50, p99, calls = warm(url, stack, cmd, env, args.warm, allowed)
        stack = provision(url, f"burst{len(results)}")
        env = function_env(url, stack, creds, "bench")
        allow(url, stack, allowed)
        cap = 3600 if label.startswith("gatekeeper") else args.reference_cap
        b = burst(url, stack, cmd, env, accounts, args.burst // len(accounts), allowed, cap, args.batch)
        results[label] = (p50, p99, calls, b)

    print(f"\n## Warm decisions ({args.warm} single-message invocations) and the burst "
          f"({args.burst} endpoints from 50 accounts, batches of {args.batch}, one invocation at a time; EC2 throttles "
          f"accept/reject at 10 then 1/s)\n")
    print("| implementation | p50 ms | p99 ms | AWS calls / decision | burst: decided | seconds | EC2 accept+reject calls | throttled | wrong | recorded, not acted |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, (p50, p99, calls, b) in results.items():
        print(f"| {label} | {p50:.1f} | {p99:.1f} | {calls:.1f} | {b['decided']}/{b['total']} | {b['seconds']:.1f} | "
              f"{b['ec2_actions']} | {b['throttled']} | {b['wrong']} | {b['twice']} |")
    g, r = results["gatekeeper decide"], results["reference decide"]
    rate_g = g[3]["decided"] / g[3]["seconds"]
    rate_r = r[3]["decided"] / max(r[3]["seconds"], 1e-9)
    print(f"\nratios gatekeeper ÷ reference: p50 {g[0] / r[0]:.3f}, p99 {g[1] / r[1]:.3f}, "
          f"AWS calls/decision {g[2] / r[2]:.3f}, burst decisions per second {rate_g / max(rate_r, 1e-9):.1f}x")
    if r[3]["decided"] < r[3]["total"]:
        print(f"(the reference was stopped after {args.reference_cap:.0f} s with {r[3]['decided']} of {r[3]['total']} decided: "
              f"at {rate_r:.2f} decisions/s it would need about {r[3]['total'] / max(rate_r, 1e-9):.0f} s)")


if __name__ == "__main__":
    main()
