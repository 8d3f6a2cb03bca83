"""What the outbox costs PostgreSQL per ticket: one row per group (migrations/0014, the committed
text) against one row per ticket (before it): `python3 -m bench.events.rows`, run by
bench/events/rows.sh.

pgbench on issue_tickets for groups of EVENTS_ROWS_GROUP (75, the closed loop's) on 2 connections, as
three texts of the function, sides alternating for EVENTS_ROWS_ROUNDS rounds (3), each on a new coupon
after CHECKPOINT: `none`, the committed text without its events; `per ticket`, the text before 0014
(a row per ticket.issued, each with a random id); `per group`, the committed text (the group's
tickets in one row of arrays); with EVENTS_ROWS_ONE_SORT=1 also `per group, one sort`, a candidate
(the arrays aggregated from the claimed rows sorted once). Issued/s, PostgreSQL's CPU and WAL bytes
per ticket. The committed function is put back at the end. Adds a section to
bench/results/outbox-rows.md.
"""
import os
import subprocess
import time

from bench.cpu import after_client_exit, cluster_cpu
from bench.lib import ROOT, URL, checkpoint, create_coupon, machine, prepend_result, psql, run_tool

FUNCTION = os.path.join(ROOT, "migrations", "functions", "issue_tickets.sql")
GROUP = int(os.environ.get("EVENTS_ROWS_GROUP", "75"))
ROUNDS = int(os.environ.get("EVENTS_ROWS_ROUNDS", "3"))
SECONDS = int(os.environ.get("EVENTS_ROWS_SECONDS", "8"))
POSTMASTER_PID = int(os.environ["POSTMASTER_PID"])
# The results file's head, with what a row per group would change (written by hand).
HEADER = """# The outbox's rows: per ticket against per group, inside PostgreSQL

Written by `bench/events/rows.sh`, newest first.

Built on 2026-12-07 (migrations/0014): `issue_tickets` writes a group's `ticket.issued` events as
one row of arrays (`numbers`, `codes`, `user_ids`); the view `outbox_events` reads each row as its
events, a group's each with an id derived from its row's (no random id drawn per ticket, which
Citus refuses in the statement); a cursor names a position and, inside a group's row, how many of
its events were passed (`123.40`; `123` still means the whole row, so cursors given out before stay
valid), because a delivery holds at most `--webhook-batch` events and a group up to `--group-size`
(512); `webhooks.delivered_within` records it beside `delivered_through`, and retention and the
pending count read it; Debezium gets a message per group (docs/events.md). Sections before that
date measured a prototype of it (with a random id per ticket) against the committed row per ticket.

"""
# The committed text's events: from its `told` CTE to the end of that CTE.
TOLD_START, TOLD_END = "        ), told AS (\n", "            ORDER BY e.place\n        )\n"
# The text of issue_tickets before migrations/0014: a row per ticket.issued, each with a random id.
PER_TICKET = """        ), told AS (
            -- The group's events in one INSERT (migrations/0012): a ticket.issued per ticket in number
            -- order, then coupon.sold_out when the group took the last ticket, the coupon as it is now.
            -- Written here, not by a trigger of the counter's UPDATE: on Citus that trigger fires
            -- before this INSERT, and the sell-out would come before the tickets that made it.
            INSERT INTO outbox (coupon_id, type, occurred_at, number, code, user_id, issued_at, name, quantity, issued_count,
                                starts_at, ends_at, redeem_until, created_at)
            SELECT p_coupon_id, e.type, v_now, e.number, e.code, e.user_id, e.issued_at, e.name, e.quantity, e.issued_count,
                   e.starts_at, e.ends_at, e.redeem_until, e.created_at
            FROM (
                SELECT 'ticket.issued' AS type, c.number, c.code, c.user_id, c.issued_at, NULL::text AS name,
                       NULL::int AS quantity, NULL::int AS issued_count, NULL::timestamptz AS starts_at,
                       NULL::timestamptz AS ends_at, NULL::timestamptz AS redeem_until, NULL::timestamptz AS created_at,
                       c.number AS place
                FROM claimed AS c
                UNION ALL
                SELECT 'coupon.sold_out', NULL, NULL, NULL, NULL, v_coupon.name, v_coupon.quantity, v_coupon.quantity,
                       v_coupon.starts_at, v_coupon.ends_at, v_coupon.redeem_until, v_coupon.created_at, NULL
                FROM (SELECT count(*) AS claimed FROM claimed) AS n
                WHERE n.claimed > 0 AND v_coupon.issued_count + n.claimed >= v_coupon.quantity
            ) AS e
            ORDER BY e.place NULLS LAST
        )
"""


