"""Stage 11 server: the chat speaks IRC, so real IRC clients (irssi, WeeChat) use it.

Run it:    python3 stages/11/server.py [--host HOST] [--port PORT] [--join-timeout S]
                                      [--ping-interval S] [--ping-timeout S]
Then:      irssi -c 127.0.0.1 -p 6667      (or any IRC client), and /join #kit

Stage 09's asyncio design, unchanged: a coroutine per client, a writer task per
client with a bounded outbox, a log that never blocks the loop, a join timeout.
What changed is the protocol: the subset of RFC 1459 and RFC 2812 that real
clients need (registration with CAP, nicknames, channels, PING and PONG), with the
numeric replies clients wait for. Real clients are the clients; client.py is a
minimal one, so that the kit's checks can drive this stage as they drive the others.
"""

import argparse
import asyncio
import contextlib
import math
import os
import queue
import re
import signal
import socket
import string
import sys
import threading
import time
from datetime import datetime, timezone

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6667
DEFAULT_NAME = "kit.irc"  # our name: the prefix of everything the server says
VERSION = "kit-11"
# RFC 1459 2.3: a line is at most 512 bytes, CR LF included, both ways.
MAX_LINE = 512
NICKLEN, CHANNELLEN, MAX_CHANNELS = 30, 50, 50
# 005: what clients may assume about us (modern.ircdocs.horse). PREFIX is empty:
# nobody is channel operator (@) or voiced (+) here.
ISUPPORT = f"""CHANTYPES=# NICKLEN={NICKLEN} CHANNELLEN={CHANNELLEN}
    CHANLIMIT=#:{MAX_CHANNELS} PREFIX= CASEMAPPING=rfc1459""".split()
MAX_PENDING = 1024 * 1024  # bytes waiting for one client before we drop it (stage 06)
MAX_PENDING_TOTAL = 64 * 1024 * 1024  # ...and for all clients: each has a share
MIN_SHARE = 256 * 1024  # ...never less: a crowded channel's NAMES reply must fit
LINES_PER_TURN = 64  # a client's lines handled in a row, at most (read_loop)
LOG_BACKLOG = 4096  # log lines that may wait for stdout; past this, lines are dropped
# RFC 2812 2.3.1: a letter or one of []\`_^{|}, then letters, digits, those, or "-".
NICK = re.compile(
    rf"[A-Za-z\[\]\\`_^{{|}}][A-Za-z0-9\[\]\\`_^{{|}}-]{{0,{NICKLEN - 1}}}"
)
# RFC 2812 leaves out only NUL, BEL, CR, LF, space, comma and colon; we leave out
# every control character: a channel's name is shown in every member's window.
CHANNEL = re.compile(rf"#[^\x00-\x20\x7f,:]{{1,{CHANNELLEN - 1}}}")
# CASEMAPPING=rfc1459: to IRC, []\~ are the capitals of {}|^ (Scandinavian letters
# on old keyboards). "Nick[" and "nick{" are one name.
FOLD = str.maketrans(string.ascii_uppercase + "[]\\~", string.ascii_lowercase + "{}|^")
TOO_LONG = object()  # what read_line() returns for a line it skipped
LINE_END = re.compile(rb"\r\n?|\n")


def port_number(text):
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


def server_name(text):
    if not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*", text):  # a host name
        raise ValueError(text)
    return text


def seconds(text):
    number = float(text)
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(text)
    return number


OPTIONS = {  # option -> (its type, default, what it does)
    "--host": (str, DEFAULT_HOST, "address to listen on"),
    "--name": (server_name, DEFAULT_NAME, "the server's name, as clients see it"),
    "--port": (port_number, DEFAULT_PORT, "port to listen on, 0 picks a free one"),
    "--join-timeout": (seconds, 60, "close a connection not registered by then"),
    "--ping-interval": (seconds, 120, "PING a client that has been silent this long"),
    "--ping-timeout": (seconds, 60, "then drop it if it has not answered by then"),
}


def parse_args():
    parser = argparse.ArgumentParser(
        description="Stage 11: the chat server, speaking IRC."
    )
    for option, (kind, default, text) in OPTIONS.items():
        parser.add_argument(
            option, type=kind, default=default, help=f"{text} (default {default})"
        )
    return parser.parse_args()


