"""Stage 07 client: a terminal UI, with IRC-style slash commands.

Run it:    python3 stages/07/client.py [--host HOST] [--port PORT] [--name NAME]
                                      [--plain]

Plain text is a public message. Commands start with "/":
  /msg NAME TEXT   a direct message        /list   who is online
  /help            the commands            /quit   leave (so do Ctrl+D and Ctrl+C)
Up and Down recall what you typed; Page Up and Page Down scroll the messages.

The wire protocol is stage 05's: only the UI changed. One class, Chat, speaks the
protocol; two UIs draw it: curses in a terminal, and plain lines with --plain or
when there is no terminal (a pipe). Neither thread nor lock: one select() loop
waits for the keyboard and the server at once, as stage 02's server did.
"""

import argparse
import collections
import curses
import json
import locale
import os
import selectors
import signal
import socket
import sys
import textwrap
import uuid
from datetime import datetime

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432
HELP = [
    "* /msg NAME TEXT  a direct message",
    "* /list  who is online",
    "* /quit  leave (or Ctrl+D, Ctrl+C)",
    "* /help  this list; plain text goes to everyone; PgUp/PgDn scroll, Up/Down recall",
]


def port_number(text):
    port = int(text)
    if not 0 < port <= 65535:
        raise ValueError(text)
    return port


def parse_args():
    parser = argparse.ArgumentParser(description="Stage 07: chat client, terminal UI.")
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
        "--plain", action="store_true", help="plain lines instead of the full-screen UI"
    )
    return parser.parse_args()


def connect(host, port):
    try:
        return socket.create_connection((host, port))
    except OSError as error:
        sys.exit(f"error: cannot connect to {host}:{port}: {error.strerror or error}")


class ServerClosed(Exception):
    pass


class Lines:
    """Whole lines from a file descriptor that delivers bytes in any pieces:
    the socket, or the keyboard.

    The same framing as the server's: keep what has no newline yet, hand out what has.
    """

    def __init__(self, read):
        self.read, self.pending = read, b""

    def more(self):
        data = self.read()
        if not data:
            raise EOFError()  # the server hung up, or Ctrl+D / the end of a pipe
        *lines, self.pending = (self.pending + data).split(b"\n")
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in lines]


class Connection:
    """JSON messages, one per line, over the socket."""

    def __init__(self, sock):
        self.sock, self.lines = sock, Lines(lambda: sock.recv(65536))

    def send(self, message):
        # sendall(): send() may write only part of it.
        self.sock.sendall((json.dumps(message) + "\n").encode("utf-8"))

    def receive(self):
        try:
            return [parse(line) for line in self.lines.more() if line.strip()]
        except (EOFError, ConnectionError):
            raise ServerClosed() from None


def parse(line):
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # too deep: [[[[...
        message = None
    broken = {"type": "error", "code": "bad-json", "message": "a broken line"}
    # Every message has a type, a string: ["said"] is no type (nor a key in a dict).
    typed = isinstance(message, dict) and isinstance(message.get("type"), str)
    return message if typed else {**broken, "line": line}


def printable(text):
    # Names and messages may hold escape sequences that would take over our
    # terminal: show them as \uXXXX.
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in str(text))


def clock(stamp=None):
    try:
        when = datetime.fromisoformat(stamp).astimezone() if stamp else datetime.now()
        return when.strftime("%H:%M")
    except (TypeError, ValueError):
        return "--:--"


# --8<-- [start:describe]
def describe(message):
    """(text, style) for one server message, or None.

    The style is a meaning; each UI decides its look."""
    kind, get = message.get("type"), lambda field: printable(message.get(field, ""))
    stamp = f"[{clock(message.get('time'))}]"
    if kind == "said":
        style = "history" if message.get("history") else "normal"
        return f"{stamp} {get('from')}: {get('text')}", style
    if kind == "dm":
        return f"{stamp} [direct] {get('from')}: {get('text')}", "dm"
    if kind == "users":
        names = message.get("names") if isinstance(message.get("names"), list) else []
        return "* online: " + ", ".join(map(printable, names)), "notice"
    notices = {
        "welcome": f"* welcome, {get('name')} ({get('online')} online)",
        "joined": f"* {get('name')} joined",
        "left": f"* {get('name')} left ({get('reason')})",
        "shutdown": "* the server is shutting down",
    }
    if kind in notices:
        return f"{stamp} {notices[kind]}", "notice"
    if kind == "error":
        return f"! {get('message')} ({get('code')})", "error"
    return None  # bye, or a message type from a newer server


