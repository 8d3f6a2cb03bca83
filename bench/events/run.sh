#!/usr/bin/env bash
# Issue 32's targets, side by side in one run (bench/events/run.py): issuance without events (BASE, the
# last commit before the outbox, built in a worktree under /tmp, or EVENTS_BASE_BIN) against the
# working tree with a webhook endpoint subscribed and receiving on loopback: closed loop (bench/speed's
# rows), open loop (bench/openloop's steps on one instance) and a million-ticket sale whose last event
# must reach the receiver. Each side runs on a database of its own, migrated by its own migrations.
# Writes bench/results/events.md. About 30 minutes.
#   bench/events/run.sh [BASE]     BASE defaults to 1695b9a
# EVENTS_ROUNDS (2) alternates the closed-loop sides; EVENTS_RATES the open-loop steps
# ("500 1000 1500 2000 3000"; a rate given twice runs twice); EVENTS_CLOSED=0 leaves the closed loop
# out, EVENTS_OPEN=0 the open loop, EVENTS_MILLION=0 the million,
# EVENTS_QUIET=0 the closed loop's third side (the head with no endpoint registered). COUPON_BIN=PATH
# runs that binary as the head (EVENTS_HEAD_REV=REV names its revision in the results).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

trap 'exit 130' INT TERM
raise_file_limit 16384
ensure_wrk_installed
ensure_k6_installed
start_bench coupon_events
base_rev="$(git -C "$COUPON_ROOT" rev-parse --short "${1:-1695b9a}")"
base_tree="/tmp/coupon-events-$base_rev"
[ -d "$base_tree" ] || git -C "$COUPON_ROOT" worktree add --detach "$base_tree" "$base_rev" >/dev/null
at_exit git -C "$COUPON_ROOT" worktree remove --force "$base_tree"
if [ -z "${EVENTS_BASE_BIN:-}" ]; then
    (cd "$base_tree" && swift build -c release --product coupon-server 2>&1 | tail -1)
    EVENTS_BASE_BIN="$(cd "$base_tree" && swift build -c release --show-bin-path)/coupon-server"
fi
recreate_database coupon_events_base
base_url="$(database_url coupon_events_base)"
"$EVENTS_BASE_BIN" migrate --database-url "$base_url" --migrations "$base_tree/migrations" --log-level error

DATABASE_URL="$COUPON_DATABASE_URL" POSTMASTER_PID="$(head -n 1 "$COUPON_PG_DATA/postmaster.pid")" HEAD_URL="$COUPON_DATABASE_URL" BASE_URL="$base_url" \
    BASE_BIN="$EVENTS_BASE_BIN" BASE_REV="$base_rev" PG_BIN="$PG_BIN" python3 -m bench.events.run
