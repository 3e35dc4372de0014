"""Stage 03 server: stage 02's select-based chat room, now speaking a real protocol.

Run it:    python stages/03/server.py [--host HOST] [--port PORT] [--max-clients N]
                                      [--join-timeout SECONDS]

On the wire: JSON Lines. Each message is one JSON object on one line, with a
"type" field (docs/protocol.md lists them all):
  client -> server   hello {name, client_id}   say {text}   bye {}
  server -> client   welcome {name, online}   joined {name}   said {from, text}
                     left {name, reason}   bye {}   error {code, message}
Every server message carries a "time". Plain text could not tell a chat line
from a notice, or carry a reason; a structured message can, and a program can
check it field by field.
"""

import argparse
import contextlib
import json
import os
import queue
import re
import selectors
import signal
import socket
import sys
import threading
import time
from datetime import datetime, timezone

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432
MAX_LINE = 8192  # bytes in one message; a longer one is refused, the client dropped
MAX_PENDING = 1024 * 1024  # bytes waiting to go out to one client before we drop it
# ...and for all clients together: in a crowd, each one's share is smaller (share()).
MAX_PENDING_TOTAL = 64 * 1024 * 1024
# ...but never less than this: a room of N clients sends each a burst of N join notices.
MIN_SHARE = 256 * 1024
DEFAULT_JOIN_TIMEOUT = 60  # seconds a connection may take to be welcomed
NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
# --8<-- [start:schema]
FIELDS = {  # what each client message must carry, and of which type
    "hello": {"name": str, "client_id": str},
    "say": {"text": str},
    "bye": {},
}
# --8<-- [end:schema]


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


def seconds(text):
    value = float(text)
    # select() cannot wait much more than a day (OverflowError); nan fails both tests.
    if not 0 < value <= 24 * 3600:
        raise ValueError(text)
    return value


def parse_args():
    parser = argparse.ArgumentParser(
        description="Stage 03: chat server speaking JSON Lines."
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"port to listen on, 0 picks a free one (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--max-clients", type=positive, default=100, help="room size (default 100)"
    )
    parser.add_argument(
        "--join-timeout",
        type=seconds,
        default=DEFAULT_JOIN_TIMEOUT,
        help=(
            "seconds a connection may take to be welcomed "
            f"(default {DEFAULT_JOIN_TIMEOUT})"
        ),
    )
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
    listener.listen()
    listener.setblocking(False)  # accept() must never block the one thread we have
    return listener


class Log:
    """The server's log, written by a thread of its own: the chat never waits for it.

    Whoever reads our stdout is a consumer like the clients, and may be slow or gone:
    a pipe nobody reads, `| less` left on one page, a terminal paused with Ctrl+S. Once
    the pipe is full, print() would block, and with it the one thread serving the room.
    """

    MAX_QUEUED = 4096  # lines waiting for stdout; past that, new lines are dropped

    def __init__(self):
        self.lines = queue.Queue(maxsize=self.MAX_QUEUED)
        # Each counter is written by one thread only (dropped: the chat's, reported: the
        # writer's), so they need no lock.
        self.dropped = self.reported = 0
        self.writer = threading.Thread(target=self.write_lines, daemon=True)

    def __call__(self, text):
        """Log one line, with the time."""
        self.put(f"{datetime.now():%H:%M:%S} {text}")

    def put(self, line):
        """Queue one line for stdout. Never blocks: if the queue is full, it is lost."""
        try:
            self.lines.put_nowait(line)
        except queue.Full:
            self.dropped += 1  # a gap in the log is better than a frozen room

    def start(self):
        # An emoji or a lone surrogate must not crash the log on an ascii or cp1252
        # stdout: what it cannot encode is written as \\U0001f600 or \\ud800 instead.
        sys.stdout.reconfigure(errors="backslashreplace")
        self.writer.start()

    def write_lines(self):
        """The writer thread: it alone waits for stdout, for as long as stdout works."""
        while True:
            batch = [self.lines.get()]  # sleeps until there is a line
            for _ in range(self.lines.qsize()):  # the rest of the queue, in one write
                batch.append(self.lines.get_nowait())
            dropped = self.dropped
            if dropped > self.reported and self.lines.empty():  # caught up: say so
                batch.append(
                    f"({dropped - self.reported} log lines dropped: "
                    "nobody was reading the log)"
                )
                self.reported = dropped
            text = "".join(f"{line}\n" for line in batch if line is not None)
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except OSError:  # stdout is closed (`server.py | head -1`): chat on
                return
            if None in batch:  # close() asked us to stop
                return

    def close(self, patience=1.0):
        """Give the writer `patience` seconds to write what is queued, and no more."""
        deadline = time.monotonic() + patience
        if self.writer.is_alive():
            with contextlib.suppress(queue.Full):
                self.lines.put(None, timeout=patience)
            self.writer.join(max(0, deadline - time.monotonic()))
        # Python flushes sys.stdout as it exits: on a closed pipe that would raise, and
        # on a full one it would wait. Pointing fd 1 at /dev/null avoids both.
        with contextlib.suppress(OSError):  # EMFILE: no file left to open; exit anyway
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


log = Log()  # every line the server prints goes through log: no other print()


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
        # Bytes queued for this client that the kernel has not taken yet.
        self.outbox = bytearray()
        self.watching_writes = False


