"""Stage 10 client: stage 09's client over TLS, and files sent to and from other users.

Run it:    python3 stages/10/client.py [--host HOST] [--port PORT] [--name NAME]
                                      [--cafile FILE] [--downloads FOLDER]

It trusts the server only if the server's certificate is signed by the CA in --cafile
(by default the kit's development CA, certs/dev-ca.pem) and names the host you
connected to. C FT offers a file to a user; C OK and C NO answer an offer. Files
you accept are saved in --downloads (default: ./downloads), under a safe name.
"""

import argparse
import asyncio
import base64
import binascii
import collections
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import sys
import uuid
from datetime import datetime
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432
prompt = "command> "  # where you are: Keyboard.line() sets it, show() draws it again
# The kit's development CA: local use only.
CA_FILE = Path(__file__).resolve().parent / "certs" / "dev-ca.pem"
# File bytes per message: small enough that chat lines slip in between chunks.
CHUNK = 16 * 1024
# The longest line we accept from the server (a chunk is about 22 KiB).
MAX_LINE = 256 * 1024
FILE_MESSAGES = {"offer", "accepted", "declined", "chunk", "done", "cancelled"}
# In a file name from the network, anything but letters, digits, _ . - and space.
UNSAFE = re.compile(r"[^\w. -]")
HELP = """commands:
  C PM     send a public message (then type D <message>)
  C DM     send a direct message (then C <name>, then D <message>)
  C FT     send a file (then C <name>, then C <path>)
  C OK     accept the file offered to you (the oldest offer first)
  C NO     decline it
  C LS     list the users online
  C EX     leave the chat
  C HELP   show this list"""


def port_number(text):
    port = int(text)
    if not 0 < port <= 65535:
        raise ValueError(text)
    return port


def parse_args():
    parser = argparse.ArgumentParser(
        description="Stage 10: chat client with commands and files, over TLS."
    )
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
    parser.add_argument(
        "--cafile",
        default=CA_FILE,
        help="trust servers signed by this CA (default: the kit's dev CA)",
    )
    parser.add_argument(
        "--downloads",
        default="downloads",
        help="where accepted files are saved (default ./downloads)",
    )
    return parser.parse_args()


class Leave(Exception):
    """Ctrl+C or Ctrl+D: leave cleanly."""


# --8<-- [start:keyboard]
class Keyboard:
    """Lines typed at the terminal, delivered without ever blocking the event loop."""

    def __init__(self, loop):
        self.lines, self.pending = asyncio.Queue(), b""
        try:  # call readable() whenever a key line is ready
            loop.add_reader(sys.stdin.fileno(), self.readable)
            self.from_file = False
        except PermissionError:
            # epoll refuses a regular file (client.py < lines.txt) and /dev/null. Both
            # are always ready to read: line() reads on whenever it has no line left.
            self.from_file = True
        # Ctrl+C becomes a line like any other, handled where we are,
        # instead of an exception anywhere.
        loop.add_signal_handler(signal.SIGINT, self.lines.put_nowait, Leave)

    def readable(self):
        data = os.read(sys.stdin.fileno(), 4096)
        *lines, self.pending = (self.pending + data).split(b"\n")
        if not data:  # Ctrl+D, or the end of the file: a last unfinished line counts
            lines, self.pending = [self.pending] if self.pending else [], b""
        for line in lines:
            self.lines.put_nowait(line.decode("utf-8", errors="replace").strip())
        if not data:
            self.lines.put_nowait(Leave)

    async def line(self, where="command> "):
        global prompt
        prompt = where
        print(where, end="", flush=True)
        while self.from_file and self.lines.empty():
            self.readable()
        line = await self.lines.get()
        if line is Leave:
            raise Leave()
        return line


# --8<-- [end:keyboard]


def send(writer, message):
    # write() buffers it all; nothing is lost.
    writer.write((json.dumps(message) + "\n").encode("utf-8"))


async def receive(reader):
    """The next message from the server; None once it has closed the connection."""
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            return None
        if line.strip():
            try:
                message = json.loads(line)
            except (ValueError, RecursionError):  # too deep: [[[[...
                message = None
            if isinstance(message, dict) and isinstance(message.get("type"), str):
                return message  # every message has a type, a string (a list is none)
            return {
                "type": "error",
                "code": "bad-json",
                "message": "the server sent a line that is not a message",
                "line": line.decode("utf-8", errors="replace"),  # for join()'s error
            }


def printable(text):
    # A name or message may hold escape sequences that would take over our
    # terminal: show them as \uXXXX.
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in str(text))


def clock(stamp):
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%H:%M")
    except (TypeError, ValueError):
        return "--:--"


