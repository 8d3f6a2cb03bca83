"""Backups that restore exactly (issue 33), a scenario of bench/faults/faults.py: a PostgreSQL primary of
its own with WAL archiving, a base backup taken before the sale, a sale of 500 tickets to 800 users
through two instances, a point in time taken in the middle of it on the database's clock, and a
restore of the backup to that point on a fresh cluster. There the audit must hold, every user
answered 201 before the point must hold the ticket they were shown, nobody whose request was sent
after the point holds one, and the restored database must serve.

The point is a time, recovery_target_time, read with clock_timestamp() on the primary, rather than a
named restore point (pg_create_restore_point): after an incident an operator has a time, not a point
made in advance. A time is exact when it is the database's clock: every commit record carries its
commit time from that clock, taken before the record is written, and recovery replays commits up to
the first one stamped later than the target. A 201 leaves only after its commit record is flushed,
so a user answered before the point was read committed before it and is replayed; a request sent
after the point was read commits after it and is not. An application host's clock would be off by
its skew (bench/faults `clock`), and a restore to it would lose or keep tickets by that much.

The clusters live in a folder of their own (removed however the scenario ends), run as the `postgres`
user on loopback ports below the kernel's ephemeral range (as bench/faults/ha.py's): the primary on
25200, the restored copy on 25201."""
import asyncio
import contextlib
import datetime
import os
import shutil
import signal
import subprocess
import tempfile
import time

from bench import lib
from bench.faults.ha import as_postgres
from bench.lib import issue_async as issue, psql

PRIMARY_PORT = 25200
RESTORED_PORT = 25201
DATABASE = "coupons_backup"
# 500 tickets, 800 users in waves of 25, 20 ms apart; the point is taken once a third of the tickets are
# answered, and the users after the first 300 are sent once it has been.
QUANTITY, USERS, WAVE, WAVE_GAP, BEFORE = 500, 800, 25, 0.02, 300


