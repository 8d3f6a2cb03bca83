#!/usr/bin/env bash
# The in-memory catalogue at scale: readiness and memory (RSS) of one server process over
# 100,000 coupons (99,000 finished, 4,950,000 holders), then over one sold-out coupon of 1,000,000
# holders, with what the database runs for 2,000 refused requests (pg_stat_statements).
# Writes bench/results/catalogue.md. Takes a few minutes after the release build.
# CATALOGUE_PORT sets the server's port (8471), CATALOGUE_READY_TIMEOUT the wait for /readyz (300 s),
# CATALOGUE_CODE the name of the code measured in the results (default: the git commit).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

start_bench coupon_catalogue_bench
bin="$COUPON_BIN"
url="$COUPON_DATABASE_URL"
# A second fresh database for the sold-out coupon (and the empty-catalogue baseline), migrated the
# same way prepare_release_database migrates the first.
recreate_database coupon_catalogue_bench_one
one_url="$(database_url coupon_catalogue_bench_one)"
"$bin" migrate --database-url "$one_url" --migrations "$COUPON_ROOT/migrations" --log-level error

cd "$COUPON_ROOT"
DATABASE_URL="$url" ONE_DATABASE_URL="$one_url" COUPON_BIN="$bin" python3 -m bench.catalogue.run "$@"
