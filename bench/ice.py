"""ICE benchmarks: icestack's Connection vs aioice 0.13.0, same machine, same run.

    python -m bench.ice [--runs 30] [--scale 100,500,1000] [--scale-runs 3]
                        [--established-seconds 10] [--packets 20000] [--round-trips 2000]

- ``connect``: two connections on loopback that already hold each other's candidates and
  credentials; the time until both ``connect()`` calls have returned, median and p90 over
  ``--runs`` runs. icestack is measured at the RFC's default pacing (Ta = 50 ms) and at Ta = 5 ms,
  the floor RFC 8445 §14.2 allows; aioice at its own (20 ms).
- ``scale``: N gathered connection pairs in one event loop, all connecting at once: wall time until
  all are connected and CPU time per pair (process time) of connecting, and memory per agent
  (tracemalloc, Python heap; measured in a separate run) twice: ``_memory_per_agent`` as soon as
  all are connected, and ``_memory_per_established_agent`` once the session is established —
  :data:`~ice.release.RELEASE_DELAY` + 0.5 s after all completed (the same wait for aioice,
  whose ``connect()`` returns completed), when icestack has released the bases no selected pair
  uses (RFC 8445 §8.3: an ICE-TCP listener beside a UDP pair), after a garbage collection —
  with the open file descriptors per agent at both moments (``_fds_per_agent``,
  ``_fds_per_established_agent``); icestack as it comes (ICE-TCP candidates too) and UDP only
  (``tcp=False``, what aioice offers), with the STUN messages (checks, retransmissions and
  answers) per pair each took and the CPU time per message. The CPU time of one run varies by
  a third on a shared machine (aioice's 0.5-0.9 ms a pair), so the connect phase runs
  ``--scale-runs`` times, the variants interleaved (each run starting with the next one) and
  garbage collected before each: the wall time, messages and CPU time printed are the medians,
  with the CPU time's ``_min`` and ``_max``, and the ratios are of the medians. The counts
  differ for a reason of the RFCs: aioice's controlling agent puts USE-CANDIDATE on every check
  (RFC 5245's aggressive nomination), so a pair connects in 4 messages; RFC 8445 removed
  aggressive nomination and icestack nominates regularly, repeating the check that succeeded
  with USE-CANDIDATE (§8.1.1): 6 messages. Interleaved with them runs ``floor``
  (:mod:`bench.exchange_floor`): the same 6-message exchange by a program with no ICE agent at
  all, the least Python spends on it; ``_cpu_above_floor`` is what icestack's agent and asyncio
  glue add per pair, and ``_floor_cpu_fraction_of_aioice`` is the lowest fraction of aioice's CPU
  any Python agent on one socket per session could reach. Then, once per variant, the CPU an
  established session costs: the pairs connected, :data:`ESTABLISHED_AFTER` later, the process's
  CPU time over ``--established-seconds`` (default 10) while they keep consent (RFC 7675: a check
  every 4-6 s from each agent; aioice checks as often), per pair and second, with the STUN
  messages per pair and second.
- ``data``: after connecting, 1000-byte datagrams from one side's ``send`` to the other's
  ``recv``, closed-loop (at most ``WINDOW`` in flight, so loopback drops nothing), bounded in
  count and time, on asyncio and on uvloop: the rate, and the CPU time per datagram of the
  process (both ends run in it: the sender's and the receiver's work, in the kernel too), which
  a shared machine disturbs less than the rate; a ratio for each.
- ``tcp``: the same data path over ICE-TCP (RFC 6544; connections offering TCP candidates only)
  against UDP (UDP candidates only), icestack against itself — aioice has no ICE-TCP: the rate,
  and the median round trip of one 1000-byte datagram there and back (``--round-trips``), on
  asyncio and on uvloop, with the ratio TCP/UDP of each.

Everything binds 127.0.0.1 only. aioice has no option to gather on loopback, so its
``get_host_addresses`` is replaced for the run, and its ``StunProtocol.send_stun`` is wrapped
to count the messages it sends (those are the only changes made to it).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import resource
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import aioice
import aioice.ice

import ice
from ice.events import IceState
from ice.release import RELEASE_DELAY

from . import exchange_floor

LOOPBACK = "127.0.0.1"
PAYLOAD = b"\x80" + bytes(999)


def ours(controlling: bool, pacing: float = 0.050, **options: Any) -> ice.Connection:
    return ice.Connection(
        controlling,
        include_loopback=True,
        interfaces=[LOOPBACK],
        use_ipv6=False,
        pacing=pacing,
        **options,
    )


def theirs(controlling: bool) -> aioice.Connection:
    return aioice.Connection(ice_controlling=controlling, use_ipv6=False)


aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [LOOPBACK]


class _AioiceMessages:
    """How many STUN messages aioice sent: every one goes through ``StunProtocol.send_stun``."""

    sent = 0
    _send = aioice.ice.StunProtocol.send_stun

    @classmethod
    def install(cls) -> None:
        def send_stun(protocol: Any, message: Any, addr: Any) -> None:
            cls.sent += 1
            cls._send(protocol, message, addr)

        aioice.ice.StunProtocol.send_stun = send_stun  # type: ignore[method-assign,assignment]


_AioiceMessages.install()

Factory = Callable[[bool], Any]


async def prepared_pair(factory: Factory) -> tuple[Any, Any]:
    """Two gathered connections that know each other's candidates and credentials."""
    a, b = factory(True), factory(False)
    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    for local, remote in ((a, b), (b, a)):
        remote.remote_username = local.local_username
        remote.remote_password = local.local_password
        for candidate in local.local_candidates:
            await remote.add_remote_candidate(candidate)
        await remote.add_remote_candidate(None)
    return a, b


