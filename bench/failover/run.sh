#!/usr/bin/env bash
# Five failovers in a row under pg_auto_failover (installed from apt when missing), each audited, with
# two instances that are never restarted; about three minutes. Adds a section to
# bench/results/failover.md. FAILOVER_ROUNDS sets the number of rounds (5); COUPON_BIN skips the build.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

ensure_command_from_apt pg_autoctl postgresql-15-auto-failover
start_bench coupon_failover
cd "$COUPON_ROOT"
DATABASE_URL="$COUPON_DATABASE_URL" python3 -m bench.failover.run
