"""The first-come-first-served gate of the popular Redis coupon designs beside PostgreSQL's own
issuance, at the datastore level, in one run: `python3 -m bench.alternatives.run`, run by
bench/alternatives/run.sh (which sets up PostgreSQL, migrates, and sets POSTMASTER_PID and
DATABASE_URL).

PostgreSQL: issue_tickets for groups of 1, 16 and 64 new users a transaction (bench/sql/group.sql,
pgbench, the 2 connections a server instance has per coupon), synchronous_commit on. Redis: one
script a request (bench/alternatives/gate.lua), a new random user each, from redis-benchmark with 64
connections, on a private redis-server whose AOF is fsynced `always`, then `everysec`; on the first,
also a coupon that sells out at once, for the rate of refusals. For every row the
tickets issued per second and the CPU per ticket of the datastore (the cluster's postgres processes;
redis-server) and of the load generator, from /proc and wait4(); every row ends with an audit."""
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request

from bench.cpu import after_client_exit, cluster_cpu, run_measured, stat
from bench.run import wrk_check
from bench.lib import (HOST, ROOT, Server, audit, checkpoint, create_coupon, first_line, machine, pgbench_tps, prepend_result,
                       psql, run_tool, wrk_result)

SECONDS = int(os.environ.get("ALT_SECONDS", "10"))
# Redis's connections: one script a request, so its clients are its concurrency.
CLIENTS = int(os.environ.get("ALT_CLIENTS", "64"))
# PostgreSQL's connections: a server instance has at most two transactions per coupon (docs/design.md,
# group issuance), each for a group of the requests waiting; more only queue on the coupon's row lock.
PG_CLIENTS = int(os.environ.get("ALT_PG_CLIENTS", "2"))
GROUPS = [int(g) for g in os.environ.get("ALT_GROUPS", "1,16,64").split(",")]
REDIS_PORT = int(os.environ.get("ALT_REDIS_PORT", "6390"))
REDIS_DIR = os.environ.get("ALT_REDIS_DIR", "/tmp/coupon-alt-redis")
POSTMASTER_PID = int(os.environ["POSTMASTER_PID"])
# Tickets a second a PostgreSQL coupon is made for: it must not sell out within its row.
PG_CEILING = int(os.environ.get("ALT_PG_CEILING", "60000"))
# The coupon of the Redis sell-out row: sold out within its first milliseconds.
SELLOUT_QUANTITY = 1000
# redis-benchmark draws each user from random() modulo this (it has no counter): 2^31 - 1 users, so a
# user drawn twice (an 'already' answer) is rare.
USERS = 2**31 - 1
GATE = os.path.join(ROOT, "bench", "alternatives", "gate.lua")
# Over HTTP (ALT_PARTS has "http"): the gate behind Hummingbird (bench/alternatives/gate-server, built
# by run.sh into ALT_GATE_BIN) beside coupon-server's issuance, wrk -t1 -c256 as bench/speed drives it.
PARTS = os.environ.get("ALT_PARTS", "datastore http").split()
GATE_BIN = os.environ.get("ALT_GATE_BIN")
GATE_PORT, SERVICE_PORT, HTTP_CONNECTIONS = 8420, 8421, 256
HEADER = """# Alternatives: the Redis gate of the popular FCFS designs beside PostgreSQL

Written by `bench/alternatives/run.sh`, newest first. At the datastore, each load generator speaks
to its datastore directly. Over HTTP (since 2026-12-08), the gate runs behind the same framework as
the service: `bench/alternatives/gate-server`, a bare Hummingbird app that calls the script once a
request on a few pipelined Redis connections (a RESP client written for the bench: none is mirrored
here), beside coupon-server's issuance, wrk driving both as bench/speed does.

The Redis gate (bench/alternatives/gate.lua) answers yes or no and keeps the user in a set; each
PostgreSQL ticket is also a numbered ticket row with its code and a `ticket.issued` event in the
outbox, in the same transaction. A group of N is N users issued by one call of issue_tickets, as
the server batches the requests waiting for the coupon, on the two connections an instance has per
coupon (more would only queue on the coupon's row lock); Redis runs one script per request, its
clients its only concurrency.

"""
DURABILITY = {
    "postgres": "synchronous_commit on: WAL flushed before COMMIT answers; a crash takes back nothing acknowledged",
    "always": "appendfsync always: AOF fsynced before the answer leaves; a crash takes back nothing acknowledged",
    "everysec": "appendfsync everysec: a crash of the machine can take back about the last second of acknowledged "
                "tickets (up to 2 s when fsync is slow)",
    "sellout": "as above (appendfsync always); a refusal writes nothing",
}


