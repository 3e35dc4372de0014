"""Attack: a stuck client at shutdown. Starts the server given after --, joins a
client that never reads, talks until more is waiting for it than the kernel's
buffers hold, then presses Ctrl+C (SIGINT) and times the server's exit:

    python3 stages/06/attacks/shutdown.py -- python3 stages/05/server.py

Stage 05 waits for ever for the stuck client's writer thread; stage 06, 2 s in all.
"""

import argparse
import json
import signal
import socket
import subprocess
import sys
import threading
import time


def joined(address, name, receive_buffer=65536):
    """A client that has said hello and been welcomed: its socket and its lines."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)  # the server answers in milliseconds, or something is wrong
    sock.connect(address)
    hello = {"type": "hello", "name": name, "client_id": name}
    sock.sendall((json.dumps(hello) + "\n").encode())
    lines = sock.makefile("rb")
    lines.readline()  # the welcome: we are in the room
    return sock, lines


def talk(talker, listener, stuck, until):
    """4 KB messages until `until` bytes went to `stuck`: (bytes sent, dropped)."""
    sent = dropped = 0
    while sent < until and not dropped:
        for _ in range(16):  # then read what the listener got, up to the 16th
            talker.sendall(b'{"type": "say", "text": "%s"}\n' % (b"x" * 4000))
        for _ in range(16):
            while b'"said"' not in (line := listener.readline()):
                if not line:
                    raise ConnectionError("the server closed the listener")
                dropped = dropped or f'"left", "name": "{stuck}"'.encode() in line
            sent += len(line)
    return sent, dropped


def main():
    parser = argparse.ArgumentParser(description="Ctrl+C with a stuck client.")
    parser.add_argument("--host", default="127.0.0.1", help="the server's address")
    parser.add_argument("--port", type=int, default=65432, help="the server's port")
    parser.add_argument("--patience", type=float, default=10, help="seconds to wait")
    parser.add_argument("command", nargs="+", help="the server to start, after --")
    args = parser.parse_args()
    server = subprocess.Popen(args.command, stdout=subprocess.PIPE)
    try:
        if not (first := server.stdout.readline().decode().strip()):
            sys.exit("the server did not start (is the port free?)")
        print(f"the server says: {first}")
        threading.Thread(target=server.stdout.read, daemon=True).start()  # its log
        address = (args.host, args.port)
        (talker, _), (_, listener) = joined(address, "talker"), joined(address, "ear")
        stuck = [joined(address, "stuck1", receive_buffer=4096)]  # it never reads
        limit, _ = talk(talker, listener, "stuck1", until=64 * 2**20)
        print(f"stuck1 was dropped once {limit / 2**20:.1f} MiB had gone to it")
        stuck.append(joined(address, "stuck2", receive_buffer=4096))
        sent, dropped = talk(talker, listener, "stuck2", until=limit - 2**19)
        still = "was dropped too: run again" if dropped else "is still in the room"
        print(f"stuck2 has had {sent / 2**20:.1f} MiB sent to it, and {still}")
        started = time.monotonic()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(args.patience)
            print(f"the server exited {time.monotonic() - started:.1f} s after Ctrl+C")
        except subprocess.TimeoutExpired:
            print(f"the server had not exited {args.patience:g} s after Ctrl+C")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
