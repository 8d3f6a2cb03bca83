"""What the bench scripts share: psql against DATABASE_URL, the machine line of a results file, and
the server's readiness and coupon creation over HTTP."""
import json
import os
import platform
import subprocess
import time
import urllib.request

URL = os.environ["DATABASE_URL"]


def psql(sql, url=URL):
    return subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


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
    return "; ".join([f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.system()} {platform.release()}",
                      f"PostgreSQL {psql('SHOW server_version')} (fsync on, synchronous_commit on)", *details])


def first_line(command):
    return subprocess.run(command, capture_output=True, text=True).stdout.strip().splitlines()[0]


def wait_ready(base, seconds=30, alive=lambda: True):
    """Waits until `base`/readyz reports the catalogue listener connected; returns time.monotonic() then.
    `alive` is asked on every try, so a server that died is reported at once."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server at {base} exited before it was ready")
        try:
            body = urllib.request.urlopen(f"{base}/readyz", timeout=1).read().decode()
            if '"connected"' in body:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server at {base} was not ready within {seconds} s")


def create_coupon_over_http(base, token, name, quantity, **window):
    """POST /v1/coupons with the admin token (`window`: starts_at, ends_at in RFC 3339); returns the new
    coupon's id."""
    request = urllib.request.Request(
        f"{base}/v1/coupons", method="POST", data=json.dumps({"name": name, "quantity": quantity, **window}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    return json.load(urllib.request.urlopen(request, timeout=60))["id"]
