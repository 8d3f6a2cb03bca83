"""python3 -m bench.speed.run and bench.speed.million: CPU per issuance and the million-ticket sale
(bench/speed/run.sh, bench/speed/million.sh)."""
