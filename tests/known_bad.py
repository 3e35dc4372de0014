"""Known-bad implementations: classic student bugs, planted in a temporary copy of a stage.

Each entry names the stage, the file, the code it replaces, and the check that must catch
it. tests/test_grading.py grades each one (python -m pytest --slow -m slow) and asserts
that it loses points on that check; the instructors' guide reports the kill rate.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Bug:
    name: str
    stage: str
    old: str
    new: str
    caught_by: str  # a -k expression naming the check that must fail
    program: str = "server.py"


# The lock taken away from hello()'s check-then-claim (the block keeps its indentation), as
# lesson 04's exercise 1 has the student do. Caught only because tests/test_races.py makes the
# server's threads take turns between any two lines; it plants this in each threaded stage.
LOCK_TAKEN_AWAY = {
    "04": ("        with self.lock:\n            online = sum(", "        if True:\n            online = sum("),
    **{stage_id: ("        with self.lock:\n            names = [other.name.lower()",
                  "        if True:\n            names = [other.name.lower()") for stage_id in ("05", "06", "07")},
}

BUGS = [
    # The classics
    Bug("one recv() taken as one message", "01",
        '''        buffer += data
        while b"\\n" in buffer:
            line, buffer = buffer.split(b"\\n", 1)
            echo_line(conn, who, line)''',
        '''        echo_line(conn, who, data.rstrip(b"\\n"))''',
        "line_sent_in_pieces"),
    Bug("the message echoed back to its sender", "02",
        "if other is not sender and other.name", "if other.name", "everyone_but_the_sender"),
    Bug("duplicate names accepted", "05",
        "            taken = name.lower() in names\n", "            taken = False\n", "taken_name_in_any_case"),
    Bug("a DM delivered to everyone", "05",
        '''        self.send(recipient, encode({"type": "dm", "from": sender.name, "text": text}))''',
        '''        self.broadcast(encode({"type": "dm", "from": sender.name, "text": text}), sender=sender)''',
        "dm_reaches_the_recipient_only"),
    Bug("a traceback on Ctrl+C", "02",
        "    except KeyboardInterrupt:\n        pass  # Ctrl+C is how you stop a server: not an error\n", "",
        "server_ctrl_c_stops_it"),
    Bug("no leave notice", "02",
        '''            self.broadcast(f"* {client.name} left", sender=client)''', "            pass",
        "told_who_joins_and_leaves"),
    Bug("a crash on invalid UTF-8", "02",
        '''            line = client.inbox[:end].decode("utf-8", errors="replace")''',
        '''            line = client.inbox[:end].decode("utf-8")''',
        "odd_bytes_do_no_harm and invalid"),
    Bug("a server that blocks on a slow client", "02",
        "            sent = client.sock.send(client.outbox)",
        "            client.sock.setblocking(True)\n            client.sock.sendall(client.outbox)\n"
        "            sent = len(client.outbox)",
        "never_reads_is_dropped"),
    Bug("the ready line printed before listen()", "02",
        "    listener = open_listener(args.host, args.port)\n",
        '''    print(f"listening on {args.host}:{args.port}", flush=True)\n    listener = open_listener(args.host, args.port)\n''',
        "prints_its_real_port"),
    # Of our own choosing
    Bug("no SO_REUSEADDR", "02",
        "    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n", "",
        "restarts_on_the_same_port"),
    Bug("an unbounded line buffer", "03",
        "        if client in self.clients and len(client.inbox) > MAX_LINE:",
        "        if False:", "too_long_line_disconnects"),
    Bug("bad JSON closes the connection", "03",
        "            self.send_error(client, error.code, str(error))\n            return",
        "            self.send_error(client, error.code, str(error))\n            self.disconnect(client, \"lost\")\n"
        "            return",
        "bad_message_gets_an_error and not-json"),
    Bug("names not checked", "03",
        "        elif not NAME.fullmatch(name):", "        elif not name:", "bad_names_are_refused and two"),
    Bug("no timestamps", "03",
        '''    message["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")\n''', "",
        "carry_their_fields_and_time"),
    Bug("--max-clients ignored", "03",
        "        elif sum(1 for other in self.clients if other.name) >= self.max_clients:",
        "        elif False:", "past_max_clients"),
    Bug("the client prints escape sequences raw", "03",
        '''    return "".join(ch if ch.isprintable() else f"\\\\u{ord(ch):04x}" for ch in str(text))''',
        "    return str(text)", "hostile_text and colour", program="client.py"),
    Bug("no shutdown notice", "05",
        "        notice = encode({\"type\": \"shutdown\"})", "        notice = b\"\"", "shutdown_with_three_clients"),
    Bug("names compared with their case", "05",
        "            names = [other.name.lower() for other in self.clients if other.name]\n"
        "            taken = name.lower() in names",
        "            names = [other.name for other in self.clients if other.name]\n            taken = name in names",
        "taken_name_in_any_case and upper"),
    Bug("a traceback on Ctrl+C in the client", "05",
        "        except (EOFError, KeyboardInterrupt):\n            pass  # Ctrl+D or Ctrl+C: leave cleanly",
        "        except EOFError:\n            pass  # Ctrl+D or Ctrl+C: leave cleanly",
        "client_ctrl_c_leaves_cleanly", program="client.py"),
    Bug("a threaded server that blocks in sendall() in the broadcaster's thread", "04",
        "        if not client.outbox.put(data):",
        "        if client.sock.sendall(data):  # blocks while this client does not read", "never_reads_is_dropped"),
    Bug("no lock around the room's check-then-claim", "04", *LOCK_TAKEN_AWAY["04"], "crowd_joining_at_once"),
    Bug("a server that stops after its first client", "01",
        "    while True:\n        conn, address = listener.accept()",
        "    for _ in range(1):\n        conn, address = listener.accept()", "next_client_is_served"),
    Bug("a history that is kept but never sent", "07",
        "                for said in self.history:\n                    self.send(client, encode({**said, \"history\": True}))\n",
        "", "newcomer_gets_the_recent_messages"),
    Bug("a curses client that answers KEY_RESIZE with resizeterm() every time", "07",
        "        if curses.is_term_resized(rows, columns):\n            curses.resizeterm(rows, columns)\n",
        "        curses.resizeterm(rows, columns)\n", "resizing_redraws", program="client.py"),
    Bug("terminate without telling the other side", "08",
        '            self.tell(peer, type="bye")\n            self.drop(peer, "terminated")',
        '            self.drop(peer, "terminated")', "terminate_closes_one_connection", program="peer.py"),
    # (09's share counts the transport's buffer too, so a writer that never awaits drain()
    # is dropped as stuck all the same: no longer a bug that loses anything.)
    Bug("a connection that never joins is waited for for ever", "09",
        "        return await asyncio.wait_for(client.reader.readuntil(b\"\\n\"), remaining)\n",
        "        return await client.reader.readuntil(b\"\\n\")\n", "never_join"),
    Bug("a file name from the network used as a path", "10",
        'open_new_file(self.downloads, safe_name(offer["name"]))', 'open_new_file(self.downloads, str(offer["name"]))',
        "hostile_file_names and parent", program="client.py"),
    Bug("a file kept without checking its SHA-256", "10",
        "            or download.digest.hexdigest() != download.sha256\n", "", "damaged_file_is_not_kept and hash",
        program="client.py"),
    Bug("a client that checks the certificate but not the host name", "10",
        "        return await asyncio.open_connection(",
        "        context.check_hostname = False\n        return await asyncio.open_connection(",
        "checks_the_host_name", program="client.py"),
    Bug("chunks relayed before the recipient accepts", "10",
        "        if transfer is None or not transfer.accepted:", "        if transfer is None:",
        "declined_file_is_not_sent"),
    Bug("a client that ignores --port", "02",
        "        with connect(args.host, args.port) as sock:", "        with connect(args.host, DEFAULT_PORT) as sock:",
        "connection_refused_is_one_line_error", program="client.py"),
]

# Bugs the suite does not catch reliably, kept here so the kill rate stays honest:
NOT_CAUGHT = [
    ("send() instead of sendall()", "on loopback the kernel takes a whole chat line in one send(); only a "
     "client that falls far behind would see the lost tail of a partial send"),
]


@dataclass(frozen=True)
class Variant:
    """A copy of a stage that differs from it only in what the contract leaves free (tests/contract.py,
    FREE): other prompts, prefixes, wording and layout. It must get full marks, or the suite depends on
    something the spec never says (tests/test_grading.py)."""
    name: str
    stage: str
    changes: tuple  # (program, old, new), each old text found exactly once


VARIANTS = [
    Variant("other prompts, prefixes, wording and log format", "05", (
        ("client.py", 'print("type C HELP for the commands")', 'print("ready.")'),
        ("client.py", 'prompt = "command> "', 'prompt = "chat> "'),
        ("client.py", 'read("command> ")', 'read("chat> ")'),
        ("client.py", '"PM text> "', '"say: "'),
        ("client.py", '"DM to whom> "', '"to: "'),
        ("client.py", 'print(f"\\r{line}\\n{prompt}", end="", flush=True)', 'print(f"\\r{line}\\n[{prompt}]", end="", flush=True)'),
        ("client.py", 'print(f"! start the {what} with {prefix}, as in {prefix} {printable(line)}")',
         'print(f"?? {prefix} first, please")'),
        ("client.py", '(to {printable(to)}) {printable(text)}', '[to {printable(to)}] {printable(text)}'),
        ("client.py", 'input("name: ")', 'input("Your name: ")'),
        ("client.py", "* welcome, {get('name')} ({get('online')} online)", "welcome, {get('name')}! {get('online')} here"),
        ("client.py", "[direct] {get('from')}", "(private) {get('from')}"),
        ("client.py", '"* online: " + ", ".join(', '"here now: " + " ".join('),
        ("client.py", "* the server is shutting down", "!! shutting down, bye"),
        ("client.py", '"! unknown command: commands start with C, as in C PM "\n'
                      '                "(C HELP lists them)"', '"?? no such command; see C HELP"'),
        ("server.py", 'datefmt="%H:%M:%S",', 'datefmt="[%H:%M]",'),
        ("server.py", 'log.info(f"{name} joined from {client.address}")', 'log.info(f"{name} joined ({client.address})")'),
        ("server.py", "f\"{client.name} said {len(line)} bytes: {message['text']}\"",
         "f\"{client.name}: {message['text']} ({len(line)} bytes)\""),
    )),
]