def render(message):
    """How one server message looks on screen (None: nothing to show).

    Stage 05's, unchanged."""
    kind, get = message.get("type"), lambda field: printable(message.get(field, ""))
    stamp = f"[{clock(message.get('time'))}]"
    if kind == "said":
        return f"{stamp} {get('from')}: {get('text')}"
    if kind == "dm":
        return f"{stamp} [direct] {get('from')}: {get('text')}"
    if kind == "users":
        names = message.get("names")
        return "* online: " + ", ".join(
            map(printable, names if isinstance(names, list) else [])
        )
    notices = {
        "welcome": f"* welcome, {get('name')} ({get('online')} online)",
        "joined": f"* {get('name')} joined",
        "left": f"* {get('name')} left ({get('reason')})",
        "shutdown": "* the server is shutting down",
    }
    if kind in notices:
        return f"{stamp} {notices[kind]}"
    if kind == "error":
        return f"! {get('message')} ({get('code')})"
    return None if kind == "bye" else f"? {printable(json.dumps(message))}"


def show(line):
    # "\r" moves back over the prompt; then we draw a fresh
    # prompt for what you type next.
    print(f"\r{line}\n{prompt}", end="", flush=True)


def size_text(size):
    if size < 1024:
        return f"{size} bytes"
    if size < 1024**2:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024**2:.1f} MiB"


# --8<-- [start:safe_name]
def safe_name(name):
    """A file name that came over the network is hostile until made safe.

    Keep only its last part ("../../.bashrc" and "/etc/passwd" must not reach outside
    the downloads folder), only harmless characters (no escape sequences, no "\\"),
    and no leading dot (no hidden files, no "..")."""
    name = UNSAFE.sub("_", str(name).replace("\\", "/").split("/")[-1]).strip(" .")
    return name[:100] or "download"


def open_new_file(folder, name):
    """Create a new file in `folder`, never overwriting one: "x" mode fails if the
    name exists (even as a symbolic link), and then we try "name (1).ext",
    "name (2).ext"..."""
    folder.mkdir(parents=True, exist_ok=True)
    stem, dot, extension = name.rpartition(".") if "." in name else (name, "", "")
    for number in range(1000):
        path = folder / (name if number == 0 else f"{stem} ({number}){dot}{extension}")
        try:
            return path, open(path, "xb")
        except FileExistsError:
            continue
    raise FileExistsError(f"too many files called {name} in {folder}")


# --8<-- [end:safe_name]


def unreadable(path):
    """Why the file at `path` cannot be sent (None if it can): missing, a directory,
    or not ours to read. What is not a plain file (a named pipe) could block open()."""
    try:
        if path.is_dir():
            return "it is a directory"
        if path.exists() and not path.is_file():
            return "it is not a plain file"
        with open(path, "rb"):
            return None
    except OSError as error:
        return error.strerror or str(error)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class Download:
    def __init__(self, offer, path, file):
        self.sender, self.id = offer["from"], offer["id"]
        self.name = printable(offer["name"])
        self.size, self.sha256 = offer["size"], offer["sha256"]
        self.path, self.file = path, file
        self.received, self.digest = 0, hashlib.sha256()

    def discard(self):
        self.file.close()
        self.path.unlink(missing_ok=True)


