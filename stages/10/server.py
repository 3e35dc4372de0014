"""Stage 10 server: stage 09's chat over TLS, and files sent from one user to another.

Run it:    python3 stages/10/server.py [--host HOST] [--port PORT] [--max-clients N]
                                      [--cert FILE --key FILE] [--max-file-size SIZE]
                                      [--join-timeout SECONDS]

Every connection is TLS: without --cert and --key, the server uses the development
certificate in certs/ (for local use only: its private key is published with the kit).
A client that speaks plaintext is told so in one line, and closed.

Files go through the server as chunk messages, relayed only once the recipient has
accepted, and never stored here. Protocol: docs/protocol.md, "Stage 10".
"""

import argparse
import asyncio
import contextlib
import base64
import binascii
import collections
import json
import math
import os
import queue
import re
import signal
import socket
import ssl
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432
# Bytes in one message (a file chunk is about 22 KiB); past this
# without a newline, we disconnect.
MAX_LINE = 65536
# Bytes waiting for one client before we drop it: room for file chunks (09: 1 MiB).
MAX_PENDING = 8 * 1024 * 1024
MAX_PENDING_TOTAL = 64 * 1024 * 1024  # ...and for all clients: each has a share
# ...but never less than this: a room of N clients sends each a burst of N join notices.
MIN_SHARE = 256 * 1024
LOG_BACKLOG = 4096  # log lines that may wait for stdout; past this, lines are dropped
WRITE_PIECE = 64 * 1024  # bytes handed to TLS at a time: see Outbox.take()
# What may wait for a client below the TLS layer, out of our sight: asyncio's TCP buffer
# (it stops taking more past 64 KiB) and the one piece that took it past that.
UNSEEN = 64 * 1024 + WRITE_PIECE
NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
FIELDS = {  # what each client message must carry, and of which type
    "hello": {"name": str, "client_id": str},
    "say": {"text": str},
    "dm": {"to": str, "text": str},
    "who": {},
    "bye": {},
    # A file, announced.
    "offer": {"to": str, "id": str, "name": str, "size": int, "sha256": str},
    "accept": {"from": str, "id": str},  # the recipient's answers
    "decline": {"from": str, "id": str},
    "chunk": {"id": str, "data": str},  # the sender's file, in base64 pieces
    "done": {"id": str},
    # Either side gives up ("from" names the sender when the recipient cancels).
    "cancel": {"id": str},
}
# The development certificate: local use only.
CERTS = Path(__file__).resolve().parent / "certs"
# Every TLS connection starts with a handshake record, whose first byte is 0x16.
TLS_HANDSHAKE = b"\x16"
# A connection that has not finished its TLS handshake by then is closed.
HANDSHAKE_SECONDS = 10
SHA256 = re.compile(r"[0-9a-f]{64}")


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


def byte_size(text):
    """A size such as 1048576, 512K or 10M."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    number, unit = (
        (text[:-1], units[text[-1].upper()])
        if text[-1:].upper() in units
        else (text, 1)
    )
    if int(number) < 0:
        raise ValueError(text)
    return int(number) * unit


def parse_args():
    parser = argparse.ArgumentParser(
        description="Stage 10: the complete chat server, on TLS, with file transfer."
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
        "--cert", default=CERTS / "localhost.pem", help="the server's certificate (PEM)"
    )
    parser.add_argument(
        "--key",
        default=CERTS / "localhost-key.pem",
        help="the certificate's private key (PEM)",
    )
    parser.add_argument(
        "--max-file-size",
        type=byte_size,
        default="10M",
        metavar="SIZE",
        help="largest file a client may send, e.g. 512K or 10M (default 10M)",
    )
    parser.add_argument(
        "--join-timeout",
        type=seconds,
        default=60,
        metavar="SECONDS",
        help="close a connection not joined by then (default 60)",
    )
    return parser.parse_args()


# --8<-- [start:tls_context]
def tls_context(cert, key):
    """What we prove to clients: this certificate, and that we hold its private key."""
    # Modern defaults: TLS 1.2+, strong ciphers.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        why = getattr(error, "strerror", None) or error
        sys.exit(f"error: cannot use certificate {cert} with key {key}: {why}")
    return context


# --8<-- [end:tls_context]


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
        # type(), not isinstance(): JSON's true is no number, though a bool is an int.
        if type(message.get(field)) is not kind:
            raise ProtocolError(
                "bad-message",
                f"{message['type']} needs a {kind.__name__} field {field!r}",
            )
    return message


# --8<-- [start:client]
class Outbox:
    """Stage 09's outbox, holding messages rather than one growing buffer. An outbox may
    hold 8 MiB here: as one bytearray it needs one block of memory that size, and the
    blocks that dropped clients leave do not fit the next ones, so the server's memory
    grows though less is waiting. Messages keep their size, and a broadcast is one
    bytes object, however many outboxes hold it."""

    def __init__(self):
        self.ready = asyncio.Event()
        self.messages, self.size = collections.deque(), 0  # size: bytes in the messages
        self.closing = False  # set by close(): send what is left, then stop

    def put(self, data):
        """Add data, never waiting for the writer (send() has checked the bound)."""
        self.messages.append(data)
        self.size += len(data)
        self.ready.set()

    def close(self):
        self.closing = True
        self.ready.set()

    async def take(self):
        """Wait until there is something to send, then take messages: WRITE_PIECE
        bytes' worth (or one). [] once closed and empty. Not all of them, as stage 09
        does: under TLS, asyncio passes what we write on to a buffer below its TLS
        layer, which get_write_buffer_size() does not count. Small pieces keep that
        part small."""
        while not self.messages and not self.closing:
            self.ready.clear()
            await self.ready.wait()
        taken, size = [], 0
        while self.messages and size < WRITE_PIECE:
            taken.append(self.messages.popleft())
            size += len(taken[-1])
        self.size -= size
        return taken


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
        buffer (handed to write(), not yet encrypted and taken by the kernel)."""
        return self.outbox.size + self.writer.transport.get_write_buffer_size()

    async def write_loop(self):
        """The only task that writes to this client.

        drain() waits while the kernel's buffer is full, so a slow reader slows
        only this task, never the room."""
        # What piled up while we waited goes in one write (up to WRITE_PIECE): one
        # wake-up of this task and one system call for many messages, not one each.
        while messages := await self.outbox.take():
            self.writer.writelines(messages)
            del messages  # the transport keeps what the kernel did not take
            await self.writer.drain()