async def connect_time(factory: Factory) -> float:
    a, b = await prepared_pair(factory)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)
    elapsed = loop.time() - started
    await asyncio.gather(a.close(), b.close())
    return elapsed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def bench_connect(runs: int) -> None:
    variants: dict[str, Factory] = {
        "icestack_ta50ms": ours,
        "icestack_ta5ms": lambda controlling: ours(controlling, pacing=0.005),
        "aioice": theirs,
    }
    medians = {}
    for name, factory in variants.items():
        times = [await connect_time(factory) for _ in range(runs)]
        medians[name] = statistics.median(times)
        print(f"ice_connect_{name}_median {medians[name] * 1000:.2f} ms")
        print(f"ice_connect_{name}_p90 {percentile(times, 0.9) * 1000:.2f} ms")
    for name in ("icestack_ta50ms", "icestack_ta5ms"):
        print(f"ice_connect_{name}_speedup_vs_aioice {medians['aioice'] / medians[name]:.2f} x")


def messages_sent(prepared: list[tuple[Any, Any]]) -> int:
    """The STUN messages the connections of ``prepared`` have sent so far (aioice's: all that
    aioice sent)."""
    if not isinstance(prepared[0][0], ice.Connection):
        return _AioiceMessages.sent
    return sum(
        pair.requests_sent + pair.responses_sent
        for connections in prepared
        for connection in connections
        for pair in connection.agent.checklists[0]
    )


async def connect_phase(factory: Factory, pairs: int) -> tuple[float, float, float]:
    """Connect ``pairs`` prepared pairs at once: the wall time, the CPU time per pair and the
    STUN messages sent per pair. Garbage of what ran before is collected first, so that it is
    not counted here."""
    prepared = await asyncio.gather(*(prepared_pair(factory) for _ in range(pairs)))
    gc.collect()
    sent = messages_sent(prepared)
    cpu = time.process_time()
    wall = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(c.connect() for pair in prepared for c in pair)), 120)
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    sent = messages_sent(prepared) - sent
    await asyncio.gather(*(c.close() for pair in prepared for c in pair))
    return wall, cpu / pairs, sent / pairs


async def established_phase(factory: Factory, pairs: int, seconds: float) -> tuple[float, float]:
    """``pairs`` pairs connected and established (:data:`ESTABLISHED_AFTER`), then watched for
    ``seconds`` while they keep consent: the CPU time and the STUN messages per pair and
    second."""
    prepared = await asyncio.gather(*(prepared_pair(factory) for _ in range(pairs)))
    try:
        connections = [c for pair in prepared for c in pair]
        await asyncio.wait_for(asyncio.gather(*(c.connect() for c in connections)), 120)
        await all_completed(connections)
        await asyncio.sleep(ESTABLISHED_AFTER)
        gc.collect()
        sent = messages_sent(prepared)
        cpu = time.process_time()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu
        sent = messages_sent(prepared) - sent
    finally:
        await asyncio.gather(*(c.close() for pair in prepared for c in pair))
    return cpu / pairs / seconds, sent / pairs / seconds


