"""The moment after a sell-out, under load, `python3 -m bench.speed.sellout`, run by
bench/speed/sellout.sh: one coupon of SELLOUT_TICKETS (50,000) tickets, wrk with one thread and 256
connections sending every request as a new user, for SELLOUT_AFTER (5) seconds past the sell-out.
Then the server's own counts: answers by where they came from (the catalogue, a read of the user's
ticket, issuance), and the refusals. Every read of a user's ticket on a sold-out coupon with no
holder is a refusal that reached the database: the ones that came while the holders loaded (issue
30's target: at most 1% of those refusals). Adds a section to bench/results/sellout.md.
"""
import datetime
import os
import subprocess
import sys
import time

from bench.lib import ROOT, audit, checkpoint, create_coupon, first_line, metric, prepend_result, psql
from bench.run import HTTP_PORT, server, verdict
from bench.speed.run import wrk_machine

TICKETS = int(os.environ.get("SELLOUT_TICKETS", "50000"))
AFTER = float(os.environ.get("SELLOUT_AFTER", "5"))
HEADER = "# The moment after a sell-out, under load\n\nWritten by `bench/speed/sellout.sh`, newest first.\n\n"


def answers(source):
    return int(metric(HTTP_PORT, f'coupon_issue_answers_total{{source="{source}"}}') or 0)


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    coupon = create_coupon(TICKETS, name="sellout")
    checkpoint()
    with server(group_size=512):
        load = subprocess.Popen(
            ["wrk", "-t", "1", "-c", "256", "-d", "120s", "-s", os.path.join(ROOT, "bench", "wrk", "issue.lua"),
             f"http://127.0.0.1:{HTTP_PORT}", "--", str(coupon), f"sellout-{started:%H%M%S}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.monotonic()
        issued = 0
        while issued < TICKETS and time.monotonic() - start < 110:
            time.sleep(0.1)
            issued = int(psql(f"SELECT issued_count FROM coupons WHERE id = {coupon}"))
        sold_out = time.monotonic() - start
        time.sleep(AFTER)
        load.terminate()
        load.wait(timeout=15)
        counts = {source: answers(source) for source in ("cache", "lookup", "database")}
        refused = int(metric(HTTP_PORT, 'coupon_requests_refused_total{reason="sold_out"}') or 0)
        holders = int(metric(HTTP_PORT, "coupon_catalogue_holder_hashes") or 0)
    result = audit(coupon)
    checked = verdict(result, sold_out=True)
    # Issuance answered the winners and the losers that shared a group with the last of them; a
    # lookup answers a loser whose request met the holder load (no user of this bench holds a ticket).
    during_load = counts["lookup"]
    from_memory = counts["cache"]
    share = during_load / max(1, during_load + from_memory)
    print(f"  sold out after {sold_out:.1f} s; answers: {counts}; refused sold_out {refused:,}; holders loaded {holders:,}; "
          f"lookups {during_load:,} of {during_load + from_memory:,} refusals after the sell-out ({share:.2%}); audit {checked}",
          flush=True)
    section = f"""## {started:%Y-%m-%d %H:%M} UTC

Commit {first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])}. Machine: {wrk_machine()}.

| tickets | sold out after | refusals after the sell-out (memory + lookups) | of them read from the database (lookups) | share | from issuance | holders loaded | audit |
|---:|---:|---:|---:|---:|---:|---:|---|
| {TICKETS:,} | {sold_out:.1f} s | {during_load + from_memory:,} | {during_load:,} | {share:.2%} | {counts["database"]:,} | {holders:,} | {checked} |
"""
    prepend_result("sellout.md", HEADER, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
