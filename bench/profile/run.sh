#!/usr/bin/env bash
# Where the server's CPU goes, by part of the code: perf samples the release server under wrk
# issuance (every request a new user, -t1 -c256) and then under the constant answer (GET /healthz),
# and bench/profile/run.py attributes the samples to parts; prepends a section to
# bench/results/profile.md. Needs root (or perf_event_paranoid <= 1) for perf to attach.
# PROFILE_SECONDS sets the length of each row (10); PROFILE_FREQUENCY the samples per second (999);
# PROFILE_CALL_GRAPH perf's --call-graph (dwarf,16384; fp is lighter but loses frames in libraries
# built without frame pointers); PROFILE_KEEP=1 keeps perf's data in /tmp.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

ensure_wrk_installed
ensure_command_from_apt perf linux-perf
start_bench coupon_profile
# bench/speed/run.py's wrk() reads its length from SPEED_SECONDS.
SPEED_SECONDS="${PROFILE_SECONDS:-10}" DATABASE_URL="$COUPON_DATABASE_URL" PG_BIN="$PG_BIN" python3 -m bench.profile.run
