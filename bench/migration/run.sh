#!/usr/bin/env bash
# A migration applied while a sale runs (bench/migration/run.py): a database of BENCH_TICKETS
# (10,000,000) tickets, half of its coupons sold; one server instance selling a fresh coupon to new
# users arriving at a steady rate; `coupon-server migrate` applies, in the middle of that sale, a file
# the live-migration rule allows (`-- migrate: no-transaction`: an index built CONCURRENTLY, a CHECK
# added NOT VALID and validated apart), then, on a second fresh coupon, the same two changes in a
# plain transactional file (the CHECK validated at once and the index built, under coupon_tickets'
# exclusive lock to the COMMIT, as 0010 did). Every issuance's latency with its time is kept; the
# migration's duration and the longest wait and p99 during it against before it, side by side, go
# to bench/results/migration.md. About 5 minutes with the defaults, 2-3 of them the fill.
# COUPON_BIN skips the release build; MIGRATION_RATE (200 arrivals/s), MIGRATION_BEFORE (20 s),
# MIGRATION_AFTER (10 s), MIGRATION_COUPON_TICKETS (1,000,000 a coupon of the fill),
# MIGRATION_PORT (8431) change the run.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

trap 'exit 130' INT TERM
# An arrival is a connection of its own; a blocked migration keeps hundreds of them waiting.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
start_bench coupon_migration
DATABASE_URL="$COUPON_DATABASE_URL" python3 -m bench.migration.run
