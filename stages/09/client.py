"""Stage 09 client: stage 05's command-mode client, on asyncio.

Run it:    python3 stages/09/client.py [--host HOST] [--port PORT] [--name NAME]

The UI is stage 05's (C PM, C DM, C LS, C EX, C HELP; D <text>). Stage 05 needed a
receiver thread because input() blocks; here the keyboard is one more thing the
event loop watches (loop.add_reader), so two coroutines share one thread: one
shows what the server sends, one follows your commands.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from datetime import datetime

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432
prompt = "command> "  # where you are: Keyboard.line() sets it, show() draws it again
HELP = """commands:
  C PM     send a public message (then type D <message>)
  C DM     send a direct message (then C <name>, then D <message>)
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
        description="Stage 09: chat client with commands, on asyncio."
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
            sys.exit(f"error: this is not a stage-09 chat server: it sent '{said}'")
        print(render(reply))
        name = None


# --8<-- [start:tasks]
async def receive_forever(reader, user_lists, said_bye):
    """Show what the server sends, until it says bye (we are leaving) or goes away."""
    while (message := await receive(reader)) is not None:
        if message.get("type") == "bye":
            said_bye.set()
        elif message.get("type") == "users":
            user_lists.put_nowait(message)  # the command that asked for it prints it
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


async def recipient(keyboard, names):
    """Ask for a name, and check it against the user list just shown."""
    name = await ask(keyboard, "C", "name", "DM to whom> ")
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
    if (name := await recipient(keyboard, names)) is None:
        return
    if text := await ask(keyboard, "D", "message", f"DM to {printable(name)}> "):
        send(writer, {"type": "dm", "to": name, "text": text})
        sent(name, text)


async def commands(writer, keyboard, user_lists):
    """Follow your commands until C EX."""
    print("type C HELP for the commands")
    while (command := (await keyboard.line()).upper()) != "C EX":
        if command == "C PM":
            if (text := await ask(keyboard, "D", "message", "PM text> ")) is not None:
                send(writer, {"type": "say", "text": text})
                sent("everyone", text)
        elif command == "C DM":
            await direct_message(writer, keyboard, user_lists)
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
async def chat(args):
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await asyncio.open_connection(args.host, args.port)
    except OSError as error:
        sys.exit(f"error: cannot connect to {args.host}:{args.port}: {reason(error)}")
    keyboard, user_lists, said_bye = Keyboard(loop), asyncio.Queue(), asyncio.Event()
    receiving = None
    try:
        print(render(await join(reader, writer, keyboard, args.name)))
        receiving = asyncio.create_task(receive_forever(reader, user_lists, said_bye))
        typing = asyncio.create_task(commands(writer, keyboard, user_lists))
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


def reason(error):
    """The system's words for an OSError, as stage 05 prints them: asyncio's own
    message is "Connect call failed ('127.0.0.1', 65432)"."""
    if error.errno and not isinstance(error, socket.gaierror):  # getaddrinfo's codes
        return os.strerror(error.errno)
    return error.strerror or str(error)


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
