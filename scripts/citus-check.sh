#!/usr/bin/env bash
# The service on an existing Citus cluster (bench/citus/check.py): migrates the coordinator's database
# (which distributes the schema, migrations/0007), starts two instances against the coordinator and
# runs a 1.5x oversubscribed burst, every user on both instances at once, the sold-out-from-memory
# check (notifications from the workers reach every catalogue) and a sale of several coupons on
# different workers, each with the database audit.
#
#   scripts/citus-check.sh postgres://postgres@127.0.0.1:55440/coupon [postgres://.../plain]
#
# The database must exist and have the citus extension (CREATE EXTENSION citus) with its workers
# added. The optional second URL, an empty plain PostgreSQL database, gets the same burst and sale in
# the same run, for rates side by side. CI does not run this: it needs a cluster.
set -euo pipefail

coordinator="${1:?usage: scripts/citus-check.sh COORDINATOR_URL [PLAIN_POSTGRES_URL]}"
baseline="${2:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ -z "${COUPON_BIN:-}" ]; then
    swift build -c release --product coupon-server
    COUPON_BIN="$(swift build -c release --show-bin-path)/coupon-server"
fi
export COUPON_BIN
for url in "$coordinator" ${baseline:+"$baseline"}; do
    "$COUPON_BIN" migrate --database-url "$url" --log-level error
done
DATABASE_URL="$coordinator" BASELINE_URL="$baseline" python3 -m bench.citus.check
