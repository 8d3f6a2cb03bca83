"""python3 -m bench.catalogue.run: the catalogue at scale (bench/catalogue/run.sh)."""
