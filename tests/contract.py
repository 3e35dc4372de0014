"""The contract: every string, pattern and exit code that a check waits for, in one table.

The drivers (tests/stages.py) and the checks take what they wait for from here, and
nowhere else (tests/test_contract.py reads every check to make sure). The site shows
the same table: a line `<!-- contract NN -->` in a lesson's "What the tests check"
becomes stage NN's table at build time (docs/hooks/lessons.py), so the spec a student
reads and the strings the grader waits for cannot drift apart.

A term's text is a template: `{name}`, `{text}`, `{port}`... are filled in by the
check with the random names and texts of its run. A "pattern" term is a regular
expression. Everything a check waits for is matched as a *substring* of what the
program prints, so prefixes, colours, prompts and the lines around it are free.
"""

import re
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Term:
    who: str  # which program prints it: "server", "client", "peer", "irssi", "attack" (stage 06's scripts), or "any"
    text: str  # a template for what must appear (a regex if pattern=True)
    when: str  # when it must appear: the spec's sentence
    pattern: bool = False
    cap: str = None  # a capability (tests/stages.py): the term is in the spec of the stages that have it

    def __call__(self, **values):
        if self.pattern:  # a name or text is matched as itself, never as a regex
            values = {key: re.escape(str(value)) for key, value in values.items()}
        return self.text.format(**values)


