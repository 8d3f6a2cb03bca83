# shellcheck shell=bash
# Helpers for a private, throw-away PostgreSQL cluster used by run.sh, test.sh
# and the bench/fault scripts. Source it; do not execute it.
# The callers run with these options too; functions rely on errexit.
set -euo pipefail

COUPON_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ -z "${COUPON_PG_DIR:-}" ]; then
    COUPON_PG_DIR="$COUPON_ROOT/.pg"
    # As root the server runs as 'postgres', which may not reach a checkout under /root: then the
    # cluster lives in /tmp, in a folder named after the checkout so two checkouts do not share it.
    if [ "$(id -u)" -eq 0 ] && id postgres >/dev/null 2>&1 \
        && ! runuser -u postgres -- test -x "$COUPON_ROOT" 2>/dev/null; then
        COUPON_PG_DIR="/tmp/coupon-pg-$(printf '%s' "$COUPON_ROOT" | cksum | cut -d' ' -f1)"
    fi
fi
# initdb/pg_ctl run from / (see _pg_run), so a relative path would break.
case "$COUPON_PG_DIR" in
    /*) ;;
    *) COUPON_PG_DIR="$PWD/$COUPON_PG_DIR" ;;
esac
COUPON_PG_PORT="${COUPON_PG_PORT:-54329}"
COUPON_PG_HOST=127.0.0.1
COUPON_PG_DATA="$COUPON_PG_DIR/data"
COUPON_PG_LOG="$COUPON_PG_DIR/postgres.log"
COUPON_PG_RUN="$COUPON_PG_DIR/run"
# A private CA and a server certificate for 127.0.0.1, so the tests can connect with every sslmode.
COUPON_PG_TLS="$COUPON_PG_DIR/tls"

_pg_log() { printf '[postgres] %s\n' "$*" >&2; }
_pg_die() { printf '[postgres] error: %s\n' "$*" >&2; return 1; }
_pg_is_root() { [ "$(id -u)" -eq 0 ]; }

# Close every inherited descriptor above stderr. pg_ctl's postmaster outlives
# the script; if it inherited a lock file descriptor it would hold that lock
# forever.
_pg_close_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd="${fd##*/}"
        if [ "$fd" -gt 2 ]; then
            eval "exec $fd>&-" 2>/dev/null || true
        fi
    done
}

# PostgreSQL refuses to run as root, so as root every server-side tool runs as
# the postgres user. cd / because initdb/pg_ctl fail when they cannot read the
# current directory (e.g. a caller inside /root).
_pg_run() {
    (
        cd /
        _pg_close_fds
        if ! _pg_is_root; then
            exec "$@"
        elif command -v runuser >/dev/null 2>&1; then
            exec runuser -u postgres -- "$@"
        else
            exec su postgres -s /bin/bash -c "$(printf '%q ' "$@")"
        fi
    )
}

# Several scripts (run.sh, test.sh, bench and fault scripts, possibly from
# different terminals) share one cluster. Each holds a shared lock on
# users.lock while it runs; on exit only the last holder stops the server.
# control.lock serialises start/stop so two scripts never initdb or start at
# once. Both are flock(1) locks, so a killed script releases them.
_PG_USE_FD=""
_PG_CTL_FD=""
_PG_CTL_DEPTH=0

_pg_have_flock() { command -v flock >/dev/null 2>&1; }

_pg_lock_control() {
    _pg_have_flock || return 0
    _PG_CTL_DEPTH=$((_PG_CTL_DEPTH + 1))
    [ "$_PG_CTL_DEPTH" -eq 1 ] || return 0
    mkdir -p "$COUPON_PG_DIR"
    exec {_PG_CTL_FD}>>"$COUPON_PG_DIR/control.lock"
    if ! flock -w 300 "$_PG_CTL_FD"; then
        _PG_CTL_DEPTH=0
        exec {_PG_CTL_FD}>&-
        _pg_die "timed out waiting for $COUPON_PG_DIR/control.lock"
    fi
}