def measured(command, datastore_cpu, seconds=None):
    """Runs `command` to its end, or interrupts it (SIGINT) after `seconds`; returns (its stdout, wall
    seconds, {"datastore", "load"} CPU seconds spent meanwhile): `datastore_cpu`() before and after,
    the command's own from wait4()."""
    before, started = datastore_cpu(), time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(seconds, process.send_signal, [signal.SIGINT]) if seconds else None
    if timer:
        timer.start()
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.monotonic() - started
    if timer:
        timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in ((0, -signal.SIGINT) if timer else (0,)):
        raise subprocess.CalledProcessError(process.returncode, command, out, process.stderr.read())
    after_client_exit()
    return out, elapsed, {"datastore": datastore_cpu() - before, "load": usage.ru_utime + usage.ru_stime}


# PostgreSQL ---------------------------------------------------------------------------------------

def postgres_rows():
    coupons = {group: create_coupon(SECONDS * PG_CEILING, f"alternatives-{group}") for group in GROUPS}
    psql("VACUUM coupon_tickets")
    rows = []
    for group, coupon in coupons.items():
        checkpoint()
        command = ["pgbench", "-n", "-M", "prepared", "-c", str(PG_CLIENTS), "-j", str(min(PG_CLIENTS, 2)), "-T", str(SECONDS),
                   "-f", os.path.join(ROOT, "bench", "sql", "group.sql"), "-D", f"coupon={coupon}", "-D", f"group={group}",
                   os.environ["DATABASE_URL"]]
        out, _, cpu = measured(command, lambda: cluster_cpu(POSTMASTER_PID))
        transactions = int(out.split("number of transactions actually processed: ")[1].split()[0])
        held = audit(coupon)
        problems = held.violations()
        if held.held != transactions * group:
            problems.append(f"{held.held} tickets held for {transactions} transactions of {group}")
        if held.held == held.quantity:
            raise SystemExit(f"coupon {coupon} sold out within its row: raise ALT_PG_CEILING ({PG_CEILING})")
        rate = pgbench_tps(out) * group
        rows.append((f"PostgreSQL issue_tickets, groups of {group}, {PG_CLIENTS} connections (pgbench)", DURABILITY["postgres"],
                     rate, "tickets", cpu, held.held, "; ".join(problems) or f"clean ({held})"))
        print(f"  PostgreSQL, groups of {group}: {rate:,.0f} tickets/s", flush=True)
    return rows


# Redis --------------------------------------------------------------------------------------------

