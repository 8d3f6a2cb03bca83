#!/usr/bin/env bash
# The issuance bench: SQL strategies with pgbench and HTTP with wrk, side by side in one run,
# each run audited in the database. Writes bench/results/issuance.md. Takes about ten minutes.
# BENCH_QUICK=1 runs a smaller matrix (a smoke test of the bench itself).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/postgres.sh"

cleanup() {
    if [ "${COUPON_KEEP_PG:-0}" != 1 ]; then release_local_postgres || true; fi
}
trap cleanup EXIT

ensure_postgres_installed
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
start_local_postgres
prepare_release_database coupon_bench
bin="$COUPON_BIN"
url="$COUPON_DATABASE_URL"
cd "$COUPON_ROOT"
psql_local -q -d coupon_bench -f "$COUPON_ROOT/bench/sql/setup.sql"

DATABASE_URL="$url" COUPON_BIN="$bin" PG_BIN="$PG_BIN" python3 "$COUPON_ROOT/bench/run.py" "$@"
