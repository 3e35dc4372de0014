"""A benchmark of every multi-client stage, side by side, against a minimal epoll baseline.

    python tests/bench.py                                         # every multi-client stage, N = 100 and 1,000
    python tests/bench.py --write-docs                            # the same, into the committed docs/bench/
    python tests/bench.py --stages 02,05,09 --clients 100,1000 --messages 200
    python tests/bench.py --quick --out /tmp/bench                # seconds: what CI runs (a small IRC case too)
    python tests/bench.py --irc                                   # stage 11 against miniircd, on IRC
    python tests/bench.py --irc --write-docs                      # the same, into docs/bench/irc*

For each stage (and tests/bench_baseline.py) and each N, on loopback only:

- fan-out throughput: one client sends M messages as fast as it can; N-1 clients must get
  all of them; deliveries per second (median of the repetitions, after a warm-up round).
  A round is kept to about ROUND_SECONDS: a stage too slow for M messages in that time
  gets fewer (at least 20), and results.json says how many;
- latency at a fixed rate (50 and 200 messages a second, for 2 s): p50, p99, max, from send
  to receipt, on a sample of receivers (the clock is CLOCK_MONOTONIC, shared by every process).
  A rate that needs more deliveries per second than the stage's measured throughput is not
  run: the stage is marked "overloaded" there, as its queues would only grow;
- server CPU seconds per 1,000 deliveries, peak RSS and KiB per client (from /proc);
- a slow consumer: one client joins and never reads; the others' throughput and p99, and
  whether the server dropped it;
- the most clients (from --ladder) that all join within JOIN_SECONDS and all get one
  broadcast within 5 s.

With --irc, stages/11/server.py and miniircd (PyPI) instead, on an IRC workload: every client
registers (NICK, USER) and JOINs one channel, the sender says PRIVMSG to it. The same figures, the
JOIN storm (N²/2 lines) timed apart from them, and a never-reading member watched for longer: the
others' throughput round by round and the server's RSS over time (see "IRC" below).

Each stage's ratio to the baseline divides by the baseline's throughput measured again just
before that stage, at the same N: the machine's speed drifts during a run.

The generator is a sender process and receiver processes with one epoll loop each; their
own CPU is reported, so you can see when the generator, not the server, is the limit.
Results: a table, OUT/results.json, and SVG plots (OUT/*.svg, with matplotlib).
"""

import argparse
import contextlib
import hashlib
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import re
import resource
import select
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import LISTENING, connect  # noqa: E402
from stages import BY_ID, REPO, RoomClient, Stage  # noqa: E402

BASELINE = Stage("base", "baseline: minimal epoll broadcast", RoomClient, frozenset({"server"}), "text",
                 folder=REPO / "tests")
MARK = b"bench "  # every measured message's text starts with this
SAMPLE = 10  # receivers per receiver process whose latencies are recorded
DEFAULT_STAGES = "02,03,04,05,06,09,10"  # 07's server is 06's plus a history: the same figures
ROUND_SECONDS = 2  # a throughput round is cut to about this long
RATE_SECONDS = 2  # each latency round lasts this long
JOIN_SECONDS = 120  # for every client to be welcomed (every join is announced to everyone: N² messages)
LADDER_JOIN_SECONDS = 60
OVERLOAD = 0.8  # a rate needing more than this share of the measured throughput is not run


# ---------------------------------------------------------------- /proc

