"""python3 -m bench.upgrade.check: the rolling-upgrade check (bench/upgrade/check.sh)."""
