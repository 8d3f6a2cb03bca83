#!/usr/bin/env bash
# Writes docs/schema.sql: the schema of a freshly migrated database, as pg_dump prints it, so the
# current tables, indexes and functions can be read in one place. SchemaDocumentTests fails when it
# is stale; run this after adding a migration.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/postgres.sh"

ensure_postgres_installed
trap cleanup EXIT
start_local_postgres
recreate_database coupon_schema
cd "$COUPON_ROOT"
swift build --product coupon-server >/dev/null
"$(swift build --show-bin-path)/coupon-server" migrate --database-url "$(database_url coupon_schema)" \
    --migrations "$COUPON_ROOT/migrations" --log-level error
{
    echo "-- schema.sh: the schema after every migration, written by scripts/schema.sh (pg_dump --schema-only)."
    echo "-- schema.sh: do not edit; add a migration, then run scripts/schema.sh."
    pg_dump --schema-only --no-owner --no-privileges "$(database_url coupon_schema)" \
        | grep -v -E '^\\(un)?restrict |^-- Dumped (from|by) '
} >"$COUPON_ROOT/docs/schema.sql"
echo "wrote docs/schema.sql"
