"""Five failovers in a row: `python3 -m bench.failover.run`, run by bench/failover/run.sh.

pg_auto_failover on loopback (bench/faults/ha.py), two instances on the multi-host URL, started once
and never restarted; each round is the fault scenario's sale (bench/faults `failover`): 16 shoppers,
the primary's host lost, the standby promoted, the old node made again as a standby, every round
audited on the new primary. Per round: the promotion after the loss, the first 201 on each instance
after the promotion, the longest wait of any request sent from 3 s before the loss on, the 503s.
Writes bench/results/failover.md.
"""
import asyncio
import datetime
import os
import subprocess
import sys

from bench.faults import faults, ha
from bench.lib import first_line, machine, prepend_result

ROUNDS = int(os.environ.get("FAILOVER_ROUNDS", "5"))


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    rounds = []
    with ha.Cluster() as cluster:
        url = cluster.url()
        subprocess.run([os.environ["COUPON_BIN"], "migrate", "--database-url", url, "--log-level", "error"], check=True)
        with faults.running(2, url=url) as instances:
            ports = [instance.port for instance in instances]
            for number in range(ROUNDS):
                print(f"round {number + 1} of {ROUNDS}", flush=True)
                before = len(faults.failures)
                result = asyncio.run(faults.failover_sale(cluster, ports))
                result["clean"] = len(faults.failures) == before
                rounds.append(result)

    lines = ["| round | lost | promoted after | first 201 after the promotion (each instance) | longest wait | 503 | 201 | other | audit |",
             "|---:|---|---:|---|---:|---:|---:|---:|---|"]
    for number, r in enumerate(rounds, 1):
        firsts = ", ".join("none" if s is None else f"{s:.1f} s" for s in r["first_201_s"])
        lines.append(f"| {number} | {r['lost']} | {r['promotion_s']:.1f} s | {firsts} | {r['longest_wait_s']:.2f} s | "
                     f"{r['unavailable']} | {r['issued']:,} | {r['other']} | {'clean' if r['clean'] else 'FAILED'} |")
    report = f"""## {started:%Y-%m-%d %H:%M} UTC: {ROUNDS} failovers in a row

Commit {first_line(["git", "rev-parse", "--short", "HEAD"])}. Machine: {machine("pg_autoctl " + first_line(["pg_autoctl", "--version"]).split()[-1], "two instances (--database-timeout 2), pg_auto_failover and PostgreSQL on the same 2 cores")}.
pg_auto_failover tuned to loopback (bench/faults/ha.py: unhealthy after 2 s, 5 s for the lost primary to demote).

{chr(10).join(lines)}

Failures: {"; ".join(faults.failures) or "none"}.
"""
    prepend_result("failover.md", "# Failover: the primary's host lost, five times in a row\n\n"
                   "Written by `bench/failover/run.sh`, newest first.\n\n", report)
    print(report)
    return 1 if faults.failures else 0


if __name__ == "__main__":
    sys.exit(main())
