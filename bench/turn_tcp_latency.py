"""TURN over TCP: how long small messages take to go round through the relay, icestack with
TCP_NODELAY (as it runs now), icestack with Nagle's algorithm left on (as it ran before), coturn.

    python -m bench.turn_tcp_latency [--rounds 200] [--size 100] [--bursts 1 4]

A ``turn.TurnClient`` on 127.0.0.1 allocates over TCP, binds a channel to a UDP echo peer on
loopback and sends ``--size``-byte ChannelData messages; each round is a burst of ``--bursts``
messages written back to back (1: strict ping-pong; 4: what a media sender's frames and RTCP look
like), then the echoes are awaited. A message's round-trip time runs from its burst's first write
to its echo's arrival. Printed per server and burst: ``median`` and ``p90`` in ms, ``lost``
(echoes that did not come back within a second), then the ratios against coturn.

Servers, each alone on core 1 (``taskset``): ``icestack serve turn`` on asyncio; the same with
the bench-only ``--serve-with-nagle`` switch, which makes its listening sockets as they were
before TCP_NODELAY (protocol 0, no option: asyncio then leaves Nagle on for accepted
connections); and coturn (``turnserver -m 0``). The client and the echo peer share core 0. Every
wait is bounded: a second per echo, ``--rounds`` rounds per burst size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.stun_server import LOAD_CPU, SERVER_CPU, free_port, wait_answering
from bench.tools import pinned_coturn
from bench.turn import CREDENTIALS, ICESTACK_OPTIONS
from stun import Address
from tests.interop.coturn import stop_process
from turn import TurnClient

#: How long one echo may take before it counts as lost.
ECHO_WAIT = 1.0


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(port: int, args: argparse.Namespace) -> dict[str, float]:
    """Every burst size against the server on 127.0.0.1:port, as ``name: value``."""
    loop = asyncio.get_running_loop()
    echo, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    peer = Address(*echo.get_extra_info("sockname")[:2])
    client = await TurnClient.connect(
        "127.0.0.1", port, username=CREDENTIALS.username, password=CREDENTIALS.password,
        transport="tcp",
    )  # fmt: skip
    results: dict[str, float] = {}
    try:
        await asyncio.wait_for(client.allocate(), 10.0)
        await asyncio.wait_for(client.bind_channel(peer), 10.0)
        for burst in args.bursts:
            rtts: list[float] = []
            lost = 0
            for round_number in range(args.rounds):
                payloads = [
                    round_number.to_bytes(4, "big") + bytes([i]) * (args.size - 4)
                    for i in range(burst)
                ]
                started = loop.time()
                for payload in payloads:
                    await client.send(payload, peer)
                waiting = set(payloads)
                while waiting:
                    try:
                        data, _ = await asyncio.wait_for(client.recv(), ECHO_WAIT)
                    except TimeoutError:
                        lost += len(waiting)
                        break
                    if data in waiting:
                        waiting.discard(data)
                        rtts.append((loop.time() - started) * 1000)
            name = f"burst{burst}"
            results[f"{name}_median"] = statistics.median(rtts) if rtts else float("nan")
            results[f"{name}_p90"] = percentile(rtts, 0.9) if rtts else float("nan")
            results[f"{name}_lost"] = lost
    finally:
        await client.close()
        echo.close()
    return results


@contextlib.contextmanager
def icestack_turn(port: int, *, nagle: bool) -> Iterator[None]:
    """``icestack serve turn`` on 127.0.0.1:port (TCP and UDP), pinned to the server core."""
    switch = ["-m", "bench.turn_tcp_latency", "--serve-with-nagle"] if nagle else ["-m", "ice.cli"]
    command = [
        "taskset", "-c", SERVER_CPU, sys.executable, *switch, "serve", "turn",
        "--listen", f"127.0.0.1:{port}", *ICESTACK_OPTIONS,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_answering(port)
        yield
    finally:
        stop_process(process)


def serve_with_nagle(argv: list[str]) -> int:
    """``icestack`` with stream sockets made as before TCP_NODELAY: the "before" of this bench."""
    import stun.aio_streams
    from ice.cli import main as icestack

    # listen_stream() looks it up in stun.aio_streams.
    stun.aio_streams.tcp_socket = lambda family: socket.socket(  # type: ignore[attr-defined]
        family, socket.SOCK_STREAM
    )
    return icestack(argv)


def report(server: str, results: dict[str, float]) -> None:
    for name, value in results.items():
        unit = "messages" if name.endswith("_lost") else "ms"
        print(f"turn_tcp_latency_{server}_{name} {value:.2f} {unit}", flush=True)


def main() -> None:
    if sys.argv[1:2] == ["--serve-with-nagle"]:
        sys.exit(serve_with_nagle(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="bursts per burst size")
    parser.add_argument("--size", type=int, default=100, help="bytes per message (5 at least)")
    parser.add_argument(
        "--bursts", type=int, nargs="+", default=[1, 4], help="messages per burst, each size"
    )
    args = parser.parse_args()
    if args.size < 5 or any(burst not in range(1, 256) for burst in args.bursts):
        parser.error("--size is 5 bytes at least, and bursts are 1-255 messages")
    os.sched_setaffinity(0, {int(LOAD_CPU)})  # the client and the echo peer
    results: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="icestack-bench-") as workdir,
        pinned_coturn(Path(workdir), cpu=int(SERVER_CPU), credentials=CREDENTIALS) as coturn,
    ):
        results["coturn"] = asyncio.run(measure(coturn.port, args))
    report("coturn", results["coturn"])
    for name, nagle in (("icestack", False), ("icestack_nagle", True)):
        port = free_port()
        with icestack_turn(port, nagle=nagle):
            time.sleep(0.2)  # TCP listens once UDP answers; give the rest a moment
            results[name] = asyncio.run(measure(port, args))
        report(name, results[name])
    for burst in args.bursts:
        for statistic in ("median", "p90"):
            metric = f"burst{burst}_{statistic}"
            baseline = results["coturn"][metric]
            for name in ("icestack", "icestack_nagle"):
                print(f"turn_tcp_latency_{name}_vs_coturn_{metric} "
                      f"{results[name][metric] / baseline:.2f} x")  # fmt: skip
            ratio = results["icestack_nagle"][metric] / results["icestack"][metric]
            print(f"turn_tcp_latency_nagle_vs_nodelay_{metric} {ratio:.2f} x")


if __name__ == "__main__":
    main()
