"""The million-ticket sale over HTTP, `python3 -m bench.speed.million`, run by bench/speed/million.sh:
one coupon of 1,000,000 tickets, wrk with one thread and 256 connections sending every request as a
new user, until the database says sold out. Prints the creation time, the sell-out time and the
audit; writes the issued count over time to bench/results/million.csv and a section to
bench/results/million.md. MILLION_WEBHOOK=1 (bench/events) subscribes a webhook endpoint on loopback
to every event and also waits, bounded, for the last event to be acknowledged; MILLION_JSON then
takes the figures instead of the results files.
"""
import contextlib
import json
import datetime
import os
import subprocess
import sys
import time

from bench.lib import ROOT, WebhookReceiver, audit, checkpoint, create_coupon, first_line, prepend_result, psql, register_webhook
from bench.run import HTTP_PORT, server, verdict
from bench.speed.run import wrk_machine

TICKETS = int(os.environ.get("MILLION_TICKETS", "1000000"))
LIMIT_SECONDS = 180
WEBHOOK = os.environ.get("MILLION_WEBHOOK") == "1"
JSON_OUT = os.environ.get("MILLION_JSON")
HEADER = """# The million-ticket sale over HTTP

Written by `bench/speed/million.sh`, newest first. The newest run's issued count over time:
[chart](million.png) (bench/charts.py), [million.csv](million.csv).

"""


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    created = time.monotonic()
    coupon = create_coupon(TICKETS, name="million")
    creation = time.monotonic() - created
    checkpoint()
    print(f"  {TICKETS:,} tickets created in {creation:.1f} s", flush=True)
    series = []
    with server(group_size=512), \
            (WebhookReceiver(8396, keep_events=False) if WEBHOOK else contextlib.nullcontext()) as receiver:
        if receiver:
            _, receiver.secret = register_webhook(HTTP_PORT, receiver.url)
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
        delivered = None
        if receiver:
            # Every event of the sale: each ticket, its sell-out (the coupon was created before the endpoint).
            wanted = int(psql(f"SELECT count(*) FROM outbox_events WHERE coupon_id = {coupon} AND type <> 'coupon.created'"))
            while receiver.count < wanted and time.monotonic() - start - sold_out < 120:
                time.sleep(0.1)
            delivered = {"events": wanted, "acknowledged": receiver.count, "after_sold_out": time.monotonic() - start - sold_out,
                         "deliveries": len(receiver.deliveries), "max_lag": receiver.max_lag,
                         "signed": all(ok for *_, ok in receiver.deliveries)}
            print(f"  webhook: {receiver.count:,} of {wanted:,} events acknowledged {delivered['after_sold_out']:.1f} s after "
                  f"the sell-out, in {len(receiver.deliveries):,} deliveries; largest lag {receiver.max_lag:.1f} s", flush=True)
    result = audit(coupon)
    checked = verdict(result, sold_out=True)
    print(f"  sold out after {sold_out:.1f} s ({TICKETS / sold_out:,.0f} issued/s), audit {checked}", flush=True)
    if JSON_OUT:
        with open(JSON_OUT, "w") as f:
            json.dump({"tickets": TICKETS, "creation": creation, "sold_out": sold_out, "audit": checked, "webhook": delivered}, f)
        return 0

    with open(os.path.join(ROOT, "bench", "results", "million.csv"), "w") as f:
        f.write("seconds,issued\n" + "".join(f"{t:.2f},{n}\n" for t, n in series))
    section = f"""## {started:%Y-%m-%d %H:%M} UTC

Commit {first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])}.
Machine: {wrk_machine()}.

| tickets | creation | sold out after | issued/s | audit |
|---:|---:|---:|---:|---|
| {TICKETS:,} | {creation:.1f} s | {sold_out:.1f} s (issued count read every 0.25 s) | {TICKETS / sold_out:,.0f} | {checked} |

The issued count over time: [million.csv](million.csv).
"""
    prepend_result("million.md", HEADER, section)


if __name__ == "__main__":
    sys.exit(main())
