"""What the bench and fault tools share: psql against DATABASE_URL, the creation and the database
audit of a coupon, a coupon-server process and its readiness, an issue request, the server's
metrics, a webhook receiver, the parsing of wrk's and pgbench's output and the writing of results files.

Every tool runs as a module from the repository root (`python3 -m bench.run`, ...) and imports
this as `bench.lib`; shell scripts create a coupon with `python3 -m bench.lib create-coupon`."""
import asyncio
import atexit
import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.client import HTTPConnection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
URL = os.environ.get("DATABASE_URL", "")  # every tool that reaches the database sets it
HOST = "127.0.0.1"
# Where `serve` puts /metrics when told nothing (the bench's servers are told COUPON_PUBLIC_METRICS=1).
DEFAULT_METRICS_PORT = 9464
# The admin token of the servers these tools start (the server refuses one shorter than 32 bytes).
ADMIN_TOKEN = "bench-admin-token-of-32-bytes-or-more"


def psql(sql, url=URL):
    return subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def issue_tickets_micros(coupon, calls, group=1, prefix="u", url=URL):
    """Microseconds per call of issue_tickets for `group` new users, a transaction per call, in one
    backend: a loop inside PostgreSQL, synchronous_commit off for it alone, so that its time is the
    backend's work and not the wait for the disk (the service never turns it off). Fed to psql's input
    statement by statement: psql -c would send them as one transaction, in which the loop could not
    COMMIT."""
    script = f"""
        SET synchronous_commit = off;
        CREATE TEMP TABLE elapsed (micros float8);
        DO $$
        DECLARE started timestamptz := clock_timestamp(); n int;
        BEGIN
            FOR i IN 1..{calls} LOOP
                SELECT count(*) INTO n
                FROM issue_tickets({coupon}, ARRAY(SELECT '{prefix}' || i || '-' || g FROM generate_series(1, {group}) AS g));
                COMMIT;
            END LOOP;
            INSERT INTO elapsed VALUES (extract(epoch FROM clock_timestamp() - started) * 1e6 / {calls});
        END $$;
        SELECT micros FROM elapsed;"""
    return float(subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", url], input=script,
                                check=True, capture_output=True, text=True).stdout)


def checkpoint(url=URL):
    """Writes out what a setup dirtied (a 1.5M-ticket coupon is over 1 GB of WAL), so that a spread
    checkpoint does not run under one measured run and not another."""
    psql("CHECKPOINT", url)


def create_coupon(quantity, name="bench", url=URL):
    """A coupon of `quantity` ticket rows made in SQL (no window); returns its id. The one way the bench
    tools and their shell scripts (`python3 -m bench.lib create-coupon`, below) make a coupon without
    a server."""
    name = str(name).replace("'", "''")
    return int(psql(f"WITH c AS (INSERT INTO coupons (name, quantity) VALUES ('{name}', {int(quantity)}) RETURNING id) "
                    f"SELECT id FROM c, LATERAL add_coupon_tickets(c.id, 1, {int(quantity)})", url).split("|")[0])


# Checks -------------------------------------------------------------------------------------------

class Checks:
    """A check tool's verdicts: each printed as it is made, failures kept for the end."""

    def __init__(self, name):
        self.name = name
        self.failures = []

    def __call__(self, ok, what):
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.failures.append(what)

    def exit_code(self):
        """Prints the verdict; 1 when a check failed."""
        if self.failures:
            print("FAILED:\n  " + "\n  ".join(self.failures))
            return 1
        print(f"{self.name}: every check passed")
        return 0


