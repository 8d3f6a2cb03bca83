"""Issue 32's targets side by side, `python3 -m bench.events.run`, run by bench/events/run.sh (which
builds both sides and migrates their databases): issuance without events (`base`) against the
working tree with a webhook endpoint subscribed and receiving (`head`), each on its own database.

1. closed loop: bench/speed's rows (constant answer, sold-out refusals, issuance) per side, sides
   alternating for EVENTS_ROUNDS rounds; head's issuance row also waits for its events to arrive;
2. open loop: bench/openloop's steps on one instance per side, the sides alternating at every step,
   head's issuance steps with the lag of every ticket event from its commit to its arrival;
3. the million-ticket sale per side, head's delivered to the receiver: how long after the sell-out
   its last event was acknowledged.

Writes bench/results/events.md; the raw figures stay in bench/results/tmp/events/.
"""
import datetime
import json
import os
import subprocess
import sys

from bench import lib
from bench.lib import ROOT, first_line, machine

ROUNDS = int(os.environ.get("EVENTS_ROUNDS", "2"))
RATES = os.environ.get("EVENTS_RATES", "500 1000 1500 2000 3000")
MILLION = os.environ.get("EVENTS_MILLION", "1") == "1"
OPEN = os.environ.get("EVENTS_OPEN", "1") == "1"
CLOSED = os.environ.get("EVENTS_CLOSED", "1") == "1"
WORK = os.path.join(ROOT, "bench", "results", "tmp", "events")
SIDES = {"base": (os.environ["BASE_BIN"], os.environ["BASE_URL"]), "head": (os.environ["COUPON_BIN"], os.environ["HEAD_URL"])}
# `quiet`: the head with no endpoint registered, in the closed loop: what writing the events costs
# apart from delivering them (EVENTS_QUIET=0 leaves it out).
QUIET = os.environ.get("EVENTS_QUIET", "1") == "1"
if QUIET:
    SIDES["quiet"] = SIDES["head"]


def run(module, side, out, **env):
    """One bench module for one side, on the side's database; its JSON figures."""
    binary, url = SIDES[side]
    webhook = "1" if side == "head" else "0"
    environment = dict(os.environ, DATABASE_URL=url, COUPON_BIN=binary, SPEED_WEBHOOK=webhook, OPENLOOP_WEBHOOK=webhook,
                       MILLION_WEBHOOK=webhook, **env)
    print(f"{module} ({side})", flush=True)
    subprocess.run([sys.executable, "-m", module], env=environment, cwd=ROOT, check=True)
    with open(out) as f:
        return json.load(f)


def closed_loop():
    sides = list(SIDES)
    rows = {side: [] for side in sides}
    for number in range(ROUNDS):
        for side in (sides if number % 2 == 0 else sides[::-1]):
            out = os.path.join(WORK, f"speed-{side}-{number}.json")
            rows[side] += run("bench.speed.run", side, out, SPEED_SIDES=f"{side}={SIDES[side][0]}", SPEED_TOKENS="0",
                              SPEED_SQL="0", SPEED_JSON=out)
    return rows


def open_loop():
    """bench/openloop's steps on one instance per side, the sides alternating at every step (an A/B
    of the open loop, each side on its own database), head's webhook receiving."""
    out = os.path.join(WORK, "openloop.json")
    (base_bin, base_url), (head_bin, head_url) = SIDES["base"], SIDES["head"]
    print("bench.openloop.run (base and head, alternating)", flush=True)
    environment = dict(os.environ, DATABASE_URL=head_url, COUPON_BIN=head_bin, OPENLOOP_BASE_BIN=base_bin,
                       OPENLOOP_BASE_URL=base_url, OPENLOOP_WEBHOOK="1", OPENLOOP_INSTANCES="1", OPENLOOP_RATES=RATES,
                       OPENLOOP_JSON=out)
    subprocess.run([sys.executable, "-m", "bench.openloop.run"], env=environment, cwd=ROOT, check=True)
    with open(out) as f:
        data = json.load(f)
    return {side: {"steps": [s for s in data["steps"] if s["side"] == side], "knees": {"1": data["knees"][f"1 {side}"]}}
            for side in ("base", "head")}


