"""Webhook delivery through faults (docs/events.md), a scenario of bench/faults/faults.py: two instances
sell to a receiver on loopback that is slow, then down, while the instance delivering to it is
SIGKILLed and PostgreSQL crashes. After each fault, every event the outbox holds for the sale must
reach the receiver at least once, in feed order, signed; duplicates are counted.

The receiver's down time and slow answer are FAULTS_WEBHOOK_DOWN (5 s in CI; the issue's 30 s in
bench/results/events.md) and FAULTS_WEBHOOK_SLOW (5 s)."""
import asyncio
import os
import signal
import subprocess
import time

from bench import lib
from bench.lib import ROOT, psql

RECEIVER_PORT = int(os.environ.get("FAULTS_WEBHOOK_PORT", "8399"))
DOWN_SECONDS = float(os.environ.get("FAULTS_WEBHOOK_DOWN", "5"))
SLOW_SECONDS = float(os.environ.get("FAULTS_WEBHOOK_SLOW", "5"))


def outbox(coupon, url=None):
    """The coupon's events as the outbox holds them: ids in position order."""
    return psql(f"SELECT id FROM outbox_events WHERE coupon_id = {coupon} ORDER BY position, within", url or lib.URL).split()


async def delivered(receiver, coupon, seconds=60, url=None):
    """Waits (bounded) until every event of the coupon in the outbox has been acknowledged; how long it took
    and whether it came."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        wanted = set(outbox(coupon, url))
        if wanted <= {event["id"] for event in receiver.acknowledged()}:
            return time.monotonic() - started, True
        await asyncio.sleep(0.2)
    return time.monotonic() - started, False


def holder_pid(webhook):
    holder = psql(f"SELECT coalesce(lease_holder, '') FROM webhooks WHERE id = {webhook}", lib.URL)
    return int(holder.split("/")[1]) if holder.count("/") == 2 else None


def verdict(name, receiver, coupons, problems, url=None):
    """Every event of `coupons` acknowledged at least once, the first arrivals in position order, every
    signature valid; prints the counts and adds what failed to `problems`."""
    arrivals = [event["id"] for event in receiver.acknowledged()]
    for coupon in coupons:
        wanted = outbox(coupon, url)
        mine = set(wanted)
        first = list(dict.fromkeys(event for event in arrivals if event in mine))
        if set(first) != mine:
            problems.append(f"{name}: coupon {coupon}: {len(mine - set(first))} of {len(mine)} events never acknowledged")
        elif first != wanted:
            problems.append(f"{name}: coupon {coupon}: events first arrived out of feed order")
    unsigned = sum(1 for *_, signed in receiver.deliveries if not signed)
    if unsigned:
        problems.append(f"{name}: {unsigned} deliveries with a signature that does not hold")
    duplicates = len(arrivals) - len(set(arrivals))
    refused = sum(1 for _, _, _, acknowledged, _ in receiver.deliveries if not acknowledged)
    print(f"  {name}: {len(set(arrivals))} events acknowledged in {len(receiver.deliveries)} deliveries "
          f"({refused} refused by the receiver), {duplicates} acknowledged twice or more", flush=True)


async def webhooks(running, sale, send, audit, failures):
    print(f"webhooks through faults: 2 instances, a receiver slow ({SLOW_SECONDS:.0f} s), then down "
          f"({DOWN_SECONDS:.0f} s), the delivering instance SIGKILLed, PostgreSQL crashed; 4 bursts of 1000 "
          f"users for 3600 tickets", flush=True)
    problems = []
    with lib.WebhookReceiver(RECEIVER_PORT, slow_seconds=SLOW_SECONDS) as receiver, \
            running(2, extra=("--webhook-batch", "50")) as instances:
        webhook, receiver.secret = lib.register_webhook(instances[0].port, receiver.url)
        ports, coupon, jobs = sale(instances, 3600, "w", 4000)
        bursts = [jobs[n * 1000:(n + 1) * 1000] for n in range(4)]

        # A burst with the receiver fast, then one with it slow: issuance does not wait for deliveries.
        fast_started = time.monotonic()
        answers, _ = await send(coupon, bursts[0])
        fast = time.monotonic() - fast_started
        receiver.mode = "slow"
        slow_started = time.monotonic()
        more, _ = await send(coupon, bursts[1])
        slow = time.monotonic() - slow_started
        answers += more
        print(f"  a burst of 1000 took {fast:.2f} s with the receiver fast, {slow:.2f} s with it answering in "
              f"{SLOW_SECONDS:.0f} s", flush=True)
        receiver.mode = "ok"
        took, came = await delivered(receiver, coupon)
        print(f"  slow receiver: every event acknowledged {took:.1f} s after the burst", flush=True)

        # Down: refused deliveries are retried with backoff and arrive once it is back.
        receiver.mode = "down"
        more, _ = await send(coupon, bursts[2][:500])
        answers += more
        await asyncio.sleep(DOWN_SECONDS)
        receiver.mode = "ok"
        up = time.monotonic()
        took, came = await delivered(receiver, coupon, seconds=120)
        print(f"  receiver down {DOWN_SECONDS:.0f} s: every event acknowledged {took:.1f} s after it was back", flush=True)
        if not came:
            problems.append("receiver down: not every event came once it was back")

        # The instance holding the lease SIGKILLed mid-burst: the other takes the endpoint over.
        pid = holder_pid(webhook)
        victim = next((i for i in instances if i.process.pid == pid), None)
        if victim is None:
            problems.append(f"no instance holds the lease (holder pid {pid})")
        else:
            receiver.mode = "slow"  # a delivery in flight when it dies

            async def kill():
                await asyncio.sleep(0.5)
                victim.process.send_signal(signal.SIGKILL)

            survivor = [i for i in instances if i is not victim][0]
            killed_at = time.monotonic()
            more, _ = await send(coupon, [(survivor.port, user) for _, user in bursts[2][500:]], kill())
            answers += more
            receiver.mode = "ok"
            took, came = await delivered(receiver, coupon)
            taken = holder_pid(webhook)
            print(f"  the delivering instance SIGKILLed: the survivor (pid {taken}) delivered every event "
                  f"{time.monotonic() - killed_at:.1f} s after the kill", flush=True)
            if not came or taken != survivor.process.pid:
                problems.append(f"SIGKILL: not every event came through the survivor (lease holder pid {taken})")

            # PostgreSQL crashes mid-burst.
            async def crash():
                await asyncio.sleep(0.3)
                await asyncio.to_thread(subprocess.run, ["bash", "-c", f"source '{ROOT}/scripts/lib/postgres.sh' && restart_local_postgres_immediate"],
                                        check=True, capture_output=True)

            more, _ = await send(coupon, [(survivor.port, user) for _, user in bursts[3]], crash())
            answers += more
            survivor.wait_ready(30)
            took, came = await delivered(receiver, coupon)
            print(f"  PostgreSQL crashed mid-burst: every event acknowledged {took:.1f} s after", flush=True)
            if not came:
                problems.append("PostgreSQL crash: not every event came after it")
        audit("webhooks", coupon, answers)
        verdict("webhooks", receiver, [coupon], problems)
    if problems:
        print("  " + "\n  ".join(problems), flush=True)
        failures.append("webhooks: " + "; ".join(problems[:3]))
