"""File transfer (stage 10): offered, accepted or declined, sent in bounded chunks between chat
lines, checked with SHA-256, and saved under a safe new name in the downloads folder.

Most checks have a real client on one side and a raw test peer on the other, so that they
can send what a hostile or broken program would: a name with "../", more bytes than offered,
a file that does not match its hash.
"""

import base64
import hashlib
import json
import random
from pathlib import Path

import pytest

from harness import JsonLine, json_message

pytestmark = pytest.mark.needs("file_transfer")

CHUNK = 16 * 1024  # how the raw test peer splits what it sends
MAX_CHUNK = 32 * 1024  # the most file a client may put in one chunk (its spec says so)

RED = "\x1b[31m"  # a hostile file name starts with this colour escape


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def random_bytes(session, size):
    """Binary content drawn from the run's seed: every byte value, nothing a text mode would survive."""
    return random.Random(session.text()).randbytes(size)


def a_file(session, name, size):
    path = Path(session.workdir) / "outbox" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(random_bytes(session, size))
    return path


def receiver(session, role="bob"):
    """A client with a downloads folder of its own. Returns (client, folder)."""
    folder = Path(session.workdir) / f"downloads-{role}"
    return session.client(role, "--downloads", str(folder)), folder


def saved_files(folder):
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def send_chunks(peer, content, file_id="1", done=True):
    for start in range(0, len(content), CHUNK):
        peer.send(json_message(type="chunk", id=file_id, data=base64.b64encode(content[start:start + CHUNK]).decode()))
    if done:
        peer.send(json_message(type="done", id=file_id))


def raw_sender_to(session, bob, name, content, sha=None):
    """A raw peer offers bob a file under `name`; bob accepts; the peer sends it. Returns the peer."""
    alice = session.joined_peer("alice")
    assert '"accepted"' in offer_accepted(alice, bob, name, content, sha)
    send_chunks(alice, content)
    return alice


def offer_accepted(alice, bob, name, content, sha=None):
    alice.send(json_message(type="offer", to=bob.name, id="1", name=name, size=len(content),
                            sha256=sha or sha256(content)))
    bob.sees(bob.session.spec("offered", name=alice.name, file=""))
    bob.answer_offer(accept=True)
    return alice.expect_line(lambda line: '"accepted"' in line or '"declined"' in line)


# ---------------------------------------------------------------- whole transfers

@pytest.mark.points(3, "a 3 MiB binary file arrives whole: same SHA-256")
def test_a_binary_file_arrives_whole(session):
    alice = session.client("alice")
    bob, downloads = receiver(session)
    path = a_file(session, "photo.raw", 3 * 1024 * 1024 + 123)
    alice.offer_file(bob.name, path)
    bob.sees(session.spec("offered", name=alice.name, file="photo.raw"))
    bob.answer_offer(accept=True)
    bob.sees(session.spec("saved"))
    alice.sees(session.spec("sent"))
    files = saved_files(downloads)
    assert [file.name for file in files] == ["photo.raw"], f"bob's downloads hold {files}"
    assert sha256(files[0].read_bytes()) == sha256(path.read_bytes()), "the saved file differs from the one sent"
    session.chat_goes_on(alice, bob)


@pytest.mark.points(2, "the client sends a file in bounded chunks, with the offer's size and SHA-256")
def test_the_client_sends_bounded_chunks(session):
    alice, bob = session.client("alice"), session.joined_peer("bob")
    path = a_file(session, "notes.bin", 1024 * 1024)
    alice.offer_file(bob.name, path)
    offered = json.loads(bob.expect_line(JsonLine(type="offer")))
    assert (offered["name"], offered["size"], offered["sha256"]) == ("notes.bin", 1024 * 1024, sha256(path.read_bytes()))
    bob.send(json_message(type="accept", id=offered["id"], **{"from": alice.name}))
    received, chunks = b"", 0
    while not bob.has_seen(JsonLine(type="done")):
        line = bob.expect_line(lambda line: '"chunk"' in line or '"done"' in line)
        if '"chunk"' in line:
            block = base64.b64decode(json.loads(line)["data"])
            assert len(block) <= MAX_CHUNK, \
                f"a chunk of {len(block)} bytes of file: at most {MAX_CHUNK} (32 KiB), so its line fits the 64 KiB limit"
            received, chunks = received + block, chunks + 1
    assert received == path.read_bytes(), "the chunks put together are not the file"
    assert chunks >= 16, f"1 MiB came in {chunks} chunks"


@pytest.mark.points(2, "chat goes on between the chunks of a file")
def test_chat_flows_while_a_file_is_on_its_way(session):
    bob, downloads = receiver(session)
    carol = session.client("carol")
    content = random_bytes(session, 8 * CHUNK)
    alice = session.joined_peer("alice")
    offer_accepted(alice, bob, "halves.bin", content)
    send_chunks(alice, content[:4 * CHUNK], done=False)  # half the file: the transfer is open
    session.chat_goes_on(carol, bob)
    bob.never_saw(session.spec("saved"), "the file is only half sent")
    send_chunks(alice, content[4 * CHUNK:])
    bob.sees(session.spec("saved"))
    assert [file.read_bytes() for file in saved_files(downloads)] == [content]