class Redis:
    """A private redis-server on 127.0.0.1:REDIS_PORT with its AOF on and fsynced as `appendfsync`
    says (no snapshots), in REDIS_DIR made afresh, and the gate's script loaded (`sha`). As a context
    manager: answering on entry, stopped and its folder removed on exit."""

    def __init__(self, appendfsync):
        with socket.socket() as probe:
            if probe.connect_ex((HOST, REDIS_PORT)) == 0:
                raise RuntimeError(f"something already listens on {HOST}:{REDIS_PORT}")
        shutil.rmtree(REDIS_DIR, ignore_errors=True)
        os.makedirs(REDIS_DIR)
        self.process = subprocess.Popen(
            ["redis-server", "--bind", HOST, "--port", str(REDIS_PORT), "--dir", REDIS_DIR, "--save", "",
             "--appendonly", "yes", "--appendfsync", appendfsync,
             "--pidfile", os.path.join(REDIS_DIR, "redis.pid"), "--logfile", os.path.join(REDIS_DIR, "redis.log")])

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-h", HOST, "-p", str(REDIS_PORT), *map(str, args)],
                              check=True, capture_output=True, text=True).stdout.strip()

    def cpu(self):
        """CPU seconds of redis-server, with its threads and the reaped children (AOF rewrites)."""
        s = stat(self.process.pid)
        return s.cpu + s.children

    def calls(self):
        """EVALSHA calls so far, and those that failed or were rejected (INFO commandstats)."""
        line = next((line for line in self.cli("INFO", "commandstats").splitlines() if line.startswith("cmdstat_evalsha:")),
                    "cmdstat_evalsha:calls=0")
        fields = dict(pair.split("=") for pair in line.split(":", 1)[1].split(","))
        return int(fields["calls"]), int(fields.get("failed_calls", 0)) + int(fields.get("rejected_calls", 0))

    def __enter__(self):
        deadline = time.monotonic() + 10
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                if self.cli("PING") == "PONG":
                    with open(GATE) as f:
                        self.sha = self.cli("SCRIPT", "LOAD", f.read())
                    return self
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"redis-server did not answer on {HOST}:{REDIS_PORT} (log: {REDIS_DIR}/redis.log)")

    def __exit__(self, *_):
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(REDIS_DIR, ignore_errors=True)


def redis_row(redis, label, durability, quantity, coupon, sells_out=False):
    """One redis-benchmark run of SECONDS against a coupon of `quantity` tickets, audited: SCARD of its
    users is the quantity less the tickets left, never above it, and no call failed. Its rate is of
    tickets issued, or with `sells_out` of answers (almost all refusals)."""
    users, left = f"coupon:{coupon}:users", f"coupon:{coupon}:left"
    redis.cli("SET", left, quantity)
    before = redis.calls()
    command = ["redis-benchmark", "-h", HOST, "-p", str(REDIS_PORT), "-c", str(CLIENTS), "-P", "1", "-n", str(2**31 - 1),
               "-r", str(USERS), "-q", "EVALSHA", redis.sha, "2", users, left, "u:__rand_int__"]
    _, seconds, cpu = measured(command, redis.cpu, SECONDS)
    calls, failed = (now - then for now, then in zip(redis.calls(), before))
    issued, remaining = int(redis.cli("SCARD", users)), int(redis.cli("GET", left))
    problems = ([f"{issued} users for {quantity} - {remaining} tickets"] if issued != quantity - remaining else []) + \
               ([f"{issued} tickets for {quantity}"] if issued > quantity else []) + \
               ([f"{failed} calls failed"] if failed else [])
    rate, unit, per = (calls / seconds, "answers", calls) if sells_out else (issued / seconds, "tickets", issued)
    refused = calls - issued
    checked = "; ".join(problems) or f"clean (quantity {quantity:,}, issued {issued:,}, left {remaining:,}, " \
                                     f"{refused:,} of {calls:,} calls refused)"
    print(f"  {label}: {rate:,.0f} {unit}/s, {checked}", flush=True)
    return label, durability, rate, unit, cpu, per, checked


def redis_rows():
    """A coupon of a billion tickets (not sold out within a row) on each instance; on the first, the
    sell-out coupon too."""
    rows = []
    for appendfsync in ("always", "everysec"):
        with Redis(appendfsync) as redis:
            rows.append(redis_row(redis, f"Redis gate, appendfsync {appendfsync}, {CLIENTS} connections (redis-benchmark)",
                                  DURABILITY[appendfsync], 10**9, 1))
            if appendfsync == "always":
                rows.append(redis_row(redis, f"Redis gate, appendfsync always, {CLIENTS} connections, sold out after "
                                             f"{SELLOUT_QUANTITY:,} (redis-benchmark)", DURABILITY["sellout"], SELLOUT_QUANTITY, 2,
                                      sells_out=True))
    return rows


