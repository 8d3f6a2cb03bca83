#!/usr/bin/env bash
# deploy/prometheus and deploy/grafana checked against a real Prometheus (bench/monitoring/check.py):
# promtool checks the configuration and the rules and runs the alerts' unit tests; a Prometheus on
# loopback scrapes two live instances through a small sale; its API must then agree with the
# database and evaluate every expression of the rules and the dashboard. Prometheus (with promtool)
# comes from Debian's packages, installed here if missing. About a minute.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

ensure_command_from_apt promtool prometheus
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check "PyYAML==6.0.2"
start_bench coupon_monitoring

DATABASE_URL="$COUPON_DATABASE_URL" python3 -m bench.monitoring.check "$@"
