"""Stage 08: peer-to-peer chat. No server: every peer listens, and can also connect out.

Run it:    python3 stages/08/peer.py [--host HOST] [--port PORT]
or simply: python3 stages/08/peer.py 8080

Commands at the "> " prompt:
  help                the commands
  myip                where others reach us
  myport              the port we listen on
  list                our connections: id, address, port
  connect HOST PORT   connect to a peer
  terminate ID        close a connection
  send ID MESSAGE     send to one peer
  exit                close every connection and quit

On the wire, JSON Lines as in stage 03: {"type": "hello", "port": P} first (so the other
side knows where we listen), then {"type": "message", "text": ...}, and {"type": "bye"}.
A connection is symmetric: once it is up, it does not matter who connected to whom.
"""

import argparse
import json
import os
import selectors
import signal
import socket
import sys

DEFAULT_HOST = "0.0.0.0"  # every interface: other machines must be able to reach a peer
DEFAULT_PORT = 65433
MAX_LINE = 8192
# Each command, how it is typed, and what it does: the help text and the argument check.
COMMANDS = {
    "help": ("help", "this list"),
    "myip": ("myip", "the address other machines reach this peer at"),
    "myport": ("myport", "the port this peer listens on"),
    "connect": ("connect HOST PORT", "connect to another peer"),
    "list": ("list", "the connections: id, address, port"),
    "terminate": ("terminate ID", "close connection ID (the other side is told)"),
    "send": ("send ID MESSAGE", "send MESSAGE on connection ID"),
    "exit": ("exit", "close every connection (telling each peer) and quit"),
}


def port_number(text):
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


def parse_args():
    parser = argparse.ArgumentParser(description="Stage 08: a peer-to-peer chat.")
    parser.add_argument(
        "bare_port",
        nargs="?",
        type=port_number,
        metavar="PORT",
        help="the same as --port PORT",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        help=f"port to listen on, 0 picks a free one (default {DEFAULT_PORT})",
    )
    args = parser.parse_args()
    if (
        args.bare_port is not None
        and args.port is not None
        and args.bare_port != args.port
    ):
        parser.error("two different ports given")
    args.port = next(
        (port for port in (args.port, args.bare_port) if port is not None), DEFAULT_PORT
    )
    return args


