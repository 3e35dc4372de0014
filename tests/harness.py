"""The shared harness: real processes in real terminals (ptys), driven with pexpect.

A `Session` belongs to one test. It starts a stage's server and clients, each in
its own pty, keeps every terminal's whole transcript, and kills every process it
started when the test ends, pass or fail. When a check fails it raises
`CheckFailed`, whose message says what was expected, what arrived instead, and a
hint keyed to the symptom; conftest.py then adds the end of every terminal's transcript.
Every text a report shows goes through capped(): a report stays under 20 KB.
"""

import collections
import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import select
import selectors
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

import pexpect

import contract

TIMEOUT = 5.0  # seconds to wait for one expected line; the programs answer in milliseconds
DEV_CERTS = Path(__file__).resolve().parent.parent / "stages" / "10" / "certs"  # the spec's TLS stages' certificates
LISTENING = re.compile(r"listening on (\S+):(\d+)\r?\n")
# A name as a screen shows it: the checks' names are letters and digits (tests/words.py); what
# follows it (a "!", a comma) is the program's own wording, which the spec leaves free.
SHOWN_NAME = r"([\w-]+)"


class CheckFailed(AssertionError):
    """A check saw something other than what the stage's spec says. Its message is capped
    (capped()): what was expected and what came instead stay readable whatever was sent."""

    def __init__(self, message=""):
        super().__init__(capped(str(message), lines=MESSAGE_LINES, chars=MESSAGE_CHARS, keep="head"))


class GateFailed(CheckFailed):
    """A step that most checks need failed, and failed again when tried alone with more patience:
    the server's ready line, the client showing that it is in, the server logging the join.
    This is the one cause the report states once (Session.gate; conftest.py prints it, with
    `detail`, what this check saw, in its own section of the terminal's summary)."""

    def __init__(self, cause, detail):
        super().__init__(f"{cause}\n{detail}")
        self.cause, self.detail = cause, detail


class NotRun(CheckFailed):
    """The check needs a step that an earlier check found broken (a GateFailed): it was not run.
    Its message is one line that points to the cause instead of repeating it (conftest.py
    reports the check as skipped with it); `cause` is for the --report files."""

    def __init__(self, stage, gate, cause):
        program, term = gate_term(stage, gate)
        super().__init__(f"not run: it needs {program} to show {contract.shown(term.text)!r}, "
                         "which is broken (the cause is stated once, above)")
        self.cause = cause


class BrokenGates:
    """(stage folder, gate) -> the cause, once a check has found that gate broken. Later checks
    that reach the same gate end at once (NotRun) instead of each waiting out its own timeout.

    Shared by every xdist worker of a run through a folder (conftest.py passes it on with
    share()): the first check of the whole run to find a gate broken reports the cause, the
    others on every worker are not run. Without a folder (the harness outside pytest), one
    process's dict."""

    def __init__(self):
        self.found = {}
        self.folder = None

    def share(self, folder):
        self.folder = Path(folder)

    def path(self, key):
        folder, gate = key
        return self.folder / f"{hashlib.sha256(str(folder).encode()).hexdigest()[:16]}-{gate}"

    def get(self, key):
        if key not in self.found and self.folder is not None:
            with contextlib.suppress(FileNotFoundError):
                self.found[key] = self.path(key).read_text()
        return self.found.get(key)

    def claim(self, key, cause):
        """Record that the gate is broken. True if no one else in the run had found it first."""
        self.found[key] = cause
        if self.folder is None:
            return True
        with tempfile.NamedTemporaryFile("w", dir=self.folder, delete=False) as draft:
            draft.write(cause)
        try:
            os.link(draft.name, self.path(key))  # atomic, and fails if another worker was first
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(draft.name)


BROKEN = BrokenGates()


# ---------------------------------------------------------------- failure reports

# Every text a failure report shows (a CheckFailed's message, a transcript, a --report file)
# goes through capped(): a check that sends 4 KB lines must not print a megabyte, in which
# the one line that says what went wrong is lost.
# A report stays under 20 KB: its message, then its transcripts, then (conftest.py) the rest.
LINE_WIDTH = 240  # characters of a line (a 200-column screen's frame fits); a longer one keeps its ends
TRANSCRIPT_LINES = 80  # a transcript's last lines
TRANSCRIPTS_CHARS = 12_000  # all of one report's transcripts together (Session.transcripts)
MESSAGE_LINES, MESSAGE_CHARS = 60, 4_000  # a CheckFailed's message: its first lines
REPORT_CHARS = 6_000  # what pytest shows of a failure before the transcripts (conftest.py), its end


def shortened(line, width=LINE_WIDTH):
    """One line for a failure report: a long one keeps its two ends and says how long it was."""
    if len(line) <= width:
        return line
    keep = (width - 24) // 2
    return f"{line[:keep]}…{line[-keep:]} [{len(line):,} characters]"


def capped(text, lines=TRANSCRIPT_LINES, chars=TRANSCRIPTS_CHARS, keep="tail", say_left_out=True):
    """`text` for a failure report: every line shortened(), then its last `lines` lines that fit
    in `chars` characters (keep="head": its first ones), saying how many were left out."""
    every = [shortened(line) for line in text.split("\n")]
    chosen, size = [], 0
    for line in (every if keep == "head" else reversed(every)):
        if len(chosen) == lines or size + len(line) + 1 > chars:
            break
        chosen.append(line)
        size += len(line) + 1
    left_out = len(every) - len(chosen)
    if keep == "head":
        return "\n".join(chosen) + (f"\n({left_out} more lines left out)" if left_out and say_left_out else "")
    return (f"({left_out} earlier lines left out)\n" if left_out and say_left_out else "") + "\n".join(reversed(chosen))


def last_lines(text, count=6):
    lines = capped(clean(text).rstrip("\n"), lines=count, say_left_out=False).split("\n")
    return "\n".join(f"    | {line}" for line in lines) or "    | (nothing)"


def tail(text, lines=TRANSCRIPT_LINES, chars=TRANSCRIPTS_CHARS):
    """The relevant end of a transcript for a failure report, not a megabyte of log lines."""
    return capped(text, lines, chars)


def clean(text):
    """Terminal output as a reader would like to see it: \\n line ends, no bare \\r."""
    return text.replace("\r\n", "\n").replace("\r", "")


def hints(terminals):
    """Advice keyed to what the transcripts show, in the spirit of CodeCrafters' testers."""
    found = []
    for term in terminals:
        text = term.output()
        if "Traceback (most recent call last)" in text:
            found.append(f"[{term.label}] printed a traceback: the program crashed. Its transcript below shows where.")
        if "Address already in use" in text or "address already in use" in text.lower():
            found.append(f"[{term.label}] could not bind its port. Does the server set SO_REUSEADDR, "
                         "and close its listening socket on exit?")
        if "Connection refused" in text or "cannot connect" in text:
            found.append(f"[{term.label}] could not connect: was the server listening yet, on that port?")
    return found


def failure(what, received, terminals):
    parts = [what, f"received instead: {received}"]
    parts += [f"hint: {hint}" for hint in hints(terminals)]
    return CheckFailed("\n".join(parts))


# ---------------------------------------------------------------- a fixed port

def port_frees_up(port, timeout=10):
    """Can a server bind `port` (with SO_REUSEADDR, as servers do) within `timeout` seconds?"""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
        time.sleep(0.05)  # polls a condition: another run's server on this port is going away


