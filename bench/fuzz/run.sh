#!/usr/bin/env bash
# Schemathesis against the live server, driven by openapi.yaml: generated requests for every route,
# checked for 5xx and for answers outside the document. Extra arguments go to `schemathesis run`.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

port="${FUZZ_PORT:-8390}"
server_pid=""
cleanup() {
    [ -z "$server_pid" ] || kill -TERM "$server_pid" 2>/dev/null || true
    if [ "${COUPON_KEEP_PG:-0}" != 1 ]; then release_local_postgres || true; fi
}
trap cleanup EXIT

# The version these hooks and findings were made with; pip puts its command in python's scripts folder.
python3 -m pip show schemathesis 2>/dev/null | grep -qx "Version: 4.32.5" \
    || python3 -m pip install -q --disable-pip-version-check "schemathesis==4.32.5"
schemathesis="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/schemathesis"
ensure_postgres_installed
start_local_postgres
prepare_release_database coupon_fuzz
bin="$COUPON_BIN"
url="$COUPON_DATABASE_URL"
cd "$COUPON_ROOT"
# A few coupons, so generated ids sometimes exist.
for quantity in 3 50 1000; do
    psql_local -q -d coupon_fuzz -c "WITH c AS (INSERT INTO coupons (name, quantity) VALUES ('fuzz', $quantity) RETURNING id) SELECT FROM c, LATERAL add_coupon_tickets(c.id, 1, $quantity)"
done

COUPON_ADMIN_TOKEN=fuzz "$bin" serve --port "$port" --database-url "$url" --log-level error --shutdown-drain 0 &
server_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

# hooks.py keeps generated valid bodies valid where JSON Schema cannot say how (see its docstring).
# One worker: with two, hypothesis' lambda descriptions race and schemathesis reports internal errors.
cd "$COUPON_ROOT/bench/fuzz"
SCHEMATHESIS_HOOKS=hooks "$schemathesis" run "$COUPON_ROOT/openapi.yaml" --url "http://127.0.0.1:$port" \
    -H "Authorization: Bearer fuzz" --checks all --max-examples "${FUZZ_EXAMPLES:-150}" \
    --request-timeout 10 --workers 1 --seed "${FUZZ_SEED:-$RANDOM}" --generation-database none "$@"