# --8<-- [start:files]
class Files:
    """The files we offer and send, and the ones offered and sent to us."""

    def __init__(self, writer, downloads, max_size, me):
        self.writer, self.downloads, self.max_size = writer, Path(downloads), max_size
        self.me = me  # our name: a file to ourselves is refused before it is offered
        # Our id for a file -> its path, from the offer until it is sent.
        self.outgoing = {}
        self.offers = collections.deque()  # offers to us, waiting for C OK or C NO
        self.incoming = {}  # (sender, id) -> Download
        # Our id -> the task sending that file (asyncio keeps only weak references).
        self.sending = {}
        self.ids = iter(range(1, 1 << 62))

    async def offer(self, to, path_text):
        path = Path(path_text).expanduser()
        if why := unreadable(path):
            print(f"! no file to send: {printable(path_text)}: {why}")
            return
        size = path.stat().st_size
        if size > self.max_size:
            print(
                f"! {path.name} is {size_text(size)}; "
                f"this server takes files of up to {size_text(self.max_size)}"
            )
            return
        # Hashing a big file takes a while: in a thread, so that the
        # chat goes on meanwhile.
        try:
            sha256 = await asyncio.to_thread(sha256_of, path)
        except OSError as error:  # gone or changed since unreadable() looked
            print(f"! no file to send: {printable(path_text)}: {error.strerror}")
            return
        file_id = str(next(self.ids))
        self.outgoing[file_id] = path
        send(
            self.writer,
            {
                "type": "offer",
                "to": to,
                "id": file_id,
                "name": path.name,
                "size": size,
                "sha256": sha256,
            },
        )
        print(
            f"* offered {printable(path.name)} ({size_text(size)}) "
            f"to {printable(to)}: waiting for an answer"
        )

    def answer(self, accept):
        """C OK or C NO: answer the oldest offer still waiting."""
        if not self.offers:
            print("! no file is waiting for your answer")
            return
        offer = self.offers.popleft()
        reply = {
            "type": "accept" if accept else "decline",
            "from": offer["from"],
            "id": offer["id"],
        }
        if accept:
            try:
                path, file = open_new_file(self.downloads, safe_name(offer["name"]))
            except OSError as error:
                print(
                    f"! cannot save files in {self.downloads}: "
                    f"{error.strerror or error}; declined"
                )
                reply["type"] = "decline"
            else:
                self.incoming[(offer["from"], offer["id"])] = Download(
                    offer, path, file
                )
                print(
                    f"* receiving {printable(offer['name'])} "
                    f"from {printable(offer['from'])} into {path}"
                )
        send(self.writer, reply)

    async def send_file(self, file_id, to):
        path = self.outgoing[file_id]
        with open(path, "rb") as file:
            while block := file.read(CHUNK):
                if file_id not in self.outgoing:
                    return  # cancelled
                send(
                    self.writer,
                    {
                        "type": "chunk",
                        "id": file_id,
                        "data": base64.b64encode(block).decode(),
                    },
                )
                # drain() waits while the socket's buffer is full: the file goes out no
                # faster than the network takes it, and a chat line typed meanwhile
                # goes out between two chunks.
                await self.writer.drain()
        send(self.writer, {"type": "done", "id": file_id})
        del self.outgoing[file_id]
        show(f"* sent {printable(path.name)} to {printable(to)}")

    def handle(self, message):
        """A file message from the server:
        offer, accepted, declined, chunk, done or cancelled."""
        kind, key = message["type"], (message.get("from"), message.get("id"))
        download = self.incoming.get(key)
        if kind == "offer":
            self.offers.append(message)
            show(
                f"* {printable(message.get('from'))} "
                f"offers you {printable(message.get('name'))} "
                f"({size_text(message.get('size', 0))}): "
                "C OK to accept, C NO to decline"
            )
        elif kind == "accepted" and message.get("id") in self.outgoing:
            task = self.sending[message["id"]] = asyncio.create_task(
                self.send_file(message["id"], message.get("by"))
            )
            task.add_done_callback(lambda _: self.sending.pop(message["id"], None))
        elif kind == "declined" and message.get("id") in self.outgoing:
            path = self.outgoing.pop(message["id"])
            show(f"* {printable(message.get('by'))} declined {printable(path.name)}")
        elif kind == "chunk" and download:
            self.receive_chunk(download, message.get("data"))
        elif kind == "done" and download:
            self.finish(download)
        elif kind == "cancelled":
            self.cancelled(message, download)

    def receive_chunk(self, download, data):
        try:
            block = base64.b64decode(str(data), validate=True)
        except binascii.Error:
            block = None
        if block is None or download.received + len(block) > download.size:
            self.give_up(download, "it does not match its offer")
            send(
                self.writer,
                {"type": "cancel", "from": download.sender, "id": download.id},
            )
            return
        try:
            download.file.write(block)
        except OSError as error:  # a full disk, say: this file fails, the chat goes on
            self.give_up(download, error.strerror or str(error))
            send(
                self.writer,
                {"type": "cancel", "from": download.sender, "id": download.id},
            )
            return
        download.digest.update(block)
        download.received += len(block)

    def finish(self, download):
        """The sender says that was all:
        keep the file only if it is exactly what was offered."""
        del self.incoming[(download.sender, download.id)]
        if (
            download.received != download.size
            or download.digest.hexdigest() != download.sha256
        ):
            download.discard()
            show(
                f"! {download.name} from {printable(download.sender)} "
                "was damaged on the way (SHA-256 does not match): deleted"
            )
            return
        download.file.close()
        show(
            f"* saved {download.name} from {printable(download.sender)} "
            f"({size_text(download.size)}, SHA-256 checked) as {download.path}"
        )

    def give_up(self, download, why):
        del self.incoming[(download.sender, download.id)]
        download.discard()
        show(
            f"! {download.name} from {printable(download.sender)} was not saved: {why}"
        )

    def cancelled(self, message, download):
        if download:
            self.give_up(download, printable(message.get("reason")))
        elif (path := self.outgoing.pop(message.get("id"), None)) is not None:
            show(
                f"! {printable(path.name)} "
                f"was not sent to {printable(message.get('to'))}: "
                f"{printable(message.get('reason'))}"
            )
        ended = (message.get("from"), message.get("id"))
        self.offers = collections.deque(
            offer
            for offer in self.offers
            if (offer.get("from"), offer.get("id")) != ended
        )