class Clusters:
    """The folder (primary/, archive/, backup/, restored/ and their logs), removed on exit with every
    postmaster in it stopped."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="coupon-backup-")
        shutil.chown(self.folder, "postgres", "postgres")
        self.archive = self.path("archive")
        as_postgres("mkdir", self.archive)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        for name in ("primary", "restored"):
            if os.path.exists(os.path.join(self.path(name), "postmaster.pid")):
                as_postgres("pg_ctl", "stop", "-D", self.path(name), "-m", "immediate", "-w", "-t", "10", check=False)
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                with open(os.path.join(self.path(name), "postmaster.pid")) as f:
                    os.kill(int(f.readline()), signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.folder, name)

    def url(self, port, database=DATABASE):
        return f"postgres://postgres@127.0.0.1:{port}/{database}?sslmode=disable"

    def configure(self, name, settings):
        """`settings` appended to the cluster's postgresql.conf (a later line wins over an earlier one)."""
        with open(os.path.join(self.path(name), "postgresql.conf"), "a") as f:
            f.write("\n# bench/faults/backup.py\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))

    def start(self, name):
        """pg_ctl start -w: True once it accepts connections (a restore: once it is consistent), False
        when it did not come up (the log says why)."""
        return as_postgres("pg_ctl", "start", "-D", self.path(name), "-l", self.path(f"{name}.log"), "-w", "-t", "60",
                           check=False).returncode == 0

    @staticmethod
    def ask(sql, url):
        """One value, or None when the cluster does not answer (a restore that failed stops its postmaster)."""
        try:
            return psql(sql, url)
        except subprocess.CalledProcessError:
            return None

    def log_tail(self, name, lines=12):
        with contextlib.suppress(FileNotFoundError), open(self.path(f"{name}.log"), errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
        return "(no log)"

    def initdb_primary(self):
        as_postgres("initdb", "-D", self.path("primary"), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C")
        self.configure("primary", {
            "listen_addresses": "'127.0.0.1'", "port": PRIMARY_PORT, "unix_socket_directories": f"'{self.folder}'",
            # What a base backup and point-in-time recovery need: WAL for physical replicas, and every
            # completed segment copied to the archive, never over a copy already there.
            "wal_level": "replica", "archive_mode": "on",
            "archive_command": f"'test ! -f {self.archive}/%f && cp %p {self.archive}/%f'",
        })
        if not self.start("primary"):
            raise RuntimeError("the primary did not start:\n" + self.log_tail("primary"))
        psql(f"CREATE DATABASE {DATABASE}", self.url(PRIMARY_PORT, "postgres"))


def archived(clusters):
    """(segments, MiB) in the archive: WAL segments only, not .history or .backup files."""
    names = [name for name in os.listdir(clusters.archive) if len(name) == 24]
    return len(names), sum(os.path.getsize(os.path.join(clusters.archive, n)) for n in names) / 2**20


def folder_mib(path):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names) / 2**20


async def backup(running, audit, failures):
    print(f"backup and point-in-time restore: a primary archiving its WAL, a base backup, 2 instances selling "
          f"{QUANTITY} tickets to {USERS} users; restored on a fresh cluster to a point mid-sale", flush=True)
    started = time.monotonic()
    problems = []
    with Clusters() as clusters:
        primary = clusters.url(PRIMARY_PORT)
        clusters.initdb_primary()
        subprocess.run([os.environ["COUPON_BIN"], "migrate", "--database-url", primary, "--log-level", "error"], check=True,
                       capture_output=True)

        # -X none: the backup holds no WAL of its own; a restore takes every segment from the archive,
        # which it needs anyway to replay past the backup's end to the point. With -X none the server
        # answers the backup's end only once the last segment the backup needs is archived (BASE_BACKUP
        # waits for the archiver), so a backup that pg_basebackup finished is restorable from the archive;
        # -X fetch or stream would copy the same WAL a second time into the backup. -c fast: the backup
        # starts with an immediate checkpoint instead of a spread one.
        taken = time.monotonic()
        as_postgres("pg_basebackup", "-h", "127.0.0.1", "-p", str(PRIMARY_PORT), "-U", "postgres", "-D",
                    clusters.path("backup"), "-X", "none", "-c", "fast")
        backup_seconds = time.monotonic() - taken
        backup_mib = folder_mib(clusters.path("backup"))

        with running(2, url=primary) as instances:
            ports = [instance.port for instance in instances]
            coupon = lib.create_coupon_over_http(f"http://127.0.0.1:{ports[0]}", lib.ADMIN_TOKEN, "backup", QUANTITY)
            sale = await sell(coupon, ports, primary)
        if sale is None:
            failures.append("backup: the sale never reached a third of its tickets; no point to restore to")
            return
        answers, point, asked, answered, at_point = sale
        final = audit("the primary, after the sale", coupon, [answer[:3] for answer in answers], expect_sold_out=True,
                      url=primary)
        acknowledged = sum(1 for _, status, _, _, _ in answers if status == "201")

        # The sale's last segment archived too: switched out and copied (bounded: 30 s).
        last = psql("SELECT pg_walfile_name(pg_switch_wal())", primary)
        deadline = time.monotonic() + 30
        while psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver", primary) < last:
            if time.monotonic() > deadline:
                failures.append(f"backup: {last} not archived within 30 s: "
                                f"{psql('SELECT failed_count, last_failed_wal FROM pg_stat_archiver', primary)}")
                return
            await asyncio.sleep(0.1)
        segments, archive_mib = archived(clusters)
        failed = psql("SELECT failed_count FROM pg_stat_archiver", primary)
        as_postgres("pg_ctl", "stop", "-D", clusters.path("primary"), "-m", "fast", "-w", check=False)

        # The restore: a copy of the backup in a fresh folder, told where the archive is and where to stop.
        restoring = time.monotonic()
        as_postgres("cp", "-a", clusters.path("backup"), clusters.path("restored"))
        as_postgres("touch", os.path.join(clusters.path("restored"), "recovery.signal"))
        clusters.configure("restored", {
            "port": RESTORED_PORT, "archive_mode": "off",  # a copy to audit: it archives nothing of its own
            "restore_command": f"'cp {clusters.archive}/%f %p'",
            "recovery_target_time": f"'{point}'", "recovery_target_action": "'promote'",
        })
        restored = clusters.url(RESTORED_PORT)
        up = clusters.start("restored")
        while up and clusters.ask("SELECT pg_is_in_recovery()", restored) != "f":
            if time.monotonic() - restoring > 60 or clusters.ask("SELECT 1", restored) is None:
                up = False
                break
            await asyncio.sleep(0.1)
        restore_seconds = time.monotonic() - restoring
        if not up:
            failures.append("backup: the restored cluster did not come out of recovery")
            print(f"  FAILED: the restore did not come up; its log:\n    "
                  + clusters.log_tail("restored").replace("\n", "\n    "), flush=True)
            return
        stopped_at = psql("SELECT pg_last_xact_replay_timestamp()::text", restored)
        if datetime.datetime.fromisoformat(stopped_at) > datetime.datetime.fromisoformat(point):
            problems.append(f"the last commit replayed is stamped {stopped_at}, after the point {point}")

        print(f"  base backup: {backup_mib:.0f} MiB in {backup_seconds:.1f} s (-X none); archive: {segments} segments "
              f"({archive_mib:.0f} MiB), {failed} failed attempts; restored to {point} (copied, recovered and promoted) "
              f"in {restore_seconds:.1f} s, the last commit replayed stamped {stopped_at}", flush=True)
        held = check_restore(coupon, answers, point, asked, answered, at_point, final, acknowledged, restored, audit, problems)

        # A restored database must serve: its migrations all applied, and an instance on it ready and issuing.
        status = subprocess.run([os.environ["COUPON_BIN"], "migrate", "status", "--database-url", restored,
                                 "--log-level", "error"], capture_output=True, text=True)
        listed = status.stdout.splitlines()
        pending = [line for line in listed if ": applied at" not in line]
        if status.returncode != 0 or not listed or pending:
            problems.append(f"migrate status on the restored cluster: exit {status.returncode}, {len(listed)} listed, "
                            f"not applied: {pending[:3]} {status.stderr.strip()[:200]}")
        with running(1, url=restored) as (instance,):
            issued = await issue(instance.port, coupon, "after-restore")
            got = await lib.request_async(instance.port, "GET", f"/v1/coupons/{coupon}")
        print(f"  the restored cluster serves: migrate status exit {status.returncode}, {len(listed) - len(pending)} of "
              f"{len(listed)} migrations applied; an instance on it ready, a new user answered {issued[0]}, the coupon "
              f"{got[0]} with {(got[1] or {}).get('issued')} issued", flush=True)
        if issued[0] != "201" or got[0] != "200" or (got[1] or {}).get("issued") != held + 1:
            problems.append(f"the restored cluster: a new user answered {issued[0]}, GET {got[0]} {got[1]}")
        before = acknowledged_before(answers, asked)
        audit("the restored cluster, after one more issuance", coupon,
              [(user, status, body) for user, status, body, _, _ in answers if user in before]
              + [("after-restore", issued[0], issued[1])], url=restored)
    print(f"  backup scenario took {time.monotonic() - started:.1f} s", flush=True)
    if problems:
        print("  " + "\n  ".join(problems[:10]), flush=True)
        failures.append("backup: " + "; ".join(problems[:3]))


def acknowledged_before(answers, asked):
    return {user for user, status, _, _, received in answers if status == "201" and received < asked}


async def sell(coupon, ports, primary):
    """The sale: USERS new users in waves of WAVE, WAVE_GAP s apart, each request sent without waiting
    for the others. Once a third of the tickets have been answered 201, with more requests in flight,
    the point is taken on the database's clock; the users after the first BEFORE are sent once it has
    been answered, so that the point falls mid-sale however slow the machine: at most BEFORE users can
    hold a ticket at it, fewer than the quantity, and the rest of the sale comes after it. Returns the
    answers as (user, status, body, sent, received) in monotonic seconds, the point (timestamptz text),
    when it was asked and answered, and the tickets the primary held in the point's own snapshot; None
    when the point was never taken."""
    answers = []
    granted, taken = asyncio.Event(), asyncio.Event()

    async def shopper(user, port):
        sent = time.monotonic()
        status, body, _ = await issue(port, coupon, user)
        answers.append((user, status, body, sent, time.monotonic()))
        if sum(1 for answer in answers if answer[1] == "201") >= QUANTITY // 3:
            granted.set()

    async def waves():
        tasks = []
        for first in range(0, USERS, WAVE):
            if first == BEFORE:
                await taken.wait()
            tasks += [asyncio.create_task(shopper(f"bk{n}", ports[n % len(ports)])) for n in range(first, first + WAVE)]
            await asyncio.sleep(WAVE_GAP)
        await asyncio.gather(*tasks)

    async def point():
        """clock_timestamp() read on the primary: the database's clock, the one that stamps the commit
        records recovery_target_time is compared with. In the same statement, the tickets held in its
        snapshot (taken before the clock is read: each of them committed before the point). Asked on a
        session opened before the sale, so that it is read about a millisecond after it is asked."""
        try:
            await asyncio.wait_for(granted.wait(), 20)
        except asyncio.TimeoutError:
            return None
        finally:
            taken.set()
        asked = time.monotonic()
        held, at = (await ask(f"SELECT (SELECT count(*) FROM coupon_tickets WHERE coupon_id = {coupon} "
                              f"AND user_id IS NOT NULL), clock_timestamp()::text;")).split("|")
        return at, asked, time.monotonic(), int(held)

    session = await asyncio.create_subprocess_exec("psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", primary,
                                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    async def ask(sql):
        """One statement on the session (psql writes each result out as it comes)."""
        session.stdin.write(f"{sql}\n".encode())
        await session.stdin.drain()
        return (await asyncio.wait_for(session.stdout.readline(), 10)).decode().strip()

    try:
        await ask("SELECT 1;")
        _, point_taken = await asyncio.gather(waves(), point())
    finally:
        session.stdin.close()
        await asyncio.wait_for(session.wait(), 10)
    if point_taken is None:
        return None
    at, asked, answered, held = point_taken
    return answers, at, asked, answered, held


def check_restore(coupon, answers, point, asked, answered, at_point, final, acknowledged, restored, audit, problems):
    """The restored cluster against the sale (`final` tickets held at its end, `acknowledged` answered 201):
    the audit and what every answer tells. Returns the tickets it holds."""
    before = acknowledged_before(answers, asked)
    # How close to the point the last of them was issued (issued_at: the database's clock, in ms).
    margin = (datetime.datetime.fromisoformat(point) - max(
        (datetime.datetime.fromisoformat(body["issued_at"]) for user, _, body, _, _ in answers if user in before),
        default=datetime.datetime.fromisoformat(point))).total_seconds() * 1000
    shown = [(user, status, body) for user, status, body, _, _ in answers if user in before]
    audit("the restored cluster, at the point", coupon, shown, url=restored)
    result = lib.audit(coupon, restored)
    codes = dict(line.split("|") for line in psql(
        f"SELECT user_id, code FROM coupon_tickets WHERE coupon_id = {coupon} AND user_id IS NOT NULL", restored
    ).splitlines() if line)
    final_codes = {user: body["ticket"]["code"] for user, status, body, _, _ in answers if status == "201"}
    sent_after = {user for user, _, _, sent, _ in answers if sent > answered}
    in_flight = sum(1 for _, _, _, sent, received in answers if sent < asked < received)
    invented = [user for user, code in codes.items() if final_codes.get(user) != code]
    late = sorted(set(codes) & sent_after)
    issued_events = int(psql(f"SELECT count(*) FROM outbox_events WHERE coupon_id = {coupon} AND type = 'ticket.issued'", restored))
    print(f"  tickets: {final} at the end of the sale ({acknowledged} answered 201); the point asked with {in_flight} "
          f"requests in flight (its answer back {(answered - asked) * 1000:.0f} ms later); {len(before)} users "
          f"answered 201 before it was asked (the last issued {margin:.0f} ms before the point), {at_point} tickets held in "
          f"the primary's snapshot of it, {result.held} restored; {len(sent_after)} users sent after it, {len(late)} of "
          f"them restored; {issued_events} ticket.issued events restored", flush=True)
    if not 0 < result.held < final:
        problems.append(f"the point was not in the middle of the sale ({result.held} restored of {final}): "
                        f"nothing was tested")
    if result.held > acknowledged:
        problems.append(f"{result.held} tickets restored, only {acknowledged} answered 201 in the whole sale")
    if result.held < at_point:
        problems.append(f"{result.held} tickets restored, {at_point} held in the primary's snapshot at the point")
    if invented:
        problems.append(f"{len(invented)} restored tickets no user was answered with, e.g. {invented[:3]}")
    if late:
        problems.append(f"{len(late)} users whose request was sent after the point hold a ticket, e.g. {late[:3]}")
    if issued_events != result.held:
        problems.append(f"{issued_events} ticket.issued events restored for {result.held} tickets")
    return result.held