class ChatServer:
    def __init__(self, listener, max_clients, join_timeout):
        self.listener = listener
        self.max_clients = max_clients
        self.join_timeout = join_timeout
        self.clients = set()
        # Connections not welcomed yet -> when they must have been by. Oldest first: a
        # dict keeps the order in which its keys were added.
        self.joining = {}
        # Clients whose outbox got something during this turn of the loop.
        self.queued = set()
        self.accepting = True  # False while we are out of file descriptors
        # DefaultSelector is epoll on Linux: unlike select.select(), it
        # has no 1024-descriptor limit.
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ)

    def run(self):
        while True:
            # select() returns after that many seconds even if nothing happened
            for key, events in self.selector.select(self.drop_late_joiners()):
                if key.fileobj is self.listener:
                    self.accept()
                    continue
                client = key.data
                if events & selectors.EVENT_READ:
                    self.receive(client)
                if events & selectors.EVENT_WRITE and client in self.clients:
                    self.flush(client)
            self.flush_queued()

    def accept(self):
        try:
            sock, address = self.listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return  # the client gave up between select() and accept(): nothing to do
        except OSError as error:
            # EMFILE: this process may not open more files (ulimit -n).
            # The connection stays queued, so select() would say "ready" again at
            # once, for ever: a busy loop. Stop watching the listener until a
            # client leaves and frees a file.
            log(f"cannot accept a client: {error.strerror}; waiting for one to leave")
            self.selector.unregister(self.listener)
            self.accepting = False
            return
        sock.setblocking(False)
        client = Client(sock, address)
        self.clients.add(client)
        self.joining[client] = time.monotonic() + self.join_timeout
        self.selector.register(sock, selectors.EVENT_READ, client)

    def drop_late_joiners(self):
        """Close the connections not welcomed in time (silent, slow, or still trying
        bad names): each holds a file descriptor. Returns the seconds until the next
        deadline, for select(), or None if nobody is joining."""
        now = time.monotonic()
        while self.joining:
            client, deadline = next(iter(self.joining.items()))  # the oldest
            if deadline > now:
                return deadline - now
            log(f"{client.address} did not join in {self.join_timeout:g} s: closing it")
            self.send_error(
                client,
                "join-timeout",
                f"not in the room {self.join_timeout:g} s after connecting",
            )
            self.disconnect(client, "lost")  # which takes it out of self.joining
        return None

    def receive(self, client):
        try:
            # Up to 64 KiB: when a client sends fast, its lines pile up in the
            # kernel. Taking them all at once means one turn of the loop, and one
            # send() per listener, for all of them.
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
            # It must cost this one connection, not the room: without this, the
            # exception would end run(), and the server with it.
            log(
                f"dropping {client.name or client.address}: "
                f"{type(error).__name__} while handling its line"
            )
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
            log(f"{client.name} said {len(line)} bytes: {message['text']!r}")
            self.broadcast(
                encode({"type": "said", "from": client.name, "text": message["text"]}),
                sender=client,
            )

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
            del self.joining[client]
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
        """Put data in the client's outbox.

        It goes out at the end of this turn of the loop."""
        client.outbox += data
        if len(client.outbox) > self.share():
            # A client that never reads would make us buffer its messages forever.
            log(f"{client.name} is not reading: dropping it")
            self.disconnect(client, "lost")
        elif not client.watching_writes:
            # If it were, the selector would tell us when the socket can take more.
            self.queued.add(client)

    def share(self):
        """How much output may wait for one client: MAX_PENDING, or less in a crowd, so
        that all the outboxes together never hold more than MAX_PENDING_TOTAL."""
        even_split = MAX_PENDING_TOTAL // max(1, len(self.clients))
        return max(MIN_SHARE, min(MAX_PENDING, even_split))

    def flush_queued(self):
        # Why wait for the end of the turn: one recv() can bring many lines, and each
        # client then gets all of them in one send(). A system call costs far more than
        # copying bytes: with 1,000 clients, that is 1,000 send() calls per turn
        # instead of 1,000 per message.
        while self.queued:
            client = self.queued.pop()
            if client in self.clients:
                self.flush(client)

    def flush(self, client):
        """Give the kernel as much of the outbox as it will take right now."""
        try:
            # May take only part of it: a partial send.
            sent = client.sock.send(client.outbox)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.disconnect(client, "lost")
            return
        del client.outbox[:sent]
        # Ask the selector to tell us when the socket can take more,
        # but only while we have more.
        want_writes = bool(client.outbox)
        if want_writes != client.watching_writes:
            writes = selectors.EVENT_WRITE if want_writes else 0
            events = selectors.EVENT_READ | writes
            self.selector.modify(client.sock, events, client)
            client.watching_writes = want_writes

    def disconnect(self, client, reason):
        if client not in self.clients:
            return  # already gone: a failed send and an EOF can both get here
        self.clients.remove(client)
        self.joining.pop(client, None)
        with contextlib.suppress(OSError):
            # A last try, so a goodbye or an error we just queued reaches it.
            client.sock.send(client.outbox)
        self.selector.unregister(client.sock)
        client.sock.close()
        if not self.accepting:  # a file descriptor is free again
            self.selector.register(self.listener, selectors.EVENT_READ)
            self.accepting = True
        if client.name:
            log(f"{client.name} left ({reason})")
            self.broadcast(
                encode({"type": "left", "name": client.name, "reason": reason}),
                sender=client,
            )

    def close(self):
        for client in list(self.clients):
            client.sock.close()
        self.selector.close()
        self.listener.close()


def main():
    # A program started in the background by a script may inherit "ignore
    # Ctrl+C"; ask for KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parse_args()
    listener = open_listener(args.host, args.port)
    host, port = listener.getsockname()
    server = ChatServer(listener, args.max_clients, args.join_timeout)
    log.start()
    log.put(f"listening on {host}:{port}")  # the tests wait for exactly this line
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # Ctrl+C is how you stop a server: not an error
    finally:
        server.close()
    log.put("server stopped")
    log.close()  # a moment to write what is still queued, and no more


if __name__ == "__main__":
    main()