# --8<-- [end:describe]


# --8<-- [start:chat]
class Chat:
    """The chat itself, whatever draws it: typed lines become protocol messages,
    server messages become lines."""

    def __init__(self, conn, welcome, ui):
        self.conn, self.ui, self.running = conn, ui, True
        self.name, self.online = welcome["name"], welcome.get("online", 1)
        # What each `who` we sent is for, oldest first: None for /list; for the check
        # of a DM, its line, shown once the server has taken the DM ("" if refused).
        self.asked = collections.deque()

    def typed(self, line):
        line = line.strip()
        if line.startswith("/"):
            self.command(*line[1:].split(" ", 1))
        elif line:
            self.conn.send({"type": "say", "text": line})
            self.ui.show(f"[{clock()}] {self.name}: {line}", "mine")

    def command(self, name, rest=""):
        name, (to, _, text) = name.lower(), rest.strip().partition(" ")
        text = text.strip()
        if name == "msg" and to and text:
            # The server answers a dm only to refuse it (no-such-user), and answers in
            # order: once the answer to a `who` sent just after it comes, it has the DM.
            self.conn.send({"type": "dm", "to": to, "text": text})
            self.conn.send({"type": "who"})
            self.asked.append(f"[{clock()}] [direct to {to}] {self.name}: {text}")
        elif name == "msg":
            self.ui.show("! usage: /msg NAME TEXT", "error")
        elif name == "list":
            self.conn.send({"type": "who"})
            self.asked.append(None)
        elif name == "quit":
            self.running = False
        elif name == "help":
            for line in HELP:
                self.ui.show(line, "notice")
        else:
            self.ui.show(
                f"! unknown command /{printable(name)}: /help lists the commands",
                "error",
            )

    def received(self, message):
        kind = message.get("type")
        self.online += {"joined": 1, "left": -1}.get(kind, 0)
        if kind == "users" and isinstance(message.get("names"), list):
            self.online = len(message["names"])
        line = describe(message)
        if kind == "error" and message.get("code") == "no-such-user" and self.asked:
            if self.asked[0] is not None:
                self.asked[0] = ""  # the oldest DM still checked: refused, never shown
        elif kind == "users" and self.asked:
            dm = self.asked.popleft()
            if dm is not None:  # a DM's check, not /list: show the DM, not the list
                line = (dm, "mine") if dm else None
        if line is not None:
            self.ui.show(*line)


# --8<-- [end:chat]


class PlainUI:
    """One line per message, for a pipe or a simple terminal."""

    def __enter__(self):
        return self

    def __exit__(self, *error):
        return False

    def show(self, text, style):
        if style != "mine":  # you already see what you typed: the terminal echoed it
            print(text, flush=True)

    def keys(self, keyboard):
        return keyboard.more()


