"""python3 -m bench.profile.run: where the server's CPU goes, by part of the code (bench/profile/run.sh)."""
