"""Full-screen programs (stage 07's curses client), checked on what a person would see.

A curses program does not print lines: it moves the cursor and repaints parts of the
screen. So its output is played through pyte, a terminal emulator, and the checks
look at the resulting screen: rows of text, and each character's colour and style.

    term = session.spawn("alice", "client.py", ..., kind=ScreenTerminal)
    term.shows("welcome, alice")           # waits until the screen shows it
    term.row(-1)                           # the bottom row, as text
    term.style_of("alice: hi")             # (colour, bold, reverse) of that text
"""

import select
import time

import pyte
from pyte.screens import Margins

from harness import TIMEOUT, Terminal

ROWS, COLUMNS = 24, 80
# What an xterm sends for each key. Arrows: curses turns on "keypad transmit" mode (smkx), in which
# xterm sends ESC O A rather than ESC [ A, and the terminfo entry curses decodes with says so.
KEYS = {"enter": "\r", "up": "\x1bOA", "down": "\x1bOB", "page up": "\x1b[5~", "page down": "\x1b[6~",
        "backspace": "\x7f", "ctrl+d": "\x04"}
ENVIRONMENT = {
    "TERM": "xterm-256color", "LANG": "C.UTF-8",
    "NCURSES_NO_UTF8_ACS": "1",  # draw lines with Unicode box characters; without it pyte shows "qqqq"
    "ESCDELAY": "25",  # ms curses waits after Esc to tell the key from the start of a sequence
}


class Stream(pyte.Stream):
    # pyte 0.8.2 ignores CSI n S and CSI n T (scroll up, scroll down), which ncurses uses on xterm.
    csi = {**pyte.Stream.csi, "S": "scroll_up", "T": "scroll_down"}


class Screen(pyte.Screen):
    def scroll_up(self, count=None, *_, **__):
        """CSI n S: the lines inside the margins move up n; blank lines come in at the bottom."""
        self._scroll(count, self.margins_or_all().bottom, self.index)

    def scroll_down(self, count=None, *_, **__):
        """CSI n T: the lines move down n; blank lines come in at the top."""
        self._scroll(count, self.margins_or_all().top, self.reverse_index)

    def margins_or_all(self):
        return self.margins or Margins(0, self.lines - 1)

    def _scroll(self, count, row, step):
        saved = self.cursor.y
        self.cursor.y = row  # index() and reverse_index() scroll only when the cursor is on the margin
        for _ in range(count or 1):
            step()
        self.cursor.y = saved


# --8<-- [start:terminal]
class ScreenTerminal(Terminal):
    """A Terminal whose output is also played through a terminal emulator."""

    def __init__(self, session, label, argv, env=None, **kwargs):
        env = {**ENVIRONMENT, **(env or {})}
        super().__init__(
            session, label, argv, env=env, dimensions=(ROWS, COLUMNS), **kwargs
        )
        self.screen = Screen(COLUMNS, ROWS)
        self.stream = Stream(self.screen)
        self.played = 0  # how much of the transcript the emulator has seen

    def update(self):
        self.drain()
        text = self.output()
        self.stream.feed(text[self.played:])
        self.played = len(text)

    def lines(self):
        self.update()
        return [line.rstrip() for line in self.screen.display]

    def row(self, number):
        return self.lines()[number]

    def report(self):
        """In a failure report: the screen as it is now, framed, rather than a soup
        of escape codes."""
        width = self.screen.columns
        frame = "+" + "-" * width + "+"
        rows = [f"|{line.ljust(width)}|" for line in self.lines()]
        return "\n".join([frame, *rows, frame])

    def wait_for(self, check, what, timeout=TIMEOUT):
        """Wait until check() is true of the screen, re-checking each time the
        program draws."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while True:
            self.update()
            if check():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.child.isalive():
                raise self.session.failure(
                    f"[{self.label}] expected the screen to show {what}",
                    f"after {timeout:g} s, the screen is:\n{self.report()}",
                )
            # Sleep until it draws something.
            select.select([self.child.child_fd], [], [], remaining)

    # --8<-- [end:terminal]

    def shows(self, text, timeout=TIMEOUT):
        __tracebackhide__ = True
        self.wait_for(lambda: any(text in line for line in self.lines()), repr(text), timeout)

    def find(self, text):
        """(row, column) of text on the screen, or None."""
        for number, line in enumerate(self.lines()):
            if text in line:
                return number, line.index(text)
        return None

    def style_of(self, text):
        """(colour, bold, reverse) of the first character of `text` on the screen."""
        row, column = self.find(text)
        char = self.screen.buffer[row][column]
        return char.fg, char.bold, char.reverse

    def type(self, text):
        self.typed.append(text)  # for the observers' ledger (Terminal.send_line)
        self.child.send(text)

    def press(self, key):
        self.child.send(KEYS[key])

    def resize(self, rows, columns):
        """As a person dragging the window's corner: the kernel tells the program with SIGWINCH."""
        self.update()  # what was drawn at the old size, played at the old size
        self.screen.resize(rows, columns)
        self.child.setwinsize(rows, columns)
