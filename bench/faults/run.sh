#!/usr/bin/env bash
# Fault scenarios against real server processes: several instances, SIGKILL, a PostgreSQL crash,
# SIGTERM under load, slow clients, a cap on connections, clocks skewed against the database, returns and redemptions racing
# issuance, checkout holds by code with an instance SIGKILLed, webhooks through faults, the primary's host lost under
# pg_auto_failover, a base backup restored to a point in time mid-sale on a fresh cluster, a randomized soak. Each ends
# with the database audit. Arguments pick scenarios (instances sigkill postgres sigterm slow cap clock aftersale holds
# webhooks failover backup soak); FAULTS_SEED replays a soak, FAULTS_ROUNDS sets its rounds (20).
# backup: a primary and its restored copy of its own (bench/faults/backup.py), run as `postgres` on 25200 and 25201.
# clock: instances 3 s behind and 3 s ahead (libfaketime, Debian's faketime, installed here if
# missing) must open and close a 5 s sale when the database does.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/postgres.sh"

# The clock scenario shifts instances' wall clocks with libfaketime.
case " ${*:-clock} " in *" clock "*) ensure_command_from_apt faketime faketime ;; esac
# The failover scenario runs pg_auto_failover (Debian's postgresql-15-auto-failover: pg_autoctl).
case " ${*:-failover} " in *" failover "*) ensure_command_from_apt pg_autoctl postgresql-15-auto-failover ;; esac
start_bench coupon_faults

cd "$COUPON_ROOT"
DATABASE_URL="$COUPON_DATABASE_URL" python3 -m bench.faults.faults "$@"
