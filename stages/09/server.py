"""Stage 09 server: stage 05's complete chat, on asyncio.

Run it:    python3 stages/09/server.py [--host HOST] [--port PORT] [--max-clients N]
                                      [--join-timeout SECONDS]

The protocol is stage 05's and the limits are stage 06's (docs/protocol.md): stage 05's
client works with this server. What changed is how it waits. Stage 02 waited with
selectors and callbacks, stages 04-05 with a thread per client; here each client
is a coroutine, `async def serve_client`, that reads top to bottom like a thread,
but every `await` hands the one thread back to the event loop. No thread means no
lock: between two awaits, nothing else runs.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import queue
import re
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
# Bytes waiting to go out to one client before we drop it, as in stage 05.
MAX_PENDING = 1024 * 1024
MAX_PENDING_TOTAL = 64 * 1024 * 1024  # ...and for all clients: each has a share
# ...but never less than this: a room of N clients sends each a burst of N join notices.
MIN_SHARE = 256 * 1024
LOG_BACKLOG = 4096  # log lines that may wait for stdout; past this, lines are dropped
NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
FIELDS = {  # what each client message must carry, and of which type
    "hello": {"name": str, "client_id": str},
    "say": {"text": str},
    "dm": {"to": str, "text": str},
    "who": {},
    "bye": {},
}


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
    number = float(text)
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(text)
    return number


def parse_args():
    parser = argparse.ArgumentParser(
        description="Stage 09: the complete chat server, on asyncio."
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
        default=60,
        metavar="SECONDS",
        help="close a connection not joined by then (default 60)",
    )
    return parser.parse_args()


# --8<-- [start:log]
class Console:
    """The server's log, as one more consumer that may stop reading (lesson 06).

    log() never waits for stdout: a line goes on a bounded queue, or is dropped and
    counted when the queue is full. One writer thread does the waiting, and says what
    was lost."""

    def __init__(self):
        self.lines = queue.Queue(maxsize=LOG_BACKLOG)  # thread-safe: two threads use it
        # The loop's thread counts drops and the writer's resets the count: a lock keeps
        # either from losing the other's change.
        self.lock = threading.Lock()
        self.dropped = 0
        self.writer = threading.Thread(target=self.write_loop, daemon=True)

    def put(self, line):
        try:
            self.lines.put_nowait(line)
        except queue.Full:  # nobody is reading the log: lose the line, never the room
            with self.lock:
                self.dropped += 1

    def write_loop(self):
        """The writer thread: the only one that ever waits for stdout."""
        while True:
            batch = [self.lines.get()]  # sleeps until there is a line
            with contextlib.suppress(queue.Empty):
                while batch[-1] is not None:  # None: the server is stopping (close)
                    batch.append(self.lines.get_nowait())  # what piled up: one write
            with self.lock:
                dropped, self.dropped = self.dropped, 0
            if dropped:
                batch.append(
                    f"({dropped} log lines dropped: nobody was reading the log)\n"
                )
            if not self.write("".join(line for line in batch if line)) or None in batch:
                return

    def write(self, text):
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
            return True
        except (OSError, ValueError):  # stdout closed (server.py | head -1): chat on
            # The interpreter flushes stdout once more at exit: let that go nowhere.
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            return False

    def close(self, seconds=1.0):
        """Give the writer `seconds` to write what is queued, no more: an unread stdout
        must not hold up the exit."""
        if self.writer.is_alive():
            deadline = time.monotonic() + seconds
            with contextlib.suppress(queue.Full):
                self.lines.put(None, timeout=seconds)
            self.writer.join(max(0.0, deadline - time.monotonic()))
        if self.writer.is_alive():
            # Stuck writing to a full pipe, holding stdout's lock: Python's exit would
            # wait for it for ever (3.11.2, Debian 12's). Only the log is lost.
            os._exit(0)


CONSOLE = Console()


def log(*lines, stamp=True):
    # Only the writer thread writes: the event loop never waits for stdout.
    start = f"{datetime.now():%H:%M:%S} " if stamp else ""
    for line in lines:
        CONSOLE.put(f"{start}{line}\n")


# --8<-- [end:log]


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
        message = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: [[[[... thousands deep
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


# --8<-- [start:client]
class Outbox:
    """Stage 05's outbox for an event loop: no lock, as only the loop's one thread
    touches it, and an Event instead of a Condition to wake the writer task."""

    def __init__(self):
        self.ready = asyncio.Event()
        self.data = bytearray()
        self.closing = False  # set by close(): send what is left, then stop

    def put(self, data):
        """Add data, never waiting for the writer (send() has checked the bound)."""
        self.data += data
        self.ready.set()

    def close(self):
        self.closing = True
        self.ready.set()

    async def take(self):
        """Wait until there is something to send, then take all of it.

        b"" once closed and empty."""
        while not self.data and not self.closing:
            self.ready.clear()
            await self.ready.wait()
        data, self.data = bytes(self.data), bytearray()
        return data


class Client:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername") or ("?", 0)  # None: gone already
        host, port = peer[:2]
        self.address, self.name = f"{host}:{port}", None
        # Messages wait here for this client's writer task. Bounded, as in stage
        # 05: a client that stops reading fills its own outbox, and is dropped,
        # instead of growing our memory.
        self.outbox = Outbox()
        self.writing = None  # the task running write_loop()

    def waiting(self):
        """Bytes on their way to this client: in its outbox, and in the transport's
        buffer (handed to write(), not yet taken by the kernel)."""
        return len(self.outbox.data) + self.writer.transport.get_write_buffer_size()

    async def write_loop(self):
        """The only task that writes to this client.

        drain() waits while the kernel's buffer is full, so a slow reader slows
        only this task, never the room."""
        # Everything that piled up while we waited goes in one write(): one wake-up of
        # this task and one system call for all of it, instead of one each.
        while data := await self.outbox.take():
            self.writer.write(data)
            del data  # the transport keeps what the kernel did not take: hold it once
            await self.writer.drain()


# --8<-- [end:client]


class ChatServer:
    def __init__(self, max_clients, join_timeout):
        self.max_clients, self.join_timeout = max_clients, join_timeout
        # No lock: only the event loop's one thread ever touches it.
        self.clients = set()
        self.stopping = False

    # --8<-- [start:serve_client]
    async def serve_client(self, reader, writer):
        """One client, from connection to goodbye.

        asyncio starts one of these tasks per connection."""
        client = Client(reader, writer)
        client.serving = asyncio.current_task()  # shut_down() waits for it
        self.clients.add(client)
        writing = client.writing = asyncio.create_task(client.write_loop())
        try:
            reason = await self.read_loop(client)
        except (ConnectionError, OSError):
            reason = "lost"
        self.disconnect(client, reason)
        client.outbox.close()  # the writer: send what is queued, then stop
        try:
            # A stuck client must not keep us here.
            await asyncio.wait_for(writing, timeout=2)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            writing.cancel()
        writer.close()

    # --8<-- [end:serve_client]

    async def read_loop(self, client):
        """Handle the client's lines until it leaves; return why it left."""
        joined_by = asyncio.get_running_loop().time() + self.join_timeout
        while True:
            try:
                line = await self.next_line(client, joined_by)
            except asyncio.IncompleteReadError:
                return "lost"  # the connection closed, maybe in the middle of a line
            except asyncio.LimitOverrunError:
                # The reader's limit (MAX_LINE) keeps a client that never sends
                # "\n" from filling our memory.
                self.send_error(
                    client,
                    "line-too-long",
                    f"a message may be at most {MAX_LINE} bytes",
                )
                return "lost"
            except asyncio.TimeoutError:
                limit = f"{self.join_timeout:g} s"
                log(f"{client.address} did not join within {limit}: closed")
                self.send_error(client, "join-timeout", f"not joined within {limit}")
                return "timeout"
            line = line.rstrip(b"\r\n")
            if line.strip() and (reason := self.guarded(client, line)):
                return reason

    # --8<-- [start:next_line]
    async def next_line(self, client, joined_by):
        """The next line (framing: the reader buffers partial lines). Until the client
        has joined, only until `joined_by`: a connection that never joins, silent or
        dribbling, must not hold a socket for ever (IRC servers do the same)."""
        if client.name is not None:
            return await client.reader.readuntil(b"\n")
        remaining = joined_by - asyncio.get_running_loop().time()
        return await asyncio.wait_for(client.reader.readuntil(b"\n"), remaining)

    # --8<-- [end:next_line]

    def guarded(self, client, line):
        """handle_line(), with a last resort: a bug that one client's line sets off ends
        that client (the others are told it left), never the task with a ghost left in
        the room."""
        try:
            return self.handle_line(client, line)
        except Exception as error:
            # repr(): the error may quote what the client sent, control characters too
            log(f"{client.name or client.address}: dropped after {error!r:.200}")
            return "lost"

    def handle_line(self, client, line):
        """Act on one message.

        Returns a reason to end the connection, or None to go on."""
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
            self.send(client, encode({"type": "bye"}))
            return "quit"
        if client.name is None:
            self.send_error(client, "not-joined", "send hello first")
        elif kind == "say":
            log(f"{client.name} said {len(line)} bytes: {message['text']!r}")
            self.broadcast(
                encode({"type": "said", "from": client.name, "text": message["text"]}),
                sender=client,
            )
        elif kind == "dm":
            self.direct_message(client, message["to"], message["text"], len(line))
        elif kind == "who":
            names = sorted(
                (other.name for other in self.clients if other.name), key=str.lower
            )
            self.send(client, encode({"type": "users", "names": names}))
        return None

    def direct_message(self, sender, to, text, size):
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
        # The size of the line as received, as for a say: measuring the text would mean
        # encoding it, and a lone surrogate ("\ud800") cannot be encoded.
        log(f"{sender.name} sent {recipient.name} a direct message of {size} bytes")
        self.send(recipient, encode({"type": "dm", "from": sender.name, "text": text}))

    # --8<-- [start:hello]
    def hello(self, client, name):
        # Check-then-act with no lock, and no race: there is no await between the check
        # and the act, so no other client's code can run in between.
        names = [other.name.lower() for other in self.clients if other.name]
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
        elif name.lower() in names:
            self.send_error(
                client, "name-taken", f"{name} is already taken, choose another name"
            )
        elif len(names) >= self.max_clients:
            self.send_error(
                client, "server-full", f"the room is full ({self.max_clients} clients)"
            )
            return "full"
        else:
            client.name = name
            self.send(
                client,
                encode({"type": "welcome", "name": name, "online": len(names) + 1}),
            )
            self.broadcast(encode({"type": "joined", "name": name}), sender=client)
            log(f"{name} joined from {client.address}")
        return None

    # --8<-- [end:hello]

    def send_error(self, client, code, message):
        self.send(client, encode({"type": "error", "code": code, "message": message}))

    def broadcast(self, data, sender):
        for other in list(self.clients):
            if other is not sender and other.name:
                self.send(other, data)

    # --8<-- [start:send]
    def share(self):
        """How many bytes may wait for one client: MAX_PENDING, or less in a crowded
        room, so that however many stop reading, they hold MAX_PENDING_TOTAL at most."""
        even_split = MAX_PENDING_TOTAL // max(1, len(self.clients))
        return max(MIN_SHARE, min(MAX_PENDING, even_split))

    def send(self, client, data):
        """Queue a message for the client's writer task. Never waits."""
        if client.writer.transport.is_closing():
            return  # dropped already: its read_loop is about to clean up
        if client.waiting() + len(data) > self.share():
            log(f"{client.name or client.address} is not reading: dropping it")
            # Its read_loop sees the connection end and cleans up.
            client.writer.transport.abort()
            return
        client.outbox.put(data)

    # --8<-- [end:send]

    def disconnect(self, client, reason):
        if client not in self.clients:
            return
        self.clients.remove(client)
        if client.name and not self.stopping:
            log(f"{client.name} left ({reason})")
            self.broadcast(
                encode({"type": "left", "name": client.name, "reason": reason}),
                sender=client,
            )

    # --8<-- [start:shutdown]
    async def shut_down(self):
        """Tell everyone we stop, give the writers a moment to say so, then hang up."""
        self.stopping = True
        notice = encode({"type": "shutdown"})
        for client in self.clients:
            client.outbox.put(notice)
            client.outbox.close()
        clients = list(self.clients)
        if clients:
            # A stuck client: 2 s at most.
            await asyncio.wait([client.writing for client in clients], timeout=2)
            for client in clients:
                # Each serve_client() reads the end and finishes...
                client.writer.transport.abort()
            # ...rather than being cancelled.
            await asyncio.wait([client.serving for client in clients], timeout=2)

    # --8<-- [end:shutdown]


