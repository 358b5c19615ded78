"""TURN relay throughput and allocation rate: icestack vs coturn, driven by coturn's own tools.

    python -m bench.turn [--processes 4] [--clients 10] [--messages 3000] [--interval 1]
                         [--allocations 20] [--skip VARIANT ...]

Each server runs alone on core 1 (``taskset``), with one user (long-term credentials, realm
``bench``); coturn is ``turnserver -m 0`` (one relay thread). On core 0, ``turnutils_peer`` echoes
every datagram and ``--processes`` ``turnutils_uclient`` processes run at once. Measured per
server:

* ``relay_100B`` and ``relay_1000B``: each uclient process runs ``--clients`` sessions that each
  send ``--messages`` ChannelData messages of that size, one every ``--interval`` ms (``-c``: no
  RTCP allocation), to the peer, which sends each back; uclient starts each session at a random
  point 1-6 s after setting it up, and waits for stragglers (10 s) only when something was lost.
  At the defaults the tools offer up to 40,000 messages a second, fewer while sessions start and
  stop, and both servers relay all of it: ``echoed`` (messages that made the round trip a second,
  over the wall-clock time from the first uclient's start to the last one's exit) says so, and
  ``loss`` and ``rcvbuf_errors`` (the kernel's UDP receive-buffer overflows on the machine during
  the run) say what did not make it. Every echoed message is two relayed datagrams (client to
  peer, peer to client): ``relayed`` is those a second. ``cpu_per_relayed`` is the server's CPU
  time (user + system, /proc, 10 ms ticks) divided by relayed datagrams, and ``capacity`` what one
  core would relay at that cost: the comparison that does not depend on what the tools offer.
* ``allocations``: each uclient process runs ``--allocations`` sessions of one message each
  (``-n 1 -c -s``); a session is two Allocates (uclient's probe and the real one, each after a
  401), two CreatePermissions, a Refresh and the deallocation. ``allocations`` is Allocates
  answered a second, ``cpu_per_allocation`` the server's CPU per Allocate (all of the session's
  requests included), ``allocations_capacity`` what one core would answer at that cost.

Servers: coturn, icestack on asyncio (batched UDP system calls, and ``--no-batch-io``: one per
datagram), icestack on uvloop (all pinned to core 1), and icestack
with ``--workers 2`` on uvloop (two processes sharing the port with SO_REUSEPORT, not pinned: they
share both cores with the load generator, so read its numbers with that in mind). icestack runs
with ``--rfc5766-channels`` (uclient draws channel numbers up to 0x7FFF) and limits raised so that
hundreds of sessions from one address are neither over quota nor rate limited. Output lines are
``name value unit``, ratios against coturn last. Every run is bounded in messages and in time.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.stun_server import LOAD_CPU, SERVER_CPU, free_port, icestack_server, tree_cpu_seconds
from bench.tools import pinned_coturn
from tests.interop.coturn import LongTermCredentials, stop_process

CREDENTIALS = LongTermCredentials(username="bench", password="relay-me", realm="bench")
#: The bound on one uclient run (seconds): only a hang reaches it.
RUN_BOUND = 120.0
_TOTALS = re.compile(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)")


@dataclass(frozen=True)
class Run:
    """One batch of uclient processes against one server."""

    seconds: float
    sent: int
    received: int
    server_cpu: float
    failed: int
    rcvbuf_errors: int


def run_uclients(
    server_port: int, server_pid: int, peer_port: int, processes: int, flags: list[str]
) -> Run:
    """``processes`` uclient runs at once on the load core; the server's CPU around them."""
    command = [
        "taskset", "-c", LOAD_CPU, "turnutils_uclient", *flags,
        "-u", CREDENTIALS.username, "-w", CREDENTIALS.password, "-p", str(server_port),
        "-e", "127.0.0.1", "-r", str(peer_port), "127.0.0.1",
    ]  # fmt: skip
    cpu_before = tree_cpu_seconds(server_pid)
    overflows_before = udp_receive_buffer_errors()
    started = time.monotonic()
    children = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(processes)
    ]
    outputs = []
    try:
        for child in children:
            outputs.append(child.communicate(timeout=RUN_BOUND)[0])
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    seconds = time.monotonic() - started
    cpu = tree_cpu_seconds(server_pid) - cpu_before
    overflows = udp_receive_buffer_errors() - overflows_before
    sent = received = failed = 0
    for child, output in zip(children, outputs, strict=True):
        totals = _TOTALS.findall(output)
        if child.returncode != 0 or not totals:
            failed += 1
            continue
        sent += int(totals[-1][0])
        received += int(totals[-1][1])
    return Run(seconds, sent, received, cpu, failed, overflows)


