#!/usr/bin/env bash
# What checkout by code costs beside the framework's constant answer: a ticket by its holder and by
# its code, holds by code and their confirmations, in one run of about a minute; adds a section to
# bench/results/checkout.md. SPEED_SECONDS sets each row's length (8), CHECKOUT_TICKETS the tickets (150,000).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

ensure_wrk_installed
start_bench coupon_checkout
cd "$COUPON_ROOT"
DATABASE_URL="$COUPON_DATABASE_URL" PG_BIN="$PG_BIN" python3 -m bench.speed.checkout
