"""The rolling-upgrade check, `python3 -m bench.upgrade.check`, run by bench/upgrade/check.sh (which
sets up PostgreSQL, builds the binaries, creates the two databases and sets PREVIOUS_BIN, COUPON_BIN,
UPGRADED_URL, FRESH_URL and PREVIOUS_REV).

docs/operations.md, "Rolling upgrades": migrate first, then replace the instances one at a time, so
for a while the previous release serves on the new schema, beside the new release. On two databases:

- upgraded: migrated by the previous binary (its own migrations, as the database stood), then by the
  current one (the upgrade);
- fresh: migrated by the current binary alone.

On each, with the current binary's migrations (those built into it) applied and `migrate status` all
applied:
1. the previous binary serves alone: a coupon made through it (admin API), 300 users at once for
   200 tickets (exactly 200 × 201 and 100 × 409 sold_out), every winner's retry 200 with the same
   ticket; a winner's ticket read, held, confirmed, listed by its order, restored by its code, another
   returned by the admin; the audit;
2. the previous and the current binary side by side on the same database, one sale: a coupon made
   through the current one, 300 users at once, half to each instance; each winner's retry on the
   other instance 200 with the same ticket; both read the coupon sold out; one `ticket.issued` event
   per ticket; the audit; then the checkout of step 1 on a ticket the previous instance issued, its
   steps alternating between the two instances.
The audit: audit_coupon() clean (counter = tickets held, no user twice, tickets within the quantity),
every 201 holds its ticket (the code answered is the user's in the database), sold out exactly.

Also printed, not checked: what the previous binary's own `migrate --dry-run` says of the new
schema (an instance of it that ran `migrate` at its start would do that).
Exits 1 when a check fails: FAIL, with every failed check.
"""
import asyncio
import os
import subprocess
import sys

from bench import lib
from bench.lib import Server, audit, create_coupon_over_http, issue_async, psql, request_async

PREVIOUS = os.environ["PREVIOUS_BIN"]
CURRENT = os.environ["COUPON_BIN"]
PREVIOUS_REV = os.environ.get("PREVIOUS_REV", "previous")
PORTS = (int(os.environ.get("UPGRADE_PORT", "8441")), int(os.environ.get("UPGRADE_PORT", "8441")) + 1)
TOKEN = lib.ADMIN_TOKEN
USERS, TICKETS = 300, 200
check = lib.Checks("upgrade")


def migrate(binary, url, *args):
    """(exit code, output) of `binary migrate ARGS` with the migrations built into it."""
    result = subprocess.run([binary, "migrate", *args, "--database-url", url, "--log-level", "error"],
                            capture_output=True, text=True)
    return result.returncode, (result.stdout + result.stderr).strip()


def indented(text):
    return "\n      " + "\n      ".join(text.splitlines()[-15:]) if text else ""


def migrated(name, url):
    """The database migrated as its kind says; True when it is at the current binary's schema."""
    steps = ([("previous", PREVIOUS)] if name == "upgraded" else []) + [("current", CURRENT)]
    for side, binary in steps:
        code, output = migrate(binary, url)
        applied = [line.split(" ", 1)[1] for line in output.splitlines() if line.startswith("applied ")]
        check(code == 0, f"{name}: `migrate` of the {side} binary: exit {code}; applied {len(applied)}: "
                         f"{', '.join(a for a in applied if not a.startswith('functions/')) or 'no versioned file'}"
                         + ("" if code == 0 else indented(output)))
        if code != 0:
            return False
    code, output = migrate(CURRENT, url, "status")
    pending = [line for line in output.splitlines() if ": applied at " not in line]
    check(code == 0 and not pending, f"{name}: `migrate status` of the current binary: every migration applied"
                                     + ("" if code == 0 and not pending else indented(output)))
    index = psql("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('coupon_tickets_by_order')", url)
    check(index == "t", f"{name}: coupon_tickets_by_order is there and valid ({index or 'missing'})")
    code, output = migrate(PREVIOUS, url, "--dry-run")
    print(f"  note: the previous binary's own `migrate --dry-run` here: exit {code}{indented(output) or ' (nothing)'}", flush=True)
    return True


