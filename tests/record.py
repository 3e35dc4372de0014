"""Record the terminal sessions shown in the lessons, by driving the real stages.

    .venv/bin/python tests/record.py                 # record everything into a new temporary folder
    .venv/bin/python tests/record.py 02 03           # some stages only
    .venv/bin/python tests/record.py --write-docs    # rewrite the committed docs/transcripts/: NN/*.txt for
                                           # every stage, the failure report, the grading example

Each scenario below is typed at a person's pace: every line waits for the answer
to the one before, so the recording is the same each time. Ports and times are
replaced by fixed ones (the server port by the default, 65432). tests/test_docs.py
records again and fails if a stage no longer does what its lesson shows.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import JsonLine, Session
from stages import BY_ID, REPO
from suite import ECHO_TO_SENDER, copy_of_stage, grade
from screen import ScreenTerminal
from words import RoleNames

OUTPUT = REPO / "docs" / "transcripts"
SEED = 2026  # the recorded failure report and grading run replay these names and texts


# ---------------------------------------------------------------- making a recording readable

def as_shown(text):
    """What a terminal shows for this output: a "\\r" returns to the start of the line and overwrites."""
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        shown = ""
        for part in line.split("\r"):
            shown = part + shown[len(part):]
        lines.append(shown.rstrip())
    return "\n".join(lines).strip("\n") + "\n"


class Normaliser:
    """Replaces what changes from run to run (ports, times) with fixed values."""

    def __init__(self, server_port, fixed=None):
        self.ports = {str(port): shown for port, shown in (fixed or {server_port: "65432"}).items()}

    def port(self, match):
        number = match.group(2)
        self.ports.setdefault(number, str(50000 + len(self.ports)))
        return f"{match.group(1)}:{self.ports[number]}"

    def __call__(self, text):
        text = re.sub(r"(127\.0\.0\.1):(\d+)", self.port, text)
        for port, shown in self.ports.items():  # a port alone, as in "list" and "myport"
            text = re.sub(rf"(?<![\d:]){port}(?!\d)", shown, text)
        text = re.sub(r"(?<!\d)\d\d:\d\d:\d\d(?!\d)", "14:02:07", text)
        text = re.sub(r"\[\d\d:\d\d\]", "[14:02]", text)
        text = re.sub(r"(?<!\d)\d{4}-\d\d-\d\d(?!\d)", "2026-11-22", text)  # stage 11's 003
        # irssi's dates (a channel's creation, 329), and how long its join took: its flood
        # control sends JOIN, MODE, WHO and MODE b 2.2 s apart (2.5 s, on its 0.5 s clock), so
        # 10 s, give or take a tick of the clock. Any other time is a change, and shows.
        text = re.sub(r"\b[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d 14:02:07 \d{4}\b", "Sun Nov 22 14:02:07 2026", text)
        return re.sub(r"synced in (9|10|11) secs", "synced in 10 secs", text)


class Recording:
    """One scenario's terminals, each headed by the command a student would type."""

    def __init__(self, stage, workdir):
        self.stage = stage
        self.session = Session(stage, workdir, RoleNames())
        self.commands = {}
        self.peers = []  # stage 08: the peers' ports, in the order they started

    def server(self):
        server = self.session.start_server()
        self.commands[server.term.label] = f"$ python3 stages/{self.stage.id}/server.py"
        return server.term

    def client(self, label, *args, kind=None):
        server = self.session.server
        term = self.session.spawn(label, "client.py", "--port", str(server.port), *args, kind=kind)
        self.commands[label] = " ".join(["$ python3", f"stages/{self.stage.id}/client.py", *args])
        return term

    def peer(self, name):
        """A stage 08 peer; its port shows as 65433, 65434, ... in the recording."""
        peer = self.stage.client_class.start(self.session, name)
        self.commands[name] = f"$ python3 stages/{self.stage.id}/peer.py --host 127.0.0.1 {65433 + len(self.peers)}"
        self.peers.append(peer.port)
        return peer

    def transcripts(self):
        self.session.pump()
        if self.peers:
            normalise = Normaliser(self.peers[0], {port: str(65433 + number) for number, port in enumerate(self.peers)})
        elif self.stage.has("irc"):  # IRC's port, stage 11's default
            normalise = Normaliser(self.session.server.port, {self.session.server.port: "6667"})
        else:
            normalise = Normaliser(self.session.server.port)
        return {term.label: normalise(self.commands[term.label] + "\n" + shown(term)) for term in self.session.terminals}

    def close(self):
        self.session.close()


