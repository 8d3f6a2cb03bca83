"""The k6 profile, `python3 -m bench.k6.run`, run by bench/k6/run.sh (which sets up PostgreSQL and
migrates).

Starts one server (bench.lib's Server on K6_PORT, 8391) and runs bench/k6/issue.js twice against
it, the constant answer first, then issuance of a 1000-ticket coupon; audits the database; writes
bench/results/k6.md. Exits non-zero when k6 could not run or the audit fails; a failed threshold is
a result, reported, not an error.
"""
import datetime
import json
import os
import resource
import subprocess
import time

from bench import lib
from bench.cpu import cluster_cpu, machine_busy, process_cpu
from bench.lib import ADMIN_TOKEN, ROOT, Server, audit, create_coupon_over_http, first_line, machine, psql

PORT = int(os.environ.get("K6_PORT", "8391"))
WORK = os.environ["K6_WORK"]
POSTMASTER_PID = int(os.environ["POSTMASTER_PID"])
QUANTITY = 1000
SCRIPT = os.path.join(ROOT, "bench", "k6", "issue.js")
DISTURBED = 0.25   # other work above this share of one core during a profile is called out in the report
QUIET_WAIT = float(os.environ.get("K6_QUIET_WAIT", "30"))   # longest wait for a quiet machine before a profile


def postgres_cpu():
    return cluster_cpu(POSTMASTER_PID)


def wait_quiet():
    """Waits (at most QUIET_WAIT seconds) until the machine has been quiet for three seconds in a row:
    on a shared machine, another build or test run would otherwise land in the tail latencies.
    Returns (seconds waited, whether it became quiet)."""
    started, quiet = time.monotonic(), 0
    while quiet < 3:
        waited = time.monotonic() - started
        if waited >= QUIET_WAIT:
            return waited, False
        before = machine_busy()
        time.sleep(1)
        quiet = quiet + 1 if machine_busy() - before < DISTURBED else 0
    return time.monotonic() - started, True


def run_k6(server, target, coupon, run_tag):
    summary = os.path.join(WORK, f"summary-{target}.json")
    args = ["k6", "run", "--quiet", "--no-color", "--no-usage-report",
            "-e", f"BASE_URL={server.base}", "-e", f"TARGET={target}", "-e", f"SUMMARY={summary}"]
    if coupon is not None:
        args += ["-e", f"COUPON_ID={coupon}", "-e", f"RUN={run_tag}"]
    args.append(SCRIPT)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before, pg_before, busy_before = process_cpu(server.process.pid), postgres_cpu(), machine_busy()
    started = time.monotonic()
    launched = time.time()
    with open(os.path.join(WORK, f"k6-{target}.log"), "w") as log:
        completed = subprocess.run(args, stdout=subprocess.PIPE, stderr=log, text=True)
    wall = time.monotonic() - started
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    k6_cpu = (after_children.ru_utime - before_children.ru_utime) + (after_children.ru_stime - before_children.ru_stime)
    cpu = {"wall": wall, "launched": launched, "k6": k6_cpu, "server": process_cpu(server.process.pid) - server_before,
           "postgres": postgres_cpu() - pg_before, "machine": machine_busy() - busy_before}
    cpu["other"] = max(0.0, cpu["machine"] - cpu["k6"] - cpu["server"] - cpu["postgres"])
    print(completed.stdout.strip(), flush=True)
    # 99: thresholds crossed, which is a result; anything else means k6 did not run the profile.
    if completed.returncode not in (0, 99) or not os.path.exists(summary):
        raise RuntimeError(f"k6 ({target}) exited {completed.returncode}; see {WORK}/k6-{target}.log")
    with open(summary) as f:
        data = json.load(f)
    return parse(data, completed.returncode, cpu)


def parse(data, returncode, cpu):
    metrics = data["metrics"]

    def stat(metric, name, default=0):
        return metrics.get(metric, {}).get("values", {}).get(name, default)

    thresholds = metrics["http_req_duration"].get("thresholds", {})
    stages = {}
    for stage in range(1, 5):
        name = f"http_req_duration{{stage:{stage}}}"
        stages[stage] = {k: stat(name, k, None) for k in ("count", "med", "p(99)", "max")}
    return {
        "requests": int(stat("http_reqs", "count")),
        "rate": stat("http_reqs", "rate"),
        "duration": {k: stat("http_req_duration", k) for k in ("med", "p(90)", "p(95)", "p(99)", "max")},
        "failed": int(round(stat("http_req_failed", "passes"))),
        "201": int(stat("answers_201_issued", "count")),
        "200": int(stat("answers_200", "count")),
        "409": int(stat("answers_409", "count")),
        "other": int(stat("answers_other", "count")),
        "issued_p99": stat("duration_201_issued", "p(99)", None),
        "issued_max": stat("duration_201_issued", "max", None),
        "sold_out_p99": stat("duration_409_sold_out", "p(99)", None),
        "sold_out_max": stat("duration_409_sold_out", "max", None),
        "vus_max": int(stat("vus_max", "max")),
        "stages": stages,
        "threshold": all(t["ok"] for t in thresholds.values()) if thresholds else None,
        "returncode": returncode,
        "cpu": cpu,
    }