@contextlib.contextmanager
def one_worker_at_a_time(name):
    """A lock shared by every xdist worker (and every run) on this machine, for a fixed resource."""
    with open(Path(tempfile.gettempdir()) / f"chat-kit-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---------------------------------------------------------------- one terminal

def as_in_a_terminal(then=None):
    """In the child, before exec: Ctrl+C and Ctrl+Z do what they do in a terminal.

    A shell starts background jobs (`grade.py ... &`, nohup) with SIGINT ignored, and
    children inherit that: Python would then never raise KeyboardInterrupt, and every
    Ctrl+C check would fail however the program is written.
    """
    for number in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(number, signal.SIG_DFL)
    if then is not None:
        then()


class Terminal:
    """One program running in its own pty, with everything it printed kept."""

    # --8<-- [start:spawn]
    def __init__(
        self, session, label, argv, env=None, preexec_fn=None, dimensions=(24, 200)
    ):
        self.session = session
        self.label = label
        self.argv = argv
        self.typed = []  # every line typed (send_line)
        self.transcript = io.StringIO()
        self.pressed_again = False  # ctrl_c() pressed more than once (see expect_exit)
        self.forgotten_at = 0  # where forget_unread() last drew its line
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TERM": "dumb", **(env or {})}
        self.child = pexpect.spawn(
            argv[0], argv[1:], cwd=session.workdir, env=env, timeout=TIMEOUT,
            encoding="utf-8", codec_errors="replace", dimensions=dimensions,
            preexec_fn=lambda: as_in_a_terminal(preexec_fn),
        )
        # pexpect sleeps 50 ms before every send and ptyprocess 100 ms in every
        # close: pure waste here.
        self.child.delaybeforesend = None
        self.child.ptyproc.delayafterclose = 0.01
        self.child.logfile_read = self.transcript
    # --8<-- [end:spawn]

    @property
    def pid(self):
        return self.child.pid

    def output(self):
        return self.transcript.getvalue()

    def report(self):
        """This terminal's part of a failure report (Session.transcripts keeps its end)."""
        return clean(self.output())

    # -- waiting for output

    def expect(self, text, timeout=None):
        """Wait until `text` appears; return everything printed before it."""
        __tracebackhide__ = True  # pytest: report the test's line, not the harness's
        self._wait(None, text, timeout)
        return self.child.before

    def expect_regex(self, pattern, timeout=None):
        """Wait until the regular expression matches; return the match."""
        __tracebackhide__ = True
        self._wait(re.compile(pattern), None, timeout)
        return self.child.match

    def expect_spec(self, key, **values):
        """Wait for the contract's term `key` (tests/contract.py), filled in: a pattern or a plain text."""
        __tracebackhide__ = True
        term = self.session.stage.terms[key]
        return self.expect_regex(term(**values)) if term.pattern else self.expect(term(**values))

    def _wait(self, regex, text, timeout):
        __tracebackhide__ = True
        timeout = timeout or self.session.timeout
        wanted = text if text is not None else regex.pattern
        try:
            if text is not None:
                self.child.expect_exact(text, timeout=timeout)
            else:
                self.child.expect(regex, timeout=timeout)
        except pexpect.TIMEOUT:
            raise self.session.failure(
                f"[{self.label}] expected to see: {wanted!r}",
                f"nothing matching within {timeout:g} s. The last lines it printed:\n"
                + last_lines(self.output())) from None
        except pexpect.EOF:
            raise self.session.failure(
                f"[{self.label}] expected to see: {wanted!r}",
                f"end of output: the program exited ({self.describe_exit()}). The last lines it printed:\n"
                + last_lines(self.output())) from None

    def assert_not_seen(self, text, why="", since_forgotten=False):
        """Check that `text` has not appeared so far (or since forget_unread()). Call it after a sync
        point, never after a sleep."""
        __tracebackhide__ = True
        if text in self.output()[self.forgotten_at if since_forgotten else 0:]:
            raise self.session.failure(
                f"[{self.label}] expected NOT to see: {text!r}" + (f" ({why})" if why else ""),
                "it was printed:\n" + last_lines(self.output()))

    def drain(self):
        """Read whatever output is already waiting, without waiting for more.

        What is read goes to the transcript and stays where a later expect() looks.
        pexpect keeps unmatched output in two buffers, _before and _buffer, and
        treats what is in _before as not yet searched; we append to both, as its
        own Expecter.new_data() does (pexpect 4.9.0, pinned in requirements.txt).
        """
        if self.child.closed:
            return  # it has exited and expect_exit() has read everything it printed
        try:
            while True:
                data = self.child.read_nonblocking(65536, timeout=0)
                for buffer in (self.child._before, self.child._buffer):
                    buffer.seek(0, io.SEEK_END)
                    buffer.write(data)
        except (pexpect.TIMEOUT, pexpect.EOF):
            pass

    def forget_unread(self):
        """From now on, expect() looks only at what is printed after this moment.

        Waits until the program is idle first, so that everything it was going to print
        before it reads again has been printed, and is forgotten too."""
        self.wait_until_idle()
        self.drain()
        self.forgotten_at = len(self.output())
        self.child.expect(r"[\s\S]*", timeout=0)  # matches, and so consumes, all that is waiting

    # -- typing

    def send_line(self, text):
        self.typed.append(text + "\n")  # for the observers' ledger: what a user typed may be a message
        self.child.sendline(text)

    def ctrl_c(self, when_idle=True, pressed_before=False):
        """Press Ctrl+C, by default once the program is waiting for something, as a person would.

        If the key lands in CPython's blind instant (see wait_until_idle), the program
        goes on waiting exactly where it was, having printed nothing since the key. A
        person would press again, and so do we, up to three times in all. A program
        that ignores Ctrl+C still fails; one that is busy leaving (waiting somewhere
        else, or having printed something) is never pressed twice.
        """
        if not when_idle:
            self.child.sendintr()
            return
        for press in range(3):
            self.pressed_again = press > 0 or pressed_before
            self.wait_until_idle()
            waiting_in = kernel_wait(self.child.pid)
            since_the_key = self.press_and_read().strip("> ")
            # "wait_woken": blocked reading the terminal (or a socket), where the race strikes.
            still_there = waiting_in == "wait_woken" and kernel_wait(self.child.pid) == waiting_in
            if not self.child.isalive() or since_the_key or not still_there:
                return

    def ctrl_c_at_once(self):
        """Press Ctrl+C now, wherever the program is (the moment a line appears, say).

        If the key lands in CPython's blind instant just before the program blocks in
        accept() or select() (see wait_until_idle), the program sleeps on there, having
        printed nothing since the key, as if it was never pressed. A person presses
        again, and so do we (ctrl_c); a program that is leaving is never pressed twice.
        """
        since_the_key = self.press_and_read().strip("> \r\n")
        # Not "wait_woken": a program printing "server stopped" to a pty whose reader a busy
        # machine has not run yet sleeps there too (the key was taken, and it is leaving).
        waiting_in = kernel_wait(self.child.pid)
        if self.child.isalive() and not since_the_key and waiting_in.startswith(BLOCKED) \
                and waiting_in != "wait_woken":
            self.ctrl_c(pressed_before=True)  # if the first key was only late, ours is the second

    def press_and_read(self):
        """Press Ctrl+C; once the program has had the signal and sleeps again (or has
        ended), what it printed since the key (its echo, ^C, left out)."""
        printed_before = len(self.output())
        self.child.sendintr()
        self.wait_until_delivered(signal.SIGINT)  # on a busy machine the program may not have run yet
        self.wait_until_idle()
        self.drain()
        return self.output()[printed_before:].replace("^C", "")

    def wait_until_idle(self, timeout=TIMEOUT):
        """Wait until every thread of the program sleeps in a system call (or the program has ended).

        CPython runs a signal handler only between bytecodes. A Ctrl+C that lands in the
        instant between printing a prompt and blocking in read() is acted on only at the
        next key or network event. People never press keys in that instant; a test that
        types the moment a prompt appears does. So a test first waits until the program is
        really waiting (Linux: the threads' states in /proc), polling every millisecond.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = thread_states(self.child.pid)
            if not states or all(state == "S" for state in states):
                return
            time.sleep(0.001)  # polls a condition; never used as a delay before acting
        raise self.session.failure(f"[{self.label}] expected to be waiting for input",
                                   f"still busy after {timeout:g} s: thread states {thread_states(self.child.pid)}")

    def wait_until_delivered(self, number, timeout=TIMEOUT):
        """Wait until the kernel has handed signal `number` to the program (it is no longer pending).

        Until then the program has not even seen the key: looking at what it printed, or where
        it waits, would say nothing about how it handles it.
        """
        deadline = time.monotonic() + timeout
        while signal_pending(self.child.pid, number) and time.monotonic() < deadline:
            time.sleep(0.001)  # polls a condition; never used as a delay before acting

    def ctrl_d(self):
        self.child.sendeof()

    # -- ending

    def expect_exit(self, code=0, timeout=TIMEOUT):
        """Wait for the program to exit with `code`, with no traceback."""
        __tracebackhide__ = True
        try:
            self.child.expect(pexpect.EOF, timeout=timeout)
        except pexpect.TIMEOUT:
            raise self.session.failure(
                f"[{self.label}] expected to exit with code {code}",
                f"still running after {timeout:g} s. The last lines it printed:\n"
                + last_lines(self.output())) from None
        self.child.close()
        actual = self.child.exitstatus
        if code == 0 and self.child.signalstatus == signal.SIGINT and self.pressed_again:
            # We pressed Ctrl+C a second time, judging the first lost; if it was not, the
            # program was already leaving, and a second Ctrl+C while Python shuts down
            # ends it by the signal. That is our doing, not the program's.
            actual = 0
        if actual != code or "Traceback" in self.output():
            raise self.session.failure(
                f"[{self.label}] expected to exit with code {code} and no traceback",
                f"{self.describe_exit()}. The last lines it printed:\n" + last_lines(self.output()))

    def expect_error_exit(self, *words, timeout=TIMEOUT):
        """Wait for exit code 1 after exactly one line of output that mentions every one of `words`."""
        __tracebackhide__ = True
        self.expect_exit(1, timeout)
        lines = [line for line in clean(self.output()).split("\n") if line.strip()]
        if len(lines) != 1 or not all(word in lines[0] for word in words):
            raise self.session.failure(
                f"[{self.label}] expected one line of error mentioning {', '.join(map(repr, words))}",
                f"{len(lines)} line(s):\n" + last_lines(self.output(), 10))

    def expect_usage_exit(self, *words):
        """Wait for argparse's answer to a bad argument: exit code 2, its usage line, then one line of
        error that mentions every one of `words` (the option's name)."""
        __tracebackhide__ = True
        self.expect_exit(contract.EXIT_USAGE)
        lines = [line for line in clean(self.output()).split("\n") if line.strip()]
        usage = contract.PROGRAMS["usage"].text
        if not (lines and lines[0].startswith(usage) and all(word in lines[-1] for word in words)):
            raise self.session.failure(
                f"[{self.label}] expected argparse's {usage!r} line, then one line of error mentioning "
                f"{', '.join(map(repr, words))}", last_lines(self.output(), 10))

    def describe_exit(self):
        if self.child.isalive():
            return "still running"
        if self.child.signalstatus is not None:
            return f"killed by signal {self.child.signalstatus}"
        return f"exit code {self.child.exitstatus}"

    def kill(self):
        """Kill at once, as `kill -9` would: no cleanup code runs."""
        if self.child.isalive():
            os.kill(self.child.pid, signal.SIGKILL)
            self.child.wait()  # SIGKILL cannot be caught: this returns at once, and reaps the process
        self.child.ptyproc.delayafterclose = 0  # close() need not give it time to exit: it has
        self.child.close(force=True)

    def close(self):
        try:
            self.kill()
        except (OSError, pexpect.ExceptionPexpect):
            pass


# Where a server's main thread sleeps until a connection or a line comes (/proc/PID/wchan):
# accept(), epoll, poll or select, and a blocking read of a socket or a terminal.
BLOCKED = ("inet_csk_accept", "do_epoll_wait", "ep_poll", "poll_schedule_timeout", "do_select",
           "wait_woken")


def kernel_wait(pid):
    """Where in the kernel the program's main thread sleeps (Linux /proc/PID/wchan), or ""."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


def signal_pending(pid, number):
    """Is signal `number` waiting to be delivered to process `pid` (Linux /proc/PID/status, ShdPnd)?"""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("ShdPnd:"):
                return bool(int(line.split()[1], 16) & (1 << (number - 1)))
    except OSError:
        pass  # it has exited
    return False


def thread_states(pid):
    """One letter per thread of process `pid`: R running, S sleeping in a system call, Z ended..."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            pass  # the thread ended while we looked
    return [state for state in states if state != "Z"]


# ---------------------------------------------------------------- a raw network peer

def loopback_queues():
    """{(local port, remote port): (send queue, receive queue)} for every IPv4 loopback TCP socket,
    from one read of /proc/net/tcp (empty if not Linux): for many sockets at once."""
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return {}
    queues = {}
    for line in table:
        fields = line.split()
        local, remote = fields[1].split(":"), fields[2].split(":")
        if local[0] == remote[0] == "0100007F":
            sent, received = fields[4].split(":")
            queues[int(local[1], 16), int(remote[1], 16)] = (int(sent, 16), int(received, 16))
    return queues


def kernel_queues(local_port, remote_port):
    """(send queue, receive queue) in bytes of the loopback socket from local_port to
    remote_port, as the kernel holds them (Linux /proc/net/tcp), or None if not found.

    The receive queue is what has arrived but the program has not read yet."""
    wanted = (f"0100007F:{local_port:04X}", f"0100007F:{remote_port:04X}")
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:  # not Linux
        return None
    for line in table:
        if wanted[0] not in line:  # most lines: splitting them all is the slow part
            continue
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            sent, received = fields[4].split(":")
            return int(sent, 16), int(received, 16)
    return None


def describe(wanted):
    return repr(wanted) if callable(wanted) else f"a line containing: {wanted!r}"


def line_with(*names):
    """A regex for one line that holds every name, in any order (a program may sort its list or not)."""
    return "".join(rf"(?=[^\n]*\b{name}\b)" for name in names) + r"[^\n]*\n"


def json_message(**fields):
    """One JSON Lines message, as bytes on the wire."""
    return json.dumps(fields).encode() + b"\n"


class JsonLine:
    """Matches a received line that is a JSON object with these fields (in any order, more allowed)."""

    def __init__(self, **fields):
        self.fields = fields

    def __call__(self, line):
        try:
            message = json.loads(line)
        except ValueError:
            return False
        return isinstance(message, dict) and all(message.get(key) == value for key, value in self.fields.items())

    def __repr__(self):
        return "a JSON line with " + ", ".join(f'"{key}": {json.dumps(value)}' for key, value in self.fields.items())


def irc_parse(line):
    """One IRC line (RFC 1459 2.3.1, CR LF removed) -> (prefix or None, COMMAND, [params])."""
    prefix = None
    if line.startswith(":"):
        prefix, _, line = line[1:].partition(" ")
    middle, colon, trailing = line.partition(" :")
    command, *params = middle.split()
    return prefix, command.upper(), params + [trailing] * bool(colon)


class IrcLine:
    """Matches a received IRC line: this command (or numeric), these first parameters, and a
    prefix whose nick is `source` if given (stage 11's wire, for the shared checks)."""

    def __init__(self, command, *params, source=None):
        self.command, self.params, self.source = command, params, source

    def __call__(self, line):
        try:
            prefix, command, params = irc_parse(line.rstrip("\r"))
        except ValueError:  # an empty line
            return False
        nick = (prefix or "").split("!", 1)[0]
        return (command == self.command and tuple(params[:len(self.params)]) == self.params
                and (self.source is None or nick == self.source))

    def __repr__(self):
        source = f" from {self.source}" if self.source else ""
        return f"an IRC {self.command}{source} with parameters {list(self.params)} first"


def connect(host, port, tls=False, receive_buffer=None, timeout=TIMEOUT):
    """A socket connected to host:port; with `tls`, a TLS socket that trusts the kit's development CA."""
    sock = socket.socket()
    if receive_buffer:  # must be set before connect(): it decides the TCP window we announce
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one write, one TCP segment
        if tls:
            return ssl.create_default_context(cafile=DEV_CERTS / "dev-ca.pem").wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


def accept_client(session, listener):
    """The side of a test that plays the server: accept the client under test within TIMEOUT
    (TLS with the kit's development certificate on a TLS stage). Returns (connection, its port)."""
    listener.settimeout(TIMEOUT)
    try:
        conn, (_, port) = listener.accept()
    except TimeoutError:
        raise session.failure(f"expected the client to connect to port {listener.getsockname()[1]}",
                              f"no connection within {TIMEOUT:g} s") from None
    if session.stage.has("tls"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(DEV_CERTS / "localhost.pem", DEV_CERTS / "localhost-key.pem")
        conn = context.wrap_socket(conn, server_side=True)
    return conn, port


class RawPeer:
    """A test peer speaking bytes on a socket (TLS for a TLS stage): for what no well-behaved client would send."""

    def __init__(self, session, name, host, port, receive_buffer=None):
        self.session = session
        self.name = self.label = name  # the name it joins as, if it joins; its transcript's label
        self.sock = connect(host, port, session.stage.has("tls"), receive_buffer)
        self.history = []  # every line looked at so far
        self.lines = collections.deque()  # complete lines received and not yet looked at
        self.partial = b""  # the start of a line whose end has not arrived yet
        self.transcript = io.StringIO()
        # What it did, for the observers' ledger (Observers.ledger): the lines it sent, parsed.
        self.unsent_end = b""  # the start of a line it is sending, whose end it has not sent yet
        self.requests = []  # ("hello", name), ("say", text), ("bye",), ("too_long",), in order
        self.welcomed_as = None  # the name its welcome gave it
        self.closed = self.eof = False  # closed by us; closed by the server (seen)
        self.sync_reply = None  # the answer to its last round_trip(): not a broadcast

    def join(self):
        """Say hello with our name and wait for the welcome, in the stage's wire protocol."""
        driver = self.session.stage.client_class
        self.send(driver.wire_hello(self.name))
        self.expect_line(driver.wire_welcome(self.name))

    def output(self):
        return self.transcript.getvalue()

    def round_trip(self):
        """A sync point for this connection alone: ask something the server must answer, and wait.

        The server handles one connection's messages in order, so by the time the answer
        arrives, everything queued for us before our question has arrived too. A joined peer
        says hello again (error already-joined); one that has not joined says something
        (error not-joined)."""
        __tracebackhide__ = True
        joined = self.has_seen(JsonLine(type="welcome"))
        self.send(json_message(type="hello", name=self.name, client_id="again") if joined
                  else json_message(type="say", text="before hello"))
        self.sync_reply = self.expect_line(JsonLine(type="error", code="already-joined" if joined else "not-joined"))

    def received(self, text):
        """Has any line received so far held `text`?"""
        return any(text in line for line in self.history)

    def send(self, data):
        self.transcript.write(f"--> {data!r}\n")
        self.session.pump()
        self.sent(data)
        self.sock.sendall(data)

    def sent(self, data):
        """Note what the lines sent ask the server to do (the stage's driver parses them)."""
        driver = self.session.stage.client_class
        if not self.session.stage.has("chat"):
            return  # stage 01 echoes: nothing is broadcast
        *lines, self.unsent_end = (self.unsent_end + data).split(b"\n")
        for line in lines:
            self.requests.append(("too_long",) if driver.too_long(line) else driver.wire_request(line))
        if driver.too_long(self.unsent_end):
            self.requests.append(("too_long",))
            self.unsent_end = b""

    def public_events(self):
        """A Counter of the room's events among the lines received so far (each line parsed once)."""
        if not hasattr(self, "parsed_events"):
            self.parsed_events, self.parsed_lines = collections.Counter(), 0
        wire_event = self.session.stage.client_class.wire_event
        for line in self.history[self.parsed_lines:]:
            event = wire_event(line)
            if event and event[0] in ("joined", "said", "left"):
                self.parsed_events[event] += 1
        self.parsed_lines = len(self.history)
        return self.parsed_events

    def caused(self):
        """The public events this peer's own actions make the server broadcast (Observers.ledger):
        its join (its welcome came), what it said once in, and its leaving (bye: quit; a line too
        long, or a connection closed by either side: lost)."""
        if self.welcomed_as is None:
            return []
        name, driver = self.welcomed_as, self.session.stage.client_class
        events, joined = [("joined", name)], False
        for request in self.requests:
            if request is None:
                continue
            kind = request[0]
            if kind == "line":  # 02's plain text: the first line is the name, then messages
                kind = "say" if joined else "hello"
            if kind == "hello" and not joined:
                joined = driver.same_name(request[1], name)
            elif kind == "say" and joined:
                events.append(("said", name, request[1]))
            elif kind == "too_long" and not driver.drops_long_lines:
                continue  # 11: the line is dropped, the connection goes on
            elif kind in ("bye", "too_long") and joined:
                return events + [("left", name, driver.left_reason("quit" if request[0] == "bye" else "lost"))]
        if self.closed or self.eof:
            events.append(("left", name, driver.left_reason("lost")))
        return events

    def send_slowly(self, data, pause=0.005, until_read=False):
        """Send one byte per TCP write, so the server's recv() sees fragments.

        The pause is the test input (separate segments), not a synchronisation. On a busy
        machine the server may not run between two writes, and then one recv() gets them
        all: with until_read, each of the first three bytes waits (a few seconds at most)
        until the server has read it, so its recv() sees at least three pieces however
        busy the machine is. (Asking the kernel after every byte costs more than the
        check: /proc/net/tcp lists every socket on the machine.)"""
        self.transcript.write(f"--> {data!r}, one byte at a time\n")
        self.sent(data)
        for index, byte in enumerate(data):
            self.sock.sendall(bytes([byte]))
            if until_read and index < 3:
                self.wait_until_server_read()
            time.sleep(pause)

    def wait_until_server_read(self, patience=3.0):
        """Poll the kernel until the server has read all we sent (its receive queue is
        empty), or patience runs out: a server that is busy elsewhere is not a failure."""
        ours, theirs = self.sock.getsockname()[1], self.sock.getpeername()[1]
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            queues = kernel_queues(theirs, ours)
            if queues is None or queues[1] == 0:
                return
            time.sleep(0.001)

    def expect_line(self, wanted, timeout=TIMEOUT):
        """Read until a whole line arrives that contains `wanted` (a string) or matches it (a JsonLine)."""
        __tracebackhide__ = True
        matches = wanted if callable(wanted) else (lambda line: wanted in line)
        deadline = time.monotonic() + timeout
        while True:
            if self.take_line(wanted if isinstance(wanted, JsonLine) else matches):
                return self.history[-1]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self.session.failure(f"[{self.label}] expected {describe(wanted)}",
                                           f"nothing matching within {timeout:g} s")
            if not self._receive(remaining):
                raise self.session.failure(f"[{self.label}] expected {describe(wanted)}",
                                           "the server closed the connection")

    def check_every_field(self, line):
        """A reply that matched is then held to the protocol whole: every field, no extra ones."""
        __tracebackhide__ = True
        schema = self.session.stage.schema
        problems = contract.wrong_fields(json.loads(line), schema) if schema else []
        if problems:
            raise self.session.failure(f"[{self.label}] expected every field of the reply as the protocol defines it",
                                       f"{line!r}: " + "; ".join(problems))

    def take_line(self, matches):
        """Look at the complete lines that have arrived; True once one `matches` (no waiting)."""
        while self.lines:
            line = self.lines.popleft().decode("utf-8", errors="replace")
            self.transcript.write(f"<-- {line!r}\n")
            self.history.append(line)
            if self.welcomed_as is None and self.session.stage.has("chat"):
                event = self.session.stage.client_class.wire_event(line)
                if event and event[0] == "welcome":
                    self.welcomed_as = event[1]
            if matches(line):
                if isinstance(matches, JsonLine):
                    self.check_every_field(line)
                return True
        return False

    def has_data(self):
        """Has a whole line arrived (or the connection closed) that we have not looked at yet?"""
        if not self.lines and (self.decrypted() or select.select([self.sock], [], [], 0)[0]):
            return not self._read() or bool(self.lines)  # (not just TLS housekeeping, such as a session ticket)
        return bool(self.lines)

    def decrypted(self):
        """Bytes TLS has already decrypted and we have not read: the socket itself may not look readable."""
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def has_seen(self, wanted):
        matches = wanted if callable(wanted) else (lambda line: wanted in line)
        return any(matches(line) for line in self.history)

    def expect_closed(self, timeout=TIMEOUT):
        """Wait until the server closes the connection (whatever else arrives first)."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if not self._receive(remaining):
                self.transcript.write("<-- (connection closed)\n")
                return
        raise self.session.failure(f"[{self.label}] expected the server to close the connection",
                                   f"still open after {timeout:g} s")

    def _receive(self, timeout):
        """Read what has arrived and split off the complete lines. False once the server has closed."""
        if not self.decrypted() and not self.session.wait_readable(self.sock, timeout):
            return True
        return self._read()

    def _read(self):
        """Read what has arrived, without waiting. False once the server has closed."""
        if self.closed:
            return False
        self.sock.settimeout(0)  # it is readable, but with TLS that may be less than a whole record
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError):
            return True  # only TLS housekeeping (a session ticket) or part of a record: wait for more
        except ConnectionError:
            data = b""
        finally:
            self.sock.settimeout(TIMEOUT)
        if not data:
            self.eof = True
            return False
        *complete, rest = (self.partial + data).split(b"\n")
        self.partial = rest
        self.lines.extend(complete)
        return True

    def take_all(self):
        """Move every complete line received into the history (and the transcript)."""
        self.take_line(lambda line: False)

    def close(self):
        self.closed = True
        self.sock.close()


class StuckRoom:
    """A talker's lines fill the server's output for a client that never reads; a listener reads them."""

    def __init__(self, session, stuck, talker, listener):
        self.session, self.stuck, self.talker, self.listener = session, stuck, talker, listener
        self.ports = stuck.sock.getsockname()[1], stuck.sock.getpeername()[1]
        self.padding, self.number, self.held, self.size = session.stage.client_class.filler(4000), 0, 0, 4000

    def dropped(self):
        return self.listener.has_seen(self.session.stage.client_class.wire_left(self.stuck.name))

    def fill_until(self, target):
        """Talk until `target` bytes wait for the stuck client in the server (what was sent to it,
        the same lines as to the listener, minus what the kernel holds on both sides), or it is
        dropped; then sync. Each batch is at most half of what is missing, so the server never
        holds more than `target` and one line. True if the stuck client was dropped."""
        driver = self.session.stage.client_class
        ours, theirs = self.ports
        while self.held < target and not self.dropped():
            for _ in range(max(1, (target - self.held) // self.size // 2)):
                line = f"{self.number} {self.padding}"
                self.talker.send(driver.wire_say(line))
                self.size = len(self.listener.expect_line(driver.wire_said(self.talker.name, line)).encode()) + 1
                self.number += 1
            self.held = self.number * self.size - kernel_queues(theirs, ours)[0] - kernel_queues(ours, theirs)[1]
        text = self.session.text()  # a sync point: the server has handled everything said before it
        self.talker.send(driver.wire_say(text))
        self.listener.expect_line(driver.wire_said(self.talker.name, text))
        return self.dropped()


# ---------------------------------------------------------------- one test's processes

class Server:
    def __init__(self, terminal, host, port):
        self.term = terminal
        self.host = host
        self.port = port

    def logs(self, text, timeout=None):
        """The server console shows `text` (servers log one line per event)."""
        return self.term.expect(text, timeout)


GATES = {  # gate -> (which program, the contract term it must show)
    "listening": ("the server", "listening"),
    "in": ("the client", "welcome"),  # stage 01's client: "connected"
    "join_log": ("the server", "join_log"),
}


def gate_term(stage, gate):
    """(which program, the contract term it must show) for a gate of Session.gate."""
    program, key = GATES[gate]
    return program, stage.terms.get(key) or stage.terms["connected"]


def gate_cause(stage, gate):
    """The cause a broken gate is reported with, once: the contract line that never came."""
    program, term = gate_term(stage, gate)
    return (f"{program} never showed {contract.shown(term.text)!r}, which the contract says it shows "
            f"{term.when}. Every check that needs it is not run.")


class Session:
    """Everything one test started, so it can all be reported on and killed."""

    def __init__(self, stage, workdir, words, patience=1):
        self.stage = stage
        self.workdir = str(workdir)
        self.words = words
        self.timeout = TIMEOUT * patience  # how long a wait for output lasts, unless a check says
        self.probing = patience > 1  # a session started by gate_is_broken(), to try a gate alone
        self.terminals = []
        self.peers = []
        self.clients = []  # the driven clients (stages.py), for the observers' ledger
        self.server = None
        # Which observers this session goes without, and why (None: with it). Outside a check (a
        # recording, a gate's probe, a shared server's owner) there are none; conftest.py sets it.
        self.observe = dict.fromkeys(("lurker", "bystander"), "not a check")
        self.observers = None  # Observers, once the check's server listens
        self.borrowed = set()  # terminals this test uses but does not own (a shared server)

    def name(self, role):
        """The random user name (tests/words.py) this check gives `role`, e.g. "alice" -> "Noor41"."""
        return self.words.name(role)

    def spec(self, key, **values):
        """What the contract (tests/contract.py) says this stage's programs show, filled in."""
        return self.stage.terms[key](**values)

    def text(self, words=3):
        """A new random message text: a submission cannot know in advance what the check will type."""
        return self.words.text(words)

    def chat_goes_on(self, speaker, listener):
        """A fresh message from `speaker` reaches `listener` (the room still works). Returns the text."""
        __tracebackhide__ = True
        text = self.text()
        speaker.say(text)
        listener.sees(listener.said(speaker.name, text))
        return text

    def nobody_else_got(self, text, *receivers, why="it was not for them"):
        """Two-sided delivery: no raw peer but `receivers` has received `text`, joined or not, the
        sender included. Each is first synced on its own connection (RawPeer.round_trip), so
        this proves that nothing is still on its way; call it once the delivery was seen."""
        __tracebackhide__ = True
        for peer in self.peers:
            if peer in receivers:
                continue
            peer.round_trip()
            if peer.received(text):
                raise self.failure(f"[{peer.label}] expected NOT to receive {text!r} ({why})",
                                   "it was received:\n" + last_lines(peer.output()))

    def everyone_gets(self, peers, wanted, timeout):
        """Each raw peer receives a line matching `wanted(peer)`, all read at once, as real clients
        read what arrives: a crowd read one peer at a time would leave the others unread, and a
        server that drops slow readers would be right to drop them."""
        __tracebackhide__ = True
        waiting = {peer: wanted(peer) for peer in peers}
        waiting = {peer: (w if callable(w) else (lambda line, w=w: w in line)) for peer, w in waiting.items()}
        deadline = time.monotonic() + timeout
        while waiting:
            for peer in [peer for peer, matches in waiting.items() if peer.take_line(matches)]:
                del waiting[peer]
            if not waiting:
                return
            if time.monotonic() > deadline:
                peer = next(iter(waiting))
                raise self.failure(f"[{peer.label}] expected {describe(wanted(peer))} ({len(waiting)} of "
                                   f"{len(peers)} peers still waiting)", f"nothing matching within {timeout:g} s")
            self.pump()  # a server that logs each join must not block on a full pty meanwhile
            socks = {peer.sock: peer for peer in waiting}
            ready = [peer for peer in waiting if peer.decrypted()] or \
                [socks[sock] for sock in select.select(list(socks), [], [], 0.1)[0]]
            for peer in ready:
                if not peer._read() and not peer.lines:
                    raise self.failure(f"[{peer.label}] expected {describe(wanted(peer))}",
                                       "the server closed the connection")

    def failure(self, what, received):
        self.pump()  # the hints look at everything printed so far, not only at what a test waited for
        return failure(what, received, self.terminals)

    def spawn(self, label, program, *args, stage=None, kind=None, **kwargs):
        """Run one of the stage's programs (or another stage's) in a new terminal, from a folder that is not the repo.

        `kind`: a Terminal subclass, such as tests/screen.py's ScreenTerminal for a full-screen program.
        """
        stage = stage or self.stage
        argv = [sys.executable, str(stage.program(program)), *stage.args_for(program), *args]
        term = (kind or Terminal)(self, label, argv, **kwargs)
        self.terminals.append(term)
        return term

    def run(self, label, *argv, **kwargs):
        """Run any command in a new terminal (a test helper, not one of the stage's programs)."""
        term = Terminal(self, label, list(argv), **kwargs)
        self.terminals.append(term)
        return term

    # --8<-- [start:start_server]
    def start_server(self, *args, label="server", **kwargs):
        term = self.spawn(label, "server.py", "--port", "0", *args, **kwargs)
        match = self.gate("listening", lambda: term.expect_regex(LISTENING.pattern))
        server = Server(term, match.group(1), int(match.group(2)))
        if self.server is None:
            self.server = server
            # The observers speak this stage's wire: a server of another kind
            # (test_compat.py's strangers) has none.
            other = kwargs.get("stage")
            speaks_ours = ((other is None or other.wire == self.stage.wire)
                           and self.stage.has("chat"))
            if self.observe["lurker"] is None and not self.probing and speaks_ours:
                with_bystander = self.observe["bystander"] is None
                self.observers = Observers(self, server, bystander=with_bystander)
        return server
    # --8<-- [end:start_server]

    def server_logs_join(self, name):
        """Wait for the server's join log line for `name`: the last thing it does for a newcomer."""
        terms = self.stage.terms
        self.gate("join_log", lambda: self.server.logs(terms["join_log"](name=name)))
        for peer in self.peers:  # a raw peer that never reads its welcome: the log says it is in
            if peer.welcomed_as is None and peer.name == name and peer.requests:
                peer.welcomed_as = name

    # --8<-- [start:gate]
    def gate(self, gate, wait):
        """Run `wait`, a step that most checks need.

        If it fails, and fails again when tried alone with twice the patience, it is
        the cause: this check reports it, and every later check that reaches the same
        gate ends at once as not run (CodeCrafters stops at the first failing stage
        for the same reason: one cause, reported once, costing no time)."""
        __tracebackhide__ = True
        self.not_run_if_broken(gate)
        try:
            return wait()
        except CheckFailed as failure:
            if self.probing:
                raise
            self.not_run_if_broken(gate)  # another worker found it meanwhile: no probe
            if self.gate_is_broken(gate):
                cause = gate_cause(self.stage, gate)
                if not BROKEN.claim((self.stage.folder, gate), cause):
                    self.not_run_if_broken(gate)  # another worker was first to report it
                raise GateFailed(cause, str(failure)) from None
        # It passed alone, so here it was only slow (a busy machine): wait once more, and
        # a second miss is this check's own failure.
        return wait()
    # --8<-- [end:gate]

    def not_run_if_broken(self, gate):
        cause = BROKEN.get((self.stage.folder, gate))
        if cause is not None:
            raise NotRun(self.stage, gate, cause)

    def gate_is_broken(self, gate):
        """Try the gate again in a fresh session, alone, with more patience. True if it fails again."""
        probe = Session(self.stage, tempfile.mkdtemp(prefix="gate-"), self.words, patience=2)
        try:
            probe.start_server()
            if gate != "listening":
                client = probe.client("probe")
                if gate == "join_log":
                    probe.server_logs_join(client.name)
            return False
        except CheckFailed:
            return True
        finally:
            probe.close()
            shutil.rmtree(probe.workdir, ignore_errors=True)

    def client(self, role="client", *args, stage=None, **kwargs):
        """Start a client with its stage's driver and wait until it is in (for chat stages: welcomed).

        The client joins as this check's random name for `role`, and its terminal is labelled
        with that name. `stage` runs another stage's client against this test's server.
        """
        self.not_run_if_broken("in")  # before starting anything for a client that cannot get in
        server = self.server or self.start_server()
        driver = (stage or self.stage).client_class
        return driver.start(self, server, self.name(role), *args, stage=stage, **kwargs)

    def room_with_a_stuck_client(self, stuck=True):
        """A server, a "stuck" client that joins and never reads a byte (4 KiB receive buffer),
        and two joined raw peers, "talker" and "listener". Returns (talker, listener).
        With stuck=False, the same room without the stuck client: the baseline to compare with."""
        driver = self.stage.client_class
        self.start_server()
        if stuck:
            stuck = self.raw_peer("stuck", receive_buffer=4096)
            stuck.send(driver.wire_hello(stuck.name))
            self.server_logs_join(stuck.name)
        talker, listener = self.raw_peer("talker"), self.raw_peer("listener")
        for peer in (talker, listener):
            peer.join()
        return talker, listener

    def raw_peer(self, role="raw", receive_buffer=None, port=None):
        """A plain socket to the server (or to a loopback `port`), labelled with this check's random
        name for `role` (not yet joined)."""
        if port is None:
            server = self.server or self.start_server()
            host, port = server.host, server.port
        else:
            host = "127.0.0.1"
        peer = RawPeer(self, self.name(role), host, port, receive_buffer)
        self.peers.append(peer)
        return peer

    def connect(self, server, **kwargs):
        """A bare socket to `server`, speaking TLS if the stage does."""
        return connect(server.host, server.port, self.stage.has("tls"), **kwargs)

    def joined_peer(self, role):
        """A raw peer that has said hello with its name and been welcomed."""
        peer = self.raw_peer(role)
        peer.join()
        return peer

    def pump(self):
        """Read what the terminals have printed so far.

        Nobody reads a pty unless we do, and once its buffer is full the program
        in it blocks on print(). A server that logs every event would then stop
        serving in the middle of a load test.
        """
        for term in self.terminals:
            term.drain()
        if self.observers is not None:
            self.observers.drain()

    @contextlib.contextmanager
    def terminals_read_in_background(self):
        """Keep every terminal read by a thread, while the test drives raw sockets hard.

        A server that logs each message would otherwise fill its pty and block in
        print() in the middle of a load test. The test must not use the terminals
        until the block ends (pexpect is not thread-safe).
        """
        stop = threading.Event()

        def keep_reading():  # read as soon as anything is printed, as a real terminal does
            while not stop.is_set():
                open_terms = {term.child.child_fd: term for term in self.terminals
                              if not term.child.closed and not term.child.flag_eof}
                ready, _, _ = select.select(list(open_terms), [], [], 0.05)
                for fd in ready:
                    open_terms[fd].drain()

        reader = threading.Thread(target=keep_reading, daemon=True)
        reader.start()
        try:
            yield
        finally:
            stop.set()
            reader.join()

    def wait_readable(self, sock, timeout):
        """Wait until `sock` has data (True) or `timeout` passes (False), draining the ptys meanwhile."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            for term in self.terminals:
                if term.child.isalive():
                    selector.register(term.child.child_fd, selectors.EVENT_READ, term)
            while (remaining := deadline - time.monotonic()) > 0:
                for key, _ in selector.select(remaining):
                    if key.fileobj is sock:
                        return True
                    key.data.drain()
                    if key.data.child.flag_eof:  # it exited: its pty would be "readable" for ever
                        selector.unregister(key.fileobj)
        return False

    def transcripts(self, max_peers=5):
        """(label, text) for every terminal and some raw peers, for the failure report: their
        ends, which share TRANSCRIPTS_CHARS between them."""
        self.pump()
        shown = len(self.terminals) + len(self.peers[:max_peers])
        chars = max(1_000, TRANSCRIPTS_CHARS // max(1, shown))
        items = [(term.label, tail(term.report(), chars=chars)) for term in self.terminals]
        items += [(peer.label, tail(peer.output(), chars=chars)) for peer in self.peers[:max_peers]]
        if self.observers is not None:
            items += [(peer.label, tail(peer.output(), chars=chars)) for peer in self.observers.peers()]
        if len(self.peers) > max_peers:
            items.append(("more raw peers", f"{len(self.peers) - max_peers} more, not shown"))
        return items

    def close(self):
        for peer in self.peers + (self.observers.peers() if self.observers else []):
            peer.close()
        for term in self.terminals:
            if term not in self.borrowed:
                term.close()

    def borrow_server(self, server):
        self.server = server
        self.terminals.append(server.term)
        self.borrowed.add(server.term)


class SharedServers:
    """One server for all the cases of a parametrized check, per stage (and per xdist worker).

    Starting a server costs a tenth of a second of CPU; checks such as "each of ten malformed
    messages gets an error" would spend most of their time doing it. A case that fails retires
    its server, so that one bug cannot fail the cases after it.
    """

    def __init__(self):
        self.owners = {}  # key -> the Session that started the server, and owns its process

    def lend(self, session, key):
        owner = self.owners.get(key)
        if owner is None or not owner.server.term.child.isalive():
            self.retire(key)
            owner = Session(session.stage, tempfile.mkdtemp(prefix="shared-server-"), session.words)
            try:
                owner.start_server(label="server (shared by this check's cases)")
            except BaseException:  # a server that never got ready is not lent: the next case tries anew
                owner.close()
                shutil.rmtree(owner.workdir, ignore_errors=True)
                raise
            self.owners[key] = owner
        session.borrow_server(owner.server)

    def retire(self, key):
        owner = self.owners.pop(key, None)
        if owner is not None:
            owner.close()
            shutil.rmtree(owner.workdir, ignore_errors=True)

    def retire_all(self):
        for key in list(self.owners):
            self.retire(key)


SHARED = SharedServers()


def closed_port():
    """A loopback port with nothing listening on it: connecting there is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- observers

OBSERVER_HINT = ("a line reached a connection it was not for, or a broadcast did not reach one it was for.\n"
                 "  Does your server send broadcasts to every connection that has joined and to no other,\n"
                 "  and a reply, an error or a direct message only to the connection it is for?")


class Observers:
    """Two connections beside a check's actors, from the moment its server listens to its end.

    The *lurker* connects and never joins; the *bystander* joins first, then never speaks. Once
    the check has passed, prove() shows what each received, after a sync point: the lurker
    nothing (or what the spec says a connection that has not joined gets: its join-timeout, the
    shutdown notice), the bystander exactly the room's broadcasts, each once, nothing else.

    The expected broadcasts are built by construction, never written per check (ledger()):
    every actor's own actions (its welcome, as received; the says and byes it sent, as bytes on
    the wire or typed through a driver; its going away), and every public line that another
    joined raw peer received. A check opts out by naming its reason (conftest.py: the markers
    no_observers and no_bystander).
    """

    def __init__(self, session, server, bystander=True):
        self.session = session
        self.driver = session.stage.client_class
        names = session.words
        self.lurker = RawPeer(session, names.observer_name("lurker"), server.host, server.port)
        self.lurker.label = f"lurker {self.lurker.name} (observer, never joins)"
        self.parsed = []  # the bystander's lines, parsed (events_of)
        self.latecomer = None  # joins last, for a sync point, if the lurker is gone (join_lurker_last)
        self.bystander = None
        if bystander:
            self.bystander = RawPeer(session, names.observer_name("bystander"), server.host, server.port)
            self.bystander.label = f"bystander {self.bystander.name} (observer, joined, silent)"
            self.bystander.join()

    def peers(self):
        return [peer for peer in (self.lurker, self.bystander, self.latecomer) if peer is not None]

    def drain(self):
        """Read what has arrived for the observers, without waiting: a bystander that reads only at
        the end would look to the server like a client that never reads."""
        for peer in self.peers():
            if not peer.closed and select.select([peer.sock], [], [], 0)[0]:
                peer.eof = peer.eof or not peer._read()

    # -- the expected broadcasts

    def typed_count(self, event):
        """How often the user of `event`'s client typed a line holding its text (a said event)."""
        if event[0] != "said":
            return 0
        return "".join(self.typed.get(event[1], [])).count(event[2]) if event[2] else 0

    def ledger(self):
        """(expected, seen_by_others): the public events the actors caused, as a Counter, and those
        that another joined raw peer received (a Counter of the most any one of them got)."""
        expected = collections.Counter()
        self.typed = collections.defaultdict(list)
        raw_peers = [peer for peer in self.session.peers if isinstance(peer, RawPeer)]
        for peer in raw_peers:
            expected.update(peer.caused())
        for client in self.session.clients:
            expected.update(client.caused())
        for term in self.session.terminals:
            expected.update(self.joins_on_screen(term))
        # A client's user may type a message in ways no driver knows (a command mode, a slash
        # command, a line typed before a name prompt): one it typed counts as said once it is in.
        names = {client.term: client.name for client in self.session.clients}
        for term in self.session.terminals:
            name = names.get(term) or next((event[1] for event in self.joins_on_screen(term)), None)
            if name is not None:
                for line in term.typed:
                    self.typed[name].append(line)
        seen = collections.Counter()
        for client in self.session.clients:
            seen |= self.seen_on_screen(client)
        for peer in raw_peers:
            if peer.welcomed_as is not None:
                seen |= peer.public_events()
        # The observers' own joins (the lurker's or latecomer's, joining last as a sync point) are
        # not the actors' doing: the bystander's line for one is its sync reply.
        ours = {peer.name for peer in self.peers()}
        seen = collections.Counter({event: n for event, n in seen.items() if event[1] not in ours})
        return expected, seen

    def seen_on_screen(self, client):
        """The joins and leaves a driven client shows (the contract's terms, filled in with a name): what
        a program that is no driver's (a raw socket in a process of a check's own) did."""
        seen = collections.Counter()
        for key in ("joined", "left"):
            before, _, after = client.terms[key].text.partition("{name}")
            for name in re.findall(re.escape(before) + SHOWN_NAME + re.escape(after), clean(client.term.output())):
                seen[(key, name) if key == "joined" else (key, name, None)] += 1
        return seen

    def joins_on_screen(self, term):
        """A client terminal spawned without a driver (a nameless client, another stage's): its
        welcome on screen is its join, and its exit its leave."""
        if term in {client.term for client in self.session.clients} or \
                not any(str(arg).endswith("client.py") for arg in term.argv):
            return []
        before, _, after = self.session.stage.terms["welcome"].text.partition("{name}")
        names = re.findall(re.escape(before) + SHOWN_NAME + re.escape(after), clean(term.output()))
        events = [("joined", name) for name in names[:1]]
        if events and not term.child.isalive():
            events.append(("left", names[0], "lost" if term.child.signalstatus == signal.SIGKILL else None))
        return events

    # -- the proof

    def prove(self):
        __tracebackhide__ = True
        server_up = self.session.server.term.child.isalive()
        if self.bystander is not None:
            self.prove_bystander(server_up)
        elif server_up and not self.session.stage.schema:
            self.join_lurker_last()  # its sync point on 02 and 11, bystander or not
        self.prove_lurker(server_up)

    def prove_bystander(self, server_up):
        __tracebackhide__ = True
        peer = self.bystander
        expected, _ = self.ledger()
        deadline = time.monotonic() + self.session.timeout
        # Wait on output: until every expected broadcast has come (or the connection has ended).
        while not peer.eof and not peer.closed and time.monotonic() < deadline:
            if not matching_missing(expected, collections.Counter(self.events_of(peer)[0])):
                break
            if not peer._receive(max(0.0, deadline - time.monotonic())):
                peer.eof = True
        if server_up and not peer.eof:
            if self.session.stage.schema:  # JSON Lines: a question the server answers
                peer.round_trip()
            else:
                self.join_lurker_last()
        elif not peer.eof:  # the server has stopped: the end of the connection is the sync point
            self.read_to_the_end(peer)
        self.session.pump()  # what the clients' screens show counts too (seen_on_screen): read it all
        expected, seen = self.ledger()
        events, others = self.events_of(peer)
        received = collections.Counter(events)
        problems = []
        if others:
            problems.append("lines that are no broadcast of the room (a reply, an error, a direct message, "
                            "a welcome meant for another connection):\n" + "\n".join(f"    {line!r}" for line in others))
        stopped = not server_up
        missing = matching_missing(expected, received)
        if stopped:  # a server that stops may stop before it has read the last says and byes
            missing = [event for event in missing if seen[event] or event[0] == "joined"]
        missing += [event for event in seen if not any(event_matches(event, got) for got in received)
                    and event not in missing]
        if missing:
            problems.append("broadcasts it never received: " + ", ".join(shortened(repr(event), 80) for event in missing))
        extra = []
        for event, count in received.items():
            allowed = max(count_matching(expected, event, sum), count_matching(seen, event, max),
                          self.typed_count(event))
            if event[0] == "shutdown":
                allowed = 1 if stopped else 0
            if count > allowed:
                extra.append(f"{shortened(repr(event), 80)} {count} times, expected {allowed}")
        if extra:
            problems.append("broadcasts no actor caused, or received more often than they happened: " + "; ".join(extra))
        if problems:
            raise self.session.failure(
                f"[{peer.label}] expected exactly the room's broadcasts, each once, and nothing else",
                "\n".join(problems) + "\nexpected (from what the actors did and the others received): "
                + capped(", ".join(shortened(repr(event), 80) for event in sorted(expected.elements())),
                         lines=1, chars=2000, keep="head") + f"\nhint: {OBSERVER_HINT}")

    def events_of(self, peer):
        """(public events, other lines) the bystander received after its welcome and before its sync
        point. Each line is parsed once (self.parsed): a flood of thousands is read while it comes."""
        schema = self.session.stage.schema
        peer.take_all()
        for line in peer.history[len(self.parsed):]:
            event = self.driver.wire_event(line)
            if event is None or event[0] not in PUBLIC | {"shutdown", "welcome"}:
                event = None
            elif schema and event[0] != "welcome" and (problems := contract.wrong_fields(json.loads(line), schema)):
                event = ("wrong fields", "; ".join(problems))
            self.parsed.append(event)
        welcome = next((index for index, event in enumerate(self.parsed) if event == ("welcome", peer.name)), -1)
        events, others = [], []
        for line, event in zip(peer.history[welcome + 1:], self.parsed[welcome + 1:]):
            if line == peer.sync_reply:
                continue
            if event is None or event[0] == "welcome":
                others.append(line)
            elif event[0] == "wrong fields":
                others.append(f"{line}  <- {event[1]}")
            else:
                events.append(event)
        return events, others

    def join_lurker_last(self):
        """The sync point of a wire with no reply to ask for (02's plain text) or whose server runs one
        thread (11's): the lurker joins last. Its first line must be its own welcome (TCP keeps
        order: whatever was sent to it before would come first), and the bystander's line for its
        join comes after every broadcast sent before it."""
        __tracebackhide__ = True
        lurker = self.lurker
        self.drain()
        try:
            if lurker.eof:
                raise ConnectionError("the server has closed it")
            lurker.join()
        except (CheckFailed, OSError):
            if not lurker.eof:
                raise
            # The server closed it before it joined (a short --join-timeout): the spec's
            # ending, which prove_lurker() checks. A connection of its own joins last instead.
            session = self.session
            latecomer = RawPeer(session, session.words.observer_name("latecomer"), session.server.host,
                                session.server.port)
            self.latecomer = latecomer
            latecomer.join()
            if self.bystander is not None:
                self.bystander.sync_reply = self.bystander.expect_line(self.driver.wire_joined(latecomer.name))
            return
        first = lurker.history[0]
        if self.driver.wire_event(first) != ("welcome", lurker.name) and not self.driver.wire_first_reply(lurker.name)(first):
            raise self.session.failure(
                f"[{lurker.label}] expected its welcome as the first line it ever got (it had not joined before)",
                "\n".join(lurker.history) + f"\nhint: {OBSERVER_HINT}")
        lurker.joined_last = True
        if self.bystander is not None:
            self.bystander.sync_reply = self.bystander.expect_line(self.driver.wire_joined(lurker.name))

    def prove_lurker(self, server_up):
        __tracebackhide__ = True
        lurker = self.lurker
        if getattr(lurker, "joined_last", False):
            return  # its first line was its welcome (join_lurker_last)
        if server_up and not lurker.eof and self.session.stage.schema:
            with contextlib.suppress(CheckFailed):
                lurker.round_trip()
        if not lurker.eof and (not server_up or not lurker.history):
            self.read_to_the_end(lurker)
        allowed = self.driver.wire_unjoined_may_get(self.session.stage, stopped=not server_up)
        got = [line for line in lurker.history if line != lurker.sync_reply]
        if not all(any(ok(line) for ok in allowed) for line in got) or len(got) > 1:
            raise self.session.failure(
                f"[{lurker.label}] expected nothing: it never joined (its only line is the answer to its own "
                "sync)", "\n".join(lurker.history) + f"\nhint: {OBSERVER_HINT}")

    def read_to_the_end(self, peer):
        deadline = time.monotonic() + self.session.timeout
        while not peer.eof and time.monotonic() < deadline:
            if not peer._receive(max(0.0, deadline - time.monotonic())):
                peer.eof = True
        peer.take_all()


PUBLIC = {"joined", "said", "left"}


def event_matches(expected, received):
    """A left event whose reason the actors cannot know (None) matches either reason."""
    if expected[0] == "left" and received[0] == "left" and expected[1] == received[1]:
        return expected[2] is None or received[2] is None or expected[2] == received[2]
    return expected == received


def count_matching(counter, event, combine):
    """The counts in `counter` of the events that match `event`, combined (sum, or max). Only a
    left event may match another key (a reason left open): the others are looked up."""
    if event[0] != "left":
        return counter[event]
    return combine((n for e, n in counter.items() if e[:2] == event[:2] and event_matches(e, event)), default=0) \
        if combine is max else sum(n for e, n in counter.items() if e[:2] == event[:2] and event_matches(e, event))


def matching_missing(expected, received):
    """The expected events (with their counts) that `received` does not hold."""
    pool = collections.Counter(received)
    missing = []
    for event in expected.elements():
        match = event if pool[event] > 0 else None  # the same event, field for field: most of them
        if match is None and event[0] == "left":  # a reason left open matches either
            match = next((got for got in pool if pool[got] > 0 and event_matches(event, got)), None)
        if match is None:
            missing.append(event)
        else:
            pool[match] -= 1
    return missing