# The audit ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Audit:
    """A coupon as the database holds it and the rules it breaks, as audit_coupon() judges them
    (migrations/functions/audit_coupon.sql, the rules the Swift tests hold too). `issued_count` and
    `ticket_rows` are None for the bench's naive strategy, which keeps its issues in
    bench_naive_issues, with no counter."""
    coupon: int
    quantity: int
    issued_count: int | None
    ticket_rows: int | None
    held: int
    users: int
    broken_rules: tuple[str, ...]

    def violations(self, sold_out=False):
        """The rules broken: more tickets held than the quantity, a counter that is not the tickets
        held, a user with two tickets, ticket rows that are not the quantity; with `sold_out`, a
        question of the bench's own, tickets left over (stuck)."""
        problems = list(self.broken_rules)
        if sold_out and self.held != self.quantity:
            problems.append(f"only {self.held} of {self.quantity} issued: tickets stuck")
        return problems

    @property
    def clean(self):
        return not self.violations()

    def __str__(self):
        counter = "" if self.issued_count is None else f", counter {self.issued_count}"
        rows = "" if self.ticket_rows is None else f", rows {self.ticket_rows}"
        return f"quantity {self.quantity}{counter}{rows}, held {self.held}, users {self.users}"


def audit(coupon_id, url=URL, naive=False):
    """The audit of one coupon: audit_coupon() in the database. `naive` counts the rows of
    bench_naive_issues (bench/sql/setup.sql) instead, a bench-only table that audit_coupon() does not
    read: the two rules that apply to it (nothing beyond the quantity, one row per user; it has no
    counter, and its coupon's ticket rows stay free) are checked here."""
    coupon_id = int(coupon_id)
    if naive:
        row = psql(f"SELECT c.quantity, count(n.user_id), count(DISTINCT n.user_id) FROM coupons c "
                   f"LEFT JOIN bench_naive_issues n ON n.coupon_id = c.id WHERE c.id = {coupon_id} GROUP BY c.id", url)
        if not row:
            raise LookupError(f"no coupon {coupon_id} in the database")
        quantity, held, users = map(int, row.split("|"))
        broken = ([f"{held} tickets held for {quantity}"] if held > quantity else []) + \
                 ([f"{held} tickets but {users} users"] if users != held else [])
        return Audit(coupon_id, quantity, None, None, held, users, tuple(broken))
    row = psql(f"SELECT quantity, issued_count, ticket_rows, held, users, to_json(violations) "
               f"FROM audit_coupon({coupon_id})", url)
    if not row:
        raise LookupError(f"no coupon {coupon_id} in the database")
    *counts, broken = row.split("|", 5)
    quantity, counter, rows, held, users = map(int, counts)
    return Audit(coupon_id, quantity, counter, rows, held, users, tuple(json.loads(broken)))


# The server ---------------------------------------------------------------------------------------

def wait_ready(base, seconds=30, alive=lambda: True, token=ADMIN_TOKEN):
    """Waits until `base`/readyz reports the catalogue listener connected; returns time.monotonic() then.
    `alive` is asked on every try, so a server that died is reported at once. The detail of /readyz
    is for the admin `token` (or, on an instance with --metrics-port, for that port's `base`)."""
    deadline = time.monotonic() + seconds
    request = urllib.request.Request(f"{base}/readyz", headers={"Authorization": f"Bearer {token}"})
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server at {base} exited before it was ready")
        try:
            body = urllib.request.urlopen(request, timeout=1).read().decode()
            if '"connected"' in body:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server at {base} was not ready within {seconds} s")


