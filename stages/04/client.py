"""Stage 04 client: stage 03's client, with a thread for the network instead of a
selector.

Run it:    python3 stages/04/client.py [--host HOST] [--port PORT] [--name NAME]

Stage 03 waited on the keyboard and the socket with one selector. That works
on POSIX only: on Windows, select() takes sockets but not the keyboard. Here a
receiver thread blocks in recv() and prints what arrives, while the main
thread blocks in input(). Each thread waits on one thing, which works anywhere.
"""

import argparse
import json
import os
import socket
import sys
import threading
import uuid
from datetime import datetime

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432


def port_number(text):
    port = int(text)
    if not 0 < port <= 65535:
        raise ValueError(text)
    return port


def parse_args():
    parser = argparse.ArgumentParser(description="Stage 04: threaded chat client.")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"server address (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"server port (default {DEFAULT_PORT})",
    )
    parser.add_argument("--name", help="your name in the room (asked for if not given)")
    return parser.parse_args()


def connect(host, port):
    try:
        return socket.create_connection((host, port))
    except OSError as error:
        sys.exit(f"error: cannot connect to {host}:{port}: {error.strerror or error}")


class ServerClosed(Exception):
    pass


class Connection:
    """A socket that sends and receives whole JSON messages, one per line."""

    def __init__(self, sock):
        self.sock = sock
        self.pending = bytearray()  # received bytes that do not make a whole line yet
        self.unread = []  # whole messages received but not handed out yet
        self.leaving = False  # we said bye: the server closing is now expected

    def send(self, message):
        # sendall(): send() may send only part. Blocking is fine: we talk to one server.
        self.sock.sendall((json.dumps(message) + "\n").encode("utf-8"))

    def receive(self):
        """Read once from the socket; return the messages now complete (maybe none)."""
        data = self.sock.recv(4096)
        if not data:
            raise ServerClosed()
        self.pending += data
        *lines, rest = self.pending.split(b"\n")
        self.pending = bytearray(rest)
        messages = self.unread + [parse(line) for line in lines if line.strip()]
        self.unread = []
        return messages

    def next_message(self):
        """Block until one message arrives; keep any others for receive()."""
        while not self.unread:
            self.unread = self.receive()
        return self.unread.pop(0)


def parse(line):
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # too deep: [[[[...
        message = None
    if not isinstance(message, dict):  # a broken server must not crash us either
        return {
            "type": "error",
            "code": "bad-json",
            "message": "the server sent a line that is not a message",
            "line": line.decode("utf-8", errors="replace"),  # for join()'s error
        }
    return message


def printable(text):
    # A name or message may hold escape sequences that would recolour, retitle or
    # scramble our terminal: show every control or format character as \uXXXX.
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in str(text))


def clock(stamp):
    try:
        # The server's UTC, our local time.
        return datetime.fromisoformat(stamp).astimezone().strftime("%H:%M")
    except (TypeError, ValueError):
        return "--:--"


def render(message):
    """How one server message looks on screen (None: nothing to show)."""
    kind, get = message.get("type"), lambda field: printable(message.get(field, ""))
    stamp = f"[{clock(message.get('time'))}]"
    if kind == "said":
        return f"{stamp} {get('from')}: {get('text')}"
    if kind == "welcome":
        return f"{stamp} * welcome, {get('name')} ({get('online')} online)"
    if kind == "joined":
        return f"{stamp} * {get('name')} joined"
    if kind == "left":
        return f"{stamp} * {get('name')} left ({get('reason')})"
    if kind == "error":
        return f"! {get('message')} ({get('code')})"
    if kind == "bye":
        return None
    return f"? {printable(json.dumps(message))}"


def show(line):
    # "\r" goes back over the "> " prompt; then a fresh prompt for what you type next.
    print(f"\r{line}\n> ", end="", flush=True)


def show_all(messages):
    for message in messages:
        if (line := render(message)) is not None:
            show(line)


def join(conn, name):
    """Say hello until the server welcomes us. Returns the welcome."""
    # Lets the server tell apart two connections with the same name.
    client_id = uuid.uuid4().hex
    while True:
        name = name or input("name: ").strip()
        conn.send({"type": "hello", "name": name, "client_id": client_id})
        reply = conn.next_message()
        if reply.get("type") == "welcome":
            return reply
        if reply.get("code") == "server-full":
            sys.exit(f"error: {printable(reply.get('message', 'the server is full'))}")
        if reply.get("code") in ("bad-json", "tls-required"):  # another kind of server
            said = printable(reply.get("line") or reply.get("message"))[:80]
            sys.exit(f"error: this is not a stage-04 chat server: it sent '{said}'")
        print(render(reply))
        name = None  # bad-name: ask again


# --8<-- [start:receiver]
def receive_forever(conn, said_bye):
    """The receiver thread: print what the server sends until it says bye or goes."""
    try:
        show_all(conn.unread)  # anything that came in right behind the welcome
        conn.unread = []
        while True:
            for message in conn.receive():
                if message.get("type") == "bye":
                    said_bye.set()  # the main thread is waiting for this in leave()
                    return
                show_all([message])
    except (ServerClosed, OSError):
        if said_bye.is_set() or conn.leaving:
            return
        print("\rconnection closed by server", flush=True)
        # The main thread is blocked in input(), and nothing portable can wake it up.
        # The conversation is over, so we end the whole process here.
        os._exit(0)


def chat(conn):
    """The main thread: read what you type and send it."""
    while True:
        # input() raises EOFError on Ctrl+D, KeyboardInterrupt on Ctrl+C.
        text = input("> ").strip()
        if text:
            conn.send({"type": "say", "text": text})


# --8<-- [end:receiver]


def leave(conn, said_bye, receiver):
    """Say bye and wait (briefly) for the answer: the server knows we meant to quit."""
    conn.leaving = True
    try:
        conn.send({"type": "bye"})
        if receiver.is_alive():  # only the receiver thread can see the answer
            said_bye.wait(timeout=2)
    except (OSError, KeyboardInterrupt):
        pass  # the server is gone, or you pressed Ctrl+C twice: we are leaving anyway


# --8<-- [start:main]
def main():
    args = parse_args()
    with connect(args.host, args.port) as sock:
        conn = Connection(sock)
        said_bye = threading.Event()
        receiver = threading.Thread(
            target=receive_forever, args=(conn, said_bye), daemon=True
        )
        # Everything from here on is inside the try, starting the thread included:
        # Ctrl+C can arrive at any moment, even while Thread.start() is still running.
        try:
            print(render(join(conn, args.name)))  # no prompt: input() draws it
            receiver.start()
            chat(conn)
        except (EOFError, KeyboardInterrupt):
            pass  # Ctrl+D or Ctrl+C: leave cleanly, without a traceback
        except (ServerClosed, ConnectionError):
            print("\rconnection closed by server")
            return
        print()
        leave(conn, said_bye, receiver)


# --8<-- [end:main]


if __name__ == "__main__":
    main()
