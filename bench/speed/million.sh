#!/usr/bin/env bash
# The million-ticket sale over HTTP (wrk, one thread, 256 connections): creation time, sell-out
# time and the audit; adds a section to bench/results/million.md, then draws million.csv as
# million.png (bench/charts.py). MILLION_TICKETS changes the size.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

ensure_wrk_installed
# matplotlib for bench/charts.py, the version the committed charts were drawn with.
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check "matplotlib==3.11.2"
start_bench coupon_million
cd "$COUPON_ROOT"
DATABASE_URL="$COUPON_DATABASE_URL" python3 -m bench.speed.million
python3 -m bench.charts million
