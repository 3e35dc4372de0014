"""The command-line contract every stage keeps (docs/protocol.md, "The stage contract").

Every program here is started from a temporary folder, not from the repo:
that is also the check that each stage runs from any folder.
"""

import socket

import pytest

import contract
from harness import Server, closed_port, one_worker_at_a_time, port_frees_up

pytestmark = pytest.mark.needs("server")  # stage 08's peer.py keeps the same contract: tests/test_p2p.py


@pytest.mark.points(1, "the server prints 'listening on HOST:PORT' with the real port")
def test_server_prints_its_real_port(session):
    server = session.start_server()
    assert server.port != 0, "with --port 0 the server must print the port the system picked, not 0"
    with socket.create_connection((server.host, server.port), timeout=2):
        pass  # the port in the line is the one really listening


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(1, "a port in use gives a one-line error naming it, exit code 1")
def test_server_port_in_use_is_one_line_error(session):
    first = session.start_server()
    second = session.spawn("second-server", "server.py", "--port", str(first.port))
    second.expect_error_exit(session.spec("port_named", port=first.port))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.parametrize("port", ["not-a-port", "-1", "65536"])
@pytest.mark.points(1, "a bad --port gives the server argparse's usage error, exit code 2")
def test_server_bad_port_is_one_line_error(session, port):
    session.spawn("server", "server.py", "--port", port).expect_usage_exit(session.spec("bad_port"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
@pytest.mark.points(1, "a bad --port gives the client argparse's usage error, exit code 2")
def test_client_bad_port_is_one_line_error(session, port):
    name = session.stage.client_class.name_args(session.name("alice"))  # the client needs nothing else first
    session.spawn("client", "client.py", "--port", port, *name).expect_usage_exit(session.spec("bad_port"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(1, "port 65535, the highest, works for the server and the client")
def test_the_highest_port_works(session):
    with one_worker_at_a_time("port-65535"):
        if not port_frees_up(65535):  # outside the range of free ports, so normally free
            pytest.skip("port 65535 is held by another program on this machine")
        term = session.spawn("server", "server.py", "--port", "65535")
        session.gate("listening", lambda: term.expect(session.spec("listening", host="127.0.0.1", port=65535)))
        session.server = Server(term, "127.0.0.1", 65535)
        session.client("alice")
        session.close()  # before another stage's check may take the port


@pytest.mark.sampled("02")  # the default run: on 02 alone (the port is one constant)
@pytest.mark.points(1, "without --port, the server listens on the default port and the client connects to it")
def test_the_default_port(session):
    """docs/protocol.md: `--port 65432` by default (stage 11: 6667), for the server and the client
    alike, so that `python server.py` and `python client.py` find each other."""
    port = contract.default_port(session.stage.has("irc"))
    with one_worker_at_a_time(f"port-{port}"):
        if not port_frees_up(port):
            pytest.skip(f"port {port} is held by another program on this machine")
        term = session.spawn("server", "server.py")
        session.gate("listening", lambda: term.expect(session.spec("listening", host="127.0.0.1", port=port)))
        session.server = Server(term, "127.0.0.1", port)
        driver = session.stage.client_class
        name = session.name("alice")
        client = driver(session, session.spawn(name, "client.py", *driver.name_args(name)), name)
        client.wait_until_in()
        session.close()  # before another check may take the port


@pytest.mark.points(1, "a refused connection gives a one-line error, exit code 1")
def test_client_connection_refused_is_one_line_error(session):
    port = closed_port()
    name = session.stage.client_class.name_args(session.name("alice"))  # a client may connect before it asks
    session.spawn("client", "client.py", "--port", str(port), *name).expect_error_exit(session.spec("port_named", port=port))


@pytest.mark.points(2, "Ctrl+C stops the server cleanly and the clients notice")
def test_server_ctrl_c_stops_it_and_closes_clients(session):
    server = session.start_server()
    client = session.client()
    client.sync()
    server.term.ctrl_c()
    server.term.expect(session.spec("stopped"))
    server.term.expect_exit(0)
    client.notices_server_gone()
    client.term.expect_exit(0)


@pytest.mark.parametrize("tries", [3, 20])
@pytest.mark.sampled_cases("tries", 3)  # the slow tier presses 20 times on each stage
@pytest.mark.points(1, "Ctrl+C the moment the server says it listens stops it cleanly")
def test_server_ctrl_c_the_moment_it_listens(session, tries):
    """From its listening line on, no instant of a server is left unguarded: the key may land
    before the print() that showed the line has returned, or before the server waits for
    anything. A busy machine (two `yes > /dev/null` loops) makes those instants last."""
    for attempt in range(tries):
        port = closed_port()
        server = session.spawn(f"server-{attempt + 1}", "server.py", "--port", str(port))
        server.expect(session.spec("listening", host="127.0.0.1", port=port))  # maybe not its line end yet
        server.ctrl_c_at_once()  # wherever the server is (again if it was lost)
        server.expect(session.spec("stopped"))
        server.expect_exit(0)


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(1, "a stopped server's port can be reused at once (SO_REUSEADDR)")
def test_server_restarts_on_the_same_port_at_once(session):
    server = session.start_server()
    client = session.client()  # a connection the server closes first leaves its port in TIME_WAIT
    client.sync()
    server.term.ctrl_c()
    server.term.expect_exit(0)
    again = session.spawn("restarted-server", "server.py", "--port", str(server.port))
    again.expect(session.spec("listening", host=server.host, port=server.port))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(1, "Ctrl+D ends the client with exit code 0, no traceback")
def test_client_ctrl_d_leaves_cleanly(session):
    client = session.client()
    client.term.ctrl_d()
    client.term.expect_exit(0)


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(1, "Ctrl+C ends the client with exit code 0, no traceback")
def test_client_ctrl_c_leaves_cleanly(session):
    client = session.client()
    client.term.ctrl_c()
    client.term.expect_exit(0)
