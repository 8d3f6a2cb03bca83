"""Where an issuance's CPU goes, beside the framework's own limit, in one run: `python3 -m
bench.speed.run`, run by bench/speed/run.sh.

wrk with one thread and 256 connections against one release server; for every row the CPU seconds
the server, PostgreSQL (all its processes) and the load generator spent, per answer, from /proc and
wait4(). Then PostgreSQL alone issuing groups of the size the server formed (pgbench, no HTTP), as
the database's own limit on this machine. Numbers only; the issuance rows end with an audit.
"""
import contextlib
import datetime
import json
import os
import subprocess
import sys
import time

from bench.cpu import run_measured
from bench.lib import (ROOT, URL, Identity, WebhookReceiver, audit, checkpoint, delete_webhook, first_line, machine, metric,
                       pgbench_tps, prepend_result, psql, register_webhook, wrk_result)
from bench.run import HTTP_PORT, create_coupon, server, verdict, wrk_check

CONNECTIONS = 256
SECONDS = int(os.environ.get("SPEED_SECONDS", "8"))
LABEL = os.environ.get("SPEED_LABEL", "")
# Binaries to compare in one run, `name=path` each (bench/speed/run.sh builds them); rounds alternate.
SIDES = [tuple(side.split("=", 1)) for side in os.environ.get("SPEED_SIDES", f"head={os.environ['COUPON_BIN']}").split()]
ROUNDS = int(os.environ.get("SPEED_ROUNDS", "1"))
# JWT identity beside trusted mode: tokens signed ahead for this many new users per row (0: no JWT rows).
TOKENS = int(os.environ.get("SPEED_TOKENS", "150000"))
# A webhook endpoint subscribed to every event and receiving on loopback while the rows run (bench/events).
WEBHOOK = os.environ.get("SPEED_WEBHOOK") == "1"
WEBHOOK_PORT = 8398
# Where the rows also go as JSON (bench/events reads them); speed.md is then left as it is.
JSON_OUT = os.environ.get("SPEED_JSON")
# PostgreSQL alone issuing groups (pgbench) after the HTTP rows; SPEED_SQL=0 leaves it out.
SQL_ROW = os.environ.get("SPEED_SQL", "1") == "1"


def wrk(path, script, *args):
    command = ["wrk", "-t", "1", "-c", str(CONNECTIONS), "-d", f"{SECONDS}s", "-s",
               os.path.join(ROOT, "bench", "wrk", script), f"http://127.0.0.1:{HTTP_PORT}{path}"]
    if args:
        command += ["--", *args]
    return command


def measure(running, command):
    out, cpu = run_measured(command, running.process.pid)
    return dict(wrk_result(out), cpu=cpu)


def counter(name):
    """A counter of the server's /metrics, 0 before its first sample."""
    return metric(HTTP_PORT, name) or 0.0


def wrk_machine():
    """The machine line of speed.md and million.md."""
    return machine(first_line(["wrk", "--version"]).split(" [")[0], "wrk -t1 -c256, server and PostgreSQL on the same 2 cores")


def per_answer(cpu, answers):
    """Microseconds of CPU per answer, by part."""
    return {part: seconds / answers * 1e6 for part, seconds in cpu.items()} if answers else {}


def pgbench_groups(coupon, group, clients, transactions):
    """Group issuance without HTTP: `clients` connections each issuing `transactions` groups."""
    command = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients), "-t", str(transactions),
               "-f", os.path.join(ROOT, "bench", "sql", "group.sql"), "-D", f"coupon={coupon}", "-D", f"group={group}", URL]
    out, cpu = run_measured(command)
    return pgbench_tps(out), cpu


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
    with server(group_size=512, binary=binary) as running, \
            (WebhookReceiver(WEBHOOK_PORT) if WEBHOOK else contextlib.nullcontext()) as receiver:
        if receiver:
            webhook, receiver.secret = register_webhook(HTTP_PORT, receiver.url)
        for label, command in [
            ("constant answer, GET /healthz", wrk("/healthz", "constant.lua")),
            ("constant answer to a POST with the issue body (405)", wrk("/healthz", "post_constant.lua")),
            ("sold-out refusals (new users)", wrk("", "issue.lua", str(sold), f"refused-{tag}")),
        ]:
            result = measure(running, command)
            rows.append((side, label, result["rate"], "answers", per_answer(result["cpu"], result["requests"]),
                         result["p99_us"] / 1000, "-"))
            print(f"  {side}: {label}: {result['rate']:,.0f}/s", flush=True)

        before_groups, before_sum = counter("coupon_issue_group_size_count"), counter("coupon_issue_group_size_sum")
        checkpoint()
        before = audit(big).held
        result = measure(running, wrk("", "issue.lua", str(big), f"speed-{tag}"))
        after = audit(big)
        issued = after.held - before
        groups = counter("coupon_issue_group_size_count") - before_groups
        mean_group = (counter("coupon_issue_group_size_sum") - before_sum) / groups if groups else 0
        rate = issued / (result["duration_us"] / 1e6)
        checked = verdict(after, wrk_check(result, issued, CONNECTIONS))
        rows.append((side, f"issuance, every request a new user (mean group {mean_group:.0f})", rate, "issued",
                     per_answer(result["cpu"], issued), result["p99_us"] / 1000, checked))
        print(f"  {side}: issuance: {rate:,.0f} issued/s, mean group {mean_group:.1f}, audit {checked}", flush=True)
        if receiver:
            rows.append(delivery_row(side, receiver, big, result["duration_us"] / 1e6))
            delete_webhook(HTTP_PORT, webhook)
    return rows, mean_group


