#!/usr/bin/env bash
# Fault scenarios against real server processes: several instances, SIGKILL, a PostgreSQL crash,
# SIGTERM under load, a randomized soak. Each ends with the database audit.
# Arguments pick scenarios (instances sigkill postgres sigterm soak); FAULTS_SEED replays a soak,
# FAULTS_ROUNDS sets its rounds (20).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

cleanup() {
    if [ "${COUPON_KEEP_PG:-0}" != 1 ]; then release_local_postgres || true; fi
}
trap cleanup EXIT

ensure_postgres_installed
start_local_postgres
prepare_release_database coupon_faults
bin="$COUPON_BIN"
url="$COUPON_DATABASE_URL"
cd "$COUPON_ROOT"

DATABASE_URL="$url" COUPON_BIN="$bin" python3 "$COUPON_ROOT/bench/faults/faults.py" "$@"