def my_ip():
    """The address other machines reach us at.

    Connecting a UDP socket sends nothing: it only makes the kernel choose the outgoing
    interface, whose address we then read."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            # TEST-NET-1: any routable address works; no packet leaves.
            probe.connect(("192.0.2.1", 9))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"  # no network at all: only this machine can reach us


class Peer:
    """One connection to another peer."""

    def __init__(self, number, sock, address):
        self.id, self.sock, self.ip = number, sock, address[0]
        self.port = None  # where the other side listens: it tells us in its hello
        self.pending = b""

    def __str__(self):
        return f"{self.ip}:{self.port if self.port is not None else '?'}"

    def send(self, **message):
        # sendall(): send() may write only part of it.
        self.sock.sendall((json.dumps(message) + "\n").encode())


class Node:
    """This peer: its listening socket, its connections, and the loop serving them."""

    def __init__(self, listener):
        self.listener, (self.host, self.port) = listener, listener.getsockname()
        self.peers, self.next_id, self.running = {}, 1, True
        self.keyboard, self.busy = b"", False  # busy: a command is running
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, self.accept)
        try:
            self.selector.register(sys.stdin, selectors.EVENT_READ, self.read_keyboard)
            self.from_file = False
        except PermissionError:
            # epoll refuses a regular file (peer.py < commands.txt) and /dev/null. Both
            # are always ready to read: serve() takes a line between network events.
            self.from_file = True

    def say(self, text):
        # "\r" starts over the "> " prompt; then a fresh prompt for what you type next,
        # unless a command is running: typed() draws the prompt once, when it is done.
        print(f"\r{text}", end="\n" if self.busy else "\n> ", flush=True)

    # --8<-- [start:connections]
    def add(self, sock, address):
        # A timeout on each peer's socket: a peer that stops reading can
        # stall sendall() 5 s at most.
        sock.settimeout(5)
        peer = Peer(self.next_id, sock, address)
        self.next_id += 1
        self.peers[peer.id] = peer
        self.selector.register(sock, selectors.EVENT_READ, lambda: self.read_peer(peer))
        # Both sides say hello: the connection is symmetric.
        peer.send(type="hello", port=self.port)
        return peer

    def accept(self):
        sock, address = self.listener.accept()
        # Announced once its hello says where it listens: see handle().
        self.add(sock, address)

    def drop(self, peer, why):
        if self.peers.get(peer.id) is not peer:
            # Already gone: one select() can report a peer's socket after an earlier
            # event in the same batch (terminate, a failed send) has closed it.
            return
        self.selector.unregister(peer.sock)
        peer.sock.close()
        del self.peers[peer.id]
        self.say(f"* connection {peer.id} ({peer}) {why}")

    # --8<-- [end:connections]

    # --8<-- [start:receive]
    def read_peer(self, peer):
        try:
            data = peer.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            return self.drop(peer, "dropped: the peer went away")
        *lines, peer.pending = (peer.pending + data).split(b"\n")
        if len(peer.pending) > MAX_LINE:
            return self.drop(peer, "closed: it sent a line over 8 KiB")
        for line in lines:
            if peer.id in self.peers and line.strip():
                self.handle(peer, line)

    def handle(self, peer, line):
        try:
            message = json.loads(line)
            kind = message["type"]
        except (ValueError, TypeError, KeyError, RecursionError):  # [[[[... too deep
            return self.say(
                f"! connection {peer.id} sent a line that is not a message: ignored"
            )
        if (
            kind == "hello"
            and isinstance(message.get("port"), int)
            and peer.port is None
        ):
            peer.port = message["port"]
            self.say(f"* connection {peer.id} from {peer}")
        elif kind == "message" and not (
            isinstance(message.get("text"), str) and message["text"].strip()
        ):
            self.say(f"! connection {peer.id} sent a message with no text: not shown")
        elif kind == "message":
            text = printable(message["text"])
            self.say(f"message from {peer} (connection {peer.id}): {text}")
        elif kind == "bye":
            self.drop(peer, "closed by the peer")

    # --8<-- [end:receive]

    # --8<-- [start:commands]
    def read_keyboard(self):
        # Not input(): it would block, and the peers with it.
        data = os.read(sys.stdin.fileno(), 4096)
        self.typed(data)

    def typed(self, data):
        """Act on each whole line typed. b"": Ctrl+D, or the end of a file of them."""
        lines = (self.keyboard + data).split(b"\n")
        self.keyboard = lines.pop() if data else b""  # at the end, a last part counts
        self.busy = True
        for line in lines:
            if self.running:
                self.command(line.decode(errors="replace").strip())
        self.busy = False
        if not data:
            raise EOFError()
        if self.running and lines:  # a prompt per line handled, not per read
            print("> ", end="", flush=True)

    def command(self, line):
        """Check the command and its number of arguments,
        then call do_<command> (as the cmd module does)."""
        name, _, rest = line.partition(" ")
        if name not in COMMANDS:
            if name:
                print(
                    f"! unknown command {printable(name)!r}: type help for the commands"
                )
            return
        usage = COMMANDS[name][0]
        # A message may hold spaces: it is all the rest of the line.
        args = rest.split(" ", 1) if name == "send" else rest.split()
        if len(args) != len(usage.split()) - 1 or not all(arg.strip() for arg in args):
            return print(f"! usage: {usage}")
        getattr(self, f"do_{name}")(*args)

    def do_help(self):
        print("commands:")
        for usage, meaning in COMMANDS.values():
            print(f"  {usage:<20} {meaning}")

    def do_myip(self):
        # Listening on one address only (--host 127.0.0.1): others reach us there only.
        print(my_ip() if self.host == "0.0.0.0" else self.host)

    def do_myport(self):
        print(self.port)

    # --8<-- [end:commands]

    def do_connect(self, host, port):
        if not port.isdigit() or not 0 < int(port) <= 65535:
            return print(
                f"! the port must be a number from 1 to 65535, not {printable(port)!r}"
            )
        try:
            ip = socket.gethostbyname(host)
        except OSError:
            return print(f"! cannot find the host {printable(host)!r}")
        if int(port) == self.port and (
            ip.startswith("127.") or ip in (my_ip(), "0.0.0.0")
        ):
            return print("! that is this peer: you cannot connect to yourself")
        if same := next(
            (
                peer
                for peer in self.peers.values()
                if (peer.ip, peer.port) == (ip, int(port))
            ),
            None,
        ):
            return print(f"! already connected to {ip}:{port} (connection {same.id})")
        try:
            sock = socket.create_connection((ip, int(port)), timeout=5)
        except OSError as error:
            return print(f"! cannot connect to {ip}:{port}: {error.strerror or error}")
        peer = self.add(sock, (ip, int(port)))
        peer.port = int(port)
        print(f"* connection {peer.id} to {peer}")

    def do_list(self):
        if not self.peers:
            return print("no connections")
        print("id  address          port")
        for peer in self.peers.values():
            port = peer.port if peer.port is not None else "?"
            print(f"{peer.id:<3} {peer.ip:<16} {port}")

    def peer(self, number):
        if not number.isdigit() or int(number) not in self.peers:
            print(f"! no connection {printable(number)!r}: type list to see them")
            return None
        return self.peers[int(number)]

    def do_terminate(self, number):
        if peer := self.peer(number):
            self.tell(peer, type="bye")
            self.drop(peer, "terminated")

    def do_send(self, number, text):
        if (peer := self.peer(number)) and self.tell(peer, type="message", text=text):
            print(f"sent to connection {peer.id}")

    def tell(self, peer, **message):
        """Send; a peer that cannot take it is dropped. True if it was sent."""
        try:
            peer.send(**message)
            return True
        except OSError:
            self.drop(peer, "dropped: sending failed")
            return False

    def do_exit(self):
        for peer in list(self.peers.values()):
            # So that each peer hears we left, rather than finding out later.
            self.tell(peer, type="bye")
            peer.sock.close()
        self.peers.clear()
        self.running = False

    # --8<-- [start:serve]
    def serve(self):
        print("> ", end="", flush=True)
        while self.running:
            # Commands from a file: never wait, as the next line is always there.
            for key, _ in self.selector.select(0 if self.from_file else None):
                key.data()
                if not self.running:
                    break
            if self.from_file and self.running:
                if line := sys.stdin.buffer.readline():  # shown as a terminal echoes it
                    print(printable(line.decode(errors="replace").rstrip("\n")))
                self.typed(line)

    # --8<-- [end:serve]


def printable(text):
    # A peer may send escape sequences that would take over our
    # terminal: show them as \uXXXX.
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in str(text))


def open_listener(host, port):
    listener = socket.socket()
    # Restart on the same port at once.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        sys.exit(f"error: cannot listen on {host}:{port}: {error.strerror}")
    listener.listen()
    return listener


def main():
    # Ctrl+C raises KeyboardInterrupt, even if we were started with it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parse_args()
    with open_listener(args.host, args.port) as listener:
        host, port = listener.getsockname()
        node = Node(listener)
        try:
            print(f"listening on {host}:{port}\ntype help for the commands", flush=True)
            node.serve()
        except EOFError:
            node.do_exit()  # Ctrl+D, or the end of a file of commands: as "exit" does
        except KeyboardInterrupt:
            node.do_exit()
            print()  # the terminal echoed ^C after the prompt: "bye" on a new line
        print("\rbye")


if __name__ == "__main__":
    main()
