"""Attack: connections that never join. Many connections that never send a byte,
then a newcomer who says hello. Start the server with few file descriptors:

    (ulimit -n 64; python3 stages/05/server.py)
    python3 stages/06/attacks/silent.py

Stage 05: the silent connections hold every descriptor the server may open, and
the newcomer is kept out. Stage 06 closes the oldest of them to make room.
"""

import argparse
import json
import select
import socket
import time


def newcomer(address, patience):
    """Join as a real user would; what happened, in one line."""
    started = time.monotonic()
    hello = {"type": "hello", "name": "newcomer", "client_id": "silent.py"}
    try:
        with socket.create_connection(address, timeout=patience) as sock:
            sock.sendall((json.dumps(hello) + "\n").encode())
            reply = sock.makefile("rb").readline()
    except TimeoutError:
        return f"a newcomer was not let in within {patience:g} s"
    except OSError as error:
        return f"a newcomer could not connect: {error.strerror or error}"
    if b'"welcome"' in reply:
        return f"a newcomer got in after {time.monotonic() - started:.1f} s"
    return f"a newcomer was turned away: {reply.decode(errors='replace').strip()!r}"


def main():
    parser = argparse.ArgumentParser(description="Silent connections, then a user.")
    parser.add_argument("--host", default="127.0.0.1", help="the server's address")
    parser.add_argument("--port", type=int, default=65432, help="the server's port")
    parser.add_argument("--count", type=int, default=200, help="silent connections")
    parser.add_argument("--patience", type=float, default=5, help="seconds to wait")
    args = parser.parse_args()
    address = (args.host, args.port)
    print(f"opening {args.count} connections that never send a byte...")
    silent = []
    try:
        while len(silent) < args.count:
            silent.append(socket.create_connection(address, timeout=args.patience))
    except OSError as error:
        print(f"connection {len(silent) + 1} failed: {error.strerror or error}")
    print(f"{len(silent)} are open; a newcomer says hello and waits for its welcome")
    seen = newcomer(address, args.patience)
    # Which silent connections has the server closed (or told something)?
    readable = select.select(silent, [], [], 0)[0] if silent else []
    print(f"the server has closed {len(readable)} of the silent connections")
    for sock in silent:
        sock.close()
    print(seen)


if __name__ == "__main__":
    main()
