"""ICE through a TURN server over TLS: icestack's Connection vs aioice 0.13.0, same machine, same
run, both through the same coturn on loopback.

    python -m bench.ice_turn [--runs 20] [--packets 5000] [--echoes 500]

- ``connect``: two relay-only connections through coturn over TLS (``turns:``, a throw-away
  certificate both trust); ``gather`` is the time until both have their relayed candidate (TCP
  connect, TLS handshake, Allocate and its 401), ``connect`` the time from there — candidates
  and credentials handed over at once — until both ``connect()`` calls returned; medians and
  p90 over ``--runs`` runs. icestack at its default pacing (Ta = 50 ms) and at aioice's (20 ms).
- ``data``: 1000-byte datagrams from one side's ``send`` to the other's ``recv``, closed-loop
  (at most ``bench.ice.WINDOW`` in flight), through coturn over TLS, and — the baseline — over a
  direct UDP host pair; and the round trip of one 100-byte datagram echoed back, median and p99
  over ``--echoes`` echoes. Bounded in count and in time. coturn drops a few datagrams when a
  TLS client's output backs up (our TurnServer, same run, drops none): a window slot whose
  datagram has not arrived for :data:`LOST_AFTER` is given up, and ``lost`` counts them.

Everything binds 127.0.0.1. coturn runs with one relay thread (``-m 0``) and loopback peers
allowed. Lines are ``name value unit``, ratios last.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aioice

import ice
from bench.ice import LOOPBACK, PAYLOAD, WINDOW, ours, percentile, prepared_pair, theirs
from stun.tls import client_context, make_self_signed
from tests.interop.coturn import LongTermCredentials, RunningTurnserver, running_turnserver

CREDENTIALS = LongTermCredentials(username="bench", password="relay-me", realm="bench")
Factory = Callable[[bool], Any]
ECHO = b"\x80" + bytes(99)
#: A datagram not received this long after the window filled is counted lost, and its slot freed.
LOST_AFTER = 0.2


def factories(server: RunningTurnserver, cafile: Path) -> dict[str, Factory]:
    """The relay-only connections through ``server`` over TLS, by name."""
    tls = server.tls_address(LOOPBACK)
    uri = f"turns:{LOOPBACK}:{tls.port}"

    def icestack(pacing: float) -> Factory:
        return lambda controlling: ice.Connection(
            controlling,
            turn_servers=[(uri, CREDENTIALS.username, CREDENTIALS.password)],
            relay_only=True,
            include_loopback=True,
            interfaces=[LOOPBACK],
            use_ipv6=False,
            pacing=pacing,
            turn_tls_cafile=cafile,
        )

    def aioice_relay(controlling: bool) -> aioice.Connection:
        return aioice.Connection(
            ice_controlling=controlling,
            use_ipv6=False,
            turn_server=(tls.host, tls.port),
            turn_username=CREDENTIALS.username,
            turn_password=CREDENTIALS.password,
            turn_transport="tcp",
            turn_ssl=client_context(cafile),  # type: ignore[arg-type]
            transport_policy=aioice.TransportPolicy.RELAY,
        )

    return {
        "icestack_ta50ms": icestack(0.050),
        "icestack_ta20ms": icestack(0.020),
        "aioice": aioice_relay,
    }


async def gather_and_connect(factory: Factory) -> tuple[float, float]:
    """Seconds to gather both sides, then to connect them."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    a, b = await asyncio.wait_for(prepared_pair(factory), 30)
    gathered = loop.time()
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)
    connected = loop.time()
    await asyncio.gather(a.close(), b.close())
    return gathered - started, connected - gathered


async def bench_connect(variants: dict[str, Factory], runs: int) -> None:
    """Gather, connect, and the two together (``total``: what an application waits)."""
    phases = ("gather", "connect", "total")
    medians: dict[str, list[float]] = {}
    for name, factory in variants.items():
        results = [await gather_and_connect(factory) for _ in range(runs)]
        columns = [[r[0] for r in results], [r[1] for r in results], [sum(r) for r in results]]
        medians[name] = [statistics.median(values) for values in columns]
        for what, values in zip(phases, columns, strict=True):
            print(f"turn_tls_{what}_{name}_median {statistics.median(values) * 1000:.2f} ms")
            print(f"turn_tls_{what}_{name}_p90 {percentile(values, 0.9) * 1000:.2f} ms")
    for name in variants:
        if name != "aioice":
            for index, what in enumerate(phases):
                ratio = medians["aioice"][index] / medians[name][index]
                print(f"turn_tls_{what}_{name}_speedup_vs_aioice {ratio:.2f} x")