# --8<-- [start:log]
class Console:
    """The server's log, as one more consumer that may stop reading (lesson 06).

    log() never waits for stdout: a line goes on a bounded queue, or is dropped and
    counted when the queue is full. One writer thread does the waiting, and says
    what was lost. Stage 09's class, unchanged."""

    def __init__(self):
        self.lines = queue.Queue(maxsize=LOG_BACKLOG)  # thread-safe: two threads use it
        # The loop's thread counts drops, the writer's resets the count: a lock keeps
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
                batch.append(f"({dropped} log lines dropped: nobody was reading)\n")
            text = "".join(line for line in batch if line)
            if not self.write(text) or None in batch:
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
        """Give the writer `seconds` to write what is queued, no more: an unread
        stdout must not hold up the exit."""
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


# --8<-- [start:wire]
def parse(text):
    """'[:prefix] COMMAND middle ... [:trailing]' -> (prefix, COMMAND, [params]).

    The trailing parameter, after " :", is the only one that may hold spaces (a
    message's text). None for a line with no command."""
    if text.startswith("@"):  # IRCv3 tags: no capability we offer sends them
        text = text.partition(" ")[2]
    text, prefix = text.lstrip(" "), None
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
    middle, colon, trailing = text.partition(" :")
    params = [word for word in middle.split(" ") if word]
    if colon:
        params.append(trailing)
    if not params:
        return None
    return prefix, params[0].upper(), params[1:]


def middle(word):
    """A middle parameter can hold no space, and cannot be empty or start with ":".
    When we echo a client's word back (432, 421...), it must not break the line."""
    word = word.split(" ", 1)[0]
    return word if word and not word.startswith(":") else "*"


def message(source, command, *params):
    """One line on the wire. The last parameter is always sent as trailing (":"):
    one rule, always valid, whatever it holds."""
    words = [f":{source}", command] if source else [command]
    if params:
        words += [*map(middle, params[:-1]), f":{params[-1]}"]
    # surrogateescape: bytes that were not UTF-8 go back out exactly as they came.
    data = " ".join(words).encode("utf-8", "surrogateescape")
    return cut(data, MAX_LINE - 2) + b"\r\n"


def cut(data, size):
    """At most `size` bytes, never splitting a UTF-8 character: a relayed line grows by
    its sender's prefix, and must still fit in 512 bytes."""
    if len(data) <= size:
        return data
    while size and data[size] & 0xC0 == 0x80:  # 10xxxxxx: inside a character
        size -= 1
    return data[:size]


def fold(name):
    return name.translate(FOLD)


def glob(mask):
    """A test for folded names: does it match the mask? Only * and ? are wildcards
    (nicks hold [ and ], which fnmatch would read as a set). No regular expression,
    which backtracks into every * (WHO *a*a*a...*b took seconds): on a mismatch only
    the last * takes one more character, len(mask) * len(name) steps at most."""
    mask = fold(mask)

    def matches(name):
        m, n, star, resume = 0, 0, -1, -1  # star: just after the last * met in mask
        while n < len(name):
            if m < len(mask) and mask[m] == "*":  # its run in name starts at resume
                star, resume, m = m + 1, n, m + 1
            elif m < len(mask) and mask[m] in ("?", name[n]):
                m, n = m + 1, n + 1
            elif star < 0:
                return False
            else:  # back to the last *, which takes one more character
                m, n, resume = star, resume + 1, resume + 1
        return not mask[m:].strip("*")

    return matches


# --8<-- [end:wire]


# --8<-- [start:within]
async def within(seconds, coroutine):
    """Await `coroutine` for `seconds` at most, else raise asyncio.TimeoutError.

    Python 3.11's asyncio.timeout() runs it in this task: a line already received
    comes back without a turn of the event loop, so a client's lines are handled
    back to back, and each writer task then sends what they made in one go.
    wait_for() (3.10) runs it as a task of its own: a turn of the loop, and a send()
    per member of the channel, for every line, and IRC's lines are short."""
    if not hasattr(asyncio, "timeout"):  # Python 3.10
        return await asyncio.wait_for(coroutine, seconds)
    async with asyncio.timeout(seconds):
        return await coroutine


# --8<-- [end:within]


