"""Every message in every state: a table-driven matrix, in the manner of irctest.

The rows are every client message of the stage's JSON Lines protocol (its part of
tests/contract.py, CLIENT_WIRE), each field missing, of the wrong JSON type, empty, only
spaces and too long, and a few lines that are not messages at all. The columns are the
states of the sender's connection: connected but not joined, joined, and after its `bye`
(the spec: the server answers `bye`, then reads nothing more, so the cell's line follows
the `bye` in the same packet; a line over the limit is not sent there, as a server that
closes with it unread resets the connection, which may lose the `bye`'s answer: TCP's doing,
not the server's). Each cell holds the exact answer (every field compared:
the free ones, `time` and an error's `message`, only for their kind), whether the
connection stays open, and the exact effect on a joined bystander and a never-joined
lurker, each proven after a round trip on its own connection. Every expectation cites
the sentence of docs/protocol.md it comes from (contract.JSON_RULES).

One server per stage walks every cell, with a fresh sender per cell. Each cell's line is
sent whole; a sample of rows is also sent batched with the next line and a byte per write.
Stage 11's matrix, over IRC's registration states, is at the end of this file.
"""

import json
import re
import socket
import time

from dataclasses import dataclass, field


import pytest

import contract
from harness import TIMEOUT, CheckFailed, json_message
from stages import REPO
from test_irc import Lab
from test_irc import parse as irc_line

NOT_JOINED, JOINED, AFTER_BYE = "connected, not joined", "joined", "after bye"
STATES = (NOT_JOINED, JOINED, AFTER_BYE)
# After each cell's line, two lines whose answers are the same in every state (the shape is
# checked first): what came before their two answers is all the server said to the cell.
SYNC = json_message(type="matrix-sync") + b"matrix sync: not JSON\n"
SYNC_CODES = ("unknown-type", "bad-json")


class Free:
    """A field the spec leaves free: any value of its kind (an error's `message`)."""

    def __repr__(self):
        return "(any string)"


FREE = Free()


class Names:
    """`users`' names: these and no other, sorted with or without regard to case."""

    def __init__(self, *names):
        self.names = names

    def __eq__(self, other):
        return (isinstance(other, list) and sorted(other) == sorted(self.names)
                and other in (sorted(other), sorted(other, key=str.lower)))

    def __repr__(self):
        return f"{sorted(self.names)} (in either sort order)"


def error(code):
    return {"type": "error", "code": code, "message": FREE}


@dataclass
class Outcome:
    """What one cell expects: the sender's answer, whether it is then closed, what the bystander gets."""
    actor: list
    rules: tuple
    closed: bool = False
    bystander: list = field(default_factory=list)


@dataclass
class Row:
    message: str  # the message's type (or "line" for a line that is no message)
    variant: str  # "valid", "name missing", "text empty"...
    build: object  # Cell -> the line's bytes, with its \n
    expect: object  # (Cell, state) -> Outcome (not joined, joined; after bye is the same for all)
    sampled: bool = False  # also sent batched and a byte per write
    states: tuple = STATES

    @property
    def label(self):
        return f"{self.message} / {self.variant}"


@dataclass
class Cell:
    """What a row's line and expectation are built from: this cell's names and the stage."""
    stage: object
    actor: str
    bystander: str
    history: list  # (from, text) of every public message relayed so far, for stage 07's newcomers

    @property
    def max_line(self):
        return self.stage.client_class.max_line


# ---------------------------------------------------------------- the rows

def message(kind, **fields):
    return json_message(type=kind, **fields)


def too_long_line(cell, kind, field_name, fields):
    """`kind` with `field_name` so long that the whole line is one byte over the limit."""
    bare = len(message(kind, **{**fields, field_name: ""})) - 1  # without its \n
    return message(kind, **{**fields, field_name: "x" * (cell.max_line + 1 - bare)})


def longest_line(cell, kind, field_name, fields):
    """`kind` with `field_name` as long as the line limit allows, and not a byte more."""
    bare = len(message(kind, **{**fields, field_name: ""})) - 1
    return message(kind, **{**fields, field_name: "y" * (cell.max_line - bare)})


def welcome(cell, name, state):
    """A sender's hello that is taken: welcome (and history), and the bystander's joined."""
    if state == JOINED:
        return Outcome([error("already-joined")], ("shape", "already-joined"))
    answer = [{"type": "welcome", "name": name, "online": 2}]
    if cell.stage.has("file_transfer"):
        answer[0]["max_file_size"] = FREE
    if cell.stage.has("history"):
        answer += [{"type": "said", "from": who, "text": text, "history": True} for who, text in cell.history[-20:]]
    rules = ("welcome", "online", "joined", "nobody") + (("history",) if cell.stage.has("history") else ())
    return Outcome(answer, rules, bystander=[{"type": "joined", "name": name}])


def joined_only(code, rule):
    """Not joined: not-joined; joined: `code` (None: nothing)."""
    def expect(cell, state):
        if state == NOT_JOINED:
            return Outcome([error("not-joined")], ("shape", "not-joined", "nobody"))
        return Outcome([error(code)] if code else [], (rule,))
    return expect


