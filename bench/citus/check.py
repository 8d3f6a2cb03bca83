"""The service on a Citus cluster, proven by the same burst and audit as on one database; run by
scripts/citus-check.sh COORDINATOR_URL [PLAIN_URL].

Against the coordinator (DATABASE_URL), with two coupon-server instances:
  1. the schema is distributed: coupons and coupon_tickets by coupon, colocated, issue_tickets delegated;
  2. a burst 1.5x oversubscribed over both instances: exactly the quantity issued;
  3. every user sent to both instances at once: one ticket each, the same code on both;
  4. after the sell-out, every instance refuses from memory: the sell-out's notification, sent on the
     worker that holds the coupon, reached both catalogues;
  5. a sale of several coupons at once, on shards of different workers.
Each ends with the database audit. With PLAIN_URL (BASELINE_URL here), the burst and the several-coupon
sale also run on that plain PostgreSQL in the same run, so the rates stand side by side. Loopback only;
every wait bounded. Exits non-zero when a check fails.
"""
import asyncio
import math
import os
import subprocess
import sys
import time

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


async def several(ports, url, base, coupons, quantity, prefix):
    """`coupons` coupons sold at once, each 1.5x oversubscribed; (coupon ids, issued, seconds)."""
    ids = [create_coupon_over_http(base, TOKEN, f"{prefix} {n}", quantity) for n in range(coupons)]
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


def pgbench(url, script, clients, transactions, **variables):
    """transactions/s of one pgbench script (bench/sql) against `url`."""
    args = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2", "-t", str(transactions),
            "-f", os.path.join(ROOT, "bench", "sql", script)]
    for name, value in variables.items():
        args += ["-D", f"{name}={value}"]
    return pgbench_tps(subprocess.run(args + [url], check=True, capture_output=True, text=True).stdout)


def sql_rates(url, base):
    """The issuance SQL without HTTP, 16 clients, each run 1.1x oversubscribed and audited: issued/s of
    one transaction per ticket, of groups of 100 on one coupon, and of groups of 100 over 8 coupons."""
    rates = {}
    runs = [("sql per request", "per_request.sql", 1, 1, 3000), ("sql group", "group.sql", 100, 1, 50_000),
            ("sql group, 8 coupons", "group_many.sql", 100, 8, 10_000)]
    for name, script, group, coupons, quantity in runs:
        ids = [create_coupon_over_http(base, TOKEN, name, quantity) for _ in range(coupons)]
        transactions = math.ceil(coupons * quantity * 1.1 / group / 16)
        tps = pgbench(url, script, 16, transactions, coupon=ids[0], first=ids[0], coupons=coupons, group=group)
        held = sum(audited(f"{name}: coupon {coupon}", coupon, url, sold_out=coupons == 1).held for coupon in ids)
        rates[name] = held / (transactions * 16 / tps)
        check(held > 0, f"{name}: {held} issued, {rates[name]:,.0f} issued/s")
    return rates


async def run_on(url, ports, label, cluster):
    """The checks on one database; returns the measured rates."""
    rates = {}
    with Server(ports[0], url=url, token=TOKEN), Server(ports[1], url=url, token=TOKEN):
        base = f"http://127.0.0.1:{ports[0]}"
        print(f"{label}:", flush=True)
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
        ids, issued, seconds = await several(ports, url, base, 8, 500, "several")
        if cluster:
            workers = {worker_of(coupon, url) for coupon in ids}
            check(len(workers) >= 2, f"the 8 coupons' shards are on {len(workers)} workers: {sorted(workers)}")
        check(issued == 8 * 500, f"several coupons at once: 8 x 500 tickets, 6000 users: {issued} issued in {seconds:.2f} s")
        rates["several"] = issued / seconds
        await every_route(ports[1], url, base)
        rates.update(sql_rates(url, base))
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
    return check.exit_code()


if __name__ == "__main__":
    sys.exit(main())
