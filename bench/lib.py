"""What the bench scripts share: psql against DATABASE_URL, and the machine line of a results file."""
import os
import platform
import subprocess

URL = os.environ["DATABASE_URL"]


def psql(sql):
    return subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", URL, "-c", sql],
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
