"""Stage 03 server: stage 02's select-based chat room, now speaking a real protocol.

Run it:    python3 stages/03/server.py [--host HOST] [--port PORT] [--max-clients N]

On the wire: JSON Lines. Each message is one JSON object on one line, with a
"type" field (docs/protocol.md lists them all):
  client -> server   hello {name, client_id}   say {text}   bye {}
  server -> client   welcome {name, online}   joined {name}   said {from, text}
                     left {name, reason}   bye {}   error {code, message}
Every server message carries a "time". Unlike plain text, a structured message can
tell a chat line from a notice, carry a reason, and be checked field by field.
"""

import argparse
import json
import re
import selectors
import signal
import socket
import sys
from datetime import datetime, timezone

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432
MAX_LINE = 8192  # bytes in one message; a longer one is refused, the client dropped
MAX_PENDING = 1024 * 1024  # bytes waiting to go out to one client before we drop it
NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
# --8<-- [start:schema]
FIELDS = {  # what each client message must carry, and of which type
    "hello": {"name": str, "client_id": str},
    "say": {"text": str},
    "bye": {},
}
# --8<-- [end:schema]


def open_listener(host, port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Without SO_REUSEADDR, a restarted server cannot bind the port while old
    # connections sit in TIME_WAIT.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        sys.exit(f"error: cannot listen on {host}:{port}: {error.strerror}")
    listener.listen()
    listener.setblocking(False)  # accept() must never block the one thread we have
    return listener


def log(text):
    print(f"{datetime.now():%H:%M:%S} {text}", flush=True)  # a line, with the time


# --8<-- [start:codec]
def encode(message):
    """One server message on the wire: a JSON object, time-stamped, on one line."""
    message["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (json.dumps(message) + "\n").encode("utf-8")


class ProtocolError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def decode(line):
    """Parse and check one client message.

    Anything wrong becomes a ProtocolError, never a crash."""
    try:
        message = json.loads(line)  # bytes are fine: json decodes UTF-8 itself
    # ValueError: not JSON, not UTF-8, or a number too long to convert. RecursionError:
    # nested too deep ("[[[[..." 2,000 times), which json.loads parses by recursion.
    except (ValueError, RecursionError):
        raise ProtocolError("bad-json", "each line must be one JSON object") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(
            "bad-message", 'a message is a JSON object with a "type" string'
        )
    fields = FIELDS.get(message["type"])
    if fields is None:
        raise ProtocolError(
            "unknown-type", f"unknown message type {message['type'][:40]!r}"
        )
    for field, kind in fields.items():
        if not isinstance(message.get(field), kind):
            raise ProtocolError(
                "bad-message",
                f"{message['type']} needs a {kind.__name__} field {field!r}",
            )
    return message


# --8<-- [end:codec]


class Client:
    """What the server remembers about one connection."""

    def __init__(self, sock, address):
        self.sock = sock
        self.address = f"{address[0]}:{address[1]}"
        self.name = None  # set by a valid hello
        self.inbox = bytearray()  # bytes received that do not make a whole line yet
        self.outbox = bytearray()  # bytes queued for it that the kernel has not taken
        self.watching_writes = False


class ChatServer:
    def __init__(self, listener, max_clients):
        self.listener = listener
        self.max_clients = max_clients
        self.clients = set()
        # epoll on Linux: unlike select.select(), it has no 1024-descriptor limit.
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ)

    def run(self):
        while True:
            # select() sleeps until at least one socket is ready.
            for key, events in self.selector.select():
                if key.fileobj is self.listener:
                    self.accept()
                    continue
                client = key.data
                if events & selectors.EVENT_READ and client in self.clients:
                    self.receive(client)
                if events & selectors.EVENT_WRITE and client in self.clients:
                    self.flush(client)

    def accept(self):
        try:
            sock, address = self.listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return  # the client gave up between select() and accept(): nothing to do
        sock.setblocking(False)
        client = Client(sock, address)
        self.clients.add(client)
        self.selector.register(sock, selectors.EVENT_READ, client)

    def receive(self, client):
        try:
            # Up to 64 KiB: a fast sender has many lines waiting; take them at once.
            data = client.sock.recv(65536)
        except ConnectionError:
            data = b""
        if not data:  # b"" means the client closed the connection (or it broke)
            self.disconnect(client, "lost")
            return
        client.inbox += data
        while client in self.clients and (end := client.inbox.find(b"\n")) >= 0:
            if end > MAX_LINE:
                break  # a whole line, but too long: refused below, like the rest of one
            line = bytes(client.inbox[:end])
            del client.inbox[: end + 1]
            if line.strip():
                self.handle_line_safely(client, line)
        if client in self.clients and len(client.inbox) > MAX_LINE:
            # Without a limit, a client that never sends "\n" would make us buffer for
            # ever. It holds on whole lines too: one recv() can bring 30 KB and a "\n".
            self.send_error(
                client, "line-too-long", f"a message may be at most {MAX_LINE} bytes"
            )
            self.disconnect(client, "lost")

    def handle_line_safely(self, client, line):
        try:
            self.handle_line(client, line)
        except Exception as error:  # a bug, or an input we did not foresee
            # Cost this one connection, not the room: uncaught, it would end run().
            log(f"dropping {client.name or client.address}: {type(error).__name__}")
            self.disconnect(client, "lost")

    # --8<-- [start:handle]
    def handle_line(self, client, line):
        try:
            message = decode(line)
        except ProtocolError as error:
            # Answer, and keep the connection open.
            self.send_error(client, error.code, str(error))
            return
        kind = message["type"]
        if kind == "hello":
            self.hello(client, message["name"])
        elif kind == "bye":
            # The acknowledgement: the client may now close.
            self.send(client, encode({"type": "bye"}))
            self.disconnect(client, "quit")
        elif client.name is None:
            self.send_error(client, "not-joined", "send hello first")
        elif kind == "say":
            log(f"{client.name} said {len(line)} bytes: {message['text']}")
            said = {"type": "said", "from": client.name, "text": message["text"]}
            self.broadcast(encode(said), sender=client)

    def hello(self, client, name):
        if client.name is not None:
            self.send_error(
                client,
                "already-joined",
                f"you are already in the room as {client.name}",
            )
        elif not NAME.fullmatch(name):
            self.send_error(
                client, "bad-name", "a name is 1 to 32 letters, digits, _ or -"
            )
        elif sum(1 for other in self.clients if other.name) >= self.max_clients:
            self.send_error(
                client, "server-full", f"the room is full ({self.max_clients} clients)"
            )
            self.disconnect(client, "full")
        else:
            client.name = name
            online = sum(1 for other in self.clients if other.name)
            self.send(
                client, encode({"type": "welcome", "name": name, "online": online})
            )
            self.broadcast(encode({"type": "joined", "name": name}), sender=client)
            log(f"{name} joined from {client.address}")

    # --8<-- [end:handle]

    def send_error(self, client, code, message):
        self.send(client, encode({"type": "error", "code": code, "message": message}))

    def broadcast(self, data, sender):
        # A copy of the set: dropping a client changes the set.
        for other in list(self.clients):
            if other is not sender and other.name and other in self.clients:
                self.send(other, data)

    def send(self, client, data):
        """Put data in the client's outbox, and give the kernel what it will take."""
        client.outbox += data
        if len(client.outbox) > MAX_PENDING:
            # A client that never reads would make us buffer its messages forever.
            log(f"{client.name} is not reading: dropping it")
            self.disconnect(client, "lost")
        elif not client.watching_writes:
            # If it were, the selector would tell us when the socket can take more.
            self.flush(client)

    def flush(self, client):
        """Give the kernel as much of the outbox as it will take right now."""
        try:
            # May take only part of it: a partial send.
            sent = client.sock.send(client.outbox)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # broken: the selector says "readable" too, and receive() cleans up
        del client.outbox[:sent]
        # Ask the selector to wake us when the socket can take more, while we have more.
        want_writes = bool(client.outbox)
        if want_writes != client.watching_writes:
            writes = selectors.EVENT_WRITE if want_writes else 0
            events = selectors.EVENT_READ | writes
            self.selector.modify(client.sock, events, client)
            client.watching_writes = want_writes

    def disconnect(self, client, reason):
        if client not in self.clients:
            return  # already gone: send() may have dropped it just before
        self.clients.remove(client)
        self.selector.unregister(client.sock)
        client.sock.close()
        if client.name:
            log(f"{client.name} left ({reason})")
            self.broadcast(
                encode({"type": "left", "name": client.name, "reason": reason}),
                sender=client,
            )


def port_number(text):
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


def positive(text):
    number = int(text)
    if number < 1:
        raise ValueError(text)
    return number


def parse_args():
    parser = argparse.ArgumentParser(description="Stage 03: JSON Lines chat server.")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help="0 picks a free port"
    )
    parser.add_argument("--max-clients", type=positive, default=100, help="room size")
    return parser.parse_args()


def main():
    # A program started in the background by a script may inherit "ignore Ctrl+C".
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # JSON allows a lone surrogate, which UTF-8 cannot encode: log it as \ud800.
    sys.stdout.reconfigure(errors="backslashreplace")
    args = parse_args()
    listener = open_listener(args.host, args.port)
    host, port = listener.getsockname()
    try:
        print(f"listening on {host}:{port}", flush=True)  # the tests wait for this line
        ChatServer(listener, args.max_clients).run()
    except KeyboardInterrupt:
        pass  # Ctrl+C is how you stop a server: not an error
    # Exiting closes every socket we hold: each client sees its connection end.
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