def shown(text):
    """How a template reads in the spec: {name} becomes NAME."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")  # a line end, shown as the regex writes it
    return re.sub(r"\{(\w+)\}", lambda match: match.group(1).upper(), text)


# ---------------------------------------------------------------- every stage

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2  # EXIT_USAGE: argparse's, for a bad argument
DEFAULT_PORT, IRC_DEFAULT_PORT = 65432, 6667  # without --port (docs/protocol.md, "Defaults")


def default_port(irc=False):
    return IRC_DEFAULT_PORT if irc else DEFAULT_PORT


PROGRAMS = {
    "listening": Term("server", "listening on {host}:{port}",
                      "once it listens, with the real port (also with --port 0); the tests read the port from it"),
    "stopped": Term("server", "server stopped", "after Ctrl+C, before it exits with code 0"),
    "traceback": Term("any", "Traceback", "never: no program may print a traceback, whatever it is sent or typed"),
    "usage": Term("any", "usage:", "argparse's usage line, first, for a bad argument; then its one line of "
                                   "error naming the option, and exit code 2"),
    "bad_port": Term("any", "--port", "in argparse's line of error (it names the option), then exit code 2, for "
                                      "a bad --port (99999, -1, or not a number)"),
    "port_named": Term("any", "{port}", "in the one line of error, then exit code 1, for a port in use (server) "
                                        "or a refused connection (client)"),
    "clean_exit": Term("any", "exit code 0", "Ctrl+C or Ctrl+D on a client; Ctrl+C on a server"),
}
SERVER_GONE = {
    "closed": Term("client", "connection closed by server", "when the server goes away; then exit code 0. A last "
                                                            "line without its line end is not a message: it is "
                                                            "not shown as one"),
}
# Every chat stage's client (02 on). Stages share one default port, so a client may well meet another
# stage's server: it says so rather than chat in a protocol the server does not speak.
WRONG_SERVER = {
    "wrong_server": Term("client", "not a stage-{stage} chat server",
                         "in the one line of error (exit code 1) when the server speaks another kind of "
                         "protocol (stage 01's echo, 02's plain text, JSON Lines, TLS or IRC): its answer to "
                         "the name or hello, e.g. \"this is not a stage-05 chat server: it sent 'echo: ...'\""),
}

# ---------------------------------------------------------------- 01: echo

ECHO = {
    **PROGRAMS, **SERVER_GONE,
    "connected": Term("client", "connected to", "once connected, before it reads what you type"),
    "echo": Term("client", "echo: {text}", "the answer to each line you type (on the wire too)"),
    "echo_log": Term("server", r"127\.0\.0\.1:\d+\D.*{text}",
                     "a log line per received line: the client's address and port, then the text", pattern=True),
    "too_long": Term("client", "too long", "on the wire, before the server closes a line that has passed "
                                           "8 KiB without its newline (stages 02 on: any line over 8 KiB; "
                                           "03 on: the code line-too-long)"),
}

# ---------------------------------------------------------------- 02: a room

ROOM = {
    **ECHO, **WRONG_SERVER,
    "welcome": Term("client", "welcome, {name}",
                    "once the server has registered you, before you type: send nothing before it"),
    "said": Term("client", "{name}: {text}", "someone else's message (never your own back), shown once and whole "
                                             "however its line arrives: in pieces, or with a thousand others"),
    "joined": Term("client", "* {name} joined", "someone else came in"),
    "left": Term("client", "* {name} left", "someone left, or their connection broke"),
    "join_log": Term("server", "{name} joined",
                     "the server's log, once it has registered a newcomer and sent its welcome; "
                     "the last thing it does for a join"),
    "said_log": Term("server", "{text}", "a log line for each message, holding its text"),
    "welcome_line": Term("server", "* welcome, {name} ({online} online)",
                         "on the wire, your first line once your name is registered: the users who "
                         "have sent their name, you included (a connection that has not is nobody)"),
    "escaped": Term("client", "\\u{code}", "a control character in a name or text (ESC is 001b, CR 000d) is shown "
                                          "as these six characters, never sent raw to the terminal",
                    cap="escapes_text"),
    "never_raw": Term("server", "ESC, BEL, BS or U+202E", "never, raw, in the server's log: a control character from "
                                                         "the network is logged escaped (\\u001b, or repr()'s \\x1b)",
                      cap="hostile_text"),
    "out_of_files": Term("server", "cannot accept", "in the log when accept() fails for lack of file descriptors "
                                                    "(ulimit -n); the server goes on", cap="fd_exhaustion"),
    "left_log": Term("server", "{name} left", "a log line when someone leaves"),
    "join_timeout": Term("client", "join timeout",
                         "on the wire, then the server closes a connection that has not joined within "
                         "--join-timeout seconds of connecting (default 60); stages 03 on: the code join-timeout",
                         cap="join_deadline"),
    "bad_join_timeout": Term("server", "--join-timeout", "in argparse's line of error, then exit code 2, for a bad "
                                                       "--join-timeout (0, -5, or not a number)", cap="join_deadline"),
    "name_prompt": Term("client", "name:",
                        "the client asks for a name: started without --name, or after bad-name or name-taken"),
    "bad_max_clients": Term("server", "--max-clients", "in argparse's line of error, then exit code 2, for a bad "
                                                     "--max-clients (0, -1, 2.5, or not a number)", cap="max_clients"),
}
del ROOM["connected"], ROOM["echo"], ROOM["echo_log"]

# ---------------------------------------------------------------- 03, 04: JSON Lines

JSON_ROOM = {
    **ROOM,
    "said": Term("client", "{name}: {text}", "someone else's message (never your own back), shown once and whole "
                                             "however its line arrives, and with fields the client does not know "
                                             "(it ignores them); a line it cannot read (not JSON, a type it does "
                                             "not know, a field missing) never stops it: the next one is shown"),
    "said_time": Term("client", r"\[\d\d:\d\d\] {name}: {text}",
                      "a message, with the time it was sent in local time", pattern=True),
    "left_because": Term("client", "* {name} left ({reason})", "someone left: reason quit (bye) or lost"),
    "bad_name": Term("client", "bad-name", "the server refused the name; then the name prompt again"),
    "full": Term("client", "full", "in the one line of error (exit code 1) when the room is full"),
    "said_log": Term("server", r"[^\n]*{name}[^\n]*{text}[^\n]*\n",
                     "one log line per message: its sender, then its text, and somewhere on the same line "
                     "its size as N bytes and a time HH:MM", pattern=True),
    "join_timeout": Term("client", "join-timeout",
                         "the error code, on the wire, then the server closes a connection that has not been "
                         "welcomed within --join-timeout seconds of connecting (default 60)", cap="join_deadline"),
    "size": Term("server", r"\d+ bytes", "in each message's log line", pattern=True),
    "clock": Term("server", r"\d\d:\d\d", "in each message's log line", pattern=True),
}

# ---------------------------------------------------------------- 06: the attack scripts

# What each of stage 06's attack scripts (stages/06/attacks/) says in its last line, run against the stage's
# server: the defence held. The tests also run them against copies of the kit's server with one defence
# taken out, where they must say what stage 05 shows.
ATTACKS = {
    "newcomer_in": Term("attack", "a newcomer got in after",
                        "silent.py, once the newcomer is welcomed though silent connections hold every file "
                        "descriptor the server may open (ulimit -n 64; --join-timeout 60)", cap="attacks"),
    "newcomer_out": Term("attack", "a newcomer was not let in",
                         "silent.py against a server whose silent connections lock users out (stage 05)",
                         cap="attacks"),
    "memory_grew": Term("attack", r"memory grew by (\d+) MiB",
                        "stuck.py: how far the server's peak memory grew while 150 clients that never read were "
                        "dropped; at most 64 MiB of output waits for them all (stage 05: 1 MiB each)",
                        pattern=True, cap="attacks"),
    "chat_flowed": Term("attack", "messages reached the listener in",
                        "unread_log.py, once every message got through while nobody read the server's stdout",
                        cap="attacks"),
    "chat_stopped": Term("attack", "the chat stopped",
                         "unread_log.py against a server that waits for its log (stage 05)", cap="attacks"),
    "exited": Term("attack", "the server exited",
                   "shutdown.py, once the server has exited after Ctrl+C though a client is stuck", cap="attacks"),
    "not_exited": Term("attack", "the server had not exited",
                       "shutdown.py against a server that waits for a stuck client (stage 05)", cap="attacks"),
    "escaped_log": Term("attack", "no raw control character reached the console",
                        "hostile_text.py, once mallory's message is in the server's log with each control "
                        "character escaped", cap="attacks"),
    "raw_log": Term("attack", "raw control characters reached the console",
                    "hostile_text.py against a server that logs text as it came (stage 05)", cap="attacks"),
}

# ---------------------------------------------------------------- 05 and 09: commands

COMMANDS = ("C PM", "C DM", "C LS", "C EX")
COMMAND = {
    **JSON_ROOM, **ATTACKS,  # the attack scripts' terms: stage 06's spec alone has them (Term.cap)
    "help": Term("client", "C PM, C DM, C LS, C EX", "C HELP lists every command (each of the four appears)"),
    "hint": Term("client", "C HELP", "a line you typed in command mode that is not a command gets a hint naming "
                                     "it (a hint, not the list of commands itself)"),
    "back": Term("client", "back to command mode",
                 "inside C PM or C DM, an empty line, or a D with nothing after it, ends the command. A line "
                 "without its D is not lost: "
                 "the client says so and sends it, or asks again (then the D line is sent)"),
    "no_such_user": Term("client", "no-such-user", "C DM to a name nobody online has"),
    "name_taken": Term("client", "name-taken", "the name is taken (in any case); then the name prompt again"),
    "users": Term("client", "one line with every name online, and no other",
                  "C LS, and C DM before it asks for the name: the names as plain words (no quotes or brackets), "
                  "separated by spaces and/or commas"),
    "dm": Term("client", "{name}: {text}", "a direct message for you (a marker such as [direct] before it is free)"),
    "shutting_down": Term("client", "shutting down", "the server is stopping (its shutdown notice)"),
}

# ---------------------------------------------------------------- 07: slash commands

SLASH = {
    **COMMAND,
    "dm": Term("client", "[direct] {name}: {text}", "a direct message for you"),
    "users": Term("client", "online: ", "/list: this, then every name online on the same line"),
    "usage_msg": Term("client", "usage: /msg NAME TEXT", "/msg without a name and a text"),
    "help": Term("client", "/msg NAME TEXT", "/help lists the commands"),
    "unknown_command": Term("client", "unknown command /{word}", "any other /word; nothing is sent"),
    "scrolled": Term("client", "scrolled", "full screen: on the status line (the top row) while Page Up has scrolled "
                                           "the messages back; the input box is the bottom row, starting with > "),
}
for key in ("hint", "back", "no_such_user"):
    del SLASH[key]

# ---------------------------------------------------------------- 10: TLS and files

FILES = {
    **COMMAND,
    "offered": Term("client", "{name} offers you {file}", "a file is offered to you: answer C OK or C NO"),
    "saved": Term("client", "saved", "the whole file arrived, and its size and SHA-256 match the offer"),
    "sent": Term("client", "sent", "the sender, once the recipient has the whole file"),
    "not_saved": Term("client", "not saved", "the file was cancelled, or more bytes came than offered"),
    "damaged": Term("client", "damaged", "the SHA-256 of what arrived does not match the offer"),
    "no_file": Term("client", "no file", "C FT with a path that is not a readable file"),
    "limit": Term("client", "{size}", "C FT of a file over the server's limit: the limit, e.g. 1.0 KiB; nothing is sent"),
    "missing_file": Term("server", "{file}", "in the one line of error, then exit code 1, for a --cert or --key "
                                             "file that cannot be read"),
    "tls_error": Term("client", "TLS", "a plaintext client (stage 09's) shows the server's tls-required error"),
    "certificate": Term("client", "certificate",
                        "in the one line of error (exit code 1) for an untrusted or misnamed certificate"),
}

# ---------------------------------------------------------------- 11: IRC

# Stage 11's own client.py (the one the shared checks drive: lesson 11, "A client for the
# checks"), then what the server sends on the wire, then what irssi shows.
IRC = {
    **PROGRAMS, **SERVER_GONE, **WRONG_SERVER,
    "welcome": Term("client", "now talking in #kit as {name}",
                    "once the server has echoed your JOIN of #kit, before you type: send nothing before it"),
    "said": Term("client", "<{name}> {text}", "someone else's message to #kit (never your own back), shown once "
                                              "and whole however its line arrives; a command or numeric the "
                                              "client does not know, or a line short of parameters, never stops it"),
    "joined": Term("client", "* {name} joined #kit", "someone else joined #kit"),
    "left": Term("client", "* {name} quit", "someone quit, or their connection broke (the QUIT's reason follows)"),
    "name_prompt": Term("client", "name:", "the client asks for a nickname: started without --name, after an "
                                           "empty line, or after 431, 432 or 433"),
    "escaped": Term("client", "\\u{code}", "a control character in a message (IRC's colours too, and CTCP but "
                                          "/me: ESC is 001b, ^C 0003) is shown as these six characters, never raw",
                    cap="escapes_text"),
    "shutting_down": Term("client", "Server shutting down", "the reason in the server's ERROR when it stops"),
    "join_log": Term("server", "{name} joined",
                     "the server's log, once it has echoed a JOIN and sent NAMES: the last thing it does for a join"),
    "left_log": Term("server", "{name} quit", "a log line when someone quits or is dropped"),
    "never_raw": ROOM["never_raw"],
    "out_of_files": ROOM["out_of_files"],
    "bad_join_timeout": ROOM["bad_join_timeout"],
    "join_timeout": Term("server", "Registration timed out",
                         "in the ERROR before the server closes a connection that has not registered within "
                         "--join-timeout seconds of connecting (default 60)", cap="join_deadline"),
    "too_long": Term("server", "Input line was too long",
                     "417, for a line over 512 bytes (CR LF included); the line is dropped, the connection goes on"),
}

# What the server sends. The commands one user's action makes the server relay (PRIVMSG,
# NOTICE, JOIN, PART, QUIT, NICK, TOPIC, MODE: ":nick!user@host COMMAND ...") are RFC 1459's
# own syntax, which lesson 11 shows. The words at the end of each numeric are free in the
# RFCs; the kit's stage fixes them, and tests/test_irc.py compares them whole.
IRC_WIRE = {
    "001": Term("server", ":{server} 001 {nick} :Welcome to the kit IRC network, {nick}!{user}@{host}",
                "registration is done (NICK and USER, and CAP END if CAP LS or REQ came first): 001 to 005, "
                "then 422"),
    "002": Term("server", ":{server} 002 {nick} :Your host is {server}, running version kit-11", "after 001"),
    "003": Term("server", ":{server} 003 {nick} :This server was created {created}", "after 002"),
    "004": Term("server", ":{server} 004 {nick} {server} kit-11 i bn",
                "after 003: the server's name and version, its user modes and its channel modes"),
    "005": Term("server", ":{server} 005 {nick} CHANTYPES=# NICKLEN=30 CHANNELLEN=50 CHANLIMIT=#:50 PREFIX= "
                          "CASEMAPPING=rfc1459 :are supported by this server",
                "after 004 (ISUPPORT: what a client may assume; PREFIX is empty, nobody is operator)"),
    "422": Term("server", ":{server} 422 {nick} :MOTD File is missing", "the last line of registration"),
    "331": Term("server", ":{server} 331 {nick} {channel} :No topic is set", "TOPIC #channel, with no topic set"),
    "366": Term("server", ":{server} 366 {nick} {channel} :End of /NAMES list.",
                "after the 353 lines of a JOIN or NAMES (alone for a channel that does not exist)"),
    "315": Term("server", ":{server} 315 {nick} {mask} :End of /WHO list.", "after the 352 lines of a WHO"),
    "311": Term("server", ":{server} 311 {nick} {target} {user} {host} * :{realname}",
                "WHOIS NICK (or WHOIS SERVER NICK; NICK may be a comma-separated list): for each nick found, "
                "first"),
    "319": Term("server", ":{server} 319 {nick} {target} :{channels}",
                "after 311, if the user is in a channel: the channels' names, sorted, in as many lines as 512 bytes "
                "need"),
    "312": Term("server", ":{server} 312 {nick} {target} {server} :The kit IRC network",
                "after 311 (and 319): the server the user is on"),
    "318": Term("server", ":{server} 318 {nick} {mask} :End of /WHOIS list.",
                "the last line of a WHOIS, with the nicks as asked, after 311 to 312 or 401 for each of them"),
    "406": Term("server", ":{server} 406 {nick} {nickname} :There was no such nickname",
                "WHOWAS NICK, for each nick: no history is kept (irssi asks it when WHOIS finds nobody)"),
    "369": Term("server", ":{server} 369 {nick} {mask} :End of WHOWAS", "the last line of a WHOWAS"),
    "323": Term("server", ":{server} 323 {nick} :End of /LIST", "after the 322 lines of a LIST"),
    "368": Term("server", ":{server} 368 {nick} {channel} :End of channel ban list",
                "MODE #channel b (or +b): the ban list, always empty"),
    "401": Term("server", ":{server} 401 {nick} {target} :No such nick/channel",
                "PRIVMSG, MODE or WHOIS to a nick nobody has"),
    "403": Term("server", ":{server} 403 {nick} {channel} :No such channel",
                "a channel that does not exist, or a bad channel name in JOIN"),
    "404": Term("server", ":{server} 404 {nick} {channel} :Cannot send to channel",
                "PRIVMSG to a channel you are not in"),
    "405": Term("server", ":{server} 405 {nick} {channel} :You have joined too many channels",
                "JOIN of a channel past CHANLIMIT: a user is in 50 channels at most"),
    "409": Term("server", ":{server} 409 {nick} :No origin specified", "PING without a parameter"),
    "411": Term("server", ":{server} 411 {nick} :No recipient given ({command})", "PRIVMSG with no target"),
    "412": Term("server", ":{server} 412 {nick} :No text to send", "PRIVMSG with no text, or an empty one"),
    "417": Term("server", ":{server} 417 {nick} :Input line was too long", "a line over 512 bytes"),
    "421": Term("server", ":{server} 421 {nick} {command} :Unknown command", "a command the server does not know"),
    "431": Term("server", ":{server} 431 {nick} :No nickname given", "NICK, WHOIS or WHOWAS without a nickname"),
    "432": Term("server", ":{server} 432 {nick} {nickname} :Erroneous nickname",
                "a nickname that breaks RFC 2812's rule, or is over 30 characters"),
    "433": Term("server", ":{server} 433 {nick} {nickname} :Nickname is already in use",
                "a nickname someone has, in rfc1459 case mapping (Kit[ and kit{ are one name)"),
    "442": Term("server", ":{server} 442 {nick} {channel} :You're not on that channel",
                "PART or TOPIC of a channel you are not in"),
    "451": Term("server", ":{server} 451 {nick} :You have not registered",
                "any command but CAP, NICK, USER, PASS, PING, PONG and QUIT before registration"),
    "461": Term("server", ":{server} 461 {nick} {command} :Not enough parameters",
                "a command with too few parameters, or USER with an empty one"),
    "462": Term("server", ":{server} 462 {nick} :You may not reregister",
                "USER after registration (before it, a second USER, like a second NICK, replaces the first, "
                "with no answer)"),
    "ERROR": Term("server", "ERROR :Closing Link: {host} ({reason})",
                  "the last line before the server closes a connection; the reason is Quit[: REASON], "
                  "Connection closed, Registration timed out, Ping timeout: N seconds, Max SendQ exceeded "
                  "or Server shutting down"),
}

# What irssi shows, when the server says the right thing: its own words, not the kit's
# (tests/test_irc.py drives two irssi users and reads their screens).
IRSSI = {
    "irssi_registered": Term("irssi", "MOTD File is missing", "once registered: irssi shows our 422", pattern=True),
    "irssi_names": Term("irssi", r"{channel}: Total of {count} nick",
                        "after /join: irssi counts the 353 lines' nicks", pattern=True),
    "irssi_synced": Term("irssi", r"Join to {channel} was synced in \d+ secs",
                         "after /join and its names: irssi has had the end of each answer it asked for (324 "
                         "to MODE #kit, 315 to WHO #kit, 368 to MODE #kit b)", pattern=True),
    "irssi_whois": Term("irssi", r"-!- {name} \[{userhost}\]\s*$",
                        "after /whois NICK, in irssi's status window (/window 1): our 311, as its first line",
                        pattern=True),
    "irssi_whois_ircname": Term("irssi", r"ircname\s*: {realname}", "then the user's real name, from 311",
                                pattern=True),
    "irssi_whois_channels": Term("irssi", r"channels\s*: {channels}", "then the user's channels, from 319",
                                 pattern=True),
    "irssi_whois_end": Term("irssi", "End of WHOIS", "after the user's lines: our 318"),
    "irssi_no_such_nick": Term("irssi", r"There is no such nick {name}",
                               "after /whois of a nick nobody has: our 401, then 406 and 369 to the WHOWAS "
                               "irssi sends next", pattern=True),
    "irssi_joined": Term("irssi", r"{name} \[{userhost}\] has joined {channel}", "someone joined", pattern=True),
    "irssi_said": Term("irssi", r"<.?{name}> {text}", "a message, in the channel's window or a query's",
                       pattern=True),
    "irssi_query": Term("irssi", r"Starting query in \S+ with {name}", "after /query NICK", pattern=True),
    "irssi_nick": Term("irssi", r"{name} is now known as {new}", "someone's NICK", pattern=True),
    "irssi_own_nick": Term("irssi", r"You're now known as {new}", "your own NICK, echoed", pattern=True),
    "irssi_left": Term("irssi", r"{name} \[{userhost}\] has left {channel}", "someone's PART", pattern=True),
    "irssi_quit": Term("irssi", r"{name} \[{userhost}\] has quit \[{reason}\]", "someone's QUIT", pattern=True),
}
IRC.update(IRC_WIRE)
IRC.update(IRSSI)

# ---------------------------------------------------------------- 08: peers

PEER = {
    **PROGRAMS,
    "prompt": Term("peer", "> ", "after listening on: it reads commands from now on"),
    "connection": Term("peer", r"connection (\d+) to 127\.0\.0\.1:{port}\b",
                       "connect HOST PORT worked: the new connection's id", pattern=True),
    "connected_from": Term("peer", "from 127.0.0.1:{port}", "someone connected to you: their listening port"),
    "row": Term("peer", r"(\d+) +127\.0\.0\.1 +{port}\b", "list: one row per connection, id, address, port",
                pattern=True),
    "table": Term("peer", r"id +address +port\r\n((?:.*\r\n)*?)> ", "list: the heading, then the rows",
                  pattern=True),
    "message_from": Term("peer", "message from 127.0.0.1:{port}", "a message arrived: the sender's listening port"),
    "closed_by_peer": Term("peer", "127.0.0.1:{port}) closed by the peer", "the other side said bye"),
    "dropped": Term("peer", "127.0.0.1:{port}) dropped", "the other side vanished without bye"),
    "no_connection": Term("peer", "no connection '{id}'", "send or terminate with an id that no connection has"),
    "not_a_number": Term("peer", "must be a number", "an id or port that is not a number"),
    "usage_connect": Term("peer", "usage: connect HOST PORT", "connect with a missing argument"),
    "usage_send": Term("peer", "usage: send ID MESSAGE", "send with a missing argument"),
    "bad_port_argument": Term("peer", "PORT", "in argparse's line of error, then exit code 2, for peer.py with a "
                                              "port that is not a number"),
    "unknown": Term("peer", "unknown command", "a word that is not a command"),
    "refused": Term("peer", "cannot connect to 127.0.0.1:{port}: Connection refused", "connect to a closed port"),
    "yourself": Term("peer", "cannot connect to yourself", "connect to your own port"),
    "already": Term("peer", "already connected", "connect to a peer you are already connected to, either way"),
    "myport": Term("peer", r"[\n ]{port}\r\n", "myport: the port on a line of its own (a prompt before it "
                                                  "is free)", pattern=True),
    "myip": Term("peer", r"\n(\d+\.\d+\.\d+\.\d+)\r\n", "myip: an IPv4 address on a line of its own", pattern=True),
    "not_a_message": Term("peer", "not a message", "a line that is not a JSON message; the peer goes on"),
    "escaped": Term("peer", "\\u{code}", "a control character in a message (ESC is 001b) is shown as these six "
                                        "characters, never sent raw to the terminal"),
}
PEER_COMMANDS = ("help", "myip", "myport", "connect", "list", "terminate", "send", "exit")

FREE = ("prompts (such as `> ` or `name: ` before a line), prefixes and markers before a term "
        "(such as `[14:02]`, `*` or `[direct]`), blank lines, colours, the wording of hints "
        "around the quoted terms, and the order of names in a list.")


# ---------------------------------------------------------------- the wire: every field of every reply

# What each server message carries, per wire protocol (docs/protocol.md): field -> what it must be.
# A check that waits for a reply compares the fields it knows, then holds the whole message to this:
# every field present with the right type, and no field the protocol does not define.
TEXT, NUMBER, NAMES, TIME = "a string", "a whole number", "a list of strings", "an ISO 8601 time"
REASON = "quit or lost"
JSON_1 = {
    "welcome": {"name": TEXT, "online": NUMBER, "time": TIME},
    "joined": {"name": TEXT, "time": TIME},
    "said": {"from": TEXT, "text": TEXT, "time": TIME},
    "left": {"name": TEXT, "reason": REASON, "time": TIME},
    "bye": {"time": TIME},
    "error": {"code": TEXT, "message": TEXT, "time": TIME},
}
JSON_2 = {
    **JSON_1,
    "dm": {"from": TEXT, "text": TEXT, "time": TIME},
    "users": {"names": NAMES, "time": TIME},
    "shutdown": {"time": TIME},
}
JSON_2_HISTORY = {**JSON_2, "said": {**JSON_2["said"], "history?": "true"}}  # 07: history is optional
JSON_2_FILES = {
    **JSON_2,
    "welcome": {**JSON_2["welcome"], "max_file_size": NUMBER},
    "offer": {"from": TEXT, "to": TEXT, "id": TEXT, "name": TEXT, "size": NUMBER, "sha256": TEXT, "time": TIME},
    "accepted": {"id": TEXT, "by": TEXT, "time": TIME},
    "declined": {"id": TEXT, "by": TEXT, "time": TIME},
    "chunk": {"from": TEXT, "id": TEXT, "data": TEXT, "time": TIME},
    "done": {"from": TEXT, "id": TEXT, "time": TIME},
    "cancelled": {"from": TEXT, "to": TEXT, "id": TEXT, "reason": TEXT, "time": TIME},
}
WIRE = {"json-1": JSON_1, "json-2": JSON_2, "json-2-history": JSON_2_HISTORY, "json-2-tls": JSON_2_FILES}


def wrong_fields(message, schema):
    """What is wrong with one server message against its protocol's table ([] if nothing)."""
    fields = schema.get(message.get("type"))
    if fields is None:
        return [f"type {message.get('type')!r} is not a server message of this protocol"]
    problems = []
    for key, kind in fields.items():
        optional, key = key.endswith("?"), key.rstrip("?")
        if key not in message:
            problems += [] if optional else [f"no {key!r} field"]
        elif not is_a(message[key], kind):
            problems.append(f"{key!r} must be {kind}, not {message[key]!r}")
    known = {key.rstrip("?") for key in fields} | {"type"}
    problems += [f"a field the protocol does not define: {key!r}" for key in message if key not in known]
    return problems


