#!/usr/bin/env bash
# The open-loop bench: new users arrive at a rate of their own (k6 constant-arrival-rate,
# bench/openloop/arrivals.js), in steps of arrival rate, each step's warm-up not counted; at every
# step the constant answer (GET /healthz), then issuance (every arrival a new user), on one server
# instance and then on two on one database; every issuance coupon audited. bench/openloop/run.py
# starts and stops the servers and finds each target's knee: the highest rate with p99 < 100 ms, no
# failed request and no dropped arrival.
# Writes bench/results/openloop.md, openloop.csv and openloop.png; k6's JSON summaries and logs stay
# in bench/results/tmp/openloop/. About 8 minutes with the defaults (7 steps × 2 targets × 2 instance
# counts); BENCH_QUICK=1 about 2. COUPON_BIN skips the release build; OPENLOOP_RATES ("500 1000 1500
# 2000 3000 4000 6000"), OPENLOOP_WARMUP (3 s), OPENLOOP_SECONDS (8 s), OPENLOOP_INSTANCES ("1 2"),
# OPENLOOP_MAX_VUS (3000 per phase) and OPENLOOP_PORT (8395, and the next) change the run.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

trap 'exit 130' INT TERM
# Two phases of up to 3000 virtual users each, a connection each, counted on both ends of the loopback.
raise_file_limit 16384
ensure_k6_installed
ensure_matplotlib_installed

start_bench coupon_openloop
POSTMASTER_PID="$(head -n 1 "$COUPON_PG_DATA/postmaster.pid")" DATABASE_URL="$COUPON_DATABASE_URL" \
    python3 -m bench.openloop.run