def shown(term):
    """What the terminal shows: the lines printed, or for a full-screen program its screen at the end."""
    if isinstance(term, ScreenTerminal):
        return term.report() + "\n"
    return as_shown(clean_keys(term.output()))


def clean_keys(text):
    return text.replace("^D", "").replace("\x04", "")


def settle(term):
    """Wait until every program in the scenario waits for input: a person reads before typing.

    Otherwise a message could arrive in one terminal while its program is still
    drawing its prompt, and the recording would differ from run to run.
    """
    for other in term.session.terminals:
        other.wait_until_idle()


def type_line(term, line):
    settle(term)
    term.send_line(line)


def ask(term, line, answer):
    """Type a line, then wait for the answer."""
    type_line(term, line)
    term.expect(answer)


def press(term, key):
    settle(term)
    getattr(term, key)()


# ---------------------------------------------------------------- the scenarios, one per stage

def stage_01(rec):
    server = rec.server()
    first = rec.client("first client")
    first.expect("> ")
    ask(first, "hello", "echo: hello")
    second = rec.client("second client")
    second.expect("> ")
    type_line(second, "are you there?")  # no answer: the server is busy with the first client
    ask(first, "still me", "echo: still me")
    press(first, "ctrl_d")
    first.expect_exit(0)
    second.expect("echo: are you there?")
    press(second, "ctrl_d")
    second.expect_exit(0)
    server.expect("disconnected")
    server.expect("disconnected")
    press(server, "ctrl_c")
    server.expect_exit(0)


def chat_scenario(rec, bad_name=False):
    server = rec.server()
    if bad_name:
        alice = rec.client("alice")
        alice.expect("name:")
        ask(alice, "alice smith", "bad-name")
        alice.expect("name:")
        ask(alice, "alice", "welcome, alice")
    else:
        alice = rec.client("alice", "--name", "alice")
        alice.expect("welcome, alice")
    bob = rec.client("bob", "--name", "bob")
    bob.expect("welcome, bob")
    alice.expect("bob joined")
    type_line(alice, "hi bob")
    bob.expect("alice: hi bob")
    type_line(bob, "hello alice")
    alice.expect("bob: hello alice")
    press(bob, "ctrl_d")
    bob_leaves_and_the_server_stops(alice, bob, server)


def bob_leaves_and_the_server_stops(alice, bob, server):
    """How every chat recording ends: bob has just quit; alice and the server see him go, then
    Ctrl+C stops the server and alice is told."""
    bob.expect_exit(0)
    alice.expect("bob left")
    server.expect("bob left")
    press(server, "ctrl_c")
    server.expect_exit(0)
    alice.expect("connection closed by server")
    alice.expect_exit(0)


def stage_02(rec):
    chat_scenario(rec)


def stage_03(rec):
    chat_scenario(rec, bad_name=True)


def stage_04(rec):
    chat_scenario(rec, bad_name=True)


def stage_05(rec):
    server = rec.server()
    alice = rec.client("alice", "--name", "alice")
    alice.expect("C HELP for the commands")
    bob = rec.client("bob")
    bob.expect("name:")
    ask(bob, "ALICE", "name-taken")
    bob.expect("name:")
    ask(bob, "bob", "C HELP for the commands")
    carol = rec.client("carol", "--name", "carol")
    carol.expect("C HELP for the commands")
    alice.expect("carol joined")
    bob.expect("carol joined")
    ask(alice, "C PM", "type D")
    type_line(alice, "D lunch, anyone?")
    bob.expect("alice: lunch, anyone?")
    carol.expect("alice: lunch, anyone?")
    ask(bob, "C DM", "type C")
    ask(bob, "C alice", "type D")
    type_line(bob, "D yes, the usual place?")
    alice.expect("bob: yes, the usual place?")
    ask(carol, "C LS", "online:")
    ask(carol, "hello?", "C HELP")
    ask(carol, "C HELP", "C EX")
    type_line(carol, "C EX")
    carol.expect_exit(0)
    alice.expect("carol left")
    bob.expect("carol left")
    server.expect("carol left")
    press(server, "ctrl_c")
    server.expect_exit(0)
    for term in (alice, bob):
        term.expect("connection closed by server")
        term.expect_exit(0)


