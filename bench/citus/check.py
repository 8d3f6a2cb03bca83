"""The service on a Citus cluster, proven by the same burst and audit as on one database; run by
scripts/citus-check.sh COORDINATOR_URL [PLAIN_URL].

Against the coordinator (DATABASE_URL), with two coupon-server instances:
  1. the schema is distributed: coupons and coupon_tickets by coupon, colocated, issue_tickets delegated;
  2. a burst 1.5x oversubscribed over both instances: exactly the quantity issued;
  3. every user sent to both instances at once: one ticket each, the same code on both;
  4. after the sell-out, every instance refuses from memory: the sell-out's notification, sent on the
     worker that holds the coupon, reached both catalogues;
  5. a sale of several coupons at once, on shards of different workers;
  6. every other route, and checkout by code: a lookup on one shard, a hold, a confirmation, a restore,
     a lapse cleared by a read, a return to the pool; tickets issued before an upgrade (--from) found
     by their codes.
Each ends with the database audit; before them, every index of coupons, coupon_tickets and outbox
is valid, on the coordinator and on every shard. With PLAIN_URL (BASELINE_URL here), the burst and the
several-coupon sale also run on that plain PostgreSQL in the same run, so the rates stand side by side.
Loopback only; every wait bounded. Exits non-zero when a check fails.
"""
import asyncio
import datetime
import math
import os
import re
import subprocess
import sys
import time
import urllib.parse

from bench import lib
from bench.lib import ROOT, URL, Server, create_coupon_over_http, issue_async, metric, pgbench_tps, psql, request_async

TOKEN = lib.ADMIN_TOKEN
check = lib.Checks("citus check")


def audited(name, coupon, url, sold_out=True):
    result = lib.audit(coupon, url)
    problems = result.violations(sold_out=sold_out)
    check(not problems, f"{name}: audit {result}: {'; '.join(problems) or 'clean'}")
    return result


def statuses(results):
    counted = {}
    for status, _, _ in results:
        counted[status] = counted.get(status, 0) + 1
    return dict(sorted(counted.items()))


async def burst(ports, coupon, users, prefix):
    """Every user once, spread over the instances, all at once; (answers, seconds)."""
    started = time.monotonic()
    results = await asyncio.gather(*(issue_async(ports[n % len(ports)], coupon, f"{prefix}{n}") for n in range(users)))
    return results, time.monotonic() - started


def distribution(url):
    """How the coupon tables and issue_tickets are placed, from the coordinator's metadata."""
    tables = psql("SELECT logicalrelid::text || ':' || column_to_column_name(logicalrelid, partkey) || ':' || colocationid "
                  "FROM pg_dist_partition WHERE logicalrelid::text IN ('coupons', 'coupon_tickets') ORDER BY 1", url)
    functions = psql("SELECT p.proname || ':' || coalesce(d.distribution_argument_index::text, '-') || ':' || "
                     "coalesce(d.force_delegation::text, '-') FROM pg_dist_object d JOIN pg_proc p ON p.oid = d.objid "
                     "WHERE d.classid = 'pg_proc'::regclass AND d.distribution_argument_index IS NOT NULL ORDER BY 1", url)
    return tables.splitlines(), functions.splitlines()


def worker_of(coupon, url):
    return psql(f"SELECT nodename || ':' || nodeport FROM citus_shards s JOIN pg_dist_shard d USING (shardid) "
                f"WHERE s.table_name = 'coupons'::regclass "
                f"AND get_shard_id_for_distribution_column('coupons', {coupon}) = s.shardid", url)