@pytest.mark.points(2, "no byte of a file goes before it is accepted, nor after it is declined")
def test_a_declined_file_is_not_sent(session):
    bob, downloads = receiver(session)
    alice = session.joined_peer("alice")
    alice.send(json_message(type="offer", to=bob.name, id="1", name="unwanted.bin", size=10, sha256=sha256(b"0" * 10)))
    bob.sees(session.spec("offered", name=alice.name, file="unwanted.bin"))
    send_chunks(alice, b"0" * 10, done=False)  # before bob has answered
    alice.expect_line(JsonLine(type="error", code="not-accepted"))
    bob.answer_offer(accept=False)
    alice.expect_line(JsonLine(type="declined", id="1"))
    send_chunks(alice, b"0" * 10)
    alice.expect_line(JsonLine(type="error", code="not-accepted"))
    session.chat_goes_on(session.client("carol"), bob)
    assert saved_files(downloads) == [], "a declined file was saved"


@pytest.mark.points(1, "C FT names the user and the path; C OK and C NO with no offer say so")
def test_answering_with_no_offer_says_so(session):
    alice = session.client("alice")
    alice.answer_offer(accept=True)
    alice.sees(session.spec("no_file"))
    alice.offer_file(session.name("nobody"), a_file(session, "lost.txt", 10))
    alice.sees(session.spec("no_such_user"))


# ---------------------------------------------------------------- hostile names and contents

def hostile_names(workdir, tag):
    return {
        "parent": f"../../escaped-{tag}.txt",
        "absolute": str(Path(workdir) / f"absolute-{tag}.txt"),
        "backslashes": f"..\\..\\windows-{tag}.txt",
        "hidden": f".hidden-{tag}",
        "dots": "..",
        "escape-sequence": f"{RED}red-{tag}.txt",
    }


@pytest.mark.shares_server  # one server for every case (tests/harness.py, SharedServers)
@pytest.mark.parametrize("kind", list(hostile_names("/", "x")))
@pytest.mark.points(1, "a hostile file name stays inside the downloads folder, made safe")
def test_hostile_file_names_stay_in_the_downloads_folder(session, kind):
    bob, downloads = receiver(session)
    name = hostile_names(session.workdir, session.name("tag"))[kind]
    content = random_bytes(session, 1000)
    raw_sender_to(session, bob, name, content)
    bob.sees(session.spec("saved"))
    files = saved_files(downloads)
    assert len(files) == 1 and files[0].parent == downloads, f"bob's downloads hold {files}"
    assert files[0].read_bytes() == content
    assert not files[0].name.startswith("."), f"saved as a hidden file: {files[0].name!r}"
    assert "\x1b" not in files[0].name, "an escape sequence reached the file name"
    workdir = Path(session.workdir)
    strays = [path for path in workdir.parent.rglob("*") if path.is_file() and path.read_bytes() == content
              and downloads not in path.parents]
    assert strays == [], f"the file was written outside the downloads folder: {strays}"
    bob.never_saw(RED, "the name reached the terminal with its escape sequence")


@pytest.mark.points(2, "a file never overwrites one already there")
def test_a_file_never_overwrites_another(session):
    bob, downloads = receiver(session)
    downloads.mkdir()
    mine = downloads / "report.txt"
    mine.write_bytes(b"bob's own report")
    content = random_bytes(session, 2000)
    raw_sender_to(session, bob, "report.txt", content)
    bob.sees(session.spec("saved"))
    assert mine.read_bytes() == b"bob's own report", "bob's own file was overwritten"
    others = [path for path in saved_files(downloads) if path != mine]
    assert len(others) == 1 and others[0].read_bytes() == content, f"bob's downloads hold {saved_files(downloads)}"


@pytest.mark.parametrize("fault", ["hash", "too-many-bytes"])
@pytest.mark.points(2, "a file that does not match its offer (SHA-256 or size) is not kept")
def test_a_damaged_file_is_not_kept(session, fault):
    bob, downloads = receiver(session)
    content = random_bytes(session, 3 * CHUNK)
    alice = session.joined_peer("alice")
    if fault == "hash":
        offer_accepted(alice, bob, "damaged.bin", content, sha=sha256(content + b"!"))
        send_chunks(alice, content)
    else:
        offer_accepted(alice, bob, "damaged.bin", content[:CHUNK])
        send_chunks(alice, content)
    bob.sees(session.spec("not_saved" if fault == "too-many-bytes" else "damaged"))
    session.chat_goes_on(session.client("carol"), bob)
    assert saved_files(downloads) == [], f"a damaged file was kept: {saved_files(downloads)}"


@pytest.mark.points(1, "a sender who leaves mid-file leaves no partial file behind")
def test_a_sender_leaving_mid_file_leaves_nothing(session):
    bob, downloads = receiver(session)
    content = random_bytes(session, 4 * CHUNK)
    alice = session.joined_peer("alice")
    offer_accepted(alice, bob, "partial.bin", content)
    send_chunks(alice, content[:2 * CHUNK], done=False)
    alice.close()
    bob.sees(session.spec("not_saved"))
    assert saved_files(downloads) == [], f"a partial file was left: {saved_files(downloads)}"


@pytest.mark.points(2, "--max-file-size: a bigger file is refused, by the client and by the server")
def test_the_size_limit_is_kept(session):
    session.start_server("--max-file-size", "1K")
    alice, bob = session.client("alice"), session.client("bob")
    alice.offer_file(bob.name, a_file(session, "big.bin", 2048))
    alice.sees(session.spec("limit", size="1.0 KiB"))  # the client says what the limit is, and sends nothing
    raw = session.joined_peer("mallory")
    raw.send(json_message(type="offer", to=bob.name, id="1", name="big.bin", size=2048, sha256=sha256(b"x")))
    raw.expect_line(JsonLine(type="error", code="file-too-big"))
    session.chat_goes_on(alice, bob)  # a sync point: whatever the offers caused, bob has it by now
    bob.never_saw(session.spec("offered", name="", file=""), "an offer over the limit must not reach its recipient")
