"""A migration applied while a sale runs, `python3 -m bench.migration.run`, run by bench/migration/run.sh
(which sets up PostgreSQL, migrates a database and sets DATABASE_URL and COUPON_BIN). About 5 minutes
with the defaults, 2-3 of them the fill.

The database is filled with BENCH_TICKETS tickets (10,000,000), in coupons of MIGRATION_COUPON_TICKETS
(1,000,000; the last one smaller), half of those coupons sold (their tickets written issued, in SQL,
as issue_tickets leaves them; the other half by add_coupon_tickets, free), then vacuumed, analyzed
and checkpointed: a table that looks like one that has sold for a while. Then two runs, one after the other, each on a fresh
coupon (too large to sell out) and a fresh server instance (default flags: a 3 s database deadline):

- live: new users arrive at MIGRATION_RATE (200/s) whatever the answers take (asyncio, a connection
  each, bench.lib.issue_async); MIGRATION_BEFORE (20 s) in, `coupon-server migrate --migrations
  <a copy of migrations/ with 0900_bench_live.sql>` applies a file the live-migration rule allows
  (docs/operations.md): `-- migrate: no-transaction`, an index built CONCURRENTLY, a CHECK added
  NOT VALID and then validated; the arrivals go on MIGRATION_AFTER (10 s) past its end.
- blocking: the same, with the same two changes in a plain transactional file (0901_bench_blocking.sql)
  in 0010's order: the CHECK added and validated at once, under coupon_tickets' ACCESS EXCLUSIVE lock,
  which the transaction keeps through the index build. The index and the constraint of the first run
  are dropped before it.

Every arrival is kept (its time, its latency from the moment it was sent, its answer) in
bench/results/tmp/migration/<run>.csv; the sessions waiting for coupon_tickets' lock and the index
build's phase are sampled every 0.25 s. Per run: the migration's duration, and for the arrivals
before, during and after it p50, p99, the longest wait and the answers other than 201. Every sale is
audited: audit_coupon() clean, every 201's user holds a ticket, every ticket held belongs to a user
sent. A section goes first in bench/results/migration.md. Exits non-zero when a migration fails or
an audit does not hold; a slow answer is a result.
"""
import asyncio
import concurrent.futures
import datetime
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from bench import lib
from bench.lib import ROOT, URL, Server, audit, checkpoint, create_coupon, first_line, issue_async, machine, prepend_result, psql

TICKETS = int(os.environ.get("BENCH_TICKETS", "10000000"))
PER_COUPON = int(os.environ.get("MIGRATION_COUPON_TICKETS", "1000000"))
SOLD_SHARE = 0.5
FILL_JOBS = 2                 # coupons filled at once (one psql each)
RATE = float(os.environ.get("MIGRATION_RATE", "200"))
BEFORE = float(os.environ.get("MIGRATION_BEFORE", "20"))
AFTER = float(os.environ.get("MIGRATION_AFTER", "10"))
PORT = int(os.environ.get("MIGRATION_PORT", "8431"))
LIMIT = 900                   # seconds a migration may take; arrivals stop then, the migration is awaited
TIMEOUT = 30                  # seconds an arrival waits for its answer (the server's deadline is 3)
SAMPLE_EVERY = 0.25
WORK = os.path.join(ROOT, "bench", "results", "tmp", "migration")
INDEX = "coupon_tickets_bench_issued_at"
CHECK = "coupon_tickets_bench_number_positive"
HEADER = """# A migration while a sale runs

Written by `bench/migration/run.sh`, newest first: a migration of the kind the live-migration rule
allows ([operations](../../docs/operations.md#migrations-while-instances-serve)) against the same
changes in one transaction, each applied with `coupon-server migrate` in the middle of a sale on a
database of millions of tickets.

"""