async def several(ports, url, base, coupons, quantity, prefix, cluster):
    """`coupons` coupons sold at once, each 1.5x oversubscribed; (coupon ids, issued, seconds). On a
    cluster, the last is replaced until the coupons are on more than one worker (ids 4 to 12 all hash
    to one worker of two: a run's ids alone do not make sure)."""
    ids = [create_coupon_over_http(base, TOKEN, f"{prefix} {n}", quantity) for n in range(coupons)]
    for _ in range(64):
        if not cluster or len({worker_of(coupon, url) for coupon in ids}) > 1:
            break
        ids[-1] = create_coupon_over_http(base, TOKEN, f"{prefix} {coupons - 1}", quantity)
    started = time.monotonic()
    await asyncio.gather(*(issue_async(ports[n % len(ports)], coupon, f"{prefix}-{coupon}-{n}")
                           for coupon in ids for n in range(quantity * 3 // 2)))
    seconds = time.monotonic() - started
    issued = sum(audited(f"{prefix}: coupon {coupon}", coupon, url).held for coupon in ids)
    return ids, issued, seconds


async def every_route(port, url, base):
    """Resize, grants, redemption, restore, return to the pool, a user's tickets and the winners' export
    on one coupon: each answered as on one database, and the audit after."""
    coupon = create_coupon_over_http(base, TOKEN, "routes", 3)
    calls = [
        ("PATCH", f"/v1/coupons/{coupon}", {"quantity": 5}, TOKEN, "200"),
        ("POST", f"/v1/coupons/{coupon}/grants", {"user_ids": ["r1", "r2", "r3", "r1"]}, TOKEN, "200"),
        ("POST", f"/v1/coupons/{coupon}/tickets/r1/redemption", {"order_id": "o-1"}, None, "201"),
        ("POST", f"/v1/coupons/{coupon}/tickets/r1/redemption", {"order_id": "o-2"}, None, "409"),
        ("DELETE", f"/v1/coupons/{coupon}/tickets/r1/redemption?order_id=o-1", None, None, "200"),
        ("DELETE", f"/v1/coupons/{coupon}/tickets/r2", None, TOKEN, "204"),
        ("PATCH", f"/v1/coupons/{coupon}", {"quantity": 2}, TOKEN, "200"),
        ("POST", f"/v1/coupons/{coupon}/issue", {"user_id": "r4"}, None, "409"),
        ("GET", "/v1/users/r1/tickets", None, None, "200"),
        ("GET", f"/v1/coupons/{coupon}/tickets?limit=1", None, TOKEN, "200"),
    ]
    answers = [await request_async(port, method, path, body, token=token) for method, path, body, token, _ in calls]
    got = [status for status, _, _ in answers]
    expected = [status for *_, status in calls]
    check(got == expected, f"every route: {got} (expected {expected})")
    audited("every route", coupon, url, sold_out=False)
    # Each change wrote its event in its transaction, on the coupon's worker on a cluster.
    types = psql(f"SELECT string_agg(type, ',' ORDER BY position, within) FROM outbox_events WHERE coupon_id = {coupon}", url).split(",")
    wanted = ["coupon.created", "coupon.changed"] + ["ticket.issued"] * 3 + [
        "ticket.redeemed", "ticket.restored", "ticket.returned", "coupon.changed", "coupon.sold_out"]
    check(types == wanted, f"every route: the outbox holds its events in commit order: {types}")


async def sale_control(ports, url, base):
    """A window moved and a sale closed on one instance (close_sale, on the coupon's worker on a
    cluster): both instances follow, nothing is issued at or after the close, and the audit after."""
    coupon = create_coupon_over_http(base, TOKEN, "control", 10)
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    steps = [
        (ports[0], "POST", f"/v1/coupons/{coupon}/issue", {"user_id": "c1"}, None, "201"),
        (ports[0], "PATCH", f"/v1/coupons/{coupon}", {"starts_at": later}, TOKEN, "200"),
        (ports[1], "POST", f"/v1/coupons/{coupon}/issue", {"user_id": "c2"}, None, "409"),
        (ports[1], "PATCH", f"/v1/coupons/{coupon}", {"starts_at": None}, TOKEN, "200"),
        (ports[0], "POST", f"/v1/coupons/{coupon}/issue", {"user_id": "c3"}, None, "201"),
        (ports[1], "POST", f"/v1/coupons/{coupon}/close", None, TOKEN, "200"),
        (ports[0], "POST", f"/v1/coupons/{coupon}/issue", {"user_id": "c4"}, None, "409"),
        (ports[1], "POST", f"/v1/coupons/{coupon}/issue", {"user_id": "c5"}, None, "409"),
    ]
    answers = []
    for port, method, path, body, token, _ in steps:
        answers.append(await request_async(port, method, path, body, token=token))
        if token:
            await asyncio.sleep(0.5)  # the other instance's catalogue follows at the notification
    got = [status for status, _, _ in answers]
    check(got == [status for *_, status in steps], f"sale control: {got} (expected {[status for *_, status in steps]})")
    codes = [(body or {}).get("code") for _, body, _ in answers]
    check(codes[2] == "not_started" and codes[6] == "ended" and codes[7] == "ended", f"sale control: refusals {codes[2]}, {codes[6]}, {codes[7]}")
    late = psql(f"SELECT count(*) FROM coupon_tickets t JOIN coupons c ON c.id = t.coupon_id "
                f"WHERE t.coupon_id = {coupon} AND c.id = {coupon} AND t.issued_at >= c.ends_at", url)
    check(late == "0", f"sale control: tickets issued at or after the close: {late}")
    audited("sale control", coupon, url, sold_out=False)


async def checkout_by_code(port, url, base, cluster):
    """A ticket looked up by its code (on a cluster, one shard: its plan), held for an order, refused
    to another, confirmed, restored; a hold that lapses cleared by the next lookup; a ticket returned
    to the pool and its old code gone. The database's state checked at each step, and the audit after."""
    coupon = create_coupon_over_http(base, TOKEN, "checkout", 3)
    codes = {}
    for user in ("k1", "k2"):
        status, body, _ = await issue_async(port, coupon, user)
        check(status == "201", f"checkout: {user} issued ({status})")
        codes[user] = body["ticket"]["code"] if body and "ticket" in body else ""
    code = codes["k1"]
    check(code.startswith(f"{coupon}-"), f"checkout: the code carries its coupon ({code})")

    def row(code):
        return psql(f"SELECT coalesce(order_id, '-') || '|' || (hold_until IS NOT NULL) || '|' || (redeemed_at IS NOT NULL) "
                    f"FROM coupon_tickets WHERE coupon_id = {coupon} AND code = '{code}'", url)

    plan = psql(f"EXPLAIN SELECT * FROM coupon_ticket_states WHERE coupon_id = {coupon} AND code = '{code}'", url)
    if cluster:
        check("Task Count: 1" in plan and "coupon_tickets_" in plan,
              f"checkout: a lookup by code reads one shard: {' / '.join(l.strip() for l in plan.splitlines() if 'Task Count' in l or 'Index' in l)}")
    steps = [
        ("GET", f"/v1/tickets/{code}", None, "200", "-|false|false"),
        ("POST", f"/v1/tickets/{code}/redemption", {"order_id": "o-hold", "hold_seconds": 600}, "201", "o-hold|true|false"),
        ("POST", f"/v1/tickets/{code}/redemption", {"order_id": "o-other"}, "409", "o-hold|true|false"),
        ("POST", f"/v1/tickets/{code}/redemption", {"order_id": "o-hold"}, "200", "o-hold|false|true"),
        ("DELETE", f"/v1/tickets/{code}/redemption?order_id=o-hold", None, "200", "-|false|false"),
        ("POST", f"/v1/tickets/{codes['k2']}/redemption", {"order_id": "o-lapse", "hold_seconds": 1}, "201", None),
    ]
    for method, path, body, expected, state in steps:
        status, answer, _ = await request_async(port, method, path, body)
        after = row(path.split("/")[3].split("?")[0])
        check(status == expected and (state is None or after == state),
              f"checkout: {method} {path} {body or ''}: {status} (expected {expected}), stored {after}"
              + (f" (expected {state})" if state else "") + (f": {answer.get('code')}" if answer and status.startswith("4") else ""))
    await asyncio.sleep(1.5)
    status, answer, _ = await request_async(port, "GET", f"/v1/tickets/{codes['k2']}")
    check(status == "200" and answer and answer.get("state") == "issued" and row(codes["k2"]) == "-|false|false",
          f"checkout: a lapsed hold cleared by the next lookup: {status} {answer and answer.get('state')}, stored {row(codes['k2'])}")
    status, _, _ = await request_async(port, "DELETE", f"/v1/coupons/{coupon}/tickets/k2", token=TOKEN)
    gone, _, _ = await request_async(port, "GET", f"/v1/tickets/{codes['k2']}")
    check(status == "204" and gone == "404" and row(codes["k2"]) == "",
          f"checkout: k2's ticket returned to the pool ({status}), its old code gone ({gone})")
    audited("checkout", coupon, url, sold_out=False)


async def tickets_of_before(port, url, cluster):
    """Tickets issued before the upgrade (scripts/citus-check.sh --from): each found by its code, held
    for an order and restored by it; a code of before 0010 (the hex digits alone) read on every shard."""
    rows = psql("SELECT coupon_id || ' ' || code FROM coupon_tickets WHERE user_id LIKE 'before-%' ORDER BY coupon_id", url)
    for coupon, code in (line.split() for line in rows.splitlines()):
        if cluster and "-" not in code:
            plan = psql(f"EXPLAIN SELECT * FROM coupon_ticket_states WHERE code = '{code}' AND code NOT LIKE '%-%'", url)
            check("Task Count: 32" in plan and "coupon_tickets_bare_code" in plan,
                  f"before the upgrade: a bare code asks each shard's index of bare codes: "
                  f"{' / '.join(l.strip() for l in plan.splitlines() if 'Task Count' in l or 'Index' in l)[:200]}")
        answers = [await request_async(port, "GET", f"/v1/tickets/{code}"),
                   await request_async(port, "POST", f"/v1/tickets/{code}/redemption", {"order_id": "o-before", "hold_seconds": 60}),
                   await request_async(port, "DELETE", f"/v1/tickets/{code}/redemption?order_id=o-before")]
        got = [status for status, _, _ in answers]
        check(got == ["200", "201", "200"] and answers[0][1].get("user_id", "").startswith("before-"),
              f"before the upgrade: coupon {coupon}'s ticket {code[:20]}... found, held, restored by its code: {got}")
        audited(f"before the upgrade: coupon {coupon}", int(coupon), url, sold_out=False)


def pgbench(url, script, clients, transactions, **variables):
    """(transactions/s, transactions failed) of one pgbench script (bench/citus: bench/sql's, with
    arguments Citus delegates) against `url`. pgbench counts a transaction that ended in a deadlock or
    serialization error as failed and goes on (exit 0): Citus' distributed deadlock detector cancelled
    one in a run of 2026-12-07, seen only in the coordinator's log."""
    args = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2", "-t", str(transactions),
            "-f", os.path.join(ROOT, "bench", "citus", script)]
    for name, value in variables.items():
        args += ["-D", f"{name}={value}"]
    out = subprocess.run(args + [url], check=True, capture_output=True, text=True).stdout
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return pgbench_tps(out), int(failed.group(1)) if failed else 0


def sql_rates(url, base):
    """The issuance SQL without HTTP, 16 clients, each run 1.1x oversubscribed and audited: issued/s of
    one transaction per ticket, of groups of 100 on one coupon, and of groups of 100 over 8 coupons."""
    rates = {}
    runs = [("sql per request", "per_request.sql", 1, 1, 3000), ("sql group", "group.sql", 100, 1, 50_000),
            ("sql group, 8 coupons", "group_many.sql", 100, 8, 10_000)]
    for name, script, group, coupons, quantity in runs:
        ids = [create_coupon_over_http(base, TOKEN, name, quantity) for _ in range(coupons)]
        transactions = math.ceil(coupons * quantity * 1.1 / group / 16)
        tps, failed = pgbench(url, script, 16, transactions, coupon=ids[0], first=ids[0], coupons=coupons, group=group)
        held = sum(audited(f"{name}: coupon {coupon}", coupon, url, sold_out=coupons == 1).held for coupon in ids)
        rates[name] = held / (transactions * 16 / tps)
        check(held > 0, f"{name}: {held} issued, {rates[name]:,.0f} issued/s"
              + (f"; {failed} of {transactions * 16} transactions failed (pgbench; the error is in the database's log)" if failed else ""))
    return rates


TABLES = ("coupons", "coupon_tickets", "outbox")


def indexes_valid(url, cluster):
    """Every index of the sale's tables valid (pg_index.indisvalid) in the database and, on a cluster, on
    every shard, each shard with as many indexes as its table on the coordinator. `migrate status` does
    not show an invalid index: a CREATE INDEX CONCURRENTLY that failed leaves one, and so, on Citus, does
    CREATE INDEX CONCURRENTLY IF NOT EXISTS of an index that exists (the coordinator's copy only;
    citusdata/citus#8338), as 0013 does on a database that ran 0012 as it was before 3477a7e."""
    listed = ", ".join(f"'{table}'::regclass" for table in TABLES)
    rows = psql(f"SELECT format('%s:%s:%s', indrelid::regclass, indexrelid::regclass, indisvalid::text) FROM pg_index "
                f"WHERE indrelid IN ({listed}) ORDER BY 1", url).splitlines()
    invalid = [row.rsplit(":", 1)[0] for row in rows if not row.endswith(":true")]
    check(rows and not invalid, f"indexes: {len(rows)} on {', '.join(TABLES)}, invalid: {invalid or 'none'}")
    if not cluster:
        return
    shards = {}
    for table in TABLES:
        expected = sum(1 for row in rows if row.split(":")[0] == table)
        counted = psql(f"SELECT count(*) || ' ' || count(*) FILTER (WHERE success AND result = '{expected} 0') "
                       f"FROM run_command_on_shards('{table}', $$SELECT count(*) || ' ' || count(*) FILTER (WHERE NOT indisvalid) "
                       f"FROM pg_index WHERE indrelid = '%s'::regclass$$)", url)
        total, good = map(int, counted.split())
        shards[table] = f"{good}/{total}"
    check(all(s.split("/")[0] == s.split("/")[1] != "0" for s in shards.values()),
          f"indexes on the shards: shards with every index of their table, all valid: {shards}")


FUNCTION = os.path.join(ROOT, "migrations", "functions", "issue_tickets.sql")


def per_call(url, base, modes, calls=300):
    """Microseconds per call of issue_tickets for one new user, a transaction each, in one backend
    (lib.issue_tickets_micros, as bench/speed/plans.py): on a cluster in a backend of the
    coupon's worker, where the delegated call runs, with the function set to each plan_cache_mode of
    `modes` in turn (on the coordinator, which passes it on), its committed text applied again after;
    on plain PostgreSQL as committed (`modes` (None,)). {mode: µs}."""
    results = {}
    try:
        for mode in modes:
            coupon = create_coupon_over_http(base, TOKEN, f"per call {mode}", calls)
            where = url
            if mode:
                psql(f"ALTER FUNCTION issue_tickets(bigint, text[]) SET plan_cache_mode = {mode}", url)
                # The coordinator's URL with the worker's host and port.
                parts = urllib.parse.urlsplit(url)
                user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
                where = urllib.parse.urlunsplit(parts._replace(netloc=user + worker_of(coupon, url)))
            results[mode] = lib.issue_tickets_micros(coupon, calls, prefix="per-call-", url=where)
            held = audited(f"per call ({mode or 'as committed'})", coupon, url).held
            check(held == calls, f"issue_tickets per call, one user, {mode or 'as committed'}: {results[mode]:,.0f} µs ({held} issued)")
    finally:
        if any(modes):
            subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-f", FUNCTION], check=True, capture_output=True)
    return results


async def run_on(url, ports, label, cluster):
    """The checks on one database; returns the measured rates."""
    rates = {}
    with Server(ports[0], url=url, token=TOKEN), Server(ports[1], url=url, token=TOKEN):
        base = f"http://127.0.0.1:{ports[0]}"
        print(f"{label}:", flush=True)
        indexes_valid(url, cluster)
        # 2. The burst.
        coupon = create_coupon_over_http(base, TOKEN, "burst", 2000)
        results, seconds = await burst(ports, coupon, 3000, "burst-")
        issued = sum(1 for status, _, _ in results if status == "201")
        check(issued == 2000, f"burst: 3000 users for 2000 tickets over two instances: {statuses(results)} in {seconds:.2f} s")
        audited("burst", coupon, url)
        rates["burst"] = issued / seconds
        # 3. Both instances at once.
        pair = create_coupon_over_http(base, TOKEN, "pair", 500)
        jobs = [(ports[k], f"pair-{n}") for n in range(500) for k in (0, 1)]
        answers = await asyncio.gather(*(issue_async(port, pair, user) for port, user in jobs))
        codes = {}
        for (port, user), (status, body, _) in zip(jobs, answers):
            if status in ("200", "201") and body:
                codes.setdefault(user, set()).add(body["ticket"]["code"])
        created = sum(1 for status, _, _ in answers if status == "201")
        check(created == 500 and all(len(c) == 1 for c in codes.values()) and len(codes) == 500,
              f"both instances at once: 500 users each sent to both: {statuses(answers)}, one code per user")
        audited("both instances at once", pair, url)
        # 4. Refusals from memory on both instances once the sell-out is known everywhere.
        before = [metric(port, 'coupon_issue_answers_total{source="cache"}') or 0 for port in ports]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            late = await asyncio.gather(*(issue_async(port, coupon, f"late-probe-{port}") for port in ports))
            if all(body and body.get("code") == "sold_out" for _, body, _ in late):
                cached = [(metric(port, 'coupon_issue_answers_total{source="cache"}') or 0) for port in ports]
                if all(after > first for after, first in zip(cached, before)):
                    break
            await asyncio.sleep(0.1)
        before = [metric(port, 'coupon_issue_answers_total{source="cache"}') or 0 for port in ports]
        late = await asyncio.gather(*(issue_async(ports[n % 2], coupon, f"late-{n}") for n in range(1000)))
        after = [metric(port, 'coupon_issue_answers_total{source="cache"}') or 0 for port in ports]
        from_memory = [int(a - b) for a, b in zip(after, before)]
        check(all(body and body.get("code") == "sold_out" for _, body, _ in late) and from_memory == [500, 500],
              f"sold out from memory: 1000 late users, {statuses(late)}, answered from the catalogue per instance {from_memory}")
        audited("after the late users", coupon, url)
        # 5. Several coupons at once.
        ids, issued, seconds = await several(ports, url, base, 8, 500, "several", cluster)
        if cluster:
            workers = {worker_of(coupon, url) for coupon in ids}
            check(len(workers) >= 2, f"the 8 coupons' shards are on {len(workers)} workers: {sorted(workers)}")
        check(issued == 8 * 500, f"several coupons at once: 8 x 500 tickets, 6000 users: {issued} issued in {seconds:.2f} s")
        rates["several"] = issued / seconds
        await every_route(ports[1], url, base)
        await sale_control(ports, url, base)
        # The feed: served on one PostgreSQL; on a cluster 501 events_unavailable (docs/events.md).
        status, body, _ = await request_async(ports[0], "GET", "/v1/events?limit=1", token=TOKEN)
        expected = ("501", "events_unavailable") if cluster else ("200", None)
        check((status, (body or {}).get("code")) == expected, f"the event feed: {status} {(body or {}).get('code', '')}")
        await checkout_by_code(ports[0], url, base, cluster)
        await tickets_of_before(ports[1], url, cluster)
        rates.update(sql_rates(url, base))
        rates["per call"] = per_call(url, base, ("force_custom_plan", "auto") if cluster else (None,))
    return rates


def main():
    baseline = os.environ.get("BASELINE_URL")
    tables, functions = distribution(URL)
    print("distribution on the coordinator:", flush=True)
    check(len(tables) == 2 and len({t.split(":")[2] for t in tables}) == 1
          and {t.split(":")[0] + ":" + t.split(":")[1] for t in tables} == {"coupons:id", "coupon_tickets:coupon_id"},
          f"coupons by id and coupon_tickets by coupon_id, colocated: {tables}")
    check(any(f.startswith("issue_tickets:0:true") for f in functions),
          f"issue_tickets delegated by its coupon (force_delegation): {functions}")
    delegated = {f.split(":")[0] for f in functions if f.split(":")[1] == "0"}
    check(any(f.startswith("close_sale:0:true") for f in functions), f"close_sale delegated by its coupon (force_delegation): {functions}")
    expected = {"add_coupon_tickets", "close_sale", "issue_tickets", "missing_ticket", "redeem_ticket", "restore_ticket", "return_ticket",
                "ticket_of"}
    check(expected <= delegated, f"every function that takes a coupon runs on its worker: {sorted(delegated)}")
    settings = psql("SELECT nodeid || ':' || coalesce(result, '') FROM run_command_on_all_nodes("
                    "$$SELECT array_to_string(proconfig, ',') FROM pg_proc WHERE proname = 'issue_tickets'$$) ORDER BY nodeid")
    check(all("plan_cache_mode=force_custom_plan" in line and "jit=off" in line for line in settings.splitlines()),
          f"issue_tickets plans per call on every node, JIT off (a generic plan cannot be distributed): {settings.splitlines()}")
    nodes = psql("SELECT count(*) FROM pg_dist_node WHERE isactive AND noderole = 'primary' AND groupid <> 0")
    check(int(nodes) >= 2, f"{nodes} workers")
    cluster_rates = asyncio.run(run_on(URL, (8521, 8522), "Citus (coordinator)", cluster=True))
    plain_rates = asyncio.run(run_on(baseline, (8523, 8524), "plain PostgreSQL (baseline, same run)", cluster=False)) if baseline else None
    print("\nrates (issued tickets per second; every run audited):")
    print("| run | Citus | plain PostgreSQL | ratio |")
    print("|---|---:|---:|---:|")
    for name, label in (("burst", "HTTP: one coupon, 3000 users for 2000 tickets"),
                        ("several", "HTTP: 8 coupons at once, 6000 users for 4000 tickets"),
                        ("sql per request", "SQL: one transaction per ticket, 16 clients"),
                        ("sql group", "SQL: groups of 100, one coupon, 16 clients"),
                        ("sql group, 8 coupons", "SQL: groups of 100 over 8 coupons, 16 clients")):
        plain = f"{plain_rates[name]:,.0f}" if plain_rates else "-"
        ratio = f"{cluster_rates[name] / plain_rates[name]:.2f}" if plain_rates else "-"
        print(f"| {label} | {cluster_rates[name]:,.0f} | {plain} | {ratio} |")
    print("\nissue_tickets, µs per call for one user (one backend, a transaction per call; on Citus in the coupon's worker):")
    print("| plans on Citus (committed: force_custom_plan) | Citus | plain PostgreSQL (as committed: force_generic_plan) |")
    print("|---|---:|---:|")
    plain = f"{plain_rates['per call'][None]:,.0f}" if plain_rates else "-"
    for mode, micros in cluster_rates["per call"].items():
        print(f"| {mode} | {micros:,.0f} | {plain} |")
    return check.exit_code()


if __name__ == "__main__":
    sys.exit(main())