# Over HTTP ----------------------------------------------------------------------------------------

def wrk_command(port, path, script, *args):
    command = ["wrk", "-t", "1", "-c", str(HTTP_CONNECTIONS), "-d", f"{SECONDS}s", "-s",
               os.path.join(ROOT, "bench", "wrk", script), f"http://{HOST}:{port}{path}"]
    return command + (["--", *args] if args else [])


def http_row(label, durability, port, pid, datastore_cpu, tally, coupon):
    """wrk issuance (every request a new user) against the server on `port`: tickets/s and CPU µs a
    ticket of the server, its datastore and wrk; checked against what the datastore holds, `tally`()
    giving (tickets issued so far, what is wrong with them)."""
    datastore_before, (issued_before, _) = datastore_cpu(), tally()
    out, cpu = run_measured(wrk_command(port, "", "issue.lua", str(coupon), f"alt-{port}-{time.time_ns()}"), pid)
    datastore, (issued, problems) = datastore_cpu() - datastore_before, tally()
    issued -= issued_before
    result = wrk_result(out)
    problems += [note for note in [wrk_check(result, issued, HTTP_CONNECTIONS)] if note]
    rate = issued / (result["duration_us"] / 1e6)
    print(f"  {label}: {rate:,.0f} tickets/s", flush=True)
    return (label, durability, f"{rate:,.0f} tickets/s", cpu["server"] / issued * 1e6, datastore / issued * 1e6,
            cpu["load"] / issued * 1e6, result["p99_us"] / 1000, "; ".join(problems) or "clean")


def constant_row(label, port, pid):
    out, cpu = run_measured(wrk_command(port, "/healthz", "constant.lua"), pid)
    result = wrk_result(out)
    print(f"  {label}: {result['rate']:,.0f}/s", flush=True)
    return (label, "-", f"{result['rate']:,.0f} answers/s", cpu["server"] / result["requests"] * 1e6, 0.0,
            cpu["load"] / result["requests"] * 1e6, result["p99_us"] / 1000, "-")


