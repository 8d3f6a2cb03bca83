#!/usr/bin/env bash
# What the outbox costs PostgreSQL per ticket (bench/events/rows.py): issue_tickets without events,
# with a row per ticket (before migrations/0014) and with a row per group (committed), in pgbench,
# sides alternating; adds a section to bench/results/outbox-rows.md. About 2 minutes. EVENTS_ROWS_GROUP, EVENTS_ROWS_ROUNDS and EVENTS_ROWS_SECONDS change the group, the rounds
# and the length of a row.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

start_bench coupon_outbox_rows
DATABASE_URL="$COUPON_DATABASE_URL" POSTMASTER_PID="$(head -n 1 "$COUPON_PG_DATA/postmaster.pid")" python3 -m bench.events.rows