def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def raise_open_files(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


# ---------------------------------------------------------------- the server under test

class ServerUnderTest:
    def __init__(self, stage, max_clients):
        program = "bench_baseline.py" if stage is BASELINE else "server.py"
        args = ["--max-clients", str(max_clients)] if stage.has("max_clients") else []
        self.process = subprocess.Popen([sys.executable, str(stage.program(program)), "--port", "0",
                                         *stage.args_for(program), *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        match = LISTENING.search(self.process.stdout.readline().decode(errors="replace"))
        if not match:
            raise RuntimeError(f"{stage.id}: the server did not start")
        self.port, self.pid = int(match.group(2)), self.process.pid
        # The stages log every message: read the log as it comes, or the server blocks on print().
        # In big raw reads: decoding it line by line in Python was slow enough to block the server.
        threading.Thread(target=self.discard_log, daemon=True).start()

    def discard_log(self):
        while os.read(self.process.stdout.fileno(), 1 << 16):
            pass

    def stop(self):
        self.process.kill()
        self.process.wait()


# ---------------------------------------------------------------- the generator's processes

def join_all(stage, port, names, tls):
    """Connect and say hello for every name; wait until each is welcomed. Returns the sockets."""
    socks = []
    for name in names:
        sock = connect("127.0.0.1", port, tls, timeout=JOIN_SECONDS)
        sock.sendall(stage.client_class.wire_hello(name))
        socks.append(sock)
    for sock in socks:
        data = b""
        while b"welcome" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed a connection while it joined")
            data += chunk
        sock.setblocking(False)
    return socks


def read_ready(sock):
    """Everything that can be read now, without waiting ("" once the server has closed)."""
    parts = []
    while True:
        try:
            data = sock.recv(1 << 20)
        except (BlockingIOError, ssl.SSLWantReadError):
            return b"".join(parts)
        except OSError:
            data = b""
        if not data:
            return b"".join(parts) or None
        parts.append(data)


def receiver(conn, stage, port, names, tls):
    """A receiver process: its share of the clients, one epoll loop. Obeys commands from conn."""
    try:
        socks = join_all(stage, port, names, tls)
    except (OSError, RuntimeError) as error:  # e.g. the server dropped clients while they joined
        conn.send(f"not all joined: {error}")
        return
    poll = select.epoll()
    for sock in socks:
        poll.register(sock, select.EPOLLIN)
    by_fd = {sock.fileno(): sock for sock in socks}
    sampled = {sock.fileno() for sock in socks[:SAMPLE]}
    pending = {sock.fileno(): b"" for sock in socks}
    conn.send("joined")
    while (command := conn.recv()) != "quit":
        wanted, timeout = command  # deliveries to wait for, seconds
        count, latencies, deadline = 0, [], time.monotonic() + timeout
        while count < wanted and time.monotonic() < deadline:
            for fd, _ in poll.poll(0.2):
                data = read_ready(by_fd[fd])
                if data is None:
                    poll.unregister(fd)
                    continue
                data = pending[fd] + data
                cut = data.rfind(b"\n") + 1
                pending[fd] = data[cut:]
                count += data.count(MARK, 0, cut)
                if fd in sampled:
                    now = time.monotonic_ns()
                    latencies += [now - int(sent) for sent in re.findall(rb"bench \d+ (\d+)", data[:cut])]
        conn.send((count, time.monotonic(), latencies))


def sender(conn, stage, port, tls):
    """The sender process: one client that sends what it is told to, at full speed or at a rate."""
    try:
        [sock] = join_all(stage, port, ["sender"], tls)
    except (OSError, RuntimeError) as error:
        conn.send(f"the sender did not join: {error}")
        return
    sock.setblocking(True)
    conn.send("joined")
    while (command := conn.recv()) != "quit":
        count, rate = command
        started = time.monotonic()
        conn.send(started)
        for number in range(count):
            if rate:
                pause = started + number / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # pacing the load: this is the fixed send rate under test
            sock.sendall(stage.client_class.wire_say(f"bench {number} {time.monotonic_ns()}"))
        discard_what_arrived(sock)
        conn.send("sent")


def discard_what_arrived(sock):
    """The sender gets the joins and its own errors too: keep its receive buffer from filling."""
    sock.setblocking(False)
    read_ready(sock)
    sock.setblocking(True)


class Generator:
    """The sender and the receiver processes for one server and N clients."""

    def __init__(self, stage, port, clients, join_seconds=JOIN_SECONDS):
        tls = stage.has("tls")
        groups = 1 if clients <= 500 else 2
        names = [f"u{number}" for number in range(clients - 1)]
        self.processes, self.receivers, self.shares = [], [], [len(names[group::groups]) for group in range(groups)]
        for group in range(groups):
            mine, theirs = multiprocessing.Pipe()
            process = multiprocessing.Process(target=receiver, args=(theirs, stage, port, names[group::groups], tls))
            process.start()
            self.processes.append(process)
            self.receivers.append(mine)
        self.sender, theirs = multiprocessing.Pipe()
        process = multiprocessing.Process(target=sender, args=(theirs, stage, port, tls))
        process.start()
        self.processes.append(process)
        for pipe in [*self.receivers, self.sender]:
            reply = pipe.recv() if pipe.poll(join_seconds) else f"not all joined within {join_seconds} s"
            if reply != "joined":
                self.close(patience=0)
                raise RuntimeError(reply)

    def cpu(self):
        return sum(cpu_seconds(process.pid) for process in self.processes)

    def round(self, messages, rate=0, timeout=60):
        """The sender sends; every receiver waits for all of it. Returns (deliveries, seconds, latencies)."""
        for pipe, share in zip(self.receivers, self.shares):
            pipe.send((messages * share, timeout))
        self.sender.send((messages, rate))
        started = self.sender.recv()
        self.sender.recv()
        counts, ends, latencies = zip(*(pipe.recv() for pipe in self.receivers))
        return sum(counts), max(ends) - started, [ns / 1e6 for group in latencies for ns in group]

    def close(self, patience=5):
        for pipe in [*self.receivers, self.sender]:
            try:
                pipe.send("quit")
            except OSError:
                pass
        for process in self.processes:
            process.join(timeout=patience)
            if process.is_alive():
                process.kill()


# ---------------------------------------------------------------- the measurements

def percentiles(latencies):
    if len(latencies) < 2:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": round(cuts[49], 2), "p99_ms": round(cuts[98], 2), "max_ms": round(max(latencies), 2)}


def stuck_client(stage, port):
    """A client that joins and never reads (4 KiB receive buffer)."""
    sock = connect("127.0.0.1", port, stage.has("tls"), receive_buffer=4096, timeout=10)
    sock.sendall(stage.client_class.wire_hello("stuck"))
    return sock


def stuck_fate(sock, patience):
    """Did the server drop the client that never read? Read what it holds, until the end or nothing more."""
    sock.setblocking(False)
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        select.select([sock], [], [], 0.5)
        if read_ready(sock) is None:
            return "dropped"
    return "still connected"


def latency_round(generator, rate, rate_seconds, result, key):
    """p50/p99/max at a fixed send rate, unless the stage cannot deliver that much at all."""
    needed = rate * (result["clients"] - 1)
    if needed > OVERLOAD * result["throughput"]:
        result[key] = {"p50_ms": None, "p99_ms": None, "max_ms": None, "overloaded": needed}
        return
    _, _, latencies = generator.round(max(2, round(rate * rate_seconds)), rate=rate)
    result[key] = percentiles(latencies)


def measure(stage, clients, messages, rates, repeats, progress, patience=5, rate_seconds=RATE_SECONDS):
    result = {"stage": stage.id, "title": stage.title, "clients": clients}
    server = ServerUnderTest(stage, clients + 10)
    generator = None
    try:
        return measure_with(server, stage, clients, messages, rates, repeats, progress, patience, rate_seconds, result)
    except (RuntimeError, OSError) as error:
        progress(f"{stage.id} N={clients}: failed: {error}")
        return {**result, "error": str(error)}
    finally:
        server.stop()


def throughput(generator, server, clients, messages, repeats):
    """Fan-out throughput: the median of `repeats` rounds, after a warm-up round."""
    # Warm-up (caches, buffers and the allocator settle), and a first guess at the stage's speed.
    delivered, seconds, _ = generator.round(10)
    messages = max(20, min(messages, int(delivered / seconds * ROUND_SECONDS / (clients - 1))))
    result = {"messages": messages}
    rates_of_delivery, cpu_per_1000, generator_load = [], [], []
    for _ in range(repeats):
        server_cpu, generator_cpu = cpu_seconds(server.pid), generator.cpu()
        delivered, seconds, _ = generator.round(messages)
        if delivered < messages * (clients - 1):
            result["lost"] = messages * (clients - 1) - delivered
        rates_of_delivery.append(delivered / seconds)
        cpu_per_1000.append((cpu_seconds(server.pid) - server_cpu) / delivered * 1000)
        generator_load.append((generator.cpu() - generator_cpu) / seconds)
    return {**result, "throughput": round(statistics.median(rates_of_delivery)),
            "server_cpu_per_1000": round(statistics.median(cpu_per_1000), 4),
            "generator_cores": round(statistics.median(generator_load), 2)}


def baseline_next_to(stage, clients, messages, repeats, progress):
    """The baseline's throughput, measured again just before a stage's: a shared machine speeds up
    and slows down from one minute to the next, so each ratio compares two neighbouring measurements."""
    server, generator = ServerUnderTest(BASELINE, clients + 10), None
    try:
        generator = Generator(BASELINE, server.port, clients)
        return throughput(generator, server, clients, messages, repeats)["throughput"]
    except (RuntimeError, OSError) as error:
        progress(f"base N={clients} (next to {stage.id}): failed: {error}")
        return None
    finally:
        if generator:
            generator.close()
        server.stop()


def measure_with(server, stage, clients, messages, rates, repeats, progress, patience, rate_seconds, result):
    generator = None
    try:
        rss_before = memory_kib(server.pid, "VmRSS")
        generator = Generator(stage, server.port, clients)
        result["kib_per_client"] = round((memory_kib(server.pid, "VmRSS") - rss_before) / clients, 1)
        result.update(throughput(generator, server, clients, messages, repeats))
        messages = result["messages"]
        progress(f"{stage.id} N={clients}: {result['throughput']:,} deliveries/s")
        for rate in rates:
            latency_round(generator, rate, rate_seconds, result, f"latency_{rate}")
        stuck, rss_before = stuck_client(stage, server.port), memory_kib(server.pid, "VmRSS")
        delivered, seconds, _ = generator.round(messages)
        stuck_result = {"clients": clients, "throughput": round(delivered / seconds)}
        latency_round(generator, rates[0], rate_seconds, stuck_result, "latency")
        result["stuck"] = {**stuck_result.pop("latency"), **stuck_result,
                           "server_rss_growth_kib": memory_kib(server.pid, "VmRSS") - rss_before,
                           "stuck_client": stuck_fate(stuck, patience)}
        stuck.close()
        result["peak_rss_kib"] = memory_kib(server.pid, "VmHWM")
        progress(f"{stage.id} N={clients}: p99 (ms) at {rates[0]}/s: {p99(result[f'latency_{rates[0]}'])}, "
                 f"with a stuck client: {p99(result['stuck'])} ({result['stuck']['stuck_client']})")
    finally:
        if generator:
            generator.close()
    return result


def most_clients(stage, ladder, progress):
    """The largest N on the ladder at which every client joins in time and gets one broadcast within 5 s."""
    best = 0
    for clients in ladder:
        server = ServerUnderTest(stage, clients + 10)
        generator = None
        try:
            generator = Generator(stage, server.port, clients, join_seconds=LADDER_JOIN_SECONDS)
            delivered, seconds, _ = generator.round(1, timeout=5)
            if delivered < clients - 1 or seconds > 5:
                progress(f"{stage.id}: {clients:,} clients joined, but {delivered:,} of {clients - 1:,} got the "
                         f"broadcast, in {seconds:.1f} s")
                break
            best = clients
            progress(f"{stage.id}: {clients:,} clients all served")
        except (RuntimeError, OSError) as error:
            progress(f"{stage.id}: {clients:,} clients failed: {error}")
            break
        finally:
            if generator:
                generator.close()
            server.stop()
    return best


# ---------------------------------------------------------------- output

def p99(latency):
    """A p99 for the table: ms, "over" where the rate was more than the stage can deliver, or "-"."""
    if latency.get("overloaded"):
        return "over"
    return latency.get("p99_ms") or "-"


def shown_ratio(row):
    return f"{row['ratio_to_baseline']:.2f}" if "ratio_to_baseline" in row else "-"


def table(results):
    lines = [f"{'stage':<6}{'N':>6}{'deliveries/s':>14}{'x base':>8}{'p99@50':>9}{'p99@200':>9}"
             f"{'stuck p99':>11}{'stuck':>17}{'cpu/1k':>8}{'KiB/cl':>8}{'gen cores':>10}"]
    for row in results:
        if "error" in row:
            lines.append(f"{row['stage']:<6}{row['clients']:>6}  failed: {row['error']}")
            continue
        ratio = shown_ratio(row)
        lines.append(f"{row['stage']:<6}{row['clients']:>6}{row['throughput']:>14,}{ratio:>8}"
                     f"{p99(row.get('latency_50', {})):>9}{p99(row.get('latency_200', {})):>9}"
                     f"{p99(row['stuck']):>11}{row['stuck']['stuck_client']:>17}"
                     f"{row['server_cpu_per_1000']:>8}{row['kib_per_client']:>8}{row['generator_cores']:>10}")
    return "\n".join(lines)


def markdown(data):
    """The results as the lesson shows them (docs/measuring.md includes this file)."""
    machine = data["machine"]
    lines = [f"Measured with `{data['command']}` on {machine['cores']} cores ({machine['cpu']}), "
             f"Python {machine['python']}, {machine['system']}; {data['seconds']:.0f} s.", "",
             "| stage | N | deliveries/s | the baseline, just before | × baseline | p99 at 50/s (ms) | p99 at 200/s (ms) "
             "| with a stuck client: p99 (ms) | the stuck client | server CPU s per 1,000 deliveries "
             "| server KiB per client |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for row in data["results"]:
        if "error" in row:
            lines.append(f"| {row['stage']} | {row['clients']:,} | failed: {row['error']} |" + " |" * 8)
            continue
        base = f"{row['baseline_throughput']:,}" if row.get("baseline_throughput") else "failed"
        lines.append(f"| {row['stage']} | {row['clients']:,} | {row['throughput']:,} | {base} | {shown_ratio(row)} | "
                     f"{p99(row.get('latency_50', {}))} | {p99(row.get('latency_200', {}))} | "
                     f"{p99(row['stuck'])} | {row['stuck']['stuck_client']} | {row['server_cpu_per_1000']} | "
                     f"{row['kib_per_client']} |")
    lines += ["", "*over*: the rate needs more deliveries per second than the stage's measured throughput, "
              "so it was not run (the stage's queues would only grow)."]
    if data["most_clients"]:
        lines += ["", "Most clients that all got one broadcast within 5 s (of the ladder tried): "
                  + ", ".join(f"{key} {value:,}" for key, value in data["most_clients"].items()) + "."]
    return "\n".join(lines) + "\n"


def targets(data):
    """The issue's targets, each with what this run measured and whether it was met (docs/measuring.md)."""
    row = {(r["stage"], r["clients"]): r for r in data["results"]}
    most = data["most_clients"]
    checks = []  # (target, stage, measured, met)

    def ratio(stage, clients, at_least):
        if (stage, clients) in row:
            value = row[stage, clients].get("ratio_to_baseline", 0)
            checks.append((f"throughput ≥ {at_least}× baseline at N={clients:,}", stage, f"{value:.2f}×",
                           value >= at_least))

    def capacity(stage, at_least):
        if stage in most:
            checks.append((f"{at_least:,}+ concurrent clients", stage, f"{most[stage]:,}", most[stage] >= at_least))

    def p99_under(stage, clients, bound, latency, what):
        if (stage, clients) in row:
            if "error" in row[stage, clients]:
                checks.append((f"{what} p99 < {bound} ms at N={clients:,}", stage, "failed", False))
                return
            value = latency(row[stage, clients])
            shown = "overloaded" if value.get("overloaded") else f"{value['p99_ms']} ms"
            checks.append((f"{what} p99 < {bound} ms at N={clients:,}", stage, shown,
                           value.get("p99_ms") is not None and value["p99_ms"] < bound))

    for stage in ("02", "03"):
        ratio(stage, 100, 0.8)
        ratio(stage, 1000, 0.8)
        capacity(stage, 1000)
    for stage in ("04", "05", "06"):
        capacity(stage, 500)
    # The lean 04 and 05 hand each message to a writer thread (lesson 04, "Going further"); 06
    # sends at once when it can (MSG_DONTWAIT), which the target measures.
    ratio("06", 100, 0.5)
    capacity("09", 5000)
    p99_under("09", 1000, 50, lambda r: r["latency_50"], "at 50 messages/s,")
    for stage in dict.fromkeys(r["stage"] for r in data["results"] if r["stage"] != "base"):
        for clients in sorted({r["clients"] for r in data["results"]}):
            p99_under(stage, clients, 100, lambda r: r["stuck"], "with one client stuck, the others'")
    lines = ["| target | stage | measured | met |", "| --- | --- | ---: | --- |"]
    lines += [f"| {target} | {stage} | {measured} | {'yes' if met else '**no**'} |"
              for target, stage, measured, met in checks]
    return "\n".join(lines) + "\n"


MODELS = {"02": "selectors", "03": "selectors", "04": "a thread per client", "05": "a thread per client",
          "06": "a thread per client", "09": "asyncio"}


def models(data):
    """The three concurrency models side by side at the largest N (lesson 09 includes this file)."""
    size = max(row["clients"] for row in data["results"])
    lines = [f"| model | stage | server KiB per client | × baseline | with one client stuck: the others' p99 (ms) "
             f"| most clients |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in data["results"]:
        if row["stage"] in MODELS and row["clients"] == size and "error" not in row:
            most = data["most_clients"].get(row["stage"])
            lines.append(f"| {MODELS[row['stage']]} | {row['stage']} | {row['kib_per_client']} | "
                         f"{shown_ratio(row)} | {p99(row['stuck'])} | {f'{most:,}' if most else '-'} |")
    return "\n".join(lines) + f"\n\nAt N = {size:,} clients, from `{data['command']}` " \
                              f"({data['machine']['cores']} cores, Python {data['machine']['python']}).\n"


def write_report(data, out, plots=True):
    """results.json, and what the docs include: table.md, targets.md, models.md and the SVG plots."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "table.md").write_text(markdown(data))
    (out / "targets.md").write_text(targets(data))
    (out / "models.md").write_text(models(data))
    if plots:
        plot(data, out)


def plot(data, out):
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "tests/bench.py"  # the same data gives the same file: no noise in git
    import matplotlib.pyplot as plt

    rows = data["results"]
    stages = list(dict.fromkeys(row["stage"] for row in rows))
    sizes = sorted({row["clients"] for row in rows})
    # (file, axis label, value of a row or None, log scale if the values span more than this factor)
    charts = [("throughput", "deliveries per second", lambda row: row["throughput"], 50),
              ("p99", "p99 latency at 50 messages/s (ms)", lambda row: row["latency_50"]["p99_ms"], None),
              ("memory", "server memory per client (KiB)", lambda row: row["kib_per_client"], None)]
    for name, label, value, log_beyond in charts:
        measured = [value(row) for row in rows if "error" not in row and value(row)]
        # A log scale only where it is needed: on one, bars of 2 and 4 million look far apart.
        log = bool(log_beyond and measured and max(measured) > log_beyond * min(measured))
        figure, axes = plt.subplots(figsize=(8, 4))
        width = 0.8 / len(sizes)
        for index, size in enumerate(sizes):
            row_of = {row["stage"]: row for row in rows if row["clients"] == size}
            positions = [position + index * width for position in range(len(stages))]
            values = [value(row_of[stage]) if stage in row_of and "error" not in row_of[stage] else None
                      for stage in stages]
            axes.bar(positions, [number or 0 for number in values], width, label=f"N={size:,}")
            for position, stage, number in zip(positions, stages, values):
                if number is None:  # not measured: say why rather than draw a bar of zero
                    why = " failed" if "error" in row_of.get(stage, {"error": 1}) else " overloaded"
                    axes.text(position, 1 if log else 0, why, rotation=90, ha="center", va="bottom", fontsize=8)
        axes.set_xticks([position + width * (len(sizes) - 1) / 2 for position in range(len(stages))], stages)
        if log:
            axes.set_yscale("log")
        axes.set_ylabel(label)
        axes.legend()
        axes.set_title(f"{label}, by stage ({data['machine']['cores']} cores, Python {data['machine']['python']})",
                       fontsize=10)
        figure.tight_layout()
        figure.savefig(out / f"{name}.svg", metadata={"Date": None})
        plt.close(figure)


# ---------------------------------------------------------------- IRC: stage 11 against miniircd
#
# The same questions on an IRC workload, for stages/11/server.py and miniircd (PyPI), in one run:
# every client registers (NICK, USER), JOINs one channel and the sender says PRIVMSG to it.
# Everyone is told of every JOIN, so joining N clients is N²/2 lines: that storm is timed on its
# own, and no measurement starts until it is over.

STAGE_11 = REPO / "stages" / "11" / "server.py"
IRC_SERVERS = ("11", "miniircd")
IRC_CHANNEL = "#kit"
IRC_JOINED = b" 366 "  # RPL_ENDOFNAMES: the last line of the server's answer to a JOIN
SENDER_JOINED = b":sender!"  # the sender joins last: a member that has seen its JOIN has had the whole storm
IRC_QUIT = b" QUIT "  # a member dropped (or gone): every other member is told
IRC_LADDER = "1000,2000,5000"
IRC_RATES = "10,50,200"  # messages a second; 10 × 999 members is 10,000 deliveries a second
IRC_LADDER_JOIN_SECONDS = 360  # 5,000 clients: 12.5 million JOIN lines (stage 11 took 202 s in one run)
STUCK_SECONDS = 20  # the never-reading member's phase (full-speed rounds, one after the other) lasts this long...
STUCK_MIB = 6  # ...then on until each member was sent this much (the kernel holds up to 4 MiB for a socket,
STUCK_MAX_SECONDS = 120  # tcp_wmem, and stage 11 at most 1 MiB for one client), or until this long,
AFTER_DROP_SECONDS = 10  # or until this long after the server dropped the member (to watch its memory)
STUCK_PAD = 400  # the phase's lines are long (a paste), about 470 bytes: the server's limits come sooner
RELAYED = len(b":sender!sender@127.0.0.1 PRIVMSG #kit :bench 1234 12345678901234567 \r\n") + STUCK_PAD
DRAIN_SECONDS = 10  # after its sender stops, how long a round waits for what was sent
BOUNDED_KIB = 1024  # "bounded": over the phase's second half, the server's RSS between rounds rose less than this
SENDER_STALL_SECONDS = 30  # a sender that cannot write for this long gives up


def irc_hello(name):
    return f"NICK {name}\r\nUSER {name} 0 * :{name}\r\nJOIN {IRC_CHANNEL}\r\n".encode()


def irc_say(text):
    return f"PRIVMSG {IRC_CHANNEL} :{text}\r\n".encode()


def answer_pings(sock, lines):
    """Both servers PING an idle client (miniircd after 90 s, stage 11 after 120 s) and drop it if it does
    not answer: a long run has to. `lines` holds complete lines only."""
    if b"PING" in lines:
        for line in lines.split(b"\n"):
            if line.startswith(b"PING"):
                sock.setblocking(True)
                sock.sendall(b"PONG" + line[4:].rstrip(b"\r") + b"\r\n")
                sock.setblocking(False)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def miniircd_installed():
    return importlib.util.find_spec("miniircd") is not None


class IrcServerProcess:
    """stages/11/server.py (or `program`, a changed copy) or miniircd on 127.0.0.1, its output read as it
    comes (the end of it kept, to say why a server stopped)."""

    def __init__(self, name, program=STAGE_11):
        self.name, self.tail = name, b""
        # Their listen() backlogs: asyncio.start_server(backlog=1024) in stage 11, listen(5) in miniircd.
        self.backlog = 1024 if name == "11" else 5
        if name == "11":
            command = [sys.executable, str(program), "--port", "0"]
        else:  # miniircd has no --port 0 and says nothing unless --verbose: a free port, then a probe
            self.port = free_port()
            command = [sys.executable, "-m", "miniircd", "--listen", "127.0.0.1", "--ports", str(self.port)]
            if os.getuid() == 0:
                command += ["--setuid", "root"]  # miniircd refuses to run as root without it
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.pid = self.process.pid
        if name == "11":
            match = LISTENING.search(self.process.stdout.readline().decode(errors="replace"))
            if not match:
                self.stop()
                raise RuntimeError("stage 11: the server did not start")
            self.port = int(match.group(2))
        threading.Thread(target=self.read_log, daemon=True).start()
        if name != "11":
            self.wait_until_listening()

    def read_log(self):
        while data := os.read(self.process.stdout.fileno(), 1 << 16):
            self.tail = (self.tail + data)[-4096:]

    def wait_until_listening(self, seconds=10):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name}: the server did not start{self.why_stopped()}")

    def why_stopped(self):
        """'' while the server runs; else its exit status and the last line it wrote. (A server that crashed
        may close its sockets just before it exits: give it a moment.)"""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=2)
        if self.process.poll() is None:
            return ""
        lines = self.tail.decode(errors="replace").strip().splitlines()
        return f" (the server exited with status {self.process.returncode}: {lines[-1] if lines else 'no output'})"

    def stop(self):
        self.process.kill()
        self.process.wait()


def irc_read(poll, by_fd, partial, timeout, marker=None, seen=None):
    """Read what is ready on any socket; answer PINGs; note in `seen` each socket whose data held `marker`."""
    for fd, _ in poll.poll(timeout):
        data = read_ready(by_fd[fd])
        if data is None:
            raise RuntimeError("the server closed a connection")
        data = partial[fd] + data
        cut = data.rfind(b"\n") + 1
        partial[fd] = data[cut:]
        answer_pings(by_fd[fd], data[:cut])
        if marker and marker in data:
            seen.add(fd)


def irc_join_all(port, names, deadline, window=1):
    """Connect, register and JOIN for every name, reading as we go (each newcomer's JOIN goes to every
    member), until every one has had the end of its NAMES list. At most `window` connections wait for that
    answer at a time: more than the server's listen backlog, and the kernel drops connection requests,
    which the client sends again only a second later (then 3 s, 7 s...): the storm would time our
    connects, not the server. Returns (epoll, sockets by fd, partial lines)."""
    poll, by_fd, partial, joined = select.epoll(), {}, {}, set()
    for number, name in enumerate(names):
        while len(by_fd) - len(joined) >= window:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(joined):,} of {len(names):,} had joined in time")
            irc_read(poll, by_fd, partial, 0.2, IRC_JOINED, joined)
        sock = socket.create_connection(("127.0.0.1", port), timeout=max(1.0, deadline - time.monotonic()))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(irc_hello(name))
        sock.setblocking(False)
        poll.register(sock, select.EPOLLIN)
        by_fd[sock.fileno()], partial[sock.fileno()] = sock, b""
        if number % 16 == 15:
            irc_read(poll, by_fd, partial, 0, IRC_JOINED, joined)
    while len(joined) < len(by_fd):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(joined):,} of {len(by_fd):,} had joined in time")
        irc_read(poll, by_fd, partial, 0.2, IRC_JOINED, joined)
    return poll, by_fd, partial


def irc_receiver(conn, port, names, deadline, window):
    """A receiver process: its share of the channel's members, one epoll loop. Obeys commands from conn."""
    try:
        poll, by_fd, partial = irc_join_all(port, names, deadline, window)
        conn.send("joined")
        _, deadline = conn.recv()  # ("settle", deadline): wait for the end of the JOIN storm
        settled = set()
        while len(settled) < len(by_fd):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(by_fd) - len(settled):,} members had not seen the sender join in time")
            irc_read(poll, by_fd, partial, 0.2, SENDER_JOINED, settled)
    except (OSError, RuntimeError) as error:  # e.g. the server dropped clients, or stopped, while they joined
        conn.send(f"not all joined: {error}")
        return
    conn.send("settled")
    poll.register(conn.fileno(), select.EPOLLIN)  # a round's update: how many the sender really sent
    sampled = set(list(by_fd)[:SAMPLE])
    while (command := conn.recv()) != "quit":
        if isinstance(command, int):
            continue  # a round's update that came after the round ended
        wanted, timeout = command  # deliveries to wait for, seconds
        count, latencies, quits, deadline = 0, [], [], time.monotonic() + timeout
        last = time.monotonic()
        while count < wanted and time.monotonic() < deadline:
            for fd, _ in poll.poll(0.2):
                if fd == conn.fileno():
                    wanted = conn.recv() * len(by_fd)  # the sender stopped early: this many were sent
                    continue
                data = read_ready(by_fd[fd])
                if data is None:
                    poll.unregister(fd)
                    continue
                data = partial[fd] + data
                cut = data.rfind(b"\n") + 1
                partial[fd] = data[cut:]
                if found := data.count(MARK, 0, cut):
                    count, last = count + found, time.monotonic()
                if fd in sampled:
                    now = time.monotonic_ns()
                    latencies += [now - int(sent) for sent in re.findall(rb"bench \d+ (\d+)", data[:cut])]
                if IRC_QUIT in data[:cut]:  # who left, and why: the never-reading member dropped, say
                    quits += [(time.monotonic(), line.decode(errors="replace").strip())
                              for line in data[:cut].split(b"\n") if IRC_QUIT in line]
                answer_pings(by_fd[fd], data[:cut])
        conn.send((count, last, latencies, quits))


def irc_sender(conn, port, deadline):
    """The sender process: one member that says what it is told to, at full speed or at a rate, and
    stops early at a round's time limit, if it has one."""
    try:
        _, by_fd, _ = irc_join_all(port, ["sender"], deadline)
    except (OSError, RuntimeError) as error:
        conn.send(f"the sender did not join: {error}")
        return
    [sock] = by_fd.values()
    sock.settimeout(SENDER_STALL_SECONDS)
    conn.send("joined")
    while (command := conn.recv()) != "quit":
        count, rate, seconds, pad = command
        padding = " " + "x" * pad if pad else ""
        started = time.monotonic()
        stop = started + seconds if seconds else math.inf
        conn.send(started)
        sent = 0
        try:
            for number in range(count):
                if rate:
                    pause = started + number / rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)  # pacing the load: this is the fixed send rate under test
                if time.monotonic() > stop:
                    break
                sock.sendall(irc_say(f"bench {number} {time.monotonic_ns()}{padding}"))
                sent += 1
        except OSError:  # stalled for SENDER_STALL_SECONDS (or dropped): the round reports what went out
            pass
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            answer_pings(sock, read_ready(sock) or b"")  # the JOINs of later members, PINGs
        sock.settimeout(SENDER_STALL_SECONDS)
        conn.send(sent)


class IrcGenerator(Generator):
    """The members of one channel: receiver processes, then the sender, which joins last."""

    def __init__(self, port, clients, join_seconds=JOIN_SECONDS, backlog=1024):
        started, self.join_limit = time.monotonic(), join_seconds
        deadline = started + join_seconds
        groups = 1 if clients <= 500 else 2
        names = [f"u{number}" for number in range(clients - 1)]
        self.processes, self.receivers, self.shares = [], [], [len(names[group::groups]) for group in range(groups)]
        self.last_sent, self.last_quits, self.sender = 0, [], None
        for group in range(groups):
            mine, theirs = multiprocessing.Pipe()
            self.start(irc_receiver, theirs, port, names[group::groups], deadline, max(1, (backlog - 1) // groups))
            self.receivers.append(mine)
        self.wait_for(self.receivers, "joined", deadline)
        self.sender, theirs = multiprocessing.Pipe()
        self.start(irc_sender, theirs, port, deadline)
        self.wait_for([self.sender], "joined", deadline)
        for pipe in self.receivers:
            pipe.send(("settle", deadline))
        self.wait_for(self.receivers, "settled", deadline)
        self.join_seconds = time.monotonic() - started

    def close(self, patience=5):
        if self.sender is None:  # the receivers failed to join: no sender yet
            self.sender, _ = multiprocessing.Pipe()
        super().close(patience)

    def start(self, target, *args):
        process = multiprocessing.Process(target=target, args=args)
        process.start()
        self.processes.append(process)

    def wait_for(self, pipes, word, deadline):
        for pipe in pipes:
            reply = pipe.recv() if pipe.poll(max(0.0, deadline - time.monotonic())) else \
                f"not all joined within {self.join_limit:.0f} s"
            if reply != word:
                self.close(patience=0)
                raise RuntimeError(reply)

    def round(self, messages, rate=0, timeout=60, seconds=None, pad=0):
        """The sender sends (for at most `seconds`, if given; with `pad` more bytes of text in each line);
        every receiver waits for all that was sent.
        Returns (deliveries, seconds from the first send to the last delivery, latencies in ms)."""
        for pipe, share in zip(self.receivers, self.shares):
            pipe.send((messages * share, timeout))
        self.sender.send((messages, rate, seconds, pad))
        started = self.sender.recv()
        self.last_sent = self.sender.recv()
        if self.last_sent < messages:
            for pipe in self.receivers:
                pipe.send(self.last_sent)
        counts, ends, latencies, quits = zip(*(pipe.recv() for pipe in self.receivers))
        self.last_quits = sorted({(round(at - started, 2), line) for group in quits for at, line in group})
        return sum(counts), max(max(ends) - started, 1e-6), [ns / 1e6 for group in latencies for ns in group]


def irc_stuck_member(port, patience=30):
    """A member that joins, reads its JOIN's answer (so that it is in the channel), and never reads again
    (4 KiB receive buffer)."""
    sock = connect("127.0.0.1", port, receive_buffer=4096, timeout=patience)
    sock.sendall(irc_hello("stuck"))
    data, deadline = b"", time.monotonic() + patience
    while IRC_JOINED not in data:
        if time.monotonic() > deadline:
            raise RuntimeError("the never-reading member did not join")
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the never-reading member's connection as it joined")
        data = data[-64:] + chunk
    return sock


class MemorySampler:
    """The server's RSS every `every` seconds, in a thread, from /proc: [(seconds, KiB)]."""

    def __init__(self, pid, every=0.5):
        self.pid, self.every, self.samples, self.started = pid, every, [], time.monotonic()
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            with contextlib.suppress(OSError):
                self.samples.append((round(time.monotonic() - self.started, 2), memory_kib(self.pid, "VmRSS")))
            time.sleep(self.every)

    def stop(self):
        self.running = False
        self.thread.join()
        self.samples.append((round(time.monotonic() - self.started, 2), memory_kib(self.pid, "VmRSS")))
        return self.samples


def long_round(generator, messages):
    """One full-speed round of the never-reading member's phase: long lines, cut to 2 × ROUND_SECONDS,
    DRAIN_SECONDS more for what was sent to arrive."""
    return generator.round(messages, timeout=2 * ROUND_SECONDS + DRAIN_SECONDS, seconds=2 * ROUND_SECONDS,
                           pad=STUCK_PAD)


def stuck_phase(generator, server, clients, messages, seconds, most, progress, label):
    """Full-speed rounds of long lines, one after another, with a member that never reads: for `seconds`,
    then on until each member has been sent STUCK_MIB, or the server dropped that member AFTER_DROP_SECONDS
    ago, or `most` seconds have passed. The others' deliveries per second round by round, the server's RSS
    over time, and what became of that member. A round whose messages did not all arrive within
    DRAIN_SECONDS of its end stops the phase."""
    sampler = MemorySampler(server.pid)
    rounds, quits, lost, sent, between = [], [], 0, 0, []

    def dropped():
        return [(at, line) for at, line in quits if line.startswith(":stuck!")]

    def more():
        elapsed = time.monotonic() - sampler.started
        if not rounds or elapsed < seconds:
            return True
        gone = dropped()
        return (sent * RELAYED < STUCK_MIB << 20 and elapsed < most
                and not (gone and elapsed - gone[0][0] >= AFTER_DROP_SECONDS))

    try:
        while more():
            at = time.monotonic() - sampler.started
            # Between two rounds the others have had everything: what the server holds now, it holds for the
            # member that never reads (or keeps for itself).
            between.append((round(at, 2), memory_kib(server.pid, "VmRSS")))
            delivered, took, _ = long_round(generator, messages)
            sent += generator.last_sent
            rounds.append({"at_s": round(at, 2), "sent": generator.last_sent,
                           "deliveries_per_s": round(delivered / took)})
            quits += [(round(at + when, 2), line) for when, line in generator.last_quits]
            if delivered < generator.last_sent * (clients - 1):
                lost = generator.last_sent * (clients - 1) - delivered
                progress(f"{label}: with a never-reading member, {lost:,} deliveries had not arrived "
                         f"{DRAIN_SECONDS} s after a round: the phase stops here")
                break
    finally:
        samples = sampler.stop()
    between.append(samples[-1])
    gone = dropped()
    others_dropped = [line for _, line in quits if not line.startswith(":stuck!")]
    # What the server still holds at the end, the others caught up: the least of the last three measures
    # between rounds (the allocator gives memory back unevenly), against the first.
    held = min(kib for _, kib in between[1:][-3:]) - between[0][1]
    return {"rounds": rounds, "rss_kib": samples, "rss_start_kib": samples[0][1],
            "rss_max_kib": max(kib for _, kib in samples), "rss_end_kib": samples[-1][1],
            "rss_between_rounds_kib": between, "held_kib": held,
            "growth_kib_per_s": round(held / max(between[-1][0], 1e-6), 1),
            "seconds": samples[-1][0], "lost": lost, "others_dropped": others_dropped[:5], "messages": sent,
            "mib_to_each": round(sent * RELAYED / (1 << 20), 2),
            "throughput": round(statistics.median(r["deliveries_per_s"] for r in rounds)),
            "dropped_after_s": gone[0][0] if gone else None,
            "drop_reason": gone[0][1].split(" QUIT ", 1)[1].lstrip(":") if gone else None}


def measure_irc(name, clients, messages, rates, repeats, progress, stuck_seconds=(STUCK_SECONDS, STUCK_MAX_SECONDS),
                rate_seconds=RATE_SECONDS, program=STAGE_11):
    """Every figure for one server and N members of one channel (plus a never-reading one at the end)."""
    label = f"{name} N={clients}"
    result = {"server": name, "clients": clients}
    server = generator = stuck = None
    try:
        server = IrcServerProcess(name, program)
        rss_before = memory_kib(server.pid, "VmRSS")
        generator = IrcGenerator(server.port, clients, backlog=server.backlog)
        result["join_seconds"] = round(generator.join_seconds, 2)
        result["kib_per_client"] = round((memory_kib(server.pid, "VmRSS") - rss_before) / clients, 1)
        progress(f"{label}: JOIN storm ({clients:,} members, {clients * (clients - 1) // 2:,} JOIN lines) over "
                 f"in {generator.join_seconds:.1f} s")
        result.update(throughput(generator, server, clients, messages, repeats))
        progress(f"{label}: {result['throughput']:,} deliveries/s")
        for rate in rates:
            latency_round(generator, rate, rate_seconds, result, f"latency_{rate}")
        # A member that never reads. Its phase sends long lines: first, how fast they go without it, in rounds
        # of about ROUND_SECONDS each (not cut to --messages: fewer, longer rounds for a phase that lasts a
        # minute or more; only the shortest runs keep --messages).
        delivered, took, _ = long_round(generator, result["messages"])
        per_round = result["messages"] if stuck_seconds[1] < ROUND_SECONDS else \
            max(20, int(delivered / took * ROUND_SECONDS / (clients - 1)))
        without = [long_round(generator, per_round) for _ in range(repeats)]
        without = round(statistics.median(delivered / took for delivered, took, _ in without))
        # Then it joins: the others' latency at the first rate, then full speed for a while.
        stuck = irc_stuck_member(server.port)
        with_stuck = {"clients": clients, "throughput": result["throughput"]}
        latency_round(generator, rates[0], rate_seconds, with_stuck, "latency")
        phase = stuck_phase(generator, server, clients, per_round, *stuck_seconds, progress, label)
        result["stuck"] = {**with_stuck["latency"], **phase, "throughput_without": without,
                           "throughput_ratio": round(phase["throughput"] / without, 2)}
        result["peak_rss_kib"] = memory_kib(server.pid, "VmHWM")
        progress(f"{label}: p99 (ms) at {rates[0]}/s: {p99(result[f'latency_{rates[0]}'])}; with a never-reading "
                 f"member: {p99(result['stuck'])}, {result['stuck']['throughput']:,} deliveries/s, "
                 f"{stuck_fate_text(result['stuck'])}")
    except (RuntimeError, OSError) as error:
        result["error"] = f"{error}{server.why_stopped() if server else ''}"
        progress(f"{label}: failed: {result['error']}")
    finally:
        if stuck:
            stuck.close()
        if generator:
            generator.close()
        if server:
            server.stop()
    return result


def irc_most_clients(name, ladder, progress, program=STAGE_11):
    """The largest N on the ladder at which every member joins in time and gets one PRIVMSG within 5 s;
    each step's JOIN storm and memory per client, and why the first step that failed did."""
    best, steps = 0, []
    for clients in ladder:
        step = {"clients": clients}
        steps.append(step)
        server = generator = None
        try:
            server = IrcServerProcess(name, program)
            rss_before = memory_kib(server.pid, "VmRSS")
            generator = IrcGenerator(server.port, clients, IRC_LADDER_JOIN_SECONDS, server.backlog)
            step["join_seconds"] = round(generator.join_seconds, 1)
            step["kib_per_client"] = round((memory_kib(server.pid, "VmRSS") - rss_before) / clients, 1)
            delivered, seconds, _ = generator.round(1, timeout=5)
            step["broadcast_seconds"] = round(seconds, 2)
            if delivered < clients - 1 or seconds > 5:
                step["error"] = f"{delivered:,} of {clients - 1:,} got the PRIVMSG within 5 s"
            else:
                best = clients
                progress(f"{name}: {clients:,} clients all served (JOIN storm {generator.join_seconds:.1f} s)")
        except (RuntimeError, OSError) as error:
            step["error"] = f"{error}{server.why_stopped() if server else ''}"
        finally:
            if generator:
                generator.close()
            if server:
                server.stop()
        if "error" in step:
            progress(f"{name}: {clients:,} clients: {step['error']}")
            break
    return best, steps


def run_irc(args, sizes, rates, ladder, progress):
    servers = [name for name in IRC_SERVERS if name == "11" or miniircd_installed()]
    if "miniircd" not in servers:
        progress("miniircd is not installed (pip install -r requirements.txt): stage 11 is measured alone")
    results = []
    for size in sizes:  # at each N, the two servers one after the other: the machine drifts less in between
        for name in servers:
            results.append(measure_irc(name, size, args.messages, rates, args.repeats, progress,
                                       *(((1, 1), 0.4) if args.quick else
                                         ((args.stuck_seconds, max(args.stuck_seconds, args.stuck_max_seconds)),
                                          RATE_SECONDS)),
                                       program=Path(args.irc_server)))
    most, ladders = {}, {}
    for name in servers if ladder else ():
        most[name], ladders[name] = irc_most_clients(name, ladder, progress, Path(args.irc_server))
    program = Path(args.irc_server).read_bytes()  # which stage 11 was measured: its git blob id
    blob = hashlib.sha1(b"blob %d\0" % len(program) + program).hexdigest()
    path = Path(args.irc_server).resolve()
    shown = str(path.relative_to(REPO)) if REPO in path.parents else str(path)
    return {"servers": servers, "rates": rates, "irc_stage": {"path": shown, "git_blob": blob},
            "results": results, "most_clients": most, "ladder": ladders}


# ---------------------------------------------------------------- IRC: output

def floor_rise_kib(stuck):
    """How much the server's RSS between rounds (the others caught up) still rose in the phase's second half:
    the least of its last three values against the least of that half. A server that keeps what the member is
    sent rises all along; one that dropped it stays flat, whatever steps its allocator took before (a burst of
    the others' lines in flight can leave it holding more). None: too few rounds to tell."""
    between = stuck["rss_between_rounds_kib"]
    half = [kib for at, kib in between if at >= between[-1][0] / 2]
    return min(half[-3:]) - min(half) if len(half) >= 3 else None


def stuck_fate_text(stuck):
    if stuck.get("dropped_after_s") is not None:
        # The rounds begun by then: what each member had been sent at most when the server dropped it.
        sent = sum(r["sent"] for r in stuck["rounds"] if r["at_s"] <= stuck["dropped_after_s"])
        text = (f"dropped after {stuck['dropped_after_s']:.1f} s ({stuck['drop_reason']}), within the first "
                f"{sent * RELAYED / (1 << 20):.2f} MiB sent to each member; {stuck['mib_to_each']:g} MiB in all")
    else:
        text = f"still connected after {stuck['seconds']:.0f} s, {stuck['mib_to_each']:g} MiB sent to each member"
    if stuck["lost"]:
        text += f"; the phase stopped: {stuck['lost']:,} deliveries were over {DRAIN_SECONDS} s late"
    return text


def mib(kib):
    return f"{kib / 1024:,.1f}"


def irc_rows(irc):
    """(row, miniircd's row at the same N or None) for each result."""
    peer = {row["clients"]: row for row in irc["results"] if row["server"] == "miniircd" and "error" not in row}
    return [(row, peer.get(row["clients"])) for row in irc["results"]]


def vs_miniircd(row, peer):
    if row["server"] != "11" or "error" in row or not peer:
        return "-"
    return f"{row['throughput'] / peer['throughput']:.2f}"


def irc_rates(irc):
    return irc.get("rates", [50, 200])


def irc_table(irc):
    rates = irc_rates(irc)
    lines = [f"{'server':<9}{'N':>6}{'storm s':>9}{'deliveries/s':>14}{'x mini':>8}"
             + "".join(f"{f'p99@{rate}':>9}" for rate in rates)
             + f"{'KiB/cl':>8}{'stuck p99':>10}{'stuck del/s':>13}{'RSS MiB':>20}  never-reading member"]
    for row, peer in irc_rows(irc):
        if "error" in row:
            lines.append(f"{row['server']:<9}{row['clients']:>6}  failed: {row['error']}")
            continue
        stuck = row["stuck"]
        rss = f"{mib(stuck['rss_start_kib'])}>{mib(stuck['rss_max_kib'])}>{mib(stuck['rss_end_kib'])}"
        lines.append(f"{row['server']:<9}{row['clients']:>6}{row['join_seconds']:>9}{row['throughput']:>14,}"
                     f"{vs_miniircd(row, peer):>8}"
                     + "".join(f"{p99(row.get(f'latency_{rate}', {})):>9}" for rate in rates)
                     + f"{row['kib_per_client']:>8}{p99(stuck):>10}{stuck['throughput']:>13,}{rss:>20}  "
                     f"{stuck_fate_text(stuck)}")
    return "\n".join(lines)


def most_clients_text(irc):
    parts = []
    for name in irc["servers"]:
        if name not in irc["most_clients"]:
            continue
        text = f"{name} {irc['most_clients'][name]:,}"
        failed = [step for step in irc["ladder"][name] if "error" in step]
        if failed:
            text += f" (at {failed[0]['clients']:,}: {failed[0]['error']})"
        parts.append(text)
    return "; ".join(parts)


def irc_stage_text(irc):
    if "irc_stage" not in irc:
        return ""
    return f" Stage 11 was `{irc['irc_stage']['path']}`, git blob {irc['irc_stage']['git_blob'][:10]}."


def load_text(data):
    if "load_average" not in data:
        return ""
    return (f" The load average (1, 5, 15 min) was {', '.join(map(str, data['load_average']))} as it began and "
            f"{', '.join(map(str, data['load_average_after']))} as it ended"
            + (": other work shared the machine." if data["load_average"][0] >= 1 else "."))


def irc_markdown(data):
    """Stage 11 against miniircd, as docs/measuring.md shows it."""
    irc, machine = data["irc"], data["machine"]
    rates = irc_rates(irc)
    storms = sum(row.get("join_seconds", 0) for row in irc["results"])
    lines = [f"Measured with `{data['command']}` on {machine['cores']} cores ({machine['cpu']}), "
             f"Python {machine['python']}, {machine['system']}; {data['seconds']:.0f} s in all, of which the JOIN "
             f"storms of the measured rows took {storms:.0f} s." + load_text(data) + irc_stage_text(irc), "",
             "| server | N | JOIN storm (s) | deliveries/s | × miniircd | "
             + "".join(f"p99 at {rate}/s (ms) | " for rate in rates)
             + f"server KiB per client | with a never-reading member: p99 at {rates[0]}/s (ms) "
             "| long lines: the others' deliveries/s | server RSS (MiB): start → max → end "
             "| the never-reading member |",
             "| --- | ---: | ---: | ---: | ---: | " + "---: | " * len(rates) + "---: | ---: | ---: | --- | --- |"]
    for row, peer in irc_rows(irc):
        if "error" in row:
            lines.append(f"| {row['server']} | {row['clients']:,} | failed: {row['error']} |" + " |" * (7 + len(rates)))
            continue
        stuck = row["stuck"]
        lines.append(f"| {row['server']} | {row['clients']:,} | {row['join_seconds']} | {row['throughput']:,} | "
                     f"{vs_miniircd(row, peer)} | "
                     + "".join(f"{p99(row.get(f'latency_{rate}', {}))} | " for rate in rates)
                     + f"{row['kib_per_client']} | {p99(stuck)} | {stuck['throughput']:,} against "
                     f"{stuck['throughput_without']:,} without it ({stuck['throughput_ratio']:.2f}×; the last round: "
                     f"{stuck['rounds'][-1]['deliveries_per_s']:,}) | {mib(stuck['rss_start_kib'])} → "
                     f"{mib(stuck['rss_max_kib'])} → {mib(stuck['rss_end_kib'])} in {stuck['seconds']:.0f} s; "
                     f"held at the end: {stuck['held_kib'] / 1024:+,.1f} | "
                     f"{stuck_fate_text(stuck)} |")
    lines += ["", "*over*: the rate needs more deliveries per second than the server's measured throughput, "
              "so it was not run."]
    if irc["most_clients"]:
        lines += ["", "Most clients that all joined the channel and got one PRIVMSG within 5 s (of the ladder "
                  f"tried): {most_clients_text(irc)}."]
        for name in irc["servers"]:
            served = [step for step in irc["ladder"].get(name, []) if "error" not in step]
            if served:
                lines += ["", f"{name}'s JOIN storms on the ladder: " + ", ".join(
                    f"{step['clients']:,} members in {step['join_seconds']} s ({step['kib_per_client']} KiB per client)"
                    for step in served) + "."]
    return "\n".join(lines) + "\n"


def irc_targets(data):
    """Issue 17's targets for stage 11, each with what this run measured and whether it was met."""
    irc = data["irc"]
    checks = []  # (target, measured, met)
    for row, peer in irc_rows(irc):
        if row["server"] != "11":
            continue
        size = f"N={row['clients']:,}"
        if "error" in row:
            checks.append((f"the measurements at {size}", f"failed: {row['error']}", False))
            continue
        if peer:
            ratio = row["throughput"] / peer["throughput"]
            checks.append((f"throughput ≥ miniircd's at {size}",
                           f"{row['throughput']:,} against {peer['throughput']:,} "
                           f"deliveries/s ({ratio:.2f}×)", ratio >= 1))
        stuck = row["stuck"]
        checks.append((f"a never-reading member costs the others nothing at {size} (their throughput ≥ 0.8× "
                       "without it, nothing lost, nobody else dropped)",
                       f"{stuck['throughput_ratio']:.2f}×, {stuck['lost']:,} lost, "
                       f"{len(stuck['others_dropped'])} others dropped",
                       stuck["throughput_ratio"] >= 0.8 and not stuck["lost"] and not stuck["others_dropped"]))
        rise = floor_rise_kib(stuck)
        checks.append((f"the server's memory stays bounded with it at {size} (the member is dropped, and the RSS "
                       f"between rounds stops rising: less than {BOUNDED_KIB:,} KiB over the phase's second half)",
                       f"{stuck_fate_text(stuck)}; between rounds, "
                       + (f"{rise:+,} KiB over the second half" if rise is not None else "too few rounds to tell")
                       + f" ({stuck['held_kib']:+,} KiB from the start of the phase to its end)",
                       stuck["dropped_after_s"] is not None and rise is not None and rise < BOUNDED_KIB))
    if "11" in irc["most_clients"]:
        most = irc["most_clients"]["11"]
        checks.append(("5,000+ clients in one channel", f"{most:,}", most >= 5000))
    lines = ["| target for stage 11 | measured | met |", "| --- | --- | --- |"]
    lines += [f"| {target} | {measured} | {'yes' if met else '**no**'} |" for target, measured, met in checks]
    for row in irc["results"]:
        if row["server"] == "miniircd" and "error" not in row:
            stuck, rise = row["stuck"], floor_rise_kib(row["stuck"])
            rise = f"{rise:+,} KiB over the second half" if rise is not None else "too few rounds to tell"
            lines.append(f"| (miniircd, for comparison, at N={row['clients']:,}: with a never-reading member) | "
                         f"{stuck['throughput_ratio']:.2f}× the throughput; RSS between rounds: {rise}, "
                         f"{stuck['held_kib']:+,} KiB from the start of the phase to its end "
                         f"({stuck['growth_kib_per_s']:+,} KiB/s); {stuck_fate_text(stuck)} | - |")
    if "miniircd" in irc["most_clients"]:
        lines.append(f"| (miniircd, for comparison: the most clients) | {irc['most_clients']['miniircd']:,} | - |")
    return "\n".join(lines) + "\n"


def irc_plot(data, out):
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "tests/bench.py"
    import matplotlib.pyplot as plt

    rows = [row for row in data["irc"]["results"] if "error" not in row]
    figure, (memory, speed) = plt.subplots(1, 2, figsize=(10, 4))
    for row in rows:
        label = f"{row['server']}, N={row['clients']:,}"
        samples, between = row["stuck"]["rss_kib"], row["stuck"]["rss_between_rounds_kib"]
        line, = memory.plot([at for at, _ in between], [kib / 1024 for _, kib in between], label=label, linewidth=2)
        memory.plot([at for at, _ in samples], [kib / 1024 for _, kib in samples], color=line.get_color(),
                    alpha=0.35, linewidth=0.8)  # every half second: the others' lines in flight too
        if row["stuck"]["dropped_after_s"] is not None:  # when the server dropped the member
            for axes in (memory, speed):
                axes.axvline(row["stuck"]["dropped_after_s"], color=line.get_color(), linestyle=":")
        rounds = row["stuck"]["rounds"]
        speed.plot([r["at_s"] for r in rounds], [r["deliveries_per_s"] for r in rounds], label=label, marker=".",
                   markersize=4)
    memory.set_xlabel("seconds with a never-reading member")
    memory.set_ylabel("server RSS (MiB)")
    memory.set_title("RSS between rounds (thick) and every 0.5 s (thin)", fontsize=9)
    speed.set_title("dotted: the server dropped the member", fontsize=9)
    speed.set_xlabel("seconds with a never-reading member")
    speed.set_ylabel("the others' deliveries per second")
    speed.set_yscale("log")
    for axes in (memory, speed):
        axes.legend(fontsize=8)
    figure.suptitle(f"Stage 11 and miniircd with a member that never reads ({data['machine']['cores']} cores, "
                    f"Python {data['machine']['python']})", fontsize=10)
    figure.tight_layout()
    figure.savefig(out / "irc-stuck.svg", metadata={"Date": None})
    plt.close(figure)


def write_irc_report(data, out, plots=True):
    """irc.json, and what docs/measuring.md includes: irc-table.md, irc-targets.md, irc-stuck.svg."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "irc.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "irc-table.md").write_text(irc_markdown(data))
    (out / "irc-targets.md").write_text(irc_targets(data))
    if plots:
        irc_plot(data, out)


DOCS = REPO / "docs" / "bench"


def results_folder(args):
    """Where a run writes: --out, the committed docs/bench with --write-docs, else a temporary folder."""
    if args.report:
        return Path(args.report)
    if args.write_docs:
        return DOCS
    if args.out is None:
        return Path(tempfile.mkdtemp(prefix="chat-bench-"))
    if Path(args.out).resolve() == DOCS.resolve():
        sys.exit(f"--out {args.out} is the committed results: use --write-docs for that")
    return Path(args.out)


def main():
    parser = argparse.ArgumentParser(description="Benchmark the multi-client stages against an epoll baseline, "
                                     "or (--irc) stage 11 against miniircd.")
    parser.add_argument("--stages", default=DEFAULT_STAGES, help=f"default {DEFAULT_STAGES}")
    parser.add_argument("--irc", action="store_true", help="the IRC workload instead: stage 11 and miniircd, "
                        "members of one channel (writes irc.json, irc-table.md, irc-targets.md, irc-stuck.svg)")
    parser.add_argument("--clients", default="100,1000", help="numbers of clients, e.g. 100,1000")
    parser.add_argument("--messages", type=int, default=1000,
                        help=f"messages per throughput round (fewer if a round would last over {ROUND_SECONDS} s)")
    parser.add_argument("--rates", default=None, help="send rates for the latency rounds (messages/s; default "
                        f"50,200, with --irc {IRC_RATES}: the first is also the one with a never-reading member)")
    parser.add_argument("--repeats", type=int, default=3, help="throughput rounds; the median is kept")
    parser.add_argument("--ladder", default=None, help="client counts for the most-clients test (default "
                        f"500,1000,2000,5000; with --irc, {IRC_LADDER}; \"\" for none)")
    parser.add_argument("--stuck-seconds", type=float, default=STUCK_SECONDS,
                        help=f"with --irc: the never-reading member's phase lasts this long (default {STUCK_SECONDS})")
    parser.add_argument("--stuck-max-seconds", type=float, default=STUCK_MAX_SECONDS,
                        help=f"...then goes on until each member was sent {STUCK_MIB} MiB, at most this long "
                        f"(default {STUCK_MAX_SECONDS})")
    parser.add_argument("--irc-server", default=str(STAGE_11), metavar="SERVER_PY",
                        help="with --irc: the stage 11 server to measure, to try a change on a copy "
                        f"(default {STAGE_11.relative_to(REPO)})")
    parser.add_argument("--out", default=None, help="folder for results.json and plots (default: a new temporary "
                        "folder; the committed results are never overwritten by a default run)")
    parser.add_argument("--write-docs", action="store_true", help=f"write the committed results, {DOCS.relative_to(REPO)}/")
    parser.add_argument("--quick", action="store_true", help="seconds: two stages and the baseline at 20 clients, "
                        "no ladder, and the IRC workload at 20 members with a 50-member ladder (what CI runs)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--report", metavar="DIR", help="measure nothing: redraw DIR's tables and plots from "
                        "its results.json and irc.json")
    args = parser.parse_args()
    out = results_folder(args)
    if args.report:
        folder = Path(args.report)
        if (folder / "results.json").exists():
            write_report(json.loads((folder / "results.json").read_text()), folder, not args.no_plots)
        if (folder / "irc.json").exists():
            write_irc_report(json.loads((folder / "irc.json").read_text()), folder, not args.no_plots)
        return
    chat, irc = not args.irc, args.irc or args.quick  # --quick: both, unless --irc asks for the IRC part alone
    if args.ladder is None:
        args.ladder = IRC_LADDER if args.irc else "500,1000,2000,5000"
    if args.rates is None:
        args.rates = IRC_RATES if args.irc else "50,200"
    irc_ladder = args.ladder
    if args.quick:
        args.stages, args.clients, args.messages, args.repeats, args.ladder, args.rates = "02,09", "20", 50, 1, "", "50"
        irc_ladder = "50"
    stages = [BY_ID[stage_id.strip().zfill(2)] for stage_id in args.stages.split(",")] if chat else []
    sizes = [int(size) for size in args.clients.split(",")]
    rates = [int(rate) for rate in args.rates.split(",")]
    ladder = [int(size) for size in args.ladder.split(",") if size]
    irc_ladder_sizes = [int(size) for size in irc_ladder.split(",") if size] if irc else []
    raise_open_files(2 * max([*sizes, *ladder, *irc_ladder_sizes]) + 200)  # this process and the ones it starts
    started = time.monotonic()

    def progress(text):
        print(f"[{time.monotonic() - started:6.1f} s] {text}", flush=True)

    machine = {"cores": len(os.sched_getaffinity(0)), "cpu": platform.processor() or platform.machine(),
               "python": platform.python_version(), "system": platform.platform()}
    command = ".venv/bin/python tests/bench.py " + " ".join(sys.argv[1:])
    if chat:
        run_chat(args, stages, sizes, rates, ladder, out, progress, started, machine, command)
    if irc:
        chat_seconds = time.monotonic() - started
        load = [round(value, 2) for value in os.getloadavg()]  # other work on the machine, when this began
        data = {"command": command, "machine": machine, "load_average": load,
                "irc": run_irc(args, sizes, rates, irc_ladder_sizes, progress)}
        data["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
        data["seconds"] = round(time.monotonic() - started - chat_seconds, 1)
        write_irc_report(data, out, not args.no_plots)
        print(irc_table(data["irc"]))
        if data["irc"]["most_clients"]:
            print(f"most clients served within 5 s: {most_clients_text(data['irc'])}")
        print(f"wrote {out}/irc.json{'' if args.no_plots else ' and irc-stuck.svg'} in {data['seconds']} s")


def run_chat(args, stages, sizes, rates, ladder, out, progress, started, machine, command):
    results = []
    for stage in [BASELINE, *stages]:
        for size in sizes:
            base = None if stage is BASELINE else baseline_next_to(stage, size, args.messages, args.repeats, progress)
            row = measure(stage, size, args.messages, rates, args.repeats, progress,
                          *((1, 0.4) if args.quick else (5, RATE_SECONDS)))
            if "error" not in row:
                row["baseline_throughput"] = row["throughput"] if stage is BASELINE else base
            if row.get("baseline_throughput"):
                row["ratio_to_baseline"] = round(row["throughput"] / row["baseline_throughput"], 2)
            results.append(row)
    capacity = {stage.id: most_clients(stage, ladder, progress) for stage in [BASELINE, *stages]} if ladder else {}
    data = {"command": command, "machine": machine,
            "seconds": round(time.monotonic() - started, 1), "results": results, "most_clients": capacity}
    write_report(data, out, not args.no_plots)
    print(table(results))
    if capacity:
        print("most clients served within 5 s: " + ", ".join(f"{key} {value:,}" for key, value in capacity.items()))
    print(f"wrote {out}/results.json{'' if args.no_plots else ' and plots'} in {data['seconds']} s")


if __name__ == "__main__":
    main()
