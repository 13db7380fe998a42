"""The README's Benchmarks tables, generated from target/bench/results.json (written by bench/run.py).

  python bench/readme_table.py                    print the markdown
  python bench/readme_table.py --write README.md  replace what lies between the README's
                                                  <!-- bench:begin --> and <!-- bench:end --> markers

Only a release run's results are accepted (a debug run's file is refused unless --allow-debug, which never
writes the README).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
STAGES = [
    ("notify", "CreateVpcEndpoint → ingest invoked (EC2's notification, SNS, Lambda's asynchronous invocation)"),
    ("ingest_to_queue", "ingest invoked → Connection Request in the requests queue (ingest, PutEvents, the bus rule)"),
    ("queue", "in the queue → received by decide's event source"),
    ("batching", "received → decide invoked (the event source's batching window)"),
    ("decide_announce", "decide invoked → decision published on SNS"),
    ("ingest_invocation", "(ingest's invocation alone)"),
]


def _n(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _ratio(v, suffix=""):
    return "–" if v is None else f"{v:g}{suffix}"


def markdown(r: dict) -> str:
    out = []
    machine = r.get("machine", {})
    out.append(f"One run on a {machine.get('cpus', '?')}-core machine ({r.get('profile', '?')} build, "
               f"{r.get('when', '?')}, moto on loopback; each measurement on a fresh local AWS). Gatekeeper's "
               f"functions run with their template roles' credentials, the reference with a role of its own (decide's "
               f"policies plus GetItem on the allowlist); IAM enforced for both.")
    when = r.get("row_when", {})
    if len(set(when.values())) > 1:
        out[-1] = out[-1].replace("One run on", "Runs on", 1)
        out[-1] += (" Rows measured in different runs (`bench/run.py --only`): "
                    + ", ".join(f"{row} at {t}" for row, t in when.items()) + ".")
    out.append("")
    if "init_ms" in r:
        out.append("| function | init ms | peak RSS MiB | binary MB |")
        out.append("|---|---|---|---|")
        for name in ("decide", "ingest", "reconcile"):
            out.append(f"| gatekeeper {name} | {_n(r['init_ms'].get(name))} | {_n(r['rss_mib'].get(name))} | {_n(r.get('binary_mb', {}).get(name))} |")
        py = machine.get("python", "3")
        out.append(f"| reference decide (Python {py} + boto3) | {_n(r['init_ms'].get('reference'))} | {_n(r['rss_mib'].get('reference'))} | – |")
        out.append("")
    if "warm" in r or "burst" in r:
        b = r.get("burst", {})
        s = r.get("settings", {})
        rb = b.get("reference", {})
        over = ""
        if "timed_out" not in rb and rb.get("seconds") and s.get("reference_cap") and rb["seconds"] > s["reference_cap"]:
            over = (f" (stopped between invocations, never within one: its {_n(rb.get('invocations'), 0)} invocation(s) took "
                    f"{_n(rb['seconds'])} s in all, where Lambda would end each at decide's 60 s Timeout and return its batch)")
        ended = [f"{impl} {b[impl]['timed_out']} of {b[impl].get('invocations')}" for impl in ("gatekeeper", "reference")
                 if b.get(impl, {}).get("timed_out")]
        if ended:
            over += (f"; invocations ended at decide's deployed Timeout, as Lambda ends them (the batch goes back to the "
                     f"queue, the execution environment starts afresh): {', '.join(ended)}")
        interleaved = ", interleaved with the reference's, each on a local AWS of its own" if r.get("warm", {}).get("interleaved") else ""
        out.append(f"Warm: {s.get('warm', '?')} single-message invocations, one every {s.get('warm_interval', '?')} s "
                   f"(Accept and Reject each within EC2's 1/s){interleaved}, EC2's throttling off. Burst: "
                   f"{_n(b.get('gatekeeper', {}).get('endpoints'))} endpoints from 50 accounts requested at once, "
                   f"batches of {b.get('gatekeeper', {}).get('batch_size') or s.get('batch') or '?'}"
                   f"{'' if s.get('batch') else ' (the deployed BatchSize)'} to one execution environment, one invocation at a time, EC2 "
                   f"throttling Accept/Reject at 10 then 1/s; the reference stopped after {_n(s.get('reference_cap'), 0)} s{over}.")
        out.append("")
        out.append("| implementation | warm p50 ms | warm p99 ms | AWS calls / decision | CPU ms / invocation | burst decided | burst seconds | EC2 accept+reject calls | throttled | wrong | doubled | recorded, not acted |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for impl in ("gatekeeper", "reference"):
            w = r.get("warm", {}).get(impl, {})
            x = b.get(impl, {})
            decided = f"{x['decided']}/{x['endpoints']}" + (" (stopped)" if x.get("stopped_at_cap") else "") if x else "–"
            out.append(f"| {impl} decide | {_n(w.get('p50_ms'))} | {_n(w.get('p99_ms'))} | {_n(w.get('aws_calls_per_decision'))} | {_n(w.get('cpu_ms_per_invocation'))} | {decided} | "
                       f"{_n(x.get('seconds'))} | {_n(x.get('ec2_calls'))} | {_n(x.get('throttled'))} | {_n(x.get('wrong'))} | {_n(x.get('doubled'))} | {_n(x.get('recorded_not_acted'))} |")
        out.append("")
    if "warm_with_latency" in r:
        wl = r["warm_with_latency"]
        out.append(f"Warm again, every AWS call answered {_n(wl.get('call_latency_ms'))} ms later (as a service in the same "
                   f"Region is a few ms away; on loopback the emulator, one Python process, answers concurrent calls one "
                   f"after another, so there latency follows the number of calls, here the number of round trips; round trips are "
                   f"counted here, where calls in flight together overlap in time):")
        out.append("")
        out.extend(_latency_table(wl))
        out.append("Acted: from the invocation's start to the end of its Accept or Reject call, what the consumer waits for "
                   "(the connection leaves `pendingAcceptance`). Announced: to the end of its Publish call, what a provider "
                   "waits for (Gatekeeper's invocation ends at its answer; the record's `notified` write follows SNS's copy of "
                   "the notification to the stack's deliveries queue, in another invocation, and is not in these rows).")
        out.append("")
    if "warm_with_latency_floor" in r:
        wf = r["warm_with_latency_floor"]
        out.append(f"Warm a third time, every AWS call answered {_n(wf.get('call_latency_ms'))} ms after it arrived, the "
                   f"emulator's own processing included (as a service's latency includes its processing): calls in flight "
                   f"together are not charged for each other's processing, which the emulator's one Python process does one "
                   f"after another and AWS does side by side:")
        out.append("")
        out.extend(_latency_table(wf))
    if "burst_services" in r:
        bs = r["burst_services"]
        g = bs.get("gatekeeper", {})
        out.append(f"Burst over many services: one stack managing {_n(g.get('services'))} services, "
                   f"{_n(g.get('endpoints'))} endpoints requested at once through the bus and the requests queue; "
                   f"Lambda's SQS event source stood in for (MaximumConcurrency {_n(g.get('concurrency'))}, batches of "
                   f"{_n(g.get('batch_size'))}, batching window {_n(g.get('batching_window_s'))} s, visibility timeout "
                   f"{_n(g.get('visibility_timeout_s'))} s, the template's redrive); seconds until the queue is empty.")
        out.append("")
        out.append("| implementation | decided | seconds | dead-lettered | EC2 accept+reject calls | throttled | wrong | doubled | invocations timed out |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for impl in ("gatekeeper", "reference"):
            x = bs.get(impl)
            if not x:
                continue
            decided = f"{x['decided']}/{x['endpoints']}" + (" (stopped)" if x.get("stopped_at_cap") else "")
            out.append(f"| {impl} decide | {decided} | {_n(x.get('seconds'))} | {_n(x.get('dead_lettered'))} | {_n(x.get('ec2_calls'))} | "
                       f"{_n(x.get('throttled'))} | {_n(x.get('wrong'))} | {_n(x.get('doubled'))} | "
                       f"{_n(x.get('timed_out'), 0)} of {_n(x.get('invocations'), 0)} |")
        out.append("")
    if "end_to_end" in r:
        e = r["end_to_end"]
        out.append(f"End to end: {_n(e.get('endpoints'))} endpoints, one CreateVpcEndpoint every {_n(e.get('interval_s'))} s, "
                   f"timed to the SNS Timestamp of the decision's announcement ({_n(e.get('announced'))} announced); "
                   f"decide's event source as deployed (MaximumConcurrency {_n(e.get('decide_concurrency'))}, batches of "
                   f"{_n(e.get('batch_size'))}, batching window {_n(e.get('batching_window_s'))} s).")
        out.append("")
        out.append("| stage | p50 ms | p99 ms |")
        out.append("|---|---|---|")
        out.append(f"| **CreateVpcEndpoint → decided and announced** | {_n(e.get('p50_ms'))} | {_n(e.get('p99_ms'))} |")
        for key, label in STAGES:
            st = e.get("stages", {}).get(key, {})
            out.append(f"| {label} | {_n(st.get('p50_ms'))} | {_n(st.get('p99_ms'))} |")
        out.append("")
    ra = r.get("ratios", {})
    if ra:
        parts = []
        for key, label, suffix in (("init", "init", ""), ("rss", "peak RSS", ""), ("warm_p50", "warm p50", ""), ("warm_p99", "p99", ""),
                                   ("aws_calls_per_decision", "AWS calls per decision", ""),
                                   ("cpu_per_invocation", "CPU per warm invocation", ""),
                                   ("round_trips_per_decision", "round trips per decision", ""),
                                   ("warm_with_latency_p50", "warm with call latency p50", ""),
                                   ("warm_with_latency_p99", "p99", ""),
                                   ("acted_with_latency_p50", "acted with call latency p50", ""),
                                   ("acted_with_latency_p99", "p99", ""),
                                   ("announced_with_latency_p50", "announced with call latency p50", ""),
                                   ("announced_with_latency_p99", "p99", ""),
                                   ("warm_with_latency_floor_p50", "warm with a latency floor p50", ""),
                                   ("warm_with_latency_floor_p99", "p99", ""),
                                   ("acted_with_latency_floor_p50", "acted with a latency floor p50", ""),
                                   ("announced_with_latency_floor_p50", "announced with a latency floor p50", ""),
                                   ("burst_decisions_per_second", "burst decisions per second", "×"),
                                   ("burst_services_decisions_per_second", "burst over services decisions per second", "×")):
            if key in ra:
                parts.append(f"{label} {_ratio(ra[key], suffix)}")
        out.append("Ratios (Gatekeeper ÷ reference): " + ", ".join(parts) + ".")
    return "\n".join(out).rstrip() + "\n"


def _latency_table(row):
    """A warm row with call latency: time to the end of the invocation, to the action and to the announcement."""
    out = ["| implementation | warm p50 ms | warm p99 ms | round trips / decision | acted p50 ms | acted p99 ms | announced p50 ms | announced p99 ms |",
           "|---|---|---|---|---|---|---|---|"]
    for impl in ("gatekeeper", "reference"):
        w = row.get(impl, {})
        a = w.get("announced", {})
        c = w.get("acted", {})
        out.append(f"| {impl} decide | {_n(w.get('p50_ms'))} | {_n(w.get('p99_ms'))} | {_n(w.get('round_trips_per_decision'))} | "
                   f"{_n(c.get('p50_ms'))} | {_n(c.get('p99_ms'))} | {_n(a.get('p50_ms'))} | {_n(a.get('p99_ms'))} |")
    out.append("")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(ROOT / "target/bench/results.json"))
    p.add_argument("--write", metavar="README", help="replace the README's generated part")
    p.add_argument("--allow-debug", action="store_true", help="print a debug run's tables (never written to the README)")
    args = p.parse_args()
    import json

    results = json.loads(Path(args.results).read_text())
    if results.get("profile") != "release" and not args.allow_debug:
        sys.exit(f"{args.results} is from a {results.get('profile')} build: only release numbers go in the README")
    text = markdown(results)
    if not args.write:
        print(text, end="")
        return
    if results.get("profile") != "release":
        sys.exit("refusing to write a non-release run into the README")
    readme = Path(args.write)
    body = readme.read_text()
    if BEGIN not in body or END not in body:
        sys.exit(f"{readme} has no {BEGIN} … {END} markers")
    head, rest = body.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    print(f"{readme}: the Benchmarks tables regenerated from {args.results}")


if __name__ == "__main__":
    main()