def relayed(kind, to_bystander=True, to_self=False):
    """A say (to the bystander) or a dm (to the bystander or the sender) that is relayed."""
    def expect(cell, state, line):
        if state == NOT_JOINED:
            return Outcome([error("not-joined")], ("shape", "not-joined", "nobody"))
        sent = json.loads(line)
        got = {"type": "said" if kind == "say" else "dm", "from": cell.actor, "text": sent["text"]}
        if kind == "say":
            return Outcome([], ("said", "say", "nobody"), bystander=[got])
        if to_self:
            return Outcome([got], ("dm",))
        return Outcome([], ("dm", "say", "nobody"), bystander=[got] if to_bystander else [])
    return expect


def with_line(expect, build):
    """An expectation that needs the cell's line (the text it relays)."""
    return lambda cell, state: expect(cell, state, build(cell))


def too_long(cell, state):
    return Outcome([error("line-too-long")], ("line-too-long", "nobody"), closed=True,
                   bystander=[{"type": "left", "name": cell.actor, "reason": "lost"}] if state == JOINED else [])


def shape(code, rule):
    return lambda cell, state: Outcome([error(code)], ("shape", rule))


def bye(cell, state):
    return Outcome([{"type": "bye"}], ("bye", "bye-anytime", "left", "nobody"), closed=True,
                   bystander=[{"type": "left", "name": cell.actor, "reason": "quit"}] if state == JOINED else [])


def field_rows(kind, fields, valid, semantic):
    """Each field of `kind` missing, of the wrong JSON type, empty, only spaces and too long.

    `valid`: Cell -> the message's fields; `semantic`: (field, variant) -> an expectation for
    the variants the shape lets through (empty, spaces, too long), or None to leave one out."""
    rows = []
    for name, kind_of in fields.items():
        wrong = "42" if kind_of == contract.NUMBER else 42
        rows += [
            Row(kind, f"{name} missing",
                lambda cell, name=name: message(kind, **{k: v for k, v in valid(cell).items() if k != name}),
                shape("bad-message", "bad-message")),
            Row(kind, f"{name} of the wrong JSON type ({json.dumps(wrong)})",
                lambda cell, name=name, wrong=wrong: message(kind, **{**valid(cell), name: wrong}),
                shape("bad-message", "bad-message"), sampled=name == "text"),
        ]
        if kind_of == contract.NUMBER:
            rows.append(Row(kind, f"{name} true (a JSON boolean, not a number)",
                            lambda cell, name=name: message(kind, **{**valid(cell), name: True}),
                            shape("bad-message", "bad-message")))
            continue
        for variant, value in (("empty", ""), ("only spaces", "   ")):
            expect = semantic(name, variant)
            if expect is not None:
                build = (lambda cell, name=name, value=value: message(kind, **{**valid(cell), name: value}))
                rows.append(Row(kind, f"{name} {variant}", build, expect, sampled=variant == "only spaces"))
        expect = semantic(name, "too long")
        if expect is not None:
            if kind_of in (contract.NAME, contract.ONLINE):  # past the name rule, well within a line
                build = (lambda cell, name=name: message(kind, **{**valid(cell), name: "n" * 33}))
            else:
                build = (lambda cell, name=name: too_long_line(cell, kind, name, valid(cell)))
            long_line = kind_of not in (contract.NAME, contract.ONLINE)
            rows.append(Row(kind, f"{name} too long", build, expect,
                            states=(NOT_JOINED, JOINED) if long_line else STATES))
    return rows


def hello_rows(stage):
    def valid(cell):
        return {"name": cell.actor, "client_id": f"matrix-{cell.actor}"}

    def semantic(name, variant):
        if name == "client_id":  # any string
            if variant == "too long":
                return too_long
            return lambda cell, state: welcome(cell, cell.actor, state)
        return lambda cell, state: (Outcome([error("already-joined")], ("shape", "already-joined"))
                                    if state == JOINED else Outcome([error("bad-name")], ("name", "nobody")))

    def taken(cell, state):
        if state == JOINED:
            return Outcome([error("already-joined")], ("shape", "already-joined"))
        if stage.has("unique_names"):
            return Outcome([error("name-taken")], ("name-taken", "nobody"))
        outcome = welcome(cell, cell.bystander.swapcase(), state)
        outcome.rules += ("shared-name",)
        return outcome

    return [
        Row("hello", "valid", lambda cell: message("hello", **valid(cell)),
            lambda cell, state: welcome(cell, cell.actor, state), sampled=True),
        Row("hello", "the bystander's name in another case", lambda cell: message(
            "hello", name=cell.bystander.swapcase(), client_id="matrix"), taken),
        Row("hello", "an extra field", lambda cell: message("hello", **valid(cell), colour="blue"),
            lambda cell, state: welcome(cell, cell.actor, state)),
        *field_rows("hello", contract.CLIENT_JSON_1["hello"], valid, semantic),
    ]


def say_rows():
    def valid(cell):
        return {"text": f"matrix says hi to {cell.bystander}"}

    def semantic(name, variant):
        if variant == "too long":
            return too_long
        build = (lambda cell: message("say", text="" if variant == "empty" else "   "))
        return with_line(relayed("say"), build)

    longest = (lambda cell: longest_line(cell, "say", "text", {}))
    return [
        Row("say", "valid", lambda cell: message("say", **valid(cell)),
            with_line(relayed("say"), lambda cell: message("say", **valid(cell))), sampled=True),
        Row("say", "the longest text a line holds", longest, with_line(relayed("say"), longest)),
        Row("say", "an extra field", lambda cell: message("say", **valid(cell), to="everyone"),
            with_line(relayed("say"), lambda cell: message("say", **valid(cell)))),
        *field_rows("say", contract.CLIENT_JSON_1["say"], valid, semantic),
    ]


