"""Small things a student notices (issue 15): stage 05's command mode (and 09's and
10's: the same UI), and stage 07's client at its name prompt, with /msg, and once the
server has gone.

Most of these are about the kit's own wording, which the spec leaves free: they are
kit_only (never run on a student's copy). The one about the contract is the last notice
of the full-screen client: still on screen once the client has left curses.
"""

import pytest

from contract import EXIT_OK
from harness import line_with
from screen import COLUMNS, ROWS, Screen, ScreenTerminal, Stream

# The kit's own wording, free in the spec (so only kit_only checks use it).
KIT_OLD_HINT = "commands start with C"  # untrue of a line such as C NOPE
KIT_EMPTY = "empty message is not sent"
KIT_EXPECTED_D = "start the message with D"  # the hint for a line that is not a D line at all
KIT_PM_PROMPT = "PM text> "  # 05's prompts say where you are: not command mode's "command> "
KIT_SENT = "(to {to}) {text}"  # 05: your message, once sent (the server sends it to the others)
KIT_NO_SUCH_USER = "no-such-user"  # stage 07 shows the server's error code
KIT_TOO_LONG = "line-too-long"
KIT_DM_SENT = "[direct to {to}] {name}: {text}"  # 07: your DM, once the server took it


# ------------------------------------------------ stage 05's command mode (and 09, 10)

@pytest.mark.kit_only
@pytest.mark.needs("commands")
@pytest.mark.points(1, "C NOPE: a hint naming C HELP, not saying commands start with C")
def test_an_unknown_c_command_gets_a_hint_that_is_true(session):
    alice, bob = session.client("alice"), session.client("bob")
    alice.term.forget_unread()  # the "type C HELP" line at the start is not the hint
    alice.term.send_line("C NOPE")
    alice.sees(session.spec("hint"))
    alice.term.assert_not_seen(KIT_OLD_HINT, "C NOPE does start with C",
                               since_forgotten=True)
    session.chat_goes_on(alice, bob)


@pytest.mark.kit_only
@pytest.mark.needs("commands")
@pytest.mark.points(1, "C PM, then D and no message: the empty message is not sent")
def test_an_empty_d_line_says_the_message_is_not_sent(session):
    alice, bob = session.client("alice"), session.client("bob")
    alice.term.send_line("C PM")
    alice.term.forget_unread()
    alice.term.send_line("D ")
    alice.sees(KIT_EMPTY)
    alice.sees(session.spec("back"))
    alice.term.assert_not_seen(KIT_EXPECTED_D, "it was a D line, only empty",
                               since_forgotten=True)
    session.chat_goes_on(alice, bob)  # back in command mode, as after an empty line


@pytest.mark.kit_only
@pytest.mark.needs("commands")
@pytest.mark.points(1, "C PM, then a line without D: its own prompt says how, and asks again")
def test_a_line_without_d_is_asked_again_at_the_message_prompt(session):
    alice, bob = session.client("alice"), session.client("bob")
    alice.term.send_line("C PM")
    alice.sees(KIT_PM_PROMPT)
    alice.term.forget_unread()
    text = session.text()
    alice.term.send_line(text)
    alice.sees(KIT_EXPECTED_D)
    alice.sees(KIT_PM_PROMPT)  # still there: the line is not lost, and nothing else is asked
    alice.term.send_line(f"D {text}")
    bob.sees(bob.said(alice.name, text))


@pytest.mark.kit_only
@pytest.mark.needs("commands", "dm")
@pytest.mark.parametrize("kind", ["pm", "dm"])
@pytest.mark.points(1, "C PM and C DM show the sender what went out, and to whom")
def test_a_sent_message_is_shown_to_its_sender(session, kind):
    alice, bob = session.client("alice"), session.client("bob")
    text = session.text()
    if kind == "pm":
        alice.say(text)
        bob.sees(bob.said(alice.name, text))
    else:
        alice.dm(bob.name, text)
        bob.sees(bob.terms["dm"](name=alice.name, text=text))
    alice.sees(KIT_SENT.format(to="everyone" if kind == "pm" else bob.name, text=text))


@pytest.mark.kit_only
@pytest.mark.needs("commands", "dm")
@pytest.mark.points(1, "C DM to a name nobody has: no-such-user before the message")
def test_c_dm_to_nobody_says_so_before_asking_for_the_message(session):
    alice, bob = session.client("alice"), session.client("bob")
    alice.term.send_line("C DM")
    alice.term.expect_regex(line_with(alice.name, bob.name))  # the list it just fetched
    alice.term.send_line(f"C {session.name('nobody')}")
    alice.sees(session.spec("no_such_user"))  # without a D line: it did not ask for one
    session.chat_goes_on(alice, bob)  # and it is back in command mode


# ------------------------------------------------------------------ stage 07's client

@pytest.mark.kit_only
@pytest.mark.needs("slash_commands")
@pytest.mark.parametrize("key", ["ctrl_c", "ctrl_d"])
@pytest.mark.points(1, "Ctrl+C or Ctrl+D at the name: prompt ends the line, then exits")
def test_leaving_at_the_name_prompt_ends_the_line(session, key):
    server = session.server or session.start_server()
    term = session.spawn("nameless", "client.py", "--port", str(server.port),
                         *session.stage.client_class.nameless_args())
    term.expect(session.spec("name_prompt"))
    getattr(term, key)()
    term.expect_exit(EXIT_OK)
    after = term.output().rsplit(session.spec("name_prompt"), 1)[1]
    assert "\n" in after, f"the shell's prompt would start on the name: line: {after!r}"