_pg_unlock_control() {
    _pg_have_flock || return 0
    [ "$_PG_CTL_DEPTH" -gt 0 ] || return 0
    _PG_CTL_DEPTH=$((_PG_CTL_DEPTH - 1))
    [ "$_PG_CTL_DEPTH" -eq 0 ] || return 0
    exec {_PG_CTL_FD}>&-
    _PG_CTL_FD=""
}

_pg_register_user() {
    _pg_have_flock || return 0
    [ -z "$_PG_USE_FD" ] || return 0
    exec {_PG_USE_FD}>>"$COUPON_PG_DIR/users.lock"
    flock -s "$_PG_USE_FD"
}

# apt needs root; fall back to passwordless sudo for non-root callers.
_pg_apt() {
    if _pg_is_root; then
        DEBIAN_FRONTEND=noninteractive apt-get "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n env DEBIAN_FRONTEND=noninteractive apt-get "$@"
    else
        _pg_die "PostgreSQL is missing and apt-get needs root; install postgresql, postgresql-client and postgresql-contrib"
    fi
}

# Newest major version wins when several are installed.
_pg_find_bin() {
    local candidates=(/usr/lib/postgresql/*/bin/initdb) newest
    [ -x "${candidates[0]}" ] || return 1
    newest="$(printf '%s\n' "${candidates[@]}" | sort -V | tail -n 1)"
    dirname "$newest"
}

ensure_postgres_installed() {
    local bin apt_updated=0
    bin="$(_pg_find_bin || true)"
    if [ -z "$bin" ]; then
        _pg_log "no PostgreSQL server binaries found; installing from apt"
        _pg_apt update
        apt_updated=1
        _pg_apt install -y postgresql postgresql-client postgresql-contrib
        bin="$(_pg_find_bin || true)"
        [ -n "$bin" ] || _pg_die "apt-get install postgresql did not provide /usr/lib/postgresql/*/bin/initdb"
    fi
    # On Debian 12 psql comes from postgresql-client-N and pgbench from postgresql-N.
    if [ ! -x "$bin/psql" ] || [ ! -x "$bin/pgbench" ] || [ ! -x "$bin/pg_isready" ]; then
        local ver
        ver="$(basename "$(dirname "$bin")")"
        _pg_log "psql/pgbench/pg_isready missing in $bin; installing client and contrib packages"
        [ "$apt_updated" -eq 1 ] || _pg_apt update
        _pg_apt install -y "postgresql-client-$ver" postgresql-contrib
    fi
    local tool
    for tool in initdb pg_ctl postgres psql pgbench pg_isready; do
        [ -x "$bin/$tool" ] || _pg_die "$bin/$tool is missing after install"
    done
    PG_BIN="$bin"
    # Put the matching version first so psql/pgbench in later scripts agree with the server.
    case ":$PATH:" in
        *":$PG_BIN:"*) ;;
        *) PATH="$PG_BIN:$PATH" ;;
    esac
    export PG_BIN PATH
}

_pg_require_bin() {
    [ -n "${PG_BIN:-}" ] || ensure_postgres_installed
}

_pg_running() {
    [ -f "$COUPON_PG_DATA/PG_VERSION" ] || return 1
    _pg_run "$PG_BIN/pg_ctl" status -D "$COUPON_PG_DATA" >/dev/null 2>&1
}

_pg_log_tail() {
    if [ -f "$COUPON_PG_LOG" ]; then
        printf '[postgres] last lines of %s:\n' "$COUPON_PG_LOG" >&2
        tail -n 40 "$COUPON_PG_LOG" >&2 || true
    fi
}

_pg_wait_ready() {
    local _
    for _ in $(seq 1 30); do
        if "$PG_BIN/pg_isready" -q -h "$COUPON_PG_HOST" -p "$COUPON_PG_PORT" -U postgres -d postgres; then
            return 0
        fi
        sleep 1
    done
    _pg_log "server on $COUPON_PG_HOST:$COUPON_PG_PORT not ready after 30 s"
    _pg_log_tail
    return 1
}