class Outbox:
    """Stage 09's outbox: bytes for one client's writer task. No lock: only the
    loop's one thread touches it."""

    def __init__(self):
        self.ready = asyncio.Event()
        self.data = bytearray()
        self.closing = False  # set by close(): send what is left, then stop

    def put(self, data):
        self.data += data
        self.ready.set()

    def close(self):
        self.closing = True
        self.ready.set()

    async def take(self):
        """Wait until there is something to send, then take all of it; b"" once
        closed and empty."""
        while not self.data and not self.closing:
            self.ready.clear()
            await self.ready.wait()
        data, self.data = bytes(self.data), bytearray()
        return data


class Client:
    def __init__(self, reader, writer, deadline):
        self.reader, self.writer = reader, writer
        host, port = (writer.get_extra_info("peername") or ("?", 0))[:2]
        self.address = f"{host}:{port}"
        # A host is sent as a parameter (WHO): "::1" would start with ":".
        self.host = f"0{host}" if host.startswith(":") else host
        self.nick = self.user = None
        self.realname = ""
        self.registered = False
        self.negotiating = False  # CAP LS or REQ seen, CAP END not yet: hold on
        self.invisible = False  # user mode +i: what irssi asks for (MODE nick +i)
        self.channels = set()
        self.buffer = bytearray()  # what came after the last line read
        self.skipping = False  # inside a line longer than MAX_LINE, dropping it
        self.deadline = deadline  # read by then: join timeout, later ping interval
        self.pinged = False  # we sent PING and wait for any line back
        self.quit_reason = None  # set when the server drops it (send())
        self.outbox = Outbox()
        self.writing = self.serving = None  # its two tasks

    @property
    def source(self):
        """Who a message is from, as other clients see it: nick!user@host."""
        return f"{self.nick}!{self.user}@{self.host}"

    def waiting(self):
        """Bytes on their way to this client: in its outbox, and in the transport's
        buffer (handed to write(), not yet taken by the kernel)."""
        return len(self.outbox.data) + self.writer.transport.get_write_buffer_size()

    async def write_loop(self):
        """The only task that writes to this client: a slow reader slows only it."""
        while data := await self.outbox.take():
            self.writer.write(data)
            del data  # the transport keeps what the kernel did not take: hold it once
            await self.writer.drain()

    # --8<-- [start:read_line]
    async def read_line(self):
        """The next line, with its end: CR LF, LF, or a CR alone (RFC 1459 2.3.1: CR
        and LF both end a line; readuntil() takes one end only). TOO_LONG as soon as a
        line passes MAX_LINE (the rest of it is skipped as it comes); b"" at the end.
        The buffer holds a line at most, however the bytes arrive."""
        while True:
            end = LINE_END.search(self.buffer)
            if not end and len(self.buffer) < MAX_LINE - 1:  # no end yet: read on
                if not (data := await self.reader.read(MAX_LINE)):
                    return b""  # closed, maybe in the middle of a line
                self.buffer += data
                continue
            size = end.end() if end else len(self.buffer)  # a line, or a line's worth
            line, self.buffer = self.buffer[:size], self.buffer[size:]
            # No end in a line's worth: the rest of the line is still to come, to be
            # skipped. The flag lives on the client: a ping timer may interrupt us.
            skipping, self.skipping = self.skipping, not end
            if not skipping:  # 417 said at once, not after megabytes more
                return TOO_LONG if not end or end.start() > MAX_LINE - 2 else line

    # --8<-- [end:read_line]


class Channel:
    def __init__(self, name):
        self.name = name  # as its creator spelled it
        self.members = {}  # Client -> None: a set that keeps the order of joining
        self.topic = ""
        self.created = int(time.time())


class Closing(Exception):
    """The server ends this connection; the argument says why (QUIT's reason)."""


