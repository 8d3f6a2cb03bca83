"""The bench and fault tools. Each runs as a module from the repository root, e.g.
`python3 -m bench.run`, `python3 -m bench.faults.faults`, `python3 -m bench.k6.run`; what they share
is bench/lib.py. The shell wrappers (bench/*/run.sh) set up PostgreSQL and the environment first."""
