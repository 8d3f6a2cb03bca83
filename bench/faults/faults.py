"""Fault scenarios against real coupon-server processes and a real PostgreSQL: `python3 -m
bench.faults.faults [SCENARIO ...]`, run by bench/faults/run.sh. Every scenario ends with the audit
(audit_coupon() through bench.lib, plus the answers):

  tickets held <= quantity, counter = tickets held, no user with two tickets, ticket rows = quantity,
  every user answered 201 holds the ticket they were shown.

Loopback only; every loop bounded in count and time. Exits non-zero when an audit fails.
"""
import asyncio
import contextlib
import datetime
import email.utils
import glob
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from bench import lib
from bench.faults import backup, ha, webhooks
from bench.lib import ROOT, Server, create_coupon_over_http, issue_async as issue, metric, psql

TOKEN = lib.ADMIN_TOKEN
BASE_PORT = int(os.environ.get("FAULTS_PORT", "8301"))
failures = []


@contextlib.contextmanager
def running(count, extra=(), envs=(), url=lib.URL):
    """`count` ready instances on BASE_PORT, BASE_PORT + 1, ..., stopped when the scenario is done,
    however it ends. `envs[i]`, when given, is added to instance i's environment."""
    instances = []
    try:
        for i in range(count):
            instances.append(Server(BASE_PORT + i, "--database-timeout", "2", *extra, url=url, token=TOKEN, log_level="error",
                                    env=envs[i] if i < len(envs) else None))
        for instance in instances:
            instance.wait_ready()
        yield instances
    finally:
        for instance in instances:
            instance.stop()


def create_coupon(port, quantity, **window):
    return create_coupon_over_http(f"http://127.0.0.1:{port}", TOKEN, "faults", quantity, **window)


def readyz(port):
    try:
        response = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        return response.status, response.read(), None
    except urllib.error.HTTPError as error:
        return error.code, error.read(), None


def audit(name, coupon, answers, expect_sold_out=False, url=lib.URL):
    """bench.lib's audit, and every user answered 200 or 201 holds the one ticket they were shown.
    answers: list of (user, status, body). Records a failure instead of raising."""
    result = lib.audit(coupon, url)
    codes = dict(line.split("|") for line in psql(
        f"SELECT user_id, code FROM coupon_tickets WHERE coupon_id = {coupon} AND user_id IS NOT NULL", url).splitlines() if line)
    shown = {}
    for user, status, body in answers:
        if status in ("200", "201") and body:
            shown.setdefault(user, set()).add(body["ticket"]["code"])
    lost = [user for user, seen in shown.items() if codes.get(user) not in seen or len(seen) != 1]
    problems = result.violations(sold_out=expect_sold_out)
    if lost:
        problems.append(f"{len(lost)} users shown a ticket they do not hold, e.g. {lost[:3]}")
    statuses = {}
    for _, status, _ in answers:
        statuses[status] = statuses.get(status, 0) + 1
    verdict = "clean" if not problems else "FAILED: " + "; ".join(problems)
    print(f"  audit {name}: {result}; answers {dict(sorted(statuses.items()))}: {verdict}", flush=True)
    if problems:
        failures.append(f"{name}: {verdict}")
    return result.held


def sale(instances, quantity, prefix, users):
    """The ports of `instances`, a new coupon of `quantity` tickets, and `users` new users (`prefix`N)
    sent to the instances in turn, as (port, user)."""
    ports = [i.port for i in instances]
    coupon = create_coupon(ports[0], quantity)
    return ports, coupon, [(ports[user % len(ports)], f"{prefix}{user}") for user in range(users)]


async def send(coupon, jobs, during=None):
    """Every (port, user) of `jobs` at once, with the coroutine `during` (a fault) beside them. Returns
    the answers as (user, status, body) and the results of bench.lib's issue_async (status, body, seconds)."""
    sent = asyncio.gather(*(issue(port, coupon, user) for port, user in jobs))
    results = (await asyncio.gather(sent, during))[0] if during else await sent
    return [(user, status, body) for (_, user), (status, body, _) in zip(jobs, results)], results


async def fill(ports, coupon, prefix, bound=20000):
    """Issues to new users until sold out (bounded): shows nothing is stuck."""
    answers = []
    for n in range(bound):
        status, body, _ = await issue(ports[n % len(ports)], coupon, f"{prefix}-{n}")
        answers.append((f"{prefix}-{n}", status, body))
        if status == "409" and body and body.get("code") == "sold_out":
            break
    return answers