# The runs: (name, file, its text, what it is).
RUNS = [
    ("live", "0900_bench_live.sql", f"""-- migrate: no-transaction
-- bench/migration: what the live-migration rule allows (docs/operations.md). Each statement commits on
-- its own: the index is built CONCURRENTLY (writes go on), the CHECK is added NOT VALID (a moment's
-- lock, no scan) and validated apart (a lock writes pass).
CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON coupon_tickets (issued_at);
ALTER TABLE coupon_tickets ADD CONSTRAINT {CHECK} CHECK (number > 0) NOT VALID;
ALTER TABLE coupon_tickets VALIDATE CONSTRAINT {CHECK};
""", "no-transaction file: `CREATE INDEX CONCURRENTLY`, `ADD CONSTRAINT ... NOT VALID`, `VALIDATE CONSTRAINT`"),
    ("blocking", "0901_bench_blocking.sql", f"""-- bench/migration's contrast: the same two changes in one transaction, in 0010's order. The CHECK's
-- scan takes coupon_tickets' ACCESS EXCLUSIVE lock (no reads, no writes) and the transaction keeps it
-- through the index build until the COMMIT. (The other order deadlocked with the sale: the build's
-- SHARE lock, raised to ACCESS EXCLUSIVE, waited for an issuance that held ACCESS SHARE and waited
-- for the SHARE lock.)
ALTER TABLE coupon_tickets ADD CONSTRAINT {CHECK} CHECK (number > 0);
CREATE INDEX {INDEX} ON coupon_tickets (issued_at);
""", "transactional file: `ADD CONSTRAINT` validated at once, `CREATE INDEX`"),
]