# As root the postgres user must be able to reach $COUPON_PG_DIR; name the
# first directory that blocks it, since "Permission denied" from initdb is vague.
_pg_check_traversal() {
    _pg_is_root || return 0
    if _pg_run test -x "$COUPON_PG_DIR" && _pg_run test -w "$COUPON_PG_DIR"; then
        return 0
    fi
    local dir="$COUPON_PG_DIR" blocker=""
    while [ "$dir" != "/" ]; do
        dir="$(dirname "$dir")"
        if ! _pg_run test -x "$dir"; then
            blocker="$dir"
        fi
    done
    _pg_die "user 'postgres' cannot access $COUPON_PG_DIR${blocker:+ (no search permission on $blocker)}. Either 'chmod o+x' the parent folders or set COUPON_PG_DIR to a folder postgres can reach, e.g. COUPON_PG_DIR=/tmp/coupon-pg"
}

_pg_locale() {
    # C.UTF-8 keeps UTF8 encoding without depending on generated locales; fall back to C.
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
        echo C.UTF-8
    else
        echo C
    fi
}

# A CA that signs the server's certificate (for 127.0.0.1 and localhost), and a second CA that signs
# nothing: the tests check that verify-ca and verify-full trust the first and refuse the second.
_pg_write_tls() {
    [ -f "$COUPON_PG_TLS/server.crt" ] && return 0
    command -v openssl >/dev/null 2>&1 || { _pg_log "no openssl: the server runs without TLS"; return 0; }
    mkdir -p "$COUPON_PG_TLS"
    (
        cd "$COUPON_PG_TLS"
        for ca in ca other-ca; do
            openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=coupon-test-$ca" \
                -addext basicConstraints=critical,CA:TRUE -keyout "$ca.key" -out "$ca.crt" 2>/dev/null
        done
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile server.ext -out server.crt 2>/dev/null
        chmod 0600 server.key
    )
    if _pg_is_root; then
        chown -R postgres:postgres "$COUPON_PG_TLS"
    fi
}

# Regenerated on every start so a changed COUPON_PG_PORT/COUPON_PG_DIR takes effect.
_pg_write_conf() {
    local sockdir="$COUPON_PG_RUN"
    # Unix socket paths are limited to 107 bytes; clients here use TCP anyway.
    if [ "${#COUPON_PG_RUN}" -gt 90 ]; then
        _pg_log "socket path under $COUPON_PG_RUN is too long; disabling the Unix socket (TCP only)"
        sockdir=""
    fi
    local conf="$COUPON_PG_DATA/coupon.conf"
    cat >"$conf" <<EOF
# Written by scripts/lib/postgres.sh on each start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $COUPON_PG_PORT
unix_socket_directories = '$sockdir'
max_connections = 400
shared_buffers = 256MB
fsync = on
synchronous_commit = on
# Counts statements as they finish; the tests use it to show that rejects skip the database.
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track_utility = on
# Room for every statement of every test database of a run (5,283 entries in one run of the Swift
# tests): at the default 5,000, entries were evicted mid-count and a test saw 290 statements for
# 300. Not kept across restarts, so runs do not add up.
pg_stat_statements.max = 50000
pg_stat_statements.save = off
EOF
    if [ -f "$COUPON_PG_TLS/server.crt" ]; then
        printf "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n" \
            "$COUPON_PG_TLS/server.crt" "$COUPON_PG_TLS/server.key" >>"$conf"
    fi
    if _pg_is_root; then
        chown postgres:postgres "$conf"
    fi
    chmod 0600 "$conf"
}

