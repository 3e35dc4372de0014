"""Stage 02 server: a chat room for many clients, served by one thread with selectors.

Run it:    python3 stages/02/server.py [--host HOST] [--port PORT]

Protocol (plain text lines, UTF-8, each ending in "\\n"):
  client -> server   the first line is the client's name;
                     every later line is a chat message
  server -> client   "* welcome, NAME (N online)"   once, when the name is registered
                     "* NAME joined" / "* NAME left" to the others
                     "NAME: text"                    a chat message from someone else
                     "* error: ..."                  before the server hangs up

Stage 01 blocked in accept() or recv() and so could serve one client. Here every
socket is non-blocking, and one selector tells us which sockets are ready, so a
single thread serves everyone without ever waiting on one slow client.
"""

import argparse
import selectors
import signal
import socket
import sys

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432
MAX_LINE = 8192  # bytes in a line; a longer one is refused and the client disconnected
MAX_PENDING = 1024 * 1024  # bytes waiting to go out to one client before we drop it


def open_listener(host, port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Without SO_REUSEADDR, a restarted server cannot bind the port while old
    # connections sit in TIME_WAIT.
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


# --8<-- [start:client]
class Client:
    """What the server remembers about one connection."""

    def __init__(self, sock, address):
        self.sock = sock
        self.address = f"{address[0]}:{address[1]}"
        self.name = None  # set by the first line the client sends
        self.inbox = bytearray()  # bytes received that do not make a whole line yet
        self.outbox = bytearray()  # bytes queued for it that the kernel has not taken
        self.watching_writes = False


# --8<-- [end:client]


class ChatServer:
    def __init__(self, listener):
        self.listener = listener
        self.clients = set()
        # epoll on Linux: unlike select.select(), it has no 1024-descriptor limit.
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ)

    # --8<-- [start:loop]
    def run(self):
        while True:
            # select() sleeps until at least one socket is ready.
            for key, events in self.selector.select():
                if key.fileobj is self.listener:
                    self.accept()
                    continue
                client = key.data
                if events & selectors.EVENT_READ and client in self.clients:
                    self.receive(client)
                if events & selectors.EVENT_WRITE and client in self.clients:
                    self.flush(client)

    # --8<-- [end:loop]

    def accept(self):
        try:
            sock, address = self.listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return  # the client gave up between select() and accept(): nothing to do
        sock.setblocking(False)
        client = Client(sock, address)
        self.clients.add(client)
        self.selector.register(sock, selectors.EVENT_READ, client)

    # --8<-- [start:receive]
    def receive(self, client):
        try:
            # Up to 64 KiB: a client that sends fast has many lines
            # waiting; take them in one call.
            data = client.sock.recv(65536)
        except ConnectionError:
            data = b""
        if not data:  # b"" means the client closed the connection (or it broke)
            self.disconnect(client)
            return
        client.inbox += data
        # Act only on complete lines; keep the rest for the next recv().
        while client in self.clients and (end := client.inbox.find(b"\n")) >= 0:
            if end > MAX_LINE:
                break  # a whole line, but too long: refused below, like the rest of one
            line = client.inbox[:end].decode("utf-8", errors="replace")
            del client.inbox[: end + 1]
            self.handle_line(client, line.strip())
        if client in self.clients and len(client.inbox) > MAX_LINE:
            # Without a limit, a client that never sends "\n" would make us buffer for
            # ever. It holds on whole lines too: one recv() can bring 30 KB and a "\n".
            self.send(client, encode("* error: line too long"))
            self.disconnect(client)

    # --8<-- [end:receive]

    def handle_line(self, client, text):
        if not text:
            return
        if client.name is None:
            self.register(client, text)
        else:
            print(f"{client.name}: {text}", flush=True)
            self.broadcast(f"{client.name}: {text}", sender=client)

    def register(self, client, name):
        client.name = name
        online = sum(1 for other in self.clients if other.name)
        # The welcome says the client is in the room: what it sends now is delivered.
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
        """Put data in the client's outbox, and give the kernel what it will take."""
        client.outbox += data
        if len(client.outbox) > MAX_PENDING:
            # A client that never reads would make us buffer its messages forever.
            print(f"{client.name} is not reading: dropping it", flush=True)
            self.disconnect(client)
        elif not client.watching_writes:
            # If it were, the selector would tell us when the socket can take more.
            self.flush(client)

    def flush(self, client):
        """Give the kernel as much of the outbox as it will take right now."""
        try:
            # May take only part of it: a partial send.
            sent = client.sock.send(client.outbox)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # broken: the selector says "readable" too, and receive() cleans up
        del client.outbox[:sent]
        # Ask the selector to wake us when the socket can take more, while we have more.
        want_writes = bool(client.outbox)
        if want_writes != client.watching_writes:
            writes = selectors.EVENT_WRITE if want_writes else 0
            events = selectors.EVENT_READ | writes
            self.selector.modify(client.sock, events, client)
            client.watching_writes = want_writes

    # --8<-- [end:send]

    def disconnect(self, client):
        if client not in self.clients:
            return  # already gone: send() may have dropped it just before
        self.clients.remove(client)
        self.selector.unregister(client.sock)
        client.sock.close()
        if client.name:
            print(f"{client.name} left", flush=True)
            self.broadcast(f"* {client.name} left", sender=client)


def port_number(text):
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


def parse_args():
    parser = argparse.ArgumentParser(description="Stage 02: select-based chat server.")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help="0 picks a free port"
    )
    return parser.parse_args()


def main():
    # A program started in the background by a script may inherit "ignore
    # Ctrl+C"; ask for KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parse_args()
    listener = open_listener(args.host, args.port)
    host, port = listener.getsockname()
    try:
        # Inside the try: Ctrl+C may come the moment this line is out.
        print(f"listening on {host}:{port}", flush=True)  # the tests wait for this line
        ChatServer(listener).run()
    except KeyboardInterrupt:
        pass  # Ctrl+C is how you stop a server: not an error
    # Exiting closes every socket we hold: each client sees its connection end.
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
