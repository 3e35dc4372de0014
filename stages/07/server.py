"""Stage 07 server: stage 06's server, plus one thing a real chat needs: a newcomer
sees what was said just before they came in.

Run it:    python3 stages/07/server.py [--host HOST] [--port PORT] [--max-clients N]
                                     [--history N] [--join-timeout SECONDS]

The protocol is stage 05's, so stage 05's client works with this server and
stage 07's client works with stage 05's. The only addition is compatible: right
after its welcome, a newcomer gets the last N public messages (default 20) as
ordinary `said` messages with their original time and `"history": true`. A
client that does not know the field shows them as messages; ours marks them.
"""

import argparse
import collections
import contextlib
import errno
import json
import logging
import logging.handlers
import os
import queue
import re
import select
import signal
import socket
import sys
import threading
import time
from datetime import datetime, timezone

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432
# Bytes in one message; past this without a newline, the client is disconnected.
MAX_LINE = 8192
# Bytes waiting to go out to one client before we drop it, as in stage 03.
MAX_PENDING = 1024 * 1024
NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
# --8<-- [start:schema]
FIELDS = {  # what each client message must carry, and of which type
    "hello": {"name": str, "client_id": str},
    "say": {"text": str},
    "dm": {"to": str, "text": str},
    "who": {},
    "bye": {},
}
# --8<-- [end:schema]

# The limits of this stage's defences, each explained at its part below.
DEFAULT_JOIN_TIMEOUT = 60  # seconds a connection may take to be welcomed
# Bytes waiting for all clients together: in a crowd, each one's share is smaller.
MAX_PENDING_TOTAL = 64 * 1024 * 1024
# ...but never less than this: a room of N clients sends each a burst of N join notices.
MIN_SHARE = 256 * 1024
MAX_QUEUED = 4096  # log lines waiting for stdout; past that, new lines are dropped

log = logging.getLogger("chat")  # every line the server prints goes through log


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
    # The backlog: how many connections the kernel queues for us until accept() takes
    # them. A thread per client makes accept() slower: a burst needs a long queue.
    listener.listen(1024)
    return listener


# --8<-- [start:codec]
def encode(message):
    """One server message on the wire: a JSON object, time-stamped, on one line."""
    # setdefault: a message replayed from the history keeps the time it was first said.
    message.setdefault("time", datetime.now(timezone.utc).isoformat(timespec="seconds"))
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


# --8<-- [end:codec]


# --8<-- [start:outbox]
class Outbox:
    """The bytes waiting for one client: stage 03's outbox, now shared between threads.

    Any client's reader thread may add to it; only this client's writer thread takes
    from it. A Condition is a lock plus a way to sleep until another thread says
    "there is something for you"."""

    def __init__(self, sock, share):
        self.sock = sock
        self.share = share  # how many bytes may wait here, now (ChatServer.share)
        self.changed = threading.Condition()
        self.data = bytearray()
        # Bytes the writer took and is still sending: new bytes wait behind them, and
        # they count against the limit too, or a stuck client could hold twice as much.
        self.sending = 0
        self.closing = False  # set by close(): send what is left, then stop

    def put(self, data):
        """Add data, never waiting. False if the client is too far behind."""
        with self.changed:
            if not self.data and not self.sending and not self.closing:
                # Nothing is ahead of these bytes: hand them to the kernel ourselves,
                # without blocking (MSG_DONTWAIT). So bytes wait here only while the
                # kernel's buffers are full, however late the writer thread runs.
                try:
                    data = data[self.sock.send(data, socket.MSG_DONTWAIT) :]
                except BlockingIOError:
                    pass
                except OSError:  # broken: its reader thread sees the end, cleans up
                    return True
                if not data:
                    return True
            if self.sending + len(self.data) + len(data) > self.share():
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
        """Sleep until there is something to send; take it all (b"" once closed)."""
        with self.changed:
            self.sending = 0  # what we took last time has been sent
            while not self.data and not self.closing:
                # wait() releases the lock while it sleeps, so put() can get in.
                self.changed.wait()
            data, self.data = bytes(self.data), bytearray()
            self.sending = len(data)
            return data


