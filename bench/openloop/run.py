"""The open-loop bench, `python3 -m bench.openloop.run`, run by bench/openloop/run.sh (which sets up
PostgreSQL, migrates, and sets POSTMASTER_PID and DATABASE_URL) and by bench/run.sh.

New users arrive at a rate of their own, whatever the answers take: k6's constant-arrival-rate
executor (bench/openloop/arrivals.js), in steps of arrival rate, on one server instance and on two
on one database. Each step runs twice, the constant answer (GET /healthz) at rate R, then issuance
at rate R (POST /v1/coupons/{id}/issue, every arrival a new user of a fresh coupon too large to sell
out), each in a k6 process of its own with a warm-up that is not counted. Per step and target:
p50, p99, max, failed requests, dropped arrivals, and the CPU k6, the servers and PostgreSQL spent
per request over the measured seconds (sampled from /proc). The knee of a target is the highest
step with p99 < 100 ms, no failed request and no dropped arrival. Every issuance coupon is audited.
Writes bench/results/openloop.md, openloop.csv and the chart openloop.png (bench/charts.py); k6's
JSON summaries and logs go to bench/results/tmp/openloop/, emptied first.
Exits non-zero when k6 could not run a step or an audit fails; a step past the knee is a result.

Env: OPENLOOP_RATES (arrivals/s, "500 1000 1500 2000 3000 4000 6000"; a rate given twice runs
twice, and holds only if it held both times), OPENLOOP_WARMUP (s, 3), OPENLOOP_SECONDS (s, 8), OPENLOOP_INSTANCES ("1 2"), OPENLOOP_MAX_VUS (virtual users per phase,
3000), OPENLOOP_PORT (8395; a second instance on the next port); BENCH_QUICK=1 makes the defaults
"500 2000 4000", 2 s and 4 s.
OPENLOOP_BASE_BIN=PATH makes it an A/B: at every step each target runs on the servers of that
binary ("base") and of COUPON_BIN ("head"), sides alternating, into bench/results/openloop-ab.md
(no CSV, no chart; openloop.md is left as it is); OPENLOOP_BASE_URL puts the base servers on a
database of their own (migrated by their own migrations; the cluster is the same).
"""
import contextlib
import csv
import datetime
import json
import os
import resource
import shutil
import subprocess
import time

from bench import lib
from bench.cpu import cluster_cpu, connections_accepted, machine_busy, machine_switches, process_cpu
from bench.lib import ROOT, Server, audit, checkpoint, create_coupon, first_line, machine, metric, psql

QUICK = os.environ.get("BENCH_QUICK") == "1"
RATES = [int(r) for r in os.environ.get("OPENLOOP_RATES", "500 2000 4000" if QUICK else "500 1000 1500 2000 3000 4000 6000").split()]
WARMUP = float(os.environ.get("OPENLOOP_WARMUP", "2" if QUICK else "3"))
SECONDS = float(os.environ.get("OPENLOOP_SECONDS", "4" if QUICK else "8"))
INSTANCES = [int(n) for n in os.environ.get("OPENLOOP_INSTANCES", "1 2").split()]
MAX_VUS = int(os.environ.get("OPENLOOP_MAX_VUS", "3000"))
PORT = int(os.environ.get("OPENLOOP_PORT", "8395"))
BASE_BIN = os.environ.get("OPENLOOP_BASE_BIN")
# (side, binary, database URL): one side, unnamed, unless this is an A/B.
SIDES = ([("base", BASE_BIN, os.environ.get("OPENLOOP_BASE_URL") or lib.URL), ("head", os.environ["COUPON_BIN"], lib.URL)]
         if BASE_BIN else [(None, os.environ["COUPON_BIN"], lib.URL)])