# --8<-- [start:curses]
class CursesUI:
    """A scrolling message pane above a one-line input box,
    redrawn from our own state after every event.

    Because we redraw everything, a message that arrives while you type cannot
    clobber your line: the pane and the input box are drawn separately, and
    curses sends only what changed.
    """

    STATUS, SEPARATOR_AND_INPUT = 1, 2

    def __enter__(self):
        locale.setlocale(locale.LC_ALL, "")  # curses needs the locale to draw UTF-8
        self.screen = curses.initscr()
        curses.noecho()
        curses.cbreak()  # keys one at a time; Ctrl+C still raises KeyboardInterrupt
        self.screen.keypad(True)  # arrows and Page Up arrive as single KEY_* codes
        self.screen.nodelay(True)  # get_wch() never blocks: select() does the waiting
        self.styles = make_styles()
        self.messages = collections.deque(maxlen=1000)
        self.typing, self.past, self.recall = "", [], 0
        self.scrolled, self.chat = 0, None
        return self

    def __exit__(self, *error):
        rows, columns = self.screen.getmaxyx()
        curses.endwin()  # give the terminal back as we found it, even after an error
        # endwin() also takes away all we drew, the chat with it: leave the last
        # screenful of messages behind, as plain lines.
        pane = max(1, rows - self.STATUS - self.SEPARATOR_AND_INPUT)
        for text, _ in self.wrapped(columns)[-pane:]:
            print(text)
        return False

    def show(self, text, style):
        self.messages.append((text, style))
        self.draw()

    def keys(self, keyboard):
        """Read every key waiting; return the lines completed with Enter."""
        done = []
        while True:
            try:
                key = self.screen.get_wch()
            except curses.error:  # no more keys for now
                break
            if key in ("\n", "\r", curses.KEY_ENTER):
                done.append(self.typing)
                self.past, self.recall = self.past + [self.typing], len(self.past) + 1
                self.typing = ""
            elif key == "\x04" and not self.typing:  # Ctrl+D on an empty line: leave
                raise EOFError()
            else:
                self.edit(key)
        self.draw()
        return done

    def edit(self, key):
        pane = self.screen.getmaxyx()[0] - self.STATUS - self.SEPARATOR_AND_INPUT
        if key in (curses.KEY_BACKSPACE, "\x7f", "\b"):
            self.typing = self.typing[:-1]
        elif key in (curses.KEY_UP, curses.KEY_DOWN) and self.past:
            step = -1 if key == curses.KEY_UP else 1
            self.recall = max(0, min(len(self.past), self.recall + step))
            self.typing = (self.past + [""])[self.recall]
        elif key in (curses.KEY_PPAGE, curses.KEY_NPAGE):
            # draw() keeps it in range.
            self.scrolled += pane - 1 if key == curses.KEY_PPAGE else 1 - pane
        elif key == curses.KEY_RESIZE:
            self.resize()
        elif isinstance(key, str) and key.isprintable():
            self.typing += key

    def resize(self):
        columns, rows = os.get_terminal_size(sys.stdout.fileno())
        # resizeterm() also queues a KEY_RESIZE, which brings us back here:
        # only call it when the size really changed, or each KEY_RESIZE would
        # queue the next one, forever.
        if curses.is_term_resized(rows, columns):
            curses.resizeterm(rows, columns)
        # The next refresh repaints every cell, not just the changes.
        self.screen.clearok(True)

    def wrapped(self, columns):
        """The messages as (line, style), each wrapped to fit `columns`."""
        return [
            (part, style)
            for text, style in self.messages
            for part in textwrap.wrap(text, columns - 1, subsequent_indent="  ") or [""]
        ]

    def draw(self):
        rows, columns = self.screen.getmaxyx()
        self.screen.erase()
        if rows < 4 or columns < 20:
            self.screen.addstr(0, 0, "too small"[: columns - 1])
            self.screen.refresh()
            return
        pane = rows - self.STATUS - self.SEPARATOR_AND_INPUT
        lines = self.wrapped(columns)
        self.scrolled = max(0, min(self.scrolled, len(lines) - pane))
        end = len(lines) - self.scrolled
        shown = lines[max(0, end - pane) : end]
        for row, (text, style) in enumerate(shown, start=self.STATUS):
            self.screen.addstr(row, 0, text, self.styles[style])
        status = (
            f" {self.chat.name} | {self.chat.online} online | /help for commands"
            if self.chat
            else " chat"
        )
        status += " | scrolled up: PgDn" if self.scrolled else ""
        self.screen.addstr(
            0, 0, status[: columns - 1].ljust(columns - 1), curses.A_REVERSE
        )
        self.screen.hline(rows - 2, 0, curses.ACS_HLINE, columns)
        # A line too long for the screen shows its end.
        self.screen.addstr(rows - 1, 0, ("> " + self.typing)[-(columns - 1) :])
        self.screen.refresh()


# --8<-- [end:curses]


def make_styles():
    colour = curses.has_colors()
    if colour:
        curses.start_color()
        curses.use_default_colors()  # -1 below: the terminal's own background
        inks = (
            curses.COLOR_GREEN,
            curses.COLOR_MAGENTA,
            curses.COLOR_CYAN,
            curses.COLOR_RED,
        )
        for number, ink in enumerate(inks, 1):
            curses.init_pair(number, ink, -1)

    def pair(number):
        return curses.color_pair(number) if colour else curses.A_NORMAL

    return {
        "normal": curses.A_NORMAL,
        "history": curses.A_DIM,
        "mine": pair(1) | curses.A_BOLD,
        "dm": pair(2),
        "notice": pair(3),
        "error": pair(4) | curses.A_BOLD,
    }


