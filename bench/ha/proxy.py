"""A TCP proxy on loopback that adds a round trip: `python3 -m bench.ha.proxy LISTEN_PORT TARGET_PORT
ROUND_TRIP_MS`. bench/ha/run.py puts it between a standby and its primary, where tc netem is not
available (no sch_netem module).

Each chunk read is sent on half the round trip after it was read, in each direction, while the chunks
after it are read: the stream stays pipelined, as on a link with that latency (no bandwidth limit is
modelled). Threads and time.sleep rather than asyncio: asyncio's timers wait in whole milliseconds
(epoll), which would turn half of 1 ms into 1 ms or more. Exits when its parent does."""
import contextlib
import os
import queue
import socket
import sys
import threading
import time

HOST = "127.0.0.1"


def pipe(source, sink, delay):
    """Copies `source` to `sink`, each chunk `delay` seconds after it was read; at the end of either
    side, shuts both sockets down so that the other direction ends too."""
    chunks = queue.SimpleQueue()

    def read():
        with contextlib.suppress(OSError):
            while chunk := source.recv(1 << 16):
                chunks.put((time.monotonic() + delay, chunk))
        chunks.put((time.monotonic() + delay, b""))

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            due, chunk = chunks.get()
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            if not chunk:
                break
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def relay(client, target_port, delay):
    with client, socket.create_connection((HOST, target_port)) as server:
        for end in (client, server):
            end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = threading.Thread(target=pipe, args=(server, client, delay), daemon=True)
        back.start()
        pipe(client, server, delay)
        back.join()


def main(listen_port, target_port, round_trip_ms):
    parent = os.getppid()
    with socket.create_server((HOST, listen_port)) as listener:
        listener.settimeout(1)
        while os.getppid() == parent:
            with contextlib.suppress(TimeoutError):
                client, _ = listener.accept()
                client.settimeout(None)
                threading.Thread(target=relay, args=(client, target_port, round_trip_ms / 2000), daemon=True).start()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
