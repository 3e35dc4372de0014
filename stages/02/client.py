"""Stage 02 client: chat while messages keep arriving.

Run it:    python3 stages/02/client.py [--host HOST] [--port PORT] [--name NAME]

Stage 01's client could wait on one thing at a time: the keyboard, then the
server. A chat client must wait on both at once, because others talk while you
type. A selector watches the socket and the keyboard together (this works on
POSIX systems, where a terminal is a file descriptor like a socket).
"""

import argparse
import os
import selectors
import socket
import sys
import threading

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432


def connect(host, port):
    try:
        return socket.create_connection((host, port))
    except OSError as error:
        sys.exit(f"error: cannot connect to {host}:{port}: {error.strerror or error}")


def ask_name():
    name = ""
    while not name:
        name = input("name: ").strip()
    return name


# --8<-- [start:lines]
class LineBuffer:
    """Turns a stream of byte chunks into complete lines.

    Used for the socket (one recv() is not one message) and for the keyboard
    (os.read() on a pipe may also return half a line, or several).
    """

    def __init__(self):
        self.pending = bytearray()

    def feed(self, data):
        self.pending += data
        *lines, rest = self.pending.split(b"\n")
        self.pending = bytearray(rest)
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in lines]


# --8<-- [end:lines]


def show(line):
    # "\r" goes back over the "> " prompt; then a fresh one for what you type next.
    print(f"\r{line}\n> ", end="", flush=True)


def keyboard_fd():
    """The file descriptor to watch for what you type: stdin, if it is a terminal. A
    file cannot be watched (epoll refuses it: `< lines.txt`), and input() may have read
    past the name: then a thread copies the rest of stdin into a pipe, which can."""
    if sys.stdin.isatty():
        return sys.stdin.fileno()
    read_end, write_end = os.pipe()
    threading.Thread(target=copy_stdin, args=(write_end,), daemon=True).start()
    return read_end


def copy_stdin(write_end):
    with open(write_end, "wb") as pipe:  # closed at the end, or on an error: EOF
        for line in sys.stdin:  # each line of the file counts as typed
            pipe.write(line.encode("utf-8"))
            pipe.flush()


def wait_for_welcome(sock):
    """The server's first line is its welcome (or "* error: ..."). Else another
    kind of server on this port (01's echo, JSON Lines, IRC, TLS). Say so, and stop."""
    from_server, lines = LineBuffer(), []
    while not lines:
        data = sock.recv(4096)
        if not data:
            return from_server  # closed: chat() finds out, and says so
        lines = from_server.feed(data)
    if not lines[0].startswith("* "):
        said = lines[0][:80]
        sys.exit(f"error: this is not a stage-02 chat server: it sent {said!r}")
    print("\n".join(lines))
    return from_server


# --8<-- [start:loop]
def chat(sock, from_server):
    keyboard = keyboard_fd()
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(keyboard, selectors.EVENT_READ)
    from_keyboard = LineBuffer()
    print("> ", end="", flush=True)
    while True:
        # select() sleeps until the server or you have something.
        for key, _ in selector.select():
            if key.fileobj is sock:
                data = sock.recv(4096)
                if not data:
                    print("\rconnection closed by server")
                    return
                for line in from_server.feed(data):
                    show(line)
            else:
                # Read what is there; never more than that.
                typed = os.read(keyboard, 4096)
                if not typed:  # Ctrl+D at the start of a line
                    print()
                    return
                for line in from_keyboard.feed(typed):
                    if line.strip():
                        sock.sendall(line.encode("utf-8") + b"\n")
                print("> ", end="", flush=True)


# --8<-- [end:loop]


def port_number(text):
    port = int(text)
    if not 0 < port <= 65535:
        raise ValueError(text)
    return port


def parse_args():
    parser = argparse.ArgumentParser(description="Stage 02: chat client.")
    parser.add_argument("--host", default=DEFAULT_HOST, help="server address")
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help="server port"
    )
    parser.add_argument("--name", help="your name in the room (asked for if not given)")
    return parser.parse_args()


def main():
    args = parse_args()
    # Before the first read (refused after): bytes that are not UTF-8 become U+FFFD.
    sys.stdin.reconfigure(errors="replace")
    try:
        with connect(args.host, args.port) as sock:
            name = args.name or ask_name()
            # Our first line is our name; the server says "welcome" once we are in.
            sock.sendall(name.encode("utf-8") + b"\n")
            chat(sock, wait_for_welcome(sock))
    except (EOFError, KeyboardInterrupt):
        print()  # Ctrl+C or Ctrl+D: leave quietly, without a traceback
    except ConnectionError:
        print("\rconnection closed by server")


if __name__ == "__main__":
    main()
