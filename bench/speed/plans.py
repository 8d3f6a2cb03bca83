"""issue_tickets with its plans made once per connection against the same text planned on every call
(PostgreSQL's default, plan_cache_mode = auto), inside PostgreSQL: one backend calls it in a loop,
a transaction per call, for groups of 1 to 64 users, and reports the microseconds per call. The loop
runs with synchronous_commit off, for this measurement only, so that its time is the backend's work
and not the wait for the disk (the service never turns it off). The two texts alternate, rounds
apart; the committed text is put back at the end. Prepends a section to bench/results/plans.md.

Run by bench/speed/plans.sh (which starts PostgreSQL and migrates a database of its own)."""
import os
import subprocess
import time

from bench.lib import ROOT, URL, checkpoint, create_coupon, issue_tickets_micros, machine, prepend_result, psql, run_tool

FUNCTION = os.path.join(ROOT, "migrations", "functions", "issue_tickets.sql")
SETTING = "SET plan_cache_mode = force_generic_plan\n"
GROUPS = [int(g) for g in os.environ.get("PLANS_GROUPS", "1,2,4,16,64").split(",")]
CALLS = int(os.environ.get("PLANS_CALLS", "3000"))  # tickets per measurement, at least 200 calls
ROUNDS = int(os.environ.get("PLANS_ROUNDS", "4"))
HEADER = "# issue_tickets: plans made once against plans made on every call\n\nWritten by `bench/speed/plans.sh`, newest first.\n\n"


def apply(text):
    with open("/tmp/issue_tickets-plans.sql", "w") as f:
        f.write(text)
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", URL, "-f", "/tmp/issue_tickets-plans.sql"],
                   check=True, capture_output=True)


def measure(group):
    """Microseconds per call of issue_tickets for `group` new users, a transaction each, in one backend."""
    calls = max(200, CALLS // group)
    coupon = create_coupon(group * calls + 10)
    psql("VACUUM coupon_tickets")
    checkpoint()
    micros = issue_tickets_micros(coupon, calls, group)
    audit = psql(f"SELECT count(*) FILTER (WHERE user_id IS NOT NULL), (SELECT issued_count FROM coupons WHERE id = {coupon}) "
                 f"FROM coupon_tickets WHERE coupon_id = {coupon}").split("|")
    assert audit[0] == audit[1] == str(group * calls), f"coupon {coupon}: {audit} against {group * calls} issued"
    return micros


def main():
    committed = open(FUNCTION).read()
    if SETTING not in committed:
        raise SystemExit(f"{FUNCTION} no longer has the line {SETTING.strip()!r}; this bench compares with and without it")
    texts = {"once (committed)": committed, "every call (auto)": committed.replace(SETTING, "")}
    results = {}
    try:
        for round_ in range(ROUNDS):
            for name, text in (texts.items() if round_ % 2 == 0 else reversed(texts.items())):
                apply(text)
                for group in GROUPS:
                    per_call = measure(group)
                    results.setdefault((name, group), []).append(per_call)
                    print(f"round {round_ + 1}, plans {name}, group {group}: {per_call:.0f} µs per call", flush=True)
    finally:
        apply(committed)
    lines = ["| group | plans made | µs per call (each round) | µs per ticket | of every call's |",
             "|---:|---|---:|---:|---:|"]
    for group in GROUPS:
        base = sum(results[("every call (auto)", group)]) / ROUNDS
        for name in texts:
            runs = results[(name, group)]
            per_call = sum(runs) / ROUNDS
            each = ", ".join(f"{r:,.0f}" for r in runs)
            lines.append(f"| {group} | {name} | {per_call:,.0f} ({each}) | {per_call / group:,.1f} | {per_call / base:.2f} |")
    section = (f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
               f"Machine: {machine('one backend calling issue_tickets in a loop, a transaction per call, synchronous_commit off for the loop; means of ' + str(ROUNDS) + ' rounds')}.\n\n"
               + "\n".join(lines) + "\n")
    prepend_result("plans.md", HEADER, section)
    print(section)
    return 0


if __name__ == "__main__":
    run_tool(main, "plans.md")
