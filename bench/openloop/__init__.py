"""python3 -m bench.openloop.run: the open-loop bench (bench/openloop/run.sh)."""
