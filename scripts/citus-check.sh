#!/usr/bin/env bash
# The service on an existing Citus cluster (bench/citus/check.py): migrates the coordinator's database
# (which distributes the schema, migrations/0007), starts two instances against the coordinator and
# runs a 1.5x oversubscribed burst, every user on both instances at once, the sold-out-from-memory
# check (notifications from the workers reach every catalogue) and a sale of several coupons on
# different workers, each with the database audit.
#
#   scripts/citus-check.sh [--from COMMIT]... postgres://postgres@127.0.0.1:55440/coupon [postgres://.../plain]
#
# The database must exist and have the citus extension (CREATE EXTENSION citus) with its workers
# added. The optional second URL, an empty plain PostgreSQL database, gets the same burst and sale in
# the same run, for rates side by side. Each --from first migrates both databases with the migrations
# folder of an earlier commit, as a database deployed then was (a failure there is shown, and the
# check goes on: `--from c97bcd0 --from 6bb21a4` is a cluster of 2026-12-04 stopped at 0010 as the
# release of 12-06 did), so the check runs on a database upgraded to today's migrations. CI does not run this: it needs a cluster.
set -euo pipefail

earlier=()
while [ "${1:-}" = "--from" ]; do
    earlier+=("${2:?--from needs a commit}")
    shift 2
done
coordinator="${1:?usage: scripts/citus-check.sh [--from COMMIT]... COORDINATOR_URL [PLAIN_POSTGRES_URL]}"
baseline="${2:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ -z "${COUPON_BIN:-}" ]; then
    swift build -c release --product coupon-server
    COUPON_BIN="$(swift build -c release --show-bin-path)/coupon-server"
fi
export COUPON_BIN
for commit in ${earlier[@]+"${earlier[@]}"}; do
    folder="$(mktemp -d)"
    git -C "$root" archive "$commit" migrations | tar -x -C "$folder"
    for url in "$coordinator" ${baseline:+"$baseline"}; do
        echo "$url: migrations as at $commit first"
        "$COUPON_BIN" migrate --database-url "$url" --migrations "$folder/migrations" --log-level error \
            || echo "$url: stopped with the migrations of $commit; going on with today's"
        # A ticket issued then, which the check finds by its code today (before 0010, a bare code);
        # not every release could issue on Citus (from 8bc31f1 to 6bb21a4 none could).
        coupon=$(psql -X -A -t -q -v ON_ERROR_STOP=1 "$url" -c "INSERT INTO coupons (name, quantity) VALUES ('before $commit', 2) RETURNING id")
        psql -X -q -v ON_ERROR_STOP=1 "$url" -c "SELECT add_coupon_tickets($coupon, 1, 2)" \
            -c "SELECT count(*) FROM issue_tickets($coupon, ARRAY['before-$commit'])" >/dev/null 2>"$folder/issue.log" \
            || echo "$url: no ticket issued with the functions of $commit: $(grep -m1 ERROR "$folder/issue.log")"
    done
    rm -rf "$folder"
done
for url in "$coordinator" ${baseline:+"$baseline"}; do
    "$COUPON_BIN" migrate --database-url "$url" --log-level error
    if "$COUPON_BIN" migrate status --database-url "$url" --log-level error | grep -v ': applied'; then
        echo "$url: not every migration is applied" >&2
        exit 1
    fi
done
DATABASE_URL="$coordinator" BASELINE_URL="$baseline" python3 -m bench.citus.check