def check(coupon, run_tag, k6_issued, launched):
    """bench.lib's audit with every ticket issued, and this run's own checks: k6 counted as many 201s
    as there are tickets held, and every holder is a user of this run."""
    result = audit(coupon)
    held = result.held
    foreign = int(psql(f"SELECT count(*) FROM coupon_tickets WHERE coupon_id = {coupon} AND user_id IS NOT NULL "
                       f"AND user_id NOT LIKE '{run_tag}-%'"))
    # Seconds after k6 was launched; NULL (no ticket issued at all) becomes nan.
    first, last = (float(v or "nan") - launched for v in psql(
        f"SELECT EXTRACT(EPOCH FROM min(issued_at)), EXTRACT(EPOCH FROM max(issued_at)) "
        f"FROM coupon_tickets WHERE coupon_id = {coupon}").split("|"))
    violations = result.violations(sold_out=True)
    checks = [
        (f"tickets held = quantity = counter, no user with two tickets ({result}"
         f"{': ' + '; '.join(violations) if violations else ''})", not violations),
        (f"201s counted by k6 = tickets held ({k6_issued} = {held})", k6_issued == held),
        (f"every holder is a user of this run ({foreign} others)", foreign == 0),
    ]
    return {"checks": checks, "clean": all(ok for _, ok in checks), "first": first, "last": last}


def ms(value):
    return "-" if value is None else f"{value:.2f}"