def audited(what, coupon, url, answers):
    """The audit of a sale whose answers are (user, status, body): audit_coupon() clean, sold out
    exactly, every 201's code the user's ticket in the database."""
    result = audit(coupon, url)
    problems = result.violations(sold_out=True)
    stored = dict(line.split("|") for line in psql(
        f"SELECT user_id || '|' || code FROM coupon_tickets WHERE coupon_id = {coupon} AND user_id IS NOT NULL", url).splitlines())
    wrong = [user for user, status, body in answers
             if status == "201" and stored.get(user) != ((body or {}).get("ticket") or {}).get("code")]
    if wrong:
        problems.append(f"{len(wrong)} answered 201 whose ticket is not theirs in the database (first: {wrong[0]})")
    check(not problems, f"{what}: audit {result}" + (": clean" if not problems else ": " + "; ".join(problems)))


def counted(answers):
    statuses = {}
    for _, status, body in answers:
        key = status + (f" {body.get('code')}" if isinstance(body, dict) and body.get("code") else "")
        statuses[key] = statuses.get(key, 0) + 1
    return dict(sorted(statuses.items()))


async def oversubscribed(coupon, ports, prefix):
    """USERS new users at once, user n to ports[n % len(ports)]: [(user, status, body)]."""
    users = [f"{prefix}-{n}" for n in range(USERS)]
    results = await asyncio.gather(*(issue_async(ports[n % len(ports)], coupon, user) for n, user in enumerate(users)))
    return [(user, status, body) for user, (status, body, _) in zip(users, results)]


def route_known(status, body):
    """False for a 404 that is not one of the service's own answers (a route this binary lacks)."""
    return not (status == "404" and not (isinstance(body, dict) and body.get("code")))


async def alone(name, url):
    """The previous binary serving alone on the new schema."""
    with Server(PORTS[0], url=url, binary=PREVIOUS, log=True, log_level="error") as server:
        coupon = create_coupon_over_http(server.base, TOKEN, f"upgrade {name} previous alone", TICKETS)
        answers = await oversubscribed(coupon, [PORTS[0]], f"{name}-a")
        counts = counted(answers)
        check(counts == {"201": TICKETS, "409 sold_out": USERS - TICKETS},
              f"{name}, previous binary alone: {USERS} users at once for {TICKETS} tickets: {counts}")
        winners = [(user, body) for user, status, body in answers if status == "201"]
        retries = await asyncio.gather(*(issue_async(PORTS[0], coupon, user) for user, _ in winners))
        same = sum(1 for (_, body), (status, again, _) in zip(winners, retries)
                   if status == "200" and again and again.get("ticket") == body["ticket"])
        check(same == len(winners), f"{name}, previous binary alone: every winner's retry 200 with the same ticket ({same} of {len(winners)})")
        audited(f"{name}, previous binary alone", coupon, url, answers)
        await checkout(name, coupon, winners, [PORTS[0], PORTS[0]], "previous binary alone", url)


async def checkout(name, coupon, winners, ports, label, url):
    """A winner's ticket read, held, confirmed, listed by its order, restored, all by its code
    (alternating between `ports`), then another's returned by the admin. Steps of routes the binary
    lacks are skipped, said so."""
    (user, body), (other, _) = winners[0], winners[1]
    code = body["ticket"]["code"]
    order = f"order-{name}-{label.split()[0]}"
    steps = [
        ("GET", f"/v1/tickets/{code}", None, None, "200"),
        ("POST", f"/v1/tickets/{code}/redemption", {"order_id": order, "hold_seconds": 60}, None, "201"),
        ("POST", f"/v1/tickets/{code}/redemption", {"order_id": order}, None, "200"),
        ("GET", f"/v1/orders/{order}/tickets", None, TOKEN, "200"),
        ("DELETE", f"/v1/tickets/{code}/redemption?order_id={order}", None, None, "200"),
        ("DELETE", f"/v1/coupons/{coupon}/tickets/{other}", None, TOKEN, "204"),
    ]
    got, skipped = [], []
    for n, (method, path, payload, token, expected) in enumerate(steps):
        status, answer, _ = await request_async(ports[n % 2], method, path, payload, token=token)
        if not route_known(status, answer):
            skipped.append(f"{method} {path.split('?')[0]}")
            continue
        got.append((f"{method} {path.split('?')[0]}", status, expected, answer))
    listed = next((a for step, _, _, a in got if step.startswith("GET /v1/orders/")), None)
    ok = all(status == expected for _, status, expected, _ in got)
    check(ok, f"{name}, {label}: checkout by code (read, hold, confirm, by order, restore; the admin's return): "
              f"{[status for _, status, _, _ in got]}"
              + ("" if ok else " expected " + str([e for _, _, e, _ in got]) + " " +
                 "; ".join(f"{s}: {a}" for s, st, e, a in got if st != e))
              + (f"; skipped, routes the binary lacks: {', '.join(skipped)}" if skipped else ""))
    if listed is not None:
        codes = [t.get("ticket", {}).get("code") for t in (listed or {}).get("tickets", [])]
        check(code in codes, f"{name}, {label}: the order lists its ticket ({len(codes)} listed)")
    stored = psql(f"SELECT coalesce(order_id, '-') || '|' || (redeemed_at IS NULL) || '|' || (hold_until IS NULL) "
                  f"FROM coupon_tickets WHERE coupon_id = {coupon} AND user_id = '{user}'", url)
    check(stored == "-|true|true", f"{name}, {label}: the ticket restored in the database ({stored})")