# --8<-- [end:files]


async def join(reader, writer, keyboard, name):
    """Say hello until the server welcomes us. Returns the welcome."""
    client_id = uuid.uuid4().hex
    while True:
        name = name or (await keyboard.line("name: "))
        send(writer, {"type": "hello", "name": name, "client_id": client_id})
        reply = await receive(reader)
        if reply is None:
            raise ConnectionError()
        if reply.get("type") == "welcome":
            return reply
        if reply.get("code") == "server-full":
            sys.exit(f"error: {printable(reply.get('message', 'the server is full'))}")
        if reply.get("code") in ("bad-json", "tls-required"):  # another kind of server
            said = printable(reply.get("line") or reply.get("message"))[:80]
            sys.exit(f"error: this is not a stage-10 chat server: it sent '{said}'")
        print(render(reply))
        name = None


# --8<-- [start:tasks]
async def receive_forever(reader, user_lists, said_bye, files):
    """Show what the server sends, until it says bye (we are leaving) or goes away."""
    while (message := await receive(reader)) is not None:
        if message.get("type") == "bye":
            said_bye.set()
        elif message.get("type") == "users":
            user_lists.put_nowait(message)  # the command that asked for it prints it
        elif message["type"] in FILE_MESSAGES and isinstance(message.get("id"), str):
            files.handle(message)
        elif (line := render(message)) is not None:
            show(line)


async def ask(keyboard, prefix, what, where):
    """The text of a line that starts with `prefix` (C or D), read at the prompt
    `where`. None: an empty line."""
    print(f"\r{what}: type {prefix} <{what}> (an empty line cancels)")
    while True:
        line = await keyboard.line(where)
        if line[:2].upper() == f"{prefix} " and line[2:].strip():
            return line[2:].strip()
        if line.upper() in ("", prefix):  # nothing, or a D (or C) and nothing after it
            print(f"! an empty {what} is not sent: back to command mode")
            return None
        # A line that forgot its prefix is not dropped in silence: say how, ask again.
        print(f"! start the {what} with {prefix}, as in {prefix} {printable(line)}")


def sent(to, text):
    """Show what went out: the server sends a message to the others, not back to us."""
    print(f"[{datetime.now():%H:%M}] (to {printable(to)}) {printable(text)}")


async def show_users(writer, user_lists):
    """Ask for the user list and print it. The names, or None if it never came."""
    send(writer, {"type": "who"})
    try:
        users = await asyncio.wait_for(user_lists.get(), timeout=5)
    except asyncio.TimeoutError:
        print("! the server did not send the user list")
        return None
    print(render(users))
    names = users.get("names")
    return [str(name) for name in names] if isinstance(names, list) else []


async def recipient(keyboard, names, where):
    """Ask for a name at the prompt `where`; check it against the list just shown."""
    name = await ask(keyboard, "C", "name", where)
    # We have just fetched the list: say at once that nobody has the name, rather than
    # after the message is typed. Compared as the server does, without regard to case.
    if name is not None and name.lower() not in {online.lower() for online in names}:
        print(
            f"! nobody called {printable(name)} is online (no-such-user): "
            "back to command mode"
        )
        return None
    return name


async def direct_message(writer, keyboard, user_lists):
    if (names := await show_users(writer, user_lists)) is None:
        return
    if (name := await recipient(keyboard, names, "DM to whom> ")) is None:
        return
    if text := await ask(keyboard, "D", "message", f"DM to {printable(name)}> "):
        send(writer, {"type": "dm", "to": name, "text": text})
        sent(name, text)


async def offer_file(keyboard, user_lists, files):
    if (names := await show_users(files.writer, user_lists)) is None:
        return
    if (name := await recipient(keyboard, names, "file to whom> ")) is None:
        return
    if name.lower() == files.me.lower():
        print("! that is you: a file goes to someone else")
    elif path := await ask(keyboard, "C", "path", f"file for {printable(name)}> "):
        await files.offer(name, path)


