#!/usr/bin/env bash
# issue_tickets planned once per connection against planned on every call, inside PostgreSQL
# (one backend, a loop of calls), groups of 1 to 64; adds a section to bench/results/plans.md (bench/speed/plans.py).
# PLANS_GROUPS, PLANS_CALLS and PLANS_ROUNDS change the groups, the calls and the rounds.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

start_bench coupon_plans
DATABASE_URL="$COUPON_DATABASE_URL" python3 -m bench.speed.plans