def wait_answering(url, alive, seconds=30):
    """Until `url` answers 200 (the gate server has no /readyz)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive():
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def http_rows():
    """coupon-server's issuance and the gate behind the same framework, each with its constant answer."""
    rows = []
    coupon = create_coupon(30_000 * SECONDS, "alternatives over HTTP")
    psql("VACUUM coupon_tickets")
    checkpoint()
    with Server(SERVICE_PORT, "--group-size", "512") as service:
        pid = service.process.pid
        rows.append(constant_row("coupon-server, constant answer (GET /healthz)", SERVICE_PORT, pid))

        def audited():
            result = audit(coupon)
            return result.held, result.violations()
        rows.append(http_row("coupon-server issuance (issue_tickets, groups as they form)", DURABILITY["postgres"], SERVICE_PORT,
                             pid, lambda: cluster_cpu(POSTMASTER_PID), audited, coupon))
    for appendfsync in ("always", "everysec"):
        with Redis(appendfsync) as redis:
            redis.cli("SET", "coupon:1:left", 10**9)
            gate = subprocess.Popen([GATE_BIN, "--port", str(GATE_PORT), "--redis-port", str(REDIS_PORT), "--script", GATE],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_answering(f"http://{HOST}:{GATE_PORT}/healthz", alive=lambda: gate.poll() is None)
                if appendfsync == "always":
                    rows.append(constant_row("Redis gate server, constant answer (GET /healthz)", GATE_PORT, gate.pid))

                def counted():
                    held, left = int(redis.cli("SCARD", "coupon:1:users")), int(redis.cli("GET", "coupon:1:left"))
                    return held, [] if held == 10**9 - left else [f"{held} users for {10**9 - left} tickets taken"]
                rows.append(http_row(f"Redis gate behind Hummingbird, appendfsync {appendfsync}", DURABILITY[appendfsync],
                                     GATE_PORT, gate.pid, redis.cpu, counted, 1))
            finally:
                gate.terminate()
                gate.wait(timeout=30)
    return rows


def http_table(rows):
    lines = ["| server | durability (what a crash can take back) | rate | server CPU µs per answer | datastore CPU µs | "
             "wrk CPU µs | p99 ms | audit |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for label, durability, rate, server, datastore, load, p99, checked in rows:
        lines.append(f"| {label} | {durability} | {rate} | {server:.1f} | {datastore:.1f} | {load:.1f} | {p99:.2f} | {checked} |")
    return "\n".join(lines)


def same_filesystem(*paths):
    """Whether the folders (or, for one not there, its parent) are on one filesystem."""
    return len({os.stat(p if os.path.exists(p) else os.path.dirname(p)).st_dev for p in paths}) == 1


def main():
    started = time.gmtime()
    rows = []
    if "datastore" in PARTS:
        print("PostgreSQL (pgbench):", flush=True)
        rows += postgres_rows()
        print("Redis (redis-benchmark):", flush=True)
        rows += redis_rows()
    http = []
    if "http" in PARTS:
        print("Over HTTP (wrk):", flush=True)
        http = http_rows()
    lines = ["| design | durability (what a crash can take back) | tickets/s | datastore CPU µs per ticket | "
             "client CPU µs per ticket | audit |", "|---|---|---:|---:|---:|---|"]
    for label, durability, rate, unit, cpu, per, checked in rows:
        shown = f"{rate:,.0f}" if unit == "tickets" else f"{rate:,.0f} answers/s, {SELLOUT_QUANTITY:,} issued"
        per_what = "" if unit == "tickets" else " (per answer)"
        lines.append(f"| {label} | {durability} | {shown} | {cpu['datastore'] / per * 1e6:.1f}{per_what} | "
                     f"{cpu['load'] / per * 1e6:.1f}{per_what} | {checked} |")
    redis = first_line(["redis-server", "--version"]).split(" sha=")[0].replace(" server v=", " ")
    disk = "on the filesystem of" if same_filesystem(REDIS_DIR, psql("SHOW data_directory")) else "not on the filesystem of"
    section = (f"## {time.strftime('%Y-%m-%d %H:%M UTC', started)}\n\n"
               f"Machine: {machine(redis, first_line(['pgbench', '--version']), 'datastores and load generators on the same cores')}.\n"
               f"{SECONDS} s per row (redis-benchmark pipelining 1, pgbench -j 2), every user new "
               f"(redis-benchmark draws them at random from {USERS:,}); the Redis AOF in {REDIS_DIR}, {disk} the "
               f"PostgreSQL cluster. CPU from /proc (every process of the cluster; redis-server with its threads and children) "
               f"and wait4() (the load generator).\n\n" + ("\n".join(lines) + "\n" if rows else "Datastore rows not run (ALT_PARTS).\n"))
    if http:
        section += (f"\nOver HTTP, behind the same framework, Hummingbird: coupon-server ({os.environ['COUPON_BIN']}, the "
                    f"working tree at {first_line(['git', '-C', ROOT, 'log', '-1', '--format=%h'])}) and "
                    f"bench/alternatives/gate-server (the script per request on 4 pipelined connections, no middleware): "
                    f"wrk -t1 -c{HTTP_CONNECTIONS}, {SECONDS} s a row, every request a new user (bench/wrk/issue.lua); CPU per "
                    f"answer (per ticket for issuance) of the server, its datastore (the cluster; redis-server) and wrk.\n\n"
                    + http_table(http) + "\n")
    prepend_result("alternatives.md", HEADER, section)
    print(section)
    return 0


if __name__ == "__main__":
    run_tool(main, "alternatives.md")
