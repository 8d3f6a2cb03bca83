#!/usr/bin/env bash
# The issuance bench: SQL strategies with pgbench and HTTP with wrk, side by side in one run,
# each run audited in the database. Writes bench/results/issuance.md, then bench/speed (speed.md,
# million.md, plans.md, checkout.md), then the open-loop bench (bench/openloop: openloop.md, openloop.csv), then the charts
# of all of them (bench/charts.py: issuance-rate.png, issuance-latency.png, million.png,
# openloop.png). Takes about twenty-five minutes.
# BENCH_QUICK=1 runs a smaller matrix (a smoke test of the bench itself); BENCH_SKIP_OPENLOOP=1
# leaves the open-loop bench out.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/postgres.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_wrk_installed
ensure_matplotlib_installed
openloop=1
[ "${BENCH_SKIP_OPENLOOP:-0}" != 1 ] || openloop=0
if [ "$openloop" = 1 ]; then
    raise_file_limit 16384
    ensure_k6_installed
fi
start_bench coupon_bench
psql_local -q -d coupon_bench -f "$COUPON_ROOT/bench/sql/setup.sql"

cd "$COUPON_ROOT"
DATABASE_URL="$COUPON_DATABASE_URL" PG_BIN="$PG_BIN" python3 -m bench.run "$@"
# Where an issuance's CPU goes beside the framework's constant answers, PostgreSQL alone at the
# server's group size, and the million-ticket sale (bench/results/speed.md, million.md).
DATABASE_URL="$COUPON_DATABASE_URL" PG_BIN="$PG_BIN" python3 -m bench.speed.run
[ "${BENCH_QUICK:-0}" = 1 ] || DATABASE_URL="$COUPON_DATABASE_URL" python3 -m bench.speed.million
# issue_tickets planned once per connection against planned on every call (bench/results/plans.md).
[ "${BENCH_QUICK:-0}" = 1 ] || DATABASE_URL="$COUPON_DATABASE_URL" python3 -m bench.speed.plans
# Checkout by code: lookups, holds and confirmations beside the constant answer (bench/results/checkout.md).
[ "${BENCH_QUICK:-0}" = 1 ] || DATABASE_URL="$COUPON_DATABASE_URL" PG_BIN="$PG_BIN" python3 -m bench.speed.checkout
# The moment after a sell-out: refusals that read the database while the holders load (bench/results/sellout.md).
[ "${BENCH_QUICK:-0}" = 1 ] || DATABASE_URL="$COUPON_DATABASE_URL" python3 -m bench.speed.sellout
# New users at a rate of their own: the knee of issuance and of the constant answer, one instance
# and two (bench/results/openloop.md; BENCH_QUICK=1 makes its steps fewer and shorter).
if [ "$openloop" = 1 ]; then
    POSTMASTER_PID="$(head -n 1 "$COUPON_PG_DATA/postmaster.pid")" DATABASE_URL="$COUPON_DATABASE_URL" \
        python3 -m bench.openloop.run
fi
python3 -m bench.charts
