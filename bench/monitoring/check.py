"""deploy/prometheus and deploy/grafana checked against the real thing, run by bench/monitoring/run.sh:

1. promtool: the example configuration and the rules are valid, and the alerts' unit tests pass;
2. a real Prometheus on loopback scrapes two live instances through a small sale (issuance, a sell-out,
   refusals, a redemption, a restore and a return), its events delivered to a webhook receiver here;
3. its HTTP API then answers: the issued counter summed over the instances equals the tickets held in
   the database, and every expression of the rules and the dashboard evaluates without error, names
   only metrics the service exposes, and (the recording rules and the dashboard's) returns data;
4. the sale's alerts fire, for real: a coupon whose row another transaction holds locked while
   requests arrive (CouponSaleNotIssuing, CouponIssueUnavailableRising), and an instance whose URL asks
   for a writer on a primary without a standby (CouponReplicationNotSynchronous).

Loopback only; every wait bounded. Exits non-zero when a check fails.
"""
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import yaml

from bench import lib
from bench.lib import ROOT, Server, create_coupon_over_http, issue_async, request_async

TOKEN = lib.ADMIN_TOKEN
PORTS = (8411, 8412)
# The second instance serves /metrics on a listener of its own (--metrics-port), as production should.
METRICS_PORT = 8413
SCRAPED = (PORTS[0], METRICS_PORT)
RECEIVER_PORT = 8414
PROMETHEUS = "127.0.0.1:9391"
DEPLOY = os.path.join(ROOT, "deploy")
RULES = os.path.join(DEPLOY, "prometheus", "rules.yml")
DASHBOARD = os.path.join(DEPLOY, "grafana", "coupon-service.json")
check = lib.Checks("monitoring")


def promtool(*args):
    result = subprocess.run(["promtool", *args], capture_output=True, text=True)
    check(result.returncode == 0, f"promtool {' '.join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in args)}"
          + ("" if result.returncode == 0 else f":\n{result.stdout}{result.stderr}"))


