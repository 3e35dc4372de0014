"""Stage 01 server: a blocking echo server that serves one client at a time.

Run it:    python3 stages/01/server.py [--host HOST] [--port PORT]

The server accepts one client, reads its lines and answers each one with
"echo: <line>". Only when that client leaves does it go back to accept() and
serve the next one. That is the limit this stage exists to show you: while one
client is being served, every other client waits.
"""

import argparse
import signal
import socket
import sys

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 65432
MAX_LINE = 8192  # bytes; a longer line is refused, so one client cannot fill our memory


# --8<-- [start:listen]
def open_listener(host, port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Without SO_REUSEADDR, a restarted server cannot bind the port for a minute or so,
    # while the old connections sit in the kernel's TIME_WAIT state.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        sys.exit(f"error: cannot listen on {host}:{port}: {error.strerror}")
    listener.listen()
    return listener
    # --8<-- [end:listen]


def printable(text):
    """Control characters (escape sequences, bidi overrides...) as visible \\uXXXX."""
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)


# --8<-- [start:serve]
def serve_client(conn, address):
    """Echo every line from one client until it hangs up."""
    who = f"{address[0]}:{address[1]}"
    print(f"{who} connected", flush=True)
    buffer = b""
    while True:
        data = conn.recv(4096)
        if not data:  # recv() returns b"" when the client has closed its end
            break
        # TCP is a stream of bytes, not of messages: one recv() may hold half a line,
        # or three lines. So we collect bytes and only act on complete lines.
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            echo_line(conn, who, line)
        if len(buffer) > MAX_LINE:
            conn.sendall(b"error: line too long\n")
            break
    print(f"{who} disconnected", flush=True)


def echo_line(conn, who, line):
    text = line.decode("utf-8", errors="replace").rstrip("\r")
    # Our console is a terminal too: a client's ESC ] 2 ; ... BEL would retitle it.
    print(f"[{who}] {printable(text)}", flush=True)
    # sendall(), not send(): send() may write only part of the bytes.
    conn.sendall(f"echo: {text}\n".encode("utf-8"))
    # --8<-- [end:serve]


def port_number(text):
    if not 0 <= int(text) <= 65535:
        raise ValueError(text)
    return int(text)


def parse_args():
    parser = argparse.ArgumentParser(
        description="Stage 01: blocking echo server, one client at a time.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="0: any")
    return parser.parse_args()


# --8<-- [start:main]
def serve_forever(listener):
    while True:
        conn, address = listener.accept()  # blocks until a client connects
        with conn:
            try:
                serve_client(conn, address)
            except ConnectionError:
                print(f"{address[0]}:{address[1]} connection lost", flush=True)


def main():
    # A program started in the background by a script may inherit "ignore Ctrl+C";
    # ask for Python's usual KeyboardInterrupt explicitly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parse_args()
    listener = open_listener(args.host, args.port)
    host, port = listener.getsockname()
    try:
        # Inside the try: Ctrl+C may come the moment this line is out.
        print(f"listening on {host}:{port}", flush=True)  # the tests wait for this line
        serve_forever(listener)
    except KeyboardInterrupt:
        pass  # Ctrl+C is how you stop a server: not an error
    finally:
        listener.close()  # the "with conn" above has already closed the client's socket
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
# --8<-- [end:main]