async def data_rate(factory: Factory, packets: int) -> tuple[float, int]:
    """Datagrams a second from a's send() to b's recv(), closed-loop with a sliding window (slots
    of lost datagrams freed after ``LOST_AFTER``), and how many were lost; bounded in count
    (``packets``) and time (30 s)."""
    a, b = await prepared_pair(factory)
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)
    received = lost = 0
    room = asyncio.Event()

    async def receive() -> None:
        nonlocal received
        while True:
            await b.recv()
            received += 1
            room.set()

    receiving = asyncio.ensure_future(receive())
    started = time.perf_counter()
    try:
        async with asyncio.timeout(30):
            for sent in range(packets):
                while sent - received - lost >= WINDOW:
                    room.clear()
                    try:
                        await asyncio.wait_for(room.wait(), LOST_AFTER)
                    except TimeoutError:
                        lost = sent - received
                await a.send(PAYLOAD)
            while received + lost < packets:
                room.clear()
                try:
                    await asyncio.wait_for(room.wait(), LOST_AFTER)
                except TimeoutError:
                    lost = packets - received
    finally:
        receiving.cancel()
    elapsed = time.perf_counter() - started - (LOST_AFTER if lost else 0.0)
    await asyncio.gather(a.close(), b.close())
    return received / elapsed, lost


async def echo_times(factory: Factory, echoes: int) -> list[float]:
    """Round trips of one datagram sent by a and echoed by b, one at a time (one that does not
    come back within ``LOST_AFTER`` is left out)."""
    a, b = await prepared_pair(factory)
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)

    async def echo() -> None:
        while True:
            await b.send(await b.recv())

    echoing = asyncio.ensure_future(echo())
    times = []
    try:
        async with asyncio.timeout(30):
            for _ in range(echoes):
                started = time.perf_counter()
                await a.send(ECHO)
                try:
                    await asyncio.wait_for(a.recv(), LOST_AFTER)
                except TimeoutError:
                    continue
                times.append(time.perf_counter() - started)
    finally:
        echoing.cancel()
        await asyncio.gather(a.close(), b.close())
    return times


def bench_data(variants: dict[str, Factory], packets: int, echoes: int) -> None:
    paths: dict[str, Factory] = {
        "udp_icestack": ours,
        "udp_aioice": theirs,
        "turn_tls_icestack": variants["icestack_ta20ms"],
        "turn_tls_aioice": variants["aioice"],
    }
    rates, rtts = {}, {}
    for name, factory in paths.items():
        rates[name], lost = asyncio.run(data_rate(factory, packets))
        times = asyncio.run(echo_times(factory, echoes))
        rtts[name] = statistics.median(times)
        print(f"data_{name}_rate {rates[name]:.0f} datagrams/s (window {WINDOW})")
        print(f"data_{name}_lost {lost} datagrams")
        print(f"data_{name}_rtt_median {rtts[name] * 1e6:.0f} us")
        print(f"data_{name}_rtt_p99 {percentile(times, 0.99) * 1e6:.0f} us")
    for library in ("icestack", "aioice"):
        udp, tls = f"udp_{library}", f"turn_tls_{library}"
        print(f"data_{library}_turn_tls_rate_fraction_of_udp {rates[tls] / rates[udp]:.2f} x")
        print(f"data_{library}_turn_tls_rtt_over_udp {rtts[tls] / rtts[udp]:.2f} x")
    for path in ("udp", "turn_tls"):
        ratio = rates[f"{path}_icestack"] / rates[f"{path}_aioice"]
        print(f"data_{path}_rate_icestack_vs_aioice {ratio:.2f} x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--packets", type=int, default=5000)
    parser.add_argument("--echoes", type=int, default=500)
    parser.add_argument("--only", choices=("connect", "data"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="icestack-bench-") as folder:
        files = make_self_signed(Path(folder))
        with running_turnserver(
            Path(folder) / "coturn",
            hosts=[LOOPBACK],
            certificate=files,
            credentials=CREDENTIALS,
            extra_arguments=["-m", "0"],
        ) as server:
            variants = factories(server, files.certificate)
            if args.only in (None, "connect"):
                asyncio.run(bench_connect(variants, args.runs))
            if args.only in (None, "data"):
                bench_data(variants, args.packets, args.echoes)


if __name__ == "__main__":
    main()
