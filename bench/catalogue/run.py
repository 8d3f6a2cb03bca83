"""The in-memory catalogue at scale, `python3 -m bench.catalogue.run`, run by bench/catalogue/run.sh
(which sets up PostgreSQL, the release build and two fresh migrated databases: DATABASE_URL and
ONE_DATABASE_URL).

0. Baseline: the resident memory (VmRSS) of a ready server whose catalogue is empty.
1. Many coupons: 99,000 finished coupons of 50 holders each (4,950,000 holders) and 1,000 open ones,
   made with set-based SQL. Seconds from process start to /readyz reporting the listener connected,
   RSS then and after 5 s idle, a few loser and winner requests on finished coupons, RSS after them.
2. One sold-out coupon of 1,000,000 holders in the second database. RSS at ready; one loser request,
   which has the instance load the holders; RSS once the gauge coupon_catalogue_holder_hashes says
   they are loaded; a winner's retry; 2,000 losers, counting the statements the database ran for them
   (pg_stat_statements).

One server process at a time, on loopback; every wait is bounded. Numbers only: the table puts each
beside its target, and nothing here fails the run.
"""
import collections
import datetime
import http.client
import os
import subprocess
import sys
import threading
import time

from bench import lib
from bench.lib import ROOT, URL, first_line, machine, metric, psql

ONE_URL = os.environ["ONE_DATABASE_URL"]
PORT = int(os.environ.get("CATALOGUE_PORT", "8471"))
READY_TIMEOUT = float(os.environ.get("CATALOGUE_READY_TIMEOUT", "300"))
HOLDER_METRIC = "coupon_catalogue_holder_hashes"

FINISHED = 99_000          # coupons that ended, every ticket issued
OPEN = 1_000               # coupons on sale, no ticket issued
PER_COUPON = 50            # tickets per coupon of the many-coupons case
SOLD_OUT = 1_000_000       # holders of the one sold-out coupon
LOSERS = 2_000
LOSER_CONNECTIONS = 4
LOAD_TIMEOUT = 60          # seconds to wait for the holders of the sold-out coupon
RSS_TARGET_MB = 32          # 10^6 bytes: 30.5 MiB

# The figures of the code before the holder-hash change: this script run on 2593a1b exported with
# `git archive` into a tree of its own (2026-11-25 20:46 UTC, this machine; the run before it read
# 30.47 s to ready for many coupons). Keyed "case: measurement" as in `report`.
BEFORE_LABEL = "before (commit 2593a1b)"
BEFORE = {
    "Baseline: RSS, ready server over an empty catalogue": "36 MiB",
    "Many coupons: creation (set-based SQL)": "31.3 s (+ 0.9 s VACUUM ANALYZE, CHECKPOINT)",
    "Many coupons: process start to /readyz listener connected": "26.74 s",
    "Many coupons: RSS at ready": "1,399 MiB",
    "Many coupons: RSS after 5 s idle": "1,399 MiB",
    "Many coupons: loser `nobody` on 3 finished coupons": "409 ended, 409 ended, 409 ended",
    "Many coupons: holder (number 7) of the same coupons": "200 #7, 200 #7, 200 #7",
    "Many coupons: RSS 1 s after those requests": "1,400 MiB",
    f"Many coupons: `{HOLDER_METRIC}` 1 s after them": "absent",
    "Sold out: creation (set-based SQL)": "8.4 s",
    "Sold out: process start to /readyz listener connected": "1.75 s",
    "Sold out: RSS at ready": "275 MiB",
    "Sold out: first loser": "409 sold_out",
    "Sold out: holders loaded": "no gauge (all loaded before ready); slept 10 s",
    "Sold out: RSS once loaded (2 s later)": "276 MiB (276 MiB)",
    "Sold out: RSS added: loaded (2 s later) minus at ready": "0 MiB (loaded before ready)",
    "Sold out: RSS added: loaded (2 s later) minus empty-catalogue baseline": "240 MiB",
    "Sold out: winner's retry": "200 #500000",
    f"Sold out: {LOSERS:,} losers ({LOSER_CONNECTIONS} connections)": "2,000 x 409 sold_out in 0.26 s",
    f"Sold out: statements the database ran for the {LOSERS:,} losers": "0 (0.000 per loser)",
    "Sold out: control: one request for a missing coupon": "404 coupon_not_found, 4 statements",
    "Sold out: RSS after the losers": "276 MiB",
}


def timed(url, text):
    start = time.monotonic()
    psql(text, url)
    return time.monotonic() - start