def screen_client(session, role, kind=ScreenTerminal):
    """Stage 07's client full screen, in an 80x24 xterm, once it shows its welcome."""
    server = session.server or session.start_server()
    name = session.name(role)
    term = session.spawn(name, "client.py", "--port", str(server.port), "--name", name,
                         kind=kind)
    term.name = name
    term.shows(session.spec("welcome", name=name))
    return term


def on_screen(term, text):
    return any(text in line for line in term.lines())


@pytest.mark.kit_only
@pytest.mark.needs("tui", "dm")
@pytest.mark.points(1, "/msg to nobody is never shown as sent; a DM that was taken is")
def test_a_refused_dm_is_never_shown_as_sent(session):
    alice, bob = screen_client(session, "alice"), session.client("bob")
    nobody, lost, taken = session.name("nobody"), session.text(), session.text()
    alice.type(f"/msg {nobody} {lost}\r")
    alice.shows(KIT_NO_SUCH_USER)
    alice.type(f"/msg {bob.name} {taken}\r")
    bob.sees(session.spec("dm", name=alice.name, text=taken))
    # Shown once the server has taken it: after anything the refused one could cause.
    alice.shows(KIT_DM_SENT.format(to=bob.name, name=alice.name, text=taken))
    assert not on_screen(alice, lost), f"a DM to {nobody} (not online) shown as sent"


# -------------------------------------------------------- the last word, after curses

ALTERNATE_SCREEN = 1049  # xterm's private mode: where curses draws, until it ends


class XtermScreen(Screen):
    """tests/screen.py's Screen, and xterm's alternate screen, which pyte 0.8.2 lacks.

    curses switches to it when it starts (smcup), and back to the main screen when it
    ends (rmcup): in a real terminal, what curses drew then vanishes, and only what the
    program printed outside curses stays. Without this, the pane would seem to stay."""

    alternate = False  # showing the alternate screen
    main = {}  # the main screen's rows meanwhile

    def set_mode(self, *modes, **kwargs):
        if kwargs.get("private") and ALTERNATE_SCREEN in modes and not self.alternate:
            self.save_cursor()
            self.alternate, self.main = True, dict(self.buffer)
            self.buffer.clear()  # the alternate screen starts blank
            self.dirty.update(range(self.lines))
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes, **kwargs):
        if kwargs.get("private") and ALTERNATE_SCREEN in modes and self.alternate:
            self.buffer.clear()
            self.buffer.update(self.main)
            self.alternate = False
            self.restore_cursor()
            self.dirty.update(range(self.lines))
        super().reset_mode(*modes, **kwargs)


class XtermTerminal(ScreenTerminal):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.screen = XtermScreen(COLUMNS, ROWS)
        self.stream = Stream(self.screen)


def test_the_alternate_screen_comes_and_goes():
    """XtermScreen on known input: what is drawn on the alternate screen goes away."""
    screen = XtermScreen(20, 3)
    stream = Stream(screen)
    stream.feed("before")
    stream.feed("\x1b[?1049h\x1b[Hin curses")
    assert screen.display[0].rstrip() == "in curses"
    stream.feed("\x1b[?1049l after")
    assert [line.rstrip() for line in screen.display] == ["before after", "", ""]


@pytest.mark.needs("tui", "shutdown_notice")
@pytest.mark.points(2, "the full-screen client leaves the shutdown notice on screen, "
                       "then says the connection closed")
def test_the_full_screen_client_keeps_the_shutdown_notice(session):
    server = session.start_server()
    alice = screen_client(session, "alice", kind=XtermTerminal)
    session.server_logs_join(alice.name)
    server.term.ctrl_c()
    server.term.expect(session.spec("stopped"))
    alice.expect_exit(EXIT_OK)
    # All it printed has been read: the screen is what a person sees once it has ended.
    alice.shows(session.spec("shutting_down"))
    alice.shows(session.spec("closed"))


@pytest.mark.needs("tui")
@pytest.mark.parametrize("ending", ["quit", "server_stops"])
@pytest.mark.points(2, "the full-screen client leaves the last messages on screen when it ends")
def test_the_full_screen_client_leaves_the_conversation_on_screen(session, ending):
    """curses' endwin() takes the chat away with the alternate screen: what a person sees once
    the client has gone must still hold the last messages, in order."""
    server = session.start_server()
    alice, bob = screen_client(session, "alice", kind=XtermTerminal), session.client("bob")
    texts = [session.text() for _ in range(3)]
    said = [session.spec("said", name=bob.name, text=text) for text in texts]
    for text, line in zip(texts, said):
        bob.say(text)
        alice.shows(line)
    if ending == "quit":
        alice.type("/quit\r")
    else:
        server.term.ctrl_c()
        server.term.expect(session.spec("stopped"))
    alice.expect_exit(EXIT_OK)
    # All it printed has been read: the screen is what a person sees once it has ended.
    for line in said:
        alice.shows(line)
    rows = [alice.find(line)[0] for line in said]
    assert rows == sorted(rows), f"the messages are left out of order:\n{alice.report()}"


@pytest.mark.kit_only
@pytest.mark.needs("tui")
@pytest.mark.points(1, "a line too long for the server: its error stays on screen")
def test_the_full_screen_client_keeps_the_last_error(session):
    alice = screen_client(session, "alice", kind=XtermTerminal)
    paste = "x" * (session.stage.client_class.max_line + 100)
    alice.type(paste + "\r")
    alice.expect_exit(EXIT_OK)
    alice.shows(KIT_TOO_LONG)
    alice.shows(session.spec("closed"))