def udp_receive_buffer_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (/proc/net/snmp)."""
    header, values = [
        line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
        if line.startswith("Udp:")
    ]  # fmt: skip
    return int(values[header.index("RcvbufErrors")])


@contextlib.contextmanager
def echo_peer() -> Iterator[int]:
    """``turnutils_peer`` on the load core, echoing on 127.0.0.1; yields its port."""
    port = free_port()
    peer = subprocess.Popen(
        ["taskset", "-c", LOAD_CPU, "turnutils_peer", "-L", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)  # it binds its sockets
        yield port
    finally:
        stop_process(peer)


#: How icestack serve turn runs here: the bench's user, uclient's channel numbers, and limits
#: that hundreds of sessions from one address stay under.
ICESTACK_OPTIONS = (
    "--user", f"{CREDENTIALS.username}:{CREDENTIALS.password}", "--realm", CREDENTIALS.realm,
    "--allow-loopback-peers", "--rfc5766-channels", "--user-quota", "100000",
    "--total-quota", "10000", "--auth-failure-rate", "1000000", "--auth-failure-burst", "1000000",
)  # fmt: skip


def measure(server_port: int, server_pid: int, args: argparse.Namespace) -> dict[str, float]:
    """Every measurement against one running server, as ``name: value``."""
    results: dict[str, float] = {}
    with echo_peer() as peer_port:
        for size in (100, 1000):
            flags = ["-c", "-z", str(args.interval), "-m", str(args.clients)]
            flags += ["-n", str(args.messages), "-l", str(size)]
            run = run_uclients(server_port, server_pid, peer_port, args.processes, flags)
            relayed = 2 * run.received
            name = f"relay_{size}B"
            results[f"{name}_echoed"] = run.received / run.seconds
            results[f"{name}_relayed"] = relayed / run.seconds
            results[f"{name}_loss"] = 100 * (1 - run.received / run.sent) if run.sent else 100.0
            results[f"{name}_cpu_per_relayed"] = run.server_cpu / relayed * 1e6
            results[f"{name}_capacity"] = relayed / run.server_cpu if run.server_cpu else 0.0
            results[f"{name}_rcvbuf_errors"] = run.rcvbuf_errors
            results[f"{name}_failed_runs"] = run.failed
        flags = ["-c", "-s", "-n", "1", "-m", str(args.allocations)]
        run = run_uclients(server_port, server_pid, peer_port, args.processes, flags)
        allocations = 2 * args.allocations * (args.processes - run.failed)
        results["allocations"] = allocations / run.seconds
        results["allocations_cpu_per_allocation"] = run.server_cpu / allocations * 1e6
        results["allocations_capacity"] = allocations / run.server_cpu if run.server_cpu else 0.0
        results["allocations_failed_runs"] = run.failed
    return results


#: The unit of each measurement, by the end of its name (longest first).
UNITS = {
    "allocations_capacity": "allocations/s/core",
    "cpu_per_allocation": "us",
    "cpu_per_relayed": "us",
    "failed_runs": "runs",
    "rcvbuf_errors": "datagrams",
    "allocations": "allocations/s",
    "capacity": "datagrams/s/core",
    "relayed": "datagrams/s",
    "echoed": "messages/s",
    "loss": "%",
}


def report(server: str, results: dict[str, float]) -> None:
    for name, value in results.items():
        unit = next(unit for suffix, unit in UNITS.items() if name.endswith(suffix))
        print(f"turn_{server}_{name} {value:.{0 if value >= 100 else 2}f} {unit}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=4, help="uclient processes at once")
    parser.add_argument("--clients", type=int, default=10, help="sessions per uclient")
    parser.add_argument("--messages", type=int, default=3000, help="messages per session")
    parser.add_argument("--interval", type=int, default=1, help="ms between a session's messages")
    parser.add_argument(
        "--skip", nargs="*", default=[], metavar="NAME", help="icestack variants to leave out"
    )
    parser.add_argument(
        "--allocations", type=int, default=20, help="sessions per uclient, allocation rate"
    )
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="icestack-bench-") as workdir,
        pinned_coturn(Path(workdir), cpu=int(SERVER_CPU), credentials=CREDENTIALS) as coturn,
    ):
        results["coturn"] = measure(coturn.port, coturn.pid, args)
    report("coturn", results["coturn"])
    variants = {
        name: variant
        for name, variant in {
            "icestack_asyncio": ((), True),
            "icestack_asyncio_portable_io": (("--no-batch-io",), True),
            "icestack_uvloop": (("--uvloop",), True),
            "icestack_2workers_uvloop": (("--uvloop", "--workers", "2"), False),
        }.items()
        if name not in args.skip
    }
    for name, (extra, pin) in variants.items():
        port = free_port()
        with icestack_server(port, *ICESTACK_OPTIONS, *extra, pin=pin, server="turn") as pid:
            results[name] = measure(port, pid, args)
        report(name, results[name])
    baseline = results["coturn"]
    for name in variants:
        for metric in (
            "relay_100B_relayed", "relay_100B_capacity", "relay_1000B_relayed",
            "relay_1000B_capacity", "allocations", "allocations_capacity",
        ):  # fmt: skip
            ratio = results[name][metric] / baseline[metric] if baseline[metric] else 0.0
            print(f"turn_{name}_vs_coturn_{metric} {ratio:.2f} x")


if __name__ == "__main__":
    main()