def mib(kib):
    return f"{kib / 1024:,.0f} MiB" if kib is not None else "n/a"


class Server(lib.Server):
    """One coupon-server process on PORT, its output in a temporary log shown if it dies."""

    def __init__(self, url):
        try:
            super().__init__(PORT, url=url, log_level="error", log=True)
        except RuntimeError as error:  # the port is taken
            raise RuntimeError(f"{error} (set CATALOGUE_PORT)") from None

    def ready_after(self):
        """Seconds from process start to the listener connected, or None (and why) past READY_TIMEOUT."""
        try:
            return self.wait_ready(READY_TIMEOUT) - self.started, None
        except RuntimeError as error:
            return None, str(error)

    def record_ready(self, result):
        """Waits for the listener; puts the time to ready (or why not) and the RSS then into `result`."""
        ready, problem = self.ready_after()
        result["ready"], result["ready_problem"] = ready, problem
        result["rss_ready"] = self.rss_kib()
        print(f"  ready: {f'{ready:.2f} s' if ready is not None else problem}; RSS {mib(result['rss_ready'])}", flush=True)

    def rss_kib(self):
        try:
            with open(f"/proc/{self.process.pid}/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            return None


def issue(coupon, user, connection=None):
    """bench.lib's issue request to this bench's server: (status, decoded body)."""
    return lib.issue(PORT, coupon, user, connection)


def outcome(status, body):
    """'409 ended', '200 #7', ...: the status and the problem code or ticket number."""
    if isinstance(body, dict) and "code" in body and "ticket" not in body:
        return f"{status} {body['code']}"
    if isinstance(body, dict) and "ticket" in body:
        return f"{status} #{body['ticket']['number']}"
    return str(status)


def holder_hashes():
    """The gauge's value (summed over labels), or None when /metrics has no such gauge."""
    return metric(PORT, HOLDER_METRIC)


STATEMENTS = ("SELECT queryid, calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 120) FROM pg_stat_statements "
              "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
              "AND query NOT ILIKE '%pg_stat_statements%'")


def statements(url):
    """Calls per statement in this database so far (not counting these look-ups)."""
    counts, texts = collections.Counter(), {}
    for line in psql(STATEMENTS, url).splitlines():
        queryid, calls, query = line.split("|", 2)
        counts[queryid] += int(calls)
        texts[queryid] = query
    return counts, texts


def statements_available(url):
    try:
        if "pg_stat_statements" not in psql("SHOW shared_preload_libraries", url):
            return False, "pg_stat_statements is not in shared_preload_libraries"
        psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", url)
        return True, None
    except subprocess.CalledProcessError as error:
        return False, error.stderr.strip()


def baseline():
    """RSS of a ready server over an empty catalogue (the second database, still empty)."""
    print("Baseline: a server over an empty catalogue", flush=True)
    server = Server(ONE_URL)
    try:
        ready, problem = server.ready_after()
        if problem:
            raise RuntimeError(problem)
        time.sleep(2)
        rss = server.rss_kib()
    finally:
        server.stop()
    print(f"  ready in {ready:.2f} s, RSS {mib(rss)}", flush=True)
    return {"ready": ready, "rss": rss}


def many_coupons():
    print(f"Many coupons: {FINISHED:,} finished x {PER_COUPON} holders, {OPEN:,} open x {PER_COUPON} free tickets",
          flush=True)
    created = timed(URL, f"""
        INSERT INTO coupons (name, quantity, issued_count, issued_through, ends_at)
        SELECT 'catalogue-' || n, {PER_COUPON},
               CASE WHEN n <= {FINISHED} THEN {PER_COUPON} ELSE 0 END,
               CASE WHEN n <= {FINISHED} THEN {PER_COUPON} ELSE 0 END,
               CASE WHEN n <= {FINISHED} THEN now() - interval '1 day' END
        FROM generate_series(1, {FINISHED + OPEN}) AS n
        ORDER BY n""")
    # LATERAL on c.quantity: one coupon's tickets after another, as a sale would lay them out.
    created += timed(URL, f"""
        INSERT INTO coupon_tickets (coupon_id, number, code, user_id, issued_at)
        SELECT c.id, t.n, md5(c.id || '-' || t.n),
               CASE WHEN c.ends_at IS NOT NULL THEN 'u' || ((c.id - 1) * {PER_COUPON} + t.n) END,
               CASE WHEN c.ends_at IS NOT NULL THEN c.ends_at - interval '1 hour' END
        FROM coupons AS c, LATERAL generate_series(1, c.quantity) AS t(n)""")
    # VACUUM too (sets hint bits and the visibility map, as on long-lived rows), then a checkpoint,
    # so neither runs under the server's start.
    settled = timed(URL, "VACUUM (ANALYZE) coupons, coupon_tickets") + timed(URL, "CHECKPOINT")
    coupons, holders, tickets = psql("SELECT (SELECT count(*) FROM coupons), count(user_id), count(*) "
                                         "FROM coupon_tickets").split("|")
    print(f"  created {int(coupons):,} coupons, {int(tickets):,} tickets ({int(holders):,} holders) in {created:.1f} s; "
          f"VACUUM ANALYZE + CHECKPOINT {settled:.1f} s", flush=True)
    samples = [line.split("|") for line in psql("""
        WITH finished AS (SELECT min(id) AS first, max(id) AS last FROM coupons WHERE ends_at IS NOT NULL)
        SELECT t.coupon_id, t.user_id, t.number, t.code
        FROM finished AS f, coupon_tickets AS t
        WHERE t.coupon_id IN (f.first, (f.first + f.last) / 2, f.last) AND t.number = 7
        ORDER BY t.coupon_id""").splitlines()]

    result = {"created": created, "settled": settled, "holders": int(holders)}
    server = Server(URL)
    try:
        server.record_ready(result)
        time.sleep(5)
        result["rss_idle"] = server.rss_kib()
        print(f"  RSS after 5 s idle: {mib(result['rss_idle'])}", flush=True)
        losers, winners = [], []
        for coupon, user, number, code in samples:
            status, body = issue(coupon, "nobody")
            losers.append(outcome(status, body))
            status, body = issue(coupon, user)
            ticket = body.get("ticket") if isinstance(body, dict) else None
            matches = ticket == {"number": int(number), "code": code}
            winners.append(outcome(status, body) + ("" if matches or status != 200 else " (ticket differs)"))
        result["losers"], result["winners"] = losers, winners
        time.sleep(1)  # holders a request asks for are loaded in the background
        result["rss_after"] = server.rss_kib()
        try:
            result["hashes"] = holder_hashes()
        except OSError:
            result["hashes"] = None
        print(f"  losers on coupons {[s[0] for s in samples]}: {losers}; winners: {winners}", flush=True)
        print(f"  1 s after them: RSS {mib(result['rss_after'])}; {HOLDER_METRIC}: {result['hashes']}", flush=True)
    finally:
        server.stop()
    return result


def losers_at_once(coupon):
    """LOSERS requests of distinct new users over LOSER_CONNECTIONS kept-alive connections."""
    answers = collections.Counter()
    lock = threading.Lock()

    def worker(index):
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        try:
            for n in range(index, LOSERS, LOSER_CONNECTIONS):
                try:
                    answer = outcome(*issue(coupon, f"loser-{n}", connection))
                except (OSError, http.client.HTTPException) as error:
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
                    answer = type(error).__name__
                with lock:
                    answers[answer] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(LOSER_CONNECTIONS)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers, time.monotonic() - start


def one_sold_out(empty):
    print(f"One sold-out coupon of {SOLD_OUT:,} holders", flush=True)
    start = time.monotonic()
    coupon = int(psql(url=ONE_URL, sql=f"""
        WITH c AS (
            INSERT INTO coupons (name, quantity, issued_count, issued_through)
            VALUES ('catalogue-sold-out', {SOLD_OUT}, {SOLD_OUT}, {SOLD_OUT}) RETURNING id
        ), t AS (
            INSERT INTO coupon_tickets (coupon_id, number, code, user_id, issued_at)
            SELECT c.id, n, md5(c.id || '-' || n), 'u' || n, now() - interval '1 hour'
            FROM c, generate_series(1, {SOLD_OUT}) AS n
        )
        SELECT id FROM c"""))
    created = time.monotonic() - start
    settled = timed(ONE_URL, "VACUUM (ANALYZE) coupons, coupon_tickets") + timed(ONE_URL, "CHECKPOINT")
    winner = SOLD_OUT // 2
    number, code = psql(url=ONE_URL, sql=f"SELECT number, code FROM coupon_tickets "
                                       f"WHERE coupon_id = {coupon} AND user_id = 'u{winner}'").split("|")
    print(f"  coupon {coupon} created in {created:.1f} s; VACUUM ANALYZE + CHECKPOINT {settled:.1f} s", flush=True)
    counting, why_not = statements_available(ONE_URL)

    result = {"created": created, "coupon": coupon, "counting": counting, "why_not": why_not}
    server = Server(ONE_URL)
    try:
        server.record_ready(result)

        asked = time.monotonic()
        result["first_loser"] = outcome(*issue(coupon, "first-loser"))
        hashes = holder_hashes()
        if hashes is None:
            result["load"] = f"no {HOLDER_METRIC} gauge in /metrics: slept 10 s instead"
            time.sleep(10)
        else:
            deadline = asked + LOAD_TIMEOUT
            while hashes < SOLD_OUT and time.monotonic() < deadline:
                time.sleep(0.1)
                hashes = holder_hashes()
            waited = time.monotonic() - asked
            result["load"] = (f"{HOLDER_METRIC} = {hashes:,.0f} after {waited:.1f} s"
                              + ("" if hashes >= SOLD_OUT else f" (gave up after {LOAD_TIMEOUT} s)"))
        result["hashes"] = hashes
        result["rss_loaded"] = server.rss_kib()
        time.sleep(2)
        result["rss_settled"] = server.rss_kib()
        print(f"  first loser: {result['first_loser']}; {result['load']}; RSS {mib(result['rss_loaded'])}, "
              f"2 s later {mib(result['rss_settled'])}", flush=True)

        status, body = issue(coupon, f"u{winner}")
        ticket = body.get("ticket") if isinstance(body, dict) else None
        result["winner"] = outcome(status, body) + (
            "" if status != 200 or ticket == {"number": int(number), "code": code} else " (ticket differs)")

        before = statements(ONE_URL) if counting else None
        answers, elapsed = losers_at_once(coupon)
        time.sleep(0.5)  # a statement is counted when it finishes
        if counting:
            after_counts, texts = statements(ONE_URL)
            ran = after_counts - before[0]
            result["statements"] = sum(ran.values())
            result["statement_list"] = [(calls, texts[q]) for q, calls in ran.most_common(8)]
        result["answers"], result["losers_seconds"] = answers, elapsed
        if counting:
            # The control: a coupon that does not exist is asked of the database the first time, so
            # the count above is not zero for want of counting.
            control = statements(ONE_URL)[0]
            result["control"] = outcome(*issue(coupon + SOLD_OUT, "control-user"))
            time.sleep(0.5)
            result["control_statements"] = sum((statements(ONE_URL)[0] - control).values())
        result["rss_after"] = server.rss_kib()
        print(f"  winner u{winner}: {result['winner']}; {LOSERS:,} losers in {elapsed:.2f} s: {dict(answers)}", flush=True)
        if counting:
            print(f"  statements run for them: {result['statements']}", flush=True)
            print(f"  control, a missing coupon: {result['control']}, {result['control_statements']} statements", flush=True)
            for calls, text in result["statement_list"]:
                print(f"    {calls:>6}  {text}", flush=True)
        else:
            print(f"  statements not counted: {why_not}", flush=True)
        print(f"  RSS after the losers: {mib(result['rss_after'])}", flush=True)
    finally:
        server.stop()
    result["added"] = (result["rss_settled"] - result["rss_ready"]) if result["rss_settled"] and result["rss_ready"] else None
    result["over_empty"] = (result["rss_settled"] - empty["rss"]) if result["rss_settled"] and empty["rss"] else None
    return result


def code_state():
    """The commit measured (CATALOGUE_CODE overrides it, e.g. for a tree exported without .git)."""
    if os.environ.get("CATALOGUE_CODE"):
        return os.environ["CATALOGUE_CODE"]
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not head:
        return "code outside git (set CATALOGUE_CODE to name it)"
    changed = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "Sources", "migrations", "Package.swift"],
                             capture_output=True, text=True).stdout.splitlines()
    return f"commit {head}" + (f" + uncommitted changes to {len(changed)} paths under Sources/, migrations/, Package.swift"
                               if changed else "")


