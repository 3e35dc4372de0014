"""Stage 02 server: a chat room for many clients, served by one thread with selectors.

Run it:    python stages/02/server.py [--host HOST] [--port PORT]

Protocol (plain text lines, UTF-8, each ending in "\\n"):
  client -> server   the first line is the client's name; every later line is a chat message
  server -> client   "* welcome, NAME (N online)"   once, when the name is registered
                     "* NAME joined" / "* NAME left" to the others
                     "NAME: text"                    a chat message from someone else

Stage 01 blocked in accept() or recv() and so could serve one client. Here every
socket is non-blocking, and one selector tells us which sockets are ready, so a
single thread serves everyone without ever waiting on one slow client.
"""

import argparse
import contextlib
import selectors
import signal
import socket
import sys

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432
MAX_LINE = 8192  # bytes; past this without a newline, the client is disconnected
MAX_PENDING = 1024 * 1024  # bytes waiting to go out to one client before we drop it


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        # argparse prints the usage and exits with 2; the kit promises one clear line and exit code 1.
        sys.exit(f"{self.prog}: error: {message}")


def port_number(text):
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


def parse_args():
    parser = ArgumentParser(description="Stage 02: select-based chat server.")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                        help=f"port to listen on, 0 picks a free one (default {DEFAULT_PORT})")
    return parser.parse_args()


def open_listener(host, port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Without SO_REUSEADDR, a restarted server cannot bind the port while old connections sit in TIME_WAIT.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        sys.exit(f"error: cannot listen on {host}:{port}: {error.strerror}")
    listener.listen()
    listener.setblocking(False)  # accept() must never block the one thread we have
    return listener


def encode(text):
    """One message on the wire: the text in UTF-8, ending in a newline."""
    return (text + "\n").encode("utf-8")


def printable(text):
    """Control characters (escape sequences, bidi overrides...) as visible \\uXXXX text."""
    if text.isprintable():
        return text  # the usual case, checked in one call instead of one per character
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)


# --8<-- [start:client]
class Client:
    """What the server remembers about one connection."""

    def __init__(self, sock, address):
        self.sock = sock
        self.address = f"{address[0]}:{address[1]}"
        self.name = None  # set by the first line the client sends
        self.inbox = bytearray()  # bytes received that do not make a whole line yet
        self.outbox = bytearray()  # bytes queued for this client that the kernel has not taken yet
        self.watching_writes = False
# --8<-- [end:client]


