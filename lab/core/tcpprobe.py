"""A bounded TCP transfer between two lab namespaces (stdlib only; iperf3 can hang on a black hole).

    python -m lab.tcpprobe serve --bind ADDR --port P --seconds S   # prints "ready", then JSON
    python -m lab.tcpprobe send --to ADDR --port P --seconds S      # prints JSON

The server counts what arrives until the sender closes or the time is up; the sender writes
for S seconds and gives up on a send that makes no progress for a second.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Sequence

CHUNK = 64 * 1024
SLACK = 3.0  # seconds the server waits beyond the sender's time


def serve(bind: str, port: int, seconds: float) -> dict[str, float]:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((bind, port))
        listener.listen(1)
        listener.settimeout(seconds + SLACK)
        print("ready", flush=True)
        received = 0
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            return {"received": 0, "seconds": 0.0, "connected": 0}
        start = time.monotonic()
        deadline = start + seconds + SLACK
        with conn:
            conn.settimeout(0.5)
            while time.monotonic() < deadline:
                try:
                    data = conn.recv(CHUNK)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                received += len(data)
        return {"received": received, "seconds": round(time.monotonic() - start, 3), "connected": 1}


def send(to: str, port: int, seconds: float) -> dict[str, float]:
    family = socket.AF_INET6 if ":" in to else socket.AF_INET
    payload = b"\0" * CHUNK
    sent = 0
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(3.0)
        try:
            sock.connect((to, port))
        except OSError as e:
            return {"sent": 0, "connected": 0, "error": float(e.errno or -1)}
        sock.settimeout(1.0)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                sent += sock.send(payload)
            except TimeoutError:
                break
            except OSError:
                break
        return {"sent": sent, "connected": 1}


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.tcpprobe")
    parser.add_argument("mode", choices=("serve", "send"))
    parser.add_argument("--bind", default="0.0.0.0")  # noqa: S104 - inside a lab namespace only
    parser.add_argument("--to", default="")
    parser.add_argument("--port", type=int, default=5201)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.mode == "serve":
        result = serve(args.bind, args.port, args.seconds)
    else:
        result = send(args.to, args.port, args.seconds)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
