"""A benchmark of every multi-client stage, side by side, against a minimal epoll baseline.

    python tests/bench.py                                         # every multi-client stage, N = 100 and 1,000
    python tests/bench.py --write-docs                            # the same, into the committed docs/bench/
    python tests/bench.py --stages 02,05,08 --clients 100,1000 --messages 200
    python tests/bench.py --quick --out /tmp/bench                # a few seconds: what CI runs

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

Each stage's ratio to the baseline divides by the baseline's throughput measured again just
before that stage, at the same N: the machine's speed drifts during a run.

The generator is a sender process and receiver processes with one epoll loop each; their
own CPU is reported, so you can see when the generator, not the server, is the limit.
Results: a table, OUT/results.json, and SVG plots (OUT/*.svg, with matplotlib).
"""

import argparse
import json
import multiprocessing
import os
import platform
import re
import resource
import select
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
DEFAULT_STAGES = "02,03,04,05,08,09"  # 06's server is 05's plus a history: the same figures
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
    for stage in ("04", "05"):
        ratio(stage, 100, 0.5)
        capacity(stage, 500)
    capacity("08", 5000)
    p99_under("08", 1000, 50, lambda r: r["latency_50"], "at 50 messages/s,")
    for stage in dict.fromkeys(r["stage"] for r in data["results"] if r["stage"] != "base"):
        for clients in sorted({r["clients"] for r in data["results"]}):
            p99_under(stage, clients, 100, lambda r: r["stuck"], "with one client stuck, the others'")
    lines = ["| target | stage | measured | met |", "| --- | --- | ---: | --- |"]
    lines += [f"| {target} | {stage} | {measured} | {'yes' if met else '**no**'} |"
              for target, stage, measured, met in checks]
    return "\n".join(lines) + "\n"


MODELS = {"02": "selectors", "03": "selectors", "04": "a thread per client", "05": "a thread per client",
          "08": "asyncio"}


def models(data):
    """The three concurrency models side by side at the largest N (lesson 08 includes this file)."""
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
    parser = argparse.ArgumentParser(description="Benchmark the multi-client stages against an epoll baseline.")
    parser.add_argument("--stages", default=DEFAULT_STAGES, help=f"default {DEFAULT_STAGES}")
    parser.add_argument("--clients", default="100,1000", help="numbers of clients, e.g. 100,1000")
    parser.add_argument("--messages", type=int, default=1000,
                        help=f"messages per throughput round (fewer if a round would last over {ROUND_SECONDS} s)")
    parser.add_argument("--rates", default="50,200", help="send rates for the latency rounds (messages/s)")
    parser.add_argument("--repeats", type=int, default=3, help="throughput rounds; the median is kept")
    parser.add_argument("--ladder", default="500,1000,2000,5000", help="client counts for the most-clients test")
    parser.add_argument("--out", default=None, help="folder for results.json and plots (default: a new temporary "
                        "folder; the committed results are never overwritten by a default run)")
    parser.add_argument("--write-docs", action="store_true", help=f"write the committed results, {DOCS.relative_to(REPO)}/")
    parser.add_argument("--quick", action="store_true", help="a few seconds: two stages, 20 clients, no ladder")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--report", metavar="DIR", help="measure nothing: redraw DIR's tables and plots from "
                        "its results.json")
    args = parser.parse_args()
    out = results_folder(args)
    if args.report:
        write_report(json.loads((Path(args.report) / "results.json").read_text()), Path(args.report),
                     not args.no_plots)
        return
    if args.quick:
        args.stages, args.clients, args.messages, args.repeats, args.ladder, args.rates = "02,08", "20", 50, 1, "", "50"
    stages = [BY_ID[stage_id.strip().zfill(2)] for stage_id in args.stages.split(",")]
    sizes = [int(size) for size in args.clients.split(",")]
    rates = [int(rate) for rate in args.rates.split(",")]
    ladder = [int(size) for size in args.ladder.split(",") if size]
    raise_open_files(2 * max([*sizes, *ladder]) + 200)
    started = time.monotonic()

    def progress(text):
        print(f"[{time.monotonic() - started:6.1f} s] {text}", flush=True)

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
    data = {"command": "python tests/bench.py " + " ".join(sys.argv[1:]),
            "machine": {"cores": len(os.sched_getaffinity(0)), "cpu": platform.processor() or platform.machine(),
                        "python": platform.python_version(), "system": platform.platform()},
            "seconds": round(time.monotonic() - started, 1), "results": results, "most_clients": capacity}
    write_report(data, out, not args.no_plots)
    print(table(results))
    if capacity:
        print("most clients served within 5 s: " + ", ".join(f"{key} {value:,}" for key, value in capacity.items()))
    print(f"wrote {out}/results.json{'' if args.no_plots else ' and plots'} in {data['seconds']} s")


if __name__ == "__main__":
    main()
