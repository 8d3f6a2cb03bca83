#!/usr/bin/env bash
# The moment after a sell-out under load (wrk, new users, past the sell-out): how many refusals read
# the database while the holders loaded; adds a section to bench/results/sellout.md
# (bench/speed/sellout.py). SELLOUT_TICKETS and SELLOUT_AFTER change the size and the time after.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

ensure_wrk_installed
start_bench coupon_sellout
cd "$COUPON_ROOT"
DATABASE_URL="$COUPON_DATABASE_URL" python3 -m bench.speed.sellout