def stage_07(rec):
    rec.server()
    carol = rec.client("carol", "--plain", "--name", "carol")
    carol.expect("welcome, carol")
    type_line(carol, "morning all, the build is green again")
    rec.session.server.logs("the build is green")
    alice = rec.client("alice", "--name", "alice", kind=ScreenTerminal)
    alice.shows("the build is green")  # the history a newcomer gets
    bob = rec.client("bob", "--plain", "--name", "bob")
    bob.expect("welcome, bob")
    alice.shows("bob joined")
    carol.expect("bob joined")
    settle(alice)
    alice.type("hi bob, lunch at noon?\r")
    bob.expect("alice: hi bob, lunch at noon?")
    type_line(bob, "/msg alice yes, and bring the slides")
    alice.shows("[direct] bob: yes, and bring the slides")
    settle(alice)
    alice.type("/list\r")
    alice.shows("online:")
    settle(alice)
    alice.type("/dance\r")
    alice.shows("unknown command")
    settle(alice)
    alice.type("see you ")  # typed, not sent: the screen shows it in the input box
    alice.wait_for(lambda: alice.row(-1) == "> see you", "the typed words")


def stage_08(rec):
    """Three peers; ports replaced by 65433, 65434 and 65435 in the recording."""
    peers = [rec.peer(name) for name in ("alice", "bob", "carol")]
    alice, bob, carol = (peer.term for peer in peers)
    a_port, b_port, c_port = (peer.port for peer in peers)
    ask(alice, "help", "exit")
    ask(alice, "myport", str(a_port))
    ask(alice, f"connect 127.0.0.1 {b_port}", "connection 1 to")
    bob.expect(f"from 127.0.0.1:{a_port}")
    ask(carol, f"connect 127.0.0.1 {a_port}", "connection 1 to")
    alice.expect(f"from 127.0.0.1:{c_port}")
    ask(carol, f"connect 127.0.0.1 {b_port}", "connection 2 to")
    bob.expect(f"from 127.0.0.1:{c_port}")
    ask(alice, "list", f"{c_port}")
    ask(alice, "send 1 hello bob, it's alice", "sent")
    bob.expect("hello bob")
    ask(bob, "send 1 hi alice!", "sent")
    alice.expect("hi alice!")
    ask(carol, f"connect 127.0.0.1 {c_port}", "yourself")
    ask(carol, "send 7 anyone?", "no connection")
    ask(alice, "terminate 1", "terminated")
    bob.expect("closed by the peer")
    type_line(carol, "exit")
    carol.expect_exit(0)
    alice.expect("closed by the peer")
    bob.expect("closed by the peer")


def stage_10(rec):
    notes = Path(rec.session.workdir) / "notes.txt"
    notes.write_text("".join(f"line {number}: the minutes of the meeting\n" for number in range(1, 101)))
    server = rec.server()
    alice = rec.client("alice", "--name", "alice")
    alice.expect("C HELP for the commands")
    bob = rec.client("bob", "--name", "bob")
    bob.expect("C HELP for the commands")
    alice.expect("bob joined")
    ask(alice, "C FT", "type C <name>")
    ask(alice, "C bob", "type C <path>")
    ask(alice, "C notes.txt", "waiting for an answer")
    bob.expect("C NO to decline")
    ask(bob, "C OK", "saved")
    alice.expect("sent notes.txt")
    # A plaintext client (stage 09's) knocks: it is told, and nobody else notices.
    old = rec.session.spawn("stage 09 client", "client.py", "--port", str(rec.session.server.port), "--name", "dave",
                            stage=BY_ID["09"])
    rec.commands["stage 09 client"] = "$ python3 stages/09/client.py --name dave"
    old.expect_exit(1)  # one line: "this is not a stage-09 chat server: it sent ..."
    server.expect("spoke plaintext")
    type_line(bob, "C EX")
    bob_leaves_and_the_server_stops(alice, bob, server)