def dm_rows():
    def valid(cell):
        return {"to": cell.bystander.swapcase(), "text": f"matrix whispers to {cell.bystander}"}

    def semantic(name, variant):
        if name == "to":
            return joined_only("no-such-user", "no-such-user")
        if variant == "too long":
            return too_long
        build = (lambda cell: message("dm", **{**valid(cell), "text": "" if variant == "empty" else "   "}))
        return with_line(relayed("dm"), build)

    def to_self(cell):
        return message("dm", to=cell.actor, text="a note to myself")

    return [
        Row("dm", "valid (to the bystander, in another case)", lambda cell: message("dm", **valid(cell)),
            with_line(relayed("dm"), lambda cell: message("dm", **valid(cell))), sampled=True),
        Row("dm", "to the sender's own name", to_self, with_line(relayed("dm", to_self=True), to_self)),
        Row("dm", "to a name nobody has", lambda cell: message("dm", to="nobody-here", text="hello?"),
            joined_only("no-such-user", "no-such-user")),
        *field_rows("dm", contract.CLIENT_JSON_2["dm"], valid, semantic),
    ]


def who_rows():
    def users(cell, state):
        if state == NOT_JOINED:
            return Outcome([error("not-joined")], ("shape", "not-joined", "nobody"))
        return Outcome([{"type": "users", "names": Names(cell.actor, cell.bystander)}], ("users", "nobody"))

    return [Row("who", "valid", lambda cell: message("who"), users, sampled=True),
            Row("who", "an extra field", lambda cell: message("who", names=["x"]), users)]


def file_rows():
    """Stage 10's file messages: each well-formed one that refers to nothing in transfer, and
    each field missing or of the wrong type (a whole transfer's cells are tests/test_files.py's)."""
    sha = "0" * 64

    def offer(cell, **fields):
        return {"to": cell.bystander, "id": "f1", "name": "notes.txt", "size": 10, "sha256": sha, **fields}

    rows = [
        Row("offer", "to a name nobody has", lambda cell: message("offer", **offer(cell, to="nobody-here")),
            joined_only("no-such-user", "no-such-offer-user")),
        Row("offer", "to the sender's own name", lambda cell: message("offer", **offer(cell, to=cell.actor)),
            joined_only("no-such-user", "no-such-offer-user")),
        Row("offer", "over the size limit", lambda cell: message("offer", **offer(cell, size=2 ** 40)),
            joined_only("file-too-big", "file-too-big")),
        Row("offer", "sha256 not 64 hex digits", lambda cell: message("offer", **offer(cell, sha256="x" * 64)),
            joined_only("bad-offer", "bad-offer")),
    ]
    refs = {"accept": {"from": "bystander", "id": "nothing"}, "decline": {"from": "bystander", "id": "nothing"},
            "chunk": {"id": "nothing", "data": "aGk="}, "done": {"id": "nothing"}, "cancel": {"id": "nothing"}}
    answers = {"accept": ("no-such-file", "no-such-file"), "decline": ("no-such-file", "no-such-file"),
               "chunk": ("not-accepted", "not-accepted"), "done": ("not-accepted", "not-accepted"),
               "cancel": (None, "cancel")}

    def valid_for(kind):
        def valid(cell):
            if kind == "offer":
                return offer(cell, to="nobody-here")
            return {key: cell.bystander if value == "bystander" else value for key, value in refs[kind].items()}
        return valid

    for kind, fields in contract.CLIENT_FILES.items():
        if kind in contract.CLIENT_JSON_2:
            continue
        if kind != "offer":
            rows.append(Row(kind, "of a file not in transfer", lambda cell, kind=kind: message(kind, **valid_for(kind)(cell)),
                            joined_only(*answers[kind])))
        rows += field_rows(kind, fields, valid_for(kind), lambda name, variant: None)
    return rows


def line_rows():
    """Lines that are no message: the same answer in every state (the shape is checked first)."""
    def raw(data):
        return lambda cell: data

    return [
        Row("line", "not JSON", raw(b"hello there\n"), shape("bad-json", "bad-json"), sampled=True),
        Row("line", "not UTF-8", raw(b'{"type": "say", "text": "\xff"}\n'), shape("bad-json", "bad-json")),
        Row("line", "a JSON array", raw(b'["say", "hi"]\n'), shape("bad-message", "bad-message")),
        Row("line", "a JSON string", raw(b'"say"\n'), shape("bad-message", "bad-message")),
        Row("line", "blank (spaces and a tab)", raw(b"  \t \n"), lambda cell, state: Outcome([], ("blank",))),
        Row("line", "too long, not JSON", lambda cell: b"z" * (cell.max_line + 1) + b"\n", too_long,
            states=(NOT_JOINED, JOINED)),
        Row("type", "missing", raw(b'{"text": "hi"}\n'), shape("bad-message", "bad-message")),
        Row("type", "of the wrong JSON type (42)", raw(b'{"type": 42}\n'), shape("bad-message", "bad-message")),
        Row("type", "empty", raw(b'{"type": ""}\n'), shape("unknown-type", "unknown-type")),
        Row("type", "only spaces", raw(b'{"type": "   "}\n'), shape("unknown-type", "unknown-type"), sampled=True),
        Row("type", "too long", lambda cell: message("s" * 4000), shape("unknown-type", "unknown-type")),
        Row("type", "unknown (dance)", raw(b'{"type": "dance"}\n'), shape("unknown-type", "unknown-type")),
        Row("type", "another case (SAY)", raw(b'{"type": "SAY", "text": "hi"}\n'),
            shape("unknown-type", "unknown-type")),
    ]