class IrcServer:
    def __init__(self, args):
        self.name, self.join_timeout = args.name, args.join_timeout
        self.ping_interval, self.ping_timeout = args.ping_interval, args.ping_timeout
        self.clients = set()  # no lock: only the event loop's one thread touches these
        self.nicks = {}  # fold(nick) -> Client, registered or not
        self.channels = {}  # fold(name) -> Channel
        self.stopping = False
        self.created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

    def now(self):
        return asyncio.get_running_loop().time()

    async def serve_client(self, reader, writer):
        """One client, from connection to goodbye: stage 09's, with IRC's goodbye."""
        client = Client(reader, writer, self.now() + self.join_timeout)
        client.serving = asyncio.current_task()  # shut_down() waits for it
        self.clients.add(client)
        writing = client.writing = asyncio.create_task(client.write_loop())
        try:
            reason = await self.read_loop(client)
        except Closing as closing:
            reason = str(closing)
        except (ConnectionError, OSError):
            reason = "Connection reset"
        self.disconnect(client, reason)
        client.outbox.close()  # the writer: send what is queued (ERROR), then stop
        try:
            await asyncio.wait_for(writing, timeout=2)  # a stuck client: 2 s at most
        except (asyncio.TimeoutError, ConnectionError, OSError):
            writing.cancel()
        writer.close()

    async def read_loop(self, client):
        """Handle the client's lines until it leaves; return why it left."""
        # Once dropped (send()), the lines it sent before are not run: all for nobody.
        handled = 0
        while not client.quit_reason and (line := await self.next_line(client)):
            if client.registered:  # any line shows it is alive: no PING needed
                client.deadline, client.pinged = self.now() + self.ping_interval, False
            if line is TOO_LONG:
                # 417 (modern IRC) rather than a drop: the line cost nothing (thrown
                # away as it came), and a user who pasted too much stays. RFC 1459
                # servers cut it, which would relay half a command.
                self.reply(client, "417", "Input line was too long")
            elif reason := self.guarded(client, line.rstrip(b"\r\n")):
                return reason
            handled += 1
            if handled % LINES_PER_TURN == 0:  # a turn of the loop: the writers send
                await asyncio.sleep(0)  # what these lines made before the next ones
        return "Connection closed"

    # --8<-- [start:next_line]
    async def next_line(self, client):
        """The next line, waited for until the client's deadline: the join timeout
        until it registers (a connection that never does must not hold a socket for
        ever), then the ping interval. Past it we PING; silent past the ping timeout
        too, it is dropped: a client gone without a word (cable pulled) looks idle."""
        while True:
            remaining = client.deadline - self.now()
            try:
                if remaining <= 0:  # a line read after the deadline is too late
                    raise asyncio.TimeoutError
                return await within(remaining, client.read_line())
            except asyncio.TimeoutError:
                if not client.registered:
                    log(f"{client.address} did not register in time: closed")
                    raise Closing("Registration timed out") from None
                if client.pinged:
                    waited = f"{self.ping_timeout:g} seconds"
                    raise Closing(f"Ping timeout: {waited}") from None
                client.pinged, client.deadline = True, self.now() + self.ping_timeout
                self.send(client, message(None, "PING", self.name))

    # --8<-- [end:next_line]

    def guarded(self, client, line):
        """handle_line(), with a last resort: a bug that one client's line sets off
        ends that client (its channels are told it quit), never the server."""
        try:
            return self.handle_line(client, line)
        except Exception as error:
            log(f"{client.nick or client.address}: dropped after {error!r:.200}")
            return "Internal error"

    # --8<-- [start:handle_line]
    def handle_line(self, client, line):
        """Act on one line. Returns a reason to end the connection, or None."""
        # IRC is bytes, and old clients send Latin-1: surrogateescape keeps every byte
        # that is not UTF-8 as it came, so it is relayed unchanged; we only read the
        # ASCII words (commands, nicks, channels) and never need to decode the rest.
        parsed = parse(line.decode("utf-8", "surrogateescape"))
        if parsed is None:
            return None  # RFC 1459 2.3.1: empty lines are silently ignored
        _, command, params = parsed  # a client's prefix tells us nothing: ignore it
        if not client.registered and command not in BEFORE_REGISTRATION:
            return self.reply(client, "451", "You have not registered")
        if command not in self.HANDLERS:
            return self.reply(client, "421", command, "Unknown command")
        handler, needed = self.HANDLERS[command]
        if len(params) < needed:
            return self.reply(client, "461", command, "Not enough parameters")
        return handler(self, client, params)

    # --8<-- [end:handle_line]

    # ---------------------------------------------------------------- sending

    # --8<-- [start:send]
    def share(self):
        """Bytes that may wait for one client: MAX_PENDING, or less in a crowd, so
        that however many stop reading, they hold MAX_PENDING_TOTAL at most."""
        crowd = MAX_PENDING_TOTAL // max(1, len(self.clients))
        return max(MIN_SHARE, min(MAX_PENDING, crowd))

    def send(self, client, data):
        """Queue a line for the client's writer task. Never waits."""
        if client.writer.transport.is_closing():
            return  # dropped already: its read_loop is about to clean up
        if client.waiting() + len(data) > self.share():
            log(f"{client.nick or client.address} is not reading: dropping it")
            client.quit_reason = "Max SendQ exceeded"  # what IRC servers call it
            client.writer.transport.abort()  # its read_loop sees the end, cleans up
            return
        client.outbox.put(data)

    # --8<-- [end:send]

    def reply(self, client, numeric, *params):
        """A numeric reply: from the server, to the client's nick ("*" before NICK)."""
        self.send(client, message(self.name, numeric, client.nick or "*", *params))

    def relay(self, clients, source, command, *params):
        data = message(source, command, *params)  # encoded once for everyone
        for other in clients:
            self.send(other, data)

    def peers_of(self, client):
        """Everyone who shares a channel with the client, once each, not the client."""
        peers = {}
        for channel in client.channels:
            peers.update(channel.members)
        peers.pop(client, None)
        return peers

    # ---------------------------------------------------------------- registration

    # --8<-- [start:registration]
    def cap(self, client, params):
        """IRCv3 capability negotiation, with nothing to offer: irssi 1.3+ sends CAP
        LS 302 first and waits for the answer; registration waits for CAP END."""
        sub, nick = params[0].upper(), client.nick or "*"
        if sub in ("LS", "LIST"):
            client.negotiating |= sub == "LS" and not client.registered
            self.send(client, message(self.name, "CAP", nick, sub, ""))
        elif sub == "REQ":
            client.negotiating = not client.registered
            self.send(client, message(self.name, "CAP", nick, "NAK", params[-1]))
        elif sub == "END":
            client.negotiating = False
            self.register_if_ready(client)
        else:
            self.reply(client, "410", sub, "Invalid CAP command")

    def nick(self, client, params):
        nick = params[0] if params else ""
        holder = self.nicks.get(fold(nick))
        if not nick:
            self.reply(client, "431", "No nickname given")
        elif not NICK.fullmatch(nick):
            self.reply(client, "432", nick, "Erroneous nickname")
        elif holder not in (None, client):  # rfc1459 case mapping: "Kit[" is "kit{"
            self.reply(client, "433", nick, "Nickname is already in use")
        elif nick != client.nick:
            self.take_nick(client, nick)

    def take_nick(self, client, nick):
        old_source = client.source
        self.nicks.pop(fold(client.nick or ""), None)
        self.nicks[fold(nick)] = client
        if client.registered:  # the user and everyone sharing a channel see it
            log(f"{client.nick} is now {nick}")
            self.relay([client, *self.peers_of(client)], old_source, "NICK", nick)
        client.nick = nick
        self.register_if_ready(client)

    def user(self, client, params):
        if client.registered:
            return self.reply(client, "462", "You may not reregister")
        if not params[0] or not params[3]:  # (modern.ircdocs.horse: empty is missing)
            return self.reply(client, "461", "USER", "Not enough parameters")
        # The user name goes into nick!user@host: keep it to safe characters.
        client.user = re.sub(r"[^A-Za-z0-9._-]", "", params[0])[:10] or "user"
        client.realname = params[3]
        self.register_if_ready(client)

    def register_if_ready(self, client):
        if client.registered or client.negotiating or not (client.nick and client.user):
            return
        client.registered = True
        client.deadline = self.now() + self.ping_interval
        for numeric, *params in (
            ("001", f"Welcome to the kit IRC network, {client.source}"),
            ("002", f"Your host is {self.name}, running version {VERSION}"),
            ("003", f"This server was created {self.created}"),
            ("004", self.name, VERSION, "i", "bn"),  # user modes, channel modes
            ("005", *ISUPPORT, "are supported by this server"),
            ("422", "MOTD File is missing"),  # no MOTD: the short ending clients know
        ):
            self.reply(client, numeric, *params)
        log(f"{client.nick} registered from {client.address}")

    # --8<-- [end:registration]

    def ping(self, client, params):
        if not params:
            return self.reply(client, "409", "No origin specified")
        self.send(client, message(self.name, "PONG", self.name, params[0]))

    def ignore(self, client, params):
        pass  # PONG: any line resets the ping timer (read_loop); PASS: none needed

    def quit(self, client, params):
        return f"Quit: {params[0]}" if params else "Quit"

    # ---------------------------------------------------------------- channels

    def join(self, client, params):
        if params[0] == "0":  # RFC 2812: JOIN 0 leaves every channel
            return self.part(client, [",".join(c.name for c in client.channels)])
        for name in params[0].split(","):
            channel = self.channels.get(fold(name))
            if not CHANNEL.fullmatch(name):
                self.reply(client, "403", name, "No such channel")
            elif channel and client in channel.members:
                continue  # already there: nothing to tell anyone
            elif len(client.channels) >= MAX_CHANNELS:
                self.reply(client, "405", name, "You have joined too many channels")
            else:
                channel = channel or self.channels.setdefault(fold(name), Channel(name))
                self.enter(client, channel)

    def enter(self, client, channel):
        channel.members[client] = None
        client.channels.add(channel)
        self.relay(channel.members, client.source, "JOIN", channel.name)
        if channel.topic:  # RFC 2812 3.2.1: the topic if there is one (331: on TOPIC)
            self.reply(client, "332", channel.name, channel.topic)
        self.send_names(client, channel)
        log(f"{client.nick} joined {channel.name!r}")

    def part(self, client, params):
        for name in filter(None, params[0].split(",")):
            if channel := self.member_channel(client, name):
                why = params[1:2]  # PART #kit :reason, the reason optional
                self.relay(channel.members, client.source, "PART", channel.name, *why)
                self.leave(client, channel)
                log(f"{client.nick} left {channel.name!r}")

    def member_channel(self, client, name):
        """The channel `name` if the client is in it, else None and the error said."""
        channel = self.channels.get(fold(name))
        if channel is None:
            self.reply(client, "403", name, "No such channel")
        elif client not in channel.members:
            self.reply(client, "442", channel.name, "You're not on that channel")
        else:
            return channel
        return None

    def leave(self, client, channel):
        del channel.members[client]
        client.channels.discard(channel)
        if not channel.members:  # the last one out: the channel (and topic) is gone
            del self.channels[fold(channel.name)]

    def names(self, client, params):
        for name in params[0].split(",") if params else ["*"]:
            if channel := self.channels.get(fold(name)):
                self.send_names(client, channel)
            else:
                self.reply(client, "366", name, "End of /NAMES list.")

    def send_names(self, client, channel):
        """353 lines with every member, then 366."""
        nicks = [member.nick for member in channel.members]
        self.reply_list(client, "353", ["=", channel.name], nicks)
        self.reply(client, "366", channel.name, "End of /NAMES list.")

    def reply_list(self, client, numeric, params, words):
        """A numeric whose last parameter lists words (NAMES, WHOIS's channels), in as
        many lines as 512 bytes need, each with all of `params` before the list."""
        room = MAX_LINE - len(message(self.name, numeric, client.nick, *params, ""))
        chunk = []
        for word in words:
            longer = " ".join([*chunk, word]).encode("utf-8", "surrogateescape")
            if chunk and len(longer) > room:
                self.reply(client, numeric, *params, " ".join(chunk))
                chunk = []
            chunk.append(word)
        self.reply(client, numeric, *params, " ".join(chunk))

    def who(self, client, params):
        """WHO #channel, WHO nick, or WHO mask (* and ? as wildcards, on nicks). A
        mask does not find +i users, unless they share a channel with the asker."""
        mask = params[0] if params else "*"
        if channel := self.channels.get(fold(mask)):
            found = [(channel.name, member) for member in channel.members]
        elif fold(mask) in self.nicks:
            found = [("*", self.nicks[fold(mask)])]
        else:
            matches, near = glob(mask), self.peers_of(client)
            found = [
                ("*", other)
                for other in self.clients
                if matches(fold(other.nick or ""))
                and (not other.invisible or other in near or other is client)
            ]
        for name, other in found:
            if other.registered:  # "H": here (nobody is away), then hops and name
                fields = (other.user, other.host, self.name, other.nick, "H")
                self.reply(client, "352", name, *fields, f"0 {other.realname}")
        self.reply(client, "315", mask, "End of /WHO list.")

    def whois(self, client, params):
        """WHOIS nick[,nick...], or WHOIS server nick (we are the only server). The
        nick must be exact: +i hides a user from WHO's masks, never from WHOIS."""
        asked = params[-1] if params else ""  # RFC 2812 3.6.2: the nicks come last
        if not asked:
            return self.reply(client, "431", "No nickname given")
        for nick in asked.split(","):
            other = self.nicks.get(fold(nick))
            if other is None or not other.registered:
                self.reply(client, "401", nick, "No such nick/channel")
                continue
            fields = (other.nick, other.user, other.host, "*", other.realname)
            self.reply(client, "311", *fields)
            if other.channels:  # by name: a set has no order a check could expect
                names = sorted(channel.name for channel in other.channels)
                self.reply_list(client, "319", [other.nick], names)
            self.reply(client, "312", other.nick, self.name, "The kit IRC network")
        self.reply(client, "318", asked, "End of /WHOIS list.")

    def whowas(self, client, params):
        """No history is kept: a nick that has gone was never here (406). irssi asks
        this when WHOIS finds nobody, and says "no such nick" once it is answered."""
        if not params or not params[0]:
            return self.reply(client, "431", "No nickname given")
        for nick in params[0].split(","):
            self.reply(client, "406", nick, "There was no such nickname")
        self.reply(client, "369", params[0], "End of WHOWAS")

    def topic(self, client, params):
        if len(params) == 1:  # a question: anyone may ask, as LIST shows it anyway
            if not (channel := self.channels.get(fold(params[0]))):
                return self.reply(client, "403", params[0], "No such channel")
            if channel.topic:
                return self.reply(client, "332", channel.name, channel.topic)
            return self.reply(client, "331", channel.name, "No topic is set")
        if channel := self.member_channel(client, params[0]):
            channel.topic = params[1]
            self.relay(channel.members, client.source, "TOPIC", channel.name, params[1])

    def list_channels(self, client, params):
        names = params[0].split(",") if params else list(self.channels)
        for channel in filter(None, map(self.channels.get, map(fold, names))):
            count = str(len(channel.members))
            self.reply(client, "322", channel.name, count, channel.topic)
        self.reply(client, "323", "End of /LIST")

    # --8<-- [start:mode]
    def mode(self, client, params):
        """Enough MODE for clients to show a channel and a user; nothing can be
        changed but the user's own +i (nobody is operator here)."""
        target, changes = params[0], params[1:]
        if target.startswith("#"):
            return self.channel_mode(client, target, changes)
        if fold(target) not in self.nicks:
            return self.reply(client, "401", target, "No such nick/channel")
        if fold(target) != fold(client.nick):
            return self.reply(client, "502", "Cant change mode for other users")
        if not changes:
            return self.reply(client, "221", "+i" if client.invisible else "+")
        if changes[0] not in ("+i", "-i"):
            return self.reply(client, "501", "Unknown MODE flag")
        if client.invisible != (changes[0] == "+i"):
            client.invisible = changes[0] == "+i"
            self.send(client, message(client.source, "MODE", client.nick, changes[0]))

    def channel_mode(self, client, name, changes):
        channel = self.channels.get(fold(name))
        if channel is None:
            self.reply(client, "403", name, "No such channel")
        elif not changes:  # +n: no messages from outside (404), which is the rule here
            self.reply(client, "324", channel.name, "+n")
            self.reply(client, "329", channel.name, str(channel.created))
        elif changes[0].lstrip("+") == "b" and len(changes) == 1:  # the ban list
            self.reply(client, "368", channel.name, "End of channel ban list")
        else:
            self.reply(client, "482", channel.name, "You're not channel operator")

    # --8<-- [end:mode]

    # ---------------------------------------------------------------- messages

    # --8<-- [start:privmsg]
    def privmsg(self, client, params, command="PRIVMSG"):
        # RFC 2812 3.3.2: a NOTICE never gets an error back, so two bots cannot loop.
        say = (lambda *args: None) if command == "NOTICE" else self.reply
        if not params or not params[0]:
            return say(client, "411", f"No recipient given ({command})")
        if len(params) < 2 or not params[1]:
            return say(client, "412", "No text to send")
        # Colours (^C), bold (^B) and CTCP (^A) are part of IRC: the text is passed
        # through as it came; showing it safely is each client's job.
        for target in params[0].split(","):
            self.deliver(client, command, target, params[1], say)

    def deliver(self, client, command, target, text, say):
        # Not logged, unlike stage 09's messages: the log records who came and went;
        # one line per message would flood it the moment a channel is busy.
        if target.startswith("#"):
            channel = self.channels.get(fold(target))
            if channel is None:
                say(client, "403", target, "No such channel")
            elif client not in channel.members:  # mode +n: members only
                say(client, "404", channel.name, "Cannot send to channel")
            else:
                others = [member for member in channel.members if member is not client]
                self.relay(others, client.source, command, channel.name, text)
            return
        other = self.nicks.get(fold(target))
        if other is None or not other.registered:
            say(client, "401", target, "No such nick/channel")
        else:
            self.send(other, message(client.source, command, other.nick, text))

    # --8<-- [end:privmsg]

    def notice(self, client, params):
        return self.privmsg(client, params, "NOTICE")

    # --8<-- [start:handlers]
    # fmt: off
    HANDLERS = {  # command -> (its handler, how many parameters it needs: 461 if fewer)
        "CAP": (cap, 1), "NICK": (nick, 0), "USER": (user, 4), "PASS": (ignore, 0),
        "PING": (ping, 0), "PONG": (ignore, 0), "QUIT": (quit, 0), "JOIN": (join, 1),
        "PART": (part, 1), "NAMES": (names, 0), "WHO": (who, 0), "TOPIC": (topic, 1),
        "LIST": (list_channels, 0), "MODE": (mode, 1), "PRIVMSG": (privmsg, 0),
        "NOTICE": (notice, 0), "WHOIS": (whois, 0), "WHOWAS": (whowas, 0),
    }
    # fmt: on
    # --8<-- [end:handlers]

    # ---------------------------------------------------------------- goodbye

    # --8<-- [start:disconnect]
    def disconnect(self, client, reason):
        """Tell the client why (ERROR), then everyone sharing a channel (QUIT)."""
        if client not in self.clients:
            return
        self.clients.remove(client)
        if self.nicks.get(fold(client.nick or "")) is client:
            del self.nicks[fold(client.nick)]
        reason = client.quit_reason or reason
        if self.stopping:
            return  # shut_down() has told everyone already
        goodbye = f"Closing Link: {client.host} ({reason})"
        self.send(client, message(None, "ERROR", goodbye))
        if client.registered:
            log(f"{client.nick} quit ({reason!r})")
            self.relay(self.peers_of(client), client.source, "QUIT", reason)
        for channel in list(client.channels):
            self.leave(client, channel)

    # --8<-- [end:disconnect]

    # --8<-- [start:shutdown]
    async def shut_down(self):
        """Tell everyone the server is going, give the writers a moment to say it,
        then hang up."""
        self.stopping = True
        for client in self.clients:
            reason = f"Closing Link: {client.host} (Server shutting down)"
            client.outbox.put(message(None, "ERROR", reason))
            client.outbox.close()
        clients = list(self.clients)
        if clients:  # a stuck client: 2 s at most
            await asyncio.wait([client.writing for client in clients], timeout=2)
            for client in clients:
                client.writer.transport.abort()  # each serve_client() sees the end...
            # ...and finishes, rather than being cancelled
            await asyncio.wait([client.serving for client in clients], timeout=2)

    # --8<-- [end:shutdown]