# --8<-- [end:client]


class Transfer:
    """A file on its way from one client to another. We relay it; we never keep it."""

    def __init__(self, sender, recipient, file_id, size):
        self.sender, self.recipient = sender, recipient
        self.id, self.size = file_id, size
        # No byte goes to the recipient before it says yes.
        self.accepted, self.relayed = False, 0


class ChatServer:
    def __init__(self, max_clients, max_file_size, context, join_timeout):
        self.max_clients, self.max_file_size = max_clients, max_file_size
        self.context = context
        self.join_timeout = join_timeout
        # No lock: only the event loop's one thread ever touches it.
        self.clients = set()
        self.transfers = {}  # (sender, its id for the file) -> Transfer
        # Connections still in their TLS handshake (asyncio keeps only weak references).
        self.greeting = set()
        self.stopping = False

    # --8<-- [start:greet]
    async def accept_forever(self, listener):
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, (host, port, *_) = await loop.sock_accept(listener)
            except OSError as error:
                # Out of file descriptors: wait until some are free,
                # instead of spinning.
                log(f"cannot accept a client: {reason(error)}; trying again in 1 s")
                await asyncio.sleep(1)
                continue
            task = asyncio.create_task(self.greet(sock, f"{host}:{port}"))
            self.greeting.add(task)
            task.add_done_callback(self.greeting.discard)

    async def greet(self, sock, address):
        """Look at a new connection's first byte: a TLS handshake,
        or a plaintext client to turn away."""
        loop = asyncio.get_running_loop()
        # The join timeout counts from now, the TLS handshake included.
        joined_by = loop.time() + self.join_timeout
        patience = min(HANDSHAKE_SECONDS, self.join_timeout)
        try:
            first = await asyncio.wait_for(first_byte(sock), patience)
            if first == b"":
                sock.close()  # connected and left without a word
            elif first != TLS_HANDSHAKE:
                # Take what it sent: closing with unread bytes resets the connection.
                sock.recv(MAX_LINE)
                text = "this server only speaks TLS: use a TLS client (stage 10)"
                refusal = {"type": "error", "code": "tls-required", "message": text}
                await loop.sock_sendall(sock, encode(refusal))
                log(f"{address} spoke plaintext, not TLS: told it so, and closed")
                sock.close()
            else:
                # From here on asyncio does the TLS work: handshake, then encrypting
                # and decrypting every byte. serve_client() gets a reader and a
                # writer of plaintext, as before.
                def stream():
                    """What asyncio.start_server() builds for each connection."""

                    def serve(reader, writer):
                        return self.serve_client(reader, writer, joined_by)

                    reader = asyncio.StreamReader(limit=MAX_LINE)
                    return asyncio.StreamReaderProtocol(reader, serve)

                await loop.connect_accepted_socket(
                    stream, sock, ssl=self.context, ssl_handshake_timeout=patience
                )
        except (OSError, asyncio.TimeoutError) as error:  # ssl.SSLError is an OSError
            why = getattr(error, "reason", None) or error or "timeout"
            log(f"{address} did not complete a TLS handshake: {why}")
            sock.close()

    # --8<-- [end:greet]

    # --8<-- [start:serve_client]
    async def serve_client(self, reader, writer, joined_by):
        """One client, from connection to goodbye.

        asyncio starts one of these tasks per connection."""
        client = Client(reader, writer)
        client.serving = asyncio.current_task()  # shut_down() waits for it
        self.clients.add(client)
        writing = client.writing = asyncio.create_task(client.write_loop())
        try:
            reason = await self.read_loop(client, joined_by)
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

    async def read_loop(self, client, joined_by):
        """Handle the client's lines until it leaves; return why it left."""
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

    async def next_line(self, client, joined_by):
        """The next line (framing: the reader buffers partial lines). Until the client
        has joined, only until `joined_by`: a connection that never joins, silent or
        dribbling, must not hold a socket for ever (IRC servers do the same)."""
        if client.name is not None:
            return await client.reader.readuntil(b"\n")
        remaining = joined_by - asyncio.get_running_loop().time()
        return await asyncio.wait_for(client.reader.readuntil(b"\n"), remaining)

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
        else:
            # kind is offer, accept, decline, chunk, done or cancel.
            getattr(self, f"file_{kind}")(client, message)
        return None

    def find(self, name):
        return next(
            (
                other
                for other in self.clients
                if other.name and other.name.lower() == name.lower()
            ),
            None,
        )

    def direct_message(self, sender, to, text, size):
        recipient = self.find(to)
        if recipient is None:
            self.send_error(
                sender, "no-such-user", f"nobody called {to[:40]!r} is online"
            )
            return
        # The size of the line as received, as for a say: measuring the text would mean
        # encoding it, and a lone surrogate ("\ud800") cannot be encoded.
        log(f"{sender.name} sent {recipient.name} a direct message of {size} bytes")
        self.send(recipient, encode({"type": "dm", "from": sender.name, "text": text}))

    # --8<-- [start:files]
    def file_offer(self, sender, offer):
        """A file announced to one user.

        Only its description goes to them: they say yes or no."""
        recipient, key = self.find(offer["to"]), (sender, offer["id"])
        if recipient is None or recipient is sender:
            self.send_error(
                sender,
                "no-such-user",
                f"nobody else called {offer['to'][:40]!r} is online",
            )
        elif not 0 <= offer["size"] <= self.max_file_size:
            self.send_error(
                sender,
                "file-too-big",
                f"this server relays files of up to {self.max_file_size} bytes",
            )
        elif key in self.transfers or not SHA256.fullmatch(offer["sha256"]):
            self.send_error(
                sender,
                "bad-offer",
                "an offer needs a new id and a SHA-256 as 64 hex digits",
            )
        else:
            self.transfers[key] = Transfer(
                sender, recipient, offer["id"], offer["size"]
            )
            log(
                f"{sender.name} offers {recipient.name} a file of {offer['size']} bytes"
            )
            self.send(
                recipient, encode({**offer, "from": sender.name, "to": recipient.name})
            )

    def file_accept(self, recipient, answer, accepted=True):
        transfer = self.transfers.get((self.find(answer["from"]), answer["id"]))
        if transfer is None or transfer.recipient is not recipient or transfer.accepted:
            self.send_error(
                recipient, "no-such-file", "no such file is waiting for your answer"
            )
            return
        transfer.accepted = accepted
        self.send(
            transfer.sender,
            encode(
                {
                    "type": "accepted" if accepted else "declined",
                    "id": transfer.id,
                    "by": recipient.name,
                }
            ),
        )
        if not accepted:
            del self.transfers[(transfer.sender, transfer.id)]

    def file_decline(self, recipient, answer):
        self.file_accept(recipient, answer, accepted=False)

    def file_chunk(self, sender, chunk):
        transfer = self.sending(sender, chunk["id"])
        if transfer is None:
            return
        try:
            size = len(base64.b64decode(chunk["data"], validate=True))
        except binascii.Error:
            size = -1
        transfer.relayed += size
        if size < 0 or transfer.relayed > transfer.size:
            self.end_transfer(
                transfer, "the sender sent bad or too many bytes", tell_sender=True
            )
            return
        # Relayed like any message: it waits its turn in the
        # recipient's outbox, between chat lines.
        self.send(
            transfer.recipient,
            encode(
                {
                    "type": "chunk",
                    "from": sender.name,
                    "id": transfer.id,
                    "data": chunk["data"],
                }
            ),
        )

    def file_done(self, sender, done):
        transfer = self.sending(sender, done["id"])
        if transfer is None:
            return
        if transfer.relayed != transfer.size:
            self.end_transfer(
                transfer,
                f"{transfer.relayed} bytes sent, {transfer.size} offered",
                tell_sender=True,
            )
            return
        del self.transfers[(sender, transfer.id)]
        log(
            f"{sender.name} sent {transfer.recipient.name} "
            f"a file of {transfer.size} bytes"
        )
        self.send(
            transfer.recipient,
            encode({"type": "done", "from": sender.name, "id": transfer.id}),
        )

    def file_cancel(self, client, cancel):
        sender = (
            self.find(cancel["from"]) if isinstance(cancel.get("from"), str) else client
        )
        transfer = self.transfers.get((sender, cancel["id"]))
        if transfer is not None and client in (transfer.sender, transfer.recipient):
            self.end_transfer(
                transfer,
                f"cancelled by {client.name}",
                tell_sender=client is transfer.recipient,
            )

    def sending(self, sender, file_id):
        """The sender's accepted transfer with this id, or None
        (and an error for the sender)."""
        transfer = self.transfers.get((sender, file_id))
        if transfer is None or not transfer.accepted:
            self.send_error(
                sender,
                "not-accepted",
                "send a file only once its recipient has accepted it",
            )
            return None
        return transfer

    def end_transfer(self, transfer, reason, tell_sender=False):
        del self.transfers[(transfer.sender, transfer.id)]
        log(
            f"file {transfer.id} from {transfer.sender.name} "
            f"to {transfer.recipient.name} stopped: {reason}"
        )
        notice = encode(
            {
                "type": "cancelled",
                "from": transfer.sender.name,
                "to": transfer.recipient.name,
                "id": transfer.id,
                "reason": reason,
            }
        )
        self.send(transfer.recipient, notice)
        if tell_sender:
            self.send(transfer.sender, notice)

    # --8<-- [end:files]

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
                encode(
                    {
                        "type": "welcome",
                        "name": name,
                        "online": len(names) + 1,
                        "max_file_size": self.max_file_size,
                    }
                ),
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
        room, so that however many stop reading, they hold MAX_PENDING_TOTAL at most.
        Less what TLS keeps out of sight (UNSEEN), but never less than one line."""
        even_split = MAX_PENDING_TOTAL // max(1, len(self.clients))
        share = max(MIN_SHARE, min(MAX_PENDING, even_split))
        return max(MAX_LINE, share - UNSEEN)

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
        # A copy: end_transfer() deletes from self.transfers.
        for transfer in list(self.transfers.values()):
            if client in (transfer.sender, transfer.recipient):
                self.end_transfer(
                    transfer,
                    f"{client.name} left",
                    tell_sender=client is transfer.recipient,
                )
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


async def first_byte(sock):
    """Wait for the connection's first byte, and look at it without taking it
    (MSG_PEEK): if it starts a TLS handshake, the TLS layer must still read it all."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    loop.add_reader(sock, lambda: readable.done() or readable.set_result(None))
    try:
        await readable
    finally:
        loop.remove_reader(sock)
    return sock.recv(1, socket.MSG_PEEK)