def rows_for(stage):
    messages = contract.CLIENT_WIRE[stage.wire.removesuffix("-history")]
    rows = line_rows() + hello_rows(stage) + say_rows()
    rows.append(Row("bye", "valid", lambda cell: message("bye"), bye, sampled=True))
    rows.append(Row("bye", "an extra field", lambda cell: message("bye", reason="done"), bye))
    if "dm" in messages:
        rows += dm_rows() + who_rows()
    if "offer" in messages:
        rows += file_rows()
    covered = {row.message for row in rows}
    assert set(messages) <= covered, f"the matrix has no row for {set(messages) - covered}"
    return rows


def after_bye(cell):
    """The third column, the same for every row: the answer to bye, and nothing for the line after it."""
    return Outcome([{"type": "bye"}], ("after-bye", "bye", "left"), closed=True,
                   bystander=[{"type": "left", "name": cell.actor, "reason": "quit"}])


# ---------------------------------------------------------------- comparing

def parsed(line):
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def differs(expected, line, schema):
    """What is wrong with one received line against one expected message, or None."""
    got = parsed(line)
    if got is None:
        return "not a JSON object"
    problems = contract.wrong_fields(got, schema)
    for key, value in expected.items():
        if key not in got:
            problems.append(f"no {key!r}")
        elif value is not FREE and not (value == got[key] and type(value) is type(got[key])
                                        or isinstance(value, Names)):
            problems.append(f"{key!r} is {got[key]!r}, not {value!r}")
    problems += [f"an unexpected field {key!r}" for key in got if key not in expected and key != "time"
                 and f"{key!r}: a field the protocol does not define" not in " ".join(problems)]
    return "; ".join(dict.fromkeys(problems)) or None


def compare(expected, lines, schema):
    """Problems of a received list of lines against the expected messages, in order ([] if none)."""
    problems = [f"message {index + 1}: {problem}" for index, (want, line) in enumerate(zip(expected, lines))
                if (problem := differs(want, line, schema))]
    if len(lines) != len(expected):
        problems.append(f"{len(lines)} messages, not {len(expected)}")
    return problems


def shown(messages):
    if not messages:
        return "      nothing"
    return "\n".join(f"      {m if isinstance(m, str) else json.dumps(m, default=repr)}"[:300] for m in messages)


def ack_at_once(peer):
    """Acknowledge what arrives at once (Linux TCP_QUICKACK, which the kernel turns off again by
    itself). A server that has not turned Nagle's algorithm off holds its second small answer
    until the first is acknowledged, and a delayed acknowledgement waits 40 ms: 40 ms a cell."""
    if hasattr(socket, "TCP_QUICKACK"):
        peer.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def synced(lines):
    """Do the received lines end with the two sync answers?"""
    tail = [parsed(line) or {} for line in lines[-2:]]
    return len(tail) == 2 and all(message.get("type") == "error" and message.get("code") == code
                                  for message, code in zip(tail, SYNC_CODES))


# ---------------------------------------------------------------- walking the cells

