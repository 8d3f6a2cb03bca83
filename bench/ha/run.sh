#!/usr/bin/env bash
# What high availability costs: issuance on a primary alone, with a synchronous standby on loopback,
# and with that standby 1 ms and 5 ms of round trip away (bench/ha/proxy.py), side by side in one
# run: closed loop as bench/speed (issued/s, CPU per ticket, mean group), open loop as
# bench/openloop (p99 per arrival rate, the knee). Adds a section to bench/results/ha.md; about 12
# minutes with the defaults.
# The bench's own cluster, since it makes the primary wait for a standby, which no other script
# expects: the primary on HA_PG_PORT (54351), the standby on the next port, the proxy on the one
# after, all under HA_PG_DIR (/tmp/ha-bench). COUPON_BIN skips the release build.
# HA_SECONDS: each closed-loop row and each open-loop step's measured phase (8 s); HA_WARMUP: an
# open-loop step's warm-up (3 s); HA_RATES: the open-loop steps, arrivals/s ("250 500 750 1000
# 1250 1500 2000": finer than bench/openloop's, around its knee); HA_ROUNDS: closed-loop rounds
# (2); HA_SETUPS: "alone sync 1 5" (a number: the standby through the proxy, that round trip in ms).
set -euo pipefail

export COUPON_PG_PORT="${HA_PG_PORT:-54351}" COUPON_PG_DIR="${HA_PG_DIR:-/tmp/ha-bench}"
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

trap 'exit 130' INT TERM
raise_file_limit 16384
ensure_wrk_installed
ensure_k6_installed

ensure_postgres_installed
trap cleanup EXIT
start_local_postgres
# The standby, should the runner be killed before it stops it.
stop_standby() {
    [ ! -f "$COUPON_PG_DIR/standby/postmaster.pid" ] || _pg_run "$PG_BIN/pg_ctl" stop -D "$COUPON_PG_DIR/standby" -m immediate >/dev/null
}
at_exit stop_standby
# A run killed midway can leave the primary waiting for a standby that is gone: every commit,
# the migration's first, would hang.
psql_local -d postgres -q -c "ALTER SYSTEM RESET synchronous_standby_names" -c "SELECT pg_reload_conf()" >/dev/null
prepare_release_database coupon_ha
cd "$COUPON_ROOT"

export SPEED_SECONDS="${HA_SECONDS:-8}" OPENLOOP_SECONDS="${HA_SECONDS:-8}" OPENLOOP_WARMUP="${HA_WARMUP:-3}" \
    OPENLOOP_RATES="${HA_RATES:-250 500 750 1000 1250 1500 2000}"
HA_STANDBY_DATA="$COUPON_PG_DIR/standby" POSTMASTER_PID="$(head -n 1 "$COUPON_PG_DATA/postmaster.pid")" \
    DATABASE_URL="$COUPON_DATABASE_URL" python3 -m bench.ha.run
