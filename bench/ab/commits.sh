#!/usr/bin/env bash
# A/B of two revisions of the server over HTTP: BASE (default HEAD~1) against the working tree.
# Each side is a release build with its own database migrated by its own migrations. Each round
# gives each side a fresh coupon and wrk at CLIENTS (64) for 6 s, every request a new user; sides
# alternate so both meet the same machine. Prints issued/s, latency and the audit per round.
# A CHECKPOINT follows each coupon's creation, so no round pays for the setup's WAL.
#   bench/ab/commits.sh [BASE]        ROUNDS=3 CLIENTS=64 AB_PORT=8491
#   AB_KEEP_BASE=1 keeps the base revision's worktree and build in /tmp for the next run.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"
base_rev="$(git -C "$COUPON_ROOT" rev-parse --short "${1:-HEAD~1}")"
base_tree="${AB_BASE_TREE:-/tmp/coupon-ab-$base_rev}"
pid=""
stop_server() {
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || true
    pid=""
}
at_exit stop_server
trap cleanup EXIT

ensure_postgres_installed
ensure_wrk_installed
[ -d "$base_tree" ] || git -C "$COUPON_ROOT" worktree add --detach "$base_tree" "$base_rev" >/dev/null
[ "${AB_KEEP_BASE:-0}" = 1 ] || at_exit git -C "$COUPON_ROOT" worktree remove --force "$base_tree"
start_local_postgres
cd "$COUPON_ROOT"
declare -A bin root
root[base]="$base_tree"
root[head]="$COUPON_ROOT"
for side in base head; do
    (cd "${root[$side]}" && swift build -c release --product coupon-server 2>&1 | tail -1)
    bin[$side]="$(cd "${root[$side]}" && swift build -c release --show-bin-path)/coupon-server"
    recreate_database "ab_$side"
    "${bin[$side]}" migrate --database-url "$(database_url "ab_$side")" --migrations "${root[$side]}/migrations" --log-level error
    # Both sides audited by the working tree's rules (a base may predate audit_coupon or word it otherwise).
    psql_local -q -d "ab_$side" -f "$COUPON_ROOT/migrations/functions/audit_coupon.sql"
done

port="${AB_PORT:-8491}"
admin_token="ab-admin-token-of-at-least-32-bytes"
quantity=300000
echo "A/B at ${CLIENTS:-64} clients: base $base_rev against head $(git -C "$COUPON_ROOT" rev-parse --short HEAD)$(git -C "$COUPON_ROOT" diff --quiet || echo '+changes')"
for round in $(seq "${ROUNDS:-3}"); do
    for side in base head; do
        db="ab_$side"
        coupon=$(DATABASE_URL="$(database_url "$db")" python3 -m bench.lib create-coupon "$quantity" ab)
        psql_local -q -d "$db" -c CHECKPOINT
        # The admin token: /readyz tells the listener's state to it alone.
        COUPON_ADMIN_TOKEN="$admin_token" COUPON_TRUST_USER_IDS=1 COUPON_PUBLIC_METRICS=1 LOG_LEVEL=warning "${bin[$side]}" serve --port "$port" --database-url "$(database_url "$db")" >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 100); do
            curl -sf -H "Authorization: Bearer $admin_token" "http://127.0.0.1:$port/readyz" | grep -q connected && break
            sleep 0.1
        done
        result=$(wrk -t2 -c"${CLIENTS:-64}" -d6s -s bench/wrk/issue.lua "http://127.0.0.1:$port" -- "$coupon" "$side-$round" | grep RESULT)
        stop_server
        requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result")
        micros=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$result")
        p50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$result")
        p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$result")
        # bench/lib.py's audit: "quantity Q, counter C, held H, users U: clean" (exit 0) or the
        # violations after the colon (exit 3); any other exit stops the script.
        audit=$(DATABASE_URL="$(database_url "$db")" python3 -m bench.audit "$coupon") || [ $? -eq 3 ]
        held=$(sed -E 's/.*held ([0-9]+).*/\1/' <<<"$audit")
        non2xx=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$result")
        # wrk stops counting with requests in flight; those commit too (at most one per connection).
        verdict=clean
        if [[ "$audit" != *": clean" ]] || [ "$non2xx" != 0 ] \
            || [ "$held" -lt "$requests" ] || [ "$((held - requests))" -gt "${CLIENTS:-64}" ]; then
            verdict="BROKEN ($audit; 2xx $requests, non-2xx $non2xx)"
        fi
        printf 'round %s %-4s %6d issued/s  p50 %5.2f ms  p99 %5.2f ms  audit %s\n' "$round" "$side" \
            "$((held * 1000000 / micros))" "$(awk "BEGIN { print $p50 / 1000 }")" "$(awk "BEGIN { print $p99 / 1000 }")" "$verdict"
    done
done