def report(empty, many, one, started, code):
    def seconds(value, problem=None):
        return f"{value:.2f} s" if value is not None else (problem or "n/a")

    statements = (f"{one['statements']} ({one['statements'] / LOSERS:.3f} per loser)" if one["counting"]
                  else f"not counted ({one['why_not']})")
    rows = [
        ("Baseline", "RSS, ready server over an empty catalogue", "-", mib(empty["rss"])),
        ("Many coupons", "creation (set-based SQL)", "-",
         f"{many['created']:.1f} s (+ {many['settled']:.1f} s VACUUM ANALYZE, CHECKPOINT)"),
        ("Many coupons", "process start to /readyz listener connected", "-", seconds(many["ready"], many["ready_problem"])),
        ("Many coupons", "RSS at ready", "-", mib(many["rss_ready"])),
        ("Many coupons", "RSS after 5 s idle", "-", mib(many["rss_idle"])),
        ("Many coupons", "loser `nobody` on 3 finished coupons", "409 ended", ", ".join(many.get("losers", [])) or "n/a"),
        ("Many coupons", "holder (number 7) of the same coupons", "200 with its ticket", ", ".join(many.get("winners", [])) or "n/a"),
        ("Many coupons", "RSS 1 s after those requests", "-", mib(many["rss_after"])),
        ("Many coupons", f"`{HOLDER_METRIC}` 1 s after them", "-", "absent" if many["hashes"] is None else f"{many['hashes']:,.0f}"),
        ("Sold out", "creation (set-based SQL)", "-", f"{one['created']:.1f} s"),
        ("Sold out", "process start to /readyz listener connected", "-", seconds(one["ready"], one["ready_problem"])),
        ("Sold out", "RSS at ready", "-", mib(one["rss_ready"])),
        ("Sold out", "first loser", "409 sold_out", one["first_loser"]),
        ("Sold out", "holders loaded", f"`{HOLDER_METRIC}` = {SOLD_OUT:,} within {LOAD_TIMEOUT} s", one["load"]),
        ("Sold out", "RSS once loaded (2 s later)", "-", f"{mib(one['rss_loaded'])} ({mib(one['rss_settled'])})"),
        ("Sold out", "RSS added: loaded (2 s later) minus at ready", f"<= {RSS_TARGET_MB} MB ({RSS_TARGET_MB * 1e6 / 2**20:.1f} MiB)", mib(one["added"])),
        ("Sold out", "RSS added: loaded (2 s later) minus empty-catalogue baseline", f"<= {RSS_TARGET_MB} MB ({RSS_TARGET_MB * 1e6 / 2**20:.1f} MiB)",
         mib(one["over_empty"])),
        ("Sold out", "winner's retry", "200 with its ticket", one["winner"]),
        ("Sold out", f"{LOSERS:,} losers ({LOSER_CONNECTIONS} connections)", f"{LOSERS:,} x 409 sold_out",
         ", ".join(f"{v:,} x {k}" for k, v in one["answers"].most_common()) + f" in {one['losers_seconds']:.2f} s"),
        ("Sold out", f"statements the database ran for the {LOSERS:,} losers", "~0 per loser", statements),
        ("Sold out", "control: one request for a missing coupon", "404 coupon_not_found, >= 1 statement",
         f"{one['control']}, {one['control_statements']} statements" if one["counting"] else "not counted"),
        ("Sold out", "RSS after the losers", "-", mib(one["rss_after"])),
    ]
    lines = [f"| case | measurement | target | {BEFORE_LABEL} | this run |", "|---|---|---|---|---|"]
    for case, name, target, measured in rows:
        lines.append(f"| {case} | {name} | {target} | {BEFORE.get(f'{case}: {name}', '-')} | {measured} |")
    ran = ""
    if one.get("statement_list"):
        ran = "\n\nStatements the database ran during the losers (calls, text):\n\n" + "\n".join(
            f"- {calls}: `{text}`" for calls, text in one["statement_list"])
    return f"""# Catalogue memory and readiness

Run {started:%Y-%m-%d %H:%M} UTC by `bench/catalogue/run.sh` on {code}.
Machine: {machine(first_line(["swift", "--version"]), "client, server and database share the machine")}.

One server process at a time (`coupon-server serve`, LOG_LEVEL=error), RSS = VmRSS of /proc/PID/status
in MiB. Many coupons: {FINISHED:,} coupons ended a day ago with all {PER_COUPON} tickets issued (distinct users)
and {OPEN:,} open coupons of {PER_COUPON} free tickets, in one database. Sold out: one coupon of
{SOLD_OUT:,} tickets, all issued to distinct users, no window, in a second fresh database; the losers are
{LOSERS:,} distinct new users sent over {LOSER_CONNECTIONS} kept-alive connections after the holders are in
memory, counted with pg_stat_statements (every statement of that database, utility ones included).

{chr(10).join(lines)}{ran}
"""


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    code = code_state()
    print(f"Code: {code}", flush=True)
    empty = baseline()
    many = many_coupons()
    one = one_sold_out(empty)
    lib.write_result("catalogue.md", report(empty, many, one, started, code))


if __name__ == "__main__":
    sys.exit(main())
