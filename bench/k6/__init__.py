"""python3 -m bench.k6.run: the k6 profile (bench/k6/run.sh)."""
