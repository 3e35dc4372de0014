"""Stage 11 client: a minimal IRC client, for the kit's checks to drive as the others.

Run it:    python3 stages/11/client.py [--host HOST] [--port PORT] [--name NICK]

The stage needs no client of its own: irssi or WeeChat is the client. This one is
stage 04's client speaking IRC: a receiver thread prints what the server sends and
answers its PINGs, while the main thread reads what you type. It registers (NICK,
USER), joins #kit, and sends each line you type to #kit. A line that starts with /
is a command: /msg NICK TEXT, /me TEXT, /quit [REASON]; any other /WORD ARGS goes
to the server as the IRC command WORD ARGS, so /who #kit or /nick ada work too.
"""

import argparse
import os
import re
import socket
import sys
import threading

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6667
CHANNEL = "#kit"


def port_number(text):
    port = int(text)
    if not 0 < port <= 65535:
        raise ValueError(text)
    return port


def parse_args():
    parser = argparse.ArgumentParser(description="Stage 11: a minimal IRC client.")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"server address (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"server port (default {DEFAULT_PORT})",
    )
    parser.add_argument("--name", help="your nickname (asked for if not given)")
    return parser.parse_args()


def connect(host, port):
    try:
        return socket.create_connection((host, port))
    except OSError as error:
        sys.exit(f"error: cannot connect to {host}:{port}: {error.strerror or error}")


# --8<-- [start:wire]
def line(command, *params):
    """One line to send. The last parameter goes as the trailing one (after " :"),
    the only place a space may be: "PRIVMSG #kit :hi all"."""
    words = [command, *params[:-1], f":{params[-1]}"] if params else [command]
    return " ".join(words).encode("utf-8") + b"\r\n"


def parse(data):
    """A received line -> (the sender's nick or the server's name, COMMAND, params).
    IRC is bytes: text that is not UTF-8 is read as Latin-1, as irssi does."""
    try:
        text = data.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        text = data.decode("latin-1").rstrip("\r")
    source = ""
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
        source = prefix.split("!", 1)[0]  # nick!user@host: we show the nick
    middle, colon, trailing = text.partition(" :")
    command, *params = middle.split() or [""]
    return source, command.upper(), params + [trailing] * bool(colon)


# --8<-- [end:wire]


class ServerClosed(Exception):
    pass


class Connection:
    """The socket to the server, for two threads: both may send (the receiver
    answers PINGs), so a lock keeps their lines from mixing."""

    def __init__(self, sock):
        self.sock = sock
        self.lock = threading.Lock()
        self.pending = b""  # the start of a line whose end has not arrived
        self.unread = []  # messages received but not handed out yet
        self.nick = None  # ours, once the server has agreed to it
        self.leaving = False  # set once we have sent QUIT: the close is expected

    def send(self, command, *params):
        with self.lock:
            self.sock.sendall(line(command, *params))

    def receive(self):
        """The messages not handed out yet, or else those that one read completes
        (maybe none)."""
        if self.unread:
            messages, self.unread = self.unread, []
            return messages
        data = self.sock.recv(4096)
        if not data:
            raise ServerClosed()
        *lines, self.pending = (self.pending + data).split(b"\n")
        return [parse(data) for data in lines if data.strip()]


# --8<-- [start:render]
def printable(text):
    # IRC passes control characters through: colours (^C), bold (^B), CTCP (^A),
    # and escape sequences that would take over the terminal. Showing them safely
    # is the client's job: each one is shown as \uXXXX.
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)


def render(conn, source, command, params):
    """How one message from the server looks on screen (None: nothing to show)."""
    who, text = printable(source), printable(params[-1] if params else "")
    first = printable(params[0]) if params else ""  # a broken line may have none
    if command in ("PRIVMSG", "NOTICE") and len(params) == 2:
        action = re.fullmatch("\x01ACTION (.*?)\x01?", params[1])  # /me
        if action:
            return f"* {who} {printable(action.group(1))}"
        if command == "NOTICE":
            return f"-{who}- {text}"
        return f"<{who}> {text}" if params[0].startswith("#") else f"*{who}* {text}"
    if command == "JOIN":
        if source == conn.nick:
            return f"* now talking in {text} as {who}"
        return f"* {who} joined {text}"
    if command == "PART":
        return f"* {who} left {first}"
    if command == "QUIT":
        return f"* {who} quit ({text})"
    if command == "NICK":
        if source == conn.nick and params:
            conn.nick = params[0]
        return f"* {who} is now {text}"
    if command == "TOPIC":
        return f"* {who} set the topic of {first}: {text}"
    if command == "ERROR":
        return f"! {text}"
    if command == "353" and len(params) > 2:  # NAMES: who is in the channel
        return f"* in {printable(params[2])}: {text}"
    if command.isdigit() and command != "366":  # 366 ends NAMES
        mark = "!" if command[0] in "45" else "-"  # 4xx and 5xx are errors
        return f"{mark} {' '.join(map(printable, params[1:]))}"
    return None


