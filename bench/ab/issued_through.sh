#!/usr/bin/env bash
# A/B of migration 0003 over HTTP: issue_tickets as of 0002 (claims read the free-ticket index from
# the start of the coupon) against 0003 (claims start after coupons.issued_through). Same server
# binary, one 1.5M-ticket coupon per side, wrk at CLIENTS (64) for 6 s per round, sides alternating
# so both meet the same machine. The coupon fills up round after round, as in a sale.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"
trap '[ "${COUPON_KEEP_PG:-0}" = 1 ] || release_local_postgres || true' EXIT

ensure_postgres_installed
ensure_wrk_installed
start_local_postgres
cd "$COUPON_ROOT"
swift build -c release --product coupon-server
bin="$(swift build -c release --show-bin-path)/coupon-server"
before="$(mktemp -d)"
cp migrations/0001_* migrations/0002_* "$before/"
port="${AB_PORT:-8491}"
for side in before after; do
    recreate_database "ab_$side"
    folder=migrations; [ "$side" = before ] && folder="$before"
    "$bin" migrate --database-url "$(database_url "ab_$side")" --migrations "$folder" --log-level error
    psql_local -q -d "ab_$side" -c "WITH c AS (INSERT INTO coupons (name, quantity) VALUES ('ab', 1500000) RETURNING id) SELECT FROM c, LATERAL add_coupon_tickets(c.id, 1, 1500000)"
done
for round in $(seq "${ROUNDS:-3}"); do
    for side in before after; do
        LOG_LEVEL=warning "$bin" serve --port "$port" --database-url "$(database_url "ab_$side")" >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" | grep -q connected && break; sleep 0.1; done
        result=$(wrk -t2 -c"${CLIENTS:-64}" -d6s -s bench/wrk/issue.lua "http://127.0.0.1:$port" -- 1 "$side-$round" | grep RESULT)
        kill -TERM "$pid"; wait "$pid" || true
        requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result")
        micros=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$result")
        held=$(psql_local -At -d "ab_$side" -c "SELECT issued_count FROM coupons WHERE id = 1")
        echo "round $round $side: $((requests * 1000000 / micros)) issued/s; $result; counter $held"
    done
done
