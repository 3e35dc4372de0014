"""Attack: hostile text. Starts the server given after --, reads its console (its
stdout), and sends it a name and a message full of escape sequences:

    python3 stages/06/attacks/hostile_text.py -- python3 stages/05/server.py

A terminal acts on what it is sent: ESC [ 31 m turns the text red, ESC ] 0 ; ...
BEL retitles the window, U+202E reverses what follows. Stage 05's log prints the
message as it came; stage 06 shows each control character escaped (\\x1b).
"""

import argparse
import json
import socket
import subprocess
import sys

MESSAGE = "\x1b[31mred alert\x1b[0m \x1b]0;hacked\x07 abc\u202edcba END-OF-ATTACK"


def marked(text):
    """The text with each raw control character shown as <U+001B>: safe to print."""
    return "".join(ch if ch.isprintable() else f"<U+{ord(ch):04X}>" for ch in text)


def send(sock, message):
    sock.sendall((json.dumps(message) + "\n").encode())
    return sock.makefile("rb").readline().decode(errors="replace")


def main():
    parser = argparse.ArgumentParser(description="Escape sequences for the log.")
    parser.add_argument("--host", default="127.0.0.1", help="the server's address")
    parser.add_argument("--port", type=int, default=65432, help="the server's port")
    parser.add_argument("command", nargs="+", help="the server to start, after --")
    args = parser.parse_args()
    server = subprocess.Popen(args.command, stdout=subprocess.PIPE)
    try:
        console = server.stdout  # what the server's terminal would show
        if not (first := console.readline().decode().strip()):
            sys.exit("the server did not start (is the port free?)")
        print(f"the server says: {first}")
        sock = socket.create_connection((args.host, args.port), timeout=5)
        name = "\x1b[31mmallory"
        reply = send(sock, {"type": "hello", "name": name, "client_id": "hostile"})
        print(f"hello as {name!r}: {json.loads(reply).get('code', 'welcome')}")
        send(sock, {"type": "hello", "name": "mallory", "client_id": "hostile"})
        sock.sendall((json.dumps({"type": "say", "text": MESSAGE}) + "\n").encode())
        print(f"mallory says {MESSAGE!r}")
        while b"END-OF-ATTACK" not in (line := console.readline()) and line:
            pass  # the lines before mallory's message
        shown = line.decode(errors="replace").rstrip("\n")
        print(f"the server's console got: {marked(shown)}")
        raw = [ch for ch in shown if not ch.isprintable()]
    finally:
        server.kill()
        server.wait()
    if not shown:
        print("mallory's message never reached the server's console")
    elif raw:
        print(f"{len(raw)} raw control characters reached the console: it acts on them")
    else:
        print("no raw control character reached the console: all were escaped")


if __name__ == "__main__":
    main()