# --8<-- [end:outbox]


class Client:
    """What the server remembers about one connection."""

    def __init__(self, sock, address, deadline, share):
        self.sock = sock
        self.address = f"{address[0]}:{address[1]}"
        self.name = None  # set by a valid hello
        self.deadline = deadline  # time.monotonic() by which it must have been welcomed
        # Messages for this client wait here until its writer thread has sent them. The
        # outbox is bounded: a client that stops reading fills its own, and we drop it.
        self.outbox = Outbox(sock, share)
        self.writer = threading.Thread(target=write_loop, args=(self,), daemon=True)


def write_loop(client):
    """The client's writer thread: the only thread that ever sends on its socket."""
    # One sendall() for everything that piled up while the last one was going out: a
    # system call costs far more than joining bytes, and a busy room sends many.
    while data := client.outbox.take():
        try:
            client.sock.sendall(data)
        except OSError:
            return


class ChatServer:
    def __init__(self, max_clients, history, join_timeout):
        self.max_clients = max_clients
        self.join_timeout = join_timeout
        self.clients = set()
        # The last public messages. A deque with maxlen forgets the oldest by itself, so
        # the history costs a fixed amount of memory however long the server runs.
        self.history = collections.deque(maxlen=history)
        # Every client's thread reads and changes self.clients. Without a lock, two
        # threads could both find room for one more at the same moment, or one loop
        # over the set while another changes it ("Set changed size during iteration").
        self.lock = threading.Lock()
        self.client_left = threading.Event()  # set when a client's socket is closed
        # Once set, clients that go are not "leaving": the server is.
        self.stopping = False

    # --8<-- [start:accept]
    def serve(self, listener):
        while True:
            try:
                sock, address = listener.accept()
            except OSError as error:
                if error.errno not in (errno.EMFILE, errno.ENFILE):
                    raise
                self.out_of_descriptors(error)
                continue
            deadline = time.monotonic() + self.join_timeout  # to be welcomed by then
            client = Client(sock, address, deadline, self.share)
            with self.lock:
                self.clients.add(client)
            threading.Thread(target=self.handle, args=(client,), daemon=True).start()

    # --8<-- [end:accept]
    # --8<-- [start:threads]
    def handle(self, client):
        """The client's own thread: read its messages until it leaves, then clean up."""
        client.writer.start()
        try:
            reason = self.read_loop(client)
        except OSError:
            reason = "lost"
        except Exception as error:  # a bug, or input we did not foresee
            # The last resort: one line in the log, and this client goes, as if its
            # connection broke. Without it the thread would die and leave a ghost.
            log.info(
                f"dropping {client.name or client.address}: "
                f"{type(error).__name__} while handling its input"
            )
            reason = "lost"
        self.disconnect(client, reason)
        client.outbox.close()  # the writer sends what is queued, then stops
        client.writer.join(timeout=2)
        # shutdown() wakes a writer still blocked in sendall(), before we close.
        with contextlib.suppress(OSError):
            client.sock.shutdown(socket.SHUT_RDWR)
        client.sock.close()
        self.client_left.set()

    # --8<-- [end:threads]

    def read_loop(self, client):
        """Handle the client's lines until it leaves; return why it left."""
        inbox = bytearray()
        while True:
            if client.name is None and not self.wait_to_join(client):
                return "timeout"
            # Up to 64 KiB: a fast client has many lines waiting; take them at once.
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
                # Without a limit, a client that never sends "\n" fills our memory.
                return self.too_long(client)

    def too_long(self, client):
        self.send_error(
            client, "line-too-long", f"a message may be at most {MAX_LINE} bytes"
        )
        return "lost"

    def handle_line(self, client, line):
        """Act on one message. Returns a reason to end the connection, or None."""
        try:
            message = decode(line)
        except ProtocolError as error:
            # Answer, and keep the connection open.
            self.send_error(client, error.code, str(error))
            return None
        kind = message["type"]
        if kind == "hello":
            return self.hello(client, message["name"])
        if kind == "bye":
            # The acknowledgement: the client may now close.
            self.send(client, encode({"type": "bye"}))
            return "quit"
        if client.name is None:
            self.send_error(client, "not-joined", "send hello first")
        elif kind == "say":
            log.info(f"{client.name} said {len(line)} bytes: {message['text']}")
            said = {"type": "said", "from": client.name, "text": message["text"]}
            self.say(client, said)
        elif kind == "dm":
            self.direct_message(client, message["to"], message["text"], len(line))
        elif kind == "who":
            with self.lock:
                names = sorted(
                    (other.name for other in self.clients if other.name), key=str.lower
                )
            self.send(client, encode({"type": "users", "names": names}))
        return None

    # --8<-- [start:dm]
    def direct_message(self, sender, to, text, size):
        """Send `text` to `to` alone. `size`: the bytes of the line it came in, which
        the log counts as for a say (text.encode() raises at a lone surrogate)."""
        with self.lock:
            recipient = next(
                (
                    other
                    for other in self.clients
                    if other.name and other.name.lower() == to.lower()
                ),
                None,
            )
        if recipient is None:
            self.send_error(
                sender, "no-such-user", f"nobody called {to[:40]!r} is online"
            )
            return
        log.info(
            f"{sender.name} sent {recipient.name} a direct message of {size} bytes"
        )
        self.send(recipient, encode({"type": "dm", "from": sender.name, "text": text}))

    # --8<-- [end:dm]
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
        # Check the names and the room and take a place in it in one step, under the
        # lock. Checked without it, two clients asking for "alice" at the same moment
        # could both be told it is free.
        with self.lock:
            names = [other.name.lower() for other in self.clients if other.name]
            taken = name.lower() in names
            full = len(names) >= self.max_clients
            if not taken and not full:
                client.name = name
                # Queued while we hold the lock, so no live message can overtake the
                # welcome or the history.
                self.send(
                    client,
                    encode({"type": "welcome", "name": name, "online": len(names) + 1}),
                )
                for said in self.history:
                    self.send(client, encode({**said, "history": True}))
        if taken:
            self.send_error(
                client, "name-taken", f"{name} is already taken, choose another name"
            )
            return None
        if full:
            self.send_error(
                client, "server-full", f"the room is full ({self.max_clients} clients)"
            )
            return "full"
        self.broadcast(encode({"type": "joined", "name": name}), sender=client)
        log.info(f"{name} joined from {client.address}")
        return None

    # --8<-- [end:hello]

    def send_error(self, client, code, message):
        self.send(client, encode({"type": "error", "code": code, "message": message}))

    # --8<-- [start:history]
    def say(self, sender, said):
        """Remember and broadcast under one lock: a newcomer then gets each message
        exactly once, either from the history (said before it joined) or live."""
        data = encode(said)  # stamps its time, which the history keeps
        with self.lock:
            self.history.append(said)
            others = [
                other for other in self.clients if other is not sender and other.name
            ]
        for other in others:
            self.send(other, data)

    # --8<-- [end:history]

    def broadcast(self, data, sender):
        # A snapshot: we must not hold the lock while we hand out messages.
        with self.lock:
            others = [
                other for other in self.clients if other is not sender and other.name
            ]
        for other in others:
            self.send(other, data)

    def send(self, client, data):
        """Queue a message for the client's writer thread.

        Never blocks the thread that calls it."""
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

    # --8<-- [start:join_deadline]
    def wait_to_join(self, client):
        """Before the welcome, wait for input until the join deadline; False after."""
        remaining = client.deadline - time.monotonic()
        # poll(), not a socket timeout: that would apply to the writer's sendall() too.
        # (Nor select.select(): it cannot watch a descriptor numbered 1024 or more.)
        poller = select.poll()
        poller.register(client.sock, select.POLLIN)
        if remaining > 0 and poller.poll(remaining * 1000):
            return True
        # Silent, dribbling or still trying names: idle connections must not hold their
        # descriptors for ever, or enough of them lock every real user out (ulimit -n).
        log.info(f"{client.address} did not join in {self.join_timeout:g} s: closing")
        late = f"not in the room {self.join_timeout:g} s after connecting"
        self.send_error(client, "join-timeout", late)
        return False

    def make_room(self):
        """Close the connection that has waited longest without joining, so that a
        newcomer can have its descriptor now. The client closed, or None."""
        with self.lock:
            waiting = [c for c in self.clients if c.name is None and c.deadline > 0]
            if not waiting:
                return None
            oldest = min(waiting, key=lambda client: client.deadline)
            oldest.deadline = 0  # its deadline is now (and it is not picked twice)
        self.send_error(oldest, "join-timeout", "closed to make room for a newcomer")
        with contextlib.suppress(OSError):  # the writer still sends the error
            oldest.sock.shutdown(socket.SHUT_RD)  # wakes its thread in wait_to_join()
        return oldest

    # --8<-- [end:join_deadline]
    # --8<-- [start:out_of_descriptors]
    def out_of_descriptors(self, error):
        """accept() failed: no file descriptor left (ulimit -n). Trying again at once
        would fail at once, for ever: make room, or wait until a client leaves."""
        then = "waiting for a client to leave"
        if closed := self.make_room():
            then = f"closing {closed.address}, the oldest connection not in the room"
        log.info(f"cannot accept a client: {error.strerror}; {then}")
        self.client_left.wait()
        self.client_left.clear()

    # --8<-- [end:out_of_descriptors]
    # --8<-- [start:share]
    def share(self):
        """How many bytes may wait for one client: MAX_PENDING, or less in a crowded
        room, so that all the outboxes together never hold over MAX_PENDING_TOTAL."""
        # Every connection counts, joined or not: each has an outbox (len(): no lock).
        even_split = MAX_PENDING_TOTAL // max(1, len(self.clients))
        return max(MIN_SHARE, min(MAX_PENDING, even_split))

    # --8<-- [end:share]
    # --8<-- [start:shutdown]
    def shut_down(self):
        """Tell everyone we stop, give the writers a moment to say so, then hang up."""
        with self.lock:
            self.stopping = True
            clients = list(self.clients)
        notice = encode({"type": "shutdown"})
        for client in clients:
            client.outbox.put(notice)
            client.outbox.close()  # the writer thread stops once the notice is sent
        # A stuck client must not hold up the shutdown for long: two seconds in all.
        deadline = time.monotonic() + 2
        for client in clients:
            if client.writer.is_alive():
                client.writer.join(timeout=max(0, deadline - time.monotonic()))
            with contextlib.suppress(OSError):
                # Wakes the client's reader thread, and a writer stuck in sendall().
                client.sock.shutdown(socket.SHUT_RDWR)

    # --8<-- [end:shutdown]


