"""Attack: a log that nobody reads. Starts the server given after --, with its
stdout a pipe that this script never reads (as `server.py | less` left on its
first page), then two users chat through it:

    python3 stages/06/attacks/unread_log.py -- python3 stages/05/server.py

Stage 05 prints its log and waits when the pipe is full: the chat stops. Stage 06
never waits for its log.
"""

import argparse
import json
import signal
import socket
import subprocess
import sys
import time


def joined(address, name):
    sock = socket.create_connection(address, timeout=5)
    hello = {"type": "hello", "name": name, "client_id": name}
    sock.sendall((json.dumps(hello) + "\n").encode())
    sock.makefile("rb").readline()  # the welcome
    return sock


def main():
    parser = argparse.ArgumentParser(description="Chat while nobody reads the log.")
    parser.add_argument("--host", default="127.0.0.1", help="the server's address")
    parser.add_argument("--port", type=int, default=65432, help="the server's port")
    parser.add_argument("--messages", type=int, default=3000, help="to send")
    parser.add_argument("--patience", type=float, default=5, help="seconds to wait")
    parser.add_argument("command", nargs="+", help="the server to start, after --")
    args = parser.parse_args()
    server = subprocess.Popen(args.command, stdout=subprocess.PIPE)
    try:
        if not (first := server.stdout.readline().decode().strip()):
            sys.exit("the server did not start (is the port free?)")
        print(f"the server says: {first}")
        print("from now on, nobody reads its log (a pipe holds about 64 KiB)")
        address = (args.host, args.port)
        talker, listener = joined(address, "talker"), joined(address, "listener")
        lines = listener.makefile("rb")
        listener.settimeout(args.patience)
        print(f"talker sends {args.messages} messages; listener counts them")
        started, received = time.monotonic(), 0
        try:
            for number in range(args.messages):
                say = {"type": "say", "text": f"message {number} " + "x" * 60}
                talker.sendall((json.dumps(say) + "\n").encode())
                if number % 100 == 99:  # read as we go: the listener is never stuck
                    while received <= number and b'"said"' in lines.readline():
                        received += 1
        except TimeoutError:
            pass
        seconds = time.monotonic() - started
        server.send_signal(signal.SIGINT)
        try:
            server.wait(args.patience)
            print(f"after Ctrl+C, the server exited with code {server.returncode}")
        except subprocess.TimeoutExpired:
            print(f"after Ctrl+C, the server was still running {args.patience:g} s on")
    finally:
        server.kill()
        server.wait()
    if received == args.messages:
        print(f"all {received} messages reached the listener in {seconds:.1f} s")
    else:
        print(f"the chat stopped: {received} of {args.messages} messages arrived")


if __name__ == "__main__":
    main()
