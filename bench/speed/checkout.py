"""What checkout by code costs, beside the framework's constant answer, in one run: `python3 -m
bench.speed.checkout`, run by bench/speed/checkout.sh.

A coupon of TICKETS tickets sold to as many users (issue_tickets in SQL), then against one release
server, wrk with one thread and 256 connections: the constant answer, a ticket looked up by its
holder and by its code (round and round the tickets), holds by code (each request a new ticket for a
new order), then the same orders' confirmations in the same order. CPU per answer of the server,
PostgreSQL and wrk; the holds and confirmations counted in the database afterwards; the audit.
"""
import datetime
import os
import sys

from bench.lib import ROOT, audit, checkpoint, first_line, prepend_result, psql
from bench.run import HTTP_PORT, create_coupon, server, verdict
from bench.speed.run import CONNECTIONS, counter, measure, per_answer, wrk, wrk_machine

SECONDS = int(os.environ.get("SPEED_SECONDS", "8"))
TICKETS = int(os.environ.get("CHECKOUT_TICKETS", "150000"))


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    tag = f"{started:%H%M%S}"
    coupon = create_coupon(TICKETS)
    psql(f"BEGIN; SELECT count(*) FROM issue_tickets({coupon}, ARRAY(SELECT 'c{tag}-' || n FROM generate_series(1, {TICKETS}) AS n)); COMMIT;")
    psql("VACUUM ANALYZE coupon_tickets")
    path = os.path.join(ROOT, "bench", "results", "tmp", f"checkout-{tag}.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(psql(f"SELECT code || ' ' || user_id FROM coupon_tickets WHERE coupon_id = {coupon} ORDER BY number") + "\n")
    checkpoint()
    rows = []
    with server(group_size=512) as running:
        for label, command, counted in [
            ("constant answer, GET /healthz", wrk("/healthz", "constant.lua"), None),
            ("a ticket by its holder, GET /v1/coupons/{id}/tickets/{user}", wrk("", "checkout.lua", "by_holder", path, str(coupon)), None),
            ("a ticket by its code, GET /v1/tickets/{code}", wrk("", "checkout.lua", "by_code", path, str(coupon)), None),
            ("holds by code, each a new ticket and order (201)", wrk("", "checkout.lua", "hold", path, str(coupon), tag),
             "coupon_holds_placed_total"),
            ("the same orders' confirmations (200)", wrk("", "checkout.lua", "confirm", path, str(coupon), tag),
             "coupon_holds_confirmed_total"),
        ]:
            before = counter(counted) if counted else 0
            result = measure(running, command)
            answers = result["requests"]
            if counted:
                answers = int(counter(counted) - before)
                note = f"{answers:,} counted ({counted}) for {result['requests']:,} requests"
                if result["requests"] > TICKETS:
                    note += f" (tickets ran out: raise CHECKOUT_TICKETS)"
            else:
                note = f"{result['non2xx']} not 2xx"
            rate = answers / (result["duration_us"] / 1e6)
            rows.append((label, rate, per_answer(result["cpu"], answers), result["p99_us"] / 1000, note))
            print(f"  {label}: {rate:,.0f}/s ({note})", flush=True)
    held, redeemed = (int(n) for n in psql(
        f"SELECT count(*) FILTER (WHERE hold_until > clock_timestamp()), count(redeemed_at) FROM coupon_tickets "
        f"WHERE coupon_id = {coupon}").split("|"))
    checked = verdict(audit(coupon))
    checked += f"; in the database {held:,} tickets still held and {redeemed:,} redeemed"
    lines = ["| what | rate | of the constant | server µs | PostgreSQL µs | wrk µs | CPU µs total | p99 ms | check |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    constant = rows[0][1]
    for label, rate, cpu, p99, note in rows:
        lines.append(f"| {label} | {rate:,.0f}/s | {rate / constant:.2f} | {cpu.get('server', 0):.1f} | "
                     f"{cpu.get('postgres', 0):.1f} | {cpu.get('load', 0):.1f} | {sum(cpu.values()):.1f} | {p99:.2f} | {note} |")
    report = f"""## {started:%Y-%m-%d %H:%M} UTC

Working tree at {first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])}.
Machine: {wrk_machine()}.
A coupon of {TICKETS:,} tickets, all issued; {SECONDS} s per row, {CONNECTIONS} connections; CPU per answer
(per hold placed or confirmed, as the server counted them, for those rows), from /proc and wait4().
Audit after the run: {checked}.

{chr(10).join(lines)}

Counts are the server's counters: requests still in flight when wrk stops are counted too, and
confirmations past the last hold find a free ticket and redeem it (201), which the confirmed
counter leaves out.
"""
    os.remove(path)
    prepend_result("checkout.md", "# Checkout by code: what a lookup, a hold and a confirmation cost\n\n"
                   "Written by `bench/speed/checkout.sh`, newest first.\n\n", report)
    print(report)


if __name__ == "__main__":
    sys.exit(main())