# --8<-- [start:log]
class DroppingQueue(logging.handlers.QueueHandler):
    """Hands each log line to the log's own thread (a QueueListener), never waiting.

    Whoever reads our stdout is a consumer like the clients, and may be slow or gone:
    a pipe nobody reads, `| less` left on one page, a terminal paused with Ctrl+S. Once
    the pipe is full, a write blocks, and with it every thread that logs."""

    def __init__(self):
        super().__init__(queue.Queue(maxsize=MAX_QUEUED))
        self.dropped = 0  # lines lost since the last report: handle() holds our lock

    def enqueue(self, record):
        # QueueHandler's own enqueue() would raise queue.Full, and the line would be
        # lost without a word (logging.raiseExceptions is off): we count it instead.
        if self.dropped and self.queue.empty():  # caught up: say what was lost
            gap = f"({self.dropped} log lines dropped: nobody was reading the log)"
            self.queue.put_nowait(logging.makeLogRecord({"msg": gap}))
            self.dropped = 0
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1  # a gap in the log is better than a frozen room


class LogThread(logging.handlers.QueueListener):
    """The log's own thread: it alone writes to stdout, for as long as stdout works."""

    def __init__(self):
        # An emoji or a lone surrogate must not stop the log on an ascii or cp1252
        # stdout: what it cannot encode is written as \U0001f600 or \ud800 instead.
        sys.stdout.reconfigure(errors="backslashreplace")
        logging.raiseExceptions = False  # a closed stdout (`| head -1`) is no error
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(Escaped("%(asctime)s %(message)s", "%H:%M:%S"))
        lines = DroppingQueue()
        logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[lines])
        super().__init__(lines.queue, console)

    def close(self, patience=1.0):
        """The server's last step: give the thread `patience` seconds to write what is
        queued, and no more (QueueListener's own stop() would wait for ever)."""
        deadline = time.monotonic() + patience
        with contextlib.suppress(queue.Full):
            self.queue.put(self._sentinel, timeout=patience)  # QueueListener's "stop"
        self._thread.join(max(0, deadline - time.monotonic()))
        if self._thread.is_alive():
            # Stuck in a write to a full pipe, which nothing can interrupt, and Python's
            # exit would wait for it (logging flushes every handler as it exits). Only
            # the log is left to write: leave without the exit's clean-up.
            os._exit(0)
        # Python flushes sys.stdout as it exits: on a closed pipe that would fail, and
        # print an error. Pointing fd 1 at /dev/null avoids it.
        with contextlib.suppress(OSError):  # EMFILE: no file left to open; exit anyway
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# --8<-- [end:log]
# --8<-- [start:escaped]
class Escaped(logging.Formatter):
    """Log lines with each control or format character shown as \\x1b or \\u202e: text
    from the network must not recolour or clear the console, or forge a log line."""

    def format(self, record):
        line = super().format(record)
        return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in line)