# Before registration, only these; anything else gets 451.
BEFORE_REGISTRATION = {"CAP", "NICK", "USER", "PASS", "PING", "PONG", "QUIT"}


def report_accept_errors(loop, context):
    """asyncio keeps serving when accept() fails for want of file descriptors (it
    pauses accepting for a second); we only make its complaint one readable line."""
    error = context.get("exception")
    if isinstance(error, OSError) and "accept" in context.get("message", ""):
        log(f"cannot accept a client: {describe(error)}; trying again in a second")
    else:
        loop.default_exception_handler(context)


def describe(error):
    """The system's words for an OSError, without asyncio's repeated address."""
    if error.errno and not isinstance(error, socket.gaierror):  # getaddrinfo's codes
        return os.strerror(error.errno)
    return error.strerror or str(error)


async def serve(args):
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(report_accept_errors)
    irc = IrcServer(args)
    try:
        # limit: the reader stops reading the socket while it holds twice this.
        server = await asyncio.start_server(
            irc.serve_client, args.host, args.port, limit=MAX_LINE - 1, backlog=1024
        )
    except OSError as error:
        sys.exit(f"error: cannot listen on {args.host}:{args.port}: {describe(error)}")
    host, port = server.sockets[0].getsockname()[:2]
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, stop.set)  # Ctrl+C: before we say we listen
    log(f"listening on {host}:{port}", stamp=False)  # the tests wait for this line
    await stop.wait()
    server.close()
    await irc.shut_down()
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


if __name__ == "__main__":
    main()