# irssi's settings for the recording: a throwaway home, and no timestamps (they would change
# from run to run). Its flood control is left on, as every user has it: five commands at once,
# then one per 2.2 s, so the join typed after registration syncs some 10 s later.
IRSSI_CONFIG = """settings = {
  core = { settings_autosave = "no"; real_name = "Alice"; user_name = "alice"; };
  "fe-common/core" = { timestamps = "no"; };
};
"""
IRSSI_WAIT = 30  # seconds: what alice typed may wait in irssi's queue, 2.2 s a command


def irssi(rec, nick):
    """irssi in a terminal of its own (80 x 24, read through pyte), not yet connected."""
    home = Path(rec.session.workdir) / f"irssi-{nick}"
    home.mkdir()
    (home / "config").write_text(IRSSI_CONFIG)
    # TERM=screen: xterm's terminfo has REP (CSI b, "repeat the last character"), which irssi
    # uses to blank a line's end and pyte 0.8.2 ignores; screen's has no REP.
    term = ScreenTerminal(rec.session, f"{nick} in irssi",
                          [shutil.which("irssi"), "--home", str(home), "--noconnect", "-n", nick],
                          env={"TERM": "screen-256color"})
    rec.session.terminals.append(term)
    rec.commands[term.label] = (f"$ irssi -n {nick}     then, in irssi: /connect 127.0.0.1 "
                                f"{rec.session.server.port} and /join #kit")
    return term


def stage_11(rec):
    """alice in irssi, bob in the kit's own client.py, in #kit on stage 11's server."""
    server = rec.server()
    alice = irssi(rec, "alice")
    alice.shows("Irssi")
    alice.type(f"/connect 127.0.0.1 {rec.session.server.port}\r")
    alice.shows("MOTD File is missing")  # our 422: registered
    alice.shows("Mode change [+i]")  # irssi asks to be invisible (+i); we agree
    alice.type("/join #kit\r")
    alice.shows("Total of 1 nicks", IRSSI_WAIT)  # the JOIN waits its turn
    alice.shows("synced in", IRSSI_WAIT)  # irssi has asked MODE, WHO and the ban list: joined
    bob = rec.client("bob", "--name", "bob")
    bob.expect("now talking in #kit as bob")
    bob.expect("in #kit: alice bob")
    alice.shows("bob [bob@127.0.0.1] has joined #kit")
    settle(bob)
    alice.type("hi bob, this is irssi\r")
    bob.expect("<alice> hi bob, this is irssi", IRSSI_WAIT)
    type_line(bob, "hello alice, from the kit's own client")
    alice.shows("bob> hello alice")
    settle(bob)
    alice.type("/me waves\r")
    bob.expect("* alice waves", IRSSI_WAIT)
    settle(bob)
    alice.type("and in \x02bold\x02, which irssi draws and client.py shows as a code\r")
    bob.expect("which irssi draws", IRSSI_WAIT)
    type_line(bob, "/topic #kit :tea at five")
    alice.shows("changed the topic of #kit to: tea at five")
    bob.expect("set the topic")
    press(bob, "ctrl_d")
    bob.expect_exit(0)
    alice.shows("bob [bob@127.0.0.1] has quit [Quit: leaving]")
    server.expect("bob quit")


SCENARIOS = {"01": stage_01, "02": stage_02, "03": stage_03, "04": stage_04, "05": stage_05,
             "06": stage_05,  # 06 is 05 made fit for strangers: the same scenario, the same screens
             "07": stage_07,
             "08": stage_08, "09": stage_05,  # 09 is 05 on asyncio: the same scenario, the same screens
             "10": stage_10, "11": stage_11}
NEEDS = {"11": "irssi"}  # a program a scenario runs besides the stage's own


# ---------------------------------------------------------------- the protocol on the wire