def million():
    return {side: run("bench.speed.million", side, os.path.join(WORK, f"million-{side}.json"),
                      MILLION_JSON=os.path.join(WORK, f"million-{side}.json")) for side in ("base", "head")}


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def closed_table(rows):
    """Per round and side: constant, refusals and issuance; the ratio of head's issuance to base's."""
    lines = ["| side | constant GET /healthz | sold-out refusals | issuance, issued/s | issuance / constant | CPU µs per ticket (server + PostgreSQL) | audit | webhook |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    issuance = {}
    for side in rows:
        side_rows = rows[side]
        constants = [r for r in side_rows if r["what"].startswith("constant answer, GET")]
        refusals = [r for r in side_rows if r["what"].startswith("sold-out")]
        issues = [r for r in side_rows if r["what"].startswith("issuance")]
        hooks = [r for r in side_rows if r["what"].startswith("webhook")]
        for n, issue in enumerate(issues):
            cpu = issue["cpu"].get("server", 0) + issue["cpu"].get("postgres", 0)
            hook = f"{hooks[n]['rate']:.1f} s after the row ({hooks[n]['audit']})" if n < len(hooks) else "-"
            lines.append(f"| {side} | {constants[n]['rate']:,.0f}/s | {refusals[n]['rate']:,.0f}/s | {issue['rate']:,.0f} | "
                         f"{issue['rate'] / constants[n]['rate']:.2f} | {cpu:.1f} | {issue['audit']} | {hook} |")
        issuance[side] = (mean(r["rate"] for r in issues), mean(r["rate"] / c["rate"] for r, c in zip(issues, constants)))
    ratio = issuance["head"][0] / issuance["base"][0]
    relative = issuance["head"][1] / issuance["base"][1]
    quiet = issuance["quiet"][0] / issuance["base"][0] if "quiet" in issuance else None
    return "\n".join(lines), ratio, relative, quiet


def open_table(steps):
    lines = ["| arrivals/s | side | constant p99 ms | issuance p99 ms | dropped | issuance holds | issuance CPU µs/req: server + PostgreSQL | mean group | webhook: ticket events' lag p99 / max s (events delivered) |",
             "|---:|---|---:|---:|---:|---|---:|---:|---|"]
    knees = {}
    for side in ("base", "head"):
        data = steps[side]
        # In the order run: each rate's constant answer, then its issuance.
        constants = [s for s in data["steps"] if s["target"] == "constant"]
        issues = [s for s in data["steps"] if s["target"] == "issue"]
        for constant, issue in zip(constants, issues):
            rate = issue["rate"]
            holds = issue.get("p99", 1e9) < 100 and not issue.get("failed") and not issue.get("dropped")
            lag = (f"{issue['lag_p99']:.2f} / {issue['lag_max']:.2f} ({issue['delivered']:,} of {issue['events']:,})"
                   if issue.get("lag_max") is not None else "-")
            cpu = (f"{issue['server_us']:.0f} + {issue['postgres_us']:.0f}" if issue.get("server_us") is not None
                   and issue.get("postgres_us") is not None else "-")
            group = f"{issue['mean_group']:.1f}" if issue.get("mean_group") is not None else "-"
            lines.append(f"| {rate:,} | {side} | {constant.get('p99', float('nan')):.2f} | {issue.get('p99', float('nan')):.2f} | "
                         f"{issue.get('dropped', 0):,} | {'yes' if holds else 'no'} | {cpu} | {group} | {lag} |")
        knee = next(iter(data["knees"].values()))
        knees[side] = (knee["constant"][0], knee["issue"][0])
    return "\n".join(lines), knees


def head_text():
    """What the head binary is: EVENTS_HEAD_REV names the revision it was built at, else the working tree."""
    if os.environ.get("EVENTS_HEAD_REV"):
        return f"The head binary built at {os.environ['EVENTS_HEAD_REV']} ({os.environ['COUPON_BIN']})"
    dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "Sources", "migrations"]).returncode
    return f"Working tree at {first_line(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'])}{' with uncommitted changes' if dirty else ''}"


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    os.makedirs(WORK, exist_ok=True)
    rows = closed_loop() if CLOSED else None
    steps = open_loop() if OPEN else None
    sales = million() if MILLION else {}
    closed, ratio, relative, quiet = closed_table(rows) if rows else ("", None, None, None)
    opened, knees = open_table(steps) if steps else ("not run (EVENTS_OPEN=0)", {"base": (None, None), "head": (None, None)})
    head_knee = knees["head"][1]
    knee_lag = next((s for s in steps["head"]["steps"] if s["target"] == "issue" and s["rate"] == head_knee), {}) if steps else {}
    million_text = "not run (EVENTS_MILLION=0)"
    if sales:
        hook = sales["head"]["webhook"] or {}
        million_text = (f"base sold out in {sales['base']['sold_out']:.1f} s, head (a webhook receiving) in "
                        f"{sales['head']['sold_out']:.1f} s ({sales['base']['sold_out'] / sales['head']['sold_out']:.2f} of base's rate); "
                        f"audits {sales['base']['audit']}, {sales['head']['audit']}. The head's {hook.get('acknowledged', 0):,} of "
                        f"{hook.get('events', 0):,} events acknowledged {hook.get('after_sold_out', float('nan')):.1f} s after the "
                        f"sell-out (target: within 60 s), in {hook.get('deliveries', 0):,} deliveries, the largest lag of a "
                        f"delivery's first event {hook.get('max_lag', float('nan')):.1f} s, signatures "
                        f"{'valid' if hook.get('signed') else 'NOT valid'}.")
    closed_text = "**Closed loop**: not run (EVENTS_CLOSED=0)."
    if rows:
        closed_text = f"""**Closed loop** (bench/speed's rows, wrk -t1 -c256, 8 s each, sides alternating over {ROUNDS} rounds):
head's issuance is **{ratio:.2f}** of base's (target at least 0.9); against each side's own constant
answer {relative:.2f}.{f" With no endpoint registered (`quiet`: the events written, none delivered) {quiet:.2f} of base's." if quiet else ""}

{closed}"""
    open_text = "**Open loop**: not run (EVENTS_OPEN=0)."
    if steps:
        open_text = f"""**Open loop** (bench/openloop on one instance, 3 s warm-up + 8 s per step, the sides alternating
at every step): knee of issuance
{knees['base'][1] or 'none'}/s at base, {knees['head'][1] or 'none'}/s at head (constant: {knees['base'][0] or 'none'},
{knees['head'][0] or 'none'}); at head's knee the ticket events' delivery lag (commit to arrival) p99
{knee_lag.get('lag_p99', float('nan')):.2f} s, max {knee_lag.get('lag_max', float('nan')):.2f} s (target under 5 s).

{opened}"""
    report = f"""## {started:%Y-%m-%d %H:%M} UTC

{head_text()}
(`head`, with one webhook endpoint subscribed to every event, a receiver on loopback answering 204);
`base` is {os.environ['BASE_REV']}, before the outbox. Each on a database of its own, migrated by its own
migrations. Machine: {machine(first_line(["wrk", "--version"]).split(" [")[0], "load, server, receiver and PostgreSQL on the same 2 cores")}.

{closed_text}

{open_text}

**A million tickets** (bench/speed/million.py per side): {million_text}
"""
    lib.prepend_result("events.md", "# Events: what the outbox and a webhook cost the sale\n\n"
                       "Written by `bench/events/run.sh`, newest first; the fault scenarios' figures below them.\n\n", report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