class Walk:
    """One server, a joined bystander and a never-joined lurker; a fresh sender for each cell."""

    def __init__(self, session):
        self.session, self.stage = session, session.stage
        session.start_server()
        self.bystander = session.joined_peer("bystander")
        self.lurker = session.raw_peer("lurker")
        self.history = []
        self.cells = 0
        self.failures = []
        self.timeouts = 0

    def cell(self, row, state, delivery="whole"):
        """Walk one cell; a difference from the spec is kept for the report, not raised at once."""
        if self.timeouts >= 3:
            return  # the server stopped answering: the report says so
        self.cells += 1
        session = self.session
        actor = session.raw_peer(f"sender {self.cells}")
        actor.label = f"sender {actor.name} [{row.label} | {state} | {delivery}]"
        cell = Cell(self.stage, actor.name, self.bystander.name, self.history)
        try:
            problems, sent = self.walk(row, state, delivery, actor, cell)
        except CheckFailed as failure:  # the bystander or lurker got no answer: the server is stuck
            self.timeouts = 3
            problems, sent = [str(failure).split("\n")[0]], b""
        except OSError as failure:  # ssl.SSLError too
            problems, sent = [f"the sender's connection failed: {failure!r}"], b""
        if problems:
            self.failures.append(f"[{row.label} | {state} | sent {delivery}]\n  sent: {sent[:200]!r}"
                                 f"{' (' + str(len(sent)) + ' bytes)' if len(sent) > 200 else ''}\n"
                                 + "\n".join(f"  {problem}" for problem in problems))
        else:
            session.peers.remove(actor)  # a failure report shows the senders of the failing cells
        actor.close()

    def walk(self, row, state, delivery, actor, cell):
        bystander, lurker, schema = self.bystander, self.lurker, self.stage.schema
        if state != NOT_JOINED:
            actor.send(message("hello", name=actor.name, client_id="matrix") + SYNC)
            answer, closed = self.collect(actor, until_closed=False)
            want = welcome(cell, actor.name, NOT_JOINED)
            if closed is not False or compare(want.actor, answer, schema):
                return [f"the sender could not join first: it received\n{shown(answer)}"], b""
        told = [parsed(line) for line in self.sync(bystander)]
        self.sync(lurker)  # what came before this cell is no part of it
        if state != NOT_JOINED and {"type": "joined", "name": actor.name} not in [
                {key: value for key, value in (message or {}).items() if key != "time"} for message in told]:
            return [f"the bystander was not told that the sender joined: it received\n{shown(told)}"], b""
        line = row.build(cell)
        if state == AFTER_BYE:
            sent, outcome = message("bye") + line, after_bye(cell)
            actor.send(sent)
        else:
            sent, outcome = line, row.expect(cell, state)
            tail = b"" if outcome.closed else SYNC  # nothing is read after a close: no sync
            if delivery == "batched":
                actor.send(line + tail)
            elif delivery == "bytes":
                actor.send_slowly(line, pause=0.001)
            else:
                actor.send(line)
            if delivery != "batched" and tail:
                actor.send(tail)
        answer, closed = self.collect(actor, until_closed=outcome.closed)
        self.timeouts += closed is None
        problems = []
        answer_problems = compare(outcome.actor, answer, schema)
        if answer_problems or closed is not outcome.closed:
            end = {True: "then closed", False: "then open", None: f"and nothing else for {TIMEOUT:g} s"}
            problems.append(f"sender: expected\n{shown(outcome.actor)}\n    {end[outcome.closed]}; received\n"
                            f"{shown(answer)}\n    {end[closed]}" + "".join(f"\n    ({p})" for p in answer_problems))
        for other, want in ((bystander, outcome.bystander), (lurker, [])):
            got = self.sync(other)
            if compare(want, got, schema):
                who = "bystander (joined)" if other is bystander else "lurker (never joined)"
                problems.append(f"{who}: expected\n{shown(want)}\n    received\n{shown(got)}"
                                + "".join(f"\n    ({p})" for p in compare(want, got, schema)))
        if problems:
            problems += [f"spec: {contract.JSON_RULES[rule]!r}".replace("\\n", " ") for rule in outcome.rules]
        for said in outcome.bystander:
            if said["type"] == "said":
                self.history.append((said["from"], said["text"]))
        self.leave(actor, closed)
        return problems, sent

    def sync(self, peer):
        """A round trip on the peer's own connection, with lines whose answers are the same in
        every state: everything the server had sent it before it read them has arrived.
        Returns what came before their answers."""
        peer.send(SYNC)
        got, closed = self.collect(peer, until_closed=False)
        if closed is not False:
            raise self.session.failure(f"[{peer.label}] expected the answers to its sync lines",
                                       "the server closed the connection" if closed else
                                       f"nothing for {TIMEOUT:g} s")
        return got

    def collect(self, peer, until_closed):
        """The lines the peer receives up to the two sync answers (then open: False), or until
        the server closes (True); None if neither comes within TIMEOUT."""
        start = len(peer.history)
        deadline = time.monotonic() + TIMEOUT
        while True:
            peer.take_line(lambda line: False)  # every complete line into the history
            got = peer.history[start:]
            if not until_closed and synced(got):
                return got[:-2], False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return got, None
            ack_at_once(peer)
            if not peer._receive(remaining):
                peer.take_line(lambda line: False)
                return peer.history[start:], True

    def leave(self, actor, closed):
        """Close the sender; if it is in the room, wait until the bystander is told, so that its
        leaving is no part of the next cell."""
        welcomed = [message["name"] for message in map(parsed, actor.history)
                    if message and message.get("type") == "welcome"]
        actor.close()
        if welcomed and closed is False:
            ack_at_once(self.bystander)
            self.bystander.expect_line(lambda line: (parsed(line) or {}).get("type") == "left"
                                       and parsed(line).get("name") == welcomed[0])

    def report(self, what):
        if self.timeouts >= 3:
            self.failures.append(f"[the cells after these were not walked: three senders got no answer for "
                                 f"{TIMEOUT:g} s, or the bystander or the lurker got none]")
        if self.failures:
            cells = "\n".join(f"  {failure.split(chr(10))[0]}" for failure in self.failures)
            raise self.session.failure(
                f"{len(self.failures)} of the {self.cells} cells walked ({what}) differ from the spec "
                f"(row | the sender's state | how the line was sent):\n{cells}",
                "the first of them in full:\n" + "\n\n".join(self.failures[:3]))


# ---------------------------------------------------------------- the checks

@pytest.mark.needs("json_wire")
@pytest.mark.sampled  # the kit's default run: stage 05 (tests/conftest.py); grading and --slow: every stage
@pytest.mark.points(4, "every client message, and each field malformed, in every state: the exact answer, "
                       "and the exact effect on a joined bystander and a never-joined lurker")
@pytest.mark.no_observers("the matrix places a bystander and a lurker of its own beside every cell, and proves what each received after each cell")
def test_every_message_in_every_state(session):
    walk = Walk(session)
    for row in rows_for(session.stage):
        for state in row.states:
            walk.cell(row, state)
    walk.report("each line sent whole")