def delivery_row(side, receiver, coupon, seconds, bound=120):
    """How long after the issuance row the receiver had acknowledged every ticket.issued of its coupon
    (bounded; the coupon was created before the endpoint, so its coupon.created is not the endpoint's)."""
    ended = time.monotonic()
    wanted = int(psql(f"SELECT count(*) FROM outbox_events WHERE coupon_id = {coupon} AND type = 'ticket.issued'"))
    got = 0
    while time.monotonic() - ended < bound:
        got = len({event["id"] for event in receiver.acknowledged() if event["coupon_id"] == coupon
                   and event["type"] == "ticket.issued"})
        if got >= wanted:
            break
        time.sleep(0.1)
    after = time.monotonic() - ended
    signed = all(ok for *_, ok in receiver.deliveries)
    print(f"  {side}: webhook: {got:,} of {wanted:,} events acknowledged {after:.1f} s after the row "
          f"({len(receiver.deliveries):,} deliveries, signatures {'valid' if signed else 'INVALID'})", flush=True)
    return (side, f"webhook: the row's {wanted:,} tickets' events all acknowledged, s after the row", after, "s", {}, float("nan"),
            "ok" if got >= wanted and signed else f"{got} of {wanted}")


def token_file(identity, prefix, count):
    """`count` ES256 tokens of new users, one per line, in a file; its path."""
    path = os.path.join(ROOT, "bench", "results", "tmp", f"tokens-{prefix}.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(identity.token(f"{prefix}-{n}") + "\n" for n in range(count))
    return path


def jwt_rows(side, binary, tag):
    """The same sale with JWT identity (ES256): every request carries a bearer token and no body.
    Refusals with new users' tokens pay a signature check each; retries (5,000 tokens round and round)
    find theirs in the cache of verified tokens. Then issuance with RS256 tokens, whose check costs
    less (RSA verifies with a small exponent)."""
    identity = Identity()
    print(f"  {side}: signing {2 * TOKENS + 5000:,} ES256 tokens", flush=True)
    fresh_refused, fresh_issued = token_file(identity, f"refused-{tag}", TOKENS), token_file(identity, f"jwt-{tag}", TOKENS)
    retries = token_file(identity, f"retry-{tag}", 5000)
    rows = [jwt_issuance(side, binary, identity, fresh_issued, "ES256")]
    rsa = Identity(alg="RS256")
    print(f"  {side}: signing {TOKENS:,} RS256 tokens", flush=True)
    rows.append(jwt_issuance(side, binary, rsa, token_file(rsa, f"rsa-{tag}", TOKENS), "RS256"))
    sold = create_coupon(1)
    psql(f"BEGIN; SELECT count(*) FROM issue_tickets({sold}, ARRAY['only-winner']); COMMIT;")
    with server(group_size=512, binary=binary, extra=identity.server_args()) as running:
        for label, tokens in [("JWT: sold-out refusals (new users, a signature check each)", fresh_refused),
                              ("JWT: sold-out refusals (retries, tokens verified before)", retries)]:
            result = measure(running, wrk("", "issue_token.lua", str(sold), tokens))
            rows.append((side, label, result["rate"], "answers", per_answer(result["cpu"], result["requests"]),
                         result["p99_us"] / 1000, "-"))
            print(f"  {side}: {label}: {result['rate']:,.0f}/s", flush=True)
    return rows


def jwt_issuance(side, binary, identity, tokens, alg):
    """Issuance of a new coupon with JWT identity, every request a new user's token."""
    big = create_coupon(60_000 * SECONDS)
    psql("VACUUM coupon_tickets")
    checkpoint()
    with server(group_size=512, binary=binary, extra=identity.server_args()) as running:
        before = audit(big).held
        result = measure(running, wrk("", "issue_token.lua", str(big), tokens))
        after = audit(big)
        issued = after.held - before
        rate = issued / (result["duration_us"] / 1e6)
        checked = verdict(after, wrk_check(result, issued, CONNECTIONS))
        if result["requests"] > TOKENS:
            checked += f" (tokens ran out: {result['requests']:,} requests for {TOKENS:,}; raise SPEED_TOKENS)"
        print(f"  {side}: JWT {alg} issuance: {rate:,.0f} issued/s, audit {checked}", flush=True)
        return (side, f"JWT: issuance with {alg} tokens, every request a new user", rate, "issued",
                per_answer(result["cpu"], issued), result["p99_us"] / 1000, checked)


def p256_verify_micros():
    """Microseconds of one P-256 signature verification on this machine (`openssl speed ecdsap256`),
    the cost a fresh ES256 token cannot avoid."""
    out = subprocess.run(["openssl", "speed", "-seconds", "3", "ecdsap256"], capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if "nistp256" in line and "ecdsa" in line)
    return 1e6 / float(line.split()[-1])


def ratios(rows, verify_us):
    """JWT against trusted mode, per binary: issuance and sold-out refusals; and the server's CPU a
    fresh ES256 token adds to an issuance, against one P-256 verification."""
    lines = []
    for side in dict.fromkeys(side for side, *_ in rows if side != "-"):
        rate = {label: rate for s, label, rate, *_ in rows if s == side}
        trusted_issue = next((r for label, r in rate.items() if label.startswith("issuance")), None)
        trusted_refused = rate.get("sold-out refusals (new users)")
        for label, r in rate.items():
            if label.startswith("JWT: issuance") and trusted_issue:
                lines.append(f"- `{side}`: {label[5:].split(',')[0]} at {r / trusted_issue:.2f} of trusted mode's")
            elif label.startswith("JWT: sold-out") and trusted_refused:
                lines.append(f"- `{side}`: {label[5:]} at {r / trusted_refused:.2f} of trusted mode's")
        # Each round's ES256 issuance against the same round's trusted issuance.
        above, trusted_server = [], None
        for s, label, _, _, cpu, *_ in rows:
            if s == side and label.startswith("issuance"):
                trusted_server = cpu.get("server", 0)
            elif s == side and label.startswith("JWT: issuance with ES256") and trusted_server is not None:
                above.append(cpu.get("server", 0) - trusted_server)
        if above:
            each = ", ".join(f"{a / verify_us:.2f}x" for a in above)
            mean = sum(above) / len(above)
            lines.append(f"- `{side}`: a fresh ES256 token adds {mean:.1f} µs of server CPU to an issuance, "
                         f"{mean / verify_us:.2f}x one P-256 verification ({verify_us:.1f} µs, `openssl speed ecdsap256`; by round {each})")
    return "\n".join(lines)


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    groups = []
    for number in range(ROUNDS):
        for side, binary in SIDES:
            side_rows, mean_group = http_rows(side, binary, f"{started:%H%M%S}-{number}-{side}")
            rows += side_rows
            groups.append(mean_group)
            if TOKENS:
                rows += jwt_rows(side, binary, f"{started:%H%M%S}-{number}-{side}")

    group = max(1, round(sum(groups) / len(groups)))
    if SQL_ROW:
        sql_coupon = create_coupon(400_000)
        transactions = max(1, 300_000 // group // 2)
        tps, cpu = pgbench_groups(sql_coupon, group, 2, transactions)
        sql_issued = audit(sql_coupon)
        sql_rate = sql_issued.held / (2 * transactions / tps)
        rows.append(("-", f"PostgreSQL alone: issue_tickets for groups of {group}, 2 connections (pgbench)", sql_rate, "issued",
                     per_answer(cpu, sql_issued.held), float("nan"), verdict(sql_issued)))
        print(f"  SQL groups of {group}: {sql_rate:,.0f} issued/s", flush=True)

    lines = ["| binary | what | rate | of its constant GET | server µs | PostgreSQL µs | wrk/pgbench µs | CPU µs total | p99 ms | audit |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    constant = None
    for side, label, rate, unit, cpu, p99, checked in rows:
        if label.startswith("constant answer, GET"):
            constant = rate
        total = sum(cpu.values())
        if unit == "s":
            lines.append(f"| {side} | {label} | {rate:.1f} s | | | | | | | {checked} |")
            continue
        lines.append(f"| {side} | {label} | {rate:,.0f} {unit}/s | {rate / constant:.2f} | {cpu.get('server', 0):.1f} | "
                     f"{cpu.get('postgres', 0):.1f} | {cpu.get('load', 0):.1f} | {total:.1f} | {p99:.2f} | {checked} |")
    binaries = ", ".join(f"`{side}` {binary}" for side, binary in SIDES)
    report = f"""## {started:%Y-%m-%d %H:%M} UTC{f': {LABEL}' if LABEL else ''}

Working tree at {first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])}{' with uncommitted changes' if subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "Sources", "migrations"]).returncode else ''}.
Binaries: {binaries}; {ROUNDS} round(s), sides alternating.
Machine: {wrk_machine()}.
{SECONDS} s per row; CPU per answer (per issued ticket for issuance), from /proc and wait4().

{chr(10).join(lines)}

{ratios(rows, p256_verify_micros())}
"""
    if JSON_OUT:
        with open(JSON_OUT, "w") as f:
            json.dump([{"side": side, "what": label, "rate": rate, "unit": unit, "cpu": cpu, "audit": checked}
                       for side, label, rate, unit, cpu, _, checked in rows], f)
    else:
        prepend_result("speed.md", "# Speed: CPU per issuance beside the framework's constant answer\n\n"
                       "Written by `bench/speed/run.sh`, newest first.\n\n", report)
    print(report)


if __name__ == "__main__":
    sys.exit(main())
