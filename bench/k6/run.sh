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
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

work="$COUPON_ROOT/bench/results/tmp/k6"
trap 'exit 130' INT TERM

# 3000 virtual users keep more than 6000 connections open, counting both ends of the loopback.
raise_file_limit 8192
ensure_k6_installed

start_bench coupon_k6
rm -rf "$work"
mkdir -p "$work"
K6_WORK="$work" POSTMASTER_PID="$(head -n 1 "$COUPON_PG_DATA/postmaster.pid")" DATABASE_URL="$COUPON_DATABASE_URL" \
    python3 -m bench.k6.run