def is_a(value, kind):
    if kind == TIME:
        return isinstance(value, str) and iso_time(value)
    if kind == NAMES:
        return isinstance(value, list) and all(isinstance(name, str) for name in value)
    if kind == NUMBER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == REASON:
        return value in ("quit", "lost")
    if kind == "true":
        return value is True
    return isinstance(value, str)


def iso_time(text):
    try:
        return datetime.fromisoformat(text).tzinfo is not None  # the protocol says UTC: a zone is given
    except ValueError:
        return False


# ---------------------------------------------------------------- the wire: every client message

# What a client may send, per wire protocol (docs/protocol.md): field -> what it must be. The
# matrix (tests/test_matrix.py) sends each message, and each field missing, of the wrong JSON
# type, empty, only spaces and too long, in every state of a connection.
NAME = "a name: 1 to 32 letters, digits, _ or -"
ONLINE = "the name of a user online, in any case"
ANY_TEXT = "any string"
HEX = "64 hex digits"
CLIENT_JSON_1 = {
    "hello": {"name": NAME, "client_id": ANY_TEXT},
    "say": {"text": ANY_TEXT},
    "bye": {},
}
CLIENT_JSON_2 = {**CLIENT_JSON_1, "dm": {"to": ONLINE, "text": ANY_TEXT}, "who": {}}
CLIENT_FILES = {
    **CLIENT_JSON_2,
    "offer": {"to": ONLINE, "id": ANY_TEXT, "name": ANY_TEXT, "size": NUMBER, "sha256": HEX},
    "accept": {"from": ONLINE, "id": ANY_TEXT},
    "decline": {"from": ONLINE, "id": ANY_TEXT},
    "chunk": {"id": ANY_TEXT, "data": ANY_TEXT},
    "done": {"id": ANY_TEXT},
    "cancel": {"id": ANY_TEXT},
}
CLIENT_WIRE = {"json-1": CLIENT_JSON_1, "json-2": CLIENT_JSON_2, "json-2-tls": CLIENT_FILES}