URLS = {side: url for side, _, url in SIDES}
RESULT = "openloop-ab.md" if BASE_BIN else "openloop.md"
# A webhook endpoint subscribed to every event, receiving on loopback (bench/events), registered on
# the head's servers (the only side in a run that is not an A/B): each of their issuance steps also
# reports the delivery lag of its events. OPENLOOP_JSON: the steps and knees go there as
# JSON instead of the results files.
# OPENLOOP_WEBHOOK=both: an endpoint for each side, each with its own receiver (an A/B of two
# binaries that both deliver, on databases of their own).
WEBHOOK = os.environ.get("OPENLOOP_WEBHOOK") in ("1", "both")
HOOKED = [side for side, _, _ in SIDES] if os.environ.get("OPENLOOP_WEBHOOK") == "both" else [SIDES[-1][0]]
WEBHOOK_PORT = 8397
JSON_OUT = os.environ.get("OPENLOOP_JSON")
WORK = os.path.join(ROOT, "bench", "results", "tmp", "openloop")
POSTMASTER_PID = int(os.environ["POSTMASTER_PID"])
SCRIPT = os.path.join(ROOT, "bench", "openloop", "arrivals.js")
TIMEOUT = 10         # seconds a request may take before k6 counts it failed (the database deadline is 3)
SLO_MS = 100         # the original design's p99
SAMPLE_EVERY = 0.2   # seconds between CPU samples while k6 runs
TARGETS = ("constant", "issue")
LABELS = {"constant": "constant", "issue": "issuance"}
INSTANCE_NAMES = {1: "One instance", 2: "Two instances"}


def quantity(rate):
    """Tickets enough for every arrival of a step, warm-up included, with room to spare."""
    return int(rate * (WARMUP + SECONDS) * 1.25) + 1000


def sample(k6_pid, servers):
    """(wall clock, CPU seconds of k6, of the servers, of the cluster, of this runner (its sampling),
    of the whole machine, the machine's context switches, its TCP connections accepted)."""
    return (time.time(), process_cpu(k6_pid), sum(process_cpu(s.process.pid) for s in servers),
            cluster_cpu(POSTMASTER_PID), process_cpu(os.getpid()), machine_busy(), machine_switches(),
            connections_accepted())


