#!/usr/bin/env bash
# The check that can fail (not in CI): with asynchronous replication and a standby held behind, the
# failover audit reports the acknowledged tickets the promoted standby lacks. About a minute; adds a
# section to bench/results/failover.md. COUPON_BIN skips the build.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

start_bench coupon_failover
cd "$COUPON_ROOT"
DATABASE_URL="$COUPON_DATABASE_URL" python3 -m bench.failover.async_check
