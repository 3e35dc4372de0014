"""Stage 04 server: stage 03's protocol, served by one thread per client.

Run it:    python3 stages/04/server.py [--host HOST] [--port PORT] [--max-clients N]

The protocol is exactly stage 03's (JSON Lines; docs/protocol.md), so stage 03's
client works with this server and the other way round. What changes is how the
server waits: instead of one selector, each client gets a thread that simply
blocks in recv(). The code reads top to bottom again, like stage 01, but now
several threads share the room, and shared data needs a lock.

Each client also gets a writer thread fed by a bounded outbox. A client that
stops reading fills only its own outbox and is dropped; nobody else waits for it.
naive_server.py, which sends from the reader threads, shows why (lesson 04).
"""

import argparse
import contextlib
import json
import logging
import re
import signal
import socket
import sys
import threading
from datetime import datetime, timezone

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432
# Bytes in one message; past this without a newline, the client is disconnected.
MAX_LINE = 8192
# Bytes waiting to go out to one client before we drop it, as in stage 03.
MAX_PENDING = 1024 * 1024
NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
FIELDS = {  # what each client message must carry, and of which type
    "hello": {"name": str, "client_id": str},
    "say": {"text": str},
    "bye": {},
}
# Every thread logs. print() writes a line and its "\n" separately, so two threads'
# lines could come out spliced; a logger writes each line whole, under its own lock.
log = logging.getLogger("chat")  # set up in main()


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
    parser = argparse.ArgumentParser(
        description="Stage 04: threaded chat server speaking JSON Lines.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # shows the defaults
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help="0 picks a free port"
    )
    parser.add_argument("--max-clients", type=positive, default=100, help="room size")
    return parser.parse_args()


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
    # The backlog: connections the kernel queues until accept() takes them. Starting
    # a thread per client slows accept() down, so a burst needs a long queue.
    listener.listen(1024)
    return listener


