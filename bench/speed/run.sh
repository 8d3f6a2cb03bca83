#!/usr/bin/env bash
# Where an issuance's CPU goes (server, PostgreSQL, load generator) beside the framework's constant
# answer, in one run of a minute or two; adds a section to bench/results/speed.md.
#   bench/speed/run.sh            the working tree alone
#   bench/speed/run.sh BASE       BASE (a revision, built in a worktree under /tmp) and the working
#                                 tree, sides alternating for SPEED_ROUNDS rounds (2)
#   SPEED_BASE_BIN=PATH bench/speed/run.sh   a base binary built elsewhere, against the working tree
# SPEED_LABEL names the run in the results; SPEED_SECONDS sets the length of each row (8).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

ensure_wrk_installed
start_bench coupon_speed
sides="head=$COUPON_BIN"
if [ -n "${SPEED_BASE_BIN:-}" ]; then
    sides="base=$SPEED_BASE_BIN $sides"
    export SPEED_ROUNDS="${SPEED_ROUNDS:-2}"
elif [ $# -gt 0 ]; then
    base_rev="$(git -C "$COUPON_ROOT" rev-parse --short "$1")"
    base_tree="/tmp/coupon-speed-$base_rev"
    [ -d "$base_tree" ] || git -C "$COUPON_ROOT" worktree add --detach "$base_tree" "$base_rev" >/dev/null
    [ "${SPEED_KEEP_BASE:-0}" = 1 ] || at_exit git -C "$COUPON_ROOT" worktree remove --force "$base_tree"
    (cd "$base_tree" && swift build -c release --product coupon-server 2>&1 | tail -1)
    sides="base=$(cd "$base_tree" && swift build -c release --show-bin-path)/coupon-server $sides"
    export SPEED_ROUNDS="${SPEED_ROUNDS:-2}"
fi

cd "$COUPON_ROOT"
SPEED_SIDES="$sides" DATABASE_URL="$COUPON_DATABASE_URL" PG_BIN="$PG_BIN" python3 -m bench.speed.run