# A candidate for the committed text (EVENTS_ROWS_ONE_SORT=1 adds it): the group's arrays aggregated
# from the claimed rows sorted once, instead of three aggregates each sorting them.
SORTED_THRICE = """                       array_agg(c.number ORDER BY c.number) AS numbers,
                       array_agg(c.code ORDER BY c.number) AS codes, array_agg(c.user_id ORDER BY c.number) AS user_ids,
                       1 AS place
                FROM claimed AS c
"""
SORTED_ONCE = """                       array_agg(c.number) AS numbers, array_agg(c.code) AS codes, array_agg(c.user_id) AS user_ids,
                       1 AS place
                FROM (SELECT * FROM claimed ORDER BY number) AS c
"""
ONE_SORT = os.environ.get("EVENTS_ROWS_ONE_SORT") == "1"


def texts():
    committed = open(FUNCTION).read()
    start = committed.index(TOLD_START)
    end = committed.index(TOLD_END, start) + len(TOLD_END)
    variants = {"none": committed[:start] + "        )\n" + committed[end:],
                "per ticket": committed[:start] + PER_TICKET + committed[end:], "per group": committed}
    if ONE_SORT:
        assert SORTED_THRICE in committed, "the committed text's aggregates changed"
        variants["per group, one sort"] = committed.replace(SORTED_THRICE, SORTED_ONCE)
    return variants


def apply(text):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", URL], input=text, check=True, capture_output=True, text=True)


def measure(name):
    coupon = create_coupon(SECONDS * 40_000, f"outbox-rows-{name}")
    psql("VACUUM ANALYZE coupon_tickets")
    checkpoint()
    lsn = psql("SELECT pg_current_wal_lsn()").strip()
    before, started = cluster_cpu(POSTMASTER_PID), time.monotonic()
    subprocess.run(["pgbench", "-n", "-M", "prepared", "-c", "2", "-j", "2", "-T", str(SECONDS), "-f",
                    os.path.join(ROOT, "bench", "sql", "group.sql"), "-D", f"coupon={coupon}", "-D", f"group={GROUP}", URL],
                   check=True, capture_output=True)
    elapsed = time.monotonic() - started
    after_client_exit()
    cpu = cluster_cpu(POSTMASTER_PID) - before
    issued = int(psql(f"SELECT issued_count FROM coupons WHERE id = {coupon}"))
    wal = int(psql(f"SELECT pg_current_wal_lsn() - '{lsn}'"))
    return issued / elapsed, cpu / issued * 1e6, wal / issued


def main():
    variants = texts()
    results = {name: [] for name in variants}
    try:
        for round_ in range(ROUNDS):
            for name in (list(variants) if round_ % 2 == 0 else list(variants)[::-1]):
                apply(variants[name])
                results[name].append(measure(name))
                rate, cpu, wal = results[name][-1]
                print(f"round {round_ + 1}, {name}: {rate:,.0f} issued/s, {cpu:.1f} µs, {wal:,.0f} B of WAL a ticket", flush=True)
    finally:
        apply(variants["per group"])
    mean = {name: [sum(column) / ROUNDS for column in zip(*runs)] for name, runs in results.items()}
    lines = ["| events | issued/s (each round) | of none's | PostgreSQL µs per ticket | WAL bytes per ticket |",
             "|---|---:|---:|---:|---:|"]
    for name, runs in results.items():
        rate, cpu, wal = mean[name]
        each = ", ".join(f"{run[0]:,.0f}" for run in runs)
        lines.append(f"| {name} | {rate:,.0f} ({each}) | {rate / mean['none'][0]:.2f} | {cpu:.1f} | {wal:,.0f} |")
    section = (f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
               f"Machine: {machine(f'pgbench -c 2 -j 2, issue_tickets for groups of {GROUP}, {SECONDS} s a row, means of {ROUNDS} rounds; each row on a new coupon after CHECKPOINT, so its WAL holds the first-touch page images')}.\n\n"
               + "\n".join(lines) + "\n")
    prepend_result("outbox-rows.md", HEADER, section)
    print(section)
    return 0


if __name__ == "__main__":
    run_tool(main, "outbox-rows.md")
