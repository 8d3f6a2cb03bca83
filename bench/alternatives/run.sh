#!/usr/bin/env bash
# The Redis gate of the popular FCFS coupon designs (bench/alternatives/gate.lua, redis-benchmark)
# beside PostgreSQL's issue_tickets (pgbench, groups of users per call), at the datastore level, in
# one run; adds a section to bench/results/alternatives.md (bench/alternatives/run.py).
# ALT_SECONDS (10) sets the length of each row, ALT_CLIENTS (64) redis-benchmark's connections,
# ALT_PG_CLIENTS (2, as one server instance has per coupon) pgbench's, ALT_GROUPS (1,16,64) the
# PostgreSQL groups, ALT_PG_CEILING (60000) the tickets a second each PostgreSQL coupon is made for;
# ALT_REDIS_PORT (6390) and ALT_REDIS_DIR (/tmp/coupon-alt-redis) where the private redis-server
# instances listen and keep their files. COUPON_BIN, COUPON_PG_PORT, COUPON_PG_DIR as for every bench.
# ALT_PARTS ("datastore http"): the datastore rows, and over HTTP the gate behind Hummingbird
# (bench/alternatives/gate-server, built here unless ALT_GATE_BIN names its binary) beside
# coupon-server's issuance, wrk -t1 -c256 on both.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

ensure_command_from_apt redis-server redis-server
ensure_command_from_apt redis-benchmark redis-tools
export ALT_REDIS_DIR="${ALT_REDIS_DIR:-/tmp/coupon-alt-redis}"

# run.py stops its redis-server itself; this is for a run.py killed outright.
stop_redis() {
    if [ -f "$ALT_REDIS_DIR/redis.pid" ]; then kill "$(cat "$ALT_REDIS_DIR/redis.pid")" 2>/dev/null || true; fi
    rm -rf "$ALT_REDIS_DIR"
}

# Over HTTP: the gate behind the same framework, a package of its own (not the service's).
if [[ " ${ALT_PARTS:-datastore http} " == *" http "* ]] && [ -z "${ALT_GATE_BIN:-}" ]; then
    ensure_wrk_installed
    gate_package="$COUPON_ROOT/bench/alternatives/gate-server"
    (cd "$gate_package" && swift build -c release --product redis-gate-server 2>&1 | tail -1)
    ALT_GATE_BIN="$(cd "$gate_package" && swift build -c release --show-bin-path)/redis-gate-server"
    export ALT_GATE_BIN
fi

start_bench coupon_alternatives
at_exit stop_redis
POSTMASTER_PID="$(head -n 1 "$COUPON_PG_DATA/postmaster.pid")" DATABASE_URL="$COUPON_DATABASE_URL" \
    python3 -m bench.alternatives.run