def render(started, machine_line, coupon, results, check):
    constant, issue = results["constant"], results["issue"]
    rows = []
    for label, r in (("constant answer: `GET /healthz`", constant),
                     (f"issuance: `POST /v1/coupons/{{id}}/issue`, {QUANTITY} tickets", issue)):
        d = r["duration"]
        unexpected = r["other"] + (r["200"] if r is issue else 0)
        rows.append(f"| {label} | {r['requests']:,} | {r['rate']:,.0f} | {ms(d['med'])} | {ms(d['p(90)'])} | "
                    f"{ms(d['p(95)'])} | {ms(d['p(99)'])} | {ms(d['max'])} | {r['failed']} / {unexpected} | "
                    f"{'pass' if r['threshold'] else 'FAIL'} |")
    ratio = issue["duration"]["p(99)"] / constant["duration"]["p(99)"] if constant["duration"]["p(99)"] else float("nan")
    cores = os.cpu_count() or 1
    cpu_rows, stage_rows = [], []
    for label, r in (("constant", constant), ("issuance", issue)):
        c = r["cpu"]
        share = lambda seconds: f"{seconds:.1f} ({seconds / c['wall']:.0%})"
        cpu_rows.append(f"| {label} | {c['wall']:.1f} | {share(c['k6'])} | {share(c['server'])} | "
                        f"{share(c['postgres'])} | {share(c['other'])} | "
                        f"{c['machine']:.1f} ({c['machine'] / c['wall'] / cores:.0%} of {cores} cores) |")
        cells = []
        for stage in range(1, 5):
            st = r["stages"][stage]
            cells.append("-" if not st["count"] else f"{int(st['count']):,}: {ms(st['med'])} / {ms(st['p(99)'])} / {ms(st['max'])}")
        stage_rows.append(f"| {label} | " + " | ".join(cells) + " |")
    disturbed = [f"{label} ({r['cpu']['other']:.1f} CPU s, {r['cpu']['other'] / r['cpu']['wall']:.0%} of a core)"
                 for label, r in (("constant", constant), ("issuance", issue))
                 if r["cpu"]["other"] / r["cpu"]["wall"] > DISTURBED]
    disturbance = ("**Disturbed:** other work on the machine ran during " + " and ".join(disturbed) +
                   "; tail latencies there are partly the machine's, not the server's. Run again on a quiet machine."
                   if disturbed else
                   f"No profile was disturbed: other work on the machine stayed under {DISTURBED:.0%} of a core.")
    waits = "; ".join(f"before {label} {r['quiet_wait'][0]:.0f} s{'' if r['quiet_wait'][1] else ' (gave up: still busy)'}"
                      for label, r in (("constant", constant), ("issuance", issue)))
    disturbance += (f" Before each profile the runner waits (up to {QUIET_WAIT:.0f} s, `K6_QUIET_WAIT`) for three "
                    f"quiet seconds in a row: {waits}.")
    audit_lines = "\n".join(f"- {'ok' if ok else 'FAILED'}: {text}" for text, ok in check["checks"])
    return f"""# k6 profile

Run {started:%Y-%m-%d %H:%M} UTC by `bench/k6/run.sh`.
Machine: {machine_line}.

The original design's profile (`bench/k6/issue.js`): 10 s up to 500 virtual users, 10 s up to
3000, 10 s at 3000, 10 s down; each user sends one request, then sleeps 1 s; threshold
`http_req_duration: p(99)<100` (ms). Both targets in one run, on one server instance (default
flags, `--group-size 512`, pool of 20), the constant answer first. Issuance: coupon {coupon} with
{QUANTITY} tickets, every request a new user (`RUN-VU-ITER`); 201, 200 and 409 are expected answers.

| target | requests | req/s | p50 ms | p90 ms | p95 ms | p99 ms | max ms | failed / unexpected | p99 < 100 ms |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---|
{chr(10).join(rows)}

"failed" is k6's `http_req_failed` (an unexpected status or a transport error); "unexpected" counts
answers other than 201/409 (issuance) or 200 (constant). k6 reached {constant['vus_max']:,} and
{issue['vus_max']:,} virtual users. Ratio issuance p99 / constant p99: **{ratio:.2f}**.

Issuance answers: {issue['201']:,} × 201 (issued), {issue['409']:,} × 409 (sold out), {issue['200']} × 200,
{issue['other']} other. By answer: 201 p99 {ms(issue['issued_p99'])} ms (max {ms(issue['issued_max'])}),
409 p99 {ms(issue['sold_out_p99'])} ms (max {ms(issue['sold_out_max'])}). In the database (`issued_at`),
the first ticket went {check['first']:.2f} s and the last {check['last']:.2f} s after k6 was launched
(its start-up included); from then on every request is a sold-out reject, answered from the
server's catalogue without the database.

## By stage

Requests, then p50 / p99 / max ms, by the stage each request started in.

| target | 0 to 10 s: up to 500 users | 10 to 20 s: up to 3000 | 20 to 30 s: 3000 | 30 to 40 s: down to 0 |
|---|---:|---:|---:|---:|
{chr(10).join(stage_rows)}

## CPU seconds during each profile

| profile | wall s | k6 | server | PostgreSQL (this cluster) | anything else | whole machine |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(cpu_rows)}

Percentages are of one core over the profile's wall time (k6 start-up included). "Anything else"
is the rest of the machine's busy time (from `/proc/stat`, counted apart from the processes, so the
columns need not add up exactly): other work on the same machine competes for the same two cores
and shows up in the tail latencies. {disturbance}

## Audit (coupon {coupon})

{audit_lines}

Audit: **{"clean" if check["clean"] else "FAILED"}**.
"""


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    # Its output (warnings and up) is shown when it stops, if it wrote any.
    server = Server(PORT, log=True)
    try:
        server.wait_ready(60)
        machine_line = machine(first_line(["k6", "version"]),
                               f"file descriptors {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}",
                               "k6, one server instance and PostgreSQL share the machine")
        coupon = create_coupon_over_http(server.base, ADMIN_TOKEN, "k6 profile", QUANTITY)
        run_tag = f"k6-{started:%Y%m%d%H%M%S}"
        print(f"coupon {coupon}, {QUANTITY} tickets; user ids {run_tag}-VU-ITER", flush=True)
        results = {}
        for target in ("constant", "issue"):
            waited, quiet = wait_quiet()
            if waited > 3.5 or not quiet:
                print(f"waited {waited:.0f} s for a quiet machine{'' if quiet else ', in vain'}", flush=True)
            print(f"k6 profile against {target} (about 45 s)...", flush=True)
            results[target] = run_k6(server, target, coupon if target == "issue" else None, run_tag)
            results[target]["quiet_wait"] = (waited, quiet)
        checked = check(coupon, run_tag, results["issue"]["201"], results["issue"]["cpu"]["launched"])
    finally:
        server.stop()
    lib.write_result("k6.md", render(started, machine_line, coupon, results, checked))
    return 0 if checked["clean"] else 1


if __name__ == "__main__":
    lib.run_tool(main, "k6.md")