_pg_initdb() {
    local locale
    locale="$(_pg_locale)"
    # A half-written data folder (no PG_VERSION) would make initdb refuse to run.
    rm -rf "$COUPON_PG_DATA"
    _pg_log "initdb into $COUPON_PG_DATA (locale $locale)"
    _pg_run "$PG_BIN/initdb" -D "$COUPON_PG_DATA" -U postgres --auth=trust \
        --encoding=UTF8 --locale="$locale" >"$COUPON_PG_DIR/initdb.log" 2>&1 || {
        cat "$COUPON_PG_DIR/initdb.log" >&2
        _pg_die "initdb failed"
    }
    printf "\ninclude_if_exists = 'coupon.conf'\n" >>"$COUPON_PG_DATA/postgresql.conf"
}

start_local_postgres() {
    _pg_require_bin
    mkdir -p "$COUPON_PG_DIR" "$COUPON_PG_RUN"
    if _pg_is_root; then
        id postgres >/dev/null 2>&1 || _pg_die "running as root but there is no 'postgres' user"
        chown -R postgres:postgres "$COUPON_PG_DIR"
        _pg_check_traversal
    fi
    _pg_lock_control
    local rc=0
    _pg_start_locked || rc=$?
    [ "$rc" -ne 0 ] || _pg_register_user
    _pg_unlock_control
    return "$rc"
}

_pg_start_locked() {
    if _pg_running; then
        _pg_log "reusing server on $COUPON_PG_DATA"
        _pg_wait_ready
        return
    fi
    if [ ! -f "$COUPON_PG_DATA/PG_VERSION" ]; then
        _pg_initdb || return
    fi
    _pg_write_tls
    _pg_write_conf
    _pg_log "starting server on $COUPON_PG_HOST:$COUPON_PG_PORT (log: $COUPON_PG_LOG)"
    if ! _pg_run "$PG_BIN/pg_ctl" start -D "$COUPON_PG_DATA" -l "$COUPON_PG_LOG" -w -t 30 >/dev/null; then
        _pg_log "pg_ctl start failed"
        _pg_log_tail
        return 1
    fi
    _pg_wait_ready
}

# Unconditional stop, whoever else is using the server.
stop_local_postgres() {
    _pg_require_bin
    [ -d "$COUPON_PG_DIR" ] || return 0
    _pg_lock_control
    local rc=0
    if _pg_running; then
        _pg_log "stopping server on $COUPON_PG_DATA"
        _pg_run "$PG_BIN/pg_ctl" stop -D "$COUPON_PG_DATA" -m fast -w -t 60 >/dev/null || rc=$?
    fi
    _pg_unlock_control
    return "$rc"
}

# For EXIT traps: stop the server unless another script still uses it.
release_local_postgres() {
    _pg_require_bin
    [ -d "$COUPON_PG_DIR" ] || return 0
    _pg_lock_control
    local rc=0 last=1 fd
    if _pg_have_flock; then
        if [ -n "$_PG_USE_FD" ]; then
            # Upgrading our shared lock fails while anyone else holds one.
            flock -xn "$_PG_USE_FD" || last=0
            exec {_PG_USE_FD}>&-
            _PG_USE_FD=""
        elif [ -f "$COUPON_PG_DIR/users.lock" ]; then
            exec {fd}>>"$COUPON_PG_DIR/users.lock"
            flock -xn "$fd" || last=0
            exec {fd}>&-
        fi
    fi
    if [ "$last" -eq 1 ]; then
        stop_local_postgres || rc=$?
    else
        _pg_log "other scripts still use the server on $COUPON_PG_DATA; leaving it running"
    fi
    _pg_unlock_control
    return "$rc"
}

# Simulates a crash (no checkpoint, WAL recovery on start); used by fault tests.
restart_local_postgres_immediate() {
    _pg_require_bin
    _pg_lock_control
    local rc=0
    _pg_log "immediate restart of $COUPON_PG_DATA"
    if ! _pg_run "$PG_BIN/pg_ctl" restart -D "$COUPON_PG_DATA" -l "$COUPON_PG_LOG" -m immediate -w -t 60 >/dev/null; then
        _pg_log "pg_ctl restart failed"
        _pg_log_tail
        rc=1
    fi
    _pg_unlock_control
    [ "$rc" -eq 0 ] || return "$rc"
    _pg_wait_ready
}

