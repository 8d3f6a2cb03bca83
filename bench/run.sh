#!/usr/bin/env bash
# The issuance bench: SQL strategies with pgbench and HTTP with wrk, side by side in one run,
# each run audited in the database. Writes bench/results/issuance.md, then bench/speed (speed.md,
# million.md), then the charts of both (bench/charts.py: issuance-rate.png, issuance-latency.png,
# million.png). Takes about fifteen minutes.
# BENCH_QUICK=1 runs a smaller matrix (a smoke test of the bench itself).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/postgres.sh"

ensure_wrk_installed
# matplotlib for bench/charts.py, the version the committed charts were drawn with.
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check "matplotlib==3.11.2"
start_bench coupon_bench
psql_local -q -d coupon_bench -f "$COUPON_ROOT/bench/sql/setup.sql"

cd "$COUPON_ROOT"
DATABASE_URL="$COUPON_DATABASE_URL" PG_BIN="$PG_BIN" python3 -m bench.run "$@"
# Where an issuance's CPU goes beside the framework's constant answers, PostgreSQL alone at the
# server's group size, and the million-ticket sale (bench/results/speed.md, million.md).
DATABASE_URL="$COUPON_DATABASE_URL" PG_BIN="$PG_BIN" python3 -m bench.speed.run
[ "${BENCH_QUICK:-0}" = 1 ] || DATABASE_URL="$COUPON_DATABASE_URL" python3 -m bench.speed.million
python3 -m bench.charts