async def several_instances():
    print("several instances: 3 instances, 2000 tickets, 4000 users, 6000 requests at once", flush=True)
    with running(3) as instances:
        ports = [i.port for i in instances]
        coupon = create_coupon(ports[0], 2000)
        jobs = []
        for user in range(4000):
            jobs.append((ports[user % 3], f"u{user}"))
            if user < 2000:  # the same user on another instance at the same moment
                jobs.append((ports[(user + 1) % 3], f"u{user}"))
        random.shuffle(jobs)
        answers, results = await send(coupon, jobs)
        audit("several instances", coupon, answers, expect_sold_out=True)
        # A winner asks another instance: 200 with the same code.
        winners = {}
        for (port, user), (status, body, _) in zip(jobs, results):
            if status == "201":
                winners[user] = (port, body["ticket"]["code"])
        mismatched = 0
        for user, (port, code) in winners.items():
            other = ports[(ports.index(port) + 1) % 3]
            status, body, _ = await issue(other, coupon, user)
            if status != "200" or body["ticket"]["code"] != code:
                mismatched += 1
        print(f"  {len(winners)} winners asked another instance: {len(winners) - mismatched} answered 200 with the same code", flush=True)
        if len(winners) != 2000 or mismatched:
            failures.append(f"several instances: {len(winners)} winners, {mismatched} answered differently elsewhere")


async def sigkill_mid_burst():
    print("SIGKILL of an instance mid-burst: 3 instances, 3000 tickets, 4500 users", flush=True)
    with running(3) as instances:
        ports, coupon, jobs = sale(instances, 3000, "k", 4500)

        async def killer():
            await asyncio.sleep(0.3)
            instances[1].process.send_signal(signal.SIGKILL)

        answers, _ = await send(coupon, jobs, killer())
        audit("after SIGKILL", coupon, answers)
        answers += await fill([ports[0], ports[2]], coupon, "k-fill")
        audit("SIGKILL, then filled through the survivors", coupon, answers, expect_sold_out=True)


async def postgres_crash_mid_burst():
    print("PostgreSQL crash mid-burst (pg_ctl -m immediate restart): 2 instances, 3000 tickets, 4500 users", flush=True)
    with running(2) as instances:
        ports, coupon, jobs = sale(instances, 3000, "c", 4500)
        crashed = {}

        async def crash():
            await asyncio.sleep(0.3)
            crashed["at"] = time.monotonic()
            await asyncio.to_thread(subprocess.run, ["bash", "-c", f"source '{ROOT}/scripts/lib/postgres.sh' && restart_local_postgres_immediate"],
                                    check=True, capture_output=True)
            crashed["back"] = time.monotonic()

        answers, results = await send(coupon, jobs, crash())
        slowest = max(seconds for _, _, seconds in results)
        unanswered = sum(1 for _, status, _ in answers if status not in ("200", "201", "409", "503"))
        print(f"  PostgreSQL down for {crashed['back'] - crashed['at']:.1f} s; slowest answer {slowest:.1f} s; "
              f"{unanswered} requests without an HTTP answer", flush=True)
        if unanswered:
            failures.append(f"PostgreSQL crash: {unanswered} requests got no HTTP answer")
        recovered = max(instance.wait_ready(30) for instance in instances) - crashed["back"]
        print(f"  both instances ready again {max(recovered, 0):.1f} s after PostgreSQL was back", flush=True)
        audit("after the crash", coupon, answers)
        answers += await fill(ports, coupon, "c-fill")
        audit("crash, then filled", coupon, answers, expect_sold_out=True)


async def sigterm_under_load():
    print("SIGTERM under load: 1 instance (4 s drain), 5000 tickets, 8000 requests", flush=True)
    # 8000 connections at once take one instance about two seconds to accept: the drain must
    # outlast the accept queue, or what is still queued when the listener closes is reset.
    with running(1, extra=("--shutdown-drain", "4")) as (instance,):
        coupon = create_coupon(instance.port, 5000)
        stopped = {}

        async def terminate():
            await asyncio.sleep(0.3)
            stopped["at"] = time.monotonic()
            instance.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            status, _, _ = await asyncio.to_thread(readyz, instance.port)
            stopped["readyz"] = status
            await asyncio.to_thread(instance.process.wait, 30)
            stopped["exited"] = time.monotonic()

        answers, _ = await send(coupon, [(instance.port, f"t{user}") for user in range(8000)], terminate())
        refused = sum(1 for _, status, _ in answers if status == "ConnectionRefusedError")
        dropped = sum(1 for _, status, _ in answers if status not in ("200", "201", "409", "503", "ConnectionRefusedError"))
        took = stopped["exited"] - stopped["at"]
        print(f"  /readyz while draining: {stopped['readyz']}", flush=True)
        if stopped["readyz"] != 503:
            failures.append(f"SIGTERM: /readyz answered {stopped['readyz']} while draining, not 503")
        print(f"  exited {took:.1f} s after SIGTERM with code {instance.process.returncode}; "
              f"{refused} connections refused after it stopped accepting; {dropped} accepted requests without an answer", flush=True)
        if dropped or took >= 10:  # the issue's bound on a graceful stop
            failures.append(f"SIGTERM: {dropped} accepted requests unanswered, exit after {took:.1f} s")
        audit("after SIGTERM", coupon, answers)