psql_local() {
    _pg_require_bin
    "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h "$COUPON_PG_HOST" -p "$COUPON_PG_PORT" -U postgres "$@"
}

# The name goes through a psql variable (:"db" / :'db') so it is always quoted correctly.
recreate_database() {
    local name="${1:?recreate_database NAME}"
    # client_min_messages hides the "does not exist, skipping" notice on first run.
    PGOPTIONS="-c client_min_messages=warning" psql_local -q -d postgres -v db="$name" <<'SQL'
DROP DATABASE IF EXISTS :"db" WITH (FORCE);
CREATE DATABASE :"db";
SQL
}

ensure_database() {
    local name="${1:?ensure_database NAME}"
    psql_local -q -d postgres -v db="$name" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
}

database_url() {
    local name="${1:?database_url NAME}"
    echo "postgres://postgres@$COUPON_PG_HOST:$COUPON_PG_PORT/$name"
}

# Builds the release coupon-server, recreates database $1 and migrates it: the start of every bench
# and fault script. Sets COUPON_BIN and COUPON_DATABASE_URL.
# COUPON_BIN already set in the environment (a release coupon-server built elsewhere) is used as it
# is and the build skipped: then it is the caller's to make sure the binary matches the checkout.
prepare_release_database() {
    recreate_database "$1"
    COUPON_DATABASE_URL="$(database_url "$1")"
    if [ -n "${COUPON_BIN:-}" ]; then
        _pg_log "using COUPON_BIN=$COUPON_BIN as it is (no build)"
    else
        (cd "$COUPON_ROOT" && swift build -c release --product coupon-server)
        COUPON_BIN="$(cd "$COUPON_ROOT" && swift build -c release --show-bin-path)/coupon-server"
    fi
    "$COUPON_BIN" migrate --database-url "$COUPON_DATABASE_URL" --migrations "$COUPON_ROOT/migrations" --log-level error
    export COUPON_BIN COUPON_DATABASE_URL
}

# The EXIT trap of every script that uses the cluster (`trap cleanup EXIT`; start_bench sets it):
# first the steps the script added with at_exit (stop its servers, remove its temporary files), the
# last added first, each allowed to fail; then PostgreSQL stopped unless COUPON_KEEP_PG=1 or another
# script still uses it.
_PG_AT_EXIT=()

# at_exit COMMAND [ARG...]: a step for cleanup, its arguments expanded now (a step that must read
# the script's state when it runs is a function of the script's).
at_exit() {
    _PG_AT_EXIT+=("$(printf '%q ' "${@:?at_exit COMMAND [ARG...]}")")
}

cleanup() {
    local _step
    for ((_step = ${#_PG_AT_EXIT[@]} - 1; _step >= 0; _step--)); do
        eval "${_PG_AT_EXIT[_step]}" || true
    done
    if [ "${COUPON_KEEP_PG:-0}" != 1 ]; then release_local_postgres || true; fi
}

# Installs Debian package $2 unless command $1 exists (apt needs root, or sudo without a password).
ensure_command_from_apt() {
    local command="${1:?ensure_command_from_apt COMMAND PACKAGE}" package="${2:?ensure_command_from_apt COMMAND PACKAGE}"
    command -v "$command" >/dev/null 2>&1 && return 0
    echo "[apt] installing $package (for $command)" >&2
    local as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo -n)
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
}

ensure_wrk_installed() {
    ensure_command_from_apt wrk wrk
}

# The start of a bench or fault script: PostgreSQL running (cleanup on exit), the release build,
# database $1 recreated and migrated (COUPON_BIN, COUPON_DATABASE_URL), the checkout as the
# working directory.
start_bench() {
    ensure_postgres_installed
    trap cleanup EXIT
    start_local_postgres
    prepare_release_database "$1"
    cd "$COUPON_ROOT"
}