def report_accept_errors(loop, context):
    """asyncio keeps serving when accept() fails for want of file descriptors (it pauses
    accepting for a second); we only make its complaint one readable log line."""
    error = context.get("exception")
    if isinstance(error, OSError) and "accept" in context.get("message", ""):
        log(f"cannot accept a client: {reason(error)}; trying again in a second")
    else:
        loop.default_exception_handler(context)


def reason(error):
    """The system's words for an OSError. asyncio's own message repeats the address:
    "error while attempting to bind on address ('127.0.0.1', 65432): address already
    in use"."""
    if error.errno and not isinstance(error, socket.gaierror):  # getaddrinfo's codes
        return os.strerror(error.errno)
    return error.strerror or str(error)


# --8<-- [start:main]
async def serve(args):
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(report_accept_errors)
    chat = ChatServer(args.max_clients, args.join_timeout)
    try:
        # backlog: a burst of thousands of connections waits in the kernel
        # until we accept them.
        server = await asyncio.start_server(
            chat.serve_client, args.host, args.port, limit=MAX_LINE, backlog=1024
        )
    except OSError as error:
        sys.exit(f"error: cannot listen on {args.host}:{args.port}: {reason(error)}")
    host, port = server.sockets[0].getsockname()[:2]
    stop = asyncio.Event()
    # Ctrl+C: from the listening line on, an event in the loop, never an exception.
    loop.add_signal_handler(signal.SIGINT, stop.set)
    log(f"listening on {host}:{port}", stamp=False)  # the tests wait for this line
    await stop.wait()
    server.close()
    await chat.shut_down()
    log("server stopped", stamp=False)


def main():
    args = parse_args()
    # An ascii or cp1252 stdout shows an emoji as \U0001f600 rather than raise at it.
    sys.stdout.reconfigure(errors="backslashreplace")
    CONSOLE.writer.start()
    try:
        asyncio.run(serve(args))
    finally:
        CONSOLE.close()


# --8<-- [end:main]


if __name__ == "__main__":
    main()