def configuration(folder):
    """deploy/prometheus/prometheus.yml with these instances as targets, scraped every second."""
    with open(os.path.join(DEPLOY, "prometheus", "prometheus.yml")) as f:
        config = yaml.safe_load(f)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [RULES]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{port}" for port in SCRAPED]}]
    path = os.path.join(folder, "prometheus.yml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return path


@contextlib.contextmanager
def prometheus(config, folder):
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={os.path.join(folder, 'data')}",
         f"--web.listen-address={PROMETHEUS}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(folder, "prometheus.log"), "w"))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://{PROMETHEUS}/-/ready", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("Prometheus was not ready within 30 s")
        yield
    finally:
        process.terminate()
        process.wait(timeout=15)


def query(expr):
    """(status, result or error) of an instant query."""
    url = f"http://{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        answer = json.load(urllib.request.urlopen(url, timeout=10))
    except urllib.error.HTTPError as error:
        answer = json.load(error)
    return answer["status"], answer.get("data", {}).get("result") if answer["status"] == "success" else answer.get("error")


def value(expr):
    status, result = query(expr)
    return float(result[0]["value"][1]) if status == "success" and result else None


def exposed_metrics():
    return set(json.load(urllib.request.urlopen(f"http://{PROMETHEUS}/api/v1/label/__name__/values", timeout=10))["data"])


def rule_expressions():
    """(name, expression, recording) of every rule."""
    with open(RULES) as f:
        groups = yaml.safe_load(f)["groups"]
    return [(rule.get("record") or rule["alert"], rule["expr"], "record" in rule) for group in groups for rule in group["rules"]]


def dashboard_expressions():
    """(panel title, expression) of every target and query variable, with the dashboard's variables
    filled in as Grafana would: every coupon, a one-minute rate interval."""
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    check(variables.get("datasource", {}).get("type") == "datasource", "the dashboard's datasource is a variable")
    check("coupon" in variables, "the dashboard has a coupon variable")
    check(all(p["datasource"]["uid"] == "${datasource}" and all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
              for p in dashboard["panels"]), "every panel and query uses the datasource variable")
    found = [(f"panel '{p['title']}'", t["expr"].replace("$coupon", ".*").replace("$__rate_interval", "1m"))
             for p in dashboard["panels"] for t in p["targets"]]
    coupon_query = re.fullmatch(r"label_values\((\w+), (\w+)\)", variables["coupon"]["definition"])
    check(coupon_query is not None, "the coupon variable is label_values(metric, label)")
    if coupon_query:
        found.append(("variable 'coupon'", f"count by ({coupon_query[2]}) ({coupon_query[1]})"))
    return found


def metric_names(expr):
    """The metric names an expression reads: its words, once label matchers and grouping clauses
    (which name labels) are taken out, that are the service's or `up` (recording rules' names contain
    colons and are left out)."""
    bare = re.sub(r"\{[^}]*\}", "", expr)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    return {w for w in re.findall(r"[a-z_:][a-z0-9_:]*", bare) if (w.startswith("coupon_") or w == "up") and ":" not in w}


async def sale(ports):
    base = f"http://127.0.0.1:{ports[0]}"
    sold_out = create_coupon_over_http(base, TOKEN, "monitoring sold out", 300)
    on_sale = create_coupon_over_http(base, TOKEN, "monitoring on sale", 100)
    requests = [issue_async(ports[n % 2], sold_out, f"m{n}") for n in range(500)]
    requests += [issue_async(ports[n % 2], on_sale, f"o{n}") for n in range(20)]
    requests += [issue_async(ports[0], 900_000_000, "nobody")]
    answers = await asyncio.gather(*requests)
    statuses = {}
    for status, _, _ in answers:
        statuses[status] = statuses.get(status, 0) + 1
    # Three of the winners: one redeems and restores, the other's ticket goes back to the pool, the
    # third's is held at checkout by its code and the hold confirmed.
    won = [(f"m{n}", body) for n, (status, body, _) in enumerate(answers[:500]) if status == "201"][:3]
    winners = [user for user, _ in won]
    code = won[2][1]["ticket"]["code"]
    after = [await request_async(ports[0], "POST", f"/v1/coupons/{sold_out}/tickets/{winners[0]}/redemption", {"order_id": "o-1"}),
             await request_async(ports[1], "DELETE", f"/v1/coupons/{sold_out}/tickets/{winners[0]}/redemption?order_id=o-1"),
             await request_async(ports[1], "DELETE", f"/v1/coupons/{sold_out}/tickets/{winners[1]}", token=TOKEN),
             await request_async(ports[0], "POST", f"/v1/tickets/{code}/redemption", {"order_id": "o-2", "hold_seconds": 60}),
             await request_async(ports[1], "POST", f"/v1/tickets/{code}/redemption", {"order_id": "o-2"})]
    print(f"  a sale: coupon {sold_out} (300 tickets, 500 users), coupon {on_sale} (100 tickets, 20 users): answers "
          f"{dict(sorted(statuses.items()))}; redeem, restore, return, hold, confirm: {[status for status, _, _ in after]}",
          flush=True)
    check([status for status, _, _ in after] == ["201", "200", "204", "201", "200"],
          "redemption, restore, return, hold and its confirmation answered")
    return sold_out, on_sale


def alerts(state="firing"):
    """The alerts Prometheus has in `state`, as (name, labels)."""
    found = json.load(urllib.request.urlopen(f"http://{PROMETHEUS}/api/v1/alerts", timeout=10))["data"]["alerts"]
    return [(a["labels"]["alertname"], a["labels"]) for a in found if a["state"] == state]


def wait_for_alert(name, timeout=60, **labels):
    """Seconds until the alert `name` (with `labels`) fires, or None within `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if any(n == name and all(l.get(k) == v for k, v in labels.items()) for n, l in alerts()):
            return time.monotonic() - start
        time.sleep(0.5)
    return None


async def stuck_sale(ports):
    """A coupon on sale whose row another transaction keeps locked while 5 requests a second arrive:
    every request meets the database deadline (503), nothing is issued, tickets are left. The sale's
    alerts must fire while it lasts; then the lock goes and the coupon issues again."""
    coupon = create_coupon_over_http(f"http://127.0.0.1:{ports[0]}", TOKEN, "monitoring stuck", 1000)
    holder = subprocess.Popen(["psql", "-X", "-q", lib.URL, "-c", f"BEGIN; SELECT 1 FROM coupons WHERE id = {coupon} FOR UPDATE; "
                               f"SELECT pg_sleep(120); COMMIT;"], env={**os.environ, "PGAPPNAME": "monitoring-lock"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    locked_by = time.monotonic() + 10
    while lib.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'monitoring-lock' "
                   "AND query LIKE '%pg_sleep%' AND state = 'active'") != "1" and time.monotonic() < locked_by:
        time.sleep(0.1)
    loop = asyncio.get_running_loop()
    waiting = loop.run_in_executor(None, lambda: (wait_for_alert("CouponSaleNotIssuing", 60, coupon_id=str(coupon)),
                                                  wait_for_alert("CouponIssueUnavailableRising", 30)))
    sent = []
    while not waiting.done() and len(sent) < 400:
        sent.append(asyncio.ensure_future(issue_async(ports[len(sent) % 2], coupon, f"stuck{len(sent)}")))
        await asyncio.sleep(0.2)
    not_issuing, unavailable = await waiting
    lib.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'monitoring-lock'")
    holder.wait(timeout=15)
    answers = await asyncio.gather(*sent)
    statuses = {}
    for status, _, _ in answers:
        statuses[status] = statuses.get(status, 0) + 1
    print(f"  a stuck sale: coupon {coupon} locked, {len(sent)} requests {dict(sorted(statuses.items()))}", flush=True)
    check(not_issuing is not None, f"CouponSaleNotIssuing fired for coupon {coupon}"
          + (f" {not_issuing:.0f} s after the requests began" if not_issuing is not None else ": not within 60 s"))
    check(unavailable is not None, "CouponIssueUnavailableRising fired" + (f" {not_issuing + unavailable:.0f} s after the requests began"
                                                                          if unavailable is not None and not_issuing else ""))
    # The requests answered 503 waited on the lock with their transactions sent: once it is gone they
    # commit (a 503 may have committed, docs/events.md). The coupon issues again, its audit exact.
    after = await issue_async(ports[0], coupon, "after-the-lock")
    problems = lib.audit(coupon).violations()
    check(statuses.get("503", 0) > 0 and after[0] == "201" and not problems,
          f"requests answered 503 while locked ({statuses.get('503', 0)}); the lock gone, the coupon issues "
          f"({after[0]}); audit: {'; '.join(problems) or 'clean'}")


def defaults():
    """What `serve` does when told nothing: it refuses to start without JWT identity or
    --trust-user-ids, and with it serves /metrics on port 9464, not on the public port."""
    binary = os.environ["COUPON_BIN"]
    env = {name: value for name, value in os.environ.items()
           if name not in ("COUPON_TRUST_USER_IDS", "COUPON_PUBLIC_METRICS", "COUPON_METRICS_PORT", "COUPON_AUTH_JWKS")}
    env["COUPON_ADMIN_TOKEN"] = TOKEN
    command = [binary, "serve", "--port", str(PORTS[0]), "--database-url", lib.URL]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    message = refused.stderr.strip().splitlines()[0] if refused.stderr.strip() else ""
    check(refused.returncode != 0 and "--trust-user-ids" in refused.stderr and "--auth-jwks" in refused.stderr,
          f"serve with neither --auth-jwks nor --trust-user-ids refuses to start (exit {refused.returncode}: {message[:120]})")
    server = subprocess.Popen([*command, "--trust-user-ids"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lib.wait_ready(f"http://127.0.0.1:{lib.DEFAULT_METRICS_PORT}", alive=lambda: server.poll() is None)
        public = asyncio.run(request_async(PORTS[0], "GET", "/metrics"))[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{lib.DEFAULT_METRICS_PORT}/metrics", timeout=5) as answer:
            own = answer.status
        check(public == "404" and own == 200,
              f"by default /metrics is on port {lib.DEFAULT_METRICS_PORT} ({own}), not on the public port ({public})")
    finally:
        server.terminate()
        server.wait(timeout=15)


def main():
    print("monitoring: deploy/prometheus and deploy/grafana against a real Prometheus", flush=True)
    defaults()
    promtool("check", "rules", RULES)
    promtool("test", "rules", os.path.join(DEPLOY, "prometheus", "rules.test.yml"))
    folder = tempfile.mkdtemp(prefix="coupon-prometheus-")
    config = configuration(folder)
    promtool("check", "config", config)
    try:
        # The first instance asks for a writer: it reads the primary's synchronous standbys (none here).
        writer = lib.URL + ("&" if "?" in lib.URL else "?") + "target_session_attrs=read-write"
        with Server(PORTS[0], url=writer, token=TOKEN), Server(PORTS[1], "--metrics-port", str(METRICS_PORT), token=TOKEN), \
                prometheus(config, folder), lib.WebhookReceiver(RECEIVER_PORT) as receiver:
            public = asyncio.run(request_async(PORTS[1], "GET", "/metrics"))[0]
            check(public == "404", f"GET /metrics on the public port of an instance with --metrics-port: {public}")
            _, receiver.secret = lib.register_webhook(PORTS[0], receiver.url)
            coupons = asyncio.run(sale(PORTS))
            held = sum(lib.audit(coupon).held for coupon in coupons)
            for coupon in coupons:
                problems = lib.audit(coupon).violations()
                check(not problems, f"the database audit of coupon {coupon}: {'; '.join(problems) or 'clean'}")
            # Two instances' counters, scraped every second, summed by Prometheus: wait (bounded) until
            # both have been scraped since the sale and the remaining-tickets poll has run.
            deadline = time.monotonic() + 30
            issued = None
            while time.monotonic() < deadline:
                issued = value('sum(coupon_tickets_issued_total{job="coupon-service"})')
                left = value("count(coupon_sale_remaining_tickets)")
                if issued == held + 1 and left and left >= 2:  # + 1: the returned ticket was issued once
                    break
                time.sleep(0.5)
            check(issued == held + 1, f"sum over instances of coupon_tickets_issued_total = {issued}: the database holds "
                                      f"{held} tickets, and 1 was returned after it was issued")
            holds = [value(f'sum(coupon_holds_{what}_total{{job="coupon-service"}})') for what in ("placed", "confirmed", "lapsed")]
            check(holds == [1, 1, 0], f"holds placed, confirmed, lapsed summed over instances = {holds} (1, 1, 0)")
            by_coupon = value(f'sum(coupon_sale_tickets_issued_total{{coupon_id="{coupons[1]}"}})')
            check(by_coupon == 20, f"coupon_sale_tickets_issued_total of coupon {coupons[1]} summed = {by_coupon} (20 issued)")
            left = value(f'max(coupon_sale_remaining_tickets{{coupon_id="{coupons[1]}"}})')
            check(left == 80, f"coupon_sale_remaining_tickets of coupon {coupons[1]} = {left} (80 left)")
            # Every event of the sale delivered: the outbox's events of its coupons, each at least once.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                got = {(e["coupon_id"], e["id"]) for e in receiver.acknowledged() if e["coupon_id"] in coupons}
                if len(got) >= int(lib.psql(f"SELECT count(*) FROM outbox_events WHERE coupon_id IN ({coupons[0]}, {coupons[1]})")):
                    break
                time.sleep(0.5)
            written = int(lib.psql(f"SELECT count(*) FROM outbox_events WHERE coupon_id IN ({coupons[0]}, {coupons[1]})"))
            check(len(got) == written, f"events delivered to the webhook: {len(got)} of the {written} the sale wrote")
            check(all(signed for *_, signed in receiver.deliveries), "every delivery's signature holds")
            time.sleep(2)  # one more evaluation of the recording rules
            exposed = exposed_metrics()
            expressions = [(f"rule {name}", expr, recording) for name, expr, recording in rule_expressions()]
            expressions += [(where, expr, True) for where, expr in dashboard_expressions()]
            for where, expr, must_return in expressions:
                status, result = query(expr)
                unknown = metric_names(expr) - exposed
                ok = status == "success" and not unknown and (result or not must_return)
                detail = (result if status != "success" else f"{len(result)} series") if not unknown else f"unknown metrics {sorted(unknown)}"
                check(ok, f"{where}: {detail}")
            for name, _, recording in rule_expressions():
                if recording:
                    status, result = query(name)
                    check(status == "success" and bool(result), f"recorded series {name}: {len(result or [])} series")
            # The sale's alerts, firing for real.
            replication = wait_for_alert("CouponReplicationNotSynchronous", 60, instance=f"127.0.0.1:{PORTS[0]}")
            check(replication is not None and not any(n == "CouponReplicationNotSynchronous" and l["instance"] != f"127.0.0.1:{PORTS[0]}"
                                                      for n, l in alerts("pending") + alerts()),
                  "CouponReplicationNotSynchronous fires for the instance that asks for a writer, and only for it")
            asyncio.run(stuck_sale(PORTS))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return check.exit_code()


if __name__ == "__main__":
    sys.exit(main())