class ChatServer:
    def __init__(self, listener):
        self.listener = listener
        self.clients = set()
        self.queued = set()  # clients whose outbox got something during this turn of the loop
        self.accepting = True  # False while we are out of file descriptors
        # DefaultSelector is epoll on Linux: unlike select.select(), it has no 1024-descriptor limit.
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ)

    # --8<-- [start:loop]
    def run(self):
        while True:
            for key, events in self.selector.select():
                if key.fileobj is self.listener:
                    self.accept()
                    continue
                client = key.data
                if events & selectors.EVENT_READ:
                    self.receive(client)
                if events & selectors.EVENT_WRITE and client in self.clients:
                    self.flush(client)
            self.flush_queued()
    # --8<-- [end:loop]

    def accept(self):
        try:
            sock, address = self.listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return  # the client gave up between select() and accept(): nothing to do
        except OSError as error:  # EMFILE: this process may not open more files (ulimit -n)
            # The connection stays queued, so select() would say "ready" again at once, for
            # ever: a busy loop. Stop watching the listener until a client leaves and frees a file.
            print(f"cannot accept a client: {error.strerror}; waiting for one to leave", flush=True)
            self.selector.unregister(self.listener)
            self.accepting = False
            return
        sock.setblocking(False)
        client = Client(sock, address)
        self.clients.add(client)
        self.selector.register(sock, selectors.EVENT_READ, client)

    # --8<-- [start:receive]
    def receive(self, client):
        try:
            # Up to 64 KiB: when a client sends fast, its lines pile up in the kernel. Taking them all
            # at once means one turn of the loop, and one send() per listener, for all of them.
            data = client.sock.recv(65536)
        except ConnectionError:
            data = b""
        if not data:  # b"" means the client closed the connection (or it broke)
            self.disconnect(client)
            return
        client.inbox += data
        # Act only on complete lines; keep the rest for the next recv().
        while client in self.clients and (end := client.inbox.find(b"\n")) >= 0:
            line = client.inbox[:end].decode("utf-8", errors="replace")
            del client.inbox[:end + 1]
            self.handle_line(client, line.strip())
        if len(client.inbox) > MAX_LINE:
            # Without a limit, a client that never sends "\n" would make us buffer forever.
            self.send(client, encode("* error: line too long"))  # disconnect() makes a last try to send it
            self.disconnect(client)
    # --8<-- [end:receive]

    def handle_line(self, client, text):
        if not text:
            return
        if client.name is None:
            self.register(client, text)
        else:
            print(f"{client.name}: {printable(text)}", flush=True)  # our console is a terminal too
            self.broadcast(f"{client.name}: {text}", sender=client)

    def register(self, client, name):
        if not name.isprintable():
            # A name appears in everyone's terminal: an escape sequence in it could recolour,
            # retitle or scramble all of them. (Messages are made safe by the clients.)
            self.send(client, encode("* error: a name may not contain control characters"))
            self.disconnect(client)
            return
        client.name = name
        online = sum(1 for other in self.clients if other.name)
        # The welcome tells the client it is in the room: messages it sends from now on are delivered.
        self.send(client, encode(f"* welcome, {name} ({online} online)"))
        self.broadcast(f"* {name} joined", sender=client)
        print(f"{name} joined from {client.address}", flush=True)

    def broadcast(self, text, sender):
        data = encode(text)  # encoded once, not once per client
        # A copy of the set: dropping a client changes the set.
        for other in list(self.clients):
            if other is not sender and other.name and other in self.clients:
                self.send(other, data)

    # --8<-- [start:send]
    def send(self, client, data):
        """Put data in the client's outbox. It goes out at the end of this turn of the loop."""
        client.outbox += data
        if len(client.outbox) > MAX_PENDING:
            # A client that never reads would make us buffer its messages forever.
            print(f"{client.name} is not reading: dropping it", flush=True)
            self.disconnect(client)
        elif not client.watching_writes:  # if it is, the selector will tell us when it can take more
            self.queued.add(client)

    def flush_queued(self):
        # Why wait for the end of the turn: one recv() can bring many lines, and each client then gets
        # all of them in one send(). A system call costs far more than copying bytes: with 1,000
        # clients, that is 1,000 send() calls per turn instead of 1,000 per message.
        while self.queued:
            client = self.queued.pop()
            if client in self.clients:
                self.flush(client)

    def flush(self, client):
        """Give the kernel as much of the outbox as it will take right now."""
        try:
            sent = client.sock.send(client.outbox)  # may take only part of it: a partial send
        except BlockingIOError:
            sent = 0
        except OSError:
            self.disconnect(client)
            return
        del client.outbox[:sent]
        # Ask the selector to tell us when the socket can take more, but only while we have more.
        want_writes = bool(client.outbox)
        if want_writes != client.watching_writes:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_writes else 0)
            self.selector.modify(client.sock, events, client)
            client.watching_writes = want_writes
    # --8<-- [end:send]

    def disconnect(self, client):
        if client not in self.clients:
            return  # already gone: a failed send and an EOF can both get here
        self.clients.remove(client)
        with contextlib.suppress(OSError):
            client.sock.send(client.outbox)  # a last try, so an error we just queued reaches it
        self.selector.unregister(client.sock)
        client.sock.close()
        if not self.accepting:  # a file descriptor is free again
            self.selector.register(self.listener, selectors.EVENT_READ)
            self.accepting = True
        if client.name:
            print(f"{client.name} left", flush=True)
            self.broadcast(f"* {client.name} left", sender=client)

    def close(self):
        for client in list(self.clients):
            client.sock.close()
        self.selector.close()
        self.listener.close()


def main():
    # A program started in the background by a script may inherit "ignore Ctrl+C"; ask for KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parse_args()
    listener = open_listener(args.host, args.port)
    host, port = listener.getsockname()
    server = ChatServer(listener)
    print(f"listening on {host}:{port}", flush=True)  # the tests wait for exactly this line
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # Ctrl+C is how you stop a server: not an error
    finally:
        server.close()
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
