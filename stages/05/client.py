"""Stage 05 client: the complete chat, driven by commands.

Run it:    python3 stages/05/client.py [--host HOST] [--port PORT] [--name NAME]

Commands start with "C ", message data with "D " (HELP lists them). A receiver
thread prints what arrives, the main thread reads what you type, as in stage 04.
"""

import argparse
import json
import os
import queue
import signal
import socket
import sys
import threading
import uuid
from datetime import datetime

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432
prompt = "command> "  # where you are: read() sets it, show() draws it again


def port_number(text):
    port = int(text)
    if not 0 < port <= 65535:
        raise ValueError(text)
    return port


def parse_args():
    parser = argparse.ArgumentParser(description="Stage 05: chat client with commands.")
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
        self.leaving = False  # we said bye: the server closing is now expected

    def send(self, message):
        # sendall(): send() may send only part. Blocking is fine: we talk to one server.
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
    if kind == "dm":
        return f"{stamp} [direct] {get('from')}: {get('text')}"
    if kind == "users":
        names = message.get("names")
        return "* online: " + ", ".join(
            map(printable, names if isinstance(names, list) else [])
        )
    if kind == "shutdown":
        return f"{stamp} * the server is shutting down"
    if kind == "error":
        return f"! {get('message')} ({get('code')})"
    if kind == "bye":
        return None
    return f"? {printable(json.dumps(message))}"


def show(line):
    # "\r" goes back over the prompt; then a fresh prompt for what you type next.
    print(f"\r{line}\n{prompt}", end="", flush=True)


def read(where):
    """input() at the prompt `where`, which show() draws from now on."""
    global prompt
    prompt = where
    return input(where).strip()


def show_all(messages):
    for message in messages:
        if (line := render(message)) is not None:
            show(line)


def join(conn, name):
    """Say hello until the server welcomes us. Returns the welcome."""
    # Lets the server tell apart two connections with the same name.
    client_id = uuid.uuid4().hex
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
            sys.exit(f"error: this is not a stage-05 chat server: it sent '{said}'")
        print(render(reply))
        name = None  # bad-name: ask again


# --8<-- [start:receiver]
def receive_forever(conn, said_bye, user_lists):
    """The receiver thread: print what the server sends until it says bye or goes."""
    try:
        show_all(conn.unread)  # anything that came in right behind the welcome
        conn.unread = []
        while True:
            for message in conn.receive():
                if message.get("type") == "bye":
                    said_bye.set()  # the main thread is waiting for this in leave()
                    return
                if message.get("type") == "users":
                    # The main thread asked for it, and prints it itself.
                    user_lists.put(message)
                else:
                    show_all([message])
    except (ServerClosed, OSError):
        if said_bye.is_set() or conn.leaving:
            return
        print("\rconnection closed by server", flush=True)
        # The main thread is blocked in input(), and nothing portable can wake it up.
        # The conversation is over, so we end the whole process here.
        os._exit(0)


HELP = """commands:
  C PM     send a public message (then type D <message>)
  C DM     send a direct message (then C <name>, then D <message>)
  C LS     list the users online
  C EX     leave the chat
  C HELP   show this list"""


def ask(prefix, what, where):
    """The text of a line that starts with `prefix` (C or D); None: an empty line."""
    # "\r": start over a prompt the receiver may have drawn.
    print(f"\r{what}: type {prefix} <{what}> (an empty line cancels)")
    while True:
        line = read(where)
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


def public_message(conn):
    if (text := ask("D", "message", "PM text> ")) is not None:
        conn.send({"type": "say", "text": text})
        sent("everyone", text)


def show_users(conn, user_lists):
    """Ask for the user list and print it; return its names (None: it never came)."""
    conn.send({"type": "who"})
    try:
        users = user_lists.get(timeout=5)
    except queue.Empty:
        print("! the server did not send the user list")
        return None
    print(render(users))  # printed here, so our next prompt comes after it
    names = users.get("names")
    return [str(name) for name in names] if isinstance(names, list) else []


def direct_message(conn, user_lists):
    if (names := show_users(conn, user_lists)) is None:
        return
    if (name := ask("C", "name", "DM to whom> ")) is None:
        return
    # Nobody online has the name: say so now, not once the message is typed.
    if name.lower() not in {online.lower() for online in names}:
        print(
            f"! nobody called {printable(name)} is online (no-such-user): "
            "back to command mode"
        )
        return
    if (text := ask("D", "message", f"DM to {printable(name)}> ")) is not None:
        conn.send({"type": "dm", "to": name, "text": text})
        sent(name, text)


def chat(conn, user_lists):
    """The main thread: read commands until C EX, or Ctrl+D or Ctrl+C (they raise)."""
    print("type C HELP for the commands")
    while True:
        command = read("command> ").upper()
        if command == "C PM":
            public_message(conn)
        elif command == "C DM":
            direct_message(conn, user_lists)
        elif command == "C LS":
            show_users(conn, user_lists)
        elif command == "C EX":
            return
        elif command == "C HELP":
            print(HELP)
        elif command.startswith("C"):
            print(f"! unknown command {printable(command)}: C HELP lists the commands")
        elif command:
            print(
                "! unknown command: commands start with C, as in C PM "
                "(C HELP lists them)"
            )


# --8<-- [end:receiver]


def leave(conn, said_bye, receiver):
    """Say bye and wait (briefly) for the answer: the server knows we meant to quit."""
    conn.leaving = True
    try:
        conn.send({"type": "bye"})
        if receiver.is_alive():  # only the receiver thread can see the answer
            said_bye.wait(timeout=2)
    except (OSError, KeyboardInterrupt):
        pass  # the server is gone, or you pressed Ctrl+C twice: we are leaving anyway


def start_without_interruption(thread):
    """Start a thread with Ctrl+C held back: raised inside start(), it escaped us."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


# --8<-- [start:main]
def main():
    args = parse_args()
    with connect(args.host, args.port) as sock:
        conn = Connection(sock)
        said_bye, user_lists = threading.Event(), queue.Queue()
        receiver = threading.Thread(
            target=receive_forever, args=(conn, said_bye, user_lists), daemon=True
        )
        # Everything from here on is inside the try: Ctrl+C can arrive at any moment.
        try:
            print(render(join(conn, args.name)))  # no prompt: input() draws it
            start_without_interruption(receiver)
            chat(conn, user_lists)
        except (EOFError, KeyboardInterrupt):
            pass  # Ctrl+D or Ctrl+C: leave cleanly, without a traceback
        except (ServerClosed, ConnectionError):
            print("\rconnection closed by server")
            return
        print()
        leave(conn, said_bye, receiver)


# --8<-- [end:main]


if __name__ == "__main__":
    main()
