"""Talk to a server by hand, with nothing but Python: a small stand-in for `nc`.

Run it:    python3 docs/nc.py 127.0.0.1 65432        (-C ends lines with CR LF, for IRC)

It sends what you type (or what a pipe gives it) as it comes, prints every byte
that comes back as it is, and, at the end of its input (Ctrl+D), tells the server
"I have no more to send" and waits for the server to close: like `nc -N`.
"""

import argparse
import os
import socket
import sys
import threading


def port_number(text):
    if not 0 < int(text) <= 65535:
        raise ValueError(text)
    return int(text)


def parse_args():
    parser = argparse.ArgumentParser(description="Talk to a TCP server by hand.")
    parser.add_argument("host", help="server address, such as 127.0.0.1")
    parser.add_argument("port", type=port_number, help="server port, such as 65432")
    parser.add_argument(
        "-C",
        dest="crlf",
        action="store_true",
        help="end each line with CR LF, as IRC wants",
    )
    return parser.parse_args()


def send_what_you_type(sock, crlf):
    """Send stdin's bytes as they arrive, not line by line: a pipe that writes half
    a line, waits, then the rest, reaches the server in those two pieces."""
    try:
        while data := os.read(sys.stdin.fileno(), 4096):
            if crlf:
                data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the server reads b"": we are done sending
    except OSError:
        pass  # the server has gone: the main thread sees it too, and ends


def main():
    args = parse_args()
    try:
        sock = socket.create_connection((args.host, args.port))
    except OSError as error:
        sys.exit(
            f"error: cannot connect to {args.host}:{args.port}: "
            f"{error.strerror or error}"
        )
    # A daemon thread types; the main thread prints until the server closes.
    threading.Thread(
        target=send_what_you_type, args=(sock, args.crlf), daemon=True
    ).start()
    try:
        while data := sock.recv(4096):
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
    except KeyboardInterrupt:
        pass  # Ctrl+C: leave at once, without a traceback
    except OSError as error:
        sys.exit(f"error: {error.strerror or error}")
    finally:
        sock.close()


if __name__ == "__main__":
    main()
