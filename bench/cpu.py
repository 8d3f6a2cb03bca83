"""CPU seconds spent by the server, PostgreSQL and the load generator over a run, from /proc.

PostgreSQL's part is every process named `postgres` (postmaster, backends, background workers),
plus what those collected from children that exited during the run; cluster_cpu counts one
cluster's alone, from its postmaster. The load generator is a child of the bench, so its CPU comes
from wait4()'s resource usage."""
import os
import subprocess
import time
from typing import NamedTuple

TICKS = os.sysconf("SC_CLK_TCK")


class Stat(NamedTuple):
    comm: str
    ppid: int
    cpu: float        # own utime + stime, seconds
    children: float   # reaped children's cutime + cstime, seconds


def stat(pid):
    """/proc/PID/stat's name, parent and CPU seconds, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is stat's field 3 (state), fields[1] field 4 (ppid); utime, stime, cutime, cstime are
    # fields 14 to 17.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return Stat(comm, int(fields[1]), (utime + stime) / TICKS, (cutime + cstime) / TICKS)


def processes():
    """The stat of every process there is (those that exit while read are left out)."""
    return [s for s in (stat(entry) for entry in os.listdir("/proc") if entry.isdigit()) if s]


def _postgres():
    return sum(s.cpu + s.children for s in processes() if s.comm == "postgres")


def cluster_cpu(postmaster_pid):
    """CPU seconds of one cluster: its postmaster, the postmaster's live children, and the children
    that exited (in the postmaster's children time). Deltas of this are exact across backends coming
    and going, and count no other cluster on the machine."""
    postmaster = stat(postmaster_pid)
    if postmaster is None:
        raise RuntimeError(f"the postmaster (pid {postmaster_pid}) is gone")
    return postmaster.cpu + postmaster.children + sum(s.cpu for s in processes() if s.ppid == postmaster_pid)


def after_client_exit():
    """Waits until the backends of a client that has just exited (pgbench) are reaped. Read at once,
    a backend gone from /proc but not yet in the postmaster's children time is counted nowhere by
    `cluster_cpu` (groups of 1 once read 9 µs a ticket for about 1,200)."""
    time.sleep(1)


def machine_busy():
    """CPU seconds the whole machine spent outside idle and iowait."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICKS


def machine_switches():
    """Context switches of the whole machine since boot (/proc/stat's ctxt): a thread put to sleep or
    preempted and another run, in every process."""
    with open("/proc/stat") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("ctxt "))


def connections_accepted():
    """TCP connections this machine accepted since boot (/proc/net/snmp's Tcp PassiveOpens)."""
    with open("/proc/net/snmp") as f:
        header, values = [line.split() for line in f if line.startswith("Tcp:")][:2]
    return int(values[header.index("PassiveOpens")])


def process_cpu(pid):
    """Own CPU seconds of `pid`; 0 without a pid or once it is gone."""
    s = stat(pid) if pid is not None else None
    return s.cpu if s else 0.0


def run_measured(command, server_pid=None):
    """Runs `command` (the load generator) to its end; returns (stdout, {"server", "postgres", "load"}
    CPU seconds spent while it ran). Without a server (pgbench alone) its part is 0."""
    server, postgres = process_cpu(server_pid), _postgres()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = {"server": process_cpu(server_pid) - server, "postgres": _postgres() - postgres,
           "load": usage.ru_utime + usage.ru_stime}
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, command, out, process.stderr.read())
    return out, cpu
