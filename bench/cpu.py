"""CPU seconds spent by the server, PostgreSQL and the load generator over a run, from /proc.

PostgreSQL's part is every process named `postgres` (postmaster, backends, background workers),
plus what those collected from children that exited during the run. The load generator is a child
of the bench, so its CPU comes from wait4()'s resource usage."""
import os
import subprocess

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    """(comm, own utime+stime, reaped children's cutime+cstime) in seconds, or None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is stat's field 3 (state); utime, stime, cutime, cstime are fields 14 to 17.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return comm, (utime + stime) / TICKS, (cutime + cstime) / TICKS


def _postgres():
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(entry)
            if stat and stat[0] == "postgres":
                total += stat[1] + stat[2]
    return total


def _server(pid):
    stat = _stat(pid) if pid is not None else None
    return stat[1] if stat else 0.0


def run_measured(command, server_pid=None):
    """Runs `command` (the load generator) to its end; returns (stdout, {"server", "postgres", "load"}
    CPU seconds spent while it ran). Without a server (pgbench alone) its part is 0."""
    server, postgres = _server(server_pid), _postgres()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = {"server": _server(server_pid) - server, "postgres": _postgres() - postgres,
           "load": usage.ru_utime + usage.ru_stime}
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, command, out, process.stderr.read())
    return out, cpu