def join(conn, name, keyboard):
    """Say hello until the server welcomes us (asking for a name on the plain terminal).

    Returns the welcome."""
    client_id, asked = uuid.uuid4().hex, []
    while True:
        while not name:
            print("name: ", end="", flush=True)
            try:
                # Our own line reader, not input(): a pipe's next lines must stay ours.
                asked = asked or keyboard.more()
            except (EOFError, KeyboardInterrupt):
                print()  # end the prompt's line: the shell's prompt goes on a new one
                raise
            name = asked.pop(0).strip() if asked else None
        conn.send({"type": "hello", "name": name, "client_id": client_id})
        while not (replies := conn.receive()):
            pass
        if replies[0].get("type") == "welcome":
            return replies[0], replies[1:], asked
        if replies[0].get("code") == "server-full":
            sys.exit(
                f"error: {printable(replies[0].get('message', 'the server is full'))}"
            )
        if replies[0].get("code") in ("bad-json", "tls-required"):  # another kind
            said = printable(replies[0].get("line") or replies[0].get("message"))[:80]
            sys.exit(f"error: this is not a stage-07 chat server: it sent '{said}'")
        print(describe(replies[0])[0])
        name = None  # bad-name or name-taken: ask again


# --8<-- [start:loop]
def run(conn, chat, ui, keyboard):
    """One thread waits for both the keyboard and the server:
    whichever is ready is handled."""
    selector = selectors.DefaultSelector()
    selector.register(conn.sock, selectors.EVENT_READ, "server")
    try:
        selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "keyboard")
        from_file = False
    except PermissionError:
        # epoll refuses a regular file (< file.txt, < /dev/null). A file is always ready
        # to read anyway: read some of it at every turn, and never wait for the server.
        from_file = True
    # A resized terminal sends SIGWINCH, which would not wake select().
    # set_wakeup_fd makes every signal also write a byte to a socket we watch, so a
    # resize is one more event in the loop.
    wake_read, wake_write = socket.socketpair()
    wake_write.setblocking(False)
    signal.set_wakeup_fd(wake_write.fileno())
    signal.signal(signal.SIGWINCH, lambda *_: None)
    selector.register(wake_read, selectors.EVENT_READ, "signal")
    if isinstance(ui, CursesUI):
        # A resize before our handler was in place reached curses' own handler, which
        # queues a KEY_RESIZE where select() cannot see it: read what curses holds now.
        for line in ui.keys(keyboard):
            chat.typed(line)
    try:
        while chat.running:
            ready = [key.data for key, _ in selector.select(0 if from_file else None)]
            for source in ready + ["keyboard"] * from_file:
                if source == "server":
                    for message in conn.receive():
                        chat.received(message)
                elif source == "keyboard":
                    for line in ui.keys(keyboard):
                        chat.typed(line)
                else:
                    wake_read.recv(512)
                    if isinstance(ui, CursesUI):
                        ui.resize()
                        ui.draw()
    finally:
        signal.set_wakeup_fd(-1)


# --8<-- [end:loop]


def leave(conn, chat=None):
    """Say bye and wait (two seconds at most) for the server's answer, so it knows we
    quit on purpose. `chat` gets what comes before the answer: in plain mode, the
    replies to the last lines of a pipe or a file, typed faster than it answers."""
    try:
        conn.send({"type": "bye"})
        conn.sock.settimeout(2)
        while True:
            for message in conn.receive():
                if message.get("type") == "bye":
                    return
                if chat is not None:
                    chat.received(message)
    except (OSError, ServerClosed, KeyboardInterrupt):
        pass  # it hung up first, or you pressed Ctrl+C again: we are leaving anyway


def main():
    # Ctrl+C raises KeyboardInterrupt, even if we were started with it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parse_args()
    # No full screen in a pipe, or on a terminal that cannot move its cursor
    # (TERM=dumb: Emacs, some CI logs).
    plain = (
        args.plain
        or not (sys.stdin.isatty() and sys.stdout.isatty())
        or os.environ.get("TERM", "dumb") == "dumb"
    )
    with connect(args.host, args.port) as sock:
        conn = Connection(sock)
        keyboard = Lines(lambda: os.read(sys.stdin.fileno(), 4096))
        chat = None
        try:
            welcome, early, typed_ahead = join(conn, args.name, keyboard)
            with PlainUI() if plain else CursesUI() as ui:
                chat = ui.chat = Chat(conn, welcome, ui)
                for message in [welcome, *early]:
                    chat.received(message)
                for line in typed_ahead:
                    chat.typed(line)
                run(conn, chat, ui, keyboard)
        except (EOFError, KeyboardInterrupt):
            pass  # Ctrl+D, Ctrl+C or the end of a pipe: leave cleanly
        except ServerClosed:
            print("connection closed by server")
            return
        leave(conn, chat if plain else None)  # curses has gone: nowhere to show them


if __name__ == "__main__":
    main()
