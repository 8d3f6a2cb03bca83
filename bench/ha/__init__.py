"""python3 -m bench.ha.run: what a synchronous standby costs issuance (bench/ha/run.sh); bench.ha.proxy, the proxy that adds its round trip."""
