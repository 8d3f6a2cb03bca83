#!/usr/bin/env bash
# The rolling-upgrade check (docs/operations.md, "Migrations while instances serve"): the previous
# release's binary serving on the schema of the current one, alone and beside it (bench/upgrade/check.py).
#   bench/upgrade/check.sh [PREVIOUS]     PREVIOUS: the previous release's commit, HEAD~1 by default
# PREVIOUS's coupon-server is built in a git worktree under /tmp, removed at the end (5-8 minutes on a
# fresh tree, 17 on a busy machine); COUPON_PREVIOUS_BIN=PATH uses that binary instead and skips the build. The current
# binary is COUPON_BIN, or the release build of this checkout. Two scratch databases: one migrated by
# the previous binary and then by the current one, one by the current one alone; on each, the previous
# binary sells alone and then beside the current one, every sale audited. Prints PASS or FAIL (exit 1).
# About 20 seconds after the builds. UPGRADE_PORT (8441, and the next) changes the servers' ports.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

trap 'exit 130' INT TERM
previous="${1:-HEAD~1}"
previous_rev="$(git -C "$COUPON_ROOT" rev-parse --short "$previous^{commit}")"
ensure_postgres_installed
trap cleanup EXIT

if [ -n "${COUPON_PREVIOUS_BIN:-}" ]; then
    echo "previous binary: COUPON_PREVIOUS_BIN=$COUPON_PREVIOUS_BIN as it is (no build; said to be $previous_rev)"
else
    tree="/tmp/coupon-upgrade-$previous_rev-$$"
    git -C "$COUPON_ROOT" worktree add --detach "$tree" "$previous_rev" >/dev/null
    at_exit git -C "$COUPON_ROOT" worktree remove --force "$tree"
    echo "building $previous_rev's coupon-server in $tree (5-8 minutes on a fresh tree, more on a busy machine)"
    started=$SECONDS
    (cd "$tree" && swift build -c release --product coupon-server 2>&1 | tail -n 3)
    COUPON_PREVIOUS_BIN="$(cd "$tree" && swift build -c release --show-bin-path)/coupon-server"
    echo "built in $((SECONDS - started)) s"
fi
if [ -n "${COUPON_BIN:-}" ]; then
    echo "current binary: COUPON_BIN=$COUPON_BIN as it is (no build)"
else
    (cd "$COUPON_ROOT" && swift build -c release --product coupon-server 2>&1 | tail -n 3)
    COUPON_BIN="$(cd "$COUPON_ROOT" && swift build -c release --show-bin-path)/coupon-server"
fi

start_local_postgres
recreate_database coupon_upgrade_upgraded
recreate_database coupon_upgrade_fresh
cd "$COUPON_ROOT"
PREVIOUS_BIN="$COUPON_PREVIOUS_BIN" PREVIOUS_REV="$previous_rev" COUPON_BIN="$COUPON_BIN" \
    UPGRADED_URL="$(database_url coupon_upgrade_upgraded)" FRESH_URL="$(database_url coupon_upgrade_fresh)" \
    DATABASE_URL="$(database_url coupon_upgrade_fresh)" python3 -m bench.upgrade.check