class Wire:
    """Raw sockets talking to a real server; every line sent or received goes into one log."""

    def __init__(self, session):
        self.session = session
        self.log = []
        self.peers = {}

    def send(self, name, data):
        if name not in self.peers:
            self.peers[name] = self.session.raw_peer(name)
        self.log.append(f"{name} → server".ljust(18) + data.decode().rstrip("\n"))
        self.peers[name].send(data)

    def receive(self, name, wanted):
        line = self.peers[name].expect_line(wanted)
        self.log.append(f"server → {name}".ljust(18) + line)

    def text(self):
        text = "\n".join(self.log) + "\n"
        return re.sub(r'"time": "[^"]+"', '"time": "2026-11-22T14:02:07+00:00"', text)


def wire_01(wire):
    wire.send("client", b"hello there\n")
    wire.receive("client", "echo: hello there")


def wire_02(wire):
    for name, online in (("alice", 1), ("bob", 2)):
        wire.send(name, f"{name}\n".encode())
        wire.receive(name, f"welcome, {name} ({online} online)")
    wire.receive("alice", "* bob joined")
    wire.send("alice", b"hi bob\n")
    wire.receive("bob", "alice: hi bob")


def hello(wire, name):
    wire.send(name, b'{"type": "hello", "name": "%s", "client_id": "%s-1"}\n' % (name.encode(), name.encode()))
    wire.receive(name, JsonLine(type="welcome", name=name))


def wire_03(wire):
    wire.send("alice", b'{"type": "hello", "name": "alice smith", "client_id": "alice-1"}\n')
    wire.receive("alice", JsonLine(type="error", code="bad-name"))
    hello(wire, "alice")
    hello(wire, "bob")
    wire.receive("alice", JsonLine(type="joined", name="bob"))
    wire.send("alice", b'{"type": "say", "text": "hi bob"}\n')
    wire.receive("bob", JsonLine(type="said", text="hi bob"))
    wire.send("bob", b'{"type": "say", "text": 42}\n')
    wire.receive("bob", JsonLine(type="error", code="bad-message"))
    wire.send("bob", b'{"type": "bye"}\n')
    wire.receive("bob", JsonLine(type="bye"))
    wire.receive("alice", JsonLine(type="left", name="bob"))


def wire_05(wire):
    hello(wire, "alice")
    hello(wire, "bob")
    wire.send("carol", b'{"type": "hello", "name": "ALICE", "client_id": "c-1"}\n')
    wire.receive("carol", JsonLine(type="error", code="name-taken"))
    wire.send("alice", b'{"type": "who"}\n')
    wire.receive("alice", JsonLine(type="users"))
    wire.send("alice", b'{"type": "dm", "to": "bob", "text": "lunch?"}\n')
    wire.receive("bob", JsonLine(type="dm", text="lunch?"))
    wire.send("alice", b'{"type": "dm", "to": "dave", "text": "hi"}\n')
    wire.receive("alice", JsonLine(type="error", code="no-such-user"))
    wire.session.server.term.ctrl_c()
    wire.receive("alice", JsonLine(type="shutdown"))
    wire.receive("bob", JsonLine(type="shutdown"))


WIRE_SCENARIOS = {"01": wire_01, "02": wire_02, "03": wire_03, "05": wire_05}


def record_wire(stage_id):
    with tempfile.TemporaryDirectory() as workdir:
        session = Session(BY_ID[stage_id], workdir, RoleNames())
        try:
            session.start_server()
            wire = Wire(session)
            WIRE_SCENARIOS[stage_id](wire)
            return wire.text()
        finally:
            session.close()


def record(stage_id):
    """Run one stage's scenario; return {terminal label: transcript}."""
    with tempfile.TemporaryDirectory() as workdir:
        rec = Recording(BY_ID[stage_id], workdir)
        try:
            SCENARIOS[stage_id](rec)
            return rec.transcripts()
        finally:
            rec.close()


def failure_report():
    """What a student sees when a check fails: stage 02 graded with the sender getting its own message."""
    with tempfile.TemporaryDirectory() as work:
        folder = copy_of_stage("02", Path(work) / "submission", *ECHO_TO_SENDER)
        output = grade("02", folder, "-k", "everyone_but_the_sender", "--seed", str(SEED)).stdout
        output = output.replace(str(folder), "submissions/alice")
    report = output[output.index("_" * 10):output.index("= short test summary")].rstrip("= \n") + "\n"
    report = re.sub(r"\S*?(tests/\w+\.py)", r"\1", report)  # pytest shows the repo's path, or a relative one
    report = re.sub(r"0x[0-9a-f]{6,}", "0x7f3c2a1b9d50", report)
    port = re.search(r"listening on 127\.0\.0\.1:(\d+)", report).group(1)
    return Normaliser(port)(report)


