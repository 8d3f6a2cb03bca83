"""python3 -m bench.faults.faults: the fault scenarios (bench/faults/run.sh)."""
