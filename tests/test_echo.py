"""Stage 01: an echo server that serves one client at a time, and the limit that comes with it."""

import pytest

pytestmark = pytest.mark.needs("echo")


@pytest.mark.points(3, "each line is echoed back and logged with the client's address")
def test_each_line_is_echoed_and_logged_with_the_address(session):
    client = session.client()
    first, second = session.text(), session.text()
    client.say(first)
    client.sees(client.echo(first))
    session.server.term.expect_regex(session.spec("echo_log", text=first))
    client.say(second)
    client.sees(client.echo(second))


@pytest.mark.points(2, "a line sent in pieces is framed as one line")
def test_line_sent_in_pieces_is_one_line(session):
    peer, text = session.raw_peer(), session.text()
    peer.send_slowly(f"{text}\n".encode(), until_read=True)
    peer.expect_line(session.spec("echo", text=text))


@pytest.mark.points(2, "two lines in one write are framed as two lines")
def test_two_lines_in_one_write_are_two_lines(session):
    peer, first, second = session.raw_peer(), session.text(), session.text()
    peer.send(f"{first}\n{second}\n".encode())
    peer.expect_line(session.spec("echo", text=first))
    peer.expect_line(session.spec("echo", text=second))


@pytest.mark.needs("one_at_a_time")
@pytest.mark.points(1, "a second client waits until the first leaves (iterative server)")
def test_second_client_waits_until_the_first_leaves(session):
    one, two, one_more = session.text(), session.text(), session.text()
    first = session.client("first")
    first.say(one)
    first.sees(first.echo(one))
    second = session.client("second")  # connect() succeeds: the kernel queues it until accept()
    second.say(two)
    # The first client is still served; once it has its answer, the server has had every
    # chance to answer `two` too. An iterative server cannot: it is busy with `first`.
    first.say(one_more)
    first.sees(first.echo(one_more))
    second.term.drain()
    second.never_saw(second.echo(two), "the server is still busy with the first client")
    first.quit()
    second.sees(second.echo(two))


@pytest.mark.needs("one_at_a_time")
@pytest.mark.points(1, "the next client is served after one is killed")
def test_next_client_is_served_after_one_is_killed(session):
    one, two = session.text(), session.text()
    first = session.client("first")
    first.say(one)
    first.sees(first.echo(one))
    first.term.kill()
    second = session.client("second")
    second.say(two)
    second.sees(second.echo(two))