def reason(error):
    """The system's words for an OSError. socket.create_server() adds the address to
    them: "Address already in use (while attempting to bind on address ('127.0.0.1',
    65432))"."""
    if error.errno and not isinstance(error, socket.gaierror):  # getaddrinfo's codes
        return os.strerror(error.errno)
    return error.strerror or str(error)


# --8<-- [start:main]
async def serve(args):
    loop = asyncio.get_running_loop()
    context = tls_context(args.cert, args.key)
    chat = ChatServer(args.max_clients, args.max_file_size, context, args.join_timeout)
    try:
        # backlog: a burst of thousands of connections waits in the kernel
        # until we accept them.
        listener = socket.create_server((args.host, args.port), backlog=1024)
    except OSError as error:
        sys.exit(f"error: cannot listen on {args.host}:{args.port}: {reason(error)}")
    # The event loop waits for connections; accept() itself must never wait.
    listener.setblocking(False)
    host, port = listener.getsockname()[:2]
    stop = asyncio.Event()
    # Ctrl+C: from the listening line on, an event in the loop, never an exception.
    loop.add_signal_handler(signal.SIGINT, stop.set)
    log(f"listening on {host}:{port}", stamp=False)  # the tests wait for this line
    accepting = asyncio.create_task(chat.accept_forever(listener))
    await stop.wait()
    accepting.cancel()
    listener.close()
    for task in list(chat.greeting):
        task.cancel()  # half-made connections: nobody to say goodbye to yet
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
