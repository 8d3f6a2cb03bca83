"""What high availability costs: `python3 -m bench.ha.run`, run by bench/ha/run.sh (which starts the
primary, migrates, and sets DATABASE_URL, POSTMASTER_PID, HA_STANDBY_DATA and the lengths that
bench/speed and bench/openloop read).

Issuance on four setups of the database, side by side in one run (HA_SETUPS, "alone sync 1 5"):
- `alone`: the primary with no standby (synchronous_commit on, as today);
- `sync`: a standby copied with pg_basebackup -R, streaming on loopback and named in the primary's
  synchronous_standby_names: a COMMIT, and so a 201, waits until the standby has flushed its WAL
  (synchronous_commit = on, remote flush);
- `sync-1ms`, `sync-5ms`: the same with the standby connected through bench/ha/proxy.py, which adds
  that round trip between standby and primary.
Closed loop as bench/speed measures it (wrk -t1 -c256, every request a new user): issued/s, CPU per
ticket of the server, the primary and the standby, the proxy's apart, the mean group; HA_ROUNDS
rounds (2). Open loop as bench/openloop (k6 constant arrival rate, issuance only): p99 per step and
the knee. Every round and every step runs the setups in turn, the order reversed from one to the
next. Before each measured row of a synchronous setup the standby has replayed everything and the
primary's pg_stat_replication shows it with sync_state 'sync', or the run stops; once per run, with
the standby stopped, a commit must wait. Every coupon is audited. Adds a section to
bench/results/ha.md.
"""
import datetime
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass

from bench import lib
from bench.cpu import cluster_cpu, machine_busy, process_cpu
from bench.faults.ha import as_postgres
from bench.lib import HOST, ROOT, URL, audit, checkpoint, create_coupon, first_line, machine, psql
from bench.openloop import run as openloop
from bench.run import server, verdict, wrk_check
from bench.speed import run as speed

ROUNDS = int(os.environ.get("HA_ROUNDS", "2"))
# The standby on the port after the primary's, the proxy on the one after that.
PRIMARY_PORT = urllib.parse.urlparse(URL).port
STANDBY_PORT, PROXY_PORT = PRIMARY_PORT + 1, PRIMARY_PORT + 2
STANDBY_DATA = os.environ["HA_STANDBY_DATA"]
FOLDER = os.path.dirname(STANDBY_DATA)   # the standby's and the proxy's logs
STANDBY_URL = f"postgres://postgres@{HOST}:{STANDBY_PORT}/postgres"
NAME = "ha_standby"   # the standby's application_name and its replication slot
RESULT_HEADER = ("# What high availability costs: issuance with a synchronous standby\n\n"
                 "Written by `bench/ha/run.sh`, newest first.\n\n")


@dataclass(frozen=True)
class Setup:
    """`standby` False: the primary alone. `round_trip_ms` None: the standby straight on loopback;
    a number: through the proxy, which adds that round trip."""
    name: str
    standby: bool
    round_trip_ms: float | None = None


def parse_setup(word):
    if word in ("alone", "sync"):
        return Setup(word, word == "sync")
    return Setup(f"sync-{word}ms", True, float(word))


SETUPS = [parse_setup(word) for word in os.environ.get("HA_SETUPS", "alone sync 1 5").split()]


def wait(condition, what, seconds=600):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {seconds} s for {what}")
        time.sleep(0.1)


def listening(port):
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) == 0


def round_trip_ms(port, count=50):
    """The median milliseconds of `SELECT 1` in one psql session to the primary through `port`."""
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", f"postgres://postgres@{HOST}:{port}/postgres"],
                         input="\\timing on\n" + "SELECT 1;\n" * count, capture_output=True, text=True, check=True).stdout
    return statistics.median(float(ms) for ms in re.findall(r"Time: ([\d.]+) ms", out))