class Server:
    """One `coupon-server serve` process on 127.0.0.1:`port` (`args` added to its command line, `env`
    to its environment), started when made. `binary` defaults to COUPON_BIN. Its output is dropped,
    or with `log` kept in a temporary file that `stop` shows (last lines) when it is not empty.
    As a context manager: ready on entry, stopped on exit."""

    def __init__(self, port, *args, url=URL, binary=None, token=ADMIN_TOKEN, log_level="warning", env=None, log=False):
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                raise RuntimeError(f"something already listens on {HOST}:{port}")
        self.port = port
        self.base = f"http://{HOST}:{port}"
        self.token = token
        # /readyz in detail: on the metrics port when there is one.
        self.ready_base = (f"http://{HOST}:{args[args.index('--metrics-port') + 1]}" if "--metrics-port" in args else self.base)
        self.log = tempfile.NamedTemporaryFile(prefix="coupon-server-", suffix=".log", delete=False) if log else None
        output = self.log or subprocess.DEVNULL
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [binary or os.environ["COUPON_BIN"], "serve", "--port", str(port), "--database-url", url, *args],
            env=dict(os.environ, LOG_LEVEL=log_level, COUPON_ADMIN_TOKEN=token, **self.defaults(args), **(env or {})),
            stdout=output, stderr=subprocess.STDOUT if log else subprocess.DEVNULL)

    @staticmethod
    def defaults(args):
        """What the bench's servers are told in the environment, which a binary from before it knew them
        ignores: trust the user ids sent (unless JWT identity is on), and serve /metrics on the public
        port (unless the bench gives a metrics port), as every bench tool reads it there."""
        env = {} if "--auth-jwks" in args else {"COUPON_TRUST_USER_IDS": "1"}
        if "--metrics-port" not in args:
            env["COUPON_PUBLIC_METRICS"] = "1"
        return env

    def wait_ready(self, seconds=30):
        """time.monotonic() when /readyz reported the listener connected; RuntimeError past `seconds`
        or when the process exited."""
        return wait_ready(self.ready_base, seconds, alive=lambda: self.process.poll() is None, token=self.token)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        if self.log and not self.log.closed:
            self.log.close()
            with open(self.log.name) as f:
                output = f.read().strip()
            if output:
                print(f"  server output ({self.log.name}):\n    " + "\n    ".join(output.splitlines()[-20:]), flush=True)
            else:
                os.unlink(self.log.name)

    def __enter__(self):
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_):
        self.stop()


# Identity -----------------------------------------------------------------------------------------

def b64url(data):
    """Base64url without padding (RFC 7515), of bytes or of a str's UTF-8."""
    return base64.urlsafe_b64encode(data.encode() if isinstance(data, str) else data).rstrip(b"=").decode()