async def side_by_side(name, url):
    """The previous and the current binary on one database, one sale, half the users each."""
    with Server(PORTS[0], url=url, binary=PREVIOUS, log=True, log_level="error"), Server(PORTS[1], url=url, binary=CURRENT, log=True, log_level="error") as current:
        coupon = create_coupon_over_http(current.base, TOKEN, f"upgrade {name} side by side", TICKETS)
        answers = await oversubscribed(coupon, list(PORTS), f"{name}-b")
        counts = counted(answers)
        by_port = [counted([a for n, a in enumerate(answers) if n % 2 == i]) for i in (0, 1)]
        check(counts == {"201": TICKETS, "409 sold_out": USERS - TICKETS},
              f"{name}, previous and current side by side: {USERS} users at once for {TICKETS} tickets: {counts} "
              f"(previous {by_port[0]}, current {by_port[1]})")
        check(all("201" in c for c in by_port), f"{name}, side by side: both instances issued")
        winners = [(n, user, body) for n, (user, status, body) in enumerate(answers) if status == "201"]
        # Each winner asks again on the other instance.
        retries = await asyncio.gather(*(issue_async(PORTS[(n + 1) % 2], coupon, user) for n, user, _ in winners))
        same = sum(1 for (_, _, body), (status, again, _) in zip(winners, retries)
                   if status == "200" and again and again.get("ticket") == body["ticket"])
        check(same == len(winners), f"{name}, side by side: every winner's retry on the other instance 200 with the same ticket "
                                    f"({same} of {len(winners)})")
        for port, label in zip(PORTS, ("previous", "current")):
            status, body, _ = await request_async(port, "GET", f"/v1/coupons/{coupon}")
            check(status == "200" and body and body.get("status") == "sold_out" and body.get("issued") == TICKETS,
                  f"{name}, side by side: the {label} instance reads the coupon sold out ({status}, "
                  f"{body and body.get('status')}, issued {body and body.get('issued')})")
        events = psql(f"SELECT count(*) FROM outbox_events WHERE coupon_id = {coupon} AND type = 'ticket.issued'", url)
        check(events == str(TICKETS), f"{name}, side by side: one ticket.issued event per ticket ({events})")
        audited(f"{name}, side by side", coupon, url, answers)
        # A ticket issued by the previous instance held at the current one, confirmed at the previous.
        by_previous = [(user, body) for n, user, body in winners if n % 2 == 0]
        by_current = [(user, body) for n, user, body in winners if n % 2 == 1]
        await checkout(name, coupon, by_previous[:1] + by_current[:1], [PORTS[1], PORTS[0]], "across the two binaries", url)


async def one(name, url):
    print(f"{name}:", flush=True)
    if not migrated(name, url):
        return
    await alone(name, url)
    await side_by_side(name, url)


def main():
    print(f"rolling upgrade: previous {PREVIOUS_REV} ({PREVIOUS}) on the schema of the current binary ({CURRENT})", flush=True)
    for name, variable in (("upgraded", "UPGRADED_URL"), ("fresh", "FRESH_URL")):
        try:
            asyncio.run(one(name, os.environ[variable]))
        except Exception as error:  # a server that did not start, an answer without a body: a failure, said
            check(False, f"{name}: {type(error).__name__}: {error}")
    code = check.exit_code()
    print("PASS" if code == 0 else "FAIL")
    return code


if __name__ == "__main__":
    sys.exit(main())