async def commands(writer, keyboard, user_lists, files):
    """Follow your commands until C EX."""
    print("type C HELP for the commands")
    while (command := (await keyboard.line()).upper()) != "C EX":
        if command == "C PM":
            if (text := await ask(keyboard, "D", "message", "PM text> ")) is not None:
                send(writer, {"type": "say", "text": text})
                sent("everyone", text)
        elif command == "C DM":
            await direct_message(writer, keyboard, user_lists)
        elif command == "C FT":
            await offer_file(keyboard, user_lists, files)
        elif command in ("C OK", "C NO"):
            files.answer(accept=command == "C OK")
        elif command == "C LS":
            await show_users(writer, user_lists)
        elif command == "C HELP":
            print(HELP)
        elif command.startswith("C"):
            print(f"! unknown command {printable(command)}: C HELP lists the commands")
        elif command:
            print(
                "! unknown command: commands start with C, as in C PM "
                "(C HELP lists them)"
            )


# --8<-- [end:tasks]


# --8<-- [start:main]
# --8<-- [start:connect]
async def connect_securely(host, port, cafile):
    """A TLS connection to a server we trust: its certificate is signed
    by the CA in `cafile`, and names `host`. Anything else ends the
    program with one line saying why."""
    where = f"{host}:{port}"
    try:  # before connecting: a CA file we cannot read is no fault of the server's
        # The default context verifies the certificate and the host name.
        context = ssl.create_default_context(cafile=cafile)
    except OSError as error:  # ssl.SSLError too: a file that holds no certificate
        sys.exit(f"error: cannot use the CA file {cafile}: {error.strerror or error}")
    try:
        return await asyncio.open_connection(
            host, port, ssl=context, limit=MAX_LINE, ssl_handshake_timeout=10
        )
    except ssl.SSLCertVerificationError as error:
        sys.exit(f"error: will not trust the server at {where}: {error.verify_message}")
    except ssl.SSLError as error:
        sys.exit(
            f"error: {where} is not a stage-10 chat server: "
            f"no TLS ({error.reason or error})"
        )
    except asyncio.TimeoutError:
        sys.exit(
            f"error: {where} is not a stage-10 chat server: "
            "no answer to the TLS handshake within 10 s"
        )
    except OSError as error:
        sys.exit(f"error: cannot connect to {where}: {reason(error)}")


# --8<-- [end:connect]


def reason(error):
    """The system's words for an OSError, as stage 05 prints them: asyncio's own
    message is "Connect call failed ('127.0.0.1', 65432)"."""
    if error.errno and not isinstance(error, socket.gaierror):  # getaddrinfo's codes
        return os.strerror(error.errno)
    return error.strerror or str(error)


async def chat(args):
    loop = asyncio.get_running_loop()
    reader, writer = await connect_securely(args.host, args.port, args.cafile)
    keyboard, user_lists, said_bye = Keyboard(loop), asyncio.Queue(), asyncio.Event()
    receiving = None
    try:
        welcome = await join(reader, writer, keyboard, args.name)
        print(render(welcome))
        max_size = welcome.get("max_file_size")
        max_size = max_size if isinstance(max_size, int) else 0
        files = Files(writer, args.downloads, max_size, str(welcome.get("name", "")))
        receiving = asyncio.create_task(
            receive_forever(reader, user_lists, said_bye, files)
        )
        typing = asyncio.create_task(commands(writer, keyboard, user_lists, files))
        # Whichever ends first ends the chat: C EX (or Ctrl+C, Ctrl+D),
        # or the server going away.
        done, _ = await asyncio.wait(
            [receiving, typing], return_when=asyncio.FIRST_COMPLETED
        )
        if receiving in done:
            typing.cancel()
            print("\rconnection closed by server")
            return
        error = typing.exception()
        if isinstance(error, Exception) and not isinstance(error, Leave):
            raise error  # a bug: show it rather than hide it
    except Leave:
        pass  # Ctrl+C or Ctrl+D: leave cleanly
    except ConnectionError:
        print("\rconnection closed by server")
        return
    print()
    # Left at the name prompt: not in the room, nobody to say bye to.
    if receiving is None:
        writer.close()
        return
    await leave(writer, said_bye)


async def leave(writer, said_bye):
    """Say bye, and wait (two seconds at most) for the server's answer,
    so it knows we quit on purpose."""
    try:
        send(writer, {"type": "bye"})
        await writer.drain()
        await asyncio.wait_for(said_bye.wait(), timeout=2)
    except (OSError, asyncio.TimeoutError):
        pass
    writer.close()


def main():
    args = parse_args()
    try:
        asyncio.run(chat(args))
    except KeyboardInterrupt:
        # Ctrl+C before the keyboard was set up (while connecting): nothing to clean up.
        pass


# --8<-- [end:main]


if __name__ == "__main__":
    main()
