#!/usr/bin/env python3
"""The million-ticket sale over HTTP (bench/speed/million.sh): one coupon of 1,000,000 tickets, wrk
with one thread and 256 connections sending every request as a new user, until the database says
sold out. Prints the creation time, the sell-out time and the audit; writes the issued count over
time to bench/results/million.csv and a section to bench/results/million.md.
"""
import datetime
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib import first_line, machine, psql  # noqa: E402
from run import HTTP_PORT, ROOT, Server, audit, checkpoint  # noqa: E402

TICKETS = int(os.environ.get("MILLION_TICKETS", "1000000"))
LIMIT_SECONDS = 180


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    created = time.monotonic()
    coupon = int(psql(f"WITH c AS (INSERT INTO coupons (name, quantity) VALUES ('million', {TICKETS}) RETURNING id) "
                      f"SELECT id FROM c, LATERAL add_coupon_tickets(c.id, 1, {TICKETS})").split("|")[0])
    creation = time.monotonic() - created
    checkpoint()
    print(f"  {TICKETS:,} tickets created in {creation:.1f} s", flush=True)
    server = Server(group_size=512)
    series = []
    try:
        load = subprocess.Popen(
            ["wrk", "-t", "1", "-c", "256", "-d", f"{LIMIT_SECONDS}s", "-s", os.path.join(ROOT, "bench", "wrk", "issue.lua"),
             f"http://127.0.0.1:{HTTP_PORT}", "--", str(coupon), f"million-{started:%H%M%S}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.monotonic()
        issued = 0
        while issued < TICKETS and time.monotonic() - start < LIMIT_SECONDS:
            time.sleep(0.25)
            issued = int(psql(f"SELECT issued_count FROM coupons WHERE id = {coupon}"))
            series.append((time.monotonic() - start, issued))
        sold_out = time.monotonic() - start
        load.terminate()
        load.wait(timeout=15)
    finally:
        server.stop()
    result = audit(coupon)
    verdict = "clean" if result["clean"] and result["issued"] == TICKETS else "CHECK: " + result["note"]
    print(f"  sold out after {sold_out:.1f} s ({TICKETS / sold_out:,.0f} issued/s), audit {verdict}", flush=True)

    with open(os.path.join(ROOT, "bench", "results", "million.csv"), "w") as f:
        f.write("seconds,issued\n" + "".join(f"{t:.2f},{n}\n" for t, n in series))
    path = os.path.join(ROOT, "bench", "results", "million.md")
    header = "# The million-ticket sale over HTTP\n\nWritten by `bench/speed/million.sh`, newest first.\n\n"
    old = open(path).read().removeprefix(header) if os.path.exists(path) else ""
    section = f"""## {started:%Y-%m-%d %H:%M} UTC

Commit {first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])}.
Machine: {machine(first_line(["wrk", "--version"]).split(" [")[0], "wrk -t1 -c256, server and PostgreSQL on the same 2 cores")}.

| tickets | creation | sold out after | issued/s | audit |
|---:|---:|---:|---:|---|
| {TICKETS:,} | {creation:.1f} s | {sold_out:.1f} s (issued count read every 0.25 s) | {TICKETS / sold_out:,.0f} | {verdict} |

The issued count over time: [million.csv](million.csv).
"""
    with open(path, "w") as f:
        f.write(header + section + "\n" + old)


if __name__ == "__main__":
    sys.exit(main())
