"""The check that can fail: `python3 -m bench.failover.async_check`, run by
bench/failover/async_check.sh. Not in CI: it shows that the failover audit would see a loss.

A primary and a standby made with pg_basebackup, replicating asynchronously (no
synchronous_standby_names): what the service acknowledges is on the primary alone. One instance on
the multi-host URL issues to 200 users, the standby's WAL receiver is stopped (primary_conninfo
emptied: held behind), 300 more users are answered 201, the primary's host is lost (SIGKILL, data
folder removed) and the standby promoted by hand (this is about the audit, not the HA manager). Then
the audit on the promoted standby: every user answered 201 who holds no ticket there is a lost
acknowledgement. With synchronous replication (bench/faults `failover`) the same audit finds none.
"""
import asyncio
import datetime
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench.faults import faults
from bench.faults.ha import PG_BIN, as_postgres
from bench.lib import first_line, prepend_result, psql

PORTS = {"primary": 25200, "standby": 25201}  # below the ephemeral ports, as bench/faults/ha.py
DATABASE = "coupons_async"


def main():
    folder = tempfile.mkdtemp(prefix="coupon-async-")
    shutil.chown(folder, "postgres", "postgres")
    data = {name: os.path.join(folder, name) for name in PORTS}
    url = {name: f"postgres://postgres@127.0.0.1:{port}/{DATABASE}?sslmode=disable" for name, port in PORTS.items()}
    try:
        as_postgres("initdb", "-D", data["primary"], "-A", "trust", "-U", "postgres")
        with open(os.path.join(data["primary"], "postgresql.conf"), "a") as f:
            f.write(f"port = {PORTS['primary']}\nlisten_addresses = '127.0.0.1'\nwal_level = replica\n")
        as_postgres("pg_ctl", "-D", data["primary"], "-l", os.path.join(folder, "primary.log"), "-w", "start")
        as_postgres("createdb", "-h", "127.0.0.1", "-p", str(PORTS["primary"]), DATABASE)
        as_postgres("pg_basebackup", "-h", "127.0.0.1", "-p", str(PORTS["primary"]), "-D", data["standby"], "-R",
                    "--checkpoint=fast")
        with open(os.path.join(data["standby"], "postgresql.conf"), "a") as f:
            f.write(f"port = {PORTS['standby']}\n")
        as_postgres("pg_ctl", "-D", data["standby"], "-l", os.path.join(folder, "standby.log"), "-w", "start")
        hosts = ",".join(f"127.0.0.1:{port}" for port in PORTS.values())
        multi = f"postgres://postgres@{hosts}/{DATABASE}?sslmode=disable&target_session_attrs=read-write"
        subprocess.run([os.environ["COUPON_BIN"], "migrate", "--database-url", multi, "--log-level", "error"], check=True)
        with faults.running(1, url=multi) as (instance,):
            lost = asyncio.run(sale(instance.port, data, url))
    finally:
        for name in PORTS:
            as_postgres("pg_ctl", "-D", data[name], "-m", "immediate", "stop", check=False)
        shutil.rmtree(folder, ignore_errors=True)
    return lost


async def sale(port, data, url):
    coupon = faults.create_coupon(port, 10_000)
    before = [await faults.issue(port, coupon, f"as-before-{n}") for n in range(200)]
    # Held behind: the standby's WAL receiver stops once primary_conninfo is empty.
    psql("ALTER SYSTEM SET primary_conninfo = ''", url["standby"])
    psql("SELECT pg_reload_conf()", url["standby"])
    await asyncio.sleep(1)
    behind = [await faults.issue(port, coupon, f"as-behind-{n}") for n in range(300)]
    answered = [f"as-before-{n}" for n, (status, _, _) in enumerate(before) if status == "201"]
    answered += [f"as-behind-{n}" for n, (status, _, _) in enumerate(behind) if status == "201"]
    # The primary's host lost; the standby promoted by hand.
    with open(os.path.join(data["primary"], "postmaster.pid")) as f:
        os.kill(int(f.readline()), signal.SIGKILL)
    shutil.rmtree(data["primary"], ignore_errors=True)
    as_postgres("pg_ctl", "-D", data["standby"], "-w", "promote")
    deadline = time.monotonic() + 30
    again = None
    while time.monotonic() < deadline and again != "201":
        again = (await faults.issue(port, coupon, f"as-after-{time.monotonic():.3f}"))[0]
        await asyncio.sleep(0.2)
    held = set(psql(f"SELECT user_id FROM coupon_tickets WHERE coupon_id = {coupon} AND user_id IS NOT NULL",
                    url["standby"]).splitlines())
    lost = [user for user in answered if user not in held]
    lost_before = [user for user in lost if user.startswith("as-before-")]
    report = f"""## {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: the check that can fail (asynchronous replication, a standby held behind)

Commit {first_line(["git", "rev-parse", "--short", "HEAD"])}. `bench/failover/async_check.sh`: a primary and a standby
replicating asynchronously, one instance on the multi-host URL; 200 users issued, the standby's WAL
receiver stopped, 300 more issued, the primary's host lost, the standby promoted by hand (the
instance issued again on it: {again}).

The audit on the promoted standby: {len(answered)} users were answered 201; **{len(lost)} of them hold no
ticket there** ({len(lost_before)} of the 200 issued before the standby was held behind). This is the
loss that synchronous replication prevents: with it (the fault scenario `failover`, and five rounds
above), the same audit has found none.

"""
    prepend_result("failover.md", "# Failover: the primary's host lost, five times in a row\n\n"
                   "Written by `bench/failover/run.sh`, newest first.\n\n", report)
    print(report)
    return 0 if lost and not lost_before else 1


if __name__ == "__main__":
    sys.exit(main())
