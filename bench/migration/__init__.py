"""python3 -m bench.migration.run: a migration applied while a sale runs (bench/migration/run.sh)."""