@pytest.mark.needs("json_wire")
@pytest.mark.sampled
@pytest.mark.points(2, "a sample of the matrix's rows sent batched with the next line, and a byte per write")
@pytest.mark.no_observers("the matrix places a bystander and a lurker of its own beside every cell, and proves what each received after each cell")
def test_sampled_rows_batched_and_byte_by_byte(session):
    walk = Walk(session)
    for row in rows_for(session.stage):
        if row.sampled:
            for state in (NOT_JOINED, JOINED):
                walk.cell(row, state, "batched")
                walk.cell(row, state, "bytes")
    walk.report("a sample of rows, batched and a byte per write")


def test_every_sentence_the_matrix_cites_is_in_the_spec():
    """Every expectation of the matrix is a line of docs/protocol.md, word for word."""
    spec = (REPO / "docs" / "protocol.md").read_text()
    missing = [key for key, sentence in contract.JSON_RULES.items() if sentence not in spec]
    assert not missing, f"docs/protocol.md no longer says what these cells expect: {missing}"


# ---------------------------------------------------------------- stage 11: IRC, over registration

# The states of an IRC connection (lesson 11): nothing sent yet, NICK only, USER only,
# registered (and in #kit, with the bystander), and after QUIT (the server sends its ERROR,
# then closes: the cell's line follows the QUIT in the same packet, and gets nothing).
UNREGISTERED, NICK_ONLY, USER_ONLY, REGISTERED, AFTER_QUIT = (
    "not registered", "NICK only", "USER only", "registered, in #kit", "after QUIT")
IRC_STATES = (UNREGISTERED, NICK_ONLY, USER_ONLY, REGISTERED, AFTER_QUIT)
BEFORE = (UNREGISTERED, NICK_ONLY, USER_ONLY)
IRC_HOST = "127.0.0.1"


@dataclass
class IrcCell:
    server: str  # the server's name, from its 001
    created: str  # from its 003
    nick: str  # the sender's nick in this state ("*" before NICK, as the server says it)
    user: str
    bystander: str
    fresh: str  # a nick nobody has

    def numeric(self, key, *params):
        """The contract's words for a numeric, to the sender (tests/contract.py, IRC_WIRE)."""
        term = contract.IRC_WIRE[key]
        fields = [name for name in dict.fromkeys(re.findall(r"\{(\w+)\}", term.text))
                  if name not in ("server", "nick")]
        return term(server=self.server, nick=self.nick, **dict(zip(fields, params)))

    @property
    def source(self):
        return f":{self.nick}!{self.user}@{IRC_HOST}"

    def welcome(self, nick):
        values = dict(server=self.server, nick=nick, user=self.user, host=IRC_HOST, created=self.created)
        return [contract.IRC_WIRE[key](**values) for key in ("001", "002", "003", "004", "005", "422")]


@dataclass
class IrcOutcome:
    actor: list  # IRC lines, compared parsed (tests/test_irc.py's parse)
    closed: bool = False
    bystander: list = field(default_factory=list)
    nick: str = None  # the sender's nick after the cell, if it changed
    in_channel: bool = None  # is the sender in #kit after the cell (None: as before)