# The sentences of docs/protocol.md that each cell of the matrix holds a server to, quoted
# word for word (tests/test_matrix.py checks that the spec still says each of them).
JSON_RULES = {
    "shape": "A message is checked for its shape first (`bad-json`, `bad-message`,\n`unknown-type`), "
             "and only then against the state of the connection",
    "bad-json": "the line is not JSON, or not UTF-8",
    "bad-message": "not an object, no `type` string, a field missing or of the wrong type",
    "unknown-type": "a `type` the server does not know",
    "blank": "A blank line is ignored, with no answer",
    "extra": "A field a message does not\nneed is ignored.",
    "nobody": "A connection that has not joined is nobody: it receives nothing meant for\nthe room "
              "(no `joined`, `said` or `left`), and nobody is told when it comes or goes.",
    "not-joined": "`say` (or any other message) before a successful `hello`",
    "already-joined": "a second `hello`",
    "name": "A name is 1 to 32 letters, digits, `_` or `-`.",
    "client_id": "`client_id` is any string the client makes up",
    "shared-name": "Two users may share a name here (stage 05 makes names unique).",
    "name-taken": "a `hello` with a name someone online already has, compared without regard to case",
    "welcome": "your `hello` was accepted: you are in the room",
    "online": "the users in the room, you included",
    "joined": "someone else joined",
    "say": "The text may be any string, even empty or only spaces: the server relays it as it came.",
    "said": "someone else said something; the sender does not get it back",
    "history": "right after a `welcome`: the last public messages",
    "bye": "the answer to your `bye`; the server then closes the connection",
    "bye-anytime": "Allowed at any time, even before `hello`.",
    "after-bye": "The server reads nothing after a `bye`: a line sent after it, even in the same packet, "
                 "gets no answer and has no effect.",
    "left": "`reason` is `quit` (they sent `bye`) or `lost`",
    "line-too-long": "a line of 8,192 bytes or fewer before its `\\n` is taken | the server closes the "
                     "connection; the others are told `left`, reason `lost`",
    "dm": "a direct message to one user (to your own name: to you); the sender gets nothing back.",
    "no-such-user": "a `dm` to a name nobody online has, compared without regard to case",
    "users": "every user online and nobody else, sorted, with or without regard to case",
    "no-such-offer-user": "An `offer` to a name nobody else online has (yourself included) gets `no-such-user`.",
    "cancel": "A `cancel` of a file that is not in transfer is ignored, with no answer.",
    "no-such-file": "an answer to an offer that is not waiting for you",
    "not-accepted": "a `chunk` or `done` for a file its recipient has not accepted",
    "bad-offer": "an `id` already in use, or a `sha256` that is not 64 hex digits",
    "file-too-big": "an offer over the server's `--max-file-size`",
}
