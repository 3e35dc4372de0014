"""Attack: many stuck clients. Starts the server given after --, joins clients
that never read, and a talker who sends long messages until each stuck client
has been dropped; then reports what the server's memory did (Linux: /proc/PID):

    python3 stages/06/attacks/stuck.py -- python3 stages/05/server.py --max-clients 200

Stage 05 lets 1 MiB wait for each stuck client: 150 of them cost 150 MiB. Stage
06 splits 64 MiB among all the clients: however many are stuck, 64 MiB in all.
"""

import argparse
import json
import socket
import subprocess
import sys
import threading


def joined(address, name, receive_buffer=65536):
    """A client that has said hello and been welcomed: its socket and its lines."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)  # the server answers in milliseconds, or something is wrong
    sock.connect(address)
    hello = {"type": "hello", "name": name, "client_id": name}
    sock.sendall((json.dumps(hello) + "\n").encode())
    lines = sock.makefile("rb")
    if b'"welcome"' not in (reply := lines.readline()):
        sys.exit(f"{name} was not let in (--max-clients?): {reply.decode().strip()}")
    return sock, lines


def memory_mib(pid, field):
    """VmRSS (now) or VmHWM (the peak so far) of a process, in MiB (Linux only)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith(field))
    return int(line.split()[1]) / 1024


def main():
    parser = argparse.ArgumentParser(description="Clients that never read.")
    parser.add_argument("--host", default="127.0.0.1", help="the server's address")
    parser.add_argument("--port", type=int, default=65432, help="the server's port")
    parser.add_argument("--clients", type=int, default=150, help="stuck clients")
    parser.add_argument("command", nargs="+", help="the server to start, after --")
    args = parser.parse_args()
    server = subprocess.Popen(args.command, stdout=subprocess.PIPE)
    try:
        if not (first := server.stdout.readline().decode().strip()):
            sys.exit("the server did not start (is the port free?)")
        print(f"the server says: {first}")
        threading.Thread(target=server.stdout.read, daemon=True).start()  # its log
        address = (args.host, args.port)
        talker, _ = joined(address, "talker")
        listening, listener = joined(address, "listener")
        stuck = [joined(address, f"stuck{n}", 4096) for n in range(args.clients)]
        print(f"{len(stuck)} clients joined and stopped reading; the talker talks")
        before, dropped, sent = memory_mib(server.pid, "VmRSS"), set(), 0
        while len(dropped) < len(stuck) and sent < 16 * 2**20:  # 16 MiB to each
            talker.sendall(b'{"type": "say", "text": "%s"}\n' % (b"x" * 7900))
            while b'"said"' not in (line := listener.readline()):
                if not line:
                    sys.exit("the server closed the listener's connection")
                if b'"left"' in line:
                    dropped.add(json.loads(line)["name"])
            sent += len(line)
        grown = memory_mib(server.pid, "VmHWM") - before
        after = f"after {sent / 2**20:.1f} MiB had been sent to each"
        print(f"{len(dropped)} of {len(stuck)} stuck clients were dropped, {after}")
    finally:
        server.kill()
        server.wait()
    each = f"{len(stuck)} clients with 1 MiB each would be {len(stuck)} MiB"
    print(f"the server's memory grew by {grown:.0f} MiB at its peak ({each})")


if __name__ == "__main__":
    main()
