"""The issuance bench, `python3 -m bench.run`, run by bench/run.sh (which sets up PostgreSQL and the
release build).

Everything is measured in one run on one machine, and compared as ratios against baselines taken in
the same run: the hot-row commit rate (pgbench) and the framework answering a constant (wrk).
Every issuance run ends with an audit in the database. Numbers only: nothing here asserts a time.
"""
import asyncio
import datetime
import glob
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench import lib
from bench.lib import ROOT, URL, Server, audit, checkpoint, first_line, issue_async, machine, pgbench_tps, wrk_result

QUICK = os.environ.get("BENCH_QUICK") == "1"
CLIENTS = [1, 16, 64] if QUICK else [1, 16, 64, 256]
SQL_TICKETS = 2000 if QUICK else 8000          # per-request strategies, per run
GROUP = 100                                    # users per transaction in the SQL group strategy
GROUP_TICKETS = 20000 if QUICK else 100000
HTTP_SECONDS = 3 if QUICK else 6
HTTP_PORT = 8181
OVERSUBSCRIBE = 1.1                            # attempts per ticket: every run ends sold out


def create_coupon(quantity):
    coupon = lib.create_coupon(quantity)
    checkpoint()
    return coupon


def verdict(result, note="", sold_out=False):
    """The audit's verdict: clean, or BROKEN with its violations (and `note`, what else was wrong)."""
    problems = result.violations(sold_out) + ([note] if note else [])
    return f"BROKEN: {'; '.join(problems)} ({result})" if problems else "clean"


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]


def pgbench(script, clients, transactions, **variables):
    """Runs one pgbench script; returns (transactions/s, per-transaction latencies in ms)."""
    folder = tempfile.mkdtemp(prefix="pgbench-")
    args = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
            "-t", str(transactions), "-f", os.path.join(ROOT, "bench", "sql", script),
            "-l", "--log-prefix", os.path.join(folder, "tx")]
    for name, value in variables.items():
        args += ["-D", f"{name}={value}"]
    out = subprocess.run(args + [URL], check=True, capture_output=True, text=True).stdout
    tps = pgbench_tps(out)
    latencies = []
    for log in glob.glob(os.path.join(folder, "tx*")):
        with open(log) as f:
            latencies += [int(line.split()[2]) / 1000 for line in f if line.strip()]
    shutil.rmtree(folder)
    return tps, latencies


