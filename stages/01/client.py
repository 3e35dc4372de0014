"""Stage 01 client: type a line, send it, wait for the echo, print it.

Run it:    python3 stages/01/client.py [--host HOST] [--port PORT]

Everything here blocks: input() waits for you, recv() waits for the server.
That is fine for a client that only ever talks to one server about one thing.
"""

import argparse
import socket
import sys

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432


def port_number(text):
    if not 0 < int(text) <= 65535:
        raise ValueError(text)
    return int(text)


def parse_args():
    parser = argparse.ArgumentParser(
        description="Stage 01: echo client.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="server address")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="port")
    return parser.parse_args()


def connect(host, port):
    try:
        return socket.create_connection((host, port))
    except OSError as error:
        sys.exit(f"error: cannot connect to {host}:{port}: {error.strerror or error}")


# --8<-- [start:lines]
class LineReader:
    """Hands out one complete line at a time from a socket.

    One recv() is not one message: it may return part of a line, or several
    lines at once. So we keep the bytes we have not used yet in a buffer.
    """

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def read_line(self):
        """The next line without its newline, or None once the server has closed."""
        while b"\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                return None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("utf-8", errors="replace")


# --8<-- [end:lines]


# --8<-- [start:loop]
def chat(sock):
    reader = LineReader(sock)
    while True:
        text = input("> ")  # raises EOFError on Ctrl+D
        sock.sendall(text.encode("utf-8") + b"\n")
        reply = reader.read_line()
        if reply is None:
            print("connection closed by server")
            return
        print(reply)


# --8<-- [end:loop]


def main():
    args = parse_args()
    try:
        with connect(args.host, args.port) as sock:
            print(f"connected to {args.host}:{args.port} (Ctrl+D or Ctrl+C to quit)")
            chat(sock)
    except (EOFError, KeyboardInterrupt):
        # End the "> " prompt line, so the shell's prompt starts on a fresh line.
        print()
    except ConnectionError:
        print("connection closed by server")


if __name__ == "__main__":
    main()