class Pair:
    """The primary (bench/ha/run.sh's cluster) and a standby copied from it on entry (with a
    replication slot, so that it catches up after the setups without it), in one setup at a time."""

    def __init__(self):
        self.setup = None
        self.standby_pid = self.standby_port = None
        self.proxy = None
        self.added_ms = {}   # per proxied setup, the round trip it added, measured each time it started
        self.checks = 0      # synchronous setups found synchronous before a measured row

    def __enter__(self):
        self.stop_standby()   # one a run killed midway left
        self.drop_slot()
        as_postgres("pg_basebackup", "-h", HOST, "-p", str(PRIMARY_PORT), "-D", STANDBY_DATA, "-R", "-C", "-S", NAME,
                    "--checkpoint=fast")
        return self

    def __exit__(self, *_):
        self.synchronous("")
        self.stop_standby()
        self.stop_proxy()
        self.drop_slot()

    def drop_slot(self):
        """The standby's slot dropped once its walsender is gone, and its data folder removed."""
        wait(lambda: psql(f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{NAME}' AND active") == "0",
             "the standby to let go of its slot", 30)
        psql(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{NAME}'")
        shutil.rmtree(STANDBY_DATA, ignore_errors=True)

    def use(self, setup):
        """Switches to `setup`. The primary stops waiting for the standby before it goes, and waits
        again only once the standby streams (has caught up)."""
        if setup == self.setup:
            return
        self.synchronous("")
        self.stop_standby()
        self.stop_proxy()
        self.setup = setup
        if not setup.standby:
            return
        port = PRIMARY_PORT
        if setup.round_trip_ms is not None:
            with open(os.path.join(FOLDER, "proxy.log"), "a") as log:
                self.proxy = subprocess.Popen([sys.executable, "-m", "bench.ha.proxy", str(PROXY_PORT), str(PRIMARY_PORT),
                                               f"{setup.round_trip_ms:g}"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            wait(lambda: listening(PROXY_PORT), "the proxy to listen", 10)
            self.added_ms.setdefault(setup.name, []).append(round_trip_ms(PROXY_PORT) - round_trip_ms(PRIMARY_PORT))
            port = PROXY_PORT
        self.start_standby(port)
        self.synchronous(NAME)
        wait(lambda: self.replication() == "streaming|sync", "the standby to be synchronous", 30)

    def start_standby(self, port):
        """The standby started, replicating from the primary through `port`, and caught up."""
        as_postgres("pg_ctl", "-D", STANDBY_DATA, "-l", os.path.join(FOLDER, "standby.log"), "-w", "-o",
                    f"-p {STANDBY_PORT} -c primary_conninfo='host={HOST} port={port} user=postgres application_name={NAME}'",
                    "start")
        with open(os.path.join(STANDBY_DATA, "postmaster.pid")) as f:
            self.standby_pid = int(f.readline())
        self.standby_port = port
        wait(lambda: self.replication() in ("streaming|async", "streaming|sync"), "the standby to catch up")

    def replication(self):
        """The standby's state and sync_state on the primary, `state|sync_state` ("" when not connected)."""
        return psql(f"SELECT state, sync_state FROM pg_stat_replication WHERE application_name = '{NAME}'")

    def synchronous(self, names):
        psql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
        psql("SELECT pg_reload_conf()")

    def stop_standby(self):
        if os.path.exists(os.path.join(STANDBY_DATA, "postmaster.pid")):
            as_postgres("pg_ctl", "-D", STANDBY_DATA, "-m", "fast", "-w", "stop", check=False)
        self.standby_pid = None

    def stop_proxy(self):
        if self.proxy:
            self.proxy.terminate()
            self.proxy.wait()
            self.proxy = None

    def settle(self):
        """Before a measured row: a checkpoint, and in a synchronous setup the standby has replayed
        everything before it (the coupon made, the VACUUM), checkpointed too, and streams with sync_state
        'sync'; in the setup without it, no standby is connected and none is waited for."""
        checkpoint()
        if not self.setup.standby:
            if psql("SELECT count(*) FROM pg_stat_replication") != "0" or psql("SHOW synchronous_standby_names"):
                raise RuntimeError(f"{self.setup.name}: a standby is connected or waited for")
            return
        lsn = psql("SELECT pg_current_wal_lsn()")
        wait(lambda: psql(f"SELECT replay_lsn >= '{lsn}' FROM pg_stat_replication WHERE application_name = '{NAME}'") == "t",
             "the standby to replay")
        psql("CHECKPOINT", STANDBY_URL)
        if (state := self.replication()) != "streaming|sync":
            raise RuntimeError(f"{self.setup.name}: the standby is '{state}' on the primary, not streaming|sync")
        self.checks += 1

    def commits_wait(self):
        """With the standby stopped, a commit on the primary waits for it: a second later it has not
        returned and its backend waits on `SyncRep`; it returns once the standby is back. Raises
        otherwise."""
        self.stop_standby()
        commit = subprocess.Popen(["psql", "-X", "-q", URL, "-c", "CREATE TEMP TABLE waits ()"], stdout=subprocess.DEVNULL)
        time.sleep(1)
        waiting = psql("SELECT wait_event FROM pg_stat_activity WHERE query = 'CREATE TEMP TABLE waits ()'")
        returned = commit.poll()
        self.start_standby(self.standby_port)
        if returned is not None or waiting != "SyncRep" or commit.wait(timeout=60) != 0:
            raise RuntimeError(f"with the standby stopped, a commit did not wait for it (exit {returned}, wait event '{waiting}')")

    def cpu(self):
        """CPU seconds so far of the primary, the standby and the proxy (0 for what does not run)."""
        return {"primary": cluster_cpu(openloop.POSTMASTER_PID),
                "standby": cluster_cpu(self.standby_pid) if self.standby_pid else 0.0,
                "proxy": process_cpu(self.proxy.pid) if self.proxy else 0.0}


def closed_row(pair, running, tag):
    """wrk as bench/speed runs it on a fresh coupon: issued/s, CPU µs per ticket, mean group."""
    coupon = create_coupon(60_000 * speed.SECONDS, f"ha closed loop {tag}")
    psql("VACUUM coupon_tickets")
    pair.settle()
    groups = speed.counter("coupon_issue_group_size_count"), speed.counter("coupon_issue_group_size_sum")
    before = audit(coupon).held
    start = pair.cpu() | {"machine": machine_busy()}
    result = speed.measure(running, speed.wrk("", "issue.lua", str(coupon), f"ha-{tag}"))
    spent = {part: seconds - start[part] for part, seconds in (pair.cpu() | {"machine": machine_busy()}).items()}
    other = spent.pop("machine") - sum(spent.values()) - result["cpu"]["server"] - result["cpu"]["load"]
    after = audit(coupon)
    issued = after.held - before
    transactions = speed.counter("coupon_issue_group_size_count") - groups[0]
    seconds = result["duration_us"] / 1e6
    return {"setup": pair.setup.name, "rate": issued / seconds,
            "cpu": speed.per_answer({"server": result["cpu"]["server"], **spent}, issued),
            "proxy_cores": spent["proxy"] / seconds, "other_cores": max(0.0, other) / seconds, "p99": result["p99_us"] / 1000,
            "mean_group": (speed.counter("coupon_issue_group_size_sum") - groups[1]) / transactions if transactions else 0,
            "audit": verdict(after, wrk_check(result, issued, speed.CONNECTIONS))}


def open_step(pair, running, rate, run_tag):
    """One step of bench/openloop's issuance at `rate` arrivals/s on a fresh coupon."""
    coupon = create_coupon(openloop.quantity(rate), f"ha open loop {pair.setup.name} {rate}/s")
    psql("VACUUM coupon_tickets")
    pair.settle()
    return openloop.run_k6([running], pair.setup.name, 1, rate, "issue", coupon, f"{run_tag}-{pair.setup.name}-{rate}")


def closed_table(rows):
    base = statistics.mean(r["rate"] for r in rows if r["setup"] == SETUPS[0].name)
    lines = [f"| setup | issued/s | of {SETUPS[0].name}'s | by round | server µs | primary µs | standby µs | "
             "CPU µs per ticket | mean group | p99 ms | proxy µs per ticket (cores) | other work, cores | audit |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for setup in SETUPS:
        mine = [r for r in rows if r["setup"] == setup.name]
        rate = statistics.mean(r["rate"] for r in mine)
        cpu = {part: statistics.mean(r["cpu"].get(part, 0) for r in mine) for part in ("server", "primary", "standby", "proxy")}
        by_round = ", ".join(f"{r['rate']:,.0f}" for r in mine)
        proxy = f"{cpu['proxy']:.1f} ({statistics.mean(r['proxy_cores'] for r in mine):.3f})" if setup.round_trip_ms is not None else "-"
        lines.append(f"| {setup.name} | {rate:,.0f} | {rate / base:.2f} | {by_round} | "
                     f"{cpu['server']:.1f} | {cpu['primary']:.1f} | {cpu['standby']:.1f} | "
                     f"{cpu['server'] + cpu['primary'] + cpu['standby']:.1f} | "
                     f"{statistics.mean(r['mean_group'] for r in mine):.1f} | {statistics.mean(r['p99'] for r in mine):.1f} | "
                     f"{proxy} | {statistics.mean(r['other_cores'] for r in mine):.2f} | {'; '.join(sorted({r['audit'] for r in mine}))} |")
    return "\n".join(lines)


def open_table(steps):
    lines = [f"| setup | knee | mean group at the knee | p99 ms at {' | '.join(f'{rate:,}/s' for rate in openloop.RATES)} |",
             f"|---|---:|---:|{'---:|' * len(openloop.RATES)}"]
    for setup in SETUPS:
        mine = {s["rate"]: s for s in steps if s["side"] == setup.name}
        best, _ = openloop.knee(mine.values())
        knee = "none" if best is None else f"{best:,}/s" + (" (every step)" if best == max(openloop.RATES) else "")
        group = "-" if best is None else openloop.cell(mine[best]["mean_group"])
        cells = [f"{mine[rate]['p99']:,.1f}{'' if openloop.holds(mine[rate]) else ' ✗'}" for rate in openloop.RATES]
        lines.append(f"| {setup.name} | {knee} | {group} | {' | '.join(cells)} |")
    return "\n".join(lines)


def setups_text(pair):
    lines = []
    for setup in SETUPS:
        if not setup.standby:
            text = "the primary with no standby (`synchronous_standby_names` empty; the standby stopped)"
        elif setup.round_trip_ms is None:
            text = "the standby straight to the primary on loopback"
        else:
            added = pair.added_ms.get(setup.name, [])
            text = (f"the standby through `bench/ha/proxy.py`, adding {setup.round_trip_ms:g} ms of round trip (measured: "
                    f"+{statistics.median(added):.2f} ms, `SELECT 1` through the proxy against straight, median of 50 "
                    f"each time it started, median of its {len(added)} starts)")
        lines.append(f"- `{setup.name}`: {text}")
    return "\n".join(lines)


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    os.makedirs(openloop.WORK, exist_ok=True)
    run_tag = f"ha{started:%Y%m%d%H%M%S}"
    machine_line = machine(first_line(["wrk", "--version"]).split(" [")[0], first_line(["k6", "version"]).split(" (")[0],
                           "the server, wrk or k6, the primary, the standby and the proxy on the same cores and one disk")
    rows, steps = [], []
    with Pair() as pair, server(group_size=512) as running:
        first_sync = next((s for s in SETUPS if s.standby), None)
        if first_sync:
            pair.use(first_sync)
            pair.commits_wait()
            print("with the standby stopped, a commit waited for it", flush=True)
        blocks = [("closed", n) for n in range(ROUNDS)] + [("open", rate) for rate in openloop.RATES]
        for turn, (kind, value) in enumerate(blocks):
            for setup in SETUPS if turn % 2 == 0 else SETUPS[::-1]:
                pair.use(setup)
                if kind == "closed":
                    rows.append(row := closed_row(pair, running, f"{run_tag}-{value}-{setup.name}"))
                    print(f"  round {value + 1}, {setup.name}: {row['rate']:,.0f} issued/s, "
                          f"{sum(row['cpu'].get(p, 0) for p in ('server', 'primary', 'standby')):.1f} µs per ticket, "
                          f"mean group {row['mean_group']:.1f}, proxy {row['proxy_cores']:.3f} cores, audit {row['audit']}", flush=True)
                else:
                    steps.append(step := open_step(pair, running, value, run_tag))
                    print(f"  {value:,}/s, {setup.name}: p99 {step['p99']:.1f} ms, failed {step['failed']}, dropped "
                          f"{step['dropped']}, mean group {openloop.cell(step['mean_group'])}"
                          f"{'' if openloop.holds(step) else '  (does not hold)'}", flush=True)
    audit_lines, clean = openloop.audit_issuance(steps)
    clean &= all(r["audit"] == "clean" for r in rows)
    commit = ("not checked (no synchronous setup)" if not any(s.standby for s in SETUPS) else
              "and once, with the standby stopped, a commit (`CREATE TEMP TABLE`) had not returned a second later, its backend "
              "waiting on `SyncRep`, and returned once the standby was back")
    dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "Sources", "migrations"]).returncode
    report = f"""## {started:%Y-%m-%d %H:%M} UTC: issuance on {', '.join(f'`{s.name}`' for s in SETUPS)}

Working tree at {first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])}{' with uncommitted changes' if dirty else ''}; binary {os.environ['COUPON_BIN']}.
Machine: {machine_line}.

Setups (synchronous ones: `synchronous_standby_names = '{NAME}'`, `synchronous_commit = on`, the standby a
`pg_basebackup -R` copy with a replication slot, on the same machine; the server connects to the primary):
{setups_text(pair)}

Synchronous for real: before each of the {pair.checks} measured rows and steps of a synchronous setup, the standby
had replayed everything before it and the primary's `pg_stat_replication` showed it `streaming`, sync_state
`sync` (the run stops otherwise); {commit}.

### Closed loop

As `bench/speed` (wrk -t1 -c256, {speed.SECONDS} s per row, every request a new user, one server with
`--group-size 512`), {ROUNDS} round(s), the setups in turn, the order reversed each round; a fresh coupon,
`VACUUM` and `CHECKPOINT` (on both) before each row. CPU µs per ticket issued, from /proc: the server, the
primary cluster, the standby cluster; their sum; the proxy apart (µs per ticket, and cores over the row).
"other work": the rest of the machine's busy time apart from wrk, in cores; anything above 0.1 is
another program sharing the machine. Means over the rounds.

{closed_table(rows)}

### Open loop

As `bench/openloop` (k6 constant arrival rate, issuance only, the same server), {openloop.WARMUP:g} s of
warm-up then {openloop.SECONDS:g} s measured per step, the setups in turn at each step, the order
reversed from step to step. The knee: the highest rate with p99 < {openloop.SLO_MS} ms, no failed request
and no dropped arrival (✗: a step that does not hold). Mean group: users per issuance transaction,
warm-up included.

{open_table(steps)}

Audit: **{'clean' if clean else 'FAILED'}** (every closed-loop row above; the open-loop coupons:
{sum(1 for line in audit_lines if line.endswith(': ok'))} of {len(audit_lines)} ok).
""" + "".join(f"{line}\n" for line in audit_lines if not line.endswith(": ok"))
    lib.prepend_result("ha.md", RESULT_HEADER, report)
    print(report)
    return 0 if clean else 1


if __name__ == "__main__":
    lib.run_tool(main, "ha.md")