def sql_strategies():
    rows = []
    hot = {}
    for clients in CLIENTS:
        tps, lat = pgbench("hot_row.sql", clients, max(1, 8000 // clients))
        hot[clients] = tps
        rows.append(("hot row UPDATE (reference)", clients, tps, percentile(lat, 50), percentile(lat, 99), "-", "commits/s"))
        print(f"  hot row, {clients} clients: {tps:.0f} commits/s", flush=True)

    strategies = [
        ("naive check-then-insert", "naive_check_then_insert.sql", 1, SQL_TICKETS, True),
        ("SELECT ... FOR UPDATE on the coupon", "select_for_update.sql", 1, SQL_TICKETS, False),
        ("atomic conditional UPDATE", "conditional_update.sql", 1, SQL_TICKETS, False),
        ("per-request counter + SKIP LOCKED", "per_request.sql", 1, SQL_TICKETS, False),
        (f"group issuance ({GROUP} per transaction)", "group.sql", GROUP, GROUP_TICKETS, False),
    ]
    for name, script, users_per_tx, tickets, naive in strategies:
        for clients in CLIENTS:
            coupon = create_coupon(tickets)
            transactions = max(1, math.ceil(tickets * OVERSUBSCRIBE / users_per_tx / clients))
            tps, lat = pgbench(script, clients, transactions, coupon=coupon, quantity=tickets, group=GROUP)
            result = audit(coupon, naive=naive)
            elapsed = transactions * clients / tps
            rate = result.held / elapsed
            checked = verdict(result)
            rows.append((name, clients, rate, percentile(lat, 50), percentile(lat, 99), checked, "issued/s"))
            print(f"  {name}, {clients} clients: {rate:.0f} issued/s, audit {checked}", flush=True)
    return rows, hot


def wrk(path_or_url, clients, script, *args):
    threads = 1 if clients == 1 else 2
    cmd = ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{HTTP_SECONDS}s", "-s",
           os.path.join(ROOT, "bench", "wrk", script), path_or_url]
    if args:
        cmd += ["--"] + list(args)
    return wrk_result(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def server(group_size, binary=None, extra=()):
    """The release server on HTTP_PORT; `binary` lets bench/speed compare builds, `extra` adds flags."""
    return Server(HTTP_PORT, "--group-size", str(group_size), *extra, binary=binary)


def http_issuance():
    base = f"http://127.0.0.1:{HTTP_PORT}"
    rows = []
    constant = {}
    with server(group_size=512):
        for clients in CLIENTS:
            result = wrk(f"{base}/healthz", clients, "constant.lua")
            constant[clients] = result["rate"]
            rows.append(("constant answer (framework reference)", clients, result["rate"], result["p50_us"] / 1000,
                         result["p99_us"] / 1000, "-", "answers/s"))
            print(f"  constant, {clients} clients: {result['rate']:.0f}/s", flush=True)

    group_rates = {}
    for label, group_size, tickets in [("per-request (--group-size 1)", 1, 200_000),
                                       ("group issuance (--group-size 512)", 512, 1_500_000)]:
        coupon = create_coupon(tickets)
        with server(group_size=group_size):
            for clients in CLIENTS:
                before = audit(coupon).held
                checkpoint()
                result = wrk(base, clients, "issue.lua", str(coupon), f"{group_size}-{clients}")
                after = audit(coupon)
                issued = after.held - before
                rate = issued / (result["duration_us"] / 1e6)
                checked = verdict(after, wrk_check(result, issued, clients))
                if group_size > 1:
                    group_rates[clients] = rate
                rows.append((label, clients, rate, result["p50_us"] / 1000, result["p99_us"] / 1000, checked, "issued/s"))
                print(f"  {label}, {clients} clients: {rate:.0f} issued/s, audit {checked}", flush=True)
    return rows, constant, group_rates


def wrk_check(result, issued, connections):
    """What is wrong with a wrk issuance run beside the audit ("" when nothing): answers other than
    2xx, socket errors, 201s that are not new rows. wrk stops counting with requests still in flight;
    those commit too (at most one per connection)."""
    if result["non2xx"] == 0 and result["socket_errors"] == 0 and 0 <= issued - result["requests"] <= connections:
        return ""
    return f"non-2xx {result['non2xx']}, errors {result['socket_errors']}, 201s vs rows {result['requests']}/{issued}"


async def burst(total, tickets):
    """`total` requests at once, each on its own connection, for `tickets` tickets."""
    coupon = create_coupon(tickets)
    statuses = {}
    with server(group_size=512):
        start = time.monotonic()
        results = await asyncio.gather(*(issue_async(HTTP_PORT, coupon, f"burst-{user}", timeout=120)
                                         for user in range(total)))
        elapsed = time.monotonic() - start
        for status, _, _ in results:
            statuses[status] = statuses.get(status, 0) + 1
    return statuses, audit(coupon), elapsed


def table(rows):
    lines = ["| strategy | clients | rate | p50 ms | p99 ms | audit |", "|---|---:|---:|---:|---:|---|"]
    for name, clients, rate, p50, p99, verdict, unit in rows:
        lines.append(f"| {name} | {clients} | {rate:,.0f} {unit} | {p50:.2f} | {p99:.2f} | {verdict} |")
    return "\n".join(lines)


def main():
    lib.raise_file_limit()  # the burst opens 10,000 sockets
    started = datetime.datetime.now(datetime.timezone.utc)
    print("SQL strategies (pgbench):", flush=True)
    sql_rows, hot = sql_strategies()
    print("HTTP (wrk, every request a new user):", flush=True)
    http_rows, constant, group_rates = http_issuance()
    print("Burst:", flush=True)
    statuses, burst_audit, burst_seconds = asyncio.run(burst(10_000, 5_000))

    ratios = []
    for clients in CLIENTS:
        if clients in group_rates:
            ratios.append(f"| {clients} | {group_rates[clients] / hot[clients]:.1f}x | {group_rates[clients] / constant[clients]:.2f} |")
    report = f"""# Issuance bench

Run {started:%Y-%m-%d %H:%M} UTC by `bench/run.sh`{' (BENCH_QUICK=1)' if QUICK else ''}.
Machine: {machine(first_line(["swift", "--version"]), "client, server and database share the machine")}.
Charts of these tables (bench/charts.py): [issued/s](issuance-rate.png), [latency p50/p99](issuance-latency.png).

Every issuance run is oversubscribed {OVERSUBSCRIBE}x (SQL) or sized not to sell out (HTTP), and ends with an
audit in the database: tickets held <= quantity, counter = tickets held, one ticket per user, ticket
rows = quantity. "clean" means the audit held. Rates are issued tickets per second of the run. Each issuance run starts right after a
CHECKPOINT, so none pays for the setup's writes.

## SQL level (pgbench, {SQL_TICKETS} tickets per run; group: {GROUP_TICKETS})

{table(sql_rows)}

## HTTP (wrk, {HTTP_SECONDS} s per run, every request a new user; the audit also checks 201s = new rows)

{table(http_rows)}

## Ratios in this run

| clients | HTTP group issuance / hot-row commits | HTTP group issuance / constant answer |
|---:|---:|---:|
{chr(10).join(ratios)}

## Burst: 10,000 requests at once (one connection each) for 5,000 tickets, group issuance

Answers by status: {", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))}; all answered in {burst_seconds:.1f} s.
Audit: {verdict(burst_audit)}{f" ({burst_audit})" if burst_audit.clean else ""}.
"""
    lib.write_result("issuance.md", report)


if __name__ == "__main__":
    sys.exit(main())