async def floor_phase(pairs: int) -> tuple[float, float, float]:
    """:func:`connect_phase` for :mod:`bench.exchange_floor`'s endpoints (no agent)."""
    prepared = exchange_floor.endpoint_pairs(asyncio.get_running_loop(), pairs)
    gc.collect()
    cpu = time.process_time()
    wall = time.perf_counter()
    try:
        connecting = (side.connect() for pair in prepared for side in pair)
        await asyncio.wait_for(asyncio.gather(*connecting), 120)
    finally:
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        for pair in prepared:
            for side in pair:
                side.close()
    return wall, cpu / pairs, sum(side.sent for pair in prepared for side in pair) / pairs


#: How long after connecting a session counts as established: icestack has released what it
#: does not use by then (RFC 8445 §8.3).
ESTABLISHED_AFTER = RELEASE_DELAY + 0.5


#: The bound on waiting for every connection to complete.
COMPLETED_WAIT = 30.0


def open_fds() -> int:
    """The file descriptors this process holds open (Linux: /proc/self/fd)."""
    return len(os.listdir("/proc/self/fd"))


async def all_completed(connections: list[Any]) -> None:
    """Wait (at most :data:`COMPLETED_WAIT`) until every icestack connection is completed —
    connected and no check in flight any more, which under tracemalloc on a loaded machine
    may come a while after ``connect()`` returned. aioice's ``connect()`` returns completed."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + COMPLETED_WAIT
    ours = [c for c in connections if isinstance(c, ice.Connection)]
    while loop.time() < give_up and any(c.state is not IceState.COMPLETED for c in ours):
        await asyncio.sleep(0.05)
    late = sum(c.state is not IceState.COMPLETED for c in ours)
    if late:
        print(
            f"# {late} connections not completed after {COMPLETED_WAIT:g} s: the established "
            "measure below counts them as they are"
        )


async def memory_per_agent(factory: Factory, pairs: int) -> tuple[float, float, float, float]:
    """The Python heap (tracemalloc) and the file descriptors per agent of ``pairs`` pairs,
    gathered and connected, and again :data:`ESTABLISHED_AFTER` after all completed (after a
    garbage collection)."""
    gc.collect()
    fds = open_fds()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    traced = await asyncio.gather(*(prepared_pair(factory) for _ in range(pairs)))
    await asyncio.wait_for(asyncio.gather(*(c.connect() for pair in traced for c in pair)), 120)
    agents = 2 * pairs
    connected = (tracemalloc.get_traced_memory()[0] - before) / agents
    connected_fds = (open_fds() - fds) / agents
    await all_completed([c for pair in traced for c in pair])
    await asyncio.sleep(ESTABLISHED_AFTER)
    gc.collect()
    established = (tracemalloc.get_traced_memory()[0] - before) / agents
    established_fds = (open_fds() - fds) / agents
    tracemalloc.stop()
    await asyncio.gather(*(c.close() for pair in traced for c in pair))
    return connected, established, connected_fds, established_fds


def udp_only(controlling: bool) -> ice.Connection:
    """icestack without ICE-TCP candidates: what aioice offers (UDP host candidates only)."""
    return ours(controlling, tcp=False)


async def bench_scale(sizes: list[int], runs: int, established_seconds: float) -> None:
    variants: dict[str, Factory] = {"icestack": ours, "icestack_udp": udp_only, "aioice": theirs}
    phases: dict[str, Callable[[int], Awaitable[tuple[float, float, float]]]] = {
        name: functools.partial(connect_phase, factory) for name, factory in variants.items()
    }
    phases["floor"] = floor_phase
    names = list(phases)
    for pairs in sizes:
        samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
        for run in range(runs):
            # Interleaved, each run starting with the next variant: a burst of load on the
            # machine falls on all of them, and none is always first.
            for name in names[run % len(names) :] + names[: run % len(names)]:
                samples[name].append(await phases[name](pairs))
        cpu_of = {}
        for name in names:
            walls, cpus, counts = (list(values) for values in zip(*samples[name], strict=True))
            cpu_of[name] = statistics.median(cpus)
            messages = statistics.median(counts)
            print(f"ice_scale_{pairs}_{name}_wall {statistics.median(walls):.3f} s")
            print(f"ice_scale_{pairs}_{name}_messages_per_pair {messages:.2f} messages")
            print(f"ice_scale_{pairs}_{name}_cpu_per_pair {cpu_of[name] * 1000:.2f} ms")
            print(f"ice_scale_{pairs}_{name}_cpu_per_pair_min {min(cpus) * 1000:.2f} ms")
            print(f"ice_scale_{pairs}_{name}_cpu_per_pair_max {max(cpus) * 1000:.2f} ms")
            per_message = cpu_of[name] / messages * 1e6
            print(f"ice_scale_{pairs}_{name}_cpu_per_message {per_message:.0f} us")
        memory_of = {}
        for name, factory in variants.items():
            memory, established, fds, established_fds = await memory_per_agent(factory, pairs)
            memory_of[name] = memory, established
            print(f"ice_scale_{pairs}_{name}_memory_per_agent {memory / 1024:.1f} KiB")
            print(
                f"ice_scale_{pairs}_{name}_memory_per_established_agent "
                f"{established / 1024:.1f} KiB"
            )
            print(f"ice_scale_{pairs}_{name}_fds_per_agent {fds:.2f} fds")
            print(f"ice_scale_{pairs}_{name}_fds_per_established_agent {established_fds:.2f} fds")
        established_of = {}
        if established_seconds > 0:
            for name, factory in variants.items():
                cpu, messages = await established_phase(factory, pairs, established_seconds)
                established_of[name] = cpu
                print(
                    f"ice_scale_{pairs}_{name}_established_cpu_per_pair_second {cpu * 1e6:.0f} us"
                )
                print(
                    f"ice_scale_{pairs}_{name}_established_messages_per_pair_second "
                    f"{messages:.2f} messages"
                )
        theirs_cpu, floor_cpu = cpu_of["aioice"], cpu_of["floor"]
        print(f"ice_scale_{pairs}_floor_cpu_fraction_of_aioice {floor_cpu / theirs_cpu:.2f} x")
        theirs_memory, theirs_established = memory_of["aioice"]
        for name in ("icestack", "icestack_udp"):
            cpu = cpu_of[name]
            memory, established = memory_of[name]
            print(f"ice_scale_{pairs}_{name}_cpu_advantage_vs_aioice {theirs_cpu / cpu:.2f} x")
            print(f"ice_scale_{pairs}_{name}_cpu_fraction_of_aioice {cpu / theirs_cpu:.2f} x")
            print(f"ice_scale_{pairs}_{name}_cpu_above_floor {(cpu - floor_cpu) * 1000:.2f} ms")
            fraction = memory / theirs_memory
            print(f"ice_scale_{pairs}_{name}_memory_fraction_of_aioice {fraction:.2f} x")
            fraction = established / theirs_established
            print(
                f"ice_scale_{pairs}_{name}_established_memory_fraction_of_aioice {fraction:.2f} x"
            )
            if established_of:
                fraction = established_of[name] / established_of["aioice"]
                print(
                    f"ice_scale_{pairs}_{name}_established_cpu_fraction_of_aioice {fraction:.2f} x"
                )


#: Datagrams in flight at most: well under a loopback socket buffer, so none is dropped and the
#: measurement is of throughput, not of how many survive an overflow.
WINDOW = 64


async def data_rate(factory: Factory, packets: int) -> tuple[float, float]:
    """Datagrams per second from a's send() to b's recv(), closed-loop with a sliding window,
    bounded in count (``packets``) and time (20 s), and the process's CPU seconds per
    datagram."""
    a, b = await prepared_pair(factory)
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)
    received = 0
    room = asyncio.Event()

    async def receive() -> None:
        nonlocal received
        while received < packets:
            await b.recv()
            received += 1
            room.set()

    async def transmit() -> None:
        for sent in range(packets):
            while sent - received >= WINDOW:
                room.clear()
                await room.wait()
            await a.send(PAYLOAD)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.wait_for(asyncio.gather(receive(), transmit()), 20)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await asyncio.gather(a.close(), b.close())
    return received / elapsed, cpu / received


def bench_data(packets: int) -> None:
    for loop_name in ("asyncio", "uvloop"):
        if loop_name == "uvloop":
            import uvloop

            runner: Callable[[Awaitable[tuple[float, float]]], tuple[float, float]]
            runner = uvloop.run  # type: ignore[assignment]
        else:
            runner = asyncio.run  # type: ignore[assignment]
        rates, cpu = {}, {}
        for name, factory in (("icestack", ours), ("aioice", theirs)):
            rates[name], cpu[name] = runner(data_rate(factory, packets))
            print(f"ice_data_{loop_name}_{name}_rate {rates[name]:.0f} datagrams/s")
            print(f"ice_data_{loop_name}_{name}_cpu_per_datagram {cpu[name] * 1e6:.2f} us")
        print(f"ice_data_{loop_name}_ratio_vs_aioice {rates['icestack'] / rates['aioice']:.2f} x")
        print(f"ice_data_{loop_name}_cpu_ratio_vs_aioice {cpu['aioice'] / cpu['icestack']:.2f} x")


async def round_trip_median(factory: Factory, round_trips: int) -> float:
    """The median time of one datagram from a to b and one back, ``round_trips`` times (bounded
    in time too: 20 s)."""
    a, b = await prepared_pair(factory)
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)

    async def measure() -> list[float]:
        times = []
        for _ in range(round_trips):
            started = time.perf_counter()
            await a.send(PAYLOAD)
            await b.send(await b.recv())
            await a.recv()
            times.append(time.perf_counter() - started)
        return times

    times = await asyncio.wait_for(measure(), 20)
    await asyncio.gather(a.close(), b.close())
    return statistics.median(times)


def bench_tcp(packets: int, round_trips: int) -> None:
    transports: dict[str, Factory] = {
        "udp": lambda controlling: ours(controlling, tcp=False),
        "tcp": lambda controlling: ours(controlling, udp=False),
    }
    for loop_name in ("asyncio", "uvloop"):
        if loop_name == "uvloop":
            import uvloop

            runner: Callable[[Awaitable[Any]], Any] = uvloop.run  # type: ignore[assignment]
        else:
            runner = asyncio.run  # type: ignore[assignment]
        rates, rtts = {}, {}
        for name, factory in transports.items():
            rates[name] = runner(data_rate(factory, packets))[0]
            rtts[name] = runner(round_trip_median(factory, round_trips))
            print(f"ice_tcp_{loop_name}_{name}_rate {rates[name]:.0f} datagrams/s")
            print(f"ice_tcp_{loop_name}_{name}_rtt_median {rtts[name] * 1e6:.1f} us")
        print(f"ice_tcp_{loop_name}_rate_ratio_tcp_vs_udp {rates['tcp'] / rates['udp']:.2f} x")
        print(f"ice_tcp_{loop_name}_rtt_ratio_tcp_vs_udp {rtts['tcp'] / rtts['udp']:.2f} x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--scale", default="100,500,1000")
    parser.add_argument("--scale-runs", type=int, default=3)
    parser.add_argument("--established-seconds", type=float, default=10.0)
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--only", choices=("connect", "scale", "data", "tcp"))
    args = parser.parse_args()
    if args.scale_runs < 1:
        parser.error(f"--scale-runs must be at least 1, not {args.scale_runs}")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.only in (None, "connect"):
        asyncio.run(bench_connect(args.runs))
    if args.only in (None, "scale"):
        sizes = [int(n) for n in args.scale.split(",")]
        asyncio.run(bench_scale(sizes, args.scale_runs, args.established_seconds))
    if args.only in (None, "data"):
        bench_data(args.packets)
    if args.only in (None, "tcp"):
        bench_tcp(args.packets, args.round_trips)


if __name__ == "__main__":
    main()
