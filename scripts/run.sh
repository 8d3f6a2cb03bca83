#!/usr/bin/env bash
# Runs the coupon service against a private PostgreSQL cluster it sets up itself.
# Extra arguments go to `coupon-server serve`. COUPON_KEEP_PG=1 leaves PostgreSQL running.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/postgres.sh"

# Stops PostgreSQL unless COUPON_KEEP_PG=1 or another script (e.g. a concurrent run.sh) still uses
# the same cluster (scripts/lib/postgres.sh).
trap cleanup EXIT

ensure_postgres_installed
start_local_postgres

# The admin token: COUPON_ADMIN_TOKEN or COUPON_ADMIN_TOKEN_FILE when given; else a random one kept in a
# file only its owner reads (not on a command line, where `ps` shows it), made once and printed.
if [ -z "${COUPON_ADMIN_TOKEN:-}" ] && [ -z "${COUPON_ADMIN_TOKEN_FILE:-}" ]; then
    export COUPON_ADMIN_TOKEN_FILE="$COUPON_ROOT/.pg/admin-token"
    if [ ! -s "$COUPON_ADMIN_TOKEN_FILE" ]; then
        mkdir -p "$(dirname "$COUPON_ADMIN_TOKEN_FILE")"
        (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$COUPON_ADMIN_TOKEN_FILE")
    fi
fi
admin_token="${COUPON_ADMIN_TOKEN:-$(cat "$COUPON_ADMIN_TOKEN_FILE")}"
ensure_database coupons
url="$(database_url coupons)"

cd "$COUPON_ROOT"
swift build -c release --product coupon-server
bin="$(swift build -c release --show-bin-path)/coupon-server"

"$bin" migrate --database-url "$url" --migrations "$COUPON_ROOT/migrations"

# The server reads COUPON_HOST and COUPON_PORT itself, and --host/--port win over them: the banner
# says what it will listen on.
host="${COUPON_HOST:-127.0.0.1}"
port="${COUPON_PORT:-8080}"
metrics_port="${COUPON_METRICS_PORT:-9464}"
jwks="${COUPON_AUTH_JWKS:-}"
previous=""
for argument in "$@"; do
    case "$previous" in
        --host) host="$argument" ;; --port) port="$argument" ;; --metrics-port) metrics_port="$argument" ;;
        --auth-jwks) jwks="$argument" ;;
    esac
    case "$argument" in
        --host=*) host="${argument#--host=}" ;; --port=*) port="${argument#--port=}" ;;
        --metrics-port=*) metrics_port="${argument#--metrics-port=}" ;; --auth-jwks=*) jwks="${argument#--auth-jwks=}" ;;
        --public-metrics) metrics_port="public" ;;
    esac
    previous="$argument"
done
[ "$metrics_port" != public ] || metrics_port="$port"
# Without a JWKS the service refuses to start unless told to trust the user ids it is sent: for the
# walkthrough on this machine it is told so, and says it here.
trust=()
if [ -z "$jwks" ]; then
    trust=(--trust-user-ids)
    users="trusted: --trust-user-ids (anyone may act as any user; behind an authenticating gateway only)"
else
    users="JWT identity: $jwks"
fi
echo "coupon service: http://$host:$port"
echo "admin token:    $admin_token   (export TOKEN=$admin_token for the README walkthrough)"
echo "users:          $users"
echo "metrics:        http://$host:$metrics_port/metrics"
echo "database:       $url"

# Not exec: the EXIT trap must still stop PostgreSQL. The server runs as a
# background child and we wait for it. Background children of a script start
# with SIGINT ignored, so both Ctrl-C and TERM are forwarded as SIGTERM, the
# signal a server always treats as "shut down gracefully".
"$bin" serve --database-url "$url" "${trust[@]}" "$@" &
server_pid=$!
trap 'kill -TERM "$server_pid" 2>/dev/null || true' INT TERM

status=0
while :; do
    wait "$server_pid" && status=0 || status=$?
    # wait also returns early when a trapped signal arrives; keep waiting
    # until the server itself has exited.
    kill -0 "$server_pid" 2>/dev/null || break
done
exit "$status"
