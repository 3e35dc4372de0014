"""Stage 03 client: stage 02's chat client, speaking JSON Lines and showing the time.

Run it:    python3 stages/03/client.py [--host HOST] [--port PORT] [--name NAME]

The server sends structured messages, so the client decides how they look
("[14:02] alice: hi"): the wire and the screen are no longer one thing.
"""

import argparse
import json
import os
import selectors
import socket
import sys
import threading
import uuid
from datetime import datetime

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432


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

    def send(self, message):
        # sendall() sends every byte; blocking is fine, as a client talks to one server.
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


# --8<-- [start:render]
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


# --8<-- [end:render]


def show(line):
    # "\r" goes back over the "> " prompt; then a fresh one for what you type next.
    print(f"\r{line}\n> ", end="", flush=True)


def show_all(messages):
    for message in messages:
        if (line := render(message)) is not None:
            show(line)


# --8<-- [start:join]
def join(conn, name):
    """Say hello until the server welcomes us. Returns the welcome."""
    client_id = uuid.uuid4().hex  # tells two connections with one name apart
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
            sys.exit(f"error: this is not a stage-03 chat server: it sent '{said}'")
        print(render(reply))
        name = None  # bad-name: ask again


# --8<-- [end:join]


def keyboard_fd():
    """The file descriptor to watch for what you type: stdin, if it is a terminal. A
    file cannot be watched (epoll refuses it: `< lines.txt`), and input() may have read
    past the name: then a thread copies the rest of stdin into a pipe, which can."""
    if sys.stdin.isatty():
        return sys.stdin.fileno()
    read_end, write_end = os.pipe()
    threading.Thread(target=copy_stdin, args=(write_end,), daemon=True).start()
    return read_end


def copy_stdin(write_end):
    with open(write_end, "wb") as pipe:  # closed at the end, or on an error: EOF
        for line in sys.stdin:  # each line of the file counts as typed
            pipe.write(line.encode("utf-8"))
            pipe.flush()


def chat(conn):
    keyboard = keyboard_fd()
    selector = selectors.DefaultSelector()
    selector.register(conn.sock, selectors.EVENT_READ)
    selector.register(keyboard, selectors.EVENT_READ)
    typed = bytearray()
    show_all(conn.unread)  # anything that came in right behind the welcome
    conn.unread = []
    while True:
        for key, _ in selector.select():
            if key.fileobj is conn.sock:
                show_all(conn.receive())
                continue
            data = os.read(keyboard, 4096)
            if not data:  # Ctrl+D at the start of a line
                return
            typed += data
            *lines, rest = typed.split(b"\n")
            typed = bytearray(rest)
            for line in lines:
                if text := line.decode("utf-8", errors="replace").strip():
                    conn.send({"type": "say", "text": text})
            print("> ", end="", flush=True)


# --8<-- [start:leave]
def leave(conn):
    """Say bye and wait (2 s at most) for the answer: the server knows we meant it."""
    try:
        conn.send({"type": "bye"})
        conn.sock.settimeout(2)
        while all(message.get("type") != "bye" for message in conn.receive()):
            pass
    except (OSError, ServerClosed, ValueError):
        pass  # the server is gone or slow: we are leaving anyway


# --8<-- [end:leave]


def port_number(text):
    port = int(text)
    if not 0 < port <= 65535:
        raise ValueError(text)
    return port


def parse_args():
    parser = argparse.ArgumentParser(description="Stage 03: JSON Lines chat client.")
    parser.add_argument("--host", default=DEFAULT_HOST, help="server address")
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help="server port"
    )
    parser.add_argument("--name", help="your name in the room (asked for if not given)")
    return parser.parse_args()


def main():
    args = parse_args()
    # Before the first read (refused after): bytes that are not UTF-8 become U+FFFD.
    sys.stdin.reconfigure(errors="replace")
    with connect(args.host, args.port) as sock:
        conn = Connection(sock)
        try:
            show(render(join(conn, args.name)))
            chat(conn)
        except (EOFError, KeyboardInterrupt):
            pass  # Ctrl+D or Ctrl+C: leave cleanly, without a traceback
        except (ServerClosed, ConnectionError):
            print("\rconnection closed by server")
            return
        print()
        leave(conn)


if __name__ == "__main__":
    main()
