#!/usr/bin/env python3
"""Where an issuance's CPU goes, beside the framework's own limit, in one run (bench/speed/run.sh).

wrk with one thread and 256 connections against one release server; for every row the CPU seconds
the server, PostgreSQL (all its processes) and the load generator spent, per answer, from /proc and
wait4(). Then PostgreSQL alone issuing groups of the size the server formed (pgbench, no HTTP), as
the database's own limit on this machine. Numbers only; the issuance rows end with an audit.
"""
import datetime
import os
import re
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cpu import run_measured  # noqa: E402
from lib import URL, first_line, machine, psql  # noqa: E402,F401
from run import HTTP_PORT, ROOT, Server, audit, checkpoint, create_coupon  # noqa: E402

CONNECTIONS = 256
SECONDS = int(os.environ.get("SPEED_SECONDS", "8"))
LABEL = os.environ.get("SPEED_LABEL", "")
# Binaries to compare in one run, `name=path` each (bench/speed/run.sh builds them); rounds alternate.
SIDES = [tuple(side.split("=", 1)) for side in os.environ.get("SPEED_SIDES", f"head={os.environ['COUPON_BIN']}").split()]
ROUNDS = int(os.environ.get("SPEED_ROUNDS", "1"))


def wrk(path, script, *args):
    command = ["wrk", "-t", "1", "-c", str(CONNECTIONS), "-d", f"{SECONDS}s", "-s",
               os.path.join(ROOT, "bench", "wrk", script), f"http://127.0.0.1:{HTTP_PORT}{path}"]
    if args:
        command += ["--", *args]
    return command


def measure(server, command):
    out, cpu = run_measured(command, server.process.pid)
    values = {k: int(v) for k, v in (pair.split("=") for pair in re.search(r"RESULT (.*)", out).group(1).split())}
    values["rate"] = values["requests"] / (values["duration_us"] / 1e6)
    values["cpu"] = cpu
    return values


def metric(name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}/metrics", timeout=5).read().decode()
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")), 0.0)


def per_answer(cpu, answers):
    """Microseconds of CPU per answer, by part."""
    return {part: seconds / answers * 1e6 for part, seconds in cpu.items()} if answers else {}


def pgbench_groups(coupon, group, clients, transactions):
    """Group issuance without HTTP: `clients` connections each issuing `transactions` groups."""
    command = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients), "-t", str(transactions),
               "-f", os.path.join(ROOT, "bench", "sql", "group.sql"), "-D", f"coupon={coupon}", "-D", f"group={group}", URL]
    out, cpu = run_measured(command)
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))
    return tps, cpu


