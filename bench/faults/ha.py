"""A PostgreSQL pair under a real HA manager, on loopback: pg_auto_failover (Debian's
postgresql-15-auto-failover, `pg_autoctl`), a monitor and two nodes with synchronous replication,
in a folder of its own, run as the `postgres` user. Its health checks are tuned to loopback (a node
is unhealthy after 2 s, a lost primary is given 5 s to demote itself): a promotion 2-8 s after the
primary's host is lost, instead of 30-50 s with the defaults.

The nodes are made with the database `DATABASE` and pg_auto_failover's own replication settings:
`synchronous_standby_names = 'ANY 1 (...)'` and `synchronous_commit = on` while both nodes run, so a
COMMIT is answered once the standby has it; alone, the primary turns synchronous replication off
(pg_auto_failover's `wait_primary`) and the sale goes on."""
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
# Below the kernel's ephemeral ports (32768-60999): after the other scenarios' thousands of client
# connections, a port in that range may still be held by one, and the monitor could not listen there.
MONITOR_PORT = 25100
NODES = {"node1": 25101, "node2": 25102}
DATABASE = "coupons_ha"
MONITOR = f"postgres://autoctl_node@127.0.0.1:{MONITOR_PORT}/pg_auto_failover?sslmode=disable"
# The monitor's checks, in milliseconds (pgautofailover.* settings).
TUNING = {"health_check_period": 1000, "health_check_timeout": 1000, "health_check_max_retries": 1,
          "health_check_retry_delay": 500, "node_considered_unhealthy_timeout": 2000, "primary_demote_timeout": 5000}


def as_postgres(*command, check=True):
    return subprocess.run(["runuser", "-u", "postgres", "--", "env", f"PATH={PG_BIN}:/usr/bin:/bin", *command],
                          check=check, capture_output=True, text=True)


class Cluster:
    """The monitor and the nodes, started on entry (both nodes up, one primary), stopped on exit."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="coupon-ha-")
        shutil.chown(self.folder, "postgres", "postgres")
        self.keepers = {}

    def __enter__(self):
        try:
            as_postgres("pg_autoctl", "create", "monitor", "--pgdata", self.data("monitor"), "--pgport", str(MONITOR_PORT),
                        "--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl")
            self.keepers["monitor"] = self.keep("monitor", "run", "--pgdata", self.data("monitor"))
            self.wait(lambda: self.monitor_sql("SELECT 1") == "1", "the monitor to answer")
            for name, value in TUNING.items():
                self.monitor_sql(f"ALTER SYSTEM SET pgautofailover.{name} = {value}")
            self.monitor_sql("SELECT pg_reload_conf()")
            for name in NODES:
                self.add(name)
                self.wait(lambda: self.joined(name, ("single", "primary", "secondary")), f"{name} to join")
            self.wait(lambda: sorted(reported for _, reported in self.state().values()) == ["primary", "secondary"],
                      "a primary and a secondary")
            return self
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *_):
        for process in self.keepers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for name in ["monitor", *NODES]:
            self.kill_postmaster(name)
        shutil.rmtree(self.folder, ignore_errors=True)

    def data(self, name):
        return os.path.join(self.folder, name)

    def keep(self, name, *arguments):
        """A pg_autoctl process (a keeper or the monitor) in a process group of its own, logging to
        `name`.log in the folder."""
        log = open(os.path.join(self.folder, f"{name}.log"), "a")
        return subprocess.Popen(["runuser", "-u", "postgres", "--", "env", f"PATH={PG_BIN}:/usr/bin:/bin", "pg_autoctl",
                                 *arguments], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def add(self, name):
        """Node `name` created and kept running: the first is the primary, a later one a standby
        copied from it."""
        self.keepers[name] = self.keep(
            name, "create", "postgres", "--pgdata", self.data(name), "--pgport", str(NODES[name]), "--hostname", "127.0.0.1",
            "--name", name, "--dbname", DATABASE, "--monitor", MONITOR, "--auth", "trust", "--no-ssl", "--run")

    def monitor_sql(self, sql):
        return as_postgres("psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(MONITOR_PORT), "-d", "pg_auto_failover",
                           "-c", sql, check=False).stdout.strip()

    def node_sql(self, name, sql, database=DATABASE):
        result = as_postgres("psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(NODES[name]), "-d", database, "-c", sql,
                             check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def state(self):
        """name: (assigned state, reported state), from the monitor."""
        rows = self.monitor_sql("SELECT nodename, goalstate, reportedstate FROM pgautofailover.node")
        return {name: (goal, reported) for name, goal, reported in (row.split("|") for row in rows.splitlines() if row)}

    def primary(self):
        """The node that is out of recovery and accepts writes, or None."""
        for name in NODES:
            if self.node_sql(name, "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'") == "f":
                return name
        return None

    def url(self, query="target_session_attrs=read-write"):
        """The libpq multi-host URL of both nodes."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in NODES.values())
        return f"postgres://postgres@{hosts}/{DATABASE}?sslmode=disable&{query}"

    def node_url(self, name):
        return f"postgres://postgres@127.0.0.1:{NODES[name]}/{DATABASE}?sslmode=disable"

    def lose(self, name):
        """The host of `name` lost: its keeper and postmaster SIGKILLed, its data folder gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.keepers.pop(name).pid, signal.SIGKILL)
        self.kill_postmaster(name)
        shutil.rmtree(self.data(name), ignore_errors=True)

    def kill_postmaster(self, name):
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            with open(os.path.join(self.data(name), "postmaster.pid")) as f:
                os.kill(int(f.readline()), signal.SIGKILL)

    def rejoin(self, name):
        """The lost node back on its address, dropped from the monitor and made again as a standby."""
        as_postgres("pg_autoctl", "drop", "node", "--monitor", MONITOR, "--name", name, "--force", check=False)
        self.add(name)
        self.wait(lambda: self.joined(name, ("secondary",)), f"{name} to rejoin as a standby", seconds=120)

    def joined(self, name, states):
        """Whether `name` reports one of `states`. Meanwhile the primary is asked for a checkpoint: a
        standby's copy (pg_basebackup) waits for one, spread over minutes unless asked."""
        if self.state().get(name, ("", ""))[1] in states:
            return True
        for other in NODES:
            if other != name:
                self.node_sql(other, "CHECKPOINT", database="postgres")
        return False

    def wait(self, condition, what, seconds=60):
        """Until `condition()`; past `seconds`, TimeoutError with the last lines of every log here."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        logs = []
        for name in sorted(os.listdir(self.folder)):
            if name.endswith(".log"):
                with open(os.path.join(self.folder, name), errors="replace") as f:
                    logs.append(f"--- {name}\n" + "".join(f.readlines()[-15:]))
        raise TimeoutError(f"waited {seconds} s for {what}\n" + "\n".join(logs))