class Identity:
    """An identity provider for a server with JWT identity: an ES256 key (`cryptography`; RS256, a
    2048-bit RSA key, with `alg="RS256"`), the JWKS file of its public key (with kid and alg) in a
    folder of its own (removed when the process exits), and tokens for users. `key`: an EC P-256
    private key to use instead of a new one."""
    ISSUER = "https://id.bench.example"
    AUDIENCE = "coupon-service"

    def __init__(self, kid="k1", key=None, alg="ES256"):
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        self.kid, self.alg = kid, alg
        if alg == "RS256":
            self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
            numbers = self.key.public_key().public_numbers()
            self.jwk = {"kty": "RSA", "n": b64url(numbers.n.to_bytes(256, "big")), "e": b64url(numbers.e.to_bytes(3, "big"))}
        else:
            self.key = key or ec.generate_private_key(ec.SECP256R1())
            point = self.key.public_key().public_numbers()
            self.jwk = {"kty": "EC", "crv": "P-256", "x": b64url(point.x.to_bytes(32, "big")), "y": b64url(point.y.to_bytes(32, "big"))}
        self.jwk.update(kid=kid, alg=alg, use="sig")
        folder = tempfile.mkdtemp(prefix="coupon-jwks-")
        atexit.register(shutil.rmtree, folder, True)
        self.jwks = os.path.join(folder, "jwks.json")
        with open(self.jwks, "w") as f:
            json.dump({"keys": [self.jwk]}, f)

    def token(self, user, header=None, **overrides):
        """A token for `user`, valid for an hour, signed by this key; `overrides` change or add claims
        (None drops one), `header` changes or adds header fields."""
        now = int(time.time())
        claims = {"iss": self.ISSUER, "aud": self.AUDIENCE, "sub": user, "iat": now, "exp": now + 3600, **overrides}
        head = {"alg": self.alg, "kid": self.kid, "typ": "JWT", **(header or {})}
        return self.sign(b64url(json.dumps(head)) + "." + b64url(json.dumps({k: v for k, v in claims.items() if v is not None})))

    def sign(self, signing_input):
        """`signing_input` (header.claims) with its signature, base64url: ES256's raw r||s, or RS256's."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
        if self.alg == "RS256":
            return f"{signing_input}.{b64url(self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()))}"
        r, s = utils.decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    @classmethod
    def kept(cls, folder):
        """The ES256 identity kept in `folder` (key.pem, readable by its owner only, and jwks.json), made
        there the first time."""
        from cryptography.hazmat.primitives import serialization
        path = os.path.join(folder, "key.pem")
        if not os.path.exists(path):
            os.makedirs(folder, exist_ok=True)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(cls().key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
        with open(path, "rb") as f:
            identity = cls(key=serialization.load_pem_private_key(f.read(), None))
        identity.jwks = os.path.join(folder, "jwks.json")
        with open(identity.jwks, "w") as f:
            json.dump({"keys": [identity.jwk]}, f)
        return identity

    def server_args(self):
        """The `serve` flags that make a server trust this identity provider."""
        return ["--auth-jwks", self.jwks, "--auth-issuer", self.ISSUER, "--auth-audience", self.AUDIENCE]


def create_coupon_over_http(base, token, name, quantity, **window):
    """POST /v1/coupons with the admin token (`window`: starts_at, ends_at in RFC 3339); returns the new
    coupon's id."""
    request = urllib.request.Request(
        f"{base}/v1/coupons", method="POST", data=json.dumps({"name": name, "quantity": quantity, **window}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    return json.load(urllib.request.urlopen(request, timeout=60))["id"]


def issue(port, coupon, user, connection=None):
    """POST /v1/coupons/{coupon}/issue for `user`, on `connection` (kept alive) or a connection of its
    own; returns (status, decoded body)."""
    own = connection is None
    connection = connection or HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request("POST", f"/v1/coupons/{coupon}/issue", json.dumps({"user_id": user}),
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body else None
    finally:
        if own:
            connection.close()


async def issue_async(port, coupon, user, timeout=20.0, token=None):
    """The issue request on a raw connection of its own (for the load of thousands at once), with the
    user's JWT `token` when given (`user` None then sends `{}`): (status as a string, or "timeout",
    "no_answer" or the error's name; decoded body or None; seconds)."""
    body = {} if user is None else {"user_id": user}
    return await request_async(port, "POST", f"/v1/coupons/{coupon}/issue", body, token=token, timeout=timeout)


async def request_async(port, method, path, body=None, token=None, timeout=20.0, headers=False):
    """Any request on a raw connection of its own, with `token` (the admin token, a user's JWT, the
    checkout's) as `Authorization: Bearer` when it is not None; answered as issue_async answers, with
    `headers` the answer's header fields (a dict, names in lower case) fourth."""
    started = time.monotonic()

    def answered(status, parsed=None, fields=None):
        return (status, parsed, time.monotonic() - started) + ((fields or {},) if headers else ())
    payload = json.dumps(body) if body is not None else ""
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nContent-Length: {len(payload)}\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
        writer.write(f"{head}\r\n{payload}".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
        answer_head, _, answer = raw.decode(errors="replace").partition("\r\n\r\n")
        if not answer_head:
            return answered("no_answer")
        status, *lines = answer_head.split("\r\n")
        try:
            parsed = json.loads(answer) if answer else None
        except ValueError:
            parsed = None
        fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        return answered(status.split(" ")[1], parsed, fields)
    except asyncio.TimeoutError:
        return answered("timeout")
    except (ConnectionError, OSError) as error:
        return answered(type(error).__name__)


def metric(port, name):
    """The sum of the values of `name` (with its labels, or every label set when `name` has none) in
    the server's /metrics, or None when it has no such line."""
    text = urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5).read().decode()
    values = [float(line.rsplit(None, 1)[1]) for line in text.splitlines()
              if line.startswith(name) and line[len(name):][:1] in (" ", "{")]
    return sum(values) if values else None


def raise_file_limit():
    """Soft limit of open files up to the hard one: a burst opens thousands of sockets."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Load generators' output and the results files ----------------------------------------------------

def wrk_result(out):
    """The RESULT line of bench/wrk/report.lua as integers, with the rate of answers per second."""
    values = {k: int(v) for k, v in (pair.split("=") for pair in re.search(r"RESULT (.*)", out).group(1).split())}
    values["rate"] = values["requests"] / (values["duration_us"] / 1e6)
    return values


def pgbench_tps(out):
    return float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))


def machine(*details):
    """Cores, memory, kernel and PostgreSQL, then `details` (tool versions, who shares the machine)."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with open("/proc/meminfo") as f:
        memory = int(f.readline().split()[1]) / 1024 / 1024
    ssl = psql("SHOW ssl")
    return "; ".join([f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.system()} {platform.release()}",
                      f"PostgreSQL {psql('SHOW server_version')} (fsync on, synchronous_commit on, ssl {ssl}"
                      f"{': the servers, sslmode=prefer by default, connect with TLS' if ssl == 'on' else ''})", *details])


def first_line(command):
    return subprocess.run(command, capture_output=True, text=True).stdout.strip().splitlines()[0]


def write_result(name, text):
    """Writes bench/results/`name`, prints it and where it went."""
    path = os.path.join(ROOT, "bench", "results", name)
    with open(path, "w") as f:
        f.write(text)
    print(text)
    print(f"written to {os.path.relpath(path, ROOT)}")


def prepend_result(name, header, section):
    """Puts `section` first under `header` in bench/results/`name`, the sections of earlier runs after."""
    path = os.path.join(ROOT, "bench", "results", name)
    old = open(path).read().removeprefix(header) if os.path.exists(path) else ""
    with open(path, "w") as f:
        f.write(header + section + "\n" + old)


def run_tool(main, result_name):
    """Exits with `main`()'s code. A TERM (from a CI job's timeout, say) unwinds like Ctrl-C does, so
    the servers `main` started are stopped too; either leaves bench/results/`result_name` as it was."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print(f"interrupted; bench/results/{result_name} left as it was", file=sys.stderr)
        sys.exit(130)


# For shell scripts --------------------------------------------------------------------------------

def occurred_at(event):
    """An event's `occurred_at` (the database's clock, RFC 3339) as a Unix time."""
    return datetime.datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")).timestamp()


class WebhookReceiver:
    """A webhook endpoint on 127.0.0.1:`port` for the service's deliveries, as a context manager.
    `mode`: "ok" answers 204, "down" 503, "slow" 204 after `slow_seconds`. Keeps every delivery as
    (wall-clock time, Coupon-Delivery, events, acknowledged, signature valid), the signature checked
    against `secret` once it is set (docs/events.md).

    While a delivery arrives it is only read and kept: its JSON is parsed and its signature checked
    when `deliveries` is next read, so a bench's measured rows do not pay this Python endpoint's
    parsing on the two cores the sale runs on (a real endpoint runs elsewhere)."""

    def __init__(self, port, slow_seconds=5.0, keep_events=True):
        self.port = port
        # Without the events kept (a million of them), only their count and the largest lag.
        self.keep_events = keep_events
        self.count = 0
        self._max_lag = 0.0
        self.url = f"http://{HOST}:{port}/hooks"
        self.mode = "ok"
        self.slow_seconds = slow_seconds
        self.secret = None
        self._deliveries = []
        self._arrived = []  # (time, Coupon-Delivery, body, acknowledged, Coupon-Signature), not yet parsed
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # Keeps the connection, as a real endpoint does (HTTP/1.0 would cost a connection a delivery).
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                mode = receiver.mode
                if mode == "slow":
                    time.sleep(receiver.slow_seconds)
                acknowledged = mode != "down"
                arrived = time.time()
                with receiver.lock:
                    if acknowledged:
                        receiver.count += body.count(b'"occurred_at":')
                    receiver._arrived.append((arrived, self.headers.get("Coupon-Delivery"), body, acknowledged,
                                              self.headers.get("Coupon-Signature", "")))
                self.send_response(204 if acknowledged else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, port), Handler)
        self.server.daemon_threads = True

    @property
    def deliveries(self):
        """Every delivery so far, parsed: (time, Coupon-Delivery, events, acknowledged, signature valid)."""
        with self.lock:
            arrived, self._arrived = self._arrived, []
            for at, delivery, body, acknowledged, signature in arrived:
                events = json.loads(body)["events"]
                if acknowledged:
                    self._max_lag = max(self._max_lag, at - occurred_at(events[0]))
                self._deliveries.append((at, delivery, events if self.keep_events else [], acknowledged,
                                         self.signed(signature, body)))
            return list(self._deliveries)

    @property
    def max_lag(self):
        """The largest lag of a delivery's first event, from its `occurred_at` to the delivery's arrival."""
        self.deliveries  # parses what arrived since
        return self._max_lag

    def signed(self, header, body):
        if self.secret is None:
            return None
        parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        expected = hmac.new(self.secret.encode(), f"{parts.get('t', '')}.".encode() + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts.get("v1", ""))

    def acknowledged(self):
        """The events of the acknowledged deliveries, in the order they arrived."""
        return [event for _, _, events, acknowledged, _ in self.deliveries if acknowledged for event in events]

    def lags(self, coupon, prefix=""):
        """Per event of `coupon` (of a type starting with `prefix`), first acknowledged: seconds from
        its `occurred_at` (the database's clock, on this machine) to its arrival."""
        first = {}
        for arrived, _, events, acknowledged, _ in self.deliveries:
            for event in events:
                if (acknowledged and event["coupon_id"] == coupon and event["type"].startswith(prefix)
                        and event["id"] not in first):
                    first[event["id"]] = arrived - occurred_at(event)
        return list(first.values())

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def register_webhook(port, url, types=None, token=ADMIN_TOKEN):
    """Registers `url` through the instance on `port`: (id, secret)."""
    request = urllib.request.Request(
        f"http://{HOST}:{port}/v1/webhooks", method="POST", data=json.dumps({"url": url, **({"types": types} if types else {})}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    body = json.loads(urllib.request.urlopen(request, timeout=10).read())
    return body["id"], body["secret"]


def delete_webhook(port, webhook, token=ADMIN_TOKEN):
    request = urllib.request.Request(f"http://{HOST}:{port}/v1/webhooks/{webhook}", method="DELETE",
                                     headers={"Authorization": f"Bearer {token}"})
    urllib.request.urlopen(request, timeout=10).read()


def main(args):
    """`python3 -m bench.lib create-coupon QUANTITY [NAME]`: create_coupon on DATABASE_URL, printing
    the new coupon's id; the shell scripts' way to make a coupon (bench/fuzz/run.sh,
    bench/ab/commits.sh).
    `python3 -m bench.lib receive-webhooks PORT`: a webhook endpoint on 127.0.0.1:PORT (/hooks) that
    prints every delivery's headers and body and answers 204, until Ctrl-C (the README's walkthrough)."""
    if len(args) == 2 and args[0] == "receive-webhooks" and args[1].isdigit():
        class Printer(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                print(f"POST {self.path}\n{self.headers}{body.decode()}\n", flush=True)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        try:
            http.server.ThreadingHTTPServer((HOST, int(args[1])), Printer).serve_forever()
        except KeyboardInterrupt:
            return 0
    if len(args) not in (2, 3) or args[0] != "create-coupon" or not args[1].isdigit():
        print(main.__doc__, file=sys.stderr)
        return 2
    print(create_coupon(int(args[1]), *args[2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