def http_rows(side, binary, tag):
    """The HTTP rows for one binary; returns them and the mean group its server formed."""
    rows = []
    big = create_coupon(60_000 * SECONDS)
    sold = create_coupon(1)
    psql(f"BEGIN; SELECT count(*) FROM issue_tickets({sold}, ARRAY['only-winner']); COMMIT;")
    # Autovacuum would otherwise visit the new rows during the first measured rows (measured: the
    # first POST row of each server ran at two thirds of the later ones).
    psql("VACUUM coupon_tickets")
    checkpoint()
    server = Server(group_size=512, binary=binary)
    try:
        for label, command in [
            ("constant answer, GET /healthz", wrk("/healthz", "constant.lua")),
            ("constant answer to a POST with the issue body (405)", wrk("/healthz", "post_constant.lua")),
            ("sold-out refusals (new users)", wrk("", "issue.lua", str(sold), f"refused-{tag}")),
        ]:
            result = measure(server, command)
            rows.append((side, label, result["rate"], "answers", per_answer(result["cpu"], result["requests"]),
                         result["p99_us"] / 1000, "-"))
            print(f"  {side}: {label}: {result['rate']:,.0f}/s", flush=True)

        before_groups, before_sum = metric("coupon_issue_group_size_count"), metric("coupon_issue_group_size_sum")
        checkpoint()
        before = audit(big)["issued"]
        result = measure(server, wrk("", "issue.lua", str(big), f"speed-{tag}"))
        after = audit(big)
        issued = after["issued"] - before
        groups = metric("coupon_issue_group_size_count") - before_groups
        mean_group = (metric("coupon_issue_group_size_sum") - before_sum) / groups if groups else 0
        rate = issued / (result["duration_us"] / 1e6)
        # wrk stops counting with requests in flight; those commit too (at most one per connection).
        ok = (after["clean"] and result["non2xx"] == 0 and result["socket_errors"] == 0
              and 0 <= issued - result["requests"] <= CONNECTIONS)
        verdict = "clean" if ok else f"CHECK: {after['note']}, non-2xx {result['non2xx']}, errors {result['socket_errors']}"
        rows.append((side, f"issuance, every request a new user (mean group {mean_group:.0f})", rate, "issued",
                     per_answer(result["cpu"], issued), result["p99_us"] / 1000, verdict))
        print(f"  {side}: issuance: {rate:,.0f} issued/s, mean group {mean_group:.1f}, audit {verdict}", flush=True)
    finally:
        server.stop()
    return rows, mean_group


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    groups = []
    for number in range(ROUNDS):
        for side, binary in SIDES:
            side_rows, mean_group = http_rows(side, binary, f"{started:%H%M%S}-{number}-{side}")
            rows += side_rows
            groups.append(mean_group)

    group = max(1, round(sum(groups) / len(groups)))
    sql_coupon = create_coupon(400_000)
    transactions = max(1, 300_000 // group // 2)
    tps, cpu = pgbench_groups(sql_coupon, group, 2, transactions)
    sql_issued = audit(sql_coupon)
    sql_rate = sql_issued["issued"] / (2 * transactions / tps)
    rows.append(("-", f"PostgreSQL alone: issue_tickets for groups of {group}, 2 connections (pgbench)", sql_rate, "issued",
                 per_answer(cpu, sql_issued["issued"]), float("nan"), "clean" if sql_issued["clean"] else "BROKEN"))
    print(f"  SQL groups of {group}: {sql_rate:,.0f} issued/s", flush=True)

    lines = ["| binary | what | rate | of its constant GET | server µs | PostgreSQL µs | wrk/pgbench µs | CPU µs total | p99 ms | audit |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    constant = None
    for side, label, rate, unit, cpu, p99, verdict in rows:
        if label.startswith("constant answer, GET"):
            constant = rate
        total = sum(cpu.values())
        lines.append(f"| {side} | {label} | {rate:,.0f} {unit}/s | {rate / constant:.2f} | {cpu.get('server', 0):.1f} | "
                     f"{cpu.get('postgres', 0):.1f} | {cpu.get('load', 0):.1f} | {total:.1f} | {p99:.2f} | {verdict} |")
    binaries = ", ".join(f"`{side}` {binary}" for side, binary in SIDES)
    report = f"""## {started:%Y-%m-%d %H:%M} UTC{f': {LABEL}' if LABEL else ''}

Working tree at {first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])}{' with uncommitted changes' if subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "Sources", "migrations"]).returncode else ''}.
Binaries: {binaries}; {ROUNDS} round(s), sides alternating.
Machine: {machine(first_line(["wrk", "--version"]).split(" [")[0], "wrk -t1 -c256, server and PostgreSQL on the same 2 cores")}.
{SECONDS} s per row; CPU per answer (per issued ticket for issuance), from /proc and wait4().

{chr(10).join(lines)}
"""
    path = os.path.join(ROOT, "bench", "results", "speed.md")
    header = "# Speed: CPU per issuance beside the framework's constant answer\n\nWritten by `bench/speed/run.sh`, newest first.\n\n"
    old = open(path).read().removeprefix(header) if os.path.exists(path) else ""
    with open(path, "w") as f:
        f.write(header + report + "\n" + old)
    print(report)


if __name__ == "__main__":
    sys.exit(main())
