#!/usr/bin/env bash
# Schemathesis against the live server, driven by openapi.yaml: generated requests for every route,
# checked for 5xx and for answers outside the document. The server runs with JWT identity (a JWKS
# made by bench/identity.py); hooks.py gives each operation its credential: the admin
# token, or a JWT for the user the request names. Then bench/fuzz/tokens.py sends forged and broken
# tokens to a server of its own. FUZZ_PORT (8390, and the next one for tokens.py), FUZZ_EXAMPLES
# (150), FUZZ_SEED (both tools; random by default), FUZZ_TOKENS (2000). Extra arguments go to
# `schemathesis run`. Both tools run; the exit status is non-zero when either failed.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

port="${FUZZ_PORT:-8390}"
token="fuzz-admin-token-of-32-bytes-or-more"
seed="${FUZZ_SEED:-$RANDOM}"
identity="$(mktemp -d -t coupon-fuzz-identity.XXXXXX)"
server_pid=""
stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}
at_exit rm -rf "$identity"
at_exit stop_server
trap cleanup EXIT

# The version these hooks and findings were made with; pip puts its command in python's scripts folder.
python3 -m pip show schemathesis 2>/dev/null | grep -qx "Version: 4.32.5" \
    || python3 -m pip install -q --disable-pip-version-check "schemathesis==4.32.5"
# The users' tokens are signed with `cryptography` (bench/lib.py's Identity).
python3 -c "import cryptography" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check cryptography
schemathesis="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/schemathesis"
start_bench coupon_fuzz
bin="$COUPON_BIN"
url="$COUPON_DATABASE_URL"
# A few coupons, so generated ids sometimes exist.
for quantity in 3 50 1000; do
    DATABASE_URL="$url" python3 -m bench.lib create-coupon "$quantity" fuzz >/dev/null
done

# The users' tokens are signed by the key saved in $identity; the server gets its JWKS (--auth-* flags).
export DATABASE_URL="$url" FUZZ_SEED="$seed"
auth_flags="$(python3 -m bench.identity "$identity")"
mapfile -t auth_args <<<"$auth_flags"
COUPON_ADMIN_TOKEN="$token" COUPON_PUBLIC_METRICS=1 "$bin" serve --port "$port" --database-url "$url" --log-level error --shutdown-drain 0 \
    "${auth_args[@]}" &
server_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

# hooks.py gives each operation its credential, and keeps generated valid bodies valid where JSON
# Schema cannot say how (see its docstring).
# One worker: with two, hypothesis' lambda descriptions race and schemathesis reports internal errors.
cd "$COUPON_ROOT/bench/fuzz"
status=0
FUZZ_ADMIN_TOKEN="$token" FUZZ_IDENTITY="$identity" SCHEMATHESIS_HOOKS=hooks \
    "$schemathesis" run "$COUPON_ROOT/openapi.yaml" --url "http://127.0.0.1:$port" \
    --checks all --max-examples "${FUZZ_EXAMPLES:-150}" \
    --request-timeout 10 --workers 1 --seed "$seed" --generation-database none "$@" || status=$?
stop_server

# Forged and broken tokens on every user route, against a server of its own (see tokens.py).
cd "$COUPON_ROOT"
FUZZ_PORT=$((port + 1)) python3 -m bench.fuzz.tokens || status=$?
exit "$status"