def irc_rows():
    """(line builder, expectation): each a function of the cell (and its state)."""
    def any_state(reply):
        return lambda cell, state: IrcOutcome(reply(cell))

    def registered(reply):  # 451 before registration, `reply` after
        return lambda cell, state: IrcOutcome([cell.numeric("451")]) if state in BEFORE else reply(cell)

    def nick_valid(cell, state):
        if state == USER_ONLY:
            return IrcOutcome(cell.welcome(cell.fresh), nick=cell.fresh)
        if state == REGISTERED:
            change = f"{cell.source} NICK :{cell.fresh}"
            return IrcOutcome([change], bystander=[change], nick=cell.fresh)
        return IrcOutcome([], nick=cell.fresh)

    def user_valid(cell, state):
        if state == UNREGISTERED:
            return IrcOutcome([])
        if state == NICK_ONLY:
            return IrcOutcome(cell.welcome(cell.nick))
        if state == USER_ONLY:  # contract "462": a second USER before registration replaces the first
            return IrcOutcome([])
        return IrcOutcome([cell.numeric("462")])

    def say(command):
        def reply(cell):
            line = f"{cell.source} {command} #kit :hello from the matrix"
            return IrcOutcome([], bystander=[line])
        return reply

    def part(cell):
        line = f"{cell.source} PART #kit"
        return IrcOutcome([line], bystander=[line], in_channel=False)

    def quit_(cell, state):
        goodbye = contract.IRC_WIRE["ERROR"](host=IRC_HOST, reason="Quit: see you")
        told = [f"{cell.source} QUIT :Quit: see you"] if state == REGISTERED else []
        return IrcOutcome([goodbye], closed=True, bystander=told)

    too_long = "PRIVMSG #kit :" + "x" * (512 - len("PRIVMSG #kit :") - 1)  # 513 bytes with CR LF
    return [
        ("NICK", "no nickname", lambda c: "NICK", any_state(lambda c: [c.numeric("431")])),
        ("NICK", "valid", lambda c: f"NICK {c.fresh}", nick_valid),
        ("NICK", "erroneous (9lives)", lambda c: "NICK 9lives", any_state(lambda c: [c.numeric("432", "9lives")])),
        ("NICK", "too long (31)", lambda c: "NICK " + "n" * 31, any_state(lambda c: [c.numeric("432", "n" * 31)])),
        ("NICK", "the bystander's, other case", lambda c: f"NICK {c.bystander.swapcase()}",
         any_state(lambda c: [c.numeric("433", c.bystander.swapcase())])),
        ("USER", "no parameters", lambda c: "USER", any_state(lambda c: [c.numeric("461", "USER")])),
        ("USER", "empty real name", lambda c: "USER u 0 * :", lambda c, s: IrcOutcome(
            [c.numeric("462") if s == REGISTERED else c.numeric("461", "USER")])),
        ("USER", "valid", lambda c: f"USER {c.user} 0 * :Real {c.user}", user_valid),
        ("JOIN", "no parameters", lambda c: "JOIN", registered(lambda c: IrcOutcome([c.numeric("461", "JOIN")]))),
        ("JOIN", "a bad channel name (kit)", lambda c: "JOIN kit",
         registered(lambda c: IrcOutcome([c.numeric("403", "kit")]))),
        ("PART", "#kit", lambda c: "PART #kit", registered(part)),
        ("PART", "no parameters", lambda c: "PART", registered(lambda c: IrcOutcome([c.numeric("461", "PART")]))),
        ("PRIVMSG", "to #kit", lambda c: "PRIVMSG #kit :hello from the matrix", registered(say("PRIVMSG"))),
        ("PRIVMSG", "no parameters", lambda c: "PRIVMSG",
         registered(lambda c: IrcOutcome([c.numeric("411", "PRIVMSG")]))),
        ("PRIVMSG", "no text", lambda c: "PRIVMSG #kit", registered(lambda c: IrcOutcome([c.numeric("412")]))),
        ("PRIVMSG", "empty text", lambda c: "PRIVMSG #kit :", registered(lambda c: IrcOutcome([c.numeric("412")]))),
        ("PRIVMSG", "to a nick nobody has", lambda c: "PRIVMSG nobody :hi",
         registered(lambda c: IrcOutcome([c.numeric("401", "nobody")]))),
        ("PRIVMSG", "too long (513 bytes)", lambda c: too_long, any_state(lambda c: [c.numeric("417")])),
        ("NOTICE", "to #kit", lambda c: "NOTICE #kit :hello from the matrix", registered(say("NOTICE"))),
        ("NOTICE", "to a nick nobody has", lambda c: "NOTICE nobody :hi", registered(lambda c: IrcOutcome([]))),
        ("WHO", "a nick nobody has", lambda c: "WHO nobody",
         registered(lambda c: IrcOutcome([c.numeric("315", "nobody")]))),
        ("WHOIS", "no nickname", lambda c: "WHOIS", registered(lambda c: IrcOutcome([c.numeric("431")]))),
        ("WHOIS", "a nick nobody has", lambda c: "WHOIS nobody",
         registered(lambda c: IrcOutcome([c.numeric("401", "nobody"), c.numeric("318", "nobody")]))),
        ("PING", "no origin", lambda c: "PING", any_state(lambda c: [c.numeric("409")])),
        ("PING", "a token", lambda c: "PING :matrix",
         any_state(lambda c: [f":{c.server} PONG {c.server} :matrix"])),
        ("PONG", "a token", lambda c: "PONG :matrix", any_state(lambda c: [])),
        ("MODE", "no parameters", lambda c: "MODE", registered(lambda c: IrcOutcome([c.numeric("461", "MODE")]))),
        ("MODE", "#kit b", lambda c: "MODE #kit b", registered(lambda c: IrcOutcome([c.numeric("368", "#kit")]))),
        ("MODE", "a nick nobody has", lambda c: "MODE nobody",
         registered(lambda c: IrcOutcome([c.numeric("401", "nobody")]))),
        ("TOPIC", "#kit, none set", lambda c: "TOPIC #kit", registered(lambda c: IrcOutcome([c.numeric("331", "#kit")]))),
        ("NAMES", "a channel nobody made", lambda c: "NAMES #nowhere",
         registered(lambda c: IrcOutcome([c.numeric("366", "#nowhere")]))),
        ("LIST", "a channel nobody made", lambda c: "LIST #nowhere",
         registered(lambda c: IrcOutcome([c.numeric("323")]))),
        ("FOO", "an unknown command", lambda c: "FOO bar", registered(lambda c: IrcOutcome([c.numeric("421", "FOO")]))),
        ("(empty line)", "", lambda c: "", any_state(lambda c: [])),
        ("QUIT", "with a reason", lambda c: "QUIT :see you", quit_),
    ]