def rss_mib(servers):
    """The servers' resident memory together, MiB (VmRSS from /proc)."""
    total = 0
    for server in servers:
        try:
            with open(f"/proc/{server.process.pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total / 1024


def groups(servers):
    """(issuance transactions, users in them) so far, from the servers' coupon_issue_group_size."""
    count = sum(metric(s.port, "coupon_issue_group_size_count") or 0 for s in servers)
    users = sum(metric(s.port, "coupon_issue_group_size_sum") or 0 for s in servers)
    return count, users


def at(samples, moment):
    """The samples' values at `moment`, linear between the two around it (the nearest outside them)."""
    if moment <= samples[0][0]:
        return samples[0][1:]
    for before, after in zip(samples, samples[1:]):
        if before[0] <= moment <= after[0]:
            share = (moment - before[0]) / (after[0] - before[0]) if after[0] > before[0] else 0.0
            return tuple(b + (a - b) * share for b, a in zip(before[1:], after[1:]))
    return samples[-1][1:]


def run_k6(servers, side, instances, rate, target, coupon, run_tag):
    """One k6 process: the warm-up, then the measured phase; returns the step's figures."""
    name = f"{side + '-' if side else ''}{instances}i-{rate}-{target}"
    summary = os.path.join(WORK, f"summary-{name}.json")
    args = ["k6", "run", "--quiet", "--no-color", "--no-usage-report",
            "-e", f"BASE_URLS={' '.join(s.base for s in servers)}", "-e", f"TARGET={target}",
            "-e", f"RATE={rate}", "-e", f"WARMUP={WARMUP:g}", "-e", f"SECONDS={SECONDS:g}",
            "-e", f"MAX_VUS={MAX_VUS}", "-e", f"TIMEOUT={TIMEOUT}", "-e", f"SUMMARY={summary}"]
    if coupon is not None:
        args += ["-e", f"COUPON_ID={coupon}", "-e", f"RUN={run_tag}"]
    args.append(SCRIPT)
    groups_before = groups(servers)
    with open(os.path.join(WORK, f"k6-{name}.out"), "w") as out, open(os.path.join(WORK, f"k6-{name}.log"), "w") as log:
        process = subprocess.Popen(args, stdout=out, stderr=log)
        samples, pid, peak_rss = [], 0, 0.0
        try:
            while not pid:
                samples.append(sample(process.pid, servers))
                peak_rss = max(peak_rss, rss_mib(servers))
                pid, status, _ = os.wait4(process.pid, os.WNOHANG)
                if not pid:
                    time.sleep(SAMPLE_EVERY)
        finally:
            if not pid:   # interrupted: k6 goes too
                process.kill()
                process.wait()
    returncode = os.waitstatus_to_exitcode(status)
    # 99: a threshold crossed; these always hold, but a crossed one would still be a result.
    if returncode not in (0, 99) or not os.path.exists(summary):
        raise RuntimeError(f"k6 ({name}) exited {returncode}; see {WORK}/k6-{name}.log")
    with open(summary) as f:
        data = json.load(f)
    step = figures(data, samples, instances, rate, target, coupon)
    step["side"] = side
    transactions, users = (after - before for before, after in zip(groups_before, groups(servers)))
    # Warm-up included: the servers' histogram has no phases.
    step["mean_group"] = users / transactions if transactions else None
    step["peak_rss_mib"] = peak_rss
    return step


def figures(data, samples, instances, rate, target, coupon):
    metrics = data["metrics"]

    def value(metric, stat, phase="measure"):
        return metrics.get(f"{metric}{{scenario:{phase}}}", {}).get("values", {}).get(stat, 0) or 0

    def answers(name):
        return {phase: int(value(f"answers_{name}", "count", phase)) for phase in ("warmup", "measure")}

    # The measured phase on the wall clock: from the end of the warm-up's arrivals for SECONDS.
    start = data["setup_data"]["started_ms"] / 1000 + WARMUP
    k6, servers, postgres, runner, whole, switches, accepted = (
        b - a for a, b in zip(at(samples, start), at(samples, start + SECONDS)))
    requests = int(value("http_reqs", "count"))
    failed = {"503": answers("503"), "none": answers("none"), "held": answers("held"), "other": answers("other")}

    def per_request(seconds):
        return seconds / requests * 1e6 if requests else None
    return {
        "instances": instances, "rate": rate, "target": target, "coupon": coupon,
        "requests": requests,
        "p50": value("http_req_duration", "med"), "p99": value("http_req_duration", "p(99)"),
        "max": value("http_req_duration", "max"),
        "failed": int(round(value("http_req_failed", "passes"))),
        "failed_by": {kind: counts["measure"] for kind, counts in failed.items()},
        "dropped": int(value("dropped_iterations", "count")),
        "vus": int(metrics.get("vus", {}).get("values", {}).get("max", 0)),
        "ok_all": sum(answers("ok").values()),
        "not_ok_all": sum(sum(counts.values()) for counts in failed.values()),
        "k6_us": per_request(k6), "server_us": per_request(servers), "postgres_us": per_request(postgres),
        "switches": switches / requests if requests else None,
        "accepted": int(round(accepted)),
        "runner_cores": runner / SECONDS,
        "busy_cores": whole / SECONDS,
        "other_cores": max(0.0, whole - k6 - servers - postgres - runner) / SECONDS,
    }


def holds(step):
    return step["p99"] < SLO_MS and step["failed"] == 0 and step["dropped"] == 0


def knee(steps):
    """The highest step rate that held (every time, when a rate is run more than once), or None; and
    the lower rates that did not hold."""
    failed = {s["rate"] for s in steps if not holds(s)}
    held = [s["rate"] for s in steps if s["rate"] not in failed]
    best = max(held) if held else None
    return best, sorted(rate for rate in failed if best is not None and rate < best)


def ratio_text(constant, issue):
    """issuance knee / constant knee, qualified where a knee is only a bound (the last step held)."""
    if not constant or not issue:
        return "n/a (a target held no step)"
    top = max(RATES)
    value = f"{issue / constant:.2f}"
    if constant == top and issue == top:
        return f"n/a (both held every step up to {top:,}/s: raise OPENLOOP_RATES)"
    if constant == top:
        return f"at most {value} (the constant held every step: its knee is {top:,}/s or more)"
    if issue == top:
        return f"at least {value}"
    return value


def delivery(receiver, coupon, url, bound=60):
    """Once the step's events are all acknowledged (bounded): the largest and the 99th percentile lag
    of its ticket events, from occurred_at to arrival, and how long after the step the last one came.
    The coupon's own `coupon.created` is left out: written by psql, outside any server, it waits for
    the next event a server rings the readers for (the sale's first) or their idle poll."""
    ended = time.time()
    wanted = int(psql(f"SELECT count(*) FROM outbox_events WHERE coupon_id = {coupon}", url=url))
    tickets = int(psql(f"SELECT count(*) FROM outbox_events WHERE coupon_id = {coupon} AND type LIKE 'ticket.%'", url=url))
    while len(receiver.lags(coupon)) < wanted and time.time() - ended < bound:
        time.sleep(0.1)
    everything, lags = receiver.lags(coupon), sorted(receiver.lags(coupon, "ticket."))
    return {"events": wanted, "delivered": len(everything), "lag_max": lags[-1] if lags else None,
            "lag_p99": lags[int(len(lags) * 0.99) - 1] if lags else None, "ticket_events": tickets,
            "drained_after": time.time() - ended}


def lag_cell(step):
    if "events" not in step:
        return " - |"
    return f" {cell(step['lag_p99'], 2)} / {cell(step['lag_max'], 2)} ({step['delivered']:,} of {step['events']:,}) |"


def delivery_text(step):
    if "events" not in step:
        return ""
    return (f"; webhook: {step['delivered']:,} of {step['events']:,} events, lag p99 {cell(step['lag_p99'], 2)} s, "
            f"max {cell(step['lag_max'], 2)} s")


def audit_issuance(results):
    """bench.lib's audit of every issuance coupon, and k6's own check: every 201 has its ticket, and
    every ticket without a 201 belongs to a request that got no 201 (timed out, 503 or other)."""
    lines, clean = [], True
    for step in (s for s in results if s["target"] == "issue"):
        result = audit(step["coupon"], url=URLS[step["side"]])
        problems = result.violations()
        if result.held < step["ok_all"]:
            problems.append(f"{step['ok_all']} answered 201 but {result.held} tickets held")
        if result.held > step["ok_all"] + step["not_ok_all"]:
            problems.append(f"{result.held} tickets held for {step['ok_all']} × 201 and {step['not_ok_all']} other answers")
        clean &= not problems
        lines.append(f"- coupon {step['coupon']} ({step['side'] + ', ' if step['side'] else ''}"
                     f"{step['instances']} instance{'s' if step['instances'] > 1 else ''}, "
                     f"{step['rate']:,}/s): {result}; k6 counted {step['ok_all']:,} × 201 and {step['not_ok_all']} "
                     f"other answers, warm-up included: {'ok' if not problems else 'FAILED: ' + '; '.join(problems)}")
    return lines, clean


def cell(value, digits=1):
    return "-" if value is None else f"{value:,.{digits}f}"


def failed_cell(step):
    kinds = {"503": "503", "none": "no answer", "held": "200", "other": "other"}
    detail = ", ".join(f"{kinds[k]} {n}" for k, n in step["failed_by"].items() if n)
    return f"{step['failed']:,}" + (f" ({detail})" if detail else "")


def side_cell(side):
    return f"{side} | " if BASE_BIN else ""


def render(started, machine_line, results, knees, audit_lines, clean):
    side_header, side_rule = ("binary | ", "---|") if BASE_BIN else ("", "")
    lag_header, lag_rule = (" webhook: ticket events' lag p99 / max s |", "---|") if WEBHOOK else ("", "")
    ab = (f"\nA/B: `base` is {BASE_BIN}, `head` {os.environ['COUPON_BIN']}; at every step each target runs on "
          f"the base servers, then on the head servers, or the other way round, alternating from step to step.\n"
          if BASE_BIN else "")
    sections = []
    for instances in INSTANCES:
        rows = []
        for step in (s for s in results if s["instances"] == instances):
            rows.append(f"| {step['rate']:,} | {side_cell(step['side'])}{LABELS[step['target']]} | {step['requests']:,} | {step['p50']:.2f} | "
                        f"{step['p99']:.2f} | {step['max']:.1f} | {failed_cell(step)} | {step['dropped']:,} | "
                        f"{step['vus']:,} | {cell(step['k6_us'])} | {cell(step['server_us'])} | "
                        f"{cell(step['postgres_us'])} | {step['busy_cores']:.2f} | {cell(step['switches'])} | "
                        f"{step['accepted']:,} | {cell(step['mean_group'])} | "
                        f"{step['peak_rss_mib']:.0f} | {step['other_cores']:.2f} | "
                        f"{'yes' if holds(step) else 'no'} |{lag_cell(step) if WEBHOOK else ''}")
        how = ("k6 sends arrival n to instance n mod 2 (both targets)" if instances == 2
               else "k6 sends every arrival to it")
        sections.append(f"""## {INSTANCE_NAMES.get(instances, f"{instances} instances")}

{instances} server instance{'s' if instances > 1 else ''} on one database; {how}.

| arrivals/s | {side_header}target | requests | p50 ms | p99 ms | max ms | failed | dropped | VUs | k6 µs/req | server µs/req | PostgreSQL µs/req | machine busy, cores | switches/req | connections | mean group | server RSS MiB | other work, cores | holds |{lag_header}
|---:|{side_rule}---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|{lag_rule}
{chr(10).join(rows)}
""")
    knee_rows = []
    for (instances, side), k in knees.items():
        cells = []
        for target in TARGETS:
            best, below = k[target]
            text = "none" if best is None else f"{best:,}/s"
            if best == max(RATES):
                text += " (every step)"
            if below:
                text += f" (did not hold at {', '.join(f'{r:,}' for r in below)})"
            cells.append(text)
        knee_rows.append(f"| {instances} | {side_cell(side)}{cells[0]} | {cells[1]} | {k['ratio']} |")
    audit_text = "\n".join(audit_lines)
    runner = sum(s["runner_cores"] for s in results) / len(results) if results else 0.0
    return f"""# Open-loop arrivals: the knee of issuance and of the constant answer

Run {started:%Y-%m-%d %H:%M} UTC by `bench/openloop/run.sh`{' (BENCH_QUICK=1)' if QUICK else ''}.
Machine: {machine_line}.
{ab}
New users arrive at a rate of their own, whatever the answers take (k6 `constant-arrival-rate`,
`bench/openloop/arrivals.js`). Steps of {', '.join(f'{r:,}' for r in RATES)} arrivals/s; each step
{WARMUP:g} s of warm-up, not counted, then {SECONDS:g} s measured (requests counted in the phase they
arrived in). At each step the constant answer (`GET /healthz`) at that rate, then issuance
(`POST /v1/coupons/{{id}}/issue`, every arrival a new user) at the same rate, each in a k6 process of
its own; before each step a fresh coupon of rate × {WARMUP + SECONDS:g} s × 1.25 + 1000 tickets
(never sold out), then `VACUUM coupon_tickets` and a `CHECKPOINT`. Servers with default flags
(`--group-size 512`, pool of 20 each). k6: per phase {MAX_VUS:,} virtual users at most, rate / 10
(at least 50) made before it starts; a request timeout of {TIMEOUT} s.

A step **holds** with p99 < {SLO_MS} ms, no failed request and no dropped arrival. "failed" is
every answer but 201 (issuance; a 200 would be a retry's, and none is sent) or 200 (constant), and
every request without an answer. "dropped" is k6's `dropped_iterations`: arrivals that found every
virtual user still waiting for an answer.
CPU per request is over the measured seconds, sampled from `/proc` every {SAMPLE_EVERY:g} s: k6's own
process, the server processes (both with two instances), this PostgreSQL cluster (postmaster and
backends); "other work" is the rest of the machine's busy time, in cores, apart from this runner's
sampling ({runner:.2f} cores on average): anything above 0.1 is another program sharing the machine.
"VUs" is the highest of k6's samples (one a second) of the virtual users busy. "machine busy" is
every process's CPU over the measured seconds, in cores (2 is all there is). "switches/req" is the
machine's context switches (`/proc/stat`, every process) per request, and "connections" the TCP
connections it accepted (`/proc/net/snmp`), both over the measured seconds. "mean group" is the
users per issuance transaction (the servers' `coupon_issue_group_size`, warm-up included): one
commit, and one WAL flush, per that many tickets. "server RSS" is the servers' resident memory at
its highest during the step.

## Knees

| instances | {side_header}constant answer | issuance | issuance / constant (target at least 0.5) |
|---:|{side_rule}---|---|---|
{chr(10).join(knee_rows)}

{chr(10).join(sections)}
## Audit

{audit_text}

Audit: **{'clean' if clean else 'FAILED'}**.
"""


def write_csv(results):
    fields = ["instances", "rate", "target", "requests", "p50", "p99", "max", "failed", "dropped", "vus",
              "k6_us", "server_us", "postgres_us", "busy_cores", "switches", "accepted", "mean_group", "peak_rss_mib", "other_cores"]
    with open(os.path.join(ROOT, "bench", "results", "openloop.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        for step in results:
            writer.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in step.items() if k in fields})


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    run_tag = f"ol{started:%Y%m%d%H%M%S}"
    machine_line = machine(first_line(["k6", "version"]), f"file descriptors {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}",
                           "k6, the server instances and PostgreSQL share the machine")
    print(f"open loop: {', '.join(map(str, RATES))}/s, {WARMUP:g} s warm-up + {SECONDS:g} s each, "
          f"on {' and '.join(map(str, INSTANCES))} instance(s); user ids {run_tag}-...", flush=True)
    results = []
    for instances in INSTANCES:
        with contextlib.ExitStack() as stack:
            # Their output (warnings and up) is shown when they stop, if they wrote any.
            servers = {side: [stack.enter_context(Server(PORT + 10 * n + i, binary=binary, url=url, log=True))
                              for i in range(instances)]
                       for n, (side, binary, url) in enumerate(SIDES)}
            receivers = {}
            for n, side in enumerate(HOOKED if WEBHOOK else []):
                receiver = receivers[side] = stack.enter_context(lib.WebhookReceiver(WEBHOOK_PORT + 100 * n))
                webhook, receiver.secret = lib.register_webhook(servers[side][0].port, receiver.url)
                stack.callback(lib.delete_webhook, servers[side][0].port, webhook)
            for index, rate in enumerate(RATES):
                for side, _, url in (SIDES if index % 2 == 0 else reversed(SIDES)):
                    tag = f"{side + ' ' if side else ''}{instances}i {rate}/s"
                    coupon = create_coupon(quantity(rate), f"open loop {tag}", url=url)
                    # The sale's coupon made ahead of it: autovacuum and the checkpoint of its rows done.
                    psql("VACUUM coupon_tickets", url=url)
                    checkpoint()
                    for target in TARGETS:
                        step = run_k6(servers[side], side, instances, rate, target, coupon if target == "issue" else None,
                                      f"{run_tag}-{tag.replace(' ', '-').replace('/', '')}")
                        if side in receivers and target == "issue":
                            step.update(delivery(receivers[side], coupon, url))
                        results.append(step)
                        print(f"  {tag} {LABELS[target]}: {step['requests']:,} requests, "
                              f"p50 {step['p50']:.2f} ms, p99 {step['p99']:.2f} ms, max {step['max']:.1f} ms, "
                              f"failed {step['failed']}, dropped {step['dropped']}, VUs {step['vus']}; per request "
                              f"k6 {cell(step['k6_us'])} µs, server {cell(step['server_us'])} µs, "
                              f"PostgreSQL {cell(step['postgres_us'])} µs; other work {step['other_cores']:.2f} cores"
                              f"{'' if holds(step) else '  (does not hold)'}"
                              f"{delivery_text(step)}", flush=True)
    knees = {}
    for instances in INSTANCES:
        for side, _, _ in SIDES:
            steps = [s for s in results if s["instances"] == instances and s["side"] == side]
            k = {target: knee([s for s in steps if s["target"] == target]) for target in TARGETS}
            k["ratio"] = ratio_text(k["constant"][0], k["issue"][0])
            knees[(instances, side)] = k
            print(f"{side + ', ' if side else ''}{instances} instance(s): knee constant {k['constant'][0] or 'none'}, issuance {k['issue'][0] or 'none'} "
              f"(arrivals/s); issuance / constant {k['ratio']} (target at least 0.5)", flush=True)
    audit_lines, clean = audit_issuance(results)
    if JSON_OUT:
        with open(JSON_OUT, "w") as f:
            json.dump({"steps": results, "knees": {f"{i} {s}": k for (i, s), k in knees.items()}, "audit": audit_lines,
                       "clean": clean, "machine": machine_line}, f, default=str)
        return 0 if clean else 1
    lib.write_result(RESULT, render(started, machine_line, results, knees, audit_lines, clean))
    if not BASE_BIN:
        write_csv(results)
        from bench.charts import openloop_chart  # matplotlib, needed for the chart only
        openloop_chart()
    return 0 if clean else 1


if __name__ == "__main__":
    lib.run_tool(main, RESULT)