def encode(message):
    """One server message on the wire: a JSON object, time-stamped, on one line."""
    message["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (json.dumps(message) + "\n").encode("utf-8")


class ProtocolError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def decode(line):
    """Parse and check one client message: anything wrong is a ProtocolError."""
    try:
        message = json.loads(line)  # bytes are fine: json decodes UTF-8 itself
    # ValueError: not JSON, not UTF-8, or a number too long to convert.
    # RecursionError: nested too deep for the parser ([[[[... 2,000 times).
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


# --8<-- [start:outbox]
class Outbox:
    """The bytes waiting for one client: any client's reader thread puts, only this
    client's writer thread takes. A Condition is a lock, and a way to sleep until
    another thread says "there is something for you"."""

    def __init__(self):
        self.changed = threading.Condition()
        self.data = bytearray()
        self.closing = False  # set by close(): send what is left, then stop

    def put(self, data):
        """Add data, never waiting. False if the client is too far behind to take it."""
        with self.changed:
            if len(self.data) + len(data) > MAX_PENDING:
                # A client that stops reading must not grow our memory for ever.
                return False
            self.data += data
            # Wakes the writer if it sleeps in take(); if it is busy, no cost.
            self.changed.notify()
            return True

    def close(self):
        with self.changed:
            self.closing = True
            self.changed.notify()

    def take(self):
        """Sleep until there is something to send, then take it all (b"": closed)."""
        with self.changed:
            while not self.data and not self.closing:
                # wait() releases the lock while it sleeps, so put() can get in.
                self.changed.wait()
            data, self.data = bytes(self.data), bytearray()
            return data


# --8<-- [end:outbox]


class Client:
    """What the server remembers about one connection."""

    def __init__(self, sock, address):
        self.sock = sock
        self.address = f"{address[0]}:{address[1]}"
        self.name = None  # set by a valid hello
        # What its writer thread has yet to send; full, the client is dropped.
        self.outbox = Outbox()


class ChatServer:
    def __init__(self, max_clients):
        self.max_clients = max_clients
        self.clients = set()
        # Every client's thread reads and changes self.clients: without a lock, two
        # could both find the last place free, or one loop over the set as another
        # changes it ("Set changed size during iteration").
        self.lock = threading.Lock()
        # Once set, clients that go are not "leaving": the server is.
        self.stopping = False

    # --8<-- [start:accept]
    def serve(self, listener):
        while True:
            sock, address = listener.accept()
            client = Client(sock, address)
            with self.lock:
                self.clients.add(client)
            threading.Thread(target=self.handle, args=(client,), daemon=True).start()

    # --8<-- [end:accept]

    # --8<-- [start:threads]
    def handle(self, client):
        """The client's own thread: read its messages until it leaves, then clean up."""
        writer = threading.Thread(target=self.write_loop, args=(client,), daemon=True)
        writer.start()
        try:
            reason = self.read_loop(client)
        except OSError:
            reason = "lost"
        self.disconnect(client, reason)
        client.outbox.close()  # the writer sends what is queued, then stops
        writer.join(timeout=2)
        # Wakes a writer still blocked in sendall(), before we close its socket.
        with contextlib.suppress(OSError):
            client.sock.shutdown(socket.SHUT_RDWR)
        client.sock.close()

    def write_loop(self, client):
        """The client's writer thread: the only thread that ever sends on its socket."""
        # One sendall() for everything that piled up while the last one was going out.
        while data := client.outbox.take():
            try:
                client.sock.sendall(data)
            except OSError:
                return

    # --8<-- [end:threads]

    def read_loop(self, client):
        """Handle the client's lines until it leaves; return why it left."""
        inbox = bytearray()
        while True:
            data = client.sock.recv(65536)  # blocks this thread only
            if not data:
                return "lost"
            inbox += data
            while (end := inbox.find(b"\n")) >= 0:
                line = bytes(inbox[:end])
                del inbox[: end + 1]
                # Every complete line too: one recv() may bring a 30 KB line whole.
                if len(line) > MAX_LINE:
                    return self.too_long(client)
                if line.strip() and (reason := self.handle_line(client, line)):
                    return reason
            if len(inbox) > MAX_LINE:
                # Without a limit, one that never sends "\n" would fill our memory.
                return self.too_long(client)

    def too_long(self, client):
        self.send_error(
            client, "line-too-long", f"a message may be at most {MAX_LINE} bytes"
        )
        return "lost"

    def handle_line(self, client, line):
        """Act on one message; return a reason to end the connection, or None."""
        try:
            message = decode(line)
        except ProtocolError as error:
            # Answer, and keep the connection open.
            self.send_error(client, error.code, str(error))
            return None
        kind = message["type"]
        if kind == "say" and client.name is not None:
            log.info(f"{client.name} said {len(line)} bytes: {message['text']}")
            said = {"type": "said", "from": client.name, "text": message["text"]}
            self.broadcast(encode(said), sender=client)
            return None
        if kind == "hello":
            return self.hello(client, message["name"])
        if kind == "bye":
            # The acknowledgement: the client may now close.
            self.send(client, encode({"type": "bye"}))
            return "quit"
        if client.name is None:
            self.send_error(client, "not-joined", "send hello first")
        return None

    # --8<-- [start:hello]
    def hello(self, client, name):
        if client.name is not None:
            self.send_error(
                client,
                "already-joined",
                f"you are already in the room as {client.name}",
            )
            return None
        if not NAME.fullmatch(name):
            self.send_error(
                client, "bad-name", "a name is 1 to 32 letters, digits, _ or -"
            )
            return None
        # Check the room and take a place in one step: nobody slips in between.
        with self.lock:
            online = sum(1 for other in self.clients if other.name)
            if online < self.max_clients:
                client.name = name
        if client.name is None:
            self.send_error(
                client, "server-full", f"the room is full ({self.max_clients} clients)"
            )
            return "full"
        self.send(
            client, encode({"type": "welcome", "name": name, "online": online + 1})
        )
        self.broadcast(encode({"type": "joined", "name": name}), sender=client)
        log.info(f"{name} joined from {client.address}")
        return None

    # --8<-- [end:hello]

    def send_error(self, client, code, message):
        self.send(client, encode({"type": "error", "code": code, "message": message}))

    def broadcast(self, data, sender):
        # A snapshot: we must not hold the lock while we hand out messages.
        with self.lock:
            others = [
                other for other in self.clients if other is not sender and other.name
            ]
        for other in others:
            self.send(other, data)

    def send(self, client, data):
        """Queue a message for the client's writer thread, never blocking the caller."""
        if not client.outbox.put(data):
            log.info(f"{client.name} is not reading: dropping it")
            with contextlib.suppress(OSError):
                # Its own thread wakes up, sees the end, cleans up.
                client.sock.shutdown(socket.SHUT_RDWR)

    def disconnect(self, client, reason):
        with self.lock:
            if client not in self.clients:
                return
            self.clients.remove(client)
        if client.name and not self.stopping:
            log.info(f"{client.name} left ({reason})")
            self.broadcast(
                encode({"type": "left", "name": client.name, "reason": reason}),
                sender=client,
            )

    def close(self):
        with self.lock:
            self.stopping = True
            clients = list(self.clients)
        for client in clients:
            with contextlib.suppress(OSError):
                # Wakes every client thread: they end on their own.
                client.sock.shutdown(socket.SHUT_RDWR)


def main():
    # Started in the background by a script, we may inherit "ignore Ctrl+C": undo it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parse_args()
    listener = open_listener(args.host, args.port)
    host, port = listener.getsockname()
    server = ChatServer(args.max_clients)
    # --8<-- [start:log]
    # JSON allows a lone surrogate, which UTF-8 cannot encode: log it as \ud800.
    sys.stdout.reconfigure(errors="backslashreplace")
    logging.basicConfig(
        stream=sys.stdout,  # like print(); basicConfig would choose stderr
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    # --8<-- [end:log]
    try:
        log.info(f"listening on {host}:{port}")  # the tests wait for exactly this line
        server.serve(listener)  # Ctrl+C reaches the main thread, the one in accept()
    except KeyboardInterrupt:
        pass  # Ctrl+C is how you stop a server: not an error
    finally:
        listener.close()
        server.close()
    log.info("server stopped")


if __name__ == "__main__":
    main()
