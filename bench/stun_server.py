"""STUN server throughput: icestack vs coturn under ``stunload``, in one run.

    python -m bench.stun_server [--seconds 5] [--concurrency 64]

Each server runs alone, pinned to core 1 (``taskset``), while ``stunload`` (bench/stunload.c, a C
load generator with batched sendmmsg/recvmmsg I/O, built by :mod:`bench.tools`) keeps
``--concurrency`` Binding requests in flight from core 0 over loopback for ``--seconds``. Reported
per server, as ``name value unit``: responses/s, p50/p99 latency, and server CPU time per response
from /proc/PID/stat (user + system, children included, so multi-process servers count whole). Ratios
against coturn close the run.

Servers: coturn (``turnserver -m 0 --no-auth``: one relay thread), icestack on asyncio (batched
UDP system calls, and ``--no-batch-io``: one per datagram), icestack on uvloop, and icestack with
``--workers 2`` (two processes sharing the port with SO_REUSEPORT; not pinned, so they share both
cores with the load generator: read its numbers with that in mind).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.tools import build_stunload, pinned_coturn
from stun import Message, MessageClass, Method, new_transaction_id
from tests.interop.coturn import stop_process

TICKS = os.sysconf("SC_CLK_TCK")
SERVER_CPU = "1"
LOAD_CPU = "0"


@dataclass
class Measurement:
    rate: float
    p50_us: float
    p99_us: float
    cpu_us_per_response: float
    timeouts: int


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its waited-for children, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and of its live children (workers are not waited for until they end)."""
    total = process_cpu_seconds(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            with contextlib.suppress(FileNotFoundError):
                total += tree_cpu_seconds(int(child))
    return total


def wait_answering(port: int, deadline_s: float = 15.0) -> None:
    """Block until something answers a Binding request on 127.0.0.1:port (bounded)."""
    request = Message(Method.BINDING, MessageClass.REQUEST, new_transaction_id()).encode()
    end = time.monotonic() + deadline_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < end:
            sock.sendto(request, ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError, ConnectionRefusedError):
                sock.recv(2048)
                return
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")


def run_load(stunload: Path, port: int, seconds: int, concurrency: int, pid: int) -> Measurement:
    """Run stunload against 127.0.0.1:port and read the server's CPU around it."""
    cpu_before = tree_cpu_seconds(pid)
    output = subprocess.run(
        [
            "taskset",
            "-c",
            LOAD_CPU,
            str(stunload),
            "127.0.0.1",
            str(port),
            str(seconds),
            str(concurrency),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    cpu = tree_cpu_seconds(pid) - cpu_before
    values = {m[1]: float(m[2]) for m in re.finditer(r"^stunload_(\w+) ([\d.]+)", output, re.M)}
    received = values["received"]
    return Measurement(
        rate=values["rate"],
        p50_us=values["p50"],
        p99_us=values["p99"],
        cpu_us_per_response=cpu / received * 1e6 if received else float("nan"),
        timeouts=int(values["timeouts"]),
    )


@contextlib.contextmanager
def icestack_server(
    port: int, *extra: str, pin: bool = True, server: str = "stun"
) -> Iterator[int]:
    """``icestack serve SERVER`` on 127.0.0.1:port as a child process; yields its PID once it
    answers a Binding request (both servers do)."""
    command = [
        sys.executable,
        "-m",
        "ice.cli",
        "serve",
        server,
        "--listen",
        f"127.0.0.1:{port}",
        *extra,
    ]
    if pin:
        command = ["taskset", "-c", SERVER_CPU, *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_answering(port)
        yield process.pid
    finally:
        stop_process(process)


def report(name: str, m: Measurement) -> None:
    print(f"stun_server_{name}_rate {m.rate:.0f} responses/s")
    print(f"stun_server_{name}_p50 {m.p50_us:.0f} us")
    print(f"stun_server_{name}_p99 {m.p99_us:.0f} us")
    print(f"stun_server_{name}_cpu_per_response {m.cpu_us_per_response:.2f} us")
    print(f"stun_server_{name}_timeouts {m.timeouts} requests")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    stunload = build_stunload()
    results: dict[str, Measurement] = {}
    with (
        tempfile.TemporaryDirectory(prefix="icestack-bench-") as workdir,
        pinned_coturn(Path(workdir), cpu=int(SERVER_CPU)) as coturn,
    ):
        wait_answering(coturn.port)
        results["coturn"] = run_load(
            stunload, coturn.port, args.seconds, args.concurrency, coturn.pid
        )
    report("coturn", results["coturn"])
    variants = {
        "icestack_asyncio": ((), True),
        "icestack_asyncio_portable_io": (("--no-batch-io",), True),
        "icestack_uvloop": (("--uvloop",), True),
        "icestack_2workers_uvloop": (("--uvloop", "--workers", "2"), False),
    }
    for name, (extra, pin) in variants.items():
        port = free_port()
        with icestack_server(port, *extra, pin=pin) as pid:
            results[name] = run_load(stunload, port, args.seconds, args.concurrency, pid)
        report(name, results[name])
    baseline = results["coturn"]
    for name in variants:
        m = results[name]
        print(f"stun_server_{name}_vs_coturn_rate {m.rate / baseline.rate:.2f} x")
        cpu_ratio = m.cpu_us_per_response / baseline.cpu_us_per_response
        print(f"stun_server_{name}_vs_coturn_cpu {cpu_ratio:.2f} x")


if __name__ == "__main__":
    main()