def grading_example():
    """An instructor grading a class of three stage-01 submissions with tests/grade.py.

    Returns the table grade.py prints, bob's summary.txt, the class summary and its plot, times
    replaced by fixed ones.
    """
    from known_bad import BUGS
    bugs = {bug.name: bug for bug in BUGS}
    with tempfile.TemporaryDirectory() as work:
        submissions = Path(work) / "submissions"
        copy_of_stage("01", submissions / "ada")
        for student, bug in (("bob", "one recv() taken as one message"), ("cy", "a server that stops after its first client")):
            copy_of_stage("01", submissions / student, bugs[bug].old, bugs[bug].new)
        run = subprocess.run([sys.executable, str(REPO / "tests" / "grade.py"), "--stage", "01",
                              "--out", "grading", "--jobs", "1", "--seed", str(SEED), "submissions/ada", "submissions/bob",
                              "submissions/cy"], cwd=work, capture_output=True, text=True, timeout=600, check=True)
        summary = (Path(work) / "grading" / "bob" / "summary.txt").read_text()
        whole_class = (Path(work) / "grading" / "class-summary.md").read_text()
        plot = (Path(work) / "grading" / "scores.svg").read_text()
    table = re.sub(r" +\d+s  ", "    6s  ", run.stdout)
    # Progress lines: as if each submission took 6 s.
    table = re.sub(r"^\[(\d+)/3\] (\S+) (\S+) in \d+ s; (.*?) about [\d.]+ min left$",
                   lambda m: f"[{m[1]}/3] {m[2]} {m[3]} in 6 s; {m[4]} about {0.1 * (3 - int(m[1])):.1f} min left",
                   table, flags=re.M)
    table = re.sub(r"graded in \d+ s \([\d.]+ s each\); reports in \S+, the class summary in \S+",
                   "graded in 18 s (6.0 s each); reports in grading/, the class summary in grading/class-summary.md",
                   table)
    return (f"$ .venv/bin/python tests/grade.py --stage 01 --seed {SEED} submissions/ada submissions/bob submissions/cy\n"
            + table, summary, whole_class, plot)


def file_name(label):
    return label.replace(" ", "-") + ".txt"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Record the sessions the lessons show.")
    parser.add_argument("stages", nargs="*", metavar="NN",
                        help=f"stages to record (default: all, and the failure report and grading example); "
                             f"one of {', '.join(SCENARIOS)}")
    parser.add_argument("--write-docs", action="store_true", help="write into docs/transcripts/ (committed)")
    args = parser.parse_args(argv)
    unknown = [stage for stage in args.stages if stage not in SCENARIOS]
    if unknown:
        parser.error(f"no scenario for stage {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    output = OUTPUT if args.write_docs else Path(tempfile.mkdtemp(prefix="chat-kit-transcripts-"))
    if not args.stages:
        written = {"failure-report.txt": failure_report()}
        table, summary, whole_class, plot = grading_example()
        written |= {"grading-table.txt": table, "grading-summary.txt": summary,
                    "grading-class-summary.txt": whole_class, "grading-scores.svg": plot}
        for name, text in written.items():
            (output / name).write_text(text)
        print(f"wrote {', '.join(written)} in {output}")
    for stage_id in args.stages or SCENARIOS:
        if stage_id in WIRE_SCENARIOS:
            (output / f"wire-{stage_id}.txt").write_text(record_wire(stage_id))
            print(f"wrote {output / f'wire-{stage_id}.txt'}")
        folder = output / stage_id
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.txt"):
            old.unlink()
        for label, text in record(stage_id).items():
            (folder / file_name(label)).write_text(text)
            print(f"wrote {folder / file_name(label)}")
    if not args.write_docs:
        print(f"docs/transcripts/ is unchanged; --write-docs writes there (then compare: diff -r {output} "
              "docs/transcripts)")


if __name__ == "__main__":
    main()