class IrcWalk:
    """One stage-11 server, a bystander registered in #kit, a lurker that never registers."""

    def __init__(self, session):
        self.session, self.lab = session, Lab(session)
        self.lab.start()
        self.bystander = self.lab.user("bystander", "#kit")
        self.lurker = self.lab.peer("lurker")
        self.cells, self.failures, self.timeouts = 0, [], 0

    def cell(self, row, state, delivery="whole"):
        if self.timeouts >= 3:
            return
        self.cells += 1
        command, variant, build, expect = row
        actor = self.lab.peer(f"sender {self.cells}")
        label = f"[{command} / {variant} | {state} | sent {delivery}]"
        actor.label = f"sender {actor.nick} {label}"
        try:
            problems, sent = self.walk(build, expect, state, delivery, actor)
        except (AssertionError, OSError) as failure:  # test_irc's Peer asserts on a silent server
            self.timeouts += 1
            problems, sent = [f"no answer: {str(failure).splitlines()[0] if str(failure) else failure!r}"], ""
        if problems:
            self.failures.append(f"{label}\n  sent: {sent[:200]!r}\n" + "\n".join(f"  {p}" for p in problems))
        else:
            self.session.peers.remove(actor)
        actor.close()

    def setup(self, actor, state):
        """Bring the sender to `state`; True once there, with the bystander told if it joined #kit."""
        if state == NICK_ONLY:
            return actor.ask(f"NICK {actor.nick}") == []
        if state == USER_ONLY:
            return actor.ask(f"USER {actor.user} 0 * :Real {actor.nick}") == []
        if state in (REGISTERED, AFTER_QUIT):
            self.lab.register(actor)
            actor.ask("JOIN #kit")
            self.bystander.read_until(lambda m: m.command == "JOIN" and m.prefix.startswith(actor.nick + "!"))
        return True

    def walk(self, build, expect, state, delivery, actor):
        if not self.setup(actor, state):
            return [f"the sender could not reach the state {state!r}"], ""
        self.bystander.ask(), self.lurker.ask()  # what came before this cell is no part of it
        nick = actor.nick if state not in (UNREGISTERED, USER_ONLY) else "*"
        cell = IrcCell(self.lab.name, self.lab.created, nick, actor.user, self.bystander.nick,
                       self.session.name(f"fresh {self.cells}"))
        line = build(cell)
        if state == AFTER_QUIT:
            outcome = expect_quit(cell)
            sent = f"QUIT :see you\r\n{line}"
            actor.send("QUIT :see you", line, delivery="batched")
        else:
            outcome, sent = expect(cell, state), line
        if outcome.closed and state != AFTER_QUIT:
            actor.send(line, delivery=delivery)
        if outcome.closed:
            answer, closed = actor.closed_after(), True
        else:
            answer, closed = actor.ask(line, delivery=delivery), False
        problems = []
        want = [irc_line(text) for text in outcome.actor]
        if answer != want:
            problems.append(f"sender: expected\n{shown(want)}\n    received\n{shown(answer)}")
        for other, wanted in ((self.bystander, outcome.bystander), (self.lurker, [])):
            got, wanted = other.ask(), [irc_line(text) for text in wanted]
            if got != wanted:
                who = "bystander (in #kit)" if other is self.bystander else "lurker (never registered)"
                problems.append(f"{who}: expected\n{shown(wanted)}\n    received\n{shown(got)}")
        self.leave(actor, state, outcome, closed)
        return problems, sent

    def leave(self, actor, state, outcome, closed):
        """Close the sender; if it is still in #kit, wait until the bystander sees it quit."""
        in_channel = state == REGISTERED if outcome.in_channel is None else outcome.in_channel
        nick = outcome.nick or actor.nick
        actor.close()
        if in_channel and not closed:
            self.bystander.read_until(lambda m: m.command == "QUIT" and m.prefix.startswith(nick + "!"))

    report = Walk.report


def expect_quit(cell):
    """After QUIT: its ERROR, then the close; the line after it has no effect."""
    goodbye = contract.IRC_WIRE["ERROR"](host=IRC_HOST, reason="Quit: see you")
    return IrcOutcome([goodbye], closed=True, bystander=[f"{cell.source} QUIT :Quit: see you"])


@pytest.mark.needs("irc")
@pytest.mark.points(4, "every IRC command, and its malformed forms, in every registration state: the exact "
                       "replies, and the exact effect on a bystander in #kit and a never-registered lurker")
@pytest.mark.no_observers("stage 11's own checks speak IRC whole (NICK, PART, NOTICE, TOPIC, MODE, WHO) through peers of their own, and compare every line each member gets; the observers model the room's joins, messages and quits alone")
def test_every_irc_command_in_every_registration_state(session):
    walk = IrcWalk(session)
    for row in irc_rows():
        for state in IRC_STATES:
            walk.cell(row, state)
    walk.report("each line sent whole")


SAMPLED_IRC = ("valid", "to #kit", "empty text", "too long (513 bytes)", "with a reason")


@pytest.mark.needs("irc")
@pytest.mark.points(2, "a sample of the IRC matrix's rows sent batched with the next line, and a byte per write")
@pytest.mark.no_observers("stage 11's own checks speak IRC whole (NICK, PART, NOTICE, TOPIC, MODE, WHO) through peers of their own, and compare every line each member gets; the observers model the room's joins, messages and quits alone")
def test_sampled_irc_rows_batched_and_byte_by_byte(session):
    walk = IrcWalk(session)
    for row in irc_rows():
        if row[1] in SAMPLED_IRC:
            for state in (*BEFORE, REGISTERED):
                walk.cell(row, state, "batched")
                if state in (UNREGISTERED, REGISTERED) and "513" not in row[1]:  # 1 ms a byte
                    walk.cell(row, state, "bytes")
    walk.report("a sample of rows, batched and a byte per write")