# --8<-- [end:render]


def show(text):
    # "\r" moves back over the "> " prompt; then a fresh prompt for what you type.
    print(f"\r{text}\n> ", end="", flush=True)


def ask_for_nick():
    while not (nick := input("name: ").strip()):
        pass  # an empty line: ask again
    return nick


# --8<-- [start:register]
def register(conn, nick):
    """NICK and USER, then JOIN #kit once the server has welcomed us (001). A nick
    that is taken (433), bad (432) or empty (431) is asked for again."""
    nick = nick or ask_for_nick()
    user = re.sub(r"[^A-Za-z0-9]", "", nick)[:10] or "kit"
    conn.send("NICK", nick)
    conn.send("USER", user, "0", "*", nick)
    while True:
        messages = conn.receive()
        while messages:
            source, command, params = messages.pop(0)
            if not re.fullmatch(r"\d{3}|[A-Z]+", command):  # 001, PING, ERROR...
                # Not IRC: another kind of server (JSON Lines, stage 02's, an echo).
                said = printable(" ".join([command, *params]))[:80]
                sys.exit(f"error: this is not a stage-11 chat server: it sent '{said}'")
            if (text := render(conn, source, command, params)) is not None:
                print(text)
            if command == "PING":  # some servers ask before they welcome
                conn.send("PONG", *params[-1:])
            elif command == "001":
                conn.nick = params[0]  # the nick the server knows us by
                conn.send("JOIN", CHANNEL)
            elif command in ("431", "432", "433"):
                conn.send("NICK", ask_for_nick())
            elif command == "JOIN" and source == conn.nick:
                conn.unread = messages  # in #kit: the rest is the receiver thread's
                return


# --8<-- [end:register]


# --8<-- [start:receiver]
def receive_forever(conn, gone):
    """The receiver thread: print what the server sends, answer its PINGs (or it
    drops us as gone), until the server closes the connection."""
    try:
        while True:
            for source, command, params in conn.receive():
                if command == "PING":
                    conn.send("PONG", *params[-1:])
                elif (text := render(conn, source, command, params)) is not None:
                    show(text)
    except (ServerClosed, OSError):
        gone.set()
        if conn.leaving:
            return
        print("\rconnection closed by server", flush=True)
        # The main thread is blocked in input(), and nothing portable can wake it up.
        # The conversation is over, so we end the whole process here.
        os._exit(0)


def chat(conn):
    """The main thread: read what you type and send it."""
    while True:
        # input() raises EOFError on Ctrl+D, KeyboardInterrupt on Ctrl+C.
        text = input("> ").strip()
        if not text.startswith("/"):
            if text:
                conn.send("PRIVMSG", CHANNEL, text)
            continue
        word, _, rest = text[1:].partition(" ")
        if word.lower() == "quit":
            return rest
        if word.lower() == "msg":  # the server says what is missing (411, 412)
            conn.send("PRIVMSG", *rest.partition(" ")[::2])
        elif word.lower() == "me":
            conn.send("PRIVMSG", CHANNEL, f"\x01ACTION {rest}\x01")
        elif word:  # any other command, sent as it was typed: /topic #kit :tea
            conn.send(f"{word.upper()} {rest}".strip())


# --8<-- [end:receiver]


def leave(conn, gone, reason, receiver):
    """QUIT, and wait (briefly) for the server to close: it tells the others first,
    then us (ERROR)."""
    conn.leaving = True
    try:
        conn.send("QUIT", reason or "leaving")
        if receiver.is_alive():  # only the receiver thread sees the close
            gone.wait(timeout=2)
    except (OSError, KeyboardInterrupt):
        pass  # the server is gone, or you pressed Ctrl+C twice: we are leaving anyway


# --8<-- [start:main]
def main():
    args = parse_args()
    with connect(args.host, args.port) as sock:
        conn = Connection(sock)
        gone = threading.Event()  # set by the receiver once the server has closed
        receiver = threading.Thread(
            target=receive_forever, args=(conn, gone), daemon=True
        )
        reason = ""
        try:
            register(conn, args.name)
            receiver.start()
            reason = chat(conn)
        except (EOFError, KeyboardInterrupt):
            pass  # Ctrl+D or Ctrl+C: leave cleanly, without a traceback
        except (ServerClosed, ConnectionError):
            print("\rconnection closed by server")
            return
        print()
        leave(conn, gone, reason, receiver)


# --8<-- [end:main]


if __name__ == "__main__":
    main()