def fill():
    """BENCH_TICKETS tickets in coupons of at most PER_COUPON, the first SOLD_SHARE of the coupons sold;
    then VACUUM (ANALYZE) and a CHECKPOINT. Returns (coupons, sold, seconds to insert, seconds to vacuum)."""
    sizes = [PER_COUPON] * (TICKETS // PER_COUPON) + ([TICKETS % PER_COUPON] if TICKETS % PER_COUPON else [])
    sold = round(len(sizes) * SOLD_SHARE)

    def one(index):
        quantity = sizes[index]
        if index < sold:
            # As issue_tickets leaves a sold coupon: every ticket with its user and its time (a millisecond
            # apart, over the last days), the counter at the quantity.
            psql(f"WITH c AS (INSERT INTO coupons (name, quantity, issued_count) VALUES ('fill {index + 1} (sold)', {quantity}, {quantity}) "
                 f"RETURNING id) INSERT INTO coupon_tickets (coupon_id, number, code, user_id, issued_at) "
                 f"SELECT c.id, g, new_ticket_code(c.id), 'fill-' || g, now() - interval '3 days' + g * interval '1 ms' "
                 f"FROM c, generate_series(1, {quantity}) AS g")
        else:
            create_coupon(quantity, f"fill {index + 1}")

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(FILL_JOBS) as pool:
        for future in [pool.submit(one, i) for i in range(len(sizes))]:
            future.result()
    inserted = time.monotonic() - started
    started = time.monotonic()
    psql("VACUUM (ANALYZE) coupon_tickets")
    checkpoint()
    return len(sizes), sold, inserted, time.monotonic() - started


def migrations_folder(name, text):
    """A copy of migrations/ (functions/ too) with the run's file added."""
    folder = tempfile.mkdtemp(prefix="coupon-migration-bench-")
    shutil.copytree(os.path.join(ROOT, "migrations"), folder, dirs_exist_ok=True)
    with open(os.path.join(folder, name), "w") as f:
        f.write(text)
    return folder


def reset_schema():
    """The bench's index and constraint gone, and the records of its files: the next run builds them again."""
    psql(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
    psql(f"ALTER TABLE coupon_tickets DROP CONSTRAINT IF EXISTS {CHECK}")
    psql("DELETE FROM schema_migrations WHERE version IN (900, 901)")


class Sampler(threading.Thread):
    """Every SAMPLE_EVERY s: (seconds since `start`, sessions waiting for a relation's lock (issuance
    behind the migration), sessions waiting for a transaction (the concurrent build waiting for the
    sale's), the index build's phase or "")."""

    def __init__(self, start):
        super().__init__(daemon=True)
        self.start_time = start
        self.samples = []
        self.stopping = threading.Event()

    def run(self):
        query = ("SELECT count(*) FILTER (WHERE wait_event = 'relation'), "
                 "count(*) FILTER (WHERE wait_event IN ('virtualxid', 'transactionid')), "
                 "coalesce((SELECT phase FROM pg_stat_progress_create_index LIMIT 1), '') "
                 "FROM pg_stat_activity WHERE datname = current_database()")
        while not self.stopping.wait(SAMPLE_EVERY):
            try:
                relation, transaction, phase = psql(query).split("|")
            except (subprocess.CalledProcessError, ValueError):
                continue
            self.samples.append((time.monotonic() - self.start_time, int(relation), int(transaction), phase))

    def stop(self):
        self.stopping.set()
        self.join()


async def sale(coupon, tag, folder):
    """Arrivals at RATE from now; the migration from BEFORE s; arrivals until AFTER s past its end.
    Returns (arrivals as (sent, seconds, status, user, lateness), the migration as a dict, samples)."""
    start = time.monotonic()
    sampler = Sampler(start)
    sampler.start()
    arrivals = []
    migration = {}

    async def arrive(n):
        sent = time.monotonic() - start
        status, _, seconds = await issue_async(PORT, coupon, f"{tag}-{n}", timeout=TIMEOUT)
        arrivals.append((sent, seconds, status, f"{tag}-{n}", sent - n / RATE))

    async def migrate():
        migration["started"] = time.monotonic() - start
        process = await asyncio.create_subprocess_exec(
            os.environ["COUPON_BIN"], "migrate", "--database-url", URL, "--migrations", folder, "--log-level", "info",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await process.communicate()
        migration["ended"] = time.monotonic() - start
        migration["returncode"] = process.returncode
        migration["output"] = output.decode(errors="replace").strip()

    tasks = set()
    running = None
    n = 0
    try:
        while True:
            now = time.monotonic() - start
            if running is None and now >= BEFORE:
                running = asyncio.create_task(migrate())
            if running is not None and running.done() and now >= migration["ended"] + AFTER:
                break
            if now >= BEFORE + LIMIT + AFTER:
                break
            while n / RATE <= now:
                task = asyncio.create_task(arrive(n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(max(0.0005, n / RATE - (time.monotonic() - start)))
        if running is not None:
            await running
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        sampler.stop()
    return arrivals, migration, sampler.samples


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]


def window(arrivals, low, high):
    """Figures of the arrivals sent in [low, high): count, p50, p99 and max in ms, answers but 201."""
    chosen = [a for a in arrivals if low <= a[0] < high]
    latencies = [a[1] * 1000 for a in chosen]
    others = {}
    for a in chosen:
        if a[2] != "201":
            others[a[2]] = others.get(a[2], 0) + 1
    return {"count": len(chosen), "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "max": max(latencies) if latencies else None, "others": others,
            "over_1s": sum(1 for x in latencies if x >= 1000), "over_3s": sum(1 for x in latencies if x > 3000)}


def check_sale(coupon, arrivals):
    """The audit of one sale: audit_coupon() clean, every 201's user a holder, every holder a user sent."""
    result = audit(coupon)
    problems = result.violations()
    holders = set(psql(f"SELECT user_id FROM coupon_tickets WHERE coupon_id = {coupon} AND user_id IS NOT NULL").split())
    issued = {a[3] for a in arrivals if a[2] == "201"}
    sent = {a[3] for a in arrivals}
    if issued - holders:
        problems.append(f"{len(issued - holders)} answered 201 without a ticket held")
    if holders - sent:
        problems.append(f"{len(holders - sent)} tickets held by users never sent")
    extra = len(holders - issued)
    note = f"; {extra} ticket(s) held by users answered otherwise (issued after their deadline)" if extra else ""
    return f"{result}; {len(issued):,} × 201{note}: " + ("clean" if not problems else "FAILED: " + "; ".join(problems)), not problems


def schema_state():
    """Whether the bench's index is valid and its constraint validated."""
    index = psql(f"SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('{INDEX}')") or "missing"
    constraint = psql(f"SELECT convalidated FROM pg_constraint WHERE conname = '{CHECK}'") or "missing"
    return index == "t" and constraint == "t", f"index valid: {index}, constraint validated: {constraint}"


def phases(samples, migration):
    """The index build's phases as seen, each with the seconds from the migration's start it was first
    and last seen."""
    seen = {}
    for t, _, _, phase in samples:
        if phase:
            first, _ = seen.get(phase, (t, t))
            seen[phase] = (first, t)
    return "; ".join(f"{phase} {a - migration['started']:.1f}-{b - migration['started']:.1f} s" for phase, (a, b) in seen.items()) or "none seen"


def ms(value, digits=1):
    return "-" if value is None else f"{value:,.{digits}f}"


def others_text(others):
    return ", ".join(f"{n:,} × {status}" for status, n in sorted(others.items())) or "none"


def run_one(name, file, text):
    folder = migrations_folder(file, text)
    try:
        # Enough for every arrival of a run that takes its whole LIMIT: it never sells out.
        coupon = create_coupon(int(RATE * (BEFORE + LIMIT + AFTER)) + 1000, f"migration bench {name}")
        checkpoint()
        tag = f"{name}-{datetime.datetime.now(datetime.timezone.utc):%H%M%S}"
        load = os.getloadavg()[0]
        with Server(PORT, log=True, log_level="error"):
            arrivals, migration, samples = asyncio.run(sale(coupon, tag, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    arrivals.sort()
    with open(os.path.join(WORK, f"{name}.csv"), "w") as f:
        f.write("sent_s,latency_ms,status,user,send_lateness_ms\n")
        f.writelines(f"{s:.4f},{l * 1000:.2f},{st},{u},{late * 1000:.2f}\n" for s, l, st, u, late in arrivals)
    with open(os.path.join(WORK, f"{name}-samples.csv"), "w") as f:
        f.write("seconds,waiting_relation_lock,waiting_transaction,index_phase\n")
        f.writelines(f"{t:.2f},{r},{x},{p}\n" for t, r, x, p in samples)
    started, ended = migration["started"], migration["ended"]
    figures = {"before": window(arrivals, 0, started), "during": window(arrivals, started, ended),
               "after": window(arrivals, ended, math.inf)}
    audit_text, clean = check_sale(coupon, arrivals)
    valid, state = schema_state()
    during_samples = [s for s in samples if started <= s[0] <= ended]
    result = {
        "name": name, "file": file, "text": text, "coupon": coupon, "migration": migration, "figures": figures,
        "audit": audit_text, "clean": clean, "schema": state, "valid": valid,
        "lock_queue": max((s[1] for s in during_samples), default=0),
        "phases": phases(samples, migration),
        "lateness": max((a[4] for a in arrivals), default=0.0) * 1000,
        "load": (load, os.getloadavg()[0]),
    }
    during = figures["during"]
    print(f"  {name}: migration {ended - started:.1f} s (exit {migration['returncode']}); during it {during['count']:,} arrivals, "
          f"p99 {ms(during['p99'])} ms, max {ms(during['max'])} ms, other answers {others_text(during['others'])}; "
          f"before it p99 {ms(figures['before']['p99'])} ms, max {ms(figures['before']['max'])} ms; "
          f"most sessions waiting for coupon_tickets' lock at once {result['lock_queue']}; {state}; audit {audit_text}", flush=True)
    if migration["returncode"] != 0:
        print(f"  migrate's output:\n    " + "\n    ".join(migration["output"].splitlines()[-20:]), flush=True)
    return result


def render(started, machine_line, load, fill_line, results):
    rows = []
    for r in results:
        b, d, a = (r["figures"][k] for k in ("before", "during", "after"))
        m = r["migration"]
        rows.append(f"| {r['name']} | {m['ended'] - m['started']:.1f} s{'' if m['returncode'] == 0 else ' (FAILED)'} | "
                    f"{b['count']:,} / {d['count']:,} / {a['count']:,} | {ms(b['p50'])} / {ms(d['p50'])} | "
                    f"{ms(b['p99'])} / **{ms(d['p99'])}** / {ms(a['p99'])} | {ms(b['max'])} / **{ms(d['max'])}** / {ms(a['max'])} | "
                    f"{d['over_1s']:,} / {d['over_3s']:,} | {others_text(d['others'])} | {r['lock_queue']} |")
    files = "\n".join(f"`{r['file']}` ({r['name']}):\n\n```sql\n{r['text']}```\n" for r in results)
    details = "\n".join(f"- {r['name']}: load average (1 min) {r['load'][0]:.2f} at its start, {r['load'][1]:.2f} at its end. The index build's phases (seconds from the migration's start): {r['phases']}. "
                        f"After it: {r['schema']}. Sale coupon {r['coupon']}: {r['audit']}." for r in results)
    live = next((r for r in results if r["name"] == "live"), None)
    blocking = next((r for r in results if r["name"] == "blocking"), None)
    summary = ""
    if live and blocking:
        summary = (f"\nThe longest issuance wait while the migration ran: **{ms(live['figures']['during']['max'], 0)} ms** for the "
                   f"live file ({live['migration']['ended'] - live['migration']['started']:.1f} s), "
                   f"**{ms(blocking['figures']['during']['max'], 0)} ms** for the transactional one "
                   f"({blocking['migration']['ended'] - blocking['migration']['started']:.1f} s; of its "
                   f"{blocking['figures']['during']['count']:,} arrivals {blocking['figures']['during']['over_1s']:,} waited 1 s or more "
                   f"and {blocking['figures']['during']['over_3s']:,} more than the server's 3 s database deadline; answers but 201: "
                   f"{others_text(blocking['figures']['during']['others'])})."
                   + (" The deadline counts from a request's arrival, its time queued included (since d1aab5f; before, a "
                      "transaction had the whole deadline again and a wait could reach twice it): past it the answer is 503, "
                      "and its transaction, still waiting on the lock, commits once the lock is free."
                      if blocking['figures']['during']['over_3s'] else "") + "\n")
    return f"""## {started:%Y-%m-%d %H:%M} UTC

Checkout at {first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])}{'' if subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "migrations"]).returncode == 0 else ' (migrations/ changed)'}; binary {os.environ['COUPON_BIN']}.
Machine: {machine_line}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min) when the run began.
Command: `bench/migration/run.sh` with BENCH_TICKETS={TICKETS}, MIGRATION_COUPON_TICKETS={PER_COUPON}, MIGRATION_RATE={RATE:g},
MIGRATION_BEFORE={BEFORE:g}, MIGRATION_AFTER={AFTER:g}.
{fill_line}
Each run: a fresh coupon and a fresh server instance (default flags: group size 512, pool of 20,
database deadline 3 s); new users arriving at {RATE:,.0f}/s whatever the answers take (Python asyncio, a
connection each, `bench.lib.issue_async`; the latest send {ms(max(r['lateness'] for r in results), 0)} ms after its due time); after {BEFORE:g} s,
`coupon-server migrate --database-url ... --migrations <a copy of migrations/ with the run's file>
--log-level info` (lock timeout 5 s, the default); the arrivals go on {AFTER:g} s past its end. Latency is
from an arrival's send to its answer; the windows are by send time: before the migration, during it,
after it. "lock queue": the most sessions seen at once waiting for a relation's lock (issuance behind
the migration; the server runs at most two transactions of a coupon at once, the other requests wait
in its queue), sampled every {SAMPLE_EVERY:g} s. Every arrival: `bench/results/tmp/migration/<run>.csv`.
{summary}
| run | migration | arrivals before / during / after | p50 ms before / during | p99 ms before / during / after | max ms before / during / after | waits ≥ 1 s / > 3 s during | answers but 201 during | lock queue |
|---|---:|---:|---:|---:|---:|---:|---|---:|
{chr(10).join(rows)}

{details}

{files}"""


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    load = os.getloadavg()
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    lib.raise_file_limit()
    machine_line = machine("the load generator, the server and PostgreSQL share the machine")
    print(f"migration bench: {TICKETS:,} tickets; arrivals at {RATE:g}/s; load average {load[0]:.2f}", flush=True)
    coupons, sold, inserted, vacuumed = fill()
    size = psql("SELECT pg_size_pretty(pg_total_relation_size('coupon_tickets'))")
    fill_line = (f"Database: {TICKETS:,} tickets in {coupons} coupons of up to {PER_COUPON:,}, {sold} of them sold "
                 f"(written issued, in SQL) and {coupons - sold} free (`add_coupon_tickets`), {FILL_JOBS} at a time: "
                 f"{inserted:.1f} s, then `VACUUM (ANALYZE) coupon_tickets` and a CHECKPOINT {vacuumed:.1f} s; "
                 f"coupon_tickets with its indexes {size}.")
    print(f"  {fill_line}", flush=True)
    results = []
    for name, file, text, _ in RUNS:
        reset_schema()
        results.append(run_one(name, file, text))
    reset_schema()
    prepend_result("migration.md", HEADER, render(started, machine_line, load, fill_line, results))
    print(f"written to bench/results/migration.md (every arrival: {os.path.relpath(WORK, ROOT)}/)")
    failed = [r["name"] for r in results if r["migration"]["returncode"] != 0 or not r["clean"] or not r["valid"]]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    lib.run_tool(main, "migration.md")