# --8<-- [end:escaped]


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


def count(text):
    number = int(text)
    if number < 0:
        raise ValueError(text)
    return number


def seconds(text):
    value = float(text)
    # poll() cannot wait 25 days (OverflowError): a day is plenty; nan fails both tests.
    if not 0 < value <= 24 * 3600:
        raise ValueError(text)
    return value


def parse_args():
    parser = argparse.ArgumentParser(
        description="Stage 07: the complete chat server, with history.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # (default: ...)
    )
    add = parser.add_argument
    add("--host", default=DEFAULT_HOST, help="address to listen on")
    add("--port", type=port_number, default=DEFAULT_PORT, help="0 picks a free port")
    add("--max-clients", type=positive, default=100, help="room size")
    add("--join-timeout", type=seconds, default=DEFAULT_JOIN_TIMEOUT, help="seconds")
    add("--history", type=count, default=20, help="messages a newcomer sees, 0: none")
    return parser.parse_args()


def main():
    # Started in the background by a script, we may inherit "ignore Ctrl+C".
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parse_args()
    listener = open_listener(args.host, args.port)
    host, port = listener.getsockname()
    server = ChatServer(args.max_clients, args.history, args.join_timeout)
    writer = LogThread()  # from here on, logging goes through it
    writer.start()
    try:
        log.info(f"listening on {host}:{port}")  # the tests wait for exactly this line
        server.serve(listener)  # Ctrl+C reaches the main thread, the one in accept()
    except KeyboardInterrupt:
        pass  # Ctrl+C is how you stop a server: not an error
    finally:
        listener.close()
        server.shut_down()
    log.info("server stopped")
    writer.close()  # a moment to write what is still queued, and no more


if __name__ == "__main__":
    main()
