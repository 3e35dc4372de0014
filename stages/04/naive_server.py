"""Stage 04's server the naive way: each client's thread sends with sendall() itself.

Run it:    python3 stages/04/naive_server.py [--host HOST] [--port PORT]

This is server.py with two methods changed, so the protocol is the same: no writer
threads and no outboxes. The thread that reads a client's message sends it to each
of the others itself, with sendall(), holding the lock so that two threads never
write to one socket at once. It works until one client stops reading: lesson 04
shows that client freezing the whole room, and what server.py does instead.
"""

import contextlib
import logging
import signal
import sys

from server import ChatServer, open_listener, parse_args

log = logging.getLogger("chat")  # the same logger as server.py's


class NaiveServer(ChatServer):
    # --8<-- [start:naive]
    def handle(self, client):
        """The client's thread: read its messages until it leaves. No writer thread."""
        try:
            reason = self.read_loop(client)
        except OSError:
            reason = "lost"
        self.disconnect(client, reason)
        with self.lock:  # not while another thread is sending on it
            client.sock.close()

    def send(self, client, data):
        """Send from the thread that has something to say (server.py: to the outbox)."""
        # sendall() returns once the kernel has taken every byte. From a client that
        # never reads, it soon takes none: this thread then waits here for ever, with
        # the lock, and every other thread waits for the lock, to speak, join or leave.
        with self.lock, contextlib.suppress(OSError):
            client.sock.sendall(data)

    # --8<-- [end:naive]


def main():
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parse_args()
    listener = open_listener(args.host, args.port)
    host, port = listener.getsockname()
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        log.info(f"listening on {host}:{port}")
        NaiveServer(args.max_clients).serve(listener)
    except KeyboardInterrupt:
        # No server.close(): it needs the lock, which a frozen room never gives back.
        # The client threads are daemons, and end with the process.
        log.info("server stopped")


if __name__ == "__main__":
    main()
