"""The benchmark's baseline: a minimal, correct epoll broadcast server (not a stage, not for students).

It speaks stage 02's protocol (a name line, then text lines; "welcome, NAME", then
"NAME: text" to everyone else) with no logging and no checks beyond what correctness
needs: a line buffer per client, an output buffer per client, and a client whose output
passes 1 MiB is dropped. tests/bench.py divides every stage's figures by this one's.

    python tests/bench_baseline.py --port 0
"""

import argparse
import select
import signal
import socket
import sys

MAX_LINE = 8192
MAX_OUTPUT = 1 << 20  # a client that falls this far behind is dropped


class Client:
    def __init__(self, sock):
        self.sock, self.name, self.inbox, self.outbox = sock, None, b"", bytearray()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.create_server(("127.0.0.1", args.port), backlog=4096)
    listener.setblocking(False)
    poll = select.epoll()
    poll.register(listener, select.EPOLLIN)
    clients = {}
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)

    def drop(client):
        poll.unregister(client.sock)
        del clients[client.sock.fileno()]
        client.sock.close()

    def queue(client, data):
        if not client.outbox:
            poll.modify(client.sock, select.EPOLLIN | select.EPOLLOUT)
        client.outbox += data
        if len(client.outbox) > MAX_OUTPUT:
            drop(client)

    while True:
        for fd, events in poll.poll():
            if fd == listener.fileno():
                try:
                    while True:
                        sock, _ = listener.accept()
                        sock.setblocking(False)
                        clients[sock.fileno()] = Client(sock)
                        poll.register(sock, select.EPOLLIN)
                except (BlockingIOError, OSError):
                    continue
            client = clients.get(fd)
            if client is None:
                continue
            if events & select.EPOLLOUT and client.outbox:
                try:
                    sent = client.sock.send(client.outbox)
                    del client.outbox[:sent]
                except BlockingIOError:
                    pass
                except OSError:
                    drop(client)
                    continue
                if not client.outbox:
                    poll.modify(client.sock, select.EPOLLIN)
            if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                try:
                    data = client.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    drop(client)
                    continue
                *lines, client.inbox = (client.inbox + data).split(b"\n")
                if len(client.inbox) > MAX_LINE:
                    drop(client)
                    continue
                for line in lines:
                    if client.name is None:
                        client.name = line.strip()
                        queue(client, b"welcome, " + client.name + b"\n")
                        continue
                    out = client.name + b": " + line + b"\n"
                    for other in list(clients.values()):
                        if other is not client and other.name is not None and other.sock.fileno() in clients:
                            queue(other, out)


if __name__ == "__main__":
    main()