async def slow_clients():
    print("slow and half-sent requests: 1 instance (--idle-timeout 2 --request-timeout 3), 200 stalled connections, "
          "300 ordinary requests", flush=True)
    with running(1, extra=("--idle-timeout", "2", "--request-timeout", "3")) as (instance,):
        coupon = create_coupon(instance.port, 100)
        body = json.dumps({"user_id": "slow"})

        async def stall(kind, n):
            """Sends part of a request, then nothing (or one byte at a time): seconds until the server closes."""
            reader, writer = await asyncio.open_connection("127.0.0.1", instance.port)
            opened = time.monotonic()
            head = f"POST /v1/coupons/{coupon}/issue HTTP/1.1\r\nHost: faults\r\nContent-Type: application/json\r\n"
            if kind == "half head":
                writer.write(head.encode())
            elif kind == "half body":
                writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n{body[:len(body) // 2]}".encode())
            elif kind in ("dribbled body", "huge length"):
                length = 99_999_999_999 if kind == "huge length" else 10_000
                writer.write(f"{head}Content-Length: {length}\r\n\r\n{{".encode())
            try:
                answer = b""
                if kind in ("dribbled head", "dribbled body"):
                    # One byte every 0.25 s, within the idle timeout each: the head never ends, or the
                    # body goes on past the request deadline. Read meanwhile, as a real client does.
                    for char in (head * 4 if kind == "dribbled head" else " " * 100):
                        writer.write(char.encode())
                        await writer.drain()
                        with contextlib.suppress(asyncio.TimeoutError):
                            answer = await asyncio.wait_for(reader.read(1000), 0.25)
                        if answer or reader.at_eof():
                            break
                await writer.drain()
                answer += await asyncio.wait_for(reader.read(), 15)
                return kind, time.monotonic() - opened, answer.decode(errors="replace").split("\r\n")[0]
            except (asyncio.TimeoutError, ConnectionError, OSError) as error:
                return kind, time.monotonic() - opened, type(error).__name__
            finally:
                writer.close()

        kinds = ("half head", "half body", "dribbled head", "dribbled body", "huge length")
        stalled = [asyncio.create_task(stall(kinds[n % len(kinds)], n)) for n in range(200)]
        await asyncio.sleep(0.3)
        answers, results = await send(coupon, [(instance.port, f"fast-{n}") for n in range(300)])
        slowest = max(seconds for _, _, seconds in results)
        unanswered = sum(1 for _, status, _ in answers if status not in ("201", "409"))
        print(f"  ordinary requests beside the stalled ones: slowest answer {slowest:.2f} s, {unanswered} without 201/409",
              flush=True)
        closed = await asyncio.gather(*stalled)
        for kind in kinds:
            times = [seconds for k, seconds, _ in closed if k == kind]
            print(f"  {kind}: {len(times)} connections closed by the server after {min(times):.1f} to {max(times):.1f} s "
                  f"({sorted({line for k, _, line in closed if k == kind})})", flush=True)
        late = [seconds for _, seconds, _ in closed if seconds > 6]
        if unanswered or late:
            failures.append(f"slow clients: {unanswered} ordinary requests unanswered, {len(late)} stalled connections open > 6 s")
        # A body dribbled within the idle timeout ends at the request deadline with 408; a length over
        # the route's limit gets 413 before a byte of the body is read.
        expected = {"dribbled body": ("HTTP/1.1 408", 3, 5), "huge length": ("HTTP/1.1 413", 0, 1)}
        for kind, (line, earliest, latest) in expected.items():
            wrong = [(round(seconds, 1), answer) for k, seconds, answer in closed
                     if k == kind and not (answer.startswith(line) and earliest <= seconds <= latest)]
            if wrong:
                failures.append(f"slow clients: {kind} not answered '{line}' within {earliest}-{latest} s: {wrong[:3]}")
        stalled_holders = int(psql(f"SELECT count(*) FROM coupon_tickets WHERE coupon_id = {coupon} AND user_id = 'slow'"))
        if stalled_holders:
            failures.append("slow clients: a half-sent request was issued a ticket")
        audit("after slow clients", coupon, answers, expect_sold_out=True)


async def connection_cap():
    print("a cap on open connections: 1 instance (--max-connections 50 --idle-timeout 2), 80 keep-alive connections",
          flush=True)
    with running(1, extra=("--max-connections", "50", "--idle-timeout", "2")) as (instance,):
        release = asyncio.Event()

        started = time.monotonic()

        async def ask():
            """A keep-alive request on a connection of its own, kept open by this side until released:
            seconds from the scenario's start until its answer."""
            reader, writer = await asyncio.open_connection("127.0.0.1", instance.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: faults\r\n\r\n")
            await writer.drain()
            try:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                answered = time.monotonic() - started
                await release.wait()
                return answered
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return None
            finally:
                writer.close()

        asking = [asyncio.create_task(ask()) for _ in range(80)]
        await asyncio.sleep(6)
        release.set()
        waits = await asyncio.gather(*asking)
        prompt = sum(1 for seconds in waits if seconds is not None and seconds < 1)
        later = sum(1 for seconds in waits if seconds is not None and seconds >= 1)
        print(f"  {prompt} answered at once, {later} once the idle timeout closed others, "
              f"{waits.count(None)} never", flush=True)
        # 50 open connections are served (a few more: the accept loop stops after its current batch of
        # reads); the others wait in the accept queue until idle ones close or give way, which no idle
        # connection does before it has been idle 1 s: "at once" is before the scenario's first second.
        if not 50 <= prompt <= 60 or prompt + later != 80:
            failures.append(f"connection cap: {prompt} answered at once and {later} later, not 50-60 and the rest")


async def failover():
    print("failover: pg_auto_failover (a monitor, two nodes, synchronous replication), 2 instances on the "
          "multi-host URL, 16 shoppers; the primary's host lost mid-sale", flush=True)
    with ha.Cluster() as cluster, lib.WebhookReceiver(webhooks.RECEIVER_PORT + 1) as receiver:
        url = cluster.url()
        subprocess.run([os.environ["COUPON_BIN"], "migrate", "--database-url", url, "--log-level", "error"], check=True)
        with running(2, url=url) as instances:
            _, receiver.secret = lib.register_webhook(instances[0].port, receiver.url)
            await failover_sale(cluster, [instance.port for instance in instances], receiver)


async def failover_sale(cluster, ports, receiver=None):
    """The sale through the loss of the primary's host, then the checks on the new primary, and the
    old node rejoined as a standby; with `receiver`, every event of the sale delivered to it. Returns
    what was measured (bench/failover runs it five times)."""
    coupon = create_coupon(ports[0], 100_000)
    answers = []  # (user, status, body, port, sent at, seconds)
    selling = True

    async def shopper(n):
        for k in range(1_000_000):
            if not selling:
                return
            user, port, sent = f"fo-{n}-{k}", ports[n % len(ports)], time.monotonic()
            status, body, seconds = await issue(port, coupon, user, timeout=15)
            answers.append((user, status, body, port, sent, seconds))
            if status != "201":
                await asyncio.sleep(0.05)

    async def standbys_everywhere(wanted, seconds):
        """Whether every instance reads `wanted` synchronous standbys within `seconds` (polled every 2 s)."""
        by = time.monotonic() + seconds
        while any(metric(port, "coupon_database_synchronous_standbys") != wanted for port in ports):
            if time.monotonic() > by:
                return False
            await asyncio.sleep(0.2)
        return True

    shoppers = [asyncio.create_task(shopper(n)) for n in range(16)]
    await asyncio.sleep(2)
    # The URL asks for a writer: each instance reads the primary's synchronous standbys (1 now, and 0
    # once the promoted node is alone: the alert CouponReplicationNotSynchronous).
    if not await standbys_everywhere(1, 10):
        failures.append(f"failover: coupon_database_synchronous_standbys before the loss: "
                        f"{[metric(port, 'coupon_database_synchronous_standbys') for port in ports]}, not 1")
    old = await asyncio.to_thread(cluster.primary)
    survivor = next(name for name in ha.NODES if name != old)
    lost_at = time.monotonic()
    await asyncio.to_thread(cluster.lose, old)
    while await asyncio.to_thread(cluster.primary) != survivor:
        if time.monotonic() - lost_at > 90:
            failures.append("failover: no promotion within 90 s")
            break
        await asyncio.sleep(0.1)
    promoted_at = time.monotonic()
    # The sale goes on: each instance issues again (bounded), then a few seconds more.
    def first_issued():
        """Per instance, when the first request sent after the promotion and answered 201 was sent."""
        first = {}
        for _, status, _, port, sent, _ in answers:
            if status == "201" and sent > promoted_at:
                first[port] = min(sent, first.get(port, sent))
        return first

    while len(first_issued()) < len(ports) and time.monotonic() - promoted_at < 30:
        await asyncio.sleep(0.1)
    await asyncio.sleep(3)
    selling = False
    await asyncio.gather(*shoppers)
    first = first_issued()

    statuses = {}
    for _, status, *_ in answers:
        statuses[status] = statuses.get(status, 0) + 1
    during = [seconds for _, _, _, _, sent, seconds in answers if sent >= lost_at - 3]
    print(f"  {old} lost; {survivor} promoted {promoted_at - lost_at:.1f} s later; first 201 after the promotion: "
          + ", ".join(f"instance {port}: +{first[port] - promoted_at:.1f} s" if port in first else f"instance {port}: none"
                      for port in ports)
          + f"; longest wait {max(during):.2f} s; answers {dict(sorted(statuses.items()))}", flush=True)
    if len(first) < len(ports):
        failures.append(f"failover: instances {sorted(set(ports) - set(first))} issued nothing after the promotion")
    alone = await standbys_everywhere(0, 20)
    print(f"  synchronous standbys read by the instances after the promotion: "
          f"{[metric(port, 'coupon_database_synchronous_standbys') for port in ports]} (1 before the loss)", flush=True)
    if not alone:
        failures.append("failover: the promoted node alone, and the instances do not read 0 synchronous standbys")
    primary_url = cluster.node_url(survivor)
    audit("after the failover (on the promoted node)", coupon, [(u, s, b) for u, s, b, *_ in answers], url=primary_url)

    # The catalogue is trusted again: a coupon sold out now is refused from memory on both instances,
    # once each listener is back on the new primary (bounded: 20 s).
    listening_by = time.monotonic() + 20
    while any(metric(port, "coupon_listener_connected") != 1 for port in ports) and time.monotonic() < listening_by:
        await asyncio.sleep(0.1)
    small = create_coupon(ports[0], 3)
    for n in range(3):
        await issue(ports[n % 2], small, f"fo-small-{n}")
    await asyncio.sleep(1.5)
    from_memory = []
    for port in ports:
        before = metric(port, 'coupon_issue_answers_total{source="cache"}') or 0
        refused = [(await issue(port, small, f"fo-late-{port}-{n}"))[0] for n in range(20)]
        from_memory.append((metric(port, 'coupon_issue_answers_total{source="cache"}') or 0) - before)
        if refused != ["409"] * 20:
            failures.append(f"failover: latecomers on {port} answered {sorted(set(refused))}")
    print(f"  a coupon sold out after the failover: 20 latecomers per instance, answered from memory: {from_memory}",
          flush=True)
    if any(count < 20 for count in from_memory):
        listeners = [(metric(port, "coupon_listener_connected"), metric(port, "coupon_listener_connects_total")) for port in ports]
        failures.append(f"failover: the catalogue answered {from_memory} of 20 refusals from memory "
                        f"(listener connected, connects per instance: {listeners})")

    # The old node back as a standby: the sale goes on, and none of it reaches that node.
    await asyncio.to_thread(cluster.rejoin, old)
    after = [await issue(ports[n % 2], coupon, f"fo-after-{n}") for n in range(40)]
    # The service's sessions on the standby, by what they last ran: the pool of each host may hold a
    # connection there (one that ran nothing, or asked whether the host accepts writes), nothing else.
    sessions = await asyncio.to_thread(
        cluster.node_sql, old, "SELECT application_name || ': ' || coalesce(nullif(left(query, 60), ''), '(nothing)') "
                               "FROM pg_stat_activity WHERE application_name LIKE 'coupon%'")
    others = [line for line in (sessions or "").splitlines()
              if line and "transaction_read_only" not in line and not line.endswith("(nothing)")]
    print(f"  {old} rejoined as a standby: 40 more users answered {sorted({status for status, _, _ in after})}; "
          f"the service's sessions on {old}: {len((sessions or '').splitlines())}, other than the host check: {others}",
          flush=True)
    if any(status != "201" for status, _, _ in after) or others:
        failures.append(f"failover: after the rejoin, answers {sorted({s for s, _, _ in after})}, sessions on {old}: {others}")
    audit("after the rejoin (on the primary)", coupon,
          [(u, s, b) for u, s, b, *_ in answers] + [(f"fo-after-{n}", s, b) for n, (s, b, _) in enumerate(after)],
          url=primary_url)
    if receiver:
        took, came = await webhooks.delivered(receiver, coupon, url=primary_url)
        print(f"  webhook: every event of the sale acknowledged {took:.1f} s after the rejoin", flush=True)
        problems = [] if came else ["not every event of the sale reached the webhook"]
        webhooks.verdict("failover webhook", receiver, [coupon], problems, url=primary_url)
        if problems:
            failures.append("failover: " + "; ".join(problems[:3]))
    return {"lost": old, "promoted": survivor, "promotion_s": promoted_at - lost_at,
            "first_201_s": [first[port] - promoted_at if port in first else None for port in ports],
            "longest_wait_s": max(during), "unavailable": statuses.get("503", 0), "issued": statuses.get("201", 0),
            "other": sum(n for status, n in statuses.items() if status not in ("201", "503"))}


FAKETIME_LIBS = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))


def skewed(seconds):
    """Environment that moves a process's wall clock (CLOCK_REALTIME, which Foundation's Date() reads) by
    `seconds` through libfaketime; monotonic clocks stay true, so timers and deadlines are unchanged.

    FAKETIME_SHARED names a semaphore that does not exist, so libfaketime makes its own and overwrites
    the variable in place. Left unset, libfaketime adds it, glibc moves `environ` off the stack, and the
    Swift runtime, which finds argv by walking back from `environ`, sees no arguments at all."""
    return {"LD_PRELOAD": FAKETIME_LIBS[0], "FAKETIME": f"{seconds:+d}s", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_SHARED": "/faketime_sem_none /faketime_shm_none"}


def remove_faketime_objects(pid):
    """libfaketime's semaphore and shared memory for `pid`, left behind when the process was killed."""
    for path in (f"/dev/shm/sem.faketime_sem_{pid}", f"/dev/shm/faketime_shm_{pid}"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def http_clock(port, seconds=1.2):
    """The instance's wall clock minus ours, from its `Date` headers over `seconds`. Hummingbird stamps
    the header once a second in whole seconds, so the largest reading is up to a second behind: enough
    to show a 3 s skew reached the process, not to measure it."""
    best = -math.inf
    deadline = time.time() + seconds
    for _ in range(100):
        if time.time() >= deadline:
            break
        response = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
        received = time.time()
        best = max(best, email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp() - received)
        time.sleep(0.05)
    return best


def cache_answers(port):
    """Issue requests this instance answered from its catalogue (`coupon_issue_answers_total`)."""
    return metric(port, 'coupon_issue_answers_total{source="cache"}') or 0.0


async def skewed_clocks():
    print("skewed clocks: 3 instances (clock true, 3 s behind, 3 s ahead of the database), a 5 s sale", flush=True)
    if not FAKETIME_LIBS:
        failures.append("clock: no libfaketime.so.1 (bench/faults/run.sh installs Debian's faketime)")
        return
    skews = (0, -3, 3)
    pids = []
    try:
        with running(3, envs=[skewed(skew) if skew else {} for skew in skews]) as instances:
            pids += [i.process.pid for i in instances]
            await skewed_sale(instances, skews)
    finally:
        for pid in pids:
            remove_faketime_objects(pid)


async def skewed_sale(instances, skews):
    """The sale itself, on instances whose clocks are off by `skews` seconds."""
    ports = [i.port for i in instances]
    names = {port: f"clock {skew:+d} s" for port, skew in zip(ports, skews)}
    # Without the skew inside the process this scenario would pass on any code.
    clocks = await asyncio.gather(*(asyncio.to_thread(http_clock, port) for port in ports))
    for port, skew, clock in zip(ports, skews, clocks):
        if not skew - 1.5 < clock <= skew + 0.2:
            failures.append(f"clock: {names[port]} has a Date header {clock:+.1f} s off ours: the skew did not apply")
            return
    print("  Date headers against our clock: " + ", ".join(
        f"{names[port]} {clock:+.1f} s" for port, clock in zip(ports, clocks)), flush=True)

    # The database's clock is the truth; it runs on this machine, so ours is the same clock.
    asked = time.time()
    database_now = float(psql("SELECT extract(epoch FROM clock_timestamp())"))
    if not asked <= database_now <= time.time():
        failures.append(f"clock: the database's clock is not ours ({database_now - asked:+.3f} s)")
        return
    starts = math.ceil(database_now) + 5
    ends = starts + 5

    def rfc3339(seconds):
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    coupon = create_coupon(ports[0], 10000, starts_at=rfc3339(starts), ends_at=rfc3339(ends))  # never sold out
    answers = []
    # Until an instance's catalogue knows the coupon it asks the database, which is always right.
    for port in ports:
        deadline, known = time.monotonic() + 3, False
        for n in range(60):
            before = cache_answers(port)
            status, body, _ = await issue(port, coupon, f"clock-probe-{port}-{n}", timeout=5)
            answers.append((f"clock-probe-{port}-{n}", status, body))
            known = cache_answers(port) > before
            if known or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        if not known:
            failures.append(f"clock: {names[port]} never answered from its catalogue: nothing to show")
            return

    async def timed(port, user):
        sent = time.time()
        status, body, _ = await issue(port, coupon, user, timeout=5)
        return port, user, sent, time.time(), status, (body or {}).get("code") if status == "409" else None, body

    # Every 50 ms, one new user on each instance, from 1.5 s before the sale to 1.5 s after it.
    first = starts - 1.5
    tasks = []
    for tick in range(int((ends + 1.5 - first) / 0.05) + 1):
        await asyncio.sleep(max(0.0, first + tick * 0.05 - time.time()))
        tasks += [asyncio.create_task(timed(port, f"clock-{tick}-{port}")) for port in ports]
    results = await asyncio.gather(*tasks)
    answers += [(user, status, body) for _, user, _, _, status, _, body in results]

    def ms(seconds):
        return f"{seconds * 1000:+.0f} ms"

    for port in ports:
        mine = [r for r in results if r[0] == port]
        # Sent after starts_at, the database saw it open; received before ends_at, it saw it not ended.
        wrong = [  # (what, when, seconds from the edge)
            ("not_started sent 50 ms or more after starts_at", "sent at starts_at", [
                sent - starts for _, _, sent, received, _, code, _ in mine
                if code == "not_started" and sent >= starts + 0.05 and received < ends]),
            ("ended received 50 ms or more before ends_at", "received at ends_at", [
                received - ends for _, _, _, received, _, code, _ in mine if code == "ended" and received < ends - 0.05]),
            ("201 received before starts_at", "received at starts_at", [
                received - starts for _, _, _, received, status, _, _ in mine if status == "201" and received < starts]),
            ("201 sent 50 ms or more after ends_at", "sent at ends_at", [
                sent - ends for _, _, sent, _, status, _, _ in mine if status == "201" and sent > ends + 0.05]),
            ("answers other than 201, not_started, ended", "sent at starts_at", [
                sent - starts for _, _, sent, _, status, code, _ in mine
                if status != "201" and code not in ("not_started", "ended")]),
        ]
        issued = [sent - starts for _, _, sent, _, status, _, _ in mine if status == "201"]
        ended = [sent - ends for _, _, sent, _, _, code, _ in mine if code == "ended"]
        problems = [f"{len(times)} × {what} ({when} {ms(min(times))} to {ms(max(times))})"
                    for what, when, times in wrong if times]
        if not issued:
            problems.append("no ticket issued")
        print(f"  {names[port]}: first 201 sent at starts_at {ms(min(issued)) if issued else 'never'}, "
              f"first ended sent at ends_at {ms(min(ended)) if ended else 'never'}; "
              f"{len(issued)} × 201 of {len(mine)}: {'; '.join(problems) or 'as the database'}", flush=True)
        if problems:
            failures.append(f"clock: {names[port]}: {'; '.join(problems)}")
    if any(status == "201" for _, status, _ in answers):
        audit("after skewed clocks", coupon, answers)


async def soak(rounds, seed):
    print(f"randomized soak: {rounds} rounds, seed {seed} (replay: FAULTS_SEED={seed})", flush=True)
    rng = random.Random(seed)
    for round_number in range(rounds):
        quantity = rng.randint(1, 5000)
        oversubscription = rng.uniform(1.1, 10)
        count = rng.randint(1, 3)
        repeated = rng.uniform(0, 0.5)
        requests = int(quantity * oversubscription)
        distinct = max(1, int(requests * (1 - repeated)))
        with running(count) as instances:
            ports = [i.port for i in instances]
            coupon = create_coupon(ports[0], quantity)
            jobs = [(ports[rng.randrange(count)], f"s{round_number}-{rng.randrange(distinct)}") for _ in range(requests)]
            print(f"  round {round_number + 1}: {quantity} tickets, {requests} requests from {distinct} users, "
                  f"{count} instance(s)", flush=True)
            answers = []
            # Bounded concurrency: at most 2000 connections at once.
            for start_index in range(0, len(jobs), 2000):
                answers += (await send(coupon, jobs[start_index:start_index + 2000]))[0]
            users = len({user for _, user in jobs})
            audit(f"soak round {round_number + 1}", coupon, answers, expect_sold_out=users >= quantity)


async def after_the_sale():
    print("returns, redemptions and issuance at once, an instance SIGKILLed: 2 instances, 1000 tickets sold out, "
          "300 returned while 3000 new users ask, 200 redemption calls", flush=True)
    with running(2) as instances:
        ports, coupon, jobs = sale(instances, 1000, "a", 1000)
        answers, _ = await send(coupon, jobs)
        audit("sold out", coupon, answers, expect_sold_out=True)
        returned_users = [f"a{n}" for n in range(300)]
        redeemers = [f"a{n}" for n in range(500, 600)]
        new_jobs = [(ports[n % 2], f"b{n}") for n in range(3000)]

        async def returns_and_redemptions():
            calls = [lib.request_async(ports[n % 2], "DELETE", f"/v1/coupons/{coupon}/tickets/{user}", token=TOKEN)
                     for n, user in enumerate(returned_users)]
            calls += [lib.request_async(ports[n % 2], "POST", f"/v1/coupons/{coupon}/tickets/{redeemers[n % 100]}/redemption",
                                        {"order_id": f"order-{n % 100}-{n % 3}"}) for n in range(200)]
            await asyncio.sleep(0.1)
            results = asyncio.gather(*calls)
            await asyncio.sleep(0.2)
            instances[1].process.send_signal(signal.SIGKILL)
            return await results

        async def waves():
            """The new users in ten waves, 50 ms apart, so that they keep asking while tickets come back."""
            results = []
            for wave in range(0, len(new_jobs), 300):
                results += await asyncio.gather(*(issue(port, coupon, user) for port, user in new_jobs[wave:wave + 300]))
                await asyncio.sleep(0.05)
            return results

        results, done = await asyncio.gather(waves(), returns_and_redemptions())
        # A returned ticket is no longer held by the user it was shown to.
        answers = [answer for answer in answers if answer[0] not in returned_users]
        answers += [(user, status, body) for (_, user), (status, body, _) in zip(new_jobs, results)]
        returned = sum(1 for status, _, _ in done[:300] if status == "204")
        redeemed = sum(1 for status, _, _ in done[300:] if status == "201")
        audit("returns racing issuance", coupon, answers)
        answers += await fill([ports[0]], coupon, "a-fill")
        held = audit("returns, then filled through the survivor", coupon, answers, expect_sold_out=True)
        still_held = int(psql(f"SELECT count(*) FROM coupon_tickets WHERE coupon_id = {coupon} "
                              f"AND user_id IN ({', '.join(repr(u) for u in returned_users)})"))
        reissued = int(psql(f"SELECT count(*) FROM coupon_tickets WHERE coupon_id = {coupon} "
                            f"AND (user_id LIKE 'b%' OR user_id LIKE 'a-fill-%')"))
        redemptions = int(psql(f"SELECT count(*) FROM coupon_tickets WHERE coupon_id = {coupon} AND redeemed_at IS NOT NULL"))
        print(f"  {returned} returns answered 204, {300 - returned - still_held} more committed unanswered (the killed "
              f"instance), {still_held} still held; {reissued} tickets issued to new users; {redeemed} redemptions "
              f"answered 201, {redemptions} in the database", flush=True)
        problems = []
        if reissued != 300 - still_held:
            problems.append(f"{reissued} issued to new users for {300 - still_held} returned")
        if returned > 300 - still_held:
            problems.append(f"{returned} returns answered 204 but only {300 - still_held} committed")
        if redeemed > redemptions or redemptions > 100:
            problems.append(f"{redeemed} redemptions answered 201, {redemptions} in the database (at most 100 tickets)")
        if held != 1000:
            problems.append(f"{held} held after the fill")
        if problems:
            failures.append("after the sale: " + "; ".join(problems))


async def holds_and_sigkill():
    print("checkout holds, an instance SIGKILLed: 2 instances, 600 tickets sold out, 1200 holds by code "
          "(two orders for each ticket, one on each instance), then every answered hold confirmed", flush=True)
    with running(2) as instances:
        ports, coupon, jobs = sale(instances, 600, "h", 600)
        answers, _ = await send(coupon, jobs)
        audit("sold out", coupon, answers, expect_sold_out=True)
        codes = [body["ticket"]["code"] for _, status, body in answers if status == "201"]
        calls = [(ports[(n + side) % 2], code, f"order-{n}-{side}")
                 for n, code in enumerate(codes) for side in (0, 1)]
        random.shuffle(calls)

        answered_by_victim = 0

        async def hold(port, code, order):
            nonlocal answered_by_victim
            result = await lib.request_async(port, "POST", f"/v1/tickets/{code}/redemption",
                                             {"order_id": order, "hold_seconds": 600})
            answered_by_victim += port == ports[1] and result[0] in ("200", "201", "409")
            return result

        async def killer():
            """Mid-way: once the instance to be killed has answered 150 holds (bounded: 10 s)."""
            deadline = time.monotonic() + 10
            while answered_by_victim < 150 and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            instances[1].process.send_signal(signal.SIGKILL)

        results = (await asyncio.gather(asyncio.gather(*(hold(*call) for call in calls)), killer()))[0]
        stored = dict((code, (order or None, hold == "t")) for code, order, hold in (
            line.split("|") for line in psql(
                f"SELECT code, coalesce(order_id, ''), hold_until > clock_timestamp() FROM coupon_tickets "
                f"WHERE coupon_id = {coupon} AND user_id IS NOT NULL", lib.URL).splitlines() if line))
        answered = {}
        problems = []
        statuses = {}
        for (port, code, order), (status, body, _) in zip(calls, results):
            statuses[status] = statuses.get(status, 0) + 1
            if status in ("200", "201"):
                if body.get("state") != "held" or body.get("order_id") != order:
                    problems.append(f"{code}: answered {status} {body.get('state')} for {body.get('order_id')}, asked for {order}")
                answered.setdefault(code, set()).add(order)
            elif status not in ("409",) and port == ports[0]:
                problems.append(f"{code}: the survivor answered {status}")
        for code, orders in answered.items():
            if len(orders) != 1:
                problems.append(f"{code}: held for {sorted(orders)}")
            elif stored.get(code) != (next(iter(orders)), True):
                problems.append(f"{code}: answered held for {orders}, stored {stored.get(code)}")
        unanswered = sum(1 for code, (order, _) in stored.items() if order and code not in answered)
        confirmed = 0
        for code, orders in answered.items():
            status, body, _ = await lib.request_async(ports[0], "POST", f"/v1/tickets/{code}/redemption",
                                                      {"order_id": next(iter(orders))})
            confirmed += status == "200" and body.get("state") == "redeemed"
        redeemed = int(psql(f"SELECT count(*) FROM coupon_tickets WHERE coupon_id = {coupon} AND redeemed_at IS NOT NULL"))
        if confirmed != len(answered) or redeemed != len(answered):
            problems.append(f"{len(answered)} answered holds, {confirmed} confirmed, {redeemed} redeemed in the database")
        victim = sum(1 for (port, _, _), (status, _, _) in zip(calls, results) if port == ports[1] and status in ("200", "201"))
        if victim == 0:
            problems.append("the killed instance answered no hold: the kill came before it placed any")
        print(f"  answers {dict(sorted(statuses.items()))}: {len(answered)} tickets answered held ({victim} by the killed "
              f"instance), every one stored for "
              f"its order; {unanswered} more held unanswered (the killed instance); {confirmed} confirmed through the "
              f"survivor", flush=True)
        audit("holds after SIGKILL", coupon, answers, expect_sold_out=True)
        if problems:
            print("  " + "\n  ".join(problems[:10]), flush=True)
            failures.append("holds: " + "; ".join(problems[:3]))


def main():
    lib.raise_file_limit()
    chosen = sys.argv[1:] or ["instances", "sigkill", "postgres", "sigterm", "slow", "cap", "clock", "aftersale", "holds",
                              "webhooks", "failover", "backup", "soak"]
    seed = int(os.environ.get("FAULTS_SEED", random.randrange(2**31)))
    rounds = int(os.environ.get("FAULTS_ROUNDS", "20"))
    scenarios = {
        "instances": several_instances, "sigkill": sigkill_mid_burst, "postgres": postgres_crash_mid_burst,
        "sigterm": sigterm_under_load, "slow": slow_clients, "cap": connection_cap, "clock": skewed_clocks,
        "aftersale": after_the_sale, "holds": holds_and_sigkill, "failover": failover,
        "webhooks": lambda: webhooks.webhooks(running, sale, send, audit, failures),
        "backup": lambda: backup.backup(running, audit, failures),
        "soak": lambda: soak(rounds, seed),
    }
    failed = 0
    for name in chosen:
        before = len(failures)
        asyncio.run(scenarios[name]())
        failed += len(failures) > before
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
    else:
        print(f"all fault scenarios clean ({', '.join(chosen)})")
    print(f"faults: {len(chosen) - failed} passed, {failed} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
